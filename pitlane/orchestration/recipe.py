"""The default recipe: expert laps in two scenes -> a donkeycar linear model -> the default gate.

One function, `default_recipe`, that notebooks, the end-to-end demo and tests call; its defaults are sized
to finish in a few minutes on a 2-core CPU and to give a model that passes the default gate.
"""

from __future__ import annotations

import logging
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from pitlane.data.collect import collect
from pitlane.errors import UserError
from pitlane.evaluate.gate import GatePolicy, GateResult, load_policy, run_gate
from pitlane.provenance import RunRecord
from pitlane.train.train import TrainParams, train_model

log = logging.getLogger(__name__)

DEFAULT_SCENES: tuple[str, ...] = GatePolicy().scenes  # the default gate's scenes: one home, the policy
UNSEEN_SCENE = "circuit_launch"  # a scene the default recipe never trains on, to measure generalisation


@dataclass(frozen=True)
class Recipe:
    """What to collect and how to train. Each (noise, laps) pair is one collection pass over all scenes."""

    scenes: tuple[str, ...] = DEFAULT_SCENES
    # (noise preset, laps per scene): heavy noise makes the expert drift off the line and recover, which is
    # what teaches the model to recover; light noise alone gave models that left mini_monaco's S-bends.
    passes: tuple[tuple[str, int], ...] = (("heavy", 3),)
    seed: int = 0
    train: TrainParams = field(
        default_factory=lambda: TrainParams(model_type="linear", epochs=10, batch_size=64)
    )


@dataclass(frozen=True)
class RecipeResult:
    tub: Path
    model: Path  # .keras
    tflite: Path
    record: RunRecord
    gate: GateResult | None  # None when not gated
    timings_s: dict[str, float]  # [s] collect, train, gate

    @property
    def passed(self) -> bool | None:
        return None if self.gate is None else self.gate.passed


def default_recipe(
    out_dir: str | Path,
    *,
    recipe: Recipe = Recipe(),
    gate: bool = True,
    policy=None,
    threads: int | None = None,
    progress: bool = False,
    overwrite: bool = False,
) -> RecipeResult:
    """collect -> train -> gate into `out_dir` (tub/, model/pilot.{keras,tflite,run.json}, gate/).

    `policy` is a GatePolicy (default: pitlane's default gate); `threads` caps TensorFlow's threads.
    A previous run in `out_dir` is refused (UserError) unless `overwrite`, which replaces those three folders:
    collecting into an old tub would silently append to its data.
    """
    from dataclasses import replace

    out = Path(out_dir)
    tub = out / "tub"
    parts = [out / "tub", out / "model", out / "gate"]
    if any(p.exists() for p in parts):
        if not overwrite:
            raise UserError(
                f"{out} already holds a recipe run (tub/, model/ or gate/); choose a new folder "
                "or overwrite it explicitly"
            )
        for p in parts:
            shutil.rmtree(p, ignore_errors=True)
    t0 = time.perf_counter()
    for i, (noise, laps) in enumerate(recipe.passes):
        summary = collect(
            list(recipe.scenes), laps=laps, out=tub, seed=recipe.seed + i, noise=noise, progress=progress
        )
        log.info("collected %d records with %s noise", summary.records, noise)
    t1 = time.perf_counter()
    params = replace(
        recipe.train,
        seed=recipe.seed,
        threads=threads or recipe.train.threads,
        verbose=2 if progress else recipe.train.verbose,
    )  # one line per epoch
    record = train_model([tub], out / "model" / "pilot.keras", params)
    t2 = time.perf_counter()
    result = None
    if gate:
        result = run_gate(
            record.tflite_path or record.model_path, policy or load_policy(), out / "gate", progress=progress
        )
    t3 = time.perf_counter()
    model = Path(record.model_path)
    return RecipeResult(
        tub=tub,
        model=model,
        tflite=model.with_suffix(".tflite"),
        record=record,
        gate=result,
        timings_s={"collect": round(t1 - t0, 2), "train": round(t2 - t1, 2), "gate": round(t3 - t2, 2)},
    )
