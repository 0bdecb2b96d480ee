"""The engine a serving pod runs: llama.cpp's HTTP server (xllamacpp) on the pod's address and port.

`python -m blacksoil.scheduling.backends.k8s_engine` is the default command the operator gives ServingDeployment
pods. The operator registers the pod with the gateway once it is Ready (k8s_gateway.py); the gateway then reaches
it like its own engine (slot affinity, token capture, stream cancellation). The API key comes from the
deployment's Secret, which only the operator and the gateway read: clients go through the gateway.

Environment (set by the operator from the ServingDeployment spec):
  BLACKSOIL_ENGINE_API_KEY  required: the key the gateway sends (the engine refuses to start without one)
  BLACKSOIL_ENGINE_PORT     TCP port (default 8080); BLACKSOIL_ENGINE_HOST address (default 0.0.0.0)
  BLACKSOIL_ENGINE_SLOTS    parallel sequences (default 4); BLACKSOIL_ENGINE_CTX context of all slots (default
                            1024 per slot); BLACKSOIL_ENGINE_THREADS decode threads (default: the CPUs it may use)
  BLACKSOIL_ENGINE_PREFILL_CHUNK  most tokens one engine step processes (llama.cpp n_batch, 16 or more; default
                            serving.prefill_chunk's)
  BLACKSOIL_ENGINE_MODEL    GGUF path (default: the model shipped in the image)
"""

from __future__ import annotations

import os
import signal
from collections.abc import Mapping
from typing import Any

from blacksoil.errors import ConfigError
from blacksoil.serving.config import MIN_PREFILL_CHUNK, PREFILL_CHUNK_DEFAULT

DEFAULT_PORT = 8080


def _int(env: Mapping[str, str], name: str, default: int, minimum: int = 1, fix: str = "") -> int:
    """`env[name]` as an integer of at least `minimum` (`default` when unset); `fix` says where to change it."""
    raw = env.get(name, "")
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not an integer; set it to a positive whole number") from None
    if value < minimum:
        raise ConfigError(f"{name}={value} must be at least {minimum}{fix}")
    return value


def engine_params(env: Mapping[str, str]) -> Any:
    """xllamacpp.CommonParams for the pod's engine, from its environment."""
    from blacksoil.serving.models import default_model_path
    from blacksoil.serving.worker import build_params

    key = env.get("BLACKSOIL_ENGINE_API_KEY", "")
    if not key:
        raise ConfigError("BLACKSOIL_ENGINE_API_KEY is not set; an engine reachable on the pod network needs the key "
                          "the operator keeps in the deployment's Secret (the operator's pod spec sets it)")
    slots = _int(env, "BLACKSOIL_ENGINE_SLOTS", 4)
    chunk = _int(env, "BLACKSOIL_ENGINE_PREFILL_CHUNK", PREFILL_CHUNK_DEFAULT, MIN_PREFILL_CHUNK,
                 " (the ServingDeployment's prefillChunk)")
    spec = {"model_path": env.get("BLACKSOIL_ENGINE_MODEL") or str(default_model_path()), "slots": slots,
            "ctx": _int(env, "BLACKSOIL_ENGINE_CTX", 1024 * slots),
            "threads": _int(env, "BLACKSOIL_ENGINE_THREADS", len(os.sched_getaffinity(0))),
            "prefill_chunk": chunk}
    params = build_params(spec)
    # The gateway runs in another pod: listen on the pod's address (not loopback), on the port the spec names.
    params.hostnames = [env.get("BLACKSOIL_ENGINE_HOST") or "0.0.0.0"]
    params.port = _int(env, "BLACKSOIL_ENGINE_PORT", DEFAULT_PORT)
    params.api_keys = [key]
    return params


def main() -> None:
    """Load the model, announce the address, serve until SIGTERM (the pod stops) or SIGINT."""
    import xllamacpp as x

    signals = {signal.SIGTERM, signal.SIGINT}
    signal.pthread_sigmask(signal.SIG_BLOCK, signals)  # llama.cpp's threads inherit the mask; this one waits
    server = x.Server(engine_params(os.environ))
    print(f"READY {server.listening_address}", flush=True)
    signal.sigwait(signals)
    os._exit(0)  # skip the slow destructor chain; the OS frees the model


if __name__ == "__main__":
    main()
