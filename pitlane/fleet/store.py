"""The NUC's fleet store (SQLite): every record each car sent, once, with the car's time and the NUC's.

`records` keeps every record by its primary key (car, seq), so a record delivered twice (a resend after a
lost ack, a broker redelivery) is stored once: `add` answers which seqs are durable, and only then does the
ingest acknowledge them. Beside it, in the same transaction, what the fleet page reads: each car's latest
state (`cars`), the heartbeat figures over time (`heartbeats`), `events`, the tub bundle index (`tubs`), and
the messages refused and why (`refusals`).
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pitlane.fleet.protocol import EVENT, HEARTBEAT, TUB, Record

STORE_NAME = "fleet.db"
# (column, path in the heartbeat body): the figures plotted over time
FIGURES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("loop_hz", ("loop_hz",)),
    ("pilot_p50", ("pilot_ms", "p50")),
    ("pilot_p99", ("pilot_ms", "p99")),
    ("backlog", ("backlog", "records")),
    ("tub_backlog", ("backlog", "tub_records")),
    ("drift", ("drift", "score")),
    ("disk_free_mb", ("disk_free_mb",)),
    ("cte_mean", ("twin", "cte_mean")),
)
FIGURE_NAMES: tuple[str, ...] = tuple(name for name, _ in FIGURES)

SCHEMA = f"""
CREATE TABLE IF NOT EXISTS records(
    car TEXT NOT NULL, seq INTEGER NOT NULL, kind TEXT NOT NULL,
    t REAL NOT NULL, received REAL NOT NULL, boot TEXT NOT NULL, body TEXT NOT NULL,
    PRIMARY KEY (car, seq)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS cars(
    name TEXT PRIMARY KEY, first_seen REAL, last_seen REAL, last_t REAL, clock_offset REAL,
    heartbeat_seq INTEGER, heartbeat_t REAL, heartbeat_received REAL, heartbeat TEXT,
    event_seq INTEGER, event TEXT, event_t REAL, event_received REAL, stops_since_heartbeat INTEGER DEFAULT 0);
CREATE TABLE IF NOT EXISTS heartbeats(
    car TEXT NOT NULL, seq INTEGER NOT NULL, t REAL NOT NULL, received REAL NOT NULL,
    {", ".join(f"{name} REAL" for name in FIGURE_NAMES)}, stops INTEGER, model TEXT,
    PRIMARY KEY (car, seq)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS heartbeats_by_time ON heartbeats(car, received);
CREATE TABLE IF NOT EXISTS events(
    car TEXT NOT NULL, seq INTEGER NOT NULL, t REAL NOT NULL, received REAL NOT NULL,
    type TEXT NOT NULL, detail TEXT NOT NULL, PRIMARY KEY (car, seq)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS tubs(
    car TEXT NOT NULL, seq INTEGER NOT NULL, ref TEXT NOT NULL, sent_ref TEXT NOT NULL, session TEXT,
    records INTEGER, start REAL, end REAL, model TEXT, config TEXT NOT NULL, indexed REAL NOT NULL,
    PRIMARY KEY (car, seq)) WITHOUT ROWID;
CREATE UNIQUE INDEX IF NOT EXISTS tubs_by_ref ON tubs(ref);
CREATE TABLE IF NOT EXISTS refusals(
    reason TEXT PRIMARY KEY, count INTEGER NOT NULL, last REAL, last_car TEXT, last_detail TEXT);
"""


@dataclass(frozen=True)
class Incoming:
    """A checked record as the ingest hands it over."""

    record: Record
    received: float  # [s] NUC wall clock when it arrived
    tub: TubEntry | None = None  # for tub records: what the registry holds (checked before storing)


@dataclass(frozen=True)
class TubEntry:
    """A data bundle the registry holds, as the index lists it."""

    ref: str  # REGISTRY/data/<car>@sha256:... on the NUC's registry (what `pitlane data pull` takes)
    config: dict[str, Any]  # the bundle's config (pitlane.tub-bundle/1)


def _get(body: Any, path: tuple[str, ...]) -> float | None:
    for key in path:
        if not isinstance(body, dict):
            return None
        body = body.get(key)
    return float(body) if isinstance(body, int | float) and not isinstance(body, bool) else None


def _stops(body: dict[str, Any]) -> int:
    stops = body.get("watchdog_stops") or {}
    return sum(v for v in stops.values() if isinstance(v, int)) if isinstance(stops, dict) else 0


class Store:
    """The fleet's SQLite file. Thread-safe: one connection per thread, writes serialised by SQLite (WAL)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self.inserted = 0  # records stored by this instance (duplicates not counted)
        self.db.executescript(SCHEMA)
        self.db.commit()

    @property
    def db(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=30.0)
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")  # an acked record survives a power cut
            self._local.conn = conn
        return conn

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    # --- writing ------------------------------------------------------------------------------------
    def add(self, batch: Iterable[Incoming]) -> dict[str, list[int]]:
        """Store a batch in one transaction; returns car -> seqs now durable (duplicates included: they
        were stored before, so they are acknowledged again but not stored twice)."""
        durable: dict[str, list[int]] = {}
        with self.db as db:  # one commit for the batch
            for item in batch:
                r = item.record
                cur = db.execute(
                    "INSERT OR IGNORE INTO records VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (r.car, r.seq, r.kind, r.t, item.received, r.boot, json.dumps(r.body, sort_keys=True)),
                )
                if cur.rowcount == 1:
                    self._index(db, item)
                    self.inserted += 1
                durable.setdefault(r.car, []).append(r.seq)
        return durable

    def _index(self, db: sqlite3.Connection, item: Incoming) -> None:
        r, received = item.record, item.received
        db.execute(
            "INSERT INTO cars(name, first_seen, last_seen, last_t) VALUES (?, ?, ?, ?) ON CONFLICT(name) DO "
            "UPDATE SET last_seen = max(last_seen, excluded.last_seen), last_t = max(last_t, excluded.last_t)",
            (r.car, received, received, r.t),
        )
        if r.kind == HEARTBEAT:
            figures = [_get(r.body, path) for _, path in FIGURES]
            running = ((r.body.get("model") or {}).get("running") or {}).get("digest")
            db.execute(
                f"INSERT INTO heartbeats VALUES ({', '.join('?' * (6 + len(FIGURES)))})",
                (r.car, r.seq, r.t, received, *figures, _stops(r.body), running),
            )
            db.execute(
                "UPDATE cars SET heartbeat_seq = ?, heartbeat_t = ?, heartbeat_received = ?, heartbeat = ?, "
                "stops_since_heartbeat = 0 WHERE name = ? AND (heartbeat_seq IS NULL OR heartbeat_seq < ?)",
                (r.seq, r.t, received, json.dumps(r.body), r.car, r.seq),
            )
        elif r.kind == EVENT:
            kind = str(r.body.get("type"))
            db.execute(
                "INSERT INTO events VALUES (?, ?, ?, ?, ?, ?)",
                (r.car, r.seq, r.t, received, kind, json.dumps(r.body.get("detail") or {})),
            )
            db.execute(
                "UPDATE cars SET event_seq = ?, event = ?, event_t = ?, event_received = ?, "
                "stops_since_heartbeat = stops_since_heartbeat + (? AND ? > coalesce(heartbeat_seq, 0)) "
                "WHERE name = ? AND (event_seq IS NULL OR event_seq < ?)",
                (r.seq, json.dumps(r.body), r.t, received, kind == "watchdog_stop", r.seq, r.car, r.seq),
            )
        elif r.kind == TUB and item.tub is not None:
            b, cfg = r.body, item.tub.config
            db.execute(
                # a bundle is indexed once, even when a car that crashed between spooling its tub record and
                # noting that it had sends a second record for the same bundle
                "INSERT OR IGNORE INTO tubs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    r.car,
                    r.seq,
                    item.tub.ref,
                    b["ref"],
                    b.get("session"),
                    b.get("records"),
                    b.get("start"),
                    b.get("end"),
                    b.get("model"),
                    json.dumps(cfg, sort_keys=True),
                    received,
                ),
            )

    def set_clock_offset(self, car: str, offset_s: float) -> None:
        with self.db as db:
            db.execute("UPDATE cars SET clock_offset = ? WHERE name = ?", (offset_s, car))

    def refused(self, reason: str, car: str | None, detail: str, now: float | None = None) -> None:
        """Count one refused message (kept across restarts: the page and /metrics show the totals)."""
        with self.db as db:
            db.execute(
                "INSERT INTO refusals VALUES (?, 1, ?, ?, ?) ON CONFLICT(reason) DO UPDATE SET "
                "count = count + 1, last = excluded.last, last_car = excluded.last_car, "
                "last_detail = excluded.last_detail",
                (reason, now or time.time(), car, detail[:300]),
            )

    # --- reading ------------------------------------------------------------------------------------
    def has(self, car: str, seq: int) -> bool:
        return (
            self.db.execute("SELECT 1 FROM records WHERE car = ? AND seq = ?", (car, seq)).fetchone()
            is not None
        )

    def cars(self) -> list[dict[str, Any]]:
        rows = self.db.execute("SELECT * FROM cars ORDER BY name").fetchall()
        out = []
        for row in rows:
            d = dict(row)
            d["heartbeat"] = json.loads(d["heartbeat"]) if d["heartbeat"] else None
            d["event"] = json.loads(d["event"]) if d["event"] else None
            out.append(d)
        return out

    def history(self, car: str, since: float, limit: int = 20000) -> list[dict[str, Any]]:
        """The car's heartbeat figures received since `since` (oldest first, at most `limit`, the newest)."""
        rows = self.db.execute(
            "SELECT * FROM (SELECT * FROM heartbeats WHERE car = ? AND received >= ? "
            "ORDER BY received DESC, seq DESC LIMIT ?) ORDER BY received, seq",
            (car, since, limit),
        ).fetchall()
        return [dict(r) for r in rows]

    def events(self, car: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        where, args = ("WHERE car = ?", [car]) if car else ("", [])
        rows = self.db.execute(
            f"SELECT * FROM events {where} ORDER BY received DESC, seq DESC LIMIT ?", (*args, limit)
        ).fetchall()
        return [{**dict(r), "detail": json.loads(r["detail"])} for r in rows]

    def tubs(self, car: str | None = None, model: str | None = None) -> list[dict[str, Any]]:
        """The data bundle index, newest first; filtered by car and by the model that drove."""
        clauses, args = [], []
        if car:
            clauses.append("car = ?")
            args.append(car)
        if model:
            clauses.append("model = ?")
            args.append(model)
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        rows = self.db.execute(f"SELECT * FROM tubs {where} ORDER BY start DESC, seq DESC", args).fetchall()
        return [{**dict(r), "config": json.loads(r["config"])} for r in rows]

    def refusals(self) -> dict[str, dict[str, Any]]:
        return {r["reason"]: dict(r) for r in self.db.execute("SELECT * FROM refusals").fetchall()}

    def counts(self, car: str) -> dict[str, int]:
        """How many records of each kind the store holds for `car` (benchmarks, tests)."""
        rows = self.db.execute("SELECT kind, count(*) AS n FROM records WHERE car = ? GROUP BY kind", (car,))
        return {r["kind"]: r["n"] for r in rows}

    def seqs(self, car: str) -> list[int]:
        return [r[0] for r in self.db.execute("SELECT seq FROM records WHERE car = ? ORDER BY seq", (car,))]
