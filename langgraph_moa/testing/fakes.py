"""Deterministic fake chat models for offline tests: one instance per model name.

A shared fake with one response index is non-deterministic under fan-out (whichever
proposer runs first takes the first reply); a fake per name always answers the same.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from pydantic import Field


class RecordingChatModel(BaseChatModel):
    """Answers ``reply(messages)`` (default: ``"<name>: <last user text>"``), streams it word
    by word after ``delay`` seconds, and records every list of messages it received."""

    name: str = "fake"
    reply: Callable[[list[BaseMessage]], str] | None = None
    delay: float = 0.0
    received: list[list[BaseMessage]] = Field(default_factory=list)

    @property
    def _llm_type(self) -> str:
        return "recording-fake"

    def _text(self, messages: list[BaseMessage]) -> str:
        self.received.append(list(messages))
        if self.reply is not None:
            return self.reply(messages)
        last = next((m.text for m in reversed(messages) if m.type == "human"), "")
        return f"{self.name}: {last}"

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        return ChatResult(generations=[ChatGeneration(message=AIMessage(self._text(messages)))])

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        text = self._text(messages)
        if self.delay:
            await asyncio.sleep(self.delay)
        words = text.split(" ")
        for i, word in enumerate(words):
            piece = word if i == 0 else " " + word
            chunk = ChatGenerationChunk(message=AIMessageChunk(content=piece))
            if run_manager:
                await run_manager.on_llm_new_token(piece, chunk=chunk)
            yield chunk
