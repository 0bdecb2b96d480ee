"""The cluster model: nodes of accelerators grouped into topology domains (node → rack → pod → cluster).

Placement is a pure function of a per-node free-accelerator vector, so the simulator, the policy and the
real backends share it: `can_place` answers where a gang would go, `place` returns the new free vector.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

import numpy as np

from blacksoil.errors import ConfigError


class Level(IntEnum):
    """Topology levels, smallest first; a gang spanning a bigger level communicates more slowly."""

    NODE = 0
    RACK = 1
    POD = 2
    CLUSTER = 3


# Share of a gang's compute that turns into progress when it spans a level: all-reduce crosses slower
# links. Values follow the usual NVLink > rail-optimized leaf > spine ordering; they are assumptions.
LEVEL_EFFICIENCY = {Level.NODE: 1.0, Level.RACK: 1.0, Level.POD: 0.95, Level.CLUSTER: 0.8}


@dataclass(frozen=True)
class Placement:
    """Where a gang goes: accelerators per node, and the smallest domain level that contains them."""

    nodes: dict[int, int]
    level: Level

    @property
    def size(self) -> int:
        return sum(self.nodes.values())

    @property
    def efficiency(self) -> float:
        return LEVEL_EFFICIENCY[self.level]


class Cluster:
    """Static shape of a cluster: node count, accelerators per node, rack and pod grouping."""

    def __init__(self, nodes: int, accelerators_per_node: int = 8, nodes_per_rack: int = 16, racks_per_pod: int = 8):
        if nodes < 1 or accelerators_per_node < 1 or nodes_per_rack < 1 or racks_per_pod < 1:
            raise ConfigError(
                f"cluster shape nodes={nodes}, accelerators_per_node={accelerators_per_node}, "
                f"nodes_per_rack={nodes_per_rack}, racks_per_pod={racks_per_pod} must all be >= 1"
            )
        self.nodes = nodes
        self.per_node = accelerators_per_node
        self.nodes_per_rack = nodes_per_rack
        self.racks_per_pod = racks_per_pod
        idx = np.arange(nodes)
        self.rack_of = idx // nodes_per_rack
        self.pod_of = self.rack_of // racks_per_pod
        self.n_racks = int(self.rack_of[-1]) + 1
        self.n_pods = int(self.pod_of[-1]) + 1

    @classmethod
    def from_groups(cls, per_node: int, racks: list[str], pods: list[str]) -> Cluster:
        """A cluster of real nodes whose rack and pod come from labels (one entry per node, same order)."""
        if len(racks) != len(pods) or not racks:
            raise ConfigError(f"need one rack and one pod label per node, got {len(racks)} racks and {len(pods)} pods")
        c = cls(len(racks), per_node, 1, 1)
        rack_ids = {r: k for k, r in enumerate(dict.fromkeys(f"{p}/{r}" for r, p in zip(racks, pods, strict=True)))}
        pod_ids = {p: k for k, p in enumerate(dict.fromkeys(pods))}
        c.rack_of = np.array([rack_ids[f"{p}/{r}"] for r, p in zip(racks, pods, strict=True)])
        c.pod_of = np.array([pod_ids[p] for p in pods])
        c.n_racks, c.n_pods = len(rack_ids), len(pod_ids)
        return c

    @classmethod
    def with_accelerators(cls, accelerators: int, per_node: int = 8, nodes_per_rack: int = 16,
                          racks_per_pod: int = 8) -> Cluster:
        if accelerators < per_node or accelerators % per_node:
            raise ConfigError(
                f"accelerators={accelerators} must be a positive multiple of {per_node} (accelerators per node)"
            )
        return cls(accelerators // per_node, per_node, nodes_per_rack, racks_per_pod)

    @property
    def accelerators(self) -> int:
        return self.nodes * self.per_node

    def empty(self) -> np.ndarray:
        """A free vector with every accelerator free."""
        return np.full(self.nodes, self.per_node, dtype=np.int64)

    def node_name(self, node: int) -> str:
        return f"pod{self.pod_of[node]}-rack{self.rack_of[node]}-node{node}"

    # ---- gangs: all-or-nothing, in the smallest domain that fits ----

    def can_place(self, free: np.ndarray, size: int, max_level: Level = Level.CLUSTER) -> Placement | None:
        """Where a gang of `size` accelerators would go, or None. Best fit at the smallest level."""
        if size <= 0:
            return None
        if size <= self.per_node:
            fits = np.flatnonzero(free >= size)
            if fits.size:
                # Best fit: the node left with the fewest free accelerators keeps whole nodes for big gangs.
                node = int(fits[np.argmin(free[fits])])
                return Placement({node: size}, Level.NODE)
        for level, group in ((Level.RACK, self.rack_of), (Level.POD, self.pod_of)):
            if level > max_level:
                return None
            totals = np.bincount(group, weights=free, minlength=int(group.max()) + 1)
            ok = np.flatnonzero(totals >= size)
            if ok.size:
                dom = int(ok[np.argmin(totals[ok])])
                return Placement(self._fill(free, np.flatnonzero(group == dom), size), level)
        if max_level < Level.CLUSTER or int(free.sum()) < size:
            return None
        return Placement(self._fill(free, np.arange(self.nodes), size), Level.CLUSTER)

    def _fill(self, free: np.ndarray, members: np.ndarray, size: int) -> dict[int, int]:
        # Whole free nodes first, then the fullest partial ones: leaves the fewest fragments behind.
        f = free[members]
        order = members[np.lexsort((members, -f))]
        take: dict[int, int] = {}
        need = size
        for n in order:
            c = int(min(free[n], need))
            if c <= 0:
                break
            take[int(n)] = c
            need -= c
            if need == 0:
                break
        assert need == 0, "domain total said the gang fits"
        return take

    @staticmethod
    def place(free: np.ndarray, placement: Placement) -> np.ndarray:
        """The free vector after taking `placement` (a new array; the input is untouched)."""
        out = free.copy()
        for n, c in placement.nodes.items():
            out[n] -= c
        assert (out >= 0).all(), "placement took more than was free"
        return out

    @staticmethod
    def release(free: np.ndarray, nodes: dict[int, int]) -> np.ndarray:
        out = free.copy()
        for n, c in nodes.items():
            out[n] += c
        return out

    # ---- replicas: independent units of `unit` accelerators, each on one node ----

    def can_place_units(self, free: np.ndarray, unit: int, count: int) -> np.ndarray | None:
        """Per-node unit counts for `count` replicas of `unit` accelerators each, or None if they do not fit.

        Fills partially used nodes first (best fit), so whole nodes stay free for gangs."""
        slots = free // unit
        if int(slots.sum()) < count:
            return None
        # Partial nodes before full ones, fullest partial first; index breaks ties for determinism.
        whole = free == self.per_node
        order = np.lexsort((np.arange(self.nodes), free, whole))
        s = slots[order]
        cum = np.cumsum(s)
        k = int(np.searchsorted(cum, count))
        counts = np.zeros(self.nodes, dtype=np.int64)
        counts[order[:k]] = s[:k]
        counts[order[k]] = count - (int(cum[k - 1]) if k else 0)
        return counts

    def units_to_remove(self, held: np.ndarray, free: np.ndarray, count: int) -> np.ndarray:
        """Per-node unit counts to remove `count` replicas, emptying the least-used nodes first."""
        count = min(count, int(held.sum()))
        # Fewest replicas first (those nodes empty soonest), then the emptiest node; index breaks ties.
        order = np.lexsort((np.arange(self.nodes), -free, held))
        order = order[held[order] > 0]
        h = held[order]
        cum = np.cumsum(h)
        k = int(np.searchsorted(cum, count))
        out = np.zeros(self.nodes, dtype=np.int64)
        if count <= 0:
            return out
        out[order[:k]] = h[:k]
        out[order[k]] = count - (int(cum[k - 1]) if k else 0)
        return out

    def fragmentation(self, free: np.ndarray) -> float:
        """Share of free accelerators that sit on partly used nodes (unusable for a whole-node gang)."""
        total = int(free.sum())
        if total == 0:
            return 0.0
        partial = free[(free > 0) & (free < self.per_node)].sum()
        return float(partial) / total
