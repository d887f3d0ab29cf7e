"""A non-editable install works from any folder: package data (the default car app) is found through the
package, not through the repository's layout. `pip install --target` into a fresh folder, then run there."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_installed_copy_runs_car_run_help_and_twin_scenes_from_another_folder(tmp_path):
    target = tmp_path / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "--target",
            str(target),
        ]
        + [str(ROOT)],
        check=True,
        capture_output=True,
        timeout=600,
    )
    assert (target / "pitlane" / "car" / "default_car" / "config.py").is_file()  # shipped as package data
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = dict(os.environ, PYTHONPATH=str(target))  # before the shared venv's editable finder

    def pitlane(*args: str) -> str:
        done = subprocess.run(
            [sys.executable, *args], cwd=elsewhere, env=env, capture_output=True, text=True, timeout=300
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    assert pitlane("-c", "import pitlane; print(pitlane.__file__)").strip() == str(
        target / "pitlane" / "__init__.py"
    )
    assert "--max-seconds" in pitlane("-m", "pitlane", "car", "run", "--help")
    assert "generated_track" in pitlane("-m", "pitlane", "twin", "scenes")
    car_dir = pitlane(
        "-c",
        "from pitlane.car.settings import DEFAULT_CAR_DIR, load_car_config; "
        "cfg = load_car_config(); print(DEFAULT_CAR_DIR, cfg.DRIVE_LOOP_HZ)",
    ).split()
    assert car_dir[-2] == str(target / "pitlane" / "car" / "default_car") and car_dir[-1] == "20"
