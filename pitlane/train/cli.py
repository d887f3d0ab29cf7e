"""`pitlane train`: tubs in, a donkeycar model (.keras + .tflite) and its run record out."""

from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path

from pitlane.args import check_output_file
from pitlane.data.tub import find_tubs
from pitlane.errors import UserError
from pitlane.provenance import run_record_path
from pitlane.train.overrides import TRAIN_KEYS, parse_overrides
from pitlane.train.train import MODEL_TYPES, TrainParams, train_model


def add_commands(sub: argparse._SubParsersAction) -> None:

    d = TrainParams()
    p = sub.add_parser(
        "train",
        help="train a donkeycar model on tubs (donkeycar's pipeline) and export TFLite",
        description="Train a donkeycar model on one or more tubs with donkeycar's own training pipeline. "
        "Writes PATH (.keras or .h5), PATH's .tflite export and a .run.json run record beside it.",
    )
    p.add_argument(
        "--tub",
        nargs="+",
        required=True,
        metavar="DIR",
        type=Path,
        help="tubs to train on (a folder of tubs counts as all the tubs directly inside it)",
    )
    p.add_argument(
        "--type", dest="model_type", default=d.model_type, choices=MODEL_TYPES, help="donkeycar model type"
    )
    p.add_argument("--out", required=True, metavar="PATH", help="model file to write (.keras or .h5)")
    p.add_argument("--epochs", type=int, default=d.epochs, help="max epochs (early stop on val_loss)")
    p.add_argument("--batch-size", type=int, default=d.batch_size, help="records per training batch")
    p.add_argument("--seed", type=int, default=d.seed, help="seed for the split, init and shuffles")
    p.add_argument("--overwrite", action="store_true", help="replace an existing model at --out")
    p.add_argument(
        "--skip-bad",
        action="store_true",
        help="leave out the records `pitlane data check` rejects instead of refusing the tub "
        "(problems of a whole tub still refuse it)",
    )
    p.add_argument(
        "--start-from",
        metavar="MODEL",
        default=None,
        help="a Keras model of the same type and image size to start from instead of random weights "
        "(e.g. to go on training on new data; its digest goes into the run record)",
    )
    p.add_argument("--threads", type=int, default=None, help="TensorFlow threads (default: TensorFlow's)")
    p.add_argument(
        "--learning-rate",
        type=float,
        default=None,
        metavar="LR",
        help="optimizer learning rate (default: the model type's optimizer default, 0.001)",
    )
    p.add_argument(
        "--crop-top",
        type=int,
        default=d.crop_top,
        metavar="ROWS",
        help="cut ROWS rows off the top of every frame inside the model, e.g. the sky above the horizon "
        "(the model still takes whole frames; 28 is the twin camera's horizon; default 0: no crop)",
    )
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a donkeycar config key its training reads, e.g. --set MIN_DELTA=0.001 or "
        f"--set \"AUGMENTATIONS=['BRIGHTNESS']\" (repeatable; one of {', '.join(sorted(TRAIN_KEYS))})",
    )
    p.set_defaults(func=_train)


def _train(args: argparse.Namespace) -> int:

    if args.threads is not None and args.threads < 1:
        raise UserError(f"--threads must be >= 1, got {args.threads}")
    check_output_file(args.out)
    params = TrainParams(
        model_type=args.model_type,
        epochs=args.epochs,
        batch_size=args.batch_size,
        seed=args.seed,
        threads=args.threads,
        learning_rate=args.learning_rate,
        crop_top=args.crop_top,
        overrides=parse_overrides(args.overrides),
        verbose=2,  # one line per epoch, on stderr (stdout carries only the paths written)
    )

    with contextlib.redirect_stdout(sys.stderr):
        record = train_model(
            find_tubs(args.tub),
            args.out,
            params,
            overwrite=args.overwrite,
            skip_bad=args.skip_bad,
            start_from=args.start_from,
        )
    val = f"{record.best_val_loss:.4f}" if record.best_val_loss is not None else "n/a"
    skipped = record.extra.get("records_skipped", 0)
    print(
        f"trained {record.model_type} on {record.records_total} records "
        f"({skipped} bad records skipped) in {record.timings_s['total']:.1f} s: "
        f"{record.epochs_run} epochs, best val_loss {val}",
        file=sys.stderr,
    )
    print(record.model_path)
    if record.tflite_path:
        print(record.tflite_path)
    print(run_record_path(record.model_path))
    return 0
