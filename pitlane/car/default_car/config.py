"""
CAR CONFIG for the pitlane default car (a donkeycar 5.4 car app, as `donkey createcar` lays it out).

This file holds the defaults; put your changes in myconfig.py (donkeycar reads config.py, then
myconfig.py over it). Every value is checked when the car starts (pitlane.car.settings.check_config):
an invalid one stops the start with a clear message.

Keys keep donkeycar's names, so donkeycar's own tools (`donkey train`, `donkey tubclean`, ...) read them.
pitlane adds PITLANE_PROFILE, SIM_PORT, SIM_SCENE, SIM_CONNECT_TIMEOUT_S, AI_MAX_THROTTLE, WATCHDOG_*,
MODEL_* (the model manager), the console's WEB_* keys, USER_MAX_THROTTLE and FLEET_* (heartbeats and tubs
going home).
"""

import os

# lower-case names: donkeycar reads only UPPER_CASE keys
from pitlane.car import console_auth as _console_auth
from pitlane.car import model_params as _model_params
from pitlane.car.model_params import ManagerParams as _Model
from pitlane.pilots.watchdog import WatchdogParams as _watchdog
from pitlane.twin import protocol as _protocol
from pitlane.twin import scenes as _scenes
from pitlane.twin import world as _world

# PATHS
# abspath, not realpath: apps/donkeycars/default_car is a link to this folder, and tubs go beside the link
CAR_PATH = PACKAGE_PATH = os.path.dirname(os.path.abspath(__file__))
DATA_PATH = os.path.join(CAR_PATH, "data")  # tubs are recorded here
MODELS_PATH = os.path.join(CAR_PATH, "models")

# PROFILE: where frames come from and where controls go
#   "twin": the pitlane digital twin (or the Unity simulator) over the DonkeyCar simulator TCP protocol
#   "pi":   a Raspberry Pi car: CAMERA_TYPE camera and DRIVE_TRAIN_TYPE drivetrain below
# Overridden by `--profile` or the PITLANE_PROFILE environment variable.
PITLANE_PROFILE = "twin"

# VEHICLE LOOP
DRIVE_LOOP_HZ = int(_world.CONTROL_HZ)  # [Hz] the vehicle loop rate (20: pitlane's control rate)
MAX_LOOPS = None  # stop after this many loops (None: run until stopped)

# CAMERA (pi profile; the twin renders IMAGE_W x IMAGE_H itself)
CAMERA_TYPE = "PICAM"  # PICAM | WEBCAM | CVCAM | CSIC | V4L | MOCK
IMAGE_W = 160  # [px]
IMAGE_H = 120  # [px]
IMAGE_DEPTH = 3  # 3 = RGB, 1 = greyscale
CAMERA_FRAMERATE = DRIVE_LOOP_HZ  # [Hz]
CAMERA_VFLIP = False
CAMERA_HFLIP = False
BGR2RGB = False  # some webcams deliver BGR

# DRIVETRAIN (pi profile): an RC car with a steering servo and an ESC on a PCA9685 board
DRIVE_TRAIN_TYPE = "PWM_STEERING_THROTTLE"  # PWM_STEERING_THROTTLE | MOCK
PWM_STEERING_THROTTLE = {
    "PWM_STEERING_PIN": "PCA9685.1:40.1",  # pin for the steering servo
    "PWM_STEERING_SCALE": 1.0,  # PWM frequency compensation
    "PWM_STEERING_INVERTED": False,  # invert steering direction
    "PWM_THROTTLE_PIN": "PCA9685.1:40.0",  # pin for the ESC (throttle)
    "PWM_THROTTLE_SCALE": 1.0,  # PWM frequency compensation
    "PWM_THROTTLE_INVERTED": False,  # invert throttle direction
    "STEERING_LEFT_PWM": 460,  # calibrated pulse: full left (`donkey calibrate`)
    "STEERING_RIGHT_PWM": 290,  # calibrated pulse: full right
    "THROTTLE_FORWARD_PWM": 500,  # calibrated pulse: max forward
    "THROTTLE_STOPPED_PWM": 370,  # calibrated pulse: stopped
    "THROTTLE_REVERSE_PWM": 220,  # calibrated pulse: max reverse
}

# TWIN / SIMULATOR (twin profile)
SIM_HOST = "127.0.0.1"  # the twin (`pitlane twin serve`) or a Unity simulator
SIM_PORT = _protocol.DEFAULT_PORT  # the simulator protocol's port (9091, like the Unity sim)
SIM_SCENE = (
    _scenes.DEFAULT_SCENE
)  # scene the car loads (generated_track) (pitlane's part; DONKEY_GYM uses DONKEY_GYM_ENV_NAME)
SIM_CONNECT_TIMEOUT_S = 10.0  # [s] wait this long for the twin at start
SIM_RECORD_LOCATION = True  # record pos/pos_x, pos/pos_y, pos/pos_z, pos/speed, pos/cte in tubs
SIM_RECORD_GYROACCEL = False
SIM_RECORD_VELOCITY = False
SIM_RECORD_LIDAR = False
SIM_ARTIFICIAL_LATENCY = 0  # [ms] (DONKEY_GYM only)
# donkeycar's own simulator path: needs gym-donkeycar 1.3 (pip install from its git repository)
DONKEY_GYM = False  # True: use donkeycar's DonkeyGymEnv part instead of pitlane's twin part
DONKEY_SIM_PATH = "remote"  # the twin is a server: always "remote"
DONKEY_GYM_ENV_NAME = "donkey-generated-track-v0"
GYM_CONF = {
    "body_style": "donkey",
    "body_rgb": (128, 128, 128),
    "car_name": "pitlane",
    "font_size": 100,
    "racer_name": "pitlane",
    "country": "Place",
    "bio": "I race robots.",
}

# AUTOPILOT
DEFAULT_MODEL_TYPE = "linear"  # linear | categorical | inferred (a .tflite model uses donkeycar's TfLite)
MODEL_CATEGORICAL_MAX_THROTTLE_RANGE = 0.8
AI_THROTTLE_MULT = 1.0  # scale the pilot's throttle (donkeycar's DriveMode)
AI_MAX_THROTTLE = _watchdog.max_autopilot_throttle  # [-] cap on |throttle| while the pilot drives

# MODEL MANAGER: the car pulls a signed model bundle by digest, verifies, health-checks and hot-swaps it
# (pitlane.car.model_manager). With it on, --model is not used: the deployment says which model to run.
# On by default where the deployment mounts a desired reference (argocd/base/car-deployment.yaml sets these).
MODEL_REF_FILE = (
    os.getenv("PITLANE_MODEL_REF_FILE") or None
)  # file holding REGISTRY/REPO@sha256:... (ConfigMap)
MODEL_REF_ENV = _Model.ref_env  # environment variable with the desired reference (PITLANE_MODEL_REF)
MODEL_MANAGER = bool(MODEL_REF_FILE or os.getenv(MODEL_REF_ENV))
# the release's model key (PEM) ships in the image (pitlane/car/trust/model.pub): rotating it is a code
# release, never a deployment's setting; a car run outside the cluster may name another here or in myconfig
MODEL_PUBLIC_KEY = str(_model_params.SHIPPED_KEY)
# content-addressed cache and the release-serial floor (the car starts from it without network); in the
# cluster PITLANE_STATE_DIR is a persistent volume, so the floor survives a pod's re-creation
MODEL_CACHE_DIR = os.path.join(os.getenv("PITLANE_STATE_DIR") or os.path.join(CAR_PATH, "models"), "cache")
# the defaults below are pitlane.car.model_params.ManagerParams' (their one home: change them there)
MODEL_STATUS_FILE = _Model.status_file  # JSON status (None: MODEL_CACHE_DIR/status.json)
MODEL_POLL_S = _Model.poll_s  # [s] between checks of the desired reference (10)
MODEL_PIN_SERIAL = _Model.pin_serial  # an older release serial pinned on purpose (None: older ones refused)
MODEL_CANARY_TOLERANCE = _Model.canary_tolerance  # [-] largest |output - recorded| on canary frames (0.05)
MODEL_LATENCY_BUDGET_MS = _Model.latency_budget_ms  # [ms] median inference time per frame allowed (25)
MODEL_REGISTRY_TIMEOUT_S = _Model.registry_timeout_s  # [s] per registry socket operation (10)
MODEL_PULL_DEADLINE_S = _Model.pull_deadline_s  # [s] wall clock for one whole pull (300)
MODEL_RETRY_MIN_S = _Model.retry_min_s  # [s] first wait before a model that could not be taken is tried again
MODEL_RETRY_MAX_S = _Model.retry_max_s  # [s] longest wait between tries (the waits double up to it: 600)
MODEL_STALE_S = _Model.stale_s  # [s] the running model differs from the desired one this long: stale (900)
MODEL_MAX_SERIAL_JUMP = _Model.max_serial_jump  # a serial more than this above the floor is refused (1000)

# SAFETY WATCHDOG: throttle 0 (and brake in the twin) when these trip; every stop is logged
# (defaults from pitlane.pilots.watchdog.WatchdogParams, their one home)
WATCHDOG_MAX_FRAME_AGE_S = _watchdog.max_frame_age_s  # [s] newest camera frame older than this stops the car
WATCHDOG_OVERRUN_FACTOR = _watchdog.overrun_factor  # a loop longer than this x the loop period is an overrun
WATCHDOG_MAX_OVERRUNS = _watchdog.max_overruns  # consecutive overruns that stop the car
WATCHDOG_STOP_BRAKE = _watchdog.stop_brake  # [0, 1] brake while stopped
WATCHDOG_STOP_BUTTON = "w1"  # web controller button: operator stop (latched)
WATCHDOG_RESUME_BUTTON = "w2"  # web controller button: resume after an operator stop

# WEB CONTROL: the operator console (pitlane.car.console); operators log in with the car's token
WEB_CONTROL_PORT = int(os.getenv("WEB_CONTROL_PORT", 8887))  # http://<car>:8887/drive
# where the console listens: 127.0.0.1 (this machine only) unless told; the cluster sets 0.0.0.0
WEB_CONTROL_ADDRESS = os.getenv("WEB_CONTROL_ADDRESS", "127.0.0.1")
WEB_INIT_MODE = "user"  # user | local_angle | local
# the car's console token (the cluster's pitlane-console Secret); None: the one kept in WEB_TOKEN_FILE, or
# a new one, printed once at start and kept there (mode 0600) for the next run
WEB_CONSOLE_TOKEN = os.getenv("PITLANE_CONSOLE_TOKEN") or None
WEB_TOKEN_FILE = _console_auth.default_token_file()  # ~/.config/pitlane/console-token
# host names operators type besides localhost, IP addresses and this machine's NAME / NAME.local (a name
# not listed is refused: DNS rebinding), e.g. ["mycar.lan"]
WEB_ALLOWED_HOSTS = [h for h in os.getenv("WEB_ALLOWED_HOSTS", "").split(",") if h]
WEB_DRIVER_IDLE_S = 5.0  # [s] a driver without a websocket (POST /drive only) that sends nothing lets go
USER_MAX_THROTTLE = 0.5  # [-] cap on |throttle| while the operator drives (applied in the loop)

# FLEET: heartbeats (1 Hz), events and finished tubs go home to the NUC's fleet service (pitlane.fleet).
# Off unless FLEET_BROKER is set; on the NUC, `pitlane fleet add-car NAME` prints this car's values once.
FLEET_BROKER = os.getenv("PITLANE_FLEET_BROKER") or None  # "host:port" of Mosquitto on the NUC (1883)
FLEET_CAR_NAME = os.getenv("PITLANE_CAR_NAME") or None  # the car's fleet name (the deployment sets it)
FLEET_PASSWORD = os.getenv("PITLANE_FLEET_PASSWORD") or None  # the car's password (from a Secret)
FLEET_GATEWAY = os.getenv("PITLANE_FLEET_GATEWAY") or None  # "host:port" of the NUC's registry front for
#   tubs (http; write https://host:port for TLS); None: tubs stay on the car
FLEET_STATE_DIR = os.path.join(os.getenv("PITLANE_STATE_DIR") or CAR_PATH, "fleet")  # spool + upload state
FLEET_HEARTBEAT_S = 1.0  # [s] between two heartbeats
FLEET_SPOOL_MAX_MB = 256  # [MB] spool size; when full, old heartbeats are thinned (never events or tubs)
FLEET_UPLOAD = True  # upload finished tubs as data bundles (needs FLEET_GATEWAY)
FLEET_DELETE_UPLOADED = False  # delete a tub once the NUC has stored and indexed it
FLEET_DRIFT = True  # compare what the camera sees with the model's training data (a drift score)
FLEET_DRIFT_EVERY = 5  # camera frames between two statistics samples
FLEET_IMAGE = os.getenv("PITLANE_IMAGE") or None  # the car image (by digest) the deployment runs
FLEET_STOP_BUDGET_S = 10.0  # [s] at car stop: upload the tub just closed and send what is spooled

# RECORDING
AUTO_RECORD_ON_THROTTLE = True  # record whenever the user drives with throttle
RECORD_DURING_AI = False  # also record while the pilot drives
# a new tub folder per session; on where tubs go home, so every finished session is a data bundle of its own
AUTO_CREATE_NEW_TUB = bool(FLEET_BROKER and FLEET_GATEWAY)

# LOGGING
HAVE_CONSOLE_LOGGING = True
LOGGING_LEVEL = "INFO"
LOGGING_FORMAT = "%(message)s"
