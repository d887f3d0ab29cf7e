"""The car's durable spool: every record is in SQLite before it is published, and leaves only when acked.

Why SQLite and not paho's queue: paho keeps unacknowledged messages in memory only, and a broker's PUBACK
says nothing about the NUC having stored the record. So a record is committed here first (WAL,
synchronous=FULL: it survives a crash or a power cut once `append` returns) and deleted only when the
ingest's application-level ack names its seq.

`seq` is the table's AUTOINCREMENT key, so it is never reused, even after deletes. A fresh spool starts
its seqs at the car's clock in milliseconds (when the clock is plausible), and a recovered one above
both the highest salvaged seq and that clock: a lost or corrupt file must never make the car reuse a seq
the ingest already stored (it would drop the new record as a duplicate).

A corrupt file (a card that lost power mid-write) is moved aside as `spool.db.corrupt-<time>` for a
person, every row that can still be read is salvaged into a fresh spool, and one line is logged.

Bounded: over `max_bytes`, the oldest heartbeats are thinned (one kept per minute, then per ten minutes,
then per hour); events and tub records are never dropped. Thread-safe (one connection, one lock).
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pitlane.fleet import protocol

logger = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS records (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, kind TEXT NOT NULL, payload BLOB NOT NULL, created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS acked_tubs (seq INTEGER PRIMARY KEY);
"""
PLAUSIBLE_CLOCK = 1_600_000_000.0  # [s] unix time of 2020-09: an earlier clock was never set (no RTC, no NTP)
THIN_STEPS_S: tuple[float, ...] = (60.0, 600.0, 3600.0)  # [s] one heartbeat kept per this, oldest first
SALVAGE_BATCH = 500  # rows read at once while salvaging a corrupt file
SALVAGE_QUERIES = 4000  # most queries spent salvaging one file (a file damaged everywhere gives up here)
MAX_SEQ = (1 << 63) - 1


class SpoolFull(Exception):
    """A heartbeat refused: the spool is at its size limit even after thinning (events and tubs still go in)."""


@dataclass(frozen=True)
class Pending:
    """One unacked record as the sender publishes it."""

    seq: int
    kind: str
    payload: bytes


def seq_floor(clock_s: float) -> int:
    """The lowest seq a new spool may start from: the clock in ms when it is plausible, else 0."""
    return int(clock_s * 1000) if clock_s >= PLAUSIBLE_CLOCK else 0


class Spool:
    """The SQLite spool of one car at `path` (created if absent, recovered if corrupt)."""

    def __init__(
        self,
        path: str | Path,
        car: str,
        *,
        max_bytes: int | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.path = Path(path)
        self.car = protocol.check_car_name(car)
        self.max_bytes = max_bytes
        self.clock = clock
        self.thinned = 0  # heartbeats dropped by thinning since open
        self.refused = 0  # heartbeats refused because the spool was full
        self.recovered_from: Path | None = None  # the corrupt file moved aside at open, if any
        self._lock = threading.Lock()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.db = self._open()
        self.boot = self._meta("boot")

    # --- opening and recovery ----------------------------------------------------------------------------
    def _connect(self, path: Path) -> sqlite3.Connection:
        db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False, timeout=10)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        return db

    def _open(self) -> sqlite3.Connection:
        existed = self.path.exists()
        problem, db = None, None
        try:
            db = self._connect(self.path)
            if existed:
                rows = db.execute("PRAGMA integrity_check").fetchall()
                if rows != [("ok",)]:
                    problem = "; ".join(str(r[0]) for r in rows[:3])
            if problem is None:
                db.executescript(SCHEMA)
                self._init_meta(db, floor=0 if existed else seq_floor(self.clock()))
                return db
        except sqlite3.DatabaseError as exc:
            problem = str(exc)
        if db is not None:
            db.close()
        return self._recover(problem or "unreadable")

    def _init_meta(self, db: sqlite3.Connection, floor: int) -> None:
        db.execute("BEGIN IMMEDIATE")
        try:
            db.execute("INSERT OR IGNORE INTO meta VALUES ('boot', ?)", (uuid.uuid4().hex,))
            db.execute("INSERT OR IGNORE INTO meta VALUES ('car', ?)", (self.car,))
            if floor > 0 and db.execute("SELECT count(*) FROM sqlite_sequence").fetchone()[0] == 0:
                db.execute("INSERT INTO sqlite_sequence (name, seq) VALUES ('records', ?)", (floor,))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        car = db.execute("SELECT value FROM meta WHERE key='car'").fetchone()[0]
        if car != self.car:
            logger.warning(
                "fleet spool %s was written as car %r; it now sends as %r", self.path, car, self.car
            )

    def _recover(self, problem: str) -> sqlite3.Connection:
        aside = self.path.with_name(f"{self.path.name}.corrupt-{time.strftime('%Y%m%dT%H%M%S')}")
        for suffix in ("", "-wal", "-shm"):
            src = Path(str(self.path) + suffix)
            if src.exists():
                os.replace(src, Path(str(aside) + suffix))
        rows, highest = salvage(aside, self.car)
        db = self._connect(self.path)
        db.executescript(SCHEMA)
        floor = max(highest, seq_floor(self.clock()))
        self._init_meta(db, floor)
        db.execute("BEGIN IMMEDIATE")
        db.executemany("INSERT OR IGNORE INTO records (seq, kind, payload, created) VALUES (?,?,?,?)", rows)
        db.execute("COMMIT")
        self.recovered_from = aside
        logger.error(
            "fleet spool %s was corrupt (%s): moved aside as %s, salvaged %d unsent record(s), seqs continue "
            "above %d",
            self.path,
            problem[:120],
            aside.name,
            len(rows),
            floor,
        )
        return db

    def _meta(self, key: str) -> str:
        with self._lock:
            return self.db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()[0]

    # --- writing ---------------------------------------------------------------------------------------------
    def append(self, kind: str, body: dict[str, Any], t: float | None = None) -> protocol.Record:
        """Commit a record (checked against the protocol first) and return it with its seq.

        ProtocolError: the body is invalid or too large (nothing stored). SpoolFull: a heartbeat with the
        spool at its limit after thinning (events and tub records are always stored)."""
        protocol.check_body(kind, body, self.car)
        t = self.clock() if t is None else t
        if kind == protocol.HEARTBEAT and self.max_bytes is not None and self.used_bytes() > self.max_bytes:
            self.thin()
            if self.used_bytes() > self.max_bytes:
                self.refused += 1
                if self.refused == 1 or self.refused % 3600 == 0:
                    logger.error(
                        "fleet spool %s is full (%.1f MB) even after thinning: %d heartbeat(s) not stored",
                        self.path,
                        self.max_bytes / 2**20,
                        self.refused,
                    )
                raise SpoolFull(f"fleet spool {self.path} is full")
        with self._lock:
            self.db.execute("BEGIN IMMEDIATE")
            try:
                cur = self.db.execute(
                    "INSERT INTO records (kind, payload, created) VALUES (?, x'', ?)", (kind, t)
                )
                seq = int(cur.lastrowid or 0)
                record = protocol.Record(self.car, seq, kind, t, self.boot, body)
                self.db.execute("UPDATE records SET payload=? WHERE seq=?", (record.encode(), seq))
                self.db.execute("COMMIT")
            except BaseException:
                self.db.execute("ROLLBACK")
                raise
        return record

    def ack(self, seqs: Iterable[tuple[int, int]]) -> int:
        """Delete exactly the acked seqs (closed ranges); unknown ones are ignored. Returns rows deleted."""
        deleted = 0
        with self._lock:
            self.db.execute("BEGIN IMMEDIATE")
            try:
                for a, b in seqs:
                    self.db.execute(  # the uploader deletes a tub only once its record is acked
                        "INSERT OR IGNORE INTO acked_tubs SELECT seq FROM records WHERE kind=? AND seq BETWEEN ? AND ?",
                        (protocol.TUB, a, b),
                    )
                    deleted += self.db.execute(
                        "DELETE FROM records WHERE seq BETWEEN ? AND ?", (a, b)
                    ).rowcount
                self.db.execute("COMMIT")
            except BaseException:
                self.db.execute("ROLLBACK")
                raise
        return deleted

    def thin(self) -> int:
        """Drop heartbeats, oldest first, keeping one per minute (then per ten minutes, then per hour)
        until the spool fits; events and tub records are never touched. Returns heartbeats dropped."""
        dropped = 0
        for step in THIN_STEPS_S:
            if self.max_bytes is None or self.used_bytes() <= self.max_bytes:
                break
            with self._lock:
                rows = self.db.execute(
                    "SELECT seq, created FROM records WHERE kind=? ORDER BY seq", (protocol.HEARTBEAT,)
                ).fetchall()
                oldest = rows[: max(1, len(rows) // 2)] if step == THIN_STEPS_S[0] else rows
                kept: set[int] = set()
                drop = []
                for seq, created in oldest:
                    bucket = int(created // step)
                    if bucket in kept:
                        drop.append((seq,))
                    else:
                        kept.add(bucket)
                self.db.execute("BEGIN IMMEDIATE")
                self.db.executemany("DELETE FROM records WHERE seq=?", drop)
                self.db.execute("COMMIT")
            dropped += len(drop)
        if dropped:
            self.thinned += dropped
            logger.warning(
                "fleet spool %s reached its %.1f MB limit: thinned %d old heartbeat(s) (events and tubs kept)",
                self.path,
                (self.max_bytes or 0) / 2**20,
                dropped,
            )
        return dropped

    # --- reading ------------------------------------------------------------------------------------------------
    def pending(self, limit: int, after: int = 0) -> list[Pending]:
        """The oldest `limit` unacked records with seq > `after`, in seq order."""
        with self._lock:
            rows = self.db.execute(
                "SELECT seq, kind, payload FROM records WHERE seq > ? ORDER BY seq LIMIT ?", (after, limit)
            ).fetchall()
        return [Pending(int(s), str(k), bytes(p)) for s, k, p in rows]

    def acked(self, seq: int) -> bool:
        """True when the ingest acked tub record `seq` (kept after the row is gone)."""
        with self._lock:
            return self.db.execute("SELECT 1 FROM acked_tubs WHERE seq=?", (seq,)).fetchone() is not None

    def pending_seq(self, seq: int) -> bool:
        """True while record `seq` waits in the spool for its ack."""
        with self._lock:
            return self.db.execute("SELECT 1 FROM records WHERE seq=?", (seq,)).fetchone() is not None

    def count(self, kind: str | None = None) -> int:
        with self._lock:
            if kind is None:
                return int(self.db.execute("SELECT count(*) FROM records").fetchone()[0])
            return int(self.db.execute("SELECT count(*) FROM records WHERE kind=?", (kind,)).fetchone()[0])

    def last_seq(self) -> int:
        """The highest seq ever issued by this spool (0 if none)."""
        with self._lock:
            row = self.db.execute("SELECT seq FROM sqlite_sequence WHERE name='records'").fetchone()
        return int(row[0]) if row else 0

    def used_bytes(self) -> int:
        """[B] pages in use (freed pages are reused, so the file stops growing at about the limit)."""
        with self._lock:
            page = self.db.execute("PRAGMA page_size").fetchone()[0]
            pages = self.db.execute("PRAGMA page_count").fetchone()[0]
            free = self.db.execute("PRAGMA freelist_count").fetchone()[0]
        return int(page * (pages - free))

    def file_bytes(self) -> int:
        """[B] the spool's files on disk (database + write-ahead log)."""
        return sum(
            Path(str(self.path) + s).stat().st_size for s in ("", "-wal") if Path(str(self.path) + s).exists()
        )

    def close(self) -> None:
        with self._lock, contextlib.suppress(sqlite3.Error):
            self.db.close()


# --- salvage -------------------------------------------------------------------------------------------------
def salvage(path: Path, car: str) -> tuple[list[tuple[int, str, bytes, float]], int]:
    """(rows that still read as valid records of `car`, the highest seq the file admits to having issued).

    Reads in seq order; a read that fails is split in halves (the upper half read first), so a damaged
    page costs only the rows on it, within a fixed number of queries."""
    rows: list[tuple[int, str, bytes, float]] = []
    highest = 0
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None)
    except sqlite3.Error:
        return rows, 0
    with contextlib.closing(db):
        for query in ("SELECT seq FROM sqlite_sequence WHERE name='records'", "SELECT max(seq) FROM records"):
            with contextlib.suppress(sqlite3.Error, TypeError):
                highest = max(highest, int(db.execute(query).fetchone()[0] or 0))
        found: list[tuple[Any, ...]] = []
        _scan(db, 0, MAX_SEQ, found, [SALVAGE_QUERIES])
    for seq, kind, payload, created in sorted(found, key=lambda r: int(r[0])):
        if _valid(car, seq, payload):
            rows.append((int(seq), str(kind), bytes(payload), float(created)))
    return rows, max(highest, max((r[0] for r in rows), default=0))


def _scan(db: sqlite3.Connection, lo: int, hi: int, out: list[tuple[Any, ...]], budget: list[int]) -> None:
    """Append the readable rows with lo < seq <= hi to `out`."""
    while lo < hi and budget[0] > 0:
        budget[0] -= 1
        try:
            batch = db.execute(
                "SELECT seq, kind, payload, created FROM records WHERE seq > ? AND seq <= ? ORDER BY seq "
                "LIMIT ?",
                (lo, hi, SALVAGE_BATCH),
            ).fetchall()
        except sqlite3.Error:
            if hi - lo <= 1:
                return
            mid = lo + (hi - lo) // 2
            _scan(db, mid, hi, out, budget)  # past the damage first, then narrow down on it
            hi = mid
            continue
        if not batch:
            return
        out.extend(batch)
        lo = int(batch[-1][0])


def _valid(car: str, seq: object, payload: object) -> bool:
    """A salvaged row is kept only if its payload is a valid record of this car under the same seq."""
    if not isinstance(payload, bytes | bytearray | memoryview):
        return False
    try:
        record = protocol.parse_record(bytes(payload))
    except protocol.ProtocolError:
        return False
    return record.car == car and record.seq == seq
