"""`pitlane deploy ...`: pin, render, diff and check the GitOps manifests in argocd/."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pitlane.deploy.check import check
from pitlane.deploy.diff import diff_releases, format_changes
from pitlane.deploy.pins import IMAGE_NAMES, pin, read_pins
from pitlane.deploy.render import find_argocd, render
from pitlane.errors import UserError


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    deploy = subparsers.add_parser(
        "deploy",
        help="GitOps manifests (argocd/): pin a release, render a target, diff two releases, check them",
        description="The manifests Argo CD syncs to the NUC (twin + simulated car) and the Pi cars: "
        "argocd/fleet/ lists the targets, argocd/overlays/ (nuc-sim, pi-car) the objects, argocd/pins/ "
        "and argocd/base/ the image and model pins.",
    )
    sub = deploy.add_subparsers(dest="deploy_command", metavar="COMMAND", required=True)
    root_help = "repository root (or its argocd/ folder); default: the current folder"

    p = sub.add_parser(
        "pin",
        help="pin image digests and the model reference (the release's GitOps bump)",
        description="Rewrite the pins in argocd/, one line per changed value. Only REPO@sha256:<64 hex> "
        "is accepted: a tag (even a version tag) is refused. Nothing is written when any argument is bad.",
    )
    p.add_argument(
        "--image",
        action="append",
        default=[],
        metavar="NAME=REPO@sha256:HEX",
        help=f"an image pin; NAME is one of {', '.join(IMAGE_NAMES)} (repeatable)",
    )
    p.add_argument("--model", metavar="REPO@sha256:HEX", help="the model bundle the cars must run")
    p.add_argument("--key", type=Path, metavar="FILE", help="the release's cosign public key (PEM, P-256)")
    p.add_argument("--root", type=Path, default=Path("."), help=root_help)
    p.set_defaults(func=_pin)

    p = sub.add_parser(
        "render",
        help="print the manifests of a fleet target or an overlay (kubectl kustomize)",
        description="Render TARGET as Argo CD would: a fleet name from argocd/fleet/ (its Application's "
        "kustomize options applied) or an overlay name (nuc-sim, pi-car).",
    )
    p.add_argument(
        "target", metavar="TARGET", help="fleet target (e.g. nuc, car-1) or overlay (nuc-sim, pi-car)"
    )
    p.add_argument("--root", type=Path, default=Path("."), help=root_help)
    p.set_defaults(func=_render)

    p = sub.add_parser(
        "diff",
        help="which objects and lines a release changes on the clusters",
        description="Render every fleet target of RELEASE_A and RELEASE_B (git refs of the repository at "
        "--root, or folders holding argocd/) and print the objects and YAML lines that differ.",
    )
    p.add_argument("release_a", metavar="RELEASE_A", help="git ref or folder (the old release)")
    p.add_argument("release_b", metavar="RELEASE_B", help="git ref or folder (the new release)")
    p.add_argument("--root", type=Path, default=Path("."), help="git repository for refs (default: .)")
    p.set_defaults(func=_diff)

    p = sub.add_parser(
        "check",
        help="validate fleet files, Argo CD objects and every render offline",
        description="Fleet files, pins, the AppProject and ApplicationSet, every overlay and every fleet "
        "target's Application and objects: schemas (Kubernetes, Argo CD, policy-controller; unknown "
        "fields fail), digest pins, resource limits, security contexts. Exit 1 when anything is wrong.",
    )
    p.add_argument("--root", type=Path, default=Path("."), help=root_help)
    p.add_argument(
        "--released",
        action="store_true",
        help="also fail while any pin is still a registry.invalid placeholder",
    )
    p.set_defaults(func=_check)


def _pin(args: argparse.Namespace) -> int:
    images = {}
    for item in args.image:
        name, sep, ref = item.partition("=")
        if not sep:
            raise UserError(f"--image {item!r}: expected NAME=REPO@sha256:HEX")
        images[name] = ref
    if not images and args.model is None and args.key is None:
        raise UserError("nothing to pin: give --image NAME=REF, --model REF or --key FILE")
    argocd = find_argocd(args.root)
    changes = pin(argocd, images=images, model=args.model, key=args.key)
    for line in changes or ["nothing changed: the pins already hold these references"]:
        print(line)
    return 0


def _render(args: argparse.Namespace) -> int:
    sys.stdout.write(render(find_argocd(args.root), args.target).text)
    return 0


def _diff(args: argparse.Namespace) -> int:
    changes = diff_releases(args.release_a, args.release_b, args.root, progress=_progress)
    print(format_changes(changes))
    return 0


def _check(args: argparse.Namespace) -> int:
    argocd = find_argocd(args.root)
    problems = check(argocd, released=args.released, progress=_progress)
    for problem in problems:
        print(problem)
    pins = read_pins(argocd)
    status = "FAIL" if problems else "ok"
    print(
        f"{status}: {len(problems)} problem(s); model {pins.model}; images "
        + ", ".join(f"{k} {v}" for k, v in sorted(pins.images.items()))
    )
    return 1 if problems else 0


def _progress(message: str) -> None:
    print(f"  {message}", file=sys.stderr)
