"""The model manager's defaults have one home (ManagerParams); the car config takes them from there."""

from __future__ import annotations

import dataclasses
import runpy
import subprocess
import sys
from pathlib import Path

from pitlane.car.model_params import ManagerParams
from pitlane.car.settings import DEFAULT_CAR_DIR

KEYS = {
    "MODEL_REF_ENV": "ref_env",
    "MODEL_STATUS_FILE": "status_file",
    "MODEL_POLL_S": "poll_s",
    "MODEL_PIN_SERIAL": "pin_serial",
    "MODEL_CANARY_TOLERANCE": "canary_tolerance",
    "MODEL_LATENCY_BUDGET_MS": "latency_budget_ms",
    "MODEL_REGISTRY_TIMEOUT_S": "registry_timeout_s",
}


def test_the_car_config_takes_the_model_managers_defaults_from_manager_params():
    config = runpy.run_path(str(DEFAULT_CAR_DIR / "config.py"))
    defaults = {f.name: f.default for f in dataclasses.fields(ManagerParams)}
    for key, field in KEYS.items():
        assert config[key] == defaults[field], key
    text = (DEFAULT_CAR_DIR / "config.py").read_text()
    for key, field in KEYS.items():  # derived, not written a second time
        assert f"{key} = _Model.{field}" in text, key


def test_from_config_reads_every_model_key():
    class Cfg:
        MODEL_CACHE_DIR, MODEL_PUBLIC_KEY, MODEL_REF_FILE, MODEL_REF_ENV = "/c", "/k.pub", "/ref", "REF"
        MODEL_STATUS_FILE, MODEL_POLL_S, MODEL_PIN_SERIAL, MODEL_CANARY_TOLERANCE = None, 2, 7, 0.1
        MODEL_LATENCY_BUDGET_MS, MODEL_REGISTRY_TIMEOUT_S = 30, 5
        IMAGE_H, IMAGE_W, IMAGE_DEPTH = 60, 80, 3

    p = ManagerParams.from_config(Cfg)
    assert (p.cache_dir, p.public_key, p.ref_file, p.ref_env) == (
        Path("/c"),
        Path("/k.pub"),
        Path("/ref"),
        "REF",
    )
    assert (p.poll_s, p.pin_serial, p.canary_tolerance, p.latency_budget_ms) == (2.0, 7, 0.1, 30.0)
    assert p.registry_timeout_s == 5.0 and p.camera_shape == (60, 80, 3) and p.status_file is None


def test_the_defaults_module_is_light():
    """config.py is loaded by donkeycar at every car start: importing the defaults pulls no heavy module."""
    code = (
        "import sys, pitlane.car.model_params; "
        "print([m for m in ('numpy', 'requests', 'cryptography', 'pitlane.car.model_manager') if m in sys.modules])"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=Path(__file__).parents[2]
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
