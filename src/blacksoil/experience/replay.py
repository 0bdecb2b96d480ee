"""Prioritized replay of trajectories: proportional sampling with α, β annealed to 1, importance weights.

Items carry the policy version that produced them (too stale = never sampled), dedup by content hash,
and the whole buffer persists to one .npz file so a learner restart resumes where it was.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from blacksoil.errors import ConfigError, NotFoundError
from blacksoil.experience.config import ExperienceConfig
from blacksoil.experience.priorities import trajectory_priorities
from blacksoil.experience.sumtree import SumTree


@dataclass
class ReplayBatch:
    """A sampled batch: replay ids (for update_priorities), the items' keys, and importance weights."""

    ids: npt.NDArray[np.int64]
    keys: list[str]
    weights: npt.NDArray[np.float64]
    probs: npt.NDArray[np.float64]
    policy_versions: npt.NDArray[np.int64]
    beta: float


def policy_version_number(adapter_version: str | None) -> int:
    """`v3` -> 3, `7` -> 7, None (base model) -> 0."""
    if adapter_version is None:
        return 0
    digits = adapter_version.lstrip("vV")
    if not digits.isdigit():
        raise ConfigError(f"adapter version {adapter_version!r} has no number; name versions v1, v2, ...")
    return int(digits)


class PrioritizedReplay:
    """Ring buffer of items with sum-tree priorities. Item ids grow monotonically; slot = id % capacity."""

    def __init__(self, capacity: int = 1_000_000, alpha: float = 0.6, beta0: float = 0.4,
                 beta_steps: int = 100_000, max_staleness: int = 4, eps: float = 1e-3, seed: int = 0) -> None:
        if capacity < 1:
            raise ConfigError(f"replay capacity {capacity} must be >= 1")
        self.capacity, self.alpha, self.beta0, self.beta_steps = capacity, alpha, beta0, beta_steps
        self.max_staleness, self.eps = max_staleness, eps
        self.tree = SumTree(capacity)
        self.item_id = np.full(capacity, -1, dtype=np.int64)
        self.version = np.zeros(capacity, dtype=np.int64)
        self.keys = np.empty(capacity, dtype=object)
        self.hashes = np.empty(capacity, dtype=object)
        self.by_hash: dict[str, int] = {}
        self.next_id = 0
        self.steps = 0
        self.max_priority = 1.0
        self.rng = np.random.default_rng(seed)

    @classmethod
    def from_config(cls, cfg: ExperienceConfig, seed: int = 0) -> PrioritizedReplay:
        return cls(cfg.replay_capacity, cfg.replay_alpha, cfg.replay_beta0, cfg.replay_beta_steps,
                   cfg.replay_max_staleness, cfg.replay_eps, seed)

    def __len__(self) -> int:
        return min(self.next_id, self.capacity)

    @property
    def beta(self) -> float:
        return min(1.0, self.beta0 + (1.0 - self.beta0) * self.steps / self.beta_steps)

    def add(self, key: str, policy_version: int, content_hash: str | None = None,
            priority: float | None = None) -> int:
        """Add one item (None priority = current max priority); a duplicate hash returns the existing id."""
        if content_hash is not None and content_hash in self.by_hash:
            return self.by_hash[content_hash]
        ids = self.add_many([key], np.array([policy_version]), None if priority is None else np.array([priority]))
        item = int(ids[0])
        if content_hash is not None:
            self.hashes[item % self.capacity] = content_hash
            self.by_hash[content_hash] = item
        return item

    def add_many(self, keys: Sequence[str], policy_versions: npt.ArrayLike,
                 priorities: npt.ArrayLike | None = None) -> npt.NDArray[np.int64]:
        """Add a batch without dedup (vectorized); returns the new item ids."""
        n = len(keys)
        versions = np.asarray(policy_versions, dtype=np.int64)
        if versions.shape != (n,):
            raise ConfigError(f"got {n} keys but {versions.shape} policy versions; give one version per key")
        ids = np.arange(self.next_id, self.next_id + n, dtype=np.int64)[-self.capacity :]
        keys = list(keys)[-self.capacity :]
        versions = versions[-self.capacity :]
        slots = ids % self.capacity
        old = self.hashes[slots]
        for h in old[old != None]:  # noqa: E711 - elementwise comparison on an object array
            self.by_hash.pop(h, None)
        self.hashes[slots] = None
        if priorities is None:
            p = np.full(len(ids), self.max_priority)
        else:
            p = np.abs(np.asarray(priorities, dtype=np.float64))[-self.capacity :] + self.eps
            self.max_priority = max(self.max_priority, float(p.max()))
        self.item_id[slots] = ids
        self.version[slots] = versions
        self.keys[slots] = keys
        self.tree.set(slots, p**self.alpha)
        self.next_id += n
        return ids

    def sample(self, batch_size: int, policy_version: int) -> ReplayBatch:
        """Draw `batch_size` items ∝ priority^α among those at most max_staleness versions old."""
        if batch_size < 1:
            raise ConfigError(f"batch_size {batch_size} must be >= 1")
        oldest = policy_version - self.max_staleness
        slots = self.tree.sample(batch_size, self.rng)
        for _ in range(64):
            stale = self.version[slots] < oldest
            if not stale.any():
                break
            # Policy versions only grow, so a stale item stays stale: drop it from the tree for good.
            self.tree.set(np.unique(slots[stale]), np.zeros(len(np.unique(slots[stale]))))
            if self.tree.total <= 0:
                raise NotFoundError(f"no replay item is fresh enough for policy version {policy_version} "
                                    f"(max_staleness={self.max_staleness}); collect new experience first")
            slots[stale] = self.tree.sample(int(stale.sum()), self.rng)
        probs = self.tree.tree[self.tree.n_leaves + slots] / self.tree.total
        beta = self.beta
        weights = np.power(len(self) * probs, -beta)
        weights /= weights.max()
        self.steps += 1
        return ReplayBatch(ids=self.item_id[slots], keys=list(self.keys[slots]), weights=weights, probs=probs,
                           policy_versions=self.version[slots], beta=beta)

    def update_priorities(self, ids: npt.ArrayLike, values: npt.ArrayLike) -> int:
        """Set new priorities (e.g. |TD error| or |advantage|); ids already overwritten are ignored."""
        ids = np.asarray(ids, dtype=np.int64)
        values = np.abs(np.asarray(values, dtype=np.float64))
        if ids.shape != values.shape:
            raise ConfigError(f"{ids.shape[0]} ids but {values.shape[0]} priority values; give one value per id")
        if not np.all(np.isfinite(values)):
            raise ConfigError("priority values must be finite numbers")
        slots = ids % self.capacity
        live = self.item_id[slots] == ids
        p = values[live] + self.eps
        if p.size:
            self.max_priority = max(self.max_priority, float(p.max()))
            self.tree.set(slots[live], p**self.alpha)
        return int(live.sum())

    def add_trajectories(self, trajectories: Sequence[Mapping[str, Any]], now: float,
                         weights: Mapping[str, float] | None = None, half_life_s: float = 86_400.0) -> int:
        """Add store trajectories with priorities from their sources; returns how many were new."""
        prio = trajectory_priorities(trajectories, now, half_life_s, weights)
        before = self.next_id
        for t, p in zip(trajectories, prio, strict=True):
            self.add(str(t["session_id"]), policy_version_number(t.get("adapter_version")),
                     t.get("content_hash"), float(p))
        return self.next_id - before

    def top(self, n: int) -> list[tuple[str, float, int]]:
        """The n items sampled most often now: (key, sampling probability, policy version), highest first."""
        size = len(self)
        total = self.tree.total
        if size == 0 or total <= 0:
            return []
        leaves = self.tree.leaves()[:size]
        order = np.argsort(-leaves, kind="stable")[:n]
        return [(str(self.keys[i]), float(leaves[i] / total), int(self.version[i])) for i in order if leaves[i] > 0]

    def save(self, path: Path) -> None:
        """Write the buffer to `path` atomically (tmp file + rename)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        n = len(self)
        tmp = path.with_suffix(".tmp.npz")
        np.savez(tmp, leaves=self.tree.leaves()[:n], item_id=self.item_id[:n], version=self.version[:n],
                 keys=np.array(self.keys[:n], dtype=str),
                 hashes=np.array(["" if h is None else h for h in self.hashes[:n]], dtype=str),
                 state=np.array([self.next_id, self.steps, self.capacity], dtype=np.int64),
                 fstate=np.array([self.max_priority, self.alpha, self.beta0, self.beta_steps, self.max_staleness,
                                  self.eps], dtype=np.float64))
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: Path, seed: int = 0) -> PrioritizedReplay:
        """A buffer saved by `save`."""
        if not path.exists():
            raise NotFoundError(f"replay file {path} does not exist; save a buffer first")
        with np.load(path) as z:
            next_id, steps, capacity = (int(x) for x in z["state"])
            max_p, alpha, beta0, beta_steps, staleness, eps = (float(x) for x in z["fstate"])
            buf = cls(capacity, alpha, beta0, int(beta_steps), int(staleness), eps, seed)
            n = len(z["item_id"])
            buf.item_id[:n] = z["item_id"]
            buf.version[:n] = z["version"]
            buf.keys[:n] = z["keys"].astype(object)
            buf.hashes[:n] = [h or None for h in z["hashes"].tolist()]
            buf.by_hash = {h: int(i) for h, i in zip(z["hashes"].tolist(), z["item_id"].tolist(), strict=True) if h}
            buf.tree.tree[buf.tree.n_leaves : buf.tree.n_leaves + n] = z["leaves"]
            buf.tree.rebuild()
        buf.next_id, buf.steps, buf.max_priority = next_id, steps, max_p
        return buf
