"""The simulator protocol's client side, in one place: the connection (`Wire`), the `control` message, and a
small blocking client (`TwinClient`) for a DonkeyCar simulator (the twin or the Unity sim).

`Wire` and `control_message` are shared by the blocking client, the car app's threaded `TwinPart` and the
protocol benchmark, so a protocol change is one edit here. (The conformance checker in `conformance.py`
stays a separate client on purpose: it is written from docs/sim-protocol.md, not from this code, so it can
catch a mistake shared by the twin and this client. So does tests/spec_client.py.)

The blocking client sends what gym-donkeycar sends (string values), reads newline-terminated JSON, and decodes camera frames
to RGB arrays. Every wait has a timeout and fails with a TwinClientError that says what did not arrive.

    with TwinClient.session(synchronous=True) as sim:  # 127.0.0.1, protocol.DEFAULT_PORT
        frame = sim.step(steering=0.0, throttle=0.3)
        frame.image.shape, frame.cte, frame.speed
"""

from __future__ import annotations

import socket
import threading
import time
from collections import deque
from dataclasses import dataclass

import numpy as np

from pitlane.errors import UserError
from pitlane.twin import protocol as P
from pitlane.twin.scenes import DEFAULT_SCENE
from pitlane.twin.world import CONTROL_PERIOD_S, HIT_NONE

READ_CHUNK = 1 << 18  # [bytes] one recv


def control_message(steering: float, throttle: float, brake: float = 0.0) -> dict:
    """The `control` message as gym-donkeycar sends it (string values): the one spelling of it in pitlane."""
    return {"msg_type": "control", "steering": str(steering), "throttle": str(throttle), "brake": str(brake)}


def connect(host: str, port: int, timeout_s: float) -> socket.socket:
    """A TCP connection to the simulator, Nagle off (every control is one small message); OSError if none."""
    sock = socket.create_connection((host, int(port)), timeout=timeout_s)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


class WireClosed(ConnectionError):
    """The simulator closed the connection (an orderly end of stream)."""


class Wire:
    """One connection's bytes: JSON-line sends (thread-safe) and reads cut into messages by the protocol's
    `MessageSplitter` (bad messages come back as `ProtocolError`s for the caller to judge)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.splitter = P.MessageSplitter()
        self._send_lock = threading.Lock()

    def send(self, msg: dict) -> None:
        """Raises OSError when the connection is gone."""
        data = P.encode_message(msg)
        with self._send_lock:
            self.sock.sendall(data)

    def read(self, timeout_s: float | None) -> list[dict | P.ProtocolError]:
        """What one recv brings (possibly nothing yet); TimeoutError when nothing arrives in time,
        WireClosed when the simulator closed the connection, OSError when it was lost."""
        self.sock.settimeout(timeout_s)
        data = self.sock.recv(READ_CHUNK)
        if not data:
            raise WireClosed("the simulator closed the connection")
        return self.splitter.feed(data)

    def close(self) -> None:
        self.sock.close()


class TwinClientError(UserError):
    """The simulator could not be reached, went away, or did not answer as the protocol says."""


@dataclass(frozen=True)
class TelemetryFrame:
    """One `telemetry` message: the decoded camera frame and the other keys as sent."""

    image: np.ndarray  # (img_h, img_w, 3) uint8 RGB
    data: dict  # every key but "image"

    @property
    def cte(self) -> float:
        return float(self.data.get("cte", 0.0))

    @property
    def speed(self) -> float:
        return float(self.data.get("speed", 0.0))

    @property
    def hit(self) -> str:
        return str(self.data.get("hit", HIT_NONE))

    @property
    def time(self) -> float:
        return float(self.data.get("time", 0.0))

    @property
    def pos(self) -> tuple[float, float, float]:
        d = self.data
        return float(d.get("pos_x", 0.0)), float(d.get("pos_y", 0.0)), float(d.get("pos_z", 0.0))


class TwinClient:
    """One connection (one car). Connecting waits for the simulator's `scene_selection_ready`."""

    def __init__(self, host: str = "127.0.0.1", port: int = P.DEFAULT_PORT, *, timeout_s: float = 10.0):
        self.host, self.port, self.timeout_s = host, int(port), float(timeout_s)
        self.events: list[dict] = []  # non-telemetry messages that arrived while waiting for something else
        self.synchronous = False
        self._pending: deque[dict | P.ProtocolError] = deque()  # messages read but not yet returned
        try:
            self.wire = Wire(connect(host, self.port, self.timeout_s))
        except OSError as e:
            raise TwinClientError(
                f"cannot connect to the simulator at {host}:{port}: {e.strerror or e} "
                "(is `pitlane twin serve` running?)"
            ) from None
        self.wait_for("scene_selection_ready")

    # ---- plumbing ----------------------------------------------------------------------------------
    def send(self, msg: dict) -> None:
        try:
            self.wire.send(msg)
        except OSError as e:
            raise TwinClientError(f"simulator at {self.host}:{self.port} went away: {e}") from None

    def receive(self, timeout_s: float | None = None) -> dict:
        """The next message (any type); TimeoutError when none arrives in time (`wait_for` words it)."""
        deadline = time.monotonic() + (self.timeout_s if timeout_s is None else timeout_s)
        while True:
            while self._pending:
                msg = self._pending.popleft()
                if isinstance(msg, P.ProtocolError):
                    raise TwinClientError(f"simulator sent malformed JSON ({msg})") from None
                return msg
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError
            try:
                self._pending.extend(self.wire.read(left))
            except TimeoutError:
                raise
            except WireClosed:
                raise TwinClientError(f"simulator at {self.host}:{self.port} closed the connection") from None
            except OSError as e:  # reset, aborted
                raise TwinClientError(f"simulator at {self.host}:{self.port} went away: {e}") from None

    def wait_for(self, *msg_types: str, timeout_s: float | None = None) -> dict:
        """Read until a message of one of `msg_types` arrives; telemetry in between is dropped, other
        messages are kept in `events`."""
        timeout = self.timeout_s if timeout_s is None else timeout_s
        deadline = time.monotonic() + timeout
        while True:
            try:
                msg = self.receive(max(0.0, deadline - time.monotonic()))
            except TimeoutError:
                raise TwinClientError(
                    f"no {' or '.join(msg_types)} from the simulator at {self.host}:{self.port} "
                    f"within {timeout:g} s"
                ) from None
            if msg["msg_type"] in msg_types:
                return msg
            if msg["msg_type"] != "telemetry":
                self.events.append(msg)

    def close(self) -> None:
        self.wire.close()

    def __enter__(self) -> TwinClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ---- menu --------------------------------------------------------------------------------------
    def protocol_version(self) -> str:
        self.send({"msg_type": "get_protocol_version"})
        return str(self.wait_for("protocol_version")["version"])

    def scene_names(self) -> list[str]:
        self.send({"msg_type": "get_scene_names"})
        return list(self.wait_for("scene_names")["scene_names"])

    def load_scene(self, name: str) -> None:
        """Load a scene and wait for `car_loaded`; the twin answers an unknown name with the valid ones."""
        self.send({"msg_type": "load_scene", "scene_name": name})
        msg = self.wait_for("car_loaded", "scene_names")
        if msg["msg_type"] == "scene_names":
            raise TwinClientError(
                f"the simulator has no scene {name!r}; it has: {', '.join(msg['scene_names'])}"
            )
        self.synchronous = False

    def exit_scene(self) -> None:
        self.send({"msg_type": "exit_scene"})
        self.wait_for("scene_selection_ready")

    def quit(self) -> None:
        """`quit_app`: the twin closes this connection only."""
        self.send({"msg_type": "quit_app"})
        self.close()

    # ---- car ---------------------------------------------------------------------------------------
    def car_config(
        self,
        body_style: str = "donkey",
        body_rgb=(255, 72, 0),
        car_name: str = "pitlane",
        font_size: int = 100,
    ) -> None:
        r, g, b = body_rgb
        self.send(
            {
                "msg_type": "car_config",
                "body_style": body_style,
                "body_r": str(r),
                "body_g": str(g),
                "body_b": str(b),
                "car_name": car_name,
                "font_size": str(font_size),
            }
        )

    def cam_config(self, **fields) -> None:
        """fov, img_w, img_h, img_d, img_enc, offset_x/y/z, rot_x, ...; 0 means "keep"."""
        self.send({"msg_type": "cam_config", **{k: str(v) for k, v in fields.items()}})
        self.sync()

    def sync(self) -> None:
        """Wait until the simulator has handled everything sent so far (a protocol_version round trip);
        telemetry that was in flight is dropped."""
        self.protocol_version()

    def step_mode(self, synchronous: bool = True, time_step_s: float = CONTROL_PERIOD_S) -> None:
        self.send(
            {
                "msg_type": "step_mode",
                "step_mode": "synchronous" if synchronous else "asynchronous",
                "time_step": str(time_step_s),
            }
        )
        self.sync()
        self.synchronous = synchronous

    def control(self, steering: float, throttle: float, brake: float = 0.0) -> None:
        """Send a control without waiting (asynchronous mode)."""
        self.send(control_message(steering, throttle, brake))

    def telemetry(self, timeout_s: float | None = None) -> TelemetryFrame:
        """The next telemetry message, image decoded."""
        msg = self.wait_for("telemetry", timeout_s=timeout_s)
        image = P.decode_image(msg.pop("image"))
        return TelemetryFrame(image, msg)

    def step(self, steering: float, throttle: float, brake: float = 0.0) -> TelemetryFrame:
        """Synchronous mode: advance one time_step under this control and return its telemetry."""
        if not self.synchronous:
            raise TwinClientError("step() needs synchronous mode: call step_mode(True) first")
        self.control(steering, throttle, brake)
        return self.telemetry()

    def reset_car(self) -> TelemetryFrame | None:
        """Back to the start line; in synchronous mode returns the telemetry at the start."""
        self.send({"msg_type": "reset_car"})
        return self.telemetry() if self.synchronous else None

    def set_position(self, pos_x: float, pos_z: float, yaw_quaternion=None) -> None:
        msg = {"msg_type": "set_position", "pos_x": str(pos_x), "pos_y": "0.0", "pos_z": str(pos_z)}
        if yaw_quaternion is not None:
            msg.update({k: str(v) for k, v in zip(("Qx", "Qy", "Qz", "Qw"), yaw_quaternion, strict=True)})
        self.send(msg)

    def node_position(self, index: int) -> dict:
        self.send({"msg_type": "node_position", "index": str(index)})
        return self.wait_for("node_position")

    @classmethod
    def session(
        cls,
        host: str = "127.0.0.1",
        port: int = P.DEFAULT_PORT,
        scene: str = DEFAULT_SCENE,
        *,
        synchronous: bool = True,
        time_step_s: float = CONTROL_PERIOD_S,
        cam_config: dict | None = None,
        timeout_s: float = 10.0,
    ) -> TwinClient:
        """Connect, load `scene`, configure the camera and the step mode: ready to drive."""
        client = cls(host, port, timeout_s=timeout_s)
        try:
            client.load_scene(scene)
            client.car_config()
            if cam_config:
                client.cam_config(**cam_config)
            client.step_mode(synchronous, time_step_s)
        except BaseException:
            client.close()
            raise
        return client
