"""The scheduler as pure logic: LAS and priority ordering, session affinity, bounded queue, FCFS, drain."""

from __future__ import annotations

from blacksoil.serving.admission import Admission, Ticket


def _sched(concurrency: int = 1, slots: int = 4, policy: str = "agent", queue_max: int = 8) -> Admission:
    s = Admission(policy, queue_max)  # type: ignore[arg-type]
    s.add_replica("r0", concurrency, slots)
    return s


def test_least_attained_service_goes_first() -> None:
    s = _sched()
    s.attained.update({"heavy": 30.0, "light": 1.0})
    s.enqueue(Ticket("a", "heavy"))
    s.enqueue(Ticket("b", "light"))
    s.enqueue(Ticket("c", "new"))  # a new session has consumed nothing
    assert [t.request_id for t in s.dispatch()] == ["c"]
    s.release(Ticket("c", "new", replica="r0", slot=0), 0.5)
    order = []
    for _ in range(2):
        (t,) = s.dispatch()
        order.append(t.request_id)
        s.release(t, 0.1)
    assert order == ["b", "a"]


def test_priority_beats_attained_service_and_fcfs_ignores_both() -> None:
    s = _sched()
    s.attained["vip"] = 100.0
    s.enqueue(Ticket("low", "fresh", priority=0))
    s.enqueue(Ticket("high", "vip", priority=5))
    assert [t.request_id for t in s.dispatch()] == ["high"]
    f = _sched(policy="fcfs")
    f.attained["x"] = 100.0
    f.enqueue(Ticket("first", "x"))
    f.enqueue(Ticket("second", "y", priority=9))
    (t,) = f.dispatch()
    assert t.request_id == "first" and t.slot is None  # FCFS lets the engine pick the slot


def test_session_keeps_its_slot_and_lru_slot_is_evicted() -> None:
    s = _sched(concurrency=2, slots=2)
    s.enqueue(Ticket("a1", "A"))
    s.enqueue(Ticket("b1", "B"))
    a1, b1 = s.dispatch()
    assert {a1.slot, b1.slot} == {0, 1}
    s.release(a1, 1.0)
    s.release(b1, 1.0)
    s.enqueue(Ticket("a2", "A"))
    (a2,) = s.dispatch()
    assert (a2.replica, a2.slot) == (a1.replica, a1.slot)
    s.release(a2, 1.0)
    s.enqueue(Ticket("c1", "C"))  # no free unowned slot: evicts B's (least recently used)
    (c1,) = s.dispatch()
    assert c1.slot == b1.slot
    assert "B" not in s.affinity and s.affinity["A"] == ("r0", a1.slot)


def test_affine_session_waits_for_its_replica_instead_of_moving() -> None:
    s = _sched(concurrency=1, slots=2)
    s.add_replica("r1", 1, 2)
    s.enqueue(Ticket("a1", "A"))
    (a1,) = s.dispatch()
    s.release(a1, 1.0)
    s.enqueue(Ticket("b1", "B"))
    (b1,) = s.dispatch()
    assert b1.replica != a1.replica  # new session → least loaded replica
    s.enqueue(Ticket("x", "X"))
    (x,) = s.dispatch()  # occupies A's replica
    assert x.replica == a1.replica
    s.enqueue(Ticket("a2", "A"))
    assert s.dispatch() == []  # A's prefix lives on a busy replica: wait, don't recompute elsewhere
    s.release(x, 0.1)
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
    s.release(a1, 1.0)
    s.add_replica("green", 1, 2)
    s.set_accepting("r0", False)
    s.enqueue(Ticket("a2", "A"))
    s.enqueue(Ticket("n1", "N"))
    placed = s.dispatch()
    assert [t.replica for t in placed] == ["green"]  # one place on green; the other waits for it
    s.release(placed[0], 0.1)
    assert [t.replica for t in s.dispatch()] == ["green"]


def test_unhealthy_replica_gets_nothing_and_forgets_its_caches() -> None:
    s = _sched(concurrency=1, slots=2)
    s.enqueue(Ticket("a1", "A"))
    (a1,) = s.dispatch()
    s.release(a1, 1.0)
    s.set_healthy("r0", False)
    assert "A" not in s.affinity
    s.enqueue(Ticket("a2", "A"))
    assert s.dispatch() == []
    s.set_healthy("r0", True)
    assert len(s.dispatch()) == 1
