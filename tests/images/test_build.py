"""Bad input stops the build with one clear line: a stale lock, a missing base, binfmt off, a registry down."""

import shutil
from pathlib import Path

import pytest
from helpers import free_port

from pitlane.cli import main
from pitlane.errors import UserError
from pitlane.images import binfmt, rootfs
from pitlane.images.build import check_lock, export_requirements
from pitlane.images.plan import IMAGES, BuildConfig, Store

REPO = Path(__file__).resolve().parents[2]


def _copy_pipfiles(tmp_path: Path) -> Path:
    for name in ("Pipfile", "Pipfile.lock"):
        shutil.copy(REPO / name, tmp_path / name)
    return tmp_path


def test_the_locked_categories_export_pinned_and_hashed(tmp_path):
    repo = _copy_pipfiles(tmp_path)
    check_lock(repo)
    text = export_requirements(repo, IMAGES["car"]).read_text()
    lines = text.splitlines()
    assert any(line.startswith("donkeycar==5.4.0") for line in lines)
    assert any(line.startswith("ai-edge-litert==") for line in lines)
    assert not any(line.startswith(("tensorflow", "tf-keras", "keras==")) for line in lines)
    assert all("--hash=sha256:" in line for line in lines)
    # the Pi needs neither OpenCV nor pandas (tests/images/test_car_deps.py); the twin needs OpenCV
    assert not any(line.startswith(("opencv", "pandas==", "tzdata==")) for line in lines)
    sim = export_requirements(repo, IMAGES["sim"]).read_text().splitlines()
    assert any(line.startswith("opencv-python-headless==") for line in sim)
    assert any(line.startswith("pandas==") for line in sim)


def test_a_lock_that_no_longer_matches_the_pipfile_stops_the_build(tmp_path, capsys):
    repo = _copy_pipfiles(tmp_path)
    with open(repo / "Pipfile", "a") as f:
        f.write('\n[sim2]\nsix = "*"\n')
    with pytest.raises(UserError, match=r"Pipfile.lock does not match the Pipfile: run `pipenv lock`"):
        check_lock(repo)


def test_a_missing_base_image_says_how_to_get_it(tmp_path):
    cfg = BuildConfig(repo=REPO, out=tmp_path, base={"amd64": "docker.io/library/python:3.13-slim"})
    with pytest.raises(
        UserError, match=r"base image docker.io/library/python:3.13-slim is not in buildah's store"
    ):
        rootfs.ensure_base("amd64", cfg, Store.under(tmp_path))


def test_binfmt_not_available_says_how_to_enable_it(tmp_path, monkeypatch):
    monkeypatch.setattr(binfmt, "native", lambda arch: False)
    with pytest.raises(UserError, match=r"binfmt_misc, which is not enabled here: .*update-binfmts --enable"):
        binfmt.ensure_arm64(binfmt_dir=tmp_path)  # an empty folder: no qemu-aarch64 entry, nothing registered
    (tmp_path / "qemu-aarch64").write_text("enabled\ninterpreter /usr/bin/qemu-aarch64-static\n")
    binfmt.ensure_arm64(binfmt_dir=tmp_path)


def test_a_registry_that_is_down_stops_before_building(capsys):
    port = free_port()  # nothing listens there
    assert main(["images", "build", "--only", "sim", "--registry", f"127.0.0.1:{port}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert err[0].startswith(f"pitlane: error: registry 127.0.0.1:{port} does not answer")
    assert "nothing was pushed or tagged" in err[0]


def test_unknown_base_architecture_is_refused(capsys):
    assert main(["images", "build", "--base", "riscv64=debian:trixie"]) == 2
    assert "architecture 'riscv64' is not amd64 or arm64" in capsys.readouterr().err
