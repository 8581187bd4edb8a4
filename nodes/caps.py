"""Reference caps: long proposer answers make every later call expensive, so an answer may
be shortened once, where it becomes a reference (the layer reducer), for every reader at once.

The cap counts the project's token estimate (``nodes/budget.py``) and a capped answer ends
with the same ``TRUNCATION_MARK`` as a reference cut to fit a context window, so a reader
(model or human) knows text is missing. The proposer's full answer stays in ``answers``.
"""

from __future__ import annotations

from langgraph_moa.nodes.budget import CHARS_PER_TOKEN, TRUNCATION_MARK, estimate_tokens


def cap_reference(text: str, max_tokens: int | None) -> tuple[str, bool]:
    """``text`` with at most ``max_tokens`` (estimated) tokens kept, and whether it was cut."""
    if max_tokens is None or estimate_tokens(text) <= max_tokens:
        return text, False
    kept = text[: max_tokens * CHARS_PER_TOKEN]
    # End on a word boundary when one is near, so the reader does not see half a word.
    space = kept.rfind(" ")
    if space > len(kept) * 0.8:
        kept = kept[:space]
    return kept.rstrip() + TRUNCATION_MARK, True
