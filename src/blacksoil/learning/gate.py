"""The eval gate: score a candidate adapter on AgentScore's dev split and promote it only if it is better.

Promotion needs the learned suites' overall dev completion up by at least `margin` (and above zero) with no
suite, held-out suites included, down by more than `tolerance`; a rejection carries the numbers. The test split
is refused here: it is never used to learn.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from blacksoil.agentscore.config import AgentscoreConfig
from blacksoil.contracts import AdapterVersion, RunningGateway
from blacksoil.errors import ConfigError
from blacksoil.factories.env_settings import EnvSettings
from blacksoil.serving.config import ServingConfig

EpisodeCallback = Callable[[Any], None]


@dataclass(frozen=True)
class SuiteScore:
    """Completion of one suite on one split."""

    suite: str
    passed: int
    episodes: int
    reward: float = 0.0
    """Sum of partial credit (checker reward 0..1) over the episodes."""

    @property
    def completion(self) -> float:
        """Share of episodes that passed."""
        return self.passed / self.episodes if self.episodes else 0.0

    @property
    def partial(self) -> float:
        """Mean partial credit per episode."""
        return self.reward / self.episodes if self.episodes else 0.0


@dataclass(frozen=True)
class GateDecision:
    """The verdict and the numbers behind it."""

    promote: bool
    reason: str
    baseline: dict[str, SuiteScore]
    candidate: dict[str, SuiteScore]
    deltas: dict[str, float] = field(default_factory=dict)
    regressed: bool = False
    """A suite fell by more than the tolerance (not merely "no gain"): the learner does not train on from it."""

    def metrics(self) -> dict[str, float]:
        """Flat numbers for AdapterVersion.metrics: dev completion per suite and overall."""
        out = {f"dev_{s}": round(v.completion, 4) for s, v in self.candidate.items()}
        out |= {f"dev_partial_{s}": round(v.partial, 4) for s, v in self.candidate.items()}
        out["dev_overall"] = round(overall(self.candidate), 4)
        return out


def overall(scores: dict[str, SuiteScore]) -> float:
    """Episode-weighted completion across suites."""
    n = sum(s.episodes for s in scores.values())
    return sum(s.passed for s in scores.values()) / n if n else 0.0


def decide(baseline: dict[str, SuiteScore], candidate: dict[str, SuiteScore], margin: float,
           tolerance: float, held_out: Collection[str] = ()) -> GateDecision:
    """Pure decision rule (see the module docstring). `held_out` suites can only veto (a regression rejects) and
    never count toward the gain: a candidate that learned nothing is not promoted for a held-out suite's noise
    (measured: held-out dev 0.3 → 0.4 promoted a candidate that passed 4 of 20 held-out test tasks, base 8)."""
    if set(baseline) != set(candidate):
        raise ConfigError(f"baseline suites {sorted(baseline)} and candidate suites {sorted(candidate)} differ; "
                          "score both on the same suites")
    deltas = {s: candidate[s].completion - baseline[s].completion for s in baseline}
    learned = [s for s in baseline if s not in held_out] or list(baseline)
    gain = overall({s: candidate[s] for s in learned}) - overall({s: baseline[s] for s in learned})
    deltas["overall"] = gain
    regressed = {s: d for s, d in deltas.items() if s != "overall" and d < -tolerance - 1e-9}
    nums = ", ".join(f"{s} {baseline[s].completion:.2f}→{candidate[s].completion:.2f} (partial credit "
                     f"{baseline[s].partial:.2f}→{candidate[s].partial:.2f})" for s in sorted(baseline))
    if regressed:
        worst = min(regressed, key=lambda s: regressed[s])
        return GateDecision(False, f"rejected: {worst} regressed by {-regressed[worst]:.2f} (> tolerance "
                                   f"{tolerance:.2f}); {nums}", baseline, candidate, deltas, regressed=True)
    if gain <= 0 or gain < margin - 1e-9:
        return GateDecision(False, f"rejected: learned dev completion gain {gain:+.2f} below margin {margin:.2f} "
                                   f"(must also be > 0); {nums}", baseline, candidate, deltas)
    return GateDecision(True, f"promoted: learned dev completion {gain:+.2f}; {nums}", baseline, candidate, deltas)


class EvalGate:
    """Scores the served model or a candidate on dev tasks through a gateway and applies `decide`."""

    def __init__(self, suites: Sequence[str], *, tasks_per_suite: int | None, margin: float, tolerance: float,
                 split: str = "dev", serving_cfg: ServingConfig | None = None, concurrency: int = 1,
                 agent_config: AgentscoreConfig | None = None, api_key: str | None = None, root: Any = None,
                 settings: EnvSettings, held_out: Sequence[str] = ()) -> None:
        """`serving_cfg`: the scoring gateways' engines; `agent_config` and `api_key`: the scoring agent's limits and
        key; `root`: the root settings handed to serving.launch.gateway (required before the learner starts one);
        `settings`: the settings of the environments the tasks run in; `held_out`: suites never learned from, scored
        on every dev task (`tasks_per_suite` applies to the others)."""
        if split == "test":
            raise ConfigError("the eval gate never scores the test split (it is held out from learning); use dev")
        self.suites, self.split, self.serving_cfg = list(dict.fromkeys((*suites, *held_out))), split, serving_cfg
        self.held_out = frozenset(held_out)
        self.agent_config, self.api_key, self.root, self.settings = agent_config, api_key, root, settings
        self.concurrency = concurrency
        self.tasks_per_suite, self.margin, self.tolerance = tasks_per_suite, margin, tolerance

    def tasks(self, suite: str) -> list[Any]:
        """The dev tasks of a suite the gate scores (a fixed prefix, so every candidate sees the same ones).

        A held-out suite is scored on all of them: its regression check is the gate's only guard against a candidate
        that forgets general skills, and with 3 tasks one task flipped by decoding noise decided it (measured: the
        base model's own score moved by a third between two runs)."""
        from blacksoil.agentscore import api

        tasks = api.list_tasks(suite, self.split)
        return tasks[: self.tasks_per_suite] if self.tasks_per_suite and suite not in self.held_out else tasks

    def score(self, adapter: AdapterVersion | None, on_episode: EpisodeCallback | None = None,
              cores: tuple[int, ...] = ()) -> dict[str, SuiteScore]:
        """Completion per suite of the base model (None) or of `adapter`, on a private gateway whose engine runs on
        `cores` (() = wherever the OS puts it)."""
        return score_suites(adapter, {s: self.tasks(s) for s in self.suites}, self.serving_cfg, self.root,
                            agent_config=self.agent_config, api_key=self.api_key, settings=self.settings,
                            concurrency=self.concurrency, cores=cores,
                            on_episode=None if on_episode is None else lambda suite: on_episode)

    def judge(self, baseline: dict[str, SuiteScore], candidate: AdapterVersion,
              on_episode: EpisodeCallback | None = None, cores: tuple[int, ...] = ()) -> GateDecision:
        """Score `candidate` (on `cores`) and compare it with the baseline scores of what is served now."""
        return decide(baseline, self.score(candidate, on_episode, cores), self.margin, self.tolerance, self.held_out)


def score_suites(adapter: AdapterVersion | None, tasks: Mapping[str, Sequence[Any]], cfg: ServingConfig | None,
                 root: Any, *, agent_config: AgentscoreConfig | None, api_key: str | None, settings: EnvSettings,
                 concurrency: int = 1, cores: tuple[int, ...] = (),
                 on_episode: Callable[[str], EpisodeCallback | None] | None = None) -> dict[str, SuiteScore]:
    """Completion per suite of the base model (None) or `adapter` on `tasks` (suite → tasks, any split), played
    by the LLM agent on a fresh private gateway (`serving`): the gate's dev scores and the demo's test scores.

    `on_episode(suite)` gives the callback for that suite's episodes (a progress bar per suite)."""
    from blacksoil.agentscore import api

    out = {}
    with serving(adapter, cfg, root, cores) as gw:
        agent = api.make_agent("llm", base_url=gw.openai_base_url, model=gw.model, config=agent_config,
                               api_key=api_key)
        for suite, suite_tasks in tasks.items():
            eps = api.run_tasks(agent, list(suite_tasks), k=1, on_episode=on_episode(suite) if on_episode else None,
                                concurrency=concurrency, settings=settings)
            out[suite] = SuiteScore(suite, sum(e.passed for e in eps), len(eps), sum(e.reward for e in eps))
    return out


@contextlib.contextmanager
def serving(adapter: AdapterVersion | None, cfg: ServingConfig | None = None,
            root: Any = None, cores: tuple[int, ...] = ()) -> Iterator[RunningGateway]:
    """A private one-replica gateway serving the base model or `adapter` (for scoring, never for users).

    `cfg` is a ServingConfig (None = the root settings' own); `root` the root settings the gateway starts with;
    `cores` where its engine runs (() = wherever the OS puts it).
    """
    from blacksoil.serving.launch import gateway

    with gateway(root, replicas=1, sink=_NullSink(), serving=cfg, cores=cores) as gw:
        if adapter is not None:
            old = [r.name for r in gw.pool.info()]
            green = gw.pool.start_replica(adapter, cores=cores)
            gw.pool.route_new_sessions_to(green.name)
            for name in old:
                gw.pool.stop_replica(name)
            served = {i.adapter_version for i in gw.pool.info()}
            if served != {adapter.version}:
                raise ConfigError(f"scoring gateway serves {served}, not {adapter.version!r}; check the adapter file")
        yield gw


class _NullSink:
    """Scoring traffic is not experience to learn from."""

    def emit(self, event: Any) -> None:
        pass

    def close(self) -> None:
        pass
