"""FAKE GitHub REST API (not GitHub): the endpoints pitlane's PyGithub calls use, answered the way
GitHub documents them (docs.github.com/rest: repos, releases, pulls), in memory, on 127.0.0.1.

Only what the release pipeline needs: get a repository; list, create and update releases; list, create
and update pull requests. Token auth (`Authorization: token|Bearer`), 401 for a wrong token, 422 for a
duplicate release tag or a second open pull request from the same head, and `fail_next(n, status)` to
answer the next n requests with a server error (a GitHub outage mid-run).
"""

from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse


@dataclass
class State:
    token: str
    repos: set[str] = field(default_factory=set)
    releases: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    pulls: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    requests: list[tuple[str, str]] = field(default_factory=list)
    failures: list[int] = field(default_factory=list)
    next_id: int = 1
    lock: threading.Lock = field(default_factory=threading.Lock)


class FakeGitHub:
    """A running FAKE GitHub: `url` (the API root for PyGithub's base_url), `state`, `stop()`."""

    def __init__(self, token: str = "fake-token", repos: tuple[str, ...] = ("pitlane/pitlane",)) -> None:
        self.state = State(token, set(repos))
        handler: type[_Handler] = type("Handler", (_Handler,), {"state": self.state, "base": ""})
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        handler.base = self.url
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def fail_next(self, n: int, status: int = 502) -> None:
        with self.state.lock:
            self.state.failures.extend([status] * n)

    def releases(self, repo: str = "pitlane/pitlane") -> list[dict[str, Any]]:
        return self.state.releases.get(repo, [])

    def pulls(self, repo: str = "pitlane/pitlane") -> list[dict[str, Any]]:
        return self.state.pulls.get(repo, [])

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class _Handler(BaseHTTPRequestHandler):
    state: State
    base: str

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def _send(self, status: int, body: Any = None, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode() if body is not None else b""
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def _error(self, status: int, message: str, errors: list[dict[str, str]] | None = None) -> None:
        body: dict[str, Any] = {"message": message, "documentation_url": "https://docs.github.com/rest"}
        if errors:
            body["errors"] = errors
        self._send(status, body)

    def _body(self) -> dict[str, Any]:
        length = int(self.headers.get("Content-Length") or 0)
        return json.loads(self.rfile.read(length) or b"{}") if length else {}

    def _route(self, method: str) -> None:
        url = urlparse(self.path)
        path, query = url.path, {k: v[0] for k, v in parse_qs(url.query).items()}
        s = self.state
        with s.lock:
            s.requests.append((method, path))
            failure = s.failures.pop(0) if s.failures else None
        if failure:
            return self._error(failure, "Server Error")
        auth = self.headers.get("Authorization", "")
        if auth not in (f"token {s.token}", f"Bearer {s.token}"):
            return self._error(401, "Bad credentials")
        m = re.fullmatch(r"/repos/([^/]+/[^/]+)(/.*)?", path)
        if not m or m.group(1) not in s.repos:
            return self._error(404, "Not Found")
        repo, rest = m.group(1), m.group(2) or ""
        with s.lock:
            if rest == "" and method == "GET":
                return self._send(200, self._repo(repo))
            if rest == "/releases" and method == "GET":
                return self._page(s.releases.get(repo, []), query)
            if rest == "/releases" and method == "POST":
                return self._create_release(repo, self._body())
            rm = re.fullmatch(r"/releases/(\d+)", rest)
            if rm and method == "PATCH":
                return self._update(
                    s.releases.get(repo, []),
                    int(rm.group(1)),
                    self._body(),
                    ("name", "body", "draft", "prerelease", "tag_name"),
                )
            if rest == "/pulls" and method == "GET":
                pulls = [p for p in s.pulls.get(repo, []) if _matches(p, query)]
                return self._page(pulls, query)
            if rest == "/pulls" and method == "POST":
                return self._create_pull(repo, self._body())
            pm = re.fullmatch(r"/pulls/(\d+)", rest)
            if pm and method == "PATCH":
                return self._update(
                    s.pulls.get(repo, []),
                    int(pm.group(1)),
                    self._body(),
                    ("title", "body", "state", "base"),
                    key="number",
                )
        return self._error(404, "Not Found")

    def _page(self, items: list[dict[str, Any]], query: dict[str, str]) -> None:
        per_page, page = int(query.get("per_page", 30)), int(query.get("page", 1))
        chunk = items[(page - 1) * per_page : page * per_page]
        headers = {}
        if page * per_page < len(items):
            headers["Link"] = (
                f'<{self.base}{urlparse(self.path).path}?per_page={per_page}&page={page + 1}>; rel="next"'
            )
        self._send(200, chunk, headers)

    def _repo(self, repo: str) -> dict[str, Any]:
        owner, name = repo.split("/")
        return {
            "id": 1, "name": name, "full_name": repo, "owner": {"login": owner, "id": 1, "type": "Organization"},
            "private": False, "html_url": f"https://github.com/{repo}", "url": f"{self.base}/repos/{repo}",
            "default_branch": "main",
        }  # fmt: skip

    def _create_release(self, repo: str, body: dict[str, Any]) -> None:
        s = self.state
        tag = body.get("tag_name")
        if not tag:
            return self._error(
                422,
                "Validation Failed",
                [{"resource": "Release", "code": "missing_field", "field": "tag_name"}],
            )
        releases = s.releases.setdefault(repo, [])
        if any(r["tag_name"] == tag for r in releases):
            return self._error(
                422,
                "Validation Failed",
                [{"resource": "Release", "code": "already_exists", "field": "tag_name"}],
            )
        rid, s.next_id = s.next_id, s.next_id + 1
        release = {
            "id": rid, "tag_name": tag, "name": body.get("name") or tag, "body": body.get("body", ""),
            "draft": bool(body.get("draft", False)), "prerelease": bool(body.get("prerelease", False)),
            "target_commitish": body.get("target_commitish", "main"),
            "url": f"{self.base}/repos/{repo}/releases/{rid}",
            "html_url": f"https://github.com/{repo}/releases/tag/{tag}", "assets": [],
            "created_at": "2026-01-01T00:00:00Z", "published_at": None if body.get("draft") else "2026-01-01T00:00:00Z",
            "author": {"login": "pitlane-release", "id": 2},
        }  # fmt: skip
        releases.insert(0, release)  # GitHub lists newest first
        self._send(201, release)

    def _create_pull(self, repo: str, body: dict[str, Any]) -> None:
        s = self.state
        owner = repo.split("/")[0]
        for f in ("title", "head", "base"):
            if not body.get(f):
                return self._error(
                    422,
                    "Validation Failed",
                    [{"resource": "PullRequest", "code": "missing_field", "field": f}],
                )
        pulls = s.pulls.setdefault(repo, [])
        head = body["head"] if ":" in body["head"] else f"{owner}:{body['head']}"
        if any(
            p["state"] == "open" and p["head"]["label"] == head and p["base"]["ref"] == body["base"]
            for p in pulls
        ):
            return self._error(
                422,
                "Validation Failed",
                [
                    {
                        "resource": "PullRequest",
                        "code": "custom",
                        "message": f"A pull request already exists for {head}.",
                    }
                ],
            )
        number, s.next_id = s.next_id, s.next_id + 1
        pull = {
            "id": number, "number": number, "state": "open", "title": body["title"], "body": body.get("body", ""),
            "head": {"label": head, "ref": head.split(":", 1)[1]}, "base": {"label": f"{owner}:{body['base']}", "ref": body["base"]},
            "url": f"{self.base}/repos/{repo}/pulls/{number}", "html_url": f"https://github.com/{repo}/pull/{number}",
            "merged": False, "user": {"login": "pitlane-release", "id": 2},
        }  # fmt: skip
        pulls.append(pull)
        self._send(201, pull)

    def _update(
        self,
        items: list[dict[str, Any]],
        ident: int,
        body: dict[str, Any],
        fields: tuple[str, ...],
        key: str = "id",
    ) -> None:
        item = next((i for i in items if i[key] == ident), None)
        if item is None:
            return self._error(404, "Not Found")
        item.update({k: v for k, v in body.items() if k in fields})
        self._send(200, item)

    def do_GET(self) -> None:  # noqa: N802
        self._route("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._route("POST")

    def do_PATCH(self) -> None:  # noqa: N802
        self._route("PATCH")


def _matches(pull: dict[str, Any], query: dict[str, str]) -> bool:
    if query.get("state", "open") not in ("all", pull["state"]):
        return False
    if "head" in query and pull["head"]["label"] != query["head"]:
        return False
    return "base" not in query or pull["base"]["ref"] == query["base"]
