"""Parallel tool calls, repeated calls and streamed tool-call deltas as pure logic (the engine path is in
test_openai_sdk_tools.py)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from blacksoil.serving.tools import PARALLEL_MAX_CALLS, ToolPlan, answer_body, answered_calls, parse, plan_request
from blacksoil.serving.toolstream import ToolStreamer, scan

WEATHER = {"type": "function", "function": {"name": "get_weather", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}}}}}
TIME = {"type": "function", "function": {"name": "get_time", "parameters": {
    "type": "object", "properties": {"tz": {"type": "string"}}}}}
ASK = [{"role": "user", "content": "Weather in Paris and Tokyo?"}]
ANSWERED = [*ASK, {"role": "assistant", "content": None, "tool_calls": [
    {"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}]},
    {"role": "tool", "tool_call_id": "c1", "content": "Sunny"}]
TWO = json.dumps({"tool_calls": [{"name": "get_weather", "arguments": {"city": "Paris"}},
                                  {"name": "get_weather", "arguments": {"city": "Tokyo"}}]})


def _schema(**kw: Any) -> dict[str, Any]:
    _, body = plan_request({"messages": ASK, "tools": [WEATHER, TIME], **kw})
    return body["response_format"]["json_schema"]["schema"]  # type: ignore[no-any-return]


def _calls(schema: dict[str, Any]) -> dict[str, Any]:
    return next(s for s in schema["anyOf"] if "tool_calls" in s.get("properties", {}))["properties"]["tool_calls"]


def test_parallel_is_the_default_and_bounded() -> None:
    calls = _calls(_schema())
    assert (calls["minItems"], calls["maxItems"]) == (1, PARALLEL_MAX_CALLS)


def test_parallel_calls_keep_each_tools_required_arguments() -> None:
    items = _calls(_schema())["items"]["anyOf"]
    assert [i["properties"]["arguments"]["required"] for i in items] == [["city"], ["tz"]]


def test_parallel_false_allows_exactly_one_call() -> None:
    schema = _schema(parallel_tool_calls=False)
    assert not any("tool_calls" in s.get("properties", {}) for s in schema["anyOf"])


@pytest.mark.parametrize(("choice", "names", "answer"), [
    ("auto", ["get_weather", "get_time"], True), ("required", ["get_weather", "get_time"], False),
    ({"type": "function", "function": {"name": "get_time"}}, ["get_time"], False)])
def test_parallel_works_with_every_tool_choice(choice: Any, names: list[str], answer: bool) -> None:
    schema = _schema(tool_choice=choice)
    offered = [i["properties"]["name"]["const"] for i in _calls(schema)["items"]["anyOf"]]
    assert (offered, any("answer" in s["properties"] for s in schema["anyOf"])) == (names, answer)


def test_parallel_output_becomes_several_tool_calls() -> None:
    parsed = parse(ToolPlan("tools", ("get_weather",)), TWO, "stop")
    args = [json.loads(c["function"]["arguments"]) for c in parsed.message["tool_calls"]]
    assert (parsed.finish_reason, args) == ("tool_calls", [{"city": "Paris"}, {"city": "Tokyo"}])


def test_the_one_call_form_still_parses() -> None:
    parsed = parse(ToolPlan("tools", ("get_weather",)), '{"name": "get_weather", "arguments": {"city": "X"}}', None)
    assert len(parsed.message["tool_calls"]) == 1


def test_a_call_repeated_within_a_turn_is_sent_once() -> None:
    out = json.dumps({"tool_calls": [{"name": "get_weather", "arguments": {"city": "Paris"}}] * 3})
    assert len(parse(ToolPlan("tools", ("get_weather",)), out, "stop").message["tool_calls"]) == 1


def test_answered_calls_are_found_by_tool_call_id() -> None:
    assert answered_calls(ANSWERED) == {("get_weather", '{"city":"Paris"}')}


def test_an_unanswered_call_is_not_counted() -> None:
    assert answered_calls(ANSWERED[:2]) == frozenset()


def test_under_auto_an_answered_call_is_dropped() -> None:
    plan, _ = plan_request({"messages": ANSWERED, "tools": [WEATHER]})
    calls = parse(plan, TWO, "stop").message["tool_calls"]
    assert [json.loads(c["function"]["arguments"]) for c in calls] == [{"city": "Tokyo"}]


def test_only_answered_calls_ask_for_the_answer() -> None:
    plan, _ = plan_request({"messages": ANSWERED, "tools": [WEATHER]})
    assert parse(plan, '{"name": "get_weather", "arguments": {"city": "Paris"}}', "stop").repeats_only


def test_under_required_an_answered_call_is_kept() -> None:
    plan, _ = plan_request({"messages": ANSWERED, "tools": [WEATHER], "tool_choice": "required"})
    assert len(parse(plan, TWO, "stop").message["tool_calls"]) == 2


def test_the_answer_request_only_changes_the_grammar() -> None:
    _, body = plan_request({"messages": ANSWERED, "tools": [WEATHER]})
    again = answer_body(body)
    assert again["messages"] == body["messages"]
    assert list(again["response_format"]["json_schema"]["schema"]["properties"]) == ["answer"]


def _stream(plan: ToolPlan, text: str, step: int = 3) -> tuple[list[dict[str, Any]], ToolStreamer]:
    st = ToolStreamer(plan)
    deltas = [d for i in range(0, len(text), step) for d in st.feed(text[i:i + step])]
    return deltas, st


def _by_index(deltas: list[dict[str, Any]]) -> dict[int, dict[str, str]]:
    out: dict[int, dict[str, str]] = {}
    for d in deltas:
        for tc in d.get("tool_calls", []):
            got = out.setdefault(tc["index"], {"name": "", "arguments": ""})
            got["name"] += tc.get("function", {}).get("name", "")
            got["arguments"] += tc.get("function", {}).get("arguments", "")
    return out


def test_streamed_calls_add_up_to_the_parsed_calls() -> None:
    plan = ToolPlan("tools", ("get_weather",))
    deltas, _ = _stream(plan, TWO)
    got = [(c["name"], json.loads(c["arguments"])) for c in _by_index(deltas).values()]
    assert got == [("get_weather", {"city": "Paris"}), ("get_weather", {"city": "Tokyo"})]


def test_a_streamed_call_sends_id_and_name_before_any_argument() -> None:
    deltas, _ = _stream(ToolPlan("tools", ("get_weather",)), TWO)
    first = deltas[0]["tool_calls"][0]
    assert (first["index"], first["type"], first["function"], first["id"].startswith("call_")) == \
        (0, "function", {"name": "get_weather", "arguments": ""}, True)


def test_arguments_stream_in_several_fragments() -> None:
    deltas, _ = _stream(ToolPlan("tools", ("get_weather",)), TWO)
    fragments = [d for d in deltas if d.get("tool_calls") and "id" not in d["tool_calls"][0]
                 and d["tool_calls"][0]["index"] == 0]
    assert len(fragments) > 2


def test_a_streamed_answered_call_never_reaches_the_client() -> None:
    plan, _ = plan_request({"messages": ANSWERED, "tools": [WEATHER]})
    deltas, _ = _stream(plan, TWO)
    assert [json.loads(c["arguments"]) for c in _by_index(deltas).values()] == [{"city": "Tokyo"}]


def test_a_stream_of_repeats_only_asks_for_the_answer() -> None:
    plan, _ = plan_request({"messages": ANSWERED, "tools": [WEATHER]})
    deltas, st = _stream(plan, '{"tool_calls": [{"name": "get_weather", "arguments": {"city": "Paris"}}]}')
    assert (deltas, st.repeats_only) == ([], True)


def test_an_answer_streams_as_content_with_escapes_decoded() -> None:
    deltas, _ = _stream(ToolPlan("tools", ("get_weather",)), '{"answer": "It is \\"hot\\" \\u00e9t\\u00e9"}', 1)
    assert "".join(d.get("content", "") for d in deltas) == 'It is "hot" été'


def test_the_first_delta_carries_the_role() -> None:
    deltas, _ = _stream(ToolPlan("tools", ("get_weather",)), '{"answer": "yes"}', 1)
    assert deltas[0]["role"] == "assistant"


def test_a_stream_cut_by_max_tokens_says_length() -> None:
    _, st = _stream(ToolPlan("tools", ("get_weather",)), '{"tool_calls": [{"name": "get_weather", "arguments": {"ci')
    assert st.message("length")[1] == "length"


def test_scan_ignores_name_keys_inside_arguments() -> None:
    found = scan('{"name": "f", "arguments": {"name": "g", "x": [1, {"name": "h"}]}}')
    assert (found.calls[0].name, found.calls[0].args_end) == ("f", 65)


def test_an_answer_cut_by_max_tokens_is_its_text_so_far() -> None:
    parsed = parse(ToolPlan("tools", ("get_weather",)), '{"answer": "Sunny and \\"wa', None)
    assert (parsed.message["content"], parsed.finish_reason) == ('Sunny and "wa', "length")


def test_a_fresh_question_opens_with_the_call_list() -> None:
    plan, _ = plan_request({"messages": ASK, "tools": [WEATHER]})
    assert plan.calls_first


def test_after_a_tool_result_the_plain_answer_returns() -> None:
    plan, body = plan_request({"messages": ANSWERED, "tools": [WEATHER]})
    schema = body["response_format"]["json_schema"]["schema"]
    assert (plan.calls_first, any(list(s["properties"]) == ["answer"] for s in schema["anyOf"])) == (False, True)


def test_an_answer_after_an_empty_call_list_is_content() -> None:
    plan, _ = plan_request({"messages": ASK, "tools": [WEATHER]})
    parsed = parse(plan, '{"tool_calls": [], "answer": "Hi"}', "stop")
    assert (parsed.message, parsed.finish_reason) == ({"role": "assistant", "content": "Hi"}, "stop")


def test_an_answer_after_an_empty_call_list_streams_as_content() -> None:
    plan, _ = plan_request({"messages": ASK, "tools": [WEATHER]})
    deltas, _ = _stream(plan, '{"tool_calls": [], "answer": "Hi there"}', 2)
    assert ("".join(d.get("content", "") for d in deltas), _by_index(deltas)) == ("Hi there", {})


def test_a_list_cut_inside_a_later_call_keeps_the_complete_calls() -> None:
    cut = '{"tool_calls": [{"name": "get_weather", "arguments": {"city": "Paris"}}, {"name": "get_weather", "argu'
    parsed = parse(ToolPlan("tools", ("get_weather",)), cut, "length")
    assert [json.loads(c["function"]["arguments"]) for c in parsed.message["tool_calls"]] == [{"city": "Paris"}]
