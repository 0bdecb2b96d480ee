"""A numpy sum-tree for proportional prioritized sampling (Schaul et al., 2016), batch-vectorized.

Leaves hold priorities; every inner node holds the sum of its children, so a draw is one root-to-leaf descent.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from blacksoil.errors import ConfigError, NotFoundError

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


class SumTree:
    """Complete binary tree over `capacity` leaves (rounded up to a power of two), stored in one array."""

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ConfigError(f"sum-tree capacity {capacity} must be >= 1")
        self.capacity = capacity
        self.n_leaves = 1 << max(0, (capacity - 1).bit_length())
        self.depth = self.n_leaves.bit_length() - 1
        # tree[1] is the root; leaves live at tree[n_leaves : 2 * n_leaves].
        self.tree = np.zeros(2 * self.n_leaves, dtype=np.float64)

    @property
    def total(self) -> float:
        return float(self.tree[1])

    def leaves(self) -> FloatArray:
        return self.tree[self.n_leaves : self.n_leaves + self.capacity]

    def set(self, idx: IntArray, values: FloatArray) -> None:
        """Set leaf priorities (vectorized) and refresh the sums above them."""
        idx = np.asarray(idx, dtype=np.int64)
        values = np.asarray(values, dtype=np.float64)
        if idx.size == 0:
            return
        if idx.min() < 0 or idx.max() >= self.capacity:
            raise NotFoundError(f"sum-tree index out of range [0, {self.capacity})")
        if not np.all(np.isfinite(values)) or values.min() < 0:
            raise ConfigError("priorities must be finite and >= 0")
        if idx.size > self.n_leaves // 8:
            self.tree[self.n_leaves + idx] = values
            self.rebuild()
            return
        node = np.unique(idx + self.n_leaves)
        self.tree[idx + self.n_leaves] = values  # last write wins for duplicate ids
        for _ in range(self.depth):
            node = np.unique(node >> 1)
            self.tree[node] = self.tree[2 * node] + self.tree[2 * node + 1]

    def rebuild(self) -> None:
        """Recompute every inner node from the leaves, one level at a time."""
        lo = self.n_leaves
        while lo > 1:
            hi = lo
            lo >>= 1
            self.tree[lo:hi] = self.tree[2 * lo : 2 * hi : 2] + self.tree[2 * lo + 1 : 2 * hi : 2]

    def find(self, mass: FloatArray) -> IntArray:
        """Leaf index for each prefix-sum value in [0, total) (vectorized descent)."""
        mass = np.array(mass, dtype=np.float64, copy=True)
        node = np.ones(mass.shape, dtype=np.int64)
        for _ in range(self.depth):
            left = 2 * node
            left_sum = self.tree[left]
            go_right = mass >= left_sum
            mass -= left_sum * go_right
            node = left + go_right
        leaf = node - self.n_leaves
        # Float rounding can land on an empty leaf right of the last item: step back onto a real one.
        return np.minimum(leaf, self.capacity - 1)

    def sample(self, batch_size: int, rng: np.random.Generator) -> IntArray:
        """Stratified proportional draw: one uniform value per equal slice of the total mass."""
        total = self.total
        if total <= 0:
            raise NotFoundError("sum-tree is empty (all priorities are zero); add items first")
        bounds = np.arange(batch_size, dtype=np.float64) * (total / batch_size)
        mass = bounds + rng.random(batch_size) * (total / batch_size)
        leaf = self.find(np.minimum(mass, np.nextafter(total, 0)))
        # Guard rounding: a zero-priority leaf must never be returned.
        zero = self.tree[self.n_leaves + leaf] <= 0
        if zero.any():
            leaf[zero] = self.find(rng.random(int(zero.sum())) * total * 0.999999)
        return leaf
