"""The NUC's RayCluster for evaluations: rendered with the nuc target, pinned, limited and restricted like
every workload, schema-checked against KubeRay's CRD, and reachable from the notebooks only."""

from __future__ import annotations

import copy

import pytest

from pitlane.cli import main
from pitlane.deploy.render import render, render_overlay
from pitlane.deploy.validate import check_objects, schema_problems, workload_problems

from .conftest import ARGOCD


@pytest.fixture(scope="module")
def nuc():
    return {(o["kind"], o["metadata"]["name"]): o for o in render(ARGOCD, "nuc").objects}


def test_the_nuc_runs_a_raycluster_of_the_notebook_image(nuc):
    ray = nuc[("RayCluster", "pitlane-ray")]
    assert ray["apiVersion"] == "ray.io/v1" and ray["metadata"]["namespace"] == "pitlane"
    head = ray["spec"]["headGroupSpec"]
    workers = ray["spec"]["workerGroupSpecs"]
    assert head["rayStartParams"]["num-cpus"] == "0"  # the head schedules, workers drive
    assert ray["spec"]["authOptions"] == {"mode": "token"}  # Ray's token besides the NetworkPolicy
    pods = [head["template"]["spec"]] + [g["template"]["spec"] for g in workers]
    for pod in pods:
        (container,) = pod["containers"]
        assert "/pitlane/notebook@sha256:" in container["image"]  # pinned by ../pins
        assert pod["nodeSelector"] == {"kubernetes.io/arch": "amd64"}
        assert pod["automountServiceAccountToken"] is False
        assert container["resources"]["limits"]["cpu"] and container["resources"]["limits"]["memory"]
    assert (
        sum(
            g["replicas"] * int(g["template"]["spec"]["containers"][0]["resources"]["limits"]["cpu"])
            for g in workers
        )
        == 4
    )
    assert check_objects("nuc", [ray]) == []
    assert not [o for o in render_overlay(ARGOCD, "pi-car").objects if o["kind"] == "RayCluster"]


def test_only_the_notebooks_and_the_hub_reach_the_ray_head(nuc):
    outside = nuc[("NetworkPolicy", "pitlane-ray-from-notebooks")]["spec"]
    assert outside["podSelector"]["matchLabels"] == {
        "ray.io/cluster": "pitlane-ray",
        "ray.io/node-type": "head",
    }
    (rule,) = outside["ingress"]
    sources = [peer["podSelector"]["matchLabels"] for peer in rule["from"]]
    assert sources == [
        {"app.kubernetes.io/component": "singleuser-server"},
        {"app.kubernetes.io/name": "pitlane-hub"},
    ]
    assert sorted(p["port"] for p in rule["ports"]) == [8265, 10001]
    inside = nuc[("NetworkPolicy", "pitlane-ray-internal")]["spec"]
    assert inside["ingress"] == [
        {"from": [{"podSelector": {"matchLabels": {"ray.io/cluster": "pitlane-ray"}}}]}
    ]
    deny = nuc[("NetworkPolicy", "pitlane-default-deny-ingress")]["spec"]
    assert deny["podSelector"] == {} and deny["policyTypes"] == ["Ingress"]


@pytest.mark.parametrize(
    ("mutate", "where"),
    [
        (lambda s: s["headGroupSpec"].update(rayStartParam={}), "rayStartParam"),
        (lambda s: s["workerGroupSpecs"][0].update(replica=3), "replica"),
        (lambda s: s.update(workerGroupSpec=[]), "workerGroupSpec"),
        (lambda s: s["workerGroupSpecs"][0].pop("groupName"), "groupName"),
    ],
)
def test_a_misspelt_raycluster_field_fails_kuberays_schema(nuc, mutate, where):
    ray = copy.deepcopy(nuc[("RayCluster", "pitlane-ray")])
    mutate(ray["spec"])
    problems = schema_problems(ray)
    assert problems and where in problems[0], problems


def test_raycluster_pods_follow_the_workload_rules(nuc):
    ray = copy.deepcopy(nuc[("RayCluster", "pitlane-ray")])
    head = ray["spec"]["headGroupSpec"]["template"]["spec"]["containers"][0]
    worker = ray["spec"]["workerGroupSpecs"][0]["template"]["spec"]["containers"][0]
    head["image"] = "rayproject/ray:2.60.0"
    del worker["resources"]["limits"]["memory"]
    worker["securityContext"]["allowPrivilegeEscalation"] = True
    assert workload_problems(ray) == [
        "spec.headGroupSpec.template.spec.containers[ray-head].image: 'rayproject/ray:2.60.0' is not pinned "
        "by digest (REPO@sha256:<64 hex>)",
        "spec.workerGroupSpecs[eval].template.spec.containers[ray-worker].resources.limits.memory: missing",
        "spec.workerGroupSpecs[eval].template.spec.containers[ray-worker].securityContext."
        "allowPrivilegeEscalation: must be false",
    ]


def test_deploy_render_nuc_shows_the_raycluster(capsys):
    assert main(["deploy", "render", "nuc", "--root", str(ARGOCD.parent)]) == 0
    out = capsys.readouterr().out
    assert "kind: RayCluster" in out and "name: pitlane-ray" in out


def test_the_clients_ray_is_the_clusters():
    """A Ray client and its cluster must run one Ray: pitlane[ray], the lock's dev package and rayVersion."""
    import json
    import tomllib

    from .conftest import REPO

    extra = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]["ray"]
    locked = json.loads((REPO / "Pipfile.lock").read_text())["develop"]["ray"]["version"]
    cluster = next(o for o in render_overlay(ARGOCD, "nuc-sim").objects if o["kind"] == "RayCluster")
    assert extra == [f"ray[default]{locked}"] and locked == "==" + cluster["spec"]["rayVersion"]
