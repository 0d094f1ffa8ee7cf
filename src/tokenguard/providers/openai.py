"""The OpenAI adapter: Chat Completions, Responses and Embeddings (the official ``openai`` SDK)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..pricing import Usage
from .base import CallRequest, CallResult, count, otel_message

__all__ = ["OpenAIAdapter"]

_APIS = {
    "/chat/completions": ("chat.completions", "chat"),
    "/responses": ("responses", "chat"),
    "/embeddings": ("embeddings", "embeddings"),
}


def _chat_usage(u: Any) -> Usage | None:
    if u is None:
        return None
    details = getattr(u, "prompt_tokens_details", None)
    return Usage(
        input_tokens=count(u, "prompt_tokens"),
        output_tokens=count(u, "completion_tokens"),
        cache_read_tokens=count(details, "cached_tokens"),
        cache_write_tokens=count(details, "cache_write_tokens"),
        reasoning_tokens=count(getattr(u, "completion_tokens_details", None), "reasoning_tokens"),
    )


def _responses_usage(u: Any) -> Usage | None:
    if u is None:
        return None
    details = getattr(u, "input_tokens_details", None)
    return Usage(
        input_tokens=count(u, "input_tokens"),
        output_tokens=count(u, "output_tokens"),
        cache_read_tokens=count(details, "cached_tokens"),
        cache_write_tokens=count(details, "cache_write_tokens"),
        reasoning_tokens=count(getattr(u, "output_tokens_details", None), "reasoning_tokens"),
    )


def _responses_result(r: Any) -> CallResult:
    status = getattr(r, "status", None)
    incomplete = getattr(getattr(r, "incomplete_details", None), "reason", None)
    texts = [
        getattr(part, "text", None) or ""
        for item in getattr(r, "output", None) or ()
        for part in getattr(item, "content", None) or ()
        if getattr(part, "type", None) == "output_text"
    ]
    return CallResult(
        usage=_responses_usage(getattr(r, "usage", None)),
        response_model=getattr(r, "model", None),
        response_id=getattr(r, "id", None),
        finish_reasons=(str(incomplete or status),) if (incomplete or status) else (),
        service_tier=getattr(r, "service_tier", None),
        output_text=texts,
    )


class _ChatStream:
    """Chat Completions chunks: usage arrives in a last chunk with empty ``choices``."""

    __slots__ = ("complete", "finish", "hide_usage", "model", "n", "rid", "texts", "tier", "usage")

    def __init__(self, hide_usage: bool, capture: bool) -> None:
        self.hide_usage = hide_usage
        self.complete = False
        self.usage: Usage | None = None
        self.model: str | None = None
        self.rid: str | None = None
        self.tier: str | None = None
        self.finish: list[str] = []
        self.texts: list[str] | None = [] if capture else None
        self.n = 0

    def feed(self, chunk: Any) -> bool:
        if self.model is None:
            self.model, self.rid = chunk.model, chunk.id
            self.tier = getattr(chunk, "service_tier", None)
        choices = chunk.choices
        if choices:
            for choice in choices:
                delta = choice.delta
                if delta is not None and (delta.content or delta.tool_calls or getattr(delta, "refusal", None)):
                    self.n += 1
                    if self.texts is not None and delta.content:
                        self.texts.append(delta.content)
                if choice.finish_reason:
                    self.finish.append(choice.finish_reason)
        usage = chunk.usage
        if usage is not None:
            self.usage = _chat_usage(usage)
            self.complete = True
            return not (self.hide_usage and not choices)
        return True

    def result(self) -> CallResult:
        return CallResult(
            usage=self.usage,
            response_model=self.model,
            response_id=self.rid,
            finish_reasons=tuple(self.finish),
            service_tier=self.tier,
            output_text=self.texts or [],
            output_chunks=self.n,
        )


class _ResponsesStream:
    """Responses API events: the final ``response.completed`` (or ``.incomplete``/``.failed``)
    carries the whole response with usage."""

    __slots__ = ("complete", "final", "model", "n", "rid", "texts")

    _FINAL = frozenset({"response.completed", "response.incomplete", "response.failed"})

    def __init__(self, capture: bool) -> None:
        self.complete = False
        self.final: CallResult | None = None
        self.model: str | None = None
        self.rid: str | None = None
        self.texts: list[str] | None = [] if capture else None
        self.n = 0

    def feed(self, event: Any) -> bool:
        kind = event.type
        if kind == "response.output_text.delta":
            self.n += 1
            if self.texts is not None:
                self.texts.append(event.delta)
        elif kind == "response.created":
            self.model, self.rid = event.response.model, event.response.id
        elif kind in self._FINAL:
            self.final = _responses_result(event.response)
            self.complete = True
        return True

    def result(self) -> CallResult:
        if self.final is not None:
            self.final.output_chunks = self.n
            return self.final
        return CallResult(
            response_model=self.model, response_id=self.rid, output_text=self.texts or [], output_chunks=self.n
        )


class OpenAIAdapter:
    """Translates OpenAI requests and responses to the neutral types."""

    provider = "openai"
    # The request fields holding the user's text (scanned for sensitive data).
    input_keys: Mapping[str, tuple[str, ...]] = {
        "chat.completions": ("messages",),
        "responses": ("instructions", "input"),
        "embeddings": ("input",),
    }

    def api_for(self, method: str, url: str) -> str | None:
        if method != "post":
            return None
        entry = _APIS.get(url)
        return entry[0] if entry else None

    def request(self, api: str, body: Mapping[str, Any], stream: bool) -> CallRequest:
        if api == "chat.completions":
            max_out = body.get("max_completion_tokens") or body.get("max_tokens")
            operation = "chat"
        elif api == "responses":
            max_out = body.get("max_output_tokens")
            operation = "chat"
        else:
            max_out, operation = 0, "embeddings"
        return CallRequest(
            provider="openai",
            operation=operation,
            api=api,
            model=str(body.get("model", "")),
            stream=stream,
            max_output_tokens=max_out if isinstance(max_out, int) else None,
            body=body,
        )

    def prepare_stream(self, api: str, body: Mapping[str, Any]) -> tuple[Mapping[str, Any], bool]:
        if api != "chat.completions":
            return body, False  # Responses streams always end with the usage
        options = body.get("stream_options")
        if isinstance(options, Mapping) and options.get("include_usage"):
            return body, False
        new_options = {**options, "include_usage": True} if isinstance(options, Mapping) else {"include_usage": True}
        return {**body, "stream_options": new_options}, True

    def result(self, api: str, response: Any) -> CallResult:
        if api == "responses":
            return _responses_result(response)
        choices = getattr(response, "choices", None) or ()
        return CallResult(
            usage=_chat_usage(getattr(response, "usage", None)),
            response_model=getattr(response, "model", None),
            response_id=getattr(response, "id", None),
            finish_reasons=tuple(r for c in choices if (r := getattr(c, "finish_reason", None))),
            service_tier=getattr(response, "service_tier", None),
            output_text=[t for c in choices if (t := getattr(getattr(c, "message", None), "content", None))],
        )

    def accumulator(self, api: str, hide_usage: bool, capture: bool) -> _ChatStream | _ResponsesStream:
        return _ResponsesStream(capture) if api == "responses" else _ChatStream(hide_usage, capture)

    def input_messages(self, api: str, body: Mapping[str, Any]) -> list[dict[str, Any]]:
        if api == "embeddings":
            return []
        if api == "responses":
            value = body.get("input")
            if isinstance(value, str):
                return [otel_message("user", value)]
            messages: Any = value or ()
        else:
            messages = body.get("messages") or ()
        return [otel_message(str(m.get("role", "user")), m.get("content")) for m in messages if isinstance(m, Mapping)]
