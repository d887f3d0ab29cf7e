"""Tub checker: find everything that would make a tub lie to training, and repair it the donkeycar way.

``check_tub`` reads a tub defensively (``tub.read_raw_tub``) and returns a ``TubReport``: one ``Problem``
per bad record or tub-level inconsistency, plus the repair plan. ``fix_tub`` carries the plan out: it
marks bad records deleted in the manifest's ``deleted_indexes`` (what donkeycar's ``Tub.delete_records``
does) and, where a file itself would
make donkeycar misread or crash, rewrites it after keeping the original bytes next to it (``*.orig``).
It never removes a file, and ``undo_fix`` puts every changed file back from its ``.orig``.

A tub is untrusted input: every file is read and written through ``tubfiles`` (no symlink followed, no
name leaving the tub), and a tub holding a symlink is reported and left untouched by ``--fix``. The
expected image shape comes from ``--shape``, the tub's own metadata (``image_h``/``image_w``/
``image_depth``, written by ``pitlane data collect`` and the car app) or the twin camera's default size,
never from a majority vote: a tub of mostly wrong frames must not lose its good ones.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image, UnidentifiedImageError

from pitlane.data import tubfiles
from pitlane.data.tub import (
    ANGLE_KEY,
    CAMERA_KEY,
    IMAGE_TYPES,
    IMAGES,
    INPUTS,
    MANIFEST,
    THROTTLE_KEY,
    RawTub,
    catalog_lines,
    read_raw_tub,
)
from pitlane.data.tubfiles import UnsafePath
from pitlane.errors import UserError
from pitlane.twin.camera import CameraParams

DELETE, REPAIR, MANUAL = "delete", "repair", "manual"  # what --fix does about a problem
_FOREIGN_CREATED_AT_S = 60.0  # catalog_0 is created within ms of its manifest; further apart = not its own
_CATALOG_FILE_RE = re.compile(r"catalog_\d+\.catalog(_manifest)?")
JOURNAL = "pitlane-fix-journal.json"  # which files --fix changed and where their originals are, for --undo
SHAPE_KEYS = ("image_h", "image_w", "image_depth")
CAMERA_DEFAULT = "the twin camera's default (no image_h/w/depth in the tub)"  # tub metadata (donkeycar's IMAGE_H/W/DEPTH names)


@dataclass(frozen=True)
class Problem:
    tub: str
    index: int | None  # record index (donkeycar's position) or None for the whole tub
    reason: str
    fix: str  # DELETE, REPAIR or MANUAL

    def __str__(self) -> str:
        where = f"record {self.index}" if self.index is not None else "tub"
        return f"{self.tub}: {where}: {self.reason}"


@dataclass
class TubReport:
    path: Path
    records: int = 0  # catalog lines, deleted or not
    deleted_before: int = 0
    problems: list[Problem] = field(default_factory=list)
    shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)  # expected image shape per key
    shape_source: str = ""  # where the expected shape came from (--shape, tub metadata, camera default)
    # Repair plan, carried out by fix_tub.
    delete: set[int] = field(default_factory=set)
    rebuild_manifest: bool = False  # write a manifest from the catalogs (foreign or unreadable one)
    repair_manifest: bool = False  # counts, deleted indexes or sessions disagree with the catalogs
    rewrite_catalogs: set[str] = field(default_factory=set)
    raw: RawTub | None = None

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def fixable(self) -> bool:
        return all(p.fix != MANUAL for p in self.problems)


def _add(report: TubReport, index: int | None, reason: str, fix: str) -> None:
    report.problems.append(Problem(str(report.path), index, reason, fix))
    if fix == DELETE and index is not None:
        report.delete.add(index)


def _foreign_reasons(raw: RawTub) -> list[str]:
    """Signs that manifest.json was written for other catalogs (copied from another tub)."""
    reasons = []
    missing = [c.name for c in raw.catalogs if not c.exists]
    if missing:
        reasons.append(f"lists missing catalogs {missing}")
    if raw.unlisted_catalogs and missing:
        reasons.append(f"does not list catalogs on disk {raw.unlisted_catalogs}")
    if raw.inputs:
        extra = sorted(
            {k for line in raw.lines if line.record for k in line.record if not k.startswith("_")}
            - set(raw.inputs)
        )
        if extra:
            reasons.append(f"records carry keys it does not declare {extra}")
    first = raw.catalogs[0].manifest if raw.catalogs else None
    created, cat_created = raw.manifest_metadata.get("created_at"), (first or {}).get("created_at")
    if isinstance(created, int | float) and isinstance(cat_created, int | float):
        apart = abs(cat_created - created)
        if apart > _FOREIGN_CREATED_AT_S:
            reasons.append(f"was created {apart:.0f} s apart from catalog_0")
    return reasons


def _check_catalogs(report: TubReport, raw: RawTub) -> None:
    for catalog in raw.catalogs:
        if not catalog.exists:
            _add(report, None, f"catalog {catalog.name} listed in the manifest is missing", MANUAL)
            continue
        for line_no in catalog.blank_lines:
            _add(
                report,
                None,
                f"{catalog.name} line {line_no} is blank: donkeycar stops reading the catalog there",
                MANUAL,
            )
        if catalog.lines and not catalog.lines[-1].terminated or catalog.undecodable_lines:
            report.rewrite_catalogs.add(catalog.name)
            if catalog.lines[-1].record is not None and not catalog.lines[-1].terminated:
                _add(
                    report,
                    None,
                    f"{catalog.name} does not end with a newline: the next record written "
                    "would be glued to its last one",
                    REPAIR,
                )
        start = catalog.lines[0].position if catalog.lines else None
        meta = catalog.manifest
        if catalog.manifest_error or meta is None:
            _add(report, None, catalog.manifest_error or f"{catalog.name} has no catalog manifest", REPAIR)
            report.rewrite_catalogs.add(catalog.name)
        elif catalog.name in report.rewrite_catalogs:
            pass  # a cut last line also cuts its length: the rewrite renews the catalog manifest anyway
        elif len(meta.get("line_lengths") or []) != len(catalog.line_lengths) or (
            start is not None and meta.get("start_index") != start
        ):
            _add(
                report,
                None,
                f"{catalog.name}'s catalog manifest disagrees with the catalog "
                f"({len(meta.get('line_lengths') or [])} line lengths for {len(catalog.lines)} lines)",
                REPAIR,
            )
            report.rewrite_catalogs.add(catalog.name)


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value) if not isinstance(value, list | dict) else type(value).__name__
    return text if len(text) <= limit else text[:limit] + "..."


def _check_number(report: TubReport, index: int, record: dict[str, Any], key: str) -> None:
    value = record.get(key)
    if value is None:
        _add(report, index, f"{key} is missing", DELETE)
    elif isinstance(value, bool) or not isinstance(value, int | float):
        _add(report, index, f"{key} is not a number ({_short(value)})", DELETE)
    elif isinstance(value, int) and not -1 <= value <= 1:
        _add(report, index, f"{key} {str(value)[:40]} is outside [-1, 1]", DELETE)
    elif not math.isfinite(value):
        _add(report, index, f"{key} is {value}", DELETE)
    elif not -1.0 <= value <= 1.0:
        _add(report, index, f"{key} {value} is outside [-1, 1]", DELETE)


def _image_shape(tub: Path, name: str) -> tuple[tuple[int, ...] | None, str | None]:
    try:
        data = tubfiles.read_bytes(tub, f"{IMAGES}/{name}")
    except UnsafePath as exc:
        return None, f"image {exc}"
    except FileNotFoundError:
        return None, f"image {name} is missing"
    except OSError as exc:
        return None, f"image {name} cannot be read ({exc.strerror})"
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()  # decodes fully: a truncated or corrupt JPEG raises here
            return (image.height, image.width, len(image.getbands())), None
    except UnidentifiedImageError:
        return None, f"image {name} does not decode (not a JPEG or PNG)"
    except Exception as exc:  # PIL raises many kinds (OSError, SyntaxError, DecompressionBombError, ...)
        return None, f"image {name} does not decode ({type(exc).__name__}: {exc})"


def expected_shape(raw: RawTub, shape: tuple[int, ...] | None) -> tuple[tuple[int, ...], str]:
    """(H, W, C) every camera frame must have, and where that comes from: --shape, the tub, the camera."""
    if shape is not None:
        return tuple(shape), "--shape"
    meta = raw.metadata if isinstance(raw.metadata, dict) else {}
    values = [str(meta.get(key, "")) for key in SHAPE_KEYS]
    if all(v.isdigit() and 0 < int(v) < 100_000 for v in values):
        return tuple(int(v) for v in values), "the tub's metadata"
    camera = CameraParams()
    return (camera.img_h, camera.img_w, 3), CAMERA_DEFAULT


def _check_records(
    report: TubReport, raw: RawTub, shape: tuple[int, ...] | None, force: bool = False
) -> None:
    deleted = {i for i in raw.deleted_indexes if isinstance(i, int)}
    types = raw.input_types or dict(zip(INPUTS, ("image_array",), strict=False))
    image_keys = [k for k, t in types.items() if t in IMAGE_TYPES]
    sized_keys = {k for k, t in types.items() if t == "image_array"}  # gray16 depth maps have their own
    shapes: dict[str, dict[int, tuple[int, ...]]] = {k: {} for k in image_keys}
    previous_ms: tuple[int, int] | None = None
    mismatched_index: list[int] = []
    for line in raw.lines:
        i, record = line.position, line.record
        if i in deleted:
            continue
        if record is None:
            _add(report, i, f"{line.catalog} line {line.line_no}: {line.error}", DELETE)
            continue
        if record.get("_index") != i:
            mismatched_index.append(i)
        for key in (ANGLE_KEY, THROTTLE_KEY):
            if key in types or key in record:
                _check_number(report, i, record, key)
        stamp = record.get("_timestamp_ms")
        if not isinstance(stamp, int) or isinstance(stamp, bool):
            _add(report, i, f"_timestamp_ms is not an integer ({_short(stamp)})", DELETE)
        elif previous_ms is not None and stamp < previous_ms[1]:
            _add(
                report,
                i,
                f"timestamp {stamp} ms is earlier than record {previous_ms[0]}'s {previous_ms[1]} ms",
                DELETE,
            )
        else:
            previous_ms = (i, stamp)
        for key in image_keys:
            name = record.get(key)
            if not isinstance(name, str) or not name or "/" in name or "\\" in name:
                _add(report, i, f"{key} is not an image file name ({_short(name)})", DELETE)
                continue
            found, error = _image_shape(raw.path, name)
            if error:
                _add(report, i, error, DELETE)
            elif found is not None and key in sized_keys:
                shapes[key][i] = found
    if mismatched_index:
        _add(
            report,
            None,
            f"{len(mismatched_index)} records carry an _index other than their position "
            f"(first: record {mismatched_index[0]}); lines were lost or reordered",
            MANUAL,
        )
    expected, source = expected_shape(raw, shape)
    report.shape_source = source
    for key, by_index in shapes.items():
        if not by_index:
            continue
        seen = set(by_index.values())
        key_expected, key_source = expected, source
        if source == CAMERA_DEFAULT and len(seen) == 1:  # every frame agrees: the tub's own size, no vote
            key_expected, key_source = next(iter(seen)), "every frame of the tub"
        report.shapes[key] = key_expected
        report.shape_source = key_source
        wrong = {i: s for i, s in by_index.items() if s != key_expected}
        if wrong and len(wrong) == len(by_index) and not force:
            found_shapes = sorted(set(wrong.values()))
            _add(
                report,
                None,
                f"every {key} has shape {', '.join(map(str, found_shapes[:3]))} but {key_source} says {key_expected}; "
                "nothing deleted: give the right --shape, or --force to delete them all",
                MANUAL,
            )
            continue
        for i, found in wrong.items():
            _add(report, i, f"{key} has shape {found}, expected {key_expected} (from {key_source})", DELETE)


def _check_manifest_counts(report: TubReport, raw: RawTub) -> None:
    n = report.records
    if raw.current_index != n:
        _add(report, None, f"manifest says {raw.current_index} records but the catalogs hold {n}", REPAIR)
        report.repair_manifest = True
    bad = [i for i in raw.deleted_indexes if not isinstance(i, int) or isinstance(i, bool) or not 0 <= i < n]
    if bad:
        _add(report, None, f"deleted_indexes name records that do not exist: {bad[:10]}", REPAIR)
        report.repair_manifest = True
    sessions = raw.manifest_metadata.get("sessions") or {}
    if not isinstance(sessions, dict):
        sessions = {}
    listed = sessions.get("all_full_ids") or []
    if not isinstance(listed, list):
        listed = []
    deleted = {i for i in raw.deleted_indexes if isinstance(i, int)}  # the others are reported above
    seen = list(
        dict.fromkeys(
            str(line.record.get("_session_id"))
            for line in raw.lines
            if line.record and line.position not in deleted
        )
    )
    unlisted = [s for s in seen if s not in listed]
    if unlisted:
        _add(report, None, f"sessions {unlisted} are not listed in the manifest (writer not closed?)", REPAIR)
        report.repair_manifest = True
    elif listed and sessions.get("last_full_id") != listed[-1]:
        _add(report, None, "manifest's last session is not the last of its session list", REPAIR)
        report.repair_manifest = True


def check_tub(path: Path, shape: tuple[int, ...] | None = None, force: bool = False) -> TubReport:
    """Check one tub; ``shape`` (H, W, C) overrides the expected image shape (else the tub's, else the
    camera's); ``force`` lets a shape that every record misses plan their deletion."""
    report = TubReport(path=path)
    if not path.is_dir():
        _add(report, None, "does not exist" if not path.exists() else "not a directory", MANUAL)
        return report
    if not (path / MANIFEST).is_symlink() and not (path / MANIFEST).is_file():
        _add(report, None, f"no {MANIFEST}: not a donkeycar tub", MANUAL)
        return report
    raw = read_raw_tub(path)
    if raw.manifest_error:
        _add(report, None, f"{raw.manifest_error}; --fix rebuilds it from the catalogs", REPAIR)
        report.rebuild_manifest = True
    else:
        foreign = _foreign_reasons(raw)
        if foreign:
            _add(
                report,
                None,
                "manifest.json does not belong to these catalogs (copied from another tub?): "
                + "; ".join(foreign),
                REPAIR,
            )
            report.rebuild_manifest = True
            raw = read_raw_tub(path, trust_manifest=False)
    if report.rebuild_manifest and not raw.catalogs:
        report.problems[-1] = Problem(
            str(path), None, report.problems[-1].reason + " (no catalogs to rebuild from)", MANUAL
        )
    report.raw = raw
    report.records = len(raw.lines)
    valid_deleted = {i for i in raw.deleted_indexes if isinstance(i, int) and 0 <= i < report.records}
    report.deleted_before = len(valid_deleted) if not report.rebuild_manifest else 0
    if report.rebuild_manifest:
        raw.deleted_indexes = []  # another tub's deletions mean nothing here
        raw.inputs, raw.types = _inferred_inputs(
            raw, {}
        )  # what the catalogs hold, not what the manifest says
    _check_catalogs(report, raw)
    if not report.rebuild_manifest:
        _check_manifest_counts(report, raw)
    _check_records(report, raw, shape, force)
    for reason in dict.fromkeys(raw.unsafe):
        _add(report, None, f"{reason}: --fix leaves this tub untouched", MANUAL)
    if report.records == 0:
        _add(
            report,
            None,
            "empty tub: no records (donkeycar's Tub cannot open it read-only); "
            "leave it out of training or delete it",
            MANUAL,
        )
    elif report.records - report.deleted_before - len(report.delete) <= 0:
        _add(report, None, "no usable records left", MANUAL)
    report.problems.sort(key=lambda p: (p.index is not None, p.index or 0))
    return report


# ---------------------------------------------------------------------------------------------- fixing
class _Journal:
    """Every file --fix changes and its backup, appended to JOURNAL in the tub, so --undo can restore them."""

    def __init__(self, tub: Path) -> None:
        self.tub = tub

    def entries(self) -> list[dict[str, str]]:
        try:
            data = json.loads(tubfiles.read_bytes(self.tub, JOURNAL))
        except FileNotFoundError:
            return []
        except (OSError, ValueError, RecursionError) as exc:
            raise UserError(
                f"{self.tub}: {JOURNAL} is unreadable ({exc}); restore the .orig files by hand"
            ) from None
        if not isinstance(data, list) or not all(_journal_entry_ok(e) for e in data):
            raise UserError(f"{self.tub}: {JOURNAL} is not a pitlane fix journal; restore by hand")
        return data

    def backup(self, name: str) -> str:
        """Keep the original bytes of ``name`` as ``<name>.orig[.N]`` and record it before ``name`` changes."""
        entries = self.entries()
        kept = tubfiles.backup(self.tub, name)
        entries.append({"file": name, "backup": kept})
        tubfiles.write_bytes(self.tub, JOURNAL, (json.dumps(entries, indent=1) + "\n").encode())
        return kept


def _journal_entry_ok(entry: Any) -> bool:
    if not isinstance(entry, dict) or not isinstance(entry.get("file"), str):
        return False
    name, kept = entry["file"], entry.get("backup")
    allowed = name == MANIFEST or bool(_CATALOG_FILE_RE.match(name))
    return allowed and isinstance(kept, str) and bool(re.fullmatch(re.escape(name) + r"\.orig(\.\d+)?", kept))


def _rewrite_catalog(tub: Path, name: str, start_index: int, journal: _Journal) -> str:
    fixed = [line.decode("utf-8", errors="replace") for line in catalog_lines(tubfiles.read_bytes(tub, name))]
    backup = journal.backup(name)
    tubfiles.write_bytes(tub, name, "".join(line + "\n" for line in fixed).encode("utf-8"))
    manifest_name = name.removesuffix(".catalog") + ".catalog_manifest"
    created_at = time.time()
    if tubfiles.is_file(tub, manifest_name):
        with contextlib.suppress(ValueError, AttributeError, UnicodeDecodeError, RecursionError):
            first = tubfiles.read_bytes(tub, manifest_name).decode().split("\n", 1)[0]
            created_at = json.loads(first).get("created_at", created_at)
        journal.backup(manifest_name)
    meta = {
        "created_at": created_at,
        "line_lengths": [len(line) + 1 for line in fixed],
        "path": manifest_name,
        "start_index": start_index,
    }
    tubfiles.write_bytes(tub, manifest_name, (json.dumps(meta, sort_keys=True) + "\n").encode("utf-8"))
    return f"rewrote {name} and its catalog manifest with every line terminated (original kept as {backup})"


def _infer_type(key: str, value: Any) -> str:
    if key == CAMERA_KEY or (isinstance(value, str) and value.endswith((".jpg", ".png"))):
        return "gray16_array" if isinstance(value, str) and value.endswith(".png") else "image_array"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, float):
        return "float"
    if isinstance(value, int):
        return "int"
    if isinstance(value, list):
        return "list"
    return "str"


def _inferred_inputs(raw: RawTub, declared: dict[str, str]) -> tuple[list[str], list[str]]:
    """Inputs and types covering every key the records carry (declared types win, others are inferred)."""
    seen: dict[str, Any] = {}
    for line in raw.lines:
        for key, value in (line.record or {}).items():
            if not key.startswith("_"):
                seen.setdefault(key, value)
    order = [k for k in (*declared, *INPUTS) if k in seen or k in declared]
    inputs = list(dict.fromkeys(order + [k for k in seen if k not in order]))
    return inputs, [declared.get(k) or _infer_type(k, seen.get(k)) for k in inputs]


def _manifest_lines(report: TubReport) -> list[Any]:
    """Donkeycar's five manifest lines, made to agree with what the catalogs hold."""
    raw = report.raw
    assert raw is not None
    n = report.records
    inputs, types = (
        (raw.inputs, raw.types) if report.rebuild_manifest else _inferred_inputs(raw, raw.input_types)
    )
    dropped = {i for i in raw.deleted_indexes if isinstance(i, int)} | report.delete
    session_ids = list(
        dict.fromkeys(
            str(line.record["_session_id"])
            for line in raw.lines
            if line.record and "_session_id" in line.record and line.position not in dropped
        )
    )
    sessions = raw.manifest_metadata.get("sessions") if not report.rebuild_manifest else None
    listed = sessions.get("all_full_ids") if isinstance(sessions, dict) else None
    listed = [str(s) for s in listed] if isinstance(listed, list) else []
    all_ids = list(dict.fromkeys([*listed, *session_ids]))
    manifest_meta = dict(raw.manifest_metadata) if not report.rebuild_manifest else {}
    first = raw.catalogs[0].manifest if raw.catalogs and raw.catalogs[0].manifest else {}
    manifest_meta.setdefault("created_at", first.get("created_at", time.time()))
    if all_ids:
        suffix = all_ids[-1].rsplit("_", 1)[-1]
        manifest_meta["sessions"] = {
            "all_full_ids": all_ids,
            "last_full_id": all_ids[-1],
            "last_id": int(suffix) if suffix.isdigit() else len(all_ids) - 1,
        }
    deleted = sorted(
        {i for i in raw.deleted_indexes if isinstance(i, int) and not isinstance(i, bool) and 0 <= i < n}
        | report.delete
    )
    sizes = [len(c.lines) for c in raw.catalogs]
    max_len = sizes[0] if len(sizes) > 1 else max(raw.max_len, n, 1)
    catalog_meta = {
        "paths": [c.name for c in raw.catalogs],
        "current_index": n,
        "max_len": max_len,
        "deleted_indexes": deleted,
    }
    metadata = raw.metadata if not report.rebuild_manifest else {}
    return [inputs, types, metadata, manifest_meta, catalog_meta]


def fix_tub(report: TubReport) -> list[str]:
    """Carry out the repair plan of ``report``; returns what was done, one line per action.

    Every changed file keeps its original as ``<name>.orig[.N]``, listed in JOURNAL for ``undo_fix``;
    deletions only add to the manifest's ``deleted_indexes`` (donkeycar's own way), so they are undone too.
    """
    manual = [f"NOT fixed: {p.reason}" for p in report.problems if p.fix == MANUAL]
    raw = report.raw
    if raw is None or not report.records:
        return manual
    if raw.unsafe:
        return ["NOT fixed: the tub holds symlinks or names outside it; nothing was changed", *manual]
    actions: list[str] = []
    journal = _Journal(report.path)
    try:
        journal.entries()  # a journal that is a symlink or garbage stops the fix before anything changes
    except (UnsafePath, UserError) as exc:
        return [f"NOT fixed: {exc}; nothing was changed", *manual]
    try:
        for catalog in raw.catalogs:
            if catalog.name in report.rewrite_catalogs and catalog.exists:
                start = catalog.lines[0].position if catalog.lines else 0
                actions.append(_rewrite_catalog(report.path, catalog.name, start, journal))
        if report.rebuild_manifest or report.repair_manifest or report.delete:
            backup = journal.backup(MANIFEST)
            lines = _manifest_lines(report)
            text = "".join(json.dumps(v) + "\n" for v in lines)
            tubfiles.write_bytes(report.path, MANIFEST, text.encode("utf-8"))
            if report.rebuild_manifest or report.repair_manifest:
                what = "rebuilt manifest.json from the catalogs" if report.rebuild_manifest else "updated"
                actions.append(
                    f"{what}: {report.records} records in {len(lines[4]['paths'])} catalogs "
                    f"(original kept as {backup})"
                )
            if report.delete:
                actions.append(
                    f"marked {len(report.delete)} records deleted (manifest deleted_indexes): "
                    f"{_ranges(sorted(report.delete))} (original kept as {backup})"
                )
    except (UnsafePath, OSError) as exc:
        actions.append(f"NOT fixed: stopped at {exc}; `pitlane data check --undo` restores what changed")
    return actions + manual


def undo_fix(tub: Path) -> list[str]:
    """Put back every file ``fix_tub`` changed in ``tub`` (all fixes, newest first); UserError if none."""
    journal = _Journal(tub)
    if not tubfiles.is_file(tub, JOURNAL):
        raise UserError(f"{tub}: nothing to undo (no {JOURNAL}: --fix never changed this tub)")
    entries = journal.entries()
    done = []
    try:
        for entry in reversed(entries):
            tubfiles.write_bytes(tub, entry["file"], tubfiles.read_bytes(tub, entry["backup"]))
            done.append(entry)
        for entry in done:
            tubfiles.remove(tub, entry["backup"])
        tubfiles.remove(tub, JOURNAL)
    except (UnsafePath, OSError) as exc:
        raise UserError(f"{tub}: undo stopped at {exc}; the .orig files are still there") from None
    files = list(dict.fromkeys(e["file"] for e in entries))
    return [f"restored {', '.join(files)} from their .orig copies ({len(entries)} changes undone)"]


def _ranges(indexes: list[int], limit: int = 12) -> str:
    spans: list[str] = []
    for i in indexes:
        if spans and spans[-1].split("-")[-1] == str(i - 1):
            spans[-1] = f"{spans[-1].split('-')[0]}-{i}"
        else:
            spans.append(str(i))
    return ", ".join(spans[:limit]) + (f", ... ({len(spans) - limit} more)" if len(spans) > limit else "")


def format_report(report: TubReport, max_lines: int = 50) -> str:
    alive = report.records - report.deleted_before
    head = f"{report.path}: {alive} records ({report.deleted_before} already deleted), "
    if report.ok:
        return head + "OK"
    lines = [head + f"{len(report.problems)} problems"]
    lines += [
        f"  {'record ' + str(p.index) if p.index is not None else 'tub'}: {p.reason}"
        for p in report.problems[:max_lines]
    ]
    if len(report.problems) > max_lines:
        lines.append(f"  ... and {len(report.problems) - max_lines} more")
    return "\n".join(lines)
