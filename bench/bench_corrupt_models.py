"""Corrupt models: this process loads N corrupted .tflite files through ModelPilot and must survive all.

Goal (issue 15): 0 process crashes over 1,000 corrupted model files (truncations, bit flips, byte splices
of a small real .tflite built here with TensorFlow). Each file goes through `ModelPilot(path)` in this
process (verified by `pitlane.pilots.model_check` first) and, when it loads, drives one frame. Outcomes are
counted: loaded, refused in one line, refused because the probe child crashed. A baseline shows what the
same files do when TFLite loads them by path (mmap) as before the fix, in forked children (first
--baseline files), so the corpus is shown to be hostile.
Usage: python bench/bench_corrupt_models.py [--files 1000] [--baseline 150] [--seed 0]
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
import warnings
from collections import Counter
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def build_model(folder: Path) -> bytes:
    """A real donkeycar linear model (120x160x3 in), converted by donkeycar's own TFLite export."""
    import contextlib
    import io

    with contextlib.redirect_stdout(io.StringIO()):
        import donkeycar
        from donkeycar.config import Config
        from donkeycar.parts.interpreter import keras_model_to_tflite
        from donkeycar.utils import get_model_by_type
    import tensorflow as tf

    tf.keras.utils.set_random_seed(0)
    cfg = Config()
    cfg.from_pyfile(f"{donkeycar.__path__[0]}/templates/cfg_complete.py")
    path = folder / "linear.keras"
    get_model_by_type("linear", cfg).interpreter.model.save(path)
    keras_model_to_tflite(str(path), str(path.with_suffix(".tflite")))
    return path.with_suffix(".tflite").read_bytes()


def corrupt(data: bytes, rng: random.Random) -> tuple[str, bytes]:
    """One corruption: a truncation, 1-8 bit flips (anywhere, or in the flatbuffer's head/tail tables),
    or a splice of 1-256 bytes copied from elsewhere in the file."""
    n = len(data)
    kind = rng.choice(["truncate", "flip", "flip-tables", "splice"])
    if kind == "truncate":
        return kind, data[: rng.randrange(n)]
    out = bytearray(data)
    if kind == "splice":
        length = rng.randint(1, 256)
        src, dst = rng.randrange(n - length), rng.randrange(n - length)
        out[dst : dst + length] = data[src : src + length]
        return kind, bytes(out)
    for _ in range(rng.randint(1, 8)):
        if kind == "flip":
            pos = rng.randrange(n)
        else:
            pos = rng.choice([rng.randrange(4096), rng.randrange(n - 4096, n)])
        out[pos] ^= 1 << rng.randrange(8)
    return kind, bytes(out)


def baseline(files: list[Path]) -> Counter:
    """What loading by path (the pre-fix code: TfLite.load(model_path)) does, each in a forked child."""
    import numpy as np

    from pitlane.pilots.model_check import _interpreter_class

    interpreter_cls = _interpreter_class()
    outcomes: Counter = Counter()
    for path in files:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            pid = os.fork()
        if pid == 0:
            import faulthandler

            faulthandler.disable()
            try:
                runner = interpreter_cls(model_path=str(path), num_threads=1).get_signature_runner()
                runner(**{k: np.zeros(d["shape"], d["dtype"]) for k, d in runner.get_input_details().items()})
                os._exit(0)
            except BaseException:  # noqa: BLE001
                os._exit(1)
        _, status = os.waitpid(pid, 0)
        if os.WIFSIGNALED(status):
            outcomes["crashed (signal)"] += 1
        else:
            outcomes["loaded" if os.waitstatus_to_exitcode(status) == 0 else "error"] += 1
    return outcomes


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=1000)
    ap.add_argument("--baseline", type=int, default=150, help="files also loaded the old way (0: none)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    import numpy as np
    from tqdm import tqdm

    from pitlane.errors import UserError
    from pitlane.pilots import model_check as probe
    from pitlane.pilots.model import ModelPilot, configure_threads

    configure_threads(1)
    warnings.filterwarnings("ignore")
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        data = build_model(folder)
        frame = np.zeros((120, 160, 3), np.uint8)
        ModelPilot(folder / "linear.tflite").run(frame)  # the intact model loads (and starts the probe)
        files = []
        for i in range(args.files):
            kind, bad = corrupt(data, rng)
            path = folder / f"bad{i:04d}_{kind}.tflite"
            path.write_bytes(bad)
            files.append(path)
        if args.baseline:
            t = time.perf_counter()
            before = baseline(files[: args.baseline])
            print(
                f"baseline, TFLite loading by path (before the fix), {args.baseline} files: {dict(before)} "
                f"({time.perf_counter() - t:.0f} s)"
            )
        outcomes: Counter = Counter()
        by_kind: dict[str, Counter] = {}
        t = time.perf_counter()
        for path in tqdm(files, unit="model", file=sys.stderr, mininterval=5):
            kind = path.stem.split("_", 1)[1]
            try:
                ModelPilot(path).run(frame)
                result = "loaded and drove a frame"
            except UserError as exc:
                assert "\n" not in str(exc)
                result = "refused: probe child crashed" if "crashed" in str(exc) else "refused in one line"
            outcomes[result] += 1
            by_kind.setdefault(kind, Counter())[result] += 1
        wall = time.perf_counter() - t
    prober = probe._PROBER
    print(f"corrupted models: {args.files} ({data.__len__()} byte linear .tflite, seed {args.seed})")
    for kind, counts in sorted(by_kind.items()):
        print(f"  {kind:12s} {dict(counts)}")
    print(f"outcomes: {dict(outcomes)}")
    print(f"probe process respawns: {prober.respawns if prober else 0}")
    print(f"process crashes: 0 (this process loaded all {args.files} and is alive), {wall:.0f} s wall")
    return 0


if __name__ == "__main__":
    sys.exit(main())
