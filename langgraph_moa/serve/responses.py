"""``POST /v1/responses``: OpenAI's Responses API, the part a stateless server can honour.

A Responses request is translated into the chat-completions request ``moa serve`` already
runs (``to_chat``), and the run's result back into a ``response`` object or the Responses
stream events (``response``, ``stream``). Honoured: ``input`` as a string or a list of items
(messages in any role, ``function_call`` and ``function_call_output`` items), ``instructions``,
function ``tools`` and ``tool_choice``, ``text.format`` (structured output),
``max_output_tokens``, ``temperature``, ``top_p``, ``reasoning.effort``, ``stream`` and
``usage``. Refused by name: anything that needs stored state (``previous_response_id``,
``store: true``, ``conversation``, ``background``, stored ``prompt`` templates) and hosted tools
(web search, file search, computer use, MCP): the server keeps nothing between requests.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

from langgraph_moa.graphs.state import answer_message, finish_reason
from langgraph_moa.serve import openai_api as oa

IGNORED = frozenset(
    {
        "metadata",
        "user",
        "parallel_tool_calls",
        "truncation",
        "include",
        "service_tier",
        "prompt_cache_key",
        "safety_identifier",
        "stream_options",
        "max_tool_calls",
        "top_logprobs",
    }
)
"""Responses fields accepted and not used (as ``openai_api.ACCEPTED_IGNORED``)."""

STATEFUL = {
    "previous_response_id": "this server stores no responses: send the whole conversation"
    " in input (and store: false)",
    "conversation": "this server keeps no conversations: send the whole conversation in input",
    "prompt": "stored prompt templates are not available here: send instructions and input",
    "background": "background responses need stored state; this server answers while you wait",
}
"""Fields that need state between requests, refused when set (with what to do instead)."""


def _refuse(message: str, param: str) -> oa.APIError:
    return oa.APIError(400, f"{param}: {message}", param=param, code="unsupported_parameter")


def _text(content: Any, where: str) -> str:
    """A Responses message content (a string or text parts) as plain text."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise oa.APIError(400, f"{where}: must be a string or a list of parts", param=where)
    texts = []
    for j, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind not in ("input_text", "output_text", "text", "refusal"):
            raise oa.APIError(
                400,
                f"{where}[{j}].type: only text parts are supported, not {str(kind)[:40]!r}",
                param=f"{where}[{j}].type",
            )
        texts.append(str(part.get("text") or part.get("refusal") or ""))
    return "".join(texts)


def _messages(items: Any) -> list[dict[str, Any]]:
    """``input`` items as chat messages (consecutive function calls: one assistant turn)."""
    if isinstance(items, str):
        return [{"role": "user", "content": items}]
    if not isinstance(items, list):
        raise oa.APIError(400, "input: must be a string or a list of items", param="input")
    out: list[dict[str, Any]] = []
    for i, item in enumerate(items):
        where = f"input[{i}]"
        if not isinstance(item, dict):
            raise oa.APIError(400, f"{where}: must be an object", param=where)
        kind = item.get("type", "message")
        if kind == "message":
            role = item.get("role")
            if role not in ("user", "assistant", "system", "developer"):
                raise oa.APIError(
                    400,
                    f"{where}.role: one of user, assistant, system, developer",
                    param=f"{where}.role",
                )
            out.append({"role": role, "content": _text(item.get("content"), f"{where}.content")})
        elif kind == "function_call":
            call_id, name = str(item.get("call_id") or ""), str(item.get("name") or "")
            if not call_id or not name:
                raise oa.APIError(400, f"{where}: needs call_id and name", param=where)
            arguments = str(item.get("arguments") or "{}")
            call: dict[str, Any] = {
                "id": call_id,
                "type": "function",
                "function": {"name": name, "arguments": arguments},
            }
            last = out[-1] if out else None
            if last is not None and last["role"] == "assistant" and "tool_calls" in last:
                last["tool_calls"].append(call)
            elif last is not None and last["role"] == "assistant":
                last["tool_calls"] = [call]
            else:
                out.append({"role": "assistant", "content": None, "tool_calls": [call]})
        elif kind == "function_call_output":
            output = item.get("output")
            text = output if isinstance(output, str) else _text(output, f"{where}.output")
            out.append(
                {"role": "tool", "tool_call_id": str(item.get("call_id") or ""), "content": text}
            )
        elif kind == "reasoning":
            continue  # a previous turn's reasoning summary: not part of the conversation
        else:
            raise oa.APIError(
                400,
                f"{where}.type: {str(kind)[:40]!r} is not supported (message, function_call,"
                " function_call_output)",
                param=f"{where}.type",
            )
    return out


def _tools(tools: Any) -> list[dict[str, Any]] | None:
    if tools is None or tools == []:
        return None
    if not isinstance(tools, list):
        raise oa.APIError(400, "tools: must be a list", param="tools")
    out = []
    for i, tool in enumerate(tools):
        if not isinstance(tool, dict) or tool.get("type") != "function":
            kind = tool.get("type") if isinstance(tool, dict) else None
            raise _refuse(
                f"only function tools are supported, not {str(kind)[:40]!r}", f"tools[{i}].type"
            )
        function = {
            k: tool[k] for k in ("name", "description", "parameters", "strict") if k in tool
        }
        out.append({"type": "function", "function": function})
    return out


def _tool_choice(choice: Any) -> Any:
    if isinstance(choice, dict):
        if choice.get("type") != "function":
            raise _refuse("only 'auto', 'none', 'required' or a function", "tool_choice")
        return {"type": "function", "function": {"name": choice.get("name")}}
    return choice


def _format(text: Any) -> dict[str, Any] | None:
    """``text.format`` as chat's ``response_format``."""
    if text is None:
        return None
    fmt = text.get("format") if isinstance(text, dict) else None
    if fmt is None:
        return None
    if not isinstance(fmt, dict):
        raise oa.APIError(400, "text.format: must be an object", param="text.format")
    if fmt.get("type") == "json_schema":
        schema = {k: fmt[k] for k in ("name", "schema", "strict", "description") if k in fmt}
        return {"type": "json_schema", "json_schema": schema}
    return dict(fmt)


def to_chat(body: Any) -> dict[str, Any]:
    """A Responses request as the chat-completions request that runs it."""
    if not isinstance(body, dict):
        raise oa.APIError(400, "the request body must be a JSON object")
    for field, why in STATEFUL.items():
        if body.get(field) not in (None, False, ""):
            raise _refuse(why, field)
    if body.get("store") is True:
        raise _refuse("this server stores no responses; send store: false", "store")
    known = {"model", "input", "instructions", "tools", "tool_choice", "text", "stream"}
    known |= {"max_output_tokens", "temperature", "top_p", "reasoning", "store", "moa"}
    unknown = sorted(set(body) - known - IGNORED - set(STATEFUL))
    if unknown:
        raise _refuse("not supported by moa serve", unknown[0])
    messages = _messages(body.get("input", []))
    instructions = body.get("instructions")
    if instructions is not None:
        if not isinstance(instructions, str):
            raise oa.APIError(400, "instructions: must be a string", param="instructions")
        messages.insert(0, {"role": "system", "content": instructions})
    reasoning = body.get("reasoning")
    chat: dict[str, Any] = {
        "model": body.get("model"),
        "messages": messages,
        "stream": bool(body.get("stream")),
        "temperature": body.get("temperature"),
        "top_p": body.get("top_p"),
        "max_completion_tokens": body.get("max_output_tokens"),
        "tools": _tools(body.get("tools")),
        "tool_choice": _tool_choice(body.get("tool_choice")),
        "response_format": _format(body.get("text")),
        "reasoning_effort": reasoning.get("effort") if isinstance(reasoning, dict) else None,
        "moa": body.get("moa"),
    }
    return {k: v for k, v in chat.items() if v is not None}


_NAMES = {
    "max_completion_tokens": "max_output_tokens",
    "max_tokens": "max_output_tokens",
    "response_format": "text.format",
    "reasoning_effort": "reasoning.effort",
    "messages": "input",
}
"""Chat-completions field -> the Responses field it came from (for errors)."""


def renamed(exc: oa.APIError) -> oa.APIError:
    """An error about the translated chat request, naming the Responses request's fields."""
    for chat, name in _NAMES.items():
        if exc.param and exc.param.split(".")[0].split("[")[0] == chat:
            exc.param = name + exc.param[len(chat) :]
            if exc.message.startswith(chat):
                exc.message = name + exc.message[len(chat) :]
            break
    return exc


def response_id() -> str:
    return f"resp_moa{uuid.uuid4().hex[:24]}"


def _usage(out: dict[str, Any]) -> dict[str, Any]:
    chat = oa.usage(out.get("calls") or [])
    return {
        "input_tokens": chat["prompt_tokens"],
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": chat["completion_tokens"],
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": chat["total_tokens"],
    }


def _message_item(rid: str, text: str, status: str = "completed") -> dict[str, Any]:
    content = [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}]
    return {
        "type": "message",
        "id": f"msg_{rid}",
        "status": status,
        "role": "assistant",
        "content": content if text or status == "completed" else [],
    }


def _call_item(rid: str, index: int, call: dict[str, Any], status: str) -> dict[str, Any]:
    return {
        "type": "function_call",
        "id": f"fc_{rid}_{index}",
        "call_id": call["id"],
        "name": call["function"]["name"],
        "arguments": call["function"]["arguments"],
        "status": status,
    }


def _shell(rid: str, body: dict[str, Any], model: str, status: str) -> dict[str, Any]:
    """The ``response`` object without its output (what ``response.created`` carries)."""
    text = body.get("text") if isinstance(body.get("text"), dict) else None
    return {
        "id": rid,
        "object": "response",
        "created_at": int(time.time()),
        "status": status,
        "model": model,
        "output": [],
        "error": None,
        "incomplete_details": None,
        "instructions": body.get("instructions"),
        "max_output_tokens": body.get("max_output_tokens"),
        "parallel_tool_calls": body.get("parallel_tool_calls", True),
        "previous_response_id": None,
        "reasoning": {"effort": (body.get("reasoning") or {}).get("effort"), "summary": None},
        "store": False,
        "temperature": body.get("temperature"),
        "top_p": body.get("top_p"),
        "text": text or {"format": {"type": "text"}},
        "tool_choice": body.get("tool_choice", "auto"),
        "tools": body.get("tools") or [],
        "truncation": "disabled",
        "metadata": body.get("metadata") or {},
        "user": body.get("user"),
        "usage": None,
    }


def response(
    rid: str,
    body: dict[str, Any],
    model: str,
    out: dict[str, Any],
    dropped: dict[str, list[str]],
) -> dict[str, Any]:
    """The finished ``response`` object: a message item for text, a function_call item per
    tool call, the mixture's usage; ``incomplete`` when the answer was cut at its limit."""
    calls = oa.tool_calls(out)
    text = out.get("answer") or ""
    output: list[dict[str, Any]] = []
    if text or not calls:
        output.append(_message_item(rid, text))
    output += [_call_item(rid, i, call, "completed") for i, call in enumerate(calls)]
    cut = finish_reason(answer_message(out)) == "length"
    result = _shell(rid, body, model, "incomplete" if cut else "completed")
    result.update(output=output, usage=_usage(out))
    if cut:
        result["incomplete_details"] = {"reason": "max_output_tokens"}
    include = (body.get("moa") or {}).get("include") or []
    if (moa := oa.extension(out, include, dropped)) is not None:
        result["moa"] = moa
    return result


class _Events:
    """Numbered Responses stream events (``event:`` line and JSON ``data:``)."""

    def __init__(self) -> None:
        self.seq = 0

    def __call__(self, kind: str, **data: Any) -> bytes:
        payload = {"type": kind, "sequence_number": self.seq, **data}
        self.seq += 1
        return f"event: {kind}\ndata: {json.dumps(payload, ensure_ascii=False)}\n\n".encode()


async def stream(
    rid: str,
    body: dict[str, Any],
    model: str,
    answer: AsyncIterator[tuple[str, Any]],
    dropped: dict[str, list[str]],
) -> AsyncIterator[bytes]:
    """The run as Responses events: ``response.created``, the answer's items as they are
    written (``output_text.delta``, ``function_call_arguments.delta``), ``response.completed``
    (the same object a non-streamed request gets). A failed run raises (the caller turns it
    into an ``error`` event)."""
    event = _Events()
    shell = _shell(rid, body, model, "in_progress")
    yield event("response.created", response=shell)
    yield event("response.in_progress", response=shell)
    text: list[str] = []
    message_index: int | None = None
    calls: dict[int, dict[str, Any]] = {}  # tool call index -> {"index": output index, ...}
    outputs = 0
    final: dict[str, Any] = {}

    async for kind, data in answer:
        if kind == "final":
            final = data
        elif kind in ("text", "restart"):
            delta = data if kind == "text" else "\n\n[answer restarted]\n\n"
            if message_index is None:
                message_index, outputs = outputs, outputs + 1
                item = _message_item(rid, "", "in_progress")
                yield event("response.output_item.added", output_index=message_index, item=item)
                part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
                yield event(
                    "response.content_part.added",
                    item_id=f"msg_{rid}",
                    output_index=message_index,
                    content_index=0,
                    part=part,
                )
            text.append(delta)
            yield event(
                "response.output_text.delta",
                item_id=f"msg_{rid}",
                output_index=message_index,
                content_index=0,
                delta=delta,
                logprobs=[],
            )
        elif kind == "tool_calls":
            for piece in data:
                call = calls.get(piece["index"])
                function = piece.get("function") or {}
                if call is None:
                    call = calls[piece["index"]] = {
                        "output": outputs,
                        "id": piece.get("id") or f"call_{rid}_{piece['index']}",
                        "function": {"name": function.get("name") or "", "arguments": ""},
                    }
                    outputs += 1
                    item = _call_item(rid, piece["index"], call, "in_progress")
                    yield event(
                        "response.output_item.added", output_index=call["output"], item=item
                    )
                if function.get("arguments"):
                    call["function"]["arguments"] += function["arguments"]
                    yield event(
                        "response.function_call_arguments.delta",
                        item_id=f"fc_{rid}_{piece['index']}",
                        output_index=call["output"],
                        delta=function["arguments"],
                    )

    done = response(rid, body, model, final, dropped)
    if message_index is not None:
        whole = "".join(text)
        part = {"type": "output_text", "text": whole, "annotations": [], "logprobs": []}
        item_id = f"msg_{rid}"
        yield event(
            "response.output_text.done",
            item_id=item_id,
            output_index=message_index,
            content_index=0,
            text=whole,
            logprobs=[],
        )
        yield event(
            "response.content_part.done",
            item_id=item_id,
            output_index=message_index,
            content_index=0,
            part=part,
        )
        yield event(
            "response.output_item.done",
            output_index=message_index,
            item=_message_item(rid, whole),
        )
    for index, call in sorted(calls.items()):
        item = _call_item(rid, index, call, "completed")
        yield event(
            "response.function_call_arguments.done",
            item_id=item["id"],
            output_index=call["output"],
            name=item["name"],
            arguments=item["arguments"],
        )
        yield event("response.output_item.done", output_index=call["output"], item=item)
    if message_index is None and not calls:  # nothing streamed (e.g. an empty answer)
        done["output"] = done["output"] or [_message_item(rid, "")]
    else:  # the streamed items, in the order they were opened
        streamed = (
            [(message_index, _message_item(rid, "".join(text)))]
            if message_index is not None
            else []
        )
        streamed += [(c["output"], _call_item(rid, i, c, "completed")) for i, c in calls.items()]
        done["output"] = [item for _, item in sorted(streamed, key=lambda pair: pair[0])]
    kind = "response.incomplete" if done["status"] == "incomplete" else "response.completed"
    yield event(kind, response=done)
