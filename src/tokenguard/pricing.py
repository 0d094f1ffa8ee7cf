"""Prices and usage -> cost (steps 4 and 8 of the pipeline).

Prices come from `genai-prices` (bundled data, versioned with the package, never fetched over the
network by tokenguard) and from the user's overrides, which win. A price is resolved once per
(provider, model, service tier) and cached; the per-call work is a few ``Decimal`` multiplications.

Precedence, first match wins:

1. an override for the model that bills (the response model, e.g. ``gpt-4o-2024-08-06``), then
   for the requested model (``gpt-4o``): an override keyed on the name you call wins;
2. genai-prices for the response model, then for the requested model (with its alias matching,
   historic prices by request time, long-context tiers and service-tier variants).

A model found in neither has no price: the call's cost is ``None``, never 0.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any

from .errors import ConfigError

if TYPE_CHECKING:
    from genai_prices.types import ModelInfo, ModelPrice

__all__ = ["Price", "PriceBook", "Rates", "Usage"]

log = logging.getLogger("tokenguard")

_MTOK = Decimal(1_000_000)
_ZERO = Decimal(0)
PRICE_KEYS = ("input_mtok", "output_mtok", "cache_read_mtok", "cache_write_mtok")


def to_decimal(value: object, what: str) -> Decimal:
    """``value`` as a finite, non-negative ``Decimal`` (floats go through ``str`` to avoid binary noise)."""
    if isinstance(value, bool):
        raise ConfigError(f"{what} must be a number of USD, got {value!r}")
    try:
        result = Decimal(str(value)) if isinstance(value, float) else Decimal(value)  # type: ignore[arg-type]
    except (InvalidOperation, TypeError, ValueError):
        raise ConfigError(f"{what} must be a number of USD (e.g. '2.50'), got {value!r}") from None
    if not result.is_finite() or result < 0:
        raise ConfigError(f"{what} must be a finite amount >= 0, got {value!r}")
    return result


@dataclass(frozen=True)
class Price:
    """A user price for a model, in USD per million tokens (the genai-prices names).

    ``cache_read_mtok`` and ``cache_write_mtok`` default to ``input_mtok`` (cached tokens are never
    treated as free). Amounts may be ``Decimal``, ``int``, ``str`` or ``float`` (read via ``str``).

    Example: ``tg.Price(input_mtok="0.30", output_mtok="1.20")`` for a negotiated rate.
    """

    input_mtok: Decimal
    output_mtok: Decimal
    cache_read_mtok: Decimal | None = None
    cache_write_mtok: Decimal | None = None

    def __post_init__(self) -> None:
        for key in PRICE_KEYS:
            value = getattr(self, key)
            if value is not None:
                object.__setattr__(self, key, to_decimal(value, f"Price.{key}"))

    @classmethod
    def coerce(cls, model: str, value: Price | Mapping[str, Any]) -> Price:
        """A :class:`Price` from itself or a mapping with the same keys (as in ``[prices."<model>"]``)."""
        if isinstance(value, Price):
            return value
        if not isinstance(value, Mapping):
            raise ConfigError(
                f"prices[{model!r}] must be a tg.Price or a mapping with input_mtok and output_mtok, "
                f"got {type(value).__name__}"
            )
        unknown = set(value) - set(PRICE_KEYS)
        if unknown:
            raise ConfigError(f"prices[{model!r}] has unknown keys {sorted(unknown)}: expected {', '.join(PRICE_KEYS)}")
        missing = {"input_mtok", "output_mtok"} - set(value)
        if missing:
            raise ConfigError(f"prices[{model!r}] is missing {', '.join(sorted(missing))} (USD per 1M tokens)")
        return cls(**value)


# A rate for one kind of token: a flat Decimal, or (base, ((threshold, rate), ...)) where the rate
# of the highest tier whose threshold the call's total input exceeds applies to all its tokens.
Rate = Decimal | tuple[Decimal, tuple[tuple[int, Decimal], ...]]


@dataclass(frozen=True)
class Rates:
    """A resolved price: per-MTok rates for each kind of token, and where it came from."""

    input: Rate
    output: Rate
    cache_read: Rate
    cache_write: Rate
    source: str = "genai-prices"

    def cost(self, u: Usage) -> Decimal:
        """The exact cost of ``u`` at these rates."""
        total_in = u.input_tokens
        uncached = max(total_in - u.cache_read_tokens - u.cache_write_tokens, 0)
        cost = (
            _rate(self.input, total_in) * uncached
            + _rate(self.cache_read, total_in) * u.cache_read_tokens
            + _rate(self.cache_write, total_in) * u.cache_write_tokens
            + _rate(self.output, total_in) * u.output_tokens
        )
        return cost / _MTOK

    def upper_bound(self, input_tokens: int, output_tokens: int) -> Decimal:
        """The most ``input_tokens`` in and ``output_tokens`` out can cost: every input token at the
        dearest input-side rate (a cache write may cost more than plain input) and the tier reached."""
        in_rate = max(_rate(self.input, input_tokens), _rate(self.cache_write, input_tokens))
        return (in_rate * input_tokens + _rate(self.output, input_tokens) * output_tokens) / _MTOK


def _rate(rate: Rate, total_input_tokens: int) -> Decimal:
    if isinstance(rate, Decimal):
        return rate
    base, tiers = rate
    for start, tier_rate in reversed(tiers):
        if total_input_tokens > start:
            return tier_rate
    return base


@dataclass(slots=True)
class Usage:
    """Token counts of one call, in the OpenTelemetry convention (input includes cached tokens)."""

    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0
    estimated: bool = False


def _rates_from_price(price: Price, source: str) -> Rates:
    return Rates(
        input=price.input_mtok,
        output=price.output_mtok,
        cache_read=price.input_mtok if price.cache_read_mtok is None else price.cache_read_mtok,
        cache_write=price.input_mtok if price.cache_write_mtok is None else price.cache_write_mtok,
        source=source,
    )


def _rates_from_genai(mp: ModelPrice) -> Rates | None:
    from genai_prices.types import TieredPrices

    def conv(value: object, fallback: Rate | None) -> Rate | None:
        if value is None:
            return fallback
        if isinstance(value, TieredPrices):
            return (value.base, tuple((t.start, t.price) for t in value.tiers))
        assert isinstance(value, Decimal)
        return value

    input_rate = conv(getattr(mp, "input_mtok", None), None)
    output_rate = conv(getattr(mp, "output_mtok", None), None)
    if input_rate is None and output_rate is None:
        return None  # priced in other units only (audio, requests): not a token price we can apply
    input_rate = input_rate if input_rate is not None else _ZERO
    return Rates(
        input=input_rate,
        # An embeddings model has no output price: it produces no output tokens.
        output=output_rate if output_rate is not None else _ZERO,
        cache_read=conv(getattr(mp, "cache_read_mtok", None), input_rate) or input_rate,
        cache_write=conv(getattr(mp, "cache_write_mtok", None), input_rate) or input_rate,
    )


@dataclass
class _Entry:
    """A cache entry: fixed rates, or a model whose price depends on the request time."""

    rates: Rates | None
    model: ModelInfo | None = None
    context: dict[str, str] | None = field(default=None)
    minute: int = -1


class PriceBook:
    """Resolves and caches prices; computes costs. Thread-safe.

    ``overrides`` maps a model name to a :class:`Price` (or a mapping with the same keys).
    """

    def __init__(self, overrides: Mapping[str, Price | Mapping[str, Any]] | None = None) -> None:
        if overrides is not None and not isinstance(overrides, Mapping):
            raise ConfigError(f"prices must be a mapping of model name to tg.Price, got {type(overrides).__name__}")
        self.overrides: dict[str, Price] = {
            str(model): Price.coerce(str(model), value) for model, value in (overrides or {}).items()
        }
        self._cache: dict[tuple[str, str, str | None, str | None], _Entry] = {}
        self._windows: dict[tuple[str, str], int | None] = {}
        self._lock = threading.Lock()
        self._snapshot: Any = None

    def load(self) -> None:
        """Load genai-prices' bundled data (about 0.2 s), once. Called in the background by the Guard."""
        if self._snapshot is None:
            with self._lock:
                if self._snapshot is None:
                    from genai_prices import data_snapshot

                    self._snapshot = data_snapshot.get_snapshot()

    def rates(
        self,
        provider: str,
        model: str,
        when: datetime,
        service_tier: str | None = None,
        *,
        requested: str | None = None,
    ) -> Rates | None:
        """The rates for ``model`` (the one that bills) at time ``when``, or ``None`` when unknown.

        ``requested`` is the model the call asked for, tried after ``model`` at each level of the
        precedence: an override for either name wins over genai-prices for either.
        """
        key = (provider, model, requested, service_tier)
        entry = self._cache.get(key)
        if entry is None:
            names = (model,) if requested is None or requested == model else (model, requested)
            entry = self._cache[key] = self._resolve(provider, names, service_tier)
        if entry.model is None:
            return entry.rates
        # A price that changes over time (a new price from a date, off-peak hours): resolve it for
        # the call's minute, the finest grain at which vendors change prices.
        minute = int(when.timestamp()) // 60
        if entry.minute != minute:
            entry.rates = _rates_from_genai(entry.model.get_prices(when, entry.context))
            entry.minute = minute
        return entry.rates

    def _resolve(self, provider: str, names: tuple[str, ...], service_tier: str | None) -> _Entry:
        for name in names:
            override = self.overrides.get(name) or self.overrides.get(name.lower())
            if override is not None:
                return _Entry(_rates_from_price(override, "override"))
        self.load()
        for name in names:
            try:
                _, info = self._snapshot.find_provider_model(name, None, provider, None)
            except LookupError:
                continue
            context = {"service_tier": service_tier} if service_tier else None
            time_dependent = isinstance(info.prices, list) or bool(
                context and any(v.constraint is not None for v in info.price_variants or ())
            )
            if time_dependent:
                return _Entry(None, model=info, context=context)
            return _Entry(_rates_from_genai(info.get_prices(datetime.now(timezone.utc), context)))
        return _Entry(None)

    def context_window(self, provider: str, model: str) -> int | None:
        """The model's context window from genai-prices, when known (a bound for output tokens)."""
        key = (provider, model)
        if key not in self._windows:
            self.load()
            try:
                _, info = self._snapshot.find_provider_model(model, None, provider, None)
                window = int(info.context_window) if info.context_window else None
            except LookupError:
                window = None
            self._windows[key] = window
        return self._windows[key]
