"""A car offline for 24 h: 86,400 heartbeats (1 Hz of simulated time) wait in its spool; when it reconnects
every one reaches the NUC's store once and in order. Prints the time to drain and the spool's size on disk.

Usage: python bench/bench_fleet_offline.py [--hours 24] [--append-all]

The real parts: the car's spool and sender (pitlane.fleet.spool/.sender), pitlane's Mosquitto config, the
ingest and the fleet store. The heartbeats are full ones (every key filled, ~700 bytes of JSON), the car's
clock advancing one second each. Spooling: the first 1,000 heartbeats are appended as the car appends them
(one committed transaction each: the cost per heartbeat is printed); the rest go into the same table in one
transaction, the same rows and payloads, to spare the benchmark ~6 minutes of fsyncs (`--append-all` appends
every one).
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from pathlib import Path

CAR = "car-1"
APPENDED = 1000  # heartbeats spooled one transaction each (the car's way), to time it


def heartbeat(i: int, backlog: int) -> dict:
    from pitlane.fleet.protocol import heartbeat_body

    return heartbeat_body(
        CAR,
        profile="pi",
        image="sha256:" + "c" * 64,
        pitlane_version="0.1.0",
        model={
            "running": {"digest": "sha256:" + "a" * 64, "serial": 12, "state": "running"},
            "desired": "nuc.local:5000/pitlane/models@sha256:" + "a" * 64,
            "differs_since": None,
        },
        loop_hz=19.9 + (i % 7) / 100,
        pilot_ms={"p50": 4.1 + (i % 5) / 10, "p99": 7.9 + (i % 3) / 10},
        watchdog_stops={"stale_frame": i // 10000, "pilot_error": 0},
        twin=None,
        disk_free_mb=20000.0 - i / 100,
        backlog={"records": backlog, "tubs": 0, "tub_records": 0},
        drift={"score": 0.3 + (i % 11) / 100, "frames": 240, "baseline": "bundle"},
        mode="local",
    )


def spool_offline(spool, count: int, t0: float, append_all: bool) -> float:
    """Spool `count` heartbeats at t0, t0+1, ...; returns [ms] per heartbeat appended the car's way."""
    from pitlane.fleet import protocol

    n = count if append_all else min(APPENDED, count)
    started = time.perf_counter()
    for i in range(n):
        spool.append(protocol.HEARTBEAT, heartbeat(i, i), t=t0 + i)
    per_append_ms = (time.perf_counter() - started) / max(n, 1) * 1000
    with spool._lock:  # the same rows append() writes, in one transaction
        spool.db.execute("BEGIN IMMEDIATE")
        for i in range(n, count):
            cur = spool.db.execute(
                "INSERT INTO records (kind, payload, created) VALUES (?, x'', ?)",
                (protocol.HEARTBEAT, t0 + i),
            )
            seq = int(cur.lastrowid or 0)
            record = protocol.Record(CAR, seq, protocol.HEARTBEAT, t0 + i, spool.boot, heartbeat(i, i))
            spool.db.execute("UPDATE records SET payload=? WHERE seq=?", (record.encode(), seq))
        spool.db.execute("COMMIT")
    return per_append_ms


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--hours", type=float, default=24.0, help="simulated hours offline (one heartbeat a second)"
    )
    ap.add_argument("--append-all", action="store_true", help="append every heartbeat one transaction each")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)

    from pitlane.fleet import broker as fb
    from pitlane.fleet.ingest import Ingest, IngestConfig
    from pitlane.fleet.sender import Sender, SenderParams
    from pitlane.fleet.spool import Spool
    from pitlane.fleet.store import Store

    count = int(args.hours * 3600)
    tmp = Path(tempfile.mkdtemp(prefix="bench-fleet-offline-"))
    spool = Spool(tmp / "car" / "spool.db", CAR)
    t0 = time.time() - count
    t = time.perf_counter()
    per_append_ms = spool_offline(spool, count, t0, args.append_all)
    spool_s = time.perf_counter() - t
    spool.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    size = spool.file_bytes()
    print(
        f"spooled {spool.count()} heartbeats ({args.hours:g} h at 1 Hz) in {spool_s:.0f} s; appending one "
        f"costs {per_append_ms:.2f} ms (one committed transaction, synchronous=FULL)"
    )
    print(f"spool on disk: {size / 2**20:.1f} MiB ({size / count:.0f} B per heartbeat)")

    passwd = tmp / "broker" / "passwd"
    password = fb.add_car(passwd, CAR)
    ingest_password = fb.ingest_password(tmp / "broker", passwd)  # before the broker starts: no refusal
    broker = fb.Broker(fb.BrokerConfig(data=tmp / "broker", port=0)).start()
    store = Store(tmp / "fleet.db")
    ingest = Ingest(IngestConfig(broker.host, ingest_password, passwd), store).start()
    try:
        assert ingest.wait_connected(10)
        started = time.perf_counter()
        sender = Sender(spool, SenderParams.from_broker(broker.host, password=password)).start()
        last_print = started
        while spool.count():
            time.sleep(0.1)
            if time.perf_counter() - last_print > 10:
                last_print = time.perf_counter()
                print(
                    f"  {count - spool.count()} delivered and acked after {last_print - started:.0f} s",
                    flush=True,
                )
        drain_s = time.perf_counter() - started
        sender.stop()
        rows = store.db.execute(
            "SELECT seq, t, received FROM heartbeats WHERE car = ? ORDER BY seq", (CAR,)
        ).fetchall()
    finally:
        ingest.stop()
        broker.stop()
    seqs = [r[0] for r in rows]
    ts = [r[1] for r in rows]
    received = [r[2] for r in rows]
    in_order = all(a < b for a, b in zip(ts, ts[1:], strict=False)) and all(
        a <= b for a, b in zip(received, received[1:], strict=False)
    )
    contiguous = seqs == list(range(seqs[0], seqs[0] + count)) if seqs else False
    print(
        f"reconnected: all {count} acked after {drain_s:.1f} s ({count / drain_s:.0f} records/s); "
        f"stored {len(rows)}, once each: {contiguous}, in order (car time and NUC receive time): {in_order}; "
        f"duplicates absorbed by the ingest: {ingest.stats['duplicates']}"
    )
    return 0 if len(rows) == count and contiguous and in_order else 1


if __name__ == "__main__":
    raise SystemExit(main())
