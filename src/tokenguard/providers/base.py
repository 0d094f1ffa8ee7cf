"""The neutral types that vendor adapters produce and the rest of the pipeline consumes.

An adapter is thin: it turns a vendor request body into a :class:`CallRequest` (step 1), and a
vendor response or stream event into a :class:`CallResult` (step 7). Nothing here imports a vendor SDK.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..pricing import Usage

__all__ = ["Adapter", "CallRequest", "CallResult", "JSONView", "StreamAccumulator", "count"]


class JSONView:
    """Attribute access over parsed JSON, so that adapters read the SDKs' models and a raw JSON
    body (a response the user read without parsing) with the same ``getattr`` code."""

    __slots__ = ("_data",)

    def __init__(self, data: Mapping[str, Any]) -> None:
        self._data = data

    def __getattr__(self, name: str) -> Any:
        value = self._data.get(name)
        if isinstance(value, Mapping):
            return JSONView(value)
        if isinstance(value, list):
            return [JSONView(v) if isinstance(v, Mapping) else v for v in value]
        return value


def count(obj: Any, name: str) -> int:
    """A token count field: the int, or 0 when absent or null."""
    return getattr(obj, name, None) or 0


@dataclass(slots=True)
class CallRequest:
    """What a governed call asks for, in vendor-neutral terms."""

    provider: str
    operation: str
    api: str
    model: str
    stream: bool
    max_output_tokens: int | None
    body: Mapping[str, Any]


@dataclass(slots=True)
class CallResult:
    """What a governed call returned, in vendor-neutral terms. ``usage`` is ``None`` when the vendor
    sent none (an abandoned stream); the pipeline then estimates it."""

    usage: Usage | None = None
    response_model: str | None = None
    response_id: str | None = None
    finish_reasons: tuple[str, ...] = ()
    service_tier: str | None = None
    output_text: list[str] = field(default_factory=list)
    output_chunks: int = 0


class StreamAccumulator(Protocol):
    """Watches a vendor stream's events as the user consumes them."""

    complete: bool
    """True once the vendor's end-of-stream event (with its final usage) has been seen."""

    def feed(self, event: Any) -> bool:
        """Observe one event; return False to keep it from the user (an injected usage chunk)."""
        ...

    def result(self) -> CallResult:
        """What was observed so far."""
        ...


class Adapter(Protocol):
    """One vendor's thin translation layer."""

    provider: str
    input_keys: Mapping[str, tuple[str, ...]]
    """Per API, the request fields that hold the user's text (for the sensitive-data scan)."""

    def api_for(self, method: str, url: str) -> str | None:
        """The governed API an HTTP request belongs to, or ``None`` to pass it through untouched."""
        ...

    def request(self, api: str, body: Mapping[str, Any], stream: bool) -> CallRequest:
        """Step 1: the neutral request."""
        ...

    def prepare_stream(self, api: str, body: Mapping[str, Any]) -> tuple[Mapping[str, Any], bool]:
        """The body to send for a stream so that usage is reported, and whether the extra usage
        event must be hidden from the user (who did not ask for it)."""
        ...

    def result(self, api: str, response: Any) -> CallResult:
        """Step 7 for a complete (non-streamed) response: a parsed SDK model (or a JSONView)."""
        ...

    def accumulator(self, api: str, hide_usage: bool, capture: bool) -> StreamAccumulator:
        """Step 7 for a stream; ``capture`` keeps the output text (only for captured content)."""
        ...

    def input_messages(self, api: str, body: Mapping[str, Any]) -> list[dict[str, Any]]:
        """The request's messages in the OpenTelemetry GenAI JSON shape (only with capture_content)."""
        ...


def text_parts(content: Any) -> Iterator[str]:
    """The text inside a message ``content``: a string, or a list of parts with ``text``/``input``."""
    if isinstance(content, str):
        yield content
    elif isinstance(content, (list, tuple)):
        for part in content:
            if isinstance(part, str):
                yield part
            elif isinstance(part, Mapping):
                for key in ("text", "input_text", "content", "thinking"):
                    value = part.get(key)
                    if isinstance(value, str):
                        yield value
                    elif isinstance(value, (list, tuple)):
                        yield from text_parts(value)


def otel_message(role: str, content: Any) -> dict[str, Any]:
    """A message in the GenAI conventions' JSON shape, text parts only."""
    return {"role": role, "parts": [{"type": "text", "content": t} for t in text_parts(content)]}
