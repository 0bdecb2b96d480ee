"""`blacksoil bench flywheel`: the platform learns from its own anonymized traffic while serving it (issue 15).

The platform runs in this process as `blacksoil up --learner` assembles it (experience-store sink, auth, feedback API,
console, the learner's rounds with their training placed by the local backend's unified policy), in a fresh home under
$BLACKSOIL_HOME/bench/. Outside traffic of an opted-in tenant drives it (flywheel_traffic): agents attempting
AgentScore train tasks whose checkers post rewards, chat clients rating their answers through POST /v1/feedback, chats
carrying planted PII, and a load spike while the learner trains. Phases: the mix without the learner (its ITL p99
sets the SLO) → the mix with the learner → the learner stopped, outside requests of a tenant no learner reads (the
gateway's RSS growth). The bars' arithmetic is in flywheel_metrics; a composition root like blacksoil.platform, so it
may use every pillar.
"""

from __future__ import annotations

import contextlib
import json
import statistics
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import typer

from blacksoil.benchlog import WRITE_DOC_HELP

__all__ = ["BARS", "FlywheelOptions", "bench_flywheel", "register", "run_flywheel"]

BARS = (("failed_requests", "= 0"), ("lost_steps", "= 0"), ("repeated_steps", "= 0"), ("pii_in_training", "= 0"),
        ("promoted_versions", ">= 1"), ("dev_completion_before", "-"), ("dev_completion_after", "> before"),
        ("serving_slo_attainment", ">= 0.99"), ("preemptions", ">= 1"), ("resume_s_p50", "reported"),
        ("rss_growth_mb", "<= 100"))


PREFILL_CHUNK = 32
"""Prompt tokens per engine step in the bench (serving.prefill_chunk): one engine thread prefills about 8 ms a token,
so a chunk of 32 delays the other streams' next token by at most about 0.4 s even 3,000 tokens into a context (measured:
64 → 0.87 s, 256 → 2.0 s, llama.cpp's own 2,048 → 12.2 s), at the price of a 45% slower prefill of a long prompt."""


@dataclass(frozen=True)
class FlywheelOptions:
    """Sizes of one bench run."""

    minutes: float
    """The learner runs under the traffic mix at least this long, and until a round finished (up to cap_minutes)."""
    cap_minutes: float
    idle_s: float
    """The same traffic without the learner first: its ITL p99 × slo_factor is the SLO."""
    rss_requests: int
    """Outside requests, with the learner stopped, over which the gateway's RSS growth is measured."""
    steps: int = 26
    """Optimizer steps per round (with batch_size and practice: one round of `make demo`)."""
    batch_size: int = 8
    practice: int = 4
    """Fresh train instances per task template demonstrated (learning.loop.LoopOptions.practice)."""
    gate_tasks: int = 6
    """Dev tasks the gate scores: with 3, one round's candidate tied the base model (1 of 3 each) in the first run."""
    tasks_per_suite: int = 2
    suites: tuple[str, ...] = ("manufacturing",)
    """The factory suite: the demo's rounds learn it fastest (test 0/16 → 3–5/16), tools-basic barely moves."""
    warmup_max_s: float = 180.0
    """Traffic runs until the agent finished one attempt (its tools loaded, the RUL model fitted) before the idle
    baseline starts, at most this long: a one-off first-use stall is no steady-state ITL of either phase."""
    spike_clients: int = 6
    spike_max_s: float = 90.0
    window_s: float = 10.0
    slo_factor: float = 2.0

    @classmethod
    def make(cls, quick: bool, minutes: float | None) -> FlywheelOptions:
        if quick:
            m = minutes if minutes is not None else 4.0
            return cls(minutes=m, cap_minutes=m + 4.0, idle_s=40.0, rss_requests=500)
        m = minutes if minutes is not None else 30.0
        return cls(minutes=m, cap_minutes=m + 15.0, idle_s=120.0, rss_requests=10_000)


def _settings(home: Path, keys: dict[str, str], tenant: str, learner_key: str, opts: FlywheelOptions) -> Any:
    from blacksoil.config import load_settings

    # 6 admitted per replica keeps the steady mix (at most 3 requests at once) well under one replica's worth of
    # demand, so that the spike, not its peaks, makes the policy take the learner's core (measured: with 4 admitted
    # the steady mix's peaks preempted the learner 6 times in a 6-minute round); a fast control loop and scale-down
    # so that a short run sees the whole cycle.
    return load_settings(
        home=home,
        platform={"api_keys": keys, "learner_interval_s": 5.0},
        agents={"api_key": learner_key},
        learning={"train_tenants": [tenant], "batch_size": opts.batch_size, "checkpoint_every": 2,
                  "steps_per_round": opts.steps},
        serving={"threads": 1, "slots": 6, "concurrency": 6, "ctx": 12288, "replicas": 1, "default_max_tokens": 32,
                 "queue_timeout_s": 300.0, "prefill_chunk": PREFILL_CHUNK},
        scheduling={"local_step_s": 0.5, "hpa_scale_down_window_s": 5.0, "headroom_sigmas": 0.0,
                    "min_headroom": 0.0, "lend_horizon_s": 0.5})


def _bench_home(user_home: Path) -> Path:
    """A fresh home under the user's bench folder, sharing the user's fp32 base-model copy (dequantized once)."""
    from blacksoil.learning.basemodel import ensure_hf_copy

    info = ensure_hf_copy(user_home)
    home = user_home / "bench" / f"flywheel-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:4]}"
    cache = home / "models" / "hf-cache" / info.hf_dir.name
    cache.parent.mkdir(parents=True)
    cache.symlink_to(info.hf_dir, target_is_directory=True)
    return home


def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def run_flywheel(opts: FlywheelOptions) -> dict[str, Any]:
    """Run the phases; every number in the result is measured in this run."""
    import os

    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from blacksoil import flywheel_traffic as ft
    from blacksoil.config import settings
    from blacksoil.errors import ConfigError
    from blacksoil.learning.loop import LoopOptions
    from blacksoil.platform import make_sink, running_platform, start_background_learner

    run = uuid.uuid4().hex[:6]
    acme, outsider, learner_tenant = f"acme-{run}", f"outside-{run}", f"learner-{run}"
    key = {t: f"key-{t}-0123456789" for t in (acme, outsider, learner_tenant)}
    home = _bench_home(settings().home)
    s = _settings(home, {k: t for t, k in key.items()}, acme, key[learner_tenant], opts)
    old_home = os.environ.get("BLACKSOIL_HOME")
    os.environ["BLACKSOIL_HOME"] = str(home)  # anything that reads the process settings sees the bench's home
    settings.cache_clear()
    tally, batches = ft.Tally(), []
    pii_prompt = ft.PiiPrompts()
    # Chat users ask what they can check and rate the answer by it; the PII carriers ask for an open-ended reply and
    # rate every one good, so that their (anonymized) rows are eligible for training and the PII search means something.
    chats = ft.ClientSpec(key[acme], prompt=ft.rate_question, stream=True, max_tokens=24, think_s=2.0,
                          rating=ft.rate_answer)
    pii = ft.ClientSpec(key[acme], prompt=pii_prompt, stream=True, max_tokens=24, think_s=4.0,
                        rating=lambda i, n, answer: 1.0)
    spike = ft.ClientSpec(key[acme], stream=True, max_tokens=24)
    t_start = time.monotonic()
    t: dict[str, float] = {}
    sink = make_sink(s)
    try:
        with running_platform(s, sink=sink) as gw, \
                Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.fields[info]}"),
                         TimeElapsedColumn()) as progress:
            with contextlib.ExitStack() as traffic:
                traffic.enter_context(ft.ChatLoad(gw, chats, 1, tally, "chat"))
                traffic.enter_context(ft.ChatLoad(gw, pii, 1, tally, "pii"))
                spiky = ft.ChatLoad(gw, spike, opts.spike_clients, tally, "spike")
                spiky.active = 0  # idle until the learner trains (set before its threads start)
                traffic.enter_context(spiky)
                agents = traffic.enter_context(ft.AgentLoad(gw, s, key[acme], acme, opts.suites, tally,
                                                            think_s=3.0))
                _warm_up(agents, opts.warmup_max_s, progress)
                t["idle"] = time.monotonic()
                bar = progress.add_task("traffic without the learner (SLO baseline)", total=opts.idle_s, info="")
                while (el := time.monotonic() - t["idle"]) < opts.idle_s:
                    progress.update(bar, completed=el, info=f"{tally.ok} ok, {len(tally.failures)} failed")
                    time.sleep(0.5)
                progress.update(bar, completed=opts.idle_s)
                t["learn"] = time.monotonic()
                stop = threading.Event()
                loop_opts = LoopOptions(suites=opts.suites, attempts=1, tasks_per_suite=opts.tasks_per_suite,
                                        gate_tasks=opts.gate_tasks, steps=opts.steps, practice=opts.practice,
                                        concurrency=2)
                # The bench reads every round's trained batch (the PII search) and the Learner's gate scores.
                bg = start_background_learner(gw, s, stop, loop_opts,
                                              on_round=lambda learner: batches.append(list(learner.last_batch)))
                try:
                    if bg.control is None:
                        raise ConfigError("bench flywheel schedules the learner next to serving and needs at least "
                                          "2 cores for this process")
                    control = bg.control
                    _learning_phase(opts, s, control.backend, spiky, progress, t)
                finally:
                    stop.set()
                    bg.join(timeout=600)
                    t["stopped"] = time.monotonic()
            # The traffic stopped (its threads joined): only the outside requests run now.
            history = control.backend.recent()
            workload = control.backend.learners["learner"]
            rss = _rss_phase(gw, key[outsider], opts.rss_requests, tally, progress)
    finally:
        sink.close()
        if old_home is None:
            os.environ.pop("BLACKSOIL_HOME", None)
        else:
            os.environ["BLACKSOIL_HOME"] = old_home
        settings.cache_clear()
    mono_to_wall = time.time() - time.monotonic()
    grants = [control.backend.t0 + r.at + mono_to_wall for r in history]
    # Why the learner lost its cores, and the serving demand (cores) the policy saw then: a spike, or flapping.
    stops = [(r.demand, d.reason) for r in history for d in r.decisions if d.target == "learner"]
    preempted_at = [round(demand, 2) for demand, why in stops if why.startswith("serving short")]
    return _result(opts, s, bg.rounds, batches, tally, t, grants, [bool(r.learner_cores) for r in history], workload,
                   rss,
                   {"pii_prompts": pii_prompt.sent, "demand_at_preemptions": preempted_at,
                    "serving_cores_max": max((len(r.serving_cores) for r in history), default=0),
                    # Serving's mean pinned cores while the learner ran (the scheduler starts with the learner: during
                    # the idle baseline the engine is unpinned and the OS gives it whichever core is free).
                    "serving_cores_mean_learning": _mean_cores(history, control.backend.t0, t["learn"],
                                                               t["stopped"]),
                    "agent_attempts": agents.attempts, "agent_passed": agents.passed,
                    "minutes_total": round((time.monotonic() - t_start) / 60, 1), "home": str(home)})


def _mean_cores(history: list[Any], t0: float, start: float, end: float) -> float | None:
    """Mean count of serving's cores over the scheduler steps between the monotonic times `start` and `end`."""
    xs = [len(r.serving_cores) for r in history if start <= t0 + r.at < end]
    return round(sum(xs) / len(xs), 2) if xs else None


def _warm_up(agents: Any, max_s: float, progress: Any) -> None:
    bar = progress.add_task("warming up (the agent's first attempt)", total=1, info="")
    end = time.monotonic() + max_s
    while agents.attempts < 1 and time.monotonic() < end:
        time.sleep(0.5)
    progress.update(bar, completed=1)


def _learning_phase(opts: FlywheelOptions, s: Any, backend: Any, spiky: Any, progress: Any,
                    t: dict[str, float]) -> None:
    """Until the time is up and a round finished (or the cap): start the spike once the learner trains past the
    phase's middle; end it once the learner was preempted and a second replica served a while (or after
    spike_max_s)."""
    from blacksoil.learning.api import read_rounds

    learner = backend.learners["learner"]
    bar = progress.add_task("learning under the traffic mix", total=opts.minutes * 60, info="")
    spike_after = 0.0 if opts.minutes <= 5 else opts.minutes * 30  # a short run has one round: spike its training
    hold_until: float | None = None
    while True:
        now = time.monotonic()
        el = now - t["learn"]
        rounds = len(read_rounds(s.home))
        step = int(learner.status().get("step", 0)) if learner.running else 0
        if "spike_on" not in t and learner.running and step >= 1 and el >= spike_after:
            spiky.active, t["spike_on"] = opts.spike_clients, now
        if "spike_on" in t and "spike_off" not in t:
            if hold_until is None and learner.preemptions >= 1 and len(backend.serving.replicas) >= 2:
                hold_until = now + 5.0
            if (hold_until is not None and now >= hold_until) or now - t["spike_on"] >= opts.spike_max_s:
                spiky.active, t["spike_off"] = 0, now
        spiking = "spike_on" in t and "spike_off" not in t
        progress.update(bar, completed=min(el, opts.minutes * 60),
                        info=f"rounds {rounds}, step {step}, replicas {len(backend.serving.replicas)}, "
                             f"preemptions {learner.preemptions}{', SPIKE' if spiking else ''}")
        if not spiking and el >= opts.minutes * 60 and (rounds >= 1 or el >= opts.cap_minutes * 60):
            return
        time.sleep(0.5)


def _rss_phase(gw: Any, api_key: str, n: int, tally: Any, progress: Any) -> dict[str, float]:
    """`n` short chats of a tenant that no learner reads, 4 at a time; the RSS of this process (the gateway's) before
    and after, once 20 requests warmed it up."""
    from concurrent.futures import ThreadPoolExecutor

    import httpx

    from blacksoil.flywheel_traffic import post_json

    bar = progress.add_task("outside requests (gateway RSS)", total=n, info="")
    local = threading.local()

    def one(i: int) -> None:
        if not hasattr(local, "c"):
            local.c = httpx.Client(timeout=300, headers={"Authorization": f"Bearer {api_key}"})
        body = {"model": gw.model, "max_tokens": 4, "user": f"outside-{i}",
                "messages": [{"role": "user", "content": f"Request {i}: say ok."}]}
        tally.add(post_json(local.c, gw.openai_base_url + "/chat/completions", body))
        progress.advance(bar)

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(one, range(20)))
        before = _rss_mb()
        progress.update(bar, completed=0)
        list(pool.map(one, range(20, 20 + n)))
    return {"before": before, "after": _rss_mb()}


def _result(opts: FlywheelOptions, s: Any, learned: Any, batches: list[list[Any]], tally: Any, t: dict[str, float],
            grant_times: list[float], holds: list[bool], workload: Any, rss: dict[str, float],
            extra: dict[str, Any]) -> dict[str, Any]:
    from blacksoil.flywheel_metrics import core_grants, p99, pii_hits, resume_times, slo_attainment, step_faults
    from blacksoil.flywheel_traffic import PII_CHAT_MARK, PLANTED_PII
    from blacksoil.learning.api import read_rounds
    from blacksoil.learning.gate import overall

    lost = repeated = 0
    resumes: list[float] = []
    texts: set[str] = set()  # the worker's samples files and the learner's batches hold the same rows: count once
    tok = learned.learner.tokenizer if learned.learner is not None else None
    grants = core_grants(list(zip(grant_times, holds, strict=True)))
    for train in sorted((s.home / "learning" / "runs").glob("*/round*/train")):
        status = json.loads((train / "status.json").read_text()) if (train / "status.json").exists() else {}
        records = [json.loads(x) for x in (train / "steps.jsonl").read_text().splitlines()] \
            if (train / "steps.jsonl").exists() else []
        done = status.get("state") == "done"
        a, b = step_faults([int(r["step"]) for r in records], int(status.get("steps", 0)), done)
        lost, repeated = lost + a, repeated + b
        resumes += resume_times(records, grants)
        if tok is not None and (train / "samples.jsonl").exists():  # what the worker process trained on
            for line in (train / "samples.jsonl").read_text().splitlines():
                d = json.loads(line)
                texts.add(tok.decode(list(d["prompt_ids"]) + list(d["completion_ids"])))
    if tok is not None:  # and what the learner kept of each round's batch
        texts |= {tok.decode(list(x.prompt_ids) + list(x.completion_ids)) for batch in batches for x in batch}
    hits = pii_hits(texts, PLANTED_PII)
    idle = [g for at, g in tally.gaps if t["idle"] <= at < t["learn"]]
    slo_s = opts.slo_factor * p99(idle)
    slo = slo_attainment(tally.gaps, t["learn"], t["stopped"], slo_s, opts.window_s)
    rounds = read_rounds(s.home)
    learner = learned.learner
    gated = learner is not None and learner.baseline is not None
    provenance = dict(getattr(learner, "provenance", {}) or {})
    res: dict[str, Any] = {
        "failed_requests": len(tally.failures), "lost_steps": lost, "repeated_steps": repeated,
        "pii_in_training": sum(hits.values()),
        "promoted_versions": sum(1 for r in rounds if r.get("promoted")),
        "dev_completion_before": round(learner.initial_dev, 4) if gated else None,
        "dev_completion_after": round(overall(learner.baseline), 4) if gated else None,
        "serving_slo_attainment": round(slo.attainment, 4), "preemptions": int(workload.preemptions),
        "resume_s_p50": round(statistics.median(resumes), 2) if resumes else None,
        "rss_growth_mb": round(rss["after"] - rss["before"], 1),
        "requests_ok": tally.ok, "errors": tally.failures[:5] + learned.errors[:5],
        "itl_p99_ms_idle": round(p99(idle) * 1000, 1), "slo_itl_p99_ms": round(slo_s * 1000, 1),
        "slo_windows": slo.windows, "slo_windows_met": slo.met, "slo_windows_empty": slo.empty,
        "slo_missed_at_s": [round(i * opts.window_s) for i in slo.missed],  # after the learner started
        # What the learner was doing then (same clock): the phases and the spike, in seconds after it started.
        "learner_phases_at_s": {name: round(at - t["learn"]) for name, at in (learner.phases if learner else [])},
        "spike_at_s": [round(t[k] - t["learn"]) for k in ("spike_on", "spike_off") if k in t],
        "rounds": len(rounds), "round_decisions": [r.get("decision", "")[:80] for r in rounds],
        "decoded_training_samples": len(texts), "pii_hits": {k: v for k, v in hits.items() if v},
        # Trained rows that came from a PII-carrying chat (its fixed words survive anonymization): without any, a
        # pii_in_training of 0 would prove nothing.
        "pii_chats_trained": sum(1 for x in texts if PII_CHAT_MARK in x),
        "samples_by_source": provenance.get("samples_by_source", {}), "trained_tenants": provenance.get("tenants", []),
        "resume_s": [round(x, 2) for x in resumes], "rss_mb_before": round(rss["before"], 1),
        "rss_requests": opts.rss_requests, "spike_s": round(t.get("spike_off", t["stopped"]) - t["spike_on"], 1)
        if "spike_on" in t else None, **extra,
    }
    res["bars_met"] = _bars(res)
    return res


def _bars(r: dict[str, Any]) -> dict[str, bool]:
    before, after = r["dev_completion_before"], r["dev_completion_after"]
    return {"failed_requests": r["failed_requests"] == 0, "lost_steps": r["lost_steps"] == 0,
            "repeated_steps": r["repeated_steps"] == 0, "pii_in_training": r["pii_in_training"] == 0,
            "promoted_versions": r["promoted_versions"] >= 1, "dev_completion_before": before is not None,
            "dev_completion_after": before is not None and after is not None and after > before,
            "serving_slo_attainment": r["serving_slo_attainment"] >= 0.99, "preemptions": r["preemptions"] >= 1,
            "resume_s_p50": r["resume_s_p50"] is not None, "rss_growth_mb": r["rss_growth_mb"] <= 100}


def register(app: typer.Typer, bench: typer.Typer) -> None:
    """Add `bench flywheel` to the `bench` group."""
    bench.command("flywheel")(bench_flywheel)


def bench_flywheel(
    quick: bool = typer.Option(False, "--quick", help="A short run: 4 min of learning, 500 RSS requests."),
    minutes: float = typer.Option(None, min=0.5, help="Minutes the learner runs under the traffic mix "
                                                       "(default 30; 4 with --quick)."),
    write_doc: bool = typer.Option(False, "--write-doc", help=WRITE_DOC_HELP),
) -> None:
    """The flywheel under outside traffic: learning from the store, scheduled next to serving (issue 15's bars)."""
    from blacksoil import benchlog
    from blacksoil.config import settings

    opts = FlywheelOptions.make(quick, minutes)
    res = run_flywheel(opts)
    rows = [[k, "-" if res[k] is None else res[k], bar, "yes" if res["bars_met"][k] else "NO"] for k, bar in BARS]
    benchlog.report("Flywheel: learning from outside traffic under the scheduler", ["metric", "value", "bar", "met"],
                    rows, res, dest=benchlog.destination(settings().home, write_doc),
                    notes=_notes(opts))


def _notes(opts: FlywheelOptions) -> str:
    quick = " (--quick; the bar is stated for 10,000)" if opts.rss_requests < 10_000 else ""
    return (f"Traffic of an opted-in tenant throughout: 1 streamed chat client rating each answer by whether it is "
            f"right, 1 streamed client whose prompts carry planted PII (emails, phones, a card number) rating every "
            f"answer good, 1 agent attempting {', '.join(opts.suites)} train tasks whose checkers post rewards; "
            f"after a warm-up (the agent's first attempt), {opts.idle_s:g} s of it without the learner (its ITL "
            f"p99 × {opts.slo_factor:g} is the SLO), then "
            f"{opts.minutes:g} min with it (a round in progress may run to {opts.cap_minutes:g} min), with a spike "
            f"of {opts.spike_clients} streamed clients once the learner trains. Rounds of {opts.steps} steps of batch "
            f"{opts.batch_size} ({opts.practice} practice instances per template demonstrated), gated on "
            f"{opts.gate_tasks} dev tasks. SLO windows are {opts.window_s:g} s; one without any token counts as "
            f"missed. RSS growth of the gateway's process over {opts.rss_requests} requests of a tenant no learner "
            f"reads{quick}, after the learner stopped. resume_s: from the learner getting its cores back to its "
            "first step after the restart (process start, model load, checkpoint restore, one step).")
