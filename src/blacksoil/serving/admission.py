"""Agent-aware admission: a bounded queue ordered by priority then arrival, with session affinity.

Pure logic (no I/O, no clock): the gateway calls `can_enqueue`/`enqueue`, `dispatch` and `release`.

What is here, and why (`bench serving --quick`, scarce-slot arm: 24 agent programs of 1-20 calls with tool pauses
on one 4-slot engine, each policy on its own engine side by side, program completion time; docs/benchmarks.md,
2026-12-06):

- Least attained service per session (Autellix's ordering) was measured and removed: against FCFS it gave
  0.99, 1.01, 0.95, 1.09 and 1.02x mean and 0.95, 1.02, 0.90, 1.02 and 1.00x p99 program completion in five
  runs, no consistent win. Calls this slow are dominated by service time, not by queue order.
- Session affinity is kept. On one replica, pinning a session to its llama.cpp slot (`id_slot`) measured the
  same as FCFS (1.02, 1.03, 1.00x mean; 1.03, 1.00, 1.00x p99; prompt tokens computed within 0.5 %): llama.cpp picks
  the slot whose prompt matches best and keeps evicted prefixes in a host-RAM prompt cache. What it earns is
  across replicas: the same bookkeeping sends a returning session to the replica that holds its prefix (the
  cluster bench: TTFT p50 15.3 s with round robin, 2.2 s with affinity), and drain/blue-green routing build on it.
- Priority (`X-Priority`) is kept: a caller's explicit order, not a heuristic, and free when unused.

`fcfs` keeps arrival order and lets the engine choose the slot; it is the benchmark's baseline.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Literal

Policy = Literal["agent", "fcfs"]


@dataclass
class Ticket:
    """One request waiting for (or holding) a place on a replica."""

    request_id: str
    session_id: str | None = None
    priority: int = 0
    """Higher goes first."""
    seq: int = 0
    """Arrival order, set by enqueue."""
    replica: str | None = None
    slot: int | None = None
    """Engine slot to pin (`id_slot`), None = let the engine choose."""


@dataclass
class ReplicaState:
    """What the scheduler knows about one replica."""

    name: str
    concurrency: int
    """Requests it runs at once."""
    slots: int
    """KV-cache slots it holds."""
    accepting: bool = True
    """Routes NEW sessions here (False while warming or draining)."""
    healthy: bool = True
    """False while its engine restarts: nothing is dispatched to it."""
    running: set[int] = field(default_factory=set)
    """Slots busy now (or negative placeholders when the engine chooses the slot)."""
    slot_owner: dict[int, str] = field(default_factory=dict)
    """Session whose prefix each slot holds."""
    slot_used: dict[int, int] = field(default_factory=dict)
    """Logical time each slot was last used (for least-recently-used eviction)."""

    def free(self) -> int:
        return self.concurrency - len(self.running)


class Admission:
    """Orders waiting requests and places them on replicas and slots."""

    def __init__(self, policy: Policy = "agent", queue_max: int = 64) -> None:
        self.policy: Policy = policy
        self.queue_max = queue_max
        self.replicas: dict[str, ReplicaState] = {}
        self.waiting: list[Ticket] = []
        self.affinity: dict[str, tuple[str, int]] = {}
        self._seq = itertools.count()
        self._clock = itertools.count(1)
        self._anon = itertools.count(-1, -1)

    # -- replicas --
    def add_replica(self, name: str, concurrency: int, slots: int, accepting: bool = True) -> None:
        assert concurrency <= slots, "a replica cannot run more requests than it has slots"
        self.replicas[name] = ReplicaState(name, concurrency, slots, accepting=accepting)

    def remove_replica(self, name: str) -> None:
        self.replicas.pop(name, None)
        self.affinity = {s: a for s, a in self.affinity.items() if a[0] != name}

    def set_accepting(self, name: str, accepting: bool) -> None:
        self.replicas[name].accepting = accepting

    def set_healthy(self, name: str, healthy: bool) -> None:
        r = self.replicas[name]
        r.healthy = healthy
        if not healthy:  # a restarted engine has lost its caches
            r.slot_owner.clear()
            self.affinity = {s: a for s, a in self.affinity.items() if a[0] != name}

    def inflight(self, name: str) -> int:
        return len(self.replicas[name].running)

    # -- queue --
    def can_enqueue(self) -> bool:
        return len(self.waiting) < self.queue_max

    def enqueue(self, ticket: Ticket) -> None:
        assert self.can_enqueue(), "enqueue on a full queue; check can_enqueue first"
        ticket.seq = next(self._seq)
        self.waiting.append(ticket)

    def cancel(self, ticket: Ticket) -> None:
        if ticket in self.waiting:
            self.waiting.remove(ticket)

    def _order(self, t: Ticket) -> tuple[int, ...]:
        return (t.seq,) if self.policy == "fcfs" else (-t.priority, t.seq)

    def dispatch(self) -> list[Ticket]:
        """Place as many waiting tickets as capacity allows, best first; returns the placed ones."""
        placed: list[Ticket] = []
        for t in sorted(self.waiting, key=self._order):
            where = self._place(t)
            if where is None:
                continue
            t.replica, t.slot = where
            self.waiting.remove(t)
            placed.append(t)
        return placed

    def _place(self, t: Ticket) -> tuple[str, int | None] | None:
        if self.policy == "fcfs":
            r = self._least_loaded(new_session=True)
            if r is None:
                return None
            r.running.add(next(self._anon))  # the engine picks the slot; hold a unit of concurrency
            return r.name, None
        home = self.affinity.get(t.session_id) if t.session_id else None
        if home is not None and home[0] in self.replicas and self.replicas[home[0]].healthy \
                and self.replicas[home[0]].accepting:
            r = self.replicas[home[0]]
            if r.free() <= 0:
                return None  # wait for the replica that holds this session's prefix
            slot = home[1] if home[1] not in r.running else self._evict_slot(r)
        else:
            found = self._least_loaded(new_session=True)
            if found is None:
                return None
            r = found
            slot = self._evict_slot(r)
        assert slot is not None
        r.running.add(slot)
        r.slot_used[slot] = next(self._clock)
        if t.session_id:
            previous = r.slot_owner.get(slot)
            if previous is not None and previous != t.session_id:
                self.affinity.pop(previous, None)
            r.slot_owner[slot] = t.session_id
            self.affinity[t.session_id] = (r.name, slot)
        return r.name, slot

    def _least_loaded(self, new_session: bool) -> ReplicaState | None:
        ok = [r for r in self.replicas.values() if r.healthy and r.free() > 0 and (r.accepting or not new_session)]
        return max(ok, key=lambda r: (r.free(), -len(r.slot_owner)), default=None)

    @staticmethod
    def _evict_slot(r: ReplicaState) -> int | None:
        """A free slot: an unowned one first, else the least recently used."""
        free = [s for s in range(r.slots) if s not in r.running]
        if not free:
            return None
        unowned = [s for s in free if s not in r.slot_owner]
        if unowned:
            return unowned[0]
        return min(free, key=lambda s: r.slot_used.get(s, 0))

    def release(self, ticket: Ticket) -> None:
        """The request finished (or failed): free its place."""
        if ticket.replica in self.replicas:
            r = self.replicas[ticket.replica]
            if ticket.slot is not None:
                r.running.discard(ticket.slot)
            else:
                neg = [s for s in r.running if s < 0]
                if neg:
                    r.running.discard(neg[0])
