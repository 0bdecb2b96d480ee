"""`blacksoil bench serving --engine vllm`: vLLM behind the gateway, side by side with embedded llama.cpp.

Per engine, on the same prompts: single-stream TTFT / ITL through the gateway and straight to the engine (the
gateway's overhead ratio), tokens/s with 1..N concurrent streams, and how many answers the experience events
carry token ids for. On vLLM also: runtime-LoRA hot swaps under load (no-op adapters, so the answers stay the
base model's), counting failed requests and the time until /metrics shows the new version serving.
"""

from __future__ import annotations

import asyncio
import json
import struct
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from prometheus_client.parser import text_string_to_metric_families
from rich.progress import Progress

from blacksoil.benchlog import Destination, report
from blacksoil.config import Settings
from blacksoil.contracts import AdapterVersion, ExperienceEvent
from blacksoil.serving.bench import _LIMITS, bench_config, pct, single_stream, stream_once
from blacksoil.serving.launch import GatewayHandle, gateway
from blacksoil.serving.vllm import VllmPool

_PROMPT = [{"role": "user", "content": "Write about factories."}]


class _CaptureSink:
    """Counts finished model calls and those whose event carries one token id per completion token."""

    def __init__(self) -> None:
        self.finished = 0
        self.captured = 0

    def emit(self, event: ExperienceEvent) -> None:
        if event.error is not None or event.kind != "model_call":
            return
        self.finished += 1
        n = (event.usage or {}).get("completion_tokens", 0)
        if event.completion_token_ids and len(event.completion_token_ids) == n == len(event.completion_logprobs
                                                                                        or []):
            self.captured += 1

    def close(self) -> None:
        pass


async def concurrent(gw: GatewayHandle, streams: int, tokens: int) -> dict[str, float]:
    """`streams` identical-length streams at once through the gateway: aggregate tokens/s, ITL and TTFT."""
    body = {"model": gw.model, "max_tokens": tokens, "temperature": 0, "ignore_eos": True}
    async with httpx.AsyncClient(timeout=900, limits=_LIMITS) as client:
        t0 = time.perf_counter()
        runs = await asyncio.gather(*(stream_once(client, gw.openai_base_url, body | {
            "messages": [{"role": "user", "content": f"Write about factory {i}."}]}) for i in range(streams)))
        wall = time.perf_counter() - t0
    itl = [x for r in runs for x in r.itl_s]
    return {"tokens_per_s": streams * tokens / wall, "itl_p50_ms": pct(itl, 50) * 1e3,
            "itl_p99_ms": pct(itl, 99) * 1e3, "ttft_p50_ms": pct([r.ttft_s for r in runs], 50) * 1e3}


def write_noop_peft(out: Path, checkpoint: Path, rank: int = 16) -> Path:
    """A peft LoRA folder on q/k/v/o of every layer with B = 0: a real adapter load whose answers equal the base
    model's. Written with numpy in the safetensors layout (8-byte header size, JSON header, raw tensors)."""
    cfg = json.loads((checkpoint / "config.json").read_text())
    hidden, heads = int(cfg["hidden_size"]), int(cfg["num_attention_heads"])
    head_dim = int(cfg.get("head_dim") or hidden // heads)
    kv = int(cfg.get("num_key_value_heads", heads)) * head_dim
    shapes = {"q_proj": (hidden, heads * head_dim), "k_proj": (hidden, kv), "v_proj": (hidden, kv),
              "o_proj": (heads * head_dim, hidden)}
    rng = np.random.default_rng(0)
    tensors: dict[str, np.ndarray] = {}
    for layer in range(int(cfg["num_hidden_layers"])):
        for m, (fan_in, fan_out) in shapes.items():
            key = f"base_model.model.model.layers.{layer}.self_attn.{m}"
            tensors[f"{key}.lora_A.weight"] = (rng.standard_normal((rank, fan_in)) / np.sqrt(rank)).astype(np.float32)
            tensors[f"{key}.lora_B.weight"] = np.zeros((fan_out, rank), dtype=np.float32)
    header: dict[str, Any] = {}
    offset = 0
    for name, t in tensors.items():
        header[name] = {"dtype": "F32", "shape": list(t.shape), "data_offsets": [offset, offset + t.nbytes]}
        offset += t.nbytes
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)  # the format aligns the tensor data to 8 bytes
    out.mkdir(parents=True, exist_ok=True)
    with (out / "adapter_model.safetensors").open("wb") as f:
        f.write(struct.pack("<Q", len(raw)) + raw)
        for t in tensors.values():
            f.write(t.tobytes())
    (out / "adapter_config.json").write_text(json.dumps({
        "peft_type": "LORA", "r": rank, "lora_alpha": 2 * rank, "target_modules": list(shapes), "lora_dropout": 0.0,
        "bias": "none", "task_type": "CAUSAL_LM", "base_model_name_or_path": str(checkpoint)}))
    return out


def _served(url: str, version: str) -> float:
    text = httpx.get(url + "/metrics", timeout=10).text
    return sum(s.value for fam in text_string_to_metric_families(text) for s in fam.samples
               if s.name == "blacksoil:request_success_total" and s.labels.get("adapter_version") == version)


def _load(url: str, model: str, name: str, stop: threading.Event, counts: dict[str, int], lock: threading.Lock,
          errors: list[str]) -> None:
    """One session of short streamed requests back to back; a request without [DONE] or with an error fails."""
    turn = 0
    with httpx.Client(timeout=300) as client:
        while not stop.is_set():
            turn += 1
            body = {"model": model, "stream": True, "max_tokens": 8, "user": name,
                    "messages": [{"role": "user", "content": f"Step {turn}: name a machine check."}]}
            ok, err = False, ""
            try:
                with client.stream("POST", url + "/v1/chat/completions", json=body) as r:
                    for line in r.iter_lines():
                        if line == "data: [DONE]":
                            ok = r.status_code == 200 and not err
                        elif line.startswith("data: ") and '"error"' in line:
                            err = line[:200]
                    err = err or ("" if r.status_code == 200 else f"HTTP {r.status_code}")
            except httpx.HTTPError as e:
                err = f"{type(e).__name__}: {e}"
            with lock:
                counts["requests"] += 1
                if not ok:
                    counts["failed"] += 1
                    errors.append(err or "stream ended without [DONE]")


def swaps_under_load(gw: GatewayHandle, n: int, sessions: int = 2) -> dict[str, Any]:
    """`n` runtime-LoRA hot swaps (load → route new sessions → drain → unload) while `sessions` stream."""
    pool = gw.pool
    assert isinstance(pool, VllmPool) and pool.model is not None
    counts, lock, stop = {"requests": 0, "failed": 0}, threading.Lock(), threading.Event()
    errors: list[str] = []
    threads = [threading.Thread(target=_load, args=(gw.url, gw.model, f"swap-load-{k}", stop, counts, lock, errors),
                                daemon=True) for k in range(sessions)]
    for t in threads:
        t.start()
    visible, whole = [], []
    with tempfile.TemporaryDirectory(prefix="bs-vllm-swap-") as tmp:
        for i in range(n):
            version = f"bench{i + 1}"
            av = AdapterVersion(version=version, base_model=pool.model.name,
                                safetensors_dir=write_noop_peft(Path(tmp) / version, pool.server.checkpoint))
            blue = [r.name for r in pool.info()]
            before, t0 = _served(gw.url, version), time.monotonic()
            green = pool.start_replica(av, accept_new_sessions=False)
            pool.route_new_sessions_to(green.name)
            while _served(gw.url, version) <= before and time.monotonic() - t0 < 120:
                httpx.post(gw.openai_base_url + "/chat/completions", timeout=120, json={
                    "model": gw.model, "max_tokens": 1, "user": f"swap-probe-{time.monotonic_ns()}",
                    "messages": [{"role": "user", "content": "ping"}]})
            visible.append(time.monotonic() - t0)
            for name in blue:
                pool.drain(name)
                pool.stop_replica(name)
            whole.append(time.monotonic() - t0)
            done = counts["requests"]
            while counts["requests"] < done + 2 * sessions and time.monotonic() - t0 < 120:
                time.sleep(0.1)  # the load runs on the new version a while before the next swap
        stop.set()
        for t in threads:
            t.join(timeout=300)
    return {"swaps": n, "swap_failed": counts["failed"], "swap_requests": counts["requests"],
            "swap_visible_s_max": max(visible), "swap_seconds_max": max(whole),
            "swap_loaded": sorted(pool.server.loras), "swap_errors": errors[:3]}


def run_vllm_bench(s: Settings, *, quick: bool, dest: Destination) -> dict[str, Any]:
    """Both engines on the same prompts, then vLLM's runtime-LoRA swaps; one table and one JSON line."""
    n, tokens = (6, 32) if quick else (12, 64)
    levels = (1, 4) if quick else (1, 8, 32)
    per: dict[str, dict[str, Any]] = {}
    t_start = time.perf_counter()
    for engine in ("llamacpp", "vllm"):
        cfg = bench_config(s.serving).model_copy(update={"engine": engine})
        sink = _CaptureSink()
        with Progress() as progress, gateway(s, serving=cfg, sink=sink) as gw:
            eng = gw.pool.replicas["r0"].engine
            single = asyncio.run(single_stream(gw, eng.api_base, n, tokens, progress, eng.auth_headers()))
            out: dict[str, Any] = single | {
                "gateway_overhead_ratio": single["gateway_itl_p99_ms"] / single["direct_itl_p99_ms"]}
            for c in levels:
                out |= {f"c{c}_{k}": v for k, v in asyncio.run(concurrent(gw, c, tokens)).items()}
            out["token_ids_captured_ratio"] = sink.captured / max(1, sink.finished)
            if engine == "vllm":
                out |= swaps_under_load(gw, 3)
            progress.console.log(f"{engine} done at {time.perf_counter() - t_start:.0f} s")
        per[engine] = out
    v, ll = per["vllm"], per["llamacpp"]
    result: dict[str, Any] = {
        "gateway_overhead_ratio": v["gateway_overhead_ratio"], "swap_failed": v["swap_failed"],
        "swap_visible_s_max": v["swap_visible_s_max"], "token_ids_captured_ratio": v["token_ids_captured_ratio"],
        "quick": quick, "wall_s": time.perf_counter() - t_start,
    } | {f"vllm_{k}": _round(x) for k, x in v.items()} | {f"llamacpp_{k}": _round(x) for k, x in ll.items()}
    rows = [
        ["TTFT p50 / p99 (ms), gateway", *(f"{e['gateway_ttft_p50_ms']:.0f} / {e['gateway_ttft_p99_ms']:.0f}"
                                           for e in (v, ll)), ""],
        ["ITL p50 / p99 (ms), gateway", *(f"{e['gateway_itl_p50_ms']:.1f} / {e['gateway_itl_p99_ms']:.1f}"
                                          for e in (v, ll)), ""],
        ["ITL p50 / p99 (ms), direct", *(f"{e['direct_itl_p50_ms']:.1f} / {e['direct_itl_p99_ms']:.1f}"
                                         for e in (v, ll)), "the engine without the gateway"],
        ["gateway overhead (ITL p99 ratio)", f"{v['gateway_overhead_ratio']:.2f}",
         f"{ll['gateway_overhead_ratio']:.2f}", "≤ 1.10"],
        *[[f"{c} stream(s): tokens/s, ITL p99 (ms)", *(f"{e[f'c{c}_tokens_per_s']:.1f}, {e[f'c{c}_itl_p99_ms']:.0f}"
                                                       for e in (v, ll)), ""] for c in levels],
        ["token ids captured (share of answers)", f"{v['token_ids_captured_ratio']:.2f}",
         f"{ll['token_ids_captured_ratio']:.2f}", "= 1.0"],
        ["runtime LoRA swaps under load", f"{v['swaps']} swaps, {v['swap_failed']} failed of "
         f"{v['swap_requests']}, visible ≤ {v['swap_visible_s_max']:.1f} s", "", "failed = 0"],
    ]
    cfg = bench_config(s.serving)
    notes = (f"Both engines: default model, {cfg.slots} slots × {cfg.ctx // cfg.slots} tokens, {cfg.engine_threads()} "
             f"thread(s), {tokens} tokens per answer (ignore_eos), greedy. vLLM: its CPU build, dtype "
             f"{cfg.vllm.dtype}, from .venv-vllm. Swaps load no-op adapters (B = 0) while 2 sessions stream.")
    report("serving: vLLM engine beside llama.cpp", ["measure", "vLLM", "llama.cpp", "note"], rows, result,
           notes=notes, dest=dest, command=f"blacksoil bench serving --engine vllm{' --quick' if quick else ''}")
    return result


def _round(x: Any) -> Any:
    return round(x, 3) if isinstance(x, float) else x
