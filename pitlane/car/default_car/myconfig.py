"""
MY CAR CONFIG

This file is read by your car application's manage.py after config.py; set here what differs for your
car. Uncomment and edit. Invalid values stop the car at start with a clear message.
"""

# Which profile drives: "twin" (the digital twin over TCP) or "pi" (Raspberry Pi camera + PWM drivetrain).
# PITLANE_PROFILE = "twin"

# --- twin profile ---
# SIM_HOST = "127.0.0.1"
# SIM_PORT = 9091
# SIM_SCENE = "generated_track"
# DONKEY_GYM = True               # drive through donkeycar's DonkeyGymEnv (needs gym-donkeycar 1.3)
# DONKEY_SIM_PATH = "remote"
# DONKEY_GYM_ENV_NAME = "donkey-generated-track-v0"

# --- pi profile ---
# PITLANE_PROFILE = "pi"
# CAMERA_TYPE = "PICAM"
# DRIVE_TRAIN_TYPE = "PWM_STEERING_THROTTLE"
# PWM_STEERING_THROTTLE = {
#     "PWM_STEERING_PIN": "PCA9685.1:40.1",
#     "PWM_STEERING_SCALE": 1.0,
#     "PWM_STEERING_INVERTED": False,
#     "PWM_THROTTLE_PIN": "PCA9685.1:40.0",
#     "PWM_THROTTLE_SCALE": 1.0,
#     "PWM_THROTTLE_INVERTED": False,
#     "STEERING_LEFT_PWM": 460,
#     "STEERING_RIGHT_PWM": 290,
#     "THROTTLE_FORWARD_PWM": 500,
#     "THROTTLE_STOPPED_PWM": 370,
#     "THROTTLE_REVERSE_PWM": 220,
# }

# --- autopilot and safety ---
# DEFAULT_MODEL_TYPE = "linear"
# AI_MAX_THROTTLE = 0.6
# WATCHDOG_MAX_FRAME_AGE_S = 0.25
# WATCHDOG_MAX_OVERRUNS = 5

# --- model manager (signed model bundles pulled by digest and hot-swapped) ---
# MODEL_MANAGER = True
# MODEL_REF_FILE = "/etc/pitlane/model-ref"   # REGISTRY/REPO@sha256:... mounted by the deployment
# MODEL_PUBLIC_KEY = "/home/me/release.pub"     # a car run by hand (the image's key otherwise)
# MODEL_PIN_SERIAL = 7                        # run this older release on purpose

# --- driving ---
# DRIVE_LOOP_HZ = 20
# WEB_CONTROL_PORT = 8887
# WEB_INIT_MODE = "user"
