"""Who may use the operator console: the car's token, operator sessions, and the checks every request passes
(a Host allow-list against DNS rebinding, same-origin websockets and POSTs, a CSRF token, a login limit).

The token is the car's shared secret: a Kubernetes Secret in the cluster (env PITLANE_CONSOLE_TOKEN), or,
for a local run without one, a fresh `secrets` token printed once and kept in WEB_TOKEN_FILE (mode 0600)
so the next local run finds it. Everything here is pure or a small store over an explicit clock; the
tornado adapter is `pitlane.car.console_handlers`.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import os
import secrets
import socket
import stat
import sys
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from pitlane.errors import UserError

logger = logging.getLogger(__name__)

MIN_TOKEN_CHARS = 16  # a shorter token could be guessed; secrets.token_urlsafe(24) gives 32
SESSION_COOKIE = "pitlane_session"
CSRF_HEADER = "X-Pitlane-CSRF"
LOCAL_NAMES: tuple[str, ...] = ("localhost",)
MAKE_TOKEN = "python3 -c 'import secrets; print(secrets.token_urlsafe(24))'"


@dataclass(frozen=True)
class ConsoleSettings:
    """What the console enforces; `from_config` reads the WEB_* / USER_MAX_THROTTLE keys."""

    token: str = field(repr=False)  # the operator's secret; never logged
    allowed_hosts: tuple[str, ...] = ()  # Host names besides localhost, IP literals and this machine's name
    user_max_throttle: float = 0.5  # [-] the loop's cap on |user throttle| (the page's slider stops there)
    driver_idle_s: float = 5.0  # [s] a driver without a websocket that sends nothing lets go after this
    link_timeout_s: float = 3.0  # [s] a websocket that answers no ping for this long is closed
    session_ttl_s: float = 12 * 3600.0  # [s] a session unused this long ends
    max_sessions: int = 32  # the least recently used session ends beyond this
    max_body_bytes: int = 16 * 1024  # [B] the largest HTTP request body (POST /drive is ~100 B)
    max_message_bytes: int = 4 * 1024  # [B] the largest websocket message
    max_viewers: int = 4  # concurrent /video streams

    @classmethod
    def from_config(cls, cfg) -> ConsoleSettings:
        """The config's console keys (a car app from before them gets these defaults), with the token
        resolved (and printed once when generated)."""
        token = resolve_token(
            getattr(cfg, "WEB_CONSOLE_TOKEN", None),
            Path(getattr(cfg, "WEB_TOKEN_FILE", default_token_file())),
        )
        return cls(
            token=token,
            allowed_hosts=tuple(getattr(cfg, "WEB_ALLOWED_HOSTS", ())),
            user_max_throttle=float(getattr(cfg, "USER_MAX_THROTTLE", cls.user_max_throttle)),
            driver_idle_s=float(getattr(cfg, "WEB_DRIVER_IDLE_S", cls.driver_idle_s)),
        )


def default_token_file() -> str:
    """Where a local run keeps its generated token: PITLANE_CONSOLE_TOKEN_FILE, else
    $XDG_CONFIG_HOME/pitlane/console-token (~/.config/pitlane/console-token)."""
    if os.environ.get("PITLANE_CONSOLE_TOKEN_FILE"):
        return os.environ["PITLANE_CONSOLE_TOKEN_FILE"]
    config_home = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return os.path.join(config_home, "pitlane", "console-token")


def token_problem(token: object) -> str | None:
    """Why `token` cannot be the console's token, or None."""
    if not isinstance(token, str):
        return f"must be a string, got {type(token).__name__}"
    if len(token) < MIN_TOKEN_CHARS:
        return f"must have at least {MIN_TOKEN_CHARS} characters (make one with {MAKE_TOKEN})"
    if not token.isascii() or not token.isprintable() or any(c.isspace() for c in token):
        return "must be printable ASCII without spaces"
    return None


def resolve_token(configured: str | None, token_file: Path, out=None) -> str:
    """The console token: the configured one, else the one kept in token_file, else a new one (printed once
    on `out`, default stderr, and kept in token_file with mode 0600; for this run only where it cannot be)."""
    if configured is not None:
        if problem := token_problem(configured):
            raise UserError(f"WEB_CONSOLE_TOKEN (PITLANE_CONSOLE_TOKEN) {problem}")
        return configured
    out = out or sys.stderr
    if token_file.exists():
        token = _read_token_file(token_file)
        logger.info("operator console token: the one kept in %s", token_file)
        return token
    token = secrets.token_urlsafe(24)
    try:
        token_file.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(token_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(token + "\n")
        kept = f"kept in {token_file} for the next run"
    except OSError as exc:
        kept = (
            f"for this run only: cannot write {token_file} ({exc.strerror or exc}); set "
            "PITLANE_CONSOLE_TOKEN or WEB_TOKEN_FILE for a lasting one"
        )
    print(f"operator console token (shown once, {kept}): {token}", file=out, flush=True)
    return token


def _read_token_file(path: Path) -> str:
    try:
        mode = path.stat().st_mode
        text = path.read_text().strip()
    except OSError as exc:
        raise UserError(f"cannot read the console token file {path}: {exc.strerror or exc}") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise UserError(f"console token file {path} is readable by others; run `chmod 600 {path}`")
    if problem := token_problem(text):
        raise UserError(f"console token file {path}: the token {problem}; delete the file for a new one")
    return text


def token_matches(given: str | None, token: str) -> bool:
    """Constant-time comparison (a timing difference must not reveal how much of a guess was right)."""
    return given is not None and hmac.compare_digest(given.encode(), token.encode())


def bearer(authorization: str | None) -> str | None:
    """The token of an `Authorization: Bearer TOKEN` header, or None."""
    if not authorization:
        return None
    scheme, _, value = authorization.strip().partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None


def split_host(host: str) -> str:
    """The name part of a Host header, lower case: 'Car.local:8887' -> 'car.local', '[::1]:80' -> '::1'."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1 : host.find("]")] if "]" in host else host
    name, sep, port = host.rpartition(":")
    if sep and port.isdigit() and ":" not in name:
        host = name
    return host.rstrip(".")


def is_ip_literal(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def default_host_names() -> tuple[str, ...]:
    """localhost and this machine's name (donkeycar tells operators to open http://NAME.local:8887)."""
    name = socket.gethostname().lower()
    return (*LOCAL_NAMES, name, f"{name}.local")


def host_allowed(host: str, allowed: tuple[str, ...]) -> bool:
    """DNS rebinding: an attacker's name that resolves to the car reaches it with that name as Host. An IP
    literal cannot be rebound (its origin is the car's own), so IP literals pass; names must be listed."""
    name = split_host(host)
    return bool(name) and (is_ip_literal(name) or name in {h.lower().rstrip(".") for h in allowed})


def same_origin(origin: str | None, host: str) -> bool:
    """Whether an Origin header names the page's own host (scheme aside, as tornado compares them)."""
    if not origin or origin == "null":
        return False
    netloc = urlsplit(origin).netloc.lower()
    return bool(netloc) and netloc == host.strip().lower()


def cross_site(sec_fetch_site: str | None, origin: str | None, host: str) -> str | None:
    """Why a state-changing request comes from another site, or None. Browsers send Sec-Fetch-Site and
    Origin on every POST; a client without either (curl, donkeycar's tools) is not a browser."""
    if sec_fetch_site in ("cross-site", "same-site"):
        return f"a {sec_fetch_site} request (Sec-Fetch-Site)"
    if origin is not None and not same_origin(origin, host):
        return f"Origin {origin[:80]!r} is not this console"
    return None


@dataclass
class Session:
    """One logged-in client: a browser (cookie), a Bearer-token client (per address), or a websocket that
    logged in with ?token= (lives as long as that socket)."""

    id: str = field(repr=False)
    csrf: str = field(repr=False)
    label: str  # what other operators see: "client 3 (192.168.1.20)"
    address: str
    kind: str  # "cookie" | "bearer" | "socket"
    last_seen_s: float  # [s] clock reading of its last request


class Sessions:
    """Sessions by id, bounded in number and ended after `ttl_s` unused; `on_end` hears of every end."""

    def __init__(
        self,
        ttl_s: float,
        max_sessions: int,
        clock: Callable[[], float] = time.monotonic,
        on_end: Callable[[Session], None] | None = None,
    ) -> None:
        self.ttl_s, self.max_sessions, self.clock, self.on_end = ttl_s, max_sessions, clock, on_end
        self._by_id: OrderedDict[str, Session] = OrderedDict()  # least recently used first
        self._bearer: dict[str, str] = {}  # address -> session id
        self._count = 0

    def create(self, address: str, kind: str) -> Session:
        self._prune()
        while len(self._by_id) >= self.max_sessions:
            self._end(next(iter(self._by_id)))
        self._count += 1
        session = Session(
            id=secrets.token_urlsafe(32),
            csrf=secrets.token_urlsafe(32),
            label=f"client {self._count} ({address})",
            address=address,
            kind=kind,
            last_seen_s=self.clock(),
        )
        self._by_id[session.id] = session
        return session

    def bearer(self, address: str) -> Session:
        """The session of a Bearer-token client at this address (they send no cookie to tell them apart)."""
        session = self.get(self._bearer.get(address, ""))
        if session is None:
            session = self.create(address, "bearer")
            self._bearer[address] = session.id
        return session

    def get(self, session_id: str) -> Session | None:
        self._prune()
        session = self._by_id.get(session_id)
        if session is not None:
            session.last_seen_s = self.clock()
            self._by_id.move_to_end(session_id)
        return session

    def label(self, session_id: str) -> str:
        """What others see of a client, without counting as its use."""
        session = self._by_id.get(session_id)
        return session.label if session is not None else "a client that left"

    def end(self, session_id: str) -> None:
        if session_id in self._by_id:
            self._end(session_id)

    def __len__(self) -> int:
        return len(self._by_id)

    def _prune(self) -> None:
        now = self.clock()
        for sid in [s.id for s in self._by_id.values() if now - s.last_seen_s > self.ttl_s]:
            self._end(sid)

    def _end(self, session_id: str) -> None:
        session = self._by_id.pop(session_id)
        if self._bearer.get(session.address) == session_id:
            del self._bearer[session.address]
        if self.on_end is not None:
            self.on_end(session)


class LoginLimiter:
    """At most `max_failures` wrong tokens per address in `window_s`; the table is bounded too."""

    def __init__(self, max_failures: int = 10, window_s: float = 60.0, max_addresses: int = 1024) -> None:
        self.max_failures, self.window_s, self.max_addresses = max_failures, window_s, max_addresses
        self._failures: OrderedDict[str, list[float]] = OrderedDict()

    def allowed(self, address: str, now_s: float) -> bool:
        recent = [t for t in self._failures.get(address, []) if now_s - t < self.window_s]
        return len(recent) < self.max_failures

    def failed(self, address: str, now_s: float) -> None:
        times = [t for t in self._failures.pop(address, []) if now_s - t < self.window_s]
        self._failures[address] = [*times, now_s][-self.max_failures :]
        while len(self._failures) > self.max_addresses:
            self._failures.popitem(last=False)
