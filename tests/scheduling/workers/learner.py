"""A small real CPU learner for the local-backend test: a sha256 chain that checkpoints and resumes.

The chain makes progress verifiable: after N steps the digest must equal the chain recomputed from zero.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import sys
from pathlib import Path

ROUNDS = 2000  # sha256 rounds per step: about a millisecond of one core


def advance(digest: str) -> str:
    for _ in range(ROUNDS):
        digest = hashlib.sha256(digest.encode()).hexdigest()
    return digest


def main() -> None:
    ckpt, log = Path(sys.argv[1]), Path(sys.argv[2])
    state = json.loads(ckpt.read_text()) if ckpt.exists() else {"step": 0, "digest": "seed"}
    stopping = False

    def on_term(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, on_term)

    def record(event: str) -> None:
        with log.open("a") as f:
            f.write(json.dumps({"event": event, "step": state["step"], "cores": sorted(os.sched_getaffinity(0)),
                                "threads": os.environ.get("OMP_NUM_THREADS")}) + "\n")

    def save() -> None:
        tmp = ckpt.with_suffix(".tmp")
        tmp.write_text(json.dumps(state))
        os.replace(tmp, ckpt)

    record("start")
    while not stopping:
        state["digest"] = advance(state["digest"])
        state["step"] += 1
        if state["step"] % 25 == 0:
            save()
    save()
    record("stop")


if __name__ == "__main__":
    main()
