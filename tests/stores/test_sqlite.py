"""What only the SQLite store has (its semantics are the conformance suite's): URIs, the file (WAL,
schema, persistence), many processes on one hard budget, bad files, and the Guard's policy when
the file fails. Real SQLite files under tmp_path; other processes are real processes."""

from __future__ import annotations

import json
import os
import random
import sqlite3
import subprocess
import sys
import threading
import time
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import openai
import pytest

import tokenguard as tg
from tokenguard.budgets import Grant, to_nano
from tokenguard.records import CallRecord, TaskRecord
from tokenguard.stores import open_store
from tokenguard.stores.base import CallQuery, Charge, Review, Store, TaskQuery
from tokenguard.stores.memory import MemoryStore
from tokenguard.stores.sqlite import APPLICATION_ID, PAGE, SCHEMA_VERSION, SQLiteStore, SQLiteStoreError
from tokenguard.testing import FakeLLMServer

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=timezone.utc)
KEY = ("team-b", "20261101T000000Z")


def uri_for(path: Path) -> str:
    return f"sqlite:///{path}"  # an absolute path: four slashes


def record(i: int, **kw: object) -> CallRecord:
    values: dict[str, object] = {
        "id": f"rec-{i}",
        "time": NOW + timedelta(seconds=i),
        "latency_s": 0.5,
        "provider": "openai",
        "operation": "chat",
        "api": "chat.completions",
        "request_model": "gpt-4o-mini",
        "response_model": "gpt-4o-mini-2024-07-18",
        "cost_usd": Decimal("0.000123"),
        "tags": {"team": "b"},
    }
    values.update(kw)
    return CallRecord(**values)  # type: ignore[arg-type]


def charge(estimate_nano: int, cap_nano: int, key: tuple[str, str] = KEY) -> Charge:
    return Charge(budget=key[0], window=key[1], cap_nano=cap_nano, estimate_nano=estimate_nano)


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "tokenguard.db"


# -- URIs ------------------------------------------------------------------------------------------


def test_three_slashes_are_relative_to_the_working_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    store = open_store("sqlite:///data.db")
    assert isinstance(store, SQLiteStore)
    assert store.path == tmp_path / "data.db"
    assert store.timeout == 5.0
    monkeypatch.chdir("/")  # resolved when parsed, not when first used
    assert not (tmp_path / "data.db").exists()  # building the store touches no file
    store.claim_event(KEY, "alert")
    assert (tmp_path / "data.db").is_file()
    store.close()


def test_four_slashes_are_absolute_and_the_query_sets_the_timeout(tmp_path: Path) -> None:
    store = SQLiteStore.from_uri(f"sqlite:///{tmp_path}/sub%20dir/x.db?timeout=2.5")
    assert str(tmp_path).startswith("/")
    assert store.path == tmp_path / "sub dir" / "x.db"  # percent-escapes decoded
    assert store.timeout == 2.5
    assert "x.db" in repr(store)


def test_a_missing_directory_is_not_touched_until_first_use(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path}/missing/x.db")  # validates without connecting
    assert not (tmp_path / "missing").exists()
    with pytest.raises(SQLiteStoreError, match="does not exist"):
        store.standing(KEY, NOW)


@pytest.mark.parametrize(
    ("uri", "why"),
    [
        ("sqlite://", "no file path"),
        ("sqlite:///", "no file path"),
        ("sqlite://relative.db", "did you mean 'sqlite:///relative.db'"),
        ("sqlite://host/x.db", "no file path"),
        ("sqlite:///:memory:", "memory://"),
        ("sqlite:///file:x.db?mode=ro", "not a file"),
        ("sqlite:///dir/", "directory"),
        ("sqlite:///x.db#frag", "fragment"),
        ("sqlite:///x.db?foo=1", "unknown query parameter 'foo'"),
        ("sqlite:///x.db?timeout=soon", "timeout must be a number"),
        ("sqlite:///x.db?timeout=-1", "timeout must be a number"),
        ("sqlite:///x.db?timeout=nan", "timeout must be a number"),
        ("sqlite:///x.db?timeout=1&timeout=2", "repeats"),
        ("sqlite:///x.db?garbage", "unknown query parameter 'garbage'"),
        ("sqlite:///x.db?&", "malformed query"),
    ],
)
def test_malformed_uris_are_config_errors_naming_the_uri(uri: str, why: str, tmp_path: Path) -> None:
    with pytest.raises(tg.ConfigError) as info:
        open_store(uri)
    message = str(info.value)
    assert repr(uri) in message and why in message
    assert list(tmp_path.iterdir()) == []


def test_guard_rejects_a_bad_sqlite_uri_when_built() -> None:
    with pytest.raises(tg.ConfigError, match="sqlite://x.db"):
        tg.Guard(store="sqlite://x.db", telemetry=False)


# -- the file --------------------------------------------------------------------------------------


def test_the_file_is_wal_with_a_versioned_schema(db: Path) -> None:
    store = SQLiteStore(db)
    store.settle(None, [KEY], 5, record(0), NOW)
    conn = sqlite3.connect(db)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert conn.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        assert {"calls", "tasks", "reviews", "spend", "reservations", "grants", "events"} <= tables
        indexes = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
        assert {"calls_time", "calls_task", "calls_request_model", "calls_response_model"} <= indexes
        # reports can sum exact money in SQL: integer nano-dollars beside the exact text
        assert conn.execute("SELECT cost_usd, cost_nano FROM calls").fetchone() == ("0.000123", 123_000)
    finally:
        conn.close()
    assert store._conn is not None
    assert store._conn.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
    store.close()


def test_everything_persists_across_store_objects(db: Path) -> None:
    a = SQLiteStore(db)
    assert a.admit("r1", [charge(100, 1000)], NOW, 3600).admitted
    assert not a.admit("r2", [charge(2000, 1000)], NOW, 3600).admitted  # refused: flag set
    a.settle(None, [KEY], 40, record(0, task_id="t1", cost_usd=Decimal("1E-18")), NOW)
    a.append_task(TaskRecord(id="t1", name="n", started_at=NOW, outcome="succeeded"))
    a.review_task("t1", Review(accepted=False, edit_distance=None, reviewer=None))
    grant = Grant("g1", "other", Decimal("0.5"), "cfo", "why", NOW - timedelta(hours=1), NOW + timedelta(hours=1))
    a.add_grant(grant)
    assert a.claim_event(KEY, "alert")
    a.close()

    b = SQLiteStore(db)
    st = b.standing(KEY, NOW)
    assert (st.spent_nano, st.reserved_nano, st.refused) == (40, 100, True)
    [call] = b.calls(CallQuery())
    assert call.cost_usd == Decimal("1E-18") and str(call.cost_usd) == "1E-18"
    [task] = b.tasks(TaskQuery())
    assert (task.calls, task.cost_usd, task.accepted) == (1, Decimal("1E-18"), False)
    assert b.grants() == [grant]
    assert b.standing(("other", "w"), NOW).grant_nano == to_nano(Decimal("0.5"))
    assert not b.claim_event(KEY, "alert")
    b.close()


def test_a_closed_store_opens_again_on_use(db: Path) -> None:
    store = SQLiteStore(db)
    store.settle(None, [KEY], 7, record(0), NOW)
    store.close()
    store.close()  # twice is fine
    assert store.standing(KEY, NOW).spent_nano == 7
    store.close()


def test_ledger_pages_are_ordered_filtered_and_a_snapshot(db: Path) -> None:
    """More calls than one page, appended out of time order, with every filter, against the
    reference store's answers (oldest first)."""
    sqlite_store, memory = SQLiteStore(db), MemoryStore()
    odd_keys = {"a.b": "1", 'q"uote': "2", "ünï": "3", "$[0]": "4"}
    n = 2 * PAGE + 37
    for i in range(n):
        r = record(
            (i * 7919) % n,  # times out of order
            request_model="gpt-4o" if i % 3 else "gpt-4o-mini",
            response_model=None if i % 5 == 0 else ("gpt-4o-mini" if i % 4 == 0 else "gpt-4o-2024-08-06"),
            tags={"team": f"t{i % 4}", **(odd_keys if i % 6 == 0 else {})},
            task_id=f"task-{i % 9}" if i % 2 else None,
            status="ok" if i % 7 else "error",
        )
        sqlite_store.settle(None, (), 0, r, NOW)
        memory.settle(None, (), 0, r, NOW)
    queries = [
        CallQuery(),
        CallQuery(since=NOW + timedelta(seconds=100), until=NOW + timedelta(seconds=900)),
        CallQuery(model="gpt-4o-mini"),  # requested or responding
        CallQuery(model="gpt-4o-mini", since=NOW + timedelta(seconds=n // 2)),
        CallQuery(task_id="task-3"),
        CallQuery(status="error"),
        CallQuery(tags={"team": "t2"}),
        CallQuery(tags=odd_keys),
        CallQuery(tags={"a.b": "1", "team": "t0"}),
        CallQuery(tags={"team": "t1", 'q"uote': "2"}),  # nothing
    ]
    for q in queries:
        expected = sorted(memory.calls(q), key=lambda r: r.time)
        got = list(sqlite_store.calls(q))
        assert got == expected, q
        assert [r.time for r in got] == sorted(r.time for r in got)
    assert len(list(sqlite_store.calls(CallQuery(tags=odd_keys)))) == len(range(0, n, 6))

    it = sqlite_store.calls(CallQuery())
    sqlite_store.settle(None, (), 0, record(n + 1), NOW)  # appended after the query: not included
    assert len(list(it)) == n
    sqlite_store.close()


def test_task_record_values_stand_without_a_review(db: Path) -> None:
    store = SQLiteStore(db)
    task = TaskRecord(
        id="t",
        name="n",
        tags={"k": "v"},
        outcome="failed",
        failure_reason="boom",
        started_at=NOW,
        duration_s=2.5,
        accepted=True,
        edit_distance=0.25,
        reviewer="me",
    )
    store.append_task(task.model_copy(update={"name": "old"}))
    store.append_task(task)  # the same id again replaces it
    assert list(store.tasks(TaskQuery())) == [task]
    assert list(store.tasks(TaskQuery(tags={"k": "v"}, name="n", outcome="failed", since=NOW))) == [task]
    assert list(store.tasks(TaskQuery(until=NOW))) == []
    store.close()


def test_a_forked_child_uses_its_own_connection_and_lock(db: Path) -> None:
    if not hasattr(os, "fork"):
        pytest.skip("no fork() here")
    store = SQLiteStore(db)
    store.settle(None, [KEY], 1, record(0), NOW)  # the parent is connected
    with store._lock:  # and busy in another thread, say, when it forks
        pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 1
        try:
            store.settle(None, [KEY], 10, record(1), NOW)
            code = 0 if store.standing(KEY, NOW).spent_nano == 11 else 2
            store.close()
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    store.settle(None, [KEY], 100, record(2), NOW)
    assert store.standing(KEY, NOW).spent_nano == 111
    store.close()


# -- reports: aggregation in SQL -------------------------------------------------------------------

ODD_KEYS = {"a.b": "1", 'q"uote': "2", "ünï": "3", "$[0]": "4"}


def random_ledger(store: SQLiteStore, seed: int = 7, calls: int = 3000, tasks: int = 300) -> None:
    """A ledger with every kind of value the aggregations must get right: day, week and month
    boundaries to the microsecond, tags present and absent (also keys a JSON path cannot name),
    costs exact to 10^-18 in every Decimal notation, unpriced and zero-cost calls, calls of unknown
    tasks, tasks without calls, reviews over a task's own verdict, and models tied on cost."""
    rng = random.Random(seed)
    start = datetime(2026, 11, 1, tzinfo=timezone.utc)
    edges = [start + timedelta(days=d) - timedelta(microseconds=m) for d in range(0, 70, 3) for m in (0, 1)]

    def when() -> datetime:
        if rng.random() < 0.1:
            return rng.choice(edges)
        return start + timedelta(microseconds=rng.randrange(70 * 86_400_000_000))

    def cost() -> Decimal | None:
        roll = rng.random()
        if roll < 0.05:
            return None
        if roll < 0.1:
            return Decimal(rng.choice(["0", "0.000", "0E-12"]))
        if roll < 0.4:
            return Decimal(rng.choice(["0.01", "0.02", "0.005"]))  # few values: ties between models
        return Decimal(rng.randint(1, 10**6)).scaleb(-rng.randint(3, 18))  # e.g. 1.23E-13

    task_ids = [f"task-{k}" for k in range(tasks)]
    names = {t: rng.choice(["summarize", "classify", "draft"]) for t in task_ids}
    models = ["gpt-4o", "gpt-4o-mini", "claude-haiku-4-5", "o4-mini"]

    def tags() -> dict[str, str]:
        out = {}
        for key, values in (("team", "abcde"), ("user", "uvwxyz"), ("app", "pq"), ("model", "mn")):
            if rng.random() < 0.8:
                out[key] = rng.choice(values)
        if rng.random() < 0.05:
            out.update(ODD_KEYS)
        return out

    for i in range(calls):
        model = rng.choice(models)
        task_id = rng.choice(task_ids) if rng.random() < 0.6 else None
        store.settle(
            None,
            (),
            0,
            record(
                i,
                time=when(),
                provider="anthropic" if model.startswith("claude") else "openai",
                api=rng.choice(["chat.completions", "responses", "embeddings"]),
                operation=rng.choice(["chat", "chat", "embeddings"]),
                request_model=model,
                response_model=rng.choice([None, "", model, f"{model}-2026"]),
                input_tokens=rng.randrange(5000),
                output_tokens=rng.randrange(500),
                cache_read_tokens=rng.randrange(100),
                cache_write_tokens=rng.randrange(50),
                reasoning_tokens=rng.randrange(30),
                cost_usd=cost(),
                tags=tags(),
                task_id=task_id,
                task_name=names[task_id] if task_id else None,
                status=rng.choice(["ok", "ok", "ok", "error", "blocked", "cancelled"]),
            ),
            NOW,
        )
    for k, task_id in enumerate(task_ids[:20]):  # two models, the same cost, the same microsecond
        at = start + timedelta(days=k, hours=5)
        for j, model in enumerate(rng.sample(models, 2)):
            r = record(calls + 2 * k + j, time=at, request_model=model, response_model=None)
            store.settle(None, (), 0, r.model_copy(update={"task_id": task_id, "cost_usd": Decimal("0.02")}), NOW)
    for task_id in task_ids[: tasks - tasks // 10]:  # the rest: calls of tasks never recorded
        store.append_task(
            TaskRecord(
                id=task_id,
                name=names[task_id],
                tags=tags(),
                outcome=rng.choice(["succeeded", "succeeded", "failed", "unknown"]),
                started_at=when(),  # sometimes after some of its calls: since= then leaves them out
                accepted=rng.choice([None, None, True, False]),
                edit_distance=rng.choice([None, rng.random()]),
            )
        )
        if rng.random() < 0.3:
            store.review_task(
                task_id,
                Review(accepted=rng.random() < 0.7, edit_distance=rng.choice([None, rng.random()]), reviewer="qa"),
            )
    store.append_task(TaskRecord(id="lonely", name="draft", started_at=start))  # no calls at all


def test_sql_aggregation_equals_the_default_on_a_random_ledger(db: Path) -> None:
    store = SQLiteStore(db)
    random_ledger(store)
    mid, late = datetime(2026, 11, 20, tzinfo=timezone.utc), datetime(2026, 12, 20, tzinfo=timezone.utc)
    call_queries = [
        CallQuery(),
        CallQuery(since=mid, until=late),
        CallQuery(tags={"team": "a"}),
        CallQuery(tags={"team": "b", "app": "p"}, status="ok"),
        CallQuery(tags={"a.b": "1", "$[0]": "4"}),
        CallQuery(model="gpt-4o"),
        CallQuery(model="gpt-4o-mini-2026", since=mid),
        CallQuery(status="error"),
        CallQuery(task_id="task-7"),
    ]
    call_bys = [
        (),
        ("team",),
        ("team", "user"),
        ("model", "day"),
        ("week",),
        ("month", "status"),
        ("tag:model", "request_model"),
        ("provider", "api", "operation"),
        ("task", "app"),
        ("a.b", "$[0]", "week"),
        ("unknown-tag",),
    ]
    for q in call_queries:
        for by in call_bys:
            got, expected = store.call_totals(q, by), Store.call_totals(store, q, by)
            assert got == expected, (q, by)
            assert [str(t.cost_usd) for t in got] == [str(t.cost_usd) for t in expected], (q, by)
    task_queries = [
        TaskQuery(),
        TaskQuery(since=mid, until=late),
        TaskQuery(since=mid),
        TaskQuery(name="summarize"),
        TaskQuery(tags={"team": "c"}, outcome="succeeded"),
        TaskQuery(tags={"a.b": "1"}),
    ]
    task_bys = [(), ("task",), ("team", "outcome"), ("model",), ("model", "week"), ("tag:model",), ("month", "user")]
    for tq in task_queries:
        for by in task_bys:
            got_tasks, expected_tasks = store.task_totals(tq, by), Store.task_totals(store, tq, by)
            assert got_tasks == expected_tasks, (tq, by)
            assert [str(t.cost_usd) for t in got_tasks] == [str(t.cost_usd) for t in expected_tasks], (tq, by)
    assert sum(t.calls for t in store.call_totals(CallQuery(), ["model"])) == 3040
    assert len(store.task_totals(TaskQuery(), ["model"])) > 3
    store.close()


def test_keys_sql_cannot_name_and_sqlite_without_json_use_the_default(db: Path) -> None:
    store = SQLiteStore(db)
    random_ledger(store, calls=400, tasks=40)
    for by, tags in [(('q"uote',), None), (("ünï", "team"), None), (("team",), {'q"uote': "2"})]:
        q = CallQuery(tags=tags)
        assert store.call_totals(q, by) == Store.call_totals(store, q, by)
        assert any(t.key[0] is not None for t in store.call_totals(q, by))
        tq = TaskQuery(tags=tags)
        assert store.task_totals(tq, by) == Store.task_totals(store, tq, by)
    store._json = False  # as on a SQLite built without JSON functions
    assert store.call_totals(CallQuery(), ["team", "day"]) == Store.call_totals(store, CallQuery(), ["team", "day"])
    assert store.task_totals(TaskQuery(), ["model"]) == Store.task_totals(store, TaskQuery(), ["model"])
    store.close()


def test_a_report_does_not_wait_for_the_lock_of_governed_calls(db: Path) -> None:
    """Aggregations read on a connection of their own: a call being settled in this process (here:
    its lock held) does not hold them up, and they do not hold up calls for seconds."""
    store = SQLiteStore(db)
    store.settle(None, [KEY], 1, record(0, tags={"team": "b"}), NOW)
    results: list[object] = []
    with store._lock:
        thread = threading.Thread(
            target=lambda: results.extend(
                [store.call_totals(CallQuery(), ["team"]), store.task_totals(TaskQuery(), ["model"])]
            )
        )
        thread.start()
        thread.join(timeout=10)
        assert not thread.is_alive()
    [team], tasks = results
    assert (team.key, team.calls, tasks) == (("b",), 1, [])  # type: ignore[union-attr]
    store.close()


def test_a_forked_child_aggregates_on_its_own_reader(db: Path) -> None:
    if not hasattr(os, "fork"):
        pytest.skip("no fork() here")
    store = SQLiteStore(db)
    store.settle(None, (), 0, record(0), NOW)
    assert store.call_totals(CallQuery(), [])[0].calls == 1  # the parent's reader is open
    with store._reader_lock:  # and busy in another thread when it forks
        pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 1
        try:
            store.settle(None, (), 0, record(1), NOW)
            code = 0 if store.call_totals(CallQuery(), [])[0].calls == 2 else 2
            store.close()
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert store.call_totals(CallQuery(), [])[0].calls == 2
    store.close()


def test_schema_2_is_migrated_to_the_covering_task_index(db: Path) -> None:
    store = SQLiteStore(db)
    store.settle(None, (), 0, record(0, task_id="t1"), NOW)
    store.close()
    conn = sqlite3.connect(db)  # as tokenguard with schema 2 left it
    conn.executescript(
        "DROP INDEX calls_task; CREATE INDEX calls_task ON calls (task_id, time_us) WHERE task_id IS NOT NULL;"
        "PRAGMA user_version = 2;"
    )
    conn.close()
    store = SQLiteStore(db)
    assert [(t.key, t.calls) for t in store.task_totals(TaskQuery(), [])] == []
    assert store.call_totals(CallQuery(), ["task"])[0].calls == 1
    store.close()
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 3
    columns = [r[2] for r in conn.execute("PRAGMA index_info(calls_task)")]
    assert columns == [
        "task_id",
        "time_us",
        "cost_usd",
        "request_model",
        "response_model",
        "input_tokens",
        "output_tokens",
    ]
    conn.close()


# -- many processes on one hard budget -------------------------------------------------------------

WORKER = r"""
import json, random, sys, threading, time
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from tokenguard.records import CallRecord
from tokenguard.stores import open_store
from tokenguard.stores.base import Charge

uri, go, windows = sys.argv[1], Path(sys.argv[3]), json.loads(sys.argv[6])
worker, cap, estimate = int(sys.argv[2]), int(sys.argv[4]), int(sys.argv[5])
store = open_store(uri)  # one store object, two threads
stats = {}
lock = threading.Lock()

def hammer(thread):
    rng = random.Random(worker * 100 + thread)
    while not go.exists():
        time.sleep(0.001)
    for window, now_iso in windows:  # one period, then the next (a rollover)
        now = datetime.fromisoformat(now_iso)
        admitted = refused = 0
        i = 0
        while True:
            i += 1
            rid = f"p{worker}-t{thread}-{window}-{i}"
            c = Charge(budget="hard", window=window, cap_nano=cap, estimate_nano=estimate)
            if store.admit(rid, [c], now, 60).admitted:
                admitted += 1
                cost = rng.randint(estimate // 2, estimate)  # the real cost is below the estimate
                record = CallRecord(
                    id=rid, time=now + timedelta(microseconds=i), latency_s=0.1, provider="openai",
                    operation="chat", api="chat.completions", request_model="m",
                    cost_usd=Decimal(cost) / 10**9, tags={"p": str(worker)},
                )
                store.settle(rid, [c.key], cost, record, now)
                continue
            refused += 1
            st = store.standing(c.key, now)
            if st.reserved_nano == 0 and st.spent_nano + estimate > cap:
                break  # nothing in flight and no room: the budget is used up
            time.sleep(0.0005)
        with lock:
            s = stats.setdefault(window, [0, 0])
            s[0] += admitted
            s[1] += refused

threads = [threading.Thread(target=hammer, args=(t,)) for t in range(2)]
for t in threads:
    t.start()
for t in threads:
    t.join()
store.close()
print(json.dumps(stats))
"""


def test_processes_and_threads_never_exceed_a_hard_cap_across_a_rollover(db: Path, tmp_path: Path) -> None:
    """4 processes x 2 threads admit and settle on one budget until it is used up, in one period
    and then the next: committed spend never passes the cap, no reservation is left behind, and
    the cap is used (less than one estimate of headroom remains)."""
    uri = uri_for(db)
    cap, estimate = to_nano(Decimal("3.00")), to_nano(Decimal("0.005"))  # some 800 calls a period
    windows = [["20261101T000000Z", NOW.isoformat()], ["20261201T000000Z", (NOW + timedelta(days=3)).isoformat()]]
    go = tmp_path / "go"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, uri, str(n), str(go), str(cap), str(estimate), json.dumps(windows)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in range(4)
    ]
    time.sleep(0.5)
    go.touch()
    results = []
    for p in procs:
        out, err = p.communicate(timeout=240)
        assert p.returncode == 0, err
        results.append(json.loads(out))

    store = SQLiteStore(db)
    for window, now_iso in windows:
        now = datetime.fromisoformat(now_iso)
        st = store.standing(("hard", window), now)
        assert st.spent_nano <= cap  # the hard cap holds across processes
        assert cap - st.spent_nano < estimate  # and almost all of it is used
        assert st.reserved_nano == 0
        admitted = sum(r[window][0] for r in results)
        assert sum(r[window][0] > 0 for r in results) >= 2  # they did compete
        ledger = [c for c in store.calls(CallQuery()) if window in c.id]
        assert len(ledger) == admitted
        assert sum(to_nano(c.cost_usd or Decimal(0)) for c in ledger) == st.spent_nano  # the ledger reconciles
    conn = sqlite3.connect(db)
    assert conn.execute("SELECT count(*) FROM reservations").fetchone()[0] == 0  # nothing leaked
    conn.close()
    store.close()


def test_a_writer_waits_for_another_process_lock_then_says_so(db: Path) -> None:
    store = SQLiteStore.from_uri(uri_for(db) + "?timeout=0.3")
    store.claim_event(KEY, "init")
    holder = sqlite3.connect(db, isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN IMMEDIATE")  # another process's long write transaction
    released = threading.Timer(0.1, lambda: holder.execute("COMMIT"))
    released.start()
    assert store.admit("r1", [charge(1, 10)], NOW, 60).admitted  # waited 0.1 s, then went on
    released.join()
    holder.execute("BEGIN IMMEDIATE")
    t0 = time.monotonic()
    with pytest.raises(SQLiteStoreError) as info:
        store.admit("r2", [charge(1, 10)], NOW, 60)
    assert 0.25 < time.monotonic() - t0 < 3
    message = str(info.value)
    assert str(db) in message and "locked" in message and "timeout" in message
    holder.execute("ROLLBACK")
    holder.close()
    assert store.admit("r3", [charge(1, 10)], NOW, 60).admitted
    assert store.standing(KEY, NOW).reserved_nano == 2
    store.close()


# -- bad files -------------------------------------------------------------------------------------


def test_a_garbage_file_is_a_clear_error_and_a_replaced_file_works(db: Path) -> None:
    db.write_bytes(b"definitely not SQLite\n" * 500)
    store = SQLiteStore(db)
    with pytest.raises(SQLiteStoreError) as info:
        store.admit("r1", [charge(1, 10)], NOW, 60)
    message = str(info.value)
    assert str(db) in message and "not a database" in message and "Move the file aside" in message
    assert isinstance(info.value, sqlite3.DatabaseError)
    with pytest.raises(SQLiteStoreError, match="not a database"):
        list(store.calls(CallQuery()))
    db.unlink()  # the operator moves it aside: the same store object goes on with a new file
    assert store.admit("r1", [charge(1, 10)], NOW, 60).admitted
    store.close()


def test_damaged_pages_are_a_clear_error(db: Path) -> None:
    store = SQLiteStore(db)
    for i in range(300):
        store.settle(None, [KEY], 1, record(i), NOW)
    store.close()  # the last connection checkpoints the WAL into the file
    data = bytearray(db.read_bytes())
    assert len(data) > 4 * 4096
    data[2 * 4096 :] = b"\xa5" * (len(data) - 2 * 4096)  # keep the header, trash the pages
    db.write_bytes(bytes(data))
    store = SQLiteStore(db)
    with pytest.raises(SQLiteStoreError) as info:
        list(store.calls(CallQuery()))
    message = str(info.value)
    assert str(db) in message and ("malformed" in message or "not a database" in message)
    assert "restore it from a backup" in message
    store.close()


def test_a_database_of_another_application_is_refused(db: Path) -> None:
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA application_id = 42")
    conn.execute("CREATE TABLE theirs (x)")
    conn.commit()
    conn.close()
    with pytest.raises(SQLiteStoreError, match="another application"):
        SQLiteStore(db).standing(KEY, NOW)
    conn = sqlite3.connect(db)
    assert [r[0] for r in conn.execute("SELECT name FROM sqlite_master")] == ["theirs"]  # untouched
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
    conn.close()


def test_a_newer_schema_is_refused(db: Path) -> None:
    conn = sqlite3.connect(db)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(SQLiteStoreError, match="newer tokenguard"):
        SQLiteStore(db).standing(KEY, NOW)


def test_a_path_under_a_regular_file_cannot_be_opened(tmp_path: Path) -> None:
    (tmp_path / "plain").write_text("a file, not a directory")
    path = tmp_path / "plain" / "tokenguard.db"  # fails for root too
    store = open_store(uri_for(path))
    with pytest.raises(SQLiteStoreError) as info:
        store.settle(None, [KEY], 1, record(0), NOW)
    message = str(info.value)
    assert str(path) in message and "is not a directory" in message and "choose another path" in message


def test_a_path_in_proc_cannot_be_opened() -> None:
    if not Path("/proc/self").is_dir():
        pytest.skip("no /proc here")
    store = open_store("sqlite:////proc/tokenguard-test.db")  # not writable, even for root
    with pytest.raises(SQLiteStoreError) as info:
        store.claim_event(KEY, "alert")
    assert "/proc/tokenguard-test.db" in str(info.value) and "cannot be opened" in str(info.value)


def test_a_read_only_file_is_a_clear_error(db: Path) -> None:
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        pytest.skip("root writes read-only files")
    first = SQLiteStore(db)
    first.claim_event(KEY, "alert")
    first.close()
    for p in db.parent.iterdir():
        p.chmod(0o444)
    db.parent.chmod(0o555)
    try:
        with pytest.raises(SQLiteStoreError) as info:
            SQLiteStore(db).claim_event(KEY, "review")
        assert str(db) in str(info.value)
    finally:
        db.parent.chmod(0o755)
        for p in db.parent.iterdir():
            p.chmod(0o644)


# -- through the Guard -----------------------------------------------------------------------------

MSG = [{"role": "user", "content": "hi"}]


def guarded_call(guard: tg.Guard, fake: FakeLLMServer) -> object:
    client = guard.wrap(openai.OpenAI(base_url=fake.openai_base_url, api_key="k", max_retries=0))
    return client.chat.completions.create(model="gpt-4o-mini", messages=MSG, max_tokens=10)


def test_guard_fails_closed_on_a_corrupt_file(fake_llm: FakeLLMServer, db: Path, tmp_path: Path) -> None:
    db.write_bytes(b"\x00garbage" * 1000)
    guard = tg.Guard(
        store=uri_for(db),
        on_store_error="closed",
        budgets=[tg.Budget("b", limit_usd=1)],
        telemetry=False,
        spool_dir=tmp_path / "spool",
    )
    with pytest.raises(tg.StoreUnavailable):
        guarded_call(guard, fake_llm)
    assert fake_llm.requests == []
    guard.close()


def test_guard_fails_open_on_a_corrupt_file(fake_llm: FakeLLMServer, db: Path, tmp_path: Path) -> None:
    db.write_bytes(b"\x00garbage" * 1000)
    guard = tg.Guard(
        store=uri_for(db),
        on_store_error="open",
        budgets=[tg.Budget("b", limit_usd=1)],
        telemetry=False,
        spool_dir=tmp_path / "spool",
    )
    guarded_call(guard, fake_llm)
    assert len(fake_llm.requests) == 1
    guard.close()


def test_guards_share_budgets_and_ledger_through_one_file(fake_llm: FakeLLMServer, db: Path, tmp_path: Path) -> None:
    from tokenguard.testing import FakeUsage

    fake_llm.set_usage(FakeUsage(input_tokens=1_000_000, output_tokens=0))  # $0.15 a call
    budgets = [tg.Budget("support", limit_usd="1.00")]
    a, b = (tg.Guard(store=uri_for(db), budgets=budgets, telemetry=False, spool_dir=tmp_path / "s") for _ in range(2))
    sent = 0
    with pytest.raises(tg.BudgetExceeded):
        for i in range(20):
            guarded_call(a if i % 2 else b, fake_llm)
            sent += 1
    assert sent == 8 and len(fake_llm.requests) == 8  # 8 x 0.15 = 1.2, the cap, across both guards
    assert [s.spent_usd for s in a.budget_status()] == [Decimal("1.2")] == [s.spent_usd for s in b.budget_status()]
    assert len(list(a.records())) == 9 == len(list(b.records()))  # 8 calls and the blocked one
    a.close()
    b.close()
