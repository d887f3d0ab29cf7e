"""`pitlane fleet serve`: the NUC's fleet service in one process: the broker (started here, or a running
one), the registry (started here, or a running one), the ingest, the registry gateway and the fleet page.

Everything lives under one data folder:

    DATA/broker/   mosquitto.conf, acl, passwd (the cars' credentials), ingest.password, db/, mosquitto.log
    DATA/registry/ the registry's storage, when this service starts it
    DATA/fleet.db  the fleet store

Started children (Mosquitto, docker-registry) die with this process, as the demo's registry does.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from pitlane.artifacts.registry import Registry, RegistryConfig
from pitlane.fleet import broker as fb
from pitlane.fleet.gateway import MAX_BODY_MB, Gateway, GatewayConfig
from pitlane.fleet.ingest import Ingest, IngestConfig
from pitlane.fleet.store import STORE_NAME, Store
from pitlane.fleet.web import FleetAPI, FleetWeb, WebConfig

log = logging.getLogger(__name__)

DEFAULT_DATA = Path("out/fleet")
PAGE_PORT = 8080
GATEWAY_PORT = 5001
MQTT_PORT = 1883


def broker_dir(data: Path) -> Path:
    return Path(data) / "broker"


def passwd_path(data: Path, passwd: Path | None = None) -> Path:
    """The cars' credentials: `passwd` when given (a cluster's Secret), else DATA/broker/passwd."""
    return Path(passwd) if passwd else broker_dir(data) / fb.PASSWD_NAME


@dataclass(frozen=True)
class ServeOptions:
    data: Path = DEFAULT_DATA
    host: str = "127.0.0.1"  # where the page, the gateway and a started broker listen ("0.0.0.0": everywhere)
    port: int = PAGE_PORT  # the fleet page and its API
    gateway_port: int = GATEWAY_PORT  # the registry gateway for cars
    mqtt_port: int = MQTT_PORT  # a started broker's listener
    broker: str | None = None  # host:port of a running Mosquitto (None: start one)
    registry: str | None = None  # host:port of a running registry (None: start one under DATA/registry)
    passwd: Path | None = None  # the cars' credentials (default DATA/broker/passwd)
    max_chunk_mb: int = MAX_BODY_MB  # [MiB] largest body a car may upload in one request


class FleetService:
    """Start everything with `start()`; `urls` says where; `stop()` stops what this process started."""

    def __init__(self, opts: ServeOptions) -> None:
        self.opts = opts
        self.passwd = passwd_path(opts.data, opts.passwd)
        self.broker: fb.Broker | None = None
        self.registry: Registry | None = None
        self.store: Store | None = None
        self.ingest: Ingest | None = None
        self.gateway: Gateway | None = None
        self.web: FleetWeb | None = None

    def start(self) -> FleetService:
        opts = self.opts
        data = Path(opts.data)
        data.mkdir(parents=True, exist_ok=True)
        try:
            password = fb.ingest_password(broker_dir(data), self.passwd)
            broker = opts.broker
            if broker is None:
                cfg = fb.BrokerConfig(
                    data=broker_dir(data), host=opts.host, port=opts.mqtt_port, passwd_file=self.passwd
                )
                self.broker = fb.Broker(cfg).start()
                broker = self.broker.host
            registry = opts.registry
            if registry is None:
                self.registry = Registry(RegistryConfig(storage=data / "registry")).start()
                registry = self.registry.host
            self.store = Store(data / STORE_NAME)
            self.ingest = ingest = Ingest(
                IngestConfig(broker, password, self.passwd, registry), self.store
            ).start()
            self.gateway = Gateway(
                GatewayConfig(registry, self.passwd, opts.host, opts.gateway_port, opts.max_chunk_mb)
            ).start()
            api = FleetAPI(self.store, known=self.ingest.known, counts=lambda: dict(ingest.counts))
            self.web = FleetWeb(WebConfig(opts.host, opts.port), api).start()
        except BaseException:
            self.stop()
            raise
        if not self.ingest.wait_connected(10):
            log.warning("fleet: the ingest has not reached broker %s yet; it keeps trying", broker)
        return self

    @property
    def urls(self) -> dict[str, str]:
        assert self.web and self.gateway and self.ingest
        return {
            "page": self.web.url,
            "gateway": self.gateway.host,
            "broker": self.ingest.config.broker,
            "registry": self.ingest.config.registry or "",
        }

    @property
    def running(self) -> bool:
        """False when a child this service started has died (the service then stops: a supervisor restarts it)."""
        return all(c is None or c.running for c in (self.broker, self.registry))

    def stop(self) -> None:
        for part in (self.web, self.gateway, self.ingest):
            if part is not None:
                part.stop()
        if self.store is not None:
            self.store.close()
        for child in (self.broker, self.registry):
            if child is not None:
                child.stop()
