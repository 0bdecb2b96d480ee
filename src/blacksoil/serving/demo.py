"""`blacksoil demo`: the main job for now — a scripted agent exchange through the gateway with the openai SDK.

Starts the gateway with the default model, runs one chat turn and one tool call whose result is fed back,
prints the answers and a metrics summary, and stops everything it started.
"""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
from rich.console import Console
from rich.table import Table

from blacksoil.config import Settings
from blacksoil.serving.launch import gateway

WEATHER_TOOL: Any = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather of a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string", "description": "City name"}}},
    },
}


def get_weather(city: str) -> dict[str, Any]:
    """The demo's tool: a fixed, local answer (no network)."""
    return {"city": city, "temperature_c": 18, "sky": "cloudy"}


def run_demo(s: Settings, max_tokens: int = 40) -> dict[str, Any]:
    """Run the exchange; returns what it printed (for tests)."""
    from openai import OpenAI

    console = Console()
    t0 = time.perf_counter()
    with console.status("starting the gateway and the embedded engine…"), gateway(s) as gw:
        console.print(f"gateway up at {gw.openai_base_url} serving [bold]{gw.model}[/] "
                      f"in {time.perf_counter() - t0:.1f} s")
        client = OpenAI(base_url=gw.openai_base_url, api_key="not-needed", max_retries=0)
        headers = {"X-Session-Id": "demo-session"}
        question = "In one sentence: what is a token factory?"
        chat = client.chat.completions.create(model=gw.model, messages=[{"role": "user", "content": question}],
                                              max_tokens=max_tokens, temperature=0, extra_headers=headers)
        answer = chat.choices[0].message.content or ""
        console.print(f"[bold]user:[/] {question}\n[bold]assistant:[/] {answer}")

        messages: list[Any] = [{"role": "user", "content": "What is the weather in Paris?"}]
        first = client.chat.completions.create(model=gw.model, messages=messages, tools=[WEATHER_TOOL],
                                               tool_choice="required", max_tokens=max_tokens, temperature=0,
                                               extra_headers=headers)
        calls = first.choices[0].message.tool_calls or []
        call = calls[0] if calls else None
        if call is None or call.type != "function":
            raise RuntimeError(f"the model returned no tool call: {first.choices[0].message}")
        args = json.loads(call.function.arguments)
        result = get_weather(str(args.get("city", "Paris")))
        console.print(f"[bold]user:[/] {messages[0]['content']}\n[bold]tool call:[/] "
                      f"{call.function.name}({call.function.arguments}) → {json.dumps(result)}")
        messages += [first.choices[0].message.model_dump(exclude_none=True),
                     {"role": "tool", "tool_call_id": call.id, "content": json.dumps(result)}]
        final = client.chat.completions.create(model=gw.model, messages=messages, tools=[WEATHER_TOOL],
                                               tool_choice="none", max_tokens=max_tokens, temperature=0,
                                               extra_headers=headers)
        final_text = final.choices[0].message.content or ""
        console.print(f"[bold]assistant:[/] {final_text}")
        summary = metrics_summary(httpx.get(gw.url + "/metrics").text)
    table = Table("metric", "value", title="gateway metrics")
    for k, v in summary.items():
        table.add_row(k, f"{v:.3f}" if isinstance(v, float) else str(v))
    console.print(table)
    console.print(f"demo finished in {time.perf_counter() - t0:.1f} s; everything it started is stopped")
    return {"answer": answer, "tool_call": call.function.name, "arguments": args, "final": final_text,
            "metrics": summary}


def metrics_summary(text: str) -> dict[str, float]:
    """Totals and means from the Prometheus text (requests, tokens, mean TTFT / e2e / ITL, cache hits)."""
    sums: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("#") or not line.startswith("blacksoil:"):
            continue
        name, _, value = line.rpartition(" ")
        base = name.split("{", 1)[0].removeprefix("blacksoil:")
        sums[base] = sums.get(base, 0.0) + float(value)
    out: dict[str, float] = {
        "requests": sums.get("request_success_total", 0.0),
        "prompt_tokens": sums.get("prompt_tokens_total", 0.0),
        "generation_tokens": sums.get("generation_tokens_total", 0.0),
        "prefix_cache_hit_tokens": sums.get("prefix_cache_hits_total", 0.0),
    }
    for h in ("time_to_first_token_seconds", "inter_token_latency_seconds", "e2e_request_latency_seconds",
              "request_queue_time_seconds"):
        n = sums.get(h + "_count", 0.0)
        out["mean_" + h] = sums.get(h + "_sum", 0.0) / n if n else 0.0
    return out
