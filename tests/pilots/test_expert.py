"""The expert drives every built-in scene on the line, recovers from drifts, and is deterministic per seed."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pitlane.pilots.expert import (
    NOISE_PRESETS,
    ExpertDriver,
    ExpertParams,
    ExpertPilot,
    NoiseParams,
    PerturbState,
    expert_command,
    perturb,
    speed_profile,
)
from pitlane.twin.scenes import SCENE_NAMES
from pitlane.twin.sim import Sim
from pitlane.twin.vehicle import Control, VehicleParams


def drive(sim: Sim, driver: ExpertDriver, laps: int) -> dict:
    t = sim.reset()
    cte: list[float] = []
    labels: list = []
    executed: list = []
    lap_times: list[float] = []
    off = 0
    limit = int(laps * sim.track.length_m / 0.5 / 0.05)
    while t.laps_completed < laps and len(cte) < limit:
        label, ex = driver.act(t)
        labels.append(label)
        executed.append(ex)
        t = sim.step(ex, 0.05)
        cte.append(abs(t.cte_m))
        off += t.hit != "none"
        if t.lap_time_s is not None:
            lap_times.append(t.lap_time_s)
    return {
        "laps": t.laps_completed,
        "cte": np.array(cte),
        "off": off,
        "labels": labels,
        "executed": executed,
        "lap_times": lap_times,
    }


@pytest.mark.slow
@pytest.mark.parametrize("scene", SCENE_NAMES)
def test_expert_completes_laps_on_every_scene(scene):
    sim = Sim(scene, seed=2)
    clean = drive(sim, ExpertDriver(sim.track, seed=2), laps=2)
    assert clean["laps"] == 2 and clean["off"] == 0
    assert clean["cte"].mean() < 0.05 and clean["cte"].max() < 0.15
    assert all(label == ex for label, ex in zip(clean["labels"], clean["executed"], strict=True))
    mean_speed = sim.track.length_m / np.mean(clean["lap_times"])
    assert 1.2 < mean_speed < ExpertParams().max_speed_mps
    heavy = drive(sim, ExpertDriver(sim.track, noise=NOISE_PRESETS["heavy"], seed=2), laps=2)
    assert heavy["laps"] == 2 and heavy["off"] == 0, "perturbations must never push the car off the road"
    assert heavy["cte"].mean() < 0.12 and heavy["cte"].max() < 0.5 * sim.track.width_m
    assert heavy["cte"].mean() > 1.5 * clean["cte"].mean(), "heavy noise should make the car leave the line"


def test_labels_steer_back_to_the_line():
    sim = Sim("generated_track")
    t = sim.reset()
    x, y, yaw = sim.track.pose_at(2.0)
    right = (math.sin(yaw), -math.cos(yaw))  # unit vector to the right of the driving direction
    for offset, sign in ((0.3, -1.0), (-0.3, 1.0)):
        sim.set_pose(x + offset * right[0], y + offset * right[1], yaw)
        t = sim.telemetry
        assert math.copysign(1.0, t.cte_m) == math.copysign(1.0, offset)
        label = expert_command(sim.track, t, ExpertParams(), VehicleParams())
        assert label.steering * sign > 0.3, "right of the line must steer left (negative), and vice versa"
        driver = ExpertDriver(sim.track)
        for _ in range(60):  # 3 s
            t = sim.step(driver.act(t)[1])
        assert abs(t.cte_m) < 0.05


def test_speed_slows_for_corners():
    sim = Sim("mini_monaco")
    params = ExpertParams()
    profile = speed_profile(sim.track, params)
    curvature = np.abs(sim.track.curvature)
    assert profile[np.argmax(curvature)] == pytest.approx(
        math.sqrt(params.max_lat_accel_mps2 / curvature.max()), rel=0.05
    )
    assert min(profile.max(), params.max_speed_mps) == params.max_speed_mps  # straights reach top speed


def test_perturbation_changes_only_the_executed_command_and_stops_when_far_off():
    rng = np.random.default_rng(0)
    noise = NoiseParams(steer_std=0.2, drift_per_s=5.0)
    label = Control(steering=0.1, throttle=0.5)
    state, changed = PerturbState(), 0
    for _ in range(100):
        executed, state = perturb(label, state, noise, cte_m=0.0, width_m=1.0, dt_s=0.05, rng=rng)
        changed += executed.steering != label.steering
        assert executed.throttle == label.throttle and -1.0 <= executed.steering <= 1.0
    assert changed == 100
    for cte in (0.4, -0.4):  # beyond drift_max_cte_frac of the road: pure recovery
        executed, state = perturb(label, state, noise, cte_m=cte, width_m=1.0, dt_s=0.05, rng=rng)
        assert executed == label and state.drift_left_s == 0.0


def test_deterministic_for_a_seed():
    sim = Sim("generated_road", seed=5)
    runs = []
    for seed in (7, 7, 8):
        driver = ExpertDriver(sim.track, noise=NOISE_PRESETS["heavy"], seed=seed)
        t = sim.reset()
        out = []
        for _ in range(200):
            label, ex = driver.act(t)
            t = sim.step(ex)
            out.append((label.steering, label.throttle, ex.steering, t.x_m, t.y_m))
        runs.append(out)
    assert runs[0] == runs[1] and runs[0] != runs[2]


def test_the_expert_pilot_has_an_identity_and_drives_the_sim_it_is_bound_to():
    pilot = ExpertPilot()
    assert (pilot.name, pilot.digest, pilot.model_type) == ("expert", "", "expert")  # reports: no model file
    with pytest.raises(RuntimeError, match="bound_to"):
        pilot.run(np.zeros((120, 160, 3), np.uint8))
    sim = Sim("generated_track")
    bound = pilot.bound_to(sim)
    steering, throttle = bound.run(sim.render())
    assert throttle > 0.0 and -1.0 <= steering <= 1.0
    other = bound.bound_to(Sim("mini_monaco"))  # a fresh driver per run: its own track
    assert other is not bound and other.driver is not None and other.driver.track.name == "mini_monaco"
