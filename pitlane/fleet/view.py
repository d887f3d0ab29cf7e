"""What the fleet page, `pitlane fleet status` and /metrics show about each car: pure functions of the
store's rows and the NUC's clock.

A car is healthy when it was heard from within `ONLINE_S` (by the NUC's receive time, never the car's clock)
and runs the model it was told to run (or was told none).
"""

from __future__ import annotations

from typing import Any

ONLINE_S = 5.0  # [s] a car not heard from for longer is shown offline (and is not healthy)
CLOCK_TOLERANCE_S = 5.0  # [s] a car clock further off the NUC's is flagged


def desired_digest(desired: str | None) -> str | None:
    """`REGISTRY/REPO@sha256:...` -> `sha256:...` (None for no desired model)."""
    if not desired:
        return None
    return desired.rpartition("@")[2] or None


def _num(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def car_row(row: dict[str, Any] | None, now: float, name: str | None = None) -> dict[str, Any]:
    """One car as the page shows it; `row` is the store's (None: a car with credentials never heard from)."""
    row = row or {"name": name}
    hb: dict[str, Any] = row.get("heartbeat") or {}
    model = hb.get("model") or {}
    running = model.get("running") or {}
    event = row.get("event") or None
    if (
        event
        and event.get("type") == "model_swap"
        and (row.get("event_seq") or 0) > (row.get("heartbeat_seq") or 0)
    ):
        # the car reports a swap at once; its next heartbeat (up to a second later) would say the same
        detail = event.get("detail") or {}
        running = {**running, "digest": detail.get("to"), "serial": detail.get("serial")}
    desired = model.get("desired")
    want = desired_digest(desired)
    differs = want is not None and running.get("digest") != want
    differs_for = None
    since, hb_t = _num(model.get("differs_since")), _num(row.get("heartbeat_t"))
    if differs and since is not None and hb_t is not None:
        # car clock to car clock, then the NUC's time since that heartbeat arrived: no clock offset involved
        differs_for = max(0.0, hb_t - since) + max(0.0, now - (row.get("heartbeat_received") or now))
    last_seen = _num(row.get("last_seen"))
    age = None if last_seen is None else max(0.0, now - last_seen)
    stops_by_reason = hb.get("watchdog_stops") or {}
    stops = sum(v for v in stops_by_reason.values() if isinstance(v, int)) + int(
        row.get("stops_since_heartbeat") or 0
    )
    offset = _num(row.get("clock_offset"))
    online = age is not None and age <= ONLINE_S
    pilot = hb.get("pilot_ms") or {}
    return {
        "name": row.get("name"),
        "last_seen": last_seen,
        "age_s": age,
        "online": online,
        "healthy": online and not differs,
        "profile": hb.get("profile"),
        "mode": hb.get("mode"),
        "image": hb.get("image"),
        "pitlane_version": hb.get("pitlane_version"),
        "model": {
            "running": running or None,
            "desired": desired,
            "differs": differs,
            "differs_for_s": differs_for,
        },
        "loop_hz": _num(hb.get("loop_hz")),
        "pilot_ms": {"p50": _num(pilot.get("p50")), "p99": _num(pilot.get("p99"))},
        "watchdog_stops": stops,
        "watchdog_stops_by_reason": stops_by_reason,
        "backlog": hb.get("backlog"),
        "drift": hb.get("drift"),
        "twin": hb.get("twin"),
        "disk_free_mb": _num(hb.get("disk_free_mb")),
        "clock_offset_s": offset,
        "clock_ok": offset is None or abs(offset) <= CLOCK_TOLERANCE_S,
        "last_event": None
        if event is None
        else {
            "type": event.get("type"),
            "detail": event.get("detail"),
            "age_s": max(0.0, now - (row.get("event_received") or now)),
        },
    }


def fleet_rows(rows: list[dict[str, Any]], known: set[str], now: float) -> list[dict[str, Any]]:
    """Every car heard from, and every car with credentials not yet heard from, by name."""
    by_name = {r["name"]: r for r in rows}
    return [car_row(by_name.get(name), now, name) for name in sorted(set(by_name) | set(known))]


def downsample(
    points: list[dict[str, Any]], figures: tuple[str, ...], max_points: int
) -> list[dict[str, Any]]:
    """At most `max_points` points: consecutive points averaged in equal buckets (a day at 1 Hz still plots
    fast); None values are left out of each mean."""
    if len(points) <= max_points:
        return [{"t": p["received"], **{f: p.get(f) for f in figures}} for p in points]
    out = []
    size = len(points) / max_points
    for i in range(max_points):
        bucket = points[int(i * size) : max(int((i + 1) * size), int(i * size) + 1)]
        point: dict[str, Any] = {"t": bucket[-1]["received"]}
        for f in figures:
            values = [v for p in bucket if (v := p.get(f)) is not None]
            point[f] = sum(values) / len(values) if values else None
        out.append(point)
    return out
