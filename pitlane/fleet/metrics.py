"""/metrics for Prometheus: each car's figures as gauges, read from the fleet store at scrape time.

Prometheus (Debian's `prometheus`) scrapes and keeps the series; pitlane keeps no metrics store. Imported only
when /metrics is asked for, so the fleet service runs without prometheus-client.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from pitlane.fleet.web import FleetAPI

PREFIX = "pitlane_fleet"


def _gauge(name: str, doc: str, labels: tuple[str, ...] = ("car",)) -> GaugeMetricFamily:
    return GaugeMetricFamily(f"{PREFIX}_{name}", doc, labels=list(labels))


class FleetCollector(Collector):
    def __init__(self, api: FleetAPI) -> None:
        self.api = api

    def collect(self) -> Iterator[Any]:
        answer = self.api.cars()
        g = {
            "seen": _gauge(
                "last_seen_age_seconds", "seconds since the NUC last received anything from the car"
            ),
            "healthy": _gauge("healthy", "1 when the car was seen within 5 s and runs its desired model"),
            "differs": _gauge("model_differs", "1 while the running model is not the desired one"),
            "loop": _gauge("loop_hz", "the car's drive loop rate"),
            "pilot": _gauge("pilot_latency_ms", "pilot inference latency", ("car", "quantile")),
            "stops": _gauge("watchdog_stops", "watchdog stops since the car app started", ("car", "reason")),
            "backlog": _gauge("backlog_records", "records waiting in the car's spool"),
            "tub_backlog": _gauge("backlog_tub_records", "tub records waiting for upload"),
            "drift": _gauge(
                "drift_score", "distance of the camera's frame statistics from the training data's"
            ),
            "clock": _gauge(
                "clock_offset_seconds", "NUC receive time minus the car's clock (live heartbeats)"
            ),
            "disk": _gauge("disk_free_megabytes", "free disk on the car"),
        }
        for car in answer["cars"]:
            name = car["name"]
            values = {
                "seen": car["age_s"],
                "healthy": float(car["healthy"]),
                "differs": float(car["model"]["differs"]),
                "loop": car["loop_hz"],
                "backlog": (car["backlog"] or {}).get("records"),
                "tub_backlog": (car["backlog"] or {}).get("tub_records"),
                "drift": (car["drift"] or {}).get("score"),
                "clock": car["clock_offset_s"],
                "disk": car["disk_free_mb"],
            }
            for key, value in values.items():
                if value is not None:
                    g[key].add_metric([name], float(value))
            for q, key in (("0.5", "p50"), ("0.99", "p99")):
                if car["pilot_ms"][key] is not None:
                    g["pilot"].add_metric([name, q], car["pilot_ms"][key])
            for reason, count in (car["watchdog_stops_by_reason"] or {}).items():
                g["stops"].add_metric([name, str(reason)], float(count))
        yield from g.values()
        refused = GaugeMetricFamily(
            f"{PREFIX}_refused_messages",
            "messages the ingest refused, by reason (since the store began)",
            labels=["reason"],
        )
        for reason, count in answer["refused"].items():
            refused.add_metric([reason], float(count))
        yield refused


def exposition(api: FleetAPI) -> tuple[bytes, str]:
    """The text Prometheus scrapes, and its content type."""
    registry = CollectorRegistry()
    registry.register(FleetCollector(api))
    return generate_latest(registry), CONTENT_TYPE_LATEST
