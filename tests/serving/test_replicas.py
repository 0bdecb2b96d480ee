"""Several replicas, blue/green swap to a LoRA adapter without a cut stream, and an openai_upstream engine."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import httpx
import numpy as np
import openai
import pytest

from blacksoil.config import load_settings
from blacksoil.contracts import AdapterVersion
from blacksoil.experience.sink import ListSink
from blacksoil.serving.engine import LlamaCppEngine
from blacksoil.serving.launch import gateway
from blacksoil.serving.models import DEFAULT_MODEL_NAME, default_model_path

from .conftest import small_config


def write_lora(path: Path, rank: int = 4, layers: int = 30, std: float = 0.5) -> Path:
    """A small random LoRA on attn_q of SmolLM2-135M (n_embd 576) in llama.cpp's GGUF adapter format."""
    gguf = pytest.importorskip("gguf")
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_string("general.type", "adapter")
    w.add_string("adapter.type", "lora")
    w.add_float32("adapter.lora.alpha", float(rank))
    rng = np.random.default_rng(0)
    for i in range(layers):
        w.add_tensor(f"blk.{i}.attn_q.weight.lora_a", (rng.standard_normal((rank, 576)) * std).astype(np.float32))
        w.add_tensor(f"blk.{i}.attn_q.weight.lora_b", (rng.standard_normal((576, rank)) * std).astype(np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def _stream(url: str, body: dict[str, object], out: list[str]) -> None:
    with httpx.stream("POST", url + "/v1/chat/completions", json=body | {"stream": True}, timeout=120) as r:
        out.extend(line for line in r.iter_lines() if line.startswith("data: "))


def test_replicas_and_blue_green_swap(tmp_path: Path) -> None:
    sink = ListSink()
    with gateway(load_settings(), serving=small_config(replicas=2, slots=2, concurrency=1, ctx=2048),
                 sink=sink) as gw:
        client = openai.OpenAI(base_url=gw.openai_base_url, api_key="x", max_retries=0, timeout=120)
        for s in ("alice", "bob"):
            client.chat.completions.create(model=gw.model, messages=[{"role": "user", "content": "Hi"}],
                                           max_tokens=2, user=s)
        homes = gw.pool.admission.affinity
        assert {homes["alice"][0], homes["bob"][0]} == {"r0", "r1"}  # new sessions spread over replicas

        # A stream in flight on the blue replicas while green (with an adapter) starts and takes over.
        lines: list[str] = []
        body = {"model": gw.model, "messages": [{"role": "user", "content": "Tell a story."}], "max_tokens": 160,
                "user": "alice", "ignore_eos": True}  # llama.cpp extension, passed through: a long stream
        t = threading.Thread(target=_stream, args=(gw.url, body, lines))
        t.start()
        adapter = AdapterVersion("v1", DEFAULT_MODEL_NAME, gguf_path=write_lora(tmp_path / "v1.gguf"))
        green = gw.pool.start_replica(adapter, accept_new_sessions=False)
        assert green.status == "ready" and green.adapter_version == "v1"
        gw.pool.route_new_sessions_to(green.name)
        assert gw.pool.inflight("r0") + gw.pool.inflight("r1") == 1  # the drain below really waits for it
        for blue in ("r0", "r1"):
            gw.pool.drain(blue)
            gw.pool.stop_replica(blue)
        t.join(timeout=120)
        assert lines[-1] == "data: [DONE]" and not any('"error"' in x for x in lines)  # not cut by the swap
        assert sum(1 for x in lines if '"content"' in x) > 10

        r = client.chat.completions.create(model=gw.model, messages=[{"role": "user", "content": "Hi"}],
                                           max_tokens=2, user="alice")  # returning session moves to green
        assert r.choices[0].message.content is not None
        assert [i.adapter_version for i in gw.pool.info()] == ["v1"]
        assert client.models.list().data[0].model_extra["adapter_versions"] == ["v1"]  # type: ignore[index]
        assert 'adapter_version="v1"' in httpx.get(gw.url + "/metrics").text
        assert sink.events[-1].adapter_version == "v1" and sink.events[-1].session_id == "alice"


def test_openai_upstream_against_a_second_real_engine() -> None:
    engine = LlamaCppEngine(default_model_path(), slots=2, ctx=2048, threads=1)
    engine.start()
    try:
        with gateway(load_settings(), serving=small_config(upstreams=(engine.api_base,),
                                                                 upstream_api_key=engine.api_key)) as gw:
            health = httpx.get(gw.url + "/health").json()
            assert health["replicas"][0]["kind"] == "openai_upstream"
            client = openai.OpenAI(base_url=gw.openai_base_url, api_key="x", max_retries=0, timeout=120)
            tool = {"type": "function", "function": {"name": "lookup", "parameters": {
                "type": "object", "properties": {"query": {"type": "string"}}}}}
            r = client.chat.completions.create(model=gw.model, tools=[tool], tool_choice="required", max_tokens=64,
                                               temperature=0,
                                               messages=[{"role": "user", "content": "Look up the Eiffel tower"}])
            call = (r.choices[0].message.tool_calls or [])[0]
            assert call.type == "function" and "query" in json.loads(call.function.arguments)
            chunks = list(client.chat.completions.create(model=gw.model, max_tokens=6, stream=True,
                                                         messages=[{"role": "user", "content": "Hi"}]))
            assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    finally:
        engine.stop()
