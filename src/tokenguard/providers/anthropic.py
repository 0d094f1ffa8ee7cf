"""The Anthropic adapter: the Messages API (the official ``anthropic`` SDK)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..pricing import Usage
from .base import CallRequest, CallResult, count, otel_message

__all__ = ["AnthropicAdapter"]


def _usage(u: Any, output_tokens: int | None = None) -> Usage:
    # Anthropic reports uncached input, cache reads and cache writes apart; the OpenTelemetry
    # convention (and our ledger) counts all three as input.
    read = count(u, "cache_read_input_tokens")
    write = count(u, "cache_creation_input_tokens")
    return Usage(
        input_tokens=count(u, "input_tokens") + read + write,
        output_tokens=count(u, "output_tokens") if output_tokens is None else output_tokens,
        cache_read_tokens=read,
        cache_write_tokens=write,
        reasoning_tokens=count(getattr(u, "output_tokens_details", None), "thinking_tokens"),
    )


class _MessagesStream:
    """``message_start`` carries the input side of usage; each ``message_delta`` carries the
    cumulative output (and, in newer API versions, the input side again)."""

    __slots__ = ("complete", "finish", "model", "n", "rid", "texts", "usage")

    def __init__(self, capture: bool) -> None:
        self.complete = False
        self.usage: Usage | None = None
        self.model: str | None = None
        self.rid: str | None = None
        self.finish: list[str] = []
        self.texts: list[str] | None = [] if capture else None
        self.n = 0

    def feed(self, event: Any) -> bool:
        kind = event.type
        if kind == "content_block_delta":
            self.n += 1
            if self.texts is not None:
                text = getattr(event.delta, "text", None)
                if text:
                    self.texts.append(text)
        elif kind == "message_start":
            message = event.message
            self.model, self.rid = message.model, message.id
            self.usage = _usage(message.usage)
        elif kind == "message_delta":
            delta_usage = event.usage
            if self.usage is None or delta_usage.input_tokens is not None:
                self.usage = _usage(delta_usage)
            else:
                self.usage.output_tokens = delta_usage.output_tokens
                details = getattr(delta_usage, "output_tokens_details", None)
                if details is not None:
                    self.usage.reasoning_tokens = details.thinking_tokens
            if event.delta.stop_reason:
                self.finish.append(event.delta.stop_reason)
        elif kind == "message_stop":
            self.complete = True
        return True

    def result(self) -> CallResult:
        usage = self.usage
        if usage is not None and not self.complete and usage.output_tokens <= 1:
            # message_start reports output_tokens=1 as a placeholder: the output of an abandoned
            # stream is not known, so let the pipeline count it from what was received.
            usage = Usage(
                input_tokens=usage.input_tokens,
                cache_read_tokens=usage.cache_read_tokens,
                cache_write_tokens=usage.cache_write_tokens,
                output_tokens=max(self.n, usage.output_tokens),
                estimated=True,
            )
        return CallResult(
            usage=usage,
            response_model=self.model,
            response_id=self.rid,
            finish_reasons=tuple(self.finish),
            output_text=self.texts or [],
            output_chunks=self.n,
        )


class AnthropicAdapter:
    """Translates Anthropic requests and responses to the neutral types."""

    provider = "anthropic"
    # The request fields holding the user's text (scanned for sensitive data).
    input_keys: Mapping[str, tuple[str, ...]] = {"messages": ("system", "messages")}

    def api_for(self, method: str, url: str) -> str | None:
        return "messages" if method == "post" and url == "/v1/messages" else None

    def request(self, api: str, body: Mapping[str, Any], stream: bool) -> CallRequest:
        max_out = body.get("max_tokens")
        return CallRequest(
            provider="anthropic",
            operation="chat",
            api=api,
            model=str(body.get("model", "")),
            stream=stream,
            max_output_tokens=max_out if isinstance(max_out, int) else None,
            body=body,
        )

    def prepare_stream(self, api: str, body: Mapping[str, Any]) -> tuple[Mapping[str, Any], bool]:
        return body, False  # Anthropic streams always report usage

    def result(self, api: str, response: Any) -> CallResult:
        content = getattr(response, "content", None) or ()
        stop = getattr(response, "stop_reason", None)
        return CallResult(
            usage=_usage(getattr(response, "usage", None)) if getattr(response, "usage", None) is not None else None,
            response_model=getattr(response, "model", None),
            response_id=getattr(response, "id", None),
            finish_reasons=(stop,) if stop else (),
            output_text=[t for block in content if (t := getattr(block, "text", None))],
        )

    def accumulator(self, api: str, hide_usage: bool, capture: bool) -> _MessagesStream:
        return _MessagesStream(capture)

    def input_messages(self, api: str, body: Mapping[str, Any]) -> list[dict[str, Any]]:
        return [
            otel_message(str(m.get("role", "user")), m.get("content"))
            for m in body.get("messages") or ()
            if isinstance(m, Mapping)
        ]
