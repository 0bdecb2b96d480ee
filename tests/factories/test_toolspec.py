"""Tool specs from type hints: the schema the model sees and the argument errors it gets back."""

from __future__ import annotations

from typing import Any, Literal

import pytest

from blacksoil.errors import UserError
from blacksoil.factories.toolspec import bind, tool


def sample(ctx: dict[str, Any], name: str, count: int, mode: Literal["a", "b"] = "a", ratio: float = 0.5,
           tags: list[str] | None = None) -> dict[str, Any]:
    """Do a sample thing.

    Args:
        name: who
        count: how many
    """
    return {"ctx": ctx["x"], "name": name, "count": count, "mode": mode, "ratio": ratio, "tags": tags}


def test_schema_is_derived_from_type_hints_and_docstring() -> None:
    spec = bind(sample, {"x": 1})
    p = spec.parameters
    assert spec.name == "sample" and spec.description == "Do a sample thing."
    assert p["required"] == ["name", "count"]
    assert p["properties"]["name"] == {"type": "string", "description": "who"}
    assert p["properties"]["count"]["type"] == "integer"
    assert p["properties"]["mode"] == {"type": "string", "enum": ["a", "b"], "default": "a"}
    assert p["properties"]["ratio"]["type"] == "number"
    assert p["properties"]["tags"] == {"type": "array", "items": {"type": "string"}}
    assert "ctx" not in p["properties"]
    assert spec.openai()["function"]["parameters"] is p


def test_call_passes_context_and_accepts_null_for_optional() -> None:
    spec = bind(sample, {"x": 7})
    out = spec.call({"name": "n", "count": 2, "ratio": 1, "tags": None})
    assert out == {"ctx": 7, "name": "n", "count": 2, "mode": "a", "ratio": 1, "tags": None}


@pytest.mark.parametrize(("args", "named"), [
    ({"count": 1}, "'name'"),
    ({"name": "n", "count": "3"}, "'count'"),
    ({"name": "n", "count": True}, "'count'"),
    ({"name": "n", "count": 1, "mode": "c"}, "'mode'"),
    ({"name": "n", "count": 1, "colour": "red"}, "'colour'"),
    ({"name": "n", "count": 1, "tags": [1]}, "'tags'"),
    ({"name": None, "count": 1}, "'name'"),
])
def test_bad_arguments_name_the_argument(args: dict[str, Any], named: str) -> None:
    spec = bind(sample, {"x": 1})
    with pytest.raises(UserError) as e:
        spec.call(args)
    assert named in e.value.message and "sample" in e.value.message


def test_non_object_arguments_are_rejected() -> None:
    with pytest.raises(UserError, match="JSON object"):
        bind(sample, {"x": 1}).call(["n", 1])  # type: ignore[arg-type]


def test_unsupported_annotation_fails_at_definition() -> None:
    def bad(x: set[int]) -> None:
        """Bad."""

    with pytest.raises(TypeError):
        tool(bad)
