"""Bad input never stops the twin server or disturbs other clients; every problem is logged clearly."""

from __future__ import annotations

import json
import logging
import math
import random
import threading
import time

import pytest
from helpers import wait_until
from spec_client import RawClient

from pitlane.twin.limits import ServerLimits
from pitlane.twin.server import TwinServer

LOGGER = "pitlane.twin.server"


def synchronous_car(port: int) -> RawClient:
    c = RawClient(port)
    c.expect("scene_selection_ready")
    c.send({"msg_type": "load_scene", "scene_name": "generated_track"})
    c.expect("car_loaded")
    c.send({"msg_type": "step_mode", "step_mode": "synchronous", "time_step": "0.05"})
    assert c.alive()
    return c


def warnings_of(caplog, client_id: int | None = None) -> list[str]:
    prefix = f"client {client_id}:" if client_id else "client"
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == LOGGER and r.levelno >= logging.WARNING and r.getMessage().startswith(prefix)
    ]


def no_internal_errors(caplog) -> bool:
    return not [r for r in caplog.records if r.name == LOGGER and r.levelno >= logging.ERROR]


def test_malformed_json_is_logged_and_the_connection_keeps_working(server, caplog):
    c = RawClient(server.port)
    c.expect("scene_selection_ready")
    c.send_raw(b'{"msg_type": "get_scene_names", }\n')
    assert c.alive()
    assert any("client 1: malformed JSON" in w for w in warnings_of(caplog, 1))
    assert no_internal_errors(caplog)
    c.close()


def test_unknown_msg_type_is_logged_and_ignored(server, caplog):
    c = RawClient(server.port)
    c.expect("scene_selection_ready")
    c.send({"msg_type": "warp_drive", "factor": "9"})
    c.send({"msg_type": "__init__"})
    assert c.alive()
    logged = warnings_of(caplog, 1)
    assert any("unknown msg_type 'warp_drive'" in w for w in logged)
    assert any("unknown msg_type '__init__'" in w for w in logged)
    c.close()


def test_unknown_scene_answers_the_valid_names_and_stays_in_the_menu(server, caplog):
    c = RawClient(server.port)
    c.expect("scene_selection_ready")
    c.send({"msg_type": "load_scene", "scene_name": "moon_base"})
    names = c.expect("scene_names")["scene_names"]
    assert "generated_track" in names
    assert any("unknown scene 'moon_base'" in w for w in warnings_of(caplog, 1))
    c.send({"msg_type": "control", "steering": "0", "throttle": "1", "brake": "0"})  # still in the menu
    assert c.alive() and any("control needs a loaded scene" in w for w in warnings_of(caplog, 1))
    c.send({"msg_type": "load_scene", "scene_name": "generated_track"})
    c.expect("car_loaded")
    c.close()


@pytest.mark.parametrize(
    "raw_value",
    [
        "NaN",
        '"nan"',
        '"inf"',
        '"-Infinity"',
        "1e999",
        '"1e999"',
        '"abc"',
        "null",
        "[]",
        "{}",
        "true",
        '"5"',
        "-7.5",
        '"0,9"',
    ],
)
def test_nan_and_out_of_range_controls_are_made_safe(server, caplog, raw_value):
    c = synchronous_car(server.port)
    line = '{"msg_type": "control", "steering": %s, "throttle": %s, "brake": %s}\n' % ((raw_value,) * 3)
    c.send_raw(line.encode())
    t = c.expect("telemetry")
    for key, lo, hi in (("steering_angle", -1, 1), ("throttle", -1, 1)):
        assert math.isfinite(t[key]) and lo <= t[key] <= hi
    assert all(math.isfinite(v) for v in t.values() if isinstance(v, float))
    if raw_value == '"0,9"':
        assert t["steering_angle"] == 0.9 and warnings_of(caplog) == []
    else:
        assert any("control:" in w for w in warnings_of(caplog, 1))
    assert no_internal_errors(caplog)
    c.close()


def test_client_vanishing_mid_message_is_logged_and_others_carry_on(server, caplog):
    other = synchronous_car(server.port)
    gone = synchronous_car(server.port)
    gone.send_raw(b'{"msg_type": "control", "steering": "0.1", "thro')
    gone.sock.close()
    deadline = time.monotonic() + 5
    while server.client_count > 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert server.client_count == 1
    assert any("went away mid-message" in w for w in warnings_of(caplog, 2))
    other.send({"msg_type": "control", "steering": "0", "throttle": "0.5", "brake": "0"})
    assert other.expect("telemetry")["throttle"] == 0.5
    other.close()


def test_oversized_message_is_discarded_and_the_connection_recovers(server, caplog):
    c = synchronous_car(server.port)
    c.send_raw(b'{"msg_type": "car_config", "car_name": "' + b"x" * (3 << 20) + b'"}\n')
    c.send_raw(b"{" * 100 + b"y" * (2 << 20) + b"\n\n")  # never closes: dropped at the size limit
    assert c.alive()
    assert len([w for w in warnings_of(caplog, 1) if "longer than" in w]) == 2
    c.close()


def test_binary_garbage_is_skipped(server, caplog):
    c = synchronous_car(server.port)
    rng = random.Random(7)
    for _ in range(20):
        c.send_raw(rng.randbytes(rng.randint(1, 5000)))
    c.send_raw(b"\n\n")
    assert c.alive()
    assert warnings_of(caplog, 1) and no_internal_errors(caplog)
    c.close()


def _fuzz_message(rng: random.Random) -> bytes:
    values = [
        lambda: str(rng.uniform(-5, 5)),
        lambda: rng.uniform(-1e6, 1e6),
        lambda: "nan",
        lambda: None,
        lambda: [],
        lambda: {"x": 1},
        lambda: "",
        lambda: rng.choice(["synchronous", "asynchronous"]),
        lambda: str(rng.randint(-5, 2000)),
        lambda: rng.choice(["JPG", "PNG", "TGA", "GIF"]),
        lambda: "x" * rng.randint(0, 300),
        lambda: True,
        lambda: 10 ** rng.randint(0, 30),
    ]
    kinds = [
        "control",
        "reset_car",
        "exit_scene",
        "load_scene",
        "get_scene_names",
        "get_protocol_version",
        "car_config",
        "racer_info",
        "cam_config",
        "cam_config_b",
        "lidar_config",
        "set_position",
        "node_position",
        "regen_road",
        "step_mode",
        "no_such_type",
        "",
        "ping",
    ]
    keys = [
        "steering",
        "throttle",
        "brake",
        "scene_name",
        "step_mode",
        "time_step",
        "img_w",
        "img_h",
        "fov",
        "img_enc",
        "img_d",
        "offset_y",
        "rot_x",
        "pos_x",
        "pos_z",
        "Qx",
        "Qy",
        "Qz",
        "Qw",
        "index",
        "rand_seed",
        "body_style",
        "car_name",
    ]
    r = rng.random()
    if r < 0.05:
        return rng.randbytes(rng.randint(1, 200))
    weights = [
        30 if k == "control" else 6 if k == "load_scene" else 1 if k == "exit_scene" else 3 for k in kinds
    ]
    msg = {"msg_type": rng.choices(kinds, weights)[0]}
    for key in rng.sample(keys, rng.randint(0, 6)):
        msg[key] = rng.choice(values)()
    if msg["msg_type"] == "load_scene" and rng.random() < 0.7:
        msg["scene_name"] = rng.choice(["generated_track", "warehouse", "generated_road", "nowhere"])
    if msg["msg_type"] == "cam_config" and rng.random() < 0.7:  # keep most frames small
        msg["img_w"], msg["img_h"] = str(rng.randint(8, 320)), str(rng.randint(8, 240))
    data = json.dumps(msg).encode()
    if r < 0.09:
        data = data[: rng.randint(1, len(data))]  # truncated
    elif r < 0.12:
        data = data.replace(b'"', b"", 1)  # broken
    return data + rng.choice([b"\n", b"", b"\n\n", b" "])


@pytest.fixture
def unthrottled_server():
    """A twin without the scene load rate limit (the fuzz loads scenes hundreds of times)."""
    srv = TwinServer(port=0, limits=ServerLimits(scene_loads_per_min=0)).start()
    yield srv
    srv.stop()


def test_fuzz_many_random_messages_never_break_the_server_or_other_clients(unthrottled_server, caplog):
    server = unthrottled_server
    caplog.set_level(logging.WARNING, logger=LOGGER)
    bystander = synchronous_car(server.port)
    fuzzers = [RawClient(server.port) for _ in range(2)]
    received = [bytearray(), bytearray()]

    def drain(c: RawClient, into: bytearray) -> None:  # keep reading so the server never waits on us
        try:
            c.sock.settimeout(60)
            while chunk := c.sock.recv(1 << 18):
                into += chunk
        except OSError:
            pass

    for c, into in zip(fuzzers, received, strict=True):
        threading.Thread(target=drain, args=(c, into), daemon=True).start()
    rng = random.Random(1234)
    for i in range(3000):
        fuzzers[i % 2].send_raw(_fuzz_message(rng))
        if i % 300 == 0:  # the bystander keeps driving in between
            bystander.send({"msg_type": "control", "steering": "0.0", "throttle": "0.3", "brake": "0.0"})
            assert bystander.expect("telemetry")["throttle"] == 0.3
    # the fuzzing connections still answer (after a newline pair that ends any half-sent message) ...
    for c, into in zip(fuzzers, received, strict=True):
        mark = len(into)
        c.send_raw(b'"\n\n{"msg_type": "get_protocol_version"}\n')
        deadline = time.monotonic() + 10
        while b'"protocol_version"' not in bytes(into[mark:]) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert b'"protocol_version"' in bytes(into[mark:])
    # ... the bystander still drives, and a newcomer gets a full session
    newcomer = synchronous_car(server.port)
    newcomer.send({"msg_type": "control", "steering": "0.0", "throttle": "0.3", "brake": "0.0"})
    assert newcomer.expect("telemetry")["time"] == pytest.approx(0.05)
    bystander.send({"msg_type": "control", "steering": "0.0", "throttle": "0.3", "brake": "0.0"})
    assert bystander.expect("telemetry")["throttle"] == 0.3
    assert no_internal_errors(caplog), [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR][
        :5
    ]

    def counted() -> int:
        stats = server.client_stats()
        return stats[2]["warnings"] + stats[3]["warnings"]

    assert wait_until(lambda: counted() > 1500, 30)  # every bad one was counted ...
    assert len(warnings_of(caplog)) < counted() / 5  # ... and logged at a bounded rate, the rest summed up
    for c in [bystander, newcomer, *fuzzers]:
        c.close()


def test_a_client_flooding_controls_does_not_starve_the_others(server):
    flooder, bystander = synchronous_car(server.port), synchronous_car(server.port)
    arrivals: list[float] = []  # when each of the flooder's telemetry lines arrived

    def read_flood() -> None:
        buf = b""
        while len(arrivals) < 1200:
            buf += flooder.sock.recv(1 << 18)
            *lines, buf = buf.split(b"\n")
            arrivals.extend(time.monotonic() for line in lines if b'"msg_type": "telemetry"' in line)

    reader = threading.Thread(target=read_flood, daemon=True)
    reader.start()
    ctl = b'{"msg_type": "control", "steering": "0.1", "throttle": "0.5", "brake": "0.0"}'
    flooder.send_raw(ctl * 1200)  # 1200 steps queued at once (one read holds ~860 of them)
    bystander.send({"msg_type": "control", "steering": "0.0", "throttle": "0.2", "brake": "0.0"})
    assert bystander.expect("telemetry", timeout_s=30)["throttle"] == 0.2
    answered = time.monotonic()
    reader.join(60)
    assert len(arrivals) == 1200
    assert answered < arrivals[400]  # served between the flood's messages, not after a whole read of them
    flooder.close()
    bystander.close()
