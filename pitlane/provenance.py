"""The run record: what a model was trained on, how, and how it went, saved next to the model.

The release pipeline copies it into the model bundle's metadata, so a model can always be traced back to
the exact tubs (by digest), parameters and code (git commit) that produced it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pitlane.errors import UserError

RUN_RECORD_SUFFIX = ".run.json"
SCHEMA = "pitlane.run-record/1"


@dataclass(frozen=True)
class TubDigest:
    """One training tub, identified by content: records counted, catalogs + manifest + images hashed."""

    path: str
    records: int
    digest: str  # "sha256:<hex>" over manifest, catalogs and image bytes in a fixed order


@dataclass(frozen=True)
class RunRecord:
    """Everything needed to explain (and redo) a training run."""

    model_type: str  # donkeycar model type: linear, categorical, ...
    model_path: str  # the Keras model donkeycar saved (best val_loss checkpoint)
    tflite_path: str | None  # TFLite export of that model, None if not created
    input_shape: tuple[int, int, int]  # (height, width, depth) of camera images [px]
    tubs: tuple[TubDigest, ...]
    data_digest: str  # "sha256:<hex>" over the tub digests, in the given order
    records_total: int
    params: dict[str, Any]  # TrainParams as a dict, plus the donkeycar config overrides
    history: dict[str, list[float]]  # per-epoch curves from Keras: loss, val_loss, ...
    epochs_run: int
    best_val_loss: float | None
    git_commit: str  # commit of the pitlane checkout that trained, or "unknown"
    git_dirty: bool  # tracked files differed from that commit
    versions: dict[str, str]  # pitlane, donkeycar, tensorflow
    timings_s: dict[str, float]  # [s] check (the data checker's rules), train, total
    created_at: str  # ISO 8601 UTC
    model_digest: str = ""  # "sha256:<hex>" of the model file
    tflite_digest: str = ""  # "sha256:<hex>" of the TFLite file
    schema: str = SCHEMA
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["input_shape"] = list(self.input_shape)
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> RunRecord:
        d = dict(d)
        d["input_shape"] = tuple(d["input_shape"])
        d["tubs"] = tuple(TubDigest(**t) for t in d["tubs"])
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(self.to_json(), indent=2, sort_keys=True) + "\n")
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, path: str | Path) -> RunRecord:
        try:
            return cls.from_json(json.loads(Path(path).read_text()))
        except FileNotFoundError:
            raise UserError(f"run record {path} does not exist") from None
        except (ValueError, KeyError, TypeError) as exc:
            raise UserError(f"run record {path} is not a valid pitlane run record: {exc}") from None


def run_record_path(model_path: str | Path) -> Path:
    """Where the run record of a model lives: `pilot.keras` and `pilot.tflite` -> `pilot.run.json`."""
    p = Path(model_path)
    return p.with_name(p.stem + RUN_RECORD_SUFFIX)


def file_digest(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return "sha256:" + h.hexdigest()


def tub_digest(tub_path: str | Path) -> str:
    """Content digest of a Tub v2 directory: manifest, catalogs and images, by relative name, in sorted order.

    The TensorBoard logs or model files someone may have dropped into the folder are not part of it.
    """
    root = Path(tub_path)
    files = [p for p in root.iterdir() if p.is_file() and (p.name == "manifest.json" or ".catalog" in p.name)]
    images = root / "images"
    if images.is_dir():
        files += [p for p in images.iterdir() if p.is_file()]
    h = hashlib.sha256()
    for p in sorted(files, key=lambda q: q.relative_to(root).as_posix()):
        h.update(p.relative_to(root).as_posix().encode() + b"\0")
        h.update(file_digest(p).encode() + b"\n")
    return "sha256:" + h.hexdigest()


def data_digest(tubs: tuple[TubDigest, ...]) -> str:
    h = hashlib.sha256()
    for t in tubs:
        h.update(t.digest.encode() + b"\n")
    return "sha256:" + h.hexdigest()


def git_commit(cwd: str | Path | None = None) -> tuple[str, bool]:
    """The commit of the code that trains ("unknown" outside a git checkout) and whether the tree is dirty."""
    where = Path(cwd) if cwd else Path(__file__).resolve().parent
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=where, capture_output=True, text=True, timeout=10, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown", False
    commit = out.stdout.strip()
    if not commit:
        return "unknown", False
    status = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=no"], cwd=where, capture_output=True, text=True
    )
    return commit, bool(status.returncode == 0 and status.stdout.strip())
