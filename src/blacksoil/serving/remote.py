"""An embedded llama.cpp server that someone else started and owns (a Ray actor on another node).

The gateway reaches it like its own engine (same llama.cpp extensions: `id_slot`, `timings`, stream cancellation
by conversation id) but cannot restart it: when it dies, its owner removes it from the pool and starts another.
"""

from __future__ import annotations

from collections.abc import Callable

from blacksoil.contracts import AdapterVersion
from blacksoil.serving.engine import EngineUnavailable, LlamaCppEngine


class RemoteLlamaCppEngine(LlamaCppEngine):
    """A llama.cpp server at `api_base` (…/v1) guarded by `api_key`; its process belongs to its owner."""

    kind = "llamacpp_remote"

    def __init__(self, api_base: str, *, api_key: str, adapter: AdapterVersion | None = None,
                 timeout_s: float = 600.0, on_stop: Callable[[], None] | None = None) -> None:
        """`on_stop`: what stop() calls once, so the owner ends the server (None = the owner stops it itself)."""
        # LlamaCppEngine.__init__ validates a local model file and prepares a child process: neither applies.
        super(LlamaCppEngine, self).__init__(api_base, adapter=adapter, timeout_s=timeout_s)
        self.api_key = api_key
        self.proc = None
        self.restarts = 0
        self._stopping = set()
        self._gone = False
        self._on_stop = on_stop

    def start(self) -> None:
        """Check that it answers (the owner started it already)."""
        if not self.probe(10.0):
            raise EngineUnavailable(f"remote engine at {self.api_base} does not answer; is its owner running?")

    def alive(self) -> bool:
        return not self._gone

    def mark_gone(self) -> None:
        """Its owner reports it dead: requests fail fast (503) until the pool drops it."""
        self._gone = True

    def kill(self) -> None:
        # A hung remote engine is taken out of rotation; its owner replaces it.
        self.mark_gone()

    def stop(self) -> None:
        self._clients.clear()
        on_stop, self._on_stop = self._on_stop, None
        if on_stop is not None:
            on_stop()

    def restart(self) -> None:
        raise EngineUnavailable(f"remote engine at {self.api_base} is restarted by its owner, not by the gateway")
