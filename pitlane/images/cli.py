"""`pitlane images build|smoke`: the sim and car images, built here with no daemon and no base pull."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from pathlib import Path

from pitlane.artifacts import attest, oci, signing
from pitlane.errors import UserError
from pitlane.images.attest import PREDICATE_TYPE, file_sha256, slsa_predicate
from pitlane.images.build import build_all, git_revision
from pitlane.images.plan import DEFAULT_IMAGES, IMAGES, BuildConfig, default_cafile
from pitlane.images.push import check_registry, push_by_digest, tag
from pitlane.images.smoke import smoke_car, smoke_sim
from pitlane.images.storage import open_store

REPO = Path(__file__).resolve().parents[2]


def _bases(pairs: list[str]) -> dict[str, str]:
    bases = {}
    for pair in pairs:
        arch, sep, ref = pair.partition("=")
        if not sep:  # a bare image is the base of every architecture (python:3.13-slim is multi-arch)
            arch, ref = "", pair
        if arch and arch not in {s.arch for s in IMAGES.values()}:
            raise UserError(f"--base {pair}: architecture {arch!r} is not amd64 or arm64")
        for a in [arch] if arch else ["amd64", "arm64"]:
            bases[a] = ref
    return bases


def _config(args: argparse.Namespace) -> BuildConfig:
    out = Path(args.out)
    return BuildConfig(
        repo=REPO,
        out=out.resolve(),
        images=tuple(args.only or DEFAULT_IMAGES),
        base=_bases(args.base or []),
        revision=git_revision(REPO),
        cafile=default_cafile(),
    )


def _build(args: argparse.Namespace) -> int:
    cfg = _config(args)
    if args.key and not args.registry:
        raise UserError("--key signs what is pushed: give --registry too")
    key = (
        signing.load_private_key(Path(args.key)) if args.key else None
    )  # a wrong password fails here, not later
    if args.registry:
        check_registry(args.registry)  # before a long build, not after it
    built = build_all(cfg)
    summary: dict = {"images": [asdict(b) for b in built]}
    if args.registry:
        store = open_store(cfg.out)
        pushed = [push_by_digest(store, b.name, args.registry, cfg.out) for b in built]
        lock = file_sha256(cfg.repo / "Pipfile.lock")
        for b, p in zip(built, pushed, strict=True):  # SLSA provenance beside each pushed image, to attest
            predicate = slsa_predicate(
                b.name, p.repository, p.digest, revision=cfg.revision, lock_sha256=lock, base=b.base,
                base_digest=b.base_digest, version=args.tag or "",
            )  # fmt: skip
            (cfg.out / f"provenance-{b.name}.json").write_text(json.dumps(predicate, indent=2) + "\n")
        for p in pushed:
            print(
                f"images: pushed {p.ref} ({p.compressed_bytes / 1e6:.1f} MB compressed, {p.sent_bytes} B sent)"
            )
        if key is not None:  # cosign's formats, the model's signing code: `cosign verify --key` reads them
            for p in pushed:
                ref = oci.Reference.parse(p.ref)
                client = oci.Client.for_ref(ref)
                predicate = json.loads((cfg.out / f"provenance-{p.name}.json").read_text())
                print(f"images: signed {signing.sign(client, ref, key)}")
                print(f"images: attested {attest.attest(client, ref, key, PREDICATE_TYPE, predicate)}")
        if args.tag:  # tags only once every image is in (and signed): a failed push leaves no tag behind
            for p in pushed:
                tag(p, args.tag, cfg.out)
        summary["pushed"] = [asdict(p) | {"ref": p.ref} for p in pushed]
    print(json.dumps(summary))
    return 0


def _smoke(args: argparse.Namespace) -> int:
    store = open_store(Path(args.out).resolve())
    names = args.only or list(DEFAULT_IMAGES)
    if "car" in names and not args.model:
        raise UserError(
            "the car image's smoke run infers with a model: give --model FILE.tflite or REPO@sha256:..."
        )
    results = {}
    if "sim" in names:
        results["sim"] = smoke_sim(store)["check"]
        print("images: sim passed `pitlane twin check`")
    if "car" in names:
        model = args.model if "@sha256:" in args.model else Path(args.model)
        key = Path(args.key) if args.key else None
        results["car"] = smoke_car(store, model, loops=args.loops, public_key=key)
        print(f"images: car ran {args.loops} loops under qemu: {json.dumps(results['car'])}")
    return 0


def add_commands(subparsers) -> None:
    images = subparsers.add_parser(
        "images",
        help="build and smoke-test the container images (sim: amd64 twin; car: arm64 Pi car)",
        description="Container images from Dockerfile.sim and Dockerfile.arm64, built with buildah (overlay storage "
        "where the kernel allows it, else vfs; PITLANE_STORAGE_DRIVER forces one; "
        "chroot isolation, no daemon) on Debian trixie bases made here with mmdebstrap (no pull).",
    )
    sub = images.add_subparsers(dest="images_command", metavar="COMMAND", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--only", action="append", choices=sorted(IMAGES), help="this image only (repeatable)"
    )
    common.add_argument("--out", default=str(REPO / "out" / "images"), metavar="DIR",
                        help="root filesystems, buildah's storage and logs (default out/images in the clone)")  # fmt: skip
    p = sub.add_parser(
        "build",
        parents=[common],
        help="build the images (base root filesystems first, once), optionally push them by digest",
        description="Check that Pipfile.lock matches the Pipfile, export each image's Pipfile categories with "
        "hashes, make the Debian bases with mmdebstrap (cached in --out), register qemu-aarch64 with "
        "binfmt_misc for the arm64 RUN steps, then `buildah build` each Dockerfile. With --registry, push each "
        "image by digest, sign and attest it with --key, and only then tag them.",
    )
    p.add_argument("--base", action="append", metavar="[ARCH=]IMAGE",
                   help="use this base image (already in buildah's store) instead of the Debian one, e.g. "
                   "python:3.13-slim or arm64=python:3.13-slim")  # fmt: skip
    p.add_argument(
        "--registry", metavar="HOST:PORT", help="push to this registry (plain HTTP, e.g. 127.0.0.1:5000)"
    )
    p.add_argument("--tag", help="after every image is pushed, tag each with this (e.g. the version)")
    p.add_argument("--key", metavar="FILE.key",
                   help="sign each pushed image and attest its SLSA provenance with this cosign key (password "
                   f"from ${signing.PASSWORD_ENV}), before any tag is put")  # fmt: skip
    p.set_defaults(func=_build)
    p = sub.add_parser(
        "smoke",
        parents=[common],
        help="run the built images: the sim's twin passes `pitlane twin check`; the car infers and drives",
        description="sim: serve the twin from the image on a free port and run `pitlane twin check` against "
        "it. car: under qemu-user, import LiteRT and donkeycar, (pull and verify --model,) infer a frame and run the car "
        "app's pi profile for --loops loops with donkeycar's mock camera and drivetrain.",
    )
    p.add_argument("--model", metavar="FILE.tflite|REPO@sha256:...",
                   help="model the car image infers with (needed for car): a file, or a signed bundle in a registry "
                   "that the image's model manager pulls, verifies (--key) and health-checks")  # fmt: skip
    p.add_argument("--key", metavar="FILE.pub", help="the release public key a bundle must be signed with")
    p.add_argument("--loops", type=int, default=5, help="car app loops to run (default 5)")
    p.set_defaults(func=_smoke)
