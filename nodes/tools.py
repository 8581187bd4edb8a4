"""Tool turns for models that are not offered the tools: the proposers (always) and an answer
model in a run without tools.

Only the aggregator (and its fallback) may call tools, so only they see the conversation's
tool calls natively. Everyone else advises on the same conversation with each tool call and
each tool result written out as plain text: no tool schema, no ``tool_calls`` field, and no
``tool`` message without the call it answers (strict providers reject such orphans).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, AnyMessage, HumanMessage, ToolMessage

from langgraph_moa.errors import InvalidInputError, ToolCallingUnsupportedError
from langgraph_moa.graphs.spec import MoASpec, ModelSpec
from langgraph_moa.graphs.state import Context
from langgraph_moa.models.providers import NO_TOOL_CALLING, OPENAI_COMPATIBLE

TOOL_CALL_LINE = "[called tool {name} with {args}]"
TOOL_RESULT_LINE = "[tool {name} returned{status}]: {content}"


def has_tool_turns(messages: list[AnyMessage]) -> bool:
    """Whether the conversation holds a tool call or a tool result."""
    return any(
        m.type == "tool" or (isinstance(m, AIMessage) and (m.tool_calls or m.invalid_tool_calls))
        for m in messages
    )


def _call_lines(message: AIMessage) -> list[str]:
    lines = [
        TOOL_CALL_LINE.format(
            name=call["name"], args=json.dumps(call["args"], ensure_ascii=False, sort_keys=True)
        )
        for call in message.tool_calls
    ]
    lines += [
        TOOL_CALL_LINE.format(name=call.get("name") or "?", args=call.get("args") or "")
        for call in message.invalid_tool_calls
    ]
    return lines


def _result_line(message: ToolMessage, names: dict[str, str]) -> str:
    name = message.name or names.get(message.tool_call_id) or "?"
    status = " an error" if message.status == "error" else ""
    return TOOL_RESULT_LINE.format(name=name, status=status, content=message.text)


def tool_turns_as_text(messages: list[AnyMessage]) -> list[AnyMessage]:
    """The conversation with tool calls and results as plain text turns.

    An assistant turn that called tools keeps its text and lists its calls; the results that
    follow it become one user turn (a tool result is new information from outside, as a user's
    message is), so turns still alternate and the conversation may end on a result.
    """
    if not has_tool_turns(messages):
        return messages
    out: list[AnyMessage] = []
    names: dict[str, str] = {}
    results: list[str] = []
    for message in messages:
        if isinstance(message, ToolMessage):
            results.append(_result_line(message, names))
            continue
        if results:
            out.append(HumanMessage("\n".join(results)))
            results = []
        if isinstance(message, AIMessage) and (message.tool_calls or message.invalid_tool_calls):
            names.update({cid: c["name"] for c in message.tool_calls if (cid := c.get("id"))})
            text = "\n".join(filter(None, [message.text.strip(), *_call_lines(message)]))
            out.append(AIMessage(text, name=message.name, id=message.id))
        else:
            out.append(message)
    if results:
        out.append(HumanMessage("\n".join(results)))
    return out


def can_call_tools(model: ModelSpec, chat_models: Mapping[str, BaseChatModel]) -> bool:
    """Whether ``model``'s chat model can be bound to tools (a given instance: whether its
    class implements ``bind_tools``; else the provider's fact)."""
    chat = chat_models.get(str(model.name))
    if chat is not None:
        return type(chat).bind_tools is not BaseChatModel.bind_tools
    return model.provider not in NO_TOOL_CALLING


def _answer_models(spec: MoASpec) -> Iterator[ModelSpec]:
    """The models that may write the answer: the aggregator, then its fallbacks."""
    model: ModelSpec | None = spec.aggregator
    while model is not None:
        yield model
        model = model.fallback


def check_tool_support(spec: MoASpec, chat_models: Mapping[str, BaseChatModel]) -> None:
    """Raise ``ToolCallingUnsupportedError`` naming every answer model (the aggregator and its
    fallbacks) that cannot call tools, before any model is called."""
    unable = [
        f"{m.name} ({m.model})" for m in _answer_models(spec) if not can_call_tools(m, chat_models)
    ]
    if unable:
        raise ToolCallingUnsupportedError(unable)


def answer_format(context: Context) -> dict[str, Any] | None:
    """The run's ``response_format`` for the answer, or None for free text (also for
    ``{"type": "text"}``, OpenAI's default)."""
    fmt = context.response_format
    return fmt if fmt and fmt.get("type") != "text" else None


def check_response_format_support(spec: MoASpec, chat_models: Mapping[str, BaseChatModel]) -> None:
    """Refuse a ``response_format`` whose answer models (the aggregator and its fallbacks)
    cannot take it, before any model is called: it is OpenAI's parameter, passed as is to
    OpenAI-compatible providers (and to chat model instances you gave, which you know)."""
    unable = [
        f"{m.name} ({m.model})"
        for m in _answer_models(spec)
        if str(m.name) not in chat_models and m.provider not in OPENAI_COMPATIBLE
    ]
    if unable:
        raise InvalidInputError(
            "context.response_format: only OpenAI-compatible answer models take it; not "
            + ", ".join(unable)
        )
