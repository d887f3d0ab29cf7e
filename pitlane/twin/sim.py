"""`Sim`: the stateful convenience wrapper over the pure twin core (track + world step + camera).

The TCP server, the gymnasium env, data collection and evaluation all drive the twin through this class;
it owns nothing but the current state, the last control and a seeded random generator.
"""

from __future__ import annotations

import math

import numpy as np

from pitlane.twin.camera import Camera, CameraParams
from pitlane.twin.randomization import DomainRandomization
from pitlane.twin.scenes import DEFAULT_SCENE, load_scene
from pitlane.twin.track import Track
from pitlane.twin.vehicle import Control, VehicleState
from pitlane.twin.world import (
    CONTROL_PERIOD_S,
    Telemetry,
    WorldParams,
    WorldState,
    initial_state,
    state_at_pose,
    step,
    telemetry,
)


class Sim:
    """One car on one track.

    `scene` is a scene name (see `scenes.SCENE_NAMES`) or a Track. `seed` fixes the start pose draw (when
    `params` asks for random starts) and the domain randomisation, so the same seed and controls give the
    same telemetry and frames; for the scene name "generated_road" it is also the road's rand_seed.
    """

    def __init__(
        self,
        scene: str | Track = DEFAULT_SCENE,
        *,
        camera: CameraParams | None = None,
        params: WorldParams | None = None,
        seed: int = 0,
        randomize: DomainRandomization | None = None,
    ):
        self.track: Track = scene if isinstance(scene, Track) else load_scene(scene, rand_seed=seed)
        self.params = params or WorldParams()
        self.randomize = randomize
        self.camera_params = camera or CameraParams()
        self._camera = Camera(self.track, self.camera_params, randomize)
        self._seed = seed
        self.rng = np.random.default_rng(seed)
        self.control = Control()
        self.state: WorldState = initial_state(self.track, self.params, self.rng)

    def reset(self, seed: int | None = None) -> Telemetry:
        """Back to the start (at rest); a new `seed` re-seeds the generator."""
        if seed is not None:
            self._seed = seed
            self.rng = np.random.default_rng(seed)
        self.control = Control()
        self.state = initial_state(self.track, self.params, self.rng)
        return self.telemetry

    def step(self, control: Control, dt_s: float = CONTROL_PERIOD_S) -> Telemetry:
        """Hold `control` for `dt_s` seconds of simulated time (physics in sub-steps) and report."""
        self.control = control.clamped()
        self.state = step(self.state, self.control, self.track, self.params, dt_s)
        return self.telemetry

    def render(self) -> np.ndarray:
        """The camera frame at the current pose: (img_h, img_w, 3) uint8 RGB."""
        return self._camera.render(self.state.vehicle, self.rng if self.randomize else None)

    def set_camera(self, params: CameraParams) -> None:
        self.camera_params = params
        self._camera = Camera(self.track, params, self.randomize)

    def set_pose(self, x_m: float, y_m: float, yaw_rad: float) -> None:
        """Teleport the car (at rest); lap counting restarts from this pose."""
        for v in (x_m, y_m, yaw_rad):
            if not math.isfinite(float(v)):
                raise ValueError(f"pose must be finite numbers, got {(x_m, y_m, yaw_rad)}")
        yaw = (float(yaw_rad) + math.pi) % (2 * math.pi) - math.pi
        self.state = state_at_pose(
            self.track, VehicleState(float(x_m), float(y_m), yaw), self.state.time_s, self.params
        )

    @property
    def telemetry(self) -> Telemetry:
        return telemetry(self.state, self.track, self.control)
