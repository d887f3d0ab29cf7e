"""Each user's JupyterLab in its own sandbox, so that a second user cannot read the first one's files.

The local hub runs every user's server as the hub's own OS user (no system accounts to create, and the
locked environment may live where other accounts cannot reach, e.g. under /root). bubblewrap (`bwrap`)
gives each server a view of the machine in which the hub's data folder holds only that user's home: other
homes, the hub's database and password, the registry's and MLflow's stores are not there. The rest of the
filesystem is read-only, /tmp is private, the server runs in its own user, PID and IPC namespaces with every
capability dropped, so it can neither see nor signal another user's processes nor undo its mounts.
As root this works as it is; as another user it needs unprivileged user namespaces (Debian's default).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path

import pitlane

BWRAP = "bwrap"
INSTALL = "apt-get install bubblewrap"


def software_under_tmp(paths: Iterable[Path] | None = None) -> list[Path]:
    """What the server runs that the private /tmp would hide: the environment, the Python it was made from and
    pitlane's own source, where they live under /tmp (a CI clone, a checkout in a scratch folder)."""
    if paths is None:
        paths = (Path(sys.prefix), Path(sys.base_prefix), Path(pitlane.__file__).resolve().parents[1])
    tmp = Path("/tmp")
    return list(
        dict.fromkeys(p.resolve() for p in paths if p.resolve().is_relative_to(tmp) and p.resolve() != tmp)
    )


def sandbox_argv(home: Path, data: Path, bwrap: str = BWRAP, keep: Iterable[Path] = ()) -> list[str]:
    """bwrap's arguments that run a command with only `home` visible (and writable) under `data`; `keep`
    (software_under_tmp) stays readable through the private /tmp."""
    kept = [arg for path in keep for arg in ("--ro-bind", str(path), str(path))]
    return [
        bwrap,
        "--ro-bind", "/", "/",
        "--dev", "/dev",
        "--proc", "/proc",
        "--tmpfs", "/tmp",
        *kept,  # before the data folder's tmpfs: a data folder inside a kept checkout is hidden again
        "--tmpfs", str(data),  # every home, the hub's database and the services' stores: gone
        "--bind", str(home), str(home),  # mounts come from the old root, so the home survives the tmpfs
        "--unshare-user", "--unshare-pid", "--unshare-ipc",
        "--cap-drop", "ALL",
        "--die-with-parent",
        "--chdir", str(home),
        "--",
    ]  # fmt: skip


def unavailable(data: Path) -> str | None:
    """Why the sandbox cannot run here (one line), or None when it can."""
    path = shutil.which(BWRAP)
    if path is None:
        return f"bubblewrap is not installed ({INSTALL})"
    probe = [*sandbox_argv(data, data, path, software_under_tmp()), sys.executable, "-c", "import pitlane"]
    proc = subprocess.run(probe, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        why = (proc.stderr.strip().splitlines() or [f"exit status {proc.returncode}"])[-1]
        return f"bubblewrap cannot make a sandbox here ({why}; unprivileged user namespaces disabled?)"
    return None
