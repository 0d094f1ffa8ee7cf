"""The vendor calls that the benchmark makes: one chat call, non-streaming or a 50-chunk stream read to its end.

Only the ``openai`` and ``anthropic`` SDKs are imported here (no tokenguard), so the openai-v2 peer,
which runs in a subprocess, can use it too.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import anthropic
import openai
from _harness import AsyncCall, SyncCall
from anthropic.types import MessageParam
from openai.types.chat import ChatCompletionMessageParam

OPENAI_MODEL = "gpt-4o-mini"
ANTHROPIC_MODEL = "claude-haiku-4-5"
API_KEY = "sk-bench-not-a-real-key"
STREAM_CHUNKS = 50
"""Text deltas per stream (the fake server's ``x-fake-output-tokens``)."""

PROMPT = "Summarise the attached quarterly report in three bullet points for the finance team."
OPENAI_MESSAGES: list[ChatCompletionMessageParam] = [
    {"role": "system", "content": "You are a concise assistant."},
    {"role": "user", "content": PROMPT},
]
ANTHROPIC_MESSAGES: list[MessageParam] = [{"role": "user", "content": PROMPT}]
MAX_TOKENS = 256
"""Non-streaming replies are the fake server's default 20 words."""


def stream_headers(chunks: int) -> dict[str, str]:
    """Makes the fake server stream ``chunks`` text deltas."""
    return {"x-fake-output-tokens": str(chunks)}


def openai_sync_client(base_url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=base_url, api_key=API_KEY, max_retries=0)


def openai_async_client(base_url: str) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=base_url, api_key=API_KEY, max_retries=0)


def anthropic_sync_client(base_url: str, **options: Any) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=base_url, api_key=API_KEY, max_retries=0, **options)


def anthropic_async_client(base_url: str, **options: Any) -> anthropic.AsyncAnthropic:
    return anthropic.AsyncAnthropic(base_url=base_url, api_key=API_KEY, max_retries=0, **options)


def openai_sync_call(
    create: Callable[..., Any], *, stream: bool, include_usage: bool = True, chunks: int = STREAM_CHUNKS
) -> SyncCall:
    """``create`` is ``client.chat.completions.create`` (or an equivalent callable)."""
    if not stream:

        def call() -> int:
            create(model=OPENAI_MODEL, messages=OPENAI_MESSAGES)
            return 1

        return call

    extra: dict[str, Any] = {"stream_options": {"include_usage": True}} if include_usage else {}
    headers = stream_headers(chunks)

    def call_stream() -> int:
        n = 0
        for _ in create(model=OPENAI_MODEL, messages=OPENAI_MESSAGES, stream=True, extra_headers=headers, **extra):
            n += 1
        return n

    return call_stream


def openai_async_call(
    create: Callable[..., Any], *, stream: bool, include_usage: bool = True, chunks: int = STREAM_CHUNKS
) -> AsyncCall:
    if not stream:

        async def call() -> int:
            await create(model=OPENAI_MODEL, messages=OPENAI_MESSAGES)
            return 1

        return call

    extra: dict[str, Any] = {"stream_options": {"include_usage": True}} if include_usage else {}
    headers = stream_headers(chunks)

    async def call_stream() -> int:
        n = 0
        response = await create(
            model=OPENAI_MODEL, messages=OPENAI_MESSAGES, stream=True, extra_headers=headers, **extra
        )
        async for _ in response:
            n += 1
        return n

    return call_stream


def anthropic_sync_call(client: anthropic.Anthropic, *, stream: bool, chunks: int = STREAM_CHUNKS) -> SyncCall:
    messages = client.messages
    if not stream:

        def call() -> int:
            messages.create(model=ANTHROPIC_MODEL, max_tokens=MAX_TOKENS, messages=ANTHROPIC_MESSAGES)
            return 1

        return call

    headers = stream_headers(chunks)

    def call_stream() -> int:
        n = 0
        for _ in messages.create(
            model=ANTHROPIC_MODEL,
            max_tokens=MAX_TOKENS,
            messages=ANTHROPIC_MESSAGES,
            stream=True,
            extra_headers=headers,
        ):
            n += 1
        return n

    return call_stream


def anthropic_async_call(client: anthropic.AsyncAnthropic, *, stream: bool, chunks: int = STREAM_CHUNKS) -> AsyncCall:
    messages = client.messages
    if not stream:

        async def call() -> int:
            await messages.create(model=ANTHROPIC_MODEL, max_tokens=MAX_TOKENS, messages=ANTHROPIC_MESSAGES)
            return 1

        return call

    headers = stream_headers(chunks)

    async def call_stream() -> int:
        n = 0
        response = await messages.create(
            model=ANTHROPIC_MODEL,
            max_tokens=MAX_TOKENS,
            messages=ANTHROPIC_MESSAGES,
            stream=True,
            extra_headers=headers,
        )
        async for _ in response:
            n += 1
        return n

    return call_stream
