"""notebooks/simple_train.ipynb runs top to bottom on a tiny budget: collect -> train -> evaluate -> plots."""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest

NOTEBOOK = Path(__file__).resolve().parents[2] / "notebooks" / "simple_train.ipynb"


@pytest.mark.slow
def test_simple_train_notebook_runs(tmp_path):
    from nbclient import NotebookClient

    nb = nbformat.read(NOTEBOOK, as_version=4)
    index = next(i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", []))
    params = dict(LAPS=1, EPOCHS=1, EVAL_LAPS=1, OUT=str(tmp_path / "nb"))
    nb.cells.insert(index + 1, nbformat.v4.new_code_cell("\n".join(f"{k} = {v!r}" for k, v in params.items())))
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()

    out = tmp_path / "nb"
    assert (out / "tub" / "manifest.json").is_file()
    assert (out / "model" / "pilot.tflite").is_file() and (out / "model" / "pilot.run.json").is_file()
    report = json.loads((out / "report" / "report.json").read_text())
    assert report["laps_requested"] == 1 and report["end_reason"] in ("laps_completed", "off_track", "time_limit")
    images = [o for c in nb.cells for o in c.get("outputs", []) if o.get("data", {}).get("image/png")]
    assert len(images) >= 3  # training curve + trajectory + CTE/speed
    text = "\n".join(o.get("text", "") for c in nb.cells for o in c.get("outputs", []))
    assert "laps_completed" in text and "GATE" in text
