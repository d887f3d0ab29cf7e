"""Renders through `kubectl kustomize`: every overlay, every fleet target as its generated Application."""

from __future__ import annotations

import os
import shutil

import pytest

from pitlane.cli import main
from pitlane.deploy.fleet import load_fleet
from pitlane.deploy.render import (
    docs,
    fill_template,
    kustomize,
    overlays,
    render,
    render_overlay,
    render_target,
)
from pitlane.deploy.validate import is_digest_pinned
from pitlane.errors import UserError

from .conftest import ARGOCD


def by_name(objects):
    return {(o["kind"], o["metadata"]["name"]): o for o in objects}


def test_every_overlay_renders_with_pinned_images():
    assert overlays(ARGOCD) == ["nuc-sim", "pi-car"]
    for overlay in overlays(ARGOCD):
        objs = by_name(render_overlay(ARGOCD, overlay).objects)
        images = [
            c["image"]
            for o in objs.values()
            if o["kind"] == "Deployment"
            for c in o["spec"]["template"]["spec"]["containers"]
        ]
        assert images and all(is_digest_pinned(i) for i in images), images
        assert objs[("Namespace", "pitlane")]["metadata"]["labels"]["policy.sigstore.dev/include"] == "true"
        policy = objs[("ClusterImagePolicy", "pitlane-signed-images")]
        key = (ARGOCD / "base" / "cosign.pub").read_text()
        assert policy["spec"]["authorities"][0]["key"]["data"] == key  # the image key, copied by kustomize
        assert key.startswith("-----BEGIN PUBLIC KEY-----")
        # the ConfigMap the car mounts names the model only (P2: the model key ships in the car's image);
        # the image key's build-time ConfigMap is dropped from the output
        assert objs[("ConfigMap", "pitlane-model")]["data"].keys() == {"model-ref"}
        assert ("ConfigMap", "pitlane-image-key") not in objs
        for o in objs.values():
            if o["kind"] == "Deployment":
                for c in o["spec"]["template"]["spec"]["containers"]:
                    assert "PITLANE_MODEL_KEY" not in {e["name"] for e in c.get("env", [])}


def test_nuc_sim_runs_the_twin_and_points_the_car_at_it():
    objs = by_name(render_overlay(ARGOCD, "nuc-sim").objects)
    twin = objs[("Deployment", "pitlane-twin")]["spec"]["template"]["spec"]
    car = objs[("Deployment", "pitlane-car")]["spec"]["template"]["spec"]
    assert twin["containers"][0]["command"][:3] == ["pitlane", "twin", "serve"]
    assert objs[("Service", "pitlane-twin")]["spec"]["ports"][0]["port"] == 9091
    env = {e["name"]: e.get("value") for e in car["containers"][0]["env"]}  # the console token: valueFrom
    assert env["SIM_HOST"] == "pitlane-twin.pitlane.svc" and env["SIM_PORT"] == "9091"
    assert env["PITLANE_PROFILE"] == "twin"
    assert twin["nodeSelector"] == car["nodeSelector"] == {"kubernetes.io/arch": "amd64"}
    # sync waves: namespace, then the image policy, then the twin, then the car that connects to it
    wave = {k: int(o["metadata"]["annotations"]["argocd.argoproj.io/sync-wave"]) for k, o in objs.items()}
    assert (
        wave[("Namespace", "pitlane")]
        < wave[("ClusterImagePolicy", "pitlane-signed-images")]
        < wave[("Deployment", "pitlane-twin")]
        < wave[("Deployment", "pitlane-car")]
    )
    # both run the sim image (the overlay switched the car's image before the pins applied)
    assert (
        "/pitlane/sim@" in car["containers"][0]["image"] and "/pitlane/sim@" in twin["containers"][0]["image"]
    )


def test_pi_car_gets_devices_arm64_and_no_privilege():
    objs = by_name(render_overlay(ARGOCD, "pi-car").objects)
    pod = objs[("Deployment", "pitlane-car")]["spec"]["template"]
    spec, car = pod["spec"], pod["spec"]["containers"][0]
    assert spec["nodeSelector"] == {"kubernetes.io/arch": "arm64"}
    assert "/pitlane/car@" in car["image"]
    assert "/dev/video0" in pod["metadata"]["annotations"]["io.kubernetes.cri-o.Devices"]
    assert "/dev/i2c-1" in pod["metadata"]["annotations"]["io.kubernetes.cri-o.Devices"]
    assert not car["securityContext"]["privileged"] and car["securityContext"]["capabilities"]["drop"] == [
        "ALL"
    ]
    assert not [v for v in spec["volumes"] if "hostPath" in v]
    assert car["resources"]["limits"] == {"cpu": "3", "memory": "1Gi"}
    mounts = {m["mountPath"]: m for m in car["volumeMounts"]}
    # a folder mount of the model ConfigMap (no subPath), so a new model reference reaches the running pod
    assert mounts["/etc/pitlane"]["name"] == "model" and "subPath" not in mounts["/etc/pitlane"]
    env = {e["name"]: e.get("value", e.get("valueFrom")) for e in car["env"]}
    assert env["PITLANE_MODEL_REF_FILE"] == "/etc/pitlane/model-ref"
    # P1: the state (model cache, the rollback floor) on a persistent volume, not an emptyDir
    assert mounts["/var/lib/pitlane"]["name"] == "state" and env["PITLANE_STATE_DIR"] == "/var/lib/pitlane"
    state = next(v for v in spec["volumes"] if v["name"] == "state")
    assert state == {"name": "state", "persistentVolumeClaim": {"claimName": "pitlane-car-state"}}
    claim = objs[("PersistentVolumeClaim", "pitlane-car-state")]["spec"]
    assert claim["accessModes"] == ["ReadWriteOnce"] and claim["resources"]["requests"]["storage"] == "2Gi"
    # the fleet: the NUC's broker and gateway, the car's password from its Secret (never a literal)
    assert env["PITLANE_FLEET_BROKER"].endswith(":31883") and env["PITLANE_FLEET_GATEWAY"]
    assert env["PITLANE_FLEET_PASSWORD"] == {
        "secretKeyRef": {"name": "pitlane-fleet-car", "key": "password", "optional": True}
    }


def test_every_fleet_target_renders_as_its_application():
    for target in load_fleet(ARGOCD):
        rendered = render_target(ARGOCD, target)
        app = rendered.application
        assert app is not None
        assert app["metadata"]["name"] == f"pitlane-{target.name}"
        assert app["spec"]["source"]["path"] == f"argocd/overlays/{target.overlay}"
        assert app["spec"]["destination"] == {"name": target.cluster, "namespace": "pitlane"}
        assert app["spec"]["syncPolicy"]["automated"] == {"prune": True, "selfHeal": True}
        car = by_name(rendered.objects)[("Deployment", "pitlane-car")]
        assert car["metadata"]["annotations"]["pitlane.dev/target"] == target.name
        env = {e["name"]: e.get("value") for e in car["spec"]["template"]["spec"]["containers"][0]["env"]}
        assert env["PITLANE_CAR_NAME"] == target.name


def test_fill_template_supports_fields_and_if_eq_only():
    params = {"kind": "car", "name": "car-3"}
    tpl = '{{ if eq .kind "sim" }}a/nuc-sim{{ else }}a/pi-car{{ end }}:{{.name}}'
    assert fill_template({"p": [tpl]}, params) == {"p": ["a/pi-car:car-3"]}
    with pytest.raises(UserError, match="no field 'zone'"):
        fill_template("{{.zone}}", params)
    with pytest.raises(UserError, match="unsupported template"):
        fill_template("{{ .name | upper }}", params)


def test_render_cli_prints_yaml_and_names_unknown_targets(capsys):
    assert main(["deploy", "render", "car-1", "--root", str(ARGOCD.parent)]) == 0
    objects = docs(capsys.readouterr().out)
    assert {o["kind"] for o in objects} >= {"Namespace", "Deployment", "ConfigMap", "ClusterImagePolicy"}
    assert main(["deploy", "render", "car-99", "--root", str(ARGOCD.parent)]) == 2
    assert (
        "unknown target 'car-99': fleet targets car-1, nuc; overlays nuc-sim, pi-car"
        in capsys.readouterr().err
    )


def test_kustomize_failure_is_one_line(argocd):
    (argocd / "overlays" / "pi-car" / "car-pi.yaml").unlink()
    with pytest.raises(UserError, match=r"pi-car: kustomize failed: .*car-pi\.yaml"):
        render(argocd, "pi-car")


def test_microshift_manifests_d_layout_renders_like_the_overlay(tmp_path):
    """README's MicroShift recipe: argocd/ copied under manifests.d/pitlane with a kustomization on top."""
    folder = tmp_path / "etc" / "microshift" / "manifests.d" / "pitlane"
    for part in ("base", "pins", "overlays"):
        shutil.copytree(ARGOCD / part, folder / part)
    (folder / "kustomization.yaml").write_text("resources:\n  - overlays/pi-car\n")
    assert docs(kustomize(folder)) == render_overlay(ARGOCD, "pi-car").objects
    assert not os.path.exists(folder / "fleet")  # MicroShift needs no fleet list and no Argo CD
