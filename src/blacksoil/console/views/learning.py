"""Learning view: rounds, the AgentScore learning curve per suite (dev, and test where measured), candidate
versions with their gate verdicts, and promotions / rejections / rollbacks on a timeline.
"""

from __future__ import annotations

import time
from typing import Any

from blacksoil.console.context import ConsoleContext, card, chart, table

_COLORS = ["#7fc98f", "#e0b35a", "#6aa7e0", "#e06a5a", "#b58fe0", "#5ad0e0"]


def collect(ctx: ConsoleContext, tenant: str) -> dict[str, Any]:
    from blacksoil.learning import api

    home = ctx.settings.home
    model = ctx.pool.served_name if ctx.pool is not None else "smollm2-135m-instruct"
    store = api.AdapterStore(home, model)
    versions = store.list()
    rounds = api.read_rounds(home)
    suites = sorted({k for r in rounds for k in (r.get("dev") or {})})
    labels = [f"round {r['round']}" for r in rounds]
    curve = [{"label": f"{s} (dev)", "data": [(r.get("dev") or {}).get(s) for r in rounds],
              "borderColor": _COLORS[i % len(_COLORS)], "spanGaps": True} for i, s in enumerate(suites)]
    test_suites = sorted({k for r in rounds for k in (r.get("test") or {})})
    curve += [{"label": f"{s} (test)", "data": [(r.get("test") or {}).get(s) for r in rounds], "borderDash": [6, 4],
               "borderColor": _COLORS[(i + len(suites)) % len(_COLORS)], "spanGaps": True}
              for i, s in enumerate(test_suites)]
    promoted = store.promoted()
    served = sorted({r.adapter_version for r in ctx.pool.info()}) if ctx.pool is not None else []
    return {
        "cards": [card("rounds", "learning rounds", len(rounds)), card("versions", "adapter versions", len(versions)),
                  card("promoted", "promoted version", promoted.version if promoted else "base"),
                  card("served", "served now", ", ".join(served) or "–")],
        "charts": [chart("curve", "AgentScore completion per round (served adapter in the table below)", "line",
                         labels, curve, y_label="completion rate")],
        "tables": [
            table("rounds", "rounds", ["round", "attempts", "successes", "samples", "steps", "loss", "candidate",
                                       "gate", "served after"],
                  [[r["round"], r.get("attempts"), r.get("successes"), r.get("samples"), r.get("steps"),
                    r.get("loss"), r.get("candidate"), r.get("decision"), r.get("served")] for r in rounds],
                  "no learning round yet: `blacksoil learn --rounds 1`"),
            table("versions", "adapter versions", ["version", "parent", "status", "created", "metrics"],
                  [[v.version, v.parent or "base", v.status, time.strftime("%H:%M:%S", time.localtime(v.created_at)),
                    ", ".join(f"{k}={val:.3g}" for k, val in sorted(v.metrics.items()))] for v in reversed(versions)]),
            table("timeline", "promotions, rejections and rollbacks", ["time", "version", "status"],
                  [[time.strftime("%H:%M:%S", time.localtime(e["at"])), e["version"], e["status"]]
                   for e in reversed(store.timeline())]),
        ],
    }
