"""Request bodies the gateway accepts: the OpenAI shapes, allow-listed field by field.

A top-level field that is not named here is a 400 naming it: engine-specific fields (`n_predict`, `id_slot`,
`lora`, `slot_id`, prompt lists, `n` > 1, ...) used to pass straight to llama.cpp and multiply the work done
behind one admission, or override `max_tokens`. A few OpenAI fields the engine has no use for are accepted and
dropped on purpose (DROPPED). Unknown fields inside a message, content part or tool call are ignored (clients
echo back assistant messages with extra keys); they never reach the engine or the store.

FastAPI turns a bad field into a 400 naming it, in the one error shape (see app.py); blacksoil.apibase checks
depth, text and numbers of the whole body first.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import ConfigDict, Field, field_validator, model_validator

from blacksoil.apibase import ApiModel, RequestBody

DROPPED = ("metadata", "store", "service_tier", "parallel_tool_calls", "n")
"""Accepted OpenAI fields that never reach the engine (`n` is 1 by the time it is dropped;
`parallel_tool_calls` has shaped the tool grammar by then, serving/tools.py)."""


class _Lenient(ApiModel):
    # Message parts: unknown keys are dropped (clients echo assistant messages with extra keys).
    model_config = ConfigDict(extra="ignore", allow_inf_nan=False)


class ContentPart(_Lenient):
    """One part of a message's content; only text parts reach the model."""

    type: str = Field(min_length=1, max_length=64)
    text: str | None = None

    @model_validator(mode="after")
    def _text_part(self) -> ContentPart:
        if self.type == "text" and self.text is None:
            raise ValueError("a part of type 'text' needs a string `text`")
        return self


class FunctionCall(_Lenient):
    """The function an assistant message called."""

    name: str = Field(min_length=1, max_length=256)
    arguments: str | dict[str, Any] = "{}"


class ToolCall(_Lenient):
    """One tool call of an assistant message."""

    id: str | None = Field(default=None, max_length=256)
    type: Literal["function"] = "function"
    function: FunctionCall


class Message(_Lenient):
    """One chat message."""

    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[ContentPart] | None = None
    name: str | None = Field(default=None, max_length=256)
    tool_calls: list[ToolCall] | None = None
    tool_call_id: str | None = Field(default=None, max_length=256)


class FunctionDef(ApiModel):
    """A callable function offered to the model."""

    name: str = Field(min_length=1, max_length=64)
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class ToolDef(ApiModel):
    """`tools[i]`: a function tool."""

    type: Literal["function"] = "function"
    function: FunctionDef


class _Common(RequestBody):
    model: str | None = Field(default=None, max_length=256)
    stream: bool = False
    stream_options: dict[str, bool] | None = None
    max_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    top_p: float | None = Field(default=None, gt=0.0, le=1.0)
    n: int | None = Field(default=None, ge=1, le=1)
    """Only one choice per request: more would multiply the work behind one admission."""
    stop: str | list[str] | None = Field(default=None, max_length=4)
    seed: int | None = Field(default=None, ge=-(2**31), lt=2**32)
    presence_penalty: float | None = Field(default=None, ge=-2.0, le=2.0)
    frequency_penalty: float | None = Field(default=None, ge=-2.0, le=2.0)
    logit_bias: dict[str, float] | None = Field(default=None, max_length=300)
    user: str | None = Field(default=None, max_length=256)
    metadata: dict[str, str] | None = None
    store: bool | None = None
    service_tier: str | None = Field(default=None, max_length=64)
    priority: int | None = Field(default=None, ge=-1000, le=1000)
    """blacksoil extension: higher is served first (also header X-Priority)."""
    # llama.cpp sampling extensions kept because they cannot enlarge the work (max_tokens still bounds it).
    ignore_eos: bool | None = None
    top_k: int | None = Field(default=None, ge=0, le=1000)
    min_p: float | None = Field(default=None, ge=0.0, le=1.0)
    repeat_penalty: float | None = Field(default=None, ge=0.0, le=10.0)


class ChatRequest(_Common):
    """POST /v1/chat/completions."""

    messages: list[Message] = Field(min_length=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    tools: list[ToolDef] | None = None
    tool_choice: Literal["auto", "none", "required"] | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    """Several tool calls in one turn (None = true, as in OpenAI's API); shapes the grammar, never sent on."""
    response_format: dict[str, Any] | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = Field(default=None, ge=0, le=20)


class CompletionRequest(_Common):
    """POST /v1/completions."""

    prompt: str = Field(min_length=1)
    """One prompt; a list holding exactly one string is accepted (more would be a batch behind one admission)."""
    logprobs: int | None = Field(default=None, ge=0, le=20)

    @field_validator("prompt", mode="before")
    @classmethod
    def _one_prompt(cls, v: Any) -> Any:
        if isinstance(v, list):
            if len(v) != 1 or not isinstance(v[0], str):
                raise ValueError("send one prompt string (a list of prompts or of token ids is not supported)")
            return v[0]
        return v
