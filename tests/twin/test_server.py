"""The twin's TCP server, driven over real sockets by clients written from docs/sim-protocol.md."""

from __future__ import annotations

import base64
import io
import json
import math
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
from helpers import replace_float_notation
from PIL import Image
from spec_client import RawClient

from pitlane.errors import UserError
from pitlane.twin.scenes import SCENE_NAMES, load_scene
from pitlane.twin.server import TwinServer

SPEC_TELEMETRY_KEYS = {
    "steering_angle",
    "throttle",
    "speed",
    "image",
    "hit",
    "time",
    "accel_x",
    "accel_y",
    "accel_z",
    "gyro_x",
    "gyro_y",
    "gyro_z",
    "pitch",
    "yaw",
    "roll",
    "activeNode",
    "totalNodes",
    "cte",
    "pos_x",
    "pos_y",
    "pos_z",
    "vel_x",
    "vel_y",
    "vel_z",
}


def image_of(msg: dict) -> np.ndarray:
    """Decode exactly as gym-donkeycar does."""
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(msg["image"]))))


def control(steering, throttle, brake="0.0") -> dict:
    return {"msg_type": "control", "steering": str(steering), "throttle": str(throttle), "brake": str(brake)}


def in_scene(
    port: int, scene: str = "generated_track", synchronous: bool = True, time_step="0.05"
) -> RawClient:
    c = RawClient(port)
    c.expect("scene_selection_ready")
    c.send({"msg_type": "load_scene", "scene_name": scene})
    c.expect("car_loaded")
    if synchronous:
        c.send({"msg_type": "step_mode", "step_mode": "synchronous", "time_step": time_step})
        c.barrier()
    return c


# ------------------------------------------------------------------------------------------ session flow


def test_menu_flow_scene_names_protocol_version_and_car_loaded(server):
    c = RawClient(server.port)
    assert c.recv() == {"msg_type": "scene_selection_ready", "loaded": "1"}
    c.send({"msg_type": "get_protocol_version"})
    assert c.recv() == {"msg_type": "protocol_version", "version": "2"}
    c.send({"msg_type": "get_scene_names"})
    names = c.recv()
    assert names["msg_type"] == "scene_names" and names["scene_names"] == list(SCENE_NAMES)
    assert {"generated_track", "generated_road", "mini_monaco", "warehouse", "circuit_launch"} <= set(
        SCENE_NAMES
    )
    c.send({"msg_type": "load_scene", "scene_name": "warehouse"})
    assert c.recv() == {"msg_type": "car_loaded"}
    c.close()


def test_asynchronous_mode_streams_telemetry_with_every_spec_key_at_20_hz(server):
    c = in_scene(server.port, synchronous=False)
    c.send(control(0.0, 0.5))
    t0 = time.monotonic()
    frames = [m for m in c.drain(1.0) if m["msg_type"] == "telemetry"]
    elapsed = time.monotonic() - t0
    assert 8 <= len(frames) <= 1.5 * 20 * elapsed + 2  # ~20 Hz (loose: two shared cores)
    last = frames[-1]
    assert set(last) >= SPEC_TELEMETRY_KEYS
    assert image_of(last).shape == (120, 160, 3)
    times = [f["time"] for f in frames]
    assert np.allclose(np.diff(times), 0.05)  # each frame is 1/stream_hz of simulated time later
    assert last["throttle"] == 0.5 and last["speed"] > 0.0 and last["hit"] == "none"
    c.close()


def test_cam_config_changes_frame_size_and_encoding(server):
    c = in_scene(server.port)
    c.send(
        {
            "msg_type": "cam_config",
            "fov": "0",
            "fish_eye_x": "0.0",
            "fish_eye_y": "0.0",
            "img_w": "80",
            "img_h": "60",
            "img_d": "0",
            "img_enc": "PNG",
            "offset_x": "0.0",
            "offset_y": "0.0",
            "offset_z": "0.0",
            "rot_x": "0.0",
            "rot_y": "0.0",
            "rot_z": "0.0",
        }
    )
    c.send(control(0, 0))
    msg = c.expect("telemetry")
    assert base64.b64decode(msg["image"])[:4] == b"\x89PNG"
    assert image_of(msg).shape == (60, 80, 3)
    c.close()


def test_synchronous_control_answers_exactly_one_telemetry_after_time_step(server):
    c = in_scene(server.port, time_step="0.1")
    times = []
    for _ in range(5):
        c.send(control("-0.2", "0.6"))
        msg = c.recv()
        while msg["msg_type"] != "telemetry":  # lap events may precede the telemetry
            msg = c.recv()
        times.append(msg["time"])
    assert times == pytest.approx([0.1, 0.2, 0.3, 0.4, 0.5])
    assert msg["steering_angle"] == -0.2 and msg["throttle"] == 0.6
    assert [m for m in c.drain(0.3) if m["msg_type"] == "telemetry"] == []  # nothing streams
    c.close()


def test_reset_car_returns_to_the_start_and_exit_scene_goes_back_to_the_menu(server):
    c = in_scene(server.port)
    start = None
    for _ in range(20):
        c.send(control(0, 1))
        msg = c.expect("telemetry")
        start = start or msg
    assert start is not None
    assert math.dist((msg["pos_x"], msg["pos_z"]), (start["pos_x"], start["pos_z"])) > 0.5
    c.send({"msg_type": "reset_car"})
    reset = c.expect("telemetry")  # synchronous mode: reset answers the start pose
    assert reset["time"] == 0.0 and reset["speed"] == 0.0
    c.send({"msg_type": "exit_scene"})
    assert c.expect("scene_selection_ready")["loaded"] == "1"
    c.send(control(0, 1))  # no car in the menu: ignored, nothing answered
    assert [m for m in c.barrier() if m["msg_type"] == "telemetry"] == []
    c.send({"msg_type": "load_scene", "scene_name": "mini_monaco"})
    c.expect("car_loaded")
    c.close()


def test_set_position_and_node_position(server):
    track = load_scene("generated_track")
    c = in_scene(server.port)
    c.send({"msg_type": "node_position", "index": "100"})
    node = c.expect("node_position")
    assert node["index"] == 100
    assert (node["pos_x"], node["pos_z"]) == pytest.approx(tuple(track.centerline[100]))
    c.send(
        {
            "msg_type": "set_position",
            "pos_x": str(node["pos_x"]),
            "pos_y": "0",
            "pos_z": str(node["pos_z"]),
            **{k: str(node[k]) for k in ("Qx", "Qy", "Qz", "Qw")},
        }
    )
    c.send(control(0, 0))
    msg = c.expect("telemetry")
    assert abs(msg["activeNode"] - 100) <= 1 and abs(msg["cte"]) < 0.02
    assert (msg["pos_x"], msg["pos_z"]) == pytest.approx((node["pos_x"], node["pos_z"]), abs=1e-6)
    assert msg["yaw"] == pytest.approx((90 - math.degrees(track.heading[100])) % 360, abs=1e-6)
    c.close()


def test_regen_road_builds_a_new_generated_road(server):
    c = in_scene(server.port, scene="generated_road")
    c.send({"msg_type": "node_position", "index": "5"})
    before = c.expect("node_position")
    c.send({"msg_type": "regen_road", "road_style": "0", "rand_seed": "42", "turn_increment": "0.0"})
    c.send({"msg_type": "node_position", "index": "5"})
    after = c.expect("node_position")
    assert (before["pos_x"], before["pos_z"]) != (after["pos_x"], after["pos_z"])
    assert after["pos_x"] == pytest.approx(float(load_scene("generated_road", rand_seed=42).centerline[5][0]))
    c.close()


# ------------------------------------------------------------------------------------------- laps


def pure_pursuit(track, msg, lookahead_nodes: int = 16) -> float:
    """Steering [-1, 1] (+ = right) towards the centerline point `lookahead_nodes` ahead."""
    x, y = msg["pos_x"], msg["pos_z"]
    yaw = math.radians(90.0 - msg["yaw"])
    tx, ty = track.centerline[(msg["activeNode"] + lookahead_nodes) % track.total_nodes]
    alpha = math.atan2(ty - y, tx - x) - yaw
    alpha = math.atan2(math.sin(alpha), math.cos(alpha))
    delta = math.atan2(2 * 0.26 * math.sin(alpha), math.hypot(tx - x, ty - y))
    return max(-1.0, min(1.0, -math.degrees(delta) / 16.0))


def test_lap_messages_when_a_lap_completes_count_as_gym_donkeycar_counts_them(server):
    track = load_scene("generated_track")
    c = in_scene(server.port)
    events, msg, steering = [], None, 0.0
    for _ in range(3000):
        c.send(control(steering, 0.5))
        m = c.recv()
        while m["msg_type"] != "telemetry":
            events.append(m)
            m = c.recv()
        msg = m
        assert msg["hit"] == "none"
        if any(e["msg_type"] == "cross_start" for e in events):
            break
        steering = pure_pursuit(track, msg)
    assert msg is not None
    kinds = [e["msg_type"] for e in events]
    assert kinds == ["collision_with_starting_line", "collision_with_starting_line", "cross_start"]
    assert msg["laps"] == 1
    # gym-donkeycar 1.3.1 on_collision_with_starting_line: the first crossing starts the clock
    current, lap_count, last_lap = 0.0, 0, 0.0
    for e in events[:2]:
        if current == 0.0:
            current = e["timeStamp"]
        else:
            last_lap, current, lap_count = e["timeStamp"] - current, e["timeStamp"], lap_count + 1
    assert lap_count == 1
    assert last_lap == pytest.approx(events[2]["lap_time"], abs=0.1)
    assert last_lap == pytest.approx(track.length_m / (0.5 * 3.5), rel=0.15)  # ~ length / speed
    c.close()


def test_car_placed_before_the_line_reports_its_crossing_only_when_it_gets_there(server):
    track = load_scene("generated_track")
    c = in_scene(server.port)
    index = track.total_nodes - 60  # 3 m before the start line
    c.send({"msg_type": "node_position", "index": str(index)})
    node = c.expect("node_position")
    c.send(
        {
            "msg_type": "set_position",
            "pos_x": str(node["pos_x"]),
            "pos_y": "0",
            "pos_z": str(node["pos_z"]),
            **{k: str(node[k]) for k in ("Qx", "Qy", "Qz", "Qw")},
        }
    )
    steering, crossed_at = 0.0, None
    for _ in range(200):
        c.send(control(steering, 0.5))
        m = c.recv()
        if m["msg_type"] == "collision_with_starting_line":
            crossed_at = c.expect("telemetry")
            break
        steering = pure_pursuit(track, m)
    assert crossed_at is not None and crossed_at["activeNode"] < 20  # at the line, not where it started
    c.close()


# ----------------------------------------------------------------------------------- several clients


def drive(c: RawClient, controls) -> list[dict]:
    out = []
    for s, t in controls:
        c.send(control(s, t))
        out.append(c.expect("telemetry"))
    return out


def test_each_client_has_its_own_car_and_identical_sessions_are_identical(server):
    a, b, idle = in_scene(server.port), in_scene(server.port), in_scene(server.port)
    rng = np.random.default_rng(1)
    controls = [
        (round(float(s), 3), round(float(t), 3)) for s, t in rng.uniform([-0.3, 0.2], [0.3, 0.8], (40, 2))
    ]
    run_a = drive(a, controls)
    run_b = drive(b, controls)
    assert run_a == run_b  # same seed, same controls: same telemetry and frames, whatever else runs
    still = drive(idle, [(0, 0)])[0]
    assert still["speed"] == 0.0 and still["time"] == 0.05
    assert math.dist((still["pos_x"], still["pos_z"]), (run_a[-1]["pos_x"], run_a[-1]["pos_z"])) > 1.0
    for c in (a, b, idle):
        c.close()


def test_quit_app_closes_only_that_client(server):
    a, b = in_scene(server.port), in_scene(server.port)
    a.send({"msg_type": "quit_app"})
    with pytest.raises(ConnectionError):
        a.drain(2.0)
    assert drive(b, [(0, 0.3)])[0]["throttle"] == 0.3
    assert server.client_count == 1
    b.close()


def test_port_in_use_is_a_clear_user_error(server):
    with pytest.raises(UserError, match="cannot listen on 127.0.0.1"):
        TwinServer(port=server.port).start()


# ------------------------------------------------------------------------- gym-donkeycar 1.3.1 replay


class GymDonkeycarWire:
    """gym-donkeycar 1.3.1 on the wire: SDClient sends `json.dumps(msg)` with no newline and frames what it
    reads by cutting from the first '{' to the last '}\\n' of its buffer, then splitting on newlines."""

    def __init__(self, port: int):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5.0)
        self.local = ""
        self.pending: list[dict] = []

    def send(self, msg: dict) -> None:
        self.sock.sendall(json.dumps(msg).encode("utf-8"))

    def next(self, timeout_s: float = 5.0) -> dict:
        deadline = time.monotonic() + timeout_s
        while not self.pending:
            self.sock.settimeout(max(0.001, deadline - time.monotonic()))
            self.local += self.sock.recv(1024 * 256).decode("utf-8")
            n0, n1 = self.local.find("{"), self.local.rfind("}\n")
            if n1 >= 0 and 0 <= n0 < n1:
                msgs = self.local[n0 : n1 + 1].split("\n")
                self.local = self.local[n1:]
                for m in msgs:
                    if len(m) > 2:
                        j = json.loads(replace_float_notation(m))
                        assert "msg_type" in j
                        self.pending.append(j)
        return self.pending.pop(0)

    def wait(self, msg_type: str) -> dict:
        while True:
            msg = self.next()
            if msg["msg_type"] == msg_type:
                return msg


def test_replays_gym_donkeycar_1_3_1_session(server):
    """The exact sequence DonkeyEnv(level="generated_track", conf) sends, as donkeycar 5.4's DonkeyGymEnv uses
    it (conf with car_config and cam_config; sleeps shortened)."""
    gym = GymDonkeycarWire(server.port)
    assert gym.next()["msg_type"] == "scene_selection_ready"  # on_scene_selection_ready -> get_scene_names
    gym.send({"msg_type": "get_scene_names"})
    names = gym.wait("scene_names")["scene_names"]
    assert "generated_track" in names  # else gym-donkeycar raises ValueError
    gym.send({"msg_type": "load_scene", "scene_name": "generated_track"})
    gym.wait("car_loaded")
    # on_car_loaded: send_config() blocking sends first, then the queued hand-brake control
    gym.send(
        {
            "msg_type": "car_config",
            "body_style": "donkey",
            "body_r": "255",
            "body_g": "72",
            "body_b": "0",
            "car_name": "me",
            "font_size": "100",
        }
    )
    gym.send(
        {
            "msg_type": "cam_config",
            "fov": "0",
            "fish_eye_x": "0.0",
            "fish_eye_y": "0.0",
            "img_w": "160",
            "img_h": "120",
            "img_d": "0",
            "img_enc": "JPG",
            "offset_x": "0.0",
            "offset_y": "0.0",
            "offset_z": "0.0",
            "rot_x": "0.0",
            "rot_y": "0.0",
            "rot_z": "0.0",
        }
    )
    gym.send({"msg_type": "control", "steering": "0", "throttle": "0", "brake": "1.0"})
    # DonkeyEnv.reset(): hand brake, reset_car, hand brake, then observe() waits for a telemetry
    gym.send({"msg_type": "control", "steering": "0", "throttle": "0", "brake": "1.0"})
    gym.send({"msg_type": "reset_car"})
    time.sleep(0.2)
    gym.send({"msg_type": "control", "steering": "0", "throttle": "0", "brake": "1.0"})
    first = gym.wait("telemetry")
    # DonkeyGymEnv.update(): step(action) = send_control(str(steering), str(throttle)) then observe()
    for steering, throttle in [(np.float32(0.0), np.float32(0.4))] * 10 + [(0.1, 0.4)] * 5:
        gym.send(
            {"msg_type": "control", "steering": str(steering), "throttle": str(throttle), "brake": "0.0"}
        )
        msg = gym.wait("telemetry")
        # DonkeyUnitySimHandler.on_telemetry reads these keys as numbers
        obs = np.asarray(Image.open(io.BytesIO(base64.b64decode(msg["image"]))))
        assert obs.shape == (120, 160, 3) and obs.dtype == np.uint8
        x, y, z, speed, cte = msg["pos_x"], msg["pos_y"], msg["pos_z"], msg["speed"], msg["cte"]
        assert all(
            isinstance(v, float) for v in (x, y, z, speed, cte, msg["vel_x"], msg["vel_y"], msg["vel_z"])
        )
        assert {"gyro_x", "accel_x", "roll", "pitch", "yaw"} <= set(msg) and "lidar" not in msg
        assert msg["hit"] == "none" and math.fabs(cte) < 8.0  # max_cte default: not game over
    assert msg["speed"] > 0.3 and math.dist((x, z), (first["pos_x"], first["pos_z"])) > 0.1
    gym.sock.close()


def test_serving_process_stops_cleanly_on_sigterm():
    """`pitlane twin serve` serves until SIGTERM, then exits 0; it says on stdout which port it listens on."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "pitlane", "twin", "serve", "--port", "0", "--quiet"],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    try:
        line = proc.stdout.readline()
        assert line.startswith("listening on 127.0.0.1:"), line
        c = RawClient(int(line.rsplit(":", 1)[1]))
        assert c.recv()["msg_type"] == "scene_selection_ready"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
        with pytest.raises(ConnectionError):
            c.drain(2.0)
    finally:
        proc.kill()
        proc.wait()
