"""Kill points: over >= 1,000 faults, every heartbeat and every tub record a car committed arrives at the NUC
exactly once; the same faults against default Mosquitto + plain paho show what they lose.

Goal (issue 21): 0 lost, 0 duplicated. Usage: python bench/bench_fleet_killpoints.py [--kill-points 1000]
[--plain-kill-points N] [--seed 0]

The real parts: pitlane's Mosquitto config, the car's spool and sender (pitlane.fleet.spool/.sender), the
ingest and its store, the registry gateway and Debian's docker-registry; the link runs through
pitlane.artifacts.relay. Each kill point is one car process (forked from a pre-loaded zygote, so 1,000 of them
take minutes, not a quarter of an hour) that spools heartbeats at 200 Hz and, every third one, uploads a tub
bundle through the gateway and spools its tub record; at a random moment one fault strikes, in turn:
  car-spool   the car process is SIGKILLed while spooling and sending
  car-upload  ... while it uploads a tub bundle (its next start resumes the upload)
  broker      Mosquitto is SIGKILLed (no final save) and restarted
  registry    the registry is SIGKILLed and restarted after up to 0.3 s (uploads and tub checks fail meanwhile)
  link        the relay cuts every connection between car and broker for up to 0.2 s
and every car process ends by SIGKILL (none exits cleanly). At the end a last car process drains its spool.
"Committed" = what the car process reported after its spool's commit returned (plain: after paho's publish
returned); a record is lost when committed and never stored, duplicated when stored twice.

The plain suite: default Mosquitto (no persistence, max_queued_messages 1000), a car that publishes each
record once with paho at QoS 1 (paho's queue is in memory; no spool, no application ack), and a NUC that
subscribes with a persistent session and keeps what arrives.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

CAR = "car-1"
HEARTBEAT_S = 0.005  # [s] between two spooled heartbeats in the bench (a car sends one a second)
TUB_EVERY = 3  # every third car process uploads a tub bundle
LAYER_BYTES = 96 * 1024  # [B] each of a bundle's two chunks
KINDS = ("car-spool", "car-upload", "broker", "registry", "link")


# --- the car process (forked from the zygote) ---------------------------------------------------------------
def bundle_parts(session: int) -> tuple[list[bytes], bytes]:
    """Deterministic chunks and config of tub session `session` (the same bytes at every retry)."""
    seed = hashlib.sha256(f"session-{session}".encode()).digest()
    chunks = [(hashlib.sha256(seed + bytes([i])).digest() * (LAYER_BYTES // 32)) for i in range(2)]
    config: dict[str, object] = {
        "schema": "pitlane.tub-bundle/1",
        "car": CAR,
        "user": None,
        "session": f"s{session}",
        "records": 2000,
        "deleted": 0,
        "start": 1.0,
        "end": 2.0,
        "model": None,
        "profile": "twin",
        "chunks": [],
        "created": "2026-01-01T00:00:00Z",
    }
    return chunks, json.dumps(config, sort_keys=True).encode()


def upload(gateway: str, password: str | None, session: int) -> str:
    """Push the bundle (only what the registry lacks), retrying until the gateway and registry answer."""
    from pitlane.artifacts import oci
    from pitlane.errors import NotFound, Refused, Unavailable

    client = oci.Client(gateway, timeout_s=5, auth=(CAR, password) if password is not None else None)
    repo = f"data/{CAR}"
    chunks, config = bundle_parts(session)
    manifest = oci.canonical_json(
        {
            "schemaVersion": 2,
            "mediaType": oci.OCI_MANIFEST,
            "artifactType": "application/vnd.pitlane.tub.v1",
            "config": oci.descriptor("application/vnd.pitlane.tub.config.v1+json", config),
            "layers": [oci.descriptor("application/vnd.pitlane.tub.chunk.v1.tar", c) for c in chunks],
        }
    )
    while True:
        try:
            for blob in (*chunks, config):
                client.push_blob(repo, blob)
            digest = client.push_manifest(repo, manifest, oci.sha256_digest(manifest))
            return f"{gateway}/{repo}@{digest}"
        except (Unavailable, NotFound, Refused):
            time.sleep(0.05)


def heartbeat_body(n: int, backlog: int = 0) -> dict:
    from pitlane.fleet.protocol import heartbeat_body as body

    hb = body(CAR, profile="twin", loop_hz=20.0, backlog={"records": backlog, "tubs": 0, "tub_records": 0})
    hb["bench_n"] = n  # the bench's id of this heartbeat (extra keys are allowed)
    return hb


def tub_body(ref: str, session: int) -> dict:
    return {"ref": ref, "session": f"s{session}", "records": 2000, "start": 1.0, "end": 2.0, "model": None}


def car_pitlane(cfg: dict, out) -> None:
    """A car with the spool and sender; a pending upload (a previous process died in it) is resumed first."""
    from pitlane.fleet import protocol
    from pitlane.fleet.sender import Sender, SenderParams
    from pitlane.fleet.spool import Spool

    spool = Spool(cfg["spool"], CAR)
    params = SenderParams.from_broker(
        cfg["broker"],
        password=cfg["password"],
        resend_s=1.0,
        backoff_s=0.05,
        max_backoff_s=0.3,
        keepalive_s=2,
    )
    sender = Sender(spool, params).start()
    pending = Path(cfg["spool"]).with_name("tub.pending")
    sessions = [int(pending.read_text())] if pending.exists() else []
    if cfg["tub"] is not None:
        sessions.append(cfg["tub"])

    def uploads() -> None:  # beside the spooling, as the car's uploader runs beside its loop
        for session in sessions:
            tmp = pending.with_suffix(".tmp")
            tmp.write_text(str(session))
            os.replace(tmp, pending)
            out.write(f"upload-start {session}\n")
            ref = upload(cfg["gateway"], cfg["password"], session)
            record = spool.append(protocol.TUB, tub_body(ref, session))
            out.write(f"tub {session} {record.seq}\n")
            pending.unlink()
            sender.poke()

    uploader = threading.Thread(target=uploads, daemon=True)
    uploader.start()
    n = cfg["iter"] * 100_000
    end = time.monotonic() + cfg["run_s"]
    while time.monotonic() < end:
        record = spool.append(protocol.HEARTBEAT, heartbeat_body(n, spool.count()))
        out.write(f"hb {n} {record.seq}\n")
        sender.poke()
        n += 1
        time.sleep(HEARTBEAT_S)
    uploader.join()
    while spool.count():
        time.sleep(0.02)
    out.write("drained\n")


def car_plain(cfg: dict, out) -> None:
    """A plain paho car: each record published once at QoS 1, nothing kept but paho's memory."""
    import paho.mqtt.client as mqtt

    from pitlane.fleet import protocol

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"{CAR}-plain")
    sent: dict[int, int] = {}  # paho message id -> heartbeat n

    def on_publish(_c, _u, mid, _reason, _props) -> None:  # the broker's PUBACK: "delivered", says paho
        if mid in sent:
            out.write(f"puback {sent.pop(mid)}\n")

    client.on_publish = on_publish
    host, _, port = cfg["broker"].rpartition(":")
    client.reconnect_delay_set(1, 1)
    client.connect_async(host, int(port))
    client.loop_start()
    seq = cfg["iter"] * 100_000

    def uploads() -> None:
        if cfg["tub"] is None:
            return
        out.write(f"upload-start {cfg['tub']}\n")
        ref = upload(cfg["gateway"], None, cfg["tub"])
        body = tub_body(ref, cfg["tub"])
        record = protocol.Record(CAR, seq + 99_999, protocol.TUB, time.time(), "0" * 32, body)
        client.publish(protocol.up_topic(CAR), record.encode(), qos=1)
        out.write(f"tub {cfg['tub']} {record.seq}\n")

    uploader = threading.Thread(target=uploads, daemon=True)
    uploader.start()
    n = seq
    end = time.monotonic() + cfg["run_s"]
    while time.monotonic() < end:
        record = protocol.Record(CAR, n + 1, protocol.HEARTBEAT, time.time(), "0" * 32, heartbeat_body(n))
        info = client.publish(protocol.up_topic(CAR), record.encode(), qos=1)
        sent[info.mid] = n
        out.write(f"hb {n} {n + 1}\n")
        n += 1
        time.sleep(HEARTBEAT_S)
    uploader.join()
    out.write("drained\n")


def zygote() -> int:
    """Pre-loads the car's modules, then forks one car process per command line (JSON) on stdin."""
    import logging

    import paho.mqtt.client  # noqa: F401 - loaded once, shared by every fork
    import requests  # noqa: F401

    import pitlane.artifacts.oci  # noqa: F401
    import pitlane.fleet.sender  # noqa: F401
    import pitlane.fleet.spool  # noqa: F401

    logging.basicConfig(level=logging.ERROR)  # the sender's outage lines, a thousand times over: not here
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # children are reaped by the kernel
    for line in sys.stdin:
        cfg = json.loads(line)
        pid = os.fork()
        if pid == 0:
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            random.seed()
            with open(cfg["out"], "a", buffering=1) as out:
                (car_pitlane if cfg["mode"] == "pitlane" else car_plain)(cfg, out)
            os._exit(0)
        print(pid, flush=True)
    return 0


# --- the NUC side and the faults ------------------------------------------------------------------------------
class Zygote:
    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--zygote"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )

    def fork(self, cfg: dict) -> int:
        assert self.proc.stdin and self.proc.stdout
        self.proc.stdin.write(json.dumps(cfg) + "\n")
        self.proc.stdin.flush()
        return int(self.proc.stdout.readline())

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()


def sigkill(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.002)


def wait_for_line(path: Path, prefix: str, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if path.exists() and any(ln.startswith(prefix) for ln in path.read_text().splitlines()):
            return True
        time.sleep(0.003)
    return False


class Nuc:
    """Registry, broker (pitlane's config or the default), relay, and the receiving side."""

    def __init__(self, root: Path, mode: str) -> None:
        from pitlane.artifacts.registry import Registry, RegistryConfig
        from pitlane.artifacts.relay import Relay
        from pitlane.fleet import broker as fb

        self.root, self.mode, self.fb = root, mode, fb
        self.registry = Registry(RegistryConfig(storage=root / "registry")).start()
        self.password: str | None = None
        if mode == "pitlane":
            passwd = root / "broker" / "passwd"
            self.password = fb.add_car(passwd, CAR)
            self.ingest_password = fb.ingest_password(root / "broker", passwd)
        self.broker_port = fb._free_port("127.0.0.1")
        self.broker_proc: subprocess.Popen | None = None
        self.broker: Any = None  # pitlane.fleet.broker.Broker
        self.start_broker()
        self.relay = Relay(f"127.0.0.1:{self.broker_port}")
        self.start_receiver()

    def start_broker(self) -> None:
        fb = self.fb
        if self.mode == "pitlane":
            cfg = fb.BrokerConfig(data=self.root / "broker", port=self.broker_port)
            self.broker = fb.Broker(cfg).start()
            return
        conf = self.root / "default.conf"  # Mosquitto's defaults but for an anonymous listener
        conf.write_text(f"listener {self.broker_port} 127.0.0.1\nallow_anonymous true\n")
        self.broker_proc = subprocess.Popen([fb.BINARY, "-c", str(conf)], stderr=subprocess.DEVNULL)
        while not fb.port_open("127.0.0.1", self.broker_port):
            time.sleep(0.01)

    def kill_broker(self) -> None:
        if self.mode == "pitlane":
            assert self.broker is not None
            self.broker.kill()
        elif self.broker_proc is not None:
            self.broker_proc.kill()
            self.broker_proc.wait()

    def kill_registry(self) -> None:
        proc = self.registry.process
        if proc is not None:
            proc.kill()
            proc.wait()
        self.registry.process = None

    def start_registry(self) -> None:
        from pitlane.artifacts.registry import RegistryConfig

        self.registry.config = RegistryConfig(storage=self.root / "registry", port=self.registry.port)
        self.registry.start()

    def start_receiver(self) -> None:
        if self.mode == "pitlane":
            from pitlane.fleet.gateway import Gateway, GatewayConfig
            from pitlane.fleet.ingest import Ingest, IngestConfig
            from pitlane.fleet.store import Store

            passwd = self.root / "broker" / "passwd"
            self.store = Store(self.root / "fleet.db")
            self.ingest = Ingest(
                IngestConfig(
                    f"127.0.0.1:{self.broker_port}", self.ingest_password, passwd, self.registry.host
                ),
                self.store,
            ).start()
            self.gateway = Gateway(GatewayConfig(self.registry.host, passwd, port=0)).start()
            self.gateway_host = self.gateway.host
        else:
            self.received: Counter[tuple[str, int]] = Counter()
            self.plain = plain_receiver(self.broker_port, self.received)
            self.gateway_host = self.registry.host

    def stored(self) -> tuple[Counter, Counter, int]:
        """(heartbeat n -> times stored, tub session -> bundles indexed, tub records stored)."""
        if self.mode == "plain":
            hbs = Counter({n: c for (kind, n), c in self.received.items() if kind == "hb"})
            tubs = Counter({n: c for (kind, n), c in self.received.items() if kind == "tub"})
            return hbs, tubs, sum(tubs.values())
        hbs, tub_records = Counter(), 0
        for (body,) in self.store.db.execute(
            "SELECT body FROM records WHERE car = ? AND kind = 'heartbeat'", (CAR,)
        ):
            hbs[json.loads(body)["bench_n"]] += 1
        tub_records = self.store.db.execute("SELECT count(*) FROM records WHERE kind = 'tub'").fetchone()[0]
        tubs = Counter(int(t["session"][1:]) for t in self.store.tubs(car=CAR))
        return hbs, tubs, tub_records

    def close(self) -> None:
        self.relay.close()
        if self.mode == "pitlane":
            self.ingest.stop()
            self.gateway.stop()
        else:
            self.plain.disconnect()
            self.plain.loop_stop()
        self.kill_broker()
        self.registry.stop()


def plain_receiver(port: int, received: Counter) -> Any:
    """A NUC without an ingest: a persistent QoS 1 subscription that keeps what arrives."""
    import paho.mqtt.client as mqtt

    from pitlane.fleet import protocol

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="plain-nuc", clean_session=False)

    def on_message(_c, _u, msg):
        doc = json.loads(msg.payload)
        if doc["kind"] == "heartbeat":
            received["hb", doc["body"]["bench_n"]] += 1
        elif doc["kind"] == "tub":
            received["tub", int(doc["body"]["session"][1:])] += 1

    client.on_connect = lambda c, u, f, rc, p: c.subscribe(protocol.UP_WILDCARD, qos=1)
    client.on_message = on_message
    client.reconnect_delay_set(1, 1)
    client.connect("127.0.0.1", port)
    client.loop_start()
    return client


def strike(kind: str, nuc: Nuc, pid: int, out: Path, rng: random.Random) -> None:
    """One fault at a random moment of the car process's life; the car process ends by SIGKILL."""
    time.sleep(rng.uniform(0.01, 0.15))
    if kind == "car-upload":
        wait_for_line(out, "upload-start", 2.0)
        time.sleep(rng.uniform(0.0, 0.06))
    elif kind == "broker":
        nuc.kill_broker()
        time.sleep(rng.uniform(0.0, 0.2))
        nuc.start_broker()
    elif kind == "registry":
        nuc.kill_registry()
        time.sleep(rng.uniform(0.0, 0.3))
        nuc.start_registry()
    elif kind == "link":
        nuc.relay.reset(cut_after=rng.randint(0, 4000))
        time.sleep(rng.uniform(0.02, 0.2))
        nuc.relay.reset(None)
    if kind != "car-spool" and kind != "car-upload":
        time.sleep(rng.uniform(0.0, 0.1))
    sigkill(pid)


def run_suite(mode: str, kill_points: int, root: Path, seed: int) -> dict:
    rng = random.Random(seed)
    root.mkdir(parents=True)
    nuc = Nuc(root, mode)
    zygote = Zygote()
    outs = root / "cars"
    outs.mkdir()
    faults: Counter[str] = Counter()
    started = time.perf_counter()
    try:
        for k in range(kill_points):
            kind = KINDS[k % len(KINDS)]
            cfg: dict[str, Any] = {
                "mode": mode,
                "iter": k + 1,
                "out": str(outs / f"{k + 1}.txt"),
                "spool": str(root / "car" / "spool.db"),
                "broker": nuc.relay.host,
                "gateway": nuc.gateway_host,
                "password": nuc.password,
                "tub": k + 1 if kind == "car-upload" or k % TUB_EVERY == 0 else None,
                "run_s": 60.0,
            }
            pid = zygote.fork(cfg)
            strike(kind, nuc, pid, Path(cfg["out"]), rng)
            faults[kind] += 1
            if (k + 1) % 100 == 0:
                print(
                    f"  {mode}: {k + 1}/{kill_points} kill points, {time.perf_counter() - started:.0f} s",
                    flush=True,
                )
        fault_s = time.perf_counter() - started
        drain_started = time.perf_counter()
        last = outs / "drain.txt"
        cfg.update(iter=kill_points + 1, out=str(last), tub=None, run_s=0.0)
        pid = zygote.fork(cfg)
        drained = wait_for_line(last, "drained", 120.0)
        sigkill(pid)
        settle(nuc)
        drain_s = time.perf_counter() - drain_started
        return {
            "faults": dict(faults),
            "fault_s": fault_s,
            "drain_s": drain_s,
            "drained": drained,
            **verify(nuc, outs, mode),
        }
    finally:
        zygote.close()
        nuc.close()


def settle(nuc: Nuc, quiet_s: float = 2.0) -> None:
    """Until nothing new has been stored for `quiet_s` (the last acks and deliveries are in)."""
    last, since = None, time.monotonic()
    while time.monotonic() - since < quiet_s:
        now = (
            nuc.stored()[0].total()
            if nuc.mode == "plain"
            else nuc.store.db.execute("SELECT count(*) FROM records").fetchone()[0]
        )
        if now != last:
            last, since = now, time.monotonic()
        time.sleep(0.1)


def verify(nuc: Nuc, outs: Path, mode: str) -> dict:
    """Committed (what the car processes reported) against stored."""
    committed: dict[int, int] = {}
    fault_of: dict[int, str] = {}  # heartbeat n -> the fault of the car process that committed it
    tubs_committed: set[int] = set()
    uploads_started: set[int] = set()
    pubacked: set[int] = set()  # plain cars: heartbeats the broker acknowledged to paho
    for path in outs.glob("*.txt"):
        kind = KINDS[(int(path.stem) - 1) % len(KINDS)] if path.stem.isdigit() else "drain"
        for line in path.read_text().splitlines():
            parts = line.split()
            if len(parts) == 3 and parts[0] == "hb":
                committed[int(parts[1])] = int(parts[2])
                fault_of[int(parts[1])] = kind
            elif len(parts) == 3 and parts[0] == "tub":
                tubs_committed.add(int(parts[1]))
            elif len(parts) == 2 and parts[0] == "puback":
                pubacked.add(int(parts[1]))
            elif len(parts) == 2 and parts[0] == "upload-start":
                uploads_started.add(int(parts[1]))
    hbs, tubs, tub_records = nuc.stored()
    # pitlane's car resumes an interrupted upload, so every upload started must end indexed; plain cars do not
    expected_tubs = uploads_started if mode == "pitlane" else tubs_committed
    return {
        "heartbeats_committed": len(committed),
        "heartbeats_stored": len(hbs),
        "heartbeats_lost": len([n for n in committed if n not in hbs]),
        "heartbeats_lost_by_fault": dict(Counter(fault_of[n] for n in committed if n not in hbs)),
        "heartbeats_duplicated": sum(c - 1 for c in hbs.values() if c > 1),
        "heartbeats_pubacked": len(pubacked),
        "heartbeats_pubacked_lost": len([n for n in pubacked if n not in hbs]),
        "tub_uploads_started": len(uploads_started),
        "tub_records_committed": len(tubs_committed),
        "tubs_expected": len(expected_tubs),
        "tubs_indexed": len(tubs),
        "tubs_lost": len([s for s in expected_tubs if s not in tubs]),
        "tubs_duplicated": sum(c - 1 for c in tubs.values() if c > 1),
        "tub_records_stored": tub_records,
        "ingest": dict(nuc.ingest.stats) if mode == "pitlane" else None,
        "refused": dict(nuc.ingest.counts) if mode == "pitlane" else None,
    }


def show(name: str, r: dict) -> None:
    print(
        f"\n{name}: {sum(r['faults'].values())} kill points ({', '.join(f'{k} {v}' for k, v in r['faults'].items())})"
    )
    print(
        f"  wall time {r['fault_s']:.0f} s of faults, then {r['drain_s']:.1f} s to drain (drained: {r['drained']})"
    )
    print(
        f"  heartbeats: {r['heartbeats_committed']} committed, {r['heartbeats_stored']} stored, "
        f"LOST {r['heartbeats_lost']}, DUPLICATED {r['heartbeats_duplicated']}"
    )
    if r["heartbeats_pubacked"]:
        print(
            f"  of these, the broker acknowledged {r['heartbeats_pubacked']} to paho (PUBACK) and "
            f"{r['heartbeats_pubacked_lost']} of those never reached the NUC: lost silently"
        )
    if r["heartbeats_lost_by_fault"]:
        print(
            f"  heartbeats lost, by the kill point during which they were sent: {r['heartbeats_lost_by_fault']}"
        )
    print(
        f"  tub bundles: {r['tub_uploads_started']} uploads started, {r['tub_records_committed']} tub records "
        f"committed, {r['tubs_indexed']} indexed of {r['tubs_expected']} expected, LOST {r['tubs_lost']}, "
        f"DUPLICATED {r['tubs_duplicated']} ({r['tub_records_stored']} tub records stored)"
    )
    if r["ingest"]:
        print(f"  ingest: {r['ingest']}; refused (retried later): {r['refused']}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kill-points", type=int, default=1000, help="faults against pitlane's fleet")
    ap.add_argument(
        "--plain-kill-points",
        type=int,
        default=None,
        help="faults against default Mosquitto + plain paho (default: as many)",
    )
    ap.add_argument("--seed", type=int, default=0, help="random seed of the fault schedule")
    ap.add_argument("--zygote", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.zygote:
        return zygote()
    import logging

    logging.basicConfig(level=logging.ERROR)
    root = Path(tempfile.mkdtemp(prefix="bench-fleet-killpoints-"))
    ours = run_suite("pitlane", args.kill_points, root / "pitlane", args.seed)
    show("pitlane (spool + sender, Mosquitto as configured, ingest acks after commit)", ours)
    plain_n = args.kill_points if args.plain_kill_points is None else args.plain_kill_points
    plain = run_suite("plain", plain_n, root / "plain", args.seed)
    show("default Mosquitto + plain paho (no spool, no application ack)", plain)
    (root / "summary.json").write_text(json.dumps({"pitlane": ours, "plain": plain}, indent=2))
    print(f"\nfigures in {root / 'summary.json'}")
    ok = not (
        ours["heartbeats_lost"]
        or ours["heartbeats_duplicated"]
        or ours["tubs_lost"]
        or ours["tubs_duplicated"]
    )
    return 0 if ok and ours["drained"] else 1


if __name__ == "__main__":
    sys.exit(main())
