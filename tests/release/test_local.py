"""The local runner on small Pipelines written here: params, results, workspaces, runAfter, when,
retries, finally statuses, and secrets that never reach the log."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

import pytest

from pitlane.errors import UserError
from pitlane.release import tekton
from pitlane.release.local import FAILED, SKIPPED, SUCCEEDED, LocalRun, Secrets, order

TASKS = """
apiVersion: tekton.dev/v1
kind: Task
metadata: {name: produce}
spec:
  params:
    - {name: word, type: string}
    - {name: flag, type: string, default: "yes"}
  workspaces: [{name: shared}]
  results: [{name: out}, {name: flag}]
  steps:
    - name: write
      image: ignored
      script: |
        printf '%s-%s' "$(params.word)" "$(context.taskRun.name)" > "$(results.out.path)"
        printf %s "$(params.flag)" > "$(results.flag.path)"
        echo "$(params.word)" > "$(workspaces.shared.path)/word.txt"
---
apiVersion: tekton.dev/v1
kind: Task
metadata: {name: consume}
spec:
  params: [{name: value, type: string}]
  workspaces: [{name: shared}, {name: keys, optional: true}]
  steps:
    - name: read
      image: ignored
      env:
        - name: TOKEN
          valueFrom: {secretKeyRef: {name: gh, key: token}}
      script: |
        #!/usr/bin/env bash
        set -euo pipefail
        echo "got $(params.value) and $(cat "$(workspaces.shared.path)/word.txt")"
        echo "the token is $TOKEN"
        if [ "$(workspaces.keys.bound)" = true ]; then echo "key: $(cat "$(workspaces.keys.path)/cosign.key")"; fi
        echo "$(params.value)" >> "$(workspaces.shared.path)/consumed.txt"
---
apiVersion: tekton.dev/v1
kind: Task
metadata: {name: flaky}
spec:
  workspaces: [{name: shared}]
  steps:
    - name: maybe
      image: ignored
      script: |
        n=$(cat "$(workspaces.shared.path)/tries" 2>/dev/null || echo 0)
        echo $((n + 1)) > "$(workspaces.shared.path)/tries"
        [ "$n" -ge 1 ] || { echo "registry unavailable"; exit 3; }
---
apiVersion: tekton.dev/v1
kind: Task
metadata: {name: report}
spec:
  params: [{name: status, type: string}, {name: each, type: string}]
  workspaces: [{name: shared}]
  steps:
    - name: write
      image: ignored
      script: echo "$(params.status) $(params.each)" > "$(workspaces.shared.path)/final.txt"
"""


def pipeline(tasks: str, final: str = "") -> str:
    return (
        textwrap.dedent(
            """
        apiVersion: tekton.dev/v1
        kind: Pipeline
        metadata: {name: p}
        spec:
          params: [{name: word, type: string}, {name: build, type: string, default: "true"}]
          workspaces: [{name: shared}, {name: keys, optional: true}]
          results: [{name: out, value: $(tasks.a.results.out)}]
        """
        )
        + textwrap.indent(tasks, "  ")
        + (textwrap.indent(final, "  ") if final else "")
    )


DAG = """
tasks:
  - name: c
    runAfter: [b]
    taskRef: {name: consume}
    params: [{name: value, value: $(tasks.a.results.out)}]
    workspaces: [{name: shared, workspace: shared}, {name: keys, workspace: keys}]
  - name: b
    when: [{input: $(tasks.a.results.flag), operator: in, values: ["$(params.build)"]}]
    taskRef: {name: consume}
    params: [{name: value, value: from-b}]
    workspaces: [{name: shared, workspace: shared}]
  - name: a
    taskRef: {name: produce}
    params: [{name: word, value: $(params.word)}, {name: flag, value: "true"}]
    workspaces: [{name: shared, workspace: shared}]
"""

FINAL = """
finally:
  - name: fin
    taskRef: {name: report}
    params:
      - {name: status, value: $(tasks.status)}
      - {name: each, value: "a=$(tasks.a.status) b=$(tasks.b.status) c=$(tasks.c.status)"}
    workspaces: [{name: shared, workspace: shared}]
"""


@pytest.fixture
def secrets(tmp_path) -> Secrets:
    (tmp_path / "secrets" / "gh").mkdir(parents=True)
    (tmp_path / "secrets" / "gh" / "token").write_text("ghp_s3cretT0kenValue")
    (tmp_path / "secrets" / "signing").mkdir()
    (tmp_path / "secrets" / "signing" / "cosign.key").write_text(
        "-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMGByqGSM49AgEG\n"
    )
    return Secrets(tmp_path / "secrets")


def run(tmp_path, secrets, text, params, keys=True, **kw):
    (tmp_path / "pipelines").mkdir(exist_ok=True)
    (tmp_path / "pipelines" / "tasks.yaml").write_text(TASKS)
    (tmp_path / "pipelines" / "pipeline.yaml").write_text(text)
    objects = tekton.load(tmp_path / "pipelines")
    lines: list[str] = []
    ws: dict[str, dict[str, Any]] = {"shared": {"emptyDir": {}}}
    if keys:
        ws["keys"] = {"secret": {"secretName": "signing"}}
    runner = LocalRun(objects, "p", params, ws, tmp_path / "run", secrets, echo=lines.append, **kw)
    return runner.run(), "\n".join(lines)


def test_dependency_order_runafter_and_results():
    tasks: list[dict[str, Any]] = [
        {"name": "c", "runAfter": ["b"]},
        {"name": "b", "params": [{"value": "$(tasks.a.results.x)"}]},
        {"name": "a"},
    ]
    assert [t["name"] for t in order(tasks)] == ["a", "b", "c"]
    with pytest.raises(UserError, match="cycle"):
        order([{"name": "a", "runAfter": ["b"]}, {"name": "b", "runAfter": ["a"]}])


def test_params_results_workspaces_and_masked_secrets(tmp_path, secrets):
    outcome, log = run(tmp_path, secrets, pipeline(DAG, FINAL), {"word": "hello"})
    assert outcome.status == SUCCEEDED
    assert [t.name for t in outcome.tasks] == ["a", "b", "c", "fin"]
    assert outcome.task("a").results == {"out": "hello-local-a", "flag": "true"}
    assert outcome.results == {"out": "hello-local-a"}
    assert "[c : read] got hello-local-a and hello" in log
    assert "ghp_s3cretT0kenValue" not in log and "the token is ***" in log
    assert "MIGHAgEAMBMGByqGSM49AgEG" not in log and "key: ***" in log
    shared = tmp_path / "run" / "workspaces" / "shared"
    assert (shared / "consumed.txt").read_text().split() == ["from-b", "hello-local-a"]
    assert (shared / "final.txt").read_text().split() == [
        "Succeeded",
        "a=Succeeded",
        "b=Succeeded",
        "c=Succeeded",
    ]
    logs = "".join(p.read_text() for p in (tmp_path / "run" / "taskruns").rglob("*.log"))
    assert "ghp_s3cretT0kenValue" not in logs and "***" in logs


def test_when_false_skips_only_that_task(tmp_path, secrets):
    outcome, log = run(tmp_path, secrets, pipeline(DAG, FINAL), {"word": "w", "build": "false"}, keys=False)
    assert outcome.status == "Completed"
    assert outcome.task("b").status == SKIPPED and "when" in outcome.task("b").reason
    assert (
        outcome.task("c").status == SUCCEEDED
    )  # runAfter a skipped task still runs (when is scoped to the task)
    assert "key:" not in log  # optional secret workspace not bound
    final = (tmp_path / "run" / "workspaces" / "shared" / "final.txt").read_text().split()
    assert final == ["Completed", "a=Succeeded", "b=None", "c=Succeeded"]


def test_failure_stops_the_dag_and_finally_sees_it(tmp_path, secrets):
    broken = (
        DAG.replace("printf", "false; printf")
        if False
        else DAG.replace("name: produce", "name: flaky").replace(
            'params: [{name: word, value: $(params.word)}, {name: flag, value: "true"}]', ""
        )
    )
    outcome, log = run(tmp_path, secrets, pipeline(broken, FINAL), {"word": "w"})
    assert outcome.status == FAILED
    assert outcome.failed is not None and outcome.failed.name == "a"
    assert "exited 3" in outcome.failed.reason and "registry unavailable" in log
    assert outcome.task("b").status == SKIPPED and outcome.task("c").status == SKIPPED
    final = (tmp_path / "run" / "workspaces" / "shared" / "final.txt").read_text().split()
    assert final == ["Failed", "a=Failed", "b=None", "c=None"]


def test_retries_then_success(tmp_path, secrets):
    text = pipeline(
        """
tasks:
  - name: a
    retries: 2
    taskRef: {name: flaky}
    workspaces: [{name: shared, workspace: shared}]
"""
    )
    outcome, log = run(tmp_path, secrets, text, {"word": "w"})
    assert outcome.task("a").status == SUCCEEDED and outcome.task("a").attempts == 2
    assert "retrying (attempt 2 of 3)" in log


def test_bad_params_and_variables(tmp_path, secrets):
    with pytest.raises(UserError, match="param\\(s\\) word need a value"):
        run(tmp_path, secrets, pipeline(DAG), {})
    with pytest.raises(UserError, match="unknown param\\(s\\) wrod"):
        run(tmp_path, secrets, pipeline(DAG), {"word": "w", "wrod": "x"})
    bad = pipeline(DAG.replace("$(params.word)", "$(params.nope)"))
    with pytest.raises(UserError, match="unknown variable \\$\\(params.nope\\)"):
        run(tmp_path, secrets, bad, {"word": "w"})


def test_missing_secret_is_named(tmp_path):
    with pytest.raises(UserError, match="secret signing not found"):
        run(tmp_path, Secrets(tmp_path / "nothing"), pipeline(DAG), {"word": "w"})


def test_timeout_fails_the_task(tmp_path, secrets):
    text = pipeline(
        """
tasks:
  - name: a
    timeout: 1s
    taskRef: {name: report}
    params: [{name: status, value: "$(sleep 5)"}, {name: each, value: x}]
    workspaces: [{name: shared, workspace: shared}]
"""
    )
    outcome, _ = run(tmp_path, secrets, text, {"word": "w"})
    assert outcome.task("a").status == FAILED and "timed out" in outcome.task("a").reason
    assert outcome.task("a").seconds < 4


def test_shell_command_substitution_is_left_to_the_shell(tmp_path):
    assert (
        tekton.substitute("a $(params.x) $(date) $(cat f)", lambda v: "X", "here") == "a X $(date) $(cat f)"
    )


def test_loads_refuse_broken_folders(tmp_path):
    with pytest.raises(UserError, match="no Tekton YAML"):
        tekton.load(tmp_path)
    Path(tmp_path / "x.yaml").write_text("kind: Task\nmetadata: {}\n")
    with pytest.raises(UserError, match="metadata.name"):
        tekton.load(tmp_path)


MATRIX_TASKS = """
apiVersion: tekton.dev/v1
kind: Task
metadata: {name: list}
spec:
  params: [{name: items, type: string}]
  results: [{name: parts, type: array}]
  steps:
    - name: list
      image: ignored
      env: [{name: ITEMS, value: $(params.items)}]
      script: printf %s "$ITEMS" > "$(results.parts.path)"
---
apiVersion: tekton.dev/v1
kind: Task
metadata: {name: part}
spec:
  params: [{name: part, type: string}, {name: size, type: string, default: "0"}]
  results: [{name: summary}]
  steps:
    - name: drive
      image: ignored
      env:
        - {name: PART, value: $(params.part)}
        - {name: SIZE, value: $(params.size)}
        - {name: RUN, value: $(context.taskRun.name)}
        - {name: SUMMARY, value: $(results.summary.path)}
      script: |
        #!/usr/bin/env bash
        set -euo pipefail
        if [ "$PART" = broken ]; then echo "part $PART cannot be driven"; exit 4; fi
        printf '{"part":"%s","run":"%s","pad":"%s"}' "$PART" "$RUN" "$(head -c "$SIZE" /dev/zero | tr '\\0' x)" > "$SUMMARY"
---
apiVersion: tekton.dev/v1
kind: Task
metadata: {name: aggregate}
spec:
  params: [{name: summaries, type: array}, {name: first, type: string}]
  workspaces: [{name: shared}]
  steps:
    - name: aggregate
      image: ignored
      args: ["$(params.summaries[*])"]
      env: [{name: OUT, value: $(workspaces.shared.path)}, {name: FIRST, value: $(params.first)}]
      script: |
        #!/usr/bin/env bash
        set -euo pipefail
        printf '%s\\n' "$#" "$FIRST" "$@" > "$OUT/aggregated.txt"
"""

FAN_OUT = """
apiVersion: tekton.dev/v1
kind: Pipeline
metadata: {name: fan}
spec:
  params: [{name: items, type: string}, {name: size, type: string, default: "0"}]
  workspaces: [{name: shared}]
  tasks:
    - name: aggregate
      taskRef: {name: aggregate}
      params:
        - {name: summaries, value: "$(tasks.fan.results.summary[*])"}
        - {name: first, value: "$(tasks.parts.results.parts[0])"}
      workspaces: [{name: shared, workspace: shared}]
    - name: fan
      taskRef: {name: part}
      retries: 1
      matrix:
        params: [{name: part, value: "$(tasks.parts.results.parts[*])"}]
      params: [{name: size, value: $(params.size)}]
    - name: parts
      taskRef: {name: list}
      params: [{name: items, value: $(params.items)}]
  finally:
    - name: fin
      taskRef: {name: report}
      params:
        - {name: status, value: $(tasks.status)}
        - {name: each, value: "fan=$(tasks.fan.status) aggregate=$(tasks.aggregate.status)"}
      workspaces: [{name: shared, workspace: shared}]
"""


def fan_out(tmp_path, items: list[str], size: int = 0):
    (tmp_path / "pipelines").mkdir(exist_ok=True)
    (tmp_path / "pipelines" / "tasks.yaml").write_text(TASKS + "---\n" + MATRIX_TASKS)
    (tmp_path / "pipelines" / "pipeline.yaml").write_text(FAN_OUT)
    objects = tekton.load(tmp_path / "pipelines")
    assert tekton.check_all(objects) == []
    lines: list[str] = []
    params = {"items": json.dumps(items), "size": str(size)}
    ws: dict[str, dict[str, Any]] = {"shared": {"emptyDir": {}}}
    runner = LocalRun(objects, "fan", params, ws, tmp_path / "run", Secrets(None), echo=lines.append)
    return runner.run(), "\n".join(lines), tmp_path / "run" / "workspaces" / "shared"


def test_a_matrix_runs_a_taskrun_per_value_in_order_and_collects_its_results(tmp_path):
    """One TaskRun per part (named as Tekton names them), its string results collected in order into an
    array that reaches the next script as its arguments: each item one argument, `$(...)` in one only data."""
    marker = tmp_path / "PWNED"
    items = ["generated_track:ccw", "generated_track:cw", f"$(touch {marker}) x; touch {marker}"]
    outcome, log, shared = fan_out(tmp_path, items)
    assert outcome.status == SUCCEEDED, log
    assert [t.name for t in outcome.tasks] == ["parts", "fan", "aggregate", "fin"]
    fan = outcome.task("fan")
    assert fan.matrix == [f"part={i}" for i in items]
    summaries = json.loads(fan.results["summary"])
    assert [json.loads(s)["part"] for s in summaries] == items
    assert [json.loads(s)["run"] for s in summaries] == ["local-fan-0", "local-fan-1", "local-fan-2"]
    assert "[fan] matrix TaskRun fan-1 of 3: part=generated_track:cw" in log
    assert "[fan] Succeeded (3 TaskRuns)" in log
    lines = (shared / "aggregated.txt").read_text().splitlines()
    assert lines == ["3", items[0], *summaries]
    assert not marker.exists()
    assert sorted(p.name for p in (tmp_path / "run" / "taskruns").iterdir()) == [
        "aggregate-1", "fan-0-1", "fan-1-1", "fan-2-1", "fin-1", "parts-1",
    ]  # fmt: skip


def test_a_part_that_failed_fails_the_fan_out_after_every_part_ran(tmp_path):
    outcome, log, shared = fan_out(tmp_path, ["a", "broken", "c"])
    assert outcome.status == FAILED
    fan = outcome.task("fan")
    assert fan.status == FAILED and fan.attempts == 2  # the broken part, retried once
    assert fan.reason == "fan-1 (part=broken): step drive exited 4"
    assert log.count("part broken cannot be driven") == 2
    assert sorted(p.name for p in (tmp_path / "run" / "taskruns").iterdir() if p.name.startswith("fan-")) == [
        "fan-0-1",
        "fan-1-1",
        "fan-1-2",
        "fan-2-1",
    ]  # fmt: skip  (c ran too, as in Tekton, where every TaskRun of a matrix starts at once)
    assert outcome.task("aggregate").status == SKIPPED and not (shared / "aggregated.txt").exists()
    assert (shared / "final.txt").read_text().split() == ["Failed", "fan=Failed", "aggregate=None"]


def test_a_summary_over_tektons_result_limit_fails_its_taskrun_in_one_line(tmp_path):
    outcome, _, _ = fan_out(tmp_path, ["a"], size=4096 - 200)
    assert outcome.task("fan").status == SUCCEEDED  # it just fits, beside the step's start time
    outcome, _, _ = fan_out(tmp_path, ["a", "b"], size=4096)
    fan = outcome.task("fan")
    assert fan.status == FAILED
    (line,) = fan.reason.splitlines()
    assert line.startswith("fan-0 (part=a): its results take 42")
    assert (
        "over its 4096-byte limit (a step's termination message): hand large values on in a workspace" in line
    )
    assert "fan-1 (part=b)" in line


def test_an_empty_matrix_skips_its_task_and_those_that_need_its_results(tmp_path):
    outcome, log, _ = fan_out(tmp_path, [])
    assert outcome.task("fan").status == SKIPPED and "its matrix has no values" in log
    assert outcome.task("aggregate").status == SKIPPED


def test_arrays_and_matrices_that_are_not_arrays_are_refused(tmp_path):
    outcome, _, _ = fan_out(tmp_path, {"not": "a list"})  # type: ignore[arg-type]
    assert (
        outcome.task("parts").reason
        == 'result parts: \'{"not": "a list"}\' is not an array of strings (a JSON list)'
    )
    assert outcome.task("fan").status == SKIPPED

    def lookup(var: tuple[str, ...]) -> str | None:
        return "1" if var == ("params", "x") else None

    with pytest.raises(UserError, match="matrix param part needs an array, got '1'"):
        tekton.matrix_combinations({"name": "t", "matrix": {"params": [{"name": "part", "value": "$(params.x)"}]}},
                                   lookup)  # fmt: skip
    with pytest.raises(UserError, match="matrix.include is not run locally"):
        tekton.matrix_combinations(
            {"name": "t", "matrix": {"include": [{"name": "i", "params": []}]}}, lookup
        )
    spec = {"params": [{"name": "a", "type": "array"}, {"name": "s", "default": "d"}]}
    assert tekton.task_params("t", spec, {"a": ["1", "2"]}) == {"a": ["1", "2"], "s": "d"}
    with pytest.raises(UserError, match="param a is an array param, given '1'"):
        tekton.task_params("t", spec, {"a": "1"})
    with pytest.raises(UserError, match=r"param s is a string param, given \['x'\]"):
        tekton.task_params("t", spec, {"a": [], "s": ["x"]})
    combos = tekton.matrix_combinations(
        {"name": "t", "matrix": {"params": [{"name": "os", "value": ["linux", "mac"]}, {"name": "n", "value": ["1", "2"]}]}},
        lookup,
    )  # fmt: skip
    assert combos == [
        {"os": "linux", "n": "1"},
        {"os": "linux", "n": "2"},
        {"os": "mac", "n": "1"},
        {"os": "mac", "n": "2"},
    ]
