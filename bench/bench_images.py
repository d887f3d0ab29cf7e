"""Benchmark: the container images' compressed sizes, build times cold and warm, and the bytes a code-only
change to one module moves to the registry.

Cold: a fresh buildah store (out/images/bench/storage): bases imported from the cached mmdebstrap tarballs
(made once by `make images`; mmdebstrap's own time is printed when its log has it), every layer built,
dependencies downloaded. Warm: the same build again, every step from the layer cache. Code change: one line
appended to one module in a copy of the build context, rebuilt warm, pushed to a local docker-registry that
already holds the previous image; bytes sent = the blobs the registry lacked plus the manifest.
Goals (issue 10): one-module change <= 20 KiB on the wire; car image <= 100 MB compressed.
Run: python bench/bench_images.py [--only car|sim] [--module pitlane/car/app.py] [--no-cold]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from dataclasses import replace
from pathlib import Path

from pitlane.artifacts.registry import Registry, RegistryConfig
from pitlane.images.build import build_image, check_lock, git_revision
from pitlane.images.plan import IMAGES, BuildConfig, default_cafile
from pitlane.images.push import push_by_digest
from pitlane.images.storage import open_store

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "out" / "images"


def _context(dest: Path, module: str) -> Path:
    """A copy of the build context with one line appended to `module`."""
    for part in (
        "pitlane",
        "apps",
        "Pipfile",
        "Pipfile.lock",
        "Dockerfile.sim",
        "Dockerfile.arm64",
        ".dockerignore",
        "out/images",
    ):
        src = REPO / part
        if part == "out/images":
            (dest / part).mkdir(parents=True, exist_ok=True)
            for req in src.glob("requirements-*.txt"):
                shutil.copy(req, dest / part / req.name)
        elif src.is_dir():
            shutil.copytree(src, dest / part, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(src, dest / part)
    with open(dest / module, "a") as f:
        f.write("# a code-only change (bench_images)\n")
    return dest


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", action="append", choices=sorted(IMAGES))
    ap.add_argument("--module", default="pitlane/car/app.py", help="module the code-only change touches")
    ap.add_argument("--no-cold", action="store_true", help="skip the cold build (it downloads every wheel)")
    args = ap.parse_args()
    check_lock(REPO)
    names = args.only or list(IMAGES)
    base = BuildConfig(repo=REPO, out=OUT, revision=git_revision(REPO), cafile=default_cafile())
    for log in sorted(OUT.glob("mmdebstrap-*.log")):
        print(f"mmdebstrap: {log.name} (made once, cached as out/images/rootfs-*.tar)")
    cold_store = open_store(OUT / "bench")
    if not args.no_cold:
        shutil.rmtree(OUT / "bench", ignore_errors=True)
        for name in names:
            # the bench store has no bases: they are imported from the cached tarballs (seconds)
            b = build_image(IMAGES[name], replace(base, out=OUT), cold_store)
            print(f"{name}: cold build {b.seconds:.0f} s (fresh store; bases from cached root filesystems)")
    store = open_store(OUT)
    for name in names:
        b = build_image(IMAGES[name], base, store)
        b = build_image(IMAGES[name], base, store)
        print(f"{name}: warm build {b.seconds:.1f} s (no change, every layer cached)")
    with tempfile.TemporaryDirectory(dir=OUT) as tmp:
        reg = Registry(RegistryConfig(storage=Path(tmp) / "registry")).start()
        host = reg.host
        try:
            ctx = _context(Path(tmp) / "context", args.module)
            for name in names:
                first = push_by_digest(store, name, host, OUT)
                print(
                    f"{name}: compressed {first.compressed_bytes / 1e6:.1f} MB ({first.compressed_bytes} B), first push sent {first.sent_bytes / 1e6:.1f} MB"
                )
                changed = build_image(IMAGES[name], replace(base, repo=ctx), store)
                second = push_by_digest(store, name, host, OUT)
                print(
                    f"{name}: code-only change to {args.module}: rebuilt in {changed.seconds:.1f} s, pushed "
                    f"{second.sent_bytes} B = {second.sent_bytes / 1024:.1f} KiB (goal <= 20 KiB)"
                )
        finally:
            reg.stop()
            for name in names:  # the store's tags back on the repository's code
                build_image(IMAGES[name], base, store)
    if not args.no_cold:
        shutil.rmtree(OUT / "bench", ignore_errors=True)


if __name__ == "__main__":
    main()
