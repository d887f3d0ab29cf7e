"""The `pitlane` command: one entry point, one sub-command per domain.

Each domain's CLI (``pitlane/<domain>/cli.py``) exposes ``add_commands(subparsers)`` and is imported here by
name, so the layer contract and a reader see `cli -> domain`. A domain CLI imports TensorFlow, donkeycar and
matplotlib only inside its handlers, so `pitlane twin serve` never pays for them.
"""

from __future__ import annotations

import argparse
import logging
import sys
from types import ModuleType

from pitlane import quiet
from pitlane.args import modernize
from pitlane.artifacts import cli as artifacts_cli
from pitlane.car import cli as car_cli
from pitlane.data import cli as data_cli
from pitlane.errors import UserError
from pitlane.evaluate import cli as evaluate_cli
from pitlane.fleet import cli as fleet_cli
from pitlane.fleet import data_cli as fleet_data_cli
from pitlane.twin import cli as twin_cli

# The container images ship only the domains they run (Dockerfile.sim: twin, data, evaluate, artifacts, car, fleet),
# so a domain package that is absent there is left out of the command; any other missing module is an error.
try:
    from pitlane.train import cli as train_cli
except ModuleNotFoundError as exc:
    if exc.name != "pitlane.train":
        raise
    train_cli = None  # type: ignore[assignment]
try:
    from pitlane.hub import cli as hub_cli
except ModuleNotFoundError as exc:
    if exc.name != "pitlane.hub":
        raise
    hub_cli = None  # type: ignore[assignment]
try:
    from pitlane.images import cli as images_cli
except ModuleNotFoundError as exc:
    if exc.name != "pitlane.images":
        raise
    images_cli = None  # type: ignore[assignment]
try:
    from pitlane.deploy import cli as deploy_cli
except ModuleNotFoundError as exc:
    if exc.name != "pitlane.deploy":
        raise
    deploy_cli = None  # type: ignore[assignment]
try:
    from pitlane.release import cli as release_cli
except ModuleNotFoundError as exc:
    if exc.name != "pitlane.release":
        raise
    release_cli = None  # type: ignore[assignment]
try:
    from pitlane.orchestration import cli as orchestration_cli
except ModuleNotFoundError as exc:
    if exc.name != "pitlane.orchestration":
        raise
    orchestration_cli = None  # type: ignore[assignment]

# The domains in the order `pitlane --help` lists their commands.
DOMAINS: tuple[ModuleType, ...] = tuple(
    cli
    for cli in (
        twin_cli,
        data_cli,
        train_cli,
        evaluate_cli,
        artifacts_cli,
        car_cli,
        fleet_cli,
        images_cli,
        deploy_cli,
        release_cli,
        orchestration_cli,
        hub_cli,
    )
    if cli is not None
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


def _add_data_bundle_commands(sub: argparse._SubParsersAction) -> None:
    """`pitlane data push | pull | ls` live in pitlane.fleet, above `data` in the layers: added here."""
    data = sub.choices.get("data")
    if data is None:
        return
    fleet_data_cli.add_data_commands(
        next(a for a in data._actions if isinstance(a, argparse._SubParsersAction))
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pitlane",
        description="pitlane: digital twin, driving data, training, model gate and car app for DonkeyCar.",
        epilog="Every command takes -v (before or after its name) and explains itself with --help.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for domain in DOMAINS:
        domain.add_commands(sub)
    _add_data_bundle_commands(sub)
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
