"""pitlane's operator console: the car app's web page (camera, driving, mode, recording, stop, telemetry).

donkeycar 5.4.0's wheel ships its controller's HTML without the `templates/static/` scripts and styles, so
its page cannot drive and its `/video` answers 500. `WebController` keeps donkeycar's part contract and its
HTTP/websocket contract (POST /drive, /wsDrive, /video MJPEG, /wsCalibrate on WEB_CONTROL_PORT) that
donkeycar's tools use, and serves pitlane's own page and assets (pitlane/car/console_static, package data,
no CDN: it works offline on the car's own network). `/status` is what the page polls: the telemetry that
`ConsoleTelemetry`, the last part of the loop, collects from vehicle memory.
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
import time
from pathlib import Path
from typing import Any, cast

import numpy as np
import tornado.iostream
import tornado.web
from donkeycar.parts.web_controller import web

logger = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).with_name("console_static")
MJPEG_BOUNDARY = "pitlaneframe"
VIDEO_POLL_S = 0.02  # [s] how often /video looks for a new camera frame
VIDEO_IDLE_RESEND_S = 1.0  # [s] the same frame again after this long, so a late viewer sees a picture
MODEL_KEYS = ("model/digest", "model/serial", "model/state", "model/error")  # the model manager's outputs


def _placeholder(height: int = 120, width: int = 160) -> np.ndarray:
    """A dark frame with a light cross: 'no camera frame yet' (donkeycar reads a JPEG the wheel lacks)."""
    img = np.full((height, width, 3), 40, dtype=np.uint8)
    rows = np.arange(height)
    cols = (rows * (width - 1) / (height - 1)).astype(int)
    img[rows, cols] = img[rows, width - 1 - cols] = 110
    return img


class ConsolePage(web.DriveAPI):
    """GET /drive: pitlane's console page; POST /drive: donkeycar's JSON contract (angle, throttle,
    drive_mode, recording, buttons), inherited unchanged."""

    def get(self) -> None:
        self.set_header("Cache-Control", "no-cache")
        self.write((STATIC_DIR / "index.html").read_bytes())


class StatusAPI(tornado.web.RequestHandler):
    """GET /status: the console's telemetry as JSON (mode, recording, records, loop rate, watchdog, ...)."""

    def get(self) -> None:
        app = cast("WebController", self.application)
        self.set_header("Cache-Control", "no-cache")
        self.write(
            {
                **app.telemetry,
                "mode": app.mode,
                "recording": bool(app.recording),
                "num_records": int(app.num_records or 0),
                "user": {"angle": app.angle, "throttle": app.throttle},
                "buttons": app.console_buttons,
            }
        )


class VideoAPI(tornado.web.RequestHandler):
    """GET /video: the camera as MJPEG (multipart/x-mixed-replace), a placeholder until the first frame.

    Unlike donkeycar's (which needs the missing placeholder file and never ends), it sends a frame only when
    a new one arrived (or once a second) and stops when the viewer goes away.
    """

    async def get(self) -> None:
        self.set_header("Content-Type", f"multipart/x-mixed-replace; boundary={MJPEG_BOUNDARY}")
        self.set_header("Cache-Control", "no-cache")
        self.write(f"--{MJPEG_BOUNDARY}\r\n")
        app = cast("WebController", self.application)
        last, last_sent_s = None, 0.0
        while True:
            img = app.img_arr
            now = time.monotonic()
            if img is None:
                img = app.placeholder
            if img is not last or now - last_sent_s > VIDEO_IDLE_RESEND_S:
                jpeg = web.utils.arr_to_binary(img)
                self.write(f"Content-Type: image/jpeg\r\nContent-Length: {len(jpeg)}\r\n\r\n")
                self.write(jpeg)
                self.write(f"\r\n--{MJPEG_BOUNDARY}\r\n")  # the boundary right away: browsers show it now
                last, last_sent_s = img, now
                try:
                    await self.flush()
                except tornado.iostream.StreamClosedError:
                    return
            await asyncio.sleep(VIDEO_POLL_S)


class WebController(web.LocalWebController):
    """donkeycar's web controller part (same inputs, outputs and HTTP/websocket contract) serving pitlane's
    console. Unlike donkeycar's it

    - binds port 0 (an ephemeral port; `bound_port` says which) and a chosen address,
    - runs without tornado's debug mode: donkeycar's debug=True turns on tornado's autoreload, which
      re-executes the whole car process when any Python source file changes,
    - stops its server and event loop on `shutdown`, so a car app can start again in the same process,
    - lets the page's stop button (`stop_button`, latched like donkeycar's buttons) zero the throttle at once.
    """

    def __init__(
        self,
        port: int = 8887,
        mode: str = "user",
        address: str = "",
        stop_button: str = "w1",
        resume_button: str = "w2",
    ) -> None:
        # Same state as LocalWebController.__init__, minus settings={'debug': True}.
        self.static_file_path = str(STATIC_DIR)
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
        self.img_arr = None
        self.placeholder = _placeholder()
        self.telemetry: dict = {}  # written by ConsoleTelemetry each loop, read by /status
        self.console_buttons = {"stop": stop_button, "resume": resume_button}
        self.loop = None
        self.server = None
        self.bound_port: int | None = None
        self.ready = threading.Event()
        handlers: list[Any] = [
            (r"/", web.RedirectHandler, dict(url="/drive")),
            (r"/drive", ConsolePage),
            (r"/status", StatusAPI),
            (r"/wsDrive", web.WebSocketDriveAPI),
            (r"/wsCalibrate", web.WebSocketCalibrateAPI),
            (r"/video", VideoAPI),
            (r"/static/(.*)", web.StaticFileHandler, {"path": self.static_file_path}),
        ]
        tornado.web.Application.__init__(self, handlers)

    def update(self) -> None:
        asyncio.set_event_loop(asyncio.new_event_loop())
        loop = web.IOLoop.current()
        try:
            server = self.listen(self.port, address=self.address)
        except OSError as exc:  # one line, not a thread traceback: the car drives on without its console
            logger.error(
                "operator console cannot listen on port %s: %s (driving on without it; set "
                "WEB_CONTROL_PORT or --web-port)",
                self.port,
                exc.strerror or exc,
            )
            self.ready.set()
            return
        self.loop, self.server = loop, server
        self.bound_port = next(iter(server._sockets.values())).getsockname()[1]
        logger.info("operator console: http://localhost:%d/drive", self.bound_port)
        self.ready.set()
        loop.start()

    def run_threaded(self, img_arr=None, num_records=0, mode=None, recording=None):
        if self.buttons.get(self.console_buttons["stop"]):
            self.throttle = 0.0  # the stop button holds the car even if a drive message raced it
        return super().run_threaded(img_arr, num_records, mode, recording)

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
