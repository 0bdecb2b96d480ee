"""Agent specs from YAML: valid files load, bad ones fail with a message naming the value and the fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from blacksoil.agents.spec import load_team, team_from_dict
from blacksoil.errors import ConfigError, NotFoundError

EXAMPLES = Path(__file__).parents[2] / "examples" / "agents"


def test_examples_load() -> None:
    for f in sorted(EXAMPLES.glob("*.yaml")):
        team = load_team(f)
        assert team.entry.name
        for a in team.agents:
            for p in a.policies:
                assert Path(p).is_absolute() and Path(p).is_file(), p


def test_single_agent_and_team_forms(tmp_path: Path) -> None:
    one = team_from_dict({"name": "a", "limits": {"max_steps": 3}})
    assert one.entry.limits.max_steps == 3
    two = team_from_dict({"agents": [{"name": "a", "handoffs": ["b"]}, {"name": "b", "workers": ["a"]}]})
    assert two.get("b").workers == ["a"]


@pytest.mark.parametrize(
    ("data", "match"),
    [
        ({"name": "a", "colour": "red"}, "colour"),
        ({"name": "a", "limits": {"max_steps": 0}}, "max_steps"),
        ({"name": "a b"}, "agent name 'a b'"),
        ({"name": "a", "handoffs": ["ghost"]}, "unknown agent 'ghost'"),
        ({"name": "a", "tool_choice": "sometimes"}, "tool_choice 'sometimes'"),
        ({"name": "a", "mcp_servers": [{"name": "m"}]}, "exactly one of `command`"),
        ({"agents": []}, "at least one agent"),
        ([1, 2], "expected a mapping"),
    ],
)
def test_bad_specs_name_the_problem(data: object, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        team_from_dict(data)


def test_missing_file_and_bad_yaml(tmp_path: Path) -> None:
    with pytest.raises(NotFoundError, match="not found"):
        load_team(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_team(bad)


def test_policy_paths_are_relative_to_the_spec(tmp_path: Path) -> None:
    (tmp_path / "p.cedar").write_text("")
    (tmp_path / "a.yaml").write_text("name: a\npolicies: [p.cedar]\n")
    assert load_team(tmp_path / "a.yaml").entry.policies == [str((tmp_path / "p.cedar").resolve())]
