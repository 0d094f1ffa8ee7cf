"""One conformance suite that every store backend passes (see conftest.BACKENDS)."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone
from decimal import Decimal

from tokenguard.budgets import Grant, from_nano, to_nano
from tokenguard.records import CallRecord, TaskRecord
from tokenguard.stores.base import CallQuery, Charge, Review, Store, TaskQuery

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
