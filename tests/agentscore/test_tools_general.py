"""The held-out tools-general suite: oracle passes, null fails, no train split, clear tool errors, file is generated.

The learner trains on tools-basic and manufacturing; this suite must never offer it a task.
"""

from __future__ import annotations

from typing import Any

import pytest

from blacksoil.agentscore import api
from blacksoil.agentscore.environments import env_for
from blacksoil.agentscore.general_tools import GeneralWorkspace
from blacksoil.agentscore.suites import generate_general
from blacksoil.agentscore.tasks import suite_path
from blacksoil.errors import ConfigError, UserError
from blacksoil.factories.env_settings import EnvSettings

SUITE = "tools-general"


def _call(ws: GeneralWorkspace, name: str, **args: Any) -> Any:
    return {t.name: t for t in ws.tools()}[name].call(args)


def test_suite_is_held_out_dev_and_test_only() -> None:
    tasks = api.list_tasks(SUITE)
    assert len(tasks) == 30
    assert len(api.list_tasks(SUITE, "dev")) == 10 and len(api.list_tasks(SUITE, "test")) == 20
    assert api.list_tasks(SUITE, "train") == [] and api.training_tasks(SUITE) == []
    assert "split: train" not in suite_path(SUITE).read_text()
    assert 6 <= sum(t.multi_step for t in tasks) <= 10
    assert sum(t.multi_step for t in api.list_tasks(SUITE, "test")) >= 4
    assert len({t.instruction for t in tasks}) == len(tasks)


def test_file_is_what_the_generator_writes() -> None:
    assert generate_general.tools_general_tasks() == generate_general.tools_general_tasks()
    assert suite_path(SUITE).read_text() == generate_general.render()


def test_no_tool_overlaps_tools_basic(env_settings: EnvSettings) -> None:
    general = {t.name for t in GeneralWorkspace().tools()}
    basic = {t.name for t in env_for(api.list_tasks("tools-basic")[0], env_settings).tools()}
    assert len(general) == 8 and not general & basic


@pytest.mark.parametrize("task_id", [t.id for t in api.list_tasks(SUITE)])
def test_oracle_passes_every_task(task_id: str, env_settings: EnvSettings) -> None:
    ep = api.run_task(api.make_agent("oracle"), api.get_task(SUITE, task_id), settings=env_settings)
    assert ep.passed and ep.reward == 1.0 and ep.tool_calls >= 1


def test_null_agent_fails_every_task(env_settings: EnvSettings) -> None:
    eps = api.run_tasks(api.make_agent("null"), api.list_tasks(SUITE), settings=env_settings)
    assert not [e.task_id for e in eps if e.passed or e.reward > 0]


def test_tools_record_state_and_snapshot_is_a_copy() -> None:
    ws = GeneralWorkspace()
    assert _call(ws, "create_event", title="Dentist", date="2026-12-03", time="9:30")["id"] == "E1"
    assert _call(ws, "add_todo", text="Buy milk")["priority"] == "medium"
    _call(ws, "set_reminder", minutes=15, text="Dentist")
    _call(ws, "book_room", room="R2", date="2026-12-03")
    snap = ws.snapshot()
    assert snap["calendar"] == [{"id": "E1", "title": "Dentist", "date": "2026-12-03", "time": "09:30"}]
    assert snap["bookings"][0] == {"id": "B1", "room": "R2", "date": "2026-12-03"}
    # The same todo again (a retry) is not duplicated; a different one is added.
    assert _call(ws, "add_todo", text="Buy milk") == {"id": "T1", "text": "Buy milk", "priority": "medium",
                                                      "already_exists": True}
    assert _call(ws, "add_todo", text="Buy milk", priority="high")["id"] == "T2"
    snap["todos"].clear()
    assert ws.snapshot()["todos"]
    assert _call(ws, "convert_currency", amount=100, from_currency="EUR", to_currency="USD") == {
        "amount": 108.0, "currency": "USD"}
    assert _call(ws, "translate_word", word="Water", language="german")["translation"] == "wasser"


@pytest.mark.parametrize(("tool", "args", "needle"), [
    ("get_weather", {"city": "Berlin"}, "'city'='Berlin' is invalid"),
    ("get_stock_price", {"ticker": "XYZ"}, "'ticker'='XYZ' is invalid"),
    ("convert_currency", {"amount": 5, "from_currency": "EUR", "to_currency": "BTC"}, "'to_currency'='BTC'"),
    ("convert_currency", {"amount": -5, "from_currency": "EUR", "to_currency": "USD"}, "amount=-5 is negative"),
    ("translate_word", {"word": "spaceship", "language": "french"}, "word='spaceship' is not in the dictionary"),
    ("translate_word", {"word": "cat", "language": "klingon"}, "'language'='klingon' is invalid"),
    ("create_event", {"title": "X", "date": "03/12/2026", "time": "09:30"}, "date='03/12/2026' is not a date"),
    ("create_event", {"title": "X", "date": "2026-12-03", "time": "25:00"}, "time='25:00' is not a time"),
    ("create_event", {"title": " ", "date": "2026-12-03", "time": "09:30"}, "title is empty"),
    ("add_todo", {"text": "x", "priority": "urgent"}, "'priority'='urgent' is invalid"),
    ("set_reminder", {"minutes": 0, "text": "x"}, "minutes=0 is out of range"),
    ("set_reminder", {"minutes": "ten", "text": "x"}, "'minutes'='ten' is invalid; expected integer"),
    ("book_room", {"room": "R9", "date": "2026-12-03"}, "'room'='R9' is invalid"),
    ("book_room", {"room": "R1"}, "missing required argument 'date'"),
    ("get_weather", {"city": "Oslo", "unit": "F"}, "unknown argument 'unit'"),
])
def test_bad_arguments_are_clear_errors(tool: str, args: dict[str, Any], needle: str) -> None:
    with pytest.raises(UserError) as e:
        _call(GeneralWorkspace(), tool, **args)
    assert needle in e.value.message, e.value.message


def test_double_booking_and_bad_overrides_are_clear() -> None:
    ws = GeneralWorkspace(overrides={"bookings": [{"id": "B1", "room": "R3", "date": "2026-12-03"}]})
    with pytest.raises(UserError, match="room R3 is already booked on 2026-12-03 \\(B1\\)"):
        _call(ws, "book_room", room="R3", date="2026-12-03")
    assert _call(ws, "book_room", room="R3", date="2026-12-04")["id"] == "B2"
    with pytest.raises(ConfigError, match=r"overrides\.memory does not exist"):
        GeneralWorkspace(overrides={"memory": {}})
