"""Command-line commands of the agents pillar: run, list, show, resume, approve and deny agent runs.

Registered on the root app by blacksoil.cli; heavy imports stay inside the commands.
"""

from __future__ import annotations

import getpass
import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import typer

from blacksoil.benchlog import WRITE_DOC_HELP

if TYPE_CHECKING:
    from blacksoil.agents.launcher import RuntimeSetup
    from blacksoil.agents.loop import AgentRuntime, RunResult

agent_app = typer.Typer(help="Agents: run a spec on a task, inspect runs, approve or deny paused tool calls.",
                        no_args_is_help=True)  # fmt: skip

_BASE_URL = typer.Option(None, "--base-url", help="OpenAI-compatible base URL (…/v1); default: agents.gateway_url, "
                         "else an embedded gateway with the default model.")  # fmt: skip
_MODEL = typer.Option(None, "--model", help="Model name sent to the gateway (default: the spec's, else the gateway's).")
_JSON = typer.Option(False, "--json", help="Print the result as one JSON line only.")


def _print_result(r: RunResult, as_json: bool) -> None:
    from rich.console import Console

    if as_json:
        print(json.dumps(r.to_dict(), default=str))
        return
    c = Console()
    c.print(f"run [bold]{r.run_id}[/]: {r.status} ({r.reason}); steps={r.steps} tokens={r.tokens} wall={r.wall_s:.1f}s")
    if r.answer is not None:
        c.print(f"answer: {r.answer}", highlight=False)
    for p in r.pending:
        why = "; ".join(p.reasons)
        c.print(
            f"waiting for approval: {p.run_id} {p.call_id} {p.name}({json.dumps(p.arguments)}) — {why}", highlight=False
        )
        c.print(f"  blacksoil agent approve {p.run_id} {p.call_id}   |   blacksoil agent deny {p.run_id} {p.call_id}")
    print(json.dumps(r.to_dict(), default=str))


def _setup() -> RuntimeSetup:
    """The runtime's settings, resolved once per command."""
    from blacksoil.agents.launcher import RuntimeSetup
    from blacksoil.config import settings

    return RuntimeSetup.from_settings(settings())


@contextmanager
def _runtime(team: Any, base_url: str | None, model: str | None) -> Iterator[AgentRuntime]:
    """open_runtime with this process's settings and, for an outside gateway, the platform's experience sink."""
    from blacksoil.agents.launcher import RuntimeSetup, open_runtime
    from blacksoil.config import settings
    from blacksoil.experience.sink import make_sink

    s = settings()
    with open_runtime(team, RuntimeSetup.from_settings(s), base_url=base_url, model=model,
                      new_sink=lambda: make_sink(s)) as rt:
        yield rt


def _team_of(run_id: str) -> Any:
    from blacksoil.agents.launcher import run_store
    from blacksoil.agents.spec import AgentTeam

    store = run_store(_setup())
    try:
        return AgentTeam.model_validate(store.get_run(run_id).team)
    finally:
        store.close()


@agent_app.command("run")
def run_cmd(
    spec: str = typer.Argument(..., help="Agent spec YAML, e.g. examples/agents/plant_operator.yaml."),
    task: str = typer.Argument(..., help="What the agent should do."),
    base_url: str | None = _BASE_URL,
    model: str | None = _MODEL,
    run_id: str | None = typer.Option(None, "--run-id", help="Id for the new run (default: random)."),
    user: str | None = typer.Option(None, "--user", help="Human the run acts for (policy principal)."),
    as_json: bool = _JSON,
) -> None:
    """Run the spec's entry agent on TASK until it answers, hits a limit or pauses for approval."""
    from blacksoil.agents.spec import load_team

    team = load_team(spec)
    with _runtime(team, base_url, model) as rt:
        _print_result(rt.run(task, run_id=run_id, user=user), as_json)


@agent_app.command("list")
def list_cmd(limit: int = typer.Option(20, "--limit", min=1, help="How many recent runs to show.")) -> None:
    """List recent runs: id, agent, status, termination reason, steps, tokens."""
    from rich.console import Console
    from rich.table import Table

    from blacksoil.agents.launcher import run_store

    store = run_store(_setup())
    t = Table("run", "agent", "status", "reason", "steps", "tokens", "wall s", "task")
    for r in store.list_runs(limit):
        t.add_row(
            r.run_id, r.agent, r.status, r.reason or "", str(r.steps), str(r.tokens), f"{r.wall_s:.1f}", r.task[:50]
        )
    Console().print(t)


@agent_app.command("show")
def show_cmd(
    run_id: str = typer.Argument(..., help="Run id (see `blacksoil agent list`)."), as_json: bool = _JSON
) -> None:
    """Show one run: its messages, tool calls with policy verdicts, and pending approvals."""
    from rich.console import Console

    from blacksoil.agents.launcher import run_store

    store = run_store(_setup())
    run = store.get_run(run_id)
    calls = store.calls(run_id)
    if as_json:
        head = {k: v for k, v in run.__dict__.items() if k != "team"}
        out = {"run": head, "messages": store.messages(run_id), "calls": [c.__dict__ for c in calls]}
        print(json.dumps(out, default=str))
        return
    c = Console(highlight=False)
    c.print(f"[bold]{run.run_id}[/] agent={run.agent} status={run.status} reason={run.reason} steps={run.steps} "
            f"tokens={run.tokens} wall={run.wall_s:.1f}s flags={run.flags}")  # fmt: skip
    c.print(f"task: {run.task}")
    for m in store.messages(run_id):
        if m["role"] == "assistant" and m.get("tool_calls"):
            for tc in m["tool_calls"]:
                c.print(f"  [cyan]call {tc['id']}[/] {tc['function']['name']}({tc['function'].get('arguments')})")
        elif m["role"] == "tool":
            c.print(f"  [green]result {m['tool_call_id']}[/] {str(m['content'])[:300]}")
        else:
            c.print(f"  [bold]{m['role']}[/]: {str(m.get('content'))[:500]}")
    for call in calls:
        c.print(f"  {call.call_id} {call.name}: {call.status} verdict={call.verdict} {'; '.join(call.reasons)}")
    if run.answer is not None:
        c.print(f"answer: {run.answer}")


@agent_app.command("resume")
def resume_cmd(
    run_id: str = typer.Argument(..., help="Run to continue (killed, stopped mid-way or paused)."),
    base_url: str | None = _BASE_URL,
    model: str | None = _MODEL,
    as_json: bool = _JSON,
) -> None:
    """Continue a run from its last completed step; side-effecting tools never run twice."""
    with _runtime(_team_of(run_id), base_url, model) as rt:
        _print_result(rt.resume(rt.root(run_id)), as_json)


def _decide(run_id: str, call_id: str, approve: bool, by: str | None, note: str, resume: bool, base_url: str | None,
            model: str | None, as_json: bool) -> None:  # fmt: skip
    from blacksoil.agents.launcher import decide_call

    team = _team_of(run_id)
    # Only a missing --by means the OS user; `--by ""` is an error, not a silent default.
    root = decide_call(team, _setup(), run_id, call_id, approve=approve,
                       by=getpass.getuser() if by is None else by, note=note)
    if not resume:
        print(json.dumps({"run_id": run_id, "call_id": call_id, "approved": approve}))
        return
    with _runtime(team, base_url, model) as rt:
        _print_result(rt.resume(root), as_json)


@agent_app.command("approve")
def approve_cmd(
    run_id: str = typer.Argument(..., help="Run that waits (the id printed with the pending call)."),
    call_id: str = typer.Argument(..., help="Pending call id, e.g. s2c0."),
    by: str | None = typer.Option(None, "--by", help="Approver's name (default: the OS user)."),
    note: str = typer.Option("", "--note", help="Why it is approved (audited)."),
    resume: bool = typer.Option(True, "--resume/--no-resume", help="Resume the run right away."),
    base_url: str | None = _BASE_URL,
    model: str | None = _MODEL,
    as_json: bool = _JSON,
) -> None:
    """Approve a paused tool call, then resume the run (the call runs with the arguments shown)."""
    _decide(run_id, call_id, True, by, note, resume, base_url, model, as_json)


@agent_app.command("deny")
def deny_cmd(
    run_id: str = typer.Argument(..., help="Run that waits (the id printed with the pending call)."),
    call_id: str = typer.Argument(..., help="Pending call id, e.g. s2c0."),
    by: str | None = typer.Option(None, "--by", help="Denier's name (default: the OS user)."),
    reason: str = typer.Option("denied by operator", "--reason", help="Told to the model as the call's result."),
    resume: bool = typer.Option(True, "--resume/--no-resume", help="Resume the run right away."),
    base_url: str | None = _BASE_URL,
    model: str | None = _MODEL,
    as_json: bool = _JSON,
) -> None:
    """Deny a paused tool call, then resume the run (the model is told it was denied)."""
    _decide(run_id, call_id, False, by, reason, resume, base_url, model, as_json)


@agent_app.command("memory-purge")
def memory_purge_cmd(
    tenant: str = typer.Option(..., "--tenant", help="Tenant whose long-term memory is deleted."),
) -> None:
    """Delete every fact the tenant's agents remembered (the `memory` tool set)."""
    from blacksoil.agents.memory import MemoryStore, memory_path

    store = MemoryStore(memory_path(_setup().toolsets_dir))
    try:
        print(json.dumps({"tenant": tenant, "facts_deleted": store.purge(tenant)}))
    finally:
        store.close()


def bench_agents(
    spec: str = typer.Option("examples/agents/maintenance.yaml", "--spec", help="Agent spec to measure."),
    tries: int = typer.Option(20, "--tries", min=1, help="How many runs (each on a fresh plant)."),
    base_url: str | None = _BASE_URL,
    write_doc: bool = typer.Option(False, "--write-doc", help=WRITE_DOC_HELP),
) -> None:
    """Run manufacturing maintenance tasks through the gateway and count the runs a checker confirms."""
    from pathlib import Path

    from blacksoil.agents.bench import run_bench
    from blacksoil.agents.launcher import RuntimeSetup
    from blacksoil.benchlog import destination, report
    from blacksoil.config import settings
    from blacksoil.experience.sink import make_sink

    s = settings()
    res = run_bench(Path(spec), tries, RuntimeSetup.from_settings(s), base_url, new_sink=lambda: make_sink(s))
    rows = [[r["task"], r["status"], r["reason"], r["steps"], r["wall_s"], "yes" if r["success"] else "no",
             " ".join(r["calls"])[:60]] for r in res.pop("rows")]  # fmt: skip
    report(
        f"agent runs on manufacturing maintenance tasks ({spec})",
        ["task", "status", "reason", "steps", "wall s", "success", "calls"],
        rows,
        res,
        notes="Success = the run completed and the plant holds a maintenance order with the asked machine, kind and "
        "priority. Default model (SmolLM2-135M Q4_1) through the embedded gateway, constrained tool calls.",
        dest=destination(s.home, write_doc),
    )


def register(app: typer.Typer, bench: typer.Typer) -> None:
    """Add this pillar's commands to the root app and the `bench` group."""
    app.add_typer(agent_app, name="agent")
    bench.command("agents")(bench_agents)
