"""Tekton objects as pitlane reads them: load pipelines/*.yaml, substitute `$(...)` variables, check that
every param, result and workspace a Task or Pipeline references is declared.

Pure functions over the YAML as written, shared by the local runner, the cluster client and the tests.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from pitlane.errors import UserError

PIPELINE = "pitlane-release"
TEMPLATE = "pitlane-release"  # the TriggerTemplate that creates the PipelineRun
# Tekton's own variables only; a shell's `$(command)` in a script is left alone.
VARIABLE = re.compile(r"\$\(((?:params|results|workspaces|tasks|context|tt|steps)(?:\.|\[)[^()\s]*)\)")


@dataclass(frozen=True)
class Objects:
    """Every Kubernetes object in a pipelines/ folder, by kind and name."""

    docs: tuple[dict[str, Any], ...]

    def get(self, kind: str, name: str) -> dict[str, Any]:
        for doc in self.docs:
            if doc.get("kind") == kind and doc.get("metadata", {}).get("name") == name:
                return doc
        raise UserError(f"pipelines: no {kind} named {name!r}")

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        return [d for d in self.docs if d.get("kind") == kind]


def load(folder: Path) -> Objects:
    """All objects of pipelines/*.yaml, each with `metadata.name`; a broken file is one clear error."""
    folder = Path(folder)
    files = sorted(folder.glob("*.yaml"))
    if not files:
        raise UserError(f"no Tekton YAML in {folder}/ (expected pipelines/*.yaml)")
    docs = []
    for path in files:
        try:
            loaded = [d for d in yaml.safe_load_all(path.read_text()) if d]
        except yaml.YAMLError as exc:
            raise UserError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
        for doc in loaded:
            if not isinstance(doc, dict) or "kind" not in doc or not doc.get("metadata", {}).get("name"):
                raise UserError(f"{path}: every document needs kind and metadata.name")
            docs.append(doc)
    return Objects(tuple(docs))


def variable_name(expr: str) -> tuple[str, ...]:
    """`params.x` / `params['x']` / `tasks.t.results.r` -> ('params', 'x') / ('tasks', 't', 'results', 'r')."""
    expr = re.sub(r"\[['\"]([^'\"]+)['\"]\]", r".\1", expr)
    return tuple(expr.split("."))


def substitute(text: str, lookup: Callable[[tuple[str, ...]], str | None], where: str) -> str:
    """Replace each Tekton variable by `lookup(name)`; one it cannot resolve is an error naming `where`."""

    def repl(m: re.Match[str]) -> str:
        value = lookup(variable_name(m.group(1)))
        if value is None:
            raise UserError(f"{where}: unknown variable $({m.group(1)})")
        return value

    return VARIABLE.sub(repl, text)


def variables(node: Any) -> Iterable[tuple[str, ...]]:
    """Every Tekton variable used anywhere in a (nested) YAML node."""
    if isinstance(node, str):
        for m in VARIABLE.finditer(node):
            yield variable_name(m.group(1))
    elif isinstance(node, dict):
        for v in node.values():
            yield from variables(v)
    elif isinstance(node, list):
        for v in node:
            yield from variables(v)


def _names(items: list[dict[str, Any]] | None) -> set[str]:
    return {i["name"] for i in items or []}


def check_task(task: dict[str, Any]) -> list[str]:
    """Problems with the variables of one Task: a param, result or workspace it uses but does not declare."""
    name = task["metadata"]["name"]
    spec = task.get("spec", {})
    params, results, workspaces = (
        _names(spec.get("params")),
        _names(spec.get("results")),
        _names(spec.get("workspaces")),
    )
    problems = []
    for var in variables(spec.get("steps", [])) if spec.get("steps") else ():
        kind = var[0]
        if kind == "params" and var[1] not in params:
            problems.append(f"Task {name}: $(params.{var[1]}) is not a declared param")
        elif kind == "results" and var[1] not in results:
            problems.append(f"Task {name}: $(results.{var[1]}...) is not a declared result")
        elif kind == "workspaces" and var[1] not in workspaces:
            problems.append(f"Task {name}: $(workspaces.{var[1]}...) is not a declared workspace")
        elif kind in ("tasks", "tt"):
            problems.append(f"Task {name}: $({'.'.join(var)}) belongs in a Pipeline, not a Task")
    if not spec.get("steps"):
        problems.append(f"Task {name}: no steps")
    return problems


def check_pipeline(pipeline: dict[str, Any], objects: Objects) -> list[str]:
    """Problems with a Pipeline: tasks, params, results and workspaces it references that do not exist."""
    name = pipeline["metadata"]["name"]
    spec = pipeline.get("spec", {})
    params, workspaces = _names(spec.get("params")), _names(spec.get("workspaces"))
    dag = spec.get("tasks", [])
    final = spec.get("finally", [])
    tasks_by_name = {t["name"]: t for t in dag + final}
    problems = []
    for pt in dag + final:
        where = f"Pipeline {name} task {pt['name']}"
        try:
            task = objects.get("Task", pt.get("taskRef", {}).get("name", ""))
        except UserError:
            problems.append(f"{where}: taskRef {pt.get('taskRef')} is not a Task in pipelines/")
            continue
        tspec = task.get("spec", {})
        declared = {p["name"]: p for p in tspec.get("params", [])}
        given = _names(pt.get("params"))
        problems += [
            f"{where}: param {p} is not a param of Task {task['metadata']['name']}"
            for p in given - set(declared)
        ]
        problems += [
            f"{where}: Task {task['metadata']['name']} needs param {p} (no default)"
            for p, d in declared.items()
            if p not in given and "default" not in d
        ]
        task_ws = {w["name"]: w for w in tspec.get("workspaces", [])}
        bound = {w["name"]: w.get("workspace") for w in pt.get("workspaces", [])}
        problems += [
            f"{where}: workspace {w} is not a workspace of the Task" for w in set(bound) - set(task_ws)
        ]
        problems += [
            f"{where}: workspace {p} is not a Pipeline workspace"
            for p in bound.values()
            if p not in workspaces
        ]
        problems += [
            f"{where}: Task workspace {w} is not bound"
            for w, d in task_ws.items()
            if w not in bound and not d.get("optional")
        ]
        for after in pt.get("runAfter", []):
            if after not in tasks_by_name or after not in {t["name"] for t in dag}:
                problems.append(f"{where}: runAfter {after} is not a task of the Pipeline")
        for var in variables({k: v for k, v in pt.items() if k in ("params", "when")}):
            if var[0] == "params" and var[1] not in params:
                problems.append(f"{where}: $(params.{var[1]}) is not a Pipeline param")
            elif var[0] == "tasks" and len(var) >= 2 and var[1] != "status":
                ref = tasks_by_name.get(var[1])
                if ref is None:
                    problems.append(f"{where}: $({'.'.join(var)}) names no task")
                elif len(var) >= 4 and var[2] == "results":
                    ref_task = objects.get("Task", ref["taskRef"]["name"])
                    if var[3] not in _names(ref_task["spec"].get("results")):
                        problems.append(
                            f"{where}: $({'.'.join(var)}): Task {ref_task['metadata']['name']} has no result {var[3]}"
                        )
                elif not (len(var) == 3 and var[2] == "status" and pt in final):
                    problems.append(f"{where}: $({'.'.join(var)}) is not a task result or a finally status")
            elif var[0] not in ("params", "tasks", "context"):
                problems.append(f"{where}: $({'.'.join(var)}) cannot be used in a Pipeline")
    for result in spec.get("results", []):
        for var in variables(result.get("value", "")):
            if var[0] != "tasks" or var[1] not in tasks_by_name:
                problems.append(
                    f"Pipeline {name} result {result['name']}: $({'.'.join(var)}) names no task result"
                )
    return problems


def check_all(objects: Objects) -> list[str]:
    """Every reference problem in a pipelines/ folder (an empty list when all is declared)."""
    problems = []
    for task in objects.of_kind("Task"):
        problems += check_task(task)
    for pipeline in objects.of_kind("Pipeline"):
        problems += check_pipeline(pipeline, objects)
    return problems


def pipelinerun(objects: Objects, tt_params: dict[str, str], template: str = TEMPLATE) -> dict[str, Any]:
    """The PipelineRun the TriggerTemplate creates for these params (a tag push does the same).

    Used by `pitlane release start` (sent to the cluster) and `release run --local` (its workspace
    bindings say which workspaces are Secrets).
    """
    tt = objects.get("TriggerTemplate", template)
    declared = {p["name"]: p for p in tt["spec"].get("params", [])}
    unknown = sorted(set(tt_params) - set(declared))
    if unknown:
        raise UserError(f"TriggerTemplate {template}: unknown param(s) {', '.join(unknown)}")
    values = {n: tt_params.get(n, d.get("default")) for n, d in declared.items()}
    missing = [n for n, v in values.items() if v is None]
    if missing:
        raise UserError(f"TriggerTemplate {template}: param(s) {', '.join(missing)} need a value")
    runs = [r for r in tt["spec"]["resourcetemplates"] if r.get("kind") == "PipelineRun"]
    if len(runs) != 1:
        raise UserError(f"TriggerTemplate {template}: expected one PipelineRun in resourcetemplates")
    text = yaml.safe_dump(runs[0], sort_keys=False)

    def lookup(var: tuple[str, ...]) -> str | None:
        return values.get(var[2]) if var[:2] == ("tt", "params") and len(var) == 3 else None

    return yaml.safe_load(substitute(text, lookup, f"TriggerTemplate {template}"))
