"""Value types of :mod:`tokenguard.testing`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class FakeUsage:
    """Token usage the fake server reports instead of deriving it from the request.

    Counts follow the OpenTelemetry GenAI convention: ``input_tokens`` is *all* input
    tokens, including ``cache_read_tokens`` and ``cache_write_tokens``, and
    ``output_tokens`` includes ``reasoning_tokens``. The server translates this into
    each vendor's own wire convention:

    * OpenAI Chat Completions: ``prompt_tokens = input_tokens``,
      ``prompt_tokens_details.cached_tokens = cache_read_tokens`` (plus
      ``prompt_tokens_details.cache_write_tokens`` when non-zero),
      ``completion_tokens = output_tokens``,
      ``completion_tokens_details.reasoning_tokens = reasoning_tokens``.
    * OpenAI Responses: ``input_tokens``, ``input_tokens_details.cached_tokens`` /
      ``cache_write_tokens``, ``output_tokens``,
      ``output_tokens_details.reasoning_tokens``, ``total_tokens``.
    * OpenAI Embeddings: ``prompt_tokens = total_tokens = input_tokens``.
    * Anthropic Messages: ``input_tokens = input_tokens - cache_read_tokens -
      cache_write_tokens`` (Anthropic reports the cache parts separately),
      ``cache_read_input_tokens``, ``cache_creation_input_tokens``,
      ``output_tokens`` (and ``output_tokens_details.thinking_tokens`` when
      ``reasoning_tokens`` is non-zero).

    Raises :class:`ValueError` for negative counts, for cache tokens exceeding
    ``input_tokens`` or for reasoning tokens exceeding ``output_tokens``.
    """

    input_tokens: int
    output_tokens: int
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0

    def __post_init__(self) -> None:
        for name in (
            "input_tokens",
            "output_tokens",
            "cache_read_tokens",
            "cache_write_tokens",
            "reasoning_tokens",
        ):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ValueError(f"FakeUsage.{name} must be a non-negative int, got {value!r}")
        if self.cache_read_tokens + self.cache_write_tokens > self.input_tokens:
            raise ValueError(
                "FakeUsage.input_tokens counts ALL input tokens and must be >= cache_read_tokens + cache_write_tokens"
            )
        if self.reasoning_tokens > self.output_tokens:
            raise ValueError("FakeUsage.output_tokens includes reasoning and must be >= reasoning_tokens")


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    """One HTTP request received by :class:`~tokenguard.testing.FakeLLMServer`.

    Requests are recorded before they are answered, including the ones answered
    with an injected failure, a 400 or a 404.
    """

    method: str
    """HTTP method, e.g. ``"POST"``."""
    path: str
    """Request target as sent, e.g. ``"/v1/chat/completions"`` (query string included if any)."""
    headers: dict[str, str]
    """Request headers with lower-case names (repeated headers are joined with ``", "``)."""
    body: Any
    """The parsed JSON body, or ``None`` when the body was empty or not valid JSON."""
    time: float
    """``time.time()`` when the request was received."""
