"""A plain-socket client of the DonkeyCar simulator protocol, written from docs/sim-protocol.md for tests.

Deliberately independent of pitlane.twin.client, so the server is checked against the spec, not against
our own client.
"""

from __future__ import annotations

import json
import socket
import time


class RawClient:
    """Plain socket client: sends JSON objects, reads newline-terminated JSON lines."""

    def __init__(self, port: int, timeout_s: float = 5.0, bind: tuple[str, int] | None = None):
        """`bind`: the local (address, port) to connect from (e.g. 127.0.0.2: another host, for the twin)."""
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout_s, source_address=bind)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""
        self.skipped: list[dict] = []

    def send(self, msg: dict, newline: bool = True) -> None:
        self.sock.sendall(json.dumps(msg).encode() + (b"\n" if newline else b""))

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def recv(self, timeout_s: float = 5.0) -> dict:
        deadline = time.monotonic() + timeout_s
        while b"\n" not in self.buf:
            self.sock.settimeout(max(0.001, deadline - time.monotonic()))
            chunk = self.sock.recv(1 << 18)
            if not chunk:
                raise ConnectionError("server closed the connection")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return json.loads(line)

    def expect(self, msg_type: str, timeout_s: float = 5.0) -> dict:
        """Next message of `msg_type`; others are kept in `skipped`."""
        deadline = time.monotonic() + timeout_s
        while True:
            msg = self.recv(max(0.001, deadline - time.monotonic()))
            if msg["msg_type"] == msg_type:
                return msg
            self.skipped.append(msg)

    def drain(self, seconds: float) -> list[dict]:
        """Everything that arrives within `seconds`."""
        out, deadline = [], time.monotonic() + seconds
        while True:
            try:
                out.append(self.recv(max(0.001, deadline - time.monotonic())))
            except TimeoutError:
                return out

    def barrier(self) -> list[dict]:
        """Round trip a get_protocol_version; returns what arrived before its answer."""
        self.skipped = []
        self.send({"msg_type": "get_protocol_version"})
        self.expect("protocol_version")
        return self.skipped

    def alive(self) -> bool:
        """The server still answers this connection."""
        self.send({"msg_type": "get_protocol_version"})
        return self.expect("protocol_version")["version"] == "2"

    def close(self) -> None:
        self.sock.close()
