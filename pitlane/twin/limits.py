"""What one client may take from a shared twin server: the limits, their units and their `serve` flags,
and the small tools that enforce them (no sockets here; the server and its client sessions use them,
`pitlane twin serve` reads the flags).

`LogLimit` caps one client's warnings, `TokenBucket` paces its messages and scene loads, and `FairPool` runs
expensive work on threads shared by all clients, least-served client first.
"""

from __future__ import annotations

import concurrent.futures
import heapq
import ipaddress
import itertools
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any

from pitlane.errors import UserError

MAX_FRAME_PIXELS = 1920 * 1080  # [px] the largest camera the twin renders at all (CameraParams)


@dataclass(frozen=True)
class ServerLimits:
    """Per-client limits of the twin server. 0 means "no limit" for messages_per_s, scene_loads_per_min
    and idle_timeout_s, and "automatic" for workers."""

    max_clients: int = 32  # connections served at once; more are closed at once, with a log line
    max_clients_per_address: int = 8  # of them from one address (an IPv6 /64); so one host cannot take all
    max_camera_pixels: int = 640 * 480  # [px] largest img_w * img_h a cam_config may ask for
    messages_per_s: float = 2000.0  # [1/s] per client; beyond it the server reads that client more slowly
    scene_loads_per_min: float = 30.0  # [1/min] load_scene + regen_road per client; beyond, they wait
    idle_timeout_s: float = 300.0  # [s] no complete message (or nothing read) for this long: closed
    send_buffer_bytes: int = 256 << 10  # [bytes] socket send buffer and write queue per client
    workers: int = 0  # threads rendering big frames and loading scenes; 0: half the CPU cores, 1..4
    log_lines: int = 10  # warnings logged per client per log_interval_s; the rest are counted
    log_interval_s: float = 10.0  # [s]

    def __post_init__(self) -> None:
        checks = (
            (1 <= self.max_clients <= 100_000, f"max clients {self.max_clients} outside 1..100000"),
            (
                1 <= self.max_clients_per_address <= 100_000,
                f"max clients per address {self.max_clients_per_address} outside 1..100000",
            ),
            (
                64 <= self.max_camera_pixels <= MAX_FRAME_PIXELS,
                f"max camera pixels {self.max_camera_pixels} outside 64..{MAX_FRAME_PIXELS} (up to 1920x1080)",
            ),
            (0 <= self.messages_per_s <= 1e6, f"message rate {self.messages_per_s}/s outside 0..1000000"),
            (
                0 <= self.scene_loads_per_min <= 1e5,
                f"scene loads {self.scene_loads_per_min}/min outside 0..100000",
            ),
            (0 <= self.idle_timeout_s <= 86_400, f"idle timeout {self.idle_timeout_s} s outside 0..86400"),
            (
                16 << 10 <= self.send_buffer_bytes <= 1 << 30,
                f"send buffer {self.send_buffer_bytes} bytes outside 16 KiB..1 GiB",
            ),
            (0 <= self.workers <= 64, f"workers {self.workers} outside 0..64"),
            (1 <= self.log_lines <= 10_000, f"log lines {self.log_lines} outside 1..10000"),
            (
                0.1 <= self.log_interval_s <= 86_400,
                f"log interval {self.log_interval_s} s outside 0.1..86400",
            ),
        )
        for ok, why in checks:
            if not ok:  # also False for NaN
                raise UserError(why)

    @property
    def worker_threads(self) -> int:
        return self.workers or max(1, min(4, (os.cpu_count() or 2) // 2))


# (field, flag, metavar, help) of each `pitlane twin serve` flag; the default comes from ServerLimits
FLAGS = (
    ("max_clients", "--max-clients", "N", "connections served at once; more are closed at once"),
    (
        "max_clients_per_address",
        "--max-clients-per-address",
        "N",
        "connections from one address (an IPv6 /64) at once; more from it are closed at once",
    ),
    ("max_camera_pixels", "--max-camera-pixels", "PX", "largest camera (img_w*img_h) a client may ask for"),
    (
        "messages_per_s",
        "--max-message-rate",
        "PER_S",
        "messages per second per client; faster senders are read more slowly (0: no limit)",
    ),
    (
        "scene_loads_per_min",
        "--max-scene-loads",
        "PER_MIN",
        "load_scene + regen_road per minute per client; more wait (0: no limit)",
    ),
    (
        "idle_timeout_s",
        "--idle-timeout",
        "S",
        "close a client that sends no complete message, or reads nothing, for this long [s] (0: never)",
    ),
    (
        "send_buffer_bytes",
        "--send-buffer",
        "BYTES",
        "send buffer per client; a client that reads slower than the stream gets the newest frame, older ones are dropped",
    ),
    ("workers", "--workers", "N", "threads for big frames and scene loading (0: half the cores, 1..4)"),
    ("log_lines", "--log-lines", "N", "warnings logged per client per --log-interval; the rest are counted"),
    ("log_interval_s", "--log-interval", "S", "window of --log-lines [s]"),
)


def add_limit_arguments(parser) -> None:
    """The limits as flags of an argparse parser (`pitlane twin serve`)."""
    defaults = ServerLimits()
    types = {f.name: f.type for f in fields(ServerLimits)}
    group = parser.add_argument_group("limits per client (a shared twin)")
    for name, flag, metavar, text in FLAGS:
        default = getattr(defaults, name)
        group.add_argument(
            flag,
            dest=name,
            type=float if types[name] in ("float", float) else int,
            default=default,
            metavar=metavar,
            help=f"{text} (default {default:g})",
        )


def limits_from_args(args) -> ServerLimits:
    return ServerLimits(**{name: getattr(args, name) for name, *_ in FLAGS})


def client_address(peer: Any) -> str:
    """Whose connection `peer` (asyncio's peername) is, for the per-address limit: the IPv4 address, or the
    /64 of an IPv6 one (a host picks any address in its /64); an IPv4-mapped IPv6 address is its IPv4."""
    host = peer[0] if isinstance(peer, tuple | list) and peer else str(peer)
    try:
        addr = ipaddress.ip_address(str(host).split("%", 1)[0])
    except ValueError:
        return str(host)  # a Unix socket, or something without an IP: its own key
    if isinstance(addr, ipaddress.IPv6Address):
        if addr.ipv4_mapped is not None:
            return str(addr.ipv4_mapped)
        return str(ipaddress.ip_network(f"{addr}/64", strict=False))
    return str(addr)


class LogLimit:
    """At most `lines` warnings per `interval_s`; the rest are counted and summed up in one line later."""

    def __init__(self, log: logging.Logger, prefix: str, lines: int, interval_s: float) -> None:
        self.log, self.prefix, self.lines, self.interval_s = log, prefix, lines, interval_s
        self.window_start = -float("inf")
        self.in_window = 0
        self.suppressed = 0
        self.total = 0  # every warning, logged or not

    def warn(self, text: str, *args) -> None:
        self.total += 1
        now = time.monotonic()
        if now - self.window_start >= self.interval_s:
            self.flush()
            self.window_start, self.in_window = now, 0
        if self.in_window < self.lines:
            self.in_window += 1
            self.log.warning(self.prefix + text, *args)
        else:
            self.suppressed += 1

    def flush(self) -> None:
        if self.suppressed:
            self.log.warning(
                self.prefix + "%d more warnings suppressed (at most %d per %g s)",
                self.suppressed,
                self.lines,
                self.interval_s,
            )
            self.suppressed = 0


class TokenBucket:
    """Token bucket: `take()` says how long [s] to wait before the taken token is due (0: now)."""

    def __init__(self, rate_per_s: float, burst: float) -> None:
        self.rate, self.burst = rate_per_s, burst
        self.tokens, self.t = burst, time.monotonic()

    def take(self, tokens: float = 1.0) -> float:
        if self.rate <= 0:
            return 0.0
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.t) * self.rate)
        self.t = now
        self.tokens -= tokens
        return 0.0 if self.tokens >= 0 else -self.tokens / self.rate


class FairPool:
    """Worker threads shared by all clients; of the waiting jobs, the one whose client has used the least
    worker time so far runs first, so a client spamming expensive work waits behind everyone else's."""

    def __init__(self, threads: int) -> None:
        self._cv = threading.Condition()
        self._heap: list[tuple[float, int, int, Callable[[], Any], concurrent.futures.Future]] = []
        self._used: dict[int, float] = {}  # [s] worker time per client id
        self._seq = itertools.count()
        self._closed = False
        self._threads = [
            threading.Thread(target=self._work, name=f"pitlane-twin-worker-{i}", daemon=True)
            for i in range(threads)
        ]
        for t in self._threads:
            t.start()

    def submit(self, owner: int, fn: Callable[[], Any]) -> concurrent.futures.Future:
        fut: concurrent.futures.Future = concurrent.futures.Future()
        with self._cv:
            if self._closed:
                raise RuntimeError("worker pool closed")
            used = self._used.setdefault(owner, 0.0)
            heapq.heappush(self._heap, (used, next(self._seq), owner, fn, fut))
            self._cv.notify()
        return fut

    def forget(self, owner: int) -> None:
        with self._cv:
            self._used.pop(owner, None)

    def _work(self) -> None:
        while True:
            with self._cv:
                while not self._heap and not self._closed:
                    self._cv.wait()
                if not self._heap:
                    return
                _, _, owner, fn, fut = heapq.heappop(self._heap)
            if not fut.set_running_or_notify_cancel():
                continue
            t0 = time.perf_counter()
            try:
                fut.set_result(fn())
            except BaseException as e:  # noqa: BLE001 - handed to the awaiting client
                fut.set_exception(e)
            with self._cv:
                if owner in self._used:  # not for a client that has gone meanwhile
                    self._used[owner] += time.perf_counter() - t0

    def close(self, timeout_s: float = 5.0) -> None:
        """Cancel waiting jobs, let running ones finish (OpenCV must not be inside a frame at exit)."""
        with self._cv:
            self._closed = True
            for *_, fut in self._heap:
                fut.cancel()
            self._heap.clear()
            self._cv.notify_all()
        deadline = time.monotonic() + timeout_s
        for t in self._threads:
            t.join(max(0.0, deadline - time.monotonic()))
