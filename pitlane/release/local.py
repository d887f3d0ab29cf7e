"""Run a Tekton Pipeline from pipelines/*.yaml on this machine, as written: the CI and laptop twin of
the cluster's PipelineRun, so the very step scripts Tekton runs are tested.

What it does like Tekton: params and defaults, `$(...)` substitution in step scripts, args, env and
workingDir; results through files (`$(results.x.path)`); workspaces as folders (a Secret-bound workspace
is filled from a local secrets folder, only its `items:` when it names them); env `secretKeyRef` from the same folder; `runAfter`, result
dependencies and `when` (scoped to the task); `retries`; `finally` with `$(tasks.status)` and
`$(tasks.<name>.status)`; a script without a shebang runs under `sh -e`, its `args` its arguments; array
params and results (`$(...[*])`, `$(...[N])`); `matrix.params` (one TaskRun per combination, in order,
each with its retries; the task fails if one fails; its string results collected into arrays for
`$(tasks.<name>.results.<result>[*])`); Tekton's limit on a TaskRun's results (4096 bytes as it keeps
them). Secret values never reach the log: each is masked as `***`.

What it does not do: pods, step images (steps run with this machine's tools, `pitlane` from the running
environment), sidecars, securityContext, volumes, resource limits, parallel tasks (tasks, and the TaskRuns
of a matrix, run one at a time in dependency order), `matrix.include`, and Tekton Chains.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pitlane.errors import UserError
from pitlane.release.tekton import (
    RESULT_LIMIT,
    Objects,
    array_value,
    expand_args,
    matrix_combinations,
    param_value,
    split_index,
    stored_size,
    substitute,
    task_params,
    variables,
)

SUCCEEDED, FAILED, SKIPPED = "Succeeded", "Failed", "Skipped"
NO_SHEBANG = "#!/bin/sh\nset -e\n"  # what Tekton runs a shebang-less script with


@dataclass
class Secrets:
    """Kubernetes Secrets, locally: SECRETS_DIR/<secret name>/<key> files (a Secret volume's layout).

    Every value handed out is remembered so the log can mask it.
    """

    folder: Path | None
    values: set[str] = field(default_factory=set)

    def value(self, name: str, key: str, optional: bool = False) -> str | None:
        path = self.folder / name / key if self.folder else None
        if path is None or not path.is_file():
            if optional:
                return None
            raise UserError(
                f"secret {name}/{key} not found: put it in {self.folder or 'SECRETS_DIR'}/{name}/{key}"
            )
        text = path.read_text()
        self._remember(text)
        return text

    def mount(
        self, name: str, target: Path, optional: bool = False, items: list[dict[str, str]] | None = None
    ) -> bool:
        """Copy a Secret's keys into a workspace folder (with `items`, only those keys, at their paths, as
        Kubernetes projects them); False when it is optional and absent."""
        src = self.folder / name if self.folder else None
        if src is None or not src.is_dir():
            if optional:
                return False
            raise UserError(
                f"secret {name} not found: create the folder {self.folder or 'SECRETS_DIR'}/{name}/ with its keys"
            )
        target.mkdir(parents=True, exist_ok=True)
        wanted = {i["key"]: i["path"] for i in items} if items else {f.name: f.name for f in src.iterdir()}
        for key, rel in wanted.items():
            f = src / key
            if not f.is_file():
                raise UserError(f"secret {name} has no key {key}: put it in {src}/{key}")
            (target / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(f, target / rel)
            self._remember(f.read_text(errors="replace"))
        return True

    def _remember(self, text: str) -> None:
        for v in (text, text.strip()):
            if len(v) >= 4:
                self.values.add(v)
                self.values.update(line for line in v.splitlines() if len(line.strip()) >= 8)

    def mask(self, line: str) -> str:
        for v in sorted(self.values, key=len, reverse=True):
            if v in line:
                line = line.replace(v, "***")
        return line


@dataclass
class TaskOutcome:
    name: str
    status: str  # Succeeded, Failed or Skipped
    reason: str = ""
    results: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0
    attempts: int = 0
    matrix: list[str] = field(default_factory=list)  # the combinations a matrix ran, `param=value, ...`


@dataclass
class RunOutcome:
    status: str  # Succeeded, Completed (some skipped) or Failed
    tasks: list[TaskOutcome]
    results: dict[str, str]
    folder: Path

    def task(self, name: str) -> TaskOutcome:
        return next(t for t in self.tasks if t.name == name)

    @property
    def failed(self) -> TaskOutcome | None:
        return next((t for t in self.tasks if t.status == FAILED), None)


def order(tasks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Pipeline tasks in dependency order (runAfter and result references), ties in file order."""
    deps = {
        t["name"]: set(t.get("runAfter", [])) | {v[1] for v in variables(t) if v[0] == "tasks" and len(v) > 2}
        for t in tasks
    }
    done: list[dict[str, Any]] = []
    left = list(tasks)
    while left:
        ready = [t for t in left if deps[t["name"]] <= {d["name"] for d in done}]
        if not ready:
            raise UserError(f"pipeline: a cycle or unknown task among {', '.join(t['name'] for t in left)}")
        done.append(ready[0])
        left.remove(ready[0])
    return done


class LocalRun:
    """One run of a Pipeline: `run()` executes it and returns a RunOutcome; logs go to `echo`."""

    def __init__(
        self,
        objects: Objects,
        pipeline: str,
        params: dict[str, str],
        workspaces: dict[str, dict[str, Any]],
        folder: Path,
        secrets: Secrets,
        echo: Callable[[str], None] = print,
        env: dict[str, str] | None = None,
        name: str = "local",
    ) -> None:
        self.objects = objects
        self.pipeline = objects.get("Pipeline", pipeline)
        self.folder = Path(folder)
        self.secrets = secrets
        self.echo = echo
        self.name = name
        self.env = dict(env if env is not None else os.environ)
        # `pitlane`, `python` of the running environment first, as the tools image would have them.
        self.env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{self.env.get('PATH', '')}"
        spec = self.pipeline["spec"]
        declared = {p["name"]: p for p in spec.get("params", [])}
        unknown = sorted(set(params) - set(declared))
        if unknown:
            raise UserError(
                f"pipeline {pipeline}: unknown param(s) {', '.join(unknown)}; params: {', '.join(declared)}"
            )
        self.params = {n: str(params[n]) if n in params else d.get("default") for n, d in declared.items()}
        missing = [n for n, v in self.params.items() if v is None]
        if missing:
            raise UserError(
                f"pipeline {pipeline}: param(s) {', '.join(missing)} need a value (-p NAME=VALUE)"
            )
        self.workspaces = self._bind_workspaces(workspaces)
        self.outcomes: dict[str, TaskOutcome] = {}

    # --- workspaces -------------------------------------------------------------------------------
    def _bind_workspaces(self, bindings: dict[str, dict[str, Any]]) -> dict[str, Path | None]:
        bound: dict[str, Path | None] = {}
        for ws in self.pipeline["spec"].get("workspaces", []):
            name = ws["name"]
            b = bindings.get(name)
            path = self.folder / "workspaces" / name
            if b is None:
                bound[name] = None
                if not ws.get("optional"):
                    raise UserError(f"pipeline: workspace {name} is not bound")
            elif "secret" in b:
                secret = b["secret"]
                ok = self.secrets.mount(
                    secret["secretName"], path, bool(secret.get("optional")), secret.get("items")
                )
                bound[name] = path if ok else None
            elif "folder" in b:
                bound[name] = Path(b["folder"])
                bound[name].mkdir(parents=True, exist_ok=True)  # type: ignore[union-attr]
            else:  # volumeClaimTemplate, emptyDir, persistentVolumeClaim: a fresh folder
                path.mkdir(parents=True, exist_ok=True)
                bound[name] = path
        return bound

    # --- the pipeline ----------------------------------------------------------------------------
    def run(self) -> RunOutcome:
        spec = self.pipeline["spec"]
        started = time.monotonic()
        for pt in order(spec.get("tasks", [])):
            failed = next((o for o in self.outcomes.values() if o.status == FAILED), None)
            if failed:
                self.outcomes[pt["name"]] = TaskOutcome(pt["name"], SKIPPED, f"not run: {failed.name} failed")
                continue
            self.outcomes[pt["name"]] = self._pipeline_task(pt, final=False)
        for pt in spec.get("finally", []):
            self.outcomes[pt["name"]] = self._pipeline_task(pt, final=True)
        final_names = {t["name"] for t in spec.get("finally", [])}
        dag = [o for o in self.outcomes.values() if o.name not in final_names]  # in the order they ran
        finals = [o for o in self.outcomes.values() if o.name in final_names]
        status = self._dag_status(dag)
        if any(o.status == FAILED for o in finals):
            status = FAILED
        results = {}
        for r in spec.get("results", []):
            try:
                results[r["name"]] = substitute(
                    r["value"], self._lookup_pipeline(final=True), f"pipeline result {r['name']}"
                )
            except UserError:
                continue  # a result of a task that did not run: left out, as Tekton does
        self.echo(f"[pipelinerun] {self.name} {status} in {time.monotonic() - started:.1f} s")
        return RunOutcome(status, dag + finals, results, self.folder)

    @staticmethod
    def _dag_status(dag: list[TaskOutcome]) -> str:
        if any(o.status == FAILED for o in dag):
            return FAILED
        return "Completed" if any(o.status == SKIPPED for o in dag) else SUCCEEDED

    def _lookup_pipeline(self, final: bool) -> Callable[[tuple[str, ...]], str | None]:
        def lookup(var: tuple[str, ...]) -> str | None:
            if var[0] == "params" and len(var) == 2:
                return self.params.get(var[1])
            if var[0] == "context" and var[1:] == ("pipelineRun", "name"):
                return self.name
            if var[0] == "tasks" and final and var[1:] == ("status",):
                return self._dag_status(
                    [self.outcomes[t["name"]] for t in self.pipeline["spec"].get("tasks", [])]
                )
            if var[0] == "tasks" and len(var) == 3 and var[2] == "status" and final:
                o = self.outcomes.get(var[1])
                return "None" if o is None or o.status == SKIPPED else o.status
            if var[0] == "tasks" and len(var) == 4 and var[2] == "results":
                o = self.outcomes.get(var[1])
                result, index = split_index(var[3])
                value = o.results.get(result) if o else None
                if value is None or index in (None, "*"):
                    return value  # a whole array as Tekton keeps it: a JSON list
                items = array_value(value, f"result {result} of task {var[1]}")
                return items[int(index)] if int(index) < len(items) else None
            return None

        return lookup

    def _pipeline_task(self, pt: dict[str, Any], final: bool) -> TaskOutcome:
        name = pt["name"]
        lookup = self._lookup_pipeline(final)
        # A task that needs a result of a task that did not produce it is skipped (Tekton: "Results were missing").
        for var in variables({k: pt.get(k, []) for k in ("params", "when", "matrix")}):
            if var[0] == "tasks" and len(var) == 4 and lookup(var) is None:
                return self._skip(name, f"result {var[3]} of {var[1]} is missing ({var[1]} did not run)")
        for w in pt.get("when", []):
            value = substitute(w["input"], lookup, f"task {name} when")
            values = [substitute(v, lookup, f"task {name} when") for v in w["values"]]
            if (value in values) != (w["operator"] == "in"):
                return self._skip(name, f"when {w['input']} ({value!r}) {w['operator']} {values} is false")
        tspec = self.objects.get("Task", pt["taskRef"]["name"])["spec"]
        given = {
            p["name"]: param_value(p["value"], lookup, f"task {name} param {p['name']}")
            for p in pt.get("params", [])
        }
        combinations = matrix_combinations(pt, lookup)
        if combinations == []:
            return self._skip(name, "its matrix has no values to fan out")
        workspaces = {w["name"]: self.workspaces.get(w["workspace"]) for w in pt.get("workspaces", [])}
        started = time.monotonic()
        if combinations is None:
            outcome = self._attempts(name, pt, tspec, task_params(name, tspec, given), workspaces)
        else:
            outcome = self._fan_out(name, pt, tspec, given, combinations, workspaces)
        outcome.name, outcome.seconds = name, time.monotonic() - started
        runs = f" ({len(outcome.matrix)} TaskRuns)" if outcome.matrix else ""
        self.echo(
            f"[{name}] {outcome.status}{runs} in {outcome.seconds:.1f} s{': ' + outcome.reason if outcome.reason else ''}"
        )
        return outcome

    def _attempts(
        self,
        run_name: str,
        pt: dict[str, Any],
        tspec: dict[str, Any],
        params: dict[str, str | list[str]],
        workspaces: dict[str, Path | None],
    ) -> TaskOutcome:
        """One TaskRun, again after a failure as many times as the pipeline task's `retries`."""
        attempts = int(pt.get("retries", 0)) + 1
        outcome = TaskOutcome(run_name, FAILED)
        for attempt in range(1, attempts + 1):
            if attempt > 1:
                self.echo(f"[{run_name}] retrying (attempt {attempt} of {attempts})")
            outcome = self._task_run(run_name, tspec, params, workspaces, attempt, pt.get("timeout"))
            outcome.attempts = attempt
            if outcome.status == SUCCEEDED:
                break
        return outcome

    def _fan_out(
        self,
        name: str,
        pt: dict[str, Any],
        tspec: dict[str, Any],
        given: dict[str, str | list[str]],
        combinations: list[dict[str, str]],
        workspaces: dict[str, Path | None],
    ) -> TaskOutcome:
        """A matrix: one TaskRun per combination (`<name>-<i>`, as Tekton names them), every one run; the
        task failed if any did; each string result collected over the TaskRuns, in order, into an array."""
        labels = [", ".join(f"{k}={v}" for k, v in c.items()) for c in combinations]
        runs = []
        for i, (combination, label) in enumerate(zip(combinations, labels, strict=True)):
            self.echo(f"[{name}] matrix TaskRun {name}-{i} of {len(combinations)}: {label}")
            params = task_params(name, tspec, {**given, **combination})
            runs.append(self._attempts(f"{name}-{i}", pt, tspec, params, workspaces))
        attempts = max(r.attempts for r in runs)
        failed = [
            f"{r.name} ({label}): {r.reason}"
            for r, label in zip(runs, labels, strict=True)
            if r.status != SUCCEEDED
        ]
        if failed:
            return TaskOutcome(name, FAILED, "; ".join(failed), attempts=attempts, matrix=labels)
        strings = [r["name"] for r in tspec.get("results", []) if r.get("type", "string") == "string"]
        results = {
            k: json.dumps([r.results[k] for r in runs]) for k in strings if all(k in r.results for r in runs)
        }
        return TaskOutcome(name, SUCCEEDED, "", results, attempts=attempts, matrix=labels)

    def _skip(self, name: str, reason: str) -> TaskOutcome:
        self.echo(f"[{name}] Skipped: {reason}")
        return TaskOutcome(name, SKIPPED, reason)

    # --- one TaskRun -----------------------------------------------------------------------------
    def _task_run(
        self,
        name: str,
        tspec: dict[str, Any],
        params: dict[str, str | list[str]],
        workspaces: dict[str, Path | None],
        attempt: int,
        timeout: str | None,
    ) -> TaskOutcome:
        run_dir = self.folder / "taskruns" / f"{name}-{attempt}"
        shutil.rmtree(run_dir, ignore_errors=True)
        results_dir, home = run_dir / "results", run_dir / "home"
        results_dir.mkdir(parents=True)
        home.mkdir()
        declared_ws = {w["name"]: w for w in tspec.get("workspaces", [])}

        def lookup(var: tuple[str, ...]) -> str | None:
            if var[0] == "params" and len(var) == 2:
                base, index = split_index(var[1])
                value = params.get(base)
                if isinstance(value, list):  # one item; a whole array only as an args item (expand_args)
                    return value[int(index)] if index not in (None, "*") and int(index) < len(value) else None
                return value if index is None else None
            if var[0] == "results" and len(var) == 3 and var[2] == "path":
                return (
                    str(results_dir / var[1])
                    if var[1] in {r["name"] for r in tspec.get("results", [])}
                    else None
                )
            if var[0] == "workspaces" and len(var) == 3 and var[1] in declared_ws:
                path = workspaces.get(var[1])
                if var[2] == "bound":
                    return "true" if path is not None else "false"
                if var[2] == "path":
                    return str(path) if path is not None else ""
            if var[0] == "context" and var[1:] == ("taskRun", "name"):
                return f"{self.name}-{name}"
            if var[0] == "context" and var[1:] == ("pipelineRun", "name"):
                return self.name
            return None

        for w, d in declared_ws.items():
            if workspaces.get(w) is None and not d.get("optional"):
                return TaskOutcome(name, FAILED, f"workspace {w} is not bound")
        deadline = time.monotonic() + _seconds(timeout) if timeout else None
        template_env = (tspec.get("stepTemplate") or {}).get("env", [])
        for step in tspec["steps"]:
            where = f"task {name} step {step['name']}"
            env = dict(self.env, HOME=str(home))
            for e in template_env + step.get("env", []):
                env[e["name"]] = self._env_value(e, lookup, where)
            workdir = Path(substitute(step.get("workingDir", str(run_dir)), lookup, where))
            if "script" in step:
                script = substitute(step["script"], lookup, where)
                if not script.startswith("#!"):
                    script = NO_SHEBANG + script
                path = run_dir / f"step-{step['name']}"
                path.write_text(script)
                path.chmod(0o700)
                argv = [str(path), *expand_args(step.get("args", []), lookup, params, where)]
            else:
                argv = expand_args(step.get("command", []) + step.get("args", []), lookup, params, where)
            rc = self._step(
                f"{name} : {step['name']}", argv, env, workdir, run_dir / f"step-{step['name']}.log", deadline
            )
            if rc != 0 and step.get("onError") != "continue":
                return TaskOutcome(
                    name,
                    FAILED,
                    f"step {step['name']} exited {rc}" if rc >= 0 else f"step {step['name']} timed out",
                )
        return _results(name, tspec, results_dir)

    def _env_value(
        self, e: dict[str, Any], lookup: Callable[[tuple[str, ...]], str | None], where: str
    ) -> str:
        if "value" in e:
            return substitute(str(e["value"]), lookup, where)
        ref = (e.get("valueFrom") or {}).get("secretKeyRef")
        if ref:
            value = self.secrets.value(ref["name"], ref["key"], bool(ref.get("optional")))
            return value or ""
        raise UserError(
            f"{where}: env {e['name']} has neither value nor secretKeyRef (others are not run locally)"
        )

    def _step(
        self, prefix: str, argv: list[str], env: dict[str, str], cwd: Path, log: Path, deadline: float | None
    ) -> int:
        """Run one step, streaming its masked output with a `[task : step]` prefix like `tkn pr logs -f`."""
        if not cwd.is_dir():
            self.echo(f"[{prefix}] working directory {cwd} does not exist")
            return 1
        proc = subprocess.Popen(
            argv,
            cwd=cwd,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
            start_new_session=True,  # a timeout ends the step's whole process group, children included
        )
        timer = None
        if deadline is not None:
            timer = threading.Timer(max(0.0, deadline - time.monotonic()), _kill_group, (proc.pid,))
            timer.start()
        assert proc.stdout is not None
        with log.open("w") as f:
            for line in proc.stdout:
                masked = self.secrets.mask(line.rstrip("\n"))
                f.write(masked + "\n")
                self.echo(f"[{prefix}] {masked}")
        rc = proc.wait()
        if timer is not None:
            timer.cancel()
        return rc


def _results(name: str, tspec: dict[str, Any], results_dir: Path) -> TaskOutcome:
    """A TaskRun that ran every step: its results, or Failed where Tekton would refuse them (an array result
    that is no array, results over the size a step's termination message holds)."""
    results = {f.name: f.read_text() for f in results_dir.iterdir() if f.is_file()}
    for r in tspec.get("results", []):
        if r.get("type") == "array" and r["name"] in results:
            try:
                array_value(results[r["name"]], f"result {r['name']}")
            except UserError as exc:
                return TaskOutcome(name, FAILED, str(exc))
    size = stored_size(results)
    if size > RESULT_LIMIT:
        return TaskOutcome(
            name,
            FAILED,
            f"its results take {size} bytes as Tekton keeps them, over its {RESULT_LIMIT}-byte limit "
            "(a step's termination message): hand large values on in a workspace",
        )
    return TaskOutcome(name, SUCCEEDED, "", results)


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)


def _seconds(duration: str) -> float:
    """A Kubernetes duration (`1h0m0s`, `90s`, `10m`) in seconds."""
    total, matched = 0.0, False
    for value, unit in re.findall(r"(\d+(?:\.\d+)?)(h|ms|m|s)", duration):
        matched = True
        total += float(value) * {"h": 3600, "m": 60, "s": 1, "ms": 0.001}[unit]
    if not matched:
        raise UserError(f"timeout {duration!r} is not a duration like 10m or 1h0m0s")
    return total
