"""`pitlane images smoke`: run the built images here, through real processes and real TCP.

sim: the image's own twin serves on a free port (buildah run, chroot isolation, as uid 1000) and
`pitlane twin check` from this machine must pass against it. car: the image's root filesystem runs under
qemu-user (binfmt_misc) in a chroot without /proc, so qemu's x86 /proc/cpuinfo never reaches LiteRT (qemu
7.2 crashes LiteRT when it does); `pitlane.car.selfcheck` infers a frame and runs the car app for a few loops.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pitlane.errors import UserError
from pitlane.images import binfmt
from pitlane.images.plan import Store, image_tag
from pitlane.images.tools import run

SELFCHECK_MODULE = "pitlane.car.selfcheck"  # ships in the image with the car app


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def container(store: Store, name: str):
    """A working container of the built image, removed afterwards."""
    tag = image_tag(name)
    try:
        ctr = run(store.buildah("from", "--quiet", "--pull=never", tag), f"buildah from {tag}").strip()
    except UserError:
        raise UserError(f"image {tag} is not built: run `pitlane images build --only {name}` first") from None
    try:
        yield ctr
    finally:
        run(store.buildah("rm", ctr), "buildah rm")


def _wait_port(port: int, proc: subprocess.Popen, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise UserError(f"the sim image's twin exited with status {proc.returncode} before listening")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise UserError(f"the sim image's twin did not listen on port {port} within {timeout_s:.0f} s")


def smoke_sim(store: Store, timeout_s: float = 120.0) -> dict[str, Any]:
    """The sim image's twin (its default command) on a free port; `pitlane twin check` against it."""
    port = free_port()
    with container(store, "sim") as ctr:
        argv = store.buildah(
            "run", "--isolation", "chroot", "--user", "1000:1000", ctr, "--",
            "python3", "-m", "pitlane.cli", "twin", "serve", "--host", "127.0.0.1", "--port", str(port),
        )  # fmt: skip
        server = subprocess.Popen(
            argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True
        )
        try:
            _wait_port(port, server, timeout_s)
            check = subprocess.run(
                [sys.executable, "-m", "pitlane.cli", "twin", "check", "--port", str(port), "--json"],
                capture_output=True, text=True, timeout=timeout_s,
            )  # fmt: skip
        finally:
            os.killpg(server.pid, signal.SIGTERM)
            try:
                server.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)
                server.wait()
    if check.returncode != 0:
        raise UserError(f"`pitlane twin check` failed against the sim image: {check.stdout.strip()[-300:]}")
    return {"port": port, "check": json.loads(check.stdout)}


def _image_env(store: Store, ctr: str) -> dict[str, str]:
    """The image's ENV (PATH, PYTHONPATH, ...), which a plain chroot does not apply."""
    out = run(store.buildah("inspect", "--type", "container", ctr), "buildah inspect")
    env = json.loads(out)["OCIv1"]["config"].get("Env") or []
    return dict(item.split("=", 1) for item in env)


def smoke_car(
    store: Store, model: Path | str, loops: int = 5, timeout_s: float = 600.0, public_key: Path | None = None
) -> dict[str, Any]:
    """`python3 -m pitlane.car.selfcheck` inside the car image's root filesystem, as uid 1000, under qemu-user.

    `model` is a .tflite file, or a signed bundle `REGISTRY/REPO@sha256:...` that the image's model manager
    pulls from the registry (the chroot shares this machine's network), verifies with `public_key` and
    health-checks, as a car does at start."""
    binfmt.ensure_arm64()
    bundle = isinstance(model, str) and "@sha256:" in model
    if bundle and (public_key is None or not public_key.is_file()):
        raise UserError("the car smoke run verifies a signed bundle: give the release's public key (--key)")
    if not bundle and not Path(model).is_file():
        raise UserError(f"model {model} does not exist")
    with container(store, "car") as ctr:
        root = Path(run(store.buildah("mount", ctr), "buildah mount").strip())
        try:
            smoke_dir = root / "tmp" / "pitlane-smoke"
            smoke_dir.mkdir(parents=True, exist_ok=True)
            if bundle:
                assert public_key is not None
                shutil.copy(public_key, smoke_dir / "release.pub")
                args = [str(model), str(loops), "/tmp/pitlane-smoke/release.pub"]
            else:
                shutil.copy(model, smoke_dir / Path(model).name)
                args = [f"/tmp/pitlane-smoke/{Path(model).name}", str(loops)]
            os.chmod(smoke_dir, 0o755)
            env = _image_env(store, ctr)
            argv = [
                "chroot", "--userspec=1000:1000", str(root), "/usr/bin/env", "-i",
                *[f"{k}={v}" for k, v in env.items()],
                "python3", "-m", SELFCHECK_MODULE, *args,
            ]  # fmt: skip
            proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout_s)
        finally:
            run(store.buildah("umount", ctr), "buildah umount")
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        why = (proc.stderr.strip().splitlines() or [f"exit status {proc.returncode}"])[-1]
        raise UserError(f"the car image failed its smoke run under qemu: {why}")
    return json.loads(lines[-1])
