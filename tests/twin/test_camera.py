"""Camera: the road with its lines is in the lower part of the frame, sky above; cam_config handling."""

import math

import numpy as np
import pytest

from pitlane.twin.camera import Camera, CameraParams
from pitlane.twin.randomization import DomainRandomization
from pitlane.twin.scenes import load_scene
from pitlane.twin.vehicle import VehicleState


@pytest.fixture(scope="module")
def track():
    return load_scene("generated_track")


def start(track, s_m=0.0, lateral_m=0.0, dyaw=0.0):
    x, y, yaw = track.pose_at(s_m)
    return VehicleState(x + lateral_m * math.sin(yaw), y - lateral_m * math.cos(yaw), yaw + dyaw)


def white(img):
    return img.min(axis=2) > 190


def yellow(img):
    r, g, b = (img[..., k].astype(int) for k in range(3))
    return (r > 170) & (g > 130) & (b < 110) & (r - b > 90)


def test_frame_shows_road_lines_below_and_sky_above(track):
    cam = Camera(track)
    img = cam.render(start(track))
    assert img.shape == (120, 160, 3) and img.dtype == np.uint8
    top, bottom = img[:15], img[60:]
    # sky: every row one flat colour, blue the strongest channel
    assert (top.std(axis=1) == 0).all()
    assert (top[..., 2].astype(int) > top[..., 0] + 30).all()
    # the dashed yellow center line in the middle, white edge lines left and right
    assert yellow(img[40:])[:, 60:100].sum() > 40
    assert yellow(img[40:])[:, :40].sum() == 0
    assert white(img[25:])[:, :70].sum() > 40
    assert white(img[25:])[:, 90:].sum() > 40
    # the road's asphalt fills the bottom center
    road = np.array(track.style.road_rgb)
    assert np.abs(bottom[-20:, 60:100].reshape(-1, 3).mean(axis=0) - road).max() < 25


def test_lines_move_when_the_car_moves_sideways(track):
    cam = Camera(track)
    left = cam.render(start(track, lateral_m=-0.3))
    right = cam.render(start(track, lateral_m=0.3))
    cols = np.arange(160)

    def centroid(img):
        m = yellow(img[50:])
        return (m.sum(axis=0) * cols).sum() / m.sum()

    # car left of the centerline -> the center line appears right of the image center, and vice versa
    assert centroid(left) > 90 and centroid(right) < 70


def test_facing_away_from_the_road_shows_no_lines(track):
    cam = Camera(track)
    x, y, yaw = track.pose_at(0.0)
    outward = VehicleState(x, y - 1.0, yaw - math.pi / 2)  # step off to the right, face outwards
    img = cam.render(outward)
    assert yellow(img).sum() == 0 and white(img[40:]).sum() == 0
    ground = np.array(track.style.ground_rgb)
    assert np.abs(img[80:].reshape(-1, 3).mean(axis=0) - ground).max() < 25


@pytest.mark.parametrize("w, h", [(320, 240), (64, 64), (200, 66)])
def test_custom_image_size(track, w, h):
    img = Camera(track, CameraParams(img_w=w, img_h=h)).render(start(track))
    assert img.shape == (h, w, 3)
    assert yellow(img[h // 3 :]).sum() > 0


def test_rendering_is_deterministic_and_randomisation_is_seeded(track):
    plain = Camera(track)
    assert np.array_equal(plain.render(start(track)), plain.render(start(track)))
    cam = Camera(track, randomization=DomainRandomization())
    a = cam.render(start(track), np.random.default_rng(5))
    b = cam.render(start(track), np.random.default_rng(5))
    c = cam.render(start(track), np.random.default_rng(6))
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)
    assert np.abs(a.astype(int) - plain.render(start(track)).astype(int)).mean() > 2
    assert yellow(a[40:]).sum() > 10 or yellow(c[40:]).sum() > 10  # still a road


def test_from_cam_config_strings_and_zeros():
    p = CameraParams.from_cam_config(
        {"img_w": "320", "img_h": 240, "fov": "0", "offset_y": "0.3", "rot_x": "25,5", "img_enc": "JPG"}
    )
    assert (p.img_w, p.img_h, p.offset_y, p.rot_x_deg) == (320, 240, 0.3, 25.5)
    assert p.fov_deg == CameraParams().fov_deg  # 0 means unchanged, like the Unity sim
    assert CameraParams.from_cam_config({}) == CameraParams()


@pytest.mark.parametrize("msg", [{"img_w": "abc"}, {"fov": "nan"}, {"img_w": 100000}, {"rot_x": 95}])
def test_from_cam_config_rejects_bad_values(msg):
    with pytest.raises(ValueError):
        CameraParams.from_cam_config(msg)


def test_pitch_moves_the_horizon(track):
    level = Camera(track, CameraParams(rot_x_deg=5.0))
    down = Camera(track, CameraParams(rot_x_deg=35.0))

    def sky_rows(cam):  # rows without any ground texture: sky and haze
        img = cam.render(start(track))
        return int((img.std(axis=1).max(axis=1) == 0).sum())

    assert sky_rows(level) > sky_rows(Camera(track)) > sky_rows(down)
