"""The model manager's defaults have one home (ManagerParams); the car config takes them from there."""

from __future__ import annotations

import dataclasses
import runpy
import subprocess
import sys
from pathlib import Path

import pytest

from pitlane.car.model_params import SHIPPED_KEY, ManagerParams, shipped_min_serial
from pitlane.car.settings import DEFAULT_CAR_DIR

KEYS = {
    "MODEL_REF_ENV": "ref_env",
    "MODEL_STATUS_FILE": "status_file",
    "MODEL_POLL_S": "poll_s",
    "MODEL_PIN_SERIAL": "pin_serial",
    "MODEL_CANARY_TOLERANCE": "canary_tolerance",
    "MODEL_LATENCY_BUDGET_MS": "latency_budget_ms",
    "MODEL_REGISTRY_TIMEOUT_S": "registry_timeout_s",
    "MODEL_PULL_DEADLINE_S": "pull_deadline_s",
    "MODEL_RETRY_MIN_S": "retry_min_s",
    "MODEL_RETRY_MAX_S": "retry_max_s",
    "MODEL_STALE_S": "stale_s",
    "MODEL_MAX_SERIAL_JUMP": "max_serial_jump",
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
        MODEL_PULL_DEADLINE_S, MODEL_RETRY_MIN_S, MODEL_RETRY_MAX_S, MODEL_STALE_S = 60, 2, 20, 120
        MODEL_MAX_SERIAL_JUMP = 50
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
    assert (p.pull_deadline_s, p.retry_min_s, p.retry_max_s, p.stale_s) == (60.0, 2.0, 20.0, 120.0)
    assert p.max_serial_jump == 50 and p.min_serial == shipped_min_serial()


def test_the_model_key_ships_in_the_image_and_no_deployment_setting_swaps_it(monkeypatch):
    """P2: the car verifies with the key inside its package (a code release rotates it); the variable the
    deployment used to point at a ConfigMap's key (PITLANE_MODEL_KEY) changes nothing any more."""
    import pitlane.car
    from pitlane.artifacts import signing

    monkeypatch.setenv("PITLANE_MODEL_KEY", "/etc/pitlane/cosign.pub")
    config = runpy.run_path(str(DEFAULT_CAR_DIR / "config.py"))
    assert config["MODEL_PUBLIC_KEY"] == str(SHIPPED_KEY)
    assert Path(pitlane.car.__file__).parent / "trust" / "model.pub" == SHIPPED_KEY
    signing.load_public_key(SHIPPED_KEY)  # an ECDSA P-256 public key
    root = Path(__file__).parents[2]
    assert '"car/trust/*"' in (root / "pyproject.toml").read_text()  # in every install (package data)
    for dockerfile in ("Dockerfile.sim", "Dockerfile.arm64"):  # and in both images the car runs from
        assert "COPY pitlane/car/trust /opt/pitlane/app/pitlane/car/trust" in (root / dockerfile).read_text()


def test_the_minimum_serial_file_holds_one_serial(tmp_path):
    good = tmp_path / "min_serial"
    good.write_text("# withdrawn up to 6 by v2.3.0\n7\n")
    assert shipped_min_serial(good) == 7
    for bad in ("", "7\n8\n", "-1\n", "seven\n"):
        good.write_text(bad)
        with pytest.raises(ValueError, match="must hold one release serial"):
            shipped_min_serial(good)


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
