"""A car's spool and sender in a process of their own, for tests that SIGKILL it (not a test module).

    python car_process.py SPOOL BROKER FIRST COUNT [INTERVAL_S]

spools event records n = FIRST .. FIRST+COUNT-1 (printing "n seq" once each is committed), then keeps
sending until the spool is empty and prints "drained".
"""

from __future__ import annotations

import sys
import time

from pitlane.fleet import protocol
from pitlane.fleet.sender import Sender, SenderParams
from pitlane.fleet.spool import Spool


def main(argv: list[str]) -> int:
    path, broker, first, count = argv[0], argv[1], int(argv[2]), int(argv[3])
    interval = float(argv[4]) if len(argv) > 4 else 0.0
    spool = Spool(path, "car-1")
    params = SenderParams.from_broker(broker, resend_s=1.0, backoff_s=0.1, max_backoff_s=0.5)
    sender = Sender(spool, params).start()
    for n in range(first, first + count):
        record = spool.append(protocol.EVENT, {"type": "test", "detail": {"n": n}})
        sender.poke()
        print(n, record.seq, flush=True)
        if interval:
            time.sleep(interval)
    while spool.count():
        time.sleep(0.05)
    print("drained", flush=True)
    sender.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
