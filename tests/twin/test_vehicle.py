"""RC car dynamics: bicycle-model turn radius, steering sign, top speed, brake, clamping."""

import math

import numpy as np
import pytest

from pitlane.twin.vehicle import Control, VehicleParams, VehicleState, step_vehicle

P = VehicleParams()
DT = 0.005


def run(control, seconds, state=None, params=P):
    return step_vehicle(state or VehicleState(), control.clamped(), params, DT, int(round(seconds / DT)))


def test_full_right_turn_follows_the_bicycle_radius():
    # settle at a steady speed on full right steering, then fit the circle through the path
    s = run(Control(steering=1.0, throttle=0.3), 5.0)
    pts = []
    for _ in range(60):
        s = run(Control(steering=1.0, throttle=0.3), 0.05, s)
        pts.append((s.x_m, s.y_m))
    # least-squares circle: x^2 + y^2 = 2 cx x + 2 cy y + c
    a = np.array([[2 * x, 2 * y, 1.0] for x, y in pts])
    b = np.array([x * x + y * y for x, y in pts])
    cx, cy, _ = np.linalg.lstsq(a, b, rcond=None)[0]
    radii = [math.hypot(x - cx, y - cy) for x, y in pts]
    expected = P.wheelbase_m / math.tan(math.radians(16.0))
    assert P.min_turn_radius_m == pytest.approx(expected)
    assert sum(radii) / len(radii) == pytest.approx(expected, rel=0.02)
    assert max(radii) - min(radii) < 0.01


def test_positive_steering_turns_right():
    right = run(Control(steering=0.5, throttle=0.5), 1.0)
    left = run(Control(steering=-0.5, throttle=0.5), 1.0)
    assert right.yaw_rad < 0 < left.yaw_rad  # yaw is counter-clockwise: right = clockwise = decreasing
    assert right.y_m < 0 < left.y_m
    assert right.steer_rad == pytest.approx(math.radians(8.0))


def test_max_steer_is_configurable():
    p = VehicleParams(max_steer_deg=25.0)
    s = run(Control(steering=-1.0, throttle=0.2), 1.0, params=p)
    assert s.steer_rad == pytest.approx(-math.radians(25.0))


def test_top_speed_and_throttle_scale():
    assert run(Control(throttle=1.0), 10.0).speed_mps == pytest.approx(P.top_speed_mps, rel=0.02)
    half = run(Control(throttle=0.5), 10.0).speed_mps
    assert 0.4 * P.top_speed_mps < half < 0.5 * P.top_speed_mps  # rolling resistance takes a little
    assert 3.0 <= P.top_speed_mps <= 4.0


def test_reverse_throttle_drives_backwards():
    s = run(Control(throttle=-0.5), 3.0)
    assert s.speed_mps < -1.0 and s.x_m < 0


def test_brake_stops_the_car_and_holds_it():
    moving = run(Control(throttle=1.0), 5.0)
    v0 = moving.speed_mps
    stopped = run(Control(brake=1.0), 2.0, moving)
    assert stopped.speed_mps == 0.0
    # stopping distance is about v^2 / (2 a) with a = brake + drag + rolling > brake alone
    assert stopped.x_m - moving.x_m < v0**2 / (2 * P.brake_decel_mps2)
    assert run(Control(brake=1.0), 1.0, stopped).speed_mps == 0.0


def test_coasting_slows_down():
    moving = run(Control(throttle=1.0), 5.0)
    coast = run(Control(), 1.0, moving)
    assert 0 < coast.speed_mps < moving.speed_mps


@pytest.mark.parametrize(
    "raw, expected",
    [
        (Control(float("nan"), float("nan"), float("nan")), Control(0.0, 0.0, 0.0)),
        (Control(5.0, -3.0, 2.0), Control(1.0, -1.0, 1.0)),
        (Control(float("inf"), float("-inf"), -1.0), Control(1.0, -1.0, 0.0)),
        (Control("0.5", "0,25", None), Control(0.5, 0.0, 0.0)),  # type: ignore[arg-type]  # bad input on purpose
    ],
)
def test_controls_are_clamped(raw, expected):
    assert raw.clamped() == expected


def test_substeps_converge():
    coarse = step_vehicle(VehicleState(), Control(0.7, 0.8), P, 0.01, 300)
    fine = step_vehicle(VehicleState(), Control(0.7, 0.8), P, 0.001, 3000)
    assert math.hypot(coarse.x_m - fine.x_m, coarse.y_m - fine.y_m) < 0.05
