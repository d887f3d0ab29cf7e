"""GitHub through PyGithub: the release of a tag and the GitOps pull request, both idempotent (running a
tag twice updates what the first run made instead of making it twice).

The token comes from the environment (GITHUB_TOKEN, a Kubernetes Secret in the cluster) and is never
printed. Network hiccups are retried (urllib3's Retry inside PyGithub), then one clear error.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from github import Auth, Github, GithubException
from github.GithubRetry import GithubRetry
from requests.exceptions import RequestException

from pitlane.errors import UserError
from pitlane.release.notes import Text

DEFAULT_API = "https://api.github.com"


@dataclass(frozen=True)
class GitHubConfig:
    repo: str  # OWNER/NAME
    token: str
    api: str = DEFAULT_API
    retries: int = 3  # for 5xx answers and dropped connections
    backoff_s: float = 0.5  # [s] first wait between retries, doubling
    timeout_s: float = 15.0  # [s] per request


def _client(cfg: GitHubConfig) -> Github:
    if not cfg.token:
        raise UserError("GITHUB_TOKEN is empty: the pitlane-github Secret (key token) must hold a token")
    retry = GithubRetry(
        total=cfg.retries,
        backoff_factor=cfg.backoff_s,
        status_forcelist=[500, 502, 503, 504],
        allowed_methods=None,
    )
    return Github(
        base_url=cfg.api.rstrip("/"),
        auth=Auth.Token(cfg.token),
        retry=retry,
        timeout=int(cfg.timeout_s),
        per_page=100,
    )


def _fail(what: str, exc: Exception) -> UserError:
    if isinstance(exc, GithubException):
        message = exc.data.get("message") if isinstance(exc.data, dict) else exc.data
        return UserError(f"GitHub {what}: HTTP {exc.status} {message or ''}".rstrip())
    m = re.search(r"too many \d+ error responses", str(exc))
    if m:  # urllib3's Retry gave up
        return UserError(f"GitHub {what}: gave up after retries ({m.group(0)})")
    return UserError(f"GitHub {what}: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")


def publish_release(cfg: GitHubConfig, tag: str, text: Text) -> tuple[str, bool]:
    """Create the release of `tag`, or update it if one exists (drafts included); (its URL, created?)."""
    try:
        repo = _client(cfg).get_repo(cfg.repo)
        existing = next((r for r in repo.get_releases() if r.tag_name == tag), None)
        if existing is not None:
            existing.update_release(name=text.title, message=text.body, draft=text.draft, prerelease=False)
            return existing.html_url, False
        release = repo.create_git_release(tag, text.title, text.body, draft=text.draft, prerelease=False)
        return release.html_url, True
    except (GithubException, RequestException) as exc:
        raise _fail(f"release {tag} in {cfg.repo}", exc) from None


def open_pull_request(cfg: GitHubConfig, head: str, base: str, text: Text) -> tuple[str, bool]:
    """Open a pull request from `head` into `base`, or update the open one; (its URL, created?)."""
    try:
        repo = _client(cfg).get_repo(cfg.repo)
        owner = cfg.repo.split("/", 1)[0]
        existing = next(iter(repo.get_pulls(state="open", head=f"{owner}:{head}", base=base)), None)
        if existing is not None:
            existing.edit(title=text.title, body=text.body)
            return existing.html_url, False
        pr = repo.create_pull(base=base, head=head, title=text.title, body=text.body)
        return pr.html_url, True
    except (GithubException, RequestException) as exc:
        raise _fail(f"pull request {head} -> {base} in {cfg.repo}", exc) from None
