"""Fixtures of the agent runtime tests: a scripted model server, test tools with a ledger, a runtime factory.

Only the model is scripted (the outside world); policies, approvals, audit, store and tools are the real ones.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))

from agent_helpers import clerk, team  # noqa: E402
from agent_scripted import ScriptedModel, serve  # noqa: E402

from blacksoil.agents.loop import AgentRuntime  # noqa: E402
from blacksoil.agents.model import ModelClient  # noqa: E402
from blacksoil.agents.spec import AgentTeam  # noqa: E402
from blacksoil.agents.store import RunStore  # noqa: E402
from blacksoil.config import settings  # noqa: E402


@pytest.fixture
def ledger(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "ledger.txt"
    monkeypatch.setenv("AGENT_TEST_LEDGER", str(path))
    return path


@pytest.fixture
def store(tmp_path: Path) -> Iterator[RunStore]:
    s = RunStore(tmp_path / "runs.sqlite")
    yield s
    s.close()


@pytest.fixture
def make_runtime(store: RunStore) -> Iterator[Any]:
    """make_runtime(script, team, **config_overrides) -> (runtime, scripted model); all closed at teardown."""
    stack: list[Any] = []

    @contextmanager
    def _serve(model: ScriptedModel) -> Iterator[str]:
        with serve(model) as url:
            yield url

    def make(
        script: Any, the_team: AgentTeam | None = None, sink: Any = None, **cfg: Any
    ) -> tuple[AgentRuntime, ScriptedModel]:
        model = ScriptedModel(script)
        cm = _serve(model)
        url = cm.__enter__()
        stack.append(cm)
        config = settings().agents.model_copy(update=cfg)
        rt = AgentRuntime(the_team or team(clerk()), model=ModelClient(url, retries=0), store=store, config=config,
                          sink=sink)  # fmt: skip
        stack.append(rt)
        return rt, model

    yield make
    for obj in reversed(stack):
        if isinstance(obj, AgentRuntime):
            obj.close()
        else:
            obj.__exit__(None, None, None)
