"""Release wall time per task: `pitlane release run --local` from a tag, model-only and (with --full) a
code release that builds both images. Goals (issue 11): model-only <= 2 min, full <= 15 min cold.

Sets up a throwaway world: a real registry, a clone of this repository's tracked files pushed to a bare
git remote, a release key, the FAKE GitHub of tests/fakes. The candidate is `--model` (default: the
demo's, from `make demo`) with its gate report; the gate runs on `--policy` (default: pitlane's).
Usage: python bench/bench_release.py [--model PATH.tflite] [--policy FILE] [--full] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the FAKE GitHub lives with the tests
DEMO_MODEL = ROOT / "out/demo/recipe/model/pilot.tflite"
PITLANE = [sys.executable, "-m", "pitlane.cli"]
TOKEN = "bench-token"


def sh(cwd: Path, *argv: str) -> str:
    return subprocess.run(argv, cwd=cwd, check=True, capture_output=True, text=True).stdout


def release(world: dict, version: str, extra: list[str]) -> tuple[float, dict]:
    t0 = time.perf_counter()
    proc = subprocess.run(
        [*PITLANE, "release", "run", "--local", version, "--pipelines", str(ROOT / "pipelines"),
         "--repo-url", str(world["origin"]), "--github-repo", "pitlane/pitlane", "--secrets", str(world["secrets"]),
         "--out", str(world["root"] / "runs"), "-p", f"github-api={world['github'].url}",
         "-p", "pytest-args=-m \"not slow\" -x -q -p no:cacheprovider tests/release", *extra],
        cwd=world["work"], capture_output=True, text=True,
    )  # fmt: skip
    wall = time.perf_counter() - t0
    outcome = json.loads((world["root"] / "runs" / version / "outcome.json").read_text())
    if proc.returncode != 0:
        print(proc.stdout[-4000:] + proc.stderr, file=sys.stderr)
    return wall, outcome


def report(name: str, wall: float, outcome: dict, goal_s: float) -> None:
    print(f"== {name}: {outcome['status']}, {wall:.1f} s wall (goal <= {goal_s:.0f} s)")
    for t in outcome["tasks"]:
        print(f"  {t['name']:<14} {t['status']:<10} {t['seconds']:7.1f} s")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--model", type=Path, default=DEMO_MODEL, help="candidate .tflite (its gate report beside)"
    )
    ap.add_argument("--policy", default="default", help="gate policy file (default: pitlane's)")
    ap.add_argument("--full", action="store_true", help="also a code release: both images built (minutes)")
    ap.add_argument("--keep", type=Path, help="keep the world in this folder (default: a temporary one)")
    args = ap.parse_args()
    from fakes.fake_github import FakeGitHub

    from pitlane.artifacts import signing
    from pitlane.artifacts.registry import Registry, RegistryConfig
    from pitlane.release.policy import FLOOR_ENV

    root = Path(args.keep or tempfile.mkdtemp(prefix="bench-release-")).resolve()
    shutil.rmtree(root, ignore_errors=True)
    work, origin, secrets = root / "work", root / "origin.git", root / "secrets"
    for rel in filter(None, sh(ROOT, "git", "ls-files", "-z").split("\0")):
        if (ROOT / rel).is_file():
            (work / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / rel, work / rel)
    if args.policy != "default":
        shutil.copy(args.policy, work / "gate-policy.yaml")
        args.policy = str(work / "gate-policy.yaml")
    sh(root, "git", "init", "-q", "--bare", "-b", "main", str(origin))
    sh(work, "git", "init", "-q", "-b", "main")
    for cmd in (["config", "user.name", "bench"], ["config", "user.email", "bench@invalid"], ["add", "-A"],
                ["commit", "-qm", "pitlane"], ["tag", "-a", "v0.9.0", "-m", "earlier"],
                ["remote", "add", "origin", str(origin)], ["push", "-q", "origin", "main", "v0.9.0"]):  # fmt: skip
        sh(work, "git", *cmd)
    (secrets / "pitlane-github").mkdir(parents=True)
    os.environ[signing.PASSWORD_ENV] = "bench passphrase"
    (secrets / "pitlane-github" / "token").write_text(TOKEN)
    for kind in ("model", "image"):  # two keys: models and images are signed apart
        (secrets / f"pitlane-{kind}-signing-key").mkdir()
        (secrets / f"pitlane-{kind}-signing-key" / "password").write_text("bench passphrase")
        key, _ = signing.generate_keys(root / kind)
        shutil.copy(key, secrets / f"pitlane-{kind}-signing-key" / "cosign.key")
    gate: list[str] = []
    if not args.model.is_file():
        from model_support import make_tflite, write_gate_report

        print(
            f"no model at {args.model} (run `make demo`): an untrained tiny model on a 2 s gate that any model passes"
        )
        args.model = make_tflite(root / "tiny" / "pilot.tflite", 0)
        gate = ["--gate", str(write_gate_report(args.model, root / "tiny" / "gate.json"))]
        (work / "gate-policy.yaml").write_text(
            "scenes: [generated_track]\nlaps: 1\nmax_seconds: 2.0\nmin_laps_completed: 0\n"
            "max_abs_cte: null\nmax_off_track_events: null\nmin_mean_speed: null\nmax_nonfinite_outputs: 0\n"
        )
        args.policy = str(work / "gate-policy.yaml")
        # the pipeline's minimum would refuse this gate (pitlane/release/gate_floor.yaml): the bench's own floor
        shutil.copy(work / "gate-policy.yaml", root / "floor.yaml")
        os.environ[FLOOR_ENV] = str(root / "floor.yaml")
        sh(work, "git", "add", "-A")
        sh(work, "git", "commit", "-qm", "bench gate policy")
        sh(work, "git", "tag", "-f", "-a", "v0.9.0", "-m", "earlier")
        sh(work, "git", "push", "-q", "-f", "origin", "main", "v0.9.0")
    registry = Registry(RegistryConfig(storage=root / "registry")).start()
    github = FakeGitHub(token=TOKEN)
    world = {"root": root, "work": work, "origin": origin, "secrets": secrets, "github": github}
    try:
        pushed = sh(
            ROOT, *PITLANE, "model", "push", str(args.model), *gate, "--to", f"{registry.host}/pitlane/models"
        )
        model = pushed.strip().splitlines()[-1]
        policy = [] if args.policy == "default" else ["--policy", "gate-policy.yaml"]
        sh(work, *PITLANE, "release", "prepare", "v1.0.0", "--model", model, *policy)
        sh(work, "git", "push", "-q", "origin", "main", "v1.0.0")
        wall, outcome = release(world, "v1.0.0", [])
        report("model-only release v1.0.0", wall, outcome, 120)
        if args.full:
            (work / "pitlane" / "release" / "BENCH").write_text("a code change\n")
            sh(work, "git", "add", "-A")
            sh(work, "git", "commit", "-qm", "code change")
            sh(work, *PITLANE, "release", "prepare", "v1.1.0", "--model", model, *policy)
            sh(work, "git", "push", "-q", "origin", "main", "v1.1.0")
            wall, outcome = release(world, "v1.1.0", ["-w", f"build-cache={ROOT / 'out' / 'images'}"])
            report("full release v1.1.0 (images built; bases cached in out/images)", wall, outcome, 900)
    finally:
        github.stop()
        registry.stop()
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
