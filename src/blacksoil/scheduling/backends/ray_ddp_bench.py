"""Gradient traffic of a two-rank learning gang, counted by the kernel on the sockets between the two ranks.

Each rank is a Ray actor (a `LearnerRank`) on its own Ray node running the real LoRA trainer under DDP. For every
comm hook in turn the ranks join a fresh gloo group, train the same samples for the same steps from the same seed,
and read the kernel's `tcp_info` counters (`bytes_sent`, `bytes_received`: TCP payload bytes, retransmissions
included, IP/TCP headers not) of their sockets with `ss` (iproute2) after DDP is built and after every step.

Which sockets count: those the rank's process opened while joining the group and building DDP (socket inodes of
/proc/self/fd that were not there before), minus the TCPStore's (the rendezvous port on either end; the store
only carries setup keys), kept only where the other rank holds the mirror socket (same two endpoints, swapped):
gloo's pairs between the two ranks, and nothing else that happened to open meanwhile. Wire bytes of a step = the
bytes both ranks sent on those sockets during it (each direction counted once, by its sender).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from blacksoil.distributed import Rendezvous, process_group
from blacksoil.errors import ConfigError, InternalError
from blacksoil.learning.basemodel import BaseModelInfo
from blacksoil.learning.config import LearningConfig
from blacksoil.learning.samples import TrainSample
from blacksoil.scheduling.backends.ray_learning import LearnerRank, comm_hook_spec

HOOKS = ("none", "priority", "fp16", "powersgd")
"""Hooks the bench compares; `none` is DDP's own fp32 allreduce, the baseline of every ratio."""

_SS_HEAD = re.compile(r"^\S+\s+\S+\s+(\S+)\s+(\S+)\s.*\bino:(\d+)")


@dataclass(frozen=True)
class TcpCounters:
    """One TCP socket's endpoints and the kernel's byte counters for it."""

    local: str
    """Local endpoint, `address:port` as ss prints it."""
    peer: str
    """Remote endpoint, `address:port`."""
    sent: int
    """tcp_info bytes_sent: payload bytes handed to the wire, retransmissions included (bytes)."""
    received: int
    """tcp_info bytes_received: payload bytes received in order (bytes)."""
    retrans: int
    """tcp_info bytes_retrans: the part of `sent` that was sent again (bytes)."""


def socket_inodes() -> set[int]:
    """Inodes of the sockets this process holds open (from /proc/self/fd)."""
    out = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:  # closed between listdir and readlink
            continue
        if target.startswith("socket:["):
            out.add(int(target[8:-1]))
    return out


def tcp_counters(inodes: set[int]) -> dict[int, TcpCounters]:
    """The established TCP sockets among `inodes`, with their counters, read from the kernel by `ss -tinHe`."""
    ss = shutil.which("ss")
    if ss is None:
        raise ConfigError("`ss` is not installed on this node; the DDP wire bench reads socket counters with it: "
                          "install iproute2 (apt-get install iproute2)")
    text = subprocess.run([ss, "-tinHe", "state", "established"], capture_output=True, text=True, check=True).stdout
    out: dict[int, TcpCounters] = {}
    head: re.Match[str] | None = None
    for line in text.splitlines():
        if not line.startswith(("\t", " ")):
            head = _SS_HEAD.match(line)
            continue
        if head is None or int(head.group(3)) not in inodes:
            continue
        sent, received, retrans = (_counter(line, k) for k in ("bytes_sent", "bytes_received", "bytes_retrans"))
        out[int(head.group(3))] = TcpCounters(head.group(1), head.group(2), sent, received, retrans)
        head = None
    return out


def _counter(line: str, name: str) -> int:
    found = re.search(rf"\b{name}:(\d+)", line)
    return int(found.group(1)) if found else 0  # ss leaves out counters that are still 0


def _port(endpoint: str) -> int:
    return int(endpoint.rsplit(":", 1)[1])


class WireRank(LearnerRank):
    """A learner rank that trains once per comm hook and records its gloo sockets' counters at every step."""

    def measure(self, rdv: Rendezvous, info: BaseModelInfo, cfg: LearningConfig, samples: tuple[TrainSample, ...],
                steps: int, hook: str | None) -> dict[str, Any]:
        """Train `steps` steps with the comm-hook factory `hook` (None: DDP's own allreduce); per socket its
        endpoints and (sent, received, retransmitted) bytes after DDP was built, after each step and at the end."""
        import torch.distributed as dist

        from blacksoil.learning.trainer import LoraTrainer
        from blacksoil.scheduling.backends.ray_learning import _digest
        from blacksoil.scheduling.backends.ray_serving import _node_cpus

        cfg = cfg.model_copy(update={"torch_threads": _node_cpus(self.node_id), "checkpoint_every": steps + 1})
        before = socket_inodes()
        losses: list[float] = []
        with tempfile.TemporaryDirectory(prefix="blacksoil-ddp-wire-") as run, process_group(rdv, self.rank):
            trainer = LoraTrainer(info, cfg, Path(run), rank=self.rank, world_size=self.world_size,
                                  comm_hook=hook)
            # The store's connections carry setup keys only; they are not gradient traffic.
            mine = {ino: c for ino, c in tcp_counters(socket_inodes() - before).items()
                    if rdv.port not in (_port(c.local), _port(c.peer))}
            series = {ino: [(c.sent, c.received, c.retrans)] for ino, c in mine.items()}
            t0 = time.monotonic()

            def snapshot() -> None:
                now = tcp_counters(set(mine))
                for ino in mine:
                    c = now.get(ino)
                    series[ino].append((c.sent, c.received, c.retrans) if c else series[ino][-1])

            def on_step(step: int, stats: dict[str, float]) -> None:
                snapshot()
                losses.append(float(stats["loss"]))

            trainer.train(list(samples), steps, on_step=on_step)
            seconds = time.monotonic() - t0
            # After a barrier each rank has received what the other sent during the steps: a check of the counts.
            dist.barrier()
            snapshot()
            digest = _digest(trainer.params)
        return {"rank": self.rank, "node": self.node_id, "losses": losses, "seconds": seconds, "digest": digest,
                "gradient_bytes": 4 * trainer.trainable_parameters,
                "sockets": [{"local": c.local, "peer": c.peer, "series": series[ino]} for ino, c in mine.items()]}


def ddp_wire_bytes(info: BaseModelInfo, samples: Sequence[TrainSample], *, nodes: Sequence[str], steps: int = 8,
                   hooks: Sequence[str] = HOOKS, cfg: LearningConfig | None = None,
                   timeout_s: float = 300.0) -> dict[str, Any]:
    """Run a two-rank gang (one rank on each of `nodes`' `blacksoil_host_<n>` Ray nodes) once per hook.

    Returns per hook the wire bytes of every step, their mean over all steps and over the steps after the first,
    the mean loss over ranks at every step and whether the ranks ended bit-identical; and priority's ratio to fp32
    with the loss gap at the same steps.
    """
    if "none" not in hooks:
        raise ConfigError(f"the DDP wire bench needs the 'none' baseline among its hooks (got {list(hooks)})")
    cfg = cfg or LearningConfig(batch_size=2, max_seq_len=64, lora_layers=2)
    arms = wire_arms(info, samples, {h: comm_hook_spec(h) for h in hooks}, nodes=nodes, steps=steps, cfg=cfg,
                     timeout_s=timeout_s)
    base, ours = arms["none"], arms.get("priority")
    out: dict[str, Any] = {"steps": steps, "max_seq_len": cfg.max_seq_len, "batch_size": cfg.batch_size,
                           "lora_layers": cfg.lora_layers, "learning_rate": cfg.learning_rate, "arms": arms}
    for arm in arms.values():
        arm["ratio_vs_fp32"] = _ratio(arm["bytes_per_step"], base["bytes_per_step"])
        arm["ratio_vs_fp32_after_first"] = _ratio(arm["bytes_per_step_after_first"], base["bytes_per_step_after_first"])
        arm["loss_gap_max"] = max(abs(a - b) for a, b in zip(arm["losses"], base["losses"], strict=True))
        arm["loss_gap_final"] = abs(arm["losses"][-1] - base["losses"][-1])
    if ours is not None:
        out["ratio_priority_vs_fp32"] = ours["ratio_vs_fp32"]
        out["ratio_priority_vs_fp32_after_first"] = ours["ratio_vs_fp32_after_first"]
        out["loss_gap_max"] = ours["loss_gap_max"]
        out["loss_gap_final"] = ours["loss_gap_final"]
    return out


def wire_arms(info: BaseModelInfo, samples: Sequence[TrainSample], specs: dict[str, str | None], *,
              nodes: Sequence[str], steps: int, cfg: LearningConfig, timeout_s: float = 300.0) -> dict[str, Any]:
    """One arm per comm-hook factory spec (label → spec), on the same two rank actors one after the other."""
    import ray
    from ray.util.placement_group import placement_group, remove_placement_group
    from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

    if len(nodes) != 2:
        raise ConfigError(f"the DDP wire bench runs one rank on each of two nodes; got nodes {list(nodes)}")
    pg = placement_group([{"CPU": 1, f"blacksoil_host_{n}": 0.001} for n in nodes], strategy="STRICT_SPREAD")
    actors: list[Any] = []
    arms: dict[str, Any] = {}
    try:
        ray.get(pg.ready(), timeout=timeout_s)
        # The same two actors for every arm: one torch import per rank, and identical processes for each hook.
        actors = [ray.remote(WireRank).options(
            num_cpus=1, scheduling_strategy=PlacementGroupSchedulingStrategy(pg, placement_group_bundle_index=k),
        ).remote(k, 2) for k in range(2)]
        for label, spec in specs.items():
            host, port = ray.get(actors[0].address.remote(), timeout=timeout_s)
            rdv = Rendezvous(port, 2, host=host)
            ranks = ray.get([a.measure.remote(rdv, info, cfg, tuple(samples), steps, spec) for a in actors],
                            timeout=timeout_s)
            arms[label] = _arm(ranks, steps)
    finally:
        for a in actors:
            ray.kill(a)
        remove_placement_group(pg)
    return arms


def _arm(ranks: list[dict[str, Any]], steps: int) -> dict[str, Any]:
    """Both ranks' raw series → wire bytes per step on the sockets the two ranks share, and the mean loss."""
    ends = [{(s["local"], s["peer"]) for s in r["sockets"]} for r in ranks]
    per_step = [0] * steps
    sent = received = retrans = 0
    counted = 0
    for r, other in ((ranks[0], ends[1]), (ranks[1], ends[0])):
        for s in r["sockets"]:
            if (s["peer"], s["local"]) not in other:
                continue  # not a socket between the two ranks
            counted += 1
            series = s["series"]
            for k in range(steps):  # series: after DDP was built, after each step, after a final barrier
                per_step[k] += series[k + 1][0] - series[k][0]
            sent += series[-1][0] - series[0][0]
            received += series[-1][1] - series[0][1]
            retrans += series[-1][2] - series[0][2]
    if counted == 0 or sent == 0:
        raise InternalError("no gradient traffic was seen between the two ranks' gloo sockets "
                            f"(sockets {[r['sockets'] for r in ranks]})")
    losses = [sum(r["losses"][k] for r in ranks) / len(ranks) for k in range(steps)]
    return {"bytes_each_step": per_step, "bytes_per_step": sum(per_step) / steps,
            "bytes_per_step_after_first": sum(per_step[1:]) / max(1, steps - 1),
            # The peers' receive counters, read after a final barrier, hold every byte counted for the steps (not
            # exactly `sent`: a rank quick past the barrier may already have sent the group's closing barrier).
            "all_received": received >= sum(per_step), "sent": sent, "received": received,
            "retransmitted_bytes": retrans, "sockets": counted, "losses": losses,
            "gradient_bytes": ranks[0]["gradient_bytes"], "train_s": max(r["seconds"] for r in ranks),
            "in_sync": ranks[0]["digest"] == ranks[1]["digest"], "nodes": len({r["node"] for r in ranks})}


def _ratio(x: float, base: float) -> float | None:
    return x / base if base else None


def ddp_phase(home: Path, nodes: Sequence[str], steps: int) -> dict[str, Any]:
    """The cluster bench's phase: every hook on the fixed samples of the shipped model, `steps` steps each."""
    from blacksoil.learning.basemodel import ensure_hf_copy, load_tokenizer
    from blacksoil.learning.worker import fixed_samples

    info = ensure_hf_copy(home)
    return ddp_wire_bytes(info, fixed_samples(load_tokenizer(info)), nodes=nodes, steps=steps)


def bench_keys(r: dict[str, Any]) -> dict[str, Any]:
    """The phase's entries of the bench JSON (ratios over all steps, the first exact one included)."""
    return {"ddp_bytes_ratio_priority_vs_fp32": _r(r.get("ratio_priority_vs_fp32")),
            "ddp_bytes_ratio_priority_vs_fp32_after_first_step": _r(r.get("ratio_priority_vs_fp32_after_first")),
            "ddp_loss_gap": _r(r.get("loss_gap_max")), "ddp_loss_gap_final": _r(r.get("loss_gap_final")),
            "ddp_steps": r["steps"],
            "ddp_wire": {h: {"bytes_per_step": round(a["bytes_per_step"]), "ratio_vs_fp32": _r(a["ratio_vs_fp32"]),
                             "ratio_vs_fp32_after_first_step": _r(a["ratio_vs_fp32_after_first"]),
                             "loss_gap_max": _r(a["loss_gap_max"]), "final_loss": _r(a["losses"][-1]),
                             "retransmitted_bytes": a["retransmitted_bytes"], "ranks_in_sync": a["in_sync"]}
                         for h, a in r["arms"].items()}}


def bench_rows(r: dict[str, Any]) -> list[list[Any]]:
    """The phase's rows of the bench table: [phase, measure, value]."""
    rows: list[list[Any]] = []
    for h, a in r["arms"].items():
        rows.append([f"ddp {h}", f"wire bytes per step, all {r['steps']} steps / after the first",
                     f"{a['bytes_per_step']:.0f} / {a['bytes_per_step_after_first']:.0f}"])
        if h == "none":
            continue
        rows += [[f"ddp {h}", "ratio vs fp32 (all steps / after the first)",
                  f"{_r(a['ratio_vs_fp32'])} / {_r(a['ratio_vs_fp32_after_first'])}"],
                 [f"ddp {h}", "loss gap vs fp32 (max over steps / final step)",
                  f"{_r(a['loss_gap_max'])} / {_r(a['loss_gap_final'])}"]]
    return rows


def _r(x: float | None, nd: int = 4) -> float | None:
    return None if x is None else round(float(x), nd)
