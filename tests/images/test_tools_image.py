"""The tools image the release's steps run in: built by this repository from the same build code, its whole
environment hash-locked, never deployed to a car, and a `pitlane` command that a workspace cannot hijack.

Building it is opt-in (PITLANE_TOOLS_BASE=<a Python 3.12 Debian image in buildah's store, by digest>): it
needs a base this machine cannot pull (Debian ships no Python 3.12 and the locked environment has no
cp313 wheels) and ~4 GB of wheels (README, "Container images": its cost in CI)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from pitlane.images.plan import (
    DEFAULT_IMAGES,
    IMAGE_NAMES,
    IMAGES,
    TOOLS_IMAGE,
    BuildConfig,
    Store,
    build_argv,
)
from pitlane.images.storage import open_store

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = (REPO / IMAGES[TOOLS_IMAGE].dockerfile).read_text()


def test_the_tools_image_is_built_but_never_deployed():
    spec = IMAGES[TOOLS_IMAGE]
    assert spec.arch == "amd64" and set(spec.categories) == {"packages", "dev-packages"}
    assert TOOLS_IMAGE not in IMAGE_NAMES  # no argocd/ pin, no fleet kind, not in release.yaml's images
    argv = build_argv(
        Store.under(REPO / "out"),
        spec,
        BuildConfig(repo=REPO, out=REPO / "out", base={"amd64": "b@sha256:" + "1" * 64}),
    )
    assert "BASE=b@sha256:" + "1" * 64 in argv and "REQUIREMENTS=out/images/requirements-tools.txt" in argv


def test_every_package_of_the_tools_image_is_hash_checked_and_its_debian_tools_dated():
    assert DOCKERFILE.count("--require-hashes") == 2  # the locked environment, and pipenv's own venv
    pipenv = (REPO / "pitlane/images/tools-pipenv.txt").read_text().splitlines()
    pins = [line for line in pipenv if line and not line.startswith("#")]
    assert pins and all("==" in line and "--hash=sha256:" in line for line in pins)
    assert "snapshot.debian.org/archive/debian/%s" in DOCKERFILE and "ARG SNAPSHOT=" in DOCKERFILE
    for tool in ("git", "buildah", "skopeo", "qemu-user-static", "mmdebstrap"):
        assert f" {tool}" in DOCKERFILE, tool


def test_the_pitlane_command_never_imports_from_the_working_folder():
    assert "exec /opt/pitlane/venv/bin/python -P -m pitlane.cli" in DOCKERFILE
    assert "PYTHONSAFEPATH=1" in DOCKERFILE


def test_images_build_makes_the_product_images_unless_told(monkeypatch):
    """`make images` and a bare `pitlane images build` never build the 4 GB tools image."""
    from pitlane.cli import main
    from pitlane.images import cli

    seen: list[BuildConfig] = []

    def stop(cfg):
        seen.append(cfg)
        raise SystemExit(0)

    monkeypatch.setattr(cli, "build_all", stop)
    with pytest.raises(SystemExit):
        main(["images", "build"])
    assert seen[0].images == DEFAULT_IMAGES


@pytest.mark.slow
@pytest.mark.skipif(
    not os.environ.get("PITLANE_TOOLS_BASE") or not shutil.which("buildah") or os.geteuid() != 0,
    reason="opt-in: PITLANE_TOOLS_BASE=<Python 3.12 Debian image in the store, by digest>, root and buildah",
)
def test_the_tools_image_builds_and_runs_its_tools(tmp_path):
    out = REPO / "out" / "images"
    proc = subprocess.run(
        ["pitlane", "images", "build", "--only", TOOLS_IMAGE, "--base", f"amd64={os.environ['PITLANE_TOOLS_BASE']}",
         "--out", str(out)], capture_output=True, text=True, timeout=3600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr
    built = json.loads(proc.stdout.strip().splitlines()[-1])["images"][0]
    store = open_store(out)
    ctr = subprocess.run(
        store.buildah("from", "--quiet", built["tag"]), capture_output=True, text=True, check=True
    )
    try:
        for argv in (
            ["pitlane", "release", "policy", "--help"],
            ["git", "--version"],
            ["buildah", "--version"],
        ):
            run = subprocess.run(
                store.buildah("run", "--isolation", "chroot", ctr.stdout.strip(), "--", *argv),
                capture_output=True,
            )
            assert run.returncode == 0, (argv, run.stderr[-500:])
    finally:
        subprocess.run(store.buildah("rm", ctr.stdout.strip()), capture_output=True)
