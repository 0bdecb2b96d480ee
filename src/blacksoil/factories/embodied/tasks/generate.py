"""Writes embodied.yaml deterministically: 10 templates x 5 tasks of the MuJoCo work cell, train/dev/test splits.

Each task's `initial.overrides` holds the parts, push targets, goal specs (goals.py) and, for recovery tasks, the
injected disturbance; its checker is one predicate per goal verdict (`goal.<name> eq ok`); its oracle is the scripted
tool calls. `python -m blacksoil.factories.embodied.tasks.generate` rewrites the file.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from blacksoil.factories.embodied import goals
from blacksoil.factories.embodied.scene import PICK_WINDOW

HERE = Path(__file__).parent
Task = dict[str, Any]
LOOK = ["get_scene"]
HAND = ["pick", "place", "move_to", "open_gripper", "close_gripper", "home", "stop"]
#: Table slots loose parts start in (clear of fixtures, bins, the tray and the person).
SLOTS = [(1.42, 0.40), (1.42, 0.52), (1.42, 0.64), (1.42, 0.76), (1.42, 0.88), (1.30, 0.74)]
COLOURS = ["red", "green", "blue"]


def _split(i: int) -> str:
    return ("train", "train", "train", "dev", "test")[i % 5]


def _part(pid: str, colour: str, size: str, xy: tuple[float, float], **kw: Any) -> dict[str, Any]:
    return {"id": pid, "colour": colour, "size": size, "x": xy[0], "y": xy[1], **kw}


def _moves(pairs: list[tuple[str, str]]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for pid, target in pairs:
        out += [{"tool": "pick", "args": {"obj": pid}}, {"tool": "place", "args": {"target": target}}]
    return out


def fixture(rng: random.Random, i: int) -> Task:
    fx = rng.choice(["fixture_A", "fixture_B"])
    slots = rng.sample(SLOTS[:5], 2)
    colour, size = rng.choice(COLOURS), rng.choice(["small", "medium", "large"])
    parts = [_part("P1", colour, size, slots[0], yaw=rng.uniform(-0.3, 0.3)),
             _part("P2", rng.choice(COLOURS), "medium", slots[1])]
    return {"category": "fixture", "instruction": f"Place part P1 into {fx}, seated flat and at rest.",
            "overrides": {"parts": parts, "goal": [{"kind": "in", "part": "P1", "into": fx},
                                                   {"kind": "not_in", "part": "P2", "into": fx}]},
            "tools": LOOK + HAND, "oracle": [{"tool": "get_scene", "args": {}}, *_moves([("P1", fx)])]}


def sort_colour(rng: random.Random, i: int) -> Task:
    n = 3 + i % 2
    cols = [*rng.sample(COLOURS, 3), rng.choice(COLOURS)]
    parts = [_part(f"P{k + 1}", cols[k], rng.choice(["small", "medium"]), xy)
             for k, xy in enumerate(rng.sample(SLOTS, n))]
    bins = {c: f"bin_{c}" for c in COLOURS}
    return {"category": "sort_colour",
            "instruction": "Sort every part on the table by colour: red parts into bin_red, green parts into "
                           "bin_green, blue parts into bin_blue.",
            "overrides": {"parts": parts, "goal": [{"kind": "sort", "by": "colour", "bins": bins}]},
            "tools": LOOK + HAND,
            "oracle": [{"tool": "get_scene", "args": {}}, *_moves([(p["id"], bins[p["colour"]]) for p in parts])]}


def sort_size(rng: random.Random, i: int) -> Task:
    sizes = ["small", "large", rng.choice(["small", "large"])]
    rng.shuffle(sizes)
    parts = [_part(f"P{k + 1}", rng.choice(COLOURS), sizes[k], xy)
             for k, xy in enumerate(rng.sample(SLOTS[:5], 3))]
    bins = {"small": "bin_green", "large": "bin_blue"}
    oracle = [{"tool": "get_scene", "args": {}}] + [{"tool": "inspect", "args": {"obj": p["id"]}} for p in parts]
    return {"category": "sort_size",
            "instruction": "Sort the parts by size (use inspect: sizes are not visible in the scene): small parts "
                           "(40 mm) into bin_green, large parts (60 mm) into bin_blue.",
            "overrides": {"parts": parts, "goal": [{"kind": "sort", "by": "size", "bins": bins}]},
            "tools": [*LOOK, "inspect", *HAND],
            "oracle": oracle + _moves([(p["id"], bins[p["size"]]) for p in parts])}


def stack(rng: random.Random, i: int) -> Task:
    n = 2 + i % 2
    slots = rng.sample(SLOTS[:5], n)
    sizes = ["large", "medium", "small"][:n]
    parts = [_part(f"P{k + 1}", rng.choice(COLOURS), sizes[k], slots[k]) for k in range(n)]
    goal = [{"kind": "on", "part": f"P{k + 1}", "base": f"P{k}"} for k in range(1, n)]
    order = " then ".join(f"P{k + 1} on P{k}" for k in range(1, n))
    return {"category": "stack", "instruction": f"Build a stack where it stands: put {order}. The stack must stand "
                                                "still for 2 seconds.",
            "overrides": {"parts": parts, "goal": goal}, "tools": LOOK + HAND,
            "oracle": [{"tool": "get_scene", "args": {}}, *_moves([(f"P{k + 1}", f"P{k}") for k in range(1, n)])]}


def conveyor(rng: random.Random, i: int) -> Task:
    n = 2 + i % 2
    into = rng.choice(["bin_red", "bin_green", "bin_blue"])
    ys = [0.60, 0.46, 0.33][:n]
    parts = [_part(f"C{k + 1}", rng.choice(COLOURS), rng.choice(["small", "medium"]), (1.55, ys[k]), on="conveyor")
             for k in range(n)]
    speed, target_y = 100, (PICK_WINDOW[0] + PICK_WINDOW[1]) / 2
    oracle: list[dict[str, Any]] = []
    travelled = 0.0
    for k in range(n):
        need = target_y - ys[k] - travelled - 0.01
        oracle += [{"tool": "set_conveyor", "args": {"speed": speed}},
                   {"tool": "wait", "args": {"seconds": round(need / (speed / 1000), 2)}},
                   {"tool": "set_conveyor", "args": {"speed": 0}}, *_moves([(f"C{k + 1}", into)])]
        travelled += need + 0.01
    limit = 15 * n + 10
    return {"category": "conveyor",
            "instruction": f"Parts {', '.join(p['id'] for p in parts)} ride the conveyor (+y). Run the belt, pick each "
                           f"part when it is in the pick window (y {PICK_WINDOW[0]}..{PICK_WINDOW[1]}) and put it into "
                           f"{into}. Miss none, and finish within {limit} simulated seconds.",
            "overrides": {"parts": parts,
                          "goal": [{"kind": "conveyor", "parts": [p["id"] for p in parts], "into": into,
                                    "time_limit": limit}]},
            "tools": [*LOOK, "set_conveyor", "wait", *HAND], "oracle": oracle}


def inspect_reject(rng: random.Random, i: int) -> Task:
    n = 4
    bad = set(rng.sample(range(n), 1 + i % 2))
    parts = [_part(f"P{k + 1}", rng.choice(COLOURS), rng.choice(["small", "medium", "large"]), xy,
                   defect=rng.choice(["crack", "burr", "dent"]) if k in bad else None)
             for k, xy in enumerate(rng.sample(SLOTS, n))]
    oracle = [{"tool": "inspect", "args": {"obj": p["id"]}} for p in parts]
    oracle += _moves([(p["id"], "bin_reject") for p in parts if p["defect"]])
    return {"category": "inspect_reject",
            "instruction": "Inspect every part on the table and put each defective one into bin_reject; good parts "
                           "stay where they are.",
            "overrides": {"parts": parts, "goal": [{"kind": "reject", "into": "bin_reject"}]},
            "tools": [*LOOK, "inspect", *HAND], "oracle": [{"tool": "get_scene", "args": {}}, *oracle]}


def kitting(rng: random.Random, i: int) -> Task:
    kinds = [("red", "small"), ("blue", "medium"), ("green", "small"), ("red", "medium"), ("blue", "small")]
    picks = [kinds[(i + k) % 5] for k in range(4)]
    parts = [_part(f"P{k + 1}", c, s, xy) for k, ((c, s), xy) in enumerate(zip(picks, rng.sample(SLOTS[1:], 4),
                                                                                strict=True))]
    chosen = sorted(rng.sample(range(4), 2 + i % 2))
    bom: dict[str, int] = {}
    for k in chosen:
        key = f"{parts[k]['colour']}/{parts[k]['size']}"
        bom[key] = bom.get(key, 0) + 1
    text = ", ".join(f"{n} x {k.replace('/', ' ')}" for k, n in bom.items())
    oracle = [{"tool": "get_scene", "args": {}}] + [{"tool": "inspect", "args": {"obj": p["id"]}} for p in parts]
    return {"category": "kitting",
            "instruction": f"Fill kit_tray with exactly this bill of materials (colour, size): {text}. Sizes are "
                           "only known after inspect (small 40 mm, medium 50 mm). Nothing else goes into the tray.",
            "overrides": {"parts": parts, "goal": [{"kind": "kit", "bom": bom, "into": "kit_tray"}]},
            "tools": [*LOOK, "inspect", *HAND],
            "oracle": oracle + _moves([(parts[k]["id"], "kit_tray") for k in chosen])}


def keepout(rng: random.Random, i: int) -> Task:
    xy = rng.choice([(1.42, 1.00), (1.30, 1.01), (1.44, 0.98)])
    into = rng.choice(["fixture_B", "bin_blue", "bin_reject"])
    parts = [_part("P1", rng.choice(COLOURS), rng.choice(["small", "medium"]), xy)]
    return {"category": "keepout",
            "instruction": f"A person works at the far end of the table. Move P1 into {into} without touching the "
                           "person and never faster than 100 mm/s within their keep-out zone.",
            "overrides": {"parts": parts, "goal": [{"kind": "in", "part": "P1", "into": into}, {"kind": "safety"}]},
            "tools": [*LOOK, "set_keepout", *HAND],
            "oracle": [{"tool": "get_scene", "args": {}}, {"tool": "set_keepout", "args": {"enabled": True}},
                       *_moves([("P1", into)])]}


def recovery(rng: random.Random, i: int) -> Task:
    fx = rng.choice(["fixture_A", "fixture_B"])
    slots = rng.sample(SLOTS[:5], 2)
    parts = [_part("P1", rng.choice(COLOURS), rng.choice(["small", "medium"]), slots[0])]
    moves = _moves([("P1", fx)])
    return {"category": "recovery",
            "instruction": f"Place P1 into {fx}. People walk past this cell: check the scene when you are done and "
                           "recover if something was disturbed.",
            "overrides": {"parts": parts, "goal": [{"kind": "in", "part": "P1", "into": fx}],
                          "disturbance": {"part": "P1", "to": list(slots[1])}},
            "tools": LOOK + HAND,
            "oracle": [{"tool": "get_scene", "args": {}}, *moves, {"tool": "get_scene", "args": {}}, *moves]}


def push_target(rng: random.Random, i: int) -> Task:
    y = rng.choice([0.52, 0.64, 0.76])
    d = round(rng.uniform(0.06, 0.12), 3)
    direction = rng.choice(["-x", "+y", "-y"])
    tx, ty = {"-x": (1.42 - d, y), "+y": (1.42, y + d), "-y": (1.42, y - d)}[direction]
    parts = [_part("P1", rng.choice(COLOURS), "medium", (1.42, y))]
    return {"category": "push",
            "instruction": "Push P1 onto target mark T1 without grasping it (it must end within 3 cm of T1).",
            "overrides": {"parts": parts, "targets": {"T1": [round(tx, 3), round(ty, 3)]},
                          "goal": [{"kind": "near", "part": "P1", "target": "T1", "tol": 0.03}]},
            "tools": [*LOOK, "push", *HAND],
            "oracle": [{"tool": "get_scene", "args": {}},
                       {"tool": "push", "args": {"obj": "P1", "dir": direction, "dist": d}}]}


TEMPLATES: list[Callable[[random.Random, int], Task]] = [fixture, sort_colour, sort_size, stack, conveyor,
                                                          inspect_reject, kitting, keepout, recovery, push_target]
#: Templates whose plan depends on what the start state is (the replay on a perturbed start must fail).
STATE_DEPENDENT = ("sort_colour", "sort_size", "conveyor", "inspect_reject", "kitting", "push")


def build(per_template: int = 5, seed: int = 19) -> dict[str, Any]:
    """The suite document."""
    tasks: list[dict[str, Any]] = []
    for template in TEMPLATES:
        rng = random.Random(f"{seed}:{template.__name__}")
        for i in range(per_template):
            t = template(rng, i)
            ov = t.pop("overrides")
            checker = [{"path": f"goal.{n}", "eq": "ok"}
                       for n in goals.names(ov["goal"], [p["id"] for p in ov["parts"]])]
            steps = sum(1 for s in t["oracle"] if "tool" in s)
            tasks.append({"id": f"emb-{template.__name__.replace('_', '-')}-{i + 1:02d}", "split": _split(i),
                          "category": t["category"], "tags": ["embodied", "mujoco"], "instruction": t["instruction"],
                          "initial": {"seed": i, "overrides": ov}, "tools": t["tools"],
                          "max_steps": min(30, steps + 6), "checker": checker,
                          "oracle": [*t["oracle"], {"answer": "Done."}]})
    return {"suite": "embodied", "domain": "embodied",
            "description": "A Fetch arm in a MuJoCo work cell: fixtures, sorting, stacking, conveyor picking, "
                           "inspection, kitting, keep-out safety, recovery and pushing.",
            "tasks": tasks}


def main() -> None:
    """Rewrite embodied.yaml."""
    doc = build()
    path = HERE / "embodied.yaml"
    path.write_text("# Generated by python -m blacksoil.factories.embodied.tasks.generate; do not edit by hand.\n"
                    + yaml.safe_dump(doc, sort_keys=False, width=120))
    print(f"wrote {len(doc['tasks'])} tasks to {path}")


if __name__ == "__main__":
    main()
