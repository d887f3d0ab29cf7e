"""Tekton objects as pitlane reads them: variables found and substituted (a shell's `$(...)` left alone), and
every param, result, workspace and task a Task or Pipeline references checked against what is declared."""

from __future__ import annotations

import textwrap
from typing import Any

import pytest

from pitlane.errors import UserError
from pitlane.release import tekton

TASK: dict[str, Any] = {
    "kind": "Task",
    "metadata": {"name": "build"},
    "spec": {
        "params": [{"name": "tag"}, {"name": "arch", "default": "amd64"}],
        "results": [{"name": "digest"}],
        "workspaces": [{"name": "source"}, {"name": "cache", "optional": True}],
        "steps": [
            {"script": "make $(params.tag) > $(results.digest.path); cd $(workspaces.source.path); $(date)"}
        ],
    },
}


def pipeline(tasks: list[dict], **spec) -> dict:
    return {
        "kind": "Pipeline",
        "metadata": {"name": "p"},
        "spec": {"params": [{"name": "version"}], "workspaces": [{"name": "ws"}], "tasks": tasks, **spec},
    }


def build(name: str = "b", **extra) -> dict:
    return {
        "name": name,
        "taskRef": {"name": "build"},
        "params": [{"name": "tag", "value": "$(params.version)"}],
        "workspaces": [{"name": "source", "workspace": "ws"}],
        **extra,
    }


def test_variable_names_in_both_spellings():
    assert tekton.variable_name("params.x") == ("params", "x")
    assert tekton.variable_name("params['x']") == ("params", "x")
    assert tekton.variable_name("tasks.t.results.r") == ("tasks", "t", "results", "r")
    assert sorted(tekton.variables({"a": ["$(params.x)", {"b": "$(tasks.t.status)"}], "c": 1})) == [
        ("params", "x"),
        ("tasks", "t", "status"),
    ]


def test_substitute_names_where_an_unknown_variable_is():
    values: dict[tuple[str, ...], str] = {("params", "x"): "1"}

    def lookup(name: tuple[str, ...]) -> str | None:
        return values.get(name)

    assert tekton.substitute("$(params.x) $(params['x']) $(ls)", lookup, "here") == "1 1 $(ls)"
    with pytest.raises(UserError, match=r"Task t: unknown variable \$\(params.y\)"):
        tekton.substitute("$(params.y)", lookup, "Task t")


def test_a_task_using_only_what_it_declares_has_no_problems():
    assert tekton.check_task(TASK) == []
    bad = {**TASK, "spec": {**TASK["spec"], "steps": [{"script": "$(params.nope) $(tasks.x.results.y)"}]}}
    assert tekton.check_task(bad) == [
        "Task build: $(params.nope) is not a declared param",
        "Task build: $(tasks.x.results.y) belongs in a Pipeline, not a Task",
    ]
    assert tekton.check_task({"metadata": {"name": "empty"}, "spec": {}}) == ["Task empty: no steps"]


def test_a_pipeline_is_checked_against_its_tasks():
    objects = tekton.Objects((TASK,))
    good = pipeline(
        [build(), build("c", runAfter=["b"], params=[{"name": "tag", "value": "$(tasks.b.results.digest)"}])],
        results=[{"name": "d", "value": "$(tasks.c.results.digest)"}],
    )
    assert tekton.check_pipeline(good, objects) == []
    bad = pipeline(
        [
            build(params=[{"name": "tag", "value": "$(params.nope)"}, {"name": "extra", "value": "1"}]),
            build("c", runAfter=["zz"], params=[], workspaces=[{"name": "source", "workspace": "other"}]),
            {"name": "d", "taskRef": {"name": "missing"}},
            build("e", params=[{"name": "tag", "value": "$(tasks.b.results.nothing)"}]),
        ]
    )
    assert tekton.check_pipeline(bad, objects) == [
        "Pipeline p task b: param extra is not a param of Task build",
        "Pipeline p task b: $(params.nope) is not a Pipeline param",
        "Pipeline p task c: Task build needs param tag (no default)",
        "Pipeline p task c: workspace other is not a Pipeline workspace",
        "Pipeline p task c: runAfter zz is not a task of the Pipeline",
        "Pipeline p task d: taskRef {'name': 'missing'} is not a Task in pipelines/",
        "Pipeline p task e: $(tasks.b.results.nothing): Task build has no result nothing",
    ]


def test_load_and_the_trigger_templates_pipelinerun(tmp_path):
    (tmp_path / "tt.yaml").write_text(
        textwrap.dedent(
            """
            kind: TriggerTemplate
            metadata: {name: pitlane-release}
            spec:
              params: [{name: revision}, {name: repo-url, default: "https://example.invalid/r.git"}]
              resourcetemplates:
                - kind: PipelineRun
                  metadata: {generateName: release-}
                  spec:
                    pipelineRef: {name: pitlane-release}
                    params: [{name: revision, value: $(tt.params.revision)}, {name: url, value: $(tt.params.repo-url)}]
            """
        )
    )
    objects = tekton.load(tmp_path)
    run = tekton.pipelinerun(objects, {"revision": "v1.2.0"})
    assert run["spec"]["params"] == [
        {"name": "revision", "value": "v1.2.0"},
        {"name": "url", "value": "https://example.invalid/r.git"},
    ]
    with pytest.raises(UserError, match="unknown param"):
        tekton.pipelinerun(objects, {"revision": "v1", "branch": "main"})
    with pytest.raises(UserError, match="revision need a value"):
        tekton.pipelinerun(objects, {})
    with pytest.raises(UserError, match="no Pipeline named 'x'"):
        objects.get("Pipeline", "x")
    (tmp_path / "broken.yaml").write_text("kind: Task\n")
    with pytest.raises(UserError, match="every document needs kind and metadata.name"):
        tekton.load(tmp_path)


def test_indexes_whole_arrays_and_the_size_tekton_keeps_results_in():
    assert tekton.split_index("summary[*]") == ("summary", "*")
    assert tekton.split_index("parts[12]") == ("parts", "12")
    assert tekton.split_index("model") == ("model", None)
    assert tekton.whole_array(" $(tasks.t.results.r[*]) ") == ("tasks", "t", "results", "r[*]")
    assert tekton.whole_array("x $(params.a[*])") is None and tekton.whole_array("$(params.a[0])") is None
    assert tekton.whole_array(["$(params.a[*])"]) is None
    assert tekton.array_value('["a", "b"]', "here") == ["a", "b"]
    for bad in ('{"a": 1}', "[1]", "a", None):
        with pytest.raises(UserError, match=r"here: .* is not an array of strings \(a JSON list\)"):
            tekton.array_value(bad, "here")
    # [{"key":"r","value":"<v>","type":1}] beside the step's start time; a quote takes two bytes, < six
    base = tekton.stored_size({"r": ""})
    assert base == len('[{"key":"r","value":"","type":1}]') + len(tekton.STARTED_AT) + 1
    assert tekton.stored_size({"r": 'a"b'}) == base + 4 and tekton.stored_size({"r": "<"}) == base + 6


ARRAYS: dict[str, Any] = {
    "kind": "Task",
    "metadata": {"name": "agg"},
    "spec": {
        "params": [{"name": "summaries", "type": "array"}, {"name": "part"}],
        "results": [{"name": "summary"}, {"name": "parts", "type": "array"}],
        "steps": [{"name": "s", "args": ["$(params.summaries[*])"], "env": [{"name": "P", "value": "$(params.part)"}],
                   "script": 'echo "$@" > $(results.summary.path)'}],
    },
}  # fmt: skip


def test_a_task_takes_a_whole_array_only_as_an_args_item_of_its_own():
    assert tekton.check_task(ARRAYS) == []
    step = {
        "name": "s",
        "args": ["--all=$(params.summaries[*])", "$(params.part[*])", "$(params.summaries[0])"],
        "env": [{"name": "S", "value": "$(params.summaries)"}, {"name": "P", "value": "$(params.part[1])"}],
        "script": "echo $(params.summaries[*])",
    }
    bad = {**ARRAYS, "spec": {**ARRAYS["spec"], "steps": [step]}}
    assert tekton.check_task(bad) == [
        "Task agg: $(params.part[*]): part is not an array param",
        "Task agg: $(params.summaries): summaries is an array param: $(params.NAME[*]) as an args item of its "
        "own, or $(params.NAME[N])",
        "Task agg: $(params.part[1]): part is a string param: no [N]",
        "Task agg step s: $(params.summaries[*]) must be an args item of its own",
    ]


def fan(**extra) -> dict:
    return {
        "name": "fan",
        "taskRef": {"name": "agg"},
        "matrix": {"params": [{"name": "part", "value": "$(tasks.list.results.parts[*])"}]},
        "params": [{"name": "summaries", "value": ["x"]}],
        **extra,
    }


def test_a_matrix_and_its_results_are_checked_as_tekton_takes_them():
    objects = tekton.Objects((TASK, ARRAYS))
    lister = {"name": "list", "taskRef": {"name": "agg"}, "params": [{"name": "summaries", "value": []},
              {"name": "part", "value": "p"}]}  # fmt: skip
    consume = {"name": "agg", "taskRef": {"name": "agg"}, "params": [
        {"name": "summaries", "value": "$(tasks.fan.results.summary[*])"},
        {"name": "part", "value": "$(tasks.list.results.parts[0])"}]}  # fmt: skip
    good = pipeline([lister, fan(), consume])
    assert tekton.check_pipeline(good, objects) == []  # `part` comes from the matrix: not missing
    wrong = [
        {**consume, "params": [{"name": "summaries", "value": "$(tasks.fan.results.summary)"},
                               {"name": "part", "value": "$(tasks.list.results.parts)"}]},
        fan(name="fan2", matrix={"params": [{"name": "part", "value": "one"}, {"name": "tag", "value": ["a"]}]},
            params=[{"name": "summaries", "value": "$(tasks.fan.results.summary[*])"}, {"name": "part", "value": "p"}]),
        fan(name="fan3", matrix={"params": [{"name": "summaries", "value": ["a"]},
                                            {"name": "part", "value": "$(tasks.list.results.summary[*])"}]}, params=[]),
    ]  # fmt: skip
    assert tekton.check_pipeline(pipeline([lister, fan(), *wrong]), objects) == [
        "Pipeline p task agg: param summaries is an array param of Task agg, given '$(tasks.fan.results.summary)'",
        "Pipeline p task agg: $(tasks.fan.results.summary): a matrixed task's string results are taken whole, "
        "as summary[*]",
        "Pipeline p task agg: $(tasks.list.results.parts): parts is an array result",
        "Pipeline p task fan2: param tag is not a param of Task agg",
        "Pipeline p task fan2: param part is in both params and matrix",
        "Pipeline p task fan2: matrix param part needs a list or one $(...[*]) as its value",
        "Pipeline p task fan3: matrix param summaries is an array param of Task agg (a matrix fans out strings)",
        "Pipeline p task fan3: $(tasks.list.results.summary[*]): summary is a string result",
    ]
