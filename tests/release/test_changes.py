"""Which changes need new images, and what changed since the last release tag (real git)."""

from __future__ import annotations

import subprocess

from pitlane.release.changes import needs_images, previous_tag, since_last_release


def test_model_only_paths_need_no_images():
    assert not needs_images(["release.yaml"])
    assert not needs_images(
        ["release.yaml", "README.md", "docs/x.md", "argocd/base/model.yaml", "pipelines/p.yaml", "tests/a.py"]
    )
    assert needs_images(["release.yaml", "pitlane/twin/world.py"])
    assert needs_images(["Dockerfile.arm64"])
    assert needs_images(["Pipfile.lock"])
    assert not needs_images([])


def git(repo, *args):
    subprocess.run(
        ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t", *args],
        check=True,
        capture_output=True,
    )


def test_since_last_release(tmp_path):
    git(tmp_path, "init", "-q")
    (tmp_path / "pitlane").mkdir()
    (tmp_path / "pitlane" / "a.py").write_text("a = 1\n")
    (tmp_path / "release.yaml").write_text("v1\n")
    git(tmp_path, "add", "-A")
    git(tmp_path, "commit", "-qm", "first")
    git(tmp_path, "tag", "-a", "v1.0.0", "-m", "v1.0.0")
    first = since_last_release(tmp_path, "v1.0.0")
    assert first.previous is None and first.code_changed
    (tmp_path / "release.yaml").write_text("v2\n")
    git(tmp_path, "commit", "-qam", "new model")
    git(tmp_path, "tag", "-a", "v1.0.1", "-m", "v1.0.1")
    git(tmp_path, "tag", "not-a-release")
    second = since_last_release(tmp_path, "v1.0.1")
    assert second.previous == "v1.0.0"
    assert second.paths == ("release.yaml",) and not second.code_changed
    assert [c.split(" ", 1)[1] for c in second.commits] == ["new model"]
    (tmp_path / "pitlane" / "a.py").write_text("a = 2\n")
    git(tmp_path, "commit", "-qam", "code")
    assert previous_tag(tmp_path, "HEAD") == "v1.0.1"
    assert since_last_release(tmp_path).code_changed
