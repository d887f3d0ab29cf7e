"""RC car dynamics: a kinematic bicycle with a steering servo, motor, drag and brake.

Pure functions over frozen dataclasses; scalar `math` (not numpy) because one step is a handful of
operations and numpy's per-call overhead would dominate.

Sign conventions: yaw [rad] counter-clockwise from +x; steering +1 turns RIGHT (clockwise), as in donkeycar
and the Unity simulator, so a positive wheel angle makes yaw DECREASE.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


def _clip(v, lo: float, hi: float) -> float:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return 0.0
    if f != f:  # NaN
        return 0.0
    return lo if f < lo else hi if f > hi else f


@dataclass(frozen=True)
class Control:
    """What a pilot asks for. Values outside their range are clamped by `clamped()`; NaN means 0."""

    steering: float = 0.0  # [-1, 1]; +1 = full RIGHT turn (max_steer_deg)
    throttle: float = 0.0  # [-1, 1]; negative drives backwards
    brake: float = 0.0  # [0, 1]

    def clamped(self) -> Control:
        s, t, b = self.steering, self.throttle, self.brake
        if (
            type(s) is float
            and type(t) is float
            and type(b) is float
            and -1.0 <= s <= 1.0
            and -1.0 <= t <= 1.0
            and 0.0 <= b <= 1.0
        ):
            return self  # already clean (the common case; NaN fails the comparisons)
        return Control(_clip(s, -1.0, 1.0), _clip(t, -1.0, 1.0), _clip(b, 0.0, 1.0))


@dataclass(frozen=True)
class VehicleParams:
    """A 1/16-1/10 scale donkeycar; defaults give a top speed of 3.5 m/s and a 0.91 m turn radius."""

    wheelbase_m: float = 0.26  # [m] front to rear axle
    max_steer_deg: float = 16.0  # [deg] wheel angle at steering = 1 (the Unity sim's value)
    steer_rate_dps: float = 400.0  # [deg/s] servo slew rate
    max_accel_mps2: float = 4.0  # [m/s^2] acceleration from standstill at full throttle
    top_speed_mps: float = 3.5  # [m/s] steady speed at full throttle (throttle t settles at t * top speed)
    brake_decel_mps2: float = 6.0  # [m/s^2] deceleration at brake = 1
    rolling_decel_mps2: float = 0.2  # [m/s^2] rolling resistance while moving

    @property
    def drag_per_s(self) -> float:
        """Linear drag [1/s] that makes full throttle settle at `top_speed_mps` (after rolling resistance)."""
        return (self.max_accel_mps2 - self.rolling_decel_mps2) / self.top_speed_mps

    @property
    def min_turn_radius_m(self) -> float:
        return self.wheelbase_m / math.tan(math.radians(self.max_steer_deg))


@dataclass(frozen=True)
class VehicleState:
    """Pose and motion of the rear axle center."""

    x_m: float = 0.0  # [m] east
    y_m: float = 0.0  # [m] north
    yaw_rad: float = 0.0  # [rad] CCW from +x
    speed_mps: float = 0.0  # [m/s] signed along the heading (negative = reversing)
    steer_rad: float = 0.0  # [rad] front wheel angle, positive = RIGHT

    @property
    def vel_x(self) -> float:
        return self.speed_mps * math.cos(self.yaw_rad)

    @property
    def vel_y(self) -> float:
        return self.speed_mps * math.sin(self.yaw_rad)


def step_vehicle(
    state: VehicleState, control: Control, params: VehicleParams, dt_s: float, n_steps: int = 1
) -> VehicleState:
    """Advance `n_steps` physics sub-steps of `dt_s` seconds each under a constant control.

    Semi-implicit Euler with a midpoint heading; keep dt_s <= ~0.01 s. `control` is expected already
    clamped (see Control.clamped). The loop runs on plain floats: one call is the hot path of the twin.
    """
    x, y, yaw, v, steer = state.x_m, state.y_m, state.yaw_rad, state.speed_mps, state.steer_rad
    target = control.steering * math.radians(params.max_steer_deg)
    max_d = math.radians(params.steer_rate_dps) * dt_s
    drive = params.max_accel_mps2 * control.throttle
    drag = params.drag_per_s
    resist = params.brake_decel_mps2 * control.brake + params.rolling_decel_mps2
    dv_resist = resist * dt_s
    motor_wins = abs(drive) > resist
    inv_wb = 1.0 / params.wheelbase_m
    cos, sin, tan = math.cos, math.sin, math.tan
    for _ in range(n_steps):
        # steering servo: slew towards the commanded angle
        d = target - steer
        steer += max_d if d > max_d else -max_d if d < -max_d else d
        # longitudinal: motor force falls with speed (drag); brake and rolling resistance oppose motion
        v += (drive - drag * v) * dt_s
        if v > dv_resist:
            v -= dv_resist
        elif v < -dv_resist:
            v += dv_resist
        elif not motor_wins:
            v = 0.0
        # kinematic bicycle about the rear axle (+steer = right = clockwise)
        dyaw = -v * tan(steer) * inv_wb * dt_s
        mid = yaw + 0.5 * dyaw
        x += v * cos(mid) * dt_s
        y += v * sin(mid) * dt_s
        yaw += dyaw
    yaw = (yaw + math.pi) % (2 * math.pi) - math.pi
    return VehicleState(x, y, yaw, v, steer)
