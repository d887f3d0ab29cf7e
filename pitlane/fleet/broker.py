"""The NUC's MQTT broker: Debian's Mosquitto with a config that loses nothing, per-car passwords and ACLs.

Out of the box Mosquitto drops silently: `max_queued_messages 1000` discards every further QoS 1 message
queued for an offline subscriber (while the publisher got its PUBACK), and with the default
`autosave_interval 1800` a SIGKILL loses up to half an hour of queued messages. The car's spool and the
ingest's acknowledgements make the fleet whole anyway; this config makes the broker stop being the weak
link: no queue limit, persistence in the data folder saved every second, sessions kept for a year.

Credentials: one user per car (its fleet name) and `pitlane-ingest`, hashed by `mosquitto_passwd -b` in
one password file. That file is the single list of cars: the ingest knows a car by it and the registry
gateway checks a car's HTTP basic auth against the same hashes (`verify_password`).
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import hmac
import logging
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from pitlane.artifacts.registry import _die_with_parent, _free_port
from pitlane.errors import UserError
from pitlane.fleet.protocol import INGEST_USER, TOPIC_ROOT, check_car_name

log = logging.getLogger(__name__)

BINARY = "/usr/sbin/mosquitto"
PASSWD_BINARY = "mosquitto_passwd"
CONFIG_NAME = "mosquitto.conf"
PASSWD_NAME = "passwd"
ACL_NAME = "acl"
LOG_NAME = "mosquitto.log"
INGEST_PASSWORD_NAME = "ingest.password"
INGEST_PASSWORD_ENV = "PITLANE_FLEET_INGEST_PASSWORD"
PASSWORD_BYTES = 24  # secrets.token_urlsafe(24): 32 characters, 192 bits
# Why 1 s: a broker killed by SIGKILL (OOM, power) loses what arrived since its last save; 1 s bounds that
# to one heartbeat per car (which the car's spool resends anyway) for the cost of rewriting mosquitto.db at
# most once a second while messages flow. Mosquitto's default, 1800 s, loses half an hour.
AUTOSAVE_INTERVAL_S = 1
WATCH_PERIOD_S = 1.0  # [s] how often a running broker looks for a changed password file


def acl_text() -> str:
    """Each car writes only its own up topic and reads only its own acks; the ingest reads every up
    topic and writes every ack. `%u` is the MQTT user name, which is the car's name."""
    return (
        "# pitlane fleet ACL (written by pitlane.fleet.broker; edits are overwritten)\n"
        f"user {INGEST_USER}\n"
        f"topic read {TOPIC_ROOT}/+/up\n"
        f"topic write {TOPIC_ROOT}/+/ack\n"
        "\n"
        f"pattern write {TOPIC_ROOT}/%u/up\n"
        f"pattern read {TOPIC_ROOT}/%u/ack\n"
    )


@dataclass(frozen=True)
class BrokerConfig:
    data: Path  # folder for mosquitto.conf, acl, passwd (unless passwd_file), the persistence db, the log
    host: str = "127.0.0.1"  # listener address ("0.0.0.0" in a cluster)
    port: int = 1883  # 0 = a free port chosen at start
    passwd_file: Path | None = None  # default data/passwd; a mounted Secret in a cluster
    max_queued_messages: int = 0  # per client; 0 = no limit (the car's send window bounds it in practice)
    autosave_interval_s: int = AUTOSAVE_INTERVAL_S  # [s]
    client_expiration: str = "1y"  # an offline client's session (and its queue) is kept this long
    max_inflight_messages: int = 1000  # QoS 1 messages towards one client awaiting PUBACK (ingest batches)
    binary: str = BINARY
    start_timeout_s: float = 10.0  # [s] wait for the listener

    @property
    def passwd(self) -> Path:
        return Path(self.passwd_file) if self.passwd_file else Path(self.data) / PASSWD_NAME


def _user_line() -> list[str]:
    """Started as root, Mosquitto switches to user `mosquitto`, who cannot read pitlane's data folder: stay."""
    return [f"user {pwd.getpwuid(0).pw_name}"] if os.getuid() == 0 else []


def config_text(cfg: BrokerConfig, port: int) -> str:
    """mosquitto.conf for pitlane: authenticated listener, ACLs, persistence, no message dropped."""
    data = Path(cfg.data).resolve()
    return "\n".join(
        [
            "# pitlane fleet broker (written by pitlane.fleet.broker; edits are overwritten)",
            *_user_line(),
            "per_listener_settings false",
            f"listener {port} {cfg.host}",
            "allow_anonymous false",
            f"password_file {Path(cfg.passwd).resolve()}",
            f"acl_file {data / ACL_NAME}",
            "persistence true",
            f"persistence_location {data / 'db'}/",
            "persistence_file mosquitto.db",
            f"autosave_interval {cfg.autosave_interval_s}",
            "autosave_on_changes false",
            f"persistent_client_expiration {cfg.client_expiration}",
            f"max_queued_messages {cfg.max_queued_messages}",
            "max_queued_bytes 0",
            f"max_inflight_messages {cfg.max_inflight_messages}",
            # a record is at most 64 KiB (protocol.MAX_PAYLOAD); 1 MiB lets the ingest see and count a
            # larger one instead of the broker cutting the car off
            "max_packet_size 1048576",
            "set_tcp_nodelay true",
            "log_dest stderr",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "connection_messages true",
            "",
        ]
    )


# --- credentials ------------------------------------------------------------------------------------------
def new_password() -> str:
    return secrets.token_urlsafe(PASSWORD_BYTES)


def _passwd_binary() -> str:
    found = shutil.which(PASSWD_BINARY) or shutil.which(f"/usr/bin/{PASSWD_BINARY}")
    if not found:
        raise UserError(f"{PASSWD_BINARY} not found: install Debian's mosquitto (apt-get install mosquitto)")
    return found


@contextlib.contextmanager
def _locked(path: Path):
    """One writer at a time (`fleet add-car` beside a running `fleet serve`)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def set_password(passwd: Path, user: str, password: str) -> None:
    """Add or replace `user` in the password file with `mosquitto_passwd -b` (hashed, never stored plain)."""
    passwd = Path(passwd)
    with _locked(passwd):
        argv = [_passwd_binary(), "-b", str(passwd), user, password]
        if not passwd.exists():
            argv.insert(1, "-c")
        proc = subprocess.run(argv, capture_output=True, text=True, check=False, stdin=subprocess.DEVNULL)
        if proc.returncode != 0:
            raise UserError(f"{PASSWD_BINARY} could not write {passwd}: {proc.stderr.strip() or proc.stdout}")
        passwd.chmod(0o600)


def users(passwd: Path) -> dict[str, str]:
    """user -> hash of every line of a Mosquitto password file ({} when it does not exist)."""
    try:
        text = Path(passwd).read_text()
    except FileNotFoundError:
        return {}
    out = {}
    for line in text.splitlines():
        user, sep, hashed = line.strip().partition(":")
        if sep and user and not user.startswith("#"):
            out[user] = hashed
    return out


def car_names(passwd: Path) -> set[str]:
    """The cars the password file knows (every user but the ingest)."""
    return {u for u in users(passwd) if u != INGEST_USER}


def verify_password(hashed: str, password: str) -> bool:
    """True when `password` matches a Mosquitto hash: `$7$<iterations>$<salt>$<hash>` (PBKDF2-SHA512,
    Mosquitto 2) or `$6$<salt>$<hash>` (salted SHA-512, Mosquitto 1.x)."""
    parts = hashed.split("$")
    try:
        if len(parts) == 5 and parts[1] == "7":
            salt, want = base64.b64decode(parts[3]), base64.b64decode(parts[4])
            got = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, int(parts[2]), len(want))
        elif len(parts) == 4 and parts[1] == "6":
            salt, want = base64.b64decode(parts[2]), base64.b64decode(parts[3])
            got = hashlib.sha512(password.encode() + salt).digest()
        else:
            return False
    except ValueError:
        return False
    return hmac.compare_digest(got, want)


def add_car(passwd: Path, name: str, *, replace: bool = False) -> str:
    """Create credentials for car `name`; returns its new password (shown once, stored only hashed)."""
    check_car_name(name)
    if name == INGEST_USER:
        raise UserError(f"{name!r} is the ingest's own user; choose another car name")
    if name in users(passwd) and not replace:
        raise UserError(
            f"car {name!r} already has credentials in {passwd}; its password was shown once when it was "
            "added: give --rotate to make a new one"
        )
    password = new_password()
    set_password(passwd, name, password)
    return password


def ingest_password(data: Path, passwd: Path) -> str:
    """The ingest's MQTT password: $PITLANE_FLEET_INGEST_PASSWORD (a cluster's Secret), else data/ingest.password,
    made on first use and added to the password file."""
    from_env = os.environ.get(INGEST_PASSWORD_ENV)
    if from_env:
        return from_env
    path = Path(data) / INGEST_PASSWORD_NAME
    if path.is_file() and INGEST_USER in users(passwd):
        return path.read_text().strip()
    password = new_password()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600)
    path.write_text(password + "\n")
    set_password(passwd, INGEST_USER, password)
    return password


# --- the process --------------------------------------------------------------------------------------------
def _file_stamp(path: Path) -> tuple[float, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_mtime, st.st_size)


def port_open(host: str, port: int, timeout_s: float = 0.5) -> bool:
    try:
        with socket.create_connection(
            (host if host not in ("", "0.0.0.0") else "127.0.0.1", port), timeout_s
        ):
            return True
    except OSError:
        return False


class Broker:
    """A running Mosquitto with pitlane's config: `start()`, `host` (host:port), `stop()`, `kill()`.

    A child process that dies with its parent (as the registry does). While it runs, a changed password
    file (a car added, a Secret updated) reaches it by SIGHUP within a second.
    """

    def __init__(self, config: BrokerConfig) -> None:
        self.config = config
        self.process: subprocess.Popen | None = None
        self.port = config.port
        self._watching = threading.Event()

    @property
    def host(self) -> str:
        addr = self.config.host if self.config.host not in ("", "0.0.0.0") else "127.0.0.1"
        return f"{addr}:{self.port}"

    def write_config(self, port: int) -> Path:
        data = Path(self.config.data)
        (data / "db").mkdir(parents=True, exist_ok=True)
        (data / ACL_NAME).write_text(acl_text())
        conf = data / CONFIG_NAME
        conf.write_text(config_text(self.config, port))
        return conf

    def argv(self, conf: Path) -> list[str]:
        binary = self.config.binary
        if not (Path(binary).is_file() and os.access(binary, os.X_OK)) and not shutil.which(binary):
            raise UserError(f"{binary} not found: install Debian's mosquitto (apt-get install mosquitto)")
        return [binary, "-c", str(conf)]

    def start(self) -> Broker:
        data = Path(self.config.data)
        data.mkdir(parents=True, exist_ok=True)
        if not Path(self.config.passwd).is_file():
            raise UserError(
                f"{self.config.passwd}: no password file; add a car first (pitlane fleet add-car)"
            )
        for _attempt in range(5):
            port = self.config.port or _free_port(self.config.host or "127.0.0.1")
            argv = self.argv(self.write_config(port))
            logfile = open(data / LOG_NAME, "ab")  # noqa: SIM115 - the child process keeps it
            self.process = subprocess.Popen(
                argv,
                stdout=logfile,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                preexec_fn=_die_with_parent,
            )
            logfile.close()
            self.port = port
            if self._wait_ready():
                self._watch()
                return self
            self.stop()
            if self.config.port:
                break
        tail = (data / LOG_NAME).read_text(errors="replace").strip().splitlines()[-3:]
        raise UserError(f"mosquitto did not start on {self.config.host}:{self.port}: {' | '.join(tail)}")

    def _wait_ready(self) -> bool:
        deadline = time.monotonic() + self.config.start_timeout_s
        while time.monotonic() < deadline:
            if self.process is None or self.process.poll() is not None:
                return False
            if port_open(self.config.host, self.port, 0.2):
                return True
            time.sleep(0.05)
        return False

    def _watch(self) -> None:
        """SIGHUP Mosquitto when the password file changes: it re-reads passwords and ACLs."""
        self._watching.set()
        proc, passwd = self.process, Path(self.config.passwd)

        def loop() -> None:
            stamp = _file_stamp(passwd)
            while self._watching.is_set() and proc is not None and proc.poll() is None:
                time.sleep(WATCH_PERIOD_S)
                now = _file_stamp(passwd)
                if now != stamp:
                    stamp = now
                    self.reload()

        threading.Thread(target=loop, daemon=True, name="broker-passwd-watch").start()

    def reload(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGHUP)

    def stop(self) -> None:
        self._watching.clear()
        proc, self.process = self.process, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def kill(self) -> None:
        """SIGKILL, as a power cut or the OOM killer would (benchmarks): no final save."""
        self._watching.clear()
        proc, self.process = self.process, None
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def __enter__(self) -> Broker:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
