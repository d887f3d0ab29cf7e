"""The default recipe's wiring (collect -> train -> gate) on a tiny budget; the full recipe is run by hand."""

from __future__ import annotations

import json

import pytest

from pitlane.evaluate.gate import GatePolicy, load_policy
from pitlane.orchestration.recipe import DEFAULT_SCENES, Recipe, default_recipe
from pitlane.train import TrainParams


def test_default_recipe_trains_on_the_default_gates_scenes():
    recipe = Recipe()
    assert recipe.scenes == DEFAULT_SCENES == load_policy().scenes
    assert recipe.train.model_type == "linear"
    assert any(noise == "heavy" for noise, _ in recipe.passes)


@pytest.mark.slow
def test_tiny_recipe_runs_end_to_end(tmp_path):
    recipe = Recipe(
        scenes=("generated_track",), passes=(("light", 1),), train=TrainParams(epochs=1, batch_size=32)
    )
    policy = GatePolicy(scenes=("generated_track",), laps=1, min_laps_completed=1, max_seconds=20.0)
    result = default_recipe(tmp_path, recipe=recipe, policy=policy, threads=2)
    assert (result.tub / "manifest.json").is_file()
    assert result.model.is_file() and result.tflite.is_file()
    assert result.record.tubs[0].path == str(result.tub)
    gate = json.loads((tmp_path / "gate" / "gate.json").read_text())
    assert gate["verdict"] in ("pass", "fail") and result.passed == (gate["verdict"] == "pass")
    assert (tmp_path / "gate" / "generated_track" / "report.json").is_file()
    assert set(result.timings_s) == {"collect", "train", "gate"}


def test_recipe_refuses_to_append_to_a_previous_run(tmp_path):
    from pitlane.errors import UserError

    (tmp_path / "tub").mkdir()
    with pytest.raises(UserError, match="already holds a recipe run"):
        default_recipe(tmp_path)
