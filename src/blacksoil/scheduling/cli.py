"""Command-line commands of the scheduling pillar.

Registered on the root app by blacksoil.cli; heavy imports stay inside the commands.
"""

from __future__ import annotations

import typer

from blacksoil.benchlog import WRITE_DOC_HELP

NOTES = """Model (src/blacksoil/scheduling/traces.py, baselines.py). Serving demand replays the Azure LLM code trace
(1 h, tiled; each deployment sums 256 copies at random offsets, times a 35-100 % diurnal curve, phases spread
over 6 h), normalized so the peak needs the given fraction of the cluster at the SLO utilization (M/M/1 p99 →
ρ ≤ 0.8); replicas take 60 s to warm up; a step is 30 s; SLO attainment = demand served by ready replicas at
ρ ≤ 0.8. Learning jobs come from Alibaba openb GPU pods (size = GPUs × 8 × max(1, N/2500), duration × 4 clipped
to 0.5-8 h, QoS → priority, BE jobs elastic to half), offered at 1.2× the cluster's accelerator-hours, a third
queued at t=0. Checkpoints every 30 min cost 60 s; a (re)start costs 120 s; a gang across racks runs at 95 %,
across pods at 80 % (assumed link penalties).
Baselines as the real systems behave. static: serving pool sized for the trace's peak under HPA,
learning on the rest. kueue: the same nominal quotas in one cohort; learning borrows; serving reclaims by
evicting whole workloads (lowest priority, newest first; killed after a 30 s grace period, no coordinated
checkpoint: kueue#477); partial admission, no growth (kueue#77); TAS 'preferred' (falls back to the whole
cluster). kueue_tas_required: the same with TAS 'required' at the pod level. lyra: whole idle serving nodes
loaned; on reclaim elastic jobs scale in, non-elastic ones are killed. unified (ours): Holt forecast + kσ
headroom one warm-up + checkpoint ahead, keeps 5 min of forecast growth unlent, trims elastic jobs before
stopping any, checkpoints before stopping unless the SLO is missed now and a checkpoint is slower than a kill,
gangs confined to one pod. All baselines serve with the same reactive HPA.
Equal footing: every policy's one serving knob was tuned by the same rule on this trace (seed 0) — the
leanest setting that keeps SLO attainment >= 0.999: HPA target 0.72 for all baselines (0.74 drops below),
k = 1σ for ours (0.5σ drops below). With the baselines at the untuned HPA default-ish 0.6, ours looks far
better; that comparison is not the result.
Reading the result: ours beats static (> 1.3×) and Kueue with TAS 'preferred' (> 1.1×), but most of the
gain over 'kueue' is topology confinement: Kueue with TAS 'required' (kueue_tas_required) gets it back and
matches our goodput within a few per cent; what remains ours is ~20× less lost work than Kueue (checkpoint
before stop, trimming elastic jobs), though with as many or more preemptions. Decision latency is the wall
time of one policy step in Python; on this shared 2-core machine (load average > 10) it is dominated by CPU
contention."""

CLUSTER_NOTES = """`ray.cluster_utils.Cluster` on this machine: a 0-CPU head and two 1-CPU worker nodes, each
its own raylet. Routing: two engine replica actors (embedded llama.cpp, 1 thread, 4 slots, 2 requests at once each)
behind one gateway, fresh for each arm; 8 agent sessions alternate between two agents whose system prompts
(instructions + 8 tool schemas, ~900 tokens) every session of that agent shares; each turn appends the tool
call and, after the tool's 1-3 s, its ~250-token JSON result; 4 turns, 4-token answers. A cold wave (8 one-turn
sessions on the fresh engines, cold_ttft_p99_s) runs first; the TTFTs, speedup and hit ratios are those of
the warm wave that follows (8 new sessions). TTFT is measured by the client (queue included); round_robin = the
gateway's round_robin policy (each request to the next replica, as a plain load balancer), prefix_affinity = its
agent policy (a session → the replica and slot holding its context, a new one → the replica holding its
agent's prompt by rendezvous hashing with bounded loads). Replica kill: 4 long streams
over two replicas, one actor killed, then 8 new requests sent at once. Learner kill: two LoRA trainer ranks (one
per node, gloo) checkpoint every step; rank 1 is killed after step 2. DDP wire: a two-rank gang (one rank per
node) trains 16 steps (28 full) per comm hook on the same samples and seed; bytes = the kernel's tcp_info bytes_sent
on the gloo sockets between the two ranks (TCPStore excluded), summed over both ranks; the ratio covers all steps,
priority's exact first step included (after_first_step: steps 2..N); ddp_loss_gap = the largest |loss difference|
at the same steps. Scale up/down: `up --backend ray`'s serving (no local engine; the unified policy steps every
0.5 s on the gateway's /metrics, scale-down window 2 s) at one replica; 6 concurrent 48-token streams on its 2
slots are the demand spike; scale_up_s = spike to a new replica actor serving one of them (the policy's decision,
the actor's start on the free node and the model load included).
Reading the routing result: round robin sends every other turn of a session to the replica that does not hold its
context, which recomputes the session's history there (llama.cpp still finds the shared system prompt in a slot);
prefix affinity computes only each turn's new tokens. The cold wave goes the other way: prefix affinity puts each
new session in an empty slot, which computes the system prompt again (llama.cpp shares no KV between slots, and a
pinned empty slot loads nothing from its host-RAM prompt cache), while llama.cpp's own slot choice under round
robin lets later sessions reuse it."""


def register(app: typer.Typer, bench: typer.Typer) -> None:
    """Add this pillar's commands to the root app and the `bench` group."""

    @bench.command("cluster")
    def bench_cluster(
        quick: bool = typer.Option(False, "--quick", help="8 sessions × 4 turns instead of 16 × 6."),
        write_doc: bool = typer.Option(False, "--write-doc", help=WRITE_DOC_HELP),
    ) -> None:
        """The Ray backend on a local 3-node Ray cluster: routing, a killed replica, a killed learner rank."""
        import tempfile
        from pathlib import Path

        from blacksoil.benchlog import destination, report
        from blacksoil.config import settings
        from blacksoil.scheduling.backends import ray_bench

        with tempfile.TemporaryDirectory(prefix="bs-cluster-") as work:
            headers, rows, result = ray_bench.run(settings(), Path(work), quick)
        report("Ray backend on a local multi-node cluster", headers, rows, result, notes=CLUSTER_NOTES,
               dest=destination(settings().home, write_doc))

    @app.command("sim")
    def sim(
        accelerators: int = typer.Option(10_000, help="Cluster size in accelerators (a multiple of 8)."),
        hours: float = typer.Option(24.0, help="Simulated hours."),
        policy: str = typer.Option("all", help="static, kueue, kueue_tas_required, lyra, unified, or all."),
        seed: int = typer.Option(0, help="Random seed of the trace offsets and job sampling."),
        write_doc: bool = typer.Option(False, "--write-doc", help=WRITE_DOC_HELP),
        note: str = typer.Option("", help="Extra text for the notes in docs/benchmarks.md (e.g. other measurements)."),
    ) -> None:
        """Trace-driven simulation of the unified scheduler against static, Kueue-style and Lyra-style baselines."""
        import time

        from rich.progress import Progress, TaskID

        from blacksoil.benchlog import destination, report
        from blacksoil.config import settings
        from blacksoil.errors import ConfigError
        from blacksoil.scheduling.plots import plot_allocation, plot_slo_vs_goodput
        from blacksoil.scheduling.simulator import POLICIES, build_scenario, simulate

        names = list(POLICIES) if policy == "all" else [policy]
        for n in names:
            if n not in POLICIES:
                raise ConfigError(f"--policy {n!r} is unknown; use one of {', '.join(POLICIES)} or all")
        t0 = time.perf_counter()
        cfg = settings().scheduling.model_copy(update={"seed": seed})
        sc = build_scenario(accelerators, hours, cfg)
        results = []
        with Progress(transient=True) as bar:
            for n in names:
                task = bar.add_task(f"simulating {n}", total=sc.steps)

                def tick(k: int, task: TaskID = task) -> None:
                    bar.update(task, completed=k + 1)

                results.append(simulate(sc, n, on_step=tick))
        wall = time.perf_counter() - t0
        from blacksoil.scheduling.runs import save_sim_run

        saved = save_sim_run(settings().home, results, accelerators=accelerators, hours=hours)
        dest = destination(settings().home, write_doc)
        images = [plot_allocation(results, accelerators, dest.img / "sim_allocation.png"),
                  plot_slo_vs_goodput(results, dest.img / "sim_slo_goodput.png")]
        by = {r.policy: r for r in results}
        result: dict[str, object] = {
            r.policy: {"slo_attainment": round(r.slo_attainment, 6), "goodput_acc_hours": round(r.goodput_acc_hours, 1),
                       "lost_work_frac": round(r.lost_work_frac, 6), "utilization": round(r.utilization, 4),
                       "decision_p99_ms": round(r.decision_p99_ms, 3)}
            for r in results
        }
        if "unified" in by:
            for base in ("static", "kueue", "kueue_tas_required", "lyra"):
                if base in by and by[base].goodput_acc_hours > 0:
                    ratio = by["unified"].goodput_acc_hours / by[base].goodput_acc_hours
                    result[f"goodput_ratio_vs_{base}"] = round(ratio, 4)
        result["sim_wall_s"] = round(wall, 2)
        result["accelerators"] = accelerators
        result["hours"] = hours
        result["run_file"] = str(saved)
        headers = ["policy", "SLO attain", "goodput acc-h", "lost frac", "util", "frag", "queue p50 min",
                   "JCT h", "jobs done", "preempt", "dec p50 ms", "dec p99 ms"]
        rows = [[r.policy, round(r.slo_attainment, 5), round(r.goodput_acc_hours), round(r.lost_work_frac, 5),
                 round(r.utilization, 4), round(r.fragmentation, 3), round(r.queue_delay_p50_min, 1),
                 round(r.jct_mean_h, 2), r.jobs_done, r.preemptions, round(r.decision_p50_ms, 3),
                 round(r.decision_p99_ms, 3)] for r in results]
        report(f"Unified scheduler simulation: {accelerators} accelerators, {hours:g} h", headers, rows, result,
               notes=NOTES + ("\n\n" + note if note else ""), images=[f"img/{p.name}" for p in images],
               dest=dest)
