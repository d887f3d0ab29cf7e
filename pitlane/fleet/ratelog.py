"""Bad input from the network costs one log line per reason every few seconds, never a flood: a car that
sends garbage a thousand times a second must not bury the lines that matter."""

from __future__ import annotations

import logging
import time
from collections import Counter

LOG_EVERY_S = 10.0  # [s] at most one log line per reason in this time


class RateLimitedLog:
    """One warning per reason per `every_s`; the next one says how many were not logged in between."""

    def __init__(self, log: logging.Logger, every_s: float = LOG_EVERY_S) -> None:
        self.log = log
        self.every_s = every_s
        self._last: dict[str, float] = {}
        self._quiet: Counter[str] = Counter()

    def warn(self, reason: str, text: str) -> None:
        now = time.monotonic()
        if now - self._last.get(reason, -1e9) < self.every_s:
            self._quiet[reason] += 1
            return
        more = self._quiet.pop(reason, 0)
        self._last[reason] = now
        self.log.warning("%s%s", text, f" (and {more} more like it since the last line)" if more else "")
