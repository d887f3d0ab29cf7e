"""The model manager's rules, pure (no network, no files): which release serials a car accepts, when a
model that could not be taken is tried again, and when the model a car runs is stale or frozen.

Serials. The release pipeline assigns them (one more than the highest released) and signs them, so a
pusher cannot choose one. The car keeps a floor, the highest serial it accepted (on a persistent volume),
and its image ships a minimum (`pitlane/car/trust/min_serial`, raised by a code release): older is refused.
A serial more than `max_jump` above the floor is refused too: the pipeline counts one at a time, so such a
jump is a mistake or a release signed outside the pipeline, and accepting it would raise the floor past
every release to come (a fleet locked out until each car's state is wiped).

Retries. Whatever keeps the desired model out (the registry down, a trickle cut by the pull's deadline, a
signature or attestation not there yet, a bad blob, a failed check) is tried again after a wait that
doubles from `low_s` to at most `high_s`, each wait a random 50-100 % of that (so a fleet does not knock
in step): never skipped for good, never a busy loop.

Freshness, of the model the car runs, judged against `limit_s` (MODEL_STALE_S):
  current   it is the desired one, and the registry answered within the limit
  updating  a desired one differs from it, for less than the limit so far
  stale     a desired one has differed for longer than the limit (it cannot be fetched, or is refused)
  frozen    it is the desired one, but the registry has not answered for longer than the limit: the car
            would not get the next release either (cut off, or a registry that withholds everything)
  none      no desired model is named
"""

from __future__ import annotations

import random
from dataclasses import dataclass

CURRENT, UPDATING, STALE, FROZEN, NO_DESIRED = "current", "updating", "stale", "frozen", "none"


@dataclass(frozen=True)
class SerialRules:
    floor: int  # the highest serial this car accepted (0: none yet)
    min_serial: int  # the lowest serial this car's image accepts
    pin: int | None  # an older serial the operator pinned on purpose (MODEL_PIN_SERIAL)
    max_jump: int  # how far above the floor a serial may be

    def problem(self, serial: int, *, accepted_before: bool = False) -> str | None:
        """Why release `serial` is refused (words and what to do), or None.

        `accepted_before`: the car's own record of the model it last ran (exempt from its floor, which a
        rollback to it may have left behind, and from the jump)."""
        if serial < self.min_serial:
            return (
                f"release serial {serial} is below {self.min_serial}, the lowest this car image accepts "
                "(a code release withdrew it); name a newer release"
            )
        if accepted_before:
            return None
        floor = max(self.floor, self.min_serial)
        if serial < floor and serial != self.pin:
            return (
                f"release serial {serial}, older than serial {floor} this car already accepted (a rollback); "
                f"set MODEL_PIN_SERIAL = {serial} to run it on purpose"
            )
        if serial > floor + self.max_jump:
            return (
                f"release serial {serial} jumps {serial - floor} above this car's floor {floor} (at most "
                f"MODEL_MAX_SERIAL_JUMP = {self.max_jump}): the pipeline counts serials one at a time; if the "
                "jump is meant, raise MODEL_MAX_SERIAL_JUMP"
            )
        return None


def backoff_s(failures: int, low_s: float, high_s: float, u: float) -> float:
    """[s] the wait after `failures` (>= 1) failed tries in a row: low_s * 2^(failures-1), at most high_s,
    times 0.5 + u / 2 (u in [0, 1): the jitter)."""
    base = min(high_s, low_s * 2.0 ** min(failures - 1, 60))
    return base * (0.5 + u / 2.0)


class Retry:
    """When the desired model is next tried, after failures in a row (one digest at a time: a new desired
    digest starts afresh)."""

    def __init__(self, low_s: float, high_s: float, rng: random.Random | None = None) -> None:
        self.low_s, self.high_s = low_s, high_s
        self.rng = rng or random.Random()
        self.digest: str | None = None
        self.failures = 0
        self.next_at = 0.0  # [s] clock time of the next try

    def due(self, digest: str, now: float) -> bool:
        """Whether `digest` may be tried at `now` (also when the clock jumped back past the longest wait)."""
        return digest != self.digest or now >= self.next_at or self.next_at - now > self.high_s

    def failed(self, digest: str, now: float) -> float:
        """Note a failed try of `digest`; [s] until the next one."""
        if digest != self.digest:
            self.digest, self.failures = digest, 0
        self.failures += 1
        wait = backoff_s(self.failures, self.low_s, self.high_s, self.rng.random())
        self.next_at = now + wait
        return wait

    def succeeded(self, digest: str) -> None:
        if digest == self.digest:
            self.digest, self.failures, self.next_at = None, 0, 0.0


class Freshness:
    """Tracks since when the running model differs from the desired one and when the registry last
    answered; `judge` says current, updating, stale, frozen or none (see the module's docstring)."""

    def __init__(self, limit_s: float, now: float) -> None:
        self.limit_s = limit_s  # [s]
        self.started = now  # [s] clock time this car started watching
        self.differs_since: float | None = None  # [s] clock time the desired model first differed
        self.last_contact: float | None = None  # [s] clock time the registry last answered
        self.desired: str | None = None

    def observe(self, running: str | None, desired: str | None, now: float) -> None:
        """The running and desired digests as of `now`."""
        self.desired = desired
        if desired is None or desired == running:
            self.differs_since = None
        elif self.differs_since is None:
            self.differs_since = now

    def contact(self, now: float) -> None:
        self.last_contact = now

    def judge(self, now: float) -> str:
        if self.desired is None:
            return NO_DESIRED
        if self.differs_since is not None:
            return STALE if now - self.differs_since > self.limit_s else UPDATING
        heard = self.last_contact if self.last_contact is not None else self.started
        return FROZEN if now - heard > self.limit_s else CURRENT
