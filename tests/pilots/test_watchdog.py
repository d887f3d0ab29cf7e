"""The watchdog stops the car within one loop for each reason, logs it, and lets it drive again."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from pitlane.pilots.watchdog import (
    LOOP_OVERRUN,
    OPERATOR_STOP,
    PILOT_NONFINITE,
    STALE_FRAME,
    Watchdog,
    WatchdogParams,
    WatchdogPart,
)

PERIOD_S = 0.05


class Clock:
    """Explicit time: tests advance it by hand."""

    def __init__(self) -> None:
        self.now_s = 100.0

    def __call__(self) -> float:
        return self.now_s


@pytest.fixture()
def rig():
    clock = Clock()
    part = WatchdogPart(WatchdogParams(loop_period_s=PERIOD_S, max_frame_age_s=0.25, max_overruns=3), clock)
    return clock, part


def loop(clock, part, *, dt=PERIOD_S, mode="local", pilot=(0.1, 0.5), frame="new", stop=None, resume=None):
    """One drive loop: time passes, a camera frame (fresh unless told), DriveMode's choice, the watchdog."""
    clock.now_s += dt
    if frame == "new":
        loop.frame = np.zeros((2, 2, 3), np.uint8)  # type: ignore[attr-defined]
    angle, throttle = pilot
    return part.run(mode, angle, throttle, angle, throttle, loop.frame, stop, resume)  # type: ignore[attr-defined]


loop.frame = None  # type: ignore[attr-defined]


def test_drives_when_all_is_well(rig):
    clock, part = rig
    for _ in range(10):
        steering, throttle, brake, stopped, reason = loop(clock, part)
    assert (steering, throttle, brake, stopped, reason) == (0.1, 0.5, 0.0, False, "")
    assert part.events == []


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
@pytest.mark.parametrize("which", ["angle", "throttle"])
def test_nonfinite_pilot_output_stops_in_the_same_loop(rig, bad, which, caplog):
    clock, part = rig
    loop(clock, part)
    pilot = (bad, 0.5) if which == "angle" else (0.1, bad)
    with caplog.at_level(logging.WARNING):
        _, throttle, brake, stopped, reason = loop(clock, part, pilot=pilot)
    assert throttle == 0.0 and brake == 1.0 and stopped and reason == PILOT_NONFINITE
    assert [e.reason for e in part.events] == [PILOT_NONFINITE]
    assert PILOT_NONFINITE in caplog.text
    # a sane output drives again
    assert loop(clock, part)[1] == 0.5


def test_stale_nan_pilot_output_is_ignored_in_user_mode(rig):
    clock, part = rig
    clock.now_s += PERIOD_S
    frame = np.zeros((2, 2, 3), np.uint8)
    out = part.run("user", 0.2, 0.3, float("nan"), float("nan"), frame)
    assert out[:4] == (0.2, 0.3, 0.0, False)


def test_stale_frame_stops_and_fresh_frames_resume(rig):
    clock, part = rig
    loop(clock, part)
    # the camera repeats its last frame: 5 loops = 0.25 s is still within the limit, the 6th is not
    outs = [loop(clock, part, frame="same") for _ in range(6)]
    assert [o[3] for o in outs] == [False] * 5 + [True]
    assert outs[-1][1] == 0.0 and outs[-1][4] == STALE_FRAME
    assert loop(clock, part)[3] is False
    assert [e.reason for e in part.events] == [STALE_FRAME]
    assert part.events[0].to_json(t0_s=100.0)["time"] == pytest.approx(0.35)


def test_no_frame_at_all_stops_after_the_limit(rig):
    clock, part = rig
    outs = []
    for _ in range(7):
        clock.now_s += PERIOD_S
        outs.append(part.run("user", 0.0, 0.4, None, None, None))
    assert outs[0][1] == 0.4 and outs[-1][1] == 0.0
    assert "no camera frame yet" in part.events[0].detail


def test_repeated_overruns_stop_and_on_time_loops_clear(rig):
    clock, part = rig
    loop(clock, part)
    # two slow loops are tolerated, the third in a row stops the car within that loop
    outs = [loop(clock, part, dt=0.11) for _ in range(3)]
    assert [o[3] for o in outs] == [False, False, True]
    assert outs[-1][1] == 0.0 and outs[-1][4] == LOOP_OVERRUN
    # one on-time loop is not enough to trust the loop again; three are
    outs = [loop(clock, part) for _ in range(3)]
    assert [o[3] for o in outs] == [True, True, False]
    assert [e.reason for e in part.events] == [LOOP_OVERRUN]


def test_single_slow_loops_never_stop(rig):
    clock, part = rig
    for _ in range(10):
        assert loop(clock, part, dt=0.2)[3] is False
        assert loop(clock, part)[3] is False


def test_operator_stop_latches_until_resume(rig):
    clock, part = rig
    loop(clock, part)
    out = loop(clock, part, stop=True)
    assert out[1:5] == (0.0, 1.0, True, OPERATOR_STOP)
    for _ in range(5):
        assert loop(clock, part)[1] == 0.0
    assert loop(clock, part, resume=True)[1] == 0.5
    part.operator_stop()
    assert loop(clock, part)[1] == 0.0
    assert [e.reason for e in part.events] == [OPERATOR_STOP, OPERATOR_STOP]


def test_several_reasons_at_once_are_each_logged(rig):
    clock, part = rig
    loop(clock, part)
    part.operator_stop()
    out = loop(clock, part, pilot=(float("nan"), 0.5))
    assert out[1] == 0.0 and set(out[4].split(",")) == {OPERATOR_STOP, PILOT_NONFINITE}
    assert {e.reason for e in part.events} == {OPERATOR_STOP, PILOT_NONFINITE}


def test_throttle_cap_applies_to_the_autopilot_only():
    clock = Clock()
    part = WatchdogPart(WatchdogParams(max_autopilot_throttle=0.3), clock)
    assert loop(clock, part, pilot=(0.0, 0.8))[1] == pytest.approx(0.3)
    assert loop(clock, part, pilot=(0.0, -0.8))[1] == pytest.approx(-0.3)
    assert loop(clock, part, mode="user", pilot=(0.0, 0.8))[1] == pytest.approx(0.8)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"loop_period_s": 0.0},
        {"max_frame_age_s": -1.0},
        {"max_overruns": 0},
        {"max_autopilot_throttle": 1.5},
        {"stop_brake": float("nan")},
        {"overrun_factor": 0.5},
    ],
)
def test_invalid_params_are_refused(kwargs):
    with pytest.raises(ValueError, match="invalid watchdog settings"):
        WatchdogParams(**kwargs)


def test_core_takes_time_explicitly():
    dog = Watchdog(WatchdogParams(max_frame_age_s=1.0))
    assert not dog.step(0.0, "local", 0.0, 0.5, 0.0, 0.5, frame_time_s=0.0).stopped
    cmd = dog.step(1.5, "local", 0.0, 0.5, 0.0, 0.5, frame_time_s=0.0)
    assert cmd.stopped and cmd.reasons == (STALE_FRAME,) and cmd.throttle == 0.0
