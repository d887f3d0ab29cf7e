"""A gymnasium env over the twin, in-process (no sockets), modelled on gym-donkeycar's `DonkeyEnv`.

Same observation (camera frame, 120x160x3 uint8), action (steering -1..1, throttle 0..1) and reward shape as
gym-donkeycar, so agents and wrappers written for it work here at thousands of steps per second:

    import gymnasium, pitlane.twin.env
    env = gymnasium.make("pitlane/Twin-v0", scene="mini_monaco")

Reward: -1 when the episode ends by leaving the road, else (1 - |cte| / max_cte) * forward speed along
the track [m/s] (gym-donkeycar uses the car's own forward speed; along the track rules out circling).
"""

from __future__ import annotations

import math
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from pitlane.twin.camera import CameraParams
from pitlane.twin.randomization import DomainRandomization
from pitlane.twin.scenes import DEFAULT_SCENE
from pitlane.twin.sim import Sim
from pitlane.twin.track import Track
from pitlane.twin.vehicle import Control
from pitlane.twin.world import CONTROL_PERIOD_S, HIT_NONE, Telemetry, WorldParams

ENV_ID = "pitlane/Twin-v0"


class TwinEnv(gym.Env):
    """One car on one scene; an episode ends when the car leaves the road or after `max_episode_steps`."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 20}

    def __init__(
        self,
        scene: str | Track = DEFAULT_SCENE,
        *,
        render_mode: str | None = None,
        max_episode_steps: int = 2000,
        step_s: float = CONTROL_PERIOD_S,
        camera: CameraParams | None = None,
        params: WorldParams | None = None,
        randomize: DomainRandomization | None = None,
        max_cte_m: float | None = None,
        rand_seed: int = 0,
    ):
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode {render_mode!r} not in {self.metadata['render_modes']}")
        if max_episode_steps < 1:
            raise ValueError("max_episode_steps must be >= 1")
        self.render_mode = render_mode
        self.max_episode_steps = int(max_episode_steps)
        self.step_s = float(step_s)  # [s] simulated time per action (20 Hz like the Unity sim's stream)
        self.sim = Sim(scene, camera=camera, params=params, seed=rand_seed, randomize=randomize)
        track = self.sim.track
        # gym-donkeycar's max_cte (8.0) is in Unity units; here: the off-road limit of this track [m]
        self.max_cte_m = (
            max_cte_m if max_cte_m is not None else 0.5 * track.width_m + self.sim.params.off_track_margin_m
        )
        cam = self.sim.camera_params
        self.observation_space = spaces.Box(0, 255, (cam.img_h, cam.img_w, 3), dtype=np.uint8)
        self.action_space = spaces.Box(
            np.array([-1.0, 0.0], np.float32), np.array([1.0, 1.0], np.float32), dtype=np.float32
        )
        self._steps = 0
        self._frame: np.ndarray | None = None

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        # the sim's own generator (start pose, randomisation) is drawn from the env's seeded generator
        self.sim.reset(seed=int(self.np_random.integers(2**31)))
        self._steps = 0
        self._frame = self.sim.render()
        return self._frame, self._info(self.sim.telemetry)

    def step(self, action):
        a = np.asarray(action, dtype=np.float64).reshape(-1)
        if a.shape != (2,):
            raise ValueError(f"action must be [steering, throttle], got shape {np.shape(action)}")
        tel = self.sim.step(Control(steering=float(a[0]), throttle=float(a[1])), self.step_s)
        self._steps += 1
        self._frame = self.sim.render()
        terminated = tel.hit != HIT_NONE or abs(tel.cte_m) > self.max_cte_m
        truncated = not terminated and self._steps >= self.max_episode_steps
        return self._frame, self._reward(tel, terminated), terminated, truncated, self._info(tel)

    def render(self):
        if self.render_mode == "rgb_array":
            return self._frame if self._frame is not None else self.sim.render()
        return None

    def _reward(self, tel: Telemetry, terminated: bool) -> float:
        if terminated:
            return -1.0
        heading = float(self.sim.track.heading[tel.active_node])
        forward = tel.speed_mps * math.cos(tel.yaw_rad - heading)
        return float((1.0 - abs(tel.cte_m) / self.max_cte_m) * forward)

    def _info(self, tel: Telemetry) -> dict[str, Any]:
        return {
            "cte": tel.cte_m,
            "pos": (tel.x_m, 0.0, tel.y_m),  # Unity axes like gym-donkeycar: (x, height, z = our y)
            "speed": tel.speed_mps,
            "vel": (tel.vel_x, 0.0, tel.vel_y),
            "hit": tel.hit,
            "laps": tel.laps_completed,
            "lap_count": tel.laps_completed,
            "last_lap_time": self.sim.state.last_lap_time_s or 0.0,
            "progress_m": tel.progress_m,
            "time_s": tel.time_s,
        }


def register_envs() -> None:
    """Register `pitlane/Twin-v0` (kwarg `scene`) with gymnasium; importing this module does it."""
    if ENV_ID not in gym.registry:
        gym.register(id=ENV_ID, entry_point="pitlane.twin.env:TwinEnv")


register_envs()
