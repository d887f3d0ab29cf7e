"""The car app's small loop parts and the web controller."""

from __future__ import annotations

import math

import pytest

from pitlane.car.parts import (
    AutopilotGuard,
    DriveMode,
    PilotCondition,
    RecordingGate,
    SafePilot,
    UserThrottleCap,
)


def test_autopilot_guard_keeps_user_mode_without_a_pilot(caplog):
    guard = AutopilotGuard("model failed to load: bad file")
    assert guard.run("local") == "user"
    assert guard.run("local_angle") == "user"
    assert guard.run("user") == "user"
    assert "autopilot refused (local): model failed to load: bad file" in caplog.text
    assert AutopilotGuard(None).run("local") == "local"


def test_pilot_condition():
    assert PilotCondition().run("user") == (True, False)
    assert PilotCondition().run("local_angle") == (False, True)


def test_drive_mode_follows_donkeycar_and_passes_nan_to_the_watchdog():
    dm = DriveMode(ai_throttle_mult=0.5)
    assert dm.run("user", 0.1, 0.2, 0.7, 0.8) == (0.1, 0.2)
    assert dm.run("local_angle", 0.1, 0.2, 0.7, 0.8) == (0.7, 0.2)
    assert dm.run("local", 0.1, 0.2, 0.7, 0.8) == (0.7, 0.4)
    angle, throttle = dm.run("local", 0.0, 0.0, math.nan, math.inf)
    assert math.isnan(angle) and math.isinf(throttle)
    assert dm.run("local", None, None, None, None) == (0.0, 0.0)


def test_safe_pilot_turns_an_inference_failure_into_nan(caplog):
    class BrokenPilot:
        def run(self, image):
            raise RuntimeError("tensor shape mismatch")

    angle, throttle = SafePilot(BrokenPilot()).run(None)
    assert math.isnan(angle) and math.isnan(throttle)
    assert "pilot failed (1 so far): RuntimeError: tensor shape mismatch" in caplog.text


@pytest.mark.parametrize(
    ("auto", "during_ai", "mode", "switch", "throttle", "expected"),
    [
        (False, False, "user", True, 0.0, True),
        (False, False, "user", False, 0.5, False),
        (True, False, "user", False, 0.5, True),
        (True, False, "user", False, -0.5, False),
        (True, False, "local", True, 0.5, False),
        (False, True, "local", True, 0.0, True),
    ],
)
def test_recording_gate(auto, during_ai, mode, switch, throttle, expected):
    assert RecordingGate(auto, during_ai).run(mode, switch, throttle) is expected


def test_user_throttle_cap_holds_whatever_reaches_the_loop():
    cap = UserThrottleCap(0.3)
    assert [cap.run(t) for t in (1.0, 0.2, -1.0, 0.3, None)] == [0.3, 0.2, -0.3, 0.3, None]
    assert cap.run(math.nan) == 0.0 and cap.run("abc") == 0.0 and cap.run(True) == 0.0
