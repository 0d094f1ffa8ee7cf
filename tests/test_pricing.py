"""Pricing: genai-prices as the oracle, overrides, unknown prices, Decimal exactness."""

from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal

import genai_prices
import pytest

import tokenguard as tg
from tokenguard.pricing import PriceBook, Usage

NOW = datetime.now(timezone.utc)

CASES = [
    ("openai", "gpt-4o-mini", Usage(input_tokens=1200, output_tokens=300, cache_read_tokens=1000)),
    ("openai", "gpt-4o-2024-08-06", Usage(input_tokens=5000, output_tokens=10)),
    ("openai", "o3-mini", Usage(input_tokens=100, output_tokens=900, reasoning_tokens=800)),
    ("openai", "text-embedding-3-small", Usage(input_tokens=777)),
    ("anthropic", "claude-sonnet-4-5", Usage(input_tokens=1000, output_tokens=100, cache_read_tokens=300)),
    ("anthropic", "claude-sonnet-4-5", Usage(input_tokens=250_000, output_tokens=1000, cache_write_tokens=50_000)),
    ("anthropic", "claude-haiku-4-5", Usage(input_tokens=40, output_tokens=7, cache_write_tokens=20)),
    ("anthropic", "claude-sonnet-4-6", Usage(input_tokens=300_000, output_tokens=10)),
]


@pytest.mark.parametrize(("provider", "model", "usage"), CASES)
def test_cost_matches_genai_prices(provider, model, usage):
    book = PriceBook()
    rates = book.rates(provider, model, NOW)
    assert rates is not None
    oracle = genai_prices.calc_price(
        genai_prices.Usage(
            input_tokens=usage.input_tokens,
            output_tokens=usage.output_tokens,
            cache_read_tokens=usage.cache_read_tokens,
            cache_write_tokens=usage.cache_write_tokens,
        ),
        model,
        provider_id=provider,
        genai_request_timestamp=NOW,
    )
    assert rates.cost(usage) == oracle.total_price


def test_long_context_tier_applies_to_all_tokens():
    rates = PriceBook().rates("anthropic", "claude-sonnet-4-5", NOW)
    assert rates is not None
    below = rates.cost(Usage(input_tokens=200_000))
    above = rates.cost(Usage(input_tokens=200_001))
    assert below == Decimal("0.6")  # $3/MTok
    assert above == Decimal("6") * 200_001 / 1_000_000  # $6/MTok for every token past the threshold


def test_upper_bound_uses_dearest_input_rate():
    rates = PriceBook().rates("anthropic", "claude-haiku-4-5", NOW)
    assert rates is not None
    # cache writes cost 1.25x input: the bound prices all input as if written to the cache
    assert rates.upper_bound(1_000_000, 0) == Decimal("1.25")
    assert rates.upper_bound(0, 1_000_000) == Decimal(5)


def test_overrides_win_and_accept_plain_mappings():
    book = PriceBook(
        {
            "gpt-4o-mini": tg.Price(input_mtok="0.10", output_mtok=Decimal("0.40")),
            "ft:gpt-4o-mini:acme::x1": {"input_mtok": 0.3, "output_mtok": 1.2, "cache_read_mtok": 0.15},
        }
    )
    rates = book.rates("openai", "gpt-4o-mini", NOW)
    assert rates is not None and rates.source == "override"
    assert rates.cost(Usage(input_tokens=1_000_000, output_tokens=1_000_000)) == Decimal("0.50")
    ft = book.rates("openai", "ft:gpt-4o-mini:acme::x1", NOW)
    assert ft is not None
    # a float goes through str: no binary noise
    assert ft.cost(Usage(input_tokens=2_000_000, cache_read_tokens=1_000_000)) == Decimal("0.45")
    # cached tokens with no cache price are charged at the input rate, never free
    plain = PriceBook({"m": tg.Price(input_mtok=1, output_mtok=1)}).rates("openai", "m", NOW)
    assert plain is not None
    assert plain.cost(Usage(input_tokens=10, cache_read_tokens=10)) == Decimal(10) / 1_000_000


def test_unknown_model_has_no_price():
    assert PriceBook().rates("openai", "definitely-not-a-model-xyz", NOW) is None


@pytest.mark.parametrize(
    ("prices", "match"),
    [
        ({"m": {"input_mtok": 1}}, "missing output_mtok"),
        ({"m": {"input_mtok": 1, "output_mtok": 1, "bogus": 2}}, "unknown keys"),
        ({"m": {"input_mtok": -1, "output_mtok": 1}}, ">= 0"),
        ({"m": {"input_mtok": "abc", "output_mtok": 1}}, "number of USD"),
        ({"m": 5}, "must be a tg.Price"),
        (["m"], "must be a mapping"),
    ],
)
def test_bad_prices_raise_config_error(prices, match):
    with pytest.raises(tg.ConfigError, match=match):
        tg.Guard(prices=prices)


def test_config_error_is_value_error():
    assert issubclass(tg.ConfigError, ValueError)
    with pytest.raises(ValueError, match="memory://"):
        tg.Guard(store="postgres-ish")
    with pytest.raises(tg.ConfigError, match="on_store_error"):
        tg.Guard(on_store_error="maybe")  # type: ignore[arg-type]


def test_override_for_requested_name_wins_over_list_price_of_snapshot():
    # OpenAI answers a `gpt-4o` request as `gpt-4o-2024-08-06`: a negotiated rate keyed on the name
    # the application calls must still apply.
    book = PriceBook({"gpt-4o": tg.Price(input_mtok=1, output_mtok=1)})
    rates = book.rates("openai", "gpt-4o-2024-08-06", NOW, requested="gpt-4o")
    assert rates is not None
    assert rates.source == "override"
    listed = PriceBook().rates("openai", "gpt-4o-2024-08-06", NOW, requested="gpt-4o")
    assert listed is not None
    assert listed.source == "genai-prices"
    # an unknown dated name falls back to the requested model's list price
    fallback = PriceBook().rates("openai", "gpt-4o-mini-2099-01-01-custom", NOW, requested="gpt-4o-mini")
    assert fallback is not None


def test_trusted_record_equals_a_validated_one():
    """The hot path builds CallRecords without validation; they must be indistinguishable."""
    from tokenguard.records import CallRecord

    values = {
        "id": "a" * 32,
        "time": NOW,
        "latency_s": 0.5,
        "provider": "openai",
        "operation": "chat",
        "api": "chat.completions",
        "request_model": "gpt-4o-mini",
        "response_model": "gpt-4o-mini-2024-07-18",
        "stream": True,
        "response_id": "chatcmpl-1",
        "input_tokens": 10,
        "output_tokens": 20,
        "cache_read_tokens": 5,
        "cache_write_tokens": 0,
        "reasoning_tokens": 0,
        "usage_estimated": False,
        "cost_usd": Decimal("0.0001"),
        "estimated_cost_usd": Decimal("0.01"),
        "tags": {"team": "a"},
        "task_id": None,
        "task_name": None,
        "status": "ok",
        "error_type": None,
        "decisions": ("price:unknown", "route:fallback:429"),
        "routed_from": "gpt-4o",
        "route_reason": "fallback:429",
        "chain_id": "c" * 16,
        "attempt": 3,
        "findings": {"email": 2},
        "nudges": ("smaller_model",),
    }
    assert set(values) == set(CallRecord.model_fields)
    trusted = CallRecord._trusted(dict(values))
    validated = CallRecord(**values)
    assert trusted == validated
    assert trusted.model_dump_json() == validated.model_dump_json()
    assert CallRecord.model_validate_json(trusted.model_dump_json()) == validated
    with pytest.raises(Exception, match="frozen"):
        trusted.id = "b"  # type: ignore[misc]
