"""Pilot latency: p50 of one inference of the donkeycar linear model, TFLite vs Keras, on one thread.

Goal (issue 4): TFLite <= 0.5 ms on x86 and >= 12x faster than Keras `model(x)`.
Usage: python bench/bench_pilot_latency.py [--model PATH.keras] [--runs N]
Without --model an untrained donkeycar linear model is built (latency does not depend on the weights).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def p50_ms(fn, runs: int, warmup: int = 20) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1e3


def build_linear(folder: Path) -> Path:
    import donkeycar
    from donkeycar.config import Config
    from donkeycar.parts.interpreter import keras_model_to_tflite
    from donkeycar.utils import get_model_by_type

    cfg = Config()
    cfg.from_pyfile(f"{donkeycar.__path__[0]}/templates/cfg_complete.py")
    path = folder / "linear.keras"
    get_model_by_type("linear", cfg).interpreter.model.save(path)
    keras_model_to_tflite(str(path), str(path.with_suffix(".tflite")))
    return path


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--model", type=Path, help=".keras model with a .tflite sibling (default: untrained linear)"
    )
    ap.add_argument("--runs", type=int, default=300)
    args = ap.parse_args()

    from pitlane.pilots.model import ModelPilot, configure_threads

    configure_threads(1)
    import numpy as np

    warnings.filterwarnings("ignore", message=".*structure of `inputs`")  # Keras: tensor vs [tensor]

    with tempfile.TemporaryDirectory() as tmp:
        keras_path = args.model or build_linear(Path(tmp))
        tfl = ModelPilot(keras_path.with_suffix(".tflite"), threads=1)
        ker = ModelPilot(keras_path)
        frame = np.random.default_rng(0).integers(0, 256, tfl.input_shape, dtype=np.uint8)
        x = (frame.astype(np.float32) / 255.0)[None]
        keras_model = ker.part.interpreter.model
        interp = tfl.part.interpreter.interpreter
        interp.allocate_tensors()
        index = interp.get_input_details()[0]["index"]

        def tflite_invoke():
            interp.set_tensor(index, x)
            interp.invoke()

        keras_raw = p50_ms(lambda: keras_model(x, training=False), args.runs)
        tflite_raw = p50_ms(tflite_invoke, args.runs)
        keras_pilot = p50_ms(lambda: ker.run(frame), args.runs)
        tflite_pilot = p50_ms(lambda: tfl.run(frame), args.runs)

    print(
        f"model: {'untrained donkeycar linear' if args.model is None else args.model} "
        f"input {tfl.input_shape}, 1 thread, {args.runs} runs, p50"
    )
    print(f"keras  model(x)         : {keras_raw:8.3f} ms")
    print(f"tflite set_tensor+invoke: {tflite_raw:8.3f} ms   speed-up {keras_raw / tflite_raw:5.1f}x")
    print(f"keras  pilot.run(frame) : {keras_pilot:8.3f} ms")
    print(
        f"tflite pilot.run(frame) : {tflite_pilot:8.3f} ms   speed-up {keras_pilot / tflite_pilot:5.1f}x"
        "  (donkeycar KerasPilot.run: normalise + infer + decode)"
    )
    print(
        f"goal: tflite <= 0.5 ms: {'met' if tflite_raw <= 0.5 else 'NOT met'}; "
        f">= 12x: {'met' if keras_raw / tflite_raw >= 12 else 'NOT met'}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
