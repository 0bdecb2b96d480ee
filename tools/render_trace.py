"""Render one agent run's OpenTelemetry trace as a timeline: docs/img/trace.png (the README's picture).

    .venv/bin/python tools/render_trace.py [OUT.png]

Starts a gateway on the default model, runs a one-tool agent through it with the SDK's in-memory exporter
installed, and draws the run's span tree (invoke_agent → HTTP → chat → queue / engine, execute_tool) as bars on
one time axis, one row per span, indented by depth.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from blacksoil.agents.loop import AgentRuntime
from blacksoil.agents.model import ModelClient
from blacksoil.agents.spec import team_from_dict
from blacksoil.agents.store import RunStore
from blacksoil.config import load_settings
from blacksoil.serving.config import ServingConfig
from blacksoil.serving.launch import gateway

TOOL = '''
def get_weather(city: str) -> dict[str, object]:
    """Current weather of a city.

    Args:
        city: City name, e.g. "Paris".
    """
    return {"city": city, "temperature_c": 18, "sky": "cloudy"}
'''
POLICY = 'permit (principal in Role::"reader", action == Action::"call_tool", resource == Tool::"get_weather");\n'
_NOISE = ("fastapi.dependencies", "fastapi.endpoint", "fastapi.serialization")  # FastAPI's own inner spans
_COLORS = {"invoke_agent": "#4c72b0", "chat": "#dd8452", "execute_tool": "#55a868", "queue": "#c44e52",
           "engine": "#8172b3"}


def collect() -> list[ReadableSpan]:
    provider = TracerProvider()
    trace.set_tracer_provider(provider)
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tmp = Path(tempfile.mkdtemp(prefix="trace-"))
    (tmp / "weather_tools.py").write_text(TOOL)
    (tmp / "weather.cedar").write_text(POLICY)
    sys.path.insert(0, str(tmp))
    spec = {"name": "weather", "roles": ["reader"], "tools": ["weather_tools"],
            "policies": [str(tmp / "weather.cedar")], "tool_choice": "required_first", "limits": {"max_steps": 2}}
    s = load_settings()
    cfg = ServingConfig.model_validate({"threads": 1, "slots": 4, "concurrency": 2, "ctx": 4096})
    store = RunStore(tmp / "runs.sqlite")
    with gateway(s, serving=cfg) as gw:
        client = ModelClient(gw.openai_base_url, model=gw.model, max_tokens=64)
        rt = AgentRuntime(team_from_dict(spec), model=client, store=store, config=s.agents,
                          audit_path=tmp / "audit.sqlite")
        try:
            rt.run("What is the weather in Paris?")
        finally:
            rt.close()
            client.close()
            store.close()
    spans = list(exporter.get_finished_spans())
    root = next(sp for sp in spans if (sp.attributes or {}).get("gen_ai.operation.name") == "invoke_agent")
    assert root.context is not None
    return [sp for sp in spans if sp.context and sp.context.trace_id == root.context.trace_id]


def ordered(spans: list[ReadableSpan]) -> list[tuple[int, ReadableSpan]]:
    """Depth-first, children by start time: (depth, span), without FastAPI's inner spans."""
    ids = {sp.context.span_id for sp in spans if sp.context}
    kids: dict[int | None, list[ReadableSpan]] = {}
    for sp in spans:
        parent = sp.parent.span_id if sp.parent is not None and sp.parent.span_id in ids else None
        kids.setdefault(parent, []).append(sp)
    out: list[tuple[int, ReadableSpan]] = []

    def walk(parent: int | None, depth: int) -> None:
        for sp in sorted(kids.get(parent, []), key=lambda x: x.start_time or 0):
            shown = sp.name not in _NOISE  # a hidden span's children move up to its place
            if shown:
                out.append((depth, sp))
            walk(sp.context.span_id if sp.context else None, depth + 1 if shown else depth)

    walk(None, 0)
    return out


def label(sp: ReadableSpan) -> str:
    a = sp.attributes or {}
    if a.get("gen_ai.operation.name") == "chat":
        return (f"{sp.name}  in={a.get('gen_ai.usage.input_tokens')} out={a.get('gen_ai.usage.output_tokens')} "
                f"finish={','.join(a.get('gen_ai.response.finish_reasons') or ())}")  # type: ignore[arg-type]
    return sp.name


def render(spans: list[ReadableSpan], out: Path) -> None:
    rows = ordered(spans)
    t0 = min(sp.start_time or 0 for _, sp in rows)
    fig, ax = plt.subplots(figsize=(11, 0.42 * len(rows) + 1.2))
    for i, (depth, sp) in enumerate(rows):
        start = ((sp.start_time or 0) - t0) / 1e9
        width = max(((sp.end_time or 0) - (sp.start_time or 0)) / 1e9, 0.02)
        kind = str((sp.attributes or {}).get("gen_ai.operation.name") or sp.name)
        ax.barh(i, width, left=start, color=_COLORS.get(kind, "#999999"), height=0.6)
        ax.text(start, i - 0.38, "   " * depth + label(sp), fontsize=8, va="bottom")
    ax.set_yticks([])
    ax.invert_yaxis()
    ax.set_xlabel("seconds since the run started")
    ax.set_title("one agent run through the gateway, traced (OpenTelemetry GenAI spans, in-memory exporter)")
    ax.set_ylim(len(rows) - 0.4, -1.0)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    print(f"wrote {out} ({len(rows)} spans)")


if __name__ == "__main__":
    render(collect(), Path(sys.argv[1] if len(sys.argv) > 1 else "docs/img/trace.png"))
