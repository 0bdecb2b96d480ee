"""`blacksoil bench replay`: sampling throughput of the prioritized replay and insert throughput of the store.

Ends through blacksoil.benchlog.report with keys replay_items, samples_per_s, inserts_per_s_sqlite/_postgres.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from rich.progress import Progress

from blacksoil.contracts import ExperienceEvent
from blacksoil.experience.replay import PrioritizedReplay
from blacksoil.experience.store import ExperienceStore, default_url


def replay_throughput(items: int, batch: int, seconds: float) -> dict[str, float]:
    """Fill a buffer with `items` items, then sample (and separately sample+update) for `seconds` each."""
    rng = np.random.default_rng(0)
    buf = PrioritizedReplay(capacity=items, seed=0)
    t0 = time.perf_counter()
    chunk = 100_000
    with Progress(transient=True) as prog:
        task = prog.add_task("filling replay", total=items)
        for lo in range(0, items, chunk):
            n = min(chunk, items - lo)
            buf.add_many([f"s{lo + i}" for i in range(n)], rng.integers(0, 3, n), rng.random(n))
            prog.advance(task, n)
    fill_s = time.perf_counter() - t0
    n_sampled, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        buf.sample(batch, policy_version=2)
        n_sampled += batch
    sample_rate = n_sampled / (time.perf_counter() - t0)
    n_updated, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        b = buf.sample(batch, policy_version=2)
        buf.update_priorities(b.ids, rng.random(batch))
        n_updated += batch
    return {"fill_items_per_s": items / fill_s, "samples_per_s": sample_rate,
            "sample_update_per_s": n_updated / (time.perf_counter() - t0)}


def sampling_sweep(items: int, batch: int, seconds: float) -> list[tuple[int, float]]:
    """(buffer size, samples/s) at items/100, items/10 and items: sampling cost grows with log(size)."""
    sizes = sorted({max(batch, items // 100), max(batch, items // 10), items})
    return [(n, replay_throughput(n, batch, seconds)["samples_per_s"]) for n in sizes]


def plot_sweep(sweep: list[tuple[int, float]], path: Path) -> None:
    """Samples/s against buffer size (log x) as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.2))
    ax.plot([n for n, _ in sweep], [r for _, r in sweep], marker="o")
    ax.axhline(50_000, color="grey", linestyle="--", label="target 50,000/s")
    ax.set_xscale("log")
    ax.set_xlabel("items in replay buffer")
    ax.set_ylabel("samples/s (batch 256)")
    ax.set_ylim(bottom=0)
    ax.legend()
    ax.set_title("Prioritized replay sampling throughput")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _events(n: int, tenant: str) -> list[ExperienceEvent]:
    text = "Schedule the 10x10 job shop on plant 3 and report the makespan. " * 8
    return [ExperienceEvent(kind="model_call", tenant=tenant, session_id=f"s{i // 8}",
                            messages=[{"role": "user", "content": text}], response={"content": text[:200]},
                            prompt_token_ids=list(range(200)), completion_token_ids=list(range(50)),
                            completion_logprobs=[-0.5] * 50, metadata={"pii_replaced": 0, "task_id": f"t{i % 20}"})
            for i in range(n)]


def insert_throughput(url: str, n: int, per_txn: int) -> float:
    """Events/s committed (already anonymized) with `per_txn` events per transaction."""
    store = ExperienceStore(url)
    events = _events(n, tenant=f"bench{per_txn}")
    t0 = time.perf_counter()
    with Progress(transient=True) as prog:
        task = prog.add_task(f"inserting ({url.split(':')[0]}, {per_txn}/txn)", total=n)
        for lo in range(0, n, per_txn):
            store.write_anonymized(events[lo : lo + per_txn])
            prog.advance(task, per_txn)
    rate = n / (time.perf_counter() - t0)
    store.close()
    return rate


def anonymize_throughput(n: int) -> float:
    """Events/s through the anonymizer (each event: one message with an e-mail and a phone number)."""
    store = ExperienceStore(f"sqlite:///{tempfile.mkdtemp()}/a.db")
    ev = ExperienceEvent(kind="model_call", messages=[{"role": "user", "content":
                         "Send the report for press 4 to anna.berg@northwind.com or call +1 415-867-2291."}])
    store.anonymizer.anonymize_event(ev)  # warm-up
    t0 = time.perf_counter()
    for _ in range(n):
        store.anonymizer.anonymize_event(ev)
    return n / (time.perf_counter() - t0)


def run(items: int, batch: int, seconds: float, inserts: int, pg_url: str | None, start_pg: bool) -> dict[str, Any]:
    """Run every part; returns the result dict (also printed and logged by the caller)."""
    result: dict[str, Any] = {"replay_items": items, "batch_size": batch}
    result.update(replay_throughput(items, batch, seconds))
    tmp = Path(tempfile.mkdtemp(prefix="bs-bench-"))
    result["inserts_per_s_sqlite"] = insert_throughput(default_url(tmp / "b"), inserts, 100)
    result["acked_inserts_per_s_sqlite"] = insert_throughput(default_url(tmp / "c"), max(50, inserts // 10), 1)
    pg = None
    try:
        if pg_url is None and start_pg:
            from blacksoil.experience.pgtemp import TempPostgres

            pg = TempPostgres().start()
            pg_url = pg.url
        if pg_url is not None:
            result["inserts_per_s_postgres"] = insert_throughput(pg_url, inserts, 100)
            result["acked_inserts_per_s_postgres"] = insert_throughput(pg_url, max(50, inserts // 10), 1)
        else:
            result["inserts_per_s_postgres"] = None
    finally:
        if pg is not None:
            pg.stop()
    result["anonymize_events_per_s"] = anonymize_throughput(50)
    return result
