"""What a notebook finds around it: the twin, the registry and MLflow named by the variables the hub sets.

Each check is one line: the service answers, or it does not and here is how to start it. A notebook run
outside any hub (variables unset) says so and carries on in-process, as it always could.
"""

from __future__ import annotations

import os
import socket

import requests

TWIN_ENV = "PITLANE_TWIN"  # HOST:PORT of `pitlane twin serve`
REGISTRY_ENV = "PITLANE_REGISTRY"  # HOST:PORT of `pitlane registry serve`
TRACKING_ENV = "MLFLOW_TRACKING_URI"  # MLflow's own variable
TIMEOUT_S = 3.0  # [s] per check


def _port(address: str) -> str:
    return address.rpartition(":")[2] or "PORT"


def twin_line(address: str | None) -> str:
    if not address:
        return f"twin: {TWIN_ENV} is not set: the notebook drives the twin in-process (no hub around it)"
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=TIMEOUT_S) as sock:
            sock.settimeout(TIMEOUT_S)
            greeting = sock.recv(4096)  # a DonkeyCar simulator speaks first (scene_selection_ready)
    except (OSError, ValueError) as exc:
        return (f"twin at {address} does not answer ({exc}): start it with `pitlane twin serve --port "
                f"{_port(address)}` (or restart the hub, which runs it)")  # fmt: skip
    if not greeting:
        return f"twin at {address} closed the connection at once: is it a DonkeyCar simulator?"
    return f"twin at {address} answers"


def registry_line(address: str | None) -> str:
    if not address:
        return (f"registry: {REGISTRY_ENV} is not set: start one with `pitlane registry serve --port 5000` and "
                f"set {REGISTRY_ENV}=127.0.0.1:5000 to push models")  # fmt: skip
    try:
        ok = requests.get(f"http://{address}/v2/", timeout=TIMEOUT_S).status_code == 200
    except requests.RequestException as exc:
        return (f"registry at {address} does not answer ({type(exc).__name__}): start it with "
                f"`pitlane registry serve --port {_port(address)}` (or restart the hub, which runs it)")  # fmt: skip
    return f"registry at {address} answers" if ok else f"registry at {address} is not an OCI registry (/v2/)"


def mlflow_line(uri: str | None) -> str:
    if not uri:
        return f"MLflow: {TRACKING_ENV} is not set: runs are not tracked (the hub sets it)"
    if not uri.startswith("http"):
        return f"MLflow: tracking to {uri}"
    try:
        ok = requests.get(uri.rstrip("/") + "/health", timeout=TIMEOUT_S).ok
    except requests.RequestException as exc:
        return (f"MLflow at {uri} does not answer ({type(exc).__name__}): it may still be starting (10-40 s "
                "after the hub); runs are tracked once it answers, the work never waits for it")  # fmt: skip
    return f"MLflow at {uri} answers: every run is tracked" if ok else f"MLflow at {uri} is not healthy"


def check() -> list[str]:
    """One line per service, from the variables the hub sets."""
    return [
        twin_line(os.environ.get(TWIN_ENV)),
        registry_line(os.environ.get(REGISTRY_ENV)),
        mlflow_line(os.environ.get(TRACKING_ENV)),
    ]
