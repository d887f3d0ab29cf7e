"""The conformance checker's side of the wire: a plain TCP connection to a simulator, read the way
gym-donkeycar reads it (newline-framed JSON, comma decimals mended) and written the way it writes (JSON
objects back to back, paced like its message loop).

Written from docs/sim-protocol.md, not from the twin's server or pitlane's own client (`pitlane.twin.client`),
so a mistake those two share cannot pass the checker (`pitlane.twin.conformance`) unseen. Unusable lines are
kept, with why, for the framing verdict.
"""

from __future__ import annotations

import json
import socket
import time

from pitlane.errors import UserError
from pitlane.twin import protocol as P

SEND_GAP_S = 0.01  # [s] least pause between two sends (gym-donkeycar sends one message per socket poll)
MAX_MESSAGE_BYTES = 1 << 26  # [bytes] a telemetry line may carry a large PNG frame


class SimulatorUnreachable(UserError):
    """Nothing accepts a TCP connection at host:port."""


class ConnectionClosed(Exception):
    """The simulator closed or broke the connection."""


class RawWire:
    """The raw connection: paced sends, newline-framed JSON reads with arrival times, bad lines kept."""

    def __init__(self, host: str, port: int, timeout_s: float):
        try:
            self.sock = socket.create_connection((host, port), timeout=timeout_s)
        except OSError as e:
            why = e.strerror or str(e)
            raise SimulatorUnreachable(
                f"nothing answers at {host}:{port} ({why}); start the twin with "
                "`pitlane twin serve` or the Unity simulator first"
            ) from None
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""
        self.bad: list[str] = []  # why each unusable message was unusable
        self.received = 0
        self.seen: list[str] = []  # msg_types that arrived while waiting for something else (not telemetry)
        self._last_send = 0.0

    def send(self, msg: dict) -> None:
        pause = self._last_send + SEND_GAP_S - time.monotonic()
        if pause > 0:
            time.sleep(pause)
        try:
            self.sock.sendall(json.dumps(msg).encode())
        except OSError as e:
            raise ConnectionClosed(f"sending {msg['msg_type']} failed: {e}") from None
        self._last_send = time.monotonic()

    def next(self, deadline: float) -> tuple[float, dict] | None:
        """(arrival time, message) of the next usable message, or None at `deadline` (time.monotonic)."""
        while True:
            i = self.buf.find(b"\n")
            if i >= 0:
                line, self.buf = self.buf[:i], self.buf[i + 1 :]
                if not line.strip():
                    continue
                self.received += 1
                msg = P.decode_message(line, MAX_MESSAGE_BYTES)  # comma decimals mended like gym-donkeycar
                if isinstance(msg, P.ProtocolError):
                    self.bad.append(str(msg))
                    continue
                return time.monotonic(), msg
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(1 << 18)
            except TimeoutError:
                return None
            except OSError as e:
                raise ConnectionClosed(f"connection lost ({e})") from None
            if not chunk:
                raise ConnectionClosed("the simulator closed the connection")
            self.buf += chunk

    def wait_for(self, *msg_types: str, timeout_s: float) -> tuple[float, dict] | None:
        deadline = time.monotonic() + timeout_s
        while (got := self.next(deadline)) is not None:
            if got[1]["msg_type"] in msg_types:
                return got
            if got[1]["msg_type"] != "telemetry":
                self.seen.append(got[1]["msg_type"])
        return None

    def telemetry(self, duration_s: float) -> list[tuple[float, dict]]:
        """Every telemetry message that arrives within `duration_s`."""
        deadline, out = time.monotonic() + duration_s, []
        while (got := self.wait_for("telemetry", timeout_s=deadline - time.monotonic())) is not None:
            out.append(got)
        return out

    def hint(self) -> str:
        """What arrived instead, for a FAIL reason."""
        parts = []
        if self.seen:
            parts.append("got instead: " + ", ".join(dict.fromkeys(self.seen)))
        if self.buf.strip():
            parts.append(
                f"{len(self.buf)} bytes without a terminating newline (gym-donkeycar splits on '}}\\n')"
            )
        if self.bad:
            parts.append(f"{len(self.bad)} unusable message(s), first: {self.bad[0][:80]}")
        self.seen.clear()
        return f" ({'; '.join(parts)})" if parts else ""
