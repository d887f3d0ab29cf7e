"""`pitlane release ...`: the release manager's commands (prepare, start, status, run --local) and the
small steps the pipeline's Tasks call (plan, policy, sign, attest, pull-request, publish)."""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
from pathlib import Path

import yaml

from pitlane.artifacts import oci
from pitlane.errors import SignatureError, UserError
from pitlane.release import config as rconfig
from pitlane.release import notes, tekton
from pitlane.release.changes import check_on_branch, git, since_last_release
from pitlane.release.policy import effective_policy, floor

DEFAULT_SECRETS = Path(os.environ.get("PITLANE_SECRETS", Path.home() / ".config" / "pitlane" / "secrets"))


def _pairs(items: list[str] | None, flag: str) -> dict[str, str]:
    out = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UserError(f"{flag} {item!r}: expected NAME=VALUE")
        out[key] = value
    return out


def _github_repo_from(url: str) -> str | None:
    m = re.search(r"github\.com[:/]([^/]+/[^/]+?)(?:\.git)?/?$", url)
    return m.group(1) if m else None


def _origin(root: Path) -> str:
    try:
        return git(root, "remote", "get-url", "origin").strip()
    except UserError:
        raise UserError("no git remote 'origin': pass --repo-url") from None


def _tt_params(args: argparse.Namespace) -> dict[str, str]:
    rconfig.check_tag(args.tag)
    url = args.repo_url or _origin(Path.cwd())
    gh = args.github_repo or _github_repo_from(url)
    if not gh:
        raise UserError(f"cannot tell the GitHub repository from {url}: pass --github-repo OWNER/NAME")
    return {"revision": args.tag, "repo-url": url, "github-repo": gh}


# --- release manager ----------------------------------------------------------------------------------
def _prepare(args: argparse.Namespace) -> int:
    from pitlane.release.prepare import prepare, summary

    done = prepare(Path.cwd(), args.version, args.model, args.policy, tag=not args.no_tag)
    print(summary(done.config, done.changes))
    if not done.created:
        print(f"{args.version} is already tagged with this model at {done.commit[:12]}: nothing to do")
    elif args.no_tag:
        print(f"committed release.yaml at {done.commit[:12]} (not tagged)")
    else:
        print(
            f"tagged {args.version} at {done.commit[:12]}; push it to release: git push origin HEAD {args.version}"
        )
    return 0


def _run_local(args: argparse.Namespace) -> int:
    from pitlane.release.local import LocalRun, Secrets

    objects = tekton.load(Path(args.pipelines))
    run = tekton.pipelinerun(objects, _tt_params(args))
    params = {p["name"]: str(p["value"]) for p in run["spec"].get("params", [])}
    params.update(_pairs(args.param, "-p"))
    workspaces = {w["name"]: w for w in run["spec"].get("workspaces", [])}
    for name, path in _pairs(args.workspace, "--workspace").items():
        workspaces[name] = {"name": name, "folder": str(Path(path).resolve())}
    folder = Path(args.out) / args.tag
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    secrets = Secrets(Path(args.secrets) if args.secrets else None)
    runner = LocalRun(objects, run["spec"]["pipelineRef"]["name"], params, workspaces, folder, secrets,
                      name=f"pitlane-release-{args.tag}-local")  # fmt: skip
    outcome = runner.run()
    print(f"{'task':<14} {'status':<10} {'seconds':>8}  reason")
    for t in outcome.tasks:
        print(f"{t.name:<14} {t.status:<10} {t.seconds:8.1f}  {t.reason}")
    (folder / "outcome.json").write_text(
        json.dumps(
            {"status": outcome.status, "results": outcome.results, "tasks": [vars(t) for t in outcome.tasks]},
            indent=2,
        )
        + "\n"  # fmt: skip
    )
    failed = outcome.failed
    if failed is not None:
        raise UserError(
            f"release {args.tag}: task {failed.name} failed ({failed.reason}) after {failed.attempts} attempt(s); "
            f"logs in {folder}/taskruns/"
        )
    return 0


def _cluster(args: argparse.Namespace):
    from pitlane.release.cluster import ClusterConfig, api

    cfg = ClusterConfig(
        namespace=args.namespace, kubeconfig=args.kubeconfig, context=args.context, poll_s=args.poll
    )
    return cfg, api(cfg)


def _start(args: argparse.Namespace) -> int:
    from pitlane.release.cluster import Follower, start

    run = tekton.pipelinerun(tekton.load(Path(args.pipelines)), _tt_params(args))
    cfg, client = _cluster(args)
    name = start(client, cfg, run)
    print(f"started PipelineRun {name} in {cfg.namespace}")
    if args.follow:
        status, _, _ = Follower(client, cfg).follow(name)
        return 0 if status == "True" else 1
    return 0


def _status(args: argparse.Namespace) -> int:
    from pitlane.release.cluster import Follower, latest

    cfg, client = _cluster(args)
    name = args.name or latest(client, cfg, args.tag)
    follower = Follower(client, cfg)
    if args.follow:
        status, _, _ = follower.follow(name)
    else:
        status, reason, message = follower.poll(name, logs=False)
        print(f"[pipelinerun] {name} {reason or 'Pending'}" + (f": {message}" if message else ""))
    return {"True": 0, "False": 1}.get(status, 3)


# --- pipeline steps -------------------------------------------------------------------------------
def _plan(args: argparse.Namespace) -> int:
    root = Path.cwd()
    if args.on:
        check_on_branch(root, args.tag, args.on)
    cfg = rconfig.load(root, args.tag)
    gate = effective_policy(floor(), cfg.gate)
    changes = since_last_release(root, args.tag)
    plan = {
        "version": cfg.version,
        "model": cfg.model,
        "previous_tag": changes.previous or "",
        "code_changed": changes.code_changed,
        "paths": list(changes.paths),
        "commits": list(changes.commits),
        "images": cfg.images,
        "targets": list(cfg.targets),
    }
    values = {
        "version": cfg.version,
        "model": cfg.model,
        "previous-tag": changes.previous or "",
        "code-changed": "true" if changes.code_changed else "false",
        "sim-image": cfg.images["sim"],
        "car-image": cfg.images["car"],
        "gate-policy": json.dumps(gate.to_json(), sort_keys=True, separators=(",", ":")),
    }
    for name, path in _pairs(args.result, "--result").items():
        if name not in values:
            raise UserError(f"--result {name}: known results are {', '.join(values)}")
        Path(path).write_text(values[name])
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(plan, indent=2) + "\n")
    print(f"release {cfg.version}: model {cfg.model}")
    print(f"since {changes.previous or 'the first release'}: {len(changes.commits)} commit(s); "
          f"images {'rebuilt' if changes.code_changed else 'unchanged (model-only)'}")  # fmt: skip
    return 0


def _policy(args: argparse.Namespace) -> int:
    cfg = rconfig.load(Path.cwd())
    gate = effective_policy(floor(), cfg.gate)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(yaml.safe_dump(gate.to_json(), sort_keys=False))
    print(f"gate policy: scenes {', '.join(gate.scenes)}, {gate.laps} lap(s) -> {args.out}")
    return 0


def _sign(args: argparse.Namespace) -> int:
    from pitlane.release.sign import sign_once

    tag, now = sign_once(args.ref, Path(args.key))
    print(f"{'signed' if now else 'already signed by this key'}: {tag}")
    return 0


def _attest(args: argparse.Namespace) -> int:
    from pitlane.release.sign import attest_once

    tag, now = attest_once(args.ref, Path(args.key), Path(args.predicate), args.type)
    print(f"{'attested' if now else 'already attested'} {args.type}: {tag}")
    return 0


def _sign_model(args: argparse.Namespace) -> int:
    from pitlane.release.serial import Release
    from pitlane.release.sign import read_gate_report, sign_model

    report = read_gate_report(Path(args.gate_report), args.gate_report_digest)
    release = Release(args.version, args.ref, args.commit)
    done = sign_model(args.ref, Path(args.key), report, args.policy, args.remote, release, args.tools_image)
    word = "signed" if done.signed_now else "is already signed by this key:"
    print(f"{args.ref} {word} release serial {done.serial} as {done.ref}")
    print(f"{'attested' if done.attested_now else 'already attested'} the gate run: {done.attestation}")
    for name, value in (("model", str(done.ref)), ("serial", str(done.serial))):
        path = _pairs(args.result, "--result").get(name)
        if path:
            Path(path).write_text(value)
    return 0


def _sign_image(args: argparse.Namespace) -> int:
    from pitlane.artifacts import attest, signing
    from pitlane.release.sign import SLSA_PROVENANCE, image_provenance, pushed_image, sign_once

    if not args.url and not args.digest:
        print(f"no {args.target} image was built by this release: nothing to sign")
        return 0
    ref = pushed_image(args.url, args.digest)
    tag, now = sign_once(str(ref), Path(args.key))
    print(f"{'signed' if now else 'already signed by this key'}: {tag}")
    if args.provenance:
        try:
            build = json.loads(Path(args.provenance).read_text())
        except (OSError, ValueError) as exc:
            raise UserError(f"the build's provenance {args.provenance} is not readable JSON: {exc}") from None
        key = signing.load_private_key(Path(args.key))
        client = oci.Client.for_ref(ref)
        try:
            attest.verify_attestation(client, ref, key.public_key(), SLSA_PROVENANCE)
            print(f"already attested {SLSA_PROVENANCE}")
        except SignatureError:
            predicate = image_provenance(build, ref, args.commit)
            print(f"attested {attest.attest(client, ref, key, SLSA_PROVENANCE, predicate)}")
    if args.ref_file:
        Path(args.ref_file).parent.mkdir(parents=True, exist_ok=True)
        Path(args.ref_file).write_text(str(ref))
    return 0


def _pin_tools(args: argparse.Namespace) -> int:
    from pitlane.release import tools_pin

    changed = tools_pin.pin(Path(args.root), args.ref)
    print(f"{'pinned' if changed else 'already pins'} the tools image {args.ref} in {tools_pin.PIPELINE}")
    return 0


def _github(args: argparse.Namespace):
    from pitlane.release.github import GitHubConfig

    return GitHubConfig(repo=args.github_repo, token=os.environ.get("GITHUB_TOKEN", ""), api=args.github_api)


def _pull_request(args: argparse.Namespace) -> int:
    from pitlane.release.github import open_pull_request

    workspace = Path(args.workspace)
    url, created = open_pull_request(
        _github(args), args.head, args.base, notes.pull_request_text(args.tag, workspace)
    )
    (workspace / notes.PULL_REQUEST).parent.mkdir(parents=True, exist_ok=True)
    (workspace / notes.PULL_REQUEST).write_text(url + "\n")
    if args.url_file:
        Path(args.url_file).write_text(url)
    print(f"{'opened' if created else 'updated'} pull request {url}")
    return 0


def _publish(args: argparse.Namespace) -> int:
    from pitlane.release.github import publish_release

    if not rconfig.SEMVER.fullmatch(args.tag):
        print(f"no GitHub release for {args.tag!r}: not a vMAJOR.MINOR.PATCH tag")
        return 0
    statuses = notes.parse_statuses(args.tasks)
    text = notes.release_text(args.tag, args.status, statuses, Path(args.workspace))
    url, created = publish_release(_github(args), args.tag, text)
    print(
        f"{'created' if created else 'updated'} {'draft ' if text.draft else ''}release {text.title}: {url}"
    )
    return 0


# --- parser -------------------------------------------------------------------------------------------
def add_commands(sub: argparse._SubParsersAction) -> None:
    r = sub.add_parser(
        "release",
        help="release a tagged version: prepare the tag, run the Tekton pipeline (cluster or --local)",
        description="A tag vX.Y.Z releases what release.yaml pins: `prepare` writes it, commits and tags; "
        "a tag push starts the Tekton pipeline pitlane-release (pipelines/); `start`/`status` drive it "
        "through the Kubernetes API; `run --local` runs the same Tasks on this machine.",
    )
    rs = r.add_subparsers(dest="release_command", metavar="COMMAND", required=True)
    common, cluster, gh = _common_options(), _cluster_options(), _github_options()
    _add_prepare(rs)
    _add_run(rs, common)
    _add_start(rs, common, cluster)
    _add_status(rs, cluster)
    _add_plan(rs)
    _add_policy(rs)
    _add_sign(rs)
    _add_attest(rs)
    _add_sign_model(rs)
    _add_sign_image(rs)
    p = rs.add_parser("pin-tools", help="(pipeline step) pin the tools image the next release runs in")
    p.add_argument("ref", metavar="REPO@sha256:...", help="the signed tools image, by digest")
    p.add_argument("--root", default=".", metavar="DIR", help="repository root (default: here)")
    p.set_defaults(func=_pin_tools)
    _add_pull_request(rs, gh)
    _add_publish(rs, gh)


def _common_options() -> argparse.ArgumentParser:
    """Where the pipeline and the repository are (run, start)."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--pipelines", default="pipelines", metavar="DIR", help="Tekton YAML (default: pipelines)"
    )
    common.add_argument("--repo-url", metavar="URL", help="git URL the pipeline clones (default: origin)")
    common.add_argument("--github-repo", metavar="OWNER/NAME", help="default: from the origin URL")
    return common


def _cluster_options() -> argparse.ArgumentParser:
    """Which cluster and namespace (start, status)."""
    cluster = argparse.ArgumentParser(add_help=False)
    cluster.add_argument("--namespace", default="pitlane-release", help="namespace of the PipelineRuns")
    cluster.add_argument("--kubeconfig", metavar="FILE", help="kubeconfig (default: kubectl's)")
    cluster.add_argument("--context", help="kubeconfig context (default: the current one)")
    cluster.add_argument("--poll", type=float, default=2.0, metavar="SECONDS", help="status poll interval")
    return cluster


def _github_options() -> argparse.ArgumentParser:
    """The tag and the GitHub repository (pull-request, publish)."""
    gh = argparse.ArgumentParser(add_help=False)
    gh.add_argument("tag", metavar="vX.Y.Z", help="the release tag")
    gh.add_argument("--github-repo", required=True, metavar="OWNER/NAME", help="the GitHub repository")
    gh.add_argument(
        "--github-api", default="https://api.github.com", metavar="URL", help="GitHub API base URL"
    )
    gh.add_argument("--workspace", default=".", metavar="DIR", help="the pipeline's source workspace")
    return gh


def _add_prepare(rs: argparse._SubParsersAction) -> None:
    p = rs.add_parser("prepare", help="pin a model in release.yaml, show the changes, commit and tag",
                      description="Write release.yaml (model pinned by digest), print what will ship and what "
                      "changed since the last release tag, commit release.yaml and create the annotated tag. "
                      "Running it again for the same tag and model does nothing.")  # fmt: skip
    p.add_argument("version", metavar="vX.Y.Z", help="the release tag to create")
    p.add_argument("--model", required=True, metavar="REF", help="candidate model, REGISTRY/REPO@sha256:...")
    p.add_argument("--policy", metavar="POLICY", help="gate policy: 'default' or a file in the repository")
    p.add_argument("--no-tag", action="store_true", help="commit release.yaml but do not tag")
    p.set_defaults(func=_prepare)


def _add_run(rs: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = rs.add_parser("run", parents=[common], help="run the release pipeline's Tasks on this machine",
                      description="Run the Pipeline pitlane-release from pipelines/*.yaml without a cluster: the "
                      "TriggerTemplate's PipelineRun, step scripts with params substituted, results through "
                      "files, workspaces as folders under --out, Secrets from --secrets DIR/<secret>/<key>. "
                      "Steps run with this machine's tools (no pods, images or sidecars).")  # fmt: skip
    p.add_argument("tag", metavar="vX.Y.Z", help="the release tag")
    p.add_argument("--local", action="store_true", required=True, help="run here (the only mode)")
    p.add_argument("-p", "--param", action="append", metavar="NAME=VALUE", help="override a Pipeline param")
    p.add_argument("-w", "--workspace", action="append", metavar="NAME=DIR",
                   help="bind a workspace to a folder, e.g. build-cache=out/images (kept between runs)")  # fmt: skip
    p.add_argument("--secrets", default=str(DEFAULT_SECRETS), metavar="DIR",
                   help="folder of Secrets, one sub-folder per Secret, one file per key (default: %(default)s)")  # fmt: skip
    p.add_argument(
        "--out", default="out/release", metavar="DIR", help="workspaces and logs (default: out/release)"
    )
    p.set_defaults(func=_run_local)


def _add_start(
    rs: argparse._SubParsersAction, common: argparse.ArgumentParser, cluster: argparse.ArgumentParser
) -> None:
    p = rs.add_parser("start", parents=[common, cluster], help="create the release PipelineRun in a cluster",
                      description="Create the PipelineRun the TriggerTemplate would create for a tag push.")  # fmt: skip
    p.add_argument("tag", metavar="vX.Y.Z", help="the release tag")
    p.add_argument("-f", "--follow", action="store_true", help="follow it like `tkn pipelinerun logs -f`")
    p.set_defaults(func=_start)


def _add_status(rs: argparse._SubParsersAction, cluster: argparse.ArgumentParser) -> None:
    p = rs.add_parser("status", parents=[cluster], help="show or follow a release PipelineRun",
                      description="The newest PipelineRun of TAG (or of any release), TaskRun by TaskRun. "
                      "Exit 0 succeeded, 1 failed, 3 still running.")  # fmt: skip
    p.add_argument("tag", nargs="?", metavar="vX.Y.Z", help="the release tag (default: any release)")
    p.add_argument("--name", help="a PipelineRun by name")
    p.add_argument("-f", "--follow", action="store_true", help="print step logs until it ends")
    p.set_defaults(func=_status)


def _add_plan(rs: argparse._SubParsersAction) -> None:
    p = rs.add_parser("plan", help="(pipeline step) check the tag and release.yaml, decide what to rebuild")
    p.add_argument("tag", metavar="vX.Y.Z", help="the release tag")
    p.add_argument("--json", metavar="FILE", help="write the plan here")
    p.add_argument(
        "--on", metavar="BRANCH", help="refuse a tag whose commit is not on BRANCH (e.g. origin/main)"
    )
    p.add_argument(
        "--result", action="append", metavar="NAME=PATH", help="write one value to a Tekton result file"
    )
    p.set_defaults(func=_plan)


def _add_policy(rs: argparse._SubParsersAction) -> None:
    p = rs.add_parser("policy", help="(pipeline step) write release.yaml's gate policy to a file")
    p.add_argument("--out", required=True, metavar="FILE", help="file to write")
    p.set_defaults(func=_policy)


def _add_sign(rs: argparse._SubParsersAction) -> None:
    p = rs.add_parser("sign", help="(pipeline step) sign an image by digest, cosign format, once")
    p.add_argument("ref", metavar="REPO@sha256:...", help="the image, by digest")
    p.add_argument(
        "--key", required=True, metavar="FILE", help="private key PEM (passphrase in $PITLANE_KEY_PASSWORD)"
    )
    p.set_defaults(func=_sign)


def _add_attest(rs: argparse._SubParsersAction) -> None:
    p = rs.add_parser("attest", help="(pipeline step) attach a signed in-toto attestation, once")
    p.add_argument("ref", metavar="REPO@sha256:...", help="the image, by digest")
    p.add_argument("--predicate", required=True, metavar="FILE", help="the predicate (JSON)")
    p.add_argument("--type", required=True, help="release-gate, slsa-provenance or a predicate type URI")
    p.add_argument(
        "--key", required=True, metavar="FILE", help="private key PEM (passphrase in $PITLANE_KEY_PASSWORD)"
    )
    p.set_defaults(func=_attest)


def _add_sign_model(rs: argparse._SubParsersAction) -> None:
    p = rs.add_parser("sign-model", help="(pipeline step) sign the gated candidate as the next release serial",
                      description="Check the gate report against the gate Task's digest and the release's "
                      "policy (and the pipeline's minimum), claim the next release serial on the git remote, "
                      "sign the candidate (re-pushed with that serial when its config says another) and attest "
                      "the gate run. Running it again for the same tag signs nothing twice.")  # fmt: skip
    p.add_argument("ref", metavar="REPO@sha256:...", help="the candidate, by digest")
    p.add_argument(
        "--key", required=True, metavar="FILE", help="the MODEL signing key ($PITLANE_KEY_PASSWORD)"
    )
    p.add_argument("--gate-report", required=True, metavar="FILE", help="gate.json of the gate Task's run")
    p.add_argument("--gate-report-digest", required=True, metavar="sha256:...", help="the gate Task's result")
    p.add_argument("--policy", required=True, metavar="JSON", help="the release's effective gate policy")
    p.add_argument("--remote", required=True, metavar="URL", help="git remote holding the serial claims")
    p.add_argument("--version", required=True, metavar="vX.Y.Z", help="the release tag")
    p.add_argument("--commit", required=True, help="the commit the tag names")
    p.add_argument("--tools-image", default="", metavar="REF", help="the image this step runs in")
    p.add_argument("--result", action="append", metavar="NAME=PATH", help="model= or serial= result files")
    p.set_defaults(func=_sign_model)


def _add_sign_image(rs: argparse._SubParsersAction) -> None:
    p = rs.add_parser("sign-image", help="(pipeline step) sign a built image, once it is in the registry")
    p.add_argument("target", help="sim, car or tools")
    p.add_argument(
        "--url", default="", metavar="REPO:TAG", help="the build Task's IMAGE_URL ('': none built)"
    )
    p.add_argument("--digest", default="", metavar="sha256:...", help="the build Task's IMAGE_DIGEST")
    p.add_argument(
        "--key", required=True, metavar="FILE", help="the IMAGE signing key ($PITLANE_KEY_PASSWORD)"
    )
    p.add_argument("--ref-file", metavar="FILE", help="write REPO@sha256:... here when signed")
    p.add_argument("--provenance", metavar="FILE", help="the build's SLSA provenance: attested, its subject "
                   "and commit set from --commit and the registry")  # fmt: skip
    p.add_argument("--commit", default="", help="the commit the release tag names (fetch-source's result)")
    p.set_defaults(func=_sign_image)


def _add_pull_request(rs: argparse._SubParsersAction, gh: argparse.ArgumentParser) -> None:
    p = rs.add_parser(
        "pull-request", parents=[gh], help="(pipeline step) open or update the GitOps pull request"
    )
    p.add_argument("--head", required=True, metavar="BRANCH", help="branch holding the GitOps bump")
    p.add_argument("--base", default="main", metavar="BRANCH", help="branch to merge into")
    p.add_argument("--url-file", metavar="FILE", help="write the pull request's URL here")
    p.set_defaults(func=_pull_request)


def _add_publish(rs: argparse._SubParsersAction, gh: argparse.ArgumentParser) -> None:
    p = rs.add_parser("publish", parents=[gh], help="(pipeline step) create or update the GitHub release")
    p.add_argument("--status", required=True, help="$(tasks.status): Succeeded, Completed or Failed")
    p.add_argument("--tasks", default="", help="TASK=STATUS pairs")
    p.set_defaults(func=_publish)
