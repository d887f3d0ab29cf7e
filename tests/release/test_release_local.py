"""A release from a tag, end to end on this machine: `pitlane release run --local` runs pipelines/*.yaml
against a real registry, a real bare git remote and a FAKE GitHub. Model-only releases (image tasks
build nothing), a candidate that fails the gate (though it was pushed with a hand-written passing
gate.json), a serial the pusher chose, GitHub failing mid-run, the same tag twice, and (slowest) a full
release that builds, pushes, signs and smoke-tests both images.

The release runs under a test floor (PITLANE_GATE_FLOOR): the throwaway models here cannot finish a lap,
so the pipeline's own minimum (pitlane/release/gate_floor.yaml) would refuse every one of them."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from fakes.fake_github import FakeGitHub

pytest.importorskip("pitlane.artifacts.signing", reason="needs pitlane.artifacts (issue 9: model push/sign)")
pytest.importorskip("model_support", reason="needs tests/model_support.py (issue 9's tiny models)")
from model_support import write_gate_report  # noqa: E402  (the artifacts tests' tiny models)

from pitlane.artifacts import attest, oci, signing  # noqa: E402
from pitlane.errors import SignatureError  # noqa: E402
from pitlane.release.policy import FLOOR_ENV  # noqa: E402

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
GH_REPO = "pitlane/pitlane"
TOKEN = "ghp_fakeTokenForTheFakeGitHub0123"
NO_LIMITS = "max_abs_cte: null\nmax_off_track_events: null\nmin_mean_speed: null\nmax_nonfinite_outputs: 0\n"
FLOOR = "scenes: [generated_track]\nlaps: 1\nseed: 0\nmax_seconds: 2.0\nmin_laps_completed: 0\n" + NO_LIMITS
LAX = FLOOR  # any model that outputs numbers passes
STRICT = (
    "scenes: [generated_track]\nlaps: 1\nmax_seconds: 2.0\nmin_laps_completed: 1\n" + NO_LIMITS
)  # none can, in 2 s
PITLANE = [sys.executable, "-m", "pitlane.cli"]
PYTEST_ARGS = "-x -q -p no:cacheprovider tests/release/test_config.py"


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True).stdout


@pytest.fixture(scope="module")
def world(tmp_path_factory, registry, models):
    """A clone of this repository's tracked files pushed to a bare remote, a pushed candidate model, keys
    and Secrets, a FAKE GitHub; an earlier release v0.9.0 already tagged (its images pinned in argocd/)."""
    root = tmp_path_factory.mktemp("release")
    origin, work = root / "origin.git", root / "work"
    git(root, "init", "-q", "--bare", "-b", "main", str(origin))
    files = git(ROOT, "ls-files", "-z").split("\0")
    for rel in filter(None, files):
        src = ROOT / rel
        if src.is_file():
            (work / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, work / rel)
    git(root, "init", "-q", "-b", "main", str(work))
    git(work, "config", "user.name", "Release Manager")
    git(work, "config", "user.email", "rm@example.com")
    (work / "gate-lax.yaml").write_text(LAX)
    (work / "gate-strict.yaml").write_text(STRICT)
    git(work, "add", "-A")
    git(work, "commit", "-qm", "pitlane")
    git(work, "tag", "-a", "v0.9.0", "-m", "an earlier release")
    git(work, "remote", "add", "origin", str(origin))
    git(work, "push", "-q", "origin", "main", "v0.9.0")

    secrets = root / "secrets"
    (secrets / "pitlane-github").mkdir(parents=True)
    (secrets / "pitlane-github" / "token").write_text(TOKEN)
    password = "release key passphrase"
    mp = pytest.MonkeyPatch()
    mp.setenv(signing.PASSWORD_ENV, password)
    (root / "floor.yaml").write_text(FLOOR)  # the runner's own environment (ENV): no tag reaches it
    pubs = {}
    for kind in ("model", "image"):  # two keys: the car trusts the model key, admission the image key
        folder = secrets / f"pitlane-{kind}-signing-key"
        folder.mkdir()
        key, pubs[kind] = signing.generate_keys(root / kind)
        shutil.copy(key, folder / "cosign.key")
        (folder / "password").write_text(password)
        shutil.copy(pubs[kind], folder / "cosign.pub")  # in the Secret, but not in its items: never mounted

    def push_model(name: str, verdict: str = "pass", serial: int | None = None) -> str:
        model = models[name]
        gate = write_gate_report(model, root / f"gate-{name}.json", verdict)  # hand-written: never trusted
        proc = subprocess.run(
            [*PITLANE, "model", "push", str(model), "--gate", str(gate), "--to", f"{registry.host}/pitlane/models",
             *(["--serial", str(serial)] if serial is not None else [])],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        return proc.stdout.strip().splitlines()[-1]

    github = FakeGitHub(token=TOKEN, repos=(GH_REPO,))
    yield {"root": root, "work": work, "origin": origin, "secrets": secrets, "pub": pubs["model"],
           "image_pub": pubs["image"], "github": github, "registry": registry, "push_model": push_model}  # fmt: skip
    github.stop()
    mp.undo()


def env(world) -> dict[str, str]:
    """The runner's environment: the test floor (the throwaway models cannot finish a lap)."""
    return {**os.environ, FLOOR_ENV: str(world["root"] / "floor.yaml")}


def prepare(world, version: str, model: str, policy: str = "gate-lax.yaml") -> None:
    work = world["work"]
    subprocess.run([*PITLANE, "release", "prepare", version, "--model", model, "--policy", policy],
                   cwd=work, check=True, capture_output=True, text=True, env=env(world))  # fmt: skip
    git(work, "push", "-q", "origin", "main", version)


def run_local(world, version: str, *extra: str) -> subprocess.CompletedProcess:
    argv = [
        *PITLANE, "release", "run", "--local", version,
        "--pipelines", str(ROOT / "pipelines"), "--repo-url", str(world["origin"]), "--github-repo", GH_REPO,
        "--secrets", str(world["secrets"]), "--out", str(world["root"] / "runs"),
        "-p", f"github-api={world['github'].url}", "-p", f"pytest-args={PYTEST_ARGS}", *extra,
    ]  # fmt: skip
    return subprocess.run(
        argv, cwd=world["work"], capture_output=True, text=True, timeout=1200, env=env(world)
    )


def outcome(world, version: str) -> dict:
    doc = json.loads((world["root"] / "runs" / version / "outcome.json").read_text())
    doc["by_name"] = {t["name"]: t for t in doc["tasks"]}
    return doc


def signed(world, ref: str) -> bool:
    r = oci.Reference.parse(ref)
    client = oci.Client.for_ref(r)
    assert r.digest is not None
    return signing.suffix_tag(r.digest, "sig") in set(client.tags(r.repository))


def test_model_only_release_builds_no_image_and_assigns_the_serial(world):
    """A model-only release whose candidate the pusher pushed as serial 999999 (to lock the fleet out of
    every later release): the pipeline signs it as the serial IT assigned, in the signature and the gate
    attestation, and the 999999 bundle stays unsigned."""
    candidate = world["push_model"]("a", serial=999999)
    prepare(world, "v1.0.0", candidate)
    proc = run_local(world, "v1.0.0")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr
    doc = outcome(world, "v1.0.0")
    tasks = doc["by_name"]
    assert doc["status"] == "Succeeded"
    assert all(t["status"] == "Succeeded" for t in tasks.values()), {n: t["status"] for n, t in tasks.items()}
    assert tasks["fetch-source"]["results"]["code-changed"] == "false"
    assert tasks["sign-images"]["results"] == {
        "sim": "",
        "car": "",
        "tools": "",
    }  # nothing built, nothing signed
    model = world["v1_model"] = doc["results"]["model"]
    assert doc["results"]["serial"] == "1" and model != candidate and not signed(world, candidate)
    # the model is signed by the MODEL key with its serial; the gate attestation is the pipeline's own run
    ref = oci.Reference.parse(model)
    client = oci.Client.for_ref(ref)
    payload = signing.verify(client, ref, signing.load_public_key(world["pub"])).payload
    assert payload["optional"] == {"pitlane.dev/serial": "1"}
    with pytest.raises(SignatureError):
        signing.verify(client, ref, signing.load_public_key(world["image_pub"]))
    gate = attest.verify_attestation(
        client, ref, signing.load_public_key(world["pub"]), attest.GATE_PREDICATE
    )
    assert gate["serial"] == 1 and gate["bundle_digest"] == ref.digest and gate["verdict"] == "pass"
    assert gate["policy"]["max_seconds"] == 2.0 and gate["wall_seconds"] > 0  # measured, not hand-written
    assert gate["tools_image"].startswith("registry.invalid/pitlane/tools@sha256:")
    assert (
        subprocess.run(
            [*PITLANE, "model", "verify", model, "--key", str(world["pub"])], capture_output=True
        ).returncode
        == 0
    )
    # a GitOps commit on release/v1.0.0 in the remote pins the SIGNED model, nothing else
    branch = git(world["origin"], "rev-parse", "refs/heads/release/v1.0.0").strip()
    assert branch == tasks["gitops-bump"]["results"]["commit"] == doc["results"]["gitops-commit"]
    changed = git(world["origin"], "diff", "--name-only", "main", "release/v1.0.0").split()
    assert changed and all(p.startswith("argocd/") for p in changed)
    assert model.split("@")[1] in git(world["origin"], "diff", "main", "release/v1.0.0")
    (pull,) = world["github"].pulls(GH_REPO)
    assert pull["head"]["ref"] == "release/v1.0.0" and pull["html_url"] == doc["results"]["pull-request"]
    (release,) = [r for r in world["github"].releases(GH_REPO) if r["tag_name"] == "v1.0.0"]
    assert not release["draft"] and release["name"] == "v1.0.0"
    assert "model-only release" in release["body"] and "laps_completed" in release["body"]
    assert TOKEN not in proc.stdout + proc.stderr
    assert "release key passphrase" not in proc.stdout + proc.stderr


def test_same_tag_twice_is_idempotent(world):
    ref = oci.Reference.parse(world["v1_model"])
    assert ref.digest is not None
    client = oci.Client.for_ref(ref)
    sig_tag, att_tag = signing.suffix_tag(ref.digest, "sig"), signing.suffix_tag(ref.digest, "att")
    before = {
        t: client.get_manifest(ref.repository, t, (oci.OCI_MANIFEST,)).json() for t in (sig_tag, att_tag)
    }
    branch = git(world["origin"], "rev-parse", "refs/heads/release/v1.0.0")
    proc = run_local(world, "v1.0.0")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr
    assert len([r for r in world["github"].releases(GH_REPO) if r["tag_name"] == "v1.0.0"]) == 1
    assert len(world["github"].pulls(GH_REPO)) == 1
    assert "is already signed by this key" in proc.stdout and "already attested" in proc.stdout
    assert outcome(world, "v1.0.0")["results"]["serial"] == "1"  # the claim on the remote stands
    after = {
        t: client.get_manifest(ref.repository, t, (oci.OCI_MANIFEST,)).json() for t in (sig_tag, att_tag)
    }
    assert after == before  # no second signature or attestation layer
    assert "release/v1.0.0 already pins these digests" in proc.stdout
    assert git(world["origin"], "rev-parse", "refs/heads/release/v1.0.0") == branch


def test_candidate_failing_the_gate_ships_nothing(world):
    """The candidate was pushed with a hand-written passing gate.json: the pipeline's own gate fails it, so
    nothing is signed (the bundle's gate.json is never what the release attests)."""
    model = world["push_model"]("b")
    prepare(world, "v1.0.1", model, policy="gate-strict.yaml")
    proc = run_local(world, "v1.0.1")
    assert proc.returncode == 2
    assert "task gate-model failed" in proc.stderr
    tasks = outcome(world, "v1.0.1")["by_name"]
    for name in ("sign-model", "build-sim", "build-car", "sign-images", "gitops-bump"):
        assert tasks[name]["status"] == "Skipped", name
    assert tasks["github-release"]["status"] == "Succeeded"
    assert not signed(world, model)
    assert "release/v1.0.1" not in git(world["origin"], "branch", "--list")
    (release,) = [r for r in world["github"].releases(GH_REPO) if r["tag_name"] == "v1.0.1"]
    assert release["draft"] and "failed the gate" in release["name"]
    assert "laps_completed" in release["body"] and "FAIL" in release["body"].upper()


def test_github_failing_mid_run_is_retried_then_named(world):
    model = world["push_model"]("c")
    prepare(world, "v1.0.2", model)
    world["github"].fail_next(200, 503)  # GitHub down for the whole run
    proc = run_local(world, "v1.0.2")
    world["github"].state.failures.clear()
    assert proc.returncode == 2
    assert "task gitops-bump failed" in proc.stderr
    tasks = outcome(world, "v1.0.2")["by_name"]
    assert tasks["gitops-bump"]["attempts"] == 3  # retries: 2
    assert (
        "gave up after retries (too many 503 error responses)"
        in (
            world["root"] / "runs" / "v1.0.2" / "taskruns" / "gitops-bump-3" / "step-bump-push-pr.log"
        ).read_text()
    )
    assert tasks["github-release"]["status"] == "Failed"


def test_bad_tags(world):
    proc = run_local(world, "1.0.0")
    assert proc.returncode == 2 and "not semantic versioning" in proc.stderr
    git(world["work"], "tag", "-a", "v2.0.0", "-m", "no release.yaml for this one", "v0.9.0")
    git(world["work"], "push", "-q", "origin", "v2.0.0")
    proc = run_local(world, "v2.0.0")
    assert proc.returncode == 2 and "task fetch-source failed" in proc.stderr
    assert "no release.yaml at v2.0.0" in proc.stdout
    proc = run_local(world, "v3.0.0")
    assert proc.returncode == 2 and "no tag v3.0.0" in proc.stdout


IMAGE_TOOLS = ("buildah", "skopeo", "mmdebstrap", "qemu-aarch64-static")


@pytest.mark.skipif(
    not all(shutil.which(t) for t in IMAGE_TOOLS) or os.geteuid() != 0,
    reason=f"builds both images: needs root and {', '.join(IMAGE_TOOLS)} (README: Container images)",
)
@pytest.mark.skipif(os.environ.get("PITLANE_IMAGE_TESTS") == "0", reason="PITLANE_IMAGE_TESTS=0")
def test_full_release_builds_signs_and_pins_both_images(world):
    """A code change since the last release: both images built, pushed, signed, attested, smoke-tested and
    pinned beside the model in one GitOps commit.

    The build cache is the clone's out/images, which tests/images fills first in a whole run (bases and
    dependency layers reused; the final stages rebuild for the new commit). bench/bench_release.py --full
    times a cold one."""
    work = world["work"]
    (work / "pitlane" / "release" / "CHANGED").write_text("a code change\n")
    git(work, "add", "-A")
    git(work, "commit", "-qm", "a code change")
    model = world["push_model"]("a")
    prepare(world, "v1.1.0", model)
    cache = ROOT / "out" / "images"
    proc = run_local(world, "v1.1.0", "-w", f"build-cache={cache}")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr
    doc = outcome(world, "v1.1.0")
    tasks = doc["by_name"]
    assert all(t["status"] == "Succeeded" for t in tasks.values()), {n: t["status"] for n, t in tasks.items()}
    diff = git(world["origin"], "diff", "main", "release/v1.1.0")
    image_key = signing.load_public_key(world["image_pub"])
    for target in ("sim", "car"):
        results = tasks[f"build-{target}"]["results"]
        ref = results["IMAGE_URL"].rsplit(":", 1)[0] + "@" + results["IMAGE_DIGEST"]
        assert tasks["sign-images"]["results"][target] == ref
        r = oci.Reference.parse(ref)
        signing.verify(oci.Client.for_ref(r), r, image_key)  # the IMAGE key signed it, not the model key
        assert results["IMAGE_DIGEST"] in diff
    released = doc["results"]["model"]  # the candidate, re-pushed when its serial is not the one assigned
    assert released.split("@")[1] in diff
    (release,) = [r for r in world["github"].releases(GH_REPO) if r["tag_name"] == "v1.1.0"]
    assert "Image sim:" in release["body"] and "Image car:" in release["body"] and not release["draft"]
