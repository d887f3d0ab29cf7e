"""Training speed against the machine's own SGEMM roofline, today's settings beside pitlane's, in one run.

Goal (issue 23): training >= 50 % of the roofline on 2 cores. Prints, per configuration, records/s and
GFLOP/s of `pitlane.train.train_model` (FLOPs per record counted from the donkeycar model's layers,
`pitlane.train.flops`), split into the input pipeline alone (read, decode, augment, batch: no model) and
the steps alone (the same batches already in memory), and the share of the roofline: numpy's float32
matmul on every core, of the FLOPs of one training batch, measured before each configuration. The
configurations run in turn in fresh processes (thread settings only take before TensorFlow starts),
`--repeats` times, and the speed-up is the median of each round's ratio; on a shared machine the
load average (printed at start and end) and the roofline beside each figure say how far to trust it.

    PYTHONPATH=. .venv/bin/python bench/bench_train.py [--tub DIR] [--epochs 2] [--repeats 2] [--quick]
        [--configs baseline,pitlane,pitlane-nondeterministic]

Without --tub it collects the default recipe's expert pass (`pitlane.orchestration.recipe`, about 4,400
records) into a temporary folder first. `--quick`: a one-lap tub, one epoch, one round (a smoke run).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from pitlane.train.flops import TRAIN_PASSES

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# name -> (what it is, TrainParams fields that differ from pitlane's defaults)
CONFIGS: dict[str, tuple[str, dict]] = {
    "baseline": (
        "before issue 23: donkeycar's generator, op determinism",
        {"cached_frames": False, "deterministic": True},
    ),
    "pitlane": ("pitlane's defaults now: frames decoded once, tf.data, op determinism", {}),
    "pitlane-nondeterministic": ("the defaults without op determinism", {"deterministic": False}),
    "pitlane-crop": (
        "the defaults with the twin camera's horizon crop (28 rows; pitlane.train.crop)",
        {"crop_top": 28},
    ),
    "donkeycar-nondeterministic": (
        "donkeycar's generator without op determinism",
        {"cached_frames": False, "deterministic": False},
    ),
}
BATCH = 64  # the default recipe's batch size
STEP_BATCHES = 8  # distinct batches kept in memory for the steps-alone figure


def cpu_s() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


# ---- the parent: tub, roofline, the configurations in turn, the table


def sgemm_gflops(flops: float, repeats: int = 5) -> tuple[float, float]:
    """numpy float32 matmul of n x n, 2 n^3 ~ `flops` (one training batch), on all cores, best of `repeats`:
    (GFLOP per second, GFLOP per CPU-second: what one core gives while it runs, whatever else the machine
    runs)."""
    import numpy as np

    n = max(256, round((flops / 2) ** (1 / 3) / 64) * 64)
    rng = np.random.default_rng(0)
    a, b = rng.random((n, n), np.float32), rng.random((n, n), np.float32)
    a @ b  # warm-up: threads started, pages touched
    wall, cpu = [], []
    for _ in range(repeats):
        t, c = time.perf_counter(), cpu_s()
        a @ b
        wall.append(time.perf_counter() - t)
        cpu.append(cpu_s() - c)
    return 2 * n**3 / min(wall) / 1e9, 2 * n**3 / min(cpu) / 1e9


def collect_tub(out: Path, quick: bool) -> Path:
    import logging
    from dataclasses import replace

    from pitlane.orchestration.recipe import Recipe, collect_tracks

    logging.disable(logging.INFO)
    recipe = Recipe()
    passes = recipe.passes
    if quick:
        recipe, passes = replace(recipe, scenes=("generated_track",), hairpin_roads=0), (("heavy", 1),)
    t = time.perf_counter()
    records = sum(
        collect_tracks(recipe, out, noise, laps, recipe.seed + i) for i, (noise, laps) in enumerate(passes)
    )
    print(f"collected {records} records in {time.perf_counter() - t:.0f} s -> {out}", flush=True)
    return out


def run_worker(name: str, args: argparse.Namespace, work: Path) -> dict:
    cmd = [sys.executable, __file__, "--worker", name, "--tub", str(args.tub), "--epochs", str(args.epochs)]
    cmd += ["--out", str(work / name)]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=3600)
    lines = [x for x in run.stdout.splitlines() if x.startswith("{")]
    if run.returncode != 0 or not lines:
        sys.stderr.write(run.stderr[-4000:])
        raise SystemExit(f"bench_train: the {name} worker failed (exit {run.returncode})")
    return json.loads(lines[-1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tub", type=Path, default=None, help="a tub to train on (default: collect one)")
    ap.add_argument("--epochs", type=int, default=None, help="epochs per training (default 2; --quick 1)")
    ap.add_argument("--repeats", type=int, default=None, help="rounds of every configuration (default 2)")
    ap.add_argument(
        "--configs",
        default="baseline,pitlane,pitlane-nondeterministic",
        help=f"comma-separated, of {', '.join(CONFIGS)}",
    )
    ap.add_argument("--quick", action="store_true", help="a one-lap tub, one epoch, one round")
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--out", type=Path, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    args.epochs = args.epochs or (1 if args.quick else 2)
    if args.worker:
        print(json.dumps(worker(args.worker, args.tub, args.epochs, args.out)), flush=True)
        return 0
    names = args.configs.split(",")
    unknown = [n for n in names if n not in CONFIGS]
    if unknown:
        ap.error(f"unknown configuration(s) {', '.join(unknown)}; choose from {', '.join(CONFIGS)}")
    repeats = args.repeats or (1 if args.quick else 2)
    load0 = os.getloadavg()
    print(
        f"load average at start {load0[0]:.2f} {load0[1]:.2f} {load0[2]:.2f}; {os.cpu_count()} cores",
        flush=True,
    )
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-train-") as tmp:
        work = Path(tmp)
        if args.tub is None:
            args.tub = collect_tub(work / "tub", args.quick)
        results: dict[str, list[dict]] = {n: [] for n in names}
        for r in range(repeats):
            for name in names:
                flops = results[names[0]][0]["train_flops"] if results[names[0]] else 2.9e8
                roof, roof_cpu = sgemm_gflops(BATCH * flops)
                res = run_worker(name, args, work)
                res["roofline_gflops"], res["roofline_gflops_cpu"] = roof, roof_cpu
                results[name].append(res)
                print(f"round {r + 1} {name}: {summary_line(res)}", flush=True)
    print_table(names, results)
    load1 = os.getloadavg()
    print(
        f"load average at end {load1[0]:.2f} {load1[1]:.2f} {load1[2]:.2f}; "
        f"{time.perf_counter() - t0:.0f} s in all"
    )
    return 0


def summary_line(res: dict) -> str:
    return (
        f"{res['fit_records_s']:.0f} records/s, {res['fit_gflops']:.1f} GFLOP/s on {res['fit_cores']:.2f} cores "
        f"(SGEMM {res['roofline_gflops']:.0f}), {res['fit_gflops_cpu']:.1f} GFLOP/CPU-s (SGEMM "
        f"{res['roofline_gflops_cpu']:.0f}); input alone {res['input_records_s'][-1]:.0f}/s, steps alone "
        f"{res['step_records_s']:.0f}/s; {res['forward_flops'] / 1e6:.1f} MFLOP forward; load {res['load'][0]:.1f}"
    )


def later_epochs_records_s(res: dict) -> float | None:
    """Records/s of the epochs after the first (which also traces Keras' step functions): what a longer
    training, such as the recipe's 10 epochs, approaches. None with one epoch."""
    later = res["epoch_s"][1:]
    return res["train_records"] / statistics.median(later) if later else None


def print_table(names: list[str], results: dict[str, list[dict]]) -> None:
    """Per configuration, its best round against the best roofline of the run: the machine's figures."""
    first = results[names[0]][0]
    roof = max(r["roofline_gflops"] for rs in results.values() for r in rs)
    roof_cpu = max(r["roofline_gflops_cpu"] for rs in results.values() for r in rs)
    print(
        f"\ntub {first['records']} records ({first['train_records']} train), {first['epochs']} epoch(s), "
        f"batch {BATCH}; {first['forward_flops'] / 1e6:.1f} MFLOP forward, "
        f"{first['train_flops'] / 1e9:.3f} GFLOP per training record (x{TRAIN_PASSES}); roofline (SGEMM, best "
        f"of the run) {roof:.0f} GFLOP/s on {os.cpu_count()} cores, {roof_cpu:.0f} GFLOP per CPU-second"
    )
    print(
        "training: records/s and GFLOP/s of Keras' fit (validation included in the time), % of the "
        "roofline; per CPU-second (robust to a busy machine) and its % of SGEMM's; input alone (1st epoch "
        "decodes) and steps alone in records/s; the epochs after the first (median; the first also traces "
        "the step functions) in records/s; cores busy during fit; speed-up over the first config (median of "
        "the rounds' ratios)"
    )
    header = ["config", "records/s", "GFLOP/s", "% roof", "GF/CPU-s", "% roof", "input 1st/2nd", "steps/s"]
    header += ["% roof", "2nd+ epochs", "% roof", "cores", "x " + names[0]]
    print(f"{header[0]:<26}" + "".join(f"{h:>14}" for h in header[1:]))
    base = results[names[0]]
    for name in names:
        rs = results[name]
        best = max(rs, key=lambda r: r["fit_records_s"])
        ratios = [r["fit_records_s"] / b["fit_records_s"] for r, b in zip(rs, base, strict=False)]
        later = max((later_epochs_records_s(r) or 0.0) for r in rs)
        cells = (
            f"{best['fit_records_s']:.0f}",
            f"{best['fit_gflops']:.1f}",
            f"{100 * best['fit_gflops'] / roof:.0f}",
            f"{max(r['fit_gflops_cpu'] for r in rs):.1f}",
            f"{100 * max(r['fit_gflops_cpu'] for r in rs) / roof_cpu:.0f}",
            "/".join(f"{x:.0f}" for x in best["input_records_s"]),
            f"{best['step_records_s']:.0f}",
            f"{100 * best['step_records_s'] * best['train_flops'] / 1e9 / roof:.0f}",
            f"{later:.0f}" if later else "-",
            f"{100 * later * best['train_flops'] / 1e9 / roof:.0f}" if later else "-",
            f"{best['fit_cores']:.2f}",
            f"{statistics.median(ratios):.2f}",
        )
        print(f"{name:<26}" + "".join(f"{c:>14}" for c in cells))
    print(
        "whole train_model (checks, digest, decode, fit, TFLite export), best round: wall s, CPU s, x first:"
    )
    for name in names:
        rs = results[name]
        ratios = [b["train_model_s"] / r["train_model_s"] for r, b in zip(rs, base, strict=False)]
        cpu_ratios = [b["train_model_cpu_s"] / r["train_model_cpu_s"] for r, b in zip(rs, base, strict=False)]
        print(
            f"  {name:<24}{min(r['train_model_s'] for r in rs):8.1f} s{min(r['train_model_cpu_s'] for r in rs):8.1f}"
            f" CPU-s   x{statistics.median(ratios):.2f} wall, x{statistics.median(cpu_ratios):.2f} CPU"
        )
    for name in names:
        print(f"  {name}: {CONFIGS[name][0]}; rounds: " + "; ".join(summary_line(r) for r in results[name]))


# ---- the worker: one configuration in a fresh process


def worker(name: str, tub: Path, epochs: int, out: Path) -> dict:
    from dataclasses import replace

    from pitlane.train.train import TrainParams, configure_tensorflow, load_tubs

    params = replace(TrainParams(epochs=epochs, batch_size=BATCH), **CONFIGS[name][1])
    configure_tensorflow(params.threads, params.seed, params.deterministic)
    info = load_tubs([tub])[0]
    res: dict = {"config": name, "params": {k: str(v) for k, v in params.__dict__.items()}}
    res.update(alone(params, info, out))
    res.update(end_to_end(params, tub, out))
    res["fit_gflops"] = res["fit_records_s"] * res["train_flops"] / 1e9
    res["fit_gflops_cpu"] = res["fit_gflops"] / res["fit_cores"]
    res["load"] = os.getloadavg()
    return res


def _sequences(params, info, out: Path):
    """donkeycar's split of the tub and the sequence (donkeycar's or pitlane's) its `train` would build."""
    import random

    import donkeycar.pipeline.training as training
    from donkeycar.pipeline.types import TubDataset
    from donkeycar.utils import get_model_by_type, train_test_split

    from pitlane.provenance import tub_digest
    from pitlane.train.crop import horizon_crop
    from pitlane.train.pipeline import cached_input
    from pitlane.train.train import donkey_config

    cfg = donkey_config(params, info.image_shape, out)
    with horizon_crop(params.crop_top, info.image_shape[0], params.model_type):
        kl = get_model_by_type(params.model_type, cfg)
    random.seed(params.seed)
    records = TubDataset(cfg, [info.train_path]).get_records()
    total = len(records)
    train, _ = train_test_split(records, shuffle=True, test_size=1.0 - params.train_test_split)  # pops
    if not params.cached_frames:
        return kl, training.BatchSequence(kl, cfg, train, True), total
    digests = {info.train_path: tub_digest(info.path)}
    with cached_input(digests, info.image_shape, params.seed, params.deterministic, params.threads):
        return kl, training.BatchSequence(kl, cfg, train, True), total


def alone(params, info, out: Path) -> dict:
    """Records/s of the input pipeline alone (two epochs: donkeycar's first decodes) and of the steps alone."""
    import tensorflow as tf

    from pitlane.train.flops import forward_flops, train_flops
    from pitlane.train.frames import forget_frames

    kl, seq, records = _sequences(params, info, out)
    steps = len(seq)
    t = time.perf_counter()
    ds = seq.create_tf_data().prefetch(tf.data.AUTOTUNE)
    it = iter(ds)
    setup_s = time.perf_counter() - t
    input_rates: list[float] = []
    kept: list = []
    for _ in range(2):
        t = time.perf_counter()
        for _ in range(steps):
            batch = next(it)
            if len(kept) < STEP_BATCHES:
                kept.append(batch)
            del batch
        input_rates.append(steps * BATCH / (time.perf_counter() - t + (setup_s if not input_rates else 0.0)))
    forget_frames()
    model = kl.interpreter.model
    kl.compile()
    stacked = tf.nest.map_structure(lambda *xs: tf.stack(xs), *kept)
    cached = tf.data.Dataset.from_tensor_slices(stacked).repeat()
    model.fit(cached, steps_per_epoch=4, epochs=1, verbose=0)  # trace, warm up
    n = max(STEP_BATCHES * 2, min(steps, 40))
    t, c = time.perf_counter(), cpu_s()
    model.fit(cached, steps_per_epoch=n, epochs=1, verbose=0)
    step_s, step_cpu = time.perf_counter() - t, cpu_s() - c
    return {
        "records": records,
        "train_records": len(seq.records) if hasattr(seq, "records") else len(seq.sequence),
        "forward_flops": forward_flops(model),
        "train_flops": train_flops(model),
        "input_records_s": input_rates,
        "input_setup_s": setup_s,
        "step_records_s": n * BATCH / step_s,
        "step_gflops_cpu": n * BATCH * train_flops(model) / step_cpu / 1e9,
        "step_cores": step_cpu / step_s,
    }


def end_to_end(params, tub: Path, out: Path) -> dict:
    """`train_model` as pitlane runs it, with Keras' fit timed from outside (its epochs too)."""
    import keras

    from pitlane.train import train_model
    from pitlane.train.frames import forget_frames

    fit = keras.Model.fit
    timings: dict = {"epochs": []}

    class EpochTimes(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.t = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            timings["epochs"].append(time.perf_counter() - self.t)

    def timed_fit(self, *a, **kw):
        kw["callbacks"] = [*(kw.get("callbacks") or []), EpochTimes()]
        t, c = time.perf_counter(), cpu_s()
        try:
            return fit(self, *a, **kw)
        finally:
            timings["fit_s"], timings["fit_cpu_s"] = time.perf_counter() - t, cpu_s() - c

    forget_frames()
    keras.Model.fit = timed_fit
    t, c = time.perf_counter(), cpu_s()
    try:
        record = train_model([tub], out / "pilot.keras", params, overwrite=True)
    finally:
        keras.Model.fit = fit
    total_s, total_cpu_s = time.perf_counter() - t, cpu_s() - c
    train_records = int(record.records_total * params.train_test_split)
    return {
        "epochs": record.epochs_run,
        "fit_s": timings["fit_s"],
        "epoch_s": timings["epochs"],
        "fit_cores": timings["fit_cpu_s"] / timings["fit_s"],
        "fit_records_s": train_records * record.epochs_run / timings["fit_s"],
        "train_model_s": total_s,  # checks, digest, decode, fit, TFLite export
        "train_model_cpu_s": total_cpu_s,
        "val_loss": record.history.get("val_loss"),
    }


if __name__ == "__main__":
    sys.exit(main())
