# The NUC's JupyterHub (argocd/overlays/nuc-sim/hub): KubeSpawner starts each user's JupyterLab as a pod of
# the notebook image (the hub's own image, pinned by digest) with a PVC of its own, in the pitlane namespace.
# Pods and PVCs meet MicroShift's restricted-v2 without any SCC granted: no uid, gid or fsGroup is set (the
# platform assigns them; the image works as any uid in group 0), no privilege escalation, every capability
# dropped, RuntimeDefault seccomp. Checked by tests/hub/test_kube_config.py against KubeSpawner's own traits.
import os
import sys

c = get_config()  # noqa: F821 - JupyterHub's config loader defines it

NAMESPACE = "pitlane"
HOME = "/home/pitlane"
NOTEBOOKS = "/opt/pitlane/notebooks"


def own_image() -> str:
    """The image this hub pod runs (pinned by digest by argocd/pins): every user runs exactly that one."""
    if os.environ.get("PITLANE_NOTEBOOK_IMAGE"):
        return os.environ["PITLANE_NOTEBOOK_IMAGE"]
    from kubernetes import client, config

    config.load_incluster_config()
    pod = client.CoreV1Api().read_namespaced_pod(os.environ["HOSTNAME"], NAMESPACE)
    return next(ct.image for ct in pod.spec.containers if ct.name == "hub")


# --- the hub and its proxy (Node.js configurable-http-proxy, from Debian, in the image)
c.JupyterHub.ip = "0.0.0.0"
c.JupyterHub.port = 8000
c.JupyterHub.hub_ip = "0.0.0.0"
c.JupyterHub.hub_port = 8081
c.JupyterHub.hub_connect_url = f"http://pitlane-hub-api.{NAMESPACE}.svc:8081"
c.JupyterHub.db_url = "sqlite:////srv/jupyterhub/jupyterhub.sqlite"
c.JupyterHub.cookie_secret_file = "/srv/jupyterhub/jupyterhub_cookie_secret"
c.JupyterHub.implicit_spawn_seconds = 1.0  # a visit to a stopped (or dead) server starts it again
c.ConfigurableHTTPProxy.command = ["/usr/bin/configurable-http-proxy"]
c.ConfigurableHTTPProxy.pid_file = "/tmp/proxy.pid"

# --- one password for the team: the Secret pitlane-hub (key password), created once by the operator
c.JupyterHub.authenticator_class = "shared-password"
c.SharedPasswordAuthenticator.user_password = os.environ["PITLANE_HUB_PASSWORD"]
c.Authenticator.allow_all = True
c.Authenticator.username_pattern = r"^[a-z][a-z0-9_-]{0,31}$"

# --- each user: a pod of the notebook image, a PVC, the notebooks copied in (never over the user's own)
c.JupyterHub.spawner_class = "kubespawner.KubeSpawner"
c.KubeSpawner.namespace = NAMESPACE
c.KubeSpawner.image = own_image()
c.KubeSpawner.image_pull_policy = "IfNotPresent"
c.KubeSpawner.cmd = ["/bin/sh", "-c", f'cp -n {NOTEBOOKS}/*.ipynb "$HOME"/ 2>/dev/null; exec "$@"', "--",
                     "jupyterhub-singleuser"]  # fmt: skip
c.KubeSpawner.default_url = "/lab"
c.KubeSpawner.working_dir = HOME
# KubeSpawner labels each user's pod app.kubernetes.io/component=singleuser-server: the NetworkPolicies select it
c.KubeSpawner.extra_labels = {"app.kubernetes.io/part-of": "pitlane"}
c.KubeSpawner.automount_service_account_token = False  # users' code gets no Kubernetes token
c.KubeSpawner.storage_pvc_ensure = True
c.KubeSpawner.pvc_name_template = "pitlane-home-{username}"
c.KubeSpawner.storage_capacity = "5Gi"
c.KubeSpawner.storage_access_modes = ["ReadWriteOnce"]
c.KubeSpawner.volumes = [
    {"name": "home", "persistentVolumeClaim": {"claimName": "{pvc_name}"}},
    {"name": "tmp", "emptyDir": {"sizeLimit": "2Gi"}},
]
c.KubeSpawner.volume_mounts = [{"name": "home", "mountPath": HOME}, {"name": "tmp", "mountPath": "/tmp"}]
c.KubeSpawner.cpu_guarantee = 0.5
c.KubeSpawner.cpu_limit = 2.0
c.KubeSpawner.mem_guarantee = "1G"
c.KubeSpawner.mem_limit = "4G"  # TensorFlow training a donkeycar model
c.KubeSpawner.start_timeout = 600  # [s] the first pull of the notebook image
c.KubeSpawner.uid = None  # restricted-v2 assigns the uid, gid and fsGroup
c.KubeSpawner.gid = None
c.KubeSpawner.fs_gid = None
c.KubeSpawner.allow_privilege_escalation = False
c.KubeSpawner.pod_security_context = {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}}
c.KubeSpawner.container_security_context = {
    "runAsNonRoot": True,
    "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}
c.KubeSpawner.environment = {
    "PITLANE_TWIN": f"pitlane-twin.{NAMESPACE}.svc:9091",
    "PITLANE_REGISTRY": os.environ.get("PITLANE_REGISTRY", ""),
    "MLFLOW_TRACKING_URI": f"http://pitlane-mlflow.{NAMESPACE}.svc:5000/services/mlflow",
    "MLFLOW_EXPERIMENT_NAME": "pitlane",
}

# --- services: MLflow's page behind the hub (/services/mlflow/), the idle culler
c.JupyterHub.services = [
    {"name": "mlflow", "url": f"http://pitlane-mlflow.{NAMESPACE}.svc:5000", "timeout": 1, "display": False},
    {"name": "idle-culler", "command": [sys.executable, "-m", "jupyterhub_idle_culler", "--timeout=3600"]},
]
c.JupyterHub.load_roles = [
    {
        "name": "idle-culler",
        "scopes": ["list:users", "read:users:activity", "read:servers", "delete:servers"],
        "services": ["idle-culler"],
    }
]
