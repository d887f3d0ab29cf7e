"""Training through donkeycar's own pipeline, so every model we make is a standard donkeycar model.

`train_model` checks the tubs, builds a donkeycar `Config` from donkeycar's complete config template plus our
overrides, calls `donkeycar.pipeline.training.train` (which saves the best checkpoint and exports TFLite),
and writes a run record next to the model.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pitlane.data.tub import ANGLE_KEY, CAMERA_KEY, IMAGES, THROTTLE_KEY, is_tub
from pitlane.errors import UserError
from pitlane.provenance import (
    RunRecord,
    TubDigest,
    data_digest,
    file_digest,
    git_commit,
    run_record_path,
    tub_digest,
)

log = logging.getLogger(__name__)

# donkeycar model types whose only input is the camera image (what the twin and the car feed a pilot)
MODEL_TYPES: tuple[str, ...] = ("linear", "categorical", "inferred")
MODEL_SUFFIXES: tuple[str, ...] = (".keras", ".h5")
REQUIRED_KEYS: tuple[str, ...] = (CAMERA_KEY, ANGLE_KEY, THROTTLE_KEY)


@dataclass(frozen=True)
class TrainParams:
    """Knobs of a training run; everything else comes from donkeycar's config template."""

    model_type: str = "linear"
    epochs: int = 10  # upper bound; donkeycar stops early when val_loss stalls
    batch_size: int = 64
    seed: int = 0
    train_test_split: float = 0.8  # fraction of records used for training, rest for validation
    early_stop_patience: int = 5  # [epochs]
    threads: int | None = None  # TensorFlow intra-op threads; None = TensorFlow's default
    deterministic: bool = True  # tf.config.experimental.enable_op_determinism()
    verbose: int = 0  # Keras fit verbosity (donkeycar's VERBOSE_TRAIN): 0 silent, 2 one line per epoch
    overrides: dict[str, Any] = field(default_factory=dict)  # extra donkeycar config values (UPPER_CASE)

    def __post_init__(self) -> None:
        if self.model_type not in MODEL_TYPES:
            raise UserError(f"unknown model type {self.model_type!r}; choose one of {', '.join(MODEL_TYPES)}")
        if self.epochs < 1:
            raise UserError(f"epochs must be >= 1, got {self.epochs}")
        if self.batch_size < 1:
            raise UserError(f"batch size must be >= 1, got {self.batch_size}")
        if not 0.0 < self.train_test_split < 1.0:
            raise UserError(f"train/test split must be in (0, 1), got {self.train_test_split}")
        bad = [k for k in self.overrides if not k.isupper()]
        if bad:
            raise UserError(f"donkeycar config keys are UPPER_CASE; not understood: {', '.join(bad)}")


@dataclass(frozen=True)
class TubInfo:
    path: str
    records: int
    image_shape: tuple[int, int, int]  # (height, width, depth) [px]


def check_tubs(paths: Sequence[str | Path]) -> list[TubInfo]:
    """Open every tub with donkeycar's Tub and check it can train a model; UserError naming the first problem."""
    if not paths:
        raise UserError("no tubs given: pass at least one tub directory")
    from donkeycar.parts.tub_v2 import Tub
    from PIL import Image

    infos = []
    for raw in paths:
        path = Path(raw).expanduser()
        if not path.is_dir():
            raise UserError(f"tub {raw} does not exist or is not a directory")
        if not is_tub(path):
            raise UserError(f"{raw} is not a donkeycar tub: it has no manifest.json")
        if not any(c.stat().st_size for c in path.glob("catalog_*.catalog")):
            raise UserError(f"tub {raw} has no records")  # donkeycar's reader crashes on empty catalogs
        try:
            tub = Tub(str(path), read_only=True)
            try:
                records = list(tub)
            finally:
                tub.close()
        except Exception as exc:  # donkeycar raises anything from json to index errors on a broken tub
            raise UserError(f"tub {raw} is corrupt: {type(exc).__name__}: {exc}") from None
        if not records:
            raise UserError(f"tub {raw} has no records")
        shape = None
        for rec in records:
            missing = [k for k in REQUIRED_KEYS if rec.get(k) is None]
            if missing:
                raise UserError(f"tub {raw} record {rec.get('_index')} lacks {', '.join(missing)}")
            image = path / IMAGES / rec[CAMERA_KEY]
            if not image.is_file():
                raise UserError(f"tub {raw} record {rec.get('_index')}: image {image.name} is missing")
            if shape is None:
                try:
                    with Image.open(image) as im:
                        shape = (im.height, im.width, len(im.getbands()))
                except OSError as exc:
                    raise UserError(f"tub {raw}: image {image.name} is not readable: {exc}") from None
        assert shape is not None  # records is non-empty and every record's image was checked
        infos.append(TubInfo(str(path), len(records), shape))
    shapes = {i.image_shape for i in infos}
    if len(shapes) > 1:
        raise UserError(f"tubs hold images of different sizes {sorted(shapes)}; train on one camera size")
    return infos


def donkey_config(params: TrainParams, image_shape: tuple[int, int, int], models_dir: str | Path):
    """A donkeycar Config: the values of donkeycar's cfg_complete.py template, then ours, then overrides."""
    import donkeycar
    from donkeycar.config import Config

    cfg = Config()
    cfg.from_pyfile(os.path.join(os.path.dirname(donkeycar.__file__), "templates", "cfg_complete.py"))
    height, width, depth = image_shape
    cfg.from_dict(
        {
            "IMAGE_H": height,
            "IMAGE_W": width,
            "IMAGE_DEPTH": depth,
            "MODELS_PATH": str(models_dir),
            "DEFAULT_MODEL_TYPE": params.model_type,
            "MAX_EPOCHS": params.epochs,
            "BATCH_SIZE": params.batch_size,
            "TRAIN_TEST_SPLIT": params.train_test_split,
            "EARLY_STOP_PATIENCE": params.early_stop_patience,
            "CREATE_TF_LITE": True,
            "SHOW_PLOT": False,
            "PRINT_MODEL_SUMMARY": False,
            "VERBOSE_TRAIN": params.verbose,
        }
    )
    cfg.from_dict(dict(params.overrides))
    return cfg


def configure_tensorflow(threads: int | None, seed: int, deterministic: bool) -> None:
    """Threads and seeds, before TensorFlow builds its thread pools (later calls keep the first setting)."""
    import tensorflow as tf

    if threads:
        try:
            tf.config.threading.set_intra_op_parallelism_threads(threads)
            tf.config.threading.set_inter_op_parallelism_threads(min(threads, 2))
        except RuntimeError:  # TensorFlow already initialised in this process
            log.debug("TensorFlow threads already set; keeping them")
    tf.keras.utils.set_random_seed(seed)  # python random (donkeycar's split), numpy, TensorFlow
    if deterministic:
        tf.config.experimental.enable_op_determinism()


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for pkg in ("pitlane", "donkeycar", "tensorflow"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = "unknown"
    return out


def _json_safe(value: Any) -> Any:
    try:
        json.dumps(value)
        return value
    except TypeError:
        return repr(value)


def train_model(
    tubs: Sequence[str | Path],
    out: str | Path,
    params: TrainParams = TrainParams(),
    *,
    overwrite: bool = False,
) -> RunRecord:
    """Train a donkeycar model on `tubs`, save it to `out` (.keras or .h5) plus `.tflite` and the run record.

    An existing model at `out` is kept (UserError) unless `overwrite`.
    """
    t0 = time.perf_counter()
    out = Path(out).expanduser().absolute()
    if out.suffix not in MODEL_SUFFIXES:
        raise UserError(f"model path {out} must end in {' or '.join(MODEL_SUFFIXES)}")
    if out.exists() and not overwrite:
        raise UserError(f"{out} already exists; choose another path or overwrite it explicitly")
    infos = check_tubs(tubs)
    records_total = sum(i.records for i in infos)
    if int(records_total * (1.0 - params.train_test_split)) < 1 or records_total < 2:
        raise UserError(
            f"{records_total} records are too few to hold out a validation set; collect more data"
        )
    digests = tuple(TubDigest(i.path, i.records, tub_digest(i.path)) for i in infos)
    t_checked = time.perf_counter()

    out.parent.mkdir(parents=True, exist_ok=True)
    for old in (out, out.with_suffix(".tflite"), run_record_path(out)):  # never mistake an old model for new
        old.unlink(missing_ok=True)
    configure_tensorflow(params.threads, params.seed, params.deterministic)
    from donkeycar.pipeline.training import train as donkey_train

    image_shape = infos[0].image_shape
    cfg = donkey_config(params, image_shape, out.parent)
    log.info(
        "training %s on %d records from %d tubs -> %s", params.model_type, records_total, len(infos), out
    )
    with warnings.catch_warnings():
        # tf.data datasets are shuffled by donkeycar's split, Keras warns its own shuffle flag is unused
        warnings.filterwarnings("ignore", message=".*shuffle=True.*was passed")
        history = donkey_train(cfg, ",".join(i.path for i in infos), str(out), params.model_type)
    t_trained = time.perf_counter()
    if not out.is_file():
        raise UserError(f"training produced no model at {out} (no epoch improved val_loss?)")

    tflite = out.with_suffix(".tflite")
    history = {k: [float(v) for v in vs] for k, vs in (history or {}).items()}
    val = history.get("val_loss") or []
    commit, dirty = git_commit()
    record = RunRecord(
        model_type=params.model_type,
        model_path=str(out),
        tflite_path=str(tflite) if tflite.is_file() else None,
        input_shape=image_shape,
        tubs=digests,
        data_digest=data_digest(digests),
        records_total=records_total,
        params={k: _json_safe(v) for k, v in dataclasses.asdict(params).items()},
        history=history,
        epochs_run=len(history.get("loss", [])),
        best_val_loss=min(val) if val else None,
        git_commit=commit,
        git_dirty=dirty,
        versions=_versions(),
        timings_s={
            "check_tubs": round(t_checked - t0, 3),
            "train": round(t_trained - t_checked, 3),
            "total": round(time.perf_counter() - t0, 3),
        },
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        model_digest=file_digest(out),
        tflite_digest=file_digest(tflite) if tflite.is_file() else "",
    )
    record.save(run_record_path(out))
    return record
