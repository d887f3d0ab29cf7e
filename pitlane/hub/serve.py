"""`pitlane hub serve`: check everything a hub needs, then run JupyterHub in the foreground until Ctrl-C.

Every mistake is found before JupyterHub starts, each in one line: a port in use, a data folder that cannot
be written, a sandbox that cannot be made, a password too short. The password is PITLANE_HUB_PASSWORD, or one
generated on the first start, printed once and kept in DATA/hub/password (0600) for the next.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import requests

from pitlane.args import check_port_free
from pitlane.errors import UserError
from pitlane.hub import sandbox
from pitlane.hub.config import PASSWORD_ENV, HubSettings

MIN_PASSWORD = 8  # SharedPasswordAuthenticator's own minimum
REGISTRY_BINARY = (
    "/usr/bin/docker-registry"  # what `pitlane registry serve` runs (pitlane.artifacts.registry)
)
CONFIG = "import os\nfrom pitlane.hub.config import HubSettings, apply\n\napply(c, HubSettings.load({settings!r}))\n"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def parse_address(value: str, flag: str) -> str:
    """HOST:PORT, checked; one line naming the flag when it is not one."""
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise UserError(f"{flag} {value!r}: give HOST:PORT, e.g. 127.0.0.1:9091")
    return value


def check_data(data: Path) -> Path:
    """DATA/hub made and written into (as root, permission bits do not say whether a write would work)."""
    probe = data / "hub" / ".writable"
    try:
        for sub in ("hub", "users", "registry", "mlflow"):
            (data / sub).mkdir(parents=True, exist_ok=True)
        (data / "hub").chmod(0o700)  # the database, the password, the cookie secret
        probe.write_text("ok\n")
        probe.unlink()
    except OSError as exc:
        raise UserError(
            f"--data {data}: cannot write there ({exc.strerror}); give a folder you can write (it is created)"
        ) from None
    return data


def password(data: Path) -> tuple[str, str]:
    """The hub's password and where it came from, in words (the value itself only when just generated)."""
    if os.environ.get(PASSWORD_ENV):
        value = os.environ[PASSWORD_ENV]
        if len(value) < MIN_PASSWORD:
            raise UserError(f"{PASSWORD_ENV} is {len(value)} characters: give at least {MIN_PASSWORD}")
        return value, f"from {PASSWORD_ENV}"
    kept = data / "hub" / "password"
    if kept.is_file():
        return kept.read_text().strip(), f"kept in {kept}"
    value = secrets.token_urlsafe(12)
    fd = os.open(kept, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(value + "\n")
    return value, f"generated: {value} (printed once; kept in {kept})"


PROXY = "configurable-http-proxy"
PROXY_INSTALL = (
    "npm install -g configurable-http-proxy (or Debian's: apt-get install node-configurable-http-proxy)"
)


def find_proxy(venv_bin: Path) -> str:
    """JupyterHub's proxy, the Node.js one: the Python port (configurable-http-proxy 0.4 on PyPI, in the venv)
    buffers every response whole, so JupyterHub's event streams stall (the spawn page never hears that the
    server is ready: a 503 after 20 s) and a large download is held in memory. Skip it on PATH."""
    for folder in os.environ.get("PATH", "").split(os.pathsep):
        candidate = Path(folder) / PROXY
        if not folder or not candidate.is_file() or candidate.resolve().parent == venv_bin.resolve():
            continue
        with contextlib.suppress(OSError), open(candidate, "rb") as f:
            if b"node" in f.readline():
                return str(candidate)
    raise UserError(f"JupyterHub's proxy (Node.js configurable-http-proxy) is not installed: {PROXY_INSTALL}")


def prepare(s: HubSettings) -> HubSettings:
    """The settings with every port chosen, after every check that can fail before JupyterHub starts."""
    check_port_free(s.port, "--port", s.host)
    proxy = find_proxy(s.bin)
    data = check_data(Path(s.data).expanduser().absolute())
    if s.sandbox and (why := sandbox.unavailable(data)):
        raise UserError(
            f"{why}: without it every user could read every other user's files; install it, or pass "
            "--no-sandbox on a machine whose only user is you"
        )
    if not s.registry and not Path(REGISTRY_BINARY).is_file():
        raise UserError(
            "the hub runs a registry with Debian's docker-registry, which is not installed: apt-get install "
            "docker-registry, or name a running one with --registry HOST:PORT"
        )
    return replace(
        s, data=str(data), proxy=proxy, hub_port=free_port(), proxy_api_port=free_port(),
        twin_port=0 if s.twin else free_port(), registry_port=0 if s.registry else free_port(),
        mlflow_port=0 if s.mlflow else free_port(),
    )  # fmt: skip


def adopt_orphans() -> None:
    """Become the reaper of every process the hub starts: JupyterHub starts services and users' servers in
    sessions of their own, and a hub that dies leaves them running; reparented to us, they stop with us."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(36, 1)  # PR_SET_CHILD_SUBREAPER


def children() -> list[int]:
    me = str(os.getpid())
    found = []
    for status in Path("/proc").glob("[0-9]*/status"):
        with contextlib.suppress(OSError):
            fields = dict(line.split(":\t", 1) for line in status.read_text().splitlines() if ":\t" in line)
            if fields.get("PPid", "").strip() == me:
                found.append(int(status.parent.name))
    return found


def stop_children(timeout_s: float = 15.0) -> None:
    """SIGTERM every process left under us (and those reparented to us as their parents exit), then SIGKILL."""
    deadline = time.monotonic() + timeout_s
    while (left := children()) and time.monotonic() < deadline:
        for pid in left:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGTERM)
        with contextlib.suppress(ChildProcessError):
            while os.waitpid(-1, os.WNOHANG)[0]:
                pass
        time.sleep(0.2)
    for pid in children():
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(ChildProcessError):
        while os.waitpid(-1, os.WNOHANG)[0]:
            pass


def _die_with_parent() -> None:
    """In the hub's process, before exec: Linux stops it when pitlane exits, even by SIGKILL."""
    with contextlib.suppress(OSError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def wait_up(url: str, proc: subprocess.Popen, timeout_s: float, log: Path | None) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log.read_text(errors="replace").strip().splitlines()[-1:] if log else []
            raise UserError(
                f"JupyterHub exited ({proc.returncode}) while starting: {' '.join(tail)} (log: {log})"
            )
        with contextlib.suppress(requests.RequestException):
            if requests.get(url + "hub/health", timeout=2).ok:
                return
        time.sleep(0.2)
    raise UserError(f"JupyterHub did not answer at {url} within {timeout_s:.0f} s (log: {log})")


def serve(s: HubSettings, *, verbose: bool = False, say=print) -> int:
    """Run the hub until Ctrl-C or SIGTERM; its services and users' servers stop with it."""
    s = prepare(s)
    value, origin = password(Path(s.data))
    hub = Path(s.data) / "hub"
    config = hub / "jupyterhub_config.py"
    config.write_text(CONFIG.format(settings=str(s.save(hub / "settings.json"))))
    log = None if verbose else hub / "hub.log"
    env = dict(os.environ, **{PASSWORD_ENV: value})
    argv = [str(s.bin / "jupyterhub"), "-f", str(config), *(["--debug"] if verbose else [])]
    out = open(log, "ab") if log else None  # noqa: SIM115 - held for the hub's lifetime
    adopt_orphans()
    proc = subprocess.Popen(argv, cwd=hub, env=env, stdout=out, stderr=subprocess.STDOUT if out else None,
                            preexec_fn=_die_with_parent)  # fmt: skip
    stop = lambda *_: proc.terminate()  # noqa: E731
    previous = signal.signal(signal.SIGTERM, stop)
    try:
        wait_up(s.url(), proc, 120, log)
        say(f"hub: {s.url()}  (log in with any user name; password {origin})")
        say(f"hub: twin {s.twin_address()}, registry {s.registry_address()}, MLflow {s.tracking_uri()}"
            + ("" if s.mlflow else f" (page: {s.url().rstrip('/')}/services/mlflow/)"))  # fmt: skip
        say(f"hub: homes in {Path(s.data) / 'users'}; " + ("each user's server sandboxed" if s.sandbox
            else "NOT sandboxed (--no-sandbox): users can read each other's files") + "; Ctrl-C stops it")  # fmt: skip
        return proc.wait()
    except KeyboardInterrupt:
        proc.send_signal(signal.SIGINT)
        return proc.wait()
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
        stop_children()  # what a hub that crashed left behind: proxy, services, users' servers
        signal.signal(signal.SIGTERM, previous)
        if out:
            out.close()
        sys.stdout.flush()
