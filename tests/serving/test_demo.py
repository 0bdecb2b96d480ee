"""`blacksoil demo`, the main job for now: a chat turn and a tool call fed back, through the openai SDK."""

from __future__ import annotations

from blacksoil.config import settings
from blacksoil.serving.demo import metrics_summary, run_demo


def test_demo_runs_the_exchange() -> None:
    out = run_demo(settings(), max_tokens=32)
    assert out["answer"]
    assert out["tool_call"] == "get_weather" and isinstance(out["arguments"].get("city"), str)
    assert out["final"] and not out["final"].lstrip().startswith("{")  # a plain answer after the tool result
    assert out["metrics"]["requests"] == 3 and out["metrics"]["generation_tokens"] > 0


def test_metrics_summary_parses_prometheus_text() -> None:
    text = "\n".join([
        'blacksoil:request_success_total{finished_reason="stop"} 2.0',
        'blacksoil:e2e_request_latency_seconds_sum{model_name="m"} 3.0',
        'blacksoil:e2e_request_latency_seconds_count{model_name="m"} 2.0',
    ])
    s = metrics_summary(text)
    assert s["requests"] == 2 and s["mean_e2e_request_latency_seconds"] == 1.5
