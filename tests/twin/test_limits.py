"""Server limits: every value range-checked (a clear one-line error, exit 2 from the CLI), flags with defaults;
and the tools that enforce them: the warning cap, the token bucket, the fair worker pool."""

from __future__ import annotations

import logging
import math
import threading
import time

import pytest

from pitlane.cli import main
from pitlane.errors import UserError
from pitlane.twin.limits import FairPool, LogLimit, ServerLimits, TokenBucket


def test_defaults_are_valid_and_workers_resolve_to_a_thread_count():
    limits = ServerLimits()
    assert 1 <= limits.worker_threads <= 4
    assert ServerLimits(workers=3).worker_threads == 3


@pytest.mark.parametrize(
    "field, value",
    [
        ("max_clients", 0),
        ("max_camera_pixels", 1920 * 1080 + 1),
        ("max_camera_pixels", 10),
        ("messages_per_s", -1.0),
        ("messages_per_s", math.nan),
        ("scene_loads_per_min", math.inf),
        ("idle_timeout_s", -5.0),
        ("idle_timeout_s", math.nan),
        ("send_buffer_bytes", 100),
        ("workers", -1),
        ("log_lines", 0),
        ("log_interval_s", 0.0),
    ],
)
def test_out_of_range_limits_are_user_errors(field, value):
    with pytest.raises(UserError):
        ServerLimits(**{field: value})


@pytest.mark.parametrize(
    "argv, words",
    [
        (["--max-clients", "0"], "max clients 0"),
        (["--idle-timeout", "nan"], "idle timeout nan"),
        (["--send-buffer", "12"], "send buffer 12"),
        (["--max-camera-pixels", "9999999"], "max camera pixels 9999999"),
    ],
)
def test_serve_refuses_bad_limit_flags_with_exit_2(argv, words, capsys):
    assert main(["twin", "serve", "--port", "0", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("pitlane: error: ") and words in err and err.count("\n") == 1


def test_serve_help_lists_every_limit_with_its_default(capsys):
    with pytest.raises(SystemExit):
        main(["twin", "serve", "--help"])
    out = capsys.readouterr().out
    for flag in (
        "--max-clients",
        "--max-camera-pixels",
        "--max-message-rate",
        "--max-scene-loads",
        "--idle-timeout",
        "--send-buffer",
        "--workers",
        "--log-lines",
        "--log-interval",
    ):
        assert flag in out
    assert "(default 32)" in out and "(default 307200)" in out


def test_log_limit_logs_the_first_lines_of_a_window_and_counts_the_rest(caplog):
    limit = LogLimit(logging.getLogger("pitlane.test.limits"), "client 7: ", lines=2, interval_s=60.0)
    with caplog.at_level(logging.WARNING, logger="pitlane.test.limits"):
        for i in range(5):
            limit.warn("bad message %d", i)
        assert [r.getMessage() for r in caplog.records] == [
            "client 7: bad message 0",
            "client 7: bad message 1",
        ]
        limit.flush()
    assert limit.total == 5 and limit.suppressed == 0
    assert caplog.records[-1].getMessage() == "client 7: 3 more warnings suppressed (at most 2 per 60 s)"


def test_log_limit_opens_a_new_window_after_the_interval(caplog):
    limit = LogLimit(logging.getLogger("pitlane.test.limits"), "", lines=1, interval_s=0.1)
    with caplog.at_level(logging.WARNING, logger="pitlane.test.limits"):
        limit.warn("a")
        limit.warn("b")  # suppressed
        time.sleep(0.15)
        limit.warn("c")  # a new window: the count of the old one first, then the line
    assert [r.getMessage() for r in caplog.records] == [
        "a",
        "1 more warnings suppressed (at most 1 per 0.1 s)",
        "c",
    ]


def test_token_bucket_gives_a_burst_then_paces_at_its_rate():
    bucket = TokenBucket(rate_per_s=100.0, burst=3.0)
    assert [bucket.take() for _ in range(3)] == [0.0, 0.0, 0.0]
    wait = bucket.take()
    assert 0.0 < wait <= 0.0101  # one token short at 100/s: up to 10 ms (less the time since the burst)
    assert 0.08 < bucket.take(10.0) <= 0.1101  # a costly message waits for its 10 tokens too
    assert TokenBucket(0.0, 1.0).take(1e9) == 0.0  # rate 0: no limit


def test_fair_pool_runs_the_least_served_client_first():
    pool = FairPool(threads=1)
    started, gate = threading.Event(), threading.Event()
    order: list[str] = []

    def block() -> None:
        started.set()
        gate.wait()

    try:
        pool.submit(1, lambda: time.sleep(0.05)).result(timeout=5)  # client 1 has used 50 ms of worker time
        pool.submit(3, block)  # the only worker is busy: what follows waits in the queue
        assert started.wait(5)
        greedy = [pool.submit(1, lambda: order.append("greedy")) for _ in range(3)]
        other = pool.submit(2, lambda: order.append("other"))  # queued last, but client 2 has used nothing
        gate.set()
        for f in [*greedy, other]:
            f.result(timeout=5)
    finally:
        pool.close()
    assert order == ["other", "greedy", "greedy", "greedy"]


def test_fair_pool_hands_errors_to_the_caller_and_cancels_waiting_work_on_close():
    pool = FairPool(threads=1)
    gate = threading.Event()
    with pytest.raises(ZeroDivisionError):
        pool.submit(1, lambda: 1 / 0).result(timeout=5)
    started = threading.Event()

    def block() -> bool:
        started.set()
        return gate.wait()

    running = pool.submit(1, block)
    assert started.wait(5)
    waiting = pool.submit(2, lambda: "never")
    threading.Timer(0.1, gate.set).start()
    pool.close()  # cancels what waits, lets what runs finish
    assert running.result(timeout=5) is True and waiting.cancelled()
    with pytest.raises(RuntimeError, match="closed"):
        pool.submit(3, lambda: None)
