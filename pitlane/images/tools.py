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


def _last_line(text: str, returncode: int) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else f"exit status {returncode}"


def run(argv: list[str], what: str, log: Path | None = None, *, cwd: Path | None = None, env=None) -> str:
    """Run a command to completion; its stdout, or UserError naming `what` failed (and the log to read).

    With `log`, the output streams into that file as the command runs (`tail -f` it during a long build).
    """
    require(argv[0])
    if log is None:
        proc = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True)
        if proc.returncode != 0:
            raise UserError(f"{what} failed: {_last_line(proc.stderr or proc.stdout, proc.returncode)}")
        return proc.stdout
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w") as f:
        f.write(f"$ {' '.join(argv)}\n")
        f.flush()
        proc = subprocess.run(argv, cwd=cwd, env=env, stdout=f, stderr=subprocess.STDOUT, text=True)
    text = log.read_text(errors="replace")
    if proc.returncode != 0:
        raise UserError(f"{what} failed: {_last_line(text, proc.returncode)} (full output: {log})")
    return text
