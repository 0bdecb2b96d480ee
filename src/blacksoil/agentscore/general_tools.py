"""The tools-general workspace: everyday assistant tools (weather, currency, calendar, todos, rooms) and their state.

Held-out suite: the learner never trains on it. State is calendar, todos, reminders and bookings for the checkers.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any, Literal

from blacksoil.errors import ConfigError, NotFoundError, UserError
from blacksoil.factories.toolspec import ToolSpec, bind

City = Literal["Oslo", "Paris", "Tokyo", "Cairo", "Lima", "Sydney", "Toronto", "Nairobi"]
Currency = Literal["USD", "EUR", "GBP", "JPY", "CHF", "NOK"]
Language = Literal["french", "spanish", "german", "italian"]
Ticker = Literal["ACME", "GLOBEX", "INITECH", "UMBRELLA", "STARK", "WAYNE"]
Priority = Literal["low", "medium", "high"]
Room = Literal["R1", "R2", "R3", "R4", "R5", "R6"]

WEATHER: dict[str, dict[str, Any]] = {
    "Oslo": {"temp_c": 4, "condition": "snow"}, "Paris": {"temp_c": 14, "condition": "cloudy"},
    "Tokyo": {"temp_c": 19, "condition": "rain"}, "Cairo": {"temp_c": 31, "condition": "sunny"},
    "Lima": {"temp_c": 22, "condition": "fog"}, "Sydney": {"temp_c": 26, "condition": "windy"},
    "Toronto": {"temp_c": 9, "condition": "drizzle"}, "Nairobi": {"temp_c": 24, "condition": "thunderstorm"},
}
#: US dollars per unit of each currency (fixed rates).
USD_PER_UNIT: dict[str, float] = {"USD": 1.0, "EUR": 1.08, "GBP": 1.27, "JPY": 0.0067, "CHF": 1.12, "NOK": 0.094}
STOCK_USD: dict[str, float] = {"ACME": 123.45, "GLOBEX": 58.2, "INITECH": 14.75, "UMBRELLA": 301.1, "STARK": 412.6,
                               "WAYNE": 87.35}
DICTIONARY: dict[str, dict[str, str]] = {
    "hello": {"french": "bonjour", "spanish": "hola", "german": "hallo", "italian": "ciao"},
    "water": {"french": "eau", "spanish": "agua", "german": "wasser", "italian": "acqua"},
    "bread": {"french": "pain", "spanish": "pan", "german": "brot", "italian": "pane"},
    "house": {"french": "maison", "spanish": "casa", "german": "haus", "italian": "casa"},
    "cat": {"french": "chat", "spanish": "gato", "german": "katze", "italian": "gatto"},
    "book": {"french": "livre", "spanish": "libro", "german": "buch", "italian": "libro"},
    "apple": {"french": "pomme", "spanish": "manzana", "german": "apfel", "italian": "mela"},
    "night": {"french": "nuit", "spanish": "noche", "german": "nacht", "italian": "notte"},
}
MAX_REMINDER_MINUTES = 1440
_TIME = re.compile(r"^(\d{1,2}):(\d{2})$")
_STATE_KEYS = ("calendar", "todos", "reminders", "bookings")


def _one_of(arg: str, value: Any, allowed: Any) -> None:
    if value not in allowed:
        raise UserError(f"{arg}={value!r} is unknown; use one of {', '.join(allowed)}", param=arg)


def _iso_date(arg: str, value: str) -> str:
    try:
        return dt.date.fromisoformat(value.strip()).isoformat()
    except (ValueError, AttributeError):
        raise UserError(f"{arg}={value!r} is not a date; write YYYY-MM-DD, e.g. 2026-12-03", param=arg) from None


def _text(arg: str, value: str) -> str:
    if not value.strip():
        raise UserError(f"{arg} is empty; give a short text", param=arg)
    return value.strip()


class GeneralWorkspace:
    """The tools-general state: a calendar, a todo list, reminders and room bookings."""

    system_prompt = ("You are a helpful assistant. Use the tools to look things up and to record events, todos, "
                     "reminders and bookings. Answer briefly with the facts asked for.")

    def __init__(self, seed: int = 0, overrides: dict[str, Any] | None = None) -> None:
        self.state: dict[str, list[dict[str, Any]]] = {k: [] for k in _STATE_KEYS}
        for key, value in (overrides or {}).items():
            if key not in self.state:
                raise ConfigError(f"overrides.{key} does not exist in the workspace; known: {', '.join(_STATE_KEYS)}")
            if not isinstance(value, list):
                raise ConfigError(f"overrides.{key} must be a list of records; got {type(value).__name__}")
            self.state[key] = [dict(v) for v in value]

    def snapshot(self) -> dict[str, Any]:
        """The state checkers read."""
        return {k: [dict(r) for r in self.state[k]] for k in _STATE_KEYS}

    def tools(self) -> list[ToolSpec]:
        """All general tools bound to this workspace."""
        return [bind(fn, self) for fn in TOOLS]

    def _add(self, key: str, prefix: str, record: dict[str, Any]) -> dict[str, Any]:
        """Append a record with a fresh id; the same record again is not duplicated (retries are idempotent)."""
        same = next((r for r in self.state[key] if {k: v for k, v in r.items() if k != "id"} == record), None)
        if same is not None:
            return {**same, "already_exists": True}
        rec = {"id": f"{prefix}{len(self.state[key]) + 1}", **record}
        self.state[key].append(rec)
        return dict(rec)


def get_weather(ws: GeneralWorkspace, city: City) -> dict[str, Any]:
    """Current weather of a city: temperature in Celsius and the condition.

    Args:
        city: Oslo, Paris, Tokyo, Cairo, Lima, Sydney, Toronto or Nairobi
    """
    if city not in WEATHER:
        raise NotFoundError(f"city={city!r} has no weather data; use one of {', '.join(WEATHER)}")
    return {"city": city, **WEATHER[city]}


def convert_currency(ws: GeneralWorkspace, amount: float, from_currency: Currency,
                     to_currency: Currency) -> dict[str, Any]:
    """Convert money between currencies at fixed rates (USD, EUR, GBP, JPY, CHF, NOK).

    Args:
        amount: the amount of money in from_currency
        from_currency: currency code of amount, e.g. EUR
        to_currency: target currency code, e.g. USD
    """
    _one_of("from_currency", from_currency, USD_PER_UNIT)
    _one_of("to_currency", to_currency, USD_PER_UNIT)
    if amount < 0:
        raise UserError(f"amount={amount!r} is negative; give an amount of 0 or more", param="amount")
    out = amount * USD_PER_UNIT[from_currency] / USD_PER_UNIT[to_currency]
    return {"amount": round(out, 2), "currency": to_currency}


def get_stock_price(ws: GeneralWorkspace, ticker: Ticker) -> dict[str, Any]:
    """The share price of a company in USD.

    Args:
        ticker: ACME, GLOBEX, INITECH, UMBRELLA, STARK or WAYNE
    """
    if ticker not in STOCK_USD:
        raise NotFoundError(f"ticker={ticker!r} is not listed; use one of {', '.join(STOCK_USD)}")
    return {"ticker": ticker, "price_usd": STOCK_USD[ticker]}


def translate_word(ws: GeneralWorkspace, word: str, language: Language) -> dict[str, Any]:
    """Translate an English word into French, Spanish, German or Italian.

    Args:
        word: the English word, e.g. water
        language: french, spanish, german or italian
    """
    _one_of("language", language, ("french", "spanish", "german", "italian"))
    key = word.strip().lower()
    if key not in DICTIONARY:
        raise NotFoundError(f"word={word!r} is not in the dictionary; known words: {', '.join(DICTIONARY)}")
    return {"word": key, "language": language, "translation": DICTIONARY[key][language]}


def create_event(ws: GeneralWorkspace, title: str, date: str, time: str) -> dict[str, Any]:
    """Put an event in the calendar.

    Args:
        title: what the event is, e.g. Dentist
        date: day of the event, YYYY-MM-DD
        time: start time, HH:MM (24-hour clock)
    """
    day = _iso_date("date", date)
    m = _TIME.match(time.strip())
    if not m or int(m.group(1)) > 23 or int(m.group(2)) > 59:
        raise UserError(f"time={time!r} is not a time; write HH:MM on a 24-hour clock, e.g. 09:30", param="time")
    return ws._add("calendar", "E", {"title": _text("title", title), "date": day,
                                     "time": f"{int(m.group(1)):02d}:{m.group(2)}"})


def add_todo(ws: GeneralWorkspace, text: str, priority: Priority = "medium") -> dict[str, Any]:
    """Add an item to the todo list.

    Args:
        text: what is to be done
        priority: low, medium or high
    """
    _one_of("priority", priority, ("low", "medium", "high"))
    return ws._add("todos", "T", {"text": _text("text", text), "priority": priority})


def set_reminder(ws: GeneralWorkspace, minutes: int, text: str) -> dict[str, Any]:
    """Set a reminder that goes off in some minutes from now.

    Args:
        minutes: minutes from now, 1 to 1440
        text: what to be reminded of
    """
    if not 1 <= minutes <= MAX_REMINDER_MINUTES:
        raise UserError(f"minutes={minutes!r} is out of range; use 1 to {MAX_REMINDER_MINUTES}", param="minutes")
    return ws._add("reminders", "M", {"minutes": minutes, "text": _text("text", text)})


def book_room(ws: GeneralWorkspace, room: Room, date: str) -> dict[str, Any]:
    """Book a meeting room for a whole day.

    Args:
        room: R1, R2, R3, R4, R5 or R6
        date: the day, YYYY-MM-DD
    """
    _one_of("room", room, ("R1", "R2", "R3", "R4", "R5", "R6"))
    day = _iso_date("date", date)
    taken = next((b for b in ws.state["bookings"] if b["room"] == room and b["date"] == day), None)
    if taken is not None:
        raise UserError(f"room {room} is already booked on {day} ({taken['id']}); choose another room or date",
                        param="room")
    return ws._add("bookings", "B", {"room": room, "date": day})


TOOLS = (get_weather, convert_currency, get_stock_price, translate_word, create_event, add_todo, set_reminder,
         book_room)
