"""The healthcare suite: size and splits, every checker proven (oracle, null, untouched state), the generator."""

from __future__ import annotations

from pathlib import Path

import pytest

from blacksoil.agentscore import api
from blacksoil.agentscore.checkers import check
from blacksoil.agentscore.environments import env_for
from blacksoil.agentscore.tasks import load_suite_file, parse_suite, suite_path
from blacksoil.errors import ConfigError
from blacksoil.factories.env_settings import EnvSettings
from blacksoil.factories.healthcare.tasks import generate

TASKS = api.list_tasks("healthcare")


@pytest.fixture(scope="module")
def oracle(env_settings: EnvSettings) -> dict[str, api.Episode]:
    agent = api.make_agent("oracle")
    return {t.id: api.run_task(agent, t, settings=env_settings) for t in TASKS}


def test_at_least_60_tasks() -> None:
    assert len(TASKS) >= 60


def test_at_least_8_templates() -> None:
    assert len({t.category for t in TASKS}) >= 8


def test_every_split_is_used() -> None:
    assert {t.split for t in TASKS} == {"train", "dev", "test"}


def test_split_all_lists_every_task() -> None:
    assert len(api.list_tasks("healthcare", "all")) == len(TASKS)


def test_oracle_passes_every_task(oracle: dict[str, api.Episode]) -> None:
    assert [i for i, ep in oracle.items() if not ep.passed] == []


def test_null_agent_passes_nothing(env_settings: EnvSettings) -> None:
    null = api.make_agent("null")
    assert [t.id for t in TASKS if api.run_task(null, t, settings=env_settings).passed] == []


def test_oracle_answer_on_untouched_state_fails_every_task(oracle: dict[str, api.Episode],
                                                           env_settings: EnvSettings) -> None:
    passing = [t.id for t in TASKS
               if check(t, env_for(t, env_settings).snapshot(), oracle[t.id].trajectory["answer"]).passed]
    assert passing == []


def test_lookups_are_read_only() -> None:
    assert all(t.initial.overrides["mode"] == "read_only" for t in TASKS if t.category == "lookup")


def test_generator_reproduces_the_shipped_file(tmp_path: Path) -> None:
    out = tmp_path / "healthcare.yaml"
    generate.write(out, generate.healthcare_tasks())
    assert out.read_text() == suite_path("healthcare").read_text()


def test_malformed_task_file_names_file_line_and_field(tmp_path: Path) -> None:
    text = suite_path("healthcare").read_text().replace("split: train", "split: someday", 1)
    bad = tmp_path / "bad.yaml"
    bad.write_text(text)
    line = next(i for i, s in enumerate(text.splitlines(), 1) if "split: someday" in s)
    with pytest.raises(ConfigError, match=rf"bad.yaml:{line}: field tasks\[0:hc-lookup-1\]\.split"):
        load_suite_file(bad)


def test_unknown_predicate_key_is_rejected() -> None:
    text = suite_path("healthcare").read_text().replace("answer_number:", "answer_numbr:", 1)
    with pytest.raises(ConfigError, match="answer_numbr"):
        parse_suite(text, "h.yaml")
