"""Tekton objects as pitlane reads them: load pipelines/*.yaml, substitute `$(...)` variables, check that
every param, result and workspace a Task or Pipeline references is declared, arrays and `matrix` included
(a whole array travels only as `$(...[*])` on its own: an args item, an array param's value, a matrix's).

Pure functions over the YAML as written, shared by the local runner, the cluster client and the tests.
"""

from __future__ import annotations

import itertools
import json
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
INDEX = re.compile(r"(.+?)\[(\*|\d+)\]")  # `summary[*]` (the whole array), `parts[0]` (one item)
RESULT_LIMIT = 4096  # [bytes] a step's termination message, where Tekton keeps its results (JSON)
STARTED_AT = '{"key":"StartedAt","value":"2006-01-02T15:04:05.999999999+07:00","type":3}'  # beside them


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


def split_index(name: str) -> tuple[str, str | None]:
    """`summary[*]` -> ('summary', '*'), `parts[0]` -> ('parts', '0'), `model` -> ('model', None)."""
    m = INDEX.fullmatch(name)
    return (m.group(1), m.group(2)) if m else (name, None)


def whole_array(value: Any) -> tuple[str, ...] | None:
    """The variable a value is exactly, when it is one `$(...[*])` and nothing else (Tekton passes a whole
    array only so: an args item of its own, an array param's value, a matrix param's value)."""
    if isinstance(value, str):
        m = VARIABLE.fullmatch(value.strip())
        if m and m.group(1).endswith("[*]"):
            return variable_name(m.group(1))
    return None


def array_value(text: str | None, where: str) -> list[str]:
    """An array result or param as Tekton keeps it (a JSON array of strings) -> its items."""
    try:
        items = json.loads(text or "")
    except ValueError:
        items = None
    if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
        raise UserError(f"{where}: {str(text)[:80]!r} is not an array of strings (a JSON list)")
    return items


def stored_size(results: dict[str, str]) -> int:
    """Bytes that results take in a step's termination message, as Tekton writes it (Go's JSON)."""
    entries = [{"key": k, "value": v, "type": 1} for k, v in results.items()]
    text = json.dumps(entries, separators=(",", ":"), ensure_ascii=False)
    escaped = sum(text.count(c) for c in "<>&") * 5  # Go writes them as \u003c, \u003e, \u0026
    return len(text.encode()) + escaped + len(STARTED_AT) + 1


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
    """Problems with the variables of one Task: a param, result or workspace it uses but does not declare,
    an array param used as a string or a whole array anywhere but an args item of its own."""
    name = task["metadata"]["name"]
    spec = task.get("spec", {})
    params, results, workspaces = (
        _names(spec.get("params")),
        _names(spec.get("results")),
        _names(spec.get("workspaces")),
    )
    arrays = {p["name"] for p in spec.get("params") or [] if p.get("type") == "array"}
    problems = []
    for var in variables(spec.get("steps", [])) if spec.get("steps") else ():
        kind = var[0]
        base, index = split_index(var[1]) if len(var) > 1 else ("", None)
        if kind == "params" and base not in params:
            problems.append(f"Task {name}: $(params.{var[1]}) is not a declared param")
        elif kind == "params" and (index is None) == (base in arrays) and index != "*":
            problems.append(f"Task {name}: $(params.{var[1]}): {base} is {_kind(base in arrays)}")
        elif kind == "params" and index == "*" and base not in arrays:
            problems.append(f"Task {name}: $(params.{var[1]}): {base} is not an array param")
        elif kind == "results" and var[1] not in results:
            problems.append(f"Task {name}: $(results.{var[1]}...) is not a declared result")
        elif kind == "workspaces" and var[1] not in workspaces:
            problems.append(f"Task {name}: $(workspaces.{var[1]}...) is not a declared workspace")
        elif kind in ("tasks", "tt"):
            problems.append(f"Task {name}: $({'.'.join(var)}) belongs in a Pipeline, not a Task")
    for step in spec.get("steps") or []:
        isolated = [a for a in step.get("command", []) + step.get("args", []) if whole_array(a)]
        elsewhere = [{k: v for k, v in step.items() if k not in ("command", "args")}]
        elsewhere += [a for a in step.get("command", []) + step.get("args", []) if a not in isolated]
        problems += [
            f"Task {name} step {step.get('name')}: $({'.'.join(var)}) must be an args item of its own"
            for var in variables(elsewhere)
            if split_index(var[-1])[1] == "*"
        ]
    if not spec.get("steps"):
        problems.append(f"Task {name}: no steps")
    return list(dict.fromkeys(problems))


def _kind(array: bool) -> str:
    return (
        "an array param: $(params.NAME[*]) as an args item of its own, or $(params.NAME[N])"
        if array
        else "a string param: no [N]"
    )


def check_pipeline(pipeline: dict[str, Any], objects: Objects) -> list[str]:
    """Problems with a Pipeline: tasks, params, results and workspaces it references that do not exist,
    and a matrix or a whole array used where Tekton takes neither."""
    name = pipeline["metadata"]["name"]
    spec = pipeline.get("spec", {})
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
        problems += _param_problems(where, pt, task)
        problems += _workspace_problems(where, pt, task, _names(spec.get("workspaces")))
        for after in pt.get("runAfter", []):
            if after not in tasks_by_name or after not in {t["name"] for t in dag}:
                problems.append(f"{where}: runAfter {after} is not a task of the Pipeline")
        for var in variables({k: v for k, v in pt.items() if k in ("params", "when", "matrix")}):
            problems += _variable_problems(where, var, pt in final, spec, tasks_by_name, objects)
    for result in spec.get("results", []):
        for var in variables(result.get("value", "")):
            if var[0] != "tasks" or var[1] not in tasks_by_name:
                problems.append(
                    f"Pipeline {name} result {result['name']}: $({'.'.join(var)}) names no task result"
                )
    return problems


def _param_problems(where: str, pt: dict[str, Any], task: dict[str, Any]) -> list[str]:
    """The params a pipeline task gives (in params and its matrix) against those its Task declares."""
    tname = task["metadata"]["name"]
    declared = {p["name"]: p for p in task.get("spec", {}).get("params", [])}
    matrix = pt.get("matrix") or {}
    fanned = {p["name"]: p for p in matrix.get("params", [])}
    given = {p["name"]: p for p in pt.get("params", [])}
    problems = [
        f"{where}: param {p} is not a param of Task {tname}"
        for p in sorted((set(given) | set(fanned)) - set(declared))
    ]
    problems += [f"{where}: param {p} is in both params and matrix" for p in set(given) & set(fanned)]
    problems += [
        f"{where}: Task {tname} needs param {p} (no default)"
        for p, d in declared.items()
        if p not in given and p not in fanned and "default" not in d
    ]
    for p, d in declared.items():
        array = d.get("type") == "array"
        if p in fanned and array:
            problems.append(
                f"{where}: matrix param {p} is an array param of Task {tname} (a matrix fans out strings)"
            )
        if p in fanned and not (isinstance(fanned[p]["value"], list) or whole_array(fanned[p]["value"])):
            problems.append(f"{where}: matrix param {p} needs a list or one $(...[*]) as its value")
        if p in given and array != (
            isinstance(given[p]["value"], list) or bool(whole_array(given[p]["value"]))
        ):
            problems.append(
                f"{where}: param {p} is {_kind(array).split(':')[0]} of Task {tname}, given {given[p]['value']!r}"
            )
    return problems


def _workspace_problems(
    where: str, pt: dict[str, Any], task: dict[str, Any], workspaces: set[str]
) -> list[str]:
    task_ws = {w["name"]: w for w in task.get("spec", {}).get("workspaces", [])}
    bound = {w["name"]: w.get("workspace") for w in pt.get("workspaces", [])}
    problems = [f"{where}: workspace {w} is not a workspace of the Task" for w in set(bound) - set(task_ws)]
    problems += [
        f"{where}: workspace {p} is not a Pipeline workspace" for p in bound.values() if p not in workspaces
    ]
    problems += [
        f"{where}: Task workspace {w} is not bound"
        for w, d in task_ws.items()
        if w not in bound and not d.get("optional")
    ]
    return problems


def _variable_problems(
    where: str,
    var: tuple[str, ...],
    final: bool,
    spec: dict[str, Any],
    tasks_by_name: dict[str, dict[str, Any]],
    objects: Objects,
) -> list[str]:
    """One variable in a pipeline task's params, when or matrix: it names a Pipeline param, a result of a
    task (a matrixed task's, or an array, only whole: `[*]`) or, in `finally`, a task's status."""
    text = f"$({'.'.join(var)})"
    if var[0] == "params":
        if split_index(var[1])[0] not in _names(spec.get("params")):
            return [f"{where}: {text} is not a Pipeline param"]
        return []
    if var[0] == "context":
        return []
    if var[0] != "tasks":
        return [f"{where}: {text} cannot be used in a Pipeline"]
    if len(var) < 2 or var[1] == "status":
        return []
    ref = tasks_by_name.get(var[1])
    if ref is None:
        return [f"{where}: {text} names no task"]
    if len(var) == 3 and var[2] == "status" and final:
        return []
    if len(var) < 4 or var[2] != "results":
        return [f"{where}: {text} is not a task result or a finally status"]
    ref_task = objects.get("Task", ref["taskRef"]["name"])
    result, index = split_index(var[3])
    declared = {r["name"]: r for r in ref_task["spec"].get("results", [])}
    if result not in declared:
        return [f"{where}: {text}: Task {ref_task['metadata']['name']} has no result {result}"]
    array = declared[result].get("type") == "array"
    if ref.get("matrix"):
        if array or index != "*":
            return [f"{where}: {text}: a matrixed task's string results are taken whole, as {result}[*]"]
    elif array != (index is not None):
        return [f"{where}: {text}: {result} is {'an array' if array else 'a string'} result"]
    return []


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


# --- a pipeline task's params, as a PipelineRun resolves them (the local runner's) -----------------------
def param_value(value: Any, lookup: Callable[[tuple[str, ...]], str | None], where: str) -> str | list[str]:
    """A param's value in a pipeline task: a list, a whole array (`$(...[*])` alone) or a string."""
    if isinstance(value, list):
        return [substitute(str(v), lookup, where) for v in value]
    ref = whole_array(value)
    if ref is not None:
        return array_value(lookup(ref), f"{where}: {value}")
    return substitute(str(value), lookup, where)


def matrix_combinations(
    pt: dict[str, Any], lookup: Callable[[tuple[str, ...]], str | None]
) -> list[dict[str, str]] | None:
    """The combinations a pipeline task's `matrix.params` fan out to (every value of the first param with
    every value of the next, ...), or None when it has no matrix."""
    matrix = pt.get("matrix")
    if not matrix:
        return None
    if matrix.get("include"):
        raise UserError(f"task {pt['name']}: matrix.include is not run locally (matrix.params are)")
    axes = []
    for p in matrix.get("params", []):
        values = param_value(p["value"], lookup, f"task {pt['name']} matrix param {p['name']}")
        if isinstance(values, str):
            raise UserError(f"task {pt['name']}: matrix param {p['name']} needs an array, got {values!r}")
        axes.append([(p["name"], v) for v in values])
    return [dict(c) for c in itertools.product(*axes)]


def task_params(
    name: str, tspec: dict[str, Any], given: dict[str, str | list[str]]
) -> dict[str, str | list[str]]:
    """Every param of the Task: given, else its default; an array param takes an array, a string a string."""
    params: dict[str, str | list[str]] = {}
    for p in tspec.get("params", []):
        array = p.get("type") == "array"
        if p["name"] in given:
            value = given[p["name"]]
        elif "default" in p:
            value = [str(v) for v in p["default"]] if array else str(p["default"])
        else:
            raise UserError(f"task {name}: param {p['name']} has no value")
        if isinstance(value, list) != array:
            raise UserError(
                f"task {name}: param {p['name']} is {'an array' if array else 'a string'} param, given {value!r}"
            )
        params[p["name"]] = value
    return params


def expand_args(
    items: list[Any],
    lookup: Callable[[tuple[str, ...]], str | None],
    params: dict[str, str | list[str]],
    where: str,
) -> list[str]:
    """A step's command or args: `$(params.NAME[*])` alone in an item gives every item of the array."""
    argv: list[str] = []
    for item in items:
        ref = whole_array(item)
        if ref is None:
            argv.append(substitute(str(item), lookup, where))
            continue
        value = params.get(split_index(ref[-1])[0]) if ref[0] == "params" else None
        if not isinstance(value, list):
            raise UserError(f"{where}: {item} is not an array param")
        argv += value
    return argv
