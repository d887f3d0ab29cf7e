"""`pitlane release start` / `status` through the kubernetes client, against a FAKE Kubernetes API server
(tests/fakes/fake_kubernetes.py): the PipelineRun the TriggerTemplate makes, followed TaskRun by TaskRun."""

from __future__ import annotations

import pytest
from fakes.fake_kubernetes import FakeKubernetes

from pitlane.cli import main

START = ["--repo-url", "https://github.com/pitlane/pitlane.git", "--poll", "0.01"]


@pytest.fixture
def k8s(tmp_path):
    fake = FakeKubernetes()
    yield fake, fake.kubeconfig(tmp_path / "kubeconfig")
    fake.stop()


def test_start_creates_the_template_pipelinerun_and_follows_it(k8s, capsys):
    fake, kubeconfig = k8s
    assert main(["release", "start", "v1.2.3", "--kubeconfig", str(kubeconfig), *START]) == 0
    out = capsys.readouterr().out
    (name,) = fake.objects["pipelineruns"]
    assert f"started PipelineRun {name} in pitlane-release" in out
    run = fake.objects["pipelineruns"][name]
    assert name.startswith("pitlane-release-v1.2.3-")
    assert run["metadata"]["labels"]["pitlane.dev/release"] == "v1.2.3"
    params = {p["name"]: p["value"] for p in run["spec"]["params"]}
    assert params == {
        "revision": "v1.2.3",
        "repo-url": "https://github.com/pitlane/pitlane.git",
        "github-repo": "pitlane/pitlane",
    }
    fake.script(name, [
        {"task": "fetch-source", "reason": "Running"},
        {"task": "fetch-source", "reason": "Succeeded", "status": "True", "logs": {"clone": "fetched v1.2.3 at abc123", "plan": "images unchanged (model-only)"}},
        {"task": "gate-part", "index": 0, "reason": "Succeeded", "status": "True", "logs": {"drive": "PART generated_track: 4/4 checks passed"}},
        {"task": "gate-part", "index": 1, "reason": "Succeeded", "status": "True", "logs": {"drive": "PART mini_monaco: 4/4 checks passed"}},
        {"task": "gate-model", "reason": "Failed", "status": "False", "message": "step gate exited 1", "logs": {"gate": "laps_completed 0 >= 1 FAIL"}},
        {"run": ("False", "Failed", "Tasks Completed: 3 (Failed: 1)"), "skipped": [{"name": "build-sim", "reason": "When Expressions evaluated to false"}]},
    ])  # fmt: skip
    code = main(
        ["release", "status", "v1.2.3", "--follow", "--kubeconfig", str(kubeconfig), "--poll", "0.01"]
    )
    out = capsys.readouterr().out
    assert code == 1
    lines = out.splitlines()
    assert "[fetch-source] Running" in lines and "[fetch-source] Succeeded" in lines
    assert "[fetch-source : clone] fetched v1.2.3 at abc123" in lines
    assert "[gate-part-0] Succeeded" in lines and "[gate-part-1] Succeeded" in lines  # a matrix's TaskRuns
    assert "[gate-part-1 : drive] PART mini_monaco: 4/4 checks passed" in lines
    assert "[gate-model] Failed: step gate exited 1" in lines
    assert "[gate-model : gate] laps_completed 0 >= 1 FAIL" in lines
    assert "[build-sim] Skipped: When Expressions evaluated to false" in lines
    assert lines[-1].startswith(f"[pipelinerun] {name} Failed")
    assert lines.count("[fetch-source : clone] fetched v1.2.3 at abc123") == 1  # each log once


def test_status_of_a_running_and_an_unknown_release(k8s, capsys):
    fake, kubeconfig = k8s
    assert main(["release", "start", "v1.0.0", "--kubeconfig", str(kubeconfig), *START]) == 0
    assert main(["release", "status", "v1.0.0", "--kubeconfig", str(kubeconfig)]) == 3  # still running
    assert main(["release", "status", "v9.9.9", "--kubeconfig", str(kubeconfig)]) == 2
    assert "no PipelineRun for v9.9.9" in capsys.readouterr().err


def test_cluster_errors_are_one_line(k8s, tmp_path, capsys):
    fake, kubeconfig = k8s
    fake.token = "rotated"
    assert main(["release", "start", "v1.0.0", "--kubeconfig", str(kubeconfig), *START]) == 2
    assert "Kubernetes API: create PipelineRun in pitlane-release: HTTP 401" in capsys.readouterr().err
    assert main(["release", "start", "v1.0", "--kubeconfig", str(kubeconfig), *START]) == 2
    assert "not semantic versioning" in capsys.readouterr().err
    assert main(["release", "status", "--kubeconfig", str(tmp_path / "none")]) == 2
    assert "no Kubernetes cluster configured" in capsys.readouterr().err
