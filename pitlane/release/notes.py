"""The words of a release: the GitHub release's title and body and the GitOps pull request's, written
from what the pipeline's tasks left in the `source` workspace (pure; no network).

Workspace layout the Tasks share: release/plan.json (fetch-source), gate/gate.json and gate/verdict.txt
(gate-model), images/<target>.ref (build-*), release/pull-request.txt (gitops-bump).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pitlane import gate_report
from pitlane.errors import UserError

PLAN = "release/plan.json"
GATE = "gate/gate.json"
VERDICT = "gate/verdict.txt"
PULL_REQUEST = "release/pull-request.txt"
IMAGES = "images"


@dataclass(frozen=True)
class Text:
    title: str
    body: str
    draft: bool  # a failed release stays a draft: visible to maintainers, never "latest"


def parse_statuses(text: str) -> dict[str, str]:
    """`fetch-source=Succeeded tests=Failed ...` -> {'fetch-source': 'Succeeded', 'tests': 'Failed'}."""
    pairs = (item.split("=", 1) for item in text.split() if "=" in item)
    return {k: v for k, v in pairs}


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def images(workspace: Path) -> dict[str, str]:
    """target -> REPO@sha256:... of the images this run built and pushed."""
    folder = workspace / IMAGES
    return {p.stem: p.read_text().strip() for p in sorted(folder.glob("*.ref"))} if folder.is_dir() else {}


def gate_lines(workspace: Path) -> list[str]:
    """The gate's verdict table: as the gate printed it (verdict.txt), else drawn from gate.json."""
    verdict = workspace / VERDICT
    if verdict.is_file() and verdict.read_text().strip():
        return ["```", verdict.read_text().rstrip(), "```"]
    if not (workspace / GATE).is_file():
        return ["The gate did not run."]
    try:
        report, _ = gate_report.read(workspace / GATE)
    except UserError as exc:
        return [f"The gate's report is unreadable: {exc}"]
    return ["```", gate_report.format_table(report.checks, report.passed), "```"]


def release_text(version: str, status: str, statuses: dict[str, str], workspace: Path) -> Text:
    """Title and body of the GitHub release for `version` after a pipeline that ended in `status`."""
    plan = _read_json(workspace / PLAN) or {}
    failed = [t for t, s in statuses.items() if s == "Failed"]
    skipped = [t for t, s in statuses.items() if s == "None"]
    lines: list[str] = []
    if status == "Failed":
        why = f"task {', '.join(failed)} failed" if failed else "the pipeline failed"
        if "gate-model" in failed:
            why = "the candidate model failed the gate"
        title = f"{version} (not released: {why})"
        lines += [
            f"**Not released**: {why}. Nothing after the failing task ran: "
            "no signature, no image pushed, no GitOps change unless listed below.",
            "",
        ]
    else:
        title = version
        lines += [f"Release {version}.", ""]
    if plan:
        lines += [f"- Model: `{plan.get('model', '?')}`"]
        lines += [f"- Since: {plan.get('previous_tag') or 'the first release'}"]
        lines += [f"- Images rebuilt: {'yes' if plan.get('code_changed') else 'no (model-only release)'}"]
    for target, ref in images(workspace).items():
        lines.append(f"- Image {target}: `{ref}`")
    pr = workspace / PULL_REQUEST
    if pr.is_file():
        lines.append(f"- GitOps pull request: {pr.read_text().strip()}")
    lines += ["", "## Gate", *gate_lines(workspace), "", "## Tasks"]
    lines += [f"- {t}: {'Skipped' if s == 'None' else s}" for t, s in statuses.items()]
    if skipped and status != "Failed":
        lines.append("")
        lines.append("Skipped tasks had nothing to do (e.g. no image rebuild in a model-only release).")
    commits = plan.get("commits") or []
    if commits:
        lines += ["", "## Changes", *[f"- {c}" for c in commits[:50]]]
    return Text(title, "\n".join(lines) + "\n", draft=status == "Failed")


def pull_request_text(version: str, workspace: Path) -> Text:
    plan = _read_json(workspace / PLAN) or {}
    lines = [f"Pins release {version} for Argo CD.", "", f"- Model: `{plan.get('model', '?')}`"]
    built = images(workspace)
    lines += [f"- Image {t}: `{r}`" for t, r in built.items()] or ["- Images: unchanged (model-only release)"]
    lines += ["", "Opened by the pitlane-release pipeline; merge to roll the fleet forward."]
    return Text(f"Release {version}: pin model and image digests", "\n".join(lines) + "\n", draft=False)
