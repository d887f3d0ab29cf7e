"""The fleet page and its JSON API, served from the fleet store (stdlib HTTP server, no new dependency).

`/` is the page (pitlane/fleet/web_static: plain HTML, CSS and JavaScript, package data, no CDN, works
offline); it polls `/api/cars` every second and draws each car's history from `/api/cars/<name>/history`
as SVG sparklines. `/api/tubs` is the data bundle index (`pitlane data ls` reads it too). `/metrics` gives
Prometheus one gauge per car and figure, read from the store at scrape time (prometheus-client, when
installed): pitlane keeps no metrics store of its own.
"""

from __future__ import annotations

import json
import logging
import mimetypes
import re
import sys
import threading
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from pitlane.fleet.store import FIGURE_NAMES, Store
from pitlane.fleet.view import downsample, fleet_rows

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).with_name("web_static")
STATIC_FILES = ("fleet.js", "fleet.css")
HISTORY_S = 3600.0  # [s] default span of a car's history plots
HISTORY_POINTS = 600  # most points a history answer holds (the plots are a few hundred pixels wide)
_CAR = r"(?P<car>[a-z0-9][a-z0-9-]{0,62})"


@dataclass(frozen=True)
class WebConfig:
    host: str = "127.0.0.1"
    port: int = 8080  # 0 = a free port


class FleetAPI:
    """The answers, apart from HTTP: `known()` gives the cars with credentials, `counts()` live counters."""

    def __init__(
        self,
        store: Store,
        known: Callable[[], set[str]] = set,
        counts: Callable[[], dict[str, int]] = dict,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store, self.known, self.counts, self.clock = store, known, counts, clock

    def cars(self) -> dict[str, Any]:
        now = self.clock()
        refusals = {k: v["count"] for k, v in self.store.refusals().items()}
        return {"now": now, "cars": fleet_rows(self.store.cars(), self.known(), now), "refused": refusals}

    def history(self, car: str, seconds: float, points: int) -> dict[str, Any]:
        now = self.clock()
        rows = self.store.history(car, now - seconds)
        return {
            "car": car,
            "now": now,
            "since": now - seconds,
            "figures": list(FIGURE_NAMES),
            "points": downsample(rows, FIGURE_NAMES, points),
        }

    def events(self, car: str) -> dict[str, Any]:
        return {"car": car, "events": self.store.events(car)}

    def tubs(self, car: str | None, model: str | None, since: float | None, until: float | None) -> dict:
        tubs = [
            t
            for t in self.store.tubs(car=car, model=model)
            if (since is None or (t["end"] or t["indexed"]) >= since)
            and (until is None or (t["start"] or t["indexed"]) <= until)
        ]
        return {"tubs": tubs}


def _float(query: dict[str, list[str]], key: str, default: float | None) -> float | None:
    try:
        return float(query[key][0]) if key in query else default
    except ValueError:
        return default


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: WebServer

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - the stdlib's signature
        log.debug("fleet page: " + format, *args)

    def do_GET(self) -> None:
        url = urllib.parse.urlsplit(self.path)
        query = urllib.parse.parse_qs(url.query)
        api = self.server.api
        path = url.path
        try:
            if path in ("/", "/index.html"):
                self._file("index.html")
            elif path.startswith("/static/") and path[8:] in STATIC_FILES:
                self._file(path[8:])
            elif path == "/api/cars":
                self._json(api.cars())
            elif m := re.fullmatch(rf"/api/cars/{_CAR}/history", path):
                seconds = _float(query, "seconds", HISTORY_S) or HISTORY_S
                points = int(_float(query, "points", HISTORY_POINTS) or HISTORY_POINTS)
                self._json(api.history(m["car"], seconds, max(2, min(points, 5000))))
            elif m := re.fullmatch(rf"/api/cars/{_CAR}/events", path):
                self._json(api.events(m["car"]))
            elif path == "/api/tubs":
                one = {k: v[0] for k, v in query.items()}
                self._json(
                    api.tubs(
                        one.get("car"),
                        one.get("model"),
                        _float(query, "since", None),
                        _float(query, "until", None),
                    )
                )
            elif path == "/metrics":
                self._metrics()
            else:
                self._send(404, b"not found\n", "text/plain")
        except BrokenPipeError:
            pass

    def _file(self, name: str) -> None:
        kind = mimetypes.guess_type(name)[0] or "application/octet-stream"
        self._send(200, (STATIC_DIR / name).read_bytes(), f"{kind}; charset=utf-8")

    def _json(self, doc: dict[str, Any]) -> None:
        self._send(200, json.dumps(doc, allow_nan=False).encode(), "application/json")

    def _metrics(self) -> None:
        try:
            from pitlane.fleet.metrics import exposition
        except ImportError:
            self._send(404, b"prometheus-client is not installed: no /metrics\n", "text/plain")
            return
        body, kind = exposition(self.server.api)
        self._send(200, body, kind)

    def _send(self, status: int, body: bytes, kind: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-cache")
        self.end_headers()
        self.wfile.write(body)


class WebServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def handle_error(self, request, client_address) -> None:
        """A client that went away mid-request (a car killed, a link cut) is routine: no traceback."""
        if isinstance(sys.exc_info()[1], ConnectionError | TimeoutError):
            log.debug("%s: %s left mid-request", type(self).__name__, client_address[0])
            return
        super().handle_error(request, client_address)

    def __init__(self, config: WebConfig, api: FleetAPI) -> None:
        self.api = api
        super().__init__((config.host, config.port), Handler)


class FleetWeb:
    """The page in a background thread: `start()`, `url`, `stop()`."""

    def __init__(self, config: WebConfig, api: FleetAPI) -> None:
        self.config, self.api = config, api
        self.server: WebServer | None = None

    @property
    def port(self) -> int:
        assert self.server is not None
        return int(self.server.server_address[1])

    @property
    def url(self) -> str:
        addr = self.config.host if self.config.host not in ("", "0.0.0.0") else "127.0.0.1"
        return f"http://{addr}:{self.port}"

    def start(self) -> FleetWeb:
        self.server = WebServer(self.config, self.api)
        threading.Thread(target=self.server.serve_forever, daemon=True, name="fleet-web").start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None
