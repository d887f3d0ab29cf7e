"""The conformance checker's raw connection, against a plain TCP peer that sends exactly the bytes a test
wants: newline framing, comma decimals, unusable lines kept for the verdict, a closed connection, nobody
listening, and paced sends."""

from __future__ import annotations

import json
import socket
import time

import pytest

from pitlane.errors import UserError
from pitlane.twin.conformance_wire import SEND_GAP_S, ConnectionClosed, RawWire, SimulatorUnreachable


@pytest.fixture
def pair():
    """(RawWire connected to a listening socket, the accepted server-side socket)."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        wire = RawWire("127.0.0.1", listener.getsockname()[1], timeout_s=5.0)
        peer, _ = listener.accept()
    yield wire, peer
    wire.sock.close()
    peer.close()


def test_messages_are_cut_at_newlines_and_bad_lines_are_kept(pair):
    wire, peer = pair
    peer.sendall(b'{"msg_type": "scene_selection_ready", "loaded": "1"}\n\nnot json\n')
    peer.sendall(b'{"msg_type": "telemetry", "speed": 1,5}\n{"msg_type": "car_lo')
    first = wire.next(time.monotonic() + 2.0)
    assert first is not None and first[1]["msg_type"] == "scene_selection_ready"
    second = wire.next(time.monotonic() + 2.0)
    assert second is not None and second[1]["speed"] == 1.5  # a comma decimal, mended as gym-donkeycar does
    assert len(wire.bad) == 1 and wire.received == 3
    assert wire.next(time.monotonic() + 0.2) is None  # half a message: no message yet
    hint = wire.hint()
    assert "without a terminating newline" in hint and "1 unusable message(s)" in hint
    peer.sendall(b'aded"}\n')
    got = wire.wait_for("car_loaded", timeout_s=2.0)
    assert got is not None and got[1] == {"msg_type": "car_loaded"}


def test_waiting_notes_what_arrived_instead(pair):
    wire, peer = pair
    peer.sendall(b'{"msg_type": "scene_names", "scene_names": []}\n{"msg_type": "telemetry"}\n')
    assert wire.wait_for("car_loaded", timeout_s=0.3) is None
    assert wire.seen == ["scene_names"]  # telemetry is expected anywhere, so never listed
    assert "got instead: scene_names" in wire.hint() and wire.seen == []


def test_telemetry_collects_every_frame_of_a_window(pair):
    wire, peer = pair
    peer.sendall(b"".join(b'{"msg_type": "telemetry", "time": %d}\n' % i for i in range(5)))
    frames = wire.telemetry(0.3)
    assert [m["time"] for _, m in frames] == [0, 1, 2, 3, 4]
    assert all(t0 <= t1 for (t0, _), (t1, _) in zip(frames, frames[1:], strict=False))


def test_sends_are_json_objects_paced_like_gym_donkeycar(pair):
    wire, peer = pair
    t0 = time.monotonic()
    for i in range(3):
        wire.send({"msg_type": "control", "steering": str(i)})
    assert time.monotonic() - t0 >= 2 * SEND_GAP_S
    peer.settimeout(2.0)
    data = b""
    while data.count(b"}") < 3:
        data += peer.recv(4096)
    assert b"\n" not in data  # back to back, no separator
    assert json.loads(data.split(b"}", 1)[0] + b"}") == {"msg_type": "control", "steering": "0"}


def test_a_closed_connection_is_its_own_error(pair):
    wire, peer = pair
    peer.close()
    with pytest.raises(ConnectionClosed, match="closed the connection"):
        wire.next(time.monotonic() + 2.0)


def test_nobody_listening_is_one_clear_user_error():
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]
    with pytest.raises(SimulatorUnreachable, match=f"nothing answers at 127.0.0.1:{port}") as err:
        RawWire("127.0.0.1", port, timeout_s=1.0)
    assert isinstance(err.value, UserError) and "pitlane twin serve" in str(err.value)
