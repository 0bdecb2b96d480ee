"""Experience sinks: where the gateway sends one ExperienceEvent per finished request.

The default appends JSON lines under BLACKSOIL_HOME and fsyncs before emit returns, so no accepted event is lost.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

from blacksoil.contracts import ExperienceEvent


class JsonlSink:
    """Append-only JSONL file; one fsync per event (a request costs far more than an fsync)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._f = path.open("a", encoding="utf-8")

    def emit(self, event: ExperienceEvent) -> None:
        line = json.dumps(event.to_dict(), default=str, ensure_ascii=False)
        with self._lock:
            self._f.write(line + "\n")
            self._f.flush()
            os.fsync(self._f.fileno())

    def close(self) -> None:
        with self._lock:
            if not self._f.closed:
                self._f.close()

    def read(self) -> list[ExperienceEvent]:
        """All events written so far (tests and tools)."""
        with self.path.open(encoding="utf-8") as f:
            return [ExperienceEvent.from_dict(json.loads(line)) for line in f if line.strip()]


class ListSink:
    """Keeps events in memory (tests, embedding the gateway in another process)."""

    def __init__(self) -> None:
        self.events: list[ExperienceEvent] = []

    def emit(self, event: ExperienceEvent) -> None:
        self.events.append(event)

    def close(self) -> None:
        pass
