"""GitHub releases and pull requests through PyGithub, against a FAKE GitHub (tests/fakes/fake_github.py):
idempotent on a second run, retried through a short outage, one clear error on a long one."""

from __future__ import annotations

import pytest
from fakes.fake_github import FakeGitHub

from pitlane.errors import UserError
from pitlane.release.github import GitHubConfig, open_pull_request, publish_release
from pitlane.release.notes import Text, release_text

REPO = "pitlane/pitlane"


@pytest.fixture
def github():
    fake = FakeGitHub(token="t0ken")
    yield fake
    fake.stop()


def cfg(github, **kw):
    return GitHubConfig(repo=REPO, token="t0ken", api=github.url, backoff_s=0.01, **kw)


def test_release_is_created_once_then_updated(github):
    url, created = publish_release(
        cfg(github), "v1.0.0", Text("v1.0.0 (not released: x)", "first", draft=True)
    )
    assert created and url.endswith("/releases/tag/v1.0.0")
    url2, created2 = publish_release(cfg(github), "v1.0.0", Text("v1.0.0", "second", draft=False))
    assert not created2 and url2 == url
    (release,) = github.releases()
    assert release["body"] == "second" and release["draft"] is False and release["name"] == "v1.0.0"


def test_pull_request_is_opened_once_then_updated(github):
    url, created = open_pull_request(
        cfg(github), "release/v1.0.0", "main", Text("Release v1.0.0", "a", False)
    )
    assert created and url.endswith("/pull/1")
    url2, created2 = open_pull_request(
        cfg(github), "release/v1.0.0", "main", Text("Release v1.0.0", "b", False)
    )
    assert (url2, created2) == (url, False)
    (pull,) = github.pulls()
    assert pull["body"] == "b" and pull["head"]["label"] == "pitlane:release/v1.0.0"


def test_a_short_outage_is_retried(github):
    github.fail_next(2, 502)
    _, created = publish_release(cfg(github), "v1.0.0", Text("v1.0.0", "body", False))
    assert created and len(github.releases()) == 1


def test_a_long_outage_is_one_clear_error(github):
    github.fail_next(20, 503)
    with pytest.raises(UserError, match="GitHub release v1.0.0 in pitlane/pitlane: "):
        publish_release(cfg(github, retries=2), "v1.0.0", Text("v1.0.0", "body", False))
    assert github.releases() == []


def test_bad_token_and_unknown_repo(github):
    with pytest.raises(UserError, match="HTTP 401 Bad credentials"):
        publish_release(GitHubConfig(REPO, "wrong", github.url), "v1.0.0", Text("t", "b", False))
    with pytest.raises(UserError, match="HTTP 404"):
        publish_release(GitHubConfig("o/none", "t0ken", github.url), "v1.0.0", Text("t", "b", False))
    with pytest.raises(UserError, match="GITHUB_TOKEN is empty"):
        publish_release(GitHubConfig(REPO, "", github.url), "v1.0.0", Text("t", "b", False))


def test_release_text_says_why_it_failed(tmp_path):
    (tmp_path / "gate").mkdir()
    (tmp_path / "gate" / "verdict.txt").write_text("generated_track laps_completed 0 >= 1 FAIL\n")
    statuses = {"fetch-source": "Succeeded", "gate-model": "Failed", "sign-model": "None"}
    text = release_text("v1.0.0", "Failed", statuses, tmp_path)
    assert text.draft and "the candidate model failed the gate" in text.title
    assert "laps_completed 0 >= 1 FAIL" in text.body and "sign-model: Skipped" in text.body
    ok = release_text("v1.0.0", "Succeeded", {"gate-model": "Succeeded"}, tmp_path)
    assert ok.title == "v1.0.0" and not ok.draft
