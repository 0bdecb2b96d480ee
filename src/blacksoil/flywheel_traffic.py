"""Outside traffic against a running platform, for `blacksoil bench flywheel` and the scheduled-learner test.

Chat clients (optionally streamed, optionally rating each answer through POST /v1/feedback) and agents attempting
AgentScore train tasks whose checkers' rewards land on the attempt's session. Every outcome is counted: the bench's
`failed_requests` and the test's "no request failed" read the same Tally.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["PII_CHAT_MARK", "PLANTED_PII", "AgentLoad", "ChatLoad", "ClientSpec", "PiiPrompts", "Tally", "post_json",
           "rate_answer", "rate_question"]

# Values the anonymizer's tests plant (tests/experience): none of them may reach a decoded training batch.
PLANTED_PII = ("anna.berg@northwind.com", "+1 415-867-2291", "4111 1111 1111 1111", "anna.smith@gmail.com",
               "+1 415 555 0134")


PII_CHAT_MARK = "leaking oil"
"""Words every PII-carrying chat holds, to find its rows among the trained ones."""


class PiiPrompts:
    """Prompts carrying two planted values each, for ClientSpec.prompt; counts what it made."""

    def __init__(self) -> None:
        self.sent = 0

    def __call__(self, i: int, n: int) -> str:
        self.sent += 1
        a, b = PLANTED_PII[n % len(PLANTED_PII)], PLANTED_PII[(n + 1) % len(PLANTED_PII)]
        return f"Customer {a} (or {b}) reports press {n % 7} {PII_CHAT_MARK}. Draft a one-line reply."


def _strokes(n: int) -> int:
    return 20 + (n * 7) % 60


def rate_question(i: int, n: int) -> str:
    """A question whose answer a user can check (ClientSpec.prompt)."""
    return (f"Press {n % 9 + 1} runs at {_strokes(n)} strokes per minute. How many strokes per minute does press "
            f"{n % 9 + 1} run at? Answer with the number only.")


def rate_answer(i: int, n: int, answer: str) -> float:
    """What a user checking the answer to rate_question rates it (ClientSpec.rating): 1 when it names the rate."""
    return 1.0 if str(_strokes(n)) in answer else 0.0


@dataclass
class Tally:
    """Outcomes of every request a load sent; token gaps of streamed answers, for the ITL windows."""

    ok: int = 0
    failures: list[str] = field(default_factory=list)
    gaps: list[tuple[float, float]] = field(default_factory=list)
    """(monotonic time of a token, gap since the previous token of the same stream)."""
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, failure: str | None, gaps: list[tuple[float, float]] | None = None) -> None:
        """One request's outcome: None = it succeeded, else what failed."""
        with self.lock:
            self.gaps += gaps or []
            if failure is None:
                self.ok += 1
            else:
                self.failures.append(failure)


def _machine_part(i: int, n: int) -> str:
    return f"Client {i}, request {n}: name a machine part."


@dataclass(frozen=True)
class ClientSpec:
    """What each client of a ChatLoad sends."""

    api_key: str
    prompt: Callable[[int, int], str] = _machine_part
    """The user message of client i's request n."""
    stream: bool = False
    max_tokens: int = 16
    think_s: float = 0.0
    """Pause after each request (keeps a steady load under one replica's worth)."""
    rating: Callable[[int, int, str], float | None] | None = None
    """Feedback on client i's request n given its answer, posted on the request's session (None = no rating); each
    request is a session of its own."""


class ChatLoad:
    """`clients` threads sending chats back to back; only the first `active` send. Every outcome is kept."""

    def __init__(self, gw: Any, spec: ClientSpec, clients: int, tally: Tally | None = None, name: str = "c") -> None:
        self.gw, self.spec, self.name = gw, spec, name
        self.tally = tally if tally is not None else Tally()
        self.stop = threading.Event()
        self.active = clients
        self.threads = [threading.Thread(target=self._client, args=(i,), daemon=True) for i in range(clients)]

    @property
    def ok(self) -> int:
        return self.tally.ok

    @property
    def failures(self) -> list[str]:
        return self.tally.failures

    def _client(self, i: int) -> None:
        import httpx

        spec, run = self.spec, uuid.uuid4().hex[:6]
        with httpx.Client(timeout=300, headers={"Authorization": f"Bearer {spec.api_key}"}) as c:
            n = 0
            while not self.stop.is_set():
                if i >= self.active:
                    time.sleep(0.05)
                    continue
                session = f"{self.name}-{run}-{i}-{n}"
                body = {"model": self.gw.model, "max_tokens": spec.max_tokens, "user": session, "stream": spec.stream,
                        "messages": [{"role": "user", "content": spec.prompt(i, n)}]}
                failure, gaps, answer = _chat(c, self.gw.openai_base_url, body)
                self.tally.add(failure, gaps)
                value = spec.rating(i, n, answer) if spec.rating is not None and failure is None else None
                if value is not None:
                    self.tally.add(post_json(c, self.gw.url + "/v1/feedback", {"session_id": session, "value": value}))
                n += 1
                self.stop.wait(spec.think_s)

    def __enter__(self) -> ChatLoad:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(timeout=120)


Outcome = tuple[str | None, list[tuple[float, float]], str]
"""(None or what failed, token gaps when streamed, the answer's text)."""


def _chat(c: Any, base_url: str, body: dict[str, Any]) -> Outcome:
    """One chat completion, streamed or not."""
    import json

    import httpx

    url = base_url + "/chat/completions"
    try:
        if not body.get("stream"):
            r = c.post(url, json=body)
            if r.status_code != 200:
                return f"{r.status_code} {r.text[:200]}", [], ""
            return None, [], r.json()["choices"][0]["message"].get("content") or ""
        gaps: list[tuple[float, float]] = []
        text: list[str] = []
        last, done, err = None, False, None
        with c.stream("POST", url, json=body) as r:
            if r.status_code != 200:
                return f"{r.status_code} {r.read()[:200]!r}", [], ""
            for line in r.iter_lines():
                if line == "data: [DONE]":
                    done = True
                    break
                if not line.startswith("data: "):
                    continue
                chunk = json.loads(line[6:])
                if "error" in chunk:
                    err = str(chunk["error"])[:200]
                elif chunk.get("choices") and (piece := (chunk["choices"][0].get("delta") or {}).get("content")):
                    now = time.monotonic()
                    if last is not None:
                        gaps.append((now, now - last))
                    last = now
                    text.append(piece)
    except (httpx.HTTPError, ValueError, KeyError, IndexError) as e:  # ValueError: a body that is not JSON
        return repr(e), [], ""
    return (err or (None if done else "stream ended without [DONE]")), gaps, "".join(text)


def post_json(c: Any, url: str, body: dict[str, Any]) -> str | None:
    """POST `body` with client `c`: None when answered 200, else what failed."""
    import httpx

    try:
        r = c.post(url, json=body)
    except httpx.HTTPError as e:
        return repr(e)
    return None if r.status_code == 200 else f"{r.status_code} {r.text[:200]}"


class AgentLoad:
    """One outside agent of a tenant attempting train tasks one after another; each checker's reward is stored on the
    attempt's session (agentscore.rewards.RewardRecorder), as learning.collect does for the learner's practice."""

    def __init__(self, gw: Any, s: Any, api_key: str, tenant: str, suites: tuple[str, ...], tally: Tally,
                 think_s: float = 2.0) -> None:
        from blacksoil.agentscore import api
        from blacksoil.agentscore.rewards import RewardRecorder

        self.gw, self.s, self.api_key, self.tally, self.think_s = gw, s, api_key, tally, think_s
        self.tasks = [t for suite in suites for t in api.list_tasks(suite, "train")]
        self.rewards = RewardRecorder(s.home, s.experience, tenant)
        self.env = api.EnvSettings.from_settings(s)
        self.stop = threading.Event()
        self.attempts = self.passed = 0
        self.thread = threading.Thread(target=self._run, daemon=True, name="bench-agent")

    def _run(self) -> None:
        from blacksoil.agentscore import api
        from blacksoil.learning.collect import session_agent

        n = 0
        while not self.stop.is_set():
            task = self.tasks[n % len(self.tasks)]
            sid = f"agent-{task.id}-{uuid.uuid4().hex[:8]}"
            # At the agent's configured temperature (greedy by default), as a deployed agent runs.
            agent = session_agent(self.gw.openai_base_url, self.gw.model, sid, self.s.agentscore.temperature,
                                  config=self.s.agentscore, api_key=self.api_key)
            ep = api.run_task(agent, task, n, settings=self.env)
            self.tally.add(ep.error)
            self.rewards.record(sid, suite=task.suite, task_id=task.id, reward=round(float(ep.reward), 6),
                                passed=bool(ep.passed), trial=n, policy_violations=0, split=task.split)
            self.attempts, self.passed, n = self.attempts + 1, self.passed + bool(ep.passed), n + 1
            self.stop.wait(self.think_s)

    def __enter__(self) -> AgentLoad:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(timeout=300)
