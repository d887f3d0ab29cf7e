"""The default recipe's wiring (collect -> train -> gate) on a tiny budget; the full recipe is run by hand."""

from __future__ import annotations

import json

import numpy as np
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
        scenes=("generated_track",),
        passes=(("light", 1),),
        train=TrainParams(epochs=1, batch_size=32),
        dagger_rounds=0,  # DAgger has its own test below
        hairpin_roads=0,
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


def test_recipe_defaults_are_the_ingredients_that_earned_their_place():
    recipe = Recipe()  # randomised colours, hairpin roads, a DAgger round: bench_generalisation's figures
    assert (recipe.directions, recipe.generated_roads, recipe.flip, recipe.randomize) == (
        None,
        0,
        False,
        True,
    )
    assert (recipe.dagger_rounds, recipe.dagger_laps) == (1, 2) and recipe.directions_driven() == (None,)
    assert recipe.dagger_epochs == 6 < recipe.train.epochs  # the retrain starts warm from the first model
    assert recipe.hairpin_roads == 3 and recipe.trained_scenes() == DEFAULT_SCENES
    assert recipe.tracks() == [(s, None) for s in DEFAULT_SCENES] + [
        ("hairpin_road", s) for s in recipe.hairpin_seeds
    ]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"directions": "left"}, "directions"),
        ({"generated_roads": -1}, "generated_roads"),
        ({"dagger_laps": 0}, "dagger_laps"),
        ({"hairpin_roads": 201}, "hairpin_roads"),
        ({"dagger_epochs": 0}, "dagger_epochs"),
        ({"family_tracks": -2}, "family_tracks"),
    ],
)
def test_bad_recipe_options_are_named(kwargs, message):
    from pitlane.errors import UserError

    with pytest.raises(UserError, match=message):
        Recipe(**kwargs)


def test_generated_roads_both_ways_flipped_leave_every_named_scene_unseen(tmp_path):
    from pitlane.data.tub import read_raw_tub
    from pitlane.orchestration.recipe import collect_tracks

    recipe = Recipe(generated_roads=2, hairpin_roads=0, directions="both", flip=True, seed=3)
    assert recipe.trained_scenes() == () and [s for _, s in recipe.tracks()] == list(recipe.road_seeds)
    records = collect_tracks(recipe, tmp_path / "tub", "none", 1, recipe.seed)
    lines = [
        json.loads(x)
        for p in sorted((tmp_path / "tub").glob("catalog_*.catalog"))
        for x in p.read_text().splitlines()
    ]
    assert len(lines) == records and records % 2 == 0
    assert len({r["_session_id"] for r in lines}) == 4  # 2 roads x 2 directions
    assert sum(r["user/angle"] for r in lines) == pytest.approx(0.0, abs=1e-6)  # every record and its mirror
    assert read_raw_tub(tmp_path / "tub").metadata["flip"] == "True"


@pytest.mark.slow
def test_dagger_round_adds_expert_labelled_records_and_retrains(tmp_path):
    recipe = Recipe(
        scenes=("waveshare",),
        passes=(("light", 1),),
        train=TrainParams(epochs=1, batch_size=32),
        dagger_rounds=1,
        dagger_epochs=1,
        hairpin_roads=0,
    )
    result = default_recipe(tmp_path, recipe=recipe, gate=False, threads=2)
    lines = [
        json.loads(x)
        for p in sorted(result.tub.glob("catalog_*.catalog"))
        for x in p.read_text().splitlines()
    ]
    sessions = list(dict.fromkeys(r["_session_id"] for r in lines))
    # the expert's pass, then the model's round labelled by the expert: one session per (randomised) lap
    assert recipe.dagger_laps == 2 and len(sessions) == 1 + recipe.dagger_laps
    assert result.record.records_total == len(lines)  # the last model trained on all of them
    assert result.model.is_file() and result.tflite.is_file()
    # warm: the retrain started from the first model (whose digest its run record keeps), for dagger_epochs
    assert result.record.extra["started_from"]["model"] == str(result.model)
    assert result.record.extra["started_from"]["digest"] != result.record.model_digest
    assert result.record.epochs_run == 1


def test_hairpin_roads_train_beside_the_named_scenes_which_stay_the_only_ones_seen(tmp_path):
    from pitlane.orchestration.recipe import collect_tracks

    recipe = Recipe(scenes=("waveshare",), hairpin_roads=1, randomize=False, seed=2)
    assert recipe.trained_scenes() == ("waveshare",)
    assert recipe.tracks() == [("waveshare", None), ("hairpin_road", recipe.hairpin_seeds[0])]
    records = collect_tracks(recipe, tmp_path / "tub", "none", 1, recipe.seed)
    lines = [
        json.loads(x)
        for p in sorted((tmp_path / "tub").glob("catalog_*.catalog"))
        for x in p.read_text().splitlines()
    ]
    assert len(lines) == records
    by_session: dict[str, list[float]] = {}
    for r in lines:
        by_session.setdefault(r["_session_id"], []).append(r["user/angle"])
    assert len(by_session) == 2  # a lap of waveshare, a lap of the hairpin road
    hairpin = list(by_session.values())[1]
    assert max(hairpin) > 0.8 and min(hairpin) < -0.8  # its U-turns: near full lock both ways


def test_randomize_paints_every_lap_in_other_colours(tmp_path):
    from PIL import Image

    from pitlane.orchestration.recipe import collect_tracks

    recipe = Recipe(generated_roads=1, hairpin_roads=0, randomize=True)
    collect_tracks(recipe, tmp_path / "tub", "none", 2, recipe.seed)
    lines = [
        json.loads(x)
        for p in sorted((tmp_path / "tub").glob("catalog_*.catalog"))
        for x in p.read_text().splitlines()
    ]
    firsts: dict[str, str] = {}
    for r in lines:
        firsts.setdefault(r["_session_id"], r["cam/image_array"])
    assert len(firsts) == 2  # one session per lap
    skies = [
        np.asarray(Image.open(tmp_path / "tub" / "images" / f))[:10].mean(axis=(0, 1))
        for f in firsts.values()
    ]
    assert np.abs(skies[0] - skies[1]).max() > 5  # another sky colour


def test_family_tracks_are_the_train_splits_own_per_seed(tmp_path):
    from pitlane.data.tub import read_raw_tub
    from pitlane.orchestration.recipe import collect_tracks
    from pitlane.twin.family import split_of

    recipe = Recipe(scenes=(), hairpin_roads=0, family_tracks=2, line_styles=True, seed=1)
    assert recipe.family_scenes() == ("family:train:200", "family:train:201")
    assert recipe.tracks() == [("family:train:200", None), ("family:train:201", None)]
    assert not set(Recipe(family_tracks=2).family_scenes()) & set(recipe.family_scenes())  # seeds apart
    assert {split_of(int(s.split(":")[2])) for s in Recipe(family_tracks=200, seed=7).family_scenes()} == {
        "train"
    }
    records = collect_tracks(recipe, tmp_path / "tub", "none", 1, recipe.seed)
    lines = [
        json.loads(x)
        for p in sorted((tmp_path / "tub").glob("catalog_*.catalog"))
        for x in p.read_text().splitlines()
    ]
    assert len(lines) == records and len({r["_session_id"] for r in lines}) == 2  # one lap of each track
    assert read_raw_tub(tmp_path / "tub").metadata["line_styles"] == "True"


def test_the_broad_preset_trains_only_on_the_familys_train_split_and_the_demo_keeps_the_default():
    from pitlane.orchestration.recipe import BROAD, PRESETS
    from pitlane.twin.family import split_of

    assert {"demo": Recipe(), "broad": BROAD} == PRESETS
    assert BROAD.trained_scenes() == () and BROAD.seeded_roads() == []  # every named scene stays unseen
    assert len(BROAD.tracks()) == BROAD.family_tracks > 0
    assert {split_of(int(scene.split(":")[2])) for scene, _ in BROAD.tracks()} == {"train"}
    assert BROAD.randomize and BROAD.line_styles and BROAD.dagger_rounds >= 1
