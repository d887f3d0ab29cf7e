"""A TCP relay in front of a registry that counts the bytes on the wire and can cut the link.

Benchmarks count what a model update really costs (HTTP headers included, both directions); tests play a
flaky link (the registry vanishing in the middle of a pull). Plain sockets and a thread per connection:
it carries a handful of connections at a time.
"""

from __future__ import annotations

import contextlib
import socket
import threading


class Relay:
    """127.0.0.1:<port> -> `target` ("host:port"). `up`/`down`: bytes towards the target / back.

    `cut_after`: close every connection once this many bytes went down in total (None: never).
    """

    def __init__(self, target: str, cut_after: int | None = None) -> None:
        host, _, port = target.rpartition(":")
        self.target = (host, int(port))
        self.cut_after = cut_after
        self.up = 0  # [B] client -> registry
        self.down = 0  # [B] registry -> client
        self._lock = threading.Lock()
        self._server = socket.socket()
        self._server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._server.bind(("127.0.0.1", 0))
        self._server.listen(16)
        self.port = self._server.getsockname()[1]
        self._on = True
        self._conns: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True, name="relay").start()

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def connections(self) -> int:
        """TCP connections accepted so far (a client that reuses its connection opens one)."""
        with self._lock:
            return len(self._conns) // 2

    def reset(self, cut_after: int | None = None) -> None:
        with self._lock:
            self.up = self.down = 0
            self.cut_after = cut_after

    def _accept(self) -> None:
        while self._on:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._conns += [client, upstream]
            threading.Thread(target=self._pipe, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, client, False), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket, up: bool) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                with self._lock:
                    if up:
                        self.up += len(data)
                    else:
                        if self.cut_after is not None and self.down + len(data) > self.cut_after:
                            keep = max(0, self.cut_after - self.down)
                            self.down += keep
                            data = data[:keep]
                            dst.sendall(data)
                            raise OSError("link cut")
                        self.down += len(data)
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
                s.close()

    def close(self) -> None:
        self._on = False
        self._server.close()
        with self._lock:
            conns, self._conns = self._conns, []
        for s in conns:
            s.close()
