"""The car's console in the cluster (docs/threat-model.md, "Console"): reachable only from what each overlay
names, listening on every address of the pod only there, logged into with the per-car Secret."""

from __future__ import annotations

import ipaddress

import pytest

from pitlane.deploy.render import overlays, render_overlay

from .conftest import ARGOCD

CONSOLE_PORT = 8887


def by_name(objects):
    return {(o["kind"], o["metadata"]["name"]): o for o in objects}


def console_sources(policy: dict) -> list[dict]:
    """Every source the console's NetworkPolicy admits; fails on a rule that admits anyone."""
    sources = []
    for rule in policy["spec"].get("ingress") or []:
        assert rule.get("from"), f"an ingress rule without `from` admits every source: {rule}"
        assert [p["port"] for p in rule.get("ports") or []] == [CONSOLE_PORT], rule
        sources += rule["from"]
    return sources


@pytest.mark.parametrize("overlay", overlays(ARGOCD))
def test_only_the_named_clients_reach_the_console(overlay):
    objs = by_name(render_overlay(ARGOCD, overlay).objects)
    deny = objs[("NetworkPolicy", "pitlane-default-deny-ingress")]["spec"]
    assert deny == {"podSelector": {}, "policyTypes": ["Ingress"]}
    sources = console_sources(objs[("NetworkPolicy", "pitlane-car-web")])
    assert sources, "the overlay names no console client"
    for source in sources:
        assert set(source) <= {"ipBlock", "podSelector"}, source  # no namespaceSelector: any namespace
        if "ipBlock" in source:
            network = ipaddress.ip_network(source["ipBlock"]["cidr"])
            assert network.prefixlen >= 8, f"{overlay}: {network} is (nearly) everyone"
        else:
            assert source["podSelector"] == {"matchLabels": {"pitlane.dev/console-client": "true"}}
    # the pod must see the client's own address for the ipBlock to mean anything
    assert objs[("Service", "pitlane-car-web")]["spec"]["externalTrafficPolicy"] == "Local"


@pytest.mark.parametrize("overlay", overlays(ARGOCD))
def test_the_car_logs_operators_in_with_its_secret_and_listens_for_the_service(overlay):
    objs = by_name(render_overlay(ARGOCD, overlay).objects)
    container = objs[("Deployment", "pitlane-car")]["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e for e in container["env"]}
    token = env["PITLANE_CONSOLE_TOKEN"]
    assert "value" not in token  # never a literal in git
    assert token["valueFrom"]["secretKeyRef"] == {"name": "pitlane-console", "key": "token"}  # not optional
    assert env["WEB_CONTROL_ADDRESS"]["value"] == "0.0.0.0"


def test_an_overlay_admitting_everyone_fails_the_check():
    wide_open = {"spec": {"ingress": [{"ports": [{"port": CONSOLE_PORT}]}]}}
    with pytest.raises(AssertionError, match="admits every source"):
        console_sources(wide_open)
