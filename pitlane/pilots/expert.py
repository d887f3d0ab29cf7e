"""The expert driver: pure pursuit on the track centerline from the twin's ground truth, plus perturbations.

Two pure parts. ``expert_command`` is the correct command for a pose: steer towards a point on the
centerline a speed-scaled lookahead ahead (pure pursuit), and pick the speed from the tightest curvature
within braking distance. ``perturb`` turns that label into what the car actually executes: correlated
steering noise and occasional deliberate drifts off the line. Recording the *label* while the car drives
the *perturbed* command is what teaches a model to recover: the images show the car off the line and the
labels say how to get back. ``ExpertDriver`` bundles both with a seeded generator (deterministic per seed).
Steering follows donkeycar's convention (+1 = full right), throttle is in [0, 1].
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from pitlane.twin.track import Track
from pitlane.twin.vehicle import Control, VehicleParams
from pitlane.twin.world import CONTROL_PERIOD_S, Telemetry


@dataclass(frozen=True)
class ExpertParams:
    lookahead_min_m: float = 0.45  # [m] lookahead at standstill
    lookahead_per_mps: float = 0.22  # [s] extra lookahead per m/s of speed
    lookahead_max_m: float = 1.1  # [m]
    max_speed_mps: float = 2.4  # [m/s] on straights
    min_speed_mps: float = 0.8  # [m/s] never plan slower than this
    max_lat_accel_mps2: float = 2.2  # [m/s^2] corner speed = sqrt(a / |curvature|)
    brake_decel_mps2: float = 1.5  # [m/s^2] planned deceleration towards a corner (coasting gives ~2-3)
    preview_m: float = 3.0  # [m] how far ahead curvature is looked at
    speed_gain: float = 0.6  # throttle per (m/s of speed error), on top of the feed-forward


@dataclass(frozen=True)
class NoiseParams:
    """Perturbations of the *executed* command (labels stay the expert's correct command)."""

    steer_std: float = 0.0  # std of correlated steering noise [steering units]
    steer_tau_s: float = 0.3  # [s] correlation time of that noise
    drift_per_s: float = 0.0  # [1/s] rate at which deliberate drifts off the line start
    drift_steer: float = 0.35  # steering offset held during a drift [steering units]
    drift_s: tuple[float, float] = (0.4, 1.0)  # [s] range of drift durations
    drift_max_cte_frac: float = 0.32  # a drift ends early once |CTE| exceeds this fraction of the road width
    speed_var: float = 0.0  # relative variation of the target speed (0.2 = +-20 %), slow random walk
    speed_tau_s: float = 3.0  # [s] correlation time of the speed variation


NOISE_PRESETS: dict[str, NoiseParams] = {
    "none": NoiseParams(),
    "light": NoiseParams(steer_std=0.06, drift_per_s=0.12, drift_steer=0.3, speed_var=0.1),
    "heavy": NoiseParams(steer_std=0.2, drift_per_s=0.5, drift_steer=0.5, drift_s=(0.5, 1.2), speed_var=0.2),
}


_SAFE_STEER = 0.8  # above this |label steering| the executed command is the label itself
_DRIFT_START_STEER = 0.5  # drifts only start where the expert steers less than this


@dataclass(frozen=True)
class PerturbState:
    steer_noise: float = 0.0
    speed_noise: float = 0.0  # unit-variance random walk, scaled by speed_var
    drift_left_s: float = 0.0  # [s] remaining in the current drift (0 = none)
    drift_offset: float = 0.0  # steering offset of the current drift


def speed_profile(track: Track, params: ExpertParams) -> np.ndarray:
    """Per centerline sample: the fastest speed [m/s] that still brakes to every corner speed in the preview.

    Not yet capped by ``max_speed_mps`` (the speed variation scales that cap); computed once per track.
    """
    spacing = track.length_m / track.total_nodes
    k = np.arange(int(params.preview_m / spacing) + 1)
    corner = np.sqrt(params.max_lat_accel_mps2 / np.maximum(np.abs(track.curvature), 1e-6))
    idx = (np.arange(track.total_nodes)[:, None] + k[None, :]) % track.total_nodes
    reachable = np.sqrt(corner[idx] ** 2 + 2.0 * params.brake_decel_mps2 * k[None, :] * spacing)
    return reachable.min(axis=1)


def expert_command(
    track: Track,
    t: Telemetry,
    params: ExpertParams,
    vehicle: VehicleParams,
    speed_scale: float = 1.0,
    profile: np.ndarray | None = None,
) -> Control:
    """Pure pursuit steering and curvature-limited throttle for the car's current pose (the label).

    ``speed_scale`` scales the straight-line speed only; corner speeds stay within the lateral limit.
    ``profile`` is ``speed_profile(track, params)``, computed here when not given.
    """
    speed = abs(t.speed_mps)
    lookahead = min(params.lookahead_max_m, params.lookahead_min_m + params.lookahead_per_mps * speed)
    s_here = t.progress_m % track.length_m
    gx, gy, _ = track.pose_at(s_here + lookahead)
    dx, dy = gx - t.x_m, gy - t.y_m
    c, s = math.cos(t.yaw_rad), math.sin(t.yaw_rad)
    ahead, left = c * dx + s * dy, -s * dx + c * dy
    dist2 = max(ahead * ahead + left * left, 1e-6)
    if ahead < 0.0:  # goal behind the car (it is turned around): steer hardest towards it
        left = math.copysign(max(abs(left), 1e3), left if left != 0.0 else 1.0)
    wheel_left = math.atan(vehicle.wheelbase_m * 2.0 * left / dist2)  # [rad] pure pursuit, + = left
    steering = -wheel_left / math.radians(vehicle.max_steer_deg)
    profile = speed_profile(track, params) if profile is None else profile
    v_cap = params.max_speed_mps * speed_scale
    v_target = min(max(float(profile[t.active_node % len(profile)]), params.min_speed_mps), v_cap)
    throttle = (
        v_target / vehicle.top_speed_mps + params.speed_gain * (v_target - speed) / vehicle.top_speed_mps
    )
    return Control(steering=float(np.clip(steering, -1.0, 1.0)), throttle=float(np.clip(throttle, 0.0, 1.0)))


def perturb(
    label: Control,
    state: PerturbState,
    noise: NoiseParams,
    cte_m: float,
    width_m: float,
    dt_s: float,
    rng: np.random.Generator,
) -> tuple[Control, PerturbState]:
    """What the car executes for ``label``, and the next perturbation state."""
    a = math.exp(-dt_s / noise.steer_tau_s)
    steer_noise = a * state.steer_noise + math.sqrt(1 - a * a) * noise.steer_std * float(
        rng.standard_normal()
    )
    b = math.exp(-dt_s / noise.speed_tau_s)
    speed_noise = b * state.speed_noise + math.sqrt(1 - b * b) * float(rng.standard_normal())
    drift_left, offset = max(0.0, state.drift_left_s - dt_s), state.drift_offset
    # Safety: far off the line, or when the expert already needs nearly full lock, nothing is perturbed,
    # so every drift ends in a clean recovery (and the labels of that recovery are what the model learns).
    unsafe = abs(cte_m) > noise.drift_max_cte_frac * width_m or abs(label.steering) > _SAFE_STEER
    if unsafe:
        drift_left = 0.0
    if drift_left == 0.0:
        offset = 0.0
        calm = abs(label.steering) < _DRIFT_START_STEER and not unsafe
        if noise.drift_per_s > 0.0 and calm and rng.random() < noise.drift_per_s * dt_s:
            drift_left = float(rng.uniform(*noise.drift_s))
            offset = noise.drift_steer * (1.0 if rng.random() < 0.5 else -1.0)
    steering = label.steering if unsafe else label.steering + steer_noise + offset
    executed = replace(label, steering=float(np.clip(steering, -1.0, 1.0)))
    return executed, PerturbState(steer_noise, speed_noise, drift_left, offset)


class ExpertDriver:
    """The expert with its perturbations and seeded generator: ``act(telemetry) -> (label, executed)``."""

    def __init__(
        self,
        track: Track,
        *,
        params: ExpertParams | None = None,
        noise: NoiseParams | None = None,
        vehicle: VehicleParams | None = None,
        seed: int = 0,
        dt_s: float = CONTROL_PERIOD_S,
    ):
        self.track = track
        self.params = params or ExpertParams()
        self.noise = noise or NoiseParams()
        self.vehicle = vehicle or VehicleParams()
        self.dt_s = dt_s
        self.rng = np.random.default_rng(seed)
        self.state = PerturbState()
        self.profile = speed_profile(track, self.params)

    def act(self, t: Telemetry) -> tuple[Control, Control]:
        scale = 1.0 + self.noise.speed_var * float(np.clip(self.state.speed_noise, -2.0, 2.0)) / 2.0
        label = expert_command(
            self.track, t, self.params, self.vehicle, speed_scale=scale, profile=self.profile
        )
        executed, self.state = perturb(
            label, self.state, self.noise, t.cte_m, self.track.width_m, self.dt_s, self.rng
        )
        return label, executed


EXPERT = "expert"  # the expert's name in reports and on the command line (`--pilot expert`)


class ExpertPilot:
    """The expert as a pilot of an evaluation: the correct command for the sim's current pose, unperturbed.

    It reads the twin's ground truth (not the frame), so it is the baseline a model's speed and CTE are
    measured against on the same runs. Like a model pilot it has an identity for reports (`name`, `digest`:
    none, there is no file) and is `bound_to` each run's sim."""

    name = EXPERT
    digest = ""
    model_type = EXPERT

    def __init__(self, params: ExpertParams | None = None, *, sim=None):
        self.params = params
        self.sim = sim
        self.driver = ExpertDriver(sim.track, params=params) if sim is not None else None

    def bound_to(self, sim) -> ExpertPilot:
        """A fresh expert driving `sim` (its own track and pose)."""
        return ExpertPilot(self.params, sim=sim)

    def run(self, frame: np.ndarray) -> tuple[float, float]:
        if self.driver is None:
            raise RuntimeError("the expert drives a sim: use ExpertPilot().bound_to(sim)")
        label, _ = self.driver.act(self.sim.telemetry)
        return label.steering, label.throttle
