"""What a notebook says about the services around it: each one line, and how to start what is down."""

from __future__ import annotations

import socket

from pitlane.hub import reach


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_twin_that_is_down_is_named_with_the_command_that_starts_it():
    port = _closed_port()
    line = reach.twin_line(f"127.0.0.1:{port}")
    assert (
        line.startswith(f"twin at 127.0.0.1:{port} does not answer")
        and f"pitlane twin serve --port {port}" in line
    )
    assert "\n" not in line


def test_a_registry_that_is_down_and_one_that_answers(registry):
    port = _closed_port()
    line = reach.registry_line(f"127.0.0.1:{port}")
    assert "does not answer" in line and f"pitlane registry serve --port {port}" in line
    assert reach.registry_line(registry.host) == f"registry at {registry.host} answers"


def test_outside_a_hub_each_line_says_what_is_not_set(monkeypatch):
    for name in (reach.TWIN_ENV, reach.REGISTRY_ENV, reach.TRACKING_ENV):
        monkeypatch.delenv(name, raising=False)
    lines = reach.check()
    assert len(lines) == 3 and all("is not set" in line for line in lines)
    assert "pitlane registry serve --port 5000" in lines[1]
