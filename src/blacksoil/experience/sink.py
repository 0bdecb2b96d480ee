"""Experience sinks: where the gateway and the agent runtime send one ExperienceEvent per model call or tool step.

- `StoreSink`: the experience store; `emit` returns only once the anonymized event is committed.
- `JsonlSink`: raw JSON lines under BLACKSOIL_HOME, fsynced before `emit` returns (no accepted event is lost).
- `ListSink`: in memory (tests, embedding the gateway in another process).

`make_sink(settings)` picks the one `platform.experience_sink` asks for; every pillar that needs a sink gets one
from here (or is handed one), never from the composition root.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

from blacksoil.config import Settings
from blacksoil.contracts import ExperienceEvent, ExperienceSink
from blacksoil.experience.store import ExperienceStore

__all__ = ["JsonlSink", "ListSink", "StoreSink", "experience_path", "make_sink"]


class StoreSink:
    """ExperienceSink over the experience store (durable, idempotent by event_id, thread-safe)."""

    def __init__(self, store: ExperienceStore) -> None:
        self.store = store
        self._lock = threading.Lock()
        self._closed = False

    @classmethod
    def from_settings(cls, settings: Settings) -> StoreSink:
        """The sink for the configured store (SQLite under settings.home unless experience.db_url is set)."""
        return cls(ExperienceStore.from_settings(settings.home, settings.experience))

    def emit(self, event: ExperienceEvent) -> None:
        """Anonymize and commit; when this returns the event survives a crash of this process."""
        if self._closed:
            raise RuntimeError("StoreSink.emit after close")
        # SQLite has one writer at a time; serializing here avoids busy retries between our own threads.
        with self._lock:
            self.store.ingest(event)

    def close(self) -> None:
        self._closed = True
        self.store.close()


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


def experience_path(s: Settings) -> Path:
    """Where the raw JSONL sink writes (serving.experience_file, relative to home)."""
    p = Path(s.serving.experience_file)
    return p if p.is_absolute() else s.home / p


def make_sink(s: Settings) -> ExperienceSink:
    """The experience sink the platform settings ask for (platform.experience_sink: store or jsonl)."""
    if s.platform.experience_sink == "store":
        return StoreSink.from_settings(s)
    return JsonlSink(experience_path(s))
