"""Writes tools_general.yaml deterministically: the held-out general tool-calling suite (dev and test only).

Expected values come from the same tables the tools use. Run `python -m blacksoil.agentscore.suites.generate_general`.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from blacksoil.agentscore.general_tools import DICTIONARY, STOCK_USD, WEATHER, GeneralWorkspace, convert_currency

HERE = Path(__file__).parent
FILE = HERE / "tools_general.yaml"
Task = dict[str, Any]
_WS = GeneralWorkspace()

CITIES = sorted(WEATHER)
TICKERS = sorted(STOCK_USD)
ROOMS = ("R1", "R2", "R3", "R4", "R5", "R6")
PAIRS = (("EUR", "USD"), ("USD", "EUR"), ("GBP", "USD"), ("USD", "JPY"), ("CHF", "EUR"), ("NOK", "USD"))
EVENTS = ("Dentist", "Team lunch", "Yoga class", "Budget review", "Car service", "Piano lesson")
TODOS = ("Buy milk", "Pay rent", "Call the bank", "Water the plants", "Renew passport", "Order printer paper")
REMINDERS = ("Call Maria", "Take the cake out", "Join the standup", "Move the car", "Stretch", "Check the mail")


def _date(rng: random.Random) -> str:
    return f"2026-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"


def _time(rng: random.Random) -> str:
    return f"{rng.randint(8, 18):02d}:{rng.choice(['00', '15', '30', '45'])}"


def _num(x: float) -> str:
    """A number as people write it: at most two decimals, no trailing zeros (86.4, 123.45, 300)."""
    return f"{x:.2f}".rstrip("0").rstrip(".")


def _money(amount: float, a: str, b: str) -> float:
    return float(convert_currency(_WS, amount, a, b)["amount"])  # type: ignore[arg-type]  # codes from PAIRS


def _translation(rng: random.Random) -> tuple[str, str, str]:
    """A word and language whose translation cannot appear by echoing the instruction (e.g. 'pan' in 'Spanish')."""
    while True:
        word, lang = rng.choice(sorted(DICTIONARY)), rng.choice(["french", "spanish", "german", "italian"])
        out = DICTIONARY[word][lang]
        if out not in f"translate the word '{word}' into {lang}." and out not in "i cannot help with that.":
            return word, lang, out


# Single-call tasks.

def weather(rng: random.Random) -> Task:
    city = rng.choice(CITIES)
    return {"category": "weather", "instruction": f"What's the weather in {city}? Answer with the temperature in C.",
            "tools": ["get_weather"], "checker": [{"answer_number": WEATHER[city]["temp_c"]}],
            "oracle": [{"tool": "get_weather", "args": {"city": city}}, {"answer": "{steps[0][temp_c]} C"}]}


def currency(rng: random.Random) -> Task:
    a, b = rng.choice(PAIRS)
    amount = rng.choice([20, 50, 75, 120, 250, 400, 1000])
    out = _money(amount, a, b)
    return {"category": "currency", "instruction": f"Convert {amount} {a} to {b}.", "tools": ["convert_currency"],
            "checker": [{"answer_number": out, "tol": max(0.011, out * 0.001)}],
            "oracle": [{"tool": "convert_currency", "args": {"amount": amount, "from_currency": a, "to_currency": b}},
                       {"answer": "{steps[0][amount]} " + b}]}


def stock(rng: random.Random) -> Task:
    ticker = rng.choice(TICKERS)
    return {"category": "stocks", "instruction": f"What is the share price of {ticker} in USD?",
            "tools": ["get_stock_price"], "checker": [{"answer_number": STOCK_USD[ticker], "tol": 0.001}],
            "oracle": [{"tool": "get_stock_price", "args": {"ticker": ticker}},
                       {"answer": "{steps[0][price_usd]} USD"}]}


def translate(rng: random.Random) -> Task:
    word, lang, out = _translation(rng)
    return {"category": "translate", "instruction": f"Translate the word '{word}' into {lang}.",
            "tools": ["translate_word"], "checker": [{"answer_contains": out}],
            "oracle": [{"tool": "translate_word", "args": {"word": word, "language": lang}},
                       {"answer": "{steps[0][translation]}"}]}


def event(rng: random.Random) -> Task:
    title, date, time = rng.choice(EVENTS), _date(rng), _time(rng)
    return {"category": "calendar", "instruction": f"Add '{title}' to my calendar on {date} at {time}.",
            "tools": ["create_event"],
            "checker": [{"count": "calendar", "where": {"title": {"contains": title}, "date": date, "time": time},
                         "eq": 1}],
            "oracle": [{"tool": "create_event", "args": {"title": title, "date": date, "time": time}},
                       {"answer": "Added {steps[0][id]}."}]}


def todo(rng: random.Random) -> Task:
    text, priority = rng.choice(TODOS), rng.choice(["low", "high"])
    return {"category": "todos", "instruction": f"Add a todo '{text}' with {priority} priority.", "tools": ["add_todo"],
            "checker": [{"count": "todos", "where": {"text": {"contains": text}, "priority": priority}, "eq": 1}],
            "oracle": [{"tool": "add_todo", "args": {"text": text, "priority": priority}},
                       {"answer": "Added {steps[0][id]}."}]}


def reminder(rng: random.Random) -> Task:
    text, minutes = rng.choice(REMINDERS), rng.choice([5, 10, 15, 20, 30, 45, 60, 90])
    return {"category": "reminders", "instruction": f"Set a reminder in {minutes} minutes: '{text}'.",
            "tools": ["set_reminder"],
            "checker": [{"count": "reminders", "where": {"minutes": minutes, "text": {"contains": text}}, "eq": 1}],
            "oracle": [{"tool": "set_reminder", "args": {"minutes": minutes, "text": text}},
                       {"answer": "Set {steps[0][id]}."}]}


def booking(rng: random.Random) -> Task:
    room, date = rng.choice(ROOMS), _date(rng)
    return {"category": "rooms", "instruction": f"Book room {room} for {date}.", "tools": ["book_room"],
            "checker": [{"count": "bookings", "where": {"room": room, "date": date}, "eq": 1}],
            "oracle": [{"tool": "book_room", "args": {"room": room, "date": date}},
                       {"answer": "Booked {steps[0][id]}."}]}


# Two-call tasks.

def stock_reminder(rng: random.Random) -> Task:
    ticker, minutes = rng.choice(TICKERS), rng.choice([15, 30, 60])
    price = STOCK_USD[ticker]
    return {"category": "two-call", "tags": ["multi-step"],
            "instruction": f"Look up the share price of {ticker} and set a reminder in {minutes} minutes that "
                           "says the price.",
            "tools": ["get_stock_price", "set_reminder"],
            "checker": [{"count": "reminders", "where": {"minutes": minutes, "text": {"contains": _num(price)}},
                         "eq": 1}],
            "oracle": [{"tool": "get_stock_price", "args": {"ticker": ticker}},
                       {"tool": "set_reminder",
                        "args": {"minutes": minutes, "text": f"{ticker} is at {_num(price)} USD"}},
                       {"answer": "Set {steps[1][id]}."}]}


def weather_todo(rng: random.Random) -> Task:
    city = rng.choice(CITIES)
    cond = WEATHER[city]["condition"]
    return {"category": "two-call", "tags": ["multi-step"],
            "instruction": f"Check the weather in {city} and add a todo that names the condition.",
            "tools": ["get_weather", "add_todo"],
            "checker": [{"count": "todos", "where": {"text": {"contains": cond}}, "eq": 1}],
            "oracle": [{"tool": "get_weather", "args": {"city": city}},
                       {"tool": "add_todo", "args": {"text": f"Pack for {cond} in {city}"}},
                       {"answer": "{steps[0][condition]}"}]}


def currency_todo(rng: random.Random) -> Task:
    a, b = rng.choice(PAIRS)
    amount = rng.choice([40, 80, 150, 300])
    out = _money(amount, a, b)
    return {"category": "two-call", "tags": ["multi-step"],
            "instruction": f"Convert {amount} {a} to {b} and add a high priority todo to pay that amount.",
            "tools": ["convert_currency", "add_todo"],
            "checker": [{"count": "todos", "where": {"text": {"contains": _num(out)}, "priority": "high"},
                         "eq": 1}],
            "oracle": [{"tool": "convert_currency", "args": {"amount": amount, "from_currency": a, "to_currency": b}},
                       {"tool": "add_todo", "args": {"text": f"Pay {_num(out)} {b}", "priority": "high"}},
                       {"answer": "{steps[0][amount]} " + b}]}


def room_event(rng: random.Random) -> Task:
    room, date, time, title = rng.choice(ROOMS), _date(rng), _time(rng), rng.choice(EVENTS)
    return {"category": "two-call", "tags": ["multi-step"],
            "instruction": f"Book room {room} for {date} and add '{title}' to my calendar that day at {time}.",
            "tools": ["book_room", "create_event"],
            "checker": [{"count": "bookings", "where": {"room": room, "date": date}, "eq": 1},
                        {"count": "calendar", "where": {"title": {"contains": title}, "date": date, "time": time},
                         "eq": 1}],
            "oracle": [{"tool": "book_room", "args": {"room": room, "date": date}},
                       {"tool": "create_event", "args": {"title": title, "date": date, "time": time}},
                       {"answer": "Booked {steps[0][id]} and added {steps[1][id]}."}]}


def event_reminder(rng: random.Random) -> Task:
    title, date, time, minutes = rng.choice(EVENTS), _date(rng), _time(rng), rng.choice([10, 20, 30])
    return {"category": "two-call", "tags": ["multi-step"],
            "instruction": f"Add '{title}' to my calendar on {date} at {time} and set a reminder in {minutes} "
                           f"minutes: '{title}'.",
            "tools": ["create_event", "set_reminder"],
            "checker": [{"count": "calendar", "where": {"title": {"contains": title}, "date": date, "time": time},
                         "eq": 1},
                        {"count": "reminders", "where": {"minutes": minutes, "text": {"contains": title}}, "eq": 1}],
            "oracle": [{"tool": "create_event", "args": {"title": title, "date": date, "time": time}},
                       {"tool": "set_reminder", "args": {"minutes": minutes, "text": title}},
                       {"answer": "Done."}]}


def translate_todo(rng: random.Random) -> Task:
    word, lang, out = _translation(rng)
    return {"category": "two-call", "tags": ["multi-step"],
            "instruction": f"Translate '{word}' into {lang} and add a todo 'Learn the word' followed by the "
                           "translation.",
            "tools": ["translate_word", "add_todo"],
            "checker": [{"count": "todos", "where": {"text": {"contains": out}}, "eq": 1}],
            "oracle": [{"tool": "translate_word", "args": {"word": word, "language": lang}},
                       {"tool": "add_todo", "args": {"text": f"Learn the word {out}"}},
                       {"answer": "{steps[0][translation]}"}]}


def two_stocks(rng: random.Random) -> Task:
    a, b = rng.sample(TICKERS, 2)
    total = round(STOCK_USD[a] + STOCK_USD[b], 2)
    return {"category": "two-call", "tags": ["multi-step"],
            "instruction": f"What do one {a} share and one {b} share cost together in USD?",
            "tools": ["get_stock_price"], "checker": [{"answer_number": total, "tol": 0.011}],
            "oracle": [{"tool": "get_stock_price", "args": {"ticker": a}},
                       {"tool": "get_stock_price", "args": {"ticker": b}},
                       {"answer": f"{_num(total)} USD"}]}


def weather_reminder(rng: random.Random) -> Task:
    city, minutes = rng.choice(CITIES), rng.choice([30, 60, 120])
    cond = WEATHER[city]["condition"]
    return {"category": "two-call", "tags": ["multi-step"],
            "instruction": f"Check the weather in {city} and set a reminder in {minutes} minutes that names the "
                           "condition.",
            "tools": ["get_weather", "set_reminder"],
            "checker": [{"count": "reminders", "where": {"minutes": minutes, "text": {"contains": cond}}, "eq": 1}],
            "oracle": [{"tool": "get_weather", "args": {"city": city}},
                       {"tool": "set_reminder", "args": {"minutes": minutes, "text": f"{city}: {cond}"}},
                       {"answer": "{steps[0][condition]}"}]}


#: (template, how many tasks): 22 single-call and 8 two-call tasks.
PLAN: tuple[tuple[Callable[[random.Random], Task], int], ...] = (
    (weather, 3), (currency, 3), (stock, 3), (translate, 3), (event, 3), (todo, 3), (reminder, 2), (booking, 2),
    (stock_reminder, 1), (weather_todo, 1), (currency_todo, 1), (room_event, 1), (event_reminder, 1),
    (translate_todo, 1), (two_stocks, 1), (weather_reminder, 1),
)


def tools_general_tasks() -> list[Task]:
    """The tasks in plan order; every third is `dev`, the rest `test` (10 / 20). There is no `train` split."""
    tasks: list[Task] = []
    seen: set[str] = set()
    for tpl, n in PLAN:
        rng = random.Random(f"tools-general-{tpl.__name__}")
        for i in range(n):
            spec = tpl(rng)
            while spec["instruction"] in seen:  # no task twice (e.g. in dev and in test)
                spec = tpl(rng)
            seen.add(spec["instruction"])
            tasks.append({"id": f"tg-{tpl.__name__.replace('_', '-')}-{i + 1}",
                          "split": "dev" if len(tasks) % 3 == 0 else "test",
                          "category": spec.pop("category"), "tags": spec.pop("tags", ["single-step"]),
                          "instruction": spec.pop("instruction"), "initial": {"seed": 0, "overrides": {}}, **spec})
    return tasks


def render() -> str:
    """The file's text."""
    body = yaml.safe_dump({"suite": "tools-general", "domain": "tools-general",
                           "description": "Held-out general tool calling (weather, currency, calendar, todos, "
                                          "reminders, rooms); dev and test only, never trained on.",
                           "tasks": tools_general_tasks()}, sort_keys=False, width=120, allow_unicode=True)
    return "# Generated by blacksoil.agentscore.suites.generate_general; do not edit by hand.\n" + body


def main() -> None:
    """Regenerate tools_general.yaml."""
    FILE.write_text(render())


if __name__ == "__main__":
    main()
