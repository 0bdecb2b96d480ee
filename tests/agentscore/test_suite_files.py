"""Shipped suites: sizes, splits, multi-step share; malformed files are rejected with file, line and field."""

from __future__ import annotations

from pathlib import Path

import pytest

from blacksoil.agentscore import api
from blacksoil.agentscore.tasks import load_suite_file, parse_suite
from blacksoil.errors import ConfigError
from blacksoil.factories.env_settings import EnvSettings


def test_suites_have_the_promised_sizes_and_all_splits() -> None:
    mfg = api.list_tasks("manufacturing")
    assert len(mfg) >= 60 and sum(t.multi_step for t in mfg) * 3 >= len(mfg)
    assert len(api.list_tasks("tools-basic")) >= 40
    assert len(api.list_tasks("jobshop-quality")) >= 12
    for suite in api.suites():
        # tools-general is held out from learning by construction: dev and test only, no train split.
        for split in [s for s in api.splits() if (suite, s) != ("tools-general", "train")]:
            assert api.list_tasks(suite, split), (suite, split)
        ids = [t.id for t in api.list_tasks(suite)]
        assert len(ids) == len(set(ids))


def test_tasks_only_allow_tools_their_environment_has(env_settings: EnvSettings) -> None:
    from blacksoil.agentscore.environments import env_for

    for suite in api.suites():
        seen: dict[tuple[str, int], set[str]] = {}
        for t in api.list_tasks(suite):
            key = (t.domain, 0)
            if key not in seen:
                seen[key] = {s.name for s in env_for(t, env_settings).tools()}
            assert set(t.tools) <= seen[key], t.id
            assert {s.tool for s in t.oracle if s.tool} <= set(t.tools), t.id


def test_generators_are_deterministic() -> None:
    from blacksoil.agentscore.suites.generate import tools_basic_tasks

    assert tools_basic_tasks() == tools_basic_tasks()


def test_unknown_suite_and_split_are_clear() -> None:
    with pytest.raises(ConfigError, match="split='prod'"):
        api.list_tasks("manufacturing", "prod")
    with pytest.raises(ConfigError, match="nope"):
        api.get_task("manufacturing", "nope")


GOOD = """suite: s
domain: tools-basic
tasks:
  - id: t1
    split: train
    category: c
    instruction: do it
    tools: [calculator]
    checker:
      - {answer_number: 4}
    oracle:
      - {tool: calculator, args: {expression: 2+2}}
      - {answer: "{steps[0][result]}"}
"""


def test_a_good_file_parses() -> None:
    suite = parse_suite(GOOD, "good.yaml")
    assert suite.tasks[0].suite == "s" and suite.tasks[0].domain == "tools-basic"


@pytest.mark.parametrize(("text", "line", "field"), [
    (GOOD.replace("split: train", "split: prod"), 5, "tasks[0:t1].split"),
    (GOOD.replace("    category: c\n", ""), 4, "tasks[0:t1].category"),
    (GOOD.replace("{answer_number: 4}", "{answer_number: 4, answer_contains: x}"), 10, "tasks[0:t1].checker[0]"),
    (GOOD.replace("{answer_number: 4}", "{path: a.b}"), 10, "tasks[0:t1].checker[0]"),
    (GOOD.replace("{answer_number: 4}", "{path: a.b, eq: 1, colour: red}"), 10, "tasks[0:t1].checker[0].colour"),
    (GOOD.replace("      - {answer: \"{steps[0][result]}\"}\n", "      - {}\n"), 13, "tasks[0:t1].oracle[1]"),
])
def test_malformed_task_names_file_line_and_field(text: str, line: int, field: str) -> None:
    with pytest.raises(ConfigError) as e:
        parse_suite(text, "bad.yaml")
    assert e.value.message.startswith(f"bad.yaml:{line}: field {field}"), e.value.message


def test_yaml_syntax_errors_and_duplicates_are_located(tmp_path: Path) -> None:
    bad = tmp_path / "broken.yaml"
    bad.write_text(GOOD.replace("tools: [calculator]", "tools: [calculator"))
    with pytest.raises(ConfigError, match=r"broken\.yaml:\d+: not valid YAML"):
        load_suite_file(bad)
    dup = GOOD + GOOD.split("tasks:\n", 1)[1]
    with pytest.raises(ConfigError, match=r"duplicate task ids \['t1'\]"):
        parse_suite(dup, "dup.yaml")
    with pytest.raises(ConfigError, match=r"empty\.yaml:1"):
        parse_suite("- just a list", "empty.yaml")
