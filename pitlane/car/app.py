"""Assemble the car: a donkeycar `Vehicle` with the parts the profile and config call for.

The car app's manage.py calls `build_car(cfg, model_path)` and starts the returned vehicle; `pitlane car
run` does the same headless. Part order in the loop (donkeycar runs parts in the order they were added):

  source (twin part | DonkeyGymEnv | camera) -> web controller -> mode guard -> run conditions -> pilot
  -> DriveMode -> watchdog -> [twin controls | drivetrain] -> console telemetry -> recording gate -> TubWriter

pitlane's twin part sends the watchdog's controls in the same loop (a stop acts within one loop);
donkeycar's DonkeyGymEnv, like donkeycar's template, sends the previous loop's controls.
"""

from __future__ import annotations

import importlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pitlane.args import check_port_free
from pitlane.car import parts as car_parts
from pitlane.car.console import ConsoleTelemetry, WebController
from pitlane.car.console_auth import ConsoleSettings
from pitlane.car.model_manager import MEMORY_KEYS, ManagerParams, ModelManager
from pitlane.car.settings import check_config, watchdog_params
from pitlane.car.twin_part import TwinPart
from pitlane.data.tub import POSITION_KEYS, tub_metadata
from pitlane.errors import UserError
from pitlane.fleet.part import add_fleet
from pitlane.pilots.model import ModelPilot
from pitlane.pilots.watchdog import WatchdogPart

logger = logging.getLogger(__name__)

SIM_OUTPUTS = {  # donkeycar's names for the simulator's extra outputs (templates/complete.py add_simulator)
    "SIM_RECORD_LOCATION": list(POSITION_KEYS),  # the names pitlane's own tubs use too
    "SIM_RECORD_GYROACCEL": [
        "gyro/gyro_x",
        "gyro/gyro_y",
        "gyro/gyro_z",
        "accel/accel_x",
        "accel/accel_y",
        "accel/accel_z",
    ],
    "SIM_RECORD_VELOCITY": ["vel/vel_x", "vel/vel_y", "vel/vel_z"],
}


@dataclass(frozen=True)
class PartPlan:
    """A part to add: what it is (a dotted class name), how to build it, and its wiring. Building is deferred
    so the pi profile's choice of parts can be checked on a machine without the Pi's hardware libraries."""

    name: str  # dotted class name of the part, e.g. donkeycar.parts.camera.PiCamera
    build: Callable[[], Any] = field(compare=False, repr=False)
    inputs: list[str] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)
    threaded: bool = False


def _cls(dotted: str):
    module, _, name = dotted.rpartition(".")
    return getattr(importlib.import_module(module), name)


def pi_camera_plan(cfg) -> PartPlan:
    """donkeycar's camera part for CAMERA_TYPE, as donkeycar's template builds it (get_camera)."""
    size = dict(image_w=cfg.IMAGE_W, image_h=cfg.IMAGE_H, image_d=cfg.IMAGE_DEPTH)
    kinds = {
        "PICAM": (
            "donkeycar.parts.camera.PiCamera",
            dict(size, vflip=cfg.CAMERA_VFLIP, hflip=cfg.CAMERA_HFLIP),
        ),
        "WEBCAM": ("donkeycar.parts.camera.Webcam", size),
        "CVCAM": ("donkeycar.parts.cv.CvCam", size),
        "CSIC": (
            "donkeycar.parts.camera.CSICamera",
            dict(size, capture_width=cfg.IMAGE_W, capture_height=cfg.IMAGE_H, framerate=cfg.CAMERA_FRAMERATE),
        ),
        "V4L": ("donkeycar.parts.camera.V4LCamera", dict(size, framerate=cfg.CAMERA_FRAMERATE)),
        "MOCK": ("donkeycar.parts.camera.MockCamera", size),
    }
    name, kwargs = kinds[cfg.CAMERA_TYPE]
    return PartPlan(name, lambda: _cls(name)(**kwargs), outputs=["cam/image_array"], threaded=True)


def pi_drivetrain_plans(cfg) -> list[PartPlan]:
    """donkeycar's PWM steering servo and ESC parts (PWM_STEERING_THROTTLE), as its template builds them."""
    if cfg.DRIVE_TRAIN_TYPE == "MOCK":
        return []
    dt = cfg.PWM_STEERING_THROTTLE

    def controller(pin_key: str, scale_key: str, inverted_key: str):
        from donkeycar.parts import pins
        from donkeycar.parts.actuator import PulseController

        return PulseController(
            pwm_pin=pins.pwm_pin_by_id(dt[pin_key]), pwm_scale=dt[scale_key], pwm_inverted=dt[inverted_key]
        )

    def steering():
        return _cls("donkeycar.parts.actuator.PWMSteering")(
            controller=controller("PWM_STEERING_PIN", "PWM_STEERING_SCALE", "PWM_STEERING_INVERTED"),
            left_pulse=dt["STEERING_LEFT_PWM"],
            right_pulse=dt["STEERING_RIGHT_PWM"],
        )

    def throttle():
        return _cls("donkeycar.parts.actuator.PWMThrottle")(
            controller=controller("PWM_THROTTLE_PIN", "PWM_THROTTLE_SCALE", "PWM_THROTTLE_INVERTED"),
            max_pulse=dt["THROTTLE_FORWARD_PWM"],
            zero_pulse=dt["THROTTLE_STOPPED_PWM"],
            min_pulse=dt["THROTTLE_REVERSE_PWM"],
        )

    return [
        PartPlan("donkeycar.parts.actuator.PWMSteering", steering, inputs=["steering"], threaded=True),
        PartPlan("donkeycar.parts.actuator.PWMThrottle", throttle, inputs=["throttle"], threaded=True),
    ]


def sim_outputs(cfg) -> list[str]:
    out = ["cam/image_array"]
    for key, names in SIM_OUTPUTS.items():
        if getattr(cfg, key, False):
            out += names
    return out


def load_pilot(
    model_path: str | Path | None, cfg, model_type: str | None = None
) -> tuple[Any | None, str | None]:
    """(pilot part, None) or (None, why autopilot is refused). A bad model never stops the car app."""
    if not model_path:
        return None, "no model given (--model)"

    shape = (cfg.IMAGE_H, cfg.IMAGE_W, cfg.IMAGE_DEPTH)
    start = time.monotonic()
    try:
        pilot = ModelPilot(model_path, model_type=model_type, camera_shape=shape)
    except UserError as exc:
        logger.error("model failed to load: %s", exc)
        return None, f"model failed to load: {exc}"
    except Exception as exc:  # a broken file can raise anything inside TensorFlow
        logger.exception("model failed to load: %s", model_path)
        return None, f"model failed to load: {type(exc).__name__}: {exc}"
    logger.info("loaded %r in %.1f s", pilot, time.monotonic() - start)
    return pilot, None


@dataclass
class Car:
    """A built car: the donkeycar Vehicle and the parts a runner or a test needs to reach."""

    vehicle: Any
    cfg: Any
    web: WebController
    watchdog: WatchdogPart
    twin: Any | None = None  # pitlane.car.twin_part.TwinPart in the twin profile
    pilot: Any | None = None
    autopilot_refusal: str | None = None
    tub_path: str | None = None
    tub_writer: Any | None = None
    model_manager: Any | None = None  # pitlane.car.model_manager.ModelManager when MODEL_MANAGER

    def start(self, max_loop_count: int | None = None):
        """Run the drive loop (blocks) until stopped, Ctrl-C, or max_loop_count loops."""
        return self.vehicle.start(
            rate_hz=self.cfg.DRIVE_LOOP_HZ, max_loop_count=max_loop_count or self.cfg.MAX_LOOPS
        )


def _add_source(V, cfg, clock) -> Any | None:
    """Camera frames (and telemetry): pitlane's twin part, donkeycar's DonkeyGymEnv, or the Pi's camera."""
    if cfg.PITLANE_PROFILE == "pi":
        plan = pi_camera_plan(cfg)
        V.add(plan.build(), inputs=plan.inputs, outputs=plan.outputs, threaded=plan.threaded)
        if cfg.BGR2RGB:
            from donkeycar.parts.cv import ImgBGR2RGB

            V.add(ImgBGR2RGB(), inputs=["cam/image_array"], outputs=["cam/image_array"])
        return None
    if cfg.DONKEY_GYM:
        try:
            from donkeycar.parts.dgym import DonkeyGymEnv
        except ImportError as exc:
            raise UserError(
                f"DONKEY_GYM = True needs gym-donkeycar 1.3 ({exc}); set DONKEY_GYM = False to "
                "drive the twin with pitlane's own part"
            ) from None
        gym = DonkeyGymEnv(
            cfg.DONKEY_SIM_PATH,
            host=cfg.SIM_HOST,
            port=cfg.SIM_PORT,
            env_name=cfg.DONKEY_GYM_ENV_NAME,
            conf=dict(cfg.GYM_CONF),
            record_location=cfg.SIM_RECORD_LOCATION,
            record_gyroaccel=cfg.SIM_RECORD_GYROACCEL,
            record_velocity=cfg.SIM_RECORD_VELOCITY,
            record_lidar=False,
            delay=cfg.SIM_ARTIFICIAL_LATENCY,
        )
        V.add(gym, inputs=["steering", "throttle", "brake"], outputs=sim_outputs(cfg), threaded=True)
        return None

    twin = TwinPart.from_config(cfg, clock=clock)
    V.add(twin, outputs=sim_outputs(cfg), threaded=True)
    return twin


def build_car(
    cfg,
    model_path: str | Path | None = None,
    *,
    model_type: str | None = None,
    pilot=None,
    clock: Callable[[], float] = time.monotonic,
    tub_path: str | Path | None = None,
    meta: list[str] | None = None,
    record: bool = True,
) -> Car:
    """The car for a checked config: parts added, nothing started yet (`Car.start` runs the loop).

    Tubs go to `tub_path` (default: DATA_PATH, or a new tub in it with AUTO_CREATE_NEW_TUB); `record=False`
    leaves the TubWriter out (a headless run that only wants its report). `pilot` is an already built pilot
    part (`run(image) -> (angle, throttle)`) used instead of loading `model_path`.
    """
    import donkeycar as dk

    check_config(cfg)
    if cfg.WEB_CONTROL_PORT:  # in use: one line now, not a thread's traceback once the loop runs
        check_port_free(int(cfg.WEB_CONTROL_PORT), "web port (WEB_CONTROL_PORT)")
    pilot, refusal, manager = _choose_pilot(cfg, model_path, model_type, pilot)
    V = dk.vehicle.Vehicle()
    twin = _add_source(V, cfg, clock)
    web = _add_web_controller(V, cfg, pilot)
    safe_pilot = _add_pilot(V, cfg, pilot, refusal, manager)
    watchdog = _add_watchdog(V, cfg, clock)
    _add_drivetrain(V, cfg, twin)
    model_name = Path(model_path).name if model_path and pilot else "managed" if manager else None
    console = ConsoleTelemetry(
        web, profile=cfg.PITLANE_PROFILE, model=model_name, twin=twin, pilot=safe_pilot
    )
    V.add(console, inputs=ConsoleTelemetry.INPUTS)
    car = Car(V, cfg, web, watchdog, twin=twin, pilot=pilot, autopilot_refusal=refusal, model_manager=manager)
    if record:
        car.tub_path, car.tub_writer = _add_recording(V, cfg, tub_path, meta, model_name)
        # heartbeats and the tub going home (FLEET_*); after the TubWriter, so the tub is closed first
        add_fleet(
            V, cfg, tub_path=car.tub_path, pilot=safe_pilot, twin=twin, manager=manager, watchdog=watchdog
        )
    return car


def _choose_pilot(cfg, model_path, model_type, pilot) -> tuple[Any | None, str | None, ModelManager | None]:
    """(pilot, why autopilot is refused, model manager): the manager's model with MODEL_MANAGER, else the
    given pilot part, else `model_path` loaded (a bad one refuses the autopilot, never the car)."""
    refusal = None
    manager = None
    if getattr(cfg, "MODEL_MANAGER", False):
        if model_path or pilot is not None:
            raise UserError("MODEL_MANAGER = True: the car pulls its model itself; drop --model")
        manager = ModelManager(ManagerParams.from_config(cfg))  # starts from its cache, offline
        # one short try before the loop starts, so a reachable model drives from the start
        manager.check_once(deadline_s=min(manager.params.start_deadline_s, manager.params.pull_deadline_s))
        manager.swap_if_ready()
        pilot = manager.pilot
    elif pilot is None:
        pilot, refusal = load_pilot(model_path, cfg, model_type)
    if refusal and cfg.WEB_INIT_MODE != "user":
        logger.error("autopilot refused: %s; starting in user mode", refusal)
    return pilot, refusal, manager


def _add_web_controller(V, cfg, pilot) -> WebController:
    """The operator console (donkeycar's web controller contract) and donkeycar's input plumbing."""
    from donkeycar.parts.explode import ExplodeDict
    from donkeycar.parts.pipe import Pipe
    from donkeycar.parts.throttle_filter import ThrottleFilter

    web = WebController(
        port=cfg.WEB_CONTROL_PORT,
        mode=cfg.WEB_INIT_MODE if pilot else "user",
        address=getattr(cfg, "WEB_CONTROL_ADDRESS", "127.0.0.1"),
        stop_button=cfg.WATCHDOG_STOP_BUTTON,
        resume_button=cfg.WATCHDOG_RESUME_BUTTON,
        settings=ConsoleSettings.from_config(cfg),  # the token: configured, kept, or new (printed once)
    )
    V.add(
        web,
        inputs=["cam/image_array", "tub/num_records", "user/mode", "recording", "watchdog/reason"],
        outputs=["user/steering", "user/throttle", "user/mode", "recording", "web/buttons"],
        threaded=True,
    )
    V.add(Pipe(), inputs=["user/steering"], outputs=["user/angle"])
    V.add(ExplodeDict(V.mem, "web/"), inputs=["web/buttons"])
    V.add(ThrottleFilter(), inputs=["user/throttle"], outputs=["user/throttle"])
    V.add(
        car_parts.UserThrottleCap(web.console.user_max_throttle),
        inputs=["user/throttle"],
        outputs=["user/throttle"],
    )
    return web


def _add_pilot(V, cfg, pilot, refusal: str | None, manager: ModelManager | None):
    """Model manager, mode guard, the pilot (behind SafePilot) and DriveMode; returns the SafePilot."""
    if manager is not None:  # swaps a checked model in between two iterations, reports model/*
        V.add(manager, outputs=MEMORY_KEYS, threaded=True)
    guard = car_parts.AutopilotGuard(refusal, manager.refusal if manager is not None else None)
    V.add(guard, inputs=["user/mode"], outputs=["user/mode"])
    V.add(car_parts.PilotCondition(), inputs=["user/mode"], outputs=["run_user", "run_pilot"])
    safe_pilot = car_parts.SafePilot(pilot) if pilot is not None else None
    if safe_pilot is not None:
        V.add(
            safe_pilot,
            inputs=["cam/image_array"],
            outputs=["pilot/angle", "pilot/throttle"],
            run_condition="run_pilot",
        )
    V.add(
        car_parts.DriveMode(cfg.AI_THROTTLE_MULT),
        inputs=["user/mode", "user/angle", "user/throttle", "pilot/angle", "pilot/throttle"],
        outputs=["steering", "throttle"],
    )
    return safe_pilot


def _add_watchdog(V, cfg, clock: Callable[[], float]) -> WatchdogPart:
    """The safety watchdog, between DriveMode and whatever moves the car."""
    watchdog = WatchdogPart(watchdog_params(cfg), clock=clock)
    buttons = [f"web/{cfg.WATCHDOG_STOP_BUTTON}", f"web/{cfg.WATCHDOG_RESUME_BUTTON}"]
    V.add(
        watchdog,
        inputs=[
            "user/mode",
            "steering",
            "throttle",
            "pilot/angle",
            "pilot/throttle",
            "cam/image_array",
            *buttons,
        ],
        outputs=["steering", "throttle", "brake", "watchdog/stopped", "watchdog/reason"],
    )
    return watchdog


def _add_drivetrain(V, cfg, twin: TwinPart | None) -> None:
    """Where the watchdog's controls go: the twin (same loop), or the Pi's PWM servo and ESC."""
    if twin is not None:
        V.add(twin.controls_part(), inputs=["steering", "throttle", "brake"])
    elif cfg.PITLANE_PROFILE == "pi":
        for plan in pi_drivetrain_plans(cfg):
            V.add(plan.build(), inputs=plan.inputs, outputs=plan.outputs, threaded=plan.threaded)


def _add_recording(
    V, cfg, tub_path: str | Path | None, meta: list[str] | None, model_name: str | None
) -> tuple[str, Any]:
    """The recording gate and donkeycar's TubWriter (behind SafeTubWriter); returns (tub path, writer)."""
    from donkeycar.parts.tub_v2 import TubWriter

    inputs = ["cam/image_array", "user/angle", "user/throttle", "user/mode"]
    types = ["image_array", "float", "float", "str"]
    if cfg.PITLANE_PROFILE == "twin":
        extra = sim_outputs(cfg)[1:]
        inputs += extra
        types += ["float"] * len(extra)
    if cfg.RECORD_DURING_AI:
        inputs += ["pilot/angle", "pilot/throttle"]
        types += ["float", "float"]
    V.add(
        car_parts.RecordingGate(cfg.AUTO_RECORD_ON_THROTTLE, cfg.RECORD_DURING_AI),
        inputs=["user/mode", "recording", "user/throttle"],
        outputs=["tub/recording"],
    )
    if tub_path is None:
        from donkeycar.parts.datastore import TubHandler

        tub_path = (
            TubHandler(path=cfg.DATA_PATH).create_tub_path() if cfg.AUTO_CREATE_NEW_TUB else cfg.DATA_PATH
        )
    meta = list(meta or []) + list(getattr(cfg, "METADATA", []))
    meta += tub_metadata(profile=cfg.PITLANE_PROFILE, model=model_name or "none")
    meta += tub_metadata(image_h=cfg.IMAGE_H, image_w=cfg.IMAGE_W, image_depth=cfg.IMAGE_DEPTH)
    tub_writer = car_parts.SafeTubWriter(TubWriter(str(tub_path), inputs=inputs, types=types, metadata=meta))
    V.add(tub_writer, inputs=inputs, outputs=["tub/num_records"], run_condition="tub/recording")
    return str(tub_path), tub_writer
