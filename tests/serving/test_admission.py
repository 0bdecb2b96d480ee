"""The scheduler as pure logic: priority then arrival order, session affinity, bounded queue, FCFS, drain."""

from __future__ import annotations

from blacksoil.serving.admission import Admission, Ticket


def _sched(concurrency: int = 1, slots: int = 4, policy: str = "agent", queue_max: int = 8) -> Admission:
    s = Admission(policy, queue_max)  # type: ignore[arg-type]
    s.add_replica("r0", concurrency, slots)
    return s


def _order(s: Admission) -> list[str]:
    """Request ids in the order a one-place replica admits them."""
    out = []
    while s.waiting:
        (t,) = s.dispatch()
        out.append(t.request_id)
        s.release(t)
    return out


def test_higher_priority_goes_first() -> None:
    s = _sched()
    s.enqueue(Ticket("low", "A", priority=0))
    s.enqueue(Ticket("high", "B", priority=5))
    assert _order(s) == ["high", "low"]


def test_equal_priority_goes_in_arrival_order_however_long_the_session() -> None:
    s = _sched()
    for i in range(5):  # session "long" has run five calls already
        s.enqueue(Ticket(f"long{i}", "long"))
        _order(s)
    s.enqueue(Ticket("long5", "long"))
    s.enqueue(Ticket("new0", "new"))
    assert _order(s) == ["long5", "new0"]  # no least-attained-service reordering: it lost to FCFS when measured


def test_fcfs_ignores_priority() -> None:
    s = _sched(policy="fcfs")
    s.enqueue(Ticket("first", "x"))
    s.enqueue(Ticket("second", "y", priority=9))
    assert _order(s) == ["first", "second"]


def test_fcfs_lets_the_engine_pick_the_slot() -> None:
    s = _sched(policy="fcfs")
    s.enqueue(Ticket("a", "A"))
    (t,) = s.dispatch()
    assert t.slot is None


def test_session_keeps_its_slot_and_lru_slot_is_evicted() -> None:
    s = _sched(concurrency=2, slots=2)
    s.enqueue(Ticket("a1", "A"))
    s.enqueue(Ticket("b1", "B"))
    a1, b1 = s.dispatch()
    assert {a1.slot, b1.slot} == {0, 1}
    s.release(a1)
    s.release(b1)
    s.enqueue(Ticket("a2", "A"))
    (a2,) = s.dispatch()
    assert (a2.replica, a2.slot) == (a1.replica, a1.slot)
    s.release(a2)
    s.enqueue(Ticket("c1", "C"))  # no free unowned slot: evicts B's (least recently used)
    (c1,) = s.dispatch()
    assert c1.slot == b1.slot
    assert "B" not in s.affinity
    assert s.affinity["A"] == ("r0", a1.slot)


def test_affine_session_waits_for_its_replica_instead_of_moving() -> None:
    s = _sched(concurrency=1, slots=2)
    s.add_replica("r1", 1, 2)
    s.enqueue(Ticket("a1", "A"))
    (a1,) = s.dispatch()
    s.release(a1)
    s.enqueue(Ticket("b1", "B"))
    (b1,) = s.dispatch()
    assert b1.replica != a1.replica  # new session → least loaded replica
    s.enqueue(Ticket("x", "X"))
    (x,) = s.dispatch()  # occupies A's replica
    assert x.replica == a1.replica
    s.enqueue(Ticket("a2", "A"))
    assert s.dispatch() == []  # A's prefix lives on a busy replica: wait, don't recompute elsewhere
    s.release(x)
    (a2,) = s.dispatch()
    assert a2.replica == a1.replica


def test_bounded_queue() -> None:
    s = _sched(queue_max=2)
    s.enqueue(Ticket("a"))
    s.enqueue(Ticket("b"))
    assert not s.can_enqueue()
    s.dispatch()
    assert s.can_enqueue()


def test_draining_replica_takes_no_new_or_returning_sessions() -> None:
    s = _sched(concurrency=1, slots=2)
    s.enqueue(Ticket("a1", "A"))
    (a1,) = s.dispatch()
    s.release(a1)
    s.add_replica("green", 1, 2)
    s.set_accepting("r0", False)
    s.enqueue(Ticket("a2", "A"))
    s.enqueue(Ticket("n1", "N"))
    placed = s.dispatch()
    assert [t.replica for t in placed] == ["green"]  # one place on green; the other waits for it
    s.release(placed[0])
    assert [t.replica for t in s.dispatch()] == ["green"]


def test_unhealthy_replica_gets_nothing_and_forgets_its_caches() -> None:
    s = _sched(concurrency=1, slots=2)
    s.enqueue(Ticket("a1", "A"))
    (a1,) = s.dispatch()
    s.release(a1)
    s.set_healthy("r0", False)
    assert "A" not in s.affinity
    s.enqueue(Ticket("a2", "A"))
    assert s.dispatch() == []
    s.set_healthy("r0", True)
    assert len(s.dispatch()) == 1
