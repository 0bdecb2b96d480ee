"""Streams constrained tool-call output as OpenAI `tool_calls` deltas while the engine produces it.

The grammar (tools.py) makes the output one of `{"tool_calls": [{"name": ..., "arguments": {...}}, ...]}`,
`{"name": ..., "arguments": {...}}` or `{"answer": "..."}`. Each time text arrives the partial JSON is scanned
again (outputs are a few hundred characters) and what became known since the last piece is sent: a call's id,
type and name as soon as its name is complete, then its arguments as raw fragments, or the answer's characters
as `content`. A call that could turn out to be a repeat (same tool as an earlier call of the turn, or as an
answered one under `tool_choice: auto`) is held until its arguments are complete, so a dropped call never
reaches the client.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from blacksoil.serving.tools import CallFilter, ToolPlan, decoded_prefix, new_call_id

_WS = " \t\r\n"


@dataclass
class _Slot:
    """What the scan found of one call."""

    name: str | None = None
    args_start: int | None = None
    args_end: int | None = None


@dataclass
class _Scan:
    calls: dict[int, _Slot] = field(default_factory=dict)
    answer_start: int | None = None
    answer_end: int | None = None


@dataclass
class _Frame:
    kind: str  # "obj" | "arr"
    path: tuple[Any, ...]
    key: str | None = None
    index: int = 0
    expect_key: bool = True


def _call_index(path: tuple[Any, ...]) -> int | None:
    """Which call a value path belongs to: ("tool_calls", i) or the root of the one-call form."""
    if len(path) == 2 and path[0] == "tool_calls" and isinstance(path[1], int):
        return path[1]
    if path == ():
        return 0
    return None


def scan(text: str) -> _Scan:
    """Where the calls' names and arguments and the answer string lie in (partial) output text."""
    out = _Scan()
    stack: list[_Frame] = []
    i, n = 0, len(text)

    def value_path() -> tuple[Any, ...] | None:
        if not stack:
            return ()
        top = stack[-1]
        return top.path + ((top.key,) if top.kind == "obj" else (top.index,))

    while i < n:
        c = text[i]
        if c == '"':
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            closed = j < n
            top = stack[-1] if stack else None
            if top is not None and top.kind == "obj" and top.expect_key:
                if not closed:
                    break
                top.key = json.loads(text[i:j + 1])
            else:
                path = value_path()
                if path == ("answer",):
                    out.answer_start, out.answer_end = i + 1, (j if closed else None)
                elif path is not None and path[-1:] == ("name",) and closed:
                    idx = _call_index(path[:-1])
                    if idx is not None:
                        out.calls.setdefault(idx, _Slot()).name = json.loads(text[i:j + 1])
            i = j + 1
            continue
        if c in "{[":
            path = value_path()
            if path is not None and path[-1:] == ("arguments",) and c == "{":
                idx = _call_index(path[:-1])
                if idx is not None:
                    out.calls.setdefault(idx, _Slot()).args_start = i
            stack.append(_Frame("obj" if c == "{" else "arr", path or ()))
        elif c in "}]" and stack:
            frame = stack.pop()
            if frame.path[-1:] == ("arguments",):
                idx = _call_index(frame.path[:-1])
                if idx is not None and idx in out.calls:
                    out.calls[idx].args_end = i + 1
        elif c == ":" and stack:
            stack[-1].expect_key = False
        elif c == "," and stack:
            top = stack[-1]
            if top.kind == "obj":
                top.expect_key = True
            else:
                top.index += 1
        i += 1
    return out


class ToolStreamer:
    """Turns the growing output text of one tools-mode request into OpenAI chunk deltas."""

    def __init__(self, plan: ToolPlan) -> None:
        self.plan = plan
        self.text = ""
        self.filter = CallFilter(plan)
        self.sent_answer = 0
        self.calls: list[dict[str, Any]] = []
        """Calls handed to the client, in the order sent (their index is their position)."""
        self._out: dict[int, int] = {}  # scan index -> index in self.calls
        self._sent_args: dict[int, int] = {}  # scan index -> characters of arguments sent
        self._judged: set[int] = set()  # scan indexes whose call was kept or dropped
        self._held: set[int] = set()  # scan indexes that stream only once complete
        self._started = False

    def feed(self, piece: str) -> list[dict[str, Any]]:
        """Deltas made known by `piece` (each a chunk's `delta`)."""
        self.text += piece
        found = scan(self.text)
        deltas: list[dict[str, Any]] = []
        if found.answer_start is not None:
            raw = self.text[found.answer_start:found.answer_end]
            done = decoded_prefix(raw)
            if len(done) > self.sent_answer:
                deltas.append({"content": done[self.sent_answer:]})
                self.sent_answer = len(done)
        for idx in sorted(found.calls):
            deltas += self._call_deltas(idx, found.calls[idx])
        if deltas and not self._started:
            self._started = True
            deltas[0] = {"role": "assistant", **deltas[0]}
        return deltas

    def _call_deltas(self, idx: int, slot: _Slot) -> list[dict[str, Any]]:
        if slot.name is None or slot.name not in self.plan.names or (idx in self._judged and idx not in self._out):
            return []
        complete = slot.args_start is not None and slot.args_end is not None
        if idx not in self._out:
            if idx not in self._held and self.filter.may_repeat(slot.name):
                self._held.add(idx)
            if idx in self._held and not complete:
                return []
            if complete:
                self._judged.add(idx)
                args = json.loads(self.text[slot.args_start:slot.args_end])
                if not self.filter.keep(slot.name, args):
                    return []
            self._out[idx] = len(self.calls)
            self.calls.append({"id": new_call_id(), "type": "function", "function": {"name": slot.name,
                                                                                       "arguments": ""}})
            self._sent_args[idx] = 0
            first = self.calls[-1]
            deltas = [{"tool_calls": [{"index": self._out[idx], "id": first["id"], "type": "function",
                                       "function": {"name": slot.name, "arguments": ""}}]}]
        else:
            deltas = []
        if slot.args_start is not None:
            if complete and idx not in self._judged:
                # Streamed early (no possible repeat): it still counts for the turn's own repeats.
                self._judged.add(idx)
                self.filter.keep(slot.name, json.loads(self.text[slot.args_start:slot.args_end]))
            end = slot.args_end if slot.args_end is not None else len(self.text)
            frag = self.text[slot.args_start + self._sent_args[idx]:end]
            if frag:
                self._sent_args[idx] += len(frag)
                self.calls[self._out[idx]]["function"]["arguments"] += frag
                deltas.append({"tool_calls": [{"index": self._out[idx], "function": {"arguments": frag}}]})
        return deltas

    @property
    def repeats_only(self) -> bool:
        """The turn held calls, every one of them already answered: the answer must be asked for."""
        return not self.calls and self.filter.dropped > 0 and self.sent_answer == 0

    def message(self, finish_reason: str | None) -> tuple[dict[str, Any], str | None]:
        """The assistant message the stream amounted to, and its finish_reason."""
        if self.calls:
            calls = [{**c, "function": {**c["function"], "arguments": _compact(c["function"]["arguments"])}}
                     for c in self.calls]
            # Cut by max_tokens, a call's arguments are incomplete: say so rather than claim a finished call.
            return {"role": "assistant", "content": None, "tool_calls": calls}, \
                finish_reason if finish_reason == "length" else "tool_calls"
        if self.sent_answer or scan(self.text).answer_end is not None:
            found = scan(self.text)
            return {"role": "assistant",
                    "content": decoded_prefix(self.text[found.answer_start:found.answer_end])}, finish_reason
        return {"role": "assistant", "content": self.text.strip(_WS) or None}, finish_reason or "length"

    def leftover(self) -> list[dict[str, Any]]:
        """Text the scan never recognised (output cut by max_tokens before any call or answer): sent as content."""
        if self.calls or self.sent_answer or scan(self.text).answer_start is not None or not self.text:
            return []
        self._started = True
        return [{"role": "assistant", "content": self.text}]


def _compact(arguments: str) -> str:
    try:
        return json.dumps(json.loads(arguments))
    except json.JSONDecodeError:
        return arguments
