"""The tools-basic workspace: simple tools (calculator, units, lookup tables, text, dates) and a memory.

State is the memory (saved values) and the outbox (sent messages) so checkers can read what the agent did.
"""

from __future__ import annotations

import ast
import datetime as dt
import math
import operator
from collections.abc import Callable
from typing import Any, Literal

from blacksoil.errors import ConfigError, NotFoundError, UserError
from blacksoil.factories.toolspec import ToolSpec, bind

TABLES: dict[str, dict[str, float]] = {
    "material_density_kg_m3": {"steel": 7850, "aluminium": 2700, "copper": 8960, "titanium": 4500, "brass": 8500,
                               "pvc": 1380, "oak": 750, "concrete": 2400},
    "shipping_rate_usd_per_kg": {"zone_a": 1.2, "zone_b": 2.5, "zone_c": 4.1, "zone_d": 6.8},
    "part_price_usd": {"bolt_m8": 0.12, "nut_m8": 0.05, "bearing_6204": 3.4, "gasket_dn50": 1.75,
                       "v_belt_a42": 8.9, "hydraulic_hose_1m": 14.5, "proximity_sensor": 27.0},
    "machine_power_kw": {"cnc_mill": 15, "lathe": 11, "press": 45, "welder": 8, "grinder": 5.5, "compressor": 22},
    "electricity_usd_per_kwh": {"peak": 0.31, "offpeak": 0.14, "weekend": 0.11},
}

_UNITS: dict[str, tuple[str, float]] = {
    "m": ("length", 1.0), "km": ("length", 1000.0), "cm": ("length", 0.01), "mm": ("length", 0.001),
    "mi": ("length", 1609.344), "ft": ("length", 0.3048), "in": ("length", 0.0254),
    "kg": ("mass", 1.0), "g": ("mass", 0.001), "t": ("mass", 1000.0), "lb": ("mass", 0.45359237),
    "oz": ("mass", 0.028349523125),
    "s": ("time", 1.0), "min": ("time", 60.0), "h": ("time", 3600.0), "day": ("time", 86400.0),
    "l": ("volume", 1.0), "ml": ("volume", 0.001), "gal": ("volume", 3.785411784), "m3": ("volume", 1000.0),
    "C": ("temperature", 1.0), "F": ("temperature", 1.0), "K": ("temperature", 1.0),
}

_BIN = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
        ast.Pow: operator.pow, ast.Mod: operator.mod, ast.FloorDiv: operator.floordiv}
_FUN: dict[str, Callable[..., Any]] = {"sqrt": math.sqrt, "round": round, "abs": abs, "min": min, "max": max}


def _eval(node: ast.AST) -> float:
    if isinstance(node, ast.Expression):
        return _eval(node.body)
    if isinstance(node, ast.Constant) and isinstance(node.value, int | float) and not isinstance(node.value, bool):
        return node.value
    if isinstance(node, ast.BinOp) and type(node.op) in _BIN:
        right = _eval(node.right)
        if isinstance(node.op, ast.Pow) and abs(right) > 100:
            raise UserError("exponent larger than 100 is not allowed in calculator expressions")
        return float(_BIN[type(node.op)](_eval(node.left), right))
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
        v = _eval(node.operand)
        return -v if isinstance(node.op, ast.USub) else v
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in _FUN and not node.keywords:
        return float(_FUN[node.func.id](*[_eval(a) for a in node.args]))
    raise UserError(f"calculator supports numbers, + - * / // % ** and {', '.join(_FUN)}; "
                    f"not {ast.dump(node)[:40]}")


class Workspace:
    """The tools-basic state: a memory of saved values and an outbox of sent messages."""

    system_prompt = "You are a precise assistant. Use the tools to compute, look up and record results."

    def __init__(self, seed: int = 0, overrides: dict[str, Any] | None = None) -> None:
        self.state: dict[str, Any] = {"memory": {}, "outbox": []}
        for key, value in (overrides or {}).items():
            if key not in self.state:
                raise ConfigError(f"overrides.{key} does not exist in the workspace; known: memory, outbox")
            self.state[key] = value

    def snapshot(self) -> dict[str, Any]:
        """The state checkers read."""
        return {"memory": dict(self.state["memory"]), "outbox": list(self.state["outbox"])}

    def tools(self) -> list[ToolSpec]:
        """All simple tools bound to this workspace."""
        return [bind(fn, self) for fn in TOOLS]


def calculator(ws: Workspace, expression: str) -> dict[str, Any]:
    """Evaluate an arithmetic expression, e.g. (17 * 23) + sqrt(16).

    Args:
        expression: numbers with + - * / // % ** and sqrt, round, abs, min, max
    """
    try:
        tree = ast.parse(expression, mode="eval")
    except SyntaxError:
        raise UserError(f"expression={expression!r} is not valid arithmetic; write e.g. (2 + 3) * 4") from None
    try:
        return {"result": round(_eval(tree), 10)}
    except ZeroDivisionError:
        raise UserError(f"expression={expression!r} divides by zero") from None


Unit = Literal["m", "km", "cm", "mm", "mi", "ft", "in", "kg", "g", "t", "lb", "oz", "s", "min", "h", "day", "l", "ml",
               "gal", "m3", "C", "F", "K"]
Table = Literal["material_density_kg_m3", "shipping_rate_usd_per_kg", "part_price_usd", "machine_power_kw",
                "electricity_usd_per_kwh"]


def convert_units(ws: Workspace, value: float, from_unit: Unit, to_unit: Unit) -> dict[str, Any]:
    """Convert a quantity between units of length, mass, time, volume or temperature (C, F, K).

    Args:
        value: the quantity
        from_unit: unit of value, e.g. km, lb, h, gal, C
        to_unit: target unit of the same dimension
    """
    for arg, u in (("from_unit", from_unit), ("to_unit", to_unit)):
        if u not in _UNITS:
            raise UserError(f"{arg}={u!r} is unknown; use one of {', '.join(_UNITS)}", param=arg)
    if _UNITS[from_unit][0] != _UNITS[to_unit][0]:
        raise UserError(f"cannot convert {from_unit} ({_UNITS[from_unit][0]}) to {to_unit} ({_UNITS[to_unit][0]})")
    if _UNITS[from_unit][0] == "temperature":
        kelvin = {"C": value + 273.15, "F": (value - 32) * 5 / 9 + 273.15, "K": value}[from_unit]
        out = {"C": kelvin - 273.15, "F": (kelvin - 273.15) * 9 / 5 + 32, "K": kelvin}[to_unit]
    else:
        out = value * _UNITS[from_unit][1] / _UNITS[to_unit][1]
    return {"value": round(out, 6), "unit": to_unit}


def lookup(ws: Workspace, table: Table, key: str) -> dict[str, Any]:
    """Look up a value in a reference table (material densities, shipping rates, part prices, power, tariffs).

    Args:
        table: material_density_kg_m3, shipping_rate_usd_per_kg, part_price_usd, machine_power_kw or
            electricity_usd_per_kwh
        key: row name, e.g. steel or zone_b
    """
    if table not in TABLES:
        raise NotFoundError(f"table={table!r} does not exist; use one of {', '.join(TABLES)}")
    if key not in TABLES[table]:
        raise NotFoundError(f"key={key!r} is not in {table}; keys: {', '.join(TABLES[table])}")
    return {"table": table, "key": key, "value": TABLES[table][key]}


TextOp = Literal["upper", "lower", "reverse", "length", "count_words"]


def text_op(ws: Workspace, op: TextOp, text: str) -> dict[str, Any]:
    """Apply a string operation: upper, lower, reverse, length or count_words.

    Args:
        op: upper, lower, reverse, length or count_words
        text: the input text
    """
    result: Any = {"upper": text.upper(), "lower": text.lower(), "reverse": text[::-1], "length": len(text),
                   "count_words": len(text.split())}[op]
    return {"result": result}


def days_between(ws: Workspace, start: str, end: str) -> dict[str, Any]:
    """Number of days from start to end (ISO dates, YYYY-MM-DD).

    Args:
        start: first date, YYYY-MM-DD
        end: second date, YYYY-MM-DD
    """
    try:
        a, b = dt.date.fromisoformat(start), dt.date.fromisoformat(end)
    except ValueError:
        raise UserError(f"dates must be YYYY-MM-DD; got start={start!r}, end={end!r}") from None
    return {"days": (b - a).days}


def save_number(ws: Workspace, key: str, value: float) -> dict[str, Any]:
    """Save a number in memory under a key (overwrites).

    Args:
        key: memory key
        value: the number to save
    """
    if not key.strip():
        raise UserError("key is empty; give the memory key to save under")
    ws.state["memory"][key] = value
    return {"saved": key, "value": value}


def save_text(ws: Workspace, key: str, text: str) -> dict[str, Any]:
    """Save a text in memory under a key (overwrites).

    Args:
        key: memory key
        text: the text to save
    """
    if not key.strip():
        raise UserError("key is empty; give the memory key to save under")
    ws.state["memory"][key] = text
    return {"saved": key, "text": text}


def send_message(ws: Workspace, to: str, text: str) -> dict[str, Any]:
    """Send a short message to a team (e.g. maintenance, purchasing, shipping).

    Args:
        to: recipient team
        text: message body
    """
    ws.state["outbox"].append({"to": to, "text": text})
    return {"sent": True, "n": len(ws.state["outbox"])}


TOOLS = (calculator, convert_units, lookup, text_op, days_between, save_number, save_text, send_message)
