"""The eval gate: the decision rule on numbers, the test split refused, and a real scoring run in which a
deliberately damaged adapter (large random lora_B) is rejected with the numbers."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from blacksoil.agentscore import api
from blacksoil.agentscore.config import AgentscoreConfig
from blacksoil.config import load_settings
from blacksoil.errors import ConfigError
from blacksoil.factories.env_settings import EnvSettings
from blacksoil.learning.adapters import AdapterStore
from blacksoil.learning.basemodel import info_from_gguf
from blacksoil.learning.gate import EvalGate, SuiteScore, decide
from blacksoil.learning.randomlora import write_random_peft


def _scores(**passed: tuple[int, int]) -> dict[str, SuiteScore]:
    return {k.replace("_", "-"): SuiteScore(k.replace("_", "-"), p, n) for k, (p, n) in passed.items()}


def test_better_candidate_is_promoted() -> None:
    d = decide(_scores(mfg=(2, 10), tools=(3, 10)), _scores(mfg=(5, 10), tools=(3, 10)), margin=0.05, tolerance=0.02)
    assert d.promote and "promoted" in d.reason
    assert d.deltas["overall"] == pytest.approx(0.15)
    assert d.metrics()["dev_mfg"] == 0.5


def test_suite_regression_beyond_tolerance_is_rejected_with_numbers() -> None:
    d = decide(_scores(mfg=(2, 10), tools=(5, 10)), _scores(mfg=(9, 10), tools=(4, 10)), margin=0.05, tolerance=0.02)
    assert not d.promote
    assert "tools regressed by 0.10" in d.reason and "tools 0.50→0.40" in d.reason


def test_gain_below_margin_or_none_is_rejected() -> None:
    assert not decide(_scores(a=(2, 10)), _scores(a=(2, 10)), margin=0.0, tolerance=0.02).promote
    d = decide(_scores(a=(2, 10)), _scores(a=(3, 10)), margin=0.2, tolerance=0.02)
    assert not d.promote and "below margin 0.20" in d.reason


def test_a_gain_on_a_held_out_suite_alone_does_not_promote() -> None:
    d = decide(_scores(mfg=(2, 10), general=(3, 10)), _scores(mfg=(2, 10), general=(4, 10)), margin=0.0,
               tolerance=0.02, held_out={"general"})
    assert not d.promote and "learned dev completion gain +0.00" in d.reason


def test_a_held_out_regression_still_vetoes() -> None:
    d = decide(_scores(mfg=(2, 10), general=(5, 10)), _scores(mfg=(6, 10), general=(4, 10)), margin=0.0,
               tolerance=0.02, held_out={"general"})
    assert not d.promote and "general regressed" in d.reason


def test_the_gain_is_counted_on_the_learned_suites_only() -> None:
    d = decide(_scores(mfg=(2, 10), general=(5, 10)), _scores(mfg=(4, 10), general=(5, 10)), margin=0.0,
               tolerance=0.02, held_out={"general"})
    assert d.deltas["overall"] == pytest.approx(0.2)


def test_a_regression_is_marked_so_the_learner_does_not_train_on_from_it() -> None:
    d = decide(_scores(mfg=(2, 10), tools=(5, 10)), _scores(mfg=(9, 10), tools=(4, 10)), margin=0.0, tolerance=0.02)
    assert d.regressed


def test_a_candidate_that_is_only_not_better_yet_is_not_marked_regressed() -> None:
    d = decide(_scores(a=(2, 10)), _scores(a=(2, 10)), margin=0.0, tolerance=0.02)
    assert not d.regressed


def test_test_split_is_refused(env_settings: EnvSettings) -> None:
    with pytest.raises(ConfigError, match="never scores the test split"):
        EvalGate(["tools-basic"], tasks_per_suite=1, margin=0.0, tolerance=0.0, split="test",
                 settings=env_settings)


def test_damaged_adapter_is_rejected_by_real_scoring(tmp_path: Path, blacksoil_home: Path,
                                                      env_settings: EnvSettings) -> None:
    """Real scoring of base and candidate on held-out dev tasks through private gateways (the candidate's replica
    really serves the damaged adapter, or `serving` raises). The base model completes these two tools-general dev
    tasks (measured: reminder and booking, greedy decoding), so the damaged candidate is rejected for a real
    regression of the held-out suite, with the numbers in the verdict."""
    info = info_from_gguf()
    store = AdapterStore(blacksoil_home, "smollm2-135m-instruct")
    damaged = store.publish(write_random_peft(tmp_path / "bad", info, b_std=0.5, seed=7), info)
    # A short scoring agent, handed in as its config (no process-wide settings to patch).
    gate = EvalGate(["tools-general"], tasks_per_suite=None, margin=0.0, tolerance=0.02,
                    agent_config=AgentscoreConfig(step_budget=3, max_tokens=64), root=load_settings(),
                    settings=env_settings)
    picked = {"tg-reminder-1", "tg-booking-2"}
    gate.tasks = lambda suite: [t for t in EvalGate.tasks(gate, suite) if t.id in picked]  # type: ignore
    baseline = gate.score(None)
    assert baseline["tools-general"].episodes == 2
    assert baseline["tools-general"].passed >= 1, "the base model no longer completes these dev tasks: pick others"
    decision = gate.judge(baseline, damaged)
    assert not decision.promote
    assert "rejected: tools-general regressed" in decision.reason, decision.reason
    assert decision.candidate["tools-general"].completion < baseline["tools-general"].completion
    assert "partial credit" in decision.reason  # the numbers are in the verdict


def test_held_out_suites_are_scored_on_every_dev_task(env_settings: EnvSettings) -> None:
    gate = EvalGate(["tools-basic"], held_out=["tools-general"], tasks_per_suite=3, margin=0.0, tolerance=0.02,
                    settings=env_settings)
    assert len(gate.tasks("tools-general")) == len(api.list_tasks("tools-general", "dev"))


def test_learned_suites_are_scored_on_the_first_gate_tasks(env_settings: EnvSettings) -> None:
    gate = EvalGate(["tools-basic"], held_out=["tools-general"], tasks_per_suite=3, margin=0.0, tolerance=0.02,
                    settings=env_settings)
    assert [t.id for t in gate.tasks("tools-basic")] == [t.id for t in api.list_tasks("tools-basic", "dev")[:3]]


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two cores to pin one")
def test_the_scoring_engine_runs_on_the_cores_it_is_given(blacksoil_home: Path) -> None:
    from blacksoil.learning.gate import serving

    core = max(os.sched_getaffinity(0))
    root = load_settings(serving={"threads": 1, "slots": 1, "ctx": 512})
    with serving(None, root.serving, root, cores=(core,)) as gw:
        (replica,) = gw.pool.replicas.values()
        pid = replica.engine.pid  # type: ignore[attr-defined]
        assert pid is not None and os.sched_getaffinity(pid) == {core}


def test_a_model_scores_the_same_every_time_one_episode_at_a_time(blacksoil_home: Path,
                                                                   env_settings: EnvSettings) -> None:
    """The gate's scoring protocol (a fresh engine per scoring, one episode at a time) is reproducible: two scorings
    of the base model play the same trajectories, token for token, so a gate verdict is never decoding noise.
    (Episodes batched 4 at once moved the base model's held-out score between 6/20 and 8/20.)"""
    gate = EvalGate(["tools-general"], tasks_per_suite=None, margin=0.0, tolerance=0.02, concurrency=1,
                    agent_config=AgentscoreConfig(step_budget=3, max_tokens=64), root=load_settings(),
                    settings=env_settings)
    picked = {"tg-weather-1", "tg-todo-1", "tg-currency-todo-1"}
    gate.tasks = lambda suite: [t for t in EvalGate.tasks(gate, suite) if t.id in picked]  # type: ignore

    def played() -> dict[str, list[Any]]:
        episodes: list[Any] = []
        gate.score(None, on_episode=episodes.append)
        return {e.task_id: [[s["kind"], s["name"], s["args"], s["result"]] for s in e.trajectory["steps"]]
                for e in episodes}

    first, second = played(), played()
    assert len(first) == 3
    assert first == second
