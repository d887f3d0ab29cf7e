"""The fleet on the NUC as rendered: Mosquitto and the fleet service from the sim image, their volumes and
Services, NetworkPolicies that admit only the cars, credentials from a Secret that is never in git."""

from __future__ import annotations

from pitlane.cli import build_parser, main
from pitlane.deploy.render import docs, render_overlay

from .conftest import ARGOCD


def by_name(objects):
    return {(o["kind"], o["metadata"]["name"]): o for o in objects}


def test_pitlane_deploy_render_nuc_shows_the_fleet(capsys):
    assert main(["deploy", "render", "nuc", "--root", str(ARGOCD.parent)]) == 0
    objs = by_name(docs(capsys.readouterr().out))
    for key in (
        ("Deployment", "pitlane-mosquitto"),
        ("Deployment", "pitlane-fleet"),
        ("PersistentVolumeClaim", "pitlane-mosquitto-data"),
        ("PersistentVolumeClaim", "pitlane-fleet-data"),
        ("Service", "pitlane-mqtt"),
        ("Service", "pitlane-fleet"),
        ("NetworkPolicy", "pitlane-fleet-from-cars"),
        ("NetworkPolicy", "pitlane-mqtt-from-ingest"),
        ("ConfigMap", "pitlane-fleet"),
    ):
        assert key in objs, key
    assert not [k for k in objs if k[0] == "Secret"]  # credentials never come from git


def test_the_fleet_runs_pitlane_commands_of_the_sim_image_with_the_secret_as_a_folder():
    objs = by_name(render_overlay(ARGOCD, "nuc-sim").objects)
    parser = build_parser()
    registry = objs[("ConfigMap", "pitlane-fleet")]["data"]["registry"]
    for name, command in (("pitlane-mosquitto", "broker"), ("pitlane-fleet", "serve")):
        pod = objs[("Deployment", name)]["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        assert "/pitlane/sim@sha256:" in container["image"]
        args = [a.replace("$(PITLANE_FLEET_REGISTRY)", registry) for a in container["args"]]
        parsed = parser.parse_args(args)  # a command the image's entrypoint (pitlane's CLI) accepts
        assert (parsed.command, parsed.fleet_command) == ("fleet", command)
        assert str(parsed.passwd) == "/etc/pitlane-fleet/passwd" and parsed.host == "0.0.0.0"
        mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
        assert "subPath" not in mounts["/etc/pitlane-fleet"]  # an updated Secret reaches the running pod
        volumes = {v["name"]: v for v in pod["volumes"]}
        assert volumes["credentials"]["secret"]["secretName"] == "pitlane-fleet-credentials"
        assert "persistentVolumeClaim" in volumes[mounts["/var/lib/pitlane-fleet"]["name"]]
    fleet = objs[("Deployment", "pitlane-fleet")]["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e for e in fleet["env"]}
    assert env["PITLANE_FLEET_INGEST_PASSWORD"]["valueFrom"]["secretKeyRef"] == {
        "name": "pitlane-fleet-credentials",
        "key": "ingest-password",
    }
    assert "--broker" in fleet["args"] and "pitlane-mqtt.pitlane.svc:1883" in fleet["args"]


def test_only_the_cars_reach_the_broker_and_the_gateway():
    objs = by_name(render_overlay(ARGOCD, "nuc-sim").objects)
    policy = objs[("NetworkPolicy", "pitlane-fleet-from-cars")]["spec"]
    assert policy["podSelector"]["matchExpressions"][0]["values"] == ["pitlane-mosquitto", "pitlane-fleet"]
    (rule,) = policy["ingress"]
    assert {p["port"] for p in rule["ports"]} == {1883, 5001}
    sources = rule["from"]
    assert {"podSelector": {"matchLabels": {"app.kubernetes.io/name": "pitlane-car"}}} in sources
    assert [s["ipBlock"]["cidr"] for s in sources if "ipBlock" in s]  # the cars' network, named once
    # every other policy that selects a fleet pod opens only the ingest's MQTT or the read-only page
    for (kind, name), obj in objs.items():
        if kind != "NetworkPolicy" or name == "pitlane-fleet-from-cars":
            continue
        selected = obj["spec"]["podSelector"].get("matchLabels", {}).get("app.kubernetes.io/name")
        if selected in ("pitlane-mosquitto", "pitlane-fleet"):
            ports = {p["port"] for r in obj["spec"]["ingress"] for p in r["ports"]}
            assert (selected, ports) in (("pitlane-mosquitto", {1883}), ("pitlane-fleet", {8080})), name
    # NodePorts keep the car's own address, which the ipBlock checks
    for service in ("pitlane-mqtt", "pitlane-fleet"):
        assert objs[("Service", service)]["spec"]["externalTrafficPolicy"] == "Local"
