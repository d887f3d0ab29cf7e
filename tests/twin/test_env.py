"""Gymnasium env: passes gymnasium's checker, gym-donkeycar's spaces, reward and episode ends."""

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import pitlane.twin.env  # noqa: F401  (registers pitlane/Twin-v0)
from pitlane.twin.env import ENV_ID, TwinEnv


def test_check_env_passes():
    check_env(gym.make(ENV_ID, scene="warehouse", render_mode="rgb_array").unwrapped, skip_render_check=False)


def test_registered_id_with_scene_kwarg():
    env = gym.make(ENV_ID, scene="mini_monaco")
    obs, info = env.reset(seed=0)
    assert obs.shape == (120, 160, 3) and obs.dtype == np.uint8
    twin = env.unwrapped
    assert isinstance(twin, TwinEnv) and twin.sim.track.name == "mini_monaco"
    space = env.action_space
    assert isinstance(space, gym.spaces.Box) and space.shape == (2,)
    assert space.low.tolist() == [-1.0, 0.0] and space.high.tolist() == [1.0, 1.0]
    assert set(info) >= {"cte", "pos", "speed", "laps", "hit"}
    env.close()


def test_driving_straight_off_the_road_terminates_with_minus_one():
    env = TwinEnv("generated_track")
    env.reset(seed=0)
    rewards, terminated = [], False
    for _ in range(400):
        _, r, terminated, truncated, info = env.step(np.array([0.0, 0.6], np.float32))
        rewards.append(r)
        if terminated or truncated:
            break
    assert terminated and not truncated
    assert rewards[-1] == -1.0 and info["hit"] == "off_track"
    assert max(rewards[:-1]) > 0.5  # moving along the road centre earns about the speed per step


def test_step_limit_truncates():
    env = TwinEnv("generated_track", max_episode_steps=5)
    env.reset(seed=0)
    for _ in range(5):
        _, r, terminated, truncated, _ = env.step(np.array([0.0, 0.0], np.float32))
    assert truncated and not terminated and r == 0.0


def test_reward_shrinks_with_cte():
    env = TwinEnv("warehouse")
    env.reset(seed=0)
    for _ in range(15):
        _, centered, *_ = env.step(np.array([0.0, 0.5], np.float32))
    env.reset(seed=0)
    sim = env.sim
    x, y, yaw = sim.track.pose_at(0.0)
    sim.set_pose(x, y - 0.35, yaw)
    for _ in range(15):
        _, offset, *_ = env.step(np.array([0.0, 0.5], np.float32))
    assert 0 < offset < 0.6 * centered


def test_bad_render_mode_is_refused():
    with pytest.raises(ValueError):
        TwinEnv(render_mode="human")
