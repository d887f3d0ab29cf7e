"""A hostile registry for tests: an HTTP server thread in front of the real `docker-registry` that passes
most requests through and, for the paths a test names, attacks the client instead:

  endless      200, chunked, random bytes without end (an endless blob or manifest)
  huge         200, `Content-Length` of 64 GiB, then random bytes without end
  trickle      200, the real `Content-Length`, then the real body one byte per `trickle_s` seconds
  slow-status  the status line and headers themselves one byte per `trickle_s` seconds
  hidden       404 (a `.sig` or `.att` the registry holds but hides, until the test lifts it)

It is no fake of the registry (every other answer is the real one): it plays the attacker the car must
survive. `requests` counts what each path was asked, so a test can tell a backoff from a busy loop.
"""

from __future__ import annotations

import http.server
import os
import threading
import time
from collections import Counter

import requests

ATTACKS = ("endless", "huge", "trickle", "slow-status", "hidden")
_PASSED_HEADERS = ("Content-Type", "Docker-Content-Digest", "Content-Length")


class HostileRegistry:
    """127.0.0.1:<port> in front of `upstream` ("host:port"). `attack(suffix, how)`: every request whose
    path ends with `suffix` (a digest, a `sha256-<hex>.sig` tag) is attacked `how`; `lift(suffix)` ends it."""

    def __init__(self, upstream: str, trickle_s: float = 1.0) -> None:
        self.upstream = upstream
        self.trickle_s = trickle_s
        self.attacks: dict[str, str] = {}
        self.requests: Counter[str] = Counter()  # path suffix (the last path component) -> requests seen
        self.bytes_sent = 0  # [B] bytes of attack bodies written
        self._lock = threading.Lock()
        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True, name="hostile")
        self._thread.start()

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self._server.server_address[1]}"

    def attack(self, suffix: str, how: str) -> None:
        assert how in ATTACKS, how
        with self._lock:
            self.attacks[suffix] = how

    def lift(self, suffix: str) -> None:
        with self._lock:
            self.attacks.pop(suffix, None)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _how(self, path: str) -> str | None:
        with self._lock:
            self.requests[path.rsplit("/", 1)[-1]] += 1
            return next((how for suffix, how in self.attacks.items() if path.endswith(suffix)), None)

    def _handler(self):
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_GET(self):
                self._serve(body=True)

            def do_HEAD(self):
                self._serve(body=False)

            def _serve(self, body: bool) -> None:
                how = owner._how(self.path)
                try:
                    if how is None:
                        self._pass(body)
                    elif how == "hidden":
                        self._answer(404, b'{"errors":[{"code":"MANIFEST_UNKNOWN"}]}')
                    else:
                        self._attack(how, body)
                except (BrokenPipeError, ConnectionResetError, OSError):
                    self.close_connection = True  # the client cut us off: what the attack was for

            def _pass(self, body: bool) -> None:
                headers = {k: v for k, v in self.headers.items() if k in ("Accept", "Authorization")}
                up = requests.request(
                    self.command, f"http://{owner.upstream}{self.path}", headers=headers, timeout=30
                )
                self.send_response(up.status_code)
                for name in _PASSED_HEADERS:
                    if name in up.headers:
                        self.send_header(name, up.headers[name])
                if "Content-Length" not in up.headers:
                    self.send_header("Content-Length", str(len(up.content)))
                self.end_headers()
                if body:
                    self.wfile.write(up.content)

            def _answer(self, status: int, data: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _attack(self, how: str, body: bool) -> None:
                if how == "slow-status":
                    for byte in b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n":
                        self.wfile.write(bytes([byte]))
                        self.wfile.flush()
                        time.sleep(owner.trickle_s)
                    return
                if how == "trickle":
                    real = requests.get(f"http://{owner.upstream}{self.path}", timeout=30).content
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(real)))
                    self.end_headers()
                    for byte in real if body else b"":
                        self.wfile.write(bytes([byte]))
                        self.wfile.flush()
                        owner.bytes_sent += 1
                        time.sleep(owner.trickle_s)
                    return
                self.send_response(200)
                if how == "huge":
                    self.send_header("Content-Length", str(64 << 30))
                else:
                    self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                chunk = os.urandom(1 << 16)
                while body:
                    frame = chunk if how == "huge" else b"%x\r\n%s\r\n" % (len(chunk), chunk)
                    self.wfile.write(frame)
                    owner.bytes_sent += len(chunk)

        return Handler
