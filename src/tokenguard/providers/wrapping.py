"""The generic core of governed clients: one interception point per client, and stream wrapping.

Both vendor SDKs send every API call through their base client's ``request`` method, outside the
SDK's own retry loop. ``wrap`` swaps the client's class for a cached subclass that overrides
``request`` (and ``copy`` / ``with_options`` so copies stay governed). A governed call goes::

    adapter.request()  ->  guard.begin()  ->  SDK request (span current)  ->  observe the result
                                                                                 -> call.settle()

The result is observed without changing its type: a parsed model is read; a ``Stream`` keeps its
class and gets its iterator wrapped; a raw response (``with_raw_response`` /
``with_streaming_response``) is read when the user parses or closes it. Settlement happens exactly
once: on exhaustion, ``close()``, leaving a ``with`` block, an exception, or garbage collection.

For Anthropic, the SDK's own OpenTelemetry span is switched off for governed calls (tokenguard's
span, with the same conventions plus cost and attribution, takes its place), so each governed
call yields exactly one GenAI client span; the SDK's spans for other API calls are unchanged.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import logging
import os
import sys
import time
import weakref
from collections.abc import AsyncIterator, Iterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from opentelemetry import context as otel_context
from opentelemetry import trace

from ..routing import BACKOFF_MAX_S, retry_after, retry_reason
from .anthropic import AnthropicAdapter
from .base import Adapter, CallRequest, CallResult, JSONView, StreamAccumulator
from .openai import OpenAIAdapter

if TYPE_CHECKING:
    from ..guard import Call, Guard
    from ..routing import Plan

__all__ = ["wrap_client"]

log = logging.getLogger("tokenguard")

ClientT = TypeVar("ClientT")

RAW_RESPONSE_HEADER = "X-Stainless-Raw-Response"
SUPPORTED = "openai.OpenAI, openai.AsyncOpenAI, anthropic.Anthropic and anthropic.AsyncAnthropic"

# Set while a governed Anthropic call runs, so the SDK's own call span is not started.
_native_span_off: ContextVar[bool] = ContextVar("tokenguard_native_span_off", default=False)


@dataclass(frozen=True)
class _Kit:
    """What the generic core needs to know about one SDK: its adapter and its result types."""

    adapter: Adapter
    is_async: bool
    stream_types: tuple[type, ...]
    raw_types: tuple[type, ...]


def _kit_for(client: object) -> _Kit:
    """Identify the client's SDK without importing one that the application has not imported."""
    openai = sys.modules.get("openai")
    if openai is not None and isinstance(client, (openai.OpenAI, openai.AsyncOpenAI)):
        from openai._legacy_response import LegacyAPIResponse
        from openai._response import BaseAPIResponse

        return _Kit(
            OpenAIAdapter(),
            isinstance(client, openai.AsyncOpenAI),
            (openai.Stream, openai.AsyncStream),
            (BaseAPIResponse, LegacyAPIResponse),
        )
    anthropic = sys.modules.get("anthropic")
    if anthropic is not None and isinstance(client, (anthropic.Anthropic, anthropic.AsyncAnthropic)):
        from anthropic._response import BaseAPIResponse as ABase

        return _Kit(
            AnthropicAdapter(),
            isinstance(client, anthropic.AsyncAnthropic),
            (anthropic.Stream, anthropic.AsyncStream),
            (ABase,),
        )
    raise TypeError(
        f"tokenguard cannot wrap {type(client).__module__}.{type(client).__qualname__}: "
        f"wrap() supports {SUPPORTED} clients (and their subclasses, e.g. AzureOpenAI)"
    )


_governed: dict[type, type] = {}


def wrap_client(guard: Guard, client: ClientT) -> ClientT:
    """Make ``client`` governed by ``guard`` (in place) and return it."""
    cls = type(client)
    if getattr(cls, "__tokenguard_governed__", False):
        client._tokenguard_guard = guard  # type: ignore[attr-defined]  # re-wrap: the new guard wins
        return client
    kit = _kit_for(client)
    governed = _governed.get(cls)
    if governed is None:
        governed = _governed[cls] = _make_governed_class(cls, kit)
    client._tokenguard_guard = guard  # type: ignore[attr-defined]
    client.__class__ = governed
    return client


def _server_of(client: Any) -> tuple[str, int | None] | None:
    # Cached per base URL object (the SDKs keep it in `_base_url`; a new URL means a new entry).
    url = client._base_url
    cached = client.__dict__.get("_tokenguard_server")
    if cached is not None and cached[0] is url:
        return cached[1]  # type: ignore[no-any-return]
    host = url.host
    server = (host, url.port or (443 if url.scheme == "https" else 80)) if host else None
    client.__dict__["_tokenguard_server"] = (url, server)
    return server


def _raw_mode(options: Any) -> str | None:
    headers = options.headers
    if isinstance(headers, Mapping):
        value = headers.get(RAW_RESPONSE_HEADER)
        return value if isinstance(value, str) else None
    return None


def _status_for(exc: BaseException) -> str:
    return "cancelled" if isinstance(exc, (asyncio.CancelledError, KeyboardInterrupt, GeneratorExit)) else "error"


def _make_governed_class(base: type, kit: _Kit) -> type:
    adapter = kit.adapter
    base_request = base.request  # type: ignore[attr-defined]
    base_copy = base.copy  # type: ignore[attr-defined]

    def plan(self: Any, options: Any, stream: bool) -> _Governed | None:
        """Steps 1-3: the neutral request and the policy decisions; ``None`` when not governed."""
        api = adapter.api_for(options.method, options.url)
        body = options.json_data
        if api is None or not isinstance(body, Mapping):
            return None
        guard = self._tokenguard_guard
        req = adapter.request(api, body, stream)
        server = _server_of(self)
        return _Governed(guard, server, req, guard.plan(adapter, req, server), _raw_mode(options))

    def begin(g: _Governed, options: Any, stream: bool, attempt: _Attempt) -> tuple[Any, Call, bool]:
        """Steps 4-6 of one attempt: the options to send and the call in flight."""
        req = attempt.req
        body = req.body
        hide_usage = False
        if stream and g.raw != "stream":
            body, hide_usage = adapter.prepare_stream(req.api, body)
        if body is not options.json_data:
            options = options.model_copy(update={"json_data": body})
        call = g.guard.begin(
            adapter, req, g.server, g.plan, attempt=attempt.n, reason=attempt.reason, chain_id=attempt.chain_id
        )
        return options, call, hide_usage

    def copy(self: Any, *args: Any, **kwargs: Any) -> Any:
        new = base_copy(self, *args, **kwargs)  # constructs self.__class__: still governed
        new._tokenguard_guard = self._tokenguard_guard
        return new

    namespace: dict[str, Any] = {
        "__tokenguard_governed__": True,
        "__module__": base.__module__,
        "__qualname__": base.__qualname__,
        "__doc__": base.__doc__,
        "copy": copy,
        "with_options": copy,
    }

    # The sync and async request methods are twins: one body cannot both await and not.
    if kit.is_async:

        async def asend(
            self: Any, cast_to: Any, options: Any, stream: bool, stream_cls: Any, g: _Governed, a: _Attempt
        ) -> Any:
            options, call, hide_usage = begin(g, options, stream, a)
            span_token = _attach(call)
            native = _native_span_off.set(True)
            try:
                result = await base_request(self, cast_to, options, stream=stream, stream_cls=stream_cls)
            except BaseException as exc:
                call.settle(None, _status_for(exc), exc)  # type: ignore[arg-type]
                raise
            finally:
                _native_span_off.reset(native)
                _detach(span_token)
            return _observe(kit, call, result, hide_usage)

        async def arequest(
            self: Any, cast_to: Any, options: Any, *, stream: bool = False, stream_cls: Any = None
        ) -> Any:
            g = plan(self, options, stream)
            if g is None:
                return await base_request(self, cast_to, options, stream=stream, stream_cls=stream_cls)
            if g.plan is None or not g.plan.chains:
                return await asend(self, cast_to, options, stream, stream_cls, g, _Attempt.first(g))
            chain = _Chain(g)
            try:
                for _model in chain.models():
                    try:
                        async for retry in chain.retrying(is_async=True):
                            with retry:
                                result = await asend(self, cast_to, options, stream, stream_cls, g, chain.next(retry))
                        return chain.done(result)
                    except Exception as exc:
                        if not chain.failed(exc):
                            raise
            finally:
                chain.end()
            raise AssertionError("unreachable")  # pragma: no cover - chain.failed raises on the last model

        namespace["request"] = arequest
    else:

        def send(
            self: Any, cast_to: Any, options: Any, stream: bool, stream_cls: Any, g: _Governed, a: _Attempt
        ) -> Any:
            options, call, hide_usage = begin(g, options, stream, a)
            span_token = _attach(call)
            native = _native_span_off.set(True)
            try:
                result = base_request(self, cast_to, options, stream=stream, stream_cls=stream_cls)
            except BaseException as exc:
                call.settle(None, _status_for(exc), exc)  # type: ignore[arg-type]
                raise
            finally:
                _native_span_off.reset(native)
                _detach(span_token)
            return _observe(kit, call, result, hide_usage)

        def request(self: Any, cast_to: Any, options: Any, *, stream: bool = False, stream_cls: Any = None) -> Any:
            g = plan(self, options, stream)
            if g is None:
                return base_request(self, cast_to, options, stream=stream, stream_cls=stream_cls)
            if g.plan is None or not g.plan.chains:
                return send(self, cast_to, options, stream, stream_cls, g, _Attempt.first(g))
            chain = _Chain(g)
            try:
                for _model in chain.models():
                    try:
                        for retry in chain.retrying():
                            with retry:
                                result = send(self, cast_to, options, stream, stream_cls, g, chain.next(retry))
                        return chain.done(result)
                    except Exception as exc:
                        if not chain.failed(exc):
                            raise
            finally:
                chain.end()
            raise AssertionError("unreachable")  # pragma: no cover - chain.failed raises on the last model

        namespace["request"] = request

    native_tracer = getattr(base, "_tracer", None)
    if isinstance(native_tracer, property) and native_tracer.fget is not None:
        fget = native_tracer.fget

        def _tracer(self: Any) -> Any:
            return None if _native_span_off.get() else fget(self)

        namespace["_tracer"] = property(_tracer)

    return type(base.__name__, (base,), namespace)


@dataclass(slots=True)
class _Governed:
    """A governed call before its attempts: where it goes and what step 3 decided."""

    guard: Guard
    server: tuple[str, int | None] | None
    req: CallRequest
    plan: Plan | None
    raw: str | None


@dataclass(frozen=True, slots=True)
class _Attempt:
    """One attempt of a governed call: its request (model), number, and why that model."""

    req: CallRequest
    n: int = 1
    reason: str | None = None
    chain_id: str | None = None

    @staticmethod
    def first(g: _Governed) -> _Attempt:
        return _Attempt(g.req) if g.plan is None else _Attempt(g.plan.req, 1, g.plan.reason)


class _Chain:
    """The attempts of a routed call: retries of each model (with ``tenacity``), then the next
    fallback. One parent span covers them; each attempt is its own call, record and child span."""

    def __init__(self, g: _Governed) -> None:
        assert g.plan is not None
        self.guard = g.guard
        self.plan = g.plan
        self.id = os.urandom(8).hex()
        self.models_left = [g.plan.req.model, *g.plan.fallbacks]
        self.req = g.plan.req
        self.n = 0
        self.model_attempts = 0  # attempts with the current model
        self.first_reason: str | None = None
        self.last: str | None = None  # why the previous attempt failed: "429", "5xx", ...
        self.error: BaseException | None = None
        self.span = g.guard.telemetry.start_chain(g.plan, self.id, g.server)
        self.token = otel_context.attach(trace.set_span_in_context(self.span)) if self.span is not None else None

    def models(self) -> Iterator[str]:
        first = True
        while self.models_left:
            model = self.models_left.pop(0)
            self.req = self.plan.attempt(model)
            self.first_reason = self.plan.reason if first else f"fallback:{self.last}"
            first = False
            yield model

    def _retryable(self, exc: BaseException) -> bool:
        # A vendor that asks to wait longer than the route's max_wait_s is not retried: the chain
        # moves on to the next fallback at once.
        self.last = retry_reason(exc)
        if self.last is None:
            return False
        asked = retry_after(exc)
        return asked is None or asked <= self.plan.max_wait_s

    def retrying(self, is_async: bool = False) -> Any:
        """The attempts with the current model: ``tenacity`` retries on what :func:`retry_reason`
        accepts, waiting what the vendor asked for, else exponential backoff with jitter."""
        import tenacity

        first = self.plan.backoff_s
        backoff = tenacity.wait_exponential(multiplier=first, max=BACKOFF_MAX_S) + tenacity.wait_random(0, first)

        def wait(state: tenacity.RetryCallState) -> float:
            error = state.outcome.exception() if state.outcome is not None else None
            asked = retry_after(error) if error is not None else None
            return asked if asked is not None else backoff(state)

        return (tenacity.AsyncRetrying if is_async else tenacity.Retrying)(
            stop=tenacity.stop_after_attempt(self.plan.retries + 1),
            wait=wait,
            retry=tenacity.retry_if_exception(self._retryable),
            reraise=True,
        )

    def next(self, retry: Any) -> _Attempt:
        self.n += 1
        self.model_attempts = retry.retry_state.attempt_number
        reason = self.first_reason if self.model_attempts == 1 else f"retry:{self.last}"
        return _Attempt(self.req, self.n, reason, self.id)

    def failed(self, exc: BaseException) -> bool:
        """After a model's last attempt failed: True to go on with the next fallback."""
        self.error = exc
        if retry_reason(exc) is None or not self.models_left:
            return False
        log.warning(
            "tokenguard: %s failed (%s) after %d attempt(s); falling back to %s",
            self.req.model,
            type(exc).__name__,
            self.model_attempts,
            self.models_left[0],
        )
        return True

    def done(self, result: Any) -> Any:
        self.error = None
        return result

    def end(self) -> None:
        if self.token is not None:
            otel_context.detach(self.token)
        if self.span is not None:
            self.guard.telemetry.end_chain(self.span, self.n, self.req.model, self.error)


def _attach(call: Call) -> object | None:
    # The span is current only while the SDK sends the request (so HTTP-level spans nest under it),
    # and is detached in the same task before returning: never while a stream is open.
    span = call.span
    if span is None or not span.is_recording():
        return None
    return otel_context.attach(trace.set_span_in_context(span))


def _detach(token: object | None) -> None:
    if token is not None:
        otel_context.detach(token)  # type: ignore[arg-type]


# -- step 7: observing results -------------------------------------------------------------------


def _observe(kit: _Kit, call: Call, result: Any, hide_usage: bool) -> Any:
    if isinstance(result, kit.stream_types):
        return _govern_stream(kit, call, result, hide_usage)
    if isinstance(result, kit.raw_types):
        return _govern_raw(kit, call, result, hide_usage)
    try:
        info = kit.adapter.result(call.req.api, result)
    except Exception:  # an unexpected response shape must not break the caller's call
        log.exception("tokenguard could not read usage from a %s response; usage is estimated", call.req.api)
        info = CallResult()
    call.settle(info, "ok")
    return result


class _StreamWatch:
    """The settlement state of one stream, shared by its iterator wrapper and its close hook."""

    __slots__ = ("acc", "call", "inner", "refresh_at")

    def __init__(self, call: Call, acc: StreamAccumulator, inner: Any) -> None:
        self.call = call
        self.acc = acc
        self.inner = inner
        # A stream being read keeps its budget reservation alive (refreshed every third of the TTL);
        # one left unread lets it expire like any reservation of a dead process.
        self.refresh_at = time.monotonic() + call.guard.reservation_ttl_s / 3 if call.reservation else None

    def keep_alive(self) -> None:
        self.refresh_at = time.monotonic() + self.call.guard.reservation_ttl_s / 3
        self.call.guard.refresh(self.call)

    def finish(self, status: str = "", error: BaseException | None = None) -> None:
        if not self.call.settled:
            acc = self.acc
            if not status:
                status = "ok" if acc.complete else "cancelled"
            self.call.settle(acc.result(), status, error)  # type: ignore[arg-type]

    def closed(self) -> None:
        # The SDK's own generator closes the response when the stream ends (it is running then):
        # the iterator wrapper settles that case. Any other close is the user's.
        inner = self.inner
        if not (getattr(inner, "gi_running", False) or getattr(inner, "ag_running", False)):
            self.finish()

    def __del__(self) -> None:
        # A stream dropped without being read to the end or closed.
        if not self.call.settled:
            with contextlib.suppress(Exception):  # never raise from a finalizer
                self.finish()


def _unreadable(exc: Exception) -> bool:
    # An unexpected event shape must not break the caller's stream.
    log.warning("tokenguard could not read a stream event (%r); the call's usage may be estimated", exc)
    return True


# The sync and async iterator wrappers are twins: a generator body cannot serve both.


def _iterate(inner: Iterator[Any], watch: _StreamWatch) -> Iterator[Any]:
    feed = watch.acc.feed
    try:
        for item in inner:
            if watch.call.first_chunk_at is None:
                watch.call.chunk()
            if watch.refresh_at is not None and time.monotonic() >= watch.refresh_at:
                watch.keep_alive()
            try:
                keep = feed(item)
            except Exception as exc:
                keep = _unreadable(exc)
            if keep:
                yield item
        watch.finish("ok")
    except GeneratorExit:
        watch.finish()
        close = getattr(inner, "close", None)
        if close is not None:
            close()
        raise
    except BaseException as exc:
        watch.finish(_status_for(exc), exc)
        raise


async def _aiterate(inner: AsyncIterator[Any], watch: _StreamWatch) -> AsyncIterator[Any]:
    feed = watch.acc.feed
    try:
        async for item in inner:
            if watch.call.first_chunk_at is None:
                watch.call.chunk()
            if watch.refresh_at is not None and time.monotonic() >= watch.refresh_at:
                watch.keep_alive()
            try:
                keep = feed(item)
            except Exception as exc:
                keep = _unreadable(exc)
            if keep:
                yield item
        watch.finish("ok")
    except GeneratorExit:
        watch.finish()
        aclose = getattr(inner, "aclose", None)
        if aclose is not None:
            await aclose()
        raise
    except BaseException as exc:
        watch.finish(_status_for(exc), exc)
        raise


def _govern_stream(kit: _Kit, call: Call, stream: Any, hide_usage: bool) -> Any:
    """Wrap a vendor ``Stream``/``AsyncStream`` in place; it keeps its class and methods."""
    capture = call.guard.telemetry.capture_content
    inner = stream._iterator
    watch = _StreamWatch(call, kit.adapter.accumulator(call.req.api, hide_usage, capture), inner)
    response = stream.response
    if kit.is_async:
        stream._iterator = _aiterate(inner, watch)
        original_aclose = response.aclose

        async def aclose() -> None:
            try:
                await original_aclose()
            finally:
                watch.closed()

        response.aclose = aclose
    else:
        stream._iterator = _iterate(inner, watch)
        original_close = response.close

        def close() -> None:
            try:
                original_close()
            finally:
                watch.closed()

        response.close = close
    return stream


def _govern_raw(kit: _Kit, call: Call, raw: Any, hide_usage: bool) -> Any:
    """A raw response (``with_raw_response`` / ``with_streaming_response``), returned unchanged.

    When its body was already read (a non-streamed ``with_raw_response``) the call settles now from
    the body. Otherwise it settles when the user parses it (a parsed stream is governed like any
    stream) or closes it.
    """
    adapter, api = kit.adapter, call.req.api
    http_response = raw.http_response
    if "_content" in http_response.__dict__:
        call.settle(_result_from_body(adapter, api, http_response), "ok")
        return raw

    streams: list[Any] = []  # the parsed stream, once: it settles the call from then on

    def settle_parsed(parsed: Any) -> Any:
        if call.settled or streams:
            return parsed
        if isinstance(parsed, kit.stream_types):
            streams.append(parsed)
            _govern_stream(kit, call, parsed, hide_usage)
        else:
            call.settle(adapter.result(api, parsed), "ok")
        return parsed

    reading: list[bool] = []  # set while the body is being read: it closes the response before it is kept

    def settle_unparsed() -> None:
        if not call.settled and not streams and not reading:
            call.settle(_result_from_body(adapter, api, http_response), "ok")

    # A raw response dropped without being parsed, read or closed still settles (usage estimated).
    weakref.finalize(raw, settle_unparsed)

    original_parse = raw.parse
    if inspect.iscoroutinefunction(original_parse):

        async def aparse(*args: Any, **kwargs: Any) -> Any:
            return settle_parsed(await original_parse(*args, **kwargs))

        raw.parse = aparse
    else:

        def parse(*args: Any, **kwargs: Any) -> Any:
            return settle_parsed(original_parse(*args, **kwargs))

        raw.parse = parse

    if kit.is_async:
        original_aread, original_aclose = http_response.aread, http_response.aclose

        async def aread() -> bytes:
            reading.append(True)
            try:
                return await original_aread()  # type: ignore[no-any-return]
            finally:
                reading.clear()
                settle_unparsed()

        async def aclose() -> None:
            try:
                await original_aclose()
            finally:
                settle_unparsed()

        http_response.aread, http_response.aclose = aread, aclose
    else:
        original_read, original_close = http_response.read, http_response.close

        def read() -> bytes:
            reading.append(True)
            try:
                return original_read()  # type: ignore[no-any-return]
            finally:
                reading.clear()
                settle_unparsed()

        def close() -> None:
            try:
                original_close()
            finally:
                settle_unparsed()

        http_response.read, http_response.close = read, close
    return raw


def _result_from_body(adapter: Adapter, api: str, http_response: Any) -> CallResult:
    """Usage from a JSON body the user read without parsing; an empty result (usage estimated)
    when the body was not read, was a raw event stream, or is not JSON."""
    content = http_response.__dict__.get("_content")
    if content and not http_response.headers.get("content-type", "").startswith("text/event-stream"):
        try:
            return adapter.result(api, JSONView(json.loads(content)))
        except (ValueError, TypeError):
            pass
    return CallResult()
