"""`pitlane hub serve`: JupyterHub for data scientists on this machine (the NUC's hub: argocd/overlays/nuc-sim)."""

from __future__ import annotations

import argparse

from pitlane.errors import UserError
from pitlane.hub.config import PASSWORD_ENV, HubSettings
from pitlane.hub.serve import parse_address, serve


def _serve(args: argparse.Namespace) -> int:
    if args.cull_idle <= 0:
        raise UserError(f"--cull-idle must be a positive number of seconds, got {args.cull_idle}")
    settings = HubSettings(
        data=args.data,
        host=args.host,
        port=args.port,
        twin=parse_address(args.twin, "--twin") if args.twin else "",
        registry=parse_address(args.registry, "--registry") if args.registry else "",
        mlflow=args.mlflow or "",
        cull_idle_s=args.cull_idle,
        sandbox=not args.no_sandbox,
    )
    return serve(settings, verbose=getattr(args, "verbose", False))


def add_commands(subparsers) -> None:
    hub = subparsers.add_parser(
        "hub",
        help="JupyterHub for data scientists: notebooks beside the twin, the registry and MLflow",
        description="A JupyterHub on this machine: each user logs in with the team's password, gets a home "
        "seeded with pitlane's notebooks and JupyterLab with pitlane's locked environment, and finds the twin, "
        "the registry and MLflow through PITLANE_TWIN, PITLANE_REGISTRY and MLFLOW_TRACKING_URI.",
    )
    sub = hub.add_subparsers(dest="hub_command", metavar="COMMAND", required=True)
    p = sub.add_parser(
        "serve",
        help="run the hub (and its twin, registry, MLflow and idle culler) in the foreground until Ctrl-C",
        description="Start JupyterHub with its proxy (Node.js configurable-http-proxy), a shared-password login "
        f"(${PASSWORD_ENV}, else one generated on the first start, printed once and kept in DATA/hub/password), "
        "one home per user under DATA/users/<name> (notebooks copied in, never over a user's own copy), each "
        "user's server in a bubblewrap sandbox that sees only its own home, and as managed services (restarted "
        "if they exit): `pitlane twin serve`, `pitlane registry serve`, an MLflow tracking server (SQLite store "
        "and artifact folder in DATA/mlflow, its page at /services/mlflow/) and the idle culler.",
    )
    p.add_argument("--port", type=int, default=8000, help="the hub's port (its URL: http://HOST:PORT/)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0: the whole network)")
    p.add_argument("--data", default="out/hub", metavar="DIR",
                   help="the hub's data folder: homes, its database, the registry's and MLflow's stores")  # fmt: skip
    p.add_argument("--twin", metavar="HOST:PORT", help="a running twin to use instead of starting one")
    p.add_argument(
        "--registry", metavar="HOST:PORT", help="a running registry to use instead of starting one"
    )
    p.add_argument(
        "--mlflow", metavar="URI", help="a running MLflow tracking server to use instead of starting one"
    )
    p.add_argument("--cull-idle", type=int, default=3600, metavar="S",
                   help="stop a user's server after S seconds unused (its files stay)")  # fmt: skip
    p.add_argument("--no-sandbox", action="store_true",
                   help="run users' servers without bubblewrap: each can read the others' files (one-person laptop)")  # fmt: skip
    p.set_defaults(func=_serve)
