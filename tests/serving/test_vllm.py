"""vLLM as an engine: the gateway's OpenAI-SDK behaviour, token capture and runtime-LoRA hot swaps on a real vLLM,
the learner trained from vLLM-captured experience with its adapter hot-loaded back, and a hung vLLM restarted.

The vLLM CPU build runs from its own environment (.venv-vllm), which tools/vllm-env.sh creates once (~3 min,
~3.5 GB; a no-op afterwards). The engine is started through the product's own code (`[serving] engine = "vllm"`),
once for the whole module (~60-110 s on 2 shared cores, the HF checkpoint written first in a fresh home).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from blacksoil.config import load_settings
from blacksoil.contracts import AdapterVersion, ExperienceEvent
from blacksoil.errors import ConfigError
from blacksoil.experience import sink as sink_mod
from blacksoil.experience.replay import policy_version_number
from blacksoil.experience.replay_index import ReplayIndex
from blacksoil.experience.sink import StoreSink
from blacksoil.experience.store import ExperienceStore
from blacksoil.learning.adapters import AdapterStore
from blacksoil.learning.basemodel import _cache_dir, ensure_hf_copy, info_from_gguf, load_tokenizer
from blacksoil.learning.bench import LoadStats, _session
from blacksoil.learning.config import LearningConfig
from blacksoil.learning.randomlora import write_random_peft
from blacksoil.learning.runner import InProcessRunner, TrainJob
from blacksoil.learning.source import StoreExperience
from blacksoil.learning.swap import HotSwapper, served_counts
from blacksoil.serving.bench_tools import WEATHER_TOOL
from blacksoil.serving.config import VllmConfig
from blacksoil.serving.launch import GatewayHandle, gateway
from blacksoil.serving.models import default_model_path
from blacksoil.serving.vllm import VllmPool
from blacksoil.serving.vllm_env import hf_checkpoint_dir, vllm_python

from .conftest import small_config

ROOT = Path(__file__).resolve().parents[2]
VLLM_ENV = ROOT / "tools" / "vllm-env.sh"


class ListSink(sink_mod.ListSink):
    """Experience events kept in memory, for checking what the gateway captured."""

    def by_request(self, request_id: str) -> ExperienceEvent:
        return next(e for e in self.events if e.request_id == request_id)


class RecordingStoreSink(StoreSink):
    """The experience store as the gateway's sink (as `blacksoil serve` and the learner run it), also keeping each
    event as the gateway emitted it (before anonymization) to compare with what the store and the learner hold."""

    def __init__(self, store: ExperienceStore) -> None:
        super().__init__(store)
        self.events: list[ExperienceEvent] = []

    def emit(self, event: ExperienceEvent) -> None:
        super().emit(event)
        self.events.append(event)

    def by_request(self, request_id: str) -> ExperienceEvent:
        return next(e for e in self.events if e.request_id == request_id)


@pytest.fixture(scope="session")
def vllm_env() -> Path:
    """The vLLM environment, created by tools/vllm-env.sh when missing; skipped (with the reason) only when the
    install itself is impossible here (no registry, no disk)."""
    res = subprocess.run(["bash", str(VLLM_ENV)], capture_output=True, text=True, timeout=1800, cwd=ROOT)
    if res.returncode != 0:
        tail = " | ".join(res.stderr.strip().splitlines()[-3:])
        pytest.skip(f"tools/vllm-env.sh could not create .venv-vllm here (exit {res.returncode}): {tail}")
    return vllm_python(VllmConfig())


@pytest.fixture(scope="module")
def sink(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RecordingStoreSink]:
    """A store of this module's own (SQLite in a fresh folder), so the learner draws only what these tests sent."""
    store = ExperienceStore.from_settings(tmp_path_factory.mktemp("vllm-store"), load_settings().experience)
    out = RecordingStoreSink(store)
    yield out
    out.close()


@pytest.fixture(scope="module")
def vllm_gw(vllm_env: Path, sink: RecordingStoreSink) -> Iterator[GatewayHandle]:
    """A gateway over one vLLM replica started by blacksoil (2 threads: vLLM is alone on the cores here), probed
    every 2 s so the hung-engine test finds out quickly."""
    cfg = small_config(engine="vllm", threads=2, health_interval_s=2.0)
    with gateway(load_settings(), serving=cfg, sink=sink) as gw:
        yield gw


def _client(gw: GatewayHandle) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.openai_base_url, api_key="unused", max_retries=0, timeout=300)


def _server(gw: GatewayHandle) -> Any:
    assert isinstance(gw.pool, VllmPool)
    return gw.pool.server


# -- no vLLM needed --
def test_missing_environment_names_the_fix(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="make vllm-env"):
        vllm_python(VllmConfig(python=str(tmp_path / "nowhere" / "python")))


def test_vllm_serves_the_checkpoint_the_learner_trains_on(tmp_path: Path) -> None:
    # basemodel now uses vllm_env's formula; this keeps a second one from creeping back in.
    gguf = default_model_path()
    assert _cache_dir(tmp_path, gguf) == hf_checkpoint_dir(tmp_path, gguf)


# -- through a real vLLM --
def test_chat_answers_plain_and_streamed(vllm_gw: GatewayHandle) -> None:
    c = _client(vllm_gw)
    r = c.chat.completions.create(model=vllm_gw.model, messages=[{"role": "user", "content": "Say hello."}],
                                  max_tokens=8)
    assert r.choices[0].message.content and r.usage and r.usage.completion_tokens > 0
    assert r.model == vllm_gw.model
    stream = c.chat.completions.create(model=vllm_gw.model, messages=[{"role": "user", "content": "Count to 3."}],
                                       max_tokens=8, stream=True, stream_options={"include_usage": True})
    chunks = list(stream)
    text = "".join((ch.choices[0].delta.content or "") for ch in chunks if ch.choices)
    assert text and chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0
    # vLLM's own extras (token ids, prompt text) never reach the client.
    assert all("token_ids" not in ch.model_dump_json() for ch in chunks)


def test_tool_call(vllm_gw: GatewayHandle) -> None:
    r = _client(vllm_gw).chat.completions.create(
        model=vllm_gw.model, messages=[{"role": "user", "content": "What is the weather in Berlin?"}],
        tools=[WEATHER_TOOL], tool_choice="required", max_tokens=64, temperature=0)  # type: ignore[list-item]
    calls = r.choices[0].message.tool_calls or []
    assert r.choices[0].finish_reason == "tool_calls" and calls
    assert calls[0].function.name == "get_weather"  # type: ignore[union-attr]
    assert "city" in json.loads(calls[0].function.arguments)  # type: ignore[union-attr]


def test_json_schema(vllm_gw: GatewayHandle) -> None:
    schema = {"type": "object", "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
              "required": ["name", "age"]}
    r = _client(vllm_gw).chat.completions.create(
        model=vllm_gw.model, messages=[{"role": "user", "content": "Invent a person as JSON."}], max_tokens=48,
        temperature=0, response_format={"type": "json_schema", "json_schema": {"name": "p", "schema": schema}})
    obj = json.loads(r.choices[0].message.content or "")
    assert isinstance(obj["name"], str) and isinstance(obj["age"], int)


def test_errors_keep_the_openai_shape(vllm_gw: GatewayHandle) -> None:
    c = _client(vllm_gw)
    with pytest.raises(openai.BadRequestError) as too_long:  # vLLM refuses it: the context is 1024 tokens here
        c.chat.completions.create(model=vllm_gw.model, messages=[{"role": "user", "content": "word " * 1500}],
                                  max_tokens=8)
    assert too_long.value.code == "context_length_exceeded"
    with pytest.raises(openai.NotFoundError):
        c.chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "hi"}], max_tokens=4)


def test_captured_token_ids_equal_the_engines(vllm_gw: GatewayHandle, sink: RecordingStoreSink) -> None:
    messages = [{"role": "user", "content": "Name three colours."}]
    r = _client(vllm_gw).chat.completions.create(model=vllm_gw.model, messages=messages,  # type: ignore[arg-type]
                                                 max_tokens=16, temperature=0)
    event = sink.by_request(r.id)
    assert event.completion_token_ids and event.completion_logprobs
    assert len(event.completion_token_ids) == len(event.completion_logprobs) == r.usage.completion_tokens  # type: ignore[union-attr]
    server = _server(vllm_gw)
    headers = {"Authorization": f"Bearer {server.api_key}"}
    direct = httpx.post(server.root_url + "/v1/chat/completions", headers=headers, timeout=120, json={
        "model": vllm_gw.model, "messages": messages, "max_tokens": 16, "temperature": 0, "return_token_ids": True,
    }).json()
    assert event.completion_token_ids == direct["choices"][0]["token_ids"]
    text = httpx.post(server.root_url + "/detokenize", headers=headers, timeout=60,
                      json={"model": vllm_gw.model, "tokens": event.completion_token_ids}).json()["prompt"]
    assert text.removesuffix("<|im_end|>") == r.choices[0].message.content
    # Streamed answers are captured the same way.
    stream = _client(vllm_gw).chat.completions.create(model=vllm_gw.model, messages=messages,  # type: ignore[arg-type]
                                                      max_tokens=16, temperature=0, stream=True)
    sid = [ch.id for ch in stream][-1]
    assert sink.by_request(sid).completion_token_ids == event.completion_token_ids


def _publish(tmp: Path, gw: GatewayHandle, seed: int) -> AdapterVersion:
    info = info_from_gguf()
    store = AdapterStore(load_settings().home, gw.model)
    return store.publish(write_random_peft(tmp / f"a{seed}", info, b_std=0.002, seed=seed), info)


def test_runtime_lora_swaps_under_load_drop_nothing(vllm_gw: GatewayHandle, tmp_path: Path) -> None:
    stats, stop = LoadStats(), threading.Event()
    threads = [threading.Thread(target=_session, args=(vllm_gw.url, vllm_gw.model, f"s{k}", stop, stats, 8),
                                daemon=True) for k in range(2)]
    for t in threads:
        t.start()
    swapper = HotSwapper(vllm_gw, canary=True, canary_requests=2)
    server = _server(vllm_gw)
    pid, reports = server.proc.pid, []
    for seed in (1, 2, 3):
        av = _publish(tmp_path, vllm_gw, seed)
        reports.append(swapper.swap(av))
        assert swapper.served_versions() == {av.version}
        assert set(server.loras) == {f"{vllm_gw.model}@{av.version}"}  # the old adapter was unloaded
    stop.set()
    for t in threads:
        t.join(timeout=300)
    assert stats.failed == 0, stats.errors
    assert stats.requests >= 3
    assert all(r.ok and not r.rolled_back for r in reports), [r.reason for r in reports]
    assert served_counts(vllm_gw.url)[0].get(reports[-1].to_version, 0) >= 1
    assert server.proc.pid == pid and len(vllm_gw.pool.info()) == 1  # hot-loaded: the same vLLM process
    print(f"\nvLLM runtime-LoRA swaps: visible after {[round(r.visible_s, 2) for r in reports]} s, "
          f"whole swap {[round(r.seconds, 2) for r in reports]} s, {stats.requests} requests, 0 failed")


def test_canary_that_cannot_prove_itself_is_unloaded(vllm_gw: GatewayHandle, tmp_path: Path) -> None:
    swapper = HotSwapper(vllm_gw, canary=True, canary_requests=10_000, canary_timeout_s=1.0)
    before, loaded = swapper.served_versions(), set(_server(vllm_gw).loras)
    t0 = time.monotonic()
    report = swapper.swap(_publish(tmp_path, vllm_gw, 9))
    assert report.rolled_back and not report.ok and "served" in report.reason
    assert swapper.served_versions() == before and set(_server(vllm_gw).loras) == loaded
    assert time.monotonic() - t0 < 60


def test_attached_vllm_gets_the_same_capture_and_is_left_running(vllm_gw: GatewayHandle) -> None:
    server = _server(vllm_gw)
    cfg = small_config(engine="vllm", upstreams=(server.root_url + "/v1",), upstream_api_key=server.api_key)
    sink = ListSink()
    with gateway(load_settings(), serving=cfg, sink=sink) as gw:
        assert gw.model == vllm_gw.model and gw.pool.info()[0].kind == "vllm"
        r = _client(gw).chat.completions.create(model=gw.model, messages=[{"role": "user", "content": "Hi."}],
                                                max_tokens=6)
        assert len(sink.by_request(r.id).completion_token_ids or []) == r.usage.completion_tokens  # type: ignore[union-attr]
    assert server.alive()  # not ours to stop


def test_learner_trains_on_vllm_experience_and_vllm_serves_its_adapter(vllm_gw: GatewayHandle,
                                                                       sink: RecordingStoreSink,
                                                                       tmp_path: Path) -> None:
    """The issue's "done when": experience captured from vLLM → rewards → replay → LoRA steps → publish → runtime
    load into the same vLLM → verified as served, through the learner's own components (loop.Learner's path)."""
    t0 = time.monotonic()
    tenant = f"learner-{uuid.uuid4().hex[:8]}"  # this test's experience only: replay draws by tenant
    client = openai.OpenAI(base_url=vllm_gw.openai_base_url, api_key="unused", max_retries=0, timeout=300,
                           default_headers={"X-Tenant": tenant})
    captured: dict[str, list[int]] = {}
    for i, question in enumerate(("What is 2 + 2?", "Name a fruit.")):
        session = f"{tenant}-s{i}"
        r = client.chat.completions.create(model=vllm_gw.model, messages=[{"role": "user", "content": question}],
                                           max_tokens=12, temperature=0, user=session)
        captured[session] = list(sink.by_request(r.id).completion_token_ids or [])
        assert sink.store.tenant(tenant).add_reward(1.0, "feedback", session_id=session)
    assert all(captured.values())

    settings = load_settings()
    cfg = LearningConfig(batch_size=2, max_seq_len=128, learning_rate=1e-3, torch_threads=1)
    info = ensure_hf_copy(settings.home)
    assert info.hf_dir == _server(vllm_gw).checkpoint  # the learner's base model is the checkpoint vLLM serves
    experience = StoreExperience(sink.store, ReplayIndex(sink.store, settings.experience, seed=0), (), tenant,
                                 load_tokenizer(info), cfg.max_seq_len)
    assert experience.sync() == 2
    drawn = experience.draw(8, cfg.objective, policy_version_number(None))
    trained = {drawn.items[str(s.trajectory)].session_id: list(s.completion_ids) for s in drawn.samples}
    assert trained == captured  # the learner trains on exactly the token ids vLLM produced
    assert drawn.retokenized == 0

    res = InProcessRunner(info).run(TrainJob(drawn.samples, 2, tmp_path / "train", tmp_path / "adapter", cfg))
    assert res.steps == 2
    adapter = AdapterStore(settings.home, vllm_gw.model).publish(tmp_path / "adapter", info,
                                                                 provenance=drawn.provenance())
    _, errors_before = served_counts(vllm_gw.url)
    report = HotSwapper(vllm_gw, canary=True, canary_requests=2).swap(adapter)
    assert report.ok, report.reason
    assert HotSwapper(vllm_gw).served_versions() == {adapter.version}
    assert served_counts(vllm_gw.url)[0].get(adapter.version, 0) >= 1  # the served-version check, from /metrics
    server = _server(vllm_gw)
    vllm_models = httpx.get(server.root_url + "/v1/models", timeout=30,
                            headers={"Authorization": f"Bearer {server.api_key}"}).json()["data"]
    assert f"{vllm_gw.model}@{adapter.version}" in {m["id"] for m in vllm_models}  # hot-loaded into vLLM itself

    after = client.chat.completions.create(model=vllm_gw.model, messages=[{"role": "user", "content": "Hi."}],
                                           max_tokens=6, user=f"{tenant}-after")
    assert after.choices[0].message.content is not None
    assert sink.by_request(after.id).adapter_version == adapter.version
    assert served_counts(vllm_gw.url)[1] == errors_before
    print(f"\nlearner on vLLM: {len(drawn.samples)} samples, losses {[round(x, 3) for x in res.losses]}, "
          f"swap visible after {report.visible_s:.1f} s, whole test {time.monotonic() - t0:.0f} s")


def _wait_for(condition: Any, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True


def _live_members(pgid: int) -> list[int]:
    """Processes of group `pgid` that still run (a killed one may stay a zombie until it is reaped)."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            out.append(int(stat.parent.name))
    return out


def test_hung_vllm_is_killed_and_restarted_with_its_adapters(vllm_gw: GatewayHandle) -> None:
    """Last in the module: it pays one vLLM restart. A stopped API server stays "alive" as a process; only the
    pool's health probe finds it out."""
    server = _server(vllm_gw)
    old, loaded = server.proc, set(server.loras)
    assert old is not None and loaded  # an adapter (the learner's) is loaded: the restart must bring it back
    t0 = time.monotonic()
    os.kill(old.pid, signal.SIGSTOP)
    assert _wait_for(lambda: old.poll() is not None, 60), "the hung vLLM was not killed"
    detected_s = time.monotonic() - t0
    assert _wait_for(lambda: not _live_members(old.pid), 10)  # the engine-core process went too
    assert _wait_for(lambda: server.restarts == 1 and {i.status for i in vllm_gw.pool.info()} == {"ready"}, 300)
    assert server.proc is not None and server.proc.pid != old.pid
    models = httpx.get(server.root_url + "/v1/models", timeout=30,
                       headers={"Authorization": f"Bearer {server.api_key}"}).json()["data"]
    assert loaded <= {m["id"] for m in models}  # the adapters were loaded again into the new vLLM
    r = _client(vllm_gw).chat.completions.create(model=vllm_gw.model, messages=[{"role": "user", "content": "Hi."}],
                                                 max_tokens=4)
    assert r.choices[0].message.content is not None
    print(f"\nhung vLLM: killed {detected_s:.1f} s after SIGSTOP, serving again after "
          f"{time.monotonic() - t0:.0f} s")
