"""Cluster model: gangs in the smallest domain, replicas packed onto partial nodes, quotas."""

from __future__ import annotations

import numpy as np
import pytest

from blacksoil.errors import ConfigError
from blacksoil.scheduling.topology import Cluster, Level
from blacksoil.scheduling.workloads import LearningJob, Quota, quota_allows


def _cluster() -> Cluster:
    return Cluster(nodes=8, accelerators_per_node=8, nodes_per_rack=2, racks_per_pod=2)


def test_small_gang_best_fit_on_one_node() -> None:
    c = _cluster()
    free = c.empty()
    free[3] = 5
    free[5] = 4
    p = c.can_place(free, 4)
    assert p is not None and p.level is Level.NODE and p.nodes == {5: 4}


def test_gang_goes_to_the_smallest_domain_that_fits() -> None:
    c = _cluster()
    free = c.empty()
    free[0] = 0  # rack 0 has 8 free, rack 1 has 16
    p = c.can_place(free, 8 + 4)
    assert p is not None and p.level is Level.RACK
    assert set(p.nodes) == {2, 3}
    free = np.array([8, 0, 0, 0, 8, 0, 0, 0])  # only across pods
    p = c.can_place(free, 16)
    assert p is not None and p.level is Level.CLUSTER
    assert c.can_place(free, 16, max_level=Level.POD) is None
    assert c.can_place(free, 17) is None


def test_place_returns_new_vector_and_never_overcommits() -> None:
    c = _cluster()
    free = c.empty()
    p = c.can_place(free, 20)
    assert p is not None
    after = c.place(free, p)
    assert free.sum() == 64 and after.sum() == 44
    assert (c.release(after, p.nodes) == free).all()


def test_replicas_fill_partial_nodes_first() -> None:
    c = _cluster()
    free = c.empty()
    free[6] = 3
    counts = c.can_place_units(free, 1, 5)
    assert counts is not None
    assert counts[6] == 3 and counts.sum() == 5
    assert c.can_place_units(free, 1, 1000) is None
    assert c.fragmentation(free) == pytest.approx(3 / 59)


def test_bad_shapes_name_the_value() -> None:
    with pytest.raises(ConfigError, match="accelerators=100"):
        Cluster.with_accelerators(100)
    with pytest.raises(ConfigError, match="min_size=9"):
        LearningJob("j", size=8, min_size=9, work_acc_h=1)


def test_quota_borrowing_and_lending_limits() -> None:
    quotas = {"serving": Quota(48, lending_limit=16), "learning": Quota(16, borrowing_limit=24)}
    assert quota_allows(quotas, {"serving": 0, "learning": 0}, "learning", 16)
    assert quota_allows(quotas, {"serving": 0, "learning": 16}, "learning", 16)  # borrows 16 <= lent 16
    assert not quota_allows(quotas, {"serving": 0, "learning": 16}, "learning", 17)  # lending limit
    quotas["serving"] = Quota(48)
    assert not quota_allows(quotas, {"serving": 0, "learning": 16}, "learning", 25)  # borrowing limit
    assert not quota_allows(quotas, {"serving": 40, "learning": 16}, "learning", 9)  # serving uses it
