"""Paired A/B timing: the raw call and the instrumented call alternate, and each round yields a pair.

Within a round the order alternates (A B, then B A, ...), so neither side always runs "second"
(right after the other's connection and caches got warm). The added cost is the per-pair
difference ``B - A``; slow drift of the machine (frequency scaling, another process waking up)
hits both halves of a pair alike and cancels.

Nothing here imports tokenguard or a vendor SDK: the openai-v2 peer runs this module in a
subprocess whose interpreter may not have tokenguard at all.
"""

from __future__ import annotations

import asyncio
import gc
import math
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import asdict, dataclass
from typing import Any

SyncCall = Callable[[], int]
"""Makes one complete call (a stream is read to its end) and returns how many items it yielded."""

AsyncCall = Callable[[], Awaitable[int]]


@dataclass(frozen=True)
class Budget:
    """How many pairs to time (``rounds``) after how many untimed ones (``warmup``)."""

    rounds: int
    warmup: int


@dataclass(frozen=True)
class PairTimes:
    """Nanoseconds of each call, index ``i`` of every list being round ``i``.

    ``*_ns`` is client-side wall time (``perf_counter_ns``); ``*_cpu_ns`` the CPU time of the calling
    thread over the same call (``thread_time_ns``), which does not grow while the thread waits for
    the server or is preempted by other processes: a less noisy view of the same overhead.
    """

    raw_ns: list[int]
    wrapped_ns: list[int]
    raw_cpu_ns: list[int]
    wrapped_cpu_ns: list[int]
    raw_items: int
    wrapped_items: int


class _Recorder:
    __slots__ = ("raw_cpu_ns", "raw_ns", "wrapped_cpu_ns", "wrapped_ns")

    def __init__(self, n: int) -> None:
        self.raw_ns = [0] * n
        self.wrapped_ns = [0] * n
        self.raw_cpu_ns = [0] * n
        self.wrapped_cpu_ns = [0] * n

    def times(self, raw_items: int, wrapped_items: int) -> PairTimes:
        return PairTimes(self.raw_ns, self.wrapped_ns, self.raw_cpu_ns, self.wrapped_cpu_ns, raw_items, wrapped_items)


def time_pairs_sync(raw: SyncCall, wrapped: SyncCall, budget: Budget) -> PairTimes:
    """Time ``budget.rounds`` interleaved pairs of ``raw()`` / ``wrapped()`` after a warm-up."""
    raw_items = wrapped_items = 0
    for _ in range(budget.warmup):
        raw_items = raw()
        wrapped_items = wrapped()
    gc.collect()
    wall, cpu = time.perf_counter_ns, time.thread_time_ns
    rec = _Recorder(budget.rounds)

    def one(fn: SyncCall, walls: list[int], cpus: list[int], i: int) -> None:
        c0 = cpu()
        w0 = wall()
        fn()
        w1 = wall()
        c1 = cpu()
        walls[i] = w1 - w0
        cpus[i] = c1 - c0

    for i in range(budget.rounds):
        if i & 1:
            one(wrapped, rec.wrapped_ns, rec.wrapped_cpu_ns, i)
            one(raw, rec.raw_ns, rec.raw_cpu_ns, i)
        else:
            one(raw, rec.raw_ns, rec.raw_cpu_ns, i)
            one(wrapped, rec.wrapped_ns, rec.wrapped_cpu_ns, i)
    return rec.times(raw_items, wrapped_items)


async def time_pairs_async(raw: AsyncCall, wrapped: AsyncCall, budget: Budget) -> PairTimes:
    """The ``async`` twin of :func:`time_pairs_sync` (one coroutine, nothing else on the loop)."""
    raw_items = wrapped_items = 0
    for _ in range(budget.warmup):
        raw_items = await raw()
        wrapped_items = await wrapped()
    gc.collect()
    wall, cpu = time.perf_counter_ns, time.thread_time_ns
    rec = _Recorder(budget.rounds)

    async def one(fn: AsyncCall, walls: list[int], cpus: list[int], i: int) -> None:
        c0 = cpu()
        w0 = wall()
        await fn()
        w1 = wall()
        c1 = cpu()
        walls[i] = w1 - w0
        cpus[i] = c1 - c0

    for i in range(budget.rounds):
        if i & 1:
            await one(wrapped, rec.wrapped_ns, rec.wrapped_cpu_ns, i)
            await one(raw, rec.raw_ns, rec.raw_cpu_ns, i)
        else:
            await one(raw, rec.raw_ns, rec.raw_cpu_ns, i)
            await one(wrapped, rec.wrapped_ns, rec.wrapped_cpu_ns, i)
    return rec.times(raw_items, wrapped_items)


def run_async(factory: Callable[[], Coroutine[Any, Any, PairTimes]]) -> PairTimes:
    """Run one async scenario on a fresh event loop."""
    return asyncio.run(factory())


# -- statistics ----------------------------------------------------------------------------------


def quantile(sorted_values: Sequence[float], q: float) -> float:
    """The ``q`` quantile of already sorted values, interpolated linearly (numpy's default)."""
    if not sorted_values:
        return math.nan
    pos = (len(sorted_values) - 1) * q
    lo = math.floor(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    frac = pos - lo
    return sorted_values[lo] * (1 - frac) + sorted_values[hi] * frac


def median_ci(sorted_values: Sequence[float], z: float = 1.96) -> tuple[float, float]:
    """A distribution-free ~95% confidence interval of the median (binomial order statistics)."""
    n = len(sorted_values)
    if n < 10:
        return (math.nan, math.nan)
    half = z * math.sqrt(n) / 2
    lo = max(math.floor(n / 2 - half), 0)
    hi = min(math.ceil(n / 2 + half), n - 1)
    return (sorted_values[lo], sorted_values[hi])


@dataclass(frozen=True)
class PairStats:
    """One scenario's result, in microseconds. ``added_*`` are quantiles of the per-pair differences."""

    scenario: str
    group: str
    rounds: int
    raw_p50_us: float
    wrapped_p50_us: float
    added_p50_us: float
    added_p50_ci_us: tuple[float, float]
    added_p99_us: float
    ratio_p50: float
    raw_p99_us: float
    wrapped_p99_us: float
    added_cpu_p50_us: float
    """Median per-pair difference of the calling thread's CPU time (see :class:`PairTimes`)."""
    added_cpu_p50_ci_us: tuple[float, float]
    raw_items: int
    wrapped_items: int
    note: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def summarize(scenario: str, group: str, times: PairTimes, note: str = "") -> PairStats:
    raw = sorted(t / 1000 for t in times.raw_ns)
    wrapped = sorted(t / 1000 for t in times.wrapped_ns)
    diffs = sorted((w - r) / 1000 for r, w in zip(times.raw_ns, times.wrapped_ns, strict=True))
    cpu_diffs = sorted((w - r) / 1000 for r, w in zip(times.raw_cpu_ns, times.wrapped_cpu_ns, strict=True))
    raw_p50 = quantile(raw, 0.5)
    wrapped_p50 = quantile(wrapped, 0.5)
    return PairStats(
        scenario=scenario,
        group=group,
        rounds=len(diffs),
        raw_p50_us=raw_p50,
        wrapped_p50_us=wrapped_p50,
        added_p50_us=quantile(diffs, 0.5),
        added_p50_ci_us=median_ci(diffs),
        added_p99_us=quantile(diffs, 0.99),
        ratio_p50=wrapped_p50 / raw_p50 if raw_p50 else math.nan,
        raw_p99_us=quantile(raw, 0.99),
        wrapped_p99_us=quantile(wrapped, 0.99),
        added_cpu_p50_us=quantile(cpu_diffs, 0.5),
        added_cpu_p50_ci_us=median_ci(cpu_diffs),
        raw_items=times.raw_items,
        wrapped_items=times.wrapped_items,
        note=note,
    )


@dataclass(frozen=True)
class Failure:
    """A scenario that could not be measured, and why (shown in the table instead of numbers)."""

    scenario: str
    group: str
    reason: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


Result = PairStats | Failure
