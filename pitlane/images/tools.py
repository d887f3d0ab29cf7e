"""Running the build's command-line tools (buildah, skopeo, mmdebstrap, pipenv): one place that turns a
missing tool or a failed command into one clear line, and keeps the full output in a log file."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from pitlane.errors import UserError

APT_PACKAGES = "buildah skopeo mmdebstrap arch-test qemu-user-static binfmt-support docker-registry"


def require(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        raise UserError(
            f"{tool} is not installed: apt-get install {APT_PACKAGES} (see README, Container images)"
        )
    return path


def run(argv: list[str], what: str, log: Path | None = None, *, cwd: Path | None = None, env=None) -> str:
    """Run a command to completion; its stdout, or UserError naming `what` failed and where the log is."""
    require(argv[0])
    proc = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True)
    if log is not None:
        log.parent.mkdir(parents=True, exist_ok=True)
        log.write_text(f"$ {' '.join(argv)}\n{proc.stdout}\n{proc.stderr}")
    if proc.returncode != 0:
        lines = [line for line in (proc.stderr or proc.stdout).splitlines() if line.strip()]
        last = lines[-1].strip() if lines else f"exit status {proc.returncode}"
        where = f" (full output: {log})" if log is not None else ""
        raise UserError(f"{what} failed: {last}{where}")
    return proc.stdout
