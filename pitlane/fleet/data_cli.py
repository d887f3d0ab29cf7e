"""`pitlane data push | pull | ls`: tubs as data bundles in a registry, for data scientists.

`add_data_commands(data_subparsers)` adds the three actions to the existing `pitlane data` group (the
`data` domain sits below `fleet` in the layers, so pitlane's top-level CLI wires them in).
"""

from __future__ import annotations

import argparse
import getpass
import json
import time
from datetime import UTC, datetime
from pathlib import Path

from pitlane.artifacts import oci
from pitlane.errors import UserError
from pitlane.fleet import tubbundle


def add_data_commands(sub: argparse._SubParsersAction) -> None:
    push = sub.add_parser(
        "push",
        help="upload a tub as a data bundle: only what the registry lacks; prints REGISTRY/REPO@sha256:...",
    )
    push.add_argument("tub", type=Path, help="a donkeycar tub folder")
    push.add_argument("--to", required=True, metavar="REGISTRY/REPO", help="e.g. 127.0.0.1:5000/data/alice")
    push.add_argument("--session", help="the bundle's tag (default: the tub's folder name and start time)")
    push.set_defaults(func=_push)

    pull = sub.add_parser("pull", help="rebuild a tub from a data bundle, every digest checked")
    pull.add_argument("ref", metavar="REF", help="REGISTRY/data/NAME@sha256:... (or :TAG)")
    pull.add_argument("--out", required=True, type=Path, help="the tub folder to create (new or empty)")
    pull.set_defaults(func=_pull)

    ls = sub.add_parser("ls", help="list the data bundles in a registry (by car, date, model)")
    ls.add_argument("--registry", required=True, metavar="HOST:PORT", help="e.g. 127.0.0.1:5000")
    ls.add_argument("--car", help="only this car's bundles")
    ls.add_argument(
        "--since", metavar="DATE", help="only tubs recorded up to this date or later (2025-06-01)"
    )
    ls.add_argument("--model", metavar="DIGEST", help="only tubs driven by this model (sha256:...)")
    ls.add_argument("--json", action="store_true", help="one JSON object per bundle (for scripts)")
    ls.set_defaults(func=_ls)


def _client(registry: str) -> oci.Client:
    return oci.Client(registry)


def _push(args: argparse.Namespace) -> int:
    target = oci.Reference.parse(args.to)
    if target.tag or target.digest:
        raise UserError(f"--to takes REGISTRY/REPO (no tag or digest), got {args.to!r}")
    session = tubbundle.session_tag(args.session) if args.session else None
    pushed = tubbundle.push_tub(
        _client(target.registry), args.tub, target.repository, user=getpass.getuser(), session=session
    )
    print(pushed.ref)
    return 0


def _pull(args: argparse.Namespace) -> int:
    ref = oci.Reference.parse(args.ref)
    remote = tubbundle.pull_tub(_client(ref.registry), ref, args.out)
    print(f"{args.out}: {remote.config.get('records')} records from {remote.ref}")
    return 0


def parse_since(text: str) -> float:
    """Unix time of a date (YYYY-MM-DD, UTC) or an ISO 8601 time."""
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise UserError(f"--since wants a date like 2025-06-01 (or 2025-06-01T12:00), got {text!r}") from None
    return (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()


def _when(t: object) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(t)) if isinstance(t, int | float) else "-"


def _ls(args: argparse.Namespace) -> int:
    since = parse_since(args.since) if args.since else None
    if args.model:
        oci.check_digest(args.model)
    bundles = tubbundle.list_bundles(_client(args.registry), car=args.car, since=since, model=args.model)
    if args.json:
        for remote in bundles:
            print(json.dumps({"ref": str(remote.ref), **remote.config}, sort_keys=True))
        return 0
    if not bundles:
        print("no data bundles")
        return 0
    rows = [("REF", "CAR/USER", "SESSION", "RECORDS", "START (UTC)", "END (UTC)", "MODEL")]
    for remote in bundles:
        c = remote.config
        who = c.get("car") or (f"user {c['user']}" if c.get("user") else "-")
        model = (c.get("model") or "-")[:19]
        rows.append(
            (
                str(remote.ref),
                who,
                str(c.get("session")),
                str(c.get("records")),
                _when(c.get("start")),
                _when(c.get("end")),
                model,
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())
    return 0
