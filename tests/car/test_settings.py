"""The car config: profiles, and a clear error at start for every invalid value."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from pitlane.car.settings import DEFAULT_CAR_DIR, load_car_config, watchdog_params
from pitlane.errors import UserError
from pitlane.pilots.watchdog import WatchdogParams
from pitlane.twin.protocol import DEFAULT_PORT


def test_default_car_is_the_twin_profile_at_20_hz():
    cfg = load_car_config()
    assert cfg.PITLANE_PROFILE == "twin"
    assert cfg.DRIVE_LOOP_HZ == 20
    assert cfg.WEB_CONTROL_PORT == 8887
    # donkeycar's own DONKEY_GYM path can be switched on without other changes
    assert (cfg.DONKEY_GYM, cfg.DONKEY_SIM_PATH, cfg.SIM_HOST) == (False, "remote", "127.0.0.1")
    assert cfg.DONKEY_GYM_ENV_NAME == "donkey-generated-track-v0"
    assert watchdog_params(cfg).loop_period_s == pytest.approx(0.05)


def test_the_watchdog_defaults_have_one_home():
    """config.py's WATCHDOG_* / AI_MAX_THROTTLE and a config without them both give WatchdogParams()'s
    limits; a myconfig value still wins."""
    home = WatchdogParams(loop_period_s=0.05)
    assert watchdog_params(load_car_config()) == home
    bare = SimpleNamespace(DRIVE_LOOP_HZ=20)  # a car folder whose config.py predates the keys
    assert watchdog_params(bare) == home
    assert (
        watchdog_params(SimpleNamespace(DRIVE_LOOP_HZ=20, AI_MAX_THROTTLE=0.3)).max_autopilot_throttle == 0.3
    )
    assert load_car_config().SIM_PORT == DEFAULT_PORT == 9091  # the documented default port


def test_profile_flag_beats_environment_beats_myconfig(monkeypatch):
    monkeypatch.setenv("PITLANE_PROFILE", "pi")
    assert load_car_config().PITLANE_PROFILE == "pi"
    assert load_car_config(profile="twin").PITLANE_PROFILE == "twin"


def test_myconfig_overrides_config(tmp_path):
    (tmp_path / "config.py").write_text((DEFAULT_CAR_DIR / "config.py").read_text())
    (tmp_path / "myconfig.py").write_text(
        'PITLANE_PROFILE = "pi"\nCAMERA_TYPE = "MOCK"\nDRIVE_LOOP_HZ = 10\n'
    )
    cfg = load_car_config(tmp_path)
    assert (cfg.PITLANE_PROFILE, cfg.CAMERA_TYPE, cfg.DRIVE_LOOP_HZ) == ("pi", "MOCK", 10)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"PITLANE_PROFILE": "laptop"}, "PITLANE_PROFILE must be one of twin, pi"),
        ({"DRIVE_LOOP_HZ": 0}, "DRIVE_LOOP_HZ must be > 0"),
        ({"DRIVE_LOOP_HZ": "20"}, "DRIVE_LOOP_HZ must be a number"),
        ({"WEB_CONTROL_PORT": 70000}, "WEB_CONTROL_PORT must be <= 65535"),
        ({"WEB_INIT_MODE": "autopilot"}, "WEB_INIT_MODE must be one of user, local_angle, local"),
        ({"IMAGE_DEPTH": 4}, "IMAGE_DEPTH must be 1 or 3"),
        ({"SIM_PORT": 0}, "SIM_PORT must be >= 1"),
        ({"DONKEY_GYM": True, "DONKEY_SIM_PATH": "/opt/sim"}, "DONKEY_SIM_PATH must be 'remote'"),
        ({"AI_MAX_THROTTLE": 2.0}, "max_autopilot_throttle must be in [0, 1]"),
        ({"WATCHDOG_MAX_FRAME_AGE_S": 0}, "max_frame_age_s must be > 0"),
        ({"WATCHDOG_MAX_OVERRUNS": 0.5}, "max_overruns must be an integer >= 1"),
        ({"DEFAULT_MODEL_TYPE": "rnn"}, "DEFAULT_MODEL_TYPE must be one of linear"),
    ],
)
def test_invalid_values_stop_the_start_with_a_clear_error(overrides, message):
    profile = overrides.pop("PITLANE_PROFILE", None)
    with pytest.raises(UserError, match="invalid car config") as err:
        load_car_config(profile=profile, overrides=overrides)
    assert message in str(err.value)


def test_every_problem_is_named_at_once():
    with pytest.raises(UserError) as err:
        load_car_config(overrides={"DRIVE_LOOP_HZ": -1, "WEB_INIT_MODE": "x", "SIM_HOST": ""})
    text = str(err.value)
    assert "DRIVE_LOOP_HZ" in text and "WEB_INIT_MODE" in text and "SIM_HOST" in text


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"CAMERA_TYPE": "KINECT"}, "CAMERA_TYPE must be one of PICAM"),
        ({"DRIVE_TRAIN_TYPE": "VESC"}, "DRIVE_TRAIN_TYPE must be one of PWM_STEERING_THROTTLE, MOCK"),
        ({"DONKEY_GYM": True}, "use PITLANE_PROFILE = 'twin'"),
        ({"PWM_STEERING_THROTTLE": {"PWM_STEERING_PIN": "PCA9685.1:40.1"}}, "lacks PWM_STEERING_SCALE"),
    ],
)
def test_pi_profile_checks_camera_and_drivetrain(overrides, message):
    with pytest.raises(UserError, match="invalid car config") as err:
        load_car_config(profile="pi", overrides=overrides)
    assert message in str(err.value)


def test_pi_profile_checks_pwm_pulses():
    cfg = load_car_config(profile="pi")
    pwm = dict(cfg.PWM_STEERING_THROTTLE, THROTTLE_FORWARD_PWM=5000)
    with pytest.raises(UserError, match="THROTTLE_FORWARD_PWM.*0..4095"):
        load_car_config(profile="pi", overrides={"PWM_STEERING_THROTTLE": pwm})


def test_missing_car_folder_or_myconfig(tmp_path):
    with pytest.raises(UserError, match="config.py is missing"):
        load_car_config(tmp_path)
    with pytest.raises(UserError, match="myconfig file 'other.py' not found"):
        load_car_config(myconfig="other.py")


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"WEB_CONSOLE_TOKEN": "short"}, "WEB_CONSOLE_TOKEN (PITLANE_CONSOLE_TOKEN) must have at least 16"),
        ({"WEB_CONTROL_ADDRESS": 127}, "WEB_CONTROL_ADDRESS must be an address"),
        ({"WEB_ALLOWED_HOSTS": "mycar.lan"}, "WEB_ALLOWED_HOSTS must be a list of host names"),
        ({"WEB_ALLOWED_HOSTS": ["my car"]}, "WEB_ALLOWED_HOSTS must be a list of host names"),
        ({"USER_MAX_THROTTLE": 1.5}, "USER_MAX_THROTTLE must be <= 1"),
        ({"USER_MAX_THROTTLE": "0.3"}, "USER_MAX_THROTTLE must be a number"),
        ({"WEB_DRIVER_IDLE_S": 0}, "WEB_DRIVER_IDLE_S must be > 0"),
        ({"WEB_TOKEN_FILE": ""}, "WEB_TOKEN_FILE must be a path"),
    ],
)
def test_console_keys_are_checked(overrides, message):
    with pytest.raises(UserError, match="invalid car config") as err:
        load_car_config(overrides=overrides)
    assert message in str(err.value)


def test_the_console_listens_on_localhost_unless_told(monkeypatch):
    monkeypatch.delenv("WEB_CONTROL_ADDRESS", raising=False)
    monkeypatch.delenv("PITLANE_CONSOLE_TOKEN", raising=False)
    cfg = load_car_config()
    assert cfg.WEB_CONTROL_ADDRESS == "127.0.0.1" and cfg.WEB_CONSOLE_TOKEN is None
    assert cfg.USER_MAX_THROTTLE == 0.5 and cfg.WEB_ALLOWED_HOSTS == []
    monkeypatch.setenv("WEB_CONTROL_ADDRESS", "0.0.0.0")  # what the cluster's overlays set
    monkeypatch.setenv("PITLANE_CONSOLE_TOKEN", "from-the-secret-0123456789")
    monkeypatch.setenv("WEB_ALLOWED_HOSTS", "car1.lan,car1")
    cfg = load_car_config()
    assert (cfg.WEB_CONTROL_ADDRESS, cfg.WEB_CONSOLE_TOKEN) == ("0.0.0.0", "from-the-secret-0123456789")
    assert cfg.WEB_ALLOWED_HOSTS == ["car1.lan", "car1"]
