"""Reports over a large SQLite ledger: how long the store's aggregations take.

    python benchmarks/reports.py                    # 1,000,000 calls (the table in docs/performance.md)
    python benchmarks/reports.py --quick            # 100,000 calls, one run per query
    python benchmarks/reports.py --calls 200000 --db /tmp/ledger.db

The ledger is generated once, deterministically (a fixed seed), and cached: by default in the
temporary directory as ``tokenguard-reports-<calls>-s<schema>.db``, or at ``--db PATH``; a
cached file is reused as is (delete it to build it again). It holds 90 days (January to March
2026) of calls by 50 users in 20 teams over 6 apps, to 8 models (one of them without a price, so
its calls are unpriced), about 60 % of them inside tasks (one task per 10 calls: 12 kinds of task,
1 to 11 calls each, some using two models, with outcomes and reviews of a fifth of them), the rest
on their own; about 3 % of the calls carry no ``team`` tag (unattributed), 3 % are errors and 1 %
blocked. Rows are written through the store's own schema and row format (``SQLiteStore``'s
private helpers), in one transaction.

Then it times, after one untimed aggregation that opens the store and reads the file into the OS
page cache:

* ``call_totals`` by team; by team and month; by model and day; by the tag ``user``;
  by team over one month (``since``/``until``);
* ``task_totals`` by task (its name); by team; by model (the model that carried most of the cost);
* for comparison, reading one month of the ledger with ``guard.records()`` (what a report written
  in Python over the records would start from), and once, ``call_totals`` by team as the base
  class computes it (``Store.call_totals``: a Python loop over every record).

Each figure is the median of 3 runs (1 with ``--quick``), in seconds, with the rows (calls or
tasks) aggregated per second.
"""

from __future__ import annotations

import argparse
import os
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import tokenguard as tg
from tokenguard.stores.base import CallQuery, Store, TaskQuery
from tokenguard.stores.sqlite import _INSERT_CALL, SCHEMA_VERSION, SQLiteStore, _json, _us

SEED = 20260101
START = datetime(2026, 1, 1, tzinfo=timezone.utc)
DAYS = 90
TEAMS = 20
USERS = 50
APPS = ("helpdesk", "search", "codegen", "analytics", "chatbot", "docs")
TASK_NAMES = (
    "summarize_ticket",
    "draft_reply",
    "classify_email",
    "extract_invoice",
    "review_code",
    "write_tests",
    "translate",
    "answer_question",
    "generate_report",
    "tag_document",
    "plan_sprint",
    "sql_query",
)
# (provider, api, request model, response model, pico-dollars per input, cached input, output token)
MODELS: tuple[tuple[str, str, str, str | None, int | None, int | None, int | None], ...] = (
    ("openai", "chat.completions", "gpt-4o", "gpt-4o-2024-08-06", 2_500_000, 1_250_000, 10_000_000),
    ("openai", "chat.completions", "gpt-4o-mini", "gpt-4o-mini-2024-07-18", 150_000, 75_000, 600_000),
    ("openai", "responses", "gpt-4.1", "gpt-4.1-2025-04-14", 2_000_000, 500_000, 8_000_000),
    ("openai", "responses", "gpt-4.1-mini", "gpt-4.1-mini-2025-04-14", 400_000, 100_000, 1_600_000),
    ("openai", "responses", "o4-mini", "o4-mini-2025-04-16", 1_100_000, 275_000, 4_400_000),
    ("anthropic", "messages", "claude-sonnet-4-5", "claude-sonnet-4-5-20250929", 3_000_000, 300_000, 15_000_000),
    ("anthropic", "messages", "claude-haiku-4-5", "claude-haiku-4-5-20251001", 1_000_000, 100_000, 5_000_000),
    ("openai", "chat.completions", "llama-3.1-70b-local", None, None, None, None),  # no price: unpriced calls
)
MODEL_WEIGHTS = (8, 30, 6, 20, 6, 8, 18, 4)


def _usd(pico: int) -> str:
    """Pico-dollars as a plain decimal text (exact)."""
    whole, frac = divmod(pico, 10**12)
    text = f"{whole}.{frac:012d}".rstrip("0")
    return text[:-1] if text.endswith(".") else text


def _nano(pico: int) -> int:
    """Rounded half to even, like ``tokenguard.budgets.to_nano``."""
    q, r = divmod(pico, 1000)
    return q + (r > 500 or (r == 500 and q & 1))


Rows = list[tuple[Any, ...]]


def generate(calls: int, seed: int = SEED) -> tuple[Rows, Rows, Rows]:
    """The rows of the calls, tasks and reviews tables of a ledger of ``calls`` calls."""
    rng = random.Random(seed)
    users = [(f"u{u:02d}", f"team-{u % TEAMS:02d}", APPS[(u // TEAMS + u) % len(APPS)]) for u in range(USERS)]
    tag_json: dict[tuple[int, bool], str] = {}
    for u, (user, team, app) in enumerate(users):
        tag_json[(u, True)] = _json({"app": app, "team": team, "user": user})
        tag_json[(u, False)] = _json({"app": app, "user": user})  # unattributed: no team
    span_us = DAYS * 86_400_000_000
    start_us = _us(START)
    model_ids = list(range(len(MODELS)))
    statuses = ("ok",) * 95 + ("error",) * 3 + ("blocked",) + ("cancelled",)

    rows: list[tuple[Any, ...]] = []
    tasks: list[tuple[Any, ...]] = []
    reviews: list[tuple[Any, ...]] = []

    def call(t_us: int, u: int, m: int, task_id: str | None, task_name: str | None) -> None:
        provider, api, request_model, response_model, p_in, p_cached, p_out = MODELS[m]
        status = rng.choice(statuses)
        inp = int(rng.lognormvariate(6.5, 1.0)) + 10
        out = int(rng.lognormvariate(5.0, 0.9)) + 1
        cached = inp // 2 if rng.random() < 0.3 else 0
        reasoning = out // 3 if request_model.startswith("o4") else 0
        if status == "blocked":
            inp = out = cached = reasoning = 0
        elif status == "error" and rng.random() < 0.7:
            out = reasoning = 0
        if p_in is None or p_cached is None or p_out is None:
            cost: str | None = None
            nano: int | None = None
            estimate: str | None = None
        else:
            pico = (inp - cached) * p_in + cached * p_cached + out * p_out
            cost, nano = _usd(pico), _nano(pico)
            estimate = _usd(pico * 2 + 4096 * p_out)
        rows.append(
            (
                f"call-{len(rows):07d}",
                t_us,
                round(rng.uniform(0.2, 8.0), 3),
                provider,
                "chat",
                api,
                request_model,
                None if status == "blocked" else response_model,
                0,
                None,
                inp,
                out,
                cached,
                0,
                reasoning,
                0,
                "0" if status == "blocked" and cost is not None else cost,
                0 if status == "blocked" and nano is not None else nano,
                estimate,
                tag_json[(u, rng.random() >= 0.03)],
                task_id,
                task_name,
                status,
                "RateLimitError" if status == "error" else None,
                "[]",
                None,
                None,
                None,
                1,
                "{}",
                "[]",
            )
        )

    n_tasks = max(1, calls // 10)
    for k in range(n_tasks):
        task_id = f"task-{k:06d}"
        name = TASK_NAMES[k % len(TASK_NAMES)]
        u = rng.randrange(USERS)
        begin = start_us + rng.randrange(span_us - 3_600_000_000)
        n = rng.randint(1, 11)
        m1 = rng.choices(model_ids, MODEL_WEIGHTS)[0]
        m2 = rng.choices(model_ids, MODEL_WEIGHTS)[0] if rng.random() < 0.25 else m1
        t = begin
        for j in range(n):
            t += rng.randrange(200_000, 20_000_000)
            call(t, u, m1 if j % 2 == 0 else m2, task_id, name)
        roll = rng.random()
        outcome = "succeeded" if roll < 0.75 else "failed" if roll < 0.9 else "unknown"
        tasks.append(
            (
                task_id,
                name,
                tag_json[(u, True)],
                outcome,
                "bad output" if outcome == "failed" else None,
                begin,
                (t - begin) / 1e6 + 0.5,
                None,
                None,
                None,
            )
        )
        if rng.random() < 0.2:
            accepted = outcome == "succeeded" and rng.random() < 0.85
            reviews.append((task_id, accepted, round(rng.random() * 0.6, 4) if rng.random() < 0.7 else None, "qa"))
    while len(rows) < calls:
        model = rng.choices(model_ids, MODEL_WEIGHTS)[0]
        call(start_us + rng.randrange(span_us), rng.randrange(USERS), model, None, None)
    del rows[calls:]
    rows.sort(key=lambda r: r[1])  # a ledger is appended about in time order
    return rows, tasks, reviews


def write(path: Path, rows: Rows, tasks: Rows, reviews: Rows) -> None:
    """A new ledger file at ``path`` (the store's schema) with these rows, in one transaction."""
    store = SQLiteStore(path)
    store.has_task("")  # creates the file and its schema
    store.close()
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA synchronous = OFF")
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(_INSERT_CALL, rows)
        conn.executemany(
            "INSERT INTO tasks (id, name, tags, outcome, failure_reason, started_us, duration_s, accepted, "
            "edit_distance, reviewer) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            tasks,
        )
        conn.executemany(
            "INSERT INTO reviews (task_id, accepted, edit_distance, reviewer) VALUES (?, ?, ?, ?)", reviews
        )
        conn.execute("COMMIT")
    finally:
        conn.close()


def ledger(path: Path | None, calls: int) -> Path:
    """The cached ledger of ``calls`` calls, generated first if it is missing."""
    if path is None:
        path = Path(tempfile.gettempdir()) / f"tokenguard-reports-{calls}-s{SCHEMA_VERSION}.db"
    if path.exists():
        print(f"ledger: {path} (cached)")
        return path
    partial = path.with_name(path.name + f".{os.getpid()}.partial")
    for leftover in (partial, Path(f"{partial}-wal"), Path(f"{partial}-shm")):
        leftover.unlink(missing_ok=True)
    t0 = time.perf_counter()
    rows, tasks, reviews = generate(calls)
    t1 = time.perf_counter()
    write(partial, rows, tasks, reviews)
    partial.rename(path)
    print(
        f"ledger: {path} ({len(rows):,} calls, {len(tasks):,} tasks): generated in {t1 - t0:.1f} s, "
        f"written in {time.perf_counter() - t1:.1f} s"
    )
    return path


def timed(fn: Callable[[], int], runs: int) -> tuple[float, int]:
    """Median seconds of ``runs`` runs of ``fn``, and what it returned (the rows it covered)."""
    times: list[float] = []
    n = 0
    for _ in range(runs):
        t0 = time.perf_counter()
        n = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), n


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--calls", type=int, default=None, help="calls in the ledger (default 1,000,000; 100,000 with --quick)"
    )
    parser.add_argument("--db", type=Path, default=None, help="where the ledger is (generated there if missing)")
    parser.add_argument("--quick", action="store_true", help="a ledger of 100,000 calls and one run per query")
    args = parser.parse_args(argv)
    calls = args.calls or (100_000 if args.quick else 1_000_000)
    runs = 1 if args.quick else 3
    path = ledger(args.db, calls)

    guard = tg.Guard(store=f"sqlite:///{path}", telemetry=False)
    store = guard.store
    try:
        total_calls = sum(t.calls for t in store.call_totals(CallQuery(), ()))  # opens, warms the page cache
        total_tasks = sum(t.tasks for t in store.task_totals(TaskQuery(), ()))
        march = CallQuery(
            since=datetime(2026, 3, 1, tzinfo=timezone.utc), until=datetime(2026, 4, 1, tzinfo=timezone.utc)
        )

        def calls_by(*by: str, query: CallQuery | None = None) -> Callable[[], int]:
            return lambda: sum(t.calls for t in store.call_totals(query or CallQuery(), by))

        def tasks_by(*by: str) -> Callable[[], int]:
            return lambda: sum(t.tasks for t in store.task_totals(TaskQuery(), by))

        def records() -> int:
            return sum(1 for _ in guard.records(since=march.since, until=march.until))

        def default_by_team() -> int:  # the base class's Python loop over every record
            return sum(t.calls for t in Store.call_totals(store, CallQuery(), ("team",)))

        cases: list[tuple[str, Callable[[], int], int]] = [
            ("call_totals by team", calls_by("team"), runs),
            ("call_totals by team, month", calls_by("team", "month"), runs),
            ("call_totals by model, day", calls_by("model", "day"), runs),
            ("call_totals by user (tag)", calls_by("user"), runs),
            ("call_totals by team, one month", calls_by("team", query=march), runs),
            ("task_totals by task", tasks_by("task"), runs),
            ("task_totals by team", tasks_by("team"), runs),
            ("task_totals by model", tasks_by("model"), runs),
            ("guard.records(), one month", records, runs),
            ("default call_totals by team (1 run)", default_by_team, 1),
        ]
        print(f"{total_calls:,} calls, {total_tasks:,} tasks; median of {runs} run(s); SQLite {sqlite3.sqlite_version}")
        print(f"  {'query':<36} {'seconds':>8} {'rows':>10} {'rows/s':>12}")
        for label, fn, n_runs in cases:
            seconds, n = timed(fn, n_runs)
            print(f"  {label:<36} {seconds:8.2f} {n:10,} {n / seconds:12,.0f}")
    finally:
        guard.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
