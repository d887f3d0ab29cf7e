"""A shared twin under greedy or broken clients, through the real server over real TCP: limits refuse
clearly (in the protocol where it has a way, always in the log), expensive work of one client runs off the
event loop, a non-reading client costs a bounded buffer, and bad messages are logged at a bounded rate."""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import threading
import time

import pytest
from helpers import wait_until
from spec_client import RawClient

from pitlane.twin.limits import ServerLimits
from pitlane.twin.server import TwinServer

LOGGER = "pitlane.twin.server"
CONTROL = {"msg_type": "control", "steering": "0.0", "throttle": "0.3", "brake": "0.0"}


@pytest.fixture
def make_server():
    servers: list[TwinServer] = []

    def make(**limits) -> TwinServer:
        srv = TwinServer(port=0, limits=ServerLimits(**limits)).start()
        servers.append(srv)
        return srv

    yield make
    for srv in servers:
        srv.stop()


def logged(caplog, words: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == LOGGER and words in r.getMessage()]


def car(port: int, synchronous: bool = True, scene: str = "generated_track") -> RawClient:
    c = RawClient(port, timeout_s=20)
    c.expect("scene_selection_ready")
    c.send({"msg_type": "load_scene", "scene_name": scene})
    c.expect("car_loaded", timeout_s=20)
    if synchronous:
        c.send({"msg_type": "step_mode", "step_mode": "synchronous", "time_step": "0.05"})
        assert c.alive()
    return c


def closed_by_server(c: RawClient, timeout_s: float = 10.0) -> bool:
    """The server closed this connection (whatever it sent before)."""
    c.sock.settimeout(timeout_s)
    try:
        while c.sock.recv(1 << 16):
            pass
    except TimeoutError:
        return False
    except OSError:
        pass
    return True


def test_clients_over_the_limit_are_closed_at_once_and_logged(make_server, caplog):
    server = make_server(max_clients=2)
    a, b = RawClient(server.port), RawClient(server.port)
    a.expect("scene_selection_ready")
    b.expect("scene_selection_ready")
    third = RawClient(server.port)
    assert closed_by_server(third, 5)
    assert server.refused_clients == 1
    assert logged(caplog, "refused a connection") and "--max-clients" in logged(caplog, "refused")[0]
    assert a.alive() and b.alive()  # the admitted ones are untouched
    a.close()
    assert wait_until(lambda: server.client_count == 1)
    c = RawClient(server.port)  # a place is free again
    c.expect("scene_selection_ready")
    for x in (b, c, third):
        x.close()


def test_camera_over_the_pixel_limit_is_refused_and_the_camera_kept(make_server, caplog):
    server = make_server(max_camera_pixels=320 * 240)
    c = car(server.port)
    c.send({"msg_type": "cam_config", "img_w": "1920", "img_h": "1080", "img_enc": "PNG"})
    c.send(CONTROL)
    t = c.expect("telemetry")
    assert t["image"].startswith("/9j/")  # still a JPEG ...
    assert len(t["image"]) < 40_000  # ... of the 160x120 camera
    refusal = logged(caplog, "cam_config refused")
    assert refusal and "1920x1080" in refusal[0] and "--max-camera-pixels" in refusal[0]
    c.send({"msg_type": "cam_config", "img_w": "320", "img_h": "240"})  # within the limit: accepted
    c.send(CONTROL)
    big = c.expect("telemetry")
    assert len(big["image"]) > len(t["image"])
    c.close()


def test_a_client_over_the_message_rate_is_read_more_slowly_and_loses_nothing(make_server, caplog):
    server = make_server(messages_per_s=10)
    c = car(server.port)
    t0 = time.monotonic()
    c.send_raw(json.dumps(CONTROL).encode() * 60)  # 60 steps at once, 50 over the burst of 10
    times = [c.expect("telemetry", timeout_s=20)["time"] for _ in range(60)]
    elapsed = time.monotonic() - t0
    assert times == pytest.approx([0.05 * (i + 1) for i in range(60)])  # every step, in order, exactly
    assert elapsed >= 4.0  # 50 messages beyond the burst cannot go faster than 10/s
    assert server.client_stats()[1]["throttled"] > 0
    assert "--max-message-rate" in logged(caplog, "messages/s")[0]
    c.close()


def test_scene_loads_over_the_rate_wait_and_the_client_gets_every_answer(make_server, caplog):
    server = make_server(scene_loads_per_min=60)  # a burst of 10, then one a second
    c = RawClient(server.port, timeout_s=30)
    c.expect("scene_selection_ready")
    for _ in range(12):
        c.send({"msg_type": "load_scene", "scene_name": "generated_track"})
    for _ in range(12):
        c.expect("car_loaded", timeout_s=30)
    assert "--max-scene-loads" in logged(caplog, "scene loads a minute")[0]
    c.close()


def test_idle_and_slow_loris_clients_are_closed_and_active_ones_kept(make_server, caplog):
    server = make_server(idle_timeout_s=1.0)
    idle = RawClient(server.port)
    loris = RawClient(server.port)
    active = RawClient(server.port)
    stop = threading.Event()

    def trickle() -> None:  # one byte of a message that never ends, every 0.1 s
        for b in b'{"msg_type": "control", "steering": "0.' + b"1" * 1000:
            if stop.wait(0.1):
                return
            try:
                loris.sock.sendall(bytes([b]))
            except OSError:
                return

    threading.Thread(target=trickle, daemon=True).start()
    deadline = time.monotonic() + 3.0
    while time.monotonic() < deadline:  # the active client keeps talking
        assert active.alive()
        time.sleep(0.2)
    assert closed_by_server(idle, 5) and closed_by_server(loris, 5)
    stop.set()
    assert active.alive()
    assert len(logged(caplog, "sent no complete message for 1 s")) == 2
    assert "--idle-timeout" in logged(caplog, "sent no complete message")[0]
    for c in (idle, loris, active):
        c.close()


def test_a_non_reading_streaming_client_costs_a_bounded_buffer_and_drops_frames(make_server, caplog):
    server = make_server(max_camera_pixels=640 * 480)
    greedy = car(server.port, synchronous=False)
    greedy.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 << 10)
    greedy.send({"msg_type": "cam_config", "img_w": "640", "img_h": "480", "img_enc": "PNG"})
    # it reads nothing from here on, for 3 s of 20 Hz 640x480 PNG frames (~250 KB each, ~15 MB in all)
    assert wait_until(lambda: server.client_stats()[1]["dropped_frames"] >= 20, 20)
    stats = server.client_stats()[1]
    assert stats["buffered_bytes"] < 1 << 20  # at most about one frame waits in the server
    assert logged(caplog, "not keeping up with its telemetry")
    bystander = car(server.port)
    bystander.send(CONTROL)
    assert bystander.expect("telemetry")["throttle"] == 0.3
    # once it reads again, telemetry flows again
    first = greedy.expect("telemetry", timeout_s=10)["time"]
    while greedy.expect("telemetry", timeout_s=10)["time"] < first + 0.5:
        pass
    greedy.close()
    bystander.close()


def test_a_non_reading_synchronous_client_is_held_back_and_still_gets_every_step(make_server):
    server = make_server(send_buffer_bytes=64 << 10)
    c = car(server.port)
    c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32 << 10)
    c.send_raw(json.dumps(CONTROL).encode() * 1000)  # ~6 MB of answers, none read yet
    time.sleep(1.0)
    assert server.client_stats()[1]["buffered_bytes"] < 256 << 10  # back-pressure, not a backlog in memory
    times = [c.expect("telemetry", timeout_s=30)["time"] for _ in range(1000)]
    assert times == pytest.approx([0.05 * (i + 1) for i in range(1000)])  # synchronous stepping stays exact
    c.close()


def test_bad_messages_are_logged_at_a_bounded_rate_with_a_count_of_the_rest(make_server, caplog):
    caplog.set_level(logging.WARNING, logger=LOGGER)
    server = make_server(log_lines=3, log_interval_s=0.5)
    c = RawClient(server.port)
    c.expect("scene_selection_ready")
    c.send_raw(b'{"msg_type": "warp_drive"}\n' * 50)
    assert c.alive()
    time.sleep(0.6)
    c.send_raw(b"garbage\n")
    assert c.alive()
    lines = [r.getMessage() for r in caplog.records if r.name == LOGGER and r.levelno == logging.WARNING]
    assert len([w for w in lines if "warp_drive" in w]) == 3
    assert any("47 more warnings suppressed" in w for w in lines)
    assert server.client_stats()[1]["warnings"] == 51
    c.close()


def test_a_message_cut_short_without_newline_loses_only_itself_brake_included(server, caplog):
    c = car(server.port)
    c.send_raw(
        b'{"msg_type": "control", "steering": "0.5", "thr'
        b'{"msg_type": "control", "steering": "0.0", "throttle": "0.3", "brake": "0.0"}'
        b'{"msg_type": "control", "steering": "0.0", "throttle": "0.0", "brake": "1.0"}'
    )
    first, second = c.expect("telemetry"), c.expect("telemetry")
    assert (first["throttle"], first["brake"]) == (0.3, 0.0)
    assert (second["throttle"], second["brake"]) == (0.0, 1.0)
    assert logged(caplog, "message cut short")
    c.close()


@pytest.mark.slow
@pytest.mark.parametrize("work", ["1080p_png", "regen_road"])
def test_one_clients_expensive_work_does_not_hold_up_another(make_server, work):
    """The greedy client queues seconds of work: 20 synchronous steps with a 1080p PNG camera (~150 ms of
    CPU each) or 8 regen_road (~450 ms each), each answered. A bystander's 20 synchronous steps come back
    while the greedy client has had fewer than half of its answers. (On the event loop, the server served the
    two in turn: each bystander step waited for one greedy unit, and all greedy answers came first.)"""
    server = make_server(max_camera_pixels=1920 * 1080, scene_loads_per_min=0)
    greedy = car(server.port, scene="generated_road")
    ping = b'{"msg_type": "get_protocol_version"}'
    if work == "1080p_png":
        greedy.send({"msg_type": "cam_config", "img_w": "1920", "img_h": "1080", "img_enc": "PNG"})
        assert greedy.alive()
        units, answer, burst = 20, b'"msg_type": "telemetry"', json.dumps(CONTROL).encode() * 20
    else:
        units, answer = 8, b'"msg_type": "protocol_version"'
        burst = b"".join(
            json.dumps({"msg_type": "regen_road", "rand_seed": str(1000 + i)}).encode() + ping
            for i in range(8)
        )
    bystander = car(server.port)
    arrivals: list[float] = []

    def read_greedy() -> None:
        buf = b""
        greedy.sock.settimeout(60)
        while len(arrivals) < units:
            buf += greedy.sock.recv(1 << 20)
            *lines, buf = buf.split(b"\n")
            arrivals.extend(time.monotonic() for line in lines if answer in line)

    reader = threading.Thread(target=read_greedy, daemon=True)
    reader.start()
    greedy.send_raw(burst)
    for _ in range(20):
        bystander.send(CONTROL)
        assert bystander.expect("telemetry")["throttle"] == 0.3
    bystander_done = time.monotonic()
    reader.join(120)
    assert len(arrivals) == units  # the greedy client got all its answers too
    assert sum(t < bystander_done for t in arrivals) < units // 2
    greedy.close()
    bystander.close()


def test_a_synchronous_client_that_never_reads_its_answers_is_closed_after_the_idle_timeout(
    make_server, caplog
):
    server = make_server(idle_timeout_s=1.0, send_buffer_bytes=64 << 10)
    c = car(server.port)
    c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32 << 10)
    bystander = car(server.port)
    with contextlib.suppress(OSError):  # the server stops reading, then closes it
        c.send_raw(json.dumps(CONTROL).encode() * 2000)  # ~12 MB of answers it never reads
    deadline = time.monotonic() + 15
    while server.client_count > 1 and time.monotonic() < deadline:
        assert bystander.alive()  # talking, so not idle itself
        time.sleep(0.2)
    assert server.client_count == 1
    assert logged(caplog, "(pitlane twin serve --idle-timeout)")  # not reading, or no more to read
    bystander.send(CONTROL)
    assert bystander.expect("telemetry")["throttle"] == 0.3
    c.close()
    bystander.close()


def test_hit_and_run_clients_waiting_for_a_busy_worker_are_let_go_at_once(make_server, caplog):
    """A greedy client keeps the one worker busy for seconds (regen_road); 20 clients connect, ask for a
    scene and hang up. They do not hold their places until the worker is free: a newcomer gets in while the
    greedy client's work is still running."""
    server = make_server(max_clients=6, workers=1, scene_loads_per_min=0)
    greedy = car(server.port, scene="generated_road")
    greedy.send_raw(
        b"".join(
            json.dumps({"msg_type": "regen_road", "rand_seed": str(2000 + i)}).encode() for i in range(10)
        )
        + b'{"msg_type": "get_protocol_version"}'
    )
    for _ in range(20):
        hit_and_run = RawClient(server.port)
        hit_and_run.expect("scene_selection_ready")
        hit_and_run.send({"msg_type": "load_scene", "scene_name": "warehouse"})
        hit_and_run.close()
        assert wait_until(lambda: server.client_count == 1, 5)  # let go long before the worker is free
    newcomer = RawClient(server.port)
    newcomer.expect("scene_selection_ready")
    assert server.refused_clients == 0
    greedy.expect("protocol_version", timeout_s=120)  # and the greedy client still got all its work done
    assert not logged(caplog, "internal error")
    newcomer.close()
    greedy.close()


def _from(address: str, port: int) -> socket.socket:
    """A TCP connection to the twin on 127.0.0.1 from the local address `address` (all of 127/8 is this host)."""
    s = socket.socket()
    s.bind((address, 0))
    s.settimeout(10)
    s.connect(("127.0.0.1", port))
    return s


def test_one_address_cannot_lock_every_car_out_of_a_shared_twin(make_server, caplog):
    """32 idle sockets from one host took every place (the limit was global): now that host gets 8 of them
    (`--max-clients-per-address`), the rest are closed at once, and a car from another address connects."""
    server = make_server(max_clients=32, max_clients_per_address=8, idle_timeout_s=0)
    hog = []
    for _ in range(32):
        with contextlib.suppress(OSError):
            hog.append(_from("127.0.0.1", server.port))
    assert wait_until(lambda: server.refused_clients == 24, 10), server.refused_clients
    assert server.client_count == 8
    assert "--max-clients-per-address" in logged(caplog, "refused a connection")[0]
    other = RawClient(server.port, timeout_s=20, bind=("127.0.0.2", 0))
    other.expect("scene_selection_ready")  # another address still gets in, and is served
    other.send({"msg_type": "load_scene", "scene_name": "generated_track"})
    other.expect("car_loaded", timeout_s=20)
    assert server.client_count == 9 and other.alive()
    for s in hog:  # the hog's places come back when it lets go
        s.close()
    assert wait_until(lambda: server.client_count == 1, 10)
    again = _from("127.0.0.1", server.port)
    assert wait_until(lambda: server.client_count == 2, 10)
    again.close()
    other.close()


def test_the_per_address_key_groups_an_ipv6_host_by_its_slash_64():
    from pitlane.twin.limits import client_address

    assert client_address(("192.0.2.7", 5555)) == "192.0.2.7"
    assert client_address(("2001:db8:1:2::7", 5555, 0, 0)) == client_address(
        ("2001:db8:1:2:ffff::1", 1, 0, 0)
    )
    assert client_address(("2001:db8:1:2::7", 5555, 0, 0)) != client_address(("2001:db8:1:3::7", 1, 0, 0))
    assert client_address(("::ffff:192.0.2.7", 5555, 0, 0)) == "192.0.2.7"
    assert client_address("/tmp/sock") == "/tmp/sock"
    with pytest.raises(Exception, match="per address 0 outside"):
        ServerLimits(max_clients_per_address=0)
