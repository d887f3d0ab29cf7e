"""Donkeycar Tub v2 layout: the keys pitlane records, and a defensive raw reader for the checker.

Writing always goes through donkeycar's own ``Tub`` so every community tool reads our tubs unchanged.
Reading for *checks* cannot use donkeycar's reader: it crashes on an empty tub (mmap of an empty
catalog), silently skips unparsable lines and stops at a blank one. ``read_raw_tub`` reads the same files
byte by byte and never raises on bad content, so the checker can say what is wrong and where.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pitlane.data import tubfiles
from pitlane.data.tubfiles import UnsafePath

CAMERA_KEY = "cam/image_array"
ANGLE_KEY = "user/angle"
THROTTLE_KEY = "user/throttle"
MODE_KEY = "user/mode"
# The twin's ground truth under the names donkeycar's SIM_RECORD_LOCATION uses (templates/complete.py).
POSITION_KEYS = ("pos/pos_x", "pos/pos_y", "pos/pos_z", "pos/speed", "pos/cte")

INPUTS: tuple[str, ...] = (CAMERA_KEY, ANGLE_KEY, THROTTLE_KEY, MODE_KEY, *POSITION_KEYS)
TYPES: tuple[str, ...] = ("image_array", "float", "float", "str", *("float",) * len(POSITION_KEYS))
IMAGE_TYPES = frozenset({"image_array", "gray16_array"})
MANIFEST = "manifest.json"
IMAGES = "images"
_CATALOG_RE = re.compile(r"^catalog_(\d+)\.catalog$")


def is_tub(path: Path) -> bool:
    return (path / MANIFEST).is_file()


def find_tubs(paths: list[Path]) -> list[Path]:
    """Expand each argument: a tub itself, else the tubs directly inside it, else itself (to be reported).

    A symlink inside a folder of tubs is not followed (a downloaded folder must not lead to the user's tubs).
    """
    found: list[Path] = []
    for path in paths:
        if not path.exists():
            found.append(path)
            continue
        inner = (
            sorted(p for p in path.iterdir() if p.is_dir() and not p.is_symlink() and is_tub(p))
            if path.is_dir()
            else []
        )
        if is_tub(path) or not inner:
            found.append(path)
        else:
            found.extend(inner)
    return found


@dataclass(frozen=True)
class CatalogLine:
    """One line of a catalog; ``position`` is the global index donkeycar's ManifestIterator gives it."""

    position: int
    catalog: str
    line_no: int  # 1-based line within the catalog file
    record: dict[str, Any] | None  # None when the line does not parse as a JSON object
    error: str | None
    terminated: bool  # ends with a newline (a last line cut by a crash does not)


@dataclass
class RawCatalog:
    name: str
    exists: bool
    lines: list[CatalogLine] = field(default_factory=list)
    line_lengths: list[int] = field(default_factory=list)  # actual, in characters as donkeycar counts them
    blank_lines: list[int] = field(default_factory=list)  # 1-based; donkeycar stops reading at the first
    undecodable_lines: list[int] = field(default_factory=list)  # 1-based; donkeycar's reader raises on them
    manifest: dict[str, Any] | None = None  # catalog_N.catalog_manifest contents
    manifest_error: str | None = None


@dataclass
class RawTub:
    path: Path
    manifest_error: str | None = None
    inputs: list[str] = field(default_factory=list)
    types: list[str] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)
    manifest_metadata: dict[str, Any] = field(default_factory=dict)
    catalog_paths: list[str] = field(default_factory=list)
    current_index: int = 0
    max_len: int = 1000
    deleted_indexes: list[Any] = field(default_factory=list)
    catalogs: list[RawCatalog] = field(default_factory=list)
    unlisted_catalogs: list[str] = field(default_factory=list)
    unsafe: list[str] = field(default_factory=list)  # symlinks and names leaving the tub: never touched

    @property
    def lines(self) -> list[CatalogLine]:
        return [line for catalog in self.catalogs for line in catalog.lines]

    @property
    def input_types(self) -> dict[str, str]:
        return dict(zip(self.inputs, self.types, strict=False))


def _parse_json_line(text: str) -> tuple[Any, str | None]:
    try:
        return json.loads(text), None
    except (ValueError, UnicodeDecodeError) as exc:  # JSONDecodeError, or an int of > 4300 digits
        return None, f"not JSON ({exc.msg if isinstance(exc, json.JSONDecodeError) else exc})"
    except RecursionError:
        return None, "JSON nested too deeply to read"


def _is_name_list(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def _read_manifest(raw: RawTub) -> None:
    try:
        text = tubfiles.read_bytes(raw.path, MANIFEST).decode("utf-8")
    except UnsafePath as exc:
        raw.unsafe.append(str(exc))
        raw.manifest_error = f"cannot read {MANIFEST}: {exc}"
        return
    except (OSError, UnicodeDecodeError) as exc:
        raw.manifest_error = f"cannot read {MANIFEST}: {exc}"
        return
    lines = text.split("\n")
    names = ("inputs", "types", "user metadata", "manifest metadata", "catalog metadata")
    values: list[Any] = []
    for i, name in enumerate(names):
        if i >= len(lines) or not lines[i].strip():
            raw.manifest_error = f"{MANIFEST} line {i + 1} ({name}) is missing"
            return
        value, error = _parse_json_line(lines[i])
        if error:
            raw.manifest_error = f"{MANIFEST} line {i + 1} ({name}) is {error}"
            return
        values.append(value)
    inputs, types, metadata, manifest_metadata, catalog_meta = values
    shapes_ok = (
        _is_name_list(inputs)
        and _is_name_list(types)
        and isinstance(metadata, dict)
        and isinstance(manifest_metadata, dict)
        and isinstance(catalog_meta, dict)
    )
    keys_ok = shapes_ok and {"paths", "current_index", "max_len", "deleted_indexes"} <= set(catalog_meta)
    if not keys_ok:
        raw.manifest_error = f"{MANIFEST} does not have donkeycar's Tub v2 structure"
        return
    wrong = [
        key
        for key, kind in (
            ("paths", list),
            ("current_index", int),
            ("max_len", int),
            ("deleted_indexes", list),
        )
        if not isinstance(catalog_meta[key], kind) or isinstance(catalog_meta[key], bool)
    ]
    if wrong:
        raw.manifest_error = f"{MANIFEST} catalog metadata has the wrong type for {', '.join(wrong)}"
        return
    outside = [p for p in catalog_meta["paths"] if not isinstance(p, str) or not _CATALOG_RE.match(p)]
    if outside:
        raw.manifest_error = (
            f"{MANIFEST} lists catalog {outside[0]!r}, which is not a catalog_N.catalog file of this tub"
        )
        return
    raw.inputs, raw.types, raw.metadata, raw.manifest_metadata = inputs, types, metadata, manifest_metadata
    raw.catalog_paths = list(catalog_meta["paths"])
    raw.current_index = int(catalog_meta["current_index"])
    raw.max_len = int(catalog_meta["max_len"])
    raw.deleted_indexes = list(catalog_meta["deleted_indexes"])


def catalog_lines(data: bytes) -> list[bytes]:
    """A catalog's bytes cut into its lines (no newlines kept); a last line without a newline is one too."""
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    return lines


def _read_catalog(raw: RawTub, name: str, position: int) -> RawCatalog:
    catalog = RawCatalog(name=name, exists=tubfiles.is_file(raw.path, name))
    manifest_name = name.removesuffix(".catalog") + ".catalog_manifest"
    try:
        first = tubfiles.read_bytes(raw.path, manifest_name).decode("utf-8").split("\n", 1)[0]
        value, error = _parse_json_line(first)
        if error or not isinstance(value, dict):
            catalog.manifest_error = f"{manifest_name} is {error or 'not a JSON object'}"
        else:
            catalog.manifest = value
    except UnsafePath as exc:
        raw.unsafe.append(str(exc))
        catalog.manifest_error = f"cannot read {manifest_name}: {exc}"
    except (OSError, UnicodeDecodeError) as exc:
        catalog.manifest_error = f"cannot read {manifest_name}: {exc}"
    try:
        data = tubfiles.read_bytes(raw.path, name)
    except UnsafePath as exc:
        raw.unsafe.append(str(exc))
        catalog.exists = False
        return catalog
    except OSError:
        catalog.exists = False
        return catalog
    chunks = catalog_lines(data)
    for i, chunk in enumerate(chunks):
        terminated = i < len(chunks) - 1 or data.endswith(b"\n")
        try:
            text = chunk.decode("utf-8")
            value, error = _parse_json_line(text)
        except UnicodeDecodeError:
            text = chunk.decode("utf-8", errors="replace")
            value, error = None, "not UTF-8 (donkeycar's reader crashes on it)"
            catalog.undecodable_lines.append(i + 1)
        catalog.line_lengths.append(len(text) + (1 if terminated else 0))
        if not text.strip():
            catalog.blank_lines.append(i + 1)
        if error is None and not isinstance(value, dict):
            value, error = None, "not a JSON object"
        if error and not terminated:
            error = f"truncated record ({error})"
        catalog.lines.append(CatalogLine(position + i, name, i + 1, value, error, terminated))
    return catalog


def read_raw_tub(path: Path, trust_manifest: bool = True) -> RawTub:
    """Read manifest and catalogs of a tub without trusting any of it; never raises on bad content.

    Catalogs are those the manifest lists, or (``trust_manifest=False`` or no readable manifest) those on disk.
    """
    raw = RawTub(path=path)
    _read_manifest(raw)
    if tubfiles.is_symlink(path, IMAGES):
        raw.unsafe.append(f"{IMAGES} is a symlink; pitlane does not follow it")
    on_disk = sorted(
        (p.name for p in path.glob("catalog_*.catalog") if _CATALOG_RE.match(p.name)),
        key=lambda name: int(_CATALOG_RE.match(name).group(1)),  # type: ignore[union-attr]
    )
    names = raw.catalog_paths if raw.manifest_error is None and trust_manifest else on_disk
    position = 0
    for name in names:
        catalog = _read_catalog(raw, name, position)
        raw.catalogs.append(catalog)
        position += len(catalog.lines)
    raw.unlisted_catalogs = [name for name in on_disk if name not in names]
    return raw


def tub_metadata(**values: object) -> list[str]:
    """donkeycar's metadata format: a list of ``key:value`` strings (values must not contain ':')."""
    return [f"{key}:{str(value).replace(':', '_')}" for key, value in values.items()]


NEW_SESSION = "--new-session--"  # queue marker: close the tub and reopen it, starting a donkeycar session


def write_tub_from_queue(
    out: str, metadata: list[str], records, errors, log_level: int | None = None
) -> None:
    """Writer loop for a child process or thread: donkeycar's Tub, records in order, until ``None``.

    ``log_level`` set means a spawned child: it quiets donkeycar's logging and import banner there.
    """
    import contextlib
    import io
    import logging

    if log_level is not None:
        logging.getLogger("donkeycar").setLevel(log_level)
    with contextlib.redirect_stdout(io.StringIO()) if log_level is not None else contextlib.nullcontext():
        from donkeycar.parts.tub_v2 import Tub

    tub = None
    try:
        tub = Tub(out, inputs=list(INPUTS), types=list(TYPES), metadata=metadata)
        while (record := records.get()) is not None:
            if isinstance(record, str) and record == NEW_SESSION:
                tub.close()
                tub = None
                tub = Tub(out, inputs=list(INPUTS), types=list(TYPES), metadata=metadata)
            else:
                tub.write_record(record)
    except BaseException as exc:  # noqa: BLE001 - reported to the driving process
        errors.put(f"writing the tub failed: {type(exc).__name__}: {exc}")
    finally:
        if tub is not None:
            tub.close()
