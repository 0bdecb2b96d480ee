"""A serving stand-in for the local-backend test: keeps its cores busy and records which cores it got."""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path


def main() -> None:
    log = Path(sys.argv[1])
    with log.open("a") as f:
        f.write(json.dumps({"cores": sorted(os.sched_getaffinity(0)), "threads": os.environ.get("OMP_NUM_THREADS"),
                            "t": time.time()}) + "\n")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    x = 0
    while True:
        x = (x * 1103515245 + 12345) % 2**31
        if x % 100_000 == 0:
            time.sleep(0.001)  # stay responsive to signals without idling the core


if __name__ == "__main__":
    main()
