"""`pitlane release prepare` in a real git repository: release.yaml written, committed, tagged; changes
since the last release shown; run twice, nothing changes; bad input refused with nothing written."""

from __future__ import annotations

import subprocess

import pytest
import yaml

from pitlane.cli import main

MODEL_A = "127.0.0.1:5000/pitlane/models@sha256:" + "a" * 64
MODEL_B = "127.0.0.1:5000/pitlane/models@sha256:" + "b" * 64


def git(repo, *args) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True).stdout


@pytest.fixture
def repo(tmp_path, monkeypatch):
    git(tmp_path, "init", "-q", "-b", "main")
    git(tmp_path, "config", "user.name", "Release Manager")
    git(tmp_path, "config", "user.email", "rm@example.com")
    (tmp_path / "pitlane").mkdir()
    (tmp_path / "pitlane" / "x.py").write_text("x = 1\n")
    git(tmp_path, "add", "-A")
    git(tmp_path, "commit", "-qm", "code")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_prepare_commits_tags_and_shows_changes(repo, capsys):
    assert main(["release", "prepare", "v1.0.0", "--model", MODEL_A]) == 0
    out = capsys.readouterr().out
    assert f"model:   {MODEL_A}" in out and "first release" in out and "rebuilt" in out
    assert git(repo, "tag", "--list").split() == ["v1.0.0"]
    doc = yaml.safe_load(git(repo, "show", "v1.0.0:release.yaml"))
    assert doc["version"] == "v1.0.0" and doc["model"] == MODEL_A and doc["gate"] == {"policy": "default"}
    assert (
        git(repo, "log", "-1", "--format=%an %s").strip()
        == f"Release Manager release v1.0.0: model {MODEL_A}"
    )
    assert git(repo, "cat-file", "-t", "v1.0.0").strip() == "tag"  # annotated

    assert main(["release", "prepare", "v1.0.1", "--model", MODEL_B]) == 0
    out = capsys.readouterr().out
    assert "changes since v1.0.0: 1 commit(s), 1 file(s)" in out
    assert "unchanged (model-only release)" in out


def test_prepare_twice_is_a_no_op(repo, capsys):
    assert main(["release", "prepare", "v1.0.0", "--model", MODEL_A]) == 0
    head = git(repo, "rev-parse", "HEAD")
    assert main(["release", "prepare", "v1.0.0", "--model", MODEL_A]) == 0
    assert "already tagged with this model" in capsys.readouterr().out
    assert git(repo, "rev-parse", "HEAD") == head


@pytest.mark.parametrize(
    "argv, message",
    [
        (["1.0.0", "--model", MODEL_A], "not semantic versioning"),
        (["v1.0.0", "--model", "127.0.0.1:5000/pitlane/models:latest"], "pinned by digest"),
        (["v1.0.0", "--model", MODEL_A, "--policy", "nope.yaml"], "does not exist"),
    ],
)
def test_bad_input_writes_nothing(repo, capsys, argv, message):
    assert main(["release", "prepare", *argv]) == 2
    assert message in capsys.readouterr().err
    assert not (repo / "release.yaml").exists() and git(repo, "tag", "--list") == ""


def test_a_moved_tag_or_dirty_tree_is_refused(repo, capsys):
    assert main(["release", "prepare", "v1.0.0", "--model", MODEL_A]) == 0
    assert main(["release", "prepare", "v1.0.0", "--model", MODEL_B]) == 2
    assert "already exists and pins another model" in capsys.readouterr().err
    (repo / "pitlane" / "x.py").write_text("x = 2\n")
    assert main(["release", "prepare", "v1.1.0", "--model", MODEL_B]) == 2
    assert "uncommitted changes (pitlane/x.py)" in capsys.readouterr().err
