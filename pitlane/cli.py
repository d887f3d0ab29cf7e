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
from pitlane.args import modernize
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
    "pitlane.hub.cli",
)


def quiet_libraries() -> None:
    """donkeycar's banner and INFO chatter and TensorFlow's C++ start-up lines bury pitlane's output; -v
    brings them back. Works because every donkeycar and TensorFlow import in pitlane is lazy."""
    quiet.install()
    for name in ("donkeycar", "tensorflow", "absl"):
        logging.getLogger(name).setLevel(logging.WARNING)


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows an option's default, except where its help already says it or there is none to show."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if any(action.default is v for v in (None, False, argparse.SUPPRESS)) or action.default == []:
            return text
        if "default" in text.lower():
            return text
        return super()._get_help_string(action)


def _parsers(parser: argparse.ArgumentParser):
    """The parser and every sub-command parser below it."""
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in dict.fromkeys(action.choices.values()):  # aliases share a parser
                yield from _parsers(child)


def _print_help(parser: argparse.ArgumentParser):
    def show(args: argparse.Namespace) -> int:
        parser.print_help()
        return 2

    return show


def _one_command_line(root: argparse.ArgumentParser) -> None:
    """What every command shares: defaults in --help, -v before or after the sub-command, help on a bare group."""
    for parser in _parsers(root):
        parser.formatter_class = HelpFormatter
        if parser is not root and "-v" not in parser._option_string_actions:
            parser.add_argument(
                "-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help="log debug messages"
            )
        groups = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if parser is not root and groups and parser.get_default("func") is None:
            groups[0].required = False
            parser.set_defaults(func=_print_help(parser))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pitlane",
        description="pitlane: digital twin, driving data, training, model gate and car app for DonkeyCar.",
        epilog="Every command takes -v (before or after its name) and explains itself with --help.",
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
    _one_command_line(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    argv, warnings = modernize(sys.argv[1:] if argv is None else list(argv))
    for warning in warnings:
        print(f"pitlane: warning: {warning}", file=sys.stderr)
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
