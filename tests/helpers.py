"""Small test support shared by the test areas: polling with a deadline, a free local TCP port and
gym-donkeycar's rewrite of inbound messages."""

from __future__ import annotations

import re
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


def replace_float_notation(text: str) -> str:
    """What gym-donkeycar 1.3.1 (core/util.py) does to every inbound message: comma decimals -> dots."""
    for pattern in (r'"[a-zA-Z_]+":(?P<num>[0-9,E-]+),', r'"[a-zA-Z_]+":(?P<num>[0-9,E-]+)}'):
        for m in re.finditer(pattern, text):
            text = text.replace(m.group("num"), m.group("num").replace(",", "."))
    return text
