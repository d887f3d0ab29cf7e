"""The NUC's hub (argocd/overlays/nuc-sim/hub): its jupyterhub_config.py sets only traits JupyterHub and
KubeSpawner know, and the pod KubeSpawner makes from it, like the hub's and MLflow's Deployments, is what
MicroShift's restricted-v2 admits with no SCC granted (no uid, gid or fsGroup; non-root, no escalation, every
capability dropped, RuntimeDefault seccomp), schema-checked like every other manifest."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml
from traitlets.config import Config

from pitlane.deploy.validate import schema_problems, workload_problems

REPO = Path(__file__).resolve().parents[2]
CONFIG = REPO / "argocd" / "overlays" / "nuc-sim" / "hub" / "jupyterhub_config.py"
IMAGE = "registry.example/pitlane/notebook@sha256:" + "a" * 64
NO_SCC_NEEDED = ("runAsUser", "runAsGroup", "fsGroup")


@pytest.fixture
def config(monkeypatch) -> Config:
    monkeypatch.setenv("PITLANE_NOTEBOOK_IMAGE", IMAGE)
    monkeypatch.setenv("PITLANE_HUB_PASSWORD", "a-team-password")
    monkeypatch.setenv("PITLANE_REGISTRY", "registry.example:5000")
    c = Config()
    exec(
        compile(CONFIG.read_text(), str(CONFIG), "exec"), {"get_config": lambda: c}
    )  # as JupyterHub loads it
    return c


def _classes() -> dict:
    from jupyterhub.app import JupyterHub
    from jupyterhub.auth import Authenticator
    from jupyterhub.authenticators.shared import SharedPasswordAuthenticator
    from jupyterhub.proxy import ConfigurableHTTPProxy
    from kubespawner import KubeSpawner

    return {cls.__name__: cls for cls in (JupyterHub, Authenticator, SharedPasswordAuthenticator,
                                          ConfigurableHTTPProxy, KubeSpawner)}  # fmt: skip


def test_every_setting_is_a_trait_of_its_class(config):
    classes = _classes()
    for section, values in config.items():
        assert section in classes, f"{CONFIG.name}: unknown class {section}"
        known = set(classes[section].class_trait_names(config=True))
        unknown = sorted(set(values) - known)
        assert not unknown, f"{CONFIG.name}: {section} has no setting {unknown}"


KUBECONFIG = """apiVersion: v1
kind: Config
clusters: [{name: none, cluster: {server: "http://127.0.0.1:9"}}]
users: [{name: none, user: {token: unused}}]
contexts: [{name: none, context: {cluster: none, user: none}}]
current-context: none
"""


def _pod(config: Config, tmp_path: Path, monkeypatch) -> dict:
    """The pod KubeSpawner would create for alice (it reads a kube config at start; no API call is made)."""
    import functools

    import kubernetes_asyncio.config
    from kubernetes_asyncio.client import ApiClient
    from kubespawner import KubeSpawner, clients

    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(KUBECONFIG)
    load = functools.partial(kubernetes_asyncio.config.load_kube_config, config_file=str(kubeconfig))
    monkeypatch.setattr(kubernetes_asyncio.config, "load_kube_config", load)
    clients.load_config.cache_clear()

    user = SimpleNamespace(name="alice", id=1, url="/user/alice/", escaped_name="alice", settings={},
                           server=None, spawners={}, orm_user=None, admin=False)  # fmt: skip
    hub = SimpleNamespace(base_url="/hub/", api_url="http://pitlane-hub-api:8081/hub/api", public_host="",
                          url="http://pitlane-hub-api:8081/hub/")  # fmt: skip

    async def make() -> dict:  # KubeSpawner wants a running event loop, as inside JupyterHub
        spawner = KubeSpawner(config=config, user=user, hub=hub, _mock=True)
        return ApiClient().sanitize_for_serialization(await spawner.get_pod_manifest())

    return asyncio.run(make())


def test_a_users_pod_is_admitted_by_restricted_v2_without_an_scc(config, tmp_path, monkeypatch):
    pod = _pod(config, tmp_path, monkeypatch)
    deployment = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "user"},
                  "spec": {"selector": {"matchLabels": {"x": "y"}}, "template": {"metadata": {"labels": {"x": "y"}},
                           "spec": pod["spec"]}}}  # fmt: skip
    assert not workload_problems(deployment), workload_problems(
        deployment
    )  # pinned, limits, no escalation ...
    assert not schema_problems(pod), schema_problems(pod)
    spec = pod["spec"]
    for sc in [spec.get("securityContext") or {}] + [
        c.get("securityContext") or {} for c in spec["containers"]
    ]:
        assert not set(sc) & set(NO_SCC_NEEDED), sc
    assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    container = spec["containers"][0]
    assert container["image"] == IMAGE and container["securityContext"]["runAsNonRoot"] is True
    assert {"name": "PITLANE_TWIN", "value": "pitlane-twin.pitlane.svc:9091"} in container["env"]
    assert {"name": "PITLANE_REGISTRY", "value": "registry.example:5000"} in container["env"]
    assert spec["automountServiceAccountToken"] is False
    assert (
        pod["metadata"]["labels"]["app.kubernetes.io/component"] == "singleuser-server"
    )  # what the policies select
    claim = next(v for v in spec["volumes"] if v["name"] == "home")["persistentVolumeClaim"]["claimName"]
    assert claim == "pitlane-home-alice"


def test_the_hub_and_mlflow_need_no_scc_and_are_rendered_with_the_nuc():
    out = subprocess.run([sys.executable, "-m", "pitlane.cli", "deploy", "render", "nuc"], cwd=REPO,
                         capture_output=True, text=True, check=True).stdout  # fmt: skip
    objects = {(o["kind"], o["metadata"]["name"]): o for o in yaml.safe_load_all(out) if o}
    for name in ("pitlane-hub", "pitlane-mlflow"):
        pod = objects[("Deployment", name)]["spec"]["template"]["spec"]
        contexts = [pod["securityContext"]] + [c["securityContext"] for c in pod["containers"]]
        assert all(not set(sc) & set(NO_SCC_NEEDED) for sc in contexts), name
        assert (
            "@sha256:" in pod["containers"][0]["image"]
            and "/pitlane/notebook" in pod["containers"][0]["image"]
        )
    for kind, name in [("NetworkPolicy", "pitlane-hub"), ("NetworkPolicy", "pitlane-notebook-from-hub"),
                       ("NetworkPolicy", "pitlane-mlflow"), ("PersistentVolumeClaim", "pitlane-mlflow"),
                       ("Role", "pitlane-hub"), ("Service", "pitlane-hub")]:  # fmt: skip
        assert (kind, name) in objects
    assert objects[("Service", "pitlane-hub")]["spec"]["ports"][0]["nodePort"] == 30800
