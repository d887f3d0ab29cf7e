"""notebooks/Fleet_Data.ipynb runs top to bottom: it lists a car's data bundles, pulls the newest, checks it
and hands it to training; and it says in one line why there is nothing to pull. Each test names its own car,
so the bundles other tests push to the session's registry never show up here."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

NOTEBOOK = Path(__file__).resolve().parents[2] / "notebooks" / "Fleet_Data.ipynb"


def _run(tmp_path: Path, monkeypatch, registry: str | None, **params) -> str:
    """The notebook's text output, run with `params` injected after its parameters cell (as papermill does)."""
    from nbclient import NotebookClient

    if registry:
        monkeypatch.setenv("PITLANE_REGISTRY", registry)
    else:
        monkeypatch.delenv("PITLANE_REGISTRY", raising=False)
    nb = nbformat.read(NOTEBOOK, as_version=4)
    index = next(i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", []))
    nb.cells.insert(
        index + 1, nbformat.v4.new_code_cell("\n".join(f"{k} = {v!r}" for k, v in params.items()))
    )
    NotebookClient(
        nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    ).execute()
    return "\n".join(
        o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
    )


def _car(tmp_path: Path) -> str:
    return f"nb-{os.getpid()}-{abs(hash(tmp_path)) % 100000}"


def _tub(path: Path, n: int) -> Path:
    import numpy as np
    from donkeycar.parts.tub_v2 import Tub

    tub = Tub(str(path), inputs=["cam/image_array", "user/angle", "user/throttle"],
              types=["image_array", "float", "float"])  # fmt: skip
    for i in range(n):
        image = np.full((120, 160, 3), 10 * i, dtype=np.uint8)
        tub.write_record({"cam/image_array": image, "user/angle": i / n, "user/throttle": 0.4})
    tub.close()
    return path


@pytest.mark.slow
def test_without_a_registry_it_says_how_to_name_one(tmp_path, monkeypatch):
    text = _run(tmp_path, monkeypatch, None)
    assert "no fleet data to pull: registry: PITLANE_REGISTRY is not set" in text
    assert not (tmp_path / "data").exists()


@pytest.mark.slow
def test_a_car_without_data_bundles_says_so(tmp_path, monkeypatch, registry):
    car = _car(tmp_path)
    text = _run(tmp_path, monkeypatch, registry.host, CAR=car)
    assert text.count("no fleet data to pull:") == 1
    assert f"{registry.host}/data/{car} holds no data bundles yet" in text
    assert not (tmp_path / "data" / "tubs.txt").exists()


@pytest.mark.slow
def test_a_cars_newest_bundle_is_pulled_checked_and_handed_to_training(tmp_path, monkeypatch, registry):
    car = _car(tmp_path)
    refs = []
    for name, n in (("tub_1", 7), ("tub_2", 9)):
        pushed = subprocess.run(
            [sys.executable, "-m", "pitlane.cli", "data", "push", str(_tub(tmp_path / "cars" / name, n)),
             "--to", f"{registry.host}/data/{car}"],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        refs.append(pushed.stdout.strip().splitlines()[-1])
    text = _run(tmp_path, monkeypatch, registry.host, CAR=car, OUT=str(tmp_path / "data" / "fleet"))
    assert "no fleet data to pull" not in text
    assert all(f"{ref}  user " in text for ref in refs)  # listed, pushed by a user (no car field)
    pulled = Path((tmp_path / "data" / "tubs.txt").read_text().strip())
    assert pulled.parent == tmp_path / "data" / "fleet"
    from pitlane.data.check import check_tub

    report = check_tub(pulled)
    assert report.ok and report.records == 9  # the newest bundle, whole
