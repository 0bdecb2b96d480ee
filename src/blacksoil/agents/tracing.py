"""OpenTelemetry spans of the agent runtime in the GenAI semantic conventions: `invoke_agent`, `execute_tool`.

The model calls between them are traced by the gateway: `ModelClient` sends the W3C `traceparent` of the current
span, so the gateway's `chat` spans hang under `invoke_agent` (serving/tracing.py). Spans carry names, ids, counts
and outcomes, never the task, answers or tool arguments. Off (the API's no-op tracer) unless the process installed
a tracer provider (`serving.tracing.install`).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

_SCOPE = "blacksoil.agents"


@contextmanager
def invoke_agent(agent: str, run_id: str, model: str | None) -> Iterator[Span]:
    """The span of one drive of a run (a resume is another span with the same `gen_ai.conversation.id`)."""
    with trace.get_tracer(_SCOPE).start_as_current_span(f"invoke_agent {agent}", kind=SpanKind.INTERNAL) as span:
        span.set_attribute("gen_ai.operation.name", "invoke_agent")
        span.set_attribute("gen_ai.provider.name", "blacksoil")
        span.set_attribute("gen_ai.agent.name", agent)
        span.set_attribute("gen_ai.conversation.id", run_id)
        if model:
            span.set_attribute("gen_ai.request.model", model)
        yield span


def run_ended(span: Span, status: str, reason: str | None, steps: int, tokens: int) -> None:
    """Record how the drive ended on its span."""
    span.set_attribute("blacksoil.run.status", status)
    span.set_attribute("blacksoil.run.reason", reason or "")
    span.set_attribute("blacksoil.run.steps", steps)
    span.set_attribute("blacksoil.run.tokens", tokens)
    if status == "failed":
        span.set_status(Status(StatusCode.ERROR, reason or "failed"))


@contextmanager
def execute_tool(name: str, call_id: str, description: str = "") -> Iterator[Span]:
    """The span of one tool execution (policy checks and approvals happen before it, and stay out of it)."""
    with trace.get_tracer(_SCOPE).start_as_current_span(f"execute_tool {name}", kind=SpanKind.INTERNAL) as span:
        span.set_attribute("gen_ai.operation.name", "execute_tool")
        span.set_attribute("gen_ai.tool.name", name)
        span.set_attribute("gen_ai.tool.call.id", call_id)
        span.set_attribute("gen_ai.tool.type", "function")
        if description:
            span.set_attribute("gen_ai.tool.description", description[:200])
        yield span


def tool_ended(span: Span, status: str) -> None:
    if status != "completed":
        span.set_attribute("error.type", "tool_error")
        span.set_status(Status(StatusCode.ERROR, status))
