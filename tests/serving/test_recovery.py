"""An engine killed mid-stream: the stream ends with an error event, the engine restarts, later requests succeed."""

from __future__ import annotations

import json
import os
import signal
import time

import httpx
import openai

from blacksoil.config import load_settings
from blacksoil.serving.engine import LlamaCppEngine
from blacksoil.serving.launch import gateway

from .conftest import small_config


def test_engine_killed_mid_stream() -> None:
    with gateway(load_settings(), serving=small_config(slots=2, concurrency=1, ctx=2048)) as gw:
        engine = gw.pool.replicas["r0"].engine
        assert isinstance(engine, LlamaCppEngine) and engine.pid
        body = {"model": gw.model, "messages": [{"role": "user", "content": "Tell me a long story."}],
                "max_tokens": 400, "stream": True}
        events: list[dict[str, object]] = []
        with httpx.stream("POST", gw.url + "/v1/chat/completions", json=body, timeout=120) as r:
            assert r.status_code == 200
            for line in r.iter_lines():
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                events.append(json.loads(line[6:]))
                if len(events) == 3:
                    os.kill(engine.pid, signal.SIGKILL)
        assert "error" in events[-1], events[-1]
        assert events[-1]["error"]["type"] == "server_unavailable"  # type: ignore[index]
        assert all("error" not in e for e in events[:-1])
        client = openai.OpenAI(base_url=gw.openai_base_url, api_key="x", max_retries=0, timeout=120)
        t0 = time.monotonic()
        r2 = client.chat.completions.create(model=gw.model, messages=[{"role": "user", "content": "Hi"}],
                                            max_tokens=4)
        assert r2.choices[0].message.content is not None
        assert engine.restarts == 1 and engine.alive()
        assert time.monotonic() - t0 < 60
        health = httpx.get(gw.url + "/health").json()
        assert health["replicas"][0]["status"] == "ready"


def test_hung_engine_is_restarted_and_requests_get_a_503() -> None:
    """A SIGSTOPped engine used to stay "ready" while requests waited request_timeout_s (600 s)."""
    cfg = small_config(health_interval_s=0.5, health_timeout_s=1.0, health_failures=2)
    with gateway(load_settings(), serving=cfg) as gw:
        engine = gw.pool.replicas["r0"].engine
        assert isinstance(engine, LlamaCppEngine) and engine.pid
        os.kill(engine.pid, signal.SIGSTOP)
        t0 = time.monotonic()
        r = httpx.post(gw.url + "/v1/chat/completions", timeout=60,
                       json={"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4})
        assert (r.status_code, time.monotonic() - t0 < 20) == (503, True), r.text
        deadline = time.monotonic() + 60
        while httpx.get(gw.url + "/health").status_code != 200 and time.monotonic() < deadline:
            time.sleep(0.2)
        ok = httpx.post(gw.url + "/v1/chat/completions", timeout=60,
                        json={"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2})
        assert ok.status_code == 200 and engine.restarts == 1


def test_a_replica_that_refuses_connections_is_routed_around() -> None:
    # A remote replica whose server went away before its owner told the pool (a stopped node, before Ray's death
    # notice): it still looks alive, but connections are refused. Nothing reached it, so requests go elsewhere.
    with gateway(load_settings(), serving=small_config(slots=2, concurrency=2, ctx=2048)) as gw:
        doomed = gw.pool.start_replica()
        engine = doomed.engine
        assert isinstance(engine, LlamaCppEngine) and engine.api_key
        remote = gw.pool.add_remote(engine.api_base, engine.api_key, slots=2)
        gw.pool.stop_replica(doomed.name)  # the server behind `remote` is gone; the pool still lists it
        answers = []
        for i in range(4):  # new sessions: least-loaded placement sends some of them to `remote`
            body = {"model": gw.model, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2,
                    "user": f"s{i}", "stream": i % 2 == 1}
            r = httpx.post(gw.url + "/v1/chat/completions", json=body, timeout=120)
            answers.append((r.status_code, '"error"' in r.text))  # a stream reports a failure in an event
        assert answers == [(200, False)] * 4
        assert not gw.pool.admission.replicas[remote.name].healthy  # out of rotation, not tried again
