"""Plain helpers shared by test modules (fixtures live in conftest.py)."""

from __future__ import annotations

import gc
import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import tokenguard as tg

__all__ = ["API_KEY", "Otel", "RedisServer", "free_port", "records", "require_service"]

API_KEY = "sk-test-SECRET-0123456789abcdef"


@dataclass
class Otel:
    tracer_provider: TracerProvider
    meter_provider: MeterProvider
    spans: InMemorySpanExporter
    metrics: InMemoryMetricReader

    def finished(self) -> list[ReadableSpan]:
        return list(self.spans.get_finished_spans())

    def metric_points(self, name: str) -> list[Any]:
        data = self.metrics.get_metrics_data()
        points: list[Any] = []
        if data is None:
            return points
        for rm in data.resource_metrics:
            for sm in rm.scope_metrics:
                for metric in sm.metrics:
                    if metric.name == name:
                        points.extend(metric.data.data_points)
        return points


def records(guard: tg.Guard) -> list[tg.CallRecord]:
    gc.collect()
    return list(guard.records())


def require_service(name: str) -> None:
    """Skip when a service is missing on a laptop; fail in CI (TOKENGUARD_REQUIRE_SERVICES=1)."""
    if os.environ.get("TOKENGUARD_REQUIRE_SERVICES") == "1":
        pytest.fail(f"{name} is required in CI but is not available")
    pytest.skip(f"{name} is not available")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RedisServer:
    """A private `redis-server` on 127.0.0.1 (no persistence) that can be stopped and restarted on
    the same port. Skips (on a laptop) or fails (in CI) when redis-server is not installed."""

    def __init__(self, tmp: Path, password: str | None = None) -> None:
        if shutil.which("redis-server") is None:
            require_service("redis-server")
        self.tmp, self.password, self.port = tmp, password, free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.start()

    def start(self) -> None:
        args = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        args += ["--dir", str(self.tmp)]
        if self.password:
            args += ["--requirepass", self.password]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.02)
        self.stop()
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)
            self.proc = None

    def uri(self, **params: object) -> str:
        auth = f":{quote(self.password, safe='')}@" if self.password else ""
        query = "&".join(f"{k}={v}" for k, v in params.items())
        return f"redis://{auth}127.0.0.1:{self.port}/0" + (f"?{query}" if query else "")
