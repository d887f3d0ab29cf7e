"""The registry's front door for cars: the distribution API calls a tub upload needs, only for `data/<car>`.

Cars never get registry credentials. They speak to this gateway with HTTP basic auth (their fleet name and
the password the broker also checks, verified against the same Mosquitto password file), and may read and
write exactly one repository, `data/<name>`: another car's repository, `models/...`, the catalog, a
cross-repository blob mount, any method the upload does not need: 403. Bodies are bounded (a chunk by
`max_body_mb`, a manifest by distribution's 4 MiB) and streamed to the registry, never held whole.

Allowed: `GET /v2/`, `HEAD|GET /v2/data/<car>/blobs/<digest>`, `POST /v2/data/<car>/blobs/uploads/` then
`PUT <location>?digest=` (monolithic upload), `HEAD|GET|PUT /v2/data/<car>/manifests/<ref>`,
`GET /v2/data/<car>/tags/list`.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import re
import sys
import threading
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import requests

from pitlane.artifacts.oci import MAX_MANIFEST_BYTES
from pitlane.fleet import broker
from pitlane.fleet.protocol import INGEST_USER
from pitlane.fleet.ratelog import RateLimitedLog
from pitlane.fleet.tubcheck import data_repository

log = logging.getLogger(__name__)

MAX_BODY_MB = 256  # [MiB] FLEET_MAX_CHUNK_MB's default: one tub chunk (1,000 records of 160x120 JPEGs: ~5 MB)
CHUNK = 1 << 16  # [B] streamed in pieces of this size
REALM = 'Basic realm="pitlane fleet"'
_REPO = r"(?P<repo>[a-z0-9]+(?:[._-][a-z0-9]+)*(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)*)"
# (method set, path pattern, query keys passed on, largest body)
ROUTES: tuple[tuple[frozenset[str], re.Pattern[str], frozenset[str], str], ...] = (
    (
        frozenset({"HEAD", "GET"}),
        re.compile(rf"^/v2/{_REPO}/blobs/sha256:[0-9a-f]{{64}}$"),
        frozenset(),
        "none",
    ),
    (frozenset({"POST"}), re.compile(rf"^/v2/{_REPO}/blobs/uploads/$"), frozenset(), "none"),
    (
        frozenset({"PUT"}),
        re.compile(rf"^/v2/{_REPO}/blobs/uploads/[A-Za-z0-9-]{{1,64}}$"),
        frozenset({"_state", "digest"}),
        "blob",
    ),
    (
        frozenset({"HEAD", "GET", "PUT"}),
        re.compile(rf"^/v2/{_REPO}/manifests/(?:sha256:[0-9a-f]{{64}}|[A-Za-z0-9_][A-Za-z0-9._-]{{0,127}})$"),
        frozenset(),
        "manifest",
    ),
    (frozenset({"GET"}), re.compile(rf"^/v2/{_REPO}/tags/list$"), frozenset({"n", "last"}), "none"),
)
PASSED_HEADERS = (
    "Content-Type",
    "Content-Length",
    "Docker-Content-Digest",
    "Docker-Upload-UUID",
    "Docker-Distribution-Api-Version",
    "Range",
    "ETag",
    "Link",
)


@dataclass(frozen=True)
class GatewayConfig:
    registry: str  # host:port of the NUC's registry
    passwd: Path  # the broker's password file: the cars' credentials
    host: str = "127.0.0.1"
    port: int = 5001  # 0 = a free port
    max_body_mb: int = MAX_BODY_MB  # [MiB]
    timeout_s: float = 60.0  # [s] towards the registry


@dataclass(frozen=True)
class Allowed:
    """A request the gateway passes on: the upstream path and query, and its body limit in bytes."""

    path: str
    query: str
    max_body: int


def check_request(user: str, method: str, target: str, max_body: int) -> Allowed | None:
    """What `user` (a car) may do with `method target`; None = forbidden. Pure: the whole policy."""
    parsed = urllib.parse.urlsplit(target)
    path = parsed.path
    if "%" in path or "//" in path or "/../" in path or "/./" in path:
        return None  # encoded or dotted paths are never needed and could hide another repository
    if path in ("/v2/", "/v2") and method in ("GET", "HEAD"):
        return Allowed("/v2/", "", 0)
    for methods, pattern, keys, body in ROUTES:
        m = pattern.match(path)
        if not m or method not in methods:
            continue
        if m["repo"] != data_repository(user):
            return None
        pairs = [(k, v) for k, v in urllib.parse.parse_qsl(parsed.query, keep_blank_values=True) if k in keys]
        limit = {"none": 0, "blob": max_body, "manifest": MAX_MANIFEST_BYTES}[body]
        return Allowed(path, urllib.parse.urlencode(pairs), limit if method == "PUT" else 0)
    return None


class Credentials:
    """The cars' passwords (hashes in the broker's password file), re-read when the file changes."""

    def __init__(self, passwd: Path) -> None:
        self.passwd = Path(passwd)
        self._stamp: tuple[float, int, int] | None = None
        self._users: dict[str, str] = {}
        self._lock = threading.Lock()

    def check(self, authorization: str | None) -> str | None:
        """The car's name when the Authorization header holds a car's valid credentials, else None."""
        if not authorization or not authorization.startswith("Basic "):
            return None
        try:
            user, _, password = base64.b64decode(authorization[6:], validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return None
        hashed = self._load().get(user)
        if user == INGEST_USER or hashed is None:
            return None
        return user if broker.verify_password(hashed, password) else None

    def _load(self) -> dict[str, str]:
        with self._lock:
            try:
                st = self.passwd.stat()
                stamp: tuple[float, int, int] | None = (st.st_mtime, st.st_size, st.st_ino)
            except OSError:
                stamp = None
            if stamp != self._stamp:
                self._stamp, self._users = stamp, broker.users(self.passwd)
            return self._users


class BodyReader:
    """The request body as an iterable of chunks with a known length (requests streams it as is)."""

    def __init__(self, rfile, length: int) -> None:
        self.rfile, self.length = rfile, length

    def __len__(self) -> int:
        return self.length

    def __iter__(self) -> Iterator[bytes]:
        left = self.length
        while left > 0:
            data = self.rfile.read(min(CHUNK, left))
            if not data:
                raise ConnectionError("the car closed the connection mid-upload")
            left -= len(data)
            yield data


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: GatewayServer

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - the stdlib's signature
        log.debug("gateway: " + format, *args)

    def do_GET(self) -> None:
        self._handle()

    def do_HEAD(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    def do_PUT(self) -> None:
        self._handle()

    def do_PATCH(self) -> None:
        self._handle()

    def do_DELETE(self) -> None:
        self._handle()

    def _handle(self) -> None:
        gw = self.server
        user = gw.credentials.check(self.headers.get("Authorization"))
        if user is None:
            gw.refusals.warn("auth", f"gateway: {self.client_address[0]} sent no valid car credentials")
            self._error(401, "UNAUTHORIZED", "a car's name and password are required", REALM)
            return
        allowed = check_request(user, self.command, self.path, gw.config.max_body_mb << 20)
        if allowed is None:
            gw.refusals.warn(
                "denied",
                f"gateway: car {user} may not {self.command} {self.path[:120]} (only {data_repository(user)})",
            )
            self._error(403, "DENIED", f"car {user} may only read and write {data_repository(user)}")
            return
        if self.headers.get("Transfer-Encoding"):
            self.close_connection = True
            self._error(411, "SIZE_INVALID", "send a Content-Length (chunked bodies are not accepted)")
            return
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if length < 0:
            self.close_connection = True
            self._error(400, "SIZE_INVALID", "Content-Length is not a number of bytes")
            return
        if length > allowed.max_body:
            self._error(413, "SIZE_INVALID", f"body of {length} bytes is over the {allowed.max_body} allowed")
            return
        self._forward(allowed, length)

    def _forward(self, allowed: Allowed, length: int) -> None:
        gw = self.server
        url = f"http://{gw.config.registry}{allowed.path}" + (f"?{allowed.query}" if allowed.query else "")
        headers = {k: v for k in ("Content-Type", "Accept") if (v := self.headers.get(k))}
        body = BodyReader(self.rfile, length) if length else None
        if body is not None:
            headers["Content-Length"] = str(length)
        try:
            upstream = gw.session().request(
                self.command,
                url,
                data=body,
                headers=headers,
                stream=True,
                timeout=gw.config.timeout_s,
                allow_redirects=False,
            )
        except (requests.RequestException, ConnectionError) as exc:
            gw.refusals.warn(
                "upstream", f"gateway: registry {gw.config.registry} unreachable: {type(exc).__name__}"
            )
            self.close_connection = True
            self._error(502, "UNAVAILABLE", "the fleet's registry is unreachable; try again later")
            return
        with upstream:
            self.send_response(upstream.status_code)
            for name in PASSED_HEADERS:
                if name in upstream.headers:
                    self.send_header(name, upstream.headers[name])
            if "Location" in upstream.headers:  # back through the gateway, whatever the registry calls itself
                loc = urllib.parse.urlsplit(upstream.headers["Location"])
                self.send_header("Location", urllib.parse.urlunsplit(("", "", loc.path, loc.query, "")))
            if "Content-Length" not in upstream.headers and self.command != "HEAD":
                self.send_header("Connection", "close")
                self.close_connection = True
            self.end_headers()
            if self.command == "HEAD":
                return
            for chunk in upstream.raw.stream(CHUNK, decode_content=False):
                self.wfile.write(chunk)

    def _error(self, status: int, code: str, message: str, challenge: str | None = None) -> None:
        body = json.dumps({"errors": [{"code": code, "message": message}]}).encode()
        # an unread request body would be parsed as the next request: close instead
        if self.headers.get("Content-Length", "0") != "0" or self.headers.get("Transfer-Encoding"):
            self.close_connection = True
        self.send_response(status)
        if challenge:
            self.send_header("WWW-Authenticate", challenge)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)


class GatewayServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def handle_error(self, request, client_address) -> None:
        """A client that went away mid-request (a car killed, a link cut) is routine: no traceback."""
        if isinstance(sys.exc_info()[1], ConnectionError | TimeoutError):
            log.debug("%s: %s left mid-request", type(self).__name__, client_address[0])
            return
        super().handle_error(request, client_address)

    def __init__(self, config: GatewayConfig) -> None:
        self.config = config
        self.credentials = Credentials(config.passwd)
        self.refusals = RateLimitedLog(log)
        self._local = threading.local()
        super().__init__((config.host, config.port), Handler)

    def session(self) -> requests.Session:
        s = getattr(self._local, "session", None)
        if s is None:
            s = self._local.session = requests.Session()
        return s


class Gateway:
    """The gateway in a background thread: `start()`, `host` (host:port for the cars), `stop()`."""

    def __init__(self, config: GatewayConfig) -> None:
        self.config = config
        self.server: GatewayServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        assert self.server is not None
        return int(self.server.server_address[1])

    @property
    def host(self) -> str:
        addr = self.config.host if self.config.host not in ("", "0.0.0.0") else "127.0.0.1"
        return f"{addr}:{self.port}"

    def start(self) -> Gateway:
        self.server = GatewayServer(self.config)
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True, name="fleet-gateway")
        self._thread.start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None
