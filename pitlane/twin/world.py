"""The twin's world: one pure `step` over explicit, frozen state (vehicle + track progress + laps).

Physics runs in fixed sub-steps of `WorldParams.physics_dt_s`, independent of how often the caller steps
(the camera/control rate). Track bookkeeping (projection, off-track, laps) runs once per `step`.

Laps: progress `s_m` is unwrapped (it keeps growing past the start line; negative before a car placed
elsewhere on the loop first reaches the line), and lap k is complete the first time `s_m` reaches
k * track length. Reversing back and forth over the start line moves `s_m` down and up
again and never counts a lap.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from pitlane.twin.track import Track
from pitlane.twin.vehicle import Control, VehicleParams, VehicleState, step_vehicle

# The control period: donkeycar's DRIVE_LOOP_HZ and the Unity simulator's telemetry rate. One home for it.
CONTROL_HZ = 20.0  # [Hz]
CONTROL_PERIOD_S = 1.0 / CONTROL_HZ  # [s]

HIT_NONE = "none"
HIT_OFF_TRACK = "off_track"
_ON_START_LINE_M = 0.5  # [m] a car placed up to this far past the start line starts its first lap at once


@dataclass(frozen=True)
class WorldParams:
    """Simulation settings; defaults match a donkeycar on a 1 m wide track."""

    physics_dt_s: float = 0.005  # [s] physics sub-step (200 Hz)
    vehicle: VehicleParams = field(default_factory=VehicleParams)
    off_track_margin_m: float = 0.15  # [m] how far past the edge line the car's center may go before `hit`
    start_s_m: float = 0.0  # [m] where cars start along the centerline
    random_start: bool = False  # start at a random point of the loop (drawn from the seed)
    start_lateral_std_m: float = 0.0  # [m] std of the random lateral start offset
    start_yaw_std_deg: float = 0.0  # [deg] std of the random start heading error

    def __post_init__(self) -> None:
        if not (1e-4 <= self.physics_dt_s <= 0.05):
            raise ValueError(f"physics_dt_s {self.physics_dt_s} outside 0.0001..0.05 s")


@dataclass(frozen=True)
class WorldState:
    vehicle: VehicleState
    time_s: float = 0.0  # [s] simulated time since reset
    track_index: int = 0  # nearest centerline sample (activeNode)
    s_m: float = 0.0  # [m] unwrapped progress along the centerline (grows past the start line)
    cte_m: float = 0.0  # [m] signed cross-track error, + = right of the centerline
    laps_completed: int = 0
    lap_start_time_s: float = 0.0  # [s] when the current lap started
    last_lap_time_s: float | None = None  # [s] duration of the last completed lap
    lap_ended: bool = False  # True only on the step that completed a lap
    hit: str = HIT_NONE  # "none" or "off_track" (while the car is off the road)


@dataclass(frozen=True)
class Telemetry:
    """What the car reports each step (the protocol's `telemetry` message, in SI units)."""

    time_s: float
    steering: float  # [-1, 1] last commanded
    throttle: float  # [-1, 1] last commanded
    brake: float  # [0, 1]
    speed_mps: float  # [m/s] signed along the heading
    x_m: float
    y_m: float
    yaw_rad: float
    vel_x: float  # [m/s] world frame
    vel_y: float
    cte_m: float  # [m] + = right of the centerline
    active_node: int
    total_nodes: int
    hit: str
    laps_completed: int
    lap_time_s: float | None  # [s] set on the step a lap ends, else None
    progress_m: float = 0.0  # [m] unwrapped progress along the centerline


def state_at_pose(
    track: Track, vehicle: VehicleState, time_s: float = 0.0, params: WorldParams | None = None
) -> WorldState:
    """A fresh world state (no laps yet) for a car placed anywhere; progress counts from the start line."""
    tp = track.project((vehicle.x_m, vehicle.y_m))
    # at (or just past) the start line the first lap starts now; elsewhere it starts at the first crossing
    s = tp.s_m if tp.s_m <= _ON_START_LINE_M else tp.s_m - track.length_m
    return WorldState(
        vehicle=vehicle,
        time_s=time_s,
        track_index=tp.index,
        s_m=s,
        cte_m=tp.cte_m,
        lap_start_time_s=time_s,
        hit=_hit(track, tp.cte_m, params),
    )


def initial_state(
    track: Track, params: WorldParams, rng: np.random.Generator | int | None = None
) -> WorldState:
    """The car at the start line (or a random point), facing along the track, at rest."""
    rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    s0 = params.start_s_m
    if params.random_start:
        s0 = float(rng.uniform(0.0, track.length_m))
    x, y, yaw = track.pose_at(s0)
    lat = float(rng.normal(0.0, params.start_lateral_std_m)) if params.start_lateral_std_m > 0 else 0.0
    dyaw = (
        float(rng.normal(0.0, math.radians(params.start_yaw_std_deg)))
        if params.start_yaw_std_deg > 0
        else 0.0
    )
    lat = max(-0.3 * track.width_m, min(0.3 * track.width_m, lat))
    vehicle = VehicleState(x + lat * math.sin(yaw), y - lat * math.cos(yaw), yaw + dyaw)
    return state_at_pose(track, vehicle, params=params)


def _hit(track: Track, cte_m: float, params: WorldParams | None) -> str:
    margin = params.off_track_margin_m if params else WorldParams.off_track_margin_m
    return HIT_OFF_TRACK if abs(cte_m) > 0.5 * track.width_m + margin else HIT_NONE


def step(state: WorldState, control: Control, track: Track, params: WorldParams, dt_s: float) -> WorldState:
    """Advance the world by `dt_s` seconds under a constant `control` (clamped here)."""
    if not (dt_s > 0.0) or not math.isfinite(dt_s):
        raise ValueError(f"dt_s must be a positive number of seconds, got {dt_s!r}")
    ctl = control.clamped()
    n = max(1, math.ceil(dt_s / params.physics_dt_s - 1e-9))
    h = dt_s / n
    v = state.vehicle
    vp = params.vehicle
    v = step_vehicle(v, ctl, vp, h, n)
    tp = track.project((v.x_m, v.y_m), hint=state.track_index)
    length = track.length_m
    prev_wrapped = state.s_m % length
    ds = (tp.s_m - prev_wrapped + 0.5 * length) % length - 0.5 * length
    s_new = state.s_m + ds
    t_new = state.time_s + dt_s
    laps, lap_start, last_lap, ended = (
        state.laps_completed,
        state.lap_start_time_s,
        state.last_lap_time_s,
        False,
    )
    if state.s_m < 0.0 <= s_new and laps == 0:
        # first crossing of the start line from a start elsewhere on the loop: the first lap begins
        lap_start = state.time_s + (-state.s_m / ds) * dt_s
    elif s_new >= (laps + 1) * length and ds > 0:
        # interpolate the crossing time inside this step for a precise lap time
        frac = ((laps + 1) * length - state.s_m) / ds
        t_cross = state.time_s + min(max(frac, 0.0), 1.0) * dt_s
        laps += 1
        last_lap = t_cross - lap_start
        lap_start = t_cross
        ended = True
    return WorldState(
        vehicle=v,
        time_s=t_new,
        track_index=tp.index,
        s_m=s_new,
        cte_m=tp.cte_m,
        laps_completed=laps,
        lap_start_time_s=lap_start,
        last_lap_time_s=last_lap,
        lap_ended=ended,
        hit=_hit(track, tp.cte_m, params),
    )


def telemetry(state: WorldState, track: Track, control: Control) -> Telemetry:
    """The telemetry of a state, with the control that led to it."""
    v = state.vehicle
    c = control.clamped()
    return Telemetry(
        time_s=state.time_s,
        steering=c.steering,
        throttle=c.throttle,
        brake=c.brake,
        speed_mps=v.speed_mps,
        x_m=v.x_m,
        y_m=v.y_m,
        yaw_rad=v.yaw_rad,
        vel_x=v.vel_x,
        vel_y=v.vel_y,
        cte_m=state.cte_m,
        active_node=state.track_index,
        total_nodes=track.total_nodes,
        hit=state.hit,
        laps_completed=state.laps_completed,
        lap_time_s=state.last_lap_time_s if state.lap_ended else None,
        progress_m=state.s_m,
    )
