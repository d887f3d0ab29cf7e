"""Safety watchdog: stops the car (throttle 0, brake) when the pilot or the loop cannot be trusted.

The core (`Watchdog`) is pure logic over explicit time: every loop it gets the clock reading, the drive
mode, the controls DriveMode chose, the pilot's raw outputs and the time of the newest camera frame, and
returns the controls to send. `WatchdogPart` is the thin donkeycar part around it; its clock is injectable
so tests step time by hand.

Stop reasons (one word per concept, used in logs and in the run report):
- ``pilot_nonfinite``: the pilot returned NaN or an infinite value in an autopilot mode (or the controls are
  not finite in any mode);
- ``stale_frame``: the newest camera frame is older than ``max_frame_age_s`` (camera or twin gone);
- ``loop_overrun``: ``max_overruns`` consecutive loops took longer than ``overrun_factor`` x the period;
- ``operator_stop``: the operator pressed stop; it holds until the operator resumes.

A stop acts in the loop that detects it. The car drives again once every condition has cleared (an
overrun stop clears after ``max_overruns`` consecutive on-time loops). Each onset of a reason is one
`StopEvent`, logged as a warning and kept for the report.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from pitlane.twin.world import CONTROL_PERIOD_S

logger = logging.getLogger(__name__)

PILOT_NONFINITE = "pilot_nonfinite"
STALE_FRAME = "stale_frame"
LOOP_OVERRUN = "loop_overrun"
OPERATOR_STOP = "operator_stop"
STOP_REASONS: tuple[str, ...] = (PILOT_NONFINITE, STALE_FRAME, LOOP_OVERRUN, OPERATOR_STOP)

AUTOPILOT_MODES: frozenset[str] = frozenset({"local_angle", "local"})


@dataclass(frozen=True)
class WatchdogParams:
    """Limits of the watchdog; defaults suit a 20 Hz donkeycar loop. These defaults are the one home of the
    car's: the default car's config.py (WATCHDOG_*, AI_MAX_THROTTLE) and `pitlane.car.settings` read them."""

    loop_period_s: float = CONTROL_PERIOD_S  # [s] 1 / DRIVE_LOOP_HZ
    max_frame_age_s: float = 0.25  # [s] newest camera frame older than this stops the car
    overrun_factor: float = 2.0  # a loop longer than this x loop_period_s counts as an overrun
    max_overruns: int = 5  # consecutive overruns that stop the car (and on-time loops that clear it)
    max_autopilot_throttle: float = 0.6  # [-] cap on |throttle| while the pilot drives (mode "local")
    stop_brake: float = 1.0  # [0, 1] brake sent while stopped (the twin honours it; PWM cars ignore it)

    def __post_init__(self) -> None:
        problems = []
        if not (math.isfinite(self.loop_period_s) and self.loop_period_s > 0):
            problems.append(f"loop_period_s must be > 0, got {self.loop_period_s}")
        if not (math.isfinite(self.max_frame_age_s) and self.max_frame_age_s > 0):
            problems.append(f"max_frame_age_s must be > 0, got {self.max_frame_age_s}")
        if not (math.isfinite(self.overrun_factor) and self.overrun_factor >= 1.0):
            problems.append(f"overrun_factor must be >= 1, got {self.overrun_factor}")
        if not (isinstance(self.max_overruns, int) and self.max_overruns >= 1):
            problems.append(f"max_overruns must be an integer >= 1, got {self.max_overruns!r}")
        if not (math.isfinite(self.max_autopilot_throttle) and 0.0 <= self.max_autopilot_throttle <= 1.0):
            problems.append(f"max_autopilot_throttle must be in [0, 1], got {self.max_autopilot_throttle}")
        if not (math.isfinite(self.stop_brake) and 0.0 <= self.stop_brake <= 1.0):
            problems.append(f"stop_brake must be in [0, 1], got {self.stop_brake}")
        if problems:
            raise ValueError("invalid watchdog settings: " + "; ".join(problems))


@dataclass(frozen=True)
class StopEvent:
    """One onset of a stop condition."""

    reason: str  # one of STOP_REASONS
    time_s: float  # [s] clock reading when it was detected
    detail: str = ""

    def to_json(self, t0_s: float = 0.0) -> dict:
        return {"reason": self.reason, "time": round(self.time_s - t0_s, 3), "detail": self.detail}


@dataclass(frozen=True)
class Command:
    """What the watchdog lets through this loop."""

    steering: float
    throttle: float
    brake: float
    stopped: bool
    reasons: tuple[str, ...] = ()  # active stop reasons, empty while driving


def _finite(value: float | None) -> bool:
    try:
        return value is None or math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


@dataclass
class Watchdog:
    """Pure watchdog logic; call `step` once per drive loop with the current clock reading."""

    params: WatchdogParams = field(default_factory=WatchdogParams)
    start_time_s: float | None = None  # [s] first step; frames are judged from here until one arrives
    events: list[StopEvent] = field(default_factory=list)
    nonfinite_loops: int = 0  # loops in which the pilot's outputs (or the controls) were NaN or infinite
    _active: set[str] = field(default_factory=set)
    _last_step_s: float | None = None
    _overruns: int = 0
    _on_time: int = 0
    _operator_stop: bool = False

    def operator_stop(self) -> None:
        """Latch a stop until `resume` (the next `step` acts on it)."""
        self._operator_stop = True

    def resume(self) -> None:
        """Clear an operator stop."""
        if self._operator_stop:
            logger.info("watchdog: operator resumed")
        self._operator_stop = False

    @property
    def stopped(self) -> bool:
        return bool(self._active)

    def step(
        self,
        now_s: float,
        mode: str | None,
        steering: float | None,
        throttle: float | None,
        pilot_angle: float | None = None,
        pilot_throttle: float | None = None,
        frame_time_s: float | None = None,
    ) -> Command:
        """Decide this loop's controls. `frame_time_s` is when the newest camera frame arrived."""
        p = self.params
        if self.start_time_s is None:
            self.start_time_s = now_s
        conditions: dict[str, str] = {}

        # pilot outputs: only meaningful while the pilot drives (they are stale in "user" mode)
        pilot_values = (pilot_angle, pilot_throttle) if mode in AUTOPILOT_MODES else ()
        if not all(_finite(v) for v in (*pilot_values, steering, throttle)):
            conditions[PILOT_NONFINITE] = (
                f"mode={mode} pilot=({pilot_angle}, {pilot_throttle}) controls=({steering}, {throttle})"
            )
            self.nonfinite_loops += 1

        reference_s = frame_time_s if frame_time_s is not None else self.start_time_s
        age_s = now_s - reference_s
        if age_s > p.max_frame_age_s:
            what = "no camera frame yet" if frame_time_s is None else "newest camera frame"
            conditions[STALE_FRAME] = f"{what}: {age_s:.3f} s old > {p.max_frame_age_s:.3f} s"

        if self._last_step_s is not None:
            period_s = now_s - self._last_step_s
            if period_s > p.overrun_factor * p.loop_period_s:
                self._overruns += 1
                self._on_time = 0
            else:
                self._on_time += 1
                self._overruns = 0
            overrunning = LOOP_OVERRUN in self._active
            if self._overruns >= p.max_overruns or (overrunning and self._on_time < p.max_overruns):
                conditions[LOOP_OVERRUN] = (
                    f"loop took {period_s * 1000:.0f} ms (limit {p.overrun_factor * p.loop_period_s * 1000:.0f}"
                    f" ms), {self._overruns} overruns in a row"
                )
        self._last_step_s = now_s

        if self._operator_stop:
            conditions[OPERATOR_STOP] = "stop requested by the operator"

        for reason in STOP_REASONS:
            if reason in conditions and reason not in self._active:
                event = StopEvent(reason, now_s, conditions[reason])
                self.events.append(event)
                logger.warning("watchdog: STOP (%s) %s", reason, event.detail)
        for reason in sorted(self._active - conditions.keys()):
            logger.info("watchdog: %s cleared", reason)
        self._active = set(conditions)

        if self._active:
            safe_steering = float(steering) if _finite(steering) and steering is not None else 0.0
            return Command(
                safe_steering, 0.0, p.stop_brake, True, tuple(r for r in STOP_REASONS if r in self._active)
            )
        out_throttle = 0.0 if throttle is None else float(throttle)
        if mode == "local":
            cap = p.max_autopilot_throttle
            out_throttle = max(-cap, min(cap, out_throttle))
        return Command(0.0 if steering is None else float(steering), out_throttle, 0.0, False)


class WatchdogPart:
    """donkeycar part wrapping `Watchdog`; sits after DriveMode, before the drivetrain.

    inputs: user/mode, steering, throttle, pilot/angle, pilot/throttle, cam/image_array, and optionally
    the operator's stop and resume buttons (e.g. web/w1, web/w2);
    outputs: steering, throttle, brake, watchdog/stopped, watchdog/reason.
    A new camera frame is recognised by a new array object (donkeycar cameras hand out a fresh array per
    capture and repeat the same one while nothing new arrives).
    """

    def __init__(self, params: WatchdogParams | None = None, clock: Callable[[], float] = time.monotonic):
        self.watchdog = Watchdog(params or WatchdogParams())
        self.clock = clock
        self._frame: object | None = None
        self._frame_time_s: float | None = None

    @property
    def events(self) -> list[StopEvent]:
        return self.watchdog.events

    @property
    def nonfinite_loops(self) -> int:
        return self.watchdog.nonfinite_loops

    def operator_stop(self) -> None:
        self.watchdog.operator_stop()

    def resume(self) -> None:
        self.watchdog.resume()

    def run(
        self,
        mode,
        steering,
        throttle,
        pilot_angle=None,
        pilot_throttle=None,
        image=None,
        stop_pressed=None,
        resume_pressed=None,
    ):
        now_s = self.clock()
        if image is not None and image is not self._frame:
            self._frame = image
            self._frame_time_s = now_s
        if stop_pressed:
            self.watchdog.operator_stop()
        elif resume_pressed:
            self.watchdog.resume()
        cmd = self.watchdog.step(
            now_s, mode, steering, throttle, pilot_angle, pilot_throttle, self._frame_time_s
        )
        return cmd.steering, cmd.throttle, cmd.brake, cmd.stopped, ",".join(cmd.reasons)

    def shutdown(self) -> None:
        n = len(self.watchdog.events)
        if n:
            counts: dict[str, int] = {}
            for e in self.watchdog.events:
                counts[e.reason] = counts.get(e.reason, 0) + 1
            logger.info("watchdog: %d stops: %s", n, ", ".join(f"{k}={v}" for k, v in counts.items()))
