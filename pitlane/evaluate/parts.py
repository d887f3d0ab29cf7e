"""The gate in parts: each part (a scene and direction) driven on its own, say one Tekton TaskRun each of a
`matrix`, and the verdict aggregated after from the parts' summaries, the same as one serial gate run.

A part's summary (`pitlane gate --only PART --summary-out FILE`) is one compact JSON line, small enough to
be a Tekton result (4096 bytes for all of a TaskRun's results): the model, the digest of the policy it was
driven under, the part's run labels and how many of its checks failed, for a person reading the TaskRun, and the runs'
reports themselves, gzip'd and base64'd (about 60 bytes a run). `aggregate` takes every part's summary
and the policy, checks they are one gate of one model under that policy with each run exactly once, and
gives back the `GateResult` a serial `pitlane gate` gives: the same checks in the same order, the same
gate.json but for `wall_seconds` (there, the parts' sum).
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pitlane.errors import UserError
from pitlane.evaluate.gate import GatePolicy, GateResult, gate_result, report_label
from pitlane.evaluate.report import Report

PART_SCHEMA = "pitlane.gate-part/1"
RESULT_LIMIT = 4096  # [bytes] Tekton's default size of all of one TaskRun's results
# [bytes] what one summary may take as Tekton stores a result: 4096 less Tekton's own JSON around it
# (pipelines/task-gate-part.yaml refuses a part over it)
RESULT_BUDGET = 3968
WHOLE = "*"  # the part name of a summary of the whole gate (no --only)


def policy_digest(policy: GatePolicy) -> str:
    """sha256 of the policy's canonical JSON: parts driven under another policy do not aggregate."""
    text = json.dumps(policy.to_json(), sort_keys=True, separators=(",", ":"))
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def summary(result: GateResult, part: str | None) -> dict[str, Any]:
    """The part's summary: what `aggregate` needs of it, and its failed checks for a person."""
    reports = json.dumps([r.to_json() for r in result.reports], separators=(",", ":"))
    packed = base64.b64encode(gzip.compress(reports.encode(), mtime=0)).decode()
    return {
        "schema": PART_SCHEMA,
        "part": part or WHOLE,
        "model": result.model,
        "model_digest": result.model_digest,
        "policy_digest": policy_digest(result.policy),
        "runs": [report_label(r) for r in result.reports],
        "checks": len(result.checks),
        "checks_failed": sum(not c.passed for c in result.checks),
        "wall_seconds": round(result.wall_seconds, 3),
        "reports_gz": packed,
    }


def dumps(doc: dict[str, Any]) -> str:
    return json.dumps(doc, separators=(",", ":"))


def write_summary(doc: dict[str, Any], path: str | Path) -> int:
    """Write the summary (one line, no newline: a Tekton result is the file's bytes); its size as Tekton
    stores it (`result_size`)."""
    text = dumps(doc)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(text)
    return result_size(text)


def result_size(text: str) -> int:
    """A summary's bytes as Tekton stores it in a result: each `"` and `\\` escaped (what the gate-part Task counts)."""
    return len(text.encode()) + text.count('"') + text.count("\\")


def load_summary(source: str) -> dict[str, Any]:
    """A summary from its file, or from its JSON text itself (a Tekton array result expands to those)."""
    text, where = source, "summary (JSON text)"
    if not source.lstrip().startswith("{"):
        where = f"summary {source}"
        try:
            text = Path(source).read_text()
        except FileNotFoundError:
            raise UserError(f"{where} does not exist") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise UserError(f"{where} is unreadable: {exc}") from None
    try:
        doc = json.loads(text)
    except ValueError as exc:
        raise UserError(f"{where} is not JSON: {exc}") from None
    if not isinstance(doc, dict) or doc.get("schema") != PART_SCHEMA:
        raise UserError(
            f"{where} is not a gate part's summary ({PART_SCHEMA}, from `pitlane gate --summary-out`)"
        )
    missing = [k for k in ("part", "model", "model_digest", "policy_digest", "reports_gz") if k not in doc]
    if missing:
        raise UserError(f"{where} lacks {', '.join(missing)}")
    doc["_where"] = where
    return doc


def _reports(doc: dict[str, Any]) -> list[Report]:
    try:
        data = json.loads(gzip.decompress(base64.b64decode(doc["reports_gz"], validate=True)))
        return [Report.from_json(r) for r in data]
    except (ValueError, TypeError, OSError, EOFError) as exc:
        raise UserError(f"{doc['_where']}: its reports do not decode ({exc})") from None


def aggregate(docs: Sequence[dict[str, Any]], policy: GatePolicy) -> GateResult:
    """One gate's result from its parts' summaries (loaded by `load_summary`); UserError when they are not
    one model's runs under `policy`, each run exactly once."""
    if not docs:
        raise UserError("no summaries to aggregate")
    want = policy_digest(policy)
    for doc in docs:
        if doc["policy_digest"] != want:
            raise UserError(
                f"{doc['_where']} (part {doc['part']}) was driven under another policy; aggregate with the "
                "policy the parts were driven with"
            )
    models = sorted({(str(d["model"]), str(d["model_digest"])) for d in docs})
    if len(models) > 1:
        raise UserError(f"the summaries gate different models: {', '.join(f'{m} {d}' for m, d in models)}")
    runs = policy.run_params()
    several = len(runs) > 1
    expected = [(scene, p.run_name) for scene in policy.scenes for p in runs]
    found: dict[tuple[str, str], Report] = {}
    for doc in docs:
        for report in _reports(doc):
            key = (report.scene, report.run if several else runs[0].run_name)
            if key in found:
                raise UserError(f"run {report_label(report)!r} is in two summaries; aggregate each part once")
            if key not in expected:
                raise UserError(f"{doc['_where']}: run {report_label(report)!r} is not one of this gate's")
            found[key] = report
    missing = [f"{scene} {run}" for scene, run in expected if (scene, run) not in found]
    if missing:
        raise UserError(
            f"no summary holds run(s) {', '.join(missing)}; aggregate every part "
            f"(`pitlane gate parts`: {', '.join(policy.parts())})"
        )
    wall = sum(float(d.get("wall_seconds", 0.0)) for d in docs)
    model, digest = models[0]
    return gate_result(model, digest, policy, [found[k] for k in expected], wall)
