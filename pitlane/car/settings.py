"""The car app's configuration: donkeycar's config.py + myconfig.py, a profile, and a check at start.

donkeycar reads `config.py` and then `myconfig.py` from the car folder (`donkeycar.load_config`); pitlane
adds one key, ``PITLANE_PROFILE`` ("twin": frames and telemetry from the twin over TCP; "pi": the camera and
PWM drivetrain of a Raspberry Pi car), chosen by ``--profile``, else the ``PITLANE_PROFILE`` environment
variable, else myconfig.py. `check_config` turns every invalid value into one clear error at start
instead of a failure deep inside a part.
"""

from __future__ import annotations

import math
import os
from importlib import resources
from pathlib import Path

from pitlane.car.console_auth import token_problem
from pitlane.errors import UserError
from pitlane.fleet.settings import fleet_problems
from pitlane.pilots.model import MODEL_TYPES
from pitlane.pilots.watchdog import WatchdogParams
from pitlane.twin.world import CONTROL_HZ

PROFILES: tuple[str, ...] = ("twin", "pi")
DRIVE_MODES: tuple[str, ...] = ("user", "local_angle", "local")
# the camera and drivetrain types the pi profile builds (donkeycar's names; MOCK runs without hardware)
PI_CAMERA_TYPES: tuple[str, ...] = ("PICAM", "WEBCAM", "CVCAM", "CSIC", "V4L", "MOCK")
PI_DRIVE_TRAIN_TYPES: tuple[str, ...] = ("PWM_STEERING_THROTTLE", "MOCK")
PWM_KEYS: tuple[str, ...] = (
    "PWM_STEERING_PIN",
    "PWM_STEERING_SCALE",
    "PWM_STEERING_INVERTED",
    "PWM_THROTTLE_PIN",
    "PWM_THROTTLE_SCALE",
    "PWM_THROTTLE_INVERTED",
    "STEERING_LEFT_PWM",
    "STEERING_RIGHT_PWM",
    "THROTTLE_FORWARD_PWM",
    "THROTTLE_STOPPED_PWM",
    "THROTTLE_REVERSE_PWM",
)

# The default car app ships inside the package (package data), so it is found in any install, a container
# image included; apps/donkeycars/default_car in the repository is a link to this folder, not a copy.
DEFAULT_CAR_DIR = Path(str(resources.files("pitlane.car") / "default_car"))


def load_car_config(
    car_dir: str | Path = DEFAULT_CAR_DIR,
    myconfig: str = "myconfig.py",
    profile: str | None = None,
    overrides: dict | None = None,
):
    """Read the car folder's config like donkeycar does, apply profile and overrides, check it."""
    import donkeycar as dk

    config_path = Path(car_dir) / "config.py"
    if not config_path.is_file():
        raise UserError(f"no car app at {car_dir}: {config_path} is missing")
    if "/" in myconfig or not (Path(car_dir) / myconfig).is_file():
        raise UserError(f"myconfig file {myconfig!r} not found in {car_dir}")
    try:
        cfg = dk.load_config(config_path=str(config_path), myconfig=myconfig)
    except Exception as exc:  # config files are Python: any error in them is the user's to fix
        raise UserError(
            f"cannot read the car config in {car_dir} ({myconfig}): {type(exc).__name__}: {exc}"
        ) from None
    return apply_profile(cfg, profile, overrides)


def apply_profile(cfg, profile: str | None = None, overrides: dict | None = None):
    """Set PITLANE_PROFILE (flag > environment > config) and overrides on a donkeycar Config; check it."""
    chosen = profile or os.environ.get("PITLANE_PROFILE") or getattr(cfg, "PITLANE_PROFILE", "twin")
    cfg.PITLANE_PROFILE = chosen
    for key, value in (overrides or {}).items():
        setattr(cfg, key, value)
    check_config(cfg)
    return cfg


def _number(
    cfg,
    key: str,
    problems: list[str],
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    integer: bool = False,
) -> None:
    value = getattr(cfg, key, None)
    kind = "an integer" if integer else "a number"
    if isinstance(value, bool) or not isinstance(value, int if integer else (int, float)):
        problems.append(f"{key} must be {kind}, got {value!r}")
        return
    if not math.isfinite(value):
        problems.append(f"{key} must be finite, got {value!r}")
    elif low is not None and (value <= low if low_open else value < low):
        problems.append(f"{key} must be {'>' if low_open else '>='} {low}, got {value!r}")
    elif high is not None and value > high:
        problems.append(f"{key} must be <= {high}, got {value!r}")


def _choice(cfg, key: str, choices: tuple[str, ...], problems: list[str]) -> None:
    value = getattr(cfg, key, None)
    if value not in choices:
        problems.append(f"{key} must be one of {', '.join(choices)}; got {value!r}")


def check_config(cfg) -> None:
    """Raise one UserError naming every invalid value (so the operator fixes them in one go)."""
    problems: list[str] = []
    _choice(cfg, "PITLANE_PROFILE", PROFILES, problems)
    _number(cfg, "DRIVE_LOOP_HZ", problems, low=0, low_open=True, high=1000)
    max_loops = getattr(cfg, "MAX_LOOPS", None)
    if max_loops is not None:
        _number(cfg, "MAX_LOOPS", problems, low=1, integer=True)
    for key in ("IMAGE_W", "IMAGE_H"):
        _number(cfg, key, problems, low=8, high=4096, integer=True)
    if getattr(cfg, "IMAGE_DEPTH", None) not in (1, 3):
        problems.append(f"IMAGE_DEPTH must be 1 or 3, got {getattr(cfg, 'IMAGE_DEPTH', None)!r}")
    _number(cfg, "WEB_CONTROL_PORT", problems, low=0, high=65535, integer=True)
    _choice(cfg, "WEB_INIT_MODE", DRIVE_MODES, problems)
    _console_problems(cfg, problems)
    _choice(cfg, "DEFAULT_MODEL_TYPE", MODEL_TYPES, problems)
    _number(cfg, "AI_THROTTLE_MULT", problems, low=0)
    for key in ("WATCHDOG_STOP_BUTTON", "WATCHDOG_RESUME_BUTTON"):
        if not isinstance(getattr(cfg, key, None), str) or not getattr(cfg, key):
            problems.append(
                f"{key} must name a web controller button (w1..w5), got {getattr(cfg, key, None)!r}"
            )
    for key in ("DATA_PATH", "MODELS_PATH"):
        if not isinstance(getattr(cfg, key, None), str):
            problems.append(f"{key} must be a path string, got {getattr(cfg, key, None)!r}")
    if getattr(cfg, "MODEL_MANAGER", False):
        _model_manager_problems(cfg, problems)
    if getattr(cfg, "FLEET_BROKER", None):
        problems += fleet_problems(cfg)
    profile = getattr(cfg, "PITLANE_PROFILE", None)
    if profile == "twin":
        if not isinstance(getattr(cfg, "SIM_HOST", None), str) or not cfg.SIM_HOST:
            problems.append(f"SIM_HOST must be a host name, got {getattr(cfg, 'SIM_HOST', None)!r}")
        _number(cfg, "SIM_PORT", problems, low=1, high=65535, integer=True)
        _number(cfg, "SIM_CONNECT_TIMEOUT_S", problems, low=0, low_open=True)
        if getattr(cfg, "DONKEY_GYM", False) and getattr(cfg, "DONKEY_SIM_PATH", None) != "remote":
            problems.append(
                "DONKEY_SIM_PATH must be 'remote' with the twin (it is a server, not an executable), "
                f"got {getattr(cfg, 'DONKEY_SIM_PATH', None)!r}"
            )
        if not isinstance(getattr(cfg, "SIM_SCENE", None), str):
            problems.append(f"SIM_SCENE must be a scene name, got {getattr(cfg, 'SIM_SCENE', None)!r}")
    elif profile == "pi":
        if getattr(cfg, "DONKEY_GYM", False):
            problems.append("DONKEY_GYM = True drives a simulator; use PITLANE_PROFILE = 'twin' for that")
        _choice(cfg, "CAMERA_TYPE", PI_CAMERA_TYPES, problems)
        _choice(cfg, "DRIVE_TRAIN_TYPE", PI_DRIVE_TRAIN_TYPES, problems)
        if getattr(cfg, "DRIVE_TRAIN_TYPE", None) == "PWM_STEERING_THROTTLE":
            pwm = getattr(cfg, "PWM_STEERING_THROTTLE", None)
            pwm = pwm if isinstance(pwm, dict) else {}
            missing = [k for k in PWM_KEYS if k not in pwm]
            if missing:
                problems.append(f"PWM_STEERING_THROTTLE lacks {', '.join(missing)}")
            else:
                for key in PWM_KEYS[6:]:
                    if (
                        isinstance(pwm[key], bool)
                        or not isinstance(pwm[key], int)
                        or not 0 <= pwm[key] <= 4095
                    ):
                        problems.append(
                            f"PWM_STEERING_THROTTLE[{key!r}] must be a pulse 0..4095, got {pwm[key]!r}"
                        )
    try:
        watchdog_params(cfg)
    except (ValueError, TypeError, AttributeError) as exc:
        problems.append(str(exc))
    if problems:
        raise UserError("invalid car config: " + "; ".join(problems))


def _console_problems(cfg, problems: list[str]) -> None:
    """The operator console's keys (a car app from before them has none: the console's defaults apply)."""
    address = getattr(cfg, "WEB_CONTROL_ADDRESS", "127.0.0.1")
    if not isinstance(address, str):
        problems.append(
            f"WEB_CONTROL_ADDRESS must be an address to listen on (127.0.0.1, 0.0.0.0), got {address!r}"
        )
    token = getattr(cfg, "WEB_CONSOLE_TOKEN", None)
    if token is not None and (why := token_problem(token)):
        problems.append(f"WEB_CONSOLE_TOKEN (PITLANE_CONSOLE_TOKEN) {why}")
    token_file = getattr(cfg, "WEB_TOKEN_FILE", "")
    if not isinstance(token_file, str) or not token_file:
        problems.append(f"WEB_TOKEN_FILE must be a path, got {token_file!r}")
    hosts = getattr(cfg, "WEB_ALLOWED_HOSTS", [])
    if not isinstance(hosts, list | tuple) or not all(
        isinstance(h, str) and h and " " not in h for h in hosts
    ):
        problems.append(f"WEB_ALLOWED_HOSTS must be a list of host names, got {hosts!r}")
    if hasattr(cfg, "USER_MAX_THROTTLE"):
        _number(cfg, "USER_MAX_THROTTLE", problems, low=0, high=1)
    if hasattr(cfg, "WEB_DRIVER_IDLE_S"):
        _number(cfg, "WEB_DRIVER_IDLE_S", problems, low=0, low_open=True, high=3600)


def _model_manager_problems(cfg, problems: list[str]) -> None:
    for key in ("MODEL_PUBLIC_KEY", "MODEL_CACHE_DIR", "MODEL_REF_ENV"):
        if not isinstance(getattr(cfg, key, None), str) or not getattr(cfg, key):
            problems.append(f"{key} must be a non-empty string, got {getattr(cfg, key, None)!r}")
    for key in ("MODEL_REF_FILE", "MODEL_STATUS_FILE"):
        value = getattr(cfg, key, None)
        if value is not None and (not isinstance(value, str) or not value):
            problems.append(f"{key} must be a path or None, got {value!r}")
    for key in (
        "MODEL_POLL_S",
        "MODEL_CANARY_TOLERANCE",
        "MODEL_LATENCY_BUDGET_MS",
        "MODEL_REGISTRY_TIMEOUT_S",
    ):
        _number(cfg, key, problems, low=0, low_open=True)
    for key in ("MODEL_PULL_DEADLINE_S", "MODEL_RETRY_MIN_S", "MODEL_RETRY_MAX_S", "MODEL_STALE_S"):
        if hasattr(cfg, key):  # a car app from before these keys takes ManagerParams' defaults
            _number(cfg, key, problems, low=0, low_open=True, high=7 * 86_400)
    if hasattr(cfg, "MODEL_MAX_SERIAL_JUMP"):
        _number(cfg, "MODEL_MAX_SERIAL_JUMP", problems, low=1, integer=True)
    low, high = getattr(cfg, "MODEL_RETRY_MIN_S", 1), getattr(cfg, "MODEL_RETRY_MAX_S", 1)
    if isinstance(low, int | float) and isinstance(high, int | float) and low > high:
        problems.append(f"MODEL_RETRY_MIN_S ({low}) must not exceed MODEL_RETRY_MAX_S ({high})")
    pin = getattr(cfg, "MODEL_PIN_SERIAL", None)
    if pin is not None and (isinstance(pin, bool) or not isinstance(pin, int) or pin < 0):
        problems.append(f"MODEL_PIN_SERIAL must be a release serial (an integer >= 0) or None, got {pin!r}")


# config key -> WatchdogParams field; a config without the key keeps the dataclass's default (its one home)
WATCHDOG_KEYS: dict[str, str] = {
    "WATCHDOG_MAX_FRAME_AGE_S": "max_frame_age_s",
    "WATCHDOG_OVERRUN_FACTOR": "overrun_factor",
    "WATCHDOG_MAX_OVERRUNS": "max_overruns",
    "AI_MAX_THROTTLE": "max_autopilot_throttle",
    "WATCHDOG_STOP_BRAKE": "stop_brake",
}


def watchdog_params(cfg) -> WatchdogParams:
    """The watchdog's limits from the WATCHDOG_* / AI_MAX_THROTTLE keys (loop period from DRIVE_LOOP_HZ)."""
    hz = getattr(cfg, "DRIVE_LOOP_HZ", CONTROL_HZ)
    given = {field: getattr(cfg, key) for key, field in WATCHDOG_KEYS.items() if hasattr(cfg, key)}
    return WatchdogParams(
        loop_period_s=1.0 / hz if isinstance(hz, int | float) and hz > 0 else float("nan"), **given
    )
