"""Real clients of the operator console for the attack tests: an operator logged in through POST /login
(requests), a websocket (tornado's client on its own event loop), and raw sockets that stream huge bodies."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import select
import socket
import struct
import threading
import time
from typing import Any

import requests
import tornado.httpclient
import tornado.websocket


def login(base: str, token: str) -> requests.Session:
    """A browser-like operator: the session cookie from POST /login, the CSRF header on every request."""
    operator = requests.Session()
    answer = operator.post(f"{base}/login", json={"token": token}, timeout=5)
    assert answer.status_code == 200, answer.text
    operator.headers["X-Pitlane-CSRF"] = answer.json()["csrf"]
    operator.label = answer.json()["client"]  # type: ignore[attr-defined]
    return operator


class Socket:
    """A websocket client (tornado's) driven synchronously: connect, send JSON, read JSON replies."""

    def __init__(self, url: str, headers: dict[str, str] | None = None, timeout_s: float = 5.0) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        request = tornado.httpclient.HTTPRequest(url, headers=headers or {})

        async def connect():
            return await tornado.websocket.websocket_connect(request)

        try:
            self.conn = self._call(connect(), timeout_s)
        except BaseException:
            self._stop()
            raise

    def _call(self, coro, timeout_s: float = 5.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout_s)

    def send(self, message: Any) -> None:
        text = message if isinstance(message, str | bytes) else json.dumps(message)

        async def write():
            await self.conn.write_message(text, binary=isinstance(text, bytes))

        self._call(write())

    def recv(self, timeout_s: float = 3.0) -> dict | None:
        """The next message as JSON; None when the server closed the socket."""

        async def read():
            return await self.conn.read_message()

        text = self._call(read(), timeout_s)
        return None if text is None else json.loads(text)

    def ask(self, message: Any) -> dict | None:
        """Send, then the reply (refusals are answered; accepted messages are not)."""
        self.send(message)
        return self.recv()

    @property
    def close_code(self) -> int | None:
        return self.conn.close_code

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.conn.close)
        time.sleep(0.05)
        self._stop()

    def _stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


def ws_url(base: str, path: str = "/wsDrive", token: str | None = None) -> str:
    url = base.replace("http://", "ws://") + path
    return f"{url}?token={token}" if token else url


def cookie_header(operator: requests.Session) -> dict[str, str]:
    return {"Cookie": "; ".join(f"{c.name}={c.value}" for c in operator.cookies)}


def rss_bytes() -> int:
    """This process's resident set size (the car runs in it)."""
    with open(f"/proc/{os.getpid()}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS in /proc/self/status")


CHUNK = b"\0" * 65536


def stream_body(
    port: int, size: int, *, chunked: bool = False, websocket: bool = False, token: str = ""
) -> dict:
    """One attacker connection: a request (POST /drive, or a websocket text frame) announcing `size` bytes,
    streamed 64 KiB at a time from a fixed buffer until the server closes the connection or all is sent
    (the websocket logs in with ?token=, a POST does not: a body is refused before anyone is asked).
    Returns the bytes pushed (into socket buffers) before the refusal was seen, and the first answer line."""
    sent = 0
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        if websocket:
            key = base64.b64encode(os.urandom(16)).decode()
            sock.sendall(
                (
                    f"GET /wsDrive?token={token} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
                    f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
                ).encode()
            )
            first = sock.recv(4096).split(b"\r\n")[0].decode()
            if " 101 " not in first:
                return {"sent": 0, "answer": first}
            sock.sendall(b"\x81\xff" + struct.pack("!Q", size) + b"\0\0\0\0")  # masked text frame, key 0
        else:
            length = "Transfer-Encoding: chunked" if chunked else f"Content-Length: {size}"
            sock.sendall(
                f"POST /drive HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: text/plain\r\n"
                f"{length}\r\n\r\n".encode()
            )
            first = ""
        piece = CHUNK if not chunked else b"10000\r\n" + CHUNK + b"\r\n"
        try:
            while sent < size:
                if select.select([sock], [], [], 0)[0]:  # the server answered: read it before its reset
                    first = first or sock.recv(4096).split(b"\r\n")[0].decode(errors="replace")
                    break
                sock.sendall(piece)
                sent += len(CHUNK)
        except OSError:
            pass  # the server closed the connection: the refusal this test wants
        if not first:
            try:
                first = sock.recv(4096).split(b"\r\n")[0].decode(errors="replace")
            except OSError:
                first = "(connection reset)"
    return {"sent": sent, "answer": first}


class LoopWatch:
    """Samples the car's own telemetry (GET /status loop_hz, with the console token) every 0.2 s in a thread."""

    def __init__(self, base: str, token: str) -> None:
        self.base, self.on = base, True
        self.headers = {"Authorization": f"Bearer {token}"}
        self.samples: list[float] = []
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while self.on:
            status = requests.get(f"{self.base}/status", headers=self.headers, timeout=5).json()
            if status.get("loop_hz") is not None:
                self.samples.append(status["loop_hz"])
            time.sleep(0.2)

    def stop(self) -> list[float]:
        self.on = False
        self.thread.join(5)
        return self.samples
