"""The engine worker: a child process running llama.cpp's own HTTP server through xllamacpp.

Started by LlamaCppEngine; prints `READY <url>` once the model is loaded and exits when its stdin closes.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any


def build_params(spec: dict[str, Any]) -> Any:
    """Translate the engine spec (see LlamaCppEngine.spec) into xllamacpp.CommonParams."""
    import xllamacpp as x

    from blacksoil.serving.config import PREFILL_CHUNK_DEFAULT

    p = x.CommonParams()
    p.model.path = spec["model_path"]
    p.n_parallel = int(spec["slots"])
    p.n_ctx = int(spec["ctx"])
    p.cpuparams.n_threads = int(spec["threads"])
    p.cpuparams_batch.n_threads = int(spec["threads"])
    # Chunked prefill: llama.cpp's server fills each step's batch with the running streams' next tokens first and
    # the waiting prompts' tokens after them, up to n_batch; a prompt longer than that continues in the next steps.
    # n_ubatch stays llama.cpp's (512, cut to n_batch when smaller): its compute buffer grows with it.
    p.n_batch = int(spec.get("prefill_chunk", PREFILL_CHUNK_DEFAULT))
    p.port = 0  # llama.cpp binds a free loopback port and reports it in listening_address
    p.endpoint_metrics = True
    p.endpoint_slots = True
    p.cache_prompt = True
    p.cont_batching = True
    p.hostnames = ["127.0.0.1"]  # loopback only, and a key only the gateway knows (set by LlamaCppEngine)
    key = os.environ.get("BLACKSOIL_ENGINE_API_KEY")
    if key:
        p.api_keys = [key]
    if spec.get("lora_path"):
        info = x.CommonAdapterLoraInfo()
        info.path = spec["lora_path"]
        info.scale = float(spec.get("lora_scale", 1.0))
        p.lora_adapters = [info]
    return p


def main(argv: list[str] | None = None) -> None:
    """Load the model, announce the URL on stdout, serve until stdin closes."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("spec", help="engine spec as JSON")
    args = ap.parse_args(argv)
    spec = json.loads(args.spec)
    if spec.get("cores"):
        # Pin before llama.cpp spawns its OpenMP threads so they inherit the mask.
        os.sched_setaffinity(0, set(spec["cores"]))
    import xllamacpp as x

    server = x.Server(build_params(spec))
    print(f"READY {server.listening_address}", flush=True)
    # Parent death closes our stdin: never outlive the gateway.
    sys.stdin.read()
    os._exit(0)  # skip the slow destructor chain; the OS frees the model


if __name__ == "__main__":
    main()
