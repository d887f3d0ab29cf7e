"""The local hub's JupyterHub configuration, from one frozen settings object (`HubSettings`).

`pitlane hub serve` writes the settings to DATA/hub/settings.json and a two-line jupyterhub_config.py that
calls `apply`; everything JupyterHub is told is here:
- SharedPasswordAuthenticator: one password for the team (PITLANE_HUB_PASSWORD, read by the hub process
  only: no user's server or service inherits it), any user name matching homes.USERNAME_PATTERN;
- HomeSpawner (spawner.py): JupyterLab of the locked environment, homes under DATA/users, the sandbox;
- Node.js's configurable-http-proxy, JupyterHub's own (serve.find_proxy says why not the Python port);
- managed services, started, restarted when they exit, and stopped with the hub: the twin
  (`pitlane twin serve`), the registry (`pitlane registry serve`), MLflow (SQLite store, artifact folder;
  behind the hub at /services/mlflow/) unless flags name running ones, and the idle culler;
- users' environment: PITLANE_TWIN, PITLANE_REGISTRY, MLFLOW_TRACKING_URI (what the notebooks read).
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from pitlane.hub.homes import USERNAME_PATTERN, notebooks_dir

PASSWORD_ENV = "PITLANE_HUB_PASSWORD"
MLFLOW_PREFIX = "/services/mlflow"
EXPERIMENT = "pitlane"  # every user's runs in one experiment: comparable side by side


@dataclass(frozen=True)
class HubSettings:
    """One local hub: where it keeps its state, its ports, and the services its users reach."""

    data: str  # the hub's data folder: hub/ (database, logs), users/<name>, registry/, mlflow/
    host: str = "127.0.0.1"  # where the hub listens (0.0.0.0: the whole network)
    port: int = 8000  # the hub's URL (its proxy)
    hub_port: int = 0  # the hub's API, on 127.0.0.1 (serve picks a free port)
    proxy_api_port: int = 0  # the proxy's API, on 127.0.0.1
    twin: str = ""  # HOST:PORT of a running twin; "" = the hub runs one on twin_port
    twin_port: int = 0
    registry: str = ""  # HOST:PORT of a running registry; "" = the hub runs one on registry_port
    registry_port: int = 0
    mlflow: str = ""  # tracking URI of a running MLflow; "" = the hub runs one on mlflow_port
    mlflow_port: int = 0
    cull_idle_s: int = 3600  # [s] a server nobody used this long is stopped (its files stay)
    sandbox: bool = True  # each server sees only its own home (sandbox.py)
    python: str = sys.executable  # the locked environment's interpreter
    proxy: str = "configurable-http-proxy"  # Node.js's (serve.find_proxy), not the Python port in the venv

    def save(self, path: Path) -> Path:
        path.write_text(json.dumps(asdict(self), indent=2) + "\n")
        return path

    @classmethod
    def load(cls, path: str | Path) -> HubSettings:
        return cls(**json.loads(Path(path).read_text()))

    @property
    def bin(self) -> Path:
        return Path(self.python).parent

    def twin_address(self) -> str:
        return self.twin or f"127.0.0.1:{self.twin_port}"

    def registry_address(self) -> str:
        return self.registry or f"127.0.0.1:{self.registry_port}"

    def tracking_uri(self) -> str:
        return self.mlflow or f"http://127.0.0.1:{self.mlflow_port}{MLFLOW_PREFIX}"

    def url(self) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host
        return f"http://{host}:{self.port}/"

    def user_environment(self) -> dict[str, str]:
        """What every user's server (and so every notebook and `pitlane` command in it) is given."""
        return {
            "PITLANE_TWIN": self.twin_address(),
            "PITLANE_REGISTRY": self.registry_address(),
            "MLFLOW_TRACKING_URI": self.tracking_uri(),
            "MLFLOW_EXPERIMENT_NAME": EXPERIMENT,
        }


def services(s: HubSettings) -> list[dict[str, Any]]:
    """JupyterHub's managed services: restarted when they exit, stopped with the hub."""
    data = Path(s.data)
    pitlane = [s.python, "-m", "pitlane.cli"]
    out: list[dict[str, Any]] = []
    if not s.twin:
        out.append({"name": "twin", "command": [*pitlane, "twin", "serve", "--port", str(s.twin_port)]})
    if not s.registry:
        storage = str(data / "registry")
        out.append({"name": "registry", "command": [*pitlane, "registry", "serve", "--storage", storage,
                                                    "--port", str(s.registry_port)]})  # fmt: skip
    if not s.mlflow:
        store = data / "mlflow"
        # The page's route (/services/mlflow/) and the process are two services: JupyterHub waits for a
        # managed service with a URL before it serves anyone, and MLflow takes 10-40 s to start.
        out.append(
            {"name": "mlflow", "url": f"http://127.0.0.1:{s.mlflow_port}", "timeout": 1, "display": False}
        )
        out.append({
            "name": "mlflow-server",
            "environment": {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},  # GenAI jobs: 3 worker pools
            "command": [
                str(s.bin / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(s.mlflow_port),
                "--backend-store-uri", f"sqlite:///{store / 'mlflow.db'}",
                "--artifacts-destination", str(store / "artifacts"), "--workers", "1",
                "--static-prefix", MLFLOW_PREFIX,
                # it listens on 127.0.0.1 only: the Host header is whatever name the hub is reached by
                "--allowed-hosts", "*",
            ],
        })  # fmt: skip
    out.append({
        "name": "idle-culler",
        "command": [s.python, "-m", "jupyterhub_idle_culler", f"--timeout={s.cull_idle_s}",
                    f"--cull-every={max(10, min(300, s.cull_idle_s // 4))}"],
    })  # fmt: skip
    for service in out:
        if "command" in service:
            service.setdefault("cwd", str(data / "hub"))
    return out


def apply(c: Any, s: HubSettings) -> None:
    """Fill JupyterHub's traitlets config `c` (a jupyterhub_config.py's `c`) for the settings `s`."""
    data = Path(s.data)
    c.JupyterHub.ip = s.host
    c.JupyterHub.port = s.port
    c.JupyterHub.hub_ip = "127.0.0.1"
    c.JupyterHub.hub_port = s.hub_port
    c.JupyterHub.db_url = f"sqlite:///{data / 'hub' / 'jupyterhub.sqlite'}"
    c.JupyterHub.cookie_secret_file = str(data / "hub" / "jupyterhub_cookie_secret")
    c.JupyterHub.implicit_spawn_seconds = 1.0  # a visit to a stopped (or dead) server starts it again
    c.ConfigurableHTTPProxy.command = [s.proxy]
    c.ConfigurableHTTPProxy.api_url = f"http://127.0.0.1:{s.proxy_api_port}"
    c.ConfigurableHTTPProxy.pid_file = str(data / "hub" / "proxy.pid")

    c.JupyterHub.authenticator_class = "shared-password"
    c.SharedPasswordAuthenticator.user_password = os.environ[PASSWORD_ENV]
    c.Authenticator.allow_all = True
    c.Authenticator.username_pattern = USERNAME_PATTERN

    c.JupyterHub.spawner_class = "pitlane.hub.spawner.HomeSpawner"
    c.HomeSpawner.data_dir = str(data)
    c.HomeSpawner.notebooks_dir = str(notebooks_dir())
    c.HomeSpawner.sandbox = s.sandbox
    c.HomeSpawner.server_cmd = [str(s.bin / "jupyterhub-singleuser")]
    c.Spawner.default_url = "/lab"
    c.Spawner.environment = s.user_environment()
    c.Spawner.poll_interval = 10  # [s] how soon the hub notices a server that died
    c.Spawner.start_timeout = 120  # [s] a loaded 2-core machine
    c.Spawner.http_timeout = 90  # [s]

    c.JupyterHub.services = services(s)
    c.JupyterHub.load_roles = [{
        "name": "idle-culler",
        "scopes": ["list:users", "read:users:activity", "read:servers", "delete:servers"],
        "services": ["idle-culler"],
    }]  # fmt: skip
