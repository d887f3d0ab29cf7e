"""HTTP for registry pulls with a wall-clock deadline: the whole pull ends by it, not each socket read.

A timeout (requests', urllib3's `Timeout(total=)` too) bounds one `recv`: a registry that sends a byte a
second never trips it, and a 64 KiB read waits for all 64 KiB, so a trickling registry could hold a pull
(and the car's model manager) for days. Here every socket a session opens is kept (weakly), and when a
pull's `Deadline` passes, a timer thread shuts them down (shutdown(2)), which ends a read blocked in another
thread at once; the next request of that pull is refused before it starts.

A TLS handshake is bounded by the per-read timeout only: the plain socket is handed over to the TLS socket
during it, and the TLS socket is known once the handshake is done.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any

import requests
import urllib3
from requests.adapters import HTTPAdapter


class Sockets:
    """The sockets a session opened (held weakly: closed ones drop out), and shutting them all down."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._socks: weakref.WeakSet[socket.socket] = weakref.WeakSet()

    def add(self, sock: socket.socket) -> None:
        with self._lock:
            self._socks.add(sock)

    def cut(self) -> int:
        """Shut every open socket down (reads blocked on them return at once); how many were open."""
        with self._lock:
            socks = list(self._socks)
        for sock in socks:
            with contextlib.suppress(OSError):  # closed meanwhile, or handed over to a TLS socket
                sock.shutdown(socket.SHUT_RDWR)
        return len(socks)


def _pool_classes(sockets: Sockets) -> dict[str, type]:
    """urllib3 pools whose connections report each socket they open to `sockets`."""

    class Conn(urllib3.connection.HTTPConnection):
        def _new_conn(self) -> socket.socket:
            sock = super()._new_conn()
            sockets.add(sock)
            return sock

    class TLSConn(urllib3.connection.HTTPSConnection):
        def connect(self) -> None:
            super().connect()
            if self.sock is not None:
                sockets.add(self.sock)

    class Pool(urllib3.HTTPConnectionPool):
        ConnectionCls = Conn

    class TLSPool(urllib3.HTTPSConnectionPool):
        ConnectionCls = TLSConn

    return {"http": Pool, "https": TLSPool}


class _TrackingAdapter(HTTPAdapter):
    def __init__(self, sockets: Sockets) -> None:
        self._sockets = sockets
        super().__init__()

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = _pool_classes(self._sockets)


def session(sockets: Sockets) -> requests.Session:
    """A requests session whose every socket `sockets` knows (so a deadline can cut it)."""
    s = requests.Session()
    adapter = _TrackingAdapter(sockets)
    s.mount("http://", adapter)
    s.mount("https://", adapter)
    return s


class Deadline:
    """A wall-clock limit on a stretch of work: `remaining()` seconds, `expired`; when it passes, `on_expiry`
    runs once, from a timer thread (unless `cancel()` came first)."""

    def __init__(self, seconds: float, on_expiry: Callable[[], object]) -> None:
        self.seconds = seconds  # [s]
        self.end = time.monotonic() + seconds
        self._lock = threading.Lock()
        self._cancelled = False
        self.expired = False
        self._on_expiry = on_expiry
        self._timer = threading.Timer(max(0.0, seconds), self._expire)
        self._timer.daemon = True
        self._timer.start()

    def _expire(self) -> None:
        with self._lock:
            if self._cancelled:
                return
            self.expired = True
        self._on_expiry()

    def remaining(self) -> float:
        """[s] left (<= 0: passed)."""
        left = self.end - time.monotonic()
        if left <= 0:
            self.expired = True
        return left

    def cancel(self) -> None:
        with self._lock:
            self._cancelled = True
        self._timer.cancel()
