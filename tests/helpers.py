"""Small test support shared by the test areas: polling with a deadline and a free local TCP port."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable


def wait_until(predicate: Callable[[], object], timeout_s: float = 10.0) -> bool:
    """Poll `predicate` every 20 ms until it is true (True) or `timeout_s` passes (False)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return False


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (for servers that must be told their port)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
