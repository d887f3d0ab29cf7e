"""Assembling the car: the pi profile's parts (without the Pi's hardware), manage.py, DONKEY_GYM."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

from pitlane.car.app import build_car, pi_camera_plan, pi_drivetrain_plans
from pitlane.car.settings import DEFAULT_CAR_DIR, load_car_config
from pitlane.errors import UserError
from pitlane.pilots.watchdog import STALE_FRAME


def test_pi_profile_chooses_donkeycars_picamera_and_pwm_parts():
    cfg = load_car_config(profile="pi")
    cam = pi_camera_plan(cfg)
    assert cam.name == "donkeycar.parts.camera.PiCamera"
    assert (cam.outputs, cam.threaded) == (["cam/image_array"], True)
    steering, throttle = pi_drivetrain_plans(cfg)
    assert (steering.name, steering.inputs) == ("donkeycar.parts.actuator.PWMSteering", ["steering"])
    assert (throttle.name, throttle.inputs) == ("donkeycar.parts.actuator.PWMThrottle", ["throttle"])


def test_pi_parts_reach_the_hardware_libraries():
    """Building them here fails exactly where the Pi's libraries are needed (picamera2, the PCA9685 driver)."""
    cfg = load_car_config(profile="pi")
    with pytest.raises(ModuleNotFoundError, match="picamera2"):
        pi_camera_plan(cfg).build()
    with pytest.raises(ModuleNotFoundError, match="Adafruit_PCA9685"):
        pi_drivetrain_plans(cfg)[0].build()


@pytest.mark.parametrize(
    ("camera", "cls"),
    [
        ("WEBCAM", "donkeycar.parts.camera.Webcam"),
        ("CSIC", "donkeycar.parts.camera.CSICamera"),
        ("MOCK", "donkeycar.parts.camera.MockCamera"),
    ],
)
def test_pi_camera_types(camera, cls):
    assert pi_camera_plan(load_car_config(profile="pi", overrides={"CAMERA_TYPE": camera})).name == cls


def test_pi_profile_with_mock_hardware_runs_and_the_watchdog_sees_a_frozen_camera(car_config):
    """MockCamera repeats one frame forever: to the watchdog that is a stale camera, so the car stops."""
    cfg = car_config(PITLANE_PROFILE="pi", CAMERA_TYPE="MOCK", DRIVE_TRAIN_TYPE="MOCK")
    car = build_car(cfg, None, record=False)
    assert car.twin is None and car.autopilot_refusal == "no model given (--model)"
    car.web.throttle = 0.5
    car.start(max_loop_count=12)
    assert car.vehicle.mem["throttle"] == 0.0
    assert [e.reason for e in car.watchdog.events] == [STALE_FRAME]


def test_donkey_gym_without_gym_donkeycar_says_how_to_fix(car_config, twin):
    try:
        import gym_donkeycar  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("gym-donkeycar is installed: covered by test_donkey_gym_path_drives_the_twin")
    cfg = car_config(twin.port, DONKEY_GYM=True)
    with pytest.raises(UserError, match="gym-donkeycar 1.3.*DONKEY_GYM = False"):
        build_car(cfg, None, record=False)


def test_donkey_gym_path_drives_the_twin(car_config, twin):
    """With gym-donkeycar installed, donkeycar's DonkeyGymEnv part drives the twin through the same app."""
    pytest.importorskip("gym_donkeycar")
    cfg = car_config(twin.port, DONKEY_GYM=True, DONKEY_GYM_ENV_NAME="donkey-generated-track-v0")
    car = build_car(cfg, None, record=False)
    car.web.throttle = 0.3
    car.start(max_loop_count=40)
    assert car.vehicle.mem["cam/image_array"].shape == (120, 160, 3)
    assert car.vehicle.mem["pos/speed"] > 0.0


def _car_copy(tmp_path, myconfig: str):
    car = tmp_path / "mycar"
    shutil.copytree(DEFAULT_CAR_DIR, car, ignore=shutil.ignore_patterns("data", "models", "__pycache__"))
    (car / "myconfig.py").write_text(myconfig)
    return car


def test_manage_py_drive_runs_like_a_donkeycar_app(tmp_path, twin):
    car = _car_copy(tmp_path, f"SIM_PORT = {twin.port}\nWEB_CONTROL_PORT = 0\nMAX_LOOPS = 20\n")
    out = subprocess.run(
        [sys.executable, "manage.py", "drive"], cwd=car, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert "Vehicle executed 20 steps" in out.stderr
    assert "twin connected" in out.stderr
    assert (car / "data" / "manifest.json").is_file()


@pytest.mark.slow
def test_manage_py_drive_with_a_model_in_local_mode(tmp_path, twin, trained_model):
    car = _car_copy(
        tmp_path,
        f"SIM_PORT = {twin.port}\nWEB_CONTROL_PORT = 0\nMAX_LOOPS = 60\n"
        'WEB_INIT_MODE = "local"\nRECORD_DURING_AI = True\n',
    )
    out = subprocess.run(
        [sys.executable, "manage.py", "drive", "--model", str(trained_model)],
        cwd=car,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert "loaded ModelPilot(" in out.stderr and "autopilot refused" not in out.stderr
    assert "Vehicle executed 60 steps" in out.stderr


def test_manage_py_reports_invalid_config_clearly(tmp_path):
    car = _car_copy(tmp_path, "DRIVE_LOOP_HZ = -5\n")
    out = subprocess.run(
        [sys.executable, "manage.py", "drive"], cwd=car, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 1
    assert "error: invalid car config: DRIVE_LOOP_HZ must be > 0, got -5" in out.stderr
    assert "Traceback" not in out.stderr


def test_a_broken_myconfig_is_a_clear_error(tmp_path):
    car = _car_copy(tmp_path, "DRIVE_LOOP_HZ = twenty\n")
    with pytest.raises(
        UserError, match="cannot read the car config.*NameError: name 'twenty' is not defined"
    ):
        load_car_config(car)


def test_manage_py_help_is_donkeycars_docopt():
    out = subprocess.run(
        [sys.executable, str(DEFAULT_CAR_DIR / "manage.py"), "--help"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0
    assert "manage.py (drive) [--model=<model>]" in out.stdout


def test_web_port_in_use_is_one_line_before_anything_runs(car_config):
    import socket

    with socket.socket() as busy:
        busy.bind(("", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(UserError, match=rf"^web port \(WEB_CONTROL_PORT\) {port}: the port is in use"):
            build_car(car_config(WEB_CONTROL_PORT=port), None, record=False)
