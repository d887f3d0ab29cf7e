"""Tub checker: find everything that would make a tub lie to training, and repair it the donkeycar way.

``check_tub`` reads a tub defensively (``tub.read_raw_tub``) and returns a ``TubReport``: one ``Problem``
per bad record or tub-level inconsistency, plus the repair plan. ``fix_tub`` carries the plan out: it
marks bad records deleted through donkeycar's ``Tub.delete_records`` and, where a file itself would
make donkeycar misread or crash, rewrites it after keeping the original bytes next to it (``*.orig``).
It never removes a file.
"""

from __future__ import annotations

import contextlib
import json
import math
import shutil
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

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

DELETE, REPAIR, MANUAL = "delete", "repair", "manual"  # what --fix does about a problem
_FOREIGN_CREATED_AT_S = 60.0  # catalog_0 is created within ms of its manifest; further apart = not its own


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


def _check_number(report: TubReport, index: int, record: dict[str, Any], key: str) -> None:
    value = record.get(key)
    if value is None:
        _add(report, index, f"{key} is missing", DELETE)
    elif isinstance(value, bool) or not isinstance(value, int | float):
        _add(report, index, f"{key} is not a number ({value!r})", DELETE)
    elif not math.isfinite(value):
        _add(report, index, f"{key} is {value}", DELETE)
    elif not -1.0 <= value <= 1.0:
        _add(report, index, f"{key} {value} is outside [-1, 1]", DELETE)


def _image_shape(path: Path) -> tuple[tuple[int, ...] | None, str | None]:
    if not path.is_file():
        return None, f"image {path.name} is missing"
    try:
        with Image.open(path) as image:
            image.load()  # decodes fully: a truncated or corrupt JPEG raises here
            return (image.height, image.width, len(image.getbands())), None
    except (OSError, SyntaxError, ValueError) as exc:
        return None, f"image {path.name} does not decode ({exc})"


def _check_records(report: TubReport, raw: RawTub, expected_shape: tuple[int, ...] | None) -> None:
    deleted = {i for i in raw.deleted_indexes if isinstance(i, int)}
    types = raw.input_types or dict(zip(INPUTS, ("image_array",), strict=False))
    image_keys = [k for k, t in types.items() if t in IMAGE_TYPES]
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
            _add(report, i, f"_timestamp_ms is not an integer ({stamp!r})", DELETE)
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
                _add(report, i, f"{key} is not an image file name ({name!r})", DELETE)
                continue
            shape, error = _image_shape(raw.path / IMAGES / name)
            if error:
                _add(report, i, error, DELETE)
            elif shape is not None:
                shapes[key][i] = shape
    if mismatched_index:
        _add(
            report,
            None,
            f"{len(mismatched_index)} records carry an _index other than their position "
            f"(first: record {mismatched_index[0]}); lines were lost or reordered",
            MANUAL,
        )
    for key, by_index in shapes.items():
        if not by_index:
            continue
        expected = expected_shape or Counter(by_index.values()).most_common(1)[0][0]
        report.shapes[key] = expected
        for i, shape in by_index.items():
            if shape != expected:
                _add(report, i, f"{key} has shape {shape}, expected {expected}", DELETE)


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
    listed = sessions.get("all_full_ids") or []
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


def check_tub(path: Path, shape: tuple[int, ...] | None = None) -> TubReport:
    """Check one tub; ``shape`` (H, W, C) overrides the expected image shape (else the most common one)."""
    report = TubReport(path=path)
    if not path.is_dir():
        _add(report, None, "does not exist" if not path.exists() else "not a directory", MANUAL)
        return report
    if not (path / MANIFEST).is_file():
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
    _check_records(report, raw, shape)
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
def _backup(path: Path) -> Path:
    """Copy ``path`` to a free ``<name>.orig[.N]`` so the original bytes are never lost."""
    target, n = path.with_name(path.name + ".orig"), 1
    while target.exists():
        target, n = path.with_name(f"{path.name}.orig.{n}"), n + 1
    shutil.copy2(path, target)
    return target


def _rewrite_catalog(tub: Path, name: str, start_index: int) -> str:
    path = tub / name
    fixed = [line.decode("utf-8", errors="replace") for line in catalog_lines(path.read_bytes())]
    backup = _backup(path)
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        f.writelines(line + "\n" for line in fixed)
    manifest_path = path.with_suffix(".catalog_manifest")
    created_at = time.time()
    if manifest_path.exists():
        with contextlib.suppress(ValueError, AttributeError, UnicodeDecodeError):
            created_at = json.loads(manifest_path.read_text().split("\n", 1)[0]).get("created_at", created_at)
        _backup(manifest_path)
    meta = {
        "created_at": created_at,
        "line_lengths": [len(line) + 1 for line in fixed],
        "path": manifest_path.name,
        "start_index": start_index,
    }
    manifest_path.write_text(json.dumps(meta, allow_nan=False, sort_keys=True) + "\n", encoding="utf-8")
    return (
        f"rewrote {name} and its catalog manifest with every line terminated (original kept as {backup.name})"
    )


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
    dropped = set(raw.deleted_indexes) | report.delete
    session_ids = list(
        dict.fromkeys(
            str(line.record["_session_id"])
            for line in raw.lines
            if line.record and "_session_id" in line.record and line.position not in dropped
        )
    )
    listed = (
        []
        if report.rebuild_manifest
        else (raw.manifest_metadata.get("sessions") or {}).get("all_full_ids", [])
    )
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
    """Carry out the repair plan of ``report``; returns what was done, one line per action."""
    from donkeycar.parts.tub_v2 import Tub  # heavy import (prints a banner), only when fixing

    actions: list[str] = []
    manual = [f"NOT fixed: {p.reason}" for p in report.problems if p.fix == MANUAL]
    raw = report.raw
    if raw is None or not report.records:
        return manual
    for catalog in raw.catalogs:
        if catalog.name in report.rewrite_catalogs and catalog.exists:
            start = catalog.lines[0].position if catalog.lines else 0
            actions.append(_rewrite_catalog(report.path, catalog.name, start))
    if report.rebuild_manifest or report.repair_manifest:
        manifest = report.path / MANIFEST
        backup = _backup(manifest)
        lines = _manifest_lines(report)
        manifest.write_text("".join(json.dumps(v) + "\n" for v in lines), encoding="utf-8")
        what = (
            "rebuilt manifest.json from the catalogs" if report.rebuild_manifest else "updated manifest.json"
        )
        actions.append(
            f"{what}: {report.records} records in {len(lines[4]['paths'])} catalogs "
            f"(original kept as {backup.name})"
        )
    if report.delete:
        tub = Tub(str(report.path))
        try:
            tub.delete_records(sorted(report.delete))
        finally:
            tub.close()
        actions.append(
            f"marked {len(report.delete)} records deleted (manifest deleted_indexes): "
            f"{_ranges(sorted(report.delete))}"
        )
    return actions + manual


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
