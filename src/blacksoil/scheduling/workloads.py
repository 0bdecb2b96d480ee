"""What the unified scheduler schedules: serving deployments, learning jobs, agent groups, and quotas.

Specs are frozen values; their run-time state lives in blacksoil.scheduling.state.
"""

from __future__ import annotations

from dataclasses import dataclass

from blacksoil.errors import ConfigError


@dataclass(frozen=True)
class ServingDeployment:
    """A model served by replicas; demand moves its replica count, its SLO comes first."""

    name: str
    replica_accelerators: int = 1
    """Accelerators per replica (one node at most)."""
    slo_max_utilization: float = 0.8
    """Highest replica utilization at which the latency SLO still holds (fraction)."""
    min_replicas: int = 1
    """Never scale below this many replicas (count)."""
    priority: int = 1000
    """Priority class value; serving outranks learning by default (KAI-style)."""

    def __post_init__(self) -> None:
        if self.replica_accelerators < 1:
            raise ConfigError(
                f"deployment {self.name!r}: replica_accelerators={self.replica_accelerators} must be >= 1"
            )
        if not 0 < self.slo_max_utilization <= 1:
            raise ConfigError(
                f"deployment {self.name!r}: slo_max_utilization={self.slo_max_utilization} must be in (0, 1]"
            )


@dataclass(frozen=True)
class LearningJob:
    """A gang-scheduled training job; elastic between min_size and size, resumable from checkpoints."""

    name: str
    size: int
    """Accelerators it wants (the elastic maximum)."""
    work_acc_h: float
    """Useful accelerator-hours it needs to finish."""
    min_size: int | None = None
    """Smallest size it can run at (None = not elastic: exactly `size`)."""
    priority: int = 100
    """Priority class value; lower is preempted first."""
    checkpoint_interval_s: float = 1800.0
    """Periodic checkpoint interval (seconds); work since the last checkpoint is lost on a kill."""
    checkpoint_cost_s: float = 60.0
    """Time to write one checkpoint, during which it makes no progress (seconds)."""
    arrival_s: float = 0.0
    """Submission time (seconds from the start)."""

    def __post_init__(self) -> None:
        if self.size < 1:
            raise ConfigError(f"job {self.name!r}: size={self.size} must be >= 1")
        if self.min_size is not None and not 1 <= self.min_size <= self.size:
            raise ConfigError(f"job {self.name!r}: min_size={self.min_size} must be in [1, size={self.size}]")
        if self.work_acc_h <= 0:
            raise ConfigError(f"job {self.name!r}: work_acc_h={self.work_acc_h} must be positive")

    @property
    def smallest(self) -> int:
        return self.min_size if self.min_size is not None else self.size

    @property
    def elastic(self) -> bool:
        return self.smallest < self.size


@dataclass(frozen=True)
class AgentGroup:
    """Cooperating agents (and their model replica) that must share one node for low-latency calls."""

    name: str
    accelerators: int
    """Accelerators the whole group needs, all on one node."""
    priority: int = 500
    """Priority class value."""


@dataclass(frozen=True)
class Quota:
    """Kueue ClusterQueue-style quota of one queue inside a cohort (accelerators)."""

    nominal: int
    """Guaranteed accelerators."""
    borrowing_limit: int | None = None
    """Most accelerators it may borrow from the cohort beyond nominal (None = no limit)."""
    lending_limit: int | None = None
    """Most of its unused nominal quota others may borrow (None = all of it)."""

    def __post_init__(self) -> None:
        for k in ("nominal", "borrowing_limit", "lending_limit"):
            v = getattr(self, k)
            if v is not None and v < 0:
                raise ConfigError(f"quota {k}={v} must be >= 0")


def quota_allows(quotas: dict[str, Quota], usage: dict[str, int], queue: str, extra: int) -> bool:
    """Whether `queue` may use `extra` more accelerators: within nominal, or borrowing what others lend."""
    q = quotas.get(queue)
    if q is None:
        return True
    want = usage.get(queue, 0) + extra
    if want <= q.nominal:
        return True
    borrow = want - q.nominal
    if q.borrowing_limit is not None and borrow > q.borrowing_limit:
        return False
    lendable = 0
    for name, other in quotas.items():
        if name == queue:
            continue
        unused = max(0, other.nominal - usage.get(name, 0))
        lendable += unused if other.lending_limit is None else min(unused, other.lending_limit)
    return borrow <= lendable
