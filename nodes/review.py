"""Human review before the aggregator (``review: true``): the pause, and what a reviewer may say.

The pause is a LangGraph ``interrupt`` whose payload is shaped like LangChain's
``HumanInterrupt`` (what Agent Inbox and Studio render): an ``action_request`` with the
question and each reference labelled by the model that wrote it, a ``config`` saying what the
reviewer may do, and a ``description``. The payload also keeps a plain ``references`` list
(the web page and older clients read it).

Resume values (``Command(resume=...)``; a one-item list of either form is accepted too, as
Agent Inbox sends a list):

* ``True``, ``{"type": "accept"}``, ``{"approved": true}``: aggregate the references as they are;
* a list of strings, ``{"references": [...]}``, ``{"type": "edit", "args": {<label>: text}}``:
  aggregate these references instead (labels as in ``action_request.args``);
* ``{"type": "response", "args": "text"}``: the reviewer's text is the answer; no aggregator call;
* ``False``, ``{"type": "ignore"}``, ``{"approved": false}``: rejected; the turn ends with no
  answer and no aggregator call (``review.decision == "ignore"``).

Anything else is refused: the thread pauses again at once, with the same payload plus an
``error`` saying why and what is accepted, so the reviewer resumes again with a valid value.
(Raising instead would end the run with that error but leave the thread stuck: LangGraph
keeps a node's resume values, so every later resume would replay the bad one.)
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Mapping
from typing import Any

from langchain_core.messages import AIMessage
from langgraph.graph import END
from langgraph.types import interrupt

from langgraph_moa.errors import InvalidInputError
from langgraph_moa.graphs import names
from langgraph_moa.graphs.spec import MoASpec
from langgraph_moa.graphs.state import MoAState, ReviewOutcome
from langgraph_moa.nodes.layer import layer_references

ACTION = "review_references"
"""``action_request.action`` of the review interrupt."""
QUESTION = "question"
"""The key of the user's question in ``action_request.args`` (the other keys label references)."""
MAX_REFERENCES = 64
MAX_CHARS = 200_000
ACCEPTED = (
    "accepted: true | false | a non-empty list of strings (the references) |"
    " {'type': 'accept'} | {'type': 'edit', 'args': {<label>: <text>, ...}} |"
    " {'type': 'response', 'args': '<your answer>'} | {'type': 'ignore'} |"
    " {'approved': true | false} | {'references': [<text>, ...]}"
)


def _refuse(why: str) -> InvalidInputError:
    return InvalidInputError(f"review resume value: {why}; {ACCEPTED}")


def reference_labels(spec: MoASpec, state: MoAState) -> list[str]:
    """A label per reference: the spec name of the model that wrote it (unique)."""
    answers = state.get("answers") or {}
    by_text: dict[str, str] = {}
    for k in range(1, len(spec.layers) + 1):
        for node, ref in layer_references(k, spec, answers):
            info = names.parse(node)
            by_text[ref] = info.model if info and info.model else node
    labels: list[str] = []
    for i, ref in enumerate(state.get("references") or []):
        label = by_text.get(ref, f"reference {i + 1}")
        if label == QUESTION or label in labels:
            n = 2
            while f"{label} ({n})" in labels:
                n += 1
            label = f"{label} ({n})"
        labels.append(label)
    return labels


def _question(state: MoAState) -> str:
    for message in reversed(state.get("messages") or []):
        if message.type == "human":
            return message.text
    return ""


def payload(spec: MoASpec, state: MoAState) -> dict[str, Any]:
    """The interrupt's value (see the module docstring)."""
    references = list(state.get("references") or [])
    labels = reference_labels(spec, state)
    return {
        "action_request": {
            "action": ACTION,
            "args": {QUESTION: _question(state), **dict(zip(labels, references, strict=True))},
        },
        "config": {
            "allow_accept": True,
            "allow_edit": True,
            "allow_respond": True,
            "allow_ignore": True,
        },
        "description": (
            f"{len(references)} model answer(s) are ready for the final model to combine."
            " Accept to go on, edit the answers it reads, respond with your own answer"
            " (no final call), or ignore to reject the turn (no answer)."
        ),
        "references": references,
    }


def _strings(value: Any, where: str) -> list[str]:
    if not isinstance(value, list) or not value:
        raise _refuse(f"{where} must be a non-empty list of strings")
    if len(value) > MAX_REFERENCES:
        raise _refuse(f"{where}: at most {MAX_REFERENCES} references")
    for i, item in enumerate(value):
        if not isinstance(item, str):
            raise _refuse(f"{where}[{i}] is {type(item).__name__}, not a string")
        if len(item) > MAX_CHARS:
            raise _refuse(f"{where}[{i}]: at most {MAX_CHARS} characters")
    return list(value)


def _edited(args: Any, labels: list[str]) -> list[str]:
    """The references of an ``edit``: by label (Agent Inbox's edited args), or a list."""
    if isinstance(args, Mapping) and isinstance(args.get("args"), Mapping):
        args = args["args"]  # Agent Inbox: {"action": ..., "args": {...}}
    if isinstance(args, Mapping) and "references" in args:
        return _strings(args["references"], "edit args.references")
    if isinstance(args, list):
        return _strings(args, "edit args")
    if not isinstance(args, Mapping):
        raise _refuse("edit args must be an object of <label>: <text>")
    unknown = [str(k) for k in args if k != QUESTION and k not in labels]
    if unknown:
        raise _refuse(f"edit args: unknown label(s) {unknown[:5]}; labels are {labels}")
    return _strings([args[label] for label in labels if label in args], "edit args")


def decide(value: Any, labels: list[str]) -> tuple[ReviewOutcome, list[str] | None]:
    """The reviewer's decision and, for an edit, the new references."""
    if isinstance(value, list) and len(value) == 1 and isinstance(value[0], Mapping):
        value = value[0]  # Agent Inbox resumes with a list of one response
    if value is True:
        return {"decision": "accept"}, None
    if value is False:
        return {"decision": "ignore"}, None
    if isinstance(value, list):
        return {"decision": "edit"}, _strings(value, "the list")
    if not isinstance(value, Mapping):
        raise _refuse(f"got {type(value).__name__}")
    if "approved" in value:
        if not isinstance(value["approved"], bool):
            raise _refuse("approved must be true or false")
        if not value["approved"]:
            return {"decision": "ignore"}, None
        if "references" in value:
            return {"decision": "edit"}, _strings(value["references"], "references")
        return {"decision": "accept"}, None
    if "type" not in value and "references" in value:
        return {"decision": "edit"}, _strings(value["references"], "references")
    kind = value.get("type")
    if kind == "accept":
        return {"decision": "accept"}, None
    if kind == "ignore":
        return {"decision": "ignore"}, None
    if kind == "edit":
        return {"decision": "edit"}, _edited(value.get("args"), labels)
    if kind == "response":
        text = value.get("args")
        if not isinstance(text, str) or not text.strip():
            raise _refuse("response args must be the answer's text (a non-empty string)")
        if len(text) > MAX_CHARS:
            raise _refuse(f"response args: at most {MAX_CHARS} characters")
        return {"decision": "response", "text": text}, None
    shown = kind if isinstance(kind, str) and len(kind) <= 32 else "?"
    raise _refuse(f"unknown type {shown!r}" if "type" in value else "unknown object")


def review_node(spec: MoASpec) -> Callable[[MoAState], Coroutine[Any, Any, dict[str, Any]]]:
    """The ``review`` node: pause, then apply the reviewer's decision."""

    async def review(state: MoAState) -> dict[str, Any]:
        labels = reference_labels(spec, state)
        question = payload(spec, state)
        value = interrupt(question)
        outcome: ReviewOutcome
        references: list[str] | None
        while True:
            try:
                outcome, references = decide(value, labels)
                break
            except InvalidInputError as refused:
                value = interrupt({**question, "error": str(refused)})
        update: dict[str, Any] = {"review": outcome}
        if references is not None:
            update["references"] = references
        if outcome["decision"] == "response":
            text = outcome["text"]
            update["answer"] = text
            update["messages"] = [AIMessage(content=text, name="reviewer")]
        return update

    return review


def route_after_review(
    next_step: Callable[[MoAState], str | list[str]],
) -> Callable[[MoAState], str | list[str]]:
    """After review: on to the aggregator, or the end when the reviewer answered or
    rejected."""

    def route(state: MoAState) -> str | list[str]:
        outcome = state.get("review")
        if outcome is not None and outcome["decision"] in ("response", "ignore"):
            return END
        return next_step(state)

    return route
