"""The car's uploader: finished tubs go home as data bundles, and are deleted only once the NUC has them.

A tub is finished when this car app is not writing it: every tub in DATA_PATH but the one the running
vehicle records into (with AUTO_CREATE_NEW_TUB, which the fleet turns on, every session is a tub of its
own), and that one too once the car stops. For each finished tub whose content changed since its last
upload, the uploader pushes it through the NUC's registry gateway (`data/<car>`, the car's own
credentials: the car holds no registry credentials and can write nowhere else) and then spools a `tub`
record naming the bundle. Only when the ingest has acked that record (it checked the bundle is in the
registry and indexed it) and FLEET_DELETE_UPLOADED is set, the tub's folder is deleted, and only if it is
still exactly what was uploaded.

A gateway that is down, full or answers garbage: one log line per outage, a retry with backoff (30 s
doubling to 10 min), nothing lost. A tub that cannot be bundled (a record naming a missing image): one
line, not retried until the tub changes. State (what went home, under which seq) is a JSON file in the
fleet's state folder, written atomically.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pitlane.artifacts import oci
from pitlane.data import tubfiles
from pitlane.data.tub import MANIFEST, find_tubs, is_tub
from pitlane.errors import IntegrityError, NotFound, Refused, Unavailable, UserError
from pitlane.fleet import protocol, tubbundle
from pitlane.fleet.settings import parse_gateway
from pitlane.fleet.spool import Spool

logger = logging.getLogger(__name__)

STATE_FILE = "uploads.json"
RETRY_S, MAX_RETRY_S = 30.0, 600.0  # [s] first wait after a failed upload, and the longest
SCAN_S = 10.0  # [s] between two looks for finished tubs


def tub_key(tub: Path) -> str:
    """What identifies a tub's content cheaply: its manifest's bytes and its catalogs' sizes."""
    h = hashlib.sha256(tubfiles.read_bytes(tub, MANIFEST))
    for catalog in sorted(tub.glob("catalog_*")):
        h.update(f"{catalog.name}:{catalog.stat().st_size}\n".encode())
    return h.hexdigest()[:32]


def tub_records(tub: Path) -> int:
    """Records the tub's manifest counts (donkeycar's current_index), 0 when unreadable."""
    try:
        lines = tubfiles.read_bytes(tub, MANIFEST).decode("utf-8").split("\n")
        index = json.loads(lines[4]).get("current_index")
    except (OSError, tubfiles.UnsafePath, UnicodeDecodeError, ValueError, IndexError, AttributeError):
        return 0
    return index if isinstance(index, int) and not isinstance(index, bool) and index >= 0 else 0


class Uploader:
    """Finds finished tubs in `data_path`, pushes them to `client` (repository data/<car>) and spools a
    `tub` record for each; `start()` runs it in a thread, `stop(budget_s)` does a last pass."""

    def __init__(
        self,
        spool: Spool,
        client: oci.Client,
        data_path: str | Path,
        state_dir: str | Path,
        *,
        current_tub: str | Path | None = None,
        delete_uploaded: bool = False,
        poke: Callable[[], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.spool, self.client = spool, client
        self.car = spool.car
        self.repo = f"{tubbundle.DATA_PREFIX}{self.car}"
        self.data_path = Path(data_path)
        self.state_path = Path(state_dir) / STATE_FILE
        self.current = Path(current_tub).absolute() if current_tub else None
        self.delete_uploaded = delete_uploaded
        self.poke = poke or (lambda: None)
        self.clock = clock
        self.state: dict[str, dict[str, Any]] = self._read_state()
        self._backlog = (0, 0)
        self._retry_s = RETRY_S
        self._next_try = 0.0
        self._outage = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()  # one pass at a time

    @classmethod
    def from_params(cls, params, spool: Spool, *, current_tub=None, poke=None) -> Uploader:
        scheme, host = parse_gateway(params.gateway)
        auth = (params.car, params.password) if params.password else None
        client = oci.Client(host, scheme=scheme, auth=auth, timeout_s=60.0)
        return cls(
            spool,
            client,
            params.data_path,
            params.state_dir,
            current_tub=current_tub,
            delete_uploaded=params.delete_uploaded,
            poke=poke,
        )

    # --- state ---------------------------------------------------------------------------------------
    def _read_state(self) -> dict[str, dict[str, Any]]:
        try:
            doc = json.loads(self.state_path.read_text())
        except (OSError, ValueError):
            return {}
        tubs = doc.get("tubs") if isinstance(doc, dict) else None
        return {k: v for k, v in tubs.items() if isinstance(v, dict)} if isinstance(tubs, dict) else {}

    def _write_state(self) -> None:
        oci.write_atomic(self.state_path, json.dumps({"tubs": self.state}, indent=1, sort_keys=True).encode())

    def note_model(self, digest: str | None) -> None:
        """The model now driving (recorded as the model of the tub being written)."""
        if self.current is not None and digest:
            self.state.setdefault(str(self.current), {})["model"] = digest

    def backlog(self) -> tuple[int, int]:
        """(finished tubs not yet home, their records), as of the last pass."""
        return self._backlog

    # --- the thread ------------------------------------------------------------------------------------
    def start(self) -> Uploader:
        self._thread = threading.Thread(target=self._run, name=f"fleet-uploader-{self.car}", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.pass_once()
            except Exception:  # the uploader outlives any surprise; the tubs stay where they are
                logger.exception("fleet uploader: unexpected failure")
            self._stop.wait(SCAN_S)

    def stop(self, budget_s: float = 0.0) -> None:
        """Stop the thread; the tub this car was writing is finished now: one last pass within `budget_s`."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(max(budget_s, 0.1))
        self.current = None
        if budget_s > 0:
            self._next_try = 0.0
            try:
                self.pass_once(deadline=time.monotonic() + budget_s)
            except Exception:
                logger.exception("fleet uploader: the last pass failed")

    # --- one pass -----------------------------------------------------------------------------------------
    def finished_tubs(self) -> list[Path]:
        if not self.data_path.exists():
            return []
        tubs = [p.absolute() for p in find_tubs([self.data_path]) if is_tub(p)]
        return [t for t in tubs if t != self.current]

    def pass_once(self, deadline: float | None = None) -> None:
        with self._lock:
            tubs = self.finished_tubs()
            waiting, records = 0, 0
            for tub in tubs:
                if deadline is not None and time.monotonic() > deadline:
                    break
                home = self._one(tub)
                if not home and tub.exists():
                    waiting += 1
                    records += tub_records(tub)
            self._backlog = (waiting, records)

    def _one(self, tub: Path) -> bool:
        """Bring one tub home (as far as possible now); True when the NUC has acked its current content."""
        entry = self.state.setdefault(str(tub), {})
        try:
            key = tub_key(tub)
        except (OSError, tubfiles.UnsafePath):
            return False
        if entry.get("failed") == key:
            return False
        if entry.get("key") == key and entry.get("seq"):
            seq = int(entry["seq"])
            if self.spool.acked(seq):
                self._delete_if_done(tub, entry, key)
                return True
            if self.spool.pending_seq(seq):
                return False  # the sender will deliver it
            # the spool lost it (a corrupt file): spool the record again
            return self._spool_record(tub, entry, key, entry["ref"], entry["body"])
        if self.clock() < self._next_try:
            return False
        try:
            pushed = tubbundle.push_tub(
                self.client,
                tub,
                self.repo,
                car=self.car,
                model=entry.get("model"),
                session=entry.get("session"),
            )
        except (Unavailable, NotFound, Refused, IntegrityError, OSError) as exc:  # worth another try later
            self._failed_attempt(exc)
            return False
        except UserError as exc:
            entry["failed"] = key
            self._write_state()
            logger.error("fleet uploader: tub %s cannot go home: %s (retried when the tub changes)", tub, exc)
            return False
        if self._outage:
            logger.info("fleet uploader: the gateway %s answers again", self.client.registry)
        self._outage, self._retry_s = False, RETRY_S
        c = pushed.config
        body = {
            "ref": str(pushed.ref),
            "session": c["session"],
            "records": c["records"],
            "start": c["start"],
            "end": c["end"],
            "model": c["model"],
        }
        entry.update(session=c["session"], records=c["records"])
        logger.info(
            "fleet uploader: tub %s is home as %s (%d records; %d blobs sent, %d already there)",
            tub.name,
            pushed.ref,
            c["records"],
            pushed.blobs_sent,
            pushed.blobs_skipped,
        )
        return self._spool_record(tub, entry, key, str(pushed.ref), body)

    def _spool_record(self, tub: Path, entry: dict[str, Any], key: str, ref: str, body: dict) -> bool:
        try:
            record = self.spool.append(protocol.TUB, body)
        except protocol.ProtocolError as exc:
            logger.error("fleet uploader: the tub record for %s was refused: %s", tub, exc)
            return False
        entry.update(key=key, ref=ref, seq=record.seq, body=body)
        self._write_state()
        self.poke()
        return False

    def _failed_attempt(self, exc: Exception) -> None:
        if not self._outage:
            logger.warning(
                "fleet uploader: cannot upload to %s: %s; tubs stay on the car, retrying with backoff",
                self.client.registry,
                exc,
            )
        self._outage = True
        self._next_try = self.clock() + self._retry_s
        self._retry_s = min(self._retry_s * 2, MAX_RETRY_S)

    def _delete_if_done(self, tub: Path, entry: dict[str, Any], key: str) -> None:
        if not self.delete_uploaded or entry.get("deleted") or tub == self.current:
            return
        if not tub.absolute().is_relative_to(self.data_path.absolute()) or tub_key(tub) != key:
            return  # outside the data folder, or changed since it went home: keep it
        if tub.absolute() == self.data_path.absolute():
            for item in list(tub.iterdir()):  # DATA_PATH itself is the tub: empty it, keep the folder
                shutil.rmtree(item) if item.is_dir() and not item.is_symlink() else os.unlink(item)
        else:
            shutil.rmtree(tub)
        entry["deleted"] = True
        self._write_state()
        logger.info("fleet uploader: deleted tub %s (home as %s)", tub, entry.get("ref"))
