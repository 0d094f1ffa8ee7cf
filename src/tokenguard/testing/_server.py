"""The loopback HTTP server behind :class:`tokenguard.testing.FakeLLMServer`."""

from __future__ import annotations

import contextlib
import json
import socket
import socketserver
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Final, Literal

from tokenguard.testing import _wire
from tokenguard.testing._types import FakeUsage, RecordedRequest

_HOST: Final = "127.0.0.1"

Vendor = Literal["openai", "anthropic"]


@dataclass(frozen=True, slots=True)
class _Failure:
    status: int
    retry_after: float | None
    body: dict[str, Any] | None
    model: str | None = None


@dataclass(frozen=True, slots=True)
class _Settings:
    """Snapshot of the per-test settings taken when a request arrives."""

    usage: FakeUsage | None
    reply: str | None
    latency: float
    chunk_delay: float
    failure: _Failure | None
    fail_stream_after: int | None


@dataclass(frozen=True, slots=True)
class _Route:
    vendor: Vendor
    governed: bool
    """Failure injection (``fail_next``) applies to this endpoint."""
    streams: bool
    """The endpoint honours ``"stream": true``."""


_ROUTES: Final[Mapping[tuple[str, str], _Route]] = {
    ("POST", "/v1/chat/completions"): _Route("openai", governed=True, streams=True),
    ("POST", "/v1/responses"): _Route("openai", governed=True, streams=True),
    ("POST", "/v1/embeddings"): _Route("openai", governed=True, streams=False),
    ("POST", "/v1/messages"): _Route("anthropic", governed=True, streams=True),
    ("POST", "/v1/messages/count_tokens"): _Route("anthropic", governed=False, streams=False),
}


class _BadRequest(Exception):
    pass


class FakeLLMServer:
    """A fake OpenAI + Anthropic HTTP API on ``127.0.0.1`` for tests and benchmarks.

    See :mod:`tokenguard.testing` for the full behaviour. Thread-safe: the
    configuration methods may be called from any thread while requests are served.

    Args:
        port: TCP port to listen on; ``0`` (the default) picks a free port at
            :meth:`start`.
        record_requests: keep every request in :attr:`requests` (the default).
            Pass ``False`` for long benchmark runs so the log does not grow without
            bound; :attr:`request_count` still counts.
    """

    def __init__(self, port: int = 0, *, record_requests: bool = True) -> None:
        if not 0 <= port <= 65535:
            raise ValueError(f"invalid port {port!r}")
        self._requested_port = port
        self._record_requests = record_requests
        self._request_count = 0
        self._lock = threading.Lock()
        self._lifecycle = threading.Lock()
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._requests: list[RecordedRequest] = []
        self._failures: deque[_Failure] = deque()
        self._usage: FakeUsage | None = None
        self._reply: str | None = None
        self._latency = 0.0
        self._chunk_delay = 0.0
        self._fail_stream_after: int | None = None

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> FakeLLMServer:
        """Bind ``127.0.0.1`` and serve in a daemon thread. Returns ``self``.

        Raises :class:`RuntimeError` if the server is already running.
        """
        with self._lifecycle:
            if self._httpd is not None:
                raise RuntimeError("FakeLLMServer is already running")
            httpd = _HTTPServer(self, self._requested_port)
            thread = threading.Thread(
                target=httpd.serve_forever,
                kwargs={"poll_interval": 0.05},
                name=f"tokenguard-fake-llm-{httpd.server_port}",
                daemon=True,
            )
            thread.start()
            self._httpd, self._thread = httpd, thread
        return self

    def stop(self) -> None:
        """Stop serving, close the listening socket and all open connections.

        Idempotent. The server can be started again afterwards (on a new free
        port unless a fixed ``port`` was given).
        """
        with self._lifecycle:
            httpd, thread = self._httpd, self._thread
            self._httpd = self._thread = None
        if httpd is None:
            return
        httpd.shutdown()
        httpd.server_close()
        httpd.close_connections()
        if thread is not None:
            thread.join(timeout=5)

    def __enter__(self) -> FakeLLMServer:
        if not self.running:
            self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        """Whether the server is started."""
        return self._httpd is not None

    @property
    def port(self) -> int:
        """The TCP port the server listens on (only while running)."""
        httpd = self._httpd
        if httpd is None:
            raise RuntimeError("FakeLLMServer is not running; call start() first")
        return httpd.server_port

    @property
    def base_url(self) -> str:
        """``"http://127.0.0.1:<port>"``."""
        return f"http://{_HOST}:{self.port}"

    @property
    def openai_base_url(self) -> str:
        """``base_url + "/v1"``, for ``OpenAI(base_url=...)``."""
        return self.base_url + "/v1"

    @property
    def anthropic_base_url(self) -> str:
        """``base_url``, for ``Anthropic(base_url=...)``."""
        return self.base_url

    # ------------------------------------------------------------------ inspection

    @property
    def requests(self) -> list[RecordedRequest]:
        """A snapshot (copy) of every request received since the last :meth:`reset`."""
        with self._lock:
            return list(self._requests)

    @property
    def request_count(self) -> int:
        """Number of requests received since the last :meth:`reset` (counted even when not recording)."""
        with self._lock:
            return self._request_count

    # ------------------------------------------------------------------ configuration

    def reset(self) -> None:
        """Clear the request log, queued failures and all settings back to defaults."""
        with self._lock:
            self._requests.clear()
            self._request_count = 0
            self._failures.clear()
            self._usage = None
            self._reply = None
            self._latency = 0.0
            self._chunk_delay = 0.0
            self._fail_stream_after = None

    def set_usage(self, usage: FakeUsage | None) -> None:
        """Report this fixed usage in following responses; ``None`` derives it from each request."""
        if usage is not None and not isinstance(usage, FakeUsage):
            raise TypeError("set_usage() expects a FakeUsage or None")
        with self._lock:
            self._usage = usage

    def set_reply(self, text: str | None) -> None:
        """Use ``text`` as the assistant reply of following responses (``None``: the default).

        The reply is still cut to the request's max-tokens limit (counted in words).
        """
        with self._lock:
            self._reply = text

    def fail_next(
        self,
        status: int = 429,
        *,
        times: int = 1,
        retry_after: float | None = None,
        body: dict[str, Any] | None = None,
        model: str | None = None,
    ) -> None:
        """Answer the next ``times`` governed requests with HTTP ``status``.

        With ``model``, only requests for that model fail (e.g. a primary model that is down while
        its fallback answers); other requests are answered normally and leave the failure queued.

        Governed endpoints: chat completions, responses, embeddings, messages (not
        ``count_tokens``). The error body has the vendor's error shape unless
        ``body`` is given, in which case it is sent verbatim. ``retry_after`` adds a
        ``retry-after`` header (seconds, may be fractional). ``x-should-retry`` is
        never sent, so the SDKs apply their normal retry policy. Calls accumulate.
        """
        if not 400 <= status <= 599:
            raise ValueError("fail_next() status must be an HTTP error status (400-599)")
        if times < 1:
            raise ValueError("fail_next() times must be >= 1")
        if retry_after is not None and retry_after < 0:
            raise ValueError("fail_next() retry_after must be >= 0")
        failure = _Failure(status, retry_after, dict(body) if body is not None else None, model)
        with self._lock:
            self._failures.extend([failure] * times)

    def set_latency(self, seconds: float) -> None:
        """Sleep ``seconds`` before answering each request."""
        if seconds < 0:
            raise ValueError("latency must be >= 0")
        with self._lock:
            self._latency = float(seconds)

    def set_chunk_delay(self, seconds: float) -> None:
        """Sleep ``seconds`` between consecutive server-sent events of a stream."""
        if seconds < 0:
            raise ValueError("chunk delay must be >= 0")
        with self._lock:
            self._chunk_delay = float(seconds)

    def fail_stream_after(self, n_chunks: int) -> None:
        """Abort the next streaming response after ``n_chunks`` server-sent events.

        The connection is shut down without the final event and without terminating
        the chunked HTTP body, so the SDK raises mid-stream. Every SSE event counts,
        including ``ping`` and ``[DONE]``.
        """
        if n_chunks < 0:
            raise ValueError("n_chunks must be >= 0")
        with self._lock:
            self._fail_stream_after = n_chunks

    # ------------------------------------------------------------------ internals

    def _receive(self, request: RecordedRequest, *, governed: bool, streaming: bool) -> _Settings:
        """Record ``request`` and take the settings (consuming queued failures) for it."""
        with self._lock:
            self._request_count += 1
            if self._record_requests:
                self._requests.append(request)
            failure = None
            if governed and self._failures:
                model = request.body.get("model") if isinstance(request.body, dict) else None
                for i, queued in enumerate(self._failures):
                    if queued.model is None or queued.model == model:
                        failure = queued
                        del self._failures[i]
                        break
            fail_after = None
            if streaming and failure is None and self._fail_stream_after is not None:
                fail_after, self._fail_stream_after = self._fail_stream_after, None
            return _Settings(
                usage=self._usage,
                reply=self._reply,
                latency=self._latency,
                chunk_delay=self._chunk_delay,
                failure=failure,
                fail_stream_after=fail_after,
            )

    def __repr__(self) -> str:
        where = self.base_url if self.running else "stopped"
        return f"<FakeLLMServer {where}>"


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, fake: FakeLLMServer, port: int) -> None:
        self.fake = fake
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__((_HOST, port), _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind() calls socket.getfqdn(), i.e. a reverse DNS lookup:
        # slow and not loopback-only. We know our name.
        socketserver.TCPServer.server_bind(self)
        self.server_name = _HOST
        self.server_port = int(self.server_address[1])

    def track(self, conn: socket.socket, *, add: bool) -> None:
        with self._connections_lock:
            if add:
                self._connections.add(conn)
            else:
                self._connections.discard(conn)

    def close_connections(self) -> None:
        with self._connections_lock:
            conns = list(self._connections)
            self._connections.clear()
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], OSError):
            return  # client went away: normal for aborted streams
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "tokenguard-fake-llm/1.0"
    sys_version = ""
    disable_nagle_algorithm = True
    wbufsize = -1  # buffered: headers and body leave in one write; we flush explicitly
    server: _HTTPServer

    _headers_sent = False

    # -- plumbing ----------------------------------------------------------

    def setup(self) -> None:
        super().setup()
        self.server.track(self.connection, add=True)

    def finish(self) -> None:
        self.server.track(self.connection, add=False)
        with contextlib.suppress(OSError):
            super().finish()

    def log_message(self, format: str, *args: Any) -> None:
        """Silence per-request logging (it costs time in benchmarks)."""

    def do_POST(self) -> None:
        self._handle()

    do_GET = do_PUT = do_PATCH = do_DELETE = do_POST

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("transfer-encoding", "").lower():
            parts: list[bytes] = []
            while True:
                size_line = self.rfile.readline(65537)
                size = int(size_line.split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(parts)
                parts.append(self.rfile.read(size))
                self.rfile.readline(65537)
        length = int(self.headers.get("content-length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    # -- request handling --------------------------------------------------

    def _handle(self) -> None:
        self._headers_sent = False
        try:
            self._dispatch()
        except OSError:
            self.close_connection = True
        except Exception as exc:  # a bug in the fake server: answer 500, never hang the client
            if self._headers_sent:
                self._abort()
            else:
                self._send_json(500, _wire.openai_error(500, f"fake LLM server error: {exc!r}"), {})

    def _dispatch(self) -> None:
        received = time.time()
        try:
            raw = self._read_body()
        except ValueError:
            self.close_connection = True
            self._send_json(400, _wire.openai_error(400, "malformed request body"), {})
            return
        headers: dict[str, str] = {}
        for name, value in self.headers.items():
            key = name.lower()
            headers[key] = f"{headers[key]}, {value}" if key in headers else value
        body: Any = None
        malformed = False
        if raw:
            try:
                body = json.loads(raw)
            except ValueError:
                malformed = True
        path = self.path.split("?", 1)[0]
        route = _ROUTES.get((self.command, path))
        valid = route is not None and not malformed and isinstance(body, dict)
        streaming = valid and route is not None and route.streams and body.get("stream") is True
        settings = self.server.fake._receive(
            RecordedRequest(self.command, self.path, headers, body, received),
            governed=valid and route is not None and route.governed,
            streaming=bool(streaming),
        )
        vendor: Vendor = route.vendor if route is not None else _guess_vendor(path, headers)
        request_id = _wire.new_id("req_")
        extra = {"request-id": request_id} if vendor == "anthropic" else {"x-request-id": request_id}

        if settings.latency > 0:
            time.sleep(settings.latency)

        if route is None:
            self._send_error(vendor, 404, f"Unknown endpoint: {self.command} {path}", extra, request_id)
            return
        if malformed or not isinstance(body, dict):
            message = "We could not parse the JSON body of your request." if raw else "Missing JSON body."
            self._send_error(vendor, 400, message, extra, request_id)
            return
        if settings.failure is not None:
            failure = settings.failure
            if failure.retry_after is not None:
                extra["retry-after"] = f"{failure.retry_after:g}"
            if failure.body is not None:
                self._send_json(failure.status, failure.body, extra)
            else:
                self._send_error(vendor, failure.status, None, extra, request_id)
            return

        try:
            forced = _forced_output_tokens(headers)
        except _BadRequest as exc:
            self._send_error(vendor, 400, str(exc), extra, request_id)
            return

        if path == "/v1/messages/count_tokens":
            tokens = settings.usage.input_tokens if settings.usage else _wire.derive_input_tokens(body)
            self._send_json(200, {"input_tokens": tokens}, extra)
            return
        if path == "/v1/embeddings":
            self._send_json(200, _wire.openai_embeddings(body, settings.usage), extra)
            return

        reply = _wire.build_reply(body, forced, settings.reply)
        usage = settings.usage or FakeUsage(_wire.derive_input_tokens(body), reply.words)
        json_builder, stream_builder = _BUILDERS[path]
        if streaming:
            events = stream_builder(body, reply, usage)
            self._send_sse(events, settings.chunk_delay, settings.fail_stream_after, extra)
        else:
            self._send_json(200, json_builder(body, reply, usage), extra)

    # -- writers -------------------------------------------------------------

    def _send_error(
        self, vendor: Vendor, status: int, message: str | None, extra: dict[str, str], request_id: str
    ) -> None:
        payload = (
            _wire.anthropic_error(status, message, request_id)
            if vendor == "anthropic"
            else _wire.openai_error(status, message)
        )
        self._send_json(status, payload, extra)

    def _send_json(self, status: int, payload: object, extra: Mapping[str, str]) -> None:
        data = _wire.dumps(payload)
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        for name, value in extra.items():
            self.send_header(name, value)
        self.end_headers()
        self._headers_sent = True
        self.wfile.write(data)
        self.wfile.flush()

    def _send_sse(
        self, events: list[bytes], chunk_delay: float, fail_after: int | None, extra: Mapping[str, str]
    ) -> None:
        self.send_response(200)
        self.send_header("content-type", "text/event-stream; charset=utf-8")
        self.send_header("cache-control", "no-cache")
        self.send_header("transfer-encoding", "chunked")
        for name, value in extra.items():
            self.send_header(name, value)
        self.end_headers()  # buffered: leaves together with the first event
        self._headers_sent = True
        write, flush = self.wfile.write, self.wfile.flush
        last = len(events) - 1
        for index, event in enumerate(events):
            if fail_after is not None and index >= fail_after:
                break
            if index and chunk_delay > 0:
                time.sleep(chunk_delay)
            frame = b"%x\r\n%b\r\n" % (len(event), event)
            if index == last and fail_after is None:
                frame += b"0\r\n\r\n"  # end of the chunked body, in the same packet
            write(frame)
            flush()
        if fail_after is not None:
            self._abort()
        elif not events:
            write(b"0\r\n\r\n")
            flush()

    def _abort(self) -> None:
        """Drop the connection abruptly (no final event, unterminated chunked body)."""
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.wfile.flush()
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)


_Builder = Callable[[Mapping[str, Any], "_wire.Reply", FakeUsage], Any]

_BUILDERS: Final[Mapping[str, tuple[_Builder, _Builder]]] = {
    "/v1/chat/completions": (_wire.openai_chat_completion, _wire.openai_chat_stream),
    "/v1/responses": (_wire.openai_response, _wire.openai_response_stream),
    "/v1/messages": (_wire.anthropic_message, _wire.anthropic_stream),
}


def _guess_vendor(path: str, headers: Mapping[str, str]) -> Vendor:
    if "anthropic-version" in headers or path.startswith(("/v1/messages", "/v1/complete")):
        return "anthropic"
    return "openai"


def _forced_output_tokens(headers: Mapping[str, str]) -> int | None:
    value = headers.get(_wire.OUTPUT_TOKENS_HEADER)
    if value is None:
        return None
    try:
        n = int(value.strip())
    except ValueError:
        n = -1
    if n < 0:
        raise _BadRequest(f"{_wire.OUTPUT_TOKENS_HEADER} must be a non-negative integer, got {value!r}")
    return n
