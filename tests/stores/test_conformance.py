"""One conformance suite that every store backend passes (see conftest.BACKENDS)."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone
from decimal import Decimal

from tokenguard.budgets import Grant, from_nano, to_nano
from tokenguard.records import CallRecord, TaskRecord
from tokenguard.stores.base import CallQuery, CallTotals, Charge, Review, Store, TaskQuery, TaskTotals

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=timezone.utc)
KEY = ("team-b", "20261101T000000Z")


def record(i: int = 0, *, cost: str | None = "0.000123", task_id: str | None = None, **kw: object) -> CallRecord:
    values: dict[str, object] = {
        "id": f"rec-{i}",
        "time": NOW + timedelta(seconds=i),
        "latency_s": 0.25,
        "provider": "openai",
        "operation": "chat",
        "api": "chat.completions",
        "request_model": "gpt-4o-mini",
        "response_model": "gpt-4o-mini-2024-07-18",
        "input_tokens": 100,
        "output_tokens": 20,
        "cost_usd": None if cost is None else Decimal(cost),
        "estimated_cost_usd": Decimal("0.01"),
        "tags": {"team": "b", "user": f"u{i % 2}"},
        "task_id": task_id,
        "task_name": "t" if task_id else None,
        "decisions": ("budget:team-b:ok",),
    }
    values.update(kw)
    return CallRecord(**values)  # type: ignore[arg-type]


def charge(estimate_usd: str, cap_usd: str = "1", key: tuple[str, str] = KEY, block: str | None = None) -> Charge:
    return Charge(
        budget=key[0],
        window=key[1],
        cap_nano=to_nano(Decimal(cap_usd)),
        estimate_nano=to_nano(Decimal(estimate_usd), up=True),
        block_nano=None if block is None else to_nano(Decimal(block)),
        window_end=NOW + timedelta(days=3),
    )


def test_ledger_round_trip_is_exact(store: Store) -> None:
    originals = [record(i, cost="0.000000123456789012") for i in range(5)] + [record(9, cost=None, status="error")]
    for r in originals:
        store.settle(None, (), 0, r, NOW)
    back = list(store.calls(CallQuery()))
    assert back == originals
    assert sum((r.cost_usd or Decimal(0)) for r in back) == Decimal("0.00000061728394506")


def test_ledger_filters(store: Store) -> None:
    for i in range(6):
        store.settle(None, (), 0, record(i, status="ok" if i % 3 else "cancelled"), NOW)
    assert [r.id for r in store.calls(CallQuery(since=NOW + timedelta(seconds=2)))] == [
        f"rec-{i}" for i in (2, 3, 4, 5)
    ]
    assert [r.id for r in store.calls(CallQuery(until=NOW + timedelta(seconds=2)))] == ["rec-0", "rec-1"]
    assert len(list(store.calls(CallQuery(tags={"user": "u1"})))) == 3
    assert len(list(store.calls(CallQuery(status="cancelled")))) == 2
    assert len(list(store.calls(CallQuery(model="gpt-4o-mini-2024-07-18")))) == 6
    assert list(store.calls(CallQuery(model="gpt-4o"))) == []


def test_tasks_reviews_and_totals(store: Store) -> None:
    store.review_task("task-1", Review(accepted=True, edit_distance=0.5, reviewer="ann"))  # before it ends
    store.settle(None, (), 0, record(0, task_id="task-1", cost="0.25"), NOW)
    store.append_task(
        TaskRecord(id="task-1", name="t", tags={"team": "b"}, outcome="succeeded", started_at=NOW, duration_s=1.5)
    )
    store.settle(None, (), 0, record(1, task_id="task-1", cost="0.5"), NOW)  # a stream settling after the task
    assert store.has_task("task-1") and not store.has_task("task-2")
    [t] = store.tasks(TaskQuery(name="t", tags={"team": "b"}, outcome="succeeded"))
    assert (t.calls, t.cost_usd, t.accepted, t.edit_distance, t.reviewer) == (2, Decimal("0.75"), True, 0.5, "ann")
    assert list(store.tasks(TaskQuery(outcome="failed"))) == []


def test_admit_reserve_settle(store: Store) -> None:
    a = store.admit("r1", [charge("0.4")], NOW, 60)
    assert a.admitted and a.standings[0].spent_nano == 0
    assert store.standing(KEY, NOW).reserved_nano == to_nano(Decimal("0.4"))
    b = store.admit("r2", [charge("0.4")], NOW, 60)
    assert b.admitted and b.standings[0].reserved_nano == to_nano(Decimal("0.4"))
    c = store.admit("r3", [charge("0.4")], NOW, 60)  # 0.8 reserved + 0.4 > 1
    assert not c.admitted and c.refused_index == 0 and c.refused_reason == "cap"
    assert store.standing(KEY, NOW).refused
    after = store.settle("r1", [KEY], to_nano(Decimal("0.1")), record(0, cost="0.1"), NOW)
    assert after[0].spent_nano == to_nano(Decimal("0.1"))
    assert after[0].reserved_nano == to_nano(Decimal("0.4"))  # r2 still in flight
    store.settle("r2", [KEY], to_nano(Decimal("0.2")), record(1, cost="0.2"), NOW)
    st = store.standing(KEY, NOW)
    assert (from_nano(st.spent_nano), st.reserved_nano) == (Decimal("0.3"), 0)


def test_admission_is_all_or_nothing(store: Store) -> None:
    other = ("global", "total")
    assert store.admit("r0", [charge("0.9", key=other, cap_usd="1")], NOW, 60).admitted
    refused = store.admit("r1", [charge("0.5"), charge("0.5", key=other)], NOW, 60)
    assert not refused.admitted and refused.refused_index == 1
    assert store.standing(KEY, NOW).reserved_nano == 0  # nothing reserved in the budget that had room


def test_review_block(store: Store) -> None:
    store.settle(None, [KEY], to_nano(Decimal("0.5")), record(0, cost="0.5"), NOW)
    a = store.admit("r1", [charge("0.01", block="0.5")], NOW, 60)
    assert not a.admitted and a.refused_reason == "review"


def test_reservations_expire_and_refresh(store: Store) -> None:
    assert store.admit("r1", [charge("0.6")], NOW, ttl_s=10).admitted
    assert store.admit("r2", [charge("0.3")], NOW, ttl_s=10).admitted
    store.refresh("r2", [KEY], NOW + timedelta(seconds=5), ttl_s=30)
    later = NOW + timedelta(seconds=20)
    st = store.standing(KEY, later)
    assert st.reserved_nano == to_nano(Decimal("0.3"))  # r1 expired, r2 kept alive
    assert store.admit("r3", [charge("0.6")], later, ttl_s=10).admitted
    # settling an expired reservation still commits the cost
    store.settle("r1", [KEY], to_nano(Decimal("0.05")), record(0, cost="0.05"), NOW)
    assert store.standing(KEY, later).spent_nano == to_nano(Decimal("0.05"))


def test_grants(store: Store) -> None:
    assert not store.admit("r1", [charge("1.5")], NOW, 60).admitted
    grant = Grant(
        id="g1",
        budget=KEY[0],
        extra_usd=Decimal("0.75"),
        approved_by="cfo",
        reason="launch",
        created_at=NOW - timedelta(hours=1),
        expires_at=NOW + timedelta(hours=1),
    )
    store.add_grant(grant)
    st = store.standing(KEY, NOW)
    assert st.grant_nano == to_nano(Decimal("0.75")) and not st.refused
    assert store.admit("r2", [charge("1.5")], NOW, 60).admitted
    assert store.standing(KEY, NOW + timedelta(hours=2)).grant_nano == 0  # expired
    revoked = store.revoke_grant("g1")
    assert revoked is not None and revoked.revoked
    assert store.revoke_grant("nope") is None
    assert store.standing(KEY, NOW).grant_nano == 0
    assert [g.id for g in store.grants()] == ["g1"] and store.grants("other") == []
    assert store.grants(KEY[0])[0] == revoked


def test_events_fire_once(store_factory) -> None:
    a, b = store_factory(), store_factory()
    assert a.claim_event(KEY, "alert") is True
    assert b.claim_event(KEY, "alert") is False
    assert b.claim_event(KEY, "review") is True
    assert a.claim_event(("team-b", "20261201T000000Z"), "alert") is True  # a new period


def test_concurrent_admission_never_exceeds_the_cap(store_factory) -> None:
    stores = [store_factory() for _ in range(4)]
    admitted: list[int] = []
    lock = threading.Lock()

    def worker(n: int) -> None:
        s = stores[n % len(stores)]
        for i in range(25):
            rid = f"w{n}-{i}"
            if s.admit(rid, [charge("0.03")], NOW, 60).admitted:
                s.settle(rid, [KEY], to_nano(Decimal("0.03")), record(1000 * n + i, cost="0.03"), NOW)
                with lock:
                    admitted.append(1)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    st = stores[0].standing(KEY, NOW)
    assert st.spent_nano <= to_nano(Decimal(1))
    assert len(admitted) == 33  # 33 * 0.03 = 0.99: the cap is used, not wasted
    assert st.reserved_nano == 0
    for s in stores:
        s.close()


# -- aggregation (reports) -------------------------------------------------------------------------


def settle_all(store: Store, records: list[CallRecord]) -> None:
    for r in records:
        store.settle(None, (), 0, r, NOW)


def keys_and_calls(totals: list[CallTotals]) -> list[tuple[tuple[str | None, ...], int]]:
    return [(t.key, t.calls) for t in totals]


def test_call_totals_by_tags_count_everything_and_put_unattributed_last(store: Store) -> None:
    settle_all(
        store,
        [
            record(0, cost="0.1", tags={"team": "b", "user": "u1"}),
            record(
                1,
                cost="0.000000000000000001",
                tags={"team": "a"},
                input_tokens=7,
                output_tokens=3,
                cache_read_tokens=2,
                cache_write_tokens=1,
                reasoning_tokens=1,
            ),
            record(2, cost=None, tags={"user": "u1"}),  # unpriced and unattributed
            record(3, cost="0", status="blocked", input_tokens=0, output_tokens=0, tags={}),
            record(4, cost="0.25", status="error", error_type="RateLimitError", tags={"team": "b"}),
        ],
    )
    assert store.call_totals(CallQuery(), ["team"]) == [
        CallTotals(
            ("a",),
            calls=1,
            input_tokens=7,
            output_tokens=3,
            cache_read_tokens=2,
            cache_write_tokens=1,
            reasoning_tokens=1,
            cost_usd=Decimal("1E-18"),
        ),
        CallTotals(("b",), calls=2, input_tokens=200, output_tokens=40, cost_usd=Decimal("0.35"), error_calls=1),
        CallTotals(
            (None,), calls=2, input_tokens=100, output_tokens=20, cost_usd=Decimal(0), unpriced_calls=1, blocked_calls=1
        ),
    ]
    assert keys_and_calls(store.call_totals(CallQuery(), ["team", "user"])) == [
        (("a", None), 1),
        (("b", "u1"), 1),
        (("b", None), 1),
        ((None, "u1"), 1),
        ((None, None), 1),
    ]
    [total] = store.call_totals(CallQuery(), [])
    assert (total.key, total.calls, total.unpriced_calls, total.error_calls, total.blocked_calls) == ((), 5, 1, 1, 1)
    assert str(total.cost_usd) == "0.350000000000000001"  # exact: no float, no rounding to nano-dollars


def test_call_totals_of_no_calls_are_no_groups(store: Store) -> None:
    assert store.call_totals(CallQuery(), []) == []
    assert store.call_totals(CallQuery(), ["team", "day"]) == []
    settle_all(store, [record(0)])
    assert store.call_totals(CallQuery(status="error"), []) == []


def test_call_totals_by_fields_and_a_tag_named_like_a_field(store: Store) -> None:
    settle_all(
        store,
        [
            record(0, request_model="gpt-4o", response_model="gpt-4o-2024-08-06", tags={"model": "custom"}),
            record(1, request_model="gpt-4o", response_model=None, status="blocked", cost="0"),
            record(
                2,
                provider="anthropic",
                api="messages",
                request_model="claude-haiku-4-5",
                response_model="claude-haiku-4-5",
                task_id="task-1",
            ),
            record(
                3,
                operation="embeddings",
                api="embeddings",
                request_model="text-embedding-3-small",
                response_model="text-embedding-3-small",
                status="cancelled",
            ),
        ],
    )
    by = store.call_totals
    assert keys_and_calls(by(CallQuery(), ["model"])) == [
        (("claude-haiku-4-5",), 1),
        (("gpt-4o",), 1),  # no response model: the requested one
        (("gpt-4o-2024-08-06",), 1),
        (("text-embedding-3-small",), 1),
    ]
    assert keys_and_calls(by(CallQuery(), ["tag:model"])) == [(("custom",), 1), ((None,), 3)]
    assert keys_and_calls(by(CallQuery(), ["request_model"])) == [
        (("claude-haiku-4-5",), 1),
        (("gpt-4o",), 2),
        (("text-embedding-3-small",), 1),
    ]
    assert keys_and_calls(by(CallQuery(), ["provider", "api"])) == [
        (("anthropic", "messages"), 1),
        (("openai", "chat.completions"), 2),
        (("openai", "embeddings"), 1),
    ]
    assert keys_and_calls(by(CallQuery(), ["operation"])) == [(("chat",), 3), (("embeddings",), 1)]
    assert keys_and_calls(by(CallQuery(), ["status"])) == [(("blocked",), 1), (("cancelled",), 1), (("ok",), 2)]
    assert keys_and_calls(by(CallQuery(), ["task"])) == [(("t",), 1), ((None,), 3)]


def test_call_totals_by_day_week_and_month_in_utc(store: Store) -> None:
    times = [
        datetime(2026, 11, 29, 23, 59, 59, 999999, tzinfo=timezone.utc),  # a Sunday, the last µs of it
        datetime(2026, 11, 30, 0, 0, tzinfo=timezone.utc),  # the Monday after
        datetime(2026, 12, 1, 0, 0, 0, 1, tzinfo=timezone.utc),  # a new month, the same week
        datetime(2026, 11, 30, 23, 30, tzinfo=timezone.utc),
        datetime(2027, 1, 3, 12, 0, tzinfo=timezone.utc),  # a Sunday: its week began in December
        datetime(2028, 2, 29, 18, 0, tzinfo=timezone.utc),  # a leap day, a Tuesday
        datetime(1969, 12, 31, 23, 59, 59, 500000, tzinfo=timezone.utc),  # before the epoch: a Wednesday
    ]
    settle_all(store, [record(i, time=t, tags={"team": "ab"[i % 2]}) for i, t in enumerate(times)])
    assert keys_and_calls(store.call_totals(CallQuery(), ["day"])) == [
        (("1969-12-31",), 1),
        (("2026-11-29",), 1),
        (("2026-11-30",), 2),
        (("2026-12-01",), 1),
        (("2027-01-03",), 1),
        (("2028-02-29",), 1),
    ]
    assert keys_and_calls(store.call_totals(CallQuery(), ["week"])) == [
        (("1969-12-29",), 1),
        (("2026-11-23",), 1),
        (("2026-11-30",), 3),
        (("2026-12-28",), 1),
        (("2028-02-28",), 1),
    ]
    assert keys_and_calls(store.call_totals(CallQuery(), ["month"])) == [
        (("1969-12",), 1),
        (("2026-11",), 3),
        (("2026-12",), 1),
        (("2027-01",), 1),
        (("2028-02",), 1),
    ]
    assert keys_and_calls(store.call_totals(CallQuery(), ["month", "team"])) == [
        (("1969-12", "a"), 1),
        (("2026-11", "a"), 1),
        (("2026-11", "b"), 2),
        (("2026-12", "a"), 1),
        (("2027-01", "a"), 1),
        (("2028-02", "b"), 1),
    ]


def test_call_totals_filter_like_records(store: Store) -> None:
    settle_all(
        store,
        [
            record(0, tags={"team": "a", "user": "u1"}, cost="0.1"),
            record(1, tags={"team": "a", "user": "u2"}, cost="0.2", status="error"),
            record(2, tags={"team": "b", "user": "u1"}, cost="0.4", request_model="gpt-4o", response_model=None),
            record(3, tags={"team": "b", "user": "u1"}, cost="0.8", task_id="task-1"),
            record(4, tags={"user": "u1"}, cost="1.6"),
        ],
    )

    def cost(query: CallQuery) -> list[tuple[tuple[str | None, ...], Decimal]]:
        return [(t.key, t.cost_usd) for t in store.call_totals(query, ["team"])]

    at = NOW + timedelta(seconds=1)
    assert cost(CallQuery(since=at)) == [(("a",), Decimal("0.2")), (("b",), Decimal("1.2")), ((None,), Decimal("1.6"))]
    assert cost(CallQuery(until=at)) == [(("a",), Decimal("0.1"))]
    assert cost(CallQuery(since=at, until=at + timedelta(seconds=2))) == [
        (("a",), Decimal("0.2")),
        (("b",), Decimal("0.4")),
    ]
    assert cost(CallQuery(tags={"user": "u1"})) == [
        (("a",), Decimal("0.1")),
        (("b",), Decimal("1.2")),
        ((None,), Decimal("1.6")),
    ]
    assert cost(CallQuery(tags={"user": "u1", "team": "b"})) == [(("b",), Decimal("1.2"))]
    assert cost(CallQuery(tags={"user": "nobody"})) == []
    assert cost(CallQuery(model="gpt-4o")) == [(("b",), Decimal("0.4"))]
    assert len(cost(CallQuery(model="gpt-4o-mini-2024-07-18"))) == 3  # the responding model matches too
    assert cost(CallQuery(status="error")) == [(("a",), Decimal("0.2"))]
    assert cost(CallQuery(task_id="task-1")) == [(("b",), Decimal("0.8"))]


def task(task_id: str, name: str, started_at: datetime, **kw: object) -> TaskRecord:
    return TaskRecord(id=task_id, name=name, started_at=started_at, duration_s=1.0, **kw)  # type: ignore[arg-type]


def test_task_totals_outcomes_reviews_calls_and_cost(store: Store) -> None:
    t1, t2, t3, t4 = NOW, NOW + timedelta(hours=1), NOW + timedelta(hours=2), NOW + timedelta(days=3)
    store.append_task(task("task-1", "summarize", t1, tags={"team": "a", "model": "m1"}, outcome="succeeded"))
    store.append_task(
        task("task-2", "summarize", t2, tags={"team": "b"}, outcome="failed", accepted=False, edit_distance=0.5)
    )
    store.append_task(task("task-3", "classify", t3, outcome="unknown"))  # no calls, no team
    store.append_task(task("task-4", "classify", t4, tags={"team": "a"}, outcome="succeeded"))
    store.review_task("task-1", Review(accepted=True, edit_distance=0.25, reviewer="ann"))
    store.review_task("task-4", Review(accepted=False, edit_distance=None, reviewer="bob"))

    def call(i: int, task_id: str, at: datetime, model: str, cost: str | None) -> CallRecord:
        return record(i, task_id=task_id, time=at, request_model=model, response_model=model, cost=cost)

    settle_all(
        store,
        [
            call(0, "task-1", t1, "gpt-4o", "0.3"),
            call(1, "task-1", t1 + timedelta(seconds=1), "gpt-4o-mini", "0.1"),
            call(2, "task-1", t1 + timedelta(seconds=2), "gpt-4o-mini", "0.15"),
            # task-2: gpt-4o costs nothing, gpt-4o-mini and claude tie: the first to cost wins
            call(3, "task-2", t2, "gpt-4o", "0"),
            call(4, "task-2", t2 + timedelta(seconds=1), "gpt-4o-mini", "0.2"),
            call(5, "task-2", t2 + timedelta(seconds=2), "claude-haiku-4-5", "0.05"),
            call(6, "task-2", t2 + timedelta(seconds=3), "claude-haiku-4-5", "0.15"),
            call(7, "task-2", t2 + timedelta(seconds=4), "llama-local", None),  # unpriced: a call, no cost
            call(8, "task-4", t4, "gpt-4o", "0"),  # nothing priced above zero: no model
        ],
    )
    tokens = {"input_tokens": 100, "output_tokens": 20}

    def per_call(n: int) -> dict[str, int]:
        return {k: v * n for k, v in tokens.items()}

    assert store.task_totals(TaskQuery(), ["task"]) == [
        TaskTotals(("classify",), tasks=2, succeeded=1, reviewed=1, calls=1, **per_call(1), cost_usd=Decimal(0)),
        TaskTotals(
            ("summarize",),
            tasks=2,
            succeeded=1,
            failed=1,
            reviewed=2,
            accepted=1,
            edit_distance_sum=0.75,
            edit_distance_count=2,
            calls=8,
            **per_call(8),
            cost_usd=Decimal("0.95"),
        ),
    ]

    def summary(query: TaskQuery, by: list[str]) -> list[tuple[tuple[str | None, ...], int, int, Decimal]]:
        return [(t.key, t.tasks, t.calls, t.cost_usd) for t in store.task_totals(query, by)]

    assert summary(TaskQuery(), ["model"]) == [
        (("gpt-4o",), 1, 3, Decimal("0.55")),
        (("gpt-4o-mini",), 1, 5, Decimal("0.4")),
        ((None,), 2, 1, Decimal(0)),
    ]
    assert summary(TaskQuery(), ["team", "outcome"]) == [
        (("a", "succeeded"), 2, 4, Decimal("0.55")),
        (("b", "failed"), 1, 5, Decimal("0.4")),
        ((None, "unknown"), 1, 0, Decimal(0)),
    ]
    assert summary(TaskQuery(), ["tag:model"]) == [(("m1",), 1, 3, Decimal("0.55")), ((None,), 3, 6, Decimal("0.4"))]
    assert summary(TaskQuery(), ["day", "week", "month"]) == [
        (("2026-11-28", "2026-11-23", "2026-11"), 3, 8, Decimal("0.95")),
        (("2026-12-01", "2026-11-30", "2026-12"), 1, 1, Decimal(0)),
    ]
    assert summary(TaskQuery(since=t2, until=t4), []) == [((), 2, 5, Decimal("0.4"))]
    assert summary(TaskQuery(name="classify"), ["task"]) == [(("classify",), 2, 1, Decimal(0))]
    assert summary(TaskQuery(tags={"team": "a"}), ["model"]) == [
        (("gpt-4o",), 1, 3, Decimal("0.55")),
        ((None,), 1, 1, Decimal(0)),
    ]
    assert summary(TaskQuery(outcome="failed"), ["model"]) == [(("gpt-4o-mini",), 1, 5, Decimal("0.4"))]
    assert store.task_totals(TaskQuery(outcome="cancelled"), ["task"]) == []
    assert store.task_totals(TaskQuery(), []) == [
        TaskTotals(
            (),
            tasks=4,
            succeeded=2,
            failed=1,
            reviewed=3,
            accepted=1,
            edit_distance_sum=0.75,
            edit_distance_count=2,
            calls=9,
            **per_call(9),
            cost_usd=Decimal("0.95"),
        )
    ]
