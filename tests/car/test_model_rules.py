"""The model manager's rules, pure: the serial table, the backoff's schedule and the freshness states."""

from __future__ import annotations

import random

import pytest

from pitlane.car.model_rules import (
    CURRENT,
    FROZEN,
    NO_DESIRED,
    STALE,
    UPDATING,
    Freshness,
    Retry,
    SerialRules,
    backoff_s,
)

RULES = SerialRules(floor=10, min_serial=5, pin=7, max_jump=100)


@pytest.mark.parametrize(
    ("serial", "accepted_before", "why"),
    [
        (10, False, None),  # the one it runs
        (11, False, None),  # the next release
        (110, False, None),  # as far above the floor as allowed
        (111, False, "jumps 101 above this car's floor 10"),
        (10**9, False, "MODEL_MAX_SERIAL_JUMP = 100"),
        (9, False, "older than serial 10 this car already accepted"),
        (7, False, None),  # pinned on purpose
        (4, False, "below 5, the lowest this car image accepts"),
        (4, True, "below 5"),  # not even the car's own record of what it ran
        (8, True, None),  # its own record, below the floor after a rollback
        (10**9, True, None),
    ],
)
def test_the_serial_table(serial, accepted_before, why):
    got = RULES.problem(serial, accepted_before=accepted_before)
    assert (got is None) if why is None else (got is not None and why in got), got


def test_the_image_minimum_is_the_floor_of_a_fresh_car():
    fresh = SerialRules(floor=0, min_serial=40, pin=None, max_jump=100)
    assert fresh.problem(140) is None and "older than serial 40" not in (fresh.problem(39) or "")
    assert "below 40" in (fresh.problem(39) or "") and "jumps 101" in (fresh.problem(141) or "")


def test_the_backoff_doubles_is_capped_and_jittered_within_half():
    assert [backoff_s(n, 10, 600, 1.0) for n in range(1, 9)] == [10, 20, 40, 80, 160, 320, 600, 600]
    assert backoff_s(1, 10, 600, 0.0) == 5.0 and backoff_s(200, 10, 600, 0.0) == 300.0
    retry = Retry(10, 600, random.Random(3))
    now, waits = 0.0, []
    for _ in range(12):
        assert retry.due("sha256:a", now)
        waits.append(retry.failed("sha256:a", now))
        assert not retry.due("sha256:a", now + waits[-1] - 0.001)  # never before its time
        now += waits[-1]
    assert all(5 <= w <= 600 for w in waits) and waits[-1] >= 300
    assert retry.due("sha256:b", now)  # another desired digest starts afresh
    assert retry.due(
        "sha256:a", now - 3600
    )  # the wall clock jumped back an hour (NTP at boot): no hour-long wait
    retry.succeeded("sha256:a")
    assert retry.failures == 0 and retry.due("sha256:a", 0.0)


def test_freshness_states():
    f = Freshness(limit_s=100, now=0)
    assert f.judge(0) == NO_DESIRED
    f.observe("a", "a", 0)
    assert f.judge(50) == CURRENT and f.judge(101) == FROZEN  # never heard from the registry
    f.contact(101)
    assert f.judge(150) == CURRENT
    f.observe("a", "b", 160)
    assert f.differs_since == 160 and f.judge(200) == UPDATING and f.judge(261) == STALE
    f.observe("a", "c", 270)  # another desired one: still differing since 160
    assert f.differs_since == 160
    f.observe("c", "c", 280)
    f.contact(280)  # the pull that brought c
    assert f.differs_since is None and f.judge(281) == CURRENT
