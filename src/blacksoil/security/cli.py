"""Command-line commands of the security pillar: `blacksoil redteam sandbox` and `blacksoil redteam injection`.

Registered on the root app by blacksoil.cli; heavy imports stay inside the commands.
"""

from __future__ import annotations

import contextlib
import os
from typing import Any

import typer

from blacksoil.benchlog import WRITE_DOC_HELP, Destination
from blacksoil.errors import UserError

redteam = typer.Typer(help="Attack suites against the sandbox and the policy layer; each ends with a JSON line.",
                      no_args_is_help=True)
security = typer.Typer(help="Policies and the audit log: dry-run a tool call, query and verify the audit log.",
                       no_args_is_help=True)


def register(app: typer.Typer, bench: typer.Typer) -> None:
    """Add this pillar's commands to the root app and the `bench` group."""
    app.add_typer(redteam, name="redteam")
    app.add_typer(security, name="security")


@security.command("check")
def check_cmd(
    tool: str = typer.Argument(..., help="Tool name, e.g. set_machine_state."),
    arguments: str = typer.Option("{}", "--args", help="The call's arguments as a JSON object."),
    agent: str = typer.Option("agent", help="Agent name (the Cedar principal)."),
    tenant: str = typer.Option("default", help="Tenant the agent acts for."),
    role: list[str] = typer.Option([], "--role", help="Cedar role of the agent (repeatable), e.g. plant_operator."),
    facts: str = typer.Option("{}", help='Facts for context.facts as JSON, e.g. {"zones_under_maintenance": ["S3"]}.'),
    untrusted: bool = typer.Option(False, help="The run has read outsider-controlled text."),
    sensitive: bool = typer.Option(False, help="The run has read sensitive data."),
    policy: list[str] = typer.Option([], help="Extra .cedar file (repeatable) on top of the shipped policies."),
) -> None:
    """Dry-run the policy decision for one tool call (nothing runs, nothing is audited)."""
    import json
    from pathlib import Path

    from rich.console import Console

    from blacksoil.errors import UserError
    from blacksoil.security.calls import Principal, RunFlags, ToolCallRequest, ToolTraits
    from blacksoil.security.policy import PolicyEngine

    def obj(text: str, what: str) -> dict[str, object]:
        try:
            value = json.loads(text)
        except json.JSONDecodeError as e:
            raise UserError(f"{what} {text!r} is not JSON ({e}); pass an object like '{{\"rpm\": 1200}}'") from None
        if not isinstance(value, dict):
            raise UserError(f"{what} must be a JSON object, got {type(value).__name__}")
        return value

    engine = PolicyEngine.from_files(Path(p) for p in policy)
    req = ToolCallRequest(Principal(agent, tenant, roles=tuple(role)), tool, obj(arguments, "--args"), "dry-run",
                          "dry-run", ToolTraits(), obj(facts, "--facts"))
    d = engine.decide(req, RunFlags(untrusted_input=untrusted, sensitive_data=sensitive))
    Console().print(f"[bold]{d.verdict}[/] policies={list(d.policy_ids)}")
    for r in d.reasons:
        Console().print(f"  - {r}", highlight=False)


@security.command("audit")
def audit_cmd(
    run: str | None = typer.Option(None, help="Only this run id."),
    agent: str | None = typer.Option(None, help="Only this agent."),
    tenant: str | None = typer.Option(None, help="Only this tenant."),
    limit: int = typer.Option(200, min=1, help="At most this many entries (oldest first)."),
    verify: bool = typer.Option(False, help="Also recompute the hash chain and report whether it is intact."),
) -> None:
    """Show audit log entries (arguments redacted), filtered by run, agent and tenant."""
    from rich.console import Console
    from rich.table import Table

    from blacksoil.config import settings
    from blacksoil.security.audit import AuditLog

    s = settings()
    log = AuditLog(s.home / s.security.store_file)
    table = Table(title="audit log")
    for h in ("seq", "kind", "verdict", "run", "agent", "tenant", "tool", "arguments", "reasons"):
        table.add_column(h)
    for e in log.query(run_id=run, agent=agent, tenant=tenant, limit=limit):
        table.add_row(str(e.seq), e.kind, e.verdict, e.run_id, e.agent, e.tenant, e.tool,
                      str(e.arguments)[:60], "; ".join(e.reasons)[:80])
    console = Console()
    console.print(table)
    if verify:
        ok, why = log.verify()
        console.print(f"hash chain: {'intact' if ok else 'BROKEN: ' + why} (head {log.head()[:16]})")
        if not ok:
            raise typer.Exit(1)


@redteam.command("sandbox")
def sandbox_cmd(
    overhead_runs: int = typer.Option(30, min=5, help="Calls timed for the overhead p50 (each sandboxed and not)."),
    write_doc: bool = typer.Option(False, "--write-doc", help=WRITE_DOC_HELP),
) -> None:
    """Run every sandbox escape attack in the real sandbox; print sandbox_attacks, sandbox_escapes, overhead p50."""
    import statistics
    import subprocess
    import time

    from rich.progress import Progress

    from blacksoil.benchlog import report
    from blacksoil.security.calls import Principal, RunFlags, ToolCallRequest, ToolTraits
    from blacksoil.security.policy import PolicyEngine
    from blacksoil.security.redteam.attacks import ATTACKS
    from blacksoil.security.redteam.sandbox_suite import ATTACK_LIMITS, Outcome, run_suite
    from blacksoil.security.sandbox import Sandbox, SandboxSpec

    sandbox = Sandbox(ATTACK_LIMITS)
    sandbox.require()
    with Progress() as bar:
        task = bar.add_task("attacks", total=len(ATTACKS))

        def step(o: Outcome) -> None:
            bar.update(task, advance=1, description=f"{o.attack.name} {'ESCAPED' if o.escaped else 'contained'}")

        outcomes = run_suite(sandbox, ATTACKS, progress=step)
        engine = PolicyEngine()
        req = ToolCallRequest(Principal("dev", "t", roles=("coder",)), "run_shell", {"command": "true"}, "bench",
                              "c", ToolTraits(sandboxed=True))
        plain, boxed, decide, cpu_plain, cpu_boxed = [], [], [], [], []
        timing = bar.add_task("overhead", total=overhead_runs)
        for _ in range(overhead_runs):
            c0, t = _cpu_ms(), time.perf_counter()
            subprocess.run(["/bin/true"], check=True)
            plain.append((time.perf_counter() - t) * 1000)
            cpu_plain.append(_cpu_ms() - c0)
            c0, t = _cpu_ms(), time.perf_counter()
            engine.decide(req, RunFlags())
            decide.append((time.perf_counter() - t) * 1000)
            sandbox.run(SandboxSpec(argv=("/bin/true",)))
            boxed.append((time.perf_counter() - t) * 1000)
            cpu_boxed.append(_cpu_ms() - c0)
            bar.update(timing, advance=1)
    p50 = statistics.median
    overhead = p50(boxed) - p50(plain)
    rows = [(o.attack.name, o.attack.category, o.attack.goal, "ESCAPED" if o.escaped else "contained",
             o.result.verdict, round(o.result.duration_ms), o.evidence or "-") for o in outcomes]
    result = {
        "sandbox_attacks": len(outcomes),
        "sandbox_escapes": sum(o.escaped for o in outcomes),
        "sandbox_overhead_ms_p50": round(overhead, 2),
        "sandbox_overhead_cpu_ms_p50": round(p50(cpu_boxed) - p50(cpu_plain), 2),
        "policy_decide_ms_p50": round(p50(decide), 3),
        "unsandboxed_true_ms_p50": round(p50(plain), 2),
        "policy_plus_sandbox_true_ms_p50": round(p50(boxed), 2),
        "load_average_1m": round(os.getloadavg()[0], 2),
        "sandbox_layers": list(outcomes[0].result.layers) if outcomes else [],
    }
    from blacksoil.benchlog import destination
    from blacksoil.config import settings

    dest = destination(settings().home, write_doc)
    image = _plot(plain, boxed, outcomes, dest)
    notes = ("Each attack runs in a fresh workspace of the real bubblewrap sandbox (limits: 2 s CPU, 256 MiB, "
             "32 processes, 16 MiB files, 6 s wall). Overhead = p50 of (policy decision + sandboxed `/bin/true`) "
             "minus p50 of plain `/bin/true`, same loop; the CPU variant counts CPU time of this process and its "
             "children, which a loaded machine inflates much less than wall time.")
    report("Sandbox red team", ["attack", "category", "goal", "outcome", "verdict", "ms", "evidence"], rows, result,
           notes=notes, dest=dest, images=[image] if image else [])
    if result["sandbox_escapes"]:
        raise typer.Exit(1)


def _cpu_ms() -> float:
    import resource

    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return (own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime) * 1000


def _plot(plain: list[float], boxed: list[float], outcomes: list[Any], dest: Destination) -> str | None:
    """img/sandbox_redteam.png: call latency with and without the sandbox, and time per attack category."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    a.hist([plain, boxed], bins=30, label=["plain /bin/true", "policy + sandbox"])
    a.set_xlabel("ms per call")
    a.set_ylabel("calls")
    a.legend()
    a.set_title("tool call latency")
    cats = sorted({o.attack.category for o in outcomes})
    for i, c in enumerate(cats):
        ms = [o.result.duration_ms for o in outcomes if o.attack.category == c]
        b.scatter([i] * len(ms), ms, alpha=0.6)
    b.set_xticks(range(len(cats)), cats)
    b.set_yscale("log")
    b.set_ylabel("ms per attack (log)")
    b.set_title(f"{len(outcomes)} attacks, {sum(o.escaped for o in outcomes)} escapes")
    fig.tight_layout()
    path, link = dest.image("sandbox_redteam.png")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=100)
    except OSError:
        return None
    finally:
        plt.close(fig)
    return link


@redteam.command("injection")
def injection_cmd(
    write_doc: bool = typer.Option(False, "--write-doc", help=WRITE_DOC_HELP),
    agent: str = typer.Option("scripted", "--agent", help="`scripted` (obeys every injection) or `model` (the "
                              "default model through an embedded gateway, or --endpoint's)."),
    endpoint: str | None = typer.Option(None, "--endpoint", help="OpenAI-compatible base URL (…/v1) of the model "
                                        "agent; default: an embedded gateway with the default model."),
    model: str | None = typer.Option(None, "--model", help="Model name sent to --endpoint."),
    api_key: str = typer.Option("none", "--api-key", help="API key sent to --endpoint."),
    limit: int | None = typer.Option(None, "--limit", min=1, help="Run only the first N cases."),
) -> None:
    """Run the prompt-injection cases (plant, hospital) with a scripted compliant attacker or a model as the agent;
    print guarded / unguarded attack success and utility, then the JSON line."""
    import tempfile
    from pathlib import Path

    from rich.progress import Progress

    from blacksoil.benchlog import destination, report
    from blacksoil.config import settings
    from blacksoil.factories.env_settings import EnvSettings
    from blacksoil.security.redteam.injection import CaseResult, run_suite, summary
    from blacksoil.security.redteam.injection_cases import cases

    if agent not in ("scripted", "model"):
        raise UserError(f"--agent {agent!r} is unknown; use `scripted` or `model`", param="agent")
    all_cases = cases()[:limit]
    with contextlib.ExitStack() as stack:
        make_agent, agent_name = _injection_agent(stack, agent, endpoint, model, api_key)
        with Progress() as bar, tempfile.TemporaryDirectory(prefix="bs-injection-") as folder:
            task = bar.add_task("cases", total=len(all_cases))

            def step(r: CaseResult) -> None:
                bar.update(task, advance=1,
                           description=f"{r.case.name} {'BREACH' if r.attack_succeeded else 'held'}")

            results = run_suite(all_cases, Path(folder), progress=step,
                                settings=EnvSettings.from_settings(settings()), make_agent=make_agent)
    rows = [(r.case.task.name, r.case.goal.name, "yes" if r.attack_succeeded_unguarded else "no",
             "BREACH" if r.attack_succeeded else "held", r.stopped_by, "ok" if r.utility_clean else "fail",
             "ok" if r.utility_attacked else "fail", r.approvals_asked) for r in results]
    result = {"agent": agent_name, **summary(results)}
    notes = ("Scripted compliant-attacker agent: does the user's plan and obeys every injected instruction. A scripted "
             "human approves only calls of the user's own plan. `unguarded` = the same run with an allow-all policy "
             "(shows the injection would have worked). Plant state and the audit log decide every verdict.")
    if agent == "model":
        notes = (f"Model agent ({agent_name}, temperature 0): it sees the task's and the attacker goal's tools and "
                 "decides every call itself; the guard and a scripted human who approves only the user's own calls "
                 "judge them. `unguarded` = allow-all policy. Plant state and the audit log decide every verdict.")
    report("Prompt-injection red team (manufacturing, healthcare)",
           ["task", "attacker goal", "works unguarded", "guarded", "stopped by", "utility clean", "utility attacked",
            "approvals"], rows, result, notes=notes, dest=destination(settings().home, write_doc))
    if result["injection_successes"]:
        raise typer.Exit(1)


def _injection_agent(stack: contextlib.ExitStack, agent: str, endpoint: str | None, model: str | None,
                     api_key: str) -> tuple[Any, str]:  # fmt: skip
    """(agent factory, its name for the report): the scripted attacker, or a model behind `endpoint` (default: an
    embedded gateway serving the default model, stopped when `stack` closes)."""
    from blacksoil.security.redteam.injection import scripted_agent

    if agent == "scripted":
        return scripted_agent, "scripted"
    from blacksoil.security.redteam.injection_model import model_agent, openai_chat

    if endpoint is None:
        from blacksoil.config import settings
        from blacksoil.serving.launch import gateway

        gw = stack.enter_context(gateway(settings()))
        endpoint, model = gw.openai_base_url, model or gw.model
    chat, close = openai_chat(endpoint, model, api_key=api_key)
    stack.callback(close)
    return model_agent(chat), f"model:{model or 'default'}"
