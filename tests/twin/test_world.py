"""World step: laps (counted only going forward), lap times, off-track hits, determinism, sub-steps."""

import math

import pytest

from pitlane.twin.scenes import SCENE_NAMES, load_scene
from pitlane.twin.track import Track
from pitlane.twin.vehicle import Control, VehicleState
from pitlane.twin.world import (
    HIT_NONE,
    HIT_OFF_TRACK,
    WorldParams,
    initial_state,
    state_at_pose,
    step,
    telemetry,
)

PARAMS = WorldParams()


def follow(track: Track, state, throttle=0.5, lookahead_m=0.6) -> Control:
    """Pure pursuit on the centerline: just enough of a driver to prove a track is drivable."""
    v = state.vehicle
    tx, ty, _ = track.pose_at(state.s_m + lookahead_m)
    alpha = math.atan2(ty - v.y_m, tx - v.x_m) - v.yaw_rad
    delta = math.atan2(2 * PARAMS.vehicle.wheelbase_m * math.sin(alpha), lookahead_m)
    return Control(steering=-delta / math.radians(PARAMS.vehicle.max_steer_deg), throttle=throttle)


def drive(track, seconds, dt=0.05, state=None, throttle=0.5):
    state = state or initial_state(track, PARAMS)
    history = []
    for _ in range(int(round(seconds / dt))):
        control = follow(track, state, throttle)
        state = step(state, control, track, PARAMS, dt)
        history.append((state, telemetry(state, track, control)))
    return state, history


@pytest.mark.parametrize("name", SCENE_NAMES)
def test_every_scene_can_be_lapped_without_leaving_the_road(name):
    track = load_scene(name)
    speed = 0.5 * PARAMS.vehicle.top_speed_mps  # ~1.6 m/s after rolling resistance
    state, hist = drive(track, 1.15 * track.length_m / 1.6 + 2.0)
    assert all(t.hit == HIT_NONE for _, t in hist)
    assert max(abs(t.cte_m) for _, t in hist) < 0.5 * track.width_m
    assert state.laps_completed == 1
    lap_times = [t.lap_time_s for _, t in hist if t.lap_time_s is not None]
    assert len(lap_times) == 1
    assert track.length_m / speed < lap_times[0] < 1.25 * track.length_m / 1.5
    assert state.last_lap_time_s == lap_times[0]


def test_line_crossing_time_is_interpolated_inside_the_step():
    track = load_scene("warehouse")  # the start line is in the middle of a 7 m straight
    x, y, yaw = track.pose_at(track.length_m - 1.0)
    starts = []
    for dt in (0.01, 0.1):
        state = state_at_pose(track, VehicleState(x, y, yaw))
        for _ in range(int(round(2.0 / dt))):
            state = step(state, Control(throttle=0.5), track, PARAMS, dt)
        starts.append(state.lap_start_time_s)
    assert starts[0] == pytest.approx(starts[1], abs=0.002)
    assert 0.5 < starts[1] < 2.0 and abs(starts[1] * 10 - round(starts[1] * 10)) > 0.01


def test_reversing_over_the_start_line_never_counts_a_lap():
    track = load_scene("generated_track")
    state = initial_state(track, PARAMS)
    for _ in range(6):
        for throttle in (-0.6, 0.6):  # back over the start line, then forward over it again
            for _ in range(30):
                state = step(state, Control(throttle=throttle), track, PARAMS, 0.05)
    assert state.laps_completed == 0
    assert abs(state.s_m) < 3.0


def test_progress_and_active_node_follow_the_car():
    track = load_scene("circuit_launch")
    state, hist = drive(track, 5.0)
    nodes = [t.active_node for _, t in hist]
    assert nodes == sorted(nodes) and nodes[-1] > 100
    assert state.s_m == pytest.approx(track.s[state.track_index], abs=0.1)
    assert hist[-1][1].total_nodes == track.total_nodes


def test_start_elsewhere_counts_the_first_lap_from_the_first_crossing():
    track = load_scene("warehouse")
    x, y, yaw = track.pose_at(track.length_m - 3.0)
    state = state_at_pose(track, VehicleState(x, y, yaw))
    assert state.s_m == pytest.approx(-3.0, abs=0.05)
    state, hist = drive(track, 3.0 / 1.6 + track.length_m / 1.6 + 6.0, state=state)
    assert state.laps_completed == 1
    lap = next(t.lap_time_s for _, t in hist if t.lap_time_s)
    assert lap == pytest.approx(track.length_m / 1.63, rel=0.12)


def test_leaving_the_road_sets_hit():
    track = load_scene("generated_track")
    state = initial_state(track, PARAMS)
    hits = []
    for _ in range(60):
        state = step(state, Control(steering=1.0, throttle=0.6), track, PARAMS, 0.05)
        hits.append(state.hit)
    assert hits[0] == HIT_NONE and hits[-1] == HIT_OFF_TRACK
    first = hits.index(HIT_OFF_TRACK)
    assert all(h == HIT_OFF_TRACK for h in hits[first : first + 5])


def test_deterministic_for_a_seed():
    track = load_scene("mini_monaco")
    p = WorldParams(random_start=True, start_lateral_std_m=0.1, start_yaw_std_deg=5.0)
    a, b, c = initial_state(track, p, 7), initial_state(track, p, 7), initial_state(track, p, 8)
    assert a == b and a != c
    ra, _ = drive(track, 3.0, state=a)
    rb, _ = drive(track, 3.0, state=b)
    assert ra == rb


def test_physics_substeps_do_not_depend_on_the_control_rate():
    track = load_scene("generated_track")
    s20 = s40 = initial_state(track, PARAMS)
    control = Control(steering=0.2, throttle=0.5)
    for _ in range(40):
        s20 = step(s20, control, track, PARAMS, 0.05)
    for _ in range(80):
        s40 = step(s40, control, track, PARAMS, 0.025)
    assert s20.vehicle.x_m == pytest.approx(s40.vehicle.x_m, abs=1e-9)
    assert s20.vehicle.yaw_rad == pytest.approx(s40.vehicle.yaw_rad, abs=1e-9)


def test_bad_dt_is_refused():
    track = load_scene("generated_track")
    with pytest.raises(ValueError, match="dt_s"):
        step(initial_state(track, PARAMS), Control(), track, PARAMS, float("nan"))
    with pytest.raises(ValueError, match="physics_dt_s"):
        WorldParams(physics_dt_s=0.0)
