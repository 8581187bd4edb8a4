"""The Aggregate-and-Synthesize prompt (paper Table 1) and how references are injected.

The construction mirrors the reference implementation (together-moa ``utils.py``,
``inject_references_to_messages``) byte for byte, so results stay comparable with the paper:
the aggregate text plus one ``"\\n{i}. {answer}"`` line per reference goes into the *system*
message, appended after ``"\\n\\n"`` when the conversation already starts with one, else
prepended. The user's messages are never edited.
"""

from __future__ import annotations

from importlib.resources import files
from typing import Literal

from langchain_core.messages import AIMessage, AnyMessage, SystemMessage

AGGREGATE_PROMPT: str = files(__name__).joinpath("aggregate.txt").read_text(encoding="utf-8")
"""The paper's Aggregate-and-Synthesize prompt, verbatim (ends with "Responses from models:")."""

RANK_PROMPT: str = files(__name__).joinpath("rank.txt").read_text(encoding="utf-8")
"""Rank-then-fuse: the ranker's instructions (placeholders ``{labels}``, ``{question}``,
``{answers}``, ``{example}``); it must end with ``RANKING: A > B > ...``."""

STOP_PROMPT: str = files(__name__).joinpath("stop.txt").read_text(encoding="utf-8")
"""Early stopping: the judge's instructions (``{question}``, ``{answers}``); it must end with
``VERDICT: FINAL`` or ``VERDICT: CONTINUE``."""

InjectionMode = Literal["system", "assistant", "assistant_before_question"]
"""Where the aggregate text goes (``MoASpec.injection``):

- ``system``: the reference implementation (together-moa), the default.
- ``assistant``: the seed snippet: an assistant turn *after* the conversation, so the model
  answers right after the turn that holds the references (``[user, assistant(aggregate)]``).
- ``assistant_before_question``: the same assistant turn placed just *before* the last user
  turn, so the conversation still ends on the user's question. Kept for providers that read a
  trailing assistant message as a prefill to continue (Anthropic does) rather than as a turn
  to answer, and for chat templates that insist on ending with the user.
"""


def format_references(references: list[str], prompt: str = AGGREGATE_PROMPT) -> str:
    """The aggregate text followed by ``\\n{i}. {answer}`` for each reference (1-based)."""
    return prompt + "".join(f"\n{i}. {ref}" for i, ref in enumerate(references, 1))


def inject_references(
    messages: list[AnyMessage],
    references: list[str],
    *,
    prompt: str = AGGREGATE_PROMPT,
    mode: InjectionMode = "system",
) -> list[AnyMessage]:
    """Return the messages a layer-2+ proposer or the aggregator receives.

    ``mode="system"`` is the reference implementation; ``mode="assistant"`` the seed snippet
    (the aggregate text as an assistant turn after the conversation);
    ``mode="assistant_before_question"`` that turn just before the last user turn (see
    ``InjectionMode``).
    """
    text = format_references(references, prompt)
    if mode == "assistant":
        return [*messages, AIMessage(content=text)]
    if mode == "assistant_before_question":
        last_user = max(
            (i for i, m in enumerate(messages) if m.type == "human"), default=len(messages)
        )
        return [*messages[:last_user], AIMessage(content=text), *messages[last_user:]]
    if messages and messages[0].type == "system":
        first = messages[0]
        merged = SystemMessage(content=f"{first.text}\n\n{text}", id=first.id)
        return [merged, *messages[1:]]
    return [SystemMessage(content=text), *messages]


def with_system_prompt(messages: list[AnyMessage], system_prompt: str | None) -> list[AnyMessage]:
    """Give one model its own system prompt (diversity for self-MoA / the local preset).

    Merged the same way as the references, so a spec-level persona and the aggregate text
    end up in one system message, persona first.
    """
    if not system_prompt:
        return messages
    if messages and messages[0].type == "system":
        first = messages[0]
        return [SystemMessage(content=f"{first.text}\n\n{system_prompt}"), *messages[1:]]
    return [SystemMessage(content=system_prompt), *messages]
