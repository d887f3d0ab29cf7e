"""donkeycar parts of the pitlane car app (besides the twin's, in `pitlane.car.twin_part`, and the web
controller, in `pitlane.car.console`).

Small parts with donkeycar's `run()` / `run_threaded()` contract, so a car app (manage.py) wires them with
`Vehicle.add` exactly like donkeycar's own template parts (DriveMode, UserPilotCondition, ToggleRecording
in donkeycar/templates/complete.py, which are not importable as a library).
"""

from __future__ import annotations

import logging
import math
import numbers
import time
from collections.abc import Callable

logger = logging.getLogger(__name__)


class PilotCondition:
    """Run conditions from the drive mode (donkeycar's UserPilotCondition without the image switch)."""

    def run(self, mode: str | None) -> tuple[bool, bool]:
        user = mode in (None, "user")
        return user, not user


class AutopilotGuard:
    """Keeps the car in "user" mode when there is no working pilot (no model, or it failed to load).

    The web controller reads user/mode back from memory, so the web page flips back to "user" too.
    """

    def __init__(self, refusal: str | None, refusal_fn: Callable[[], str | None] | None = None) -> None:
        self.refusal = refusal  # why autopilot is refused; None when the pilot is fine
        self.refusal_fn = refusal_fn  # asked every loop when the pilot can change (the model manager)
        self._warned_mode: str | None = None

    def run(self, mode: str | None) -> str:
        if self.refusal_fn is not None:
            self.refusal = self.refusal_fn()
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
        self.latency_s: float | None = None  # [s] the last inference's wall time (the console shows it)

    def run(self, image):
        start = time.perf_counter()
        try:
            return self.pilot.run(image)
        except Exception as exc:  # any inference failure must stop the car, not crash the loop
            self.failures += 1
            if self.failures % 100 == 1:
                logger.error("pilot failed (%d so far): %s: %s", self.failures, type(exc).__name__, exc)
            return math.nan, math.nan
        finally:
            self.latency_s = time.perf_counter() - start

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


class UserThrottleCap:
    """Caps the operator's throttle in the loop (USER_MAX_THROTTLE): whatever a console client, a
    calibration socket or the page's slider sent, |user/throttle| never exceeds the cap. It sits before
    DriveMode, so "user" and "local_angle" drive with the capped value and tubs record what was applied."""

    def __init__(self, max_throttle: float) -> None:
        self.max_throttle = max_throttle  # [-] in [0, 1]

    def run(self, throttle):
        if throttle is None:
            return None
        if (
            isinstance(throttle, bool)
            or not isinstance(throttle, numbers.Real)
            or not math.isfinite(throttle)
        ):
            return 0.0  # the console refuses these; nothing else may put one into the loop either
        return max(-self.max_throttle, min(self.max_throttle, float(throttle)))


class SafeTubWriter:
    """Wraps donkeycar's TubWriter: a record holding a NaN or infinite number is skipped (and counted)
    instead of raising: donkeycar writes catalogs with ``json.dumps(allow_nan=False)``, so one NaN from a
    broken pilot would otherwise end the drive loop, and with it the watchdog that stops the car."""

    def __init__(self, writer) -> None:
        self.writer = writer  # donkeycar.parts.tub_v2.TubWriter
        self.tub = writer.tub
        self.skipped_nonfinite = 0

    def run(self, *args):
        bad = [
            key
            for key, value in zip(self.tub.inputs, args, strict=False)
            if isinstance(value, numbers.Real) and not isinstance(value, int) and not math.isfinite(value)
        ]
        if bad:
            self.skipped_nonfinite += 1
            if self.skipped_nonfinite % 100 == 1:
                logger.warning("tub: skipped %d records with non-finite %s", self.skipped_nonfinite, bad)
            return self.tub.manifest.current_index
        return self.writer.run(*args)

    def close(self) -> None:
        self.writer.close()

    def shutdown(self) -> None:
        self.writer.shutdown()


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
