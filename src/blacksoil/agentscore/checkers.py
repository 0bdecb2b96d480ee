"""Deterministic checkers: predicates over the final state and the final answer, τ²-bench style.

The route does not matter, the resulting state does. Partial credit is the weighted share of predicates met;
a task passes only when all are met (job-shop quality adds best-known ÷ makespan as its credit).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from .tasks import Predicate, Task

__all__ = ["CheckResult", "Verdict", "check", "check_one", "compare", "count_matching", "resolve"]

_MISSING = object()
_NUMBER = re.compile(r"-?\d+(?:,\d{3})*(?:\.\d+)?")


@dataclass(frozen=True)
class CheckResult:
    """One predicate's outcome: passed, its credit in 0..1 and a readable reason."""

    passed: bool
    credit: float
    detail: str


@dataclass(frozen=True)
class Verdict:
    """A task's outcome: passed (all predicates), reward (weighted partial credit) and per-predicate results."""

    passed: bool
    reward: float
    checks: list[CheckResult]


def resolve(state: Any, path: str) -> Any:
    """Follow a dotted path (dict keys, list indexes) through the state; _MISSING when absent."""
    cur = state
    for part in path.split("."):
        if isinstance(cur, dict) and part in cur:
            cur = cur[part]
        elif isinstance(cur, list) and part.lstrip("-").isdigit() and -len(cur) <= int(part) < len(cur):
            cur = cur[int(part)]
        else:
            return _MISSING
    return cur


def _close(a: Any, b: Any, tol: float) -> bool:
    if isinstance(a, int | float) and isinstance(b, int | float) and not isinstance(a, bool):
        return abs(float(a) - float(b)) <= tol
    if isinstance(a, str) and isinstance(b, str):
        return a.strip().lower() == b.strip().lower()
    return bool(a == b)


def compare(value: Any, op: str, target: Any, tol: float = 0.0) -> bool:
    """Apply one operator; numbers compare within `tol`, strings case-insensitively."""
    if value is _MISSING:
        return False
    if op == "eq":
        return _close(value, target, tol)
    if op == "ne":
        return not _close(value, target, tol)
    if op == "in_":
        return any(_close(value, t, tol) for t in target)
    if op == "not_in":
        return not any(_close(value, t, tol) for t in target)
    if not isinstance(value, int | float) or isinstance(value, bool):
        return False
    return bool({"ge": value >= target - tol, "le": value <= target + tol,
                 "gt": value > target, "lt": value < target}[op])


def _field_matches(value: Any, cond: Any) -> bool:
    if isinstance(cond, dict):
        return all(_one_cond(value, k, v) for k, v in cond.items())
    return _close(value, cond, 0.0)


def _one_cond(value: Any, op: str, target: Any) -> bool:
    if op == "contains":
        return isinstance(value, str) and str(target).lower() in value.lower()
    if op == "in":
        return any(_close(value, t, 0.0) for t in target)
    if op == "not_in":
        return not any(_close(value, t, 0.0) for t in target)
    if op == "ne":
        return not _close(value, target, 0.0)
    raise ValueError(f"where-operator {op!r} is unknown; use contains, in, not_in or ne")


def count_matching(state: dict[str, Any], collection: str, where: dict[str, Any]) -> int:
    """How many records of a collection (dict or list) satisfy all `where` conditions."""
    items = resolve(state, collection)
    if items is _MISSING or items is None:
        return 0
    records = list(items.values()) if isinstance(items, dict) else list(items)
    return sum(1 for r in records if all(_field_matches(r.get(k, None), c) for k, c in where.items()))


def _numbers(text: str) -> list[float]:
    return [float(m.replace(",", "")) for m in _NUMBER.findall(text)]


def check_one(p: Predicate, state: dict[str, Any], answer: str) -> CheckResult:
    """Evaluate one predicate."""
    op = p.op
    target = p.in_ if op == "in_" else getattr(p, op, None) if op else None
    if p.path is not None:
        value = resolve(state, p.path)
        ok = compare(value, op, target, p.tol)
        shown = "missing" if value is _MISSING else repr(value)
        return CheckResult(ok, float(ok), f"{p.path}={shown} {op} {target!r}")
    if p.count is not None:
        n = count_matching(state, p.count, p.where)
        ok = compare(n, op, target)
        return CheckResult(ok, float(ok), f"count({p.count} where {p.where})={n} {op} {target!r}")
    if p.answer_contains is not None:
        ok = p.answer_contains.lower() in answer.lower()
        return CheckResult(ok, float(ok), f"answer contains {p.answer_contains!r}")
    if p.answer_number is not None:
        ok = any(abs(x - p.answer_number) <= p.tol for x in _numbers(answer))
        return CheckResult(ok, float(ok), f"answer has {p.answer_number}±{p.tol}")
    assert p.makespan_quality is not None
    best = resolve(state, "instance.best_known")
    made = resolve(state, "submitted.makespan")
    if not isinstance(made, int) or not isinstance(best, int) or made <= 0:
        return CheckResult(False, 0.0, "no feasible schedule submitted")
    ratio = made / best
    ok = ratio <= p.makespan_quality + 1e-9
    detail = f"makespan {made} / best {best} = {ratio:.3f} <= {p.makespan_quality}"
    return CheckResult(ok, min(1.0, best / made), detail)


def check(task: Task, state: dict[str, Any], answer: str, initial: dict[str, Any] | None = None) -> Verdict:
    """Evaluate all predicates of a task on a final state and answer.

    With the `initial` state, predicates that already held before the agent acted (guards such as "no order for
    any other machine") earn no credit by themselves: partial credit is the weighted share of the other
    (progress) predicates met, scaled by the share of guards still holding. Doing nothing therefore earns 0.
    """
    results = [check_one(p, state, answer or "") for p in task.checker]
    passed = all(r.passed for r in results)
    if passed:
        return Verdict(True, 1.0, results)
    guards = [initial is not None and check_one(p, initial, "").passed for p in task.checker]
    progress = [(p.weight, r.credit) for p, r, g in zip(task.checker, results, guards, strict=True) if not g]
    kept = [(p.weight, r.credit) for p, r, g in zip(task.checker, results, guards, strict=True) if g]
    done = sum(w * c for w, c in progress) / sum(w for w, _ in progress) if progress else 0.0
    held = sum(w * c for w, c in kept) / sum(w for w, _ in kept) if kept else 1.0
    return Verdict(False, done * held, results)
