"""Who may use the console: the token (configured, kept, generated once), sessions, the Host allow-list,
same-origin checks and the login limit, each alone (pure or on a temporary folder)."""

from __future__ import annotations

import io
import os
import stat

import pytest

from pitlane.car.console_auth import (
    ConsoleSettings,
    LoginLimiter,
    Session,
    Sessions,
    bearer,
    cross_site,
    default_host_names,
    default_token_file,
    host_allowed,
    resolve_token,
    same_origin,
    split_host,
    token_matches,
    token_problem,
)
from pitlane.errors import UserError


def test_a_local_run_without_a_token_gets_one_printed_once_and_kept_private(tmp_path):
    path = tmp_path / "cfg" / "pitlane" / "console-token"
    first = io.StringIO()
    token = resolve_token(None, path, out=first)
    assert token in first.getvalue() and "shown once" in first.getvalue() and str(path) in first.getvalue()
    assert token_problem(token) is None and len(token) >= 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    again = io.StringIO()
    assert resolve_token(None, path, out=again) == token and again.getvalue() == ""  # not printed again


def test_a_configured_token_wins_and_a_weak_one_is_refused(tmp_path):
    path = tmp_path / "console-token"
    assert resolve_token("a-configured-token-123", path) == "a-configured-token-123" and not path.exists()
    for weak, why in (("short", "at least 16 characters"), ("with a space in it ok", "without spaces")):
        with pytest.raises(UserError, match=f"PITLANE_CONSOLE_TOKEN.*{why}"):
            resolve_token(weak, path)


def test_a_token_file_others_can_read_or_holding_junk_is_refused(tmp_path):
    path = tmp_path / "console-token"
    path.write_text("a-kept-token-0123456789\n")
    path.chmod(0o644)
    with pytest.raises(UserError, match=r"readable by others; run `chmod 600 .*console-token`"):
        resolve_token(None, path)
    path.chmod(0o600)
    assert resolve_token(None, path) == "a-kept-token-0123456789"
    path.write_text("tiny")
    with pytest.raises(UserError, match="delete the file for a new one"):
        resolve_token(None, path)


def test_an_unwritable_token_file_gives_a_token_for_this_run_only(tmp_path):
    if os.geteuid() == 0:  # root writes anywhere: a file where a folder must be fails for everyone
        blocker = tmp_path / "not-a-folder"
        blocker.write_text("")
        path = blocker / "console-token"
    else:
        tmp_path.chmod(0o500)
        path = tmp_path / "sub" / "console-token"
    out = io.StringIO()
    token = resolve_token(None, path, out=out)
    assert token_problem(token) is None and "for this run only" in out.getvalue()
    assert "PITLANE_CONSOLE_TOKEN" in out.getvalue()


def test_the_token_file_follows_xdg_and_the_variable(monkeypatch, tmp_path):
    monkeypatch.delenv("PITLANE_CONSOLE_TOKEN_FILE", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    assert default_token_file() == str(tmp_path / "pitlane" / "console-token")
    monkeypatch.setenv("PITLANE_CONSOLE_TOKEN_FILE", "/elsewhere/token")
    assert default_token_file() == "/elsewhere/token"


def test_settings_from_a_car_config_of_before_the_console_keys(tmp_path):
    class OldConfig:  # a car app copied before WEB_CONSOLE_TOKEN & co existed
        WEB_TOKEN_FILE = str(tmp_path / "token")

    settings = ConsoleSettings.from_config(OldConfig())
    assert (
        settings.user_max_throttle == 0.5 and settings.allowed_hosts == () and settings.driver_idle_s == 5.0
    )
    assert settings.token not in repr(settings)  # never in a log line


def test_token_comparison_and_bearer_headers():
    assert token_matches("abc", "abc") and not token_matches("abd", "abc") and not token_matches(None, "abc")
    assert bearer("Bearer xyz") == "xyz" and bearer("bearer  xyz ") == "xyz"
    assert bearer("Basic xyz") is None and bearer("Bearer ") is None and bearer(None) is None


@pytest.mark.parametrize(
    ("host", "allowed"),
    [
        ("localhost:8887", True),
        ("LOCALHOST", True),
        ("127.0.0.1:8887", True),
        ("192.168.1.20:30887", True),  # an IP literal cannot be rebound
        ("[::1]:8887", True),
        ("[fe80::1]", True),
        ("mycar.lan:8887", True),
        ("mycar.lan.", True),
        ("evil.example:8887", False),
        ("127.0.0.1.nip.io:8887", False),  # a name that resolves to an address is still a name
        ("localhost.evil.example", False),
        ("", False),
    ],
)
def test_the_host_allow_list(host, allowed):
    assert host_allowed(host, (*default_host_names(), "mycar.lan")) is allowed


def test_split_host_keeps_ipv6_and_drops_ports():
    assert split_host("Car.Local:8887") == "car.local" and split_host("[::1]:80") == "::1"
    assert split_host("::1") == "::1" and split_host("car") == "car"


def test_same_origin_and_cross_site():
    assert same_origin("http://127.0.0.1:8887", "127.0.0.1:8887")
    assert not same_origin("http://127.0.0.1:9999", "127.0.0.1:8887")
    assert not same_origin("null", "127.0.0.1:8887") and not same_origin(None, "127.0.0.1:8887")
    assert cross_site(None, None, "car:8887") is None  # curl, donkeycar's tools: not a browser
    assert cross_site("same-origin", "http://car:8887", "car:8887") is None
    assert "cross-site" in str(cross_site("cross-site", None, "car:8887"))
    assert "same-site" in str(cross_site("same-site", "http://car:8887", "car:8887"))  # a sibling page
    assert "is not this console" in str(cross_site(None, "http://evil.example", "car:8887"))


def test_sessions_end_when_unused_and_beyond_their_number():
    now = [0.0]
    ended: list[Session] = []
    sessions = Sessions(ttl_s=60.0, max_sessions=3, clock=lambda: now[0], on_end=ended.append)
    a, b = sessions.create("10.0.0.1", "cookie"), sessions.create("10.0.0.2", "cookie")
    assert a.id != b.id and a.csrf != b.csrf and a.label == "client 1 (10.0.0.1)"
    now[0] = 50.0
    assert sessions.get(a.id) is a  # used: it lives on
    now[0] = 100.0
    assert sessions.get(b.id) is None and ended == [b]
    c, d = sessions.create("10.0.0.3", "cookie"), sessions.create("10.0.0.4", "cookie")
    e = sessions.create("10.0.0.5", "cookie")  # the fourth: the least recently used (a) ends
    assert ended[-1] is a and len(sessions) == 3 and all(sessions.get(s.id) is s for s in (c, d, e))
    first = sessions.bearer("10.0.0.9")
    assert sessions.bearer("10.0.0.9") is first and sessions.label(first.id) == first.label
    sessions.end(first.id)
    assert sessions.bearer("10.0.0.9") is not first and sessions.label("gone") == "a client that left"


def test_login_limiter_counts_failures_per_address_in_a_window():
    limiter = LoginLimiter(max_failures=3, window_s=60.0, max_addresses=2)
    for t in (0.0, 1.0, 2.0):
        assert limiter.allowed("a", t)
        limiter.failed("a", t)
    assert not limiter.allowed("a", 3.0) and limiter.allowed("b", 3.0)
    assert limiter.allowed("a", 61.0)  # the window moved on
    limiter.failed("b", 4.0)
    limiter.failed("c", 4.0)  # the table keeps two addresses
    assert limiter.allowed("a", 5.0)
