"""Fit references into a model's context window before the call, not after a 400.

Token counts are an estimate: ``ceil(chars / 3)`` plus 4 per message. Real tokenizers give
about 4 characters per English token, so the estimate errs on the safe side for every
provider without downloading a tokenizer (``tiktoken`` fetches its tables from the network,
which an offline machine cannot do). A 400 context-length error still triggers one retry with
a tighter budget, for text (code, CJK) that tokenizes denser than the estimate.
"""

from __future__ import annotations

import math
import re

from langchain_core.messages import AnyMessage
from langchain_core.messages.utils import count_tokens_approximately

CHARS_PER_TOKEN = 3
MESSAGE_OVERHEAD = 4
TRUNCATION_MARK = " [...truncated]"


def estimate_tokens(text: str) -> int:
    return math.ceil(len(text) / CHARS_PER_TOKEN)


def messages_tokens(messages: list[AnyMessage]) -> int:
    """LangChain's approximate counter (content, role, tool calls, a fixed cost per image)
    with our safe-side ratio: ``CHARS_PER_TOKEN`` characters a token, ``MESSAGE_OVERHEAD``
    tokens a message."""
    return count_tokens_approximately(
        messages, chars_per_token=CHARS_PER_TOKEN, extra_tokens_per_message=MESSAGE_OVERHEAD
    )


def fit_references(references: list[str], available: int) -> tuple[list[str], int]:
    """Shorten the longest references first until they total ``available`` tokens.

    Returns the fitted references and how many were cut. Each cut one ends with
    ``TRUNCATION_MARK`` so the reader (model or human) knows text is missing. Raises
    ``ValueError`` when even an empty reference per model does not fit.
    """
    sizes = [estimate_tokens(r) for r in references]
    if sum(sizes) <= available:
        return list(references), 0
    mark = estimate_tokens(TRUNCATION_MARK)
    if available < len(references) * (mark + 1):
        raise ValueError(f"{available} tokens left for {len(references)} references")
    # Water-filling: the largest cap c with sum(min(size, c)) <= available.
    low, high = 0, max(sizes)
    while low < high:
        cap = (low + high + 1) // 2
        if sum(min(s, cap) for s in sizes) <= available:
            low = cap
        else:
            high = cap - 1
    cap = low
    fitted, cut = [], 0
    for ref, size in zip(references, sizes, strict=True):
        if size > cap:
            keep = max(0, (cap - mark) * CHARS_PER_TOKEN)
            fitted.append(ref[:keep].rstrip() + TRUNCATION_MARK)
            cut += 1
        else:
            fitted.append(ref)
    return fitted, cut


_LIMIT = re.compile(r"maximum context length is (\d+) tokens.*?(\d+) tokens", re.S)


def tighter_window(error_text: str, window: int | None, used: int) -> int:
    """A smaller context window after the server said the prompt was too long."""
    if m := _LIMIT.search(error_text):
        limit, asked = int(m.group(1)), int(m.group(2))
        return int(min(limit, used * limit / max(asked, 1)) * 0.9)
    return int((window or used) * 0.75)
