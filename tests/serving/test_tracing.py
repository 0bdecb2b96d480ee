"""OpenTelemetry GenAI traces: one agent run through the real gateway yields invoke_agent → chat, execute_tool.

The SDK's in-memory exporter collects the spans of both sides (the agent runtime and the gateway run in this
process; the agent's HTTP calls carry the W3C traceparent to the gateway, which joins the trace from it).
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry import trace
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from tests.serving.conftest import small_config

from blacksoil.agents.loop import AgentRuntime
from blacksoil.agents.model import ModelClient
from blacksoil.agents.spec import team_from_dict
from blacksoil.agents.store import RunStore
from blacksoil.config import load_settings
from blacksoil.serving.config import TracingConfig
from blacksoil.serving.launch import gateway
from blacksoil.serving.tracing import GatewayTracing, install, trace_headers

TASK = "What is the weather in Paris?"
POLICY = 'permit (principal in Role::"reader", action == Action::"call_tool", resource == Tool::"get_weather");\n'


def in_memory_exporter() -> InMemorySpanExporter:
    """An exporter on the process's SDK tracer provider (installed here if none is; the API allows one)."""
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        provider = TracerProvider()
        trace.set_tracer_provider(provider)
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return exporter


@pytest.fixture(scope="module")
def exporter() -> Iterator[InMemorySpanExporter]:
    exp = in_memory_exporter()
    yield exp
    exp.shutdown()


@pytest.fixture(scope="module")
def run_spans(exporter: InMemorySpanExporter, tmp_path_factory: pytest.TempPathFactory) -> list[ReadableSpan]:
    """The spans of one agent run (tool call, then an answer) through a real gateway and engine."""
    tmp = tmp_path_factory.mktemp("trace")
    (tmp / "weather.cedar").write_text(POLICY)
    spec = {"name": "weather", "roles": ["reader"], "tools": ["tests.serving.trace_tools"],
            "policies": [str(tmp / "weather.cedar")], "tool_choice": "required_first", "limits": {"max_steps": 2}}
    s = load_settings()
    store = RunStore(tmp / "runs.sqlite")
    exporter.clear()
    with gateway(s, serving=small_config()) as gw:
        client = ModelClient(gw.openai_base_url, model=gw.model, max_tokens=64)
        rt = AgentRuntime(team_from_dict(spec), model=client, store=store, config=s.agents,
                          audit_path=tmp / "audit.sqlite")
        try:
            rt.run(TASK)
        finally:
            rt.close()
            client.close()
            store.close()
    return list(exporter.get_finished_spans())


def named(spans: list[ReadableSpan], operation: str) -> list[ReadableSpan]:
    return [s for s in spans if (s.attributes or {}).get("gen_ai.operation.name") == operation]


def children(spans: list[ReadableSpan], parent: ReadableSpan) -> list[ReadableSpan]:
    pid = parent.context.span_id if parent.context else None
    return [s for s in spans if s.parent is not None and s.parent.span_id == pid]


def descendants(spans: list[ReadableSpan], root: ReadableSpan) -> list[ReadableSpan]:
    out, todo = [], [root]
    while todo:
        kids = children(spans, todo.pop())
        out += kids
        todo += kids
    return out


def attr(span: ReadableSpan, key: str) -> Any:
    return (span.attributes or {}).get(key)


def test_one_invoke_agent_span_is_the_root(run_spans: list[ReadableSpan]) -> None:
    (agent,) = named(run_spans, "invoke_agent")
    assert agent.parent is None


def test_the_gateways_chat_spans_descend_from_invoke_agent(run_spans: list[ReadableSpan]) -> None:
    (agent,) = named(run_spans, "invoke_agent")
    chats = named(run_spans, "chat")
    assert len(chats) == 2 and all(c in descendants(run_spans, agent) for c in chats)


def test_the_tool_execution_is_a_child_of_invoke_agent(run_spans: list[ReadableSpan]) -> None:
    (agent,) = named(run_spans, "invoke_agent")
    assert {attr(t, "gen_ai.tool.name") for t in children(run_spans, agent)
            if attr(t, "gen_ai.operation.name") == "execute_tool"} == {"get_weather"}


def test_every_genai_span_of_the_run_is_in_one_trace(run_spans: list[ReadableSpan]) -> None:
    assert len({s.context.trace_id for s in run_spans if s.context and attr(s, "gen_ai.operation.name")}) == 1


def test_chat_spans_carry_token_usage(run_spans: list[ReadableSpan]) -> None:
    first = named(run_spans, "chat")[0]
    assert (attr(first, "gen_ai.usage.input_tokens") > 0, attr(first, "gen_ai.usage.output_tokens") > 0) == \
        (True, True)


def test_chat_spans_carry_model_and_finish_reason(run_spans: list[ReadableSpan]) -> None:
    first = named(run_spans, "chat")[0]
    assert (attr(first, "gen_ai.request.model"), tuple(attr(first, "gen_ai.response.finish_reasons"))) == \
        ("smollm2-135m-instruct", ("tool_calls",))


def test_chat_spans_have_queue_and_engine_children(run_spans: list[ReadableSpan]) -> None:
    first = named(run_spans, "chat")[0]
    assert sorted(s.name for s in children(run_spans, first)) == ["engine", "queue"]


def test_no_message_content_in_spans_by_default(run_spans: list[ReadableSpan]) -> None:
    values = [str(v) for s in run_spans for v in (s.attributes or {}).values()]
    assert not [v for v in values if "Paris" in v or "weather in" in v]


def test_content_is_captured_when_configured(exporter: InMemorySpanExporter) -> None:
    exporter.clear()
    call = GatewayTracing(TracingConfig(capture_content=True)).start(
        "chat", "m", {"messages": [{"role": "user", "content": TASK}]}, {})
    call.finished("id1", "m", {"prompt_tokens": 3, "completion_tokens": 1}, "stop", 0.1,
                  {"role": "assistant", "content": "Sunny."})
    (span,) = exporter.get_finished_spans()
    assert (json.loads(attr(span, "gen_ai.input.messages"))[0]["content"],
            json.loads(attr(span, "gen_ai.output.messages"))[0]["content"]) == (TASK, "Sunny.")


def test_a_refused_call_ends_its_span_with_the_error(exporter: InMemorySpanExporter) -> None:
    cfg = small_config(tenancy={"tenants": {"t": {"requests_per_minute": 1}}})
    body = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 1}
    with gateway(load_settings(), serving=cfg) as gw, httpx.Client(base_url=gw.url, timeout=60) as c:
        c.post("/v1/chat/completions", json=body, headers={"X-Tenant": "t"})
        exporter.clear()
        with trace.get_tracer("test").start_as_current_span("client"):
            c.post("/v1/chat/completions", json=body, headers={"X-Tenant": "t", **trace_headers()})
    (chat,) = named(list(exporter.get_finished_spans()), "chat")
    assert attr(chat, "error.type") == "TenantLimited"


def test_tracing_stays_off_without_an_endpoint() -> None:
    assert install(TracingConfig()) is False


def test_a_non_http_endpoint_is_refused_with_the_fix() -> None:
    with pytest.raises(ValueError, match="http"):
        TracingConfig(otlp_endpoint="localhost:4318")


def test_the_endpoint_is_read_from_blacksoil_toml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "blacksoil.toml").write_text('[serving.tracing]\notlp_endpoint = "http://127.0.0.1:4318/v1/traces"\n')
    monkeypatch.setenv("BLACKSOIL_CONFIG", str(tmp_path / "blacksoil.toml"))
    assert load_settings().serving.tracing.otlp_endpoint == "http://127.0.0.1:4318/v1/traces"


_EXPORT = """
import sys
from opentelemetry import trace
from blacksoil.serving.config import TracingConfig
from blacksoil.serving.tracing import install
assert install(TracingConfig(otlp_endpoint=sys.argv[1], service_name="bs-test"))
with trace.get_tracer("t").start_as_current_span("invoke_agent probe"):
    pass
trace.get_tracer_provider().force_flush()
"""


def test_spans_are_exported_over_otlp_http_when_an_endpoint_is_set() -> None:
    """A fresh process with [serving.tracing] otlp_endpoint posts its spans to a local collector stand-in."""
    got: list[tuple[str, str, bytes]] = []

    class Collector(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            got.append((self.path, self.headers["Content-Type"], self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Collector)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        subprocess.run([sys.executable, "-c", _EXPORT, f"http://127.0.0.1:{server.server_port}/v1/traces"],
                       check=True, timeout=60)
    finally:
        server.shutdown()
    request = ExportTraceServiceRequest.FromString(got[0][2])
    spans = [s.name for rs in request.resource_spans for ss in rs.scope_spans for s in ss.spans]
    assert (got[0][0], got[0][1], spans) == ("/v1/traces", "application/x-protobuf", ["invoke_agent probe"])
