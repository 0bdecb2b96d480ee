"""Learner ranks as Ray actors: the real LoRA trainer, one rank per actor, torch.distributed set up here.

A gang is one placement group (its bundles pinned where the policy chose) and one actor per bundle. Rank 0's actor
picks the rendezvous port on its node; every rank joins a gloo group there and runs `LoraTrainer.train`, DDP
all-reducing the LoRA gradients (through the selected comm hook). Rank 0 checkpoints into the run folder, which
every node must see (a shared path; a local folder when all nodes are one machine).

Stopping is collective: after each step the ranks all-reduce a stop flag, so every rank stops after the same step
and rank 0 checkpoints exactly that step. A rank that dies (killed, or its node lost) fails its pending `train`
call, which is Ray's own death notice: the gang's other ranks are ended (they would wait in a collective) and the
gang starts again from the newest checkpoint, so the step count continues with no step lost or repeated.

A lost node (`ray stop` on it) is elastic: the gang starts again at once on the bundles of its placement group that
are still placed, with fewer ranks (the largest count that splits `batch_size`), rather than waiting for Ray to
place the lost bundles. That resumes exactly: every DDP rank holds the same LoRA weights and optimizer state, so the
checkpoint is the same at any world size, and each step's global batch is chosen by step, not by rank
(`LoraTrainer.batch_indices`), so fewer ranks take larger slices of the same samples. Ray keeps re-placing the lost
bundles; once the group is whole again (a node with the lost host tag joined) the gang stops after a step, rank 0
checkpointing it, and starts again at its full size.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from blacksoil.distributed import Rendezvous, free_port, process_group
from blacksoil.errors import ConfigError, InternalError
from blacksoil.learning.basemodel import BaseModelInfo
from blacksoil.learning.config import LearningConfig
from blacksoil.learning.samples import TrainSample

log = logging.getLogger(__name__)

STEPS_FILE = "steps.jsonl"
"""Rank 0 appends one line per step once its checkpoint is on disk: {attempt, world, step, loss, node, at}."""

COMM_HOOKS: dict[str, str | None] = {
    "none": None,
    "fp16": "blacksoil.learning.ddp:fp16_compress",
    "powersgd": "blacksoil.scheduling.backends.comm_hooks:powersgd",
    "priority": "blacksoil.scheduling.backends.comm_hooks:priority_sampling",
}
"""`[learning] comm_hook` names → DDP comm-hook factories (see trainer.load_comm_hook)."""


def comm_hook_spec(name: str) -> str | None:
    """The factory for a comm hook name; ConfigError naming the choices for an unknown one."""
    if name not in COMM_HOOKS:
        raise ConfigError(f"comm_hook {name!r} is unknown; choose one of {', '.join(COMM_HOOKS)}")
    return COMM_HOOKS[name]


@dataclass(frozen=True)
class LearnerSpec:
    """What one learning gang trains (picklable: it travels to every rank)."""

    info: BaseModelInfo
    """The base model's cached fp32 copy, at a path every node sees."""
    cfg: LearningConfig
    """Trainer settings; `batch_size` is split over the ranks, `torch_threads` is replaced by the node's CPUs."""
    samples: tuple[TrainSample, ...]
    """Training samples (every rank takes its slice of each step's batch)."""
    steps: int
    """Optimizer steps to reach in total, across restarts."""
    comm_hook: str | None = None
    """Gradient all-reduce: none | fp16 | powersgd | priority (None = `cfg.comm_hook`)."""


class _Stopped(Exception):
    """Every rank agreed to stop after this step; rank 0 has checkpointed it."""


class LearnerRank:
    """A Ray actor: one rank of a learning gang running the real LoRA trainer."""

    def __init__(self, rank: int, world_size: int) -> None:
        import ray

        self.rank, self.world_size = rank, world_size
        self.node_id = str(ray.get_runtime_context().get_node_id())
        self.ip = str(ray.util.get_node_ip_address())
        self.step = 0
        self.resumed_from: int | None = None
        self.state = "idle"
        self._stop = threading.Event()

    def address(self) -> tuple[str, int]:
        """Where this rank (rank 0) hosts the rendezvous: its node's address and a free port there."""
        return self.ip, free_port(self.ip)

    def train(self, rdv: Rendezvous, spec: LearnerSpec, run_dir: str, attempt: int) -> dict[str, Any]:
        """Join the group, train to `spec.steps` or until stopped; what this rank did and its LoRA's digest."""
        from blacksoil.learning.trainer import LoraTrainer
        from blacksoil.scheduling.backends.ray_serving import _node_cpus

        cfg = spec.cfg.model_copy(update={"torch_threads": _node_cpus(self.node_id)})
        run = Path(run_dir)
        self.state = "loading"
        outcome = "done"
        with process_group(rdv, self.rank):
            trainer = LoraTrainer(spec.info, cfg, run, rank=self.rank, world_size=self.world_size,
                                  comm_hook=comm_hook_spec(spec.comm_hook or cfg.comm_hook))
            latest = trainer.checkpoints.latest()
            self.resumed_from = latest.step if latest else None
            self.state = "running"

            def on_step(step: int, stats: dict[str, float]) -> None:
                self._after_step(trainer, run, attempt, spec.steps, step, stats)

            try:
                trainer.train(list(spec.samples), spec.steps, on_step=on_step)
            except _Stopped:
                outcome = "stopped"
        self.state = outcome
        return {"rank": self.rank, "outcome": outcome, "step": trainer.step, "resumed_from": self.resumed_from,
                "node": self.node_id, "digest": _digest(trainer.params)}

    def _after_step(self, trainer: Any, run: Path, attempt: int, total: int, step: int,
                    stats: dict[str, float]) -> None:
        import torch
        import torch.distributed as dist

        self.step = step
        if self.rank == 0:
            with (run / STEPS_FILE).open("a") as f:
                f.write(json.dumps({"attempt": attempt, "world": self.world_size, "step": step, "loss": stats["loss"],
                                    "node": self.node_id, "at": time.time()}) + "\n")
        flag = torch.tensor([1.0 if self._stop.is_set() else 0.0])
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        if flag.item() > 0 and step < total:
            latest = trainer.checkpoints.latest()
            if self.rank == 0 and (latest is None or latest.step != step):
                trainer.checkpoints.save(step, trainer.params, trainer.optimizer, {"stopped": True})
            raise _Stopped

    def request_stop(self) -> int:
        """Ask the gang to stop after the current step (every rank must be asked); the step it is on."""
        self._stop.set()
        return self.step

    def progress(self) -> dict[str, Any]:
        return {"rank": self.rank, "step": self.step, "resumed_from": self.resumed_from, "node": self.node_id,
                "state": self.state}


def _digest(params: dict[str, Any]) -> dict[str, Any]:
    """Per-tensor SHA-256 of the LoRA weights (ranks in sync have equal digests) and how far B moved from 0."""
    import hashlib

    out: dict[str, Any] = {n: hashlib.sha256(p.detach().contiguous().numpy().tobytes()).hexdigest()
                           for n, p in params.items()}
    out["lora_B_abs_sum"] = float(sum(p.detach().abs().sum().item() for n, p in params.items() if "lora_B" in n))
    return out


def read_steps(run_dir: Path) -> list[dict[str, Any]]:
    """Rank 0's step log of a gang (every attempt), in order."""
    f = run_dir / STEPS_FILE
    return [json.loads(line) for line in f.read_text().splitlines()] if f.exists() else []


@dataclass
class RayGang:
    """One learning job's ranks as actors in one placement group; restarts the gang when a rank dies, with fewer
    ranks while a node is lost and all of them again once it is back."""

    name: str
    spec: LearnerSpec
    run_dir: Path
    pg: Any
    """The placement group: one bundle per rank."""
    rank_resources: dict[str, float] = field(default_factory=dict)
    """Resources each rank's actor takes from its bundle (the bundle's own shape)."""
    max_restarts: int = 3
    """Rank failures survived before poll() raises InternalError (regrowing after a node returns is not one)."""
    start_timeout_s: float = 120.0
    """How long the first start waits for its placement group, and a stop for the ranks' last step."""
    check_s: float = 1.0
    """How often a gang short of ranks (or with none) looks for its lost bundles placed again."""
    attempt: int = 0
    world: int = 0
    """Ranks of the current attempt: the group's bundles placed on alive nodes (0 while none is)."""
    _checked: float = 0.0
    restarts: int = 0
    actors: list[Any] = field(default_factory=list)
    refs: list[Any] = field(default_factory=list)
    results: list[dict[str, Any]] = field(default_factory=list)

    def start(self) -> None:
        """Place one actor per placed bundle, rendezvous at rank 0's node, start training (returns at once).

        The first start waits for the whole placement group; a restart takes the bundles placed now (fewer after a
        node loss; none leaves the gang waiting for poll() to start it)."""
        import ray
        from ray.exceptions import GetTimeoutError
        from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

        if self.attempt == 0:
            try:
                ray.get(self.pg.ready(), timeout=self.start_timeout_s)
            except GetTimeoutError as e:
                raise InternalError(f"learning gang {self.name}: Ray did not place its {self.pg.bundle_count} "
                                    f"bundles within {self.start_timeout_s:.0f} s; see `ray status`") from e
        # The first start takes every bundle (a batch_size that does not split over them is the trainer's
        # ConfigError); a restart takes those placed now.
        bundles = list(range(self.pg.bundle_count)) if self.attempt == 0 else self._placed()
        self.world = len(bundles) if self.attempt == 0 else self._fit(len(bundles))
        self.actors, self.refs, self.results = [], [], []
        self._checked = time.monotonic()
        if not self.world:
            log.warning("gang %s: none of its bundles is placed (their nodes left); waiting for one", self.name)
            return
        self.attempt += 1
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.actors = [ray.remote(LearnerRank).options(
            max_concurrency=3, num_cpus=self.rank_resources.get("CPU", 0),
            resources={k: v for k, v in self.rank_resources.items() if k != "CPU"},
            scheduling_strategy=PlacementGroupSchedulingStrategy(self.pg, placement_group_bundle_index=b),
        ).remote(r, self.world) for r, b in enumerate(bundles[:self.world])]
        host, port = ray.get(self.actors[0].address.remote(), timeout=self.start_timeout_s)
        rdv = Rendezvous(port, self.world, host=host)
        self.refs = [a.train.remote(rdv, self.spec, str(self.run_dir), self.attempt) for a in self.actors]
        log.info("gang %s attempt %d: %d of %d ranks, rendezvous %s", self.name, self.attempt, self.world,
                 self.pg.bundle_count, rdv.init_method)

    def _placed(self) -> list[int]:
        """The group's bundles placed on alive nodes now, in bundle order (all of them unless a node was lost)."""
        import ray
        from ray.util.placement_group import placement_group_table

        alive = {n["NodeID"] for n in ray.nodes() if n["Alive"]}
        table = placement_group_table(self.pg)["bundles_to_node_id"]
        return [int(b) for b, node in sorted(table.items()) if node in alive]

    def _can_grow(self) -> bool:
        """Whether more ranks than now could run (lost bundles placed again); looked up every `check_s`."""
        if self.world >= self.pg.bundle_count or time.monotonic() - self._checked < self.check_s:
            return False
        self._checked = time.monotonic()
        return self._fit(len(self._placed())) > self.world

    def _fit(self, ranks: int) -> int:
        """The most ranks, up to `ranks`, that split the batch evenly (0 for none)."""
        return max((k for k in range(1, ranks + 1) if self.spec.cfg.batch_size % k == 0), default=0)

    def poll(self) -> str:
        """'running', 'done', 'stopped', 'restarted' (a rank died, or the gang regrew after a lost node returned: it
        is starting again from its checkpoint) or 'waiting' (no bundle placed: every node of the gang is lost).

        Regrowing stops the ranks after their current step, so that poll takes one step's time."""
        import ray
        from ray.exceptions import RayActorError, RayTaskError

        if self.results:
            return str(self.results[0]["outcome"])
        if not self.actors:
            if time.monotonic() - self._checked < self.check_s:
                return "waiting"
            self._start_again("a bundle was placed again")
            return "restarted" if self.actors else "waiting"
        ready, _ = ray.wait(self.refs, num_returns=len(self.refs), timeout=0)
        for ref in ready:
            try:
                ray.get(ref)
            except (RayActorError, RayTaskError) as e:
                self.restart(f"{type(e).__name__}")
                return "restarted"
        if len(ready) < len(self.refs):
            return self._grow() if self._can_grow() else "running"
        self.results = ray.get(self.refs)
        return str(self.results[0]["outcome"])

    def _grow(self) -> str:
        """Stop every rank after the same step (rank 0 checkpoints it) and start again with every placed bundle."""
        import ray
        from ray.exceptions import GetTimeoutError, RayActorError, RayTaskError

        log.info("gang %s: its lost bundles are placed again; growing from %d ranks", self.name, self.world)
        try:
            ray.get([a.request_stop.remote() for a in self.actors], timeout=self.start_timeout_s)
            results = ray.get(self.refs, timeout=self.start_timeout_s)
        except (RayActorError, RayTaskError, GetTimeoutError) as e:
            self.restart(f"{type(e).__name__} while growing")
            return "restarted"
        if results[0]["outcome"] == "done":  # it finished before the stop flag was seen
            self.results = results
            return "done"
        self._start_again("regrow")
        return "restarted"

    def restart(self, why: str) -> None:
        """End every rank and start the gang again (it resumes from the newest checkpoint)."""
        if self.restarts >= self.max_restarts:
            raise InternalError(f"learning gang {self.name} failed {self.restarts + 1} times (last: {why}); "
                                "see the Ray worker logs")
        log.warning("gang %s: a rank failed (%s); restarting from the last checkpoint", self.name, why)
        self.restarts += 1
        self._start_again(why)

    def _start_again(self, why: str) -> None:
        """End every rank and start; a rank dying as it starts (its node just went) is one more restart."""
        from ray.exceptions import GetTimeoutError, RayActorError

        self._kill()
        try:
            self.start()
        except (RayActorError, GetTimeoutError) as e:
            self.restart(f"{type(e).__name__} starting after {why}")

    def wait(self, timeout_s: float) -> list[dict[str, Any]]:
        """Block until every rank finished (restarting the gang as ranks die); each rank's result."""
        deadline = time.monotonic() + timeout_s
        while self.poll() in ("running", "restarted", "waiting"):
            if time.monotonic() > deadline:
                raise InternalError(f"learning gang {self.name} did not finish within {timeout_s:.0f} s")
            time.sleep(0.1)
        return self.results

    def stop(self, checkpoint: bool = True, timeout_s: float = 120.0) -> int | None:
        """Stop the gang; with `checkpoint`, every rank stops after the same step and rank 0 saves it first.

        Returns the step the checkpoint holds (None without one)."""
        import ray

        step = None
        if checkpoint and self.poll() == "running":
            ray.get([a.request_stop.remote() for a in self.actors], timeout=timeout_s)
            self.wait(timeout_s)
        if self.results:
            step = int(self.results[0]["step"])
        self._kill()
        return step

    def _kill(self) -> None:
        import ray

        for a in self.actors:
            ray.kill(a)
        self.actors, self.refs = [], []
