"""One client's session of the twin server, driven message by message over a real socket pair: the menu,
loading a scene, synchronous stepping, messages that need a car, the camera limit, leaving the scene.

The server's own tests (test_server*.py) cover the read loop, the limits and many clients over TCP; these
call `ClientSession.handle` directly, so each answer is checked against exactly the message that caused it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest

from pitlane.twin.limits import FairPool, ServerLimits
from pitlane.twin.session import SCENE_ONLY, ClientSession

SCENE = "generated_track"


@dataclass
class Host:
    """What a session needs of its server: settings, a log and the shared worker pool (a real one)."""

    limits: ServerLimits = field(default_factory=ServerLimits)
    stream_hz: float = 20.0
    seed: int = 0
    log: logging.Logger = field(default_factory=lambda: logging.getLogger("pitlane.twin.server"))
    pool: FairPool = field(default_factory=lambda: FairPool(1))


class Peer:
    """The client's end of the socket: newline-framed JSON, as gym-donkeycar reads it."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock, self.buf = sock, b""
        sock.setblocking(False)

    def messages(self) -> list[dict]:
        """Everything the session has sent so far."""
        while True:
            try:
                chunk = self.sock.recv(1 << 20)
            except BlockingIOError:
                break
            if not chunk:
                break
            self.buf += chunk
        *lines, self.buf = self.buf.split(b"\n")
        return [json.loads(line) for line in lines if line.strip()]


def run(test: Callable[[ClientSession, Peer], object], **host: object) -> None:
    async def main() -> None:
        ours, theirs = socket.socketpair()
        reader, writer = await asyncio.open_connection(sock=ours)
        server = Host(**host)  # type: ignore[arg-type]
        session = ClientSession(server, 1, reader, writer)
        try:
            await test(session, Peer(theirs))  # type: ignore[misc]
        finally:
            session.close()
            writer.close()
            theirs.close()
            server.pool.close()

    asyncio.run(main())


async def settle(session: ClientSession) -> None:
    await session.writer.drain()
    await asyncio.sleep(0.05)


def test_load_scene_answers_car_loaded_and_synchronous_steps_answer_one_telemetry_each():
    async def test(session: ClientSession, peer: Peer) -> None:
        await session.handle({"msg_type": "load_scene", "scene_name": SCENE})
        await session.handle({"msg_type": "step_mode", "step_mode": "synchronous", "time_step": "0.1"})
        await settle(session)
        assert [m["msg_type"] for m in peer.messages() if m["msg_type"] != "telemetry"] == ["car_loaded"]
        assert session.scene == SCENE and session.synchronous and session.stream is None
        for _ in range(3):
            await session.handle(
                {"msg_type": "control", "steering": "0.0", "throttle": "0.5", "brake": "0.0"}
            )
        await settle(session)
        got = [m for m in peer.messages() if m["msg_type"] == "telemetry"]
        assert len(got) == 3  # exactly one per control, nothing streamed in between
        assert [round(m["time"], 3) for m in got] == pytest.approx([0.1, 0.2, 0.3], abs=1e-6)
        assert got[-1]["speed"] > 0.0 and isinstance(got[-1]["image"], str)

    run(test)


def test_a_message_that_needs_a_car_is_warned_about_and_ignored(caplog):
    async def test(session: ClientSession, peer: Peer) -> None:
        for kind in sorted(SCENE_ONLY):
            await session.handle({"msg_type": kind})
        await session.handle({"msg_type": "no_such_message"})
        await settle(session)
        assert peer.messages() == [] and session.sim is None
        assert session.warnings.total == len(SCENE_ONLY) + 1

    with caplog.at_level(logging.WARNING, logger="pitlane.twin.server"):
        run(test)
    assert "control needs a loaded scene (send load_scene first); ignored" in caplog.text
    # 13 warnings: the first ServerLimits.log_lines (10) logged, the rest summed up when the session closes
    assert "unknown msg_type" not in caplog.text and "3 more warnings suppressed" in caplog.text


def test_an_unknown_scene_is_answered_with_the_scene_list():
    async def test(session: ClientSession, peer: Peer) -> None:
        await session.handle({"msg_type": "load_scene", "scene_name": "moon"})
        await settle(session)
        (answer,) = peer.messages()
        assert answer["msg_type"] == "scene_names" and SCENE in answer["scene_names"]
        assert session.sim is None

    run(test)


def test_a_camera_over_the_limit_is_refused_and_the_camera_kept(caplog):
    async def test(session: ClientSession, peer: Peer) -> None:
        await session.handle({"msg_type": "load_scene", "scene_name": SCENE})
        before = session.camera
        await session.handle({"msg_type": "cam_config", "img_w": "640", "img_h": "480"})
        assert session.camera == before
        await session.handle({"msg_type": "cam_config", "img_w": "80", "img_h": "60"})
        assert (session.camera.img_w, session.camera.img_h) == (80, 60)
        assert session.car.render().shape == (60, 80, 3)

    with caplog.at_level(logging.WARNING, logger="pitlane.twin.server"):
        run(test, limits=ServerLimits(max_camera_pixels=320 * 240))
    assert "over this twin's limit of 76800" in caplog.text


def test_exit_scene_returns_to_the_menu():
    async def test(session: ClientSession, peer: Peer) -> None:
        await session.handle({"msg_type": "load_scene", "scene_name": SCENE})
        assert session.stream is not None  # a new car streams, as in the Unity sim
        await session.handle({"msg_type": "exit_scene"})
        await settle(session)
        kinds = [m["msg_type"] for m in peer.messages() if m["msg_type"] != "telemetry"]
        assert kinds == ["car_loaded", "scene_selection_ready"]
        assert session.sim is None and session.scene is None and session.stream is None

    run(test)
