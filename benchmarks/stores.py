"""Admission + settle cost per call for each store, in one process and under contention.

    python benchmarks/stores.py --uri memory:// --uri sqlite:////tmp/tg-bench.db
    python benchmarks/stores.py --uri redis://127.0.0.1:6379/0 --procs 4 --calls 2000

Each governed call with a budget costs the store one ``admit`` (check and reserve) and one
``settle`` (commit the cost, release the reservation, append the ledger record); this times the
pair, per call, as the Guard makes them. "1 process" runs one loop; "N processes" runs N processes
(spawned, started together) hammering the same budget window of the same store, so the figure
includes waiting for the other writers; throughput is calls per second over all of them.
``memory://`` lives in one process, so its N-process figure is N independent stores (no contention).
Every run uses a fresh budget name, so runs against one file or server do not interfere.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import statistics
import sys
import time
import uuid
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

from tokenguard.budgets import to_nano
from tokenguard.records import CallRecord
from tokenguard.stores import open_store
from tokenguard.stores.base import Charge

COST = Decimal("0.000123")


def _record(i: int, worker: int) -> CallRecord:
    return CallRecord(
        id=f"bench-{worker}-{i}",
        time=datetime.now(timezone.utc),
        latency_s=0.25,
        provider="openai",
        operation="chat",
        api="chat.completions",
        request_model="gpt-4o-mini",
        response_model="gpt-4o-mini-2024-07-18",
        input_tokens=100,
        output_tokens=20,
        cost_usd=COST,
        estimated_cost_usd=Decimal("0.001"),
        tags={"team": "support", "user": f"u{i % 10}"},
        decisions=("budget:bench:ok",),
    )


def run_loop(uri: str, budget: str, calls: int, worker: int, warmup: int) -> list[float]:
    """admit + settle ``calls`` times; the µs of each pair."""
    store = open_store(uri)
    now = datetime.now(timezone.utc)
    charge = Charge(
        budget=budget,
        window="20260101T000000Z",
        cap_nano=to_nano(Decimal(1_000_000)),
        estimate_nano=to_nano(Decimal("0.001")),
    )
    keys = [charge.key]
    cost_nano = to_nano(COST)
    times: list[float] = []
    try:
        for i in range(warmup + calls):
            record = _record(i, worker)
            rid = uuid.uuid4().hex
            t0 = time.perf_counter_ns()
            admission = store.admit(rid, [charge], now, 60.0)
            store.settle(rid, keys, cost_nano, record, now)
            t1 = time.perf_counter_ns()
            assert admission.admitted
            if i >= warmup:
                times.append((t1 - t0) / 1000)
    finally:
        store.close()
    return times


def _worker(uri: str, budget: str, calls: int, worker: int, warmup: int, start: Any, out: Any) -> None:
    start.wait()
    out.put(run_loop(uri, budget, calls, worker, warmup))


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def report(label: str, times: list[float], wall_s: float) -> None:
    print(
        f"  {label:<14} p50 {pct(times, 0.5):8.1f} µs   p99 {pct(times, 0.99):8.1f} µs   "
        f"mean {statistics.fmean(times):8.1f} µs   {len(times) / wall_s:8.0f} calls/s"
    )


def bench(uri: str, calls: int, procs: int, warmup: int) -> None:
    print(uri)
    budget = f"bench-{uuid.uuid4().hex[:8]}"
    run_loop(uri, budget, warmup, -1, 0)  # creates the file / schema / connection once
    t0 = time.perf_counter()
    times = run_loop(uri, budget, calls, 0, warmup)
    report("1 process", times, time.perf_counter() - t0)
    if procs > 1:
        ctx = mp.get_context("spawn")
        start = ctx.Event()
        out = ctx.Queue()
        workers = [
            ctx.Process(target=_worker, args=(uri, budget, calls, n + 1, warmup, start, out)) for n in range(procs)
        ]
        for w in workers:
            w.start()
        time.sleep(1.0)  # let them import and connect
        t0 = time.perf_counter()
        start.set()
        results = [out.get() for _ in workers]
        wall = time.perf_counter() - t0
        for w in workers:
            w.join()
        report(f"{procs} processes", [t for r in results for t in r], wall)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--uri", action="append", help="a store URI (repeat for several); default memory://")
    parser.add_argument("--calls", type=int, default=2000, help="admit+settle pairs per process (default 2000)")
    parser.add_argument("--procs", type=int, default=4, help="processes for the contention run (default 4)")
    parser.add_argument("--warmup", type=int, default=200, help="untimed pairs first (default 200)")
    args = parser.parse_args(argv)
    for uri in args.uri or ["memory://"]:
        bench(uri, args.calls, args.procs, args.warmup)
    return 0


if __name__ == "__main__":
    sys.exit(main())
