"""OpenTelemetry traces of model calls, in the GenAI semantic conventions (`chat` / `text_completion` spans).

blacksoil uses the OpenTelemetry *API* only: spans go to whatever tracer provider the process installed. `install`
installs an SDK provider exporting over OTLP/HTTP when `[serving.tracing] otlp_endpoint` is set; otherwise the
API's no-op provider makes every span free. A parent span arrives in the W3C `traceparent` header
(`trace_headers` writes it on the agent side), so an agent's `invoke_agent` span is an ancestor of the gateway's
`chat` span (its parent, or the parent of the HTTP server span FastAPI's telemetry opens), which has two
children: `queue` (waiting for an engine slot) and `engine` (the engine call).

Privacy: prompts, answers and tool arguments enter spans only with `capture_content = true`; by default spans
carry model names, sizes, token counts, finish reasons and timings.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from opentelemetry import propagate, trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

from blacksoil.serving.config import TracingConfig

log = logging.getLogger(__name__)
PROVIDER = "blacksoil"
"""`gen_ai.provider.name` of the gateway's spans."""
_SCOPE = "blacksoil.serving"


def install(config: TracingConfig) -> bool:
    """Install an SDK tracer provider exporting to `config.otlp_endpoint`; False when tracing stays off.

    Once per process: a provider installed before (by the application or `opentelemetry-instrument`) is kept.
    """
    if config.otlp_endpoint is None:
        return False
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    if isinstance(trace.get_tracer_provider(), TracerProvider):
        log.info("a tracer provider is installed already; keeping it")
        return True
    provider = TracerProvider(resource=Resource.create({"service.name": config.service_name}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=config.otlp_endpoint)))
    trace.set_tracer_provider(provider)
    return True


def trace_headers() -> dict[str, str]:
    """The W3C trace context of the current span, as HTTP headers (empty when nothing is traced)."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier


def _ns() -> int:
    return time.time_ns()


@dataclass
class ModelCallTrace:
    """The spans of one model call through the gateway; every method is a no-op once the call ended."""

    span: Span
    capture_content: bool
    queue: Span | None = None
    engine: Span | None = None
    ended: bool = field(default=False)

    def admitted(self, queue_s: float, replica: str, slot: int | None) -> None:
        """The call got an engine slot after `queue_s` in the queue: close `queue`, open `engine`."""
        tracer = trace.get_tracer(_SCOPE)
        ctx = trace.set_span_in_context(self.span)
        now = _ns()
        queue = tracer.start_span("queue", context=ctx, start_time=now - int(queue_s * 1e9))
        queue.set_attribute("blacksoil.queue_s", queue_s)
        queue.end(end_time=now)
        self.engine = tracer.start_span("engine", context=ctx, start_time=now)
        self.engine.set_attribute("blacksoil.replica", replica)
        if slot is not None:
            self.engine.set_attribute("blacksoil.slot", slot)
        self.span.set_attribute("blacksoil.queue_s", queue_s)

    def engine_done(self) -> None:
        if self.engine is not None and self.engine.is_recording():
            self.engine.end()

    def finished(self, response_id: str, model: str, usage: Mapping[str, Any], finish: str | None,
                 ttft_s: float | None, message: Mapping[str, Any]) -> None:
        if self.ended:
            return
        s = self.span
        s.set_attribute("gen_ai.response.id", response_id)
        s.set_attribute("gen_ai.response.model", model)
        s.set_attribute("gen_ai.usage.input_tokens", int(usage.get("prompt_tokens", 0)))
        s.set_attribute("gen_ai.usage.output_tokens", int(usage.get("completion_tokens", 0)))
        s.set_attribute("gen_ai.response.finish_reasons", [finish or "unknown"])
        if ttft_s is not None:
            s.set_attribute("gen_ai.response.time_to_first_chunk", ttft_s)
        if self.capture_content:
            s.set_attribute("gen_ai.output.messages", json.dumps([dict(message)], ensure_ascii=False))
        self._end()

    def failed(self, error_type: str, message: str) -> None:
        if self.ended:
            return
        self.span.set_attribute("error.type", error_type)
        self.span.set_status(Status(StatusCode.ERROR, message[:200]))
        self._end()

    def _end(self) -> None:
        self.engine_done()
        self.span.end()
        self.ended = True


class GatewayTracing:
    """Starts the span of each model call the gateway serves."""

    def __init__(self, config: TracingConfig) -> None:
        self.config = config

    def start(self, kind: str, model: str, request: Mapping[str, Any], headers: Mapping[str, str]) -> ModelCallTrace:
        """Open the call's span (child of the caller's `traceparent`, if it sent one)."""
        operation = "chat" if kind == "chat" else "text_completion"
        if trace.get_current_span().get_span_context().is_valid:
            # FastAPI's own telemetry (or an ASGI instrumentation) opened the HTTP server span from traceparent
            parent, span_kind = None, SpanKind.INTERNAL
        else:
            parent, span_kind = propagate.extract(dict(headers)), SpanKind.SERVER
        span = trace.get_tracer(_SCOPE).start_span(f"{operation} {model}", context=parent, kind=span_kind)
        span.set_attribute("gen_ai.operation.name", operation)
        span.set_attribute("gen_ai.provider.name", PROVIDER)
        span.set_attribute("gen_ai.request.model", str(request.get("model") or model))
        if request.get("max_tokens") is not None or request.get("max_completion_tokens") is not None:
            span.set_attribute("gen_ai.request.max_tokens",
                               int(request.get("max_completion_tokens") or request.get("max_tokens") or 0))
        if isinstance(request.get("temperature"), int | float):
            span.set_attribute("gen_ai.request.temperature", float(request["temperature"]))
        span.set_attribute("gen_ai.request.stream", bool(request.get("stream")))
        if request.get("tools"):
            span.set_attribute("blacksoil.request.tools", len(request["tools"]))
        if self.config.capture_content:
            shown = request.get("messages") or [{"role": "user", "content": request.get("prompt")}]
            span.set_attribute("gen_ai.input.messages", json.dumps(shown, ensure_ascii=False, default=str))
        return ModelCallTrace(span, self.config.capture_content)
