"""The pure arithmetic of `blacksoil bench flywheel`: SLO windows, planted-PII search, step accounting, resumes.

Kept apart from the bench's run so that each rule is unit-tested without an engine (tests/test_flywheel_bench.py).
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["SloResult", "core_grants", "p99", "pii_hits", "resume_times", "slo_attainment", "step_faults"]


def p99(values: Sequence[float]) -> float:
    """The 99th percentile (nearest rank, so a window of few gaps is judged by its worst one); 0 for none."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[max(0, math.ceil(0.99 * len(ordered)) - 1)]


@dataclass(frozen=True)
class SloResult:
    """How many 10-s windows of a phase met the ITL SLO."""

    met: int
    windows: int
    empty: int
    """Windows in which no stream produced a token: serving made no visible progress, so they count as missed."""
    missed: tuple[int, ...] = ()
    """Indices of the windows missed (window i starts i × window_s after the phase began)."""

    @property
    def attainment(self) -> float:
        return self.met / self.windows if self.windows else 0.0


def slo_attainment(gaps: Iterable[tuple[float, float]], start: float, end: float, slo_s: float,
                   window_s: float = 10.0) -> SloResult:
    """Share of the whole `window_s` windows of [start, end) whose ITL p99 is at most `slo_s`.

    `gaps`: (time the token arrived, gap since the previous token of the same stream), one clock throughout. A
    trailing partial window is left out (it would be judged on a fraction of the traffic)."""
    if window_s <= 0:
        raise ValueError(f"window_s={window_s} must be positive")
    n = int((end - start) // window_s)
    buckets: list[list[float]] = [[] for _ in range(max(0, n))]
    for t, gap in gaps:
        i = int((t - start) // window_s)
        if start <= t and 0 <= i < n:
            buckets[i].append(gap)
    missed = tuple(i for i, b in enumerate(buckets) if not b or p99(b) > slo_s)
    return SloResult(len(buckets) - len(missed), len(buckets), sum(1 for b in buckets if not b), missed)


_NOT_SIGNIFICANT = re.compile(r"[^0-9a-z@.]")


def _compact(text: str) -> str:
    # Separators differ between what was planted and what a tokenizer decodes ("4111 1111" vs "4111-1111"):
    # compare letters, digits, '@' and '.' only.
    return _NOT_SIGNIFICANT.sub("", text.lower())


def pii_hits(texts: Iterable[str], planted: Sequence[str]) -> dict[str, int]:
    """How many of `texts` contain each planted value, as written or with its separators dropped (0 = never)."""
    needles = {p: _compact(p) for p in planted}
    hits = dict.fromkeys(planted, 0)
    for text in texts:
        low, compact = text.lower(), _compact(text)
        for value, needle in needles.items():
            if value.lower() in low or (needle and needle in compact):
                hits[value] += 1
    return hits


def step_faults(steps: Sequence[int], total: int, done: bool) -> tuple[int, int]:
    """(lost, repeated) optimizer steps of one training from its steps.jsonl, in the order completed.

    A step completed twice is repeated; a step never completed is lost when the training finished (all `total` were
    due) or when a later step was completed (training went past it). A training called off before its end owes no
    step after its last one."""
    due = total if done else max(steps, default=0)
    seen = set(steps)
    return len(set(range(1, due + 1)) - seen), len(steps) - len(seen)


def core_grants(history: Sequence[tuple[float, bool]]) -> list[float]:
    """Times at which the learner got cores after holding none, from (time, holds cores) per control step."""
    out, held = [], False
    for at, holds in history:
        if holds and not held:
            out.append(at)
        held = holds
    return out


def resume_times(records: Sequence[dict[str, Any]], grants: Sequence[float]) -> list[float]:
    """Seconds from the scheduler giving the learner its cores back to the first step of the restarted worker.

    `records`: steps.jsonl lines ({"pid", "at", ...}) in order; a change of pid is a restart. The time covers the
    process start, the model load, the checkpoint restore and one optimizer step: what a preemption costs the
    learner once serving lets it go (the time preempted is not in it)."""
    out = []
    for prev, rec in itertools.pairwise(records):
        if rec["pid"] == prev["pid"]:
            continue
        given = [g for g in grants if prev["at"] <= g <= rec["at"]]
        if given:
            out.append(rec["at"] - given[-1])
    return out
