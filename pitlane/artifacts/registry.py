"""A real OCI registry on 127.0.0.1: Debian's `docker-registry` (CNCF distribution 2.8), run as a plain
process with its own config file and storage folder, for the tests, the demo and a developer's laptop.

distribution 2.8 stores OCI 1.1 image manifests with `artifactType` byte for byte but has no referrers API,
so signatures and attestations live under cosign's tag scheme (see `pitlane.artifacts.signing`).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import requests

from pitlane.errors import UserError

BINARY = "/usr/bin/docker-registry"
CONFIG_NAME = "config.yml"
LOG_NAME = "registry.log"


@dataclass(frozen=True)
class RegistryConfig:
    storage: Path  # folder holding the registry's blobs and manifests (created if missing)
    host: str = "127.0.0.1"
    port: int = 0  # 0 = a free port chosen at start
    binary: str = BINARY
    start_timeout_s: float = 10.0  # [s] wait for /v2/ to answer


def config_yaml(storage: Path, host: str, port: int) -> str:
    """The registry's own config: filesystem storage in `storage`, deletes allowed, no auth, no TLS."""
    return (
        "version: 0.1\n"
        "log:\n  level: warn\n  accesslog:\n    disabled: true\n"
        f"storage:\n  filesystem:\n    rootdirectory: {storage / 'data'}\n  delete:\n    enabled: true\n"
        "  maintenance:\n    uploadpurging:\n      enabled: false\n"
        f"http:\n  addr: {host}:{port}\n"
    )


def _die_with_parent() -> None:
    """In the child, before exec: Linux sends it SIGTERM when pitlane exits, even by a crash or SIGKILL,
    so a test run that dies never leaves a registry behind (Linux ties it to the thread that started it)."""
    with contextlib.suppress(OSError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


class Registry:
    """A running `docker-registry`: `start()`, `url`, `host` (host:port for references), `stop()`.

    Also a context manager. The port is picked free just before start and retried if someone takes it.
    """

    def __init__(self, config: RegistryConfig) -> None:
        self.config = config
        self.process: subprocess.Popen | None = None
        self.port = config.port

    @property
    def host(self) -> str:
        """`127.0.0.1:PORT`, the registry part of a reference (`127.0.0.1:PORT/models/pilot@sha256:...`)."""
        return f"{self.config.host}:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    def start(self) -> Registry:
        binary = self.config.binary
        if not (Path(binary).is_file() and os.access(binary, os.X_OK)) and not shutil.which(binary):
            raise UserError(
                f"{binary} not found: install Debian's docker-registry (apt-get install docker-registry)"
            )
        storage = Path(self.config.storage)
        storage.mkdir(parents=True, exist_ok=True)
        for _attempt in range(5):
            port = self.config.port or _free_port(self.config.host)
            (storage / CONFIG_NAME).write_text(config_yaml(storage.resolve(), self.config.host, port))
            log = open(storage / LOG_NAME, "ab")  # noqa: SIM115 - the child process keeps it
            self.process = subprocess.Popen(
                [binary, "serve", str(storage / CONFIG_NAME)],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                preexec_fn=_die_with_parent if os.name == "posix" else None,
            )
            log.close()
            self.port = port
            if self._wait_ready():
                return self
            self.stop()
            if self.config.port:
                break
        tail = (storage / LOG_NAME).read_text(errors="replace").strip().splitlines()[-3:]
        raise UserError(f"docker-registry did not start on {self.config.host}: {' | '.join(tail)}")

    def _wait_ready(self) -> bool:
        deadline = time.monotonic() + self.config.start_timeout_s
        while time.monotonic() < deadline:
            if self.process is None or self.process.poll() is not None:
                return False
            try:
                if requests.get(self.url + "/v2/", timeout=1).status_code == 200:
                    return True
            except requests.RequestException:
                pass
            time.sleep(0.05)
        return False

    def stop(self) -> None:
        proc, self.process = self.process, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def __enter__(self) -> Registry:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
