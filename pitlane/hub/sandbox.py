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
from pathlib import Path

BWRAP = "bwrap"
INSTALL = "apt-get install bubblewrap"


def sandbox_argv(home: Path, data: Path, bwrap: str = BWRAP) -> list[str]:
    """bwrap's arguments that run a command with only `home` visible (and writable) under `data`."""
    return [
        bwrap,
        "--ro-bind", "/", "/",
        "--dev", "/dev",
        "--proc", "/proc",
        "--tmpfs", "/tmp",
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
    probe = [*sandbox_argv(data, data, path), "true"]
    proc = subprocess.run(probe, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        why = (proc.stderr.strip().splitlines() or [f"exit status {proc.returncode}"])[-1]
        return f"bubblewrap cannot make a sandbox here ({why}; unprivileged user namespaces disabled?)"
    return None
