"""The learning pillar's public face: what the composition root, the console and other pillars may use.

    from blacksoil.learning import api
    ctx = api.LearnerContext.from_settings(s)               # everything a learner reads from outside, once
    api.read_rounds(home)                                     # finished rounds, oldest first (rounds.jsonl)
    api.AdapterStore(home, model).timeline()                  # promotions, rejections, rollbacks in order

Readers of the learner's files go through here, so the file formats stay this pillar's business.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from blacksoil.learning.adapters import AdapterStore
from blacksoil.learning.context import LearnerContext

__all__ = ["AdapterStore", "LearnerContext", "read_rounds", "rounds_file"]


def rounds_file(home: Path) -> Path:
    """One JSON line per finished round, appended by the learner (loop.log_round)."""
    return home / "learning" / "rounds.jsonl"


def read_rounds(home: Path) -> list[dict[str, Any]]:
    """The finished rounds under `home`, oldest first: RoundResult fields plus `at` (unix time).

    A torn last line (a learner killed mid-write) is skipped, not an error.
    """
    path = rounds_file(home)
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        if line.strip():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return out
