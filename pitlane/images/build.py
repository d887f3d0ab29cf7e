"""`pitlane images build`: locked dependencies exported with hashes, then buildah builds each Dockerfile.

The Pipfile stays the single source: `pipenv verify` stops a build whose Pipfile.lock no longer matches
the Pipfile, and `pipenv requirements --categories ... --hash` exports exactly the locked versions (with
the hashes of every wheel of each, so pip on trixie's python3.13 checks the cp313 aarch64 wheels too).
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pitlane.errors import UserError
from pitlane.images import binfmt, rootfs
from pitlane.images.plan import BUILDER_ARCH, IMAGES, BuildConfig, ImageSpec, Store, build_argv, image_tag
from pitlane.images.storage import open_store
from pitlane.images.tools import run


@dataclass(frozen=True)
class Built:
    """One built image: its tag in the store, the base it was built on, and how long it took [s]."""

    name: str
    tag: str
    image_id: str
    base: str
    base_digest: str
    seconds: float


CHECKOUT = Path(__file__).resolve().parents[2]


@functools.cache  # it probes Pythons for pipenv: once per process, not per pipenv call
def pipenv_argv() -> list[str]:
    """How to run pipenv: PITLANE_PIPENV, else the Python that made this checkout's .venv or the venv running
    pitlane (where tools/bootstrap.sh installs pipenv), else `pipenv` on PATH, else this Python."""
    if os.environ.get("PITLANE_PIPENV"):
        return os.environ["PITLANE_PIPENV"].split()
    for cfg in (CHECKOUT / ".venv" / "pyvenv.cfg", Path(sys.prefix) / "pyvenv.cfg"):
        if not cfg.is_file():
            continue
        for line in cfg.read_text().splitlines():
            key, _, value = line.partition("=")
            home = Path(value.strip())
            if key.strip() == "home" and (home / "python3").is_file() and _has_pipenv(home / "python3"):
                return [str(home / "python3"), "-m", "pipenv"]
    if shutil.which("pipenv"):
        return ["pipenv"]
    return [sys.executable, "-m", "pipenv"]


def _has_pipenv(python: Path) -> bool:
    return (
        subprocess.run([str(python), "-c", "import pipenv"], capture_output=True, check=False).returncode == 0
    )


def _pipenv(repo: Path, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PIPENV_PIPFILE=str(repo / "Pipfile"), PIPENV_NOSPIN="1", PIPENV_VERBOSITY="-1")
    env.pop("PIPENV_VENV_IN_PROJECT", None)
    try:
        return subprocess.run([*pipenv_argv(), *args], cwd=repo, env=env, capture_output=True, text=True)
    except OSError as exc:
        raise UserError(
            f"cannot run pipenv ({exc}); install it (pip install pipenv) or set PITLANE_PIPENV"
        ) from None


def check_lock(repo: Path) -> None:
    """UserError unless Pipfile.lock was made from the Pipfile as it is now."""
    if not (repo / "Pipfile.lock").is_file():
        raise UserError(f"{repo / 'Pipfile.lock'} is missing: run `pipenv lock` and commit it")
    proc = _pipenv(repo, "verify")
    if proc.returncode != 0 and "out-of-date" in proc.stdout + proc.stderr:
        raise UserError(
            "Pipfile.lock does not match the Pipfile: run `pipenv lock`, commit both files, and build again"
        )
    if proc.returncode != 0:
        why = (proc.stderr.strip().splitlines() or [f"exit status {proc.returncode}"])[-1]
        raise UserError(
            f"`pipenv verify` failed ({why}): install pipenv (pip install pipenv) or set PITLANE_PIPENV"
        )


def export_requirements(repo: Path, spec: ImageSpec) -> Path:
    """out/images/requirements-<image>.txt: the image's Pipfile categories, pinned and hashed, less its
    `leave_out` packages."""
    proc = _pipenv(repo, "requirements", "--hash", "--categories", " ".join(spec.categories))
    lines = [line for line in proc.stdout.splitlines() if "==" in line]
    if proc.returncode != 0 or not lines:
        why = (proc.stderr.strip().splitlines() or ["no packages"])[-1]
        raise UserError(
            f"cannot export Pipfile categories {list(spec.categories)} for the {spec.name} image: {why}"
        )
    lines = [line for line in lines if line.split("==")[0].strip().lower() not in spec.leave_out]
    missing = [line.split("==")[0] for line in lines if "--hash" not in line]
    if missing:
        raise UserError(f"Pipfile.lock has no hashes for {missing}: run `pipenv lock` again")
    dest = repo / spec.requirements
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text("\n".join(lines) + "\n")
    return dest


def git_revision(repo: Path) -> str:
    proc = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True)
    return proc.stdout.strip() if proc.returncode == 0 else "unknown"


def build_image(spec: ImageSpec, cfg: BuildConfig, store: Store) -> Built:
    """Build one image with buildah (bases made or found first); layers of unchanged steps come from cache."""
    start = time.monotonic()
    bases = {spec.arch, BUILDER_ARCH}
    if not binfmt.native(spec.arch):
        binfmt.ensure_arm64()
    for arch in sorted(bases):
        rootfs.ensure_base(arch, cfg, store)
    if spec.python:
        rootfs.ensure_python_base(spec, cfg, store)
    export_requirements(cfg.repo, spec)
    log = cfg.out / f"build-{spec.name}.log"
    env = dict(os.environ, BUILDAH_ISOLATION="chroot")
    run(build_argv(store, spec, cfg), f"building {spec.dockerfile}", log, cwd=cfg.repo, env=env)
    tag = image_tag(spec.name)
    image_id = run(
        store.buildah("inspect", "--type", "image", "--format", "{{.FromImageID}}", tag), "inspect"
    ).strip()
    base = cfg.base_for(spec.arch, spec.python)
    return Built(spec.name, tag, image_id, base, rootfs.image_digest(store, base), time.monotonic() - start)


def build_all(cfg: BuildConfig, say: Callable[[str], None] = print) -> list[Built]:
    """Check the lock, then build each requested image in turn."""
    unknown = [n for n in cfg.images if n not in IMAGES]
    if unknown:
        raise UserError(f"unknown image {unknown[0]!r}; choose from {sorted(IMAGES)}")
    check_lock(cfg.repo)
    store = open_store(cfg.out)
    built = []
    for name in cfg.images:
        spec = IMAGES[name]
        say(f"images: building {name} ({spec.dockerfile}, {spec.platform}) ...")
        b = build_image(spec, cfg, store)
        say(f"images: {name} built as {b.tag} in {b.seconds:.0f} s (base {b.base})")
        built.append(b)
    return built
