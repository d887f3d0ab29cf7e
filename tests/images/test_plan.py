"""The build plan: what each image is built from and the buildah command line (pure, no tools run)."""

from pathlib import Path

from pitlane.images.plan import IMAGES, BuildConfig, Store, base_tag, build_argv, mmdebstrap_argv, repository


def test_each_image_builds_its_own_dockerfile_for_its_architecture():
    repo = Path(__file__).resolve().parents[2]
    for spec in IMAGES.values():
        text = (repo / spec.dockerfile).read_text()
        assert "ARG BASE=" in text and "--require-hashes" in text
        if spec.name != "notebook":  # the notebook image is where data scientists train
            assert "tensorflow" not in text.lower().replace("no tensorflow", "")
    assert IMAGES["car"].platform == "linux/arm64" and IMAGES["sim"].platform == "linux/amd64"


def test_build_argv_pins_isolation_layers_timestamp_and_bases(tmp_path):
    store = Store.under(tmp_path)
    cfg = BuildConfig(repo=tmp_path, out=tmp_path, revision="abc123", cafile="/etc/ca.pem")
    argv = build_argv(store, IMAGES["car"], cfg)
    assert argv[:7] == [
        "buildah",
        "--storage-driver",
        "vfs",
        "--root",
        str(tmp_path / "storage"),
        "--runroot",
        str(tmp_path / "run"),
    ]
    for flag in ("--layers", "--pull=never", "--isolation"):
        assert flag in argv
    assert argv[argv.index("--platform") + 1] == "linux/arm64"
    assert f"BASE={base_tag('arm64')}" in argv and f"BUILDER={base_tag('amd64')}" in argv
    assert "REVISION=abc123" in argv and "id=pipcert,src=/etc/ca.pem" in argv
    assert argv[-1] == str(tmp_path)


def test_a_user_base_replaces_the_debian_one(tmp_path):
    cfg = BuildConfig(repo=tmp_path, out=tmp_path, base={"amd64": "python:3.13-slim"})
    argv = build_argv(Store.under(tmp_path), IMAGES["sim"], cfg)
    assert "BASE=python:3.13-slim" in argv and "BUILDER=python:3.13-slim" in argv


def test_mmdebstrap_makes_a_trixie_python_tarball():
    argv = mmdebstrap_argv("arm64", Path("/x/base.tar"))
    assert argv[0] == "mmdebstrap" and "--arch=arm64" in argv and "trixie" in argv and "/x/base.tar" in argv
    assert "--format=tar" in argv  # the destination is DEST.tar.part until it is complete
    assert any(a.startswith("--include=") and "python3" in a for a in argv)
    assert repository("127.0.0.1:5000", "car") == "127.0.0.1:5000/pitlane/car"


def test_split_packages_copy_every_module_exactly_once():
    """Packages copied in several small layers (by initial letter) must still ship each module once: a new
    module whose name no pattern matches would be missing from the image."""
    import glob
    import re

    repo = Path(__file__).resolve().parents[2]
    for spec in (s for s in IMAGES.values() if s.name != "notebook"):  # the notebook copies pitlane/ whole
        if "COPY pitlane /opt/pitlane/app/pitlane" in (repo / spec.dockerfile).read_text():
            continue  # the tools image takes the whole package in one layer
        sources = []
        for line in (repo / spec.dockerfile).read_text().splitlines():
            if line.startswith("COPY pitlane/"):
                sources += [s for s in line.split()[1:-1] if "*" in s and s.count("/") == 2]
        packages = {s.split("/")[1] for s in sources}
        assert packages, spec.dockerfile
        for package in packages:
            copied = [f for s in sources if s.split("/")[1] == package for f in glob.glob(str(repo / s))]
            modules = glob.glob(str(repo / "pitlane" / package / "*.py"))
            assert sorted(copied) == sorted(modules), (spec.dockerfile, package)
            assert all(re.search(r"\.py$", f) for f in copied)


def test_the_notebook_image_runs_python_3_12_with_nodes_proxy_and_the_locked_env_less_its_lint_tools(
    tmp_path,
):
    """TensorFlow 2.19 has no cp313 wheels: a base of its own with CPython 3.12; JupyterHub's proxy from Debian."""
    spec = IMAGES["notebook"]
    assert spec.platform == "linux/amd64" and spec.python == "3.12"
    assert spec.categories == ("packages", "dev-packages") and {"ruff", "mypy"} <= set(spec.leave_out)
    argv = build_argv(Store.under(tmp_path), spec, BuildConfig(repo=tmp_path, out=tmp_path))
    assert f"BASE={base_tag('amd64', python='3.12')}" in argv and base_tag("amd64", python="3.12").endswith(
        "-python3.12"
    )
    debian = mmdebstrap_argv("amd64", tmp_path / "nb.tar", extra=spec.debian)
    assert "node-configurable-http-proxy" in next(a for a in debian if a.startswith("--include="))
    user_base = BuildConfig(repo=tmp_path, out=tmp_path, base={"amd64": "python:3.12-slim"})
    assert "BASE=python:3.12-slim" in build_argv(Store.under(tmp_path), spec, user_base)
