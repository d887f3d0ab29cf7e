"""The release pipeline in a cluster, through the kubernetes Python client (CustomObjectsApi): create the
PipelineRun the TriggerTemplate would create, and follow it TaskRun by TaskRun, printing each step's
log like `tkn pipelinerun logs -f`.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

from kubernetes import client, config
from kubernetes.client.rest import ApiException
from urllib3.exceptions import HTTPError

from pitlane.errors import UserError

GROUP, VERSION = "tekton.dev", "v1"
RELEASE_LABEL = "pitlane.dev/release"


@dataclass(frozen=True)
class ClusterConfig:
    namespace: str = "pitlane-release"
    kubeconfig: str | None = None  # None: $KUBECONFIG or ~/.kube/config, else the in-cluster account
    context: str | None = None
    poll_s: float = 2.0  # [s] between status polls while following


def api(cfg: ClusterConfig) -> client.ApiClient:
    try:
        if cfg.kubeconfig or cfg.context:
            return config.new_client_from_config(config_file=cfg.kubeconfig, context=cfg.context)
        try:
            return config.new_client_from_config()
        except config.ConfigException:
            config.load_incluster_config()
            return client.ApiClient()
    except (config.ConfigException, OSError) as exc:
        raise UserError(
            f"no Kubernetes cluster configured ({exc}); pass --kubeconfig or set KUBECONFIG"
        ) from None


def _obj(value: object) -> dict[str, Any]:
    """The kubernetes client returns custom objects as plain dicts, typed `object`."""
    return cast(dict[str, Any], value)


def _fail(what: str, exc: Exception) -> UserError:
    if isinstance(exc, ApiException):
        return UserError(f"Kubernetes API: {what}: HTTP {exc.status} {exc.reason}")
    return UserError(f"Kubernetes API: {what}: {type(exc).__name__}: {exc}")


def start(api_client: client.ApiClient, cfg: ClusterConfig, run: dict[str, Any]) -> str:
    """Create a PipelineRun; its generated name."""
    try:
        created = _obj(
            client.CustomObjectsApi(api_client).create_namespaced_custom_object(
                GROUP, VERSION, cfg.namespace, "pipelineruns", run
            )
        )
    except (ApiException, HTTPError) as exc:
        raise _fail(f"create PipelineRun in {cfg.namespace}", exc) from None
    return str(created["metadata"]["name"])


def latest(api_client: client.ApiClient, cfg: ClusterConfig, tag: str | None) -> str:
    """The newest PipelineRun of `tag` (or of any release)."""
    selector = f"{RELEASE_LABEL}={tag}" if tag else RELEASE_LABEL
    try:
        runs = _obj(
            client.CustomObjectsApi(api_client).list_namespaced_custom_object(
                GROUP, VERSION, cfg.namespace, "pipelineruns", label_selector=selector
            )
        )["items"]
    except (ApiException, HTTPError) as exc:
        raise _fail(f"list PipelineRuns in {cfg.namespace}", exc) from None
    if not runs:
        raise UserError(
            f"no PipelineRun {'for ' + tag if tag else 'of a release'} in namespace {cfg.namespace}"
        )
    runs.sort(key=lambda r: r["metadata"].get("creationTimestamp", ""))
    return str(runs[-1]["metadata"]["name"])


def taskrun_label(tr: dict[str, Any]) -> str:
    """A TaskRun as `status` shows it: its pipeline task, with the index of a matrix's TaskRun (Tekton names
    them `<pipelinerun>-<task>-<i>`), so the parts of a fan-out stay apart."""
    name = tr["metadata"]["name"]
    task = tr["metadata"].get("labels", {}).get("tekton.dev/pipelineTask", name)
    m = re.fullmatch(rf".*-{re.escape(task)}-(\d+)", name)
    return f"{task}-{m.group(1)}" if m else task


def condition(obj: dict[str, Any]) -> tuple[str, str, str]:
    """(status 'True'/'False'/'Unknown', reason, message) of a Tekton object's Succeeded condition."""
    for c in obj.get("status", {}).get("conditions", []):
        if c.get("type") == "Succeeded":
            return c.get("status", "Unknown"), c.get("reason", ""), c.get("message", "")
    return "Unknown", "Pending", ""


@dataclass
class Follower:
    """Prints a PipelineRun's progress once per change, and each finished step's log once."""

    api_client: client.ApiClient
    cfg: ClusterConfig
    echo: Callable[[str], None] = print
    seen: dict[str, str] = field(default_factory=dict)
    logged: set[str] = field(default_factory=set)

    def poll(self, name: str, logs: bool) -> tuple[str, str, str]:
        custom = client.CustomObjectsApi(self.api_client)
        try:
            run = _obj(
                custom.get_namespaced_custom_object(GROUP, VERSION, self.cfg.namespace, "pipelineruns", name)
            )
            taskruns = _obj(
                custom.list_namespaced_custom_object(
                    GROUP,
                    VERSION,
                    self.cfg.namespace,
                    "taskruns",
                    label_selector=f"tekton.dev/pipelineRun={name}",
                )
            )["items"]
        except (ApiException, HTTPError) as exc:
            raise _fail(f"read PipelineRun {name}", exc) from None
        taskruns.sort(key=lambda t: t.get("status", {}).get("startTime") or "")
        for tr in taskruns:
            task = taskrun_label(tr)
            status, reason, message = condition(tr)
            line = f"[{task}] {reason or 'Pending'}" + (
                f": {message}" if status == "False" and message else ""
            )
            if self.seen.get(task) != line:
                self.seen[task] = line
                self.echo(line)
            if logs:
                self._logs(task, tr)
        for skipped in run.get("status", {}).get("skippedTasks", []):
            line = f"[{skipped['name']}] Skipped: {skipped.get('reason', '')}"
            if self.seen.get(skipped["name"]) != line:
                self.seen[skipped["name"]] = line
                self.echo(line)
        return condition(run)

    def _logs(self, task: str, tr: dict[str, Any]) -> None:
        pod = tr.get("status", {}).get("podName")
        for step in tr.get("status", {}).get("steps", []):
            key = f"{tr['metadata']['name']}/{step['name']}"
            if not pod or key in self.logged or "terminated" not in step:
                continue
            self.logged.add(key)
            try:
                text = client.CoreV1Api(self.api_client).read_namespaced_pod_log(
                    pod, self.cfg.namespace, container=step.get("container", f"step-{step['name']}")
                )
            except (ApiException, HTTPError) as exc:
                text = f"(no log: {_fail('pod log', exc)})"
            for line in str(text).splitlines():
                self.echo(f"[{task} : {step['name']}] {line}")

    def follow(self, name: str, logs: bool = True, timeout_s: float = 3600.0) -> tuple[str, str, str]:
        deadline = time.monotonic() + timeout_s
        while True:
            status, reason, message = self.poll(name, logs)
            if status != "Unknown":
                self.echo(f"[pipelinerun] {name} {reason}" + (f": {message}" if status == "False" else ""))
                return status, reason, message
            if time.monotonic() > deadline:
                raise UserError(f"PipelineRun {name} still running after {timeout_s:.0f} s")
            time.sleep(self.cfg.poll_s)
