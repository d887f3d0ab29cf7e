"""Training through donkeycar's own pipeline, so every model we make is a standard donkeycar model.

`train_model` checks the tubs, builds a donkeycar `Config` from donkeycar's complete config template plus our
overrides, calls `donkeycar.pipeline.training.train` (which saves the best checkpoint and exports TFLite),
and writes a run record next to the model. Two parts of donkeycar's training are stood in for while it runs:
its input pipeline (frames decoded once, batches by tf.data: `pitlane.train.pipeline`) and its split (by
record and seed: `pitlane.train.split`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
import os
import shutil
import tempfile
import time
import warnings
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pitlane import tracking
from pitlane.data.check import DELETE, MANUAL, Problem, TubReport, check_tub, fix_tub
from pitlane.data.framestats import training_stats
from pitlane.data.origin import bundle_refs
from pitlane.data.tub import ANGLE_KEY, CAMERA_KEY, IMAGES, THROTTLE_KEY
from pitlane.errors import UserError
from pitlane.pilots.model import MODEL_TYPES
from pitlane.provenance import (
    RunRecord,
    TubDigest,
    data_digest,
    file_digest,
    git_commit,
    run_record_path,
    tub_digest,
)
from pitlane.train.crop import horizon_crop
from pitlane.train.overrides import check_override
from pitlane.train.pipeline import cached_input
from pitlane.train.split import stable_split
from pitlane.train.start import StartModel, check_start, copy_start

log = logging.getLogger(__name__)

MODEL_SUFFIXES: tuple[str, ...] = (".keras", ".h5")
REQUIRED_KEYS: tuple[str, ...] = (CAMERA_KEY, ANGLE_KEY, THROTTLE_KEY)
RGB_CHANNELS = 3


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
    cached_frames: bool = True  # decode each frame once, batches by tf.data (False: donkeycar's generator)
    verbose: int = 0  # Keras fit verbosity (donkeycar's VERBOSE_TRAIN): 0 silent, 2 one line per epoch
    learning_rate: float | None = (
        None  # optimizer step size; None: the model type's optimizer default (0.001)
    )
    overrides: dict[str, Any] = field(default_factory=dict)  # donkeycar config keys its training reads
    crop_top: int = 0  # [px rows] cut off the top of the frame inside the model (pitlane.train.crop), 0: none

    def __post_init__(self) -> None:
        if self.model_type not in MODEL_TYPES:
            raise UserError(f"unknown model type {self.model_type!r}; choose one of {', '.join(MODEL_TYPES)}")
        if self.epochs < 1:
            raise UserError(f"epochs must be >= 1, got {self.epochs}")
        if self.batch_size < 1:
            raise UserError(f"batch size must be >= 1, got {self.batch_size}")
        if not 0.0 < self.train_test_split < 1.0:
            raise UserError(f"train/test split must be in (0, 1), got {self.train_test_split}")
        lr = self.learning_rate
        if lr is not None and not (isinstance(lr, int | float) and math.isfinite(lr) and 0 < lr <= 10):
            raise UserError(f"learning rate must be a number in (0, 10], got {lr}")
        if isinstance(self.crop_top, bool) or not isinstance(self.crop_top, int) or self.crop_top < 0:
            raise UserError(f"horizon crop must be a whole number of rows >= 0, got {self.crop_top!r}")
        for key, value in self.overrides.items():
            check_override(key, value)


@dataclass(frozen=True)
class TubInfo:
    path: str  # the tub as given
    records: int  # records training uses
    skipped: int  # bad records left out (only with skip_bad)
    image_shape: tuple[int, int, int]  # (height, width, depth) [px]
    train_path: str  # what donkeycar reads: the tub itself, or a view of it without the bad records


def _refusal(raw: str | Path, report: TubReport, blocking: list[Problem], skip_bad: bool) -> str:
    """One line: the tub, how many problems of which kind, the first one, and what to do."""
    records = [p for p in blocking if p.index is not None]
    whole = sorted((p for p in blocking if p.index is None), key=lambda p: p.fix != MANUAL)  # worst first
    parts = []
    if whole:
        parts.append(whole[0].reason + (f" (+{len(whole) - 1} more tub problems)" if len(whole) > 1 else ""))
    if records:
        kinds = Counter(p.reason.split(" (")[0].split(":")[0] for p in records)
        first = records[0]
        parts.append(
            f"{len(records)} bad record(s) of {report.records} (first: record {first.index}: {first.reason}; "
            f"{len(kinds)} kind(s))"
        )
    hint = "see `pitlane data check` (its --fix repairs what it can)"
    if records and not whole and not skip_bad:
        hint += ", or train with --skip-bad to leave the bad records out"
    return f"tub {raw} fails the data checker: {'; '.join(parts)}; {hint}"


def _view_without_bad_records(report: TubReport, work_dir: Path) -> Path:
    """A copy of the tub's manifest and catalogs (images linked, not copied) with the bad records marked
    deleted by the checker's own repair: the user's tub is never changed."""
    work_dir.mkdir(parents=True, exist_ok=True)
    view = work_dir / f"{len(list(work_dir.iterdir()))}-{report.path.name}"
    view.mkdir(parents=True)
    for item in report.path.iterdir():
        if item.is_file():
            shutil.copy2(item, view / item.name)
    (view / IMAGES).symlink_to((report.path / IMAGES).resolve(), target_is_directory=True)
    fix_tub(replace(report, path=view))  # the checker's verdict on the tub, written in the view
    return view


def load_tubs(
    paths: Sequence[str | Path], *, skip_bad: bool = False, work_dir: str | Path | None = None
) -> list[TubInfo]:
    """Check every tub with the data checker's rules (`pitlane.data.check`) before TensorFlow is touched.

    A tub the checker rejects is refused (UserError, one line naming the tub and its bad records), so no
    record the checker rejects is ever trained on. With `skip_bad`, records the checker would delete are
    left out instead (through a view of the tub in `work_dir`); problems of the whole tub still refuse.
    """
    if not paths:
        raise UserError("no tubs given: pass at least one tub directory")
    infos = []
    for raw in paths:
        path = Path(raw).expanduser()
        report = check_tub(path)
        shape = report.shapes.get(CAMERA_KEY)
        if shape is not None and len(shape) == 3 and shape[2] != RGB_CHANNELS:  # the checker's expected shape
            raise UserError(
                f"tub {raw}: most camera frames have {shape[2]} channel(s), not {RGB_CHANNELS}: pitlane trains "
                "on RGB frames like the twin's and the car's camera"
            )
        blocking = [p for p in report.problems if not (skip_bad and p.index is not None and p.fix == DELETE)]
        if blocking:
            raise UserError(_refusal(raw, report, blocking, skip_bad))
        types = report.raw.input_types if report.raw is not None else {}
        missing = [k for k in REQUIRED_KEYS if k not in types]
        if missing:
            raise UserError(f"tub {raw} does not record {', '.join(missing)}: nothing to learn from")
        if shape is None or len(shape) != 3:
            raise UserError(f"tub {raw} has no readable camera frames ({CAMERA_KEY})")
        train_path = path
        if report.delete:
            if work_dir is None:
                raise UserError("skipping bad records needs a work folder for the tub's view")
            train_path = _view_without_bad_records(report, Path(work_dir))
        usable = report.records - report.deleted_before - len(report.delete)
        h, w, d = shape
        infos.append(TubInfo(str(path), usable, len(report.delete), (h, w, d), str(train_path)))
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


@contextlib.contextmanager
def optimizer_with(learning_rate: float | None, applied: dict[str, Any]) -> Iterator[None]:
    """donkeycar 5.4's training compiles each model with its optimizer's name ("adam", "rmsprop"): its
    `set_optimizer` is never called and LEARNING_RATE is never read. This gives the model donkeycar builds
    inside `train` an optimizer instance of that kind with `learning_rate`, and fills `applied` with the
    optimizer actually used (name, learning rate), for the run record."""
    import donkeycar.pipeline.training as training
    from tensorflow import keras

    build = training.get_model_by_type

    def build_with_rate(model_type, cfg):
        kl = build(model_type, cfg)
        name = kl.optimizer if isinstance(kl.optimizer, str) else type(kl.optimizer).__name__.lower()
        optimizer = keras.optimizers.get(name)
        if learning_rate is not None:
            optimizer.learning_rate = learning_rate
        kl.optimizer = optimizer
        applied.update(name=name, learning_rate=float(keras.ops.convert_to_numpy(optimizer.learning_rate)))
        return kl

    training.get_model_by_type = build_with_rate
    try:
        yield
    finally:
        training.get_model_by_type = build


def _input_pipeline(
    params: TrainParams, infos: Sequence[TubInfo], digests: Sequence[TubDigest]
) -> contextlib.AbstractContextManager[None]:
    """Frames decoded once and fed by tf.data (`pitlane.train.pipeline`), or donkeycar's own generator."""
    if not params.cached_frames:
        return contextlib.nullcontext()
    by_folder = {i.train_path: d.digest for i, d in zip(infos, digests, strict=True)}
    return cached_input(by_folder, infos[0].image_shape, params.seed, params.deterministic, params.threads)


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
    skip_bad: bool = False,
    start_from: str | Path | None = None,
) -> RunRecord:
    """Train a donkeycar model on `tubs`, save it to `out` (.keras or .h5) plus `.tflite` and the run record.

    The tubs go through the data checker's rules first (`load_tubs`): a tub it rejects is refused, or with
    `skip_bad` its bad records are left out. An existing model at `out` is kept (UserError) unless `overwrite`.
    `start_from`: a Keras model of the same type and image size whose weights training starts from instead
    of random ones (donkeycar's transfer; `out` itself may be it, as a DAgger retrain does).
    """
    with tempfile.TemporaryDirectory(prefix="pitlane-train-") as work:
        return _train(
            tubs,
            out,
            params,
            overwrite=overwrite,
            skip_bad=skip_bad,
            work_dir=Path(work),
            start_from=start_from,
        )


def _model_path(out: str | Path, overwrite: bool) -> Path:
    """Where the model goes, absolute; a UserError for a wrong suffix or a model already there."""
    out = Path(out).expanduser().absolute()
    if out.suffix not in MODEL_SUFFIXES:
        raise UserError(f"model path {out} must end in {' or '.join(MODEL_SUFFIXES)}")
    if out.exists() and not overwrite:
        raise UserError(f"{out} already exists; choose another path or overwrite it explicitly")
    return out


def _train(
    tubs: Sequence[str | Path],
    out: str | Path,
    params: TrainParams,
    *,
    overwrite: bool,
    skip_bad: bool,
    work_dir: Path,
    start_from: str | Path | None = None,
) -> RunRecord:
    t0 = time.perf_counter()
    out = _model_path(out, overwrite)
    infos = load_tubs(tubs, skip_bad=skip_bad, work_dir=work_dir)
    records_total = sum(i.records for i in infos)
    skipped = sum(i.skipped for i in infos)
    if int(records_total * (1.0 - params.train_test_split)) < 1 or records_total < 2:
        raise UserError(
            f"{records_total} records are too few to hold out a validation set; collect more data"
        )
    digests = tuple(TubDigest(i.path, i.records, tub_digest(i.path)) for i in infos)
    start = copy_start(start_from, work_dir) if start_from is not None else None  # before `out` is removed
    t_checked = time.perf_counter()

    out.parent.mkdir(parents=True, exist_ok=True)
    for old in (out, out.with_suffix(".tflite"), run_record_path(out)):  # never mistake an old model for new
        old.unlink(missing_ok=True)
    configure_tensorflow(params.threads, params.seed, params.deterministic)
    image_shape = infos[0].image_shape
    if start is not None:
        check_start(start, params.model_type, image_shape, params.crop_top)
    cfg = donkey_config(params, image_shape, out.parent)
    log.info(
        "training %s on %d records from %d tubs (%d bad records skipped) -> %s",
        params.model_type,
        records_total,
        len(infos),
        skipped,
        out,
    )
    history, optimizer = _fit(params, cfg, infos, digests, out, start)
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
        params={**{k: _json_safe(v) for k, v in dataclasses.asdict(params).items()}, "optimizer": optimizer},
        history=history,
        epochs_run=len(history.get("loss", [])),
        best_val_loss=min(val) if val else None,
        git_commit=commit,
        git_dirty=dirty,
        versions=_versions(),
        timings_s={
            "check": round(t_checked - t0, 3),
            "train": round(t_trained - t_checked, 3),
            "total": round(time.perf_counter() - t0, 3),
        },
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        model_digest=file_digest(out),
        tflite_digest=file_digest(tflite) if tflite.is_file() else "",
        extra=_record_extra(infos, skipped, start),
    )
    record.save(run_record_path(out))
    tracking.log_training(record, run_record_path(out))  # MLflow, when MLFLOW_TRACKING_URI is set
    return record


def _fit(
    params: TrainParams, cfg: Any, infos: Sequence[TubInfo], digests: Any, out: Path, start: StartModel | None
) -> tuple[Any, dict[str, Any]]:
    """donkeycar's training run on pitlane's input pipeline: (its history, the optimizer it used)."""
    from donkeycar.pipeline.training import train as donkey_train

    optimizer: dict[str, Any] = {}
    with (
        warnings.catch_warnings(),
        optimizer_with(params.learning_rate, optimizer),
        horizon_crop(params.crop_top, cfg.IMAGE_H, params.model_type),
        stable_split(params.seed),
        _input_pipeline(params, infos, digests),
    ):
        # tf.data datasets are shuffled by donkeycar's split, Keras warns its own shuffle flag is unused
        warnings.filterwarnings("ignore", message=".*shuffle=True.*was passed")
        history = donkey_train(
            cfg,
            ",".join(i.train_path for i in infos),
            str(out),
            params.model_type,
            transfer=str(start.path) if start is not None else None,
        )
    return history, optimizer


def _record_extra(infos: Sequence[TubInfo], skipped: int, start: StartModel | None = None) -> dict[str, Any]:
    """What the run record adds beyond donkeycar's: bad records left out, the frames' statistics (the bundle
    carries them to the car's drift score), the data bundles the tubs were pulled from, the warm start."""
    paths = [i.path for i in infos]
    started = {"started_from": {"model": start.source, "digest": start.digest}} if start is not None else {}
    return {
        "records_skipped": skipped,
        "frame_stats": training_stats(paths),
        "data_bundles": bundle_refs(paths),
    } | started
