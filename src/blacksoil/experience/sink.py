"""The store-backed ExperienceSink: `emit` returns only once the anonymized event is committed.

The gateway and the agent runtime hand it every model call and tool step; one store serves both.
"""

from __future__ import annotations

import threading

from blacksoil.config import Settings
from blacksoil.contracts import ExperienceEvent
from blacksoil.experience.store import ExperienceStore


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
