"""pipelines/ as Kubernetes would take it: every object validates against the upstream CRD schemas with
unknown fields rejected, every reference resolves, the TriggerTemplate's PipelineRun is valid, and
@ibm/tekton-lint (when installed) is clean."""

from __future__ import annotations

import copy
import functools
import json
import shutil
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest

from pitlane.release import tekton

ROOT = Path(__file__).resolve().parents[2]
PIPELINES = ROOT / "pipelines"
SCHEMAS = ROOT / "pitlane" / "deploy" / "schemas"
OBJECTS = tekton.load(PIPELINES)


def schema_for(doc: dict) -> dict | None:
    group, _, version = doc["apiVersion"].rpartition("/")
    return _schema(group, doc["kind"], version)


@functools.cache
def _schema(group: str, kind: str, version: str) -> dict | None:
    path = SCHEMAS / group / f"{kind}.{version}.json"
    return json.loads(path.read_text()) if path.is_file() else None


@functools.cache
def _validator(group: str, kind: str, version: str) -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(_schema(group, kind, version))


def validate(doc: dict) -> None:
    group, _, version = doc["apiVersion"].rpartition("/")
    if _schema(group, doc["kind"], version) is not None:
        error = jsonschema.exceptions.best_match(_validator(group, doc["kind"], version).iter_errors(doc))
        if error is not None:
            raise error
        return
    import kubernetes_validate

    kubernetes_validate.validate(doc, "1.30", strict=True)


@pytest.mark.parametrize("doc", OBJECTS.docs, ids=lambda d: f"{d['kind']}/{d['metadata']['name']}")
def test_every_object_validates(doc):
    validate(doc)


def test_tekton_kinds_have_vendored_schemas():
    for doc in OBJECTS.docs:
        if doc["apiVersion"].startswith("tekton.dev/"):
            assert schema_for(doc) is not None, doc["kind"]
    assert {d["kind"] for d in OBJECTS.docs} >= {
        "Task", "Pipeline", "EventListener", "TriggerBinding", "TriggerTemplate", "ServiceAccount", "Role", "RoleBinding",
    }  # fmt: skip


def test_misspelt_field_fails():
    pipeline = copy.deepcopy(OBJECTS.get("Pipeline", "pitlane-release"))
    pipeline["spec"]["tasks"][0]["taskReff"] = pipeline["spec"]["tasks"][0].pop("taskRef")
    with pytest.raises(jsonschema.ValidationError, match="taskReff"):
        validate(pipeline)
    task = copy.deepcopy(OBJECTS.get("Task", "pitlane-gate-model"))
    task["spec"]["steps"][0]["scritp"] = task["spec"]["steps"][0].pop("script")
    with pytest.raises(jsonschema.ValidationError, match="scritp"):
        validate(task)


def test_every_reference_resolves():
    assert tekton.check_all(OBJECTS) == []


def test_reference_checker_catches_mistakes():
    task = copy.deepcopy(OBJECTS.get("Task", "pitlane-sign-model"))
    task["spec"]["steps"][0]["script"] += (
        "\necho $(params.modle) $(results.nope.path) $(workspaces.keys.path)\n"
    )
    problems = tekton.check_task(task)
    assert any("params.modle" in p for p in problems)
    assert any("results.nope" in p for p in problems)
    assert any("workspaces.keys" in p for p in problems)
    pipeline = copy.deepcopy(OBJECTS.get("Pipeline", "pitlane-release"))
    gate = next(t for t in pipeline["spec"]["tasks"] if t["name"] == "gate-model")
    gate["params"][0]["value"] = "$(tasks.fetch-source.results.modl)"
    gate["runAfter"] = ["fetch-sauce"]
    gate["params"].append({"name": "extra", "value": "$(params.nope)"})
    objects = tekton.Objects(tuple(d if d["kind"] != "Pipeline" else pipeline for d in OBJECTS.docs))
    text = "\n".join(tekton.check_pipeline(pipeline, objects))
    assert "has no result modl" in text
    assert "runAfter fetch-sauce" in text
    assert "param extra is not a param" in text
    assert "$(params.nope) is not a Pipeline param" in text


def test_secrets_never_come_from_params():
    for task in OBJECTS.of_kind("Task"):
        for p in task["spec"].get("params", []):
            assert not any(word in p["name"] for word in ("token", "password", "key", "secret")), p["name"]
    text = "".join(p.read_text() for p in PIPELINES.glob("*.yaml"))
    assert "secretKeyRef" in text
    assert "secretName: pitlane-model-signing-key" in text and "secretName: pitlane-image-signing-key" in text


def test_trigger_template_makes_a_valid_pipelinerun():
    run = tekton.pipelinerun(
        OBJECTS, {"revision": "v1.2.3", "repo-url": "https://github.com/o/r.git", "github-repo": "o/r"}
    )
    validate(run)
    assert run["metadata"]["labels"]["pitlane.dev/release"] == "v1.2.3"
    pipeline = OBJECTS.get("Pipeline", run["spec"]["pipelineRef"]["name"])
    declared = {p["name"] for p in pipeline["spec"]["params"]}
    assert {p["name"] for p in run["spec"]["params"]} <= declared
    required = {w["name"] for w in pipeline["spec"]["workspaces"] if not w.get("optional")}
    assert required <= {w["name"] for w in run["spec"]["workspaces"]}


def test_triggers_wire_up():
    listener = OBJECTS.get("EventListener", "pitlane-release")
    trigger = listener["spec"]["triggers"][0]
    binding = OBJECTS.get("TriggerBinding", trigger["bindings"][0]["ref"])
    template = OBJECTS.get("TriggerTemplate", trigger["template"]["ref"])
    assert {p["name"] for p in binding["spec"]["params"]} == {p["name"] for p in template["spec"]["params"]}
    interceptors = {
        i["ref"]["name"]: {p["name"]: p["value"] for p in i.get("params", [])}
        for i in trigger["interceptors"]
    }
    assert interceptors["github"]["eventTypes"] == ["push"] and "secretRef" in interceptors["github"]
    assert "refs/tags/v" in interceptors["cel"]["filter"]
    account = listener["spec"]["serviceAccountName"]
    assert account in {d["metadata"]["name"] for d in OBJECTS.of_kind("ServiceAccount")}


@pytest.mark.slow
@pytest.mark.skipif(
    not (ROOT.parent / "shared" / "schemas").is_dir(), reason="no ../shared/schemas (CI has it)"
)
def test_vendored_schemas_match_a_fresh_extraction(tmp_path):
    shared = ROOT.parent / "shared" / "schemas"
    subprocess.run([sys.executable, str(ROOT / "tools" / "extract_crd_schemas.py"), "--schemas", str(shared),
                    "--out", str(tmp_path), "tekton", "tekton-triggers"], check=True, capture_output=True)  # fmt: skip
    for group in ("tekton.dev", "triggers.tekton.dev"):
        fresh = sorted(p.name for p in (tmp_path / group).glob("*.json"))
        assert fresh == sorted(p.name for p in (SCHEMAS / group).glob("*.json"))
        for name in fresh:
            assert (tmp_path / group / name).read_text() == (SCHEMAS / group / name).read_text(), name


@pytest.mark.skipif(
    not shutil.which("tekton-lint"),
    reason="@ibm/tekton-lint is not installed (npm install -g @ibm/tekton-lint)",
)
def test_tekton_lint_is_clean(tmp_path):
    """Clean with the repository's .tektonlintrc.yaml; with every rule on, its only findings are the two it
    makes of a matrix (its 1.1.0, the latest, predates them): the param the matrix gives, and `[*]`."""
    lint = ["tekton-lint", str(PIPELINES / "*.yaml")]
    proc = subprocess.run([*lint, "--config", str(ROOT)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "problem" not in proc.stdout, proc.stdout
    strict = subprocess.run([*lint, "--config", str(tmp_path), "--format", "json"], capture_output=True,
                            text=True, timeout=120)  # fmt: skip
    findings = sorted((f["rule"], f["message"]) for f in json.loads(strict.stdout))
    assert [rule for rule, _ in findings] == [
        "no-missing-param",
        "no-undefined-result",
        "no-undefined-result",
    ]
    assert "parameter 'part' is not supplied (it's a required param in 'pitlane-gate-part')" in findings[0][1]
    assert "'parts[*]' is not a result in Task 'gate-parts'" in findings[1][1]
    assert "'summary[*]' is not a result in Task 'gate-part'" in findings[2][1]


def test_the_gate_fans_out_with_a_matrix_and_aggregates_its_summaries():
    """gate-parts lists the parts, gate-part runs once per part (its `part` from the matrix alone), gate-model
    takes every summary as an array; sign-model and the notes read gate-model as before."""
    pipeline = OBJECTS.get("Pipeline", "pitlane-release")
    tasks = {t["name"]: t for t in pipeline["spec"]["tasks"]}
    part = tasks["gate-part"]
    assert part["matrix"] == {"params": [{"name": "part", "value": "$(tasks.gate-parts.results.parts[*])"}]}
    assert "part" not in {p["name"] for p in part["params"]}
    params = {p["name"]: p["value"] for p in tasks["gate-model"]["params"]}
    assert params["summaries"] == "$(tasks.gate-part.results.summary[*])"
    for name in ("gate-parts", "gate-part", "gate-model"):  # the same candidate and policy, from fetch-source
        given = {p["name"]: p["value"] for p in tasks[name]["params"]}
        assert given["model"] == "$(tasks.fetch-source.results.model)"
        assert given["policy"] == "$(tasks.fetch-source.results.gate-policy)"
    sign = {p["name"]: p["value"] for p in tasks["sign-model"]["params"]}
    assert sign["report-digest"] == "$(tasks.gate-model.results.report-digest)"
    results = {r["name"]: r for r in OBJECTS.get("Task", "pitlane-gate-part")["spec"]["results"]}
    assert results["summary"].get("type", "string") == "string"  # Tekton collects only strings of a matrix
    assert OBJECTS.get("Task", "pitlane-gate-parts")["spec"]["results"][0]["type"] == "array"
    statuses = {p["name"]: p["value"] for p in pipeline["spec"]["finally"][0]["params"]}["task-statuses"]
    assert "gate-parts=$(tasks.gate-parts.status) gate-part=$(tasks.gate-part.status)" in statuses
    broken = copy.deepcopy(pipeline)
    gate = next(t for t in broken["spec"]["tasks"] if t["name"] == "gate-model")
    gate["params"][2]["value"] = "$(tasks.gate-part.results.summary)"
    assert tekton.check_pipeline(broken, OBJECTS) == [
        "Pipeline pitlane-release task gate-model: param summaries is an array param of Task pitlane-gate-model, "
        "given '$(tasks.gate-part.results.summary)'",
        "Pipeline pitlane-release task gate-model: $(tasks.gate-part.results.summary): a matrixed task's string "
        "results are taken whole, as summary[*]",
    ]
