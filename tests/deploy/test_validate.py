"""Offline schema checks: a misspelt field fails for core kinds, Argo CD and policy-controller objects alike."""

from __future__ import annotations

import copy

import pytest

from pitlane.deploy.render import docs, kustomize, render_overlay
from pitlane.deploy.validate import check_objects, schema_problems, workload_problems

from .conftest import ARGOCD


@pytest.fixture(scope="module")
def pi_car():
    return {o["kind"]: o for o in render_overlay(ARGOCD, "pi-car").objects}


@pytest.fixture(scope="module")
def bootstrap():
    return {o["kind"]: o for o in docs(kustomize(ARGOCD / "bootstrap"))}


def test_repository_objects_are_valid(pi_car, bootstrap):
    assert check_objects("pi-car", list(pi_car.values())) == []
    assert check_objects("bootstrap", list(bootstrap.values())) == []


@pytest.mark.parametrize(
    ("kind", "path", "bad_key"),
    [
        ("ClusterImagePolicy", ["spec", "authorities", 0], "signatureFormatt"),
        ("ClusterImagePolicy", ["spec"], "imagez"),
    ],
)
def test_misspelt_policy_field_fails(pi_car, kind, path, bad_key):
    obj = copy.deepcopy(pi_car[kind])
    node = obj
    for p in path:
        node = node[p]
    node[bad_key] = "legacy"
    problems = schema_problems(obj)
    assert problems and bad_key in problems[0] and "not allowed" in problems[0], problems


@pytest.mark.parametrize(
    ("kind", "mutate", "where"),
    [
        (
            "ApplicationSet",
            lambda o: o["spec"]["template"]["spec"]["syncPolicy"]["automated"].update(prunee=True),
            "prunee",
        ),
        ("ApplicationSet", lambda o: o["spec"]["generators"][0]["git"].update(file=[]), "file"),
        ("AppProject", lambda o: o["spec"].update(sourceRepo=["x"]), "sourceRepo"),
        ("ApplicationSet", lambda o: o["spec"].update(goTemplate="yes"), "goTemplate"),
    ],
)
def test_misspelt_argocd_field_fails(bootstrap, kind, mutate, where):
    obj = copy.deepcopy(bootstrap[kind])
    mutate(obj)
    problems = schema_problems(obj)
    assert problems and where in problems[0], problems


def test_core_kinds_are_strict(pi_car):
    dep = copy.deepcopy(pi_car["Deployment"])
    dep["spec"]["replicas"] = "two"
    assert "spec.replicas" in schema_problems(dep)[0]
    dep = copy.deepcopy(pi_car["Deployment"])
    dep["spec"]["template"]["spec"]["containers"][0]["imagee"] = "x"
    assert "imagee" in schema_problems(dep)[0]


def test_workload_rules(pi_car):
    dep = copy.deepcopy(pi_car["Deployment"])
    car = dep["spec"]["template"]["spec"]["containers"][0]
    car["image"] = "registry.example/pitlane/car:latest"
    del car["resources"]["limits"]["memory"]
    car["securityContext"]["allowPrivilegeEscalation"] = True
    problems = workload_problems(dep)
    assert problems == [
        "spec.template.spec.containers[car].image: 'registry.example/pitlane/car:latest' is not pinned by digest "
        "(REPO@sha256:<64 hex>)",
        "spec.template.spec.containers[car].resources.limits.memory: missing",
        "spec.template.spec.containers[car].securityContext.allowPrivilegeEscalation: must be false",
    ]
    del car["securityContext"]
    assert "spec.template.spec.containers[car].securityContext: missing" in workload_problems(dep)
    labelled = check_objects("overlay pi-car", [dep])
    assert labelled[0].startswith("overlay pi-car: Deployment pitlane/pitlane-car: spec.template")
