"""`pitlane fleet serve|status|add-car|broker`: the NUC's fleet service, a health check for scripts, a car's
credentials, and the broker alone (a cluster runs it in its own pod)."""

from __future__ import annotations

import argparse
import json
import signal
import socket
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from pitlane.errors import UserError
from pitlane.fleet import broker as fb
from pitlane.fleet.gateway import MAX_BODY_MB
from pitlane.fleet.service import (
    DEFAULT_DATA,
    GATEWAY_PORT,
    MQTT_PORT,
    PAGE_PORT,
    FleetService,
    ServeOptions,
    broker_dir,
    passwd_path,
)
from pitlane.fleet.view import ONLINE_S

CAR_SECRET = (
    "pitlane-fleet-car"  # the Secret the car's overlay reads PITLANE_FLEET_PASSWORD from (key: password)
)


def _host_port(text: str, flag: str) -> str:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise UserError(f"{flag} {text!r} is not HOST:PORT (e.g. 127.0.0.1:1883)")
    return text


def _stop_on_sigterm() -> None:
    def stop(_sig, _frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)  # `kill` and Kubernetes stop it as Ctrl-C does


def _serve(args: argparse.Namespace) -> int:
    opts = ServeOptions(
        data=args.data,
        host=args.host,
        port=args.port,
        gateway_port=args.gateway_port,
        mqtt_port=args.mqtt_port,
        broker=_host_port(args.broker, "--broker") if args.broker else None,
        registry=_host_port(args.registry, "--registry") if args.registry else None,
        passwd=args.passwd,
        max_chunk_mb=args.max_chunk_mb,
    )
    _stop_on_sigterm()
    service = FleetService(opts).start()
    urls = service.urls
    print(f"fleet page:       {urls['page']}  (pitlane fleet status --url {urls['page']})")
    print(
        f"MQTT broker:      {urls['broker']}  ({'started here' if service.broker else 'running elsewhere'})"
    )
    print(f"registry gateway: http://{urls['gateway']}/v2/  (cars push tubs to data/<car> here)")
    print(f"registry:         {urls['registry']}  (pitlane data ls / pull read data bundles here)")
    print(f"data:             {opts.data}  (cars' credentials: {service.passwd}); Ctrl-C stops", flush=True)
    try:
        while service.running:
            time.sleep(0.5)
        print("fleet: a child process (broker or registry) died; stopping", flush=True)
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        service.stop()


def _broker(args: argparse.Namespace) -> int:
    _stop_on_sigterm()
    passwd = passwd_path(args.data, args.passwd)
    if not passwd.is_file():
        fb.ingest_password(broker_dir(args.data), passwd)  # a password file with the ingest in it
    cfg = fb.BrokerConfig(data=broker_dir(args.data), host=args.host, port=args.port, passwd_file=passwd)
    broker = fb.Broker(cfg).start()
    print(
        f"MQTT broker: {broker.host} (config {broker_dir(args.data) / fb.CONFIG_NAME}); Ctrl-C stops",
        flush=True,
    )
    try:
        while broker.running:
            time.sleep(0.5)
        print(f"mosquitto exited; its log: {broker_dir(args.data) / fb.LOG_NAME}", flush=True)
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        broker.stop()


def fetch_cars(url: str) -> dict[str, Any]:
    try:
        with urllib.request.urlopen(url.rstrip("/") + "/api/cars", timeout=10) as resp:
            return json.loads(resp.read())
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise UserError(
            f"fleet service {url} did not answer ({reason}); is `pitlane fleet serve` running?"
        ) from None


def health_text(car: dict[str, Any]) -> str:
    if car["last_seen"] is None:
        return "never seen"
    if not car["online"]:
        return f"offline (> {ONLINE_S:.0f} s)"
    if car["model"]["differs"]:
        since = car["model"]["differs_for_s"]
        return "model differs" + (f" for {since:.0f} s" if since is not None else "")
    return "healthy"


def status_table(doc: dict[str, Any]) -> str:
    head = (
        "car",
        "last seen",
        "model",
        "desired",
        "loop Hz",
        "p50/p99 ms",
        "stops",
        "backlog",
        "drift",
        "health",
    )
    rows = [head]
    for car in doc["cars"]:
        running = (car["model"]["running"] or {}).get("digest") or "-"
        desired = (car["model"]["desired"] or "-").rpartition("@")[2]
        age = car["age_s"]
        rows.append(
            (
                car["name"],
                "never" if age is None else f"{age:.0f} s ago",
                running.replace("sha256:", "")[:12],
                desired.replace("sha256:", "")[:12],
                "-" if car["loop_hz"] is None else f"{car['loop_hz']:.1f}",
                "/".join("-" if v is None else f"{v:.1f}" for v in car["pilot_ms"].values()),
                str(car["watchdog_stops"]),
                str((car["backlog"] or {}).get("records", "-")),
                "-"
                if not car["drift"] or car["drift"].get("score") is None
                else f"{car['drift']['score']:.2f}",
                health_text(car) + ("" if car["clock_ok"] else ", clock off"),
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows)


def _status(args: argparse.Namespace) -> int:
    doc = fetch_cars(args.url)
    healthy = all(car["healthy"] for car in doc["cars"])
    if args.json:
        print(json.dumps({"healthy": healthy, **doc}, indent=2))
    else:
        print(status_table(doc) if doc["cars"] else "no cars yet (pitlane fleet add-car NAME)")
        unhealthy = [c["name"] for c in doc["cars"] if not c["healthy"]]
        print(
            f"\n{len(doc['cars']) - len(unhealthy)}/{len(doc['cars'])} healthy"
            + (f"; not: {', '.join(unhealthy)}" if unhealthy else "")
        )
    return 0 if healthy else 1


def car_settings(name: str, password: str, nuc: str, mqtt_port: int, gateway_port: int) -> str:
    """What a car needs, shown once: its myconfig.py lines, the same as environment variables, and a Secret."""
    broker, gateway = f"{nuc}:{mqtt_port}", f"{nuc}:{gateway_port}"
    return f"""# car {name}: myconfig.py
FLEET_BROKER = "{broker}"
FLEET_CAR_NAME = "{name}"
FLEET_PASSWORD = "{password}"
FLEET_GATEWAY = "{gateway}"

# or the same as environment variables
PITLANE_FLEET_BROKER={broker}
PITLANE_CAR_NAME={name}
PITLANE_FLEET_PASSWORD={password}
PITLANE_FLEET_GATEWAY={gateway}

# or, on the car's cluster, this Secret (kubectl apply -f -); the pi-car overlay reads it
apiVersion: v1
kind: Secret
metadata:
  name: {CAR_SECRET}
  namespace: pitlane
type: Opaque
stringData:
  password: "{password}"
"""


def _add_car(args: argparse.Namespace) -> int:
    passwd = passwd_path(args.data, args.passwd)
    password = fb.add_car(passwd, args.name, replace=args.rotate)
    fb.ingest_password(broker_dir(args.data), passwd)  # a first car: the ingest's credentials too
    print(car_settings(args.name, password, args.nuc, args.mqtt_port, args.gateway_port))
    print(
        f"# credentials of {args.name} are in {passwd} (hashed); this password is not shown again.\n"
        "# A running `pitlane fleet serve` with this --data picks the car up within a second. In a cluster,\n"
        "# update the NUC's Secret from this file (README: Fleet (NUC))."
    )
    return 0


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "fleet",
        help="the NUC's fleet service: MQTT broker, ingest, registry gateway, fleet page",
        description="The fleet on the NUC: cars send heartbeats, events and tub records over MQTT (Mosquitto) "
        "and push tubs through the registry gateway; the fleet page shows every car.",
    )
    sub = p.add_subparsers(dest="fleet_command", metavar="COMMAND")
    s = sub.add_parser("serve", help="run the broker, ingest, registry gateway and fleet page until Ctrl-C")
    s.add_argument(
        "--data", type=Path, default=DEFAULT_DATA, help="folder for the store, broker and registry"
    )
    s.add_argument(
        "--host", default="127.0.0.1", help="address the page, gateway and broker listen on (0.0.0.0: all)"
    )
    s.add_argument(
        "--port", type=int, default=PAGE_PORT, help="the fleet page and its API (0 = any free port)"
    )
    s.add_argument("--gateway-port", type=int, default=GATEWAY_PORT, help="the registry gateway for cars")
    s.add_argument(
        "--mqtt-port", type=int, default=MQTT_PORT, help="the broker started here listens on this port"
    )
    s.add_argument("--broker", metavar="HOST:PORT", help="a running Mosquitto to use instead of starting one")
    s.add_argument(
        "--registry", metavar="HOST:PORT", help="a running registry to use instead of starting one"
    )
    s.add_argument("--passwd", type=Path, help="the cars' credentials (default DATA/broker/passwd)")
    s.add_argument(
        "--max-chunk-mb",
        type=int,
        default=MAX_BODY_MB,
        help="largest upload a car may send in one request [MiB]",
    )
    s.set_defaults(func=_serve)

    s = sub.add_parser("status", help="every car's health; exit 0 when all are healthy, 1 otherwise")
    s.add_argument("--url", default=f"http://127.0.0.1:{PAGE_PORT}", help="the fleet service's page")
    s.add_argument(
        "--json", action="store_true", help="print the API's JSON (with 'healthy') instead of a table"
    )
    s.description = f"Healthy: heard from within {ONLINE_S:.0f} s (NUC time) and running its desired model."
    s.set_defaults(func=_status)

    s = sub.add_parser("add-car", help="create a car's credentials; prints its FLEET_* settings once")
    s.add_argument("name", help="the car's fleet name (lower-case letters, digits and '-')")
    s.add_argument("--data", type=Path, default=DEFAULT_DATA, help="the fleet service's data folder")
    s.add_argument("--passwd", type=Path, help="the credentials file to write (default DATA/broker/passwd)")
    s.add_argument(
        "--nuc",
        default=socket.gethostname(),
        help="the NUC's address as the car reaches it (default: this host's name)",
    )
    s.add_argument("--mqtt-port", type=int, default=MQTT_PORT, help="the broker's port as the car reaches it")
    s.add_argument(
        "--gateway-port", type=int, default=GATEWAY_PORT, help="the gateway's port as the car reaches it"
    )
    s.add_argument("--rotate", action="store_true", help="replace the password of a car that has one")
    s.set_defaults(func=_add_car)

    s = sub.add_parser("broker", help="run only Mosquitto with pitlane's config (a cluster's broker pod)")
    s.add_argument(
        "--data", type=Path, default=DEFAULT_DATA, help="folder for the broker's config and persistence"
    )
    s.add_argument("--host", default="127.0.0.1", help="listen address (0.0.0.0: all)")
    s.add_argument("--port", type=int, default=MQTT_PORT, help="listen port")
    s.add_argument("--passwd", type=Path, help="the cars' credentials (default DATA/broker/passwd)")
    s.set_defaults(func=_broker)
