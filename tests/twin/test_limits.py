"""Server limits: every value range-checked (a clear one-line error, exit 2 from the CLI), flags with defaults."""

from __future__ import annotations

import math

import pytest

from pitlane.cli import main
from pitlane.errors import UserError
from pitlane.twin.limits import ServerLimits


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
