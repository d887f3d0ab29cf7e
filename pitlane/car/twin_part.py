"""The twin as a donkeycar part: camera frames and telemetry over the DonkeyCar simulator protocol.

`TwinPart` gives the same outputs as donkeycar's `DonkeyGymEnv` part (donkeycar/parts/dgym.py): the camera
frame, then with SIM_RECORD_LOCATION pos/pos_x, pos/pos_y, pos/pos_z, pos/speed, pos/cte, with
SIM_RECORD_GYROACCEL gyro/* and accel/*, with SIM_RECORD_VELOCITY vel/*; so a car app (and its tubs) look
the same whether frames come from gym-donkeycar or from pitlane. It needs no gym-donkeycar: it speaks the
protocol through pitlane's one protocol client (`pitlane.twin.client`: `Wire`, `control_message`) and works
against the Unity simulator too.

A background thread (donkeycar's threaded part `update`) connects, loads the scene, configures the camera
and reads telemetry; `controls_part()` sends the loop's controls in the same loop. When the twin is not
there or goes away, the part says so, keeps the last frame (so the watchdog sees it age and stops the car)
and reconnects every `retry_s` until it is back.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable

import numpy as np

from pitlane.errors import UserError
from pitlane.twin import protocol as P
from pitlane.twin.client import Wire, WireClosed, connect, control_message
from pitlane.twin.scenes import DEFAULT_SCENE
from pitlane.twin.world import HIT_NONE

logger = logging.getLogger(__name__)

READ_WAKE_S = 0.5  # [s] the reader wakes up this often to notice shutdown and silence


class TwinGone(ConnectionError):
    """The twin closed the connection or stopped answering."""


class UnknownScene(TwinGone):
    """The simulator answered load_scene with its scene names: it has no such scene."""


class TwinPart:
    """Threaded donkeycar part: outputs like DonkeyGymEnv; `controls_part()` sends steering/throttle/brake."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = P.DEFAULT_PORT,
        scene: str = DEFAULT_SCENE,
        *,
        image_w: int = 160,
        image_h: int = 120,
        car_config: dict | None = None,
        record_location: bool = False,
        record_gyroaccel: bool = False,
        record_velocity: bool = False,
        connect_timeout_s: float = 10.0,
        retry_s: float = 1.0,
        silence_timeout_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.host, self.port, self.scene = host, int(port), scene
        self.image_hw = (int(image_h), int(image_w))
        self._wrong_size = 0  # consecutive frames not of image_hw (sent before our cam_config took effect)
        self.cam_config = {
            "msg_type": "cam_config",
            "img_w": str(image_w),
            "img_h": str(image_h),
            "img_enc": "JPG",
        }
        self.car_config = {"msg_type": "car_config", **{k: str(v) for k, v in (car_config or {}).items()}}
        self.record_location, self.record_gyroaccel = record_location, record_gyroaccel
        self.record_velocity = record_velocity
        self.retry_s, self.silence_timeout_s, self.clock = retry_s, silence_timeout_s, clock
        self.frame: np.ndarray | None = None
        self.frame_time_s: float | None = None  # [s] clock reading when the newest frame arrived
        self.telemetry: dict = {}
        self.laps_completed = 0  # laps the twin reported (cross_start) since this part started
        self.lap_times_s: list[float] = []
        self.reconnects = 0
        self.off_track_events = 0  # telemetry `hit` turning from "none" to something (off the road, a wall)
        self.last_control: tuple[float, float, float] | None = None  # (steering, throttle, brake) last sent
        self.running = True
        self._wire: Wire | None = None
        self._connected = threading.Event()
        try:
            self._connect(connect_timeout_s)
        except UnknownScene as exc:
            raise UserError(str(exc)) from None
        except (OSError, TwinGone) as exc:
            logger.warning(
                "no twin at %s:%d yet (%s); the car stays stopped and keeps trying every %.0f s",
                host,
                self.port,
                exc,
                retry_s,
            )

    @classmethod
    def from_config(cls, cfg, clock: Callable[[], float] = time.monotonic) -> TwinPart:
        conf = dict(getattr(cfg, "GYM_CONF", {}))
        car = {k: conf[k] for k in ("body_style", "car_name", "font_size") if k in conf}
        if "body_rgb" in conf:
            car["body_r"], car["body_g"], car["body_b"] = conf["body_rgb"]
        return cls(
            cfg.SIM_HOST,
            cfg.SIM_PORT,
            cfg.SIM_SCENE,
            image_w=cfg.IMAGE_W,
            image_h=cfg.IMAGE_H,
            car_config=car,
            record_location=cfg.SIM_RECORD_LOCATION,
            record_gyroaccel=cfg.SIM_RECORD_GYROACCEL,
            record_velocity=cfg.SIM_RECORD_VELOCITY,
            connect_timeout_s=cfg.SIM_CONNECT_TIMEOUT_S,
            clock=clock,
        )

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    # ---- connection --------------------------------------------------------------------------------
    def _connect(self, timeout_s: float) -> None:
        """Connect, load the scene, configure car and camera, and wait for the first frame."""
        deadline = time.monotonic() + timeout_s
        wire = Wire(connect(self.host, self.port, max(0.1, timeout_s)))
        try:
            wire.send({"msg_type": "load_scene", "scene_name": self.scene})
            loaded = False
            while self.frame_time_s is None or not loaded:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TwinGone(f"no {'telemetry' if loaded else 'car_loaded'} within {timeout_s:.0f} s")
                try:
                    messages = wire.read(left)
                except WireClosed:
                    raise TwinGone("connection closed during the handshake") from None
                for msg in messages:
                    if isinstance(msg, P.ProtocolError):
                        continue
                    kind = msg["msg_type"]
                    if kind == "scene_names" and not loaded:
                        offers = ", ".join(map(str, msg.get("scene_names", [])))
                        raise UnknownScene(
                            f"the simulator at {self.host}:{self.port} has no scene "
                            f"{self.scene!r}; it offers {offers}"
                        )
                    if kind == "car_loaded" and not loaded:  # gym-donkeycar configures the car here too
                        loaded = True
                        wire.send(self.car_config)
                        wire.send(self.cam_config)
                    elif loaded:
                        self._handle(msg)
        except BaseException:
            wire.close()
            raise
        self._wire = wire
        self._connected.set()
        logger.info("twin connected at %s:%d, scene %s", self.host, self.port, self.scene)

    def _disconnect(self, why: str) -> None:
        was = self._connected.is_set()
        self._connected.clear()
        wire, self._wire = self._wire, None
        if wire is not None:
            with contextlib.suppress(OSError):
                wire.close()
        if was and self.running:
            logger.warning(
                "twin at %s:%d went away (%s): car stopped (throttle 0, no fresh frames); "
                "reconnecting every %.0f s",
                self.host,
                self.port,
                why,
                self.retry_s,
            )

    # ---- inbound -----------------------------------------------------------------------------------
    def _handle(self, msg: dict) -> None:
        kind = msg["msg_type"]
        if kind == "telemetry":
            image = msg.get("image")
            if isinstance(image, str):
                try:
                    frame = P.decode_image(image)
                except Exception as exc:  # a corrupt frame is skipped; the watchdog sees the age
                    logger.warning("twin sent an unreadable frame: %s", exc)
                    frame = None
                if frame is not None and frame.shape[:2] != self.image_hw:
                    self._wrong_size += 1
                    if self._wrong_size == 20:
                        logger.warning(
                            "the simulator sends %dx%d frames, not the %dx%d asked for in cam_config",
                            frame.shape[1],
                            frame.shape[0],
                            self.image_hw[1],
                            self.image_hw[0],
                        )
                elif frame is not None:
                    self._wrong_size = 0
                    self.frame = frame
                    self.frame_time_s = self.clock()
            hit = str(msg.get("hit", HIT_NONE))
            if hit != HIT_NONE and str(self.telemetry.get("hit", HIT_NONE)) == HIT_NONE:
                self.off_track_events += 1
                logger.warning("the car left the road (hit: %s)", hit)
            self.telemetry = msg
        elif kind == "cross_start":
            self.laps_completed += 1
            lap = msg.get("lap_time")
            if isinstance(lap, int | float):
                self.lap_times_s.append(float(lap))
            logger.info("lap %d completed (%.2f s)", self.laps_completed, float(lap or 0.0))

    def _read_until_gone(self) -> None:
        last_data = time.monotonic()
        while self.running:
            wire = self._wire
            if wire is None:
                raise TwinGone("not connected")
            try:
                messages = wire.read(READ_WAKE_S)
            except TimeoutError:
                if time.monotonic() - last_data > self.silence_timeout_s:
                    raise TwinGone(f"no data for {self.silence_timeout_s:.0f} s") from None
                continue
            except WireClosed:
                raise TwinGone("connection closed by the twin") from None
            last_data = time.monotonic()
            for msg in messages:
                if not isinstance(msg, P.ProtocolError):
                    self._handle(msg)

    def update(self) -> None:
        """The part's thread: read telemetry; when the twin goes away, reconnect until it is back."""
        lost_at: float | None = None
        while self.running:
            if not self.connected:
                try:
                    self._connect(timeout_s=max(2.0, self.retry_s))
                except (OSError, TwinGone) as exc:
                    if lost_at is None:
                        lost_at = time.monotonic()
                    logger.debug("twin reconnect failed: %s", exc)
                    time.sleep(self.retry_s)
                    continue
                if lost_at is not None:
                    self.reconnects += 1
                    logger.warning(
                        "twin back at %s:%d after %.1f s (reconnect %d); driving on",
                        self.host,
                        self.port,
                        time.monotonic() - lost_at,
                        self.reconnects,
                    )
                    lost_at = None
            try:
                self._read_until_gone()
            except (OSError, TwinGone) as exc:
                self._disconnect(str(exc) or type(exc).__name__)
                lost_at = time.monotonic()

    # ---- donkeycar part contract ---------------------------------------------------------------------
    def outputs(self) -> list:
        t = self.telemetry
        out: list = [self.frame]
        if self.record_location:
            out += [
                t.get("pos_x", 0.0),
                t.get("pos_y", 0.0),
                t.get("pos_z", 0.0),
                t.get("speed", 0.0),
                t.get("cte", 0.0),
            ]
        if self.record_gyroaccel:
            out += [t.get(k, 0.0) for k in ("gyro_x", "gyro_y", "gyro_z", "accel_x", "accel_y", "accel_z")]
        if self.record_velocity:
            out += [t.get(k, 0.0) for k in ("vel_x", "vel_y", "vel_z")]
        return out

    def run_threaded(self):
        out = self.outputs()
        return out[0] if len(out) == 1 else out

    run = run_threaded

    def send_control(self, steering, throttle, brake=0.0) -> bool:
        """Send one control message; False when not connected (the twin's car is gone anyway)."""
        wire = self._wire
        if wire is None:
            return False
        control = (float(steering or 0.0), float(throttle or 0.0), float(brake or 0.0))
        try:
            wire.send(control_message(*control))
            self.last_control = control
        except OSError as exc:
            self._disconnect(f"send failed: {exc}")
            return False
        return True

    def controls_part(self) -> TwinControls:
        return TwinControls(self)

    def shutdown(self) -> None:
        self.running = False
        if self._wire is not None:
            self.send_control(0.0, 0.0, 1.0)
        self._disconnect("shutdown")


class TwinControls:
    """The sending half of `TwinPart`, added after the watchdog so its controls reach the twin this loop."""

    def __init__(self, twin: TwinPart) -> None:
        self.twin = twin

    def run(self, steering, throttle, brake=None) -> None:
        self.twin.send_control(steering, throttle, brake)
