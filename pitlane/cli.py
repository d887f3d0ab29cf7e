"""The `pitlane` command: one entry point, one sub-command per domain.

Each domain module exposes ``add_commands(subparsers)``; modules are imported
lazily so `pitlane twin serve` never pays for TensorFlow.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from pitlane import quiet
from pitlane.errors import UserError

# Each module registers its own sub-commands; a domain not yet built is skipped.
DOMAINS: tuple[str, ...] = (
    "pitlane.twin.cli",
    "pitlane.data.cli",
    "pitlane.train.cli",
    "pitlane.evaluate.cli",
    "pitlane.artifacts.cli",
    "pitlane.car.cli",
    "pitlane.images.cli",
    "pitlane.deploy.cli",
    "pitlane.release.cli",
    "pitlane.orchestration.demo",
)


def quiet_libraries() -> None:
    """donkeycar's banner and INFO chatter and TensorFlow's C++ start-up lines bury pitlane's output; -v
    brings them back. Works because every donkeycar and TensorFlow import in pitlane is lazy."""
    quiet.install()
    for name in ("donkeycar", "tensorflow", "absl"):
        logging.getLogger(name).setLevel(logging.WARNING)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pitlane",
        description="pitlane: digital twin, driving data, training, model gate and car app for DonkeyCar.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in DOMAINS:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if not exc.name or not name.startswith(exc.name):
                raise
            continue
        module.add_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if not args.verbose:
        quiet_libraries()
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except UserError as exc:
        print(f"pitlane: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
