"""The blocking protocol client, against the real twin server (and against servers that misbehave)."""

from __future__ import annotations

import socket
import threading

import numpy as np
import pytest

from pitlane.errors import UserError
from pitlane.twin.client import TwinClient, TwinClientError
from pitlane.twin.server import TwinServer


@pytest.fixture(scope="module")
def server():
    srv = TwinServer(port=0, stream_hz=20.0).start()
    yield srv
    srv.stop()


def test_session_steps_synchronously_and_decodes_rgb_frames(server):
    with TwinClient.session(port=server.port, scene="generated_track", time_step_s=0.1) as sim:
        assert sim.protocol_version() == "2"
        first = sim.step(0.0, 0.5)
        frame = sim.step(0.0, 0.5)
        assert frame.image.shape == (120, 160, 3) and frame.image.dtype == np.uint8
        assert frame.time == pytest.approx(0.2) and frame.speed > first.speed > 0.0
        assert frame.hit == "none" and abs(frame.cte) < 0.05 and len(frame.pos) == 3
        assert "image" not in frame.data and frame.data["totalNodes"] > 100
        assert [e["msg_type"] for e in sim.events] == ["collision_with_starting_line"]  # left the start line
        reset = sim.reset_car()
        assert reset is not None and reset.time == 0.0 and reset.speed == 0.0


def test_cam_config_and_asynchronous_telemetry(server):
    with TwinClient.session(
        port=server.port,
        scene="warehouse",
        synchronous=False,
        cam_config={"img_w": 64, "img_h": 48, "fov": 90},
    ) as sim:
        sim.control(0.1, 0.4)
        frames = [sim.telemetry(timeout_s=2.0) for _ in range(3)]
        assert all(f.image.shape == (48, 64, 3) for f in frames)
        assert frames[2].time > frames[0].time
        with pytest.raises(TwinClientError, match="needs synchronous mode"):
            sim.step(0.0, 0.1)


def test_scene_names_menu_round_trip_and_node_position(server):
    with TwinClient(port=server.port) as sim:
        names = sim.scene_names()
        assert "generated_track" in names and "mini_monaco" in names
        sim.load_scene("mini_monaco")
        node = sim.node_position(3)
        assert node["index"] == 3
        sim.exit_scene()
        sim.load_scene("circuit_launch")


def test_unknown_scene_is_a_clear_error(server):
    with (
        TwinClient(port=server.port) as sim,
        pytest.raises(TwinClientError, match="no scene 'moon'.*generated_track"),
    ):
        sim.load_scene("moon")


def test_nothing_listening_is_a_user_error():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    with pytest.raises(UserError, match=f"cannot connect to the simulator at 127.0.0.1:{port}.*twin serve"):
        TwinClient(port=port, timeout_s=2.0)


def _odd_server(behaviour) -> tuple[int, threading.Thread]:
    """A one-connection server that does `behaviour(conn)`: for clients meeting simulators that misbehave."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)

    def run():
        conn, _ = listener.accept()
        behaviour(conn)
        listener.close()

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return listener.getsockname()[1], t


def test_silent_simulator_times_out_with_what_was_awaited():
    done = threading.Event()
    port, t = _odd_server(lambda conn: (done.wait(5), conn.close()))
    with pytest.raises(TwinClientError, match="no scene_selection_ready .* within 0.3 s"):
        TwinClient(port=port, timeout_s=0.3)
    done.set()
    t.join(5)


def test_simulator_hanging_up_or_sending_garbage_is_a_clear_error():
    port, t = _odd_server(
        lambda conn: (conn.sendall(b'{"msg_type": "scene_selection_ready"}\n'), conn.close())
    )
    sim = TwinClient(port=port, timeout_s=2.0)
    with pytest.raises(TwinClientError, match="closed the connection|went away"):
        sim.scene_names()
    t.join(5)
    port, t = _odd_server(lambda conn: (conn.sendall(b"this is not json\n"), conn.recv(10), conn.close()))
    with pytest.raises(TwinClientError, match="malformed JSON"):
        TwinClient(port=port, timeout_s=2.0)
    t.join(5)
