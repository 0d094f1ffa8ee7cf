"""Wire formats of the fake LLM server: pure functions, no I/O.

Every builder here returns plain JSON-compatible ``dict`` objects (or encoded SSE
frames) shaped exactly like the corresponding vendor API, so that the real
``openai`` and ``anthropic`` SDKs parse them with their normal code paths.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import re
import struct
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from tokenguard.testing._types import FakeUsage

JSONObject = dict[str, Any]

#: Default number of reply words (= output tokens) when the request sets no limit.
DEFAULT_REPLY_WORDS: Final = 20

#: Dimension of the fake embedding vectors (unless the request asks for ``dimensions``).
DEFAULT_EMBEDDING_DIMENSIONS: Final = 8

#: Request header that forces the number of reply words (= output tokens).
OUTPUT_TOKENS_HEADER: Final = "x-fake-output-tokens"

#: Request-body keys whose text counts towards the derived input tokens.
_INPUT_TEXT_KEYS: Final = ("system", "instructions", "messages", "input", "tools")

#: Request-body keys holding the output-token limit, by API.
MAX_TOKENS_KEYS: Final = ("max_tokens", "max_completion_tokens", "max_output_tokens")

#: Fixed overhead added per message (chat ``messages`` / responses ``input`` item).
PER_MESSAGE_TOKENS: Final = 3

_LOREM: Final = (
    *("lorem", "ipsum", "dolor", "sit", "amet", "consectetur", "adipiscing", "elit", "sed", "do"),
    *("eiusmod", "tempor", "incididunt", "ut", "labore", "et", "dolore", "magna", "aliqua", "enim"),
)

_PIECE_RE: Final = re.compile(r"\s*\S+")


# --------------------------------------------------------------------------- helpers


def dumps(obj: object) -> bytes:
    """Compact JSON encoding used for every response body."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


def new_id(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex}"


def _json_len(value: object) -> int:
    return len(json.dumps(value, separators=(",", ":"), ensure_ascii=False))


def derive_input_tokens(body: Mapping[str, Any]) -> int:
    """The deterministic input-token count the fake server reports for ``body``.

    ``ceil(chars / 4) + 3 * messages`` where ``chars`` is the summed length of the
    compact JSON encoding (``json.dumps(v, separators=(",", ":"), ensure_ascii=False)``)
    of each of the request fields ``system``, ``instructions``, ``messages``, ``input``
    and ``tools`` that is present and not ``None``, and ``messages`` is the number of
    items in the ``messages`` list plus the number of items in ``input`` (1 when
    ``input`` is a plain string).
    """
    chars = 0
    messages = 0
    for key in _INPUT_TEXT_KEYS:
        value = body.get(key)
        if value is None:
            continue
        chars += _json_len(value)
        if key in ("messages", "input"):
            if isinstance(value, list):
                messages += len(value)
            elif isinstance(value, str):
                messages += 1
    return math.ceil(chars / 4) + PER_MESSAGE_TOKENS * messages


def _embedding_items(value: object) -> list[object]:
    """Split an embeddings ``input`` into its individual items."""
    if isinstance(value, list) and value and not all(isinstance(v, int) for v in value):
        return list(value)
    return [value]


def embedding_input_tokens(value: object) -> int:
    """Input tokens of an embeddings ``input``: ceil(len/4) per string, len per token array."""
    total = 0
    for item in _embedding_items(value):
        if isinstance(item, str):
            total += math.ceil(len(item) / 4)
        elif isinstance(item, list):
            total += len(item)
        else:
            total += math.ceil(_json_len(item) / 4)
    return total


def _embedding_vector(item: object, dimensions: int) -> list[float]:
    """A deterministic vector for ``item``; every value is exactly representable in float32."""
    seed = json.dumps(item, sort_keys=True, ensure_ascii=False).encode()
    out: list[float] = []
    block = 0
    while len(out) < dimensions:
        digest = hashlib.sha256(seed + block.to_bytes(4, "little")).digest()
        out.extend((b - 128) / 128.0 for b in digest)
        block += 1
    return out[:dimensions]


# --------------------------------------------------------------------------- reply


@dataclass(frozen=True, slots=True)
class Reply:
    """The assistant reply of one request, pre-split into streaming pieces."""

    pieces: tuple[str, ...]
    """Text pieces, one per word (each but the first keeps its leading whitespace)."""
    truncated: bool
    """True when the reply hit the request's max-tokens limit (finish ``length``)."""

    @property
    def text(self) -> str:
        return "".join(self.pieces)

    @property
    def words(self) -> int:
        return sum(1 for p in self.pieces if p.strip())


def _max_tokens(body: Mapping[str, Any]) -> int | None:
    for key in MAX_TOKENS_KEYS:
        value = body.get(key)
        if isinstance(value, int) and not isinstance(value, bool):
            return max(value, 0)
    return None


def _split_pieces(text: str) -> list[str]:
    pieces = _PIECE_RE.findall(text)
    rest = text[sum(len(p) for p in pieces) :]
    if rest:
        if pieces:
            pieces[-1] += rest
        else:
            pieces.append(rest)
    return pieces


def build_reply(body: Mapping[str, Any], forced_words: int | None, reply_text: str | None) -> Reply:
    """Decide the reply text for a request.

    * ``forced_words`` (the ``x-fake-output-tokens`` header) wins: exactly that many
      default words, never truncated, finish reason "stop";
    * otherwise the configured ``reply_text``, or :data:`DEFAULT_REPLY_WORDS` default
      words, cut to the request's max-tokens limit (if any) counted in words. The
      reply is flagged ``truncated`` (finish reason "length") only when the limit
      actually cut it.
    """
    if forced_words is not None:
        return Reply(tuple(_lorem_pieces(forced_words)), truncated=False)
    limit = _max_tokens(body)
    pieces = _lorem_pieces(DEFAULT_REPLY_WORDS) if reply_text is None else _split_pieces(reply_text)
    if limit is None:
        return Reply(tuple(pieces), truncated=False)
    kept: list[str] = []
    words = 0
    for piece in pieces:
        if piece.strip():
            if words >= limit:
                return Reply(tuple(kept), truncated=True)
            words += 1
        kept.append(piece)
    return Reply(tuple(kept), truncated=False)


def _lorem_pieces(n: int) -> list[str]:
    return [w if i == 0 else " " + w for i, w in enumerate(_lorem(n))]


def _lorem(n: int) -> list[str]:
    return [_LOREM[i % len(_LOREM)] for i in range(n)]


# --------------------------------------------------------------------------- usage


def openai_chat_usage(u: FakeUsage) -> JSONObject:
    prompt_details: JSONObject = {"cached_tokens": u.cache_read_tokens, "audio_tokens": 0}
    if u.cache_write_tokens:
        prompt_details["cache_write_tokens"] = u.cache_write_tokens
    return {
        "prompt_tokens": u.input_tokens,
        "completion_tokens": u.output_tokens,
        "total_tokens": u.input_tokens + u.output_tokens,
        "prompt_tokens_details": prompt_details,
        "completion_tokens_details": {
            "reasoning_tokens": u.reasoning_tokens,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def openai_responses_usage(u: FakeUsage) -> JSONObject:
    return {
        "input_tokens": u.input_tokens,
        "input_tokens_details": {
            "cached_tokens": u.cache_read_tokens,
            "cache_write_tokens": u.cache_write_tokens,
        },
        "output_tokens": u.output_tokens,
        "output_tokens_details": {"reasoning_tokens": u.reasoning_tokens},
        "total_tokens": u.input_tokens + u.output_tokens,
    }


def anthropic_usage(u: FakeUsage, *, output_tokens: int | None = None) -> JSONObject:
    usage: JSONObject = {
        "input_tokens": u.input_tokens - u.cache_read_tokens - u.cache_write_tokens,
        "cache_creation_input_tokens": u.cache_write_tokens,
        "cache_read_input_tokens": u.cache_read_tokens,
        "cache_creation": {
            "ephemeral_5m_input_tokens": u.cache_write_tokens,
            "ephemeral_1h_input_tokens": 0,
        },
        "output_tokens": u.output_tokens if output_tokens is None else output_tokens,
        "service_tier": "standard",
    }
    if u.reasoning_tokens and output_tokens is None:
        usage["output_tokens_details"] = {"thinking_tokens": u.reasoning_tokens}
    return usage


def anthropic_delta_usage(u: FakeUsage) -> JSONObject:
    """Usage of the final ``message_delta`` event: cumulative totals, input side included."""
    usage: JSONObject = {
        "input_tokens": u.input_tokens - u.cache_read_tokens - u.cache_write_tokens,
        "cache_creation_input_tokens": u.cache_write_tokens,
        "cache_read_input_tokens": u.cache_read_tokens,
        "output_tokens": u.output_tokens,
    }
    if u.reasoning_tokens:
        usage["output_tokens_details"] = {"thinking_tokens": u.reasoning_tokens}
    return usage


# --------------------------------------------------------------------------- SSE


def sse(data: object, event: str | None = None) -> bytes:
    """Encode one server-sent event (``data`` is JSON-encoded unless it is bytes)."""
    payload = data if isinstance(data, bytes) else dumps(data)
    if event is None:
        return b"data: " + payload + b"\n\n"
    return b"event: " + event.encode() + b"\ndata: " + payload + b"\n\n"


SSE_DONE: Final = b"data: [DONE]\n\n"


# --------------------------------------------------------------------------- openai chat


def openai_chat_completion(body: Mapping[str, Any], reply: Reply, usage: FakeUsage) -> JSONObject:
    return {
        "id": new_id("chatcmpl-"),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": body.get("model", ""),
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": reply.text,
                    "refusal": None,
                    "annotations": [],
                },
                "logprobs": None,
                "finish_reason": "length" if reply.truncated else "stop",
            }
        ],
        "usage": openai_chat_usage(usage),
        "service_tier": "default",
        "system_fingerprint": None,
    }


def openai_chat_stream(body: Mapping[str, Any], reply: Reply, usage: FakeUsage) -> list[bytes]:
    options = body.get("stream_options")
    include_usage = isinstance(options, Mapping) and options.get("include_usage") is True
    base: JSONObject = {
        "id": new_id("chatcmpl-"),
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": body.get("model", ""),
        "service_tier": "default",
        "system_fingerprint": None,
    }

    def chunk(delta: JSONObject, finish_reason: str | None = None) -> bytes:
        data: JSONObject = {
            **base,
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}],
        }
        if include_usage:
            data["usage"] = None
        return sse(data)

    events = [chunk({"role": "assistant", "content": "", "refusal": None})]
    events.extend(chunk({"content": piece}) for piece in reply.pieces)
    events.append(chunk({}, "length" if reply.truncated else "stop"))
    if include_usage:
        events.append(sse({**base, "choices": [], "usage": openai_chat_usage(usage)}))
    events.append(SSE_DONE)
    return events


# --------------------------------------------------------------------------- openai responses


def _responses_object(
    body: Mapping[str, Any],
    response_id: str,
    created_at: int,
    *,
    status: str,
    output: list[JSONObject],
    usage: JSONObject | None,
) -> JSONObject:
    completed = status == "completed"
    return {
        "id": response_id,
        "object": "response",
        "created_at": created_at,
        "status": status,
        "background": False,
        "completed_at": int(time.time()) if completed else None,
        "error": None,
        "incomplete_details": None,
        "instructions": body.get("instructions"),
        "max_output_tokens": body.get("max_output_tokens"),
        "max_tool_calls": None,
        "model": body.get("model", ""),
        "output": output,
        "parallel_tool_calls": True,
        "previous_response_id": body.get("previous_response_id"),
        "reasoning": {"effort": None, "summary": None},
        "service_tier": "default",
        "store": body.get("store", True),
        "temperature": body.get("temperature", 1.0),
        "text": {"format": {"type": "text"}, "verbosity": "medium"},
        "tool_choice": "auto",
        "tools": [],
        "top_logprobs": 0,
        "top_p": body.get("top_p", 1.0),
        "truncation": "disabled",
        "usage": usage,
        "user": None,
        "metadata": body.get("metadata") or {},
    }


def _responses_message(item_id: str, text: str, status: str) -> JSONObject:
    content = [_output_text(text)] if status == "completed" else []
    return {"id": item_id, "type": "message", "status": status, "content": content, "role": "assistant"}


def _output_text(text: str) -> JSONObject:
    return {"type": "output_text", "annotations": [], "logprobs": [], "text": text}


def openai_response(body: Mapping[str, Any], reply: Reply, usage: FakeUsage) -> JSONObject:
    message = _responses_message(new_id("msg_"), reply.text, "completed")
    return _responses_object(
        body,
        new_id("resp_"),
        int(time.time()),
        status="completed",
        output=[message],
        usage=openai_responses_usage(usage),
    )


def openai_response_stream(body: Mapping[str, Any], reply: Reply, usage: FakeUsage) -> list[bytes]:
    response_id = new_id("resp_")
    item_id = new_id("msg_")
    created_at = int(time.time())
    text = reply.text
    events: list[bytes] = []

    def emit(event_type: str, fields: JSONObject) -> None:
        events.append(sse({"type": event_type, "sequence_number": len(events), **fields}, event_type))

    in_progress = _responses_object(body, response_id, created_at, status="in_progress", output=[], usage=None)
    emit("response.created", {"response": in_progress})
    emit("response.in_progress", {"response": in_progress})
    emit(
        "response.output_item.added",
        {"output_index": 0, "item": _responses_message(item_id, "", "in_progress")},
    )
    where: JSONObject = {"item_id": item_id, "output_index": 0, "content_index": 0}
    emit("response.content_part.added", {**where, "part": _output_text("")})
    for piece in reply.pieces:
        emit("response.output_text.delta", {**where, "delta": piece, "logprobs": []})
    emit("response.output_text.done", {**where, "text": text, "logprobs": []})
    emit("response.content_part.done", {**where, "part": _output_text(text)})
    done_item = _responses_message(item_id, text, "completed")
    emit("response.output_item.done", {"output_index": 0, "item": done_item})
    completed = _responses_object(
        body,
        response_id,
        created_at,
        status="completed",
        output=[done_item],
        usage=openai_responses_usage(usage),
    )
    emit("response.completed", {"response": completed})
    return events


# --------------------------------------------------------------------------- openai embeddings


def openai_embeddings(body: Mapping[str, Any], usage: FakeUsage | None) -> JSONObject:
    raw_input = body.get("input", "")
    dims = body.get("dimensions")
    dimensions = dims if isinstance(dims, int) and not isinstance(dims, bool) and dims > 0 else None
    dimensions = dimensions or DEFAULT_EMBEDDING_DIMENSIONS
    as_base64 = body.get("encoding_format") == "base64"
    data: list[JSONObject] = []
    for index, item in enumerate(_embedding_items(raw_input)):
        vector = _embedding_vector(item, dimensions)
        embedding: object = (
            base64.b64encode(struct.pack(f"<{dimensions}f", *vector)).decode("ascii") if as_base64 else vector
        )
        data.append({"object": "embedding", "index": index, "embedding": embedding})
    tokens = usage.input_tokens if usage is not None else embedding_input_tokens(raw_input)
    return {
        "object": "list",
        "data": data,
        "model": body.get("model", ""),
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }


# --------------------------------------------------------------------------- anthropic


def _anthropic_message(
    body: Mapping[str, Any],
    message_id: str,
    content: list[JSONObject],
    stop_reason: str | None,
    usage: JSONObject,
) -> JSONObject:
    return {
        "id": message_id,
        "type": "message",
        "role": "assistant",
        "model": body.get("model", ""),
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": None,
        "usage": usage,
    }


def anthropic_message(body: Mapping[str, Any], reply: Reply, usage: FakeUsage) -> JSONObject:
    return _anthropic_message(
        body,
        new_id("msg_"),
        [{"type": "text", "text": reply.text}],
        "max_tokens" if reply.truncated else "end_turn",
        anthropic_usage(usage),
    )


def anthropic_stream(body: Mapping[str, Any], reply: Reply, usage: FakeUsage) -> list[bytes]:
    start = _anthropic_message(body, new_id("msg_"), [], None, anthropic_usage(usage, output_tokens=1))
    events = [
        sse({"type": "message_start", "message": start}, "message_start"),
        sse(
            {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
            "content_block_start",
        ),
        sse({"type": "ping"}, "ping"),
    ]
    events.extend(
        sse(
            {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": piece}},
            "content_block_delta",
        )
        for piece in reply.pieces
    )
    events.append(sse({"type": "content_block_stop", "index": 0}, "content_block_stop"))
    events.append(
        sse(
            {
                "type": "message_delta",
                "delta": {
                    "stop_reason": "max_tokens" if reply.truncated else "end_turn",
                    "stop_sequence": None,
                },
                "usage": anthropic_delta_usage(usage),
            },
            "message_delta",
        )
    )
    events.append(sse({"type": "message_stop"}, "message_stop"))
    return events


# --------------------------------------------------------------------------- errors

_OPENAI_ERRORS: Final[Mapping[int, tuple[str, str | None, str]]] = {
    400: ("invalid_request_error", None, "Invalid request."),
    401: ("invalid_request_error", "invalid_api_key", "Incorrect API key provided."),
    403: ("invalid_request_error", "unsupported_country_region_territory", "Forbidden."),
    404: ("invalid_request_error", None, "Not found."),
    409: ("invalid_request_error", None, "Conflict."),
    422: ("invalid_request_error", None, "Unprocessable entity."),
    429: ("requests", "rate_limit_exceeded", "Rate limit reached (injected by the fake LLM server)."),
    500: ("server_error", None, "The server had an error while processing your request."),
    503: ("server_error", None, "The server is overloaded or not ready yet."),
}

_ANTHROPIC_ERRORS: Final[Mapping[int, tuple[str, str]]] = {
    400: ("invalid_request_error", "Invalid request."),
    401: ("authentication_error", "invalid x-api-key"),
    403: ("permission_error", "Your API key does not have permission to use the specified resource."),
    404: ("not_found_error", "Not found."),
    413: ("request_too_large", "Request exceeds the maximum allowed number of bytes."),
    429: ("rate_limit_error", "Rate limit reached (injected by the fake LLM server)."),
    500: ("api_error", "Internal server error."),
    504: ("timeout_error", "Request timed out."),
    529: ("overloaded_error", "Overloaded"),
}


def openai_error(status: int, message: str | None = None) -> JSONObject:
    err_type, code, default = _OPENAI_ERRORS.get(
        status, ("server_error" if status >= 500 else "invalid_request_error", None, f"Error {status}.")
    )
    return {"error": {"message": message or default, "type": err_type, "param": None, "code": code}}


def anthropic_error(status: int, message: str | None = None, request_id: str | None = None) -> JSONObject:
    err_type, default = _ANTHROPIC_ERRORS.get(
        status, ("api_error" if status >= 500 else "invalid_request_error", f"Error {status}.")
    )
    out: JSONObject = {"type": "error", "error": {"type": err_type, "message": message or default}}
    if request_id is not None:
        out["request_id"] = request_id
    return out


__all__ = [
    "DEFAULT_EMBEDDING_DIMENSIONS",
    "DEFAULT_REPLY_WORDS",
    "MAX_TOKENS_KEYS",
    "OUTPUT_TOKENS_HEADER",
    "PER_MESSAGE_TOKENS",
    "SSE_DONE",
    "Reply",
    "anthropic_error",
    "anthropic_message",
    "anthropic_stream",
    "build_reply",
    "derive_input_tokens",
    "dumps",
    "embedding_input_tokens",
    "new_id",
    "openai_chat_completion",
    "openai_chat_stream",
    "openai_embeddings",
    "openai_error",
    "openai_response",
    "openai_response_stream",
    "sse",
]
