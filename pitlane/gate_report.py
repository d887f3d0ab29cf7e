"""The gate report's file format, `pitlane.gate-report/1`: one typed reader and the verdict table.

`pitlane gate` writes `gate.json` (pitlane.evaluate.gate.GateResult); the bundle packer carries it and sums
it up in the bundle's config, `pitlane model sign` attests it, the release notes print it and the car can
check the attested one. They all read it here. This module imports no twin, OpenCV or TensorFlow code: the
car image has none of them.

A report is a JSON object:
  schema        "pitlane.gate-report/1"
  verdict       "pass" | "fail" (pass: at least one check, and every check passed)
  model         the model file's name;  model_digest: sha256 of the gated .tflite ("sha256:<64 hex>")
  checks        [{scene, metric, op (">=" | "<="), threshold, value, passed}, ...]
  reports       {run label: the run's report}, one per scene and run
  policy, wall_seconds, ...: kept as written, not interpreted here
Reports written before the schema key existed are read too when they have a verdict and a model digest
(their checks and reports default to none).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeGuard

from pitlane.errors import BadInput

SCHEMA = "pitlane.gate-report/1"
VERDICTS: tuple[str, ...] = ("pass", "fail")
OPS: tuple[str, ...] = (">=", "<=")
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")


@dataclass(frozen=True)
class Check:
    """One threshold on one scene (or run): `value op threshold` held or not."""

    scene: str
    metric: str  # the report field, e.g. laps_completed
    op: str  # ">=" or "<="
    threshold: float
    value: float
    passed: bool


@dataclass(frozen=True)
class GateReport:
    verdict: str  # "pass" | "fail"
    model_digest: str  # sha256:<64 hex> of the gated .tflite
    checks: tuple[Check, ...]
    runs: tuple[str, ...]  # labels of the per-run reports, sorted ("generated_track", "mini_monaco cw", ...)
    model: str | None = None  # the model file's name, as the gate saw it
    schema: str | None = SCHEMA  # None: a report written before the schema key

    @property
    def passed(self) -> bool:
        return self.verdict == "pass"

    def summary(self, report_bytes: bytes) -> dict[str, Any]:
        """What a model bundle's config says of its gate report (the report itself is a layer)."""
        return {
            "verdict": self.verdict,
            "model_digest": self.model_digest,
            "report_digest": "sha256:" + hashlib.sha256(report_bytes).hexdigest(),
            "checks_passed": sum(c.passed for c in self.checks),
            "checks": len(self.checks),
            "scenes": list(self.runs),
        }


def _number(value: Any) -> TypeGuard[int | float]:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _check(item: Any, where: str) -> Check:
    if not isinstance(item, dict):
        raise BadInput(f"{where} is not an object")
    scene, metric, op = item.get("scene"), item.get("metric"), item.get("op")
    threshold, value, passed = item.get("threshold"), item.get("value"), item.get("passed")
    if not (isinstance(scene, str) and isinstance(metric, str) and op in OPS):
        raise BadInput(f"{where} needs scene, metric and op ('>=' or '<=')")
    if not (_number(threshold) and _number(value) and isinstance(passed, bool)):
        raise BadInput(f"{where} needs a numeric threshold and value and a boolean passed")
    return Check(scene, metric, str(op), float(threshold), float(value), passed)


def parse(doc: Any, source: str = "gate report") -> GateReport:
    """The report in `doc` (a loaded JSON value), checked; BadInput names the first problem."""
    if not isinstance(doc, dict):
        raise BadInput(f"{source} is not a pitlane gate report (a JSON object)")
    schema = doc.get("schema")
    if schema is not None and schema != SCHEMA:
        raise BadInput(f"{source} has schema {schema!r}; this pitlane reads {SCHEMA}")
    if "verdict" not in doc or "model_digest" not in doc:
        raise BadInput(f"{source} is not a pitlane gate report (no verdict/model_digest)")
    verdict, digest = doc["verdict"], doc["model_digest"]
    if verdict not in VERDICTS:
        raise BadInput(f"{source}: verdict {verdict!r} is not one of {', '.join(VERDICTS)}")
    if not (isinstance(digest, str) and _DIGEST.fullmatch(digest)):
        raise BadInput(f"{source}: model_digest {digest!r} is not sha256:<64 lower-case hex digits>")
    raw_checks = doc.get("checks", [] if schema is None else None)
    if not isinstance(raw_checks, list):
        raise BadInput(f"{source}: checks must be a list")
    checks = tuple(_check(c, f"{source}: checks[{i}]") for i, c in enumerate(raw_checks))
    reports = doc.get("reports", {} if schema is None else None)
    if not isinstance(reports, dict):
        raise BadInput(f"{source}: reports must map each run to its report")
    if (checks or schema is not None) and (verdict == "pass") != (
        bool(checks) and all(c.passed for c in checks)
    ):
        raise BadInput(f"{source}: verdict {verdict!r} disagrees with its checks")
    model = doc.get("model")
    return GateReport(
        verdict,
        digest,
        checks,
        tuple(sorted(str(k) for k in reports)),
        model if isinstance(model, str) else None,
        schema,
    )


def loads(data: bytes | str, source: str = "gate report") -> GateReport:
    try:
        doc = json.loads(data)
    except ValueError as exc:
        raise BadInput(f"{source} is not JSON: {exc}") from None
    return parse(doc, source)


def read(path: str | Path) -> tuple[GateReport, bytes]:
    """(the report, its exact bytes) of a gate.json file."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise BadInput(f"gate report {path} does not exist") from None
    except OSError as exc:
        raise BadInput(f"gate report {path} is unreadable: {exc.strerror or exc}") from None
    return loads(data, f"gate report {path}"), data


class CheckLike(Protocol):
    """What the table needs of a check (pitlane.evaluate.gate.Check and `Check` above both are)."""

    @property
    def scene(self) -> str: ...
    @property
    def metric(self) -> str: ...
    @property
    def op(self) -> str: ...
    @property
    def threshold(self) -> float: ...
    @property
    def value(self) -> float: ...
    @property
    def passed(self) -> bool: ...


def _fmt(v: float) -> str:
    return f"{v:.0f}" if float(v).is_integer() else f"{v:.3f}"


def format_table(checks: Sequence[CheckLike], passed: bool | None = None) -> str:
    """The verdict table: one line per scene and threshold, then the overall verdict."""
    header = ("scene", "check", "threshold", "value", "verdict")
    rows = [
        (c.scene, f"{c.metric} {c.op}", _fmt(c.threshold), _fmt(c.value), "PASS" if c.passed else "FAIL")
        for c in checks
    ]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = [
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in [header, *rows]
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    ok = passed if passed is not None else bool(checks) and all(c.passed for c in checks)
    failed = sum(not c.passed for c in checks)
    scenes = len({c.scene for c in checks})
    lines.append(
        f"GATE {'PASS' if ok else 'FAIL'}: {len(checks) - failed}/{len(checks)} checks passed "
        f"on {scenes} scene(s)"
    )
    return "\n".join(lines)
