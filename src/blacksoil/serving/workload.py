"""The simulated agent workload of `blacksoil bench serving`, shaped on the Mooncake conversation trace.

data/mooncake_sessions.json holds multi-turn conversations derived once from the trace (see `derive`).
"""

from __future__ import annotations

import json
import random
import sys
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

ATTRIBUTION = ("derived from kvcache-ai/Mooncake FAST25-release/traces/conversation_trace.jsonl "
               "(Qin et al., 'Mooncake', FAST 2025), Apache-2.0")
_WORDS = (
    "machine", "line", "sensor", "torque", "order", "batch", "spindle", "vibration", "schedule", "robot", "pallet",
    "conveyor", "operator", "shift", "alarm", "quality", "lot", "press", "furnace", "valve", "pump", "motor",
    "bearing", "coolant", "gauge", "report", "limit", "crew",
)


@dataclass(frozen=True)
class Turn:
    """One model call of a session, in scaled tokens and seconds."""

    new_tokens: int
    """Tokens the agent adds to the context before this call (user message / tool result)."""
    output_tokens: int
    """Tokens the model generates."""
    pause_s: float
    """Tool / think time after this call before the next one."""


def derive(trace: Path, limit: int = 300) -> dict[str, Any]:
    """Chain the trace's requests into conversations (a later turn re-sends an earlier prompt's blocks)."""
    rows = [json.loads(line) for line in trace.open()]
    owner: dict[tuple[int, ...], int] = {}
    convs: list[list[int]] = []
    for i, r in enumerate(rows):
        h = tuple(r["hash_ids"])
        conv = next((owner[h[:k]] for k in range(len(h), 1, -1) if h[:k] in owner), None)
        if conv is None:
            conv = len(convs)
            convs.append([])
        convs[conv].append(i)
        for k in range(2, len(h) + 1):
            owner[h[:k]] = conv
    sessions = []
    for c in convs:
        if len(c) < 2:
            continue
        turns, prev = [], 0
        for a, b in zip(c, [*c[1:], None], strict=True):
            ra = rows[a]
            gap = (rows[b]["timestamp"] - ra["timestamp"]) / 1000 if b is not None else 0.0
            turns.append({"new": max(1, ra["input_length"] - prev), "out": ra["output_length"], "gap_s": gap})
            prev = ra["input_length"] + ra["output_length"]
        sessions.append(turns)
    return {"source": ATTRIBUTION, "block_tokens": 512, "shared_prefix_tokens": 512,
            "single_turn_fraction": round(1 - len(sessions) / len(convs), 3), "sessions": sessions[:limit]}


def load_sessions() -> dict[str, Any]:
    """The shipped derived sample."""
    text = resources.files("blacksoil.serving").joinpath("data/mooncake_sessions.json").read_text()
    data: dict[str, Any] = json.loads(text)
    return data


def sample(k: int, seed: int, *, scale: int, max_turns: int, min_turns: int = 3,
           max_context: int = 1800) -> list[list[Turn]]:
    """K sessions drawn from the sample, token counts divided by `scale`, tool pauses shrunk to 0.2–2 s."""
    data = load_sessions()
    rng = random.Random(seed)
    pool = [s for s in data["sessions"] if len(s) >= min_turns] or data["sessions"]
    out: list[list[Turn]] = []
    for s in rng.sample(pool, min(k, len(pool))):
        turns, ctx = [], 0
        for t in s[:max_turns]:
            turn = Turn(max(8, t["new"] // scale), max(4, min(t["out"] // scale, 64)),
                        min(2.0, max(0.2, t["gap_s"] / 120)))
            if ctx + turn.new_tokens + turn.output_tokens > max_context:
                break
            ctx += turn.new_tokens + turn.output_tokens
            turns.append(turn)
        out.append(turns)
    return out


def filler(n_tokens: int, rng: random.Random, tag: str = "") -> str:
    """Text of about `n_tokens` tokens (≈ 1 token per word for these words), optionally led by a unique tag."""
    words = [rng.choice(_WORDS) for _ in range(max(1, n_tokens))]
    return (tag + " " if tag else "") + " ".join(words)


if __name__ == "__main__":  # regenerate: python -m blacksoil.serving.workload ../shared/data/traces/<trace>.jsonl
    out = Path(__file__).parent / "data" / "mooncake_sessions.json"
    out.write_text(json.dumps(derive(Path(sys.argv[1]))))
    print(f"wrote {out}")
