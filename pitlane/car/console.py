"""pitlane's operator console: the car app's web page (camera, driving, mode, recording, stop, telemetry),
for operators who log in.

donkeycar 5.4.0's wheel ships its controller's HTML without the `templates/static/` scripts and styles, so
its page cannot drive and its `/video` answers 500. `WebController` keeps donkeycar's part contract and its
HTTP/websocket contract (POST /drive, /wsDrive, /video MJPEG, /wsCalibrate on WEB_CONTROL_PORT) for clients
that log in, and serves pitlane's own page and assets (pitlane/car/console_static, package data, no CDN: it
works offline on the car's own network). Unlike donkeycar's it trusts no one on the network: the handlers
(`pitlane.car.console_handlers`) check who calls (`pitlane.car.console_auth`), every message is checked and
the wheel decides who drives (`pitlane.car.console_control`). `/status` is what the page polls: the
telemetry that `ConsoleTelemetry`, the last part of the loop, collects from vehicle memory.
"""

from __future__ import annotations

import asyncio
import logging
import math
import secrets
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import tornado.web
from donkeycar.parts.web_controller import web

from pitlane.car.console_auth import (
    ConsoleSettings,
    LoginLimiter,
    Session,
    Sessions,
    default_host_names,
    host_allowed,
    token_matches,
)
from pitlane.car.console_control import WEB_BUTTONS, DriveMessage, Resume, Wheel, parse_drive
from pitlane.car.console_handlers import MJPEG_BOUNDARY, HostRefused, handlers, log_request
from pitlane.car.settings import DRIVE_MODES
from pitlane.pilots.watchdog import OPERATOR_STOP

logger = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).with_name("console_static")
# the model manager's outputs (pitlane.car.model_manager.MEMORY_KEYS)
MODEL_KEYS = ("model/digest", "model/serial", "model/state", "model/error", "model/freshness")
IDLE_CONNECTION_S = 60.0  # [s] an HTTP connection with no request for this long is closed
BODY_TIMEOUT_S = 10.0  # [s] a request body that takes longer to arrive is dropped (a trickling client)
__all__ = ["MJPEG_BOUNDARY", "ConsoleTelemetry", "WebController"]


def _placeholder(height: int = 120, width: int = 160) -> np.ndarray:
    """A dark frame with a light cross: 'no camera frame yet' (donkeycar reads a JPEG the wheel lacks)."""
    img = np.full((height, width, 3), 40, dtype=np.uint8)
    rows = np.arange(height)
    cols = (rows * (width - 1) / (height - 1)).astype(int)
    img[rows, cols] = img[rows, width - 1 - cols] = 110
    return img


class WebController(web.LocalWebController):
    """donkeycar's web controller part (same inputs and outputs, plus the watchdog's reason; the same
    HTTP/websocket contract for clients that log in) serving pitlane's console. Unlike donkeycar's it

    - binds a chosen address (127.0.0.1 unless told otherwise) and port (0: any; `bound_port` says which),
      answers only to allowed Host names, bounds request bodies, websocket messages and video viewers,
    - lets one logged-in client drive at a time; every client may STOP (latched); resume only by the
      clients that stopped, or the physical controller (the watchdog resuming without the console),
    - runs without tornado's debug mode: donkeycar's debug=True turns on tornado's autoreload, which
      re-executes the whole car process when any Python source file changes,
    - stops its server and event loop on `shutdown`, so a car app can start again in the same process.
    """

    def __init__(
        self,
        port: int = 8887,
        mode: str = "user",
        address: str = "127.0.0.1",
        stop_button: str = "w1",
        resume_button: str = "w2",
        settings: ConsoleSettings | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        # Same state as LocalWebController.__init__, minus settings={'debug': True}.
        self.static_file_path = str(STATIC_DIR)
        self.static_dir = STATIC_DIR
        self.angle = 0.0
        self.throttle = 0.0
        self.mode = mode
        self.mode_latch: str | None = None
        self.recording = False
        self.recording_latch: bool | None = None
        self.buttons: dict = {}
        self.port = port
        self.address = address
        self.num_records = 0
        self.wsclients: list = []
        self.img_arr = None
        self.placeholder = _placeholder()
        self.telemetry: dict = {}  # written by ConsoleTelemetry each loop, read by /status
        self.console_buttons = {"stop": stop_button, "resume": resume_button}
        self.known_buttons = tuple(dict.fromkeys((*WEB_BUTTONS, stop_button, resume_button)))
        self.loop = None
        self.server = None
        self.bound_port: int | None = None
        self.ready = threading.Event()
        # who may do what: a random token when none is given (a console nobody can log in to is safe)
        self.console = settings or ConsoleSettings(token=secrets.token_urlsafe(24))
        self.allowed_hosts = default_host_names() + self.console.allowed_hosts
        self.clock = clock
        self.lock = threading.RLock()  # handlers (tornado's thread) and run_threaded (the drive loop)
        self.wheel = Wheel(self.console.driver_idle_s)
        self.sessions = Sessions(
            self.console.session_ttl_s, self.console.max_sessions, clock, on_end=self._session_ended
        )
        self.logins = LoginLimiter()
        self.viewers = 0
        self._jpeg: tuple[Any, bytes] = (None, b"")
        tornado.web.Application.__init__(
            self,
            handlers(self.static_file_path),
            cookie_secret=secrets.token_bytes(32),  # sessions end with the process: log in again
            websocket_max_message_size=self.console.max_message_bytes,
            websocket_ping_interval=self.console.link_timeout_s / 3,
            websocket_ping_timeout=self.console.link_timeout_s,
            log_function=log_request,
        )

    def find_handler(self, request, **kwargs):
        """Every request, whatever its path, first passes the Host allow-list (DNS rebinding)."""
        if not host_allowed(request.host, self.allowed_hosts):
            return self.get_handler_delegate(request, HostRefused)
        return super().find_handler(request, **kwargs)

    def update(self) -> None:
        asyncio.set_event_loop(asyncio.new_event_loop())
        loop = web.IOLoop.current()
        limit = self.console.max_body_bytes
        try:
            server = self.listen(
                self.port,
                address=self.address,
                max_body_size=limit,
                max_buffer_size=max(4 * limit, 256 * 1024),
                idle_connection_timeout=IDLE_CONNECTION_S,
                body_timeout=BODY_TIMEOUT_S,
            )
        except OSError as exc:  # one line, not a thread traceback: the car drives on without its console
            logger.error(
                "operator console cannot listen on port %s at %s: %s (driving on without it; set "
                "WEB_CONTROL_PORT or --web-port, WEB_CONTROL_ADDRESS)",
                self.port,
                self.address or "every address",
                exc.strerror or exc,
            )
            self.ready.set()
            return
        self.loop, self.server = loop, server
        self.bound_port = next(iter(server._sockets.values())).getsockname()[1]
        shown = self.address if self.address not in ("", "0.0.0.0", "::") else "localhost"
        logger.info(
            "operator console: http://%s:%d/drive (log in with the console token)", shown, self.bound_port
        )
        self.ready.set()
        loop.start()

    # ---- who calls, who drives (called by the handlers on tornado's thread) ------------------------
    def check_token(self, given: str, address: str) -> bool:
        now = self.clock()
        if not self.logins.allowed(address, now):
            return False
        if token_matches(given, self.console.token):
            return True
        self.logins.failed(address, now)
        logger.warning("console: wrong token from %s", address)
        return False

    def login_allowed(self, address: str) -> bool:
        return self.logins.allowed(address, self.clock())

    def handle(self, session: Session, data: dict, calibrate: bool = False) -> str | None:
        """Apply a decoded drive message from `session`; the refusal its sender is told, or None.
        Raises MessageError (nothing changed) when a field is malformed."""
        message = parse_drive(data, modes=DRIVE_MODES, buttons=self.known_buttons, calibrate=calibrate)
        with self.lock:
            return self._apply(session, message)

    def _apply(self, session: Session, msg: DriveMessage) -> str | None:
        stop, resume = self.console_buttons["stop"], self.console_buttons["resume"]
        client = session.id
        if stop in msg.pressed:  # STOP wins over anything else in the message, from any client
            self.wheel.stop(client)
            self.throttle = 0.0
            self.buttons[stop] = True
            logger.warning("console: STOP by %s", session.label)
            return None
        if resume in msg.pressed:
            outcome = self.wheel.resume(client)
            if outcome is Resume.RESUMED:
                self.buttons[resume] = True
                logger.info("console: %s resumed", session.label)
            elif outcome is Resume.WAITING:
                return "your STOP is lifted; another client's STOP still holds the car"
            elif outcome is Resume.NOT_YOURS:
                who = ", ".join(self.sessions.label(c) for c in self.wheel.stoppers)
                return f"only who pressed STOP ({who}) or the car's own controller can resume"
            else:
                return "no STOP from the console holds the car"
        if msg.release and self.wheel.release(client):
            self._let_go(f"{session.label} released the wheel")
        if not msg.drives(stop, resume):
            return None
        if not self.wheel.take(client, self.clock()):
            driver = self.sessions.label(self.wheel.driver or "")
            return f"{driver} holds the wheel; you watch (STOP works for everyone)"
        if msg.angle is not None:
            self.angle = msg.angle
        if msg.throttle is not None:
            self.throttle = msg.throttle
        if msg.drive_mode is not None:  # latched: run_threaded would put memory's mode back otherwise
            self.mode = self.mode_latch = msg.drive_mode
        if msg.recording is not None:
            self.recording = self.recording_latch = msg.recording
        for button in msg.pressed:
            if button not in (stop, resume):
                self.buttons[button] = True
        return None

    def _let_go(self, why: str) -> None:
        """The driver is gone: the car must not keep its last throttle (a dead man's switch)."""
        self.angle = self.throttle = 0.0
        logger.info("console: %s; steering and throttle to 0", why)

    def wheel_view(self, session: Session) -> dict:
        with self.lock:
            driver, stoppers = self.wheel.driver, list(self.wheel.stoppers)
        return {
            "driver": self.sessions.label(driver) if driver else None,
            "you_drive": driver == session.id,
            "stopped_by": [self.sessions.label(c) for c in stoppers],
            "you_stopped": session.id in stoppers,
        }

    def status(self, session: Session) -> dict:
        return {
            **self.telemetry,
            "mode": self.mode,
            "recording": bool(self.recording),
            "num_records": int(self.num_records or 0),
            "user": {"angle": self.angle, "throttle": self.throttle},
            "buttons": self.console_buttons,
            "console": {
                "client": session.label,
                "user_max_throttle": self.console.user_max_throttle,
                **self.wheel_view(session),
            },
        }

    def socket_opened(self, handler) -> None:
        self.wsclients.append(handler)
        with self.lock:
            self.wheel.connect(handler.session.id)

    def socket_closed(self, handler) -> None:
        if handler in self.wsclients:
            self.wsclients.remove(handler)
        with self.lock:
            if self.wheel.disconnect(handler.session.id):
                self._let_go(f"{handler.session.label} left")
        if handler.via == "query":  # a ?token= session lives as long as its socket
            self.sessions.end(handler.session.id)

    def end_session(self, session: Session) -> None:
        self.sessions.end(session.id)

    def _session_ended(self, session: Session) -> None:
        with self.lock:
            driving = self.wheel.driver == session.id
            self.wheel.forget(session.id)
            if driving:
                self._let_go(f"{session.label} logged out")

    def jpeg(self, img) -> bytes:
        """The frame as JPEG, encoded once however many viewers watch."""
        cached, data = self._jpeg
        if cached is not img:
            data = web.utils.arr_to_binary(img)
            self._jpeg = (img, data)
        return data

    # ---- the drive loop ------------------------------------------------------------------------------
    def run_threaded(self, img_arr=None, num_records=0, mode=None, recording=None, watchdog_reason=None):
        with self.lock:
            dropped = self.wheel.expire(self.clock())
            if dropped is not None:
                self._let_go(f"{self.sessions.label(dropped)} sent nothing for {self.wheel.idle_s:g} s")
            # the watchdog saw last loop's buttons: no operator stop there now means it was resumed by the
            # physical controller, not the console (unless a STOP leaves this very loop)
            resumed = watchdog_reason is not None and OPERATOR_STOP not in str(watchdog_reason).split(",")
            if self.buttons.get(self.console_buttons["stop"]):
                self.throttle = 0.0  # the stop button holds the car even if a drive message raced it
            elif resumed and self.wheel.stoppers:
                self.wheel.clear_stops()
            return super().run_threaded(img_arr, num_records, mode, recording)

    def run(self, img_arr=None, num_records=0, mode=None, recording=None, watchdog_reason=None):
        return self.run_threaded(img_arr, num_records, mode, recording, watchdog_reason)

    def shutdown(self) -> None:
        loop = self.loop
        if loop is None:
            return

        def stop() -> None:
            if self.server is not None:
                self.server.stop()
            loop.stop()

        loop.add_callback(stop)


def _number(value) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


class ConsoleTelemetry:
    """The last part of the loop: what the console shows, from vehicle memory and the parts it knows.

    inputs: steering, throttle, watchdog/stopped, watchdog/reason, pos/speed, pos/cte, then MODEL_KEYS.
    Loop rate is measured here (an exponential average of the period); pilot latency is the pilot part's
    `latency_s` (SafePilot times each inference); speed, CTE and lap times come from the twin part.
    """

    INPUTS = [
        "steering",
        "throttle",
        "watchdog/stopped",
        "watchdog/reason",
        "pos/speed",
        "pos/cte",
        *MODEL_KEYS,
    ]

    def __init__(
        self, web_controller: WebController, *, profile: str, model: str | None, twin=None, pilot=None
    ):
        self.web = web_controller
        self.profile, self.model = profile, model
        self.twin, self.pilot = twin, pilot
        self.clock = time.monotonic
        self._last_s: float | None = None
        self._period_s: float | None = None

    def run(self, steering, throttle, stopped, reason, speed, cte, *model_values) -> None:
        now = self.clock()
        if self._last_s is not None:
            period = now - self._last_s
            self._period_s = period if self._period_s is None else 0.9 * self._period_s + 0.1 * period
        self._last_s = now
        twin_t = getattr(self.twin, "telemetry", None) or {}
        if speed is None:
            speed = twin_t.get("speed")
        if cte is None:
            cte = twin_t.get("cte")
        latency = getattr(self.pilot, "latency_s", None)
        model: dict[str, Any] = {"file": self.model}
        for key, value in zip(MODEL_KEYS, model_values, strict=True):
            if value is not None:  # JSON-safe whatever the model manager put in memory
                model[key.split("/", 1)[1]] = (
                    value if isinstance(value, str | int | float | bool) else str(value)
                )
        self.web.telemetry = {
            "profile": self.profile,
            "steering": _number(steering),
            "throttle": _number(throttle),
            "watchdog": {"stopped": bool(stopped), "reason": reason or ""},
            "speed_m_s": _number(speed),
            "cte_m": _number(cte),
            "laps": self.twin.laps_completed if self.twin is not None else None,
            "lap_times_s": list(self.twin.lap_times_s) if self.twin is not None else [],
            "twin_connected": self.twin.connected if self.twin is not None else None,
            "loop_hz": round(1.0 / self._period_s, 1) if self._period_s else None,
            "pilot_latency_ms": round(latency * 1000.0, 1) if latency is not None else None,
            "model": model,
        }
