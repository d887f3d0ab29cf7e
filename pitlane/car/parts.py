"""donkeycar parts of the pitlane car app (besides the twin's, in `pitlane.car.twin_part`).

Small parts with donkeycar's `run()` / `run_threaded()` contract, so a car app (manage.py) wires them with
`Vehicle.add` exactly like donkeycar's own template parts (DriveMode, UserPilotCondition, ToggleRecording
in donkeycar/templates/complete.py, which are not importable as a library).
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import threading

from donkeycar.parts.web_controller import web

logger = logging.getLogger(__name__)


class WebController(web.LocalWebController):
    """donkeycar's web controller (/drive, /wsDrive, /video, /calibrate) that also

    - binds port 0 (an ephemeral port; `bound_port` says which) and a chosen address,
    - runs without tornado's debug mode: donkeycar's debug=True turns on tornado's autoreload, which
      re-executes the whole car process when any Python source file changes,
    - stops its server and event loop on `shutdown`, so a car app can start again in the same process.
    """

    def __init__(self, port: int = 8887, mode: str = "user", address: str = "") -> None:
        # Same state and handlers as LocalWebController.__init__, minus settings={'debug': True}.
        self.static_file_path = os.path.join(
            os.path.dirname(os.path.realpath(web.__file__)), "templates", "static"
        )
        self.angle = 0.0
        self.throttle = 0.0
        self.mode = mode
        self.mode_latch = None
        self.recording = False
        self.recording_latch = None
        self.buttons: dict = {}
        self.port = port
        self.address = address
        self.num_records = 0
        self.wsclients: list = []
        self.loop = None
        self.server = None
        self.bound_port: int | None = None
        self.ready = threading.Event()
        handlers = [
            (r"/", web.RedirectHandler, dict(url="/drive")),
            (r"/drive", web.DriveAPI),
            (r"/wsDrive", web.WebSocketDriveAPI),
            (r"/wsCalibrate", web.WebSocketCalibrateAPI),
            (r"/calibrate", web.CalibrateHandler),
            (r"/video", web.VideoAPI),
            (r"/wsTest", web.WsTest),
            (r"/static/(.*)", web.StaticFileHandler, {"path": self.static_file_path}),
        ]
        web.tornado.web.Application.__init__(self, handlers, template_path=os.path.dirname(web.__file__))

    def update(self) -> None:
        asyncio.set_event_loop(asyncio.new_event_loop())
        loop = web.IOLoop.current()
        try:
            server = self.listen(self.port, address=self.address)
        except OSError as exc:
            logger.error(
                "web controller cannot listen on port %s: %s (driving on without it)", self.port, exc
            )
            self.ready.set()
            raise
        self.loop, self.server = loop, server
        self.bound_port = next(iter(server._sockets.values())).getsockname()[1]
        logger.info("web controller: http://localhost:%d/drive", self.bound_port)
        self.ready.set()
        loop.start()

    def shutdown(self) -> None:
        loop = self.loop
        if loop is None:
            return

        def stop() -> None:
            if self.server is not None:
                self.server.stop()
            loop.stop()

        loop.add_callback(stop)


class PilotCondition:
    """Run conditions from the drive mode (donkeycar's UserPilotCondition without the image switch)."""

    def run(self, mode: str | None) -> tuple[bool, bool]:
        user = mode in (None, "user")
        return user, not user


class AutopilotGuard:
    """Keeps the car in "user" mode when there is no working pilot (no model, or it failed to load).

    The web controller reads user/mode back from memory, so the web page flips back to "user" too.
    """

    def __init__(self, refusal: str | None) -> None:
        self.refusal = refusal  # why autopilot is refused; None when the pilot is fine
        self._warned_mode: str | None = None

    def run(self, mode: str | None) -> str:
        if self.refusal is None or mode in (None, "user"):
            self._warned_mode = None
            return mode or "user"
        if mode != self._warned_mode:
            logger.error("autopilot refused (%s): %s; staying in user mode", mode, self.refusal)
            self._warned_mode = mode
        return "user"


class SafePilot:
    """Wraps a pilot part so an exception in inference becomes NaN outputs (the watchdog then stops the
    car) instead of ending the vehicle loop; logs the first failure and every 100th after it."""

    def __init__(self, pilot) -> None:
        self.pilot = pilot
        self.failures = 0

    def run(self, image):
        try:
            return self.pilot.run(image)
        except Exception as exc:  # any inference failure must stop the car, not crash the loop
            self.failures += 1
            if self.failures % 100 == 1:
                logger.error("pilot failed (%d so far): %s: %s", self.failures, type(exc).__name__, exc)
            return math.nan, math.nan

    def shutdown(self) -> None:
        shutdown = getattr(self.pilot, "shutdown", None)
        if shutdown:
            shutdown()


class DriveMode:
    """Chooses steering and throttle by mode, like donkeycar's template DriveMode (user / local_angle /
    local), but passes non-finite pilot values through unchanged so the watchdog sees them."""

    def __init__(self, ai_throttle_mult: float = 1.0) -> None:
        self.ai_throttle_mult = ai_throttle_mult

    def run(self, mode, user_angle, user_throttle, pilot_angle, pilot_throttle):
        user_angle = 0.0 if user_angle is None else user_angle
        user_throttle = 0.0 if user_throttle is None else user_throttle
        if mode in (None, "user"):
            return user_angle, user_throttle
        angle = 0.0 if pilot_angle is None else pilot_angle
        if mode == "local_angle":
            return angle, user_throttle
        throttle = 0.0 if pilot_throttle is None else pilot_throttle * self.ai_throttle_mult
        return angle, throttle


class RecordingGate:
    """Whether the tub records this loop: the web page's record switch, or throttle in user mode when
    AUTO_RECORD_ON_THROTTLE; never in autopilot modes unless RECORD_DURING_AI (donkeycar's rules)."""

    def __init__(self, auto_record_on_throttle: bool, record_during_ai: bool) -> None:
        self.auto_record_on_throttle = auto_record_on_throttle
        self.record_during_ai = record_during_ai

    def run(self, mode, recording, user_throttle) -> bool:
        user = mode in (None, "user")
        if not user and not self.record_during_ai:
            return False
        auto = self.auto_record_on_throttle and user and bool(user_throttle) and user_throttle > 0
        return bool(recording) or auto
