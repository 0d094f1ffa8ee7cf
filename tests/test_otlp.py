"""End to end: spans and metrics exported over OTLP/HTTP to a loopback receiver, decoded there."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import openai
import pytest
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

import tokenguard as tg


class Receiver(ThreadingHTTPServer):
    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.bodies: dict[str, list[bytes]] = {"/v1/traces": [], "/v1/metrics": []}


class Handler(BaseHTTPRequestHandler):
    server: Receiver

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["content-length"]))
        self.server.bodies.setdefault(self.path, []).append(body)
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_spans_and_metrics_reach_an_otlp_receiver(receiver: Receiver, fake_llm) -> None:
    endpoint = f"http://127.0.0.1:{receiver.server_address[1]}"
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=f"{endpoint}/v1/traces")))
    reader = PeriodicExportingMetricReader(
        OTLPMetricExporter(endpoint=f"{endpoint}/v1/metrics"), export_interval_millis=60_000
    )
    meter_provider = MeterProvider(metric_readers=[reader])
    guard = tg.Guard(tracer_provider=tracer_provider, meter_provider=meter_provider)
    client = guard.wrap(openai.OpenAI(base_url=fake_llm.openai_base_url, api_key="sk-otlp-secret", max_retries=0))
    with tg.tags(team="support"):
        client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
    tracer_provider.force_flush()
    meter_provider.force_flush()

    spans = []
    for body in receiver.bodies["/v1/traces"]:
        request = ExportTraceServiceRequest.FromString(body)
        for rs in request.resource_spans:
            for ss in rs.scope_spans:
                spans.extend((ss.scope.name, span) for span in ss.spans)
    [(scope, span)] = spans
    assert scope == "tokenguard"
    attrs = {kv.key: kv.value for kv in span.attributes}
    assert span.name == "chat gpt-4o-mini"
    assert attrs["gen_ai.provider.name"].string_value == "openai"
    assert attrs["gen_ai.usage.output_tokens"].int_value == 20
    assert attrs["tokenguard.cost_usd"].double_value > 0
    assert attrs["tokenguard.tag.team"].string_value == "support"
    assert b"sk-otlp-secret" not in b"".join(receiver.bodies["/v1/traces"])

    names = set()
    for body in receiver.bodies["/v1/metrics"]:
        request = ExportMetricsServiceRequest.FromString(body)
        for rm in request.resource_metrics:
            for sm in rm.scope_metrics:
                names.update(m.name for m in sm.metrics)
    assert {"gen_ai.client.token.usage", "gen_ai.client.operation.duration", "tokenguard.cost"} <= names
    tracer_provider.shutdown()
    meter_provider.shutdown()
