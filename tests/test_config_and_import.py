"""The policy file, and the promise that `import tokenguard` stays light."""

from __future__ import annotations

import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest

import tokenguard as tg


def test_from_file(tmp_path: Path) -> None:
    path = tmp_path / "tokenguard.toml"
    path.write_text(
        """
store = "memory://"
on_store_error = "closed"
capture_content = true
metric_tags = ["team"]

[prices."ft:gpt-4o-mini:acme::x1"]
input_mtok = 0.30
output_mtok = "1.20"
"""
    )
    guard = tg.Guard.from_file(path)
    assert guard.on_store_error == "closed"
    assert guard.telemetry.capture_content is True
    assert guard.telemetry.metric_tags == ("team",)
    assert guard.prices.overrides["ft:gpt-4o-mini:acme::x1"].output_mtok == Decimal("1.20")


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ('stroe = "memory://"', r"stroe: unknown key"),
        ('on_store_error = "sometimes"', r"on_store_error: Input should be 'open' or 'closed'"),
        ('[prices."gpt-x"]\ninput_mtok = 1\noutput_mtok = 2\nbogus = 3', r'prices\."gpt-x"\.bogus: unknown key'),
        ('[prices."gpt-x"]\ninput_mtok = 1', r'prices\."gpt-x"\.output_mtok: Field required'),
        ('[prices."gpt-x"]\ninput_mtok = -1\noutput_mtok = 2', r'prices\."gpt-x": Price.input_mtok must be'),
        ("store = [", r"not valid TOML"),
        ('store = "sqlite-typo:/x"', r"store URI 'sqlite-typo:/x' is not supported"),
    ],
)
def test_bad_files_name_file_key_and_problem(tmp_path: Path, text: str, match: str) -> None:
    path = tmp_path / "policy.toml"
    path.write_text(text)
    with pytest.raises(tg.ConfigError, match=match) as info:
        tg.Guard.from_file(path)
    assert str(path) in str(info.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(tg.ConfigError, match="cannot read the policy file"):
        tg.Guard.from_file(tmp_path / "nope.toml")


def test_import_is_light() -> None:
    code = (
        "import sys, time; t = time.perf_counter(); import tokenguard; dt = time.perf_counter() - t; "
        "heavy = [m for m in ('openai', 'anthropic', 'pydantic', 'opentelemetry', 'genai_prices', 'tiktoken') "
        "if m in sys.modules]; print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_public_names() -> None:
    for name in ["Guard", "Price", "CallRecord", "TaskRecord", "configure", "wrap"]:
        assert getattr(tg, name) is not None
    with pytest.raises(AttributeError):
        tg.NotAThing  # noqa: B018


def test_global_providers_are_used_when_none_given(tmp_path: Path) -> None:
    """With no providers passed, the Guard uses the global ones (set after the Guard was built)."""
    script = tmp_path / "global_otel.py"
    script.write_text(
        """
import openai
from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import tokenguard as tg
from tokenguard.testing import FakeLLMServer

guard = tg.Guard()
exporter = InMemorySpanExporter()
provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(exporter))
trace.set_tracer_provider(provider)
reader = InMemoryMetricReader()
metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))
with FakeLLMServer() as server:
    client = guard.wrap(openai.OpenAI(base_url=server.openai_base_url, api_key="k", max_retries=0))
    client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
names = [m.name for rm in reader.get_metrics_data().resource_metrics for sm in rm.scope_metrics for m in sm.metrics]
print([s.name for s in exporter.get_finished_spans()], sorted(names))
"""
    )
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip() == (
        "['chat gpt-4o-mini'] ['gen_ai.client.operation.duration', 'gen_ai.client.token.usage', 'tokenguard.cost']"
    )


def test_budgets_in_policy_file(tmp_path: Path) -> None:
    path = tmp_path / "tokenguard.toml"
    path.write_text(
        """
admit_unpriced = true
reservation_ttl_s = 120

[[budgets]]
name = "support"
limit_usd = 500
scope = { team = "support" }
alert_at = 0.8
review_at = 1.0
hard_at = 1.2
review_action = "downgrade"

[[budgets]]
name = "global"
limit_usd = "2000.50"
period = "quarter"
timezone = "Europe/Paris"
"""
    )
    guard = tg.Guard.from_file(path)
    support, total = guard.budgets
    assert (support.name, support.limit_usd, support.scope, support.review_action) == (
        "support",
        Decimal(500),
        {"team": "support"},
        "downgrade",
    )
    assert (total.limit_usd, total.period, total.timezone) == (Decimal("2000.50"), "quarter", "Europe/Paris")
    assert guard.admit_unpriced and guard.reservation_ttl_s == 120


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ('[[budgets]]\nname = "b"\nlimit_usd = 1\nperiod = "fortnight"', r"budgets\[0\]\.period"),
        ('[[budgets]]\nname = "b"\nlimit_usd = 1\nlimt = 2', r"budgets\[0\]\.limt: unknown key"),
        ('[[budgets]]\nname = "b"\nlimit_usd = 1\nalert_at = 2', r"budgets\[0\] \('b'\).*thresholds must rise"),
        ("[[budgets]]\nlimit_usd = 1", r"budgets\[0\]\.name: Field required"),
    ],
)
def test_bad_budgets_in_policy_file(tmp_path: Path, text: str, match: str) -> None:
    path = tmp_path / "tokenguard.toml"
    path.write_text(text)
    with pytest.raises(tg.ConfigError, match=match):
        tg.Guard.from_file(path)


def test_tokenguard_config_names_the_default_guards_file(tmp_path: Path) -> None:
    path = tmp_path / "policy.toml"
    path.write_text('[[budgets]]\nname = "everything"\nlimit_usd = 5\n')
    code = "import tokenguard as tg; from tokenguard.guard import default_guard; print(default_guard().budgets[0].name)"
    env = {**__import__("os").environ, "TOKENGUARD_CONFIG": str(path)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    assert out.stdout.strip() == "everything"


def test_grants_in_policy_file(tmp_path: Path) -> None:
    path = tmp_path / "tokenguard.toml"
    path.write_text(
        """
[[budgets]]
name = "support"
limit_usd = 1

[[grants]]
id = "launch"
budget = "support"
extra_usd = "2.50"
approved_by = "cfo@example.com"
reason = "launch week"
expires_at = 2099-12-31T23:59:59Z

[[grants]]
id = "old"
budget = "support"
extra_usd = 1
approved_by = "cfo@example.com"
reason = "last year"
expires_at = 2001-01-01T00:00:00Z
"""
    )
    guard = tg.Guard.from_file(path)
    [status] = guard.budget_status()
    assert status.cap_usd == Decimal("1.2") + Decimal("2.50")  # the expired one adds nothing
    assert sorted(g.id for g in guard.exceptions()) == ["launch", "old"]
    # an edited grant is updated in place, not added on top
    path.write_text(path.read_text().replace('extra_usd = "2.50"', 'extra_usd = "1.50"'))
    edited = tg.Guard.from_file(path, store=guard.store)  # another process reading the new file
    assert edited.budget_status()[0].cap_usd == Decimal("1.2") + Decimal("1.50")
    edited.revoke_exception("launch")
    again = tg.Guard.from_file(path, store=guard.store)
    assert again.budget_status()[0].cap_usd == Decimal("1.2")  # a revoked grant stays revoked
    path.write_text(path.read_text().replace('id = "old"\nbudget = "support"', 'id = "old"\nbudget = "nope"'))
    with pytest.raises(tg.ConfigError, match=r"grants\[1\] \('old'\): no budget named 'nope'"):
        tg.Guard.from_file(path)
