"""vLLM replicas on Ray nodes that offer GPUs: which engine a replica actor runs, and vLLM in and behind it.

A replica actor that Ray gave a GPU runs vLLM's OpenAI server as its child process (serving/vllm.py's VllmServer,
from that node's vLLM environment: serving.vllm.python or .venv-vllm), serving the HF checkpoint written once
from the model's GGUF into the node's home. Elsewhere it runs the embedded llama.cpp (ray_serving.py). The gateway
reaches a vLLM actor as it reaches an attached vLLM (token capture, runtime LoRA loading of the adapter's peft
folder), and the pool's stop ends the actor, as for llama.cpp actors.

Not run on a GPU here: the CPU tests give a Ray node a `GPU` count, which picks this path and shows its errors.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

from blacksoil.contracts import AdapterVersion
from blacksoil.serving.config import ServingConfig
from blacksoil.serving.engine import EngineUnavailable
from blacksoil.serving.vllm import AttachedVllmServer, VllmEngine, VllmServer

log = logging.getLogger(__name__)

EngineKind = Literal["llamacpp", "vllm"]

# The server dies with the actor: Linux sends it SIGTERM when its parent (the actor's process) exits, so a killed
# actor or a stopped Ray node leaves no vLLM holding the GPU (vLLM stops its engine core on SIGTERM).
_PDEATHSIG = ("import ctypes, os, signal, sys; ctypes.CDLL(None).prctl(1, signal.SIGTERM); "
              "os.execv(sys.argv[1], sys.argv[1:])")


def engine_for(gpu_ids: Sequence[Any]) -> EngineKind:
    """The engine of a replica actor given `gpu_ids` by Ray (ray.get_gpu_ids()): vLLM with a GPU, else llama.cpp."""
    return "vllm" if len(gpu_ids) > 0 else "llamacpp"


class NodeVllmServer(VllmServer):
    """VllmServer reachable from other nodes (it listens on every address of its node, guarded by its API key)."""

    def command(self, port: int) -> list[str]:
        cmd = super().command(port)
        cmd[cmd.index("--host") + 1] = "0.0.0.0"  # the gateway is on another node; VLLM_API_KEY guards it
        return [str(self.python), "-c", _PDEATHSIG, *cmd]


def start_vllm(model_path: str | None, served_name: str, cfg: ServingConfig, home: Path) -> VllmServer:
    """vLLM serving `model_path` (None = the shipped default GGUF) as `served_name`, started in this actor's node;
    ConfigError naming the fix when the node has no vLLM environment."""
    from blacksoil.serving.models import default_model_path
    from blacksoil.serving.vllm_env import ensure_hf_checkpoint, vllm_python

    python = vllm_python(cfg.vllm)
    gguf = Path(model_path) if model_path else default_model_path()
    checkpoint = ensure_hf_checkpoint(home, gguf, python)
    log_path = home / "logs" / f"vllm-ray-{os.getpid()}.log"
    server = NodeVllmServer(python, checkpoint, served_name, cfg, log_path=log_path)
    server.start()
    return server


class RemoteVllmEngine(VllmEngine):
    """A vLLM that a replica actor runs: its base model or one runtime-loaded adapter; its owner restarts nothing
    here and replaces the actor when it dies."""

    kind = "vllm_remote"

    def __init__(self, api_base: str, api_key: str, served_name: str, cfg: ServingConfig, *,
                 adapter: AdapterVersion | None = None, on_stop: Callable[[], None] | None = None) -> None:
        """`on_stop`: what stop() calls once, so the owner ends the actor."""
        server = AttachedVllmServer(api_base, api_key, cfg)
        server.served_name = served_name
        super().__init__(server, adapter=adapter, capture_tokens=cfg.capture_tokens, timeout_s=cfg.request_timeout_s)
        self._gone = False
        self._on_stop = on_stop

    def stop(self) -> None:
        if not self._gone:
            super().stop()  # unload the adapter (a live server only)
        self._clients.clear()
        on_stop, self._on_stop = self._on_stop, None
        if on_stop is not None:
            on_stop()

    def alive(self) -> bool:
        return not self._gone

    def kill(self) -> None:
        self._gone = True

    def restart(self) -> None:
        raise EngineUnavailable(f"vLLM at {self.api_base} is restarted by its Ray actor's owner, not by the gateway")
