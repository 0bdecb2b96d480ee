"""SIGKILL the writer in the middle of a burst: every acknowledged event survives, none is duplicated."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from sqlalchemy import text

from blacksoil.contracts import ExperienceEvent
from blacksoil.experience.anonymizer import Anonymizer
from blacksoil.experience.sink import StoreSink
from blacksoil.experience.store import ExperienceStore

N_EVENTS = 2000
KILL_AFTER_ACKS = 60

WRITER = """
import sys
from blacksoil.contracts import ExperienceEvent
from blacksoil.experience.sink import StoreSink
from blacksoil.experience.store import ExperienceStore
sink = StoreSink(ExperienceStore(sys.argv[1]))
print("ready", flush=True)
for i in range(int(sys.argv[2])):
    sink.emit(ExperienceEvent(kind="model_call", tenant="dur", session_id=f"s{i % 7}", event_id=f"ev{i:05d}",
                              messages=[{"role": "user", "content": f"step {i}: mail ops{i}@northwind.com"}]))
    print(f"ack ev{i:05d}", flush=True)
"""


def _event(i: int) -> ExperienceEvent:
    return ExperienceEvent(kind="model_call", tenant="dur", session_id=f"s{i % 7}", event_id=f"ev{i:05d}",
                           messages=[{"role": "user", "content": f"step {i}: mail ops{i}@northwind.com"}])


def test_sigkill_during_burst_loses_no_acknowledged_event(store_url: str, anonymizer: Anonymizer) -> None:
    proc = subprocess.Popen([sys.executable, "-c", WRITER, store_url, str(N_EVENTS)], stdout=subprocess.PIPE,
                            text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    acked: list[str] = []
    deadline = time.monotonic() + 240
    try:
        assert proc.stdout is not None
        while len(acked) < KILL_AFTER_ACKS and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            if line.startswith("ack "):
                acked.append(line.split()[1])
        proc.send_signal(signal.SIGKILL)
        # Acks already printed before the kill landed also count as acknowledged.
        rest, _ = proc.communicate(timeout=30)
        acked += [ln.split()[1] for ln in rest.splitlines() if ln.startswith("ack ")]
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    assert len(acked) >= KILL_AFTER_ACKS, "the writer was killed mid-burst, not after it finished"
    assert len(acked) < N_EVENTS

    store = ExperienceStore(store_url, anonymizer=anonymizer)  # the restart
    with store.engine.connect() as c:
        stored = [r[0] for r in c.execute(text("SELECT event_id FROM model_calls WHERE tenant_id = 'dur'"))]
    assert set(acked) <= set(stored), "an acknowledged event was lost"
    assert len(stored) == len(set(stored))
    assert len(stored) <= len(acked) + 1, "at most the one in-flight event may land unacknowledged"

    # The producer retries everything after the restart: idempotent by event_id, so no duplicates.
    sink = StoreSink(store)
    for i in range(len(acked) + 5):
        sink.emit(_event(i))
    with store.engine.connect() as c:
        rows = c.execute(text("SELECT event_id, COUNT(*) FROM model_calls WHERE tenant_id = 'dur' "
                              "GROUP BY event_id")).all()
    assert len(rows) == len(acked) + 5 and all(n == 1 for _, n in rows)
    assert "northwind" not in repr(store.tenant("dur").model_calls())
    sink.close()
