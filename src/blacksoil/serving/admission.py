"""Agent-aware admission: a bounded queue ordered by priority then arrival, with session and prefix affinity.

Pure logic (no I/O, no clock): the gateway calls `can_enqueue`/`enqueue`, `dispatch` and `release`.

Policies:

- `agent` (the default): priority, then arrival. A returning session goes back to the replica and slot holding its
  prefix (and waits for that replica). A new session goes to the replica holding its prompt's shared prefix
  (`Ticket.prefix_key`: the system prompt and tools, computed by the gateway): rendezvous hashing of the key over
  the replica names picks its home, so every session of one agent lands where that prefix is cached, and adding or
  removing a replica moves only the keys whose home it was. When the home replica has no free place and its demand
  (running plus waiting requests that want it) is over `prefix_load_factor` × the mean, the session takes the next
  replica in its hash order that has a free place (consistent hashing with bounded loads); otherwise it waits for
  its home. A new session without a key goes to the least-loaded replica. Within the replica it takes an unowned
  slot, else the least recently used slot holding its prefix, else the least recently used slot.
- `round_robin`: what a plain load balancer (an L4 proxy, a Kubernetes Service) does, the cluster bench's
  baseline: each request, in arrival order, is assigned the next healthy accepting replica in rotation and waits
  for it; no affinity, no priority; the engine picks the slot.
- `fcfs`: arrival order to the least-loaded replica, the engine picks the slot; the single-replica baseline.

What is here, and why:

- Least attained service per session (Autellix's ordering) was measured and removed (`bench serving --quick`,
  scarce-slot arm: 24 agent programs of 1-20 calls with tool pauses on one 4-slot engine, each policy on its own
  engine side by side; docs/benchmarks.md, 2026-12-06): against FCFS it gave 0.99, 1.01, 0.95, 1.09 and 1.02x mean
  and 0.95, 1.02, 0.90, 1.02 and 1.00x p99 program completion in five runs, no consistent win. Calls this slow are
  dominated by service time, not by queue order.
- Slot affinity on one replica measured the same as FCFS (1.02, 1.03, 1.00x mean; 1.03, 1.00, 1.00x p99; prompt
  tokens computed within 0.5 %): llama.cpp picks the slot whose prompt matches best and keeps evicted prompts in a
  host-RAM prompt cache. What affinity earns is across replicas (below), and drain/blue-green routing build on it.
- Slot choice for a new session, from llama.cpp's own counters (this xllamacpp build, 2026-12-06): a request
  pinned to a slot holding another prompt saves that prompt to the host-RAM cache and loads the best-matching
  cached one; a request pinned to an EMPTY slot loads nothing from that cache and recomputes its whole prompt; a
  request pinned to a slot holding the same system prompt reuses it, and the owner's history is dropped when most
  of the slot is kept (90 % kept: dropped; 45 % kept: saved, and restored when the owner came back). So the shared
  prefix is computed once per slot that first holds it. An unowned slot is still taken before a slot of the same
  agent, so a new session does not push an active one out of its slot (reasoned, not measured against the other
  order: the cold wave below is the price).
- Prefix-aware placement across replicas is kept (`bench cluster --quick`, routing phase, 2026-12-06: two 1-CPU
  replica actors, 8 agent sessions of two agents with ~900-token system prompts, a ~250-token tool result a turn,
  4 turns, on warm engines): against request-level round robin, TTFT p50 17.7 -> 11.4 s and p99 33.8 -> 15.2 s
  (2.2x; 2.7x in a routing-only run), prompt tokens computed 10394 -> 6432. Round robin sends every other turn
  to the replica without the session's history. On freshly started engines (the bench's cold wave of one-turn
  sessions) it did not win: p99 30.6 s round robin vs 46.9 s, and in three more runs 23.2, 15.5, 40.2 s vs 30.9,
  29.7, 26.2 s (noisy): every slot computes the system prompt once here, while round robin's engine-chosen slots
  let later sessions share it (and lose the owner's tail). Those three runs gave 2.5, 3.9 and 3.2x on warm engines.
- Slots are pinned, not left to llama.cpp: replica affinity with engine-chosen slots gave 1.10, 1.82 and 0.84x on
  warm engines in the same runs (prompt tokens computed 9.8-11.6k against 6.4-6.7k pinned), and no better cold
  p99. An unpinned new session gets the best-matching idle slot, usually another session of the same agent
  waiting on its tool, whose history llama.cpp then drops.
- Priority (`X-Priority`) is kept: a caller's explicit order, not a heuristic, and free when unused.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
from dataclasses import dataclass, field
from typing import Literal

Policy = Literal["agent", "fcfs", "round_robin"]


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
    prefix_key: str | None = None
    """Hash of the prompt's shared prefix (system prompt and tools, see gateway.prefix_key); None = no prefix worth
    routing on. New sessions with the same key go to the replica that holds it (agent policy)."""


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
    slot_prefix: dict[int, str] = field(default_factory=dict)
    """Shared-prefix key (Ticket.prefix_key) of the prompt each slot holds."""
    slot_used: dict[int, int] = field(default_factory=dict)
    """Logical time each slot was last used (for least-recently-used eviction)."""

    def free(self) -> int:
        return self.concurrency - len(self.running)

    def usable(self) -> bool:
        """Takes new requests: healthy and accepting."""
        return self.healthy and self.accepting


class Admission:
    """Orders waiting requests and places them on replicas and slots."""

    def __init__(self, policy: Policy = "agent", queue_max: int = 64, prefix_load_factor: float = 1.25) -> None:
        self.policy: Policy = policy
        self.queue_max = queue_max
        self.prefix_load_factor = prefix_load_factor
        """A new session leaves its prefix's home replica only when that one is full and its demand is over this
        × the mean (ServingConfig.prefix_load_factor)."""
        self.replicas: dict[str, ReplicaState] = {}
        self.waiting: list[Ticket] = []
        self.affinity: dict[str, tuple[str, int]] = {}
        self._seq = itertools.count()
        self._clock = itertools.count(1)
        self._anon = itertools.count(-1, -1)
        self._turn = itertools.count()
        self._rr_target: dict[str, str] = {}
        """round_robin: the replica each waiting request was assigned on arrival."""

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
            r.slot_prefix.clear()
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
        if self.policy == "round_robin":
            self._assign_turn(ticket)

    def cancel(self, ticket: Ticket) -> None:
        if ticket in self.waiting:
            self.waiting.remove(ticket)
        self._rr_target.pop(ticket.request_id, None)

    def _order(self, t: Ticket) -> tuple[int, ...]:
        return (t.seq,) if self.policy in ("fcfs", "round_robin") else (-t.priority, t.seq)

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
        if self.policy != "agent":
            r = self._round_robin(t) if self.policy == "round_robin" else self._least_loaded(new_session=True)
            if r is None:
                return None
            r.running.add(next(self._anon))  # the engine picks the slot; hold a unit of concurrency
            return r.name, None
        home = self._home(t)
        if home is not None:
            r = self.replicas[home[0]]
            if r.free() <= 0:
                return None  # wait for the replica that holds this session's prefix
            slot = home[1] if home[1] not in r.running else self._pick_slot(r, t.prefix_key)
        else:
            found = self._new_session_replica(t)
            if found is None:
                return None
            r = found
            slot = self._pick_slot(r, t.prefix_key)
        assert slot is not None
        r.running.add(slot)
        r.slot_used[slot] = next(self._clock)
        if t.prefix_key is not None:
            r.slot_prefix[slot] = t.prefix_key
        else:
            r.slot_prefix.pop(slot, None)
        if t.session_id:
            previous = r.slot_owner.get(slot)
            if previous is not None and previous != t.session_id:
                self.affinity.pop(previous, None)
            r.slot_owner[slot] = t.session_id
            self.affinity[t.session_id] = (r.name, slot)
        return r.name, slot

    def _home(self, t: Ticket) -> tuple[str, int] | None:
        """Where a returning session's prefix lives, if that replica still takes requests."""
        home = self.affinity.get(t.session_id) if t.session_id else None
        if home is None or home[0] not in self.replicas or not self.replicas[home[0]].usable():
            return None
        return home

    # -- round robin --
    def _assign_turn(self, t: Ticket) -> None:
        names = sorted(n for n, r in self.replicas.items() if r.usable())
        if names:
            self._rr_target[t.request_id] = names[next(self._turn) % len(names)]

    def _round_robin(self, t: Ticket) -> ReplicaState | None:
        target = self.replicas.get(self._rr_target.get(t.request_id, ""))
        if target is None or not target.usable():  # assigned before it left: the next one in rotation
            self._assign_turn(t)
            target = self.replicas.get(self._rr_target.get(t.request_id, ""))
        if target is None or target.free() <= 0:
            return None  # wait for the assigned replica, as a load balancer's backend queue does
        del self._rr_target[t.request_id]
        return target

    # -- new sessions --
    def _new_session_replica(self, t: Ticket) -> ReplicaState | None:
        if t.prefix_key is None:
            return self._least_loaded(new_session=True)
        ranked = [self.replicas[n] for n in _rendezvous(t.prefix_key, tuple(sorted(
            n for n, r in self.replicas.items() if r.usable())))]
        if not ranked:
            return None
        if ranked[0].free() > 0:
            return ranked[0]
        demand = self._demand()
        bound = self.prefix_load_factor * sum(demand.values()) / len(ranked)
        if demand[ranked[0].name] <= bound:
            return None  # its home is busy, not overloaded: wait there rather than recompute the prefix elsewhere
        return next((r for r in ranked[1:] if r.free() > 0 and demand[r.name] <= bound), None)

    def _demand(self) -> dict[str, int]:
        """Per usable replica: requests running on it plus waiting ones that want it (their session's or prefix's
        home)."""
        names = tuple(sorted(n for n, r in self.replicas.items() if r.usable()))
        demand = {n: len(self.replicas[n].running) for n in names}
        for w in self.waiting:
            home = self._home(w)
            want = home[0] if home is not None else \
                _rendezvous(w.prefix_key, names)[0] if w.prefix_key is not None and names else None
            if want is not None:
                demand[want] += 1
        return demand

    def _least_loaded(self, new_session: bool) -> ReplicaState | None:
        ok = [r for r in self.replicas.values() if r.healthy and r.free() > 0 and (r.accepting or not new_session)]
        return max(ok, key=lambda r: (r.free(), -len(r.slot_owner)), default=None)

    @staticmethod
    def _pick_slot(r: ReplicaState, prefix_key: str | None) -> int | None:
        """A free slot: an unowned one first, else the least recently used holding `prefix_key`, else the least
        recently used."""
        free = [s for s in range(r.slots) if s not in r.running]
        if not free:
            return None
        unowned = [s for s in free if s not in r.slot_owner]
        if unowned:
            return unowned[0]
        same = [s for s in free if prefix_key is not None and r.slot_prefix.get(s) == prefix_key]
        return min(same or free, key=lambda s: r.slot_used.get(s, 0))

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


@functools.lru_cache(maxsize=4096)
def _rendezvous(key: str, names: tuple[str, ...]) -> tuple[str, ...]:
    """`names` in rendezvous (highest random weight) order for `key`: the first is the key's home; removing a
    replica moves only the keys it was home to, adding one takes about 1/n of the keys."""
    def weight(name: str) -> int:
        return int.from_bytes(hashlib.blake2b(f"{key}\x00{name}".encode(), digest_size=8).digest(), "big")
    return tuple(sorted(names, key=weight, reverse=True))
