"""What the console reads: the running gateway's pool and metrics, and the pillars' stores on disk.

Views get a ConsoleContext and the caller's tenant; they never reach into another pillar's internals.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from blacksoil.config import Settings
from blacksoil.console.sampler import ServingSampler
from blacksoil.contracts import ReplicaControl

__all__ = ["ConsoleContext", "card", "chart", "table"]


@dataclass
class ConsoleContext:
    """Handles the views read from; everything optional so the console also runs without a gateway."""

    settings: Settings
    """Root settings (home folder, pillar configs)."""
    pool: ReplicaControl | None = None
    """The gateway's replica pool (serving view: replicas; learning view: served name and adapter versions)."""
    sampler: ServingSampler | None = None
    """Live serving time series sampled from the gateway's metrics."""
    extras: dict[str, Any] = field(default_factory=dict)
    """Pillar handles registered by the platform (e.g. the agent runtime factory)."""


def chart(cid: str, title: str, kind: str, labels: list[Any], datasets: list[dict[str, Any]],
          **opts: Any) -> dict[str, Any]:
    """One chart spec for console.js (Chart.js types: line, area, bar, scatter)."""
    return {"id": cid, "title": title, "type": kind, "labels": labels, "datasets": datasets, **opts}


def table(tid: str, title: str, columns: list[str], rows: list[list[Any]],
          empty: str = "nothing yet") -> dict[str, Any]:
    """One table spec for console.js; a cell {"action": [...]} renders buttons."""
    return {"id": tid, "title": title, "columns": columns, "rows": rows, "empty": empty}


def card(cid: str, label: str, value: Any) -> dict[str, Any]:
    """One headline number."""
    return {"id": cid, "label": label, "value": value}
