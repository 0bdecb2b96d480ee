"""The learning loop: collect → replay → train → publish → gate → swap, one round at a time, and the closed-loop
demo (test-split baseline → rounds → test split again → before/after table and learning-curve plot).

The test split is only ever scored, never collected from or trained on; the gate uses the dev split.
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from blacksoil.benchlog import Destination
from blacksoil.contracts import AdapterVersion, RunningGateway
from blacksoil.errors import BlacksoilError
from blacksoil.experience.sink import StoreSink
from blacksoil.experience.store import ExperienceStore
from blacksoil.learning.api import rounds_file
from blacksoil.learning.collect import Attempt, collect
from blacksoil.learning.context import LearnerContext
from blacksoil.learning.gate import EvalGate, GateDecision, SuiteScore, overall, score_suites
from blacksoil.learning.runner import InProcessRunner, TrainJob, TrainRunner
from blacksoil.learning.samples import TrainSample
from blacksoil.serving.config import ServingConfig

__all__ = ["Learner", "LoopOptions", "RoundLoop", "RoundResult", "all_cores", "log_round", "run_demo",
           "run_learning", "score_test", "serving_config"]

console = Console()


@dataclass(frozen=True)
class LoopOptions:
    """Sizes of one learning run (the CLI's options)."""

    suites: tuple[str, ...] = ("tools-basic", "manufacturing")
    attempts: int = 2
    tasks_per_suite: int = 4
    gate_tasks: int = 4
    steps: int | None = None
    temperature: float = 0.7
    demos: bool = True
    practice: int = 0
    """Fresh train instances per template added to the demonstrations (agentscore.practice; never dev/test)."""
    held_out: tuple[str, ...] = ()
    """Suites never learned from; the gate also scores them so that no candidate makes them worse."""
    exclusive_cores: bool = False
    """Serving and training run one after the other (learn / demo), so each phase may use every core."""
    concurrency: int = 1
    """Agent episodes run at once when collecting attempts (the engine batches their decoding)."""
    score_concurrency: int = 1
    """Agent episodes run at once when scoring (eval gate, demo test splits). 1 makes a score reproducible: each
    scoring starts a fresh engine and plays one episode at a time, so the same model passes the same tasks every
    time. Batched episodes change the engine's arithmetic (measured: the base model's held-out score moved between
    6/20 and 8/20 over eight scorings of 4 at once; three fresh scorings of 1 at a time gave the same trajectories)."""


@dataclass
class RoundResult:
    """What one round did."""

    round: int
    attempts: int
    successes: int
    samples: int
    steps: int
    loss: float
    candidate: str
    decision: str
    promoted: bool
    served: str
    dev: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0
    sources: dict[str, int] = field(default_factory=dict)
    """Training samples by reward source: the model's own rewarded attempts (agentscore), user ratings
    (feedback) and demonstrations."""


def _progress() -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    console=console, transient=False)


class Learner:
    """Owns the experience of a run, the trainer inputs, the adapter store, the gate and the swapper.

    Everything it reads from outside comes in `ctx` (its own LearningConfig included), so two learners with
    different settings can run in one process.
    """

    def __init__(self, gw: RunningGateway, store: ExperienceStore, opts: LoopOptions, ctx: LearnerContext,
                 runner: TrainRunner | None = None) -> None:
        """`runner`: where each round's optimizer steps run (None = a LoraTrainer in this process)."""
        from blacksoil.agentscore.rewards import RewardRecorder
        from blacksoil.experience.replay_index import ReplayIndex
        from blacksoil.learning.adapters import AdapterStore
        from blacksoil.learning.basemodel import ensure_hf_copy, load_tokenizer
        from blacksoil.learning.source import StoreExperience
        from blacksoil.learning.swap import HotSwapper

        self.ctx, self.cfg, self.home, self.gw, self.opts = ctx, ctx.learning, ctx.home, gw, opts
        if opts.exclusive_cores:
            self.cfg = self.cfg.model_copy(update={"torch_threads": all_cores()})
        with console.status("preparing the fp32 base model (first run dequantizes the GGUF once)"):
            self.info = ensure_hf_copy(ctx.home, self.cfg.base_model_path)
            self.tokenizer = load_tokenizer(self.info)
        self.runner: TrainRunner = runner if runner is not None else InProcessRunner(self.info)
        self.store = AdapterStore(ctx.home, gw.model)
        self.gate = EvalGate(opts.suites, held_out=opts.held_out, tasks_per_suite=opts.gate_tasks,
                             margin=self.cfg.gate_margin, tolerance=self.cfg.gate_tolerance,
                             serving_cfg=serving_config(opts.exclusive_cores, ctx.serving),
                             concurrency=opts.score_concurrency,
                             agent_config=ctx.agentscore, api_key=ctx.api_key, root=ctx.root, settings=ctx.env)
        self.swapper = HotSwapper(gw, api_key=ctx.api_key, canary=self.cfg.swap_canary_fraction > 0,
                                  canary_requests=self.cfg.swap_canary_requests,
                                  max_error_rate=self.cfg.swap_max_error_rate)
        # A platform restarted on a promoted adapter keeps learning from it: it is the parent and the gate's bar.
        served = {i.adapter_version for i in gw.pool.info() if i.status == "ready"} - {"base"}
        self.served: AdapterVersion | None = self.store.get(served.pop()) if len(served) == 1 else None
        self.lineage: AdapterVersion | None = self.served
        """What the next round trains on from: the last candidate unless the gate found it made a suite worse (then
        the served version). Serving and learning keep separate policies: a candidate that is merely not better
        yet is trained further instead of thrown away, the gate alone decides what users get."""
        self.baseline: dict[str, SuiteScore] | None = None
        # The gateway's sink stores every call (anonymized); checkers' rewards join them there; replay reads both.
        self.rewards = RewardRecorder(ctx.home, ctx.experience, ctx.tenant)
        self.experience = StoreExperience(store, ReplayIndex(store, ctx.experience, seed=self.cfg.seed),
                                          self.cfg.train_tenants, ctx.tenant, self.tokenizer, self.cfg.max_seq_len)
        self.provenance: dict[str, Any] = {}
        self.last_batch: list[TrainSample] = []
        """The samples the last round trained on (anonymized rows only; kept for inspection and tests)."""
        self.initial_dev: float = 0.0
        self.phases: list[tuple[str, float]] = []
        """(phase, monotonic start) of everything this learner did, in order: when serving slowed, what ran."""
        self.started = int(time.time())
        # Two learners started in the same second must not share (and resume from) each other's run folder.
        self.run_name = f"{gw.model}-{self.started}-{uuid.uuid4().hex[:6]}"
        if opts.demos:
            from blacksoil.learning.demos import demonstrations_on

            self._phase("demonstrations")
            with console.status("storing oracle demonstrations of train and practice tasks"):
                self.experience.add_demonstrations(demonstrations_on(
                    self.runner.scoring_cores(), self.info, opts.suites, opts.practice, settings=ctx.env,
                    tokenizer=self.tokenizer))

    def run_round(self, number: int) -> RoundResult:
        """One full round; the gate decides whether the candidate is swapped in."""
        t0 = time.monotonic()
        self._phase(f"round {number}: collect")
        attempts = self._collect()
        self._phase(f"round {number}: replay")
        self.experience.sync()
        samples, loss, steps = self._train(number)
        if not samples:
            return self._skip(number, attempts, t0)
        self._phase(f"round {number}: publish")
        candidate = self.store.publish(self.run_dir(number) / "adapter", self.info,
                                       parent=self.lineage.version if self.lineage else None,
                                       provenance=self.provenance)
        self._phase(f"round {number}: gate")
        decision = self._gate(candidate)
        self.lineage = self.served if decision.regressed else self.store.get(candidate.version)
        if decision.promote:
            self.store.set_status(candidate.version, "promoted", decision.metrics())
            self._phase(f"round {number}: swap")
            with console.status(f"hot-swapping {candidate.version} into the gateway"):
                self.swapper.swap(self.store.get(candidate.version))
            self.served, self.baseline = self.store.get(candidate.version), decision.candidate
        else:
            self.store.set_status(candidate.version, "rejected", decision.metrics())
        console.print(f"round {number}: {candidate.version} {decision.reason}")
        dev = self._served_dev()
        result = RoundResult(number, len(attempts), sum(a.passed for a in attempts), samples, steps, loss,
                             candidate.version, decision.reason, decision.promote,
                             self.served.version if self.served else "base", dev, time.monotonic() - t0,
                             dict(self.provenance.get("samples_by_source", {})))
        log_round(self.home, result)
        self._phase(f"round {number}: done")
        return result

    def _phase(self, name: str) -> None:
        self.phases.append((name, time.monotonic()))

    def _served_dev(self) -> dict[str, float]:
        """Dev completion of the served version per gate suite, plus "overall" (empty before the first gate)."""
        dev = {k: v.completion for k, v in (self.baseline or {}).items()}
        dev["overall"] = overall(self.baseline or {})
        return dev

    def _skip(self, number: int, attempts: list[Attempt], t0: float) -> RoundResult:
        """Nothing to learn from yet (no success and no demonstration): the served version stays."""
        served = self.served.version if self.served else "base"
        console.print(f"round {number}: no successful attempt to learn from; {served} keeps serving")
        dev = self._served_dev()
        result = RoundResult(number, len(attempts), sum(a.passed for a in attempts), 0, 0, 0.0, "-",
                             "skipped: no samples", False, served, dev, time.monotonic() - t0)
        log_round(self.home, result)
        return result

    def run_dir(self, number: int) -> Path:
        return self.home / "learning" / "runs" / self.run_name / f"round{number}"

    def _collect(self) -> list[Attempt]:
        from blacksoil.agentscore import api

        total = sum(min(len(api.list_tasks(s, "train")), self.opts.tasks_per_suite) for s in self.opts.suites)
        with _progress() as p:
            bar = p.add_task("collecting attempts (train split, via the gateway)", total=total * self.opts.attempts)
            return collect(self.gw, self.rewards, self.opts.suites, attempts=self.opts.attempts,
                           temperature=self.opts.temperature, tasks_per_suite=self.opts.tasks_per_suite,
                           adapter_version=self.served.version if self.served else None,
                           on_attempt=lambda a: p.advance(bar), concurrency=self.opts.concurrency,
                           config=self.ctx.agentscore, api_key=self.ctx.api_key, settings=self.ctx.env)

    def _train(self, number: int) -> tuple[int, float, int]:
        """Draw from the store's replay, train, and feed each trained item's loss back as its priority."""
        from blacksoil.errors import NotFoundError
        from blacksoil.experience.replay import policy_version_number

        steps = self.opts.steps or self.cfg.steps_per_round
        try:
            drawn = self.experience.draw(max(8, steps * self.cfg.batch_size), self.cfg.objective,
                                         policy_version_number(self.served.version if self.served else None))
        except NotFoundError:  # nothing rewarded yet
            return 0, 0.0, 0
        if not drawn.samples:
            return 0, 0.0, 0
        self._phase(f"round {number}: train")
        job = TrainJob(drawn.samples, steps, self.run_dir(number) / "train", self.run_dir(number) / "adapter",
                       self.cfg, init_adapter=self.lineage.safetensors_dir if self.lineage else None)
        with _progress() as p:
            bar = p.add_task(f"training LoRA ({len(drawn.samples)} samples from the store)", total=steps)
            res = self.runner.run(job, on_step=lambda s, st: p.update(bar, completed=s))
        self.experience.update_priorities(res.trajectory_nll, drawn)
        self.last_batch = drawn.samples
        self.provenance = {**drawn.provenance(), "objective": self.cfg.objective, "steps": res.steps}
        return len(drawn.samples), (res.losses[-1] if res.losses else 0.0), res.steps

    def _gate(self, candidate: AdapterVersion) -> GateDecision:
        n = sum(len(self.gate.tasks(s)) for s in self.gate.suites)
        with _progress() as p:
            if self.baseline is None:
                bar = p.add_task("eval gate: scoring the served model (dev split)", total=n)
                self.baseline = self.gate.score(self.served, on_episode=lambda e: p.advance(bar),
                                                cores=self.runner.scoring_cores())
                self.initial_dev = overall(self.baseline)
            bar = p.add_task(f"eval gate: scoring {candidate.version} (dev split)", total=n)
            return self.gate.judge(self.baseline, candidate, on_episode=lambda e: p.advance(bar),
                                   cores=self.runner.scoring_cores())


def all_cores() -> int:
    """Cores this process may use."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def serving_config(exclusive_cores: bool, cfg: ServingConfig) -> ServingConfig:
    """`cfg`, or with exclusive cores (phases never overlap) a copy whose engine gets every core."""
    return cfg.model_copy(update={"threads": all_cores()}) if exclusive_cores else cfg


def log_round(home: Path, result: RoundResult) -> None:
    """Append a finished round durably."""
    path = rounds_file(home)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as f:
        f.write(json.dumps({**asdict(result), "at": time.time()}) + "\n")
        f.flush()
        os.fsync(f.fileno())


class RoundLoop:
    """`blacksoil up --learner`: a learning round every `interval_s` against the running gateway until `stop`.

    Keeps the Learner (its gate scores and last batch) and the rounds' errors, so a caller such as `bench flywheel`
    reads what the rounds did instead of running a loop of its own. `runner` places each round's training (None =
    in this thread); `on_round(learner)` runs after every finished round."""

    def __init__(self, gw: RunningGateway, store: ExperienceStore, interval_s: float, stop: threading.Event,
                 ctx: LearnerContext, opts: LoopOptions | None = None, runner: TrainRunner | None = None,
                 on_round: Callable[[Learner], None] | None = None) -> None:
        self.gw, self.store, self.interval_s, self.stop, self.ctx = gw, store, interval_s, stop, ctx
        self.opts, self.runner, self.on_round = opts or LoopOptions(), runner, on_round
        self.learner: Learner | None = None
        """Set once the learner started (None = it did not: see `errors`)."""
        self.errors: list[str] = []
        """Why a round (or the start) failed; a round called off because the platform stops is no failure."""

    def run(self) -> None:
        try:
            self.learner = Learner(self.gw, self.store, self.opts, self.ctx, self.runner)
        except BlacksoilError as e:
            self._failed(f"the learner did not start: {e.message}")
            return
        # What the learner loaded lives as long as the platform (tokenizer, demonstrations): out of the collector's
        # sight, so that its full collections stop rescanning it under the gateway's streams (see running_platform).
        gc.freeze()
        number = 0
        while not self.stop.is_set():
            number += 1
            try:
                self.learner.run_round(number)
                if self.on_round is not None:
                    self.on_round(self.learner)
            except BlacksoilError as e:  # a failed round must not take the platform down; the next one retries
                if not self.stop.is_set():
                    self._failed(f"learning round {number} failed: {e.message}")
            if self.stop.wait(self.interval_s):
                break

    def _failed(self, why: str) -> None:
        self.errors.append(why)
        console.print(f"[red]{why}[/]")


def run_learning(rounds: int, opts: LoopOptions, ctx: LearnerContext) -> list[RoundResult]:
    """`blacksoil learn --rounds N` on a gateway of its own."""
    from blacksoil.serving.launch import gateway

    with _store_sink(ctx) as sink, \
            gateway(ctx.root, sink=sink, serving=serving_config(opts.exclusive_cores, ctx.serving)) as gw:
        learner = Learner(gw, sink.store, opts, ctx)
        return [learner.run_round(r) for r in range(1, rounds + 1)]


@contextlib.contextmanager
def _store_sink(ctx: LearnerContext) -> Iterator[StoreSink]:
    """The experience store as the gateway's sink: practice goes through the same path as outside traffic."""
    sink = StoreSink(ExperienceStore.from_settings(ctx.home, ctx.experience))
    try:
        yield sink
    finally:
        sink.close()


def score_test(adapter: AdapterVersion | None, suites: tuple[str, ...], test_tasks: int | None, label: str,
               opts: LoopOptions, ctx: LearnerContext) -> dict[str, SuiteScore]:
    """Completion of the base model (None) or `adapter` on the TEST split (scoring only, never learning), on a fresh
    private engine like the gate's (see LoopOptions.score_concurrency), not the live gateway whose cached prompts
    would make the numbers depend on what it served before."""
    from blacksoil.agentscore import api

    tasks = {s: api.list_tasks(s, "test")[: test_tasks or None] for s in suites}
    with _progress() as p:
        def bar(suite: str) -> Callable[[Any], None]:
            task = p.add_task(f"{label}: {suite} test split", total=len(tasks[suite]))
            return lambda e: p.advance(task)

        return score_suites(adapter, tasks, serving_config(opts.exclusive_cores, ctx.serving), ctx.root,
                            agent_config=ctx.agentscore, api_key=ctx.api_key, settings=ctx.env,
                            concurrency=opts.score_concurrency, on_episode=bar)


def run_demo(rounds: int, opts: LoopOptions, ctx: LearnerContext, *, dest: Destination,
             test_tasks: int | None = None) -> dict[str, Any]:
    """The closed loop: baseline on the test splits → `rounds` learning rounds → test again → table + plot.

    The learned suites are `opts.suites`; `opts.held_out` suites are scored too (never learned from), so a
    regression of general tool calling shows in the same table.
    """
    from blacksoil import benchlog
    from blacksoil.serving.launch import gateway

    t0 = time.monotonic()
    scored = (*opts.suites, *opts.held_out)
    with _store_sink(ctx) as sink, \
            gateway(ctx.root, sink=sink, serving=serving_config(opts.exclusive_cores, ctx.serving)) as gw:
        before = score_test(None, scored, test_tasks, "baseline", opts, ctx)
        learner = Learner(gw, sink.store, opts, ctx)
        results = [learner.run_round(r) for r in range(1, rounds + 1)]
        after = score_test(learner.served, scored, test_tasks, f"after {rounds} rounds", opts, ctx)
        served = learner.served.version if learner.served else "base"
    learned_before = {s: before[s] for s in opts.suites}
    learned_after = {s: after[s] for s in opts.suites}
    image = _plot(learned_before, learned_after, results, learner.initial_dev, dest)
    rows = [[s + (" (held out)" if s in opts.held_out else ""), f"{before[s].passed}/{before[s].episodes}",
             f"{after[s].passed}/{after[s].episodes}", round(100 * (after[s].completion - before[s].completion), 1)]
            for s in scored]
    rows.append(["overall (learned suites)", round(overall(learned_before), 3), round(overall(learned_after), 3),
                 round(100 * (overall(learned_after) - overall(learned_before)), 1)])
    result = {"rounds": rounds, "served_version": served, "minutes": round((time.monotonic() - t0) / 60, 1),
              "test_completion_before": round(overall(learned_before), 4),
              "test_completion_after": round(overall(learned_after), 4),
              "gain_pp": round(100 * (overall(learned_after) - overall(learned_before)), 1),
              "held_out": {s: {"before": round(before[s].completion, 4), "after": round(after[s].completion, 4)}
                           for s in opts.held_out},
              "per_round": [{"round": r.round, "candidate": r.candidate, "promoted": r.promoted, "served": r.served,
                             "dev_overall": round(r.dev.get("overall", 0.0), 4), "loss": round(r.loss, 4),
                             "samples": r.samples, "samples_by_source": r.sources, "steps": r.steps,
                             "seconds": round(r.seconds, 1)}
                            for r in results]}
    benchlog.report("Closed-loop learning demo (test split before/after)",
                    ["suite", "before", "after", "gain (pp)"], rows, result,
                    notes="Baseline and final scores on the TEST splits (never trained on); rounds learn from "
                          "train-split attempts plus oracle demonstrations of train and practice tasks (fresh "
                          "instances of the train templates, never a dev/test task), all read back from the "
                          "experience store, and are gated on dev, held-out suites included. Samples by source "
                          f"(own rewarded attempts / demonstrations): {_sources(results)}.",
                    images=[image], dest=dest)
    return result


def _sources(results: list[RoundResult]) -> str:
    total: dict[str, int] = {}
    for r in results:
        for k, v in r.sources.items():
            total[k] = total.get(k, 0) + v
    return ", ".join(f"{k} {v}" for k, v in sorted(total.items())) or "none"


def _plot(before: dict[str, SuiteScore], after: dict[str, SuiteScore], results: list[RoundResult],
          initial_dev: float, dest: Destination) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    xs = [0, *[r.round for r in results]]
    # Round 0 = the base model's dev score (the gate's first baseline); later points = served version's dev score.
    ys = [initial_dev, *[r.dev.get("overall", 0.0) for r in results]]
    ax.plot(xs, ys, marker="o", label="dev completion of the served model")
    for r in results:
        ax.annotate(r.served, (r.round, r.dev.get("overall", 0.0)), textcoords="offset points", xytext=(0, 6))
    ax.axhline(overall(before), color="grey", linestyle="--", label=f"test before {overall(before):.2f}")
    ax.axhline(overall(after), color="green", linestyle=":", label=f"test after {overall(after):.2f}")
    ax.set_xticks(xs)
    ax.set_xlabel("learning round")
    ax.set_ylabel("completion rate")
    ax.set_ylim(-0.02, 1.02)
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    out, link = dest.image("learning_curve.png")
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return link
