"""Tubs as data bundles over the wire: bytes for a first push, a re-push after 10 % more records, a no-op
re-push, and a push cut in the middle then resumed (counted by a TCP relay in front of the registry, HTTP
headers and both directions included).

Goal (issue 21): re-upload after 10 % more records sends <= 15 % of the tub's bytes. The tub holds the twin
camera's frames (160x120 JPEGs, as a car records them) driven by the expert, written by donkeycar's Tub;
the 10 % are a second session appended to it. A real registry (Debian's docker-registry) runs in a
temporary folder. Usage: python bench/bench_tub_upload.py [--records N]
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import tempfile
import time
from pathlib import Path

import numpy as np


def record_session(tub: Path, count: int, skip: int = 0) -> None:
    """Append one session of `count` records of the expert driving the twin to the tub."""
    from donkeycar.parts.tub_v2 import Tub

    from pitlane.data.tub import INPUTS, TYPES
    from pitlane.pilots.expert import ExpertPilot
    from pitlane.twin.sim import Sim
    from pitlane.twin.vehicle import Control

    sim = Sim("generated_track", seed=0)
    expert = ExpertPilot().bound_to(sim)
    writer = Tub(str(tub), inputs=list(INPUTS), types=list(TYPES), metadata=["profile:twin"])
    for i in range(skip + count):
        steer, throttle = expert.run(np.zeros(0))
        sim.step(Control(steering=steer, throttle=throttle))
        if i < skip:
            continue
        writer.write_record(
            {
                "cam/image_array": sim.render(),
                "user/angle": steer,
                "user/throttle": throttle,
                "user/mode": "user",
                "pos/pos_x": 0.0,
                "pos/pos_y": 0.0,
                "pos/pos_z": 0.0,
                "pos/speed": 0.0,
                "pos/cte": 0.0,
            }
        )
    writer.close()


def bundle_bytes(tub: Path) -> int:
    """[B] the files a bundle carries: manifest, catalogs and their manifests, images."""
    files = [p for p in tub.iterdir() if p.is_file() and (p.name == "manifest.json" or ".catalog" in p.name)]
    return sum(p.stat().st_size for p in files) + sum(p.stat().st_size for p in (tub / "images").iterdir())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, default=2000, help="records of the first session")
    args = ap.parse_args()
    for name in ("pitlane", "donkeycar", "urllib3"):
        logging.getLogger(name).setLevel(logging.CRITICAL)

    from pitlane.artifacts import oci
    from pitlane.artifacts.registry import Registry, RegistryConfig
    from pitlane.artifacts.relay import Relay
    from pitlane.errors import Unavailable
    from pitlane.fleet import tubbundle

    tmp = Path(tempfile.mkdtemp(prefix="bench-tub-upload-"))
    registry = Registry(RegistryConfig(storage=tmp / "registry")).start()
    relay = Relay(registry.host)
    tub = tmp / "tub"
    try:
        record_session(tub, args.records)
        size = bundle_bytes(tub)

        answers = [0]  # [B] the registry's answers during the first push

        def push(repo: str, what: str) -> int:
            relay.reset()
            t0 = time.perf_counter()
            pushed = tubbundle.push_tub(oci.Client(relay.host), tub, repo, car="bench-car")
            wire = relay.up + relay.down
            answers[0] = answers[0] or relay.down
            print(
                f"{what}: {wire / 1e6:.2f} MB on the wire ({wire / size:.1%} of the tub), "
                f"{pushed.blobs_sent} blobs sent, {pushed.blobs_skipped} skipped, {time.perf_counter() - t0:.1f} s"
            )
            return wire

        print(f"tub: {args.records} records, {size / 1e6:.2f} MB in its bundle's files")
        push("data/bench-car", "first push")
        push("data/bench-car", "no-op re-push (unchanged tub)")
        extra = max(1, args.records // 10)
        record_session(tub, extra, skip=args.records)
        grown = bundle_bytes(tub)
        print(f"tub grown by {extra} records (a second session): {grown / 1e6:.2f} MB")
        size = grown
        wire = push("data/bench-car", "re-push after 10 % more records")
        goal = "met" if wire <= 0.15 * grown else "MISSED"
        print(f"  goal <= 15 % of the tub: {wire / grown:.1%} ({goal})")

        relay.reset(cut_after=answers[0] // 2)  # the link dies half way through the registry's answers
        with contextlib.suppress(Unavailable):
            tubbundle.push_tub(oci.Client(relay.host), tub, "data/bench-resume", car="bench-car")
        first = relay.up + relay.down
        relay.reset(cut_after=None)
        resumed = push("data/bench-resume", f"push cut after {first / 1e6:.2f} MB on the wire, then resumed")
        print(f"  cut + resumed: {(first + resumed) / 1e6:.2f} MB in all")
    finally:
        relay.close()
        registry.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
