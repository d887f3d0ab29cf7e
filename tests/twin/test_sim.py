"""Sim: the stateful adapter the server, env, data collection and evaluation use."""

import math

import numpy as np
import pytest

from pitlane.twin import CameraParams, Control, DomainRandomization, Sim, WorldParams, generate_track


def test_step_render_reset_cycle():
    sim = Sim("warehouse")
    tel = sim.telemetry
    assert tel.time_s == 0 and tel.speed_mps == 0 and tel.hit == "none"
    assert tel.total_nodes == sim.track.total_nodes
    for _ in range(20):
        tel = sim.step(Control(throttle=0.5))
    assert tel.time_s == pytest.approx(1.0)
    assert tel.speed_mps > 1.0 and tel.throttle == 0.5
    assert tel.progress_m > 0.5
    frame = sim.render()
    assert frame.shape == (120, 160, 3) and frame.dtype == np.uint8
    tel = sim.reset()
    assert tel.time_s == 0 and tel.speed_mps == 0 and tel.throttle == 0


def test_step_clamps_bad_controls():
    sim = Sim()
    tel = sim.step(Control(steering=float("nan"), throttle=7.0, brake=-1.0))
    assert (tel.steering, tel.throttle, tel.brake) == (0.0, 1.0, 0.0)


def test_set_camera_changes_the_frame_size():
    sim = Sim()
    sim.set_camera(CameraParams(img_w=320, img_h=240, fov_deg=90))
    assert sim.render().shape == (240, 320, 3)
    assert sim.camera_params.img_w == 320


def test_set_pose_teleports_and_reports_cte():
    sim = Sim("generated_track")
    x, y, yaw = sim.track.pose_at(10.0)
    sim.set_pose(x + 0.3 * math.sin(yaw), y - 0.3 * math.cos(yaw), yaw)
    tel = sim.telemetry
    assert tel.cte_m == pytest.approx(0.3, abs=0.01)
    assert tel.active_node == pytest.approx(200, abs=2)
    with pytest.raises(ValueError):
        sim.set_pose(float("nan"), 0, 0)


def test_same_seed_same_run_with_randomisation():
    def run(seed):
        sim = Sim(
            "mini_monaco",
            seed=seed,
            randomize=DomainRandomization(),
            params=WorldParams(random_start=True, start_lateral_std_m=0.1),
        )
        frames = []
        for i in range(10):
            sim.step(Control(steering=0.1 * (i % 3 - 1), throttle=0.4))
            frames.append(sim.render())
        return sim.telemetry, np.stack(frames)

    (ta, fa), (tb, fb), (tc, fc) = run(3), run(3), run(4)
    assert ta == tb and np.array_equal(fa, fb)
    assert ta != tc and not np.array_equal(fa, fc)


def test_reset_with_seed_reproduces_start():
    sim = Sim("warehouse", params=WorldParams(random_start=True))
    a = sim.reset(seed=11)
    sim.reset(seed=12)
    assert sim.reset(seed=11) == a


def test_accepts_a_track_object():
    track = generate_track(99)
    sim = Sim(track)
    assert sim.track is track
    assert sim.step(Control(throttle=0.3)).hit == "none"
