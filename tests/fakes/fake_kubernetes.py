"""FAKE Kubernetes API server (not Kubernetes): the endpoints `pitlane release start/status` use, answered
as the Kubernetes API documents them, in memory, on 127.0.0.1, with a bearer token.

- POST/GET/LIST `apis/tekton.dev/v1/namespaces/{ns}/pipelineruns` (generateName, labelSelector `k=v` or
  `k`), checked against the vendored PipelineRun schema like a CRD's structural schema (422 if invalid);
- LIST `.../taskruns?labelSelector=tekton.dev/pipelineRun=NAME`;
- GET `api/v1/namespaces/{ns}/pods/{pod}/log?container=...` (text/plain).

No controller runs: a test scripts the run with `script(name, events)`, one event applied per GET of the
PipelineRun, each a TaskRun update (`index`: one TaskRun of a matrix, named `<run>-<task>-<index>` as
Tekton names them) or the PipelineRun's final condition.
"""

from __future__ import annotations

import json
import random
import re
import string
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import jsonschema

SCHEMA = (
    Path(__file__).resolve().parents[2]
    / "pitlane"
    / "deploy"
    / "schemas"
    / "tekton.dev"
    / "PipelineRun.v1.json"
)


def condition(status: str, reason: str, message: str = "") -> dict[str, Any]:
    return {"type": "Succeeded", "status": status, "reason": reason, "message": message}


class FakeKubernetes:
    """A running FAKE API server: `url`, `kubeconfig(path)`, `objects`, `script()`, `stop()`."""

    def __init__(self, token: str = "fake-k8s-token") -> None:
        self.token = token
        self.objects: dict[str, dict[str, dict[str, Any]]] = {"pipelineruns": {}, "taskruns": {}}
        self.logs: dict[tuple[str, str], str] = {}
        self.scripts: dict[str, list[dict[str, Any]]] = {}
        self.lock = threading.Lock()
        self.validator = jsonschema.Draft202012Validator(json.loads(SCHEMA.read_text()))
        handler = type("Handler", (_Handler,), {"fake": self})
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def kubeconfig(self, path: Path, namespace: str = "pitlane-release") -> Path:
        path.write_text(json.dumps({
            "apiVersion": "v1", "kind": "Config", "current-context": "fake",
            "clusters": [{"name": "fake", "cluster": {"server": self.url}}],
            "users": [{"name": "fake", "user": {"token": self.token}}],
            "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "fake", "namespace": namespace}}],
        }))  # fmt: skip
        return path

    def script(self, name: str, events: list[dict[str, Any]]) -> None:
        """Events applied one per GET of PipelineRun `name`:
        {"task": T, "reason": R, "status": S, "steps": [...], "logs": {step: text}} or {"run": (S, R, M)}."""
        self.scripts[name] = list(events)

    def _advance(self, ns: str, name: str) -> None:
        events = self.scripts.get(name)
        if not events:
            return
        event = events.pop(0)
        run = self.objects["pipelineruns"][name]
        if "run" in event:
            run.setdefault("status", {})["conditions"] = [condition(*event["run"])]
            run["status"]["skippedTasks"] = event.get("skipped", [])
            return
        trname = f"{name}-{event['task']}" + (f"-{event['index']}" if "index" in event else "")
        tr = self.objects["taskruns"].setdefault(trname, {
            "apiVersion": "tekton.dev/v1", "kind": "TaskRun",
            "metadata": {"name": trname, "namespace": ns,
                         "labels": {"tekton.dev/pipelineRun": name, "tekton.dev/pipelineTask": event["task"]}},
            "status": {"podName": f"{trname}-pod", "startTime": f"2026-01-01T00:00:{len(self.objects['taskruns']):02d}Z"},
        })  # fmt: skip
        tr["status"]["conditions"] = [
            condition(event.get("status", "Unknown"), event["reason"], event.get("message", ""))
        ]
        tr["status"]["steps"] = [
            {"name": s, "container": f"step-{s}", "terminated": {"exitCode": 0}}
            for s in event.get("logs", {})
        ]
        for step, text in event.get("logs", {}).items():
            self.logs[(f"{trname}-pod", f"step-{step}")] = text

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _selected(obj: dict[str, Any], selector: str | None) -> bool:
    labels = obj["metadata"].get("labels", {})
    for term in (selector or "").split(","):
        if not term:
            continue
        key, sep, value = term.partition("=")
        if key not in labels or (sep and labels[key] != value):
            return False
    return True


class _Handler(BaseHTTPRequestHandler):
    fake: FakeKubernetes

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _send(self, status: int, body: Any, content_type: str = "application/json") -> None:
        data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _status(self, code: int, reason: str, message: str) -> None:
        self._send(
            code,
            {
                "kind": "Status",
                "apiVersion": "v1",
                "status": "Failure",
                "message": message,
                "reason": reason,
                "code": code,
            },
        )

    def _handle(self, method: str) -> None:
        f = self.fake
        if self.headers.get("Authorization") != f"Bearer {f.token}":
            return self._status(401, "Unauthorized", "Unauthorized")
        url = urlparse(self.path)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        m = re.fullmatch(
            r"/apis/tekton\.dev/v1/namespaces/([^/]+)/(pipelineruns|taskruns)(?:/([^/]+))?", url.path
        )
        log = re.fullmatch(r"/api/v1/namespaces/([^/]+)/pods/([^/]+)/log", url.path)
        with f.lock:
            if log and method == "GET":
                text = f.logs.get((log.group(2), query.get("container", "")))
                if text is None:
                    return self._status(404, "NotFound", f'pods "{log.group(2)}" not found')
                return self._send(200, text, "text/plain")
            if not m:
                return self._status(404, "NotFound", "the server could not find the requested resource")
            ns, plural, name = m.groups()
            store = f.objects[plural]
            if method == "POST" and plural == "pipelineruns" and not name:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
                errors = sorted(e.message for e in f.validator.iter_errors(body))
                if errors:
                    return self._status(422, "Invalid", f"PipelineRun is invalid: {errors[0]}")
                meta = body.setdefault("metadata", {})
                if not meta.get("name"):
                    meta["name"] = meta.pop("generateName", "run-") + "".join(
                        random.choices(string.ascii_lowercase + string.digits, k=5)
                    )
                if meta["name"] in store:
                    return self._status(
                        409, "AlreadyExists", f'pipelineruns.tekton.dev "{meta["name"]}" already exists'
                    )
                meta.update(
                    namespace=ns,
                    uid=f"uid-{len(store)}",
                    creationTimestamp=f"2026-01-01T00:{len(store):02d}:00Z",
                )
                store[meta["name"]] = body
                return self._send(201, body)
            if method == "GET" and name:
                if name not in store:
                    return self._status(404, "NotFound", f'{plural}.tekton.dev "{name}" not found')
                if plural == "pipelineruns":
                    f._advance(ns, name)
                return self._send(200, store[name])
            if method == "GET":
                items = [
                    o
                    for o in store.values()
                    if o["metadata"].get("namespace", ns) == ns and _selected(o, query.get("labelSelector"))
                ]
                kind = "PipelineRunList" if plural == "pipelineruns" else "TaskRunList"
                return self._send(
                    200, {"apiVersion": "tekton.dev/v1", "kind": kind, "metadata": {}, "items": items}
                )
        return self._status(405, "MethodNotAllowed", "method not allowed")

    def do_GET(self) -> None:  # noqa: N802
        self._handle("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._handle("POST")
