"""AgentScore task files: the typed task model and a loader that names file, line and field on errors.

A suite file is YAML: `suite`, `domain`, and `tasks:` (id, split, category, instruction, initial state, tools,
checker predicates, oracle script). Predicates are checked against the final state (see checkers.py).
"""

from __future__ import annotations

from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from blacksoil.errors import ConfigError, NotFoundError

Split = Literal["train", "dev", "test"]
SPLITS: tuple[str, ...] = ("train", "dev", "test")
_OPS = ("eq", "ne", "ge", "le", "gt", "lt", "in_", "not_in")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class Predicate(_Strict):
    """One check over the final state or the answer; exactly one subject and (except answers) one operator."""

    path: str | None = None
    """Dotted path into the final state, e.g. machines.M3.state."""
    count: str | None = None
    """Name of a collection in the final state; the subject is how many records match `where`."""
    where: dict[str, Any] = Field(default_factory=dict)
    """Field filters for `count`: a literal, or {in: [...]} / {not_in: [...]} / {ne: x}."""
    answer_contains: str | None = None
    """Text the final answer must contain (case-insensitive)."""
    answer_number: float | None = None
    """A number the final answer must contain, within `tol`."""
    tol: float = 0.0
    """Absolute tolerance of `answer_number`."""
    makespan_quality: float | None = None
    """Job-shop: pass when submitted makespan ÷ best known <= this; partial credit is best ÷ makespan."""
    eq: Any = None
    ne: Any = None
    ge: float | None = None
    le: float | None = None
    gt: float | None = None
    lt: float | None = None
    in_: list[Any] | None = Field(default=None, alias="in")
    not_in: list[Any] | None = None
    weight: float = 1.0
    """Weight of this predicate in the partial credit."""

    @model_validator(mode="after")
    def _one_subject(self) -> Predicate:
        subjects = [k for k in ("path", "count", "answer_contains", "answer_number", "makespan_quality")
                    if getattr(self, k) is not None]
        if len(subjects) != 1:
            raise ValueError(f"a predicate needs exactly one of path, count, answer_contains, answer_number, "
                             f"makespan_quality; got {subjects or 'none'}")
        ops = [o for o in _OPS if o in self.model_fields_set or (o == "in_" and self.in_ is not None)]
        if subjects[0] in ("path", "count") and len(ops) != 1:
            raise ValueError(f"a {subjects[0]} predicate needs exactly one operator of eq, ne, ge, le, gt, lt, in, "
                             f"not_in; got {ops or 'none'}")
        return self

    @property
    def op(self) -> str:
        """The operator this predicate uses."""
        for o in _OPS:
            if o in self.model_fields_set or (o == "in_" and self.in_ is not None):
                return o
        return ""


class OracleStep(_Strict):
    """One step of the scripted solution: a tool call, or the final answer (a str.format template over `steps`)."""

    tool: str | None = None
    args: dict[str, Any] = Field(default_factory=dict)
    answer: str | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> OracleStep:
        if (self.tool is None) == (self.answer is None):
            raise ValueError("an oracle step is either {tool, args} or {answer}")
        return self


class Initial(_Strict):
    """How to build the starting state: a seed and overrides merged into the seeded state."""

    seed: int = 0
    overrides: dict[str, Any] = Field(default_factory=dict)


class Task(_Strict):
    """One AgentScore task."""

    id: str
    split: Split
    category: str
    tags: list[str] = Field(default_factory=list)
    instruction: str
    initial: Initial = Initial()
    tools: list[str]
    max_steps: int = 12
    checker: list[Predicate] = Field(min_length=1)
    oracle: list[OracleStep] = Field(min_length=1)
    domain: str = ""
    suite: str = ""

    @property
    def multi_step(self) -> bool:
        """Whether the scripted solution needs more than one tool call."""
        return sum(1 for s in self.oracle if s.tool) > 1


class SuiteFile(_Strict):
    """A suite: its name, domain and tasks."""

    suite: str
    domain: str
    description: str = ""
    tasks: list[Task] = Field(min_length=1)


_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _node_at(node: yaml.Node, loc: tuple[Any, ...]) -> yaml.Node:
    """The deepest YAML node along a pydantic error location (for its line number)."""
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            nxt = next((v for k, v in node.value if k.value == part), None)
            if nxt is None:
                nxt = next((k for k, _ in node.value if k.value == part), None)
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            nxt = node.value[part]
        else:
            nxt = None
        if nxt is None:
            break
        node = nxt
    return node


def _field_name(loc: tuple[Any, ...], data: Any) -> str:
    parts: list[str] = []
    cur = data
    for p in loc:
        if isinstance(p, int) and isinstance(cur, list) and p < len(cur) and "id" in (cur[p] or {}):
            parts.append(f"[{p}:{cur[p]['id']}]")
        elif isinstance(p, int):
            parts.append(f"[{p}]")
        else:
            parts.append(("." if parts else "") + str(p))
        cur = cur[p] if isinstance(cur, list | dict) and (p in cur if isinstance(cur, dict) else True) else None
    return "".join(parts)


def parse_suite(text: str, filename: str) -> SuiteFile:
    """Parse and validate one suite file; errors name the file, the line and the field."""
    try:
        data = yaml.load(text, Loader=_Loader)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = mark.line + 1 if mark else "?"
        raise ConfigError(f"{filename}:{line}: not valid YAML ({getattr(e, 'problem', e)}); fix the syntax") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{filename}:1: a suite file must be a mapping with suite, domain and tasks")
    try:
        suite = SuiteFile.model_validate(data)
    except ValidationError as e:
        err = e.errors()[0]
        # Nodes (with line marks) are composed only on error: the happy path stays on the fast C loader.
        root = yaml.compose(text, Loader=_Loader)
        assert root is not None  # data parsed to a mapping, so there is a root node
        node = _node_at(root, tuple(err["loc"]))
        field = _field_name(tuple(err["loc"]), data)
        more = f" (+{len(e.errors()) - 1} more)" if len(e.errors()) > 1 else ""
        raise ConfigError(f"{filename}:{node.start_mark.line + 1}: field {field}: {err['msg']}{more}") from None
    ids = [t.id for t in suite.tasks]
    dupes = sorted({i for i in ids if ids.count(i) > 1})
    if dupes:
        raise ConfigError(f"{filename}: duplicate task ids {dupes}; ids must be unique in a suite")
    tasks = [t.model_copy(update={"domain": suite.domain, "suite": suite.suite}) for t in suite.tasks]
    return suite.model_copy(update={"tasks": tasks})


def load_suite_file(path: Path) -> SuiteFile:
    """Read and parse a suite file from disk."""
    return parse_suite(path.read_text(), str(path))


# Shipped suites: name -> (package, file name).
SUITES: dict[str, tuple[str, str]] = {
    "manufacturing": ("blacksoil.factories.manufacturing", "tasks/manufacturing.yaml"),
    "jobshop-quality": ("blacksoil.factories.manufacturing", "tasks/jobshop_quality.yaml"),
    "tools-basic": ("blacksoil.agentscore", "suites/tools_basic.yaml"),
    # Held out from learning by construction: dev and test splits only, no train split.
    "tools-general": ("blacksoil.agentscore", "suites/tools_general.yaml"),
    "embodied": ("blacksoil.factories.embodied", "tasks/embodied.yaml"),
    "healthcare": ("blacksoil.factories.healthcare", "tasks/healthcare.yaml"),
}


def suite_path(name: str) -> Path:
    """Where a shipped suite's file lives."""
    if name not in SUITES:
        raise NotFoundError(f"suite {name!r} does not exist; use one of {', '.join(SUITES)}")
    pkg, rel = SUITES[name]
    return Path(str(resources.files(pkg) / rel))


@lru_cache(maxsize=8)
def load_suite(name: str) -> SuiteFile:
    """A shipped suite, parsed once."""
    return load_suite_file(suite_path(name))


def list_tasks(suite: str, split: str | None = None) -> list[Task]:
    """Tasks of a suite, optionally of one split (train, dev, test; "all" means every split)."""
    if split == "all":
        split = None
    if split is not None and split not in SPLITS:
        raise ConfigError(f"split={split!r} is unknown; use one of {', '.join(SPLITS)} or all")
    return [t for t in load_suite(suite).tasks if split is None or t.split == split]
