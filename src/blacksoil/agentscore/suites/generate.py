"""Writes tools_basic.yaml deterministically: single- and multi-call tasks over the simple tool box.

Expected values are computed here with the same tables and conversions the tools use.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from blacksoil.agentscore.toolbox import TABLES, Workspace, convert_units

HERE = Path(__file__).parent
Task = dict[str, Any]
_WS = Workspace()


def _split(i: int) -> str:
    return ("train", "train", "train", "dev", "test")[i % 5]


def _conv(v: float, a: str, b: str) -> float:
    return float(convert_units(_WS, v, a, b)["value"])  # type: ignore[arg-type]  # units come from literal lists


def calc_save(rng: random.Random) -> Task:
    a, b, c = rng.randint(12, 99), rng.randint(12, 99), rng.randint(100, 999)
    key = rng.choice(["total", "result", "batch_size", "units"])
    expr = f"{a} * {b} + {c}"
    return {"category": "calculator", "instruction": f"Compute {a} times {b} plus {c} and save the number in memory "
            f"under the key '{key}'.", "tools": ["calculator", "save_number"],
            "checker": [{"path": f"memory.{key}", "eq": a * b + c, "tol": 1e-6}],
            "oracle": [{"tool": "calculator", "args": {"expression": expr}},
                       {"tool": "save_number", "args": {"key": key, "value": "$steps[0].result"}},
                       {"answer": "Saved {steps[0][result]}."}]}


def calc_answer(rng: random.Random) -> Task:
    a, b = rng.randint(100, 9999), rng.randint(3, 97)
    v = round(a / b, 2)
    return {"category": "calculator", "instruction": f"What is {a} divided by {b}, rounded to two decimals?",
            "tools": ["calculator"], "checker": [{"answer_number": v, "tol": 0.011}],
            "oracle": [{"tool": "calculator", "args": {"expression": f"round({a} / {b}, 2)"}},
                       {"answer": "{steps[0][result]}"}]}


def convert_answer(rng: random.Random) -> Task:
    a, b = rng.choice([("km", "mi"), ("lb", "kg"), ("gal", "l"), ("ft", "m"), ("h", "min"), ("oz", "g")])
    v = rng.randint(2, 500)
    out = _conv(v, a, b)
    return {"category": "units", "instruction": f"Convert {v} {a} to {b}.", "tools": ["convert_units"],
            "checker": [{"answer_number": round(out, 2), "tol": max(0.011, abs(out) * 0.001)}],
            "oracle": [{"tool": "convert_units", "args": {"value": v, "from_unit": a, "to_unit": b}},
                       {"answer": "{steps[0][value]:.2f} " + b}]}


def temperature_save(rng: random.Random) -> Task:
    f = rng.randint(-20, 450)
    c = _conv(f, "F", "C")
    return {"category": "units", "instruction": f"A furnace log says {f} F. Convert it to Celsius and save it under "
            "'furnace_c'.", "tools": ["convert_units", "save_number"],
            "checker": [{"path": "memory.furnace_c", "eq": c, "tol": 0.01}],
            "oracle": [{"tool": "convert_units", "args": {"value": f, "from_unit": "F", "to_unit": "C"}},
                       {"tool": "save_number", "args": {"key": "furnace_c", "value": "$steps[0].value"}},
                       {"answer": "{steps[0][value]} C"}]}


def lookup_answer(rng: random.Random) -> Task:
    table = rng.choice(["material_density_kg_m3", "part_price_usd", "machine_power_kw"])
    key = rng.choice(sorted(TABLES[table]))
    what = {"material_density_kg_m3": f"the density of {key} in kg/m3", "part_price_usd": f"the price of {key} in USD",
            "machine_power_kw": f"the power rating of a {key} in kW"}[table]
    return {"category": "lookup", "instruction": f"Look up {what}.", "tools": ["lookup"],
            "checker": [{"answer_number": TABLES[table][key], "tol": 1e-6}],
            "oracle": [{"tool": "lookup", "args": {"table": table, "key": key}}, {"answer": "{steps[0][value]}"}]}


def plate_mass(rng: random.Random) -> Task:
    mat = rng.choice(["steel", "aluminium", "copper", "titanium", "brass"])
    length, width, thick = rng.randint(20, 200), rng.randint(20, 200), rng.randint(1, 20)
    dens = TABLES["material_density_kg_m3"][mat]
    mass = round(length * width * thick / 1e6 * dens, 4)
    expr = f"round({length} * {width} * {thick} / 1000000 * {dens}, 4)"
    return {"category": "multi-call", "tags": ["multi-step"],
            "instruction": f"A {mat} plate is {length} cm x {width} cm x {thick} cm. Look up the density and compute "
                           "its mass in kg; save it under 'plate_kg'.",
            "tools": ["lookup", "calculator", "save_number"],
            "checker": [{"path": "memory.plate_kg", "eq": mass, "tol": max(0.01, mass * 0.001)}],
            "oracle": [{"tool": "lookup", "args": {"table": "material_density_kg_m3", "key": mat}},
                       {"tool": "calculator", "args": {"expression": expr}},
                       {"tool": "save_number", "args": {"key": "plate_kg", "value": "$steps[1].result"}},
                       {"answer": "{steps[1][result]} kg"}]}


def shipping_cost(rng: random.Random) -> Task:
    lb, zone = rng.randint(5, 400), rng.choice(sorted(TABLES["shipping_rate_usd_per_kg"]))
    kg = _conv(lb, "lb", "kg")
    rate = TABLES["shipping_rate_usd_per_kg"][zone]
    cost = round(kg * rate, 2)
    return {"category": "multi-call", "tags": ["multi-step"],
            "instruction": f"A crate weighs {lb} lb and goes to {zone}. Convert to kg, look up the shipping rate per "
                           "kg and tell me the cost in USD.",
            "tools": ["convert_units", "lookup", "calculator"], "checker": [{"answer_number": cost, "tol": 0.02}],
            "oracle": [{"tool": "convert_units", "args": {"value": lb, "from_unit": "lb", "to_unit": "kg"}},
                       {"tool": "lookup", "args": {"table": "shipping_rate_usd_per_kg", "key": zone}},
                       {"tool": "calculator", "args": {"expression": f"round({kg} * {rate}, 2)"}},
                       {"answer": "{steps[2][result]} USD"}]}


def energy_cost(rng: random.Random) -> Task:
    machine, tariff, hours = (rng.choice(sorted(TABLES["machine_power_kw"])),
                              rng.choice(sorted(TABLES["electricity_usd_per_kwh"])), rng.randint(2, 72))
    kw, price = TABLES["machine_power_kw"][machine], TABLES["electricity_usd_per_kwh"][tariff]
    cost = round(kw * hours * price, 2)
    return {"category": "multi-call", "tags": ["multi-step"],
            "instruction": f"What does it cost to run a {machine} for {hours} hours at the {tariff} electricity "
                           "tariff? Save the USD amount under 'energy_usd'.",
            "tools": ["lookup", "calculator", "save_number"],
            "checker": [{"path": "memory.energy_usd", "eq": cost, "tol": 0.01}],
            "oracle": [{"tool": "lookup", "args": {"table": "machine_power_kw", "key": machine}},
                       {"tool": "lookup", "args": {"table": "electricity_usd_per_kwh", "key": tariff}},
                       {"tool": "calculator", "args": {"expression": f"round({kw} * {hours} * {price}, 2)"}},
                       {"tool": "save_number", "args": {"key": "energy_usd", "value": "$steps[2].result"}},
                       {"answer": "{steps[2][result]} USD"}]}


WORDS = ("spindle", "coolant", "torque", "gantry", "fixture", "hopper", "conveyor", "bearing", "servo", "pallet")


def reverse_save(rng: random.Random) -> Task:
    word = "-".join(rng.sample(WORDS, 2))
    return {"category": "text", "instruction": f"Reverse the text '{word}' and save it under 'reversed'.",
            "tools": ["text_op", "save_text"], "checker": [{"path": "memory.reversed", "eq": word[::-1]}],
            "oracle": [{"tool": "text_op", "args": {"op": "reverse", "text": word}},
                       {"tool": "save_text", "args": {"key": "reversed", "text": "$steps[0].result"}},
                       {"answer": "{steps[0][result]}"}]}


def count_words(rng: random.Random) -> Task:
    text = " ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 15)))
    return {"category": "text", "instruction": f"How many words are in this note: '{text}'?", "tools": ["text_op"],
            "checker": [{"answer_number": len(text.split())}],
            "oracle": [{"tool": "text_op", "args": {"op": "count_words", "text": text}},
                       {"answer": "{steps[0][result]} words"}]}


def date_gap(rng: random.Random) -> Task:
    import datetime as dt

    a = dt.date(2025, 1, 1) + dt.timedelta(days=rng.randint(0, 300))
    b = a + dt.timedelta(days=rng.randint(3, 200))
    return {"category": "dates", "instruction": f"How many days are there from {a} to {b}?",
            "tools": ["days_between", "calculator"], "checker": [{"answer_number": (b - a).days}],
            "oracle": [{"tool": "days_between", "args": {"start": str(a), "end": str(b)}},
                       {"answer": "{steps[0][days]} days"}]}


def notify_price(rng: random.Random) -> Task:
    part, n = rng.choice(sorted(TABLES["part_price_usd"])), rng.randint(2, 60)
    total = round(TABLES["part_price_usd"][part] * n, 2)
    return {"category": "multi-call", "tags": ["multi-step"],
            "instruction": f"Tell the purchasing team (send_message to 'purchasing') the total price of {n} x {part}.",
            "tools": ["lookup", "calculator", "send_message"],
            "checker": [{"count": "outbox", "where": {"to": "purchasing", "text": {"contains": f"{total:g}"}},
                         "ge": 1}],
            "oracle": [{"tool": "lookup", "args": {"table": "part_price_usd", "key": part}},
                       {"tool": "calculator",
                        "args": {"expression": f"round({n} * {TABLES['part_price_usd'][part]}, 2)"}},
                       {"tool": "send_message", "args": {"to": "purchasing",
                                                         "text": f"{n} x {part} cost {total:g} USD in total"}},
                       {"answer": "Sent."}]}


TEMPLATES: tuple[Callable[[random.Random], Task], ...] = (
    calc_save, calc_answer, convert_answer, temperature_save, lookup_answer, plate_mass, shipping_cost, energy_cost,
    reverse_save, count_words, date_gap, notify_price,
)
PER_TEMPLATE = 4


def tools_basic_tasks(per_template: int = PER_TEMPLATE, first_index: int = 0,
                      split: Callable[[int], str] | None = None, id_prefix: str = "tb") -> list[Task]:
    """Four tasks per template; split by position (train, train, train, dev, test, …) with a template offset.

    The defaults write the shipped suite; other indices give fresh instances (practice tasks for learning).
    """
    tasks = []
    for t, tpl in enumerate(TEMPLATES):
        for i in range(first_index, first_index + per_template):
            spec = tpl(random.Random(f"{tpl.__name__}-{i}"))
            tasks.append({"id": f"{id_prefix}-{tpl.__name__.replace('_', '-')}-{i + 1}",
                          "split": split(i) if split else _split(i + t),
                          "category": spec.pop("category"), "tags": spec.pop("tags", ["single-step"]),
                          "instruction": spec.pop("instruction"), "initial": {"seed": 0, "overrides": {}}, **spec})
    return tasks


def main() -> None:
    """Regenerate tools_basic.yaml."""
    body = yaml.safe_dump({"suite": "tools-basic", "domain": "tools-basic",
                           "description": "Single- and multi-call tasks with simple tools.",
                           "tasks": tools_basic_tasks()}, sort_keys=False, width=120, allow_unicode=True)
    (HERE / "tools_basic.yaml").write_text(f"# Generated by {__name__}; do not edit by hand.\n" + body)


if __name__ == "__main__":
    main()
