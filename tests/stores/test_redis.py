"""The Redis store beyond the conformance suite, against real `redis-server` processes: URI
validation, one round trip per admission, key namespacing and expiry, the ledger stream's retention,
exact task costs, wrong credentials, a server restart mid-run, a hard cap hammered by several
processes (also across a period rollover), and the Guard failing closed or open."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from urllib.parse import quote

import openai
import pytest

import tokenguard as tg
from support import RedisServer, free_port
from tokenguard.budgets import Budget, Grant, to_nano
from tokenguard.errors import ConfigError
from tokenguard.records import CallRecord, TaskRecord
from tokenguard.stores import open_store
from tokenguard.stores.base import CallQuery, Charge, Review, TaskQuery
from tokenguard.stores.memory import MemoryStore
from tokenguard.testing import FakeLLMServer, FakeUsage

redis = pytest.importorskip("redis")
from tokenguard.stores.redis import RedisStore, RedisStoreError  # noqa: E402

NOW = datetime.now(timezone.utc).replace(microsecond=0)
DAY = Budget("team-b", limit_usd="1", period="day", alert_at=1, review_at=1, hard_at=1)
PASSWORD = "s3cret-P@ss/word"
PASSWORD_Q = quote(PASSWORD, safe="")  # as it is written in a URI


class Server(RedisServer):
    def admin(self) -> redis.Redis:
        return redis.Redis(port=self.port, password=self.password, decode_responses=True)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    s = Server(tmp_path)
    yield s
    s.stop()


@pytest.fixture
def shared(redis_server) -> Iterator[tuple[str, redis.Redis]]:
    """The session's server (conftest) with a fresh prefix: (URI, admin client)."""
    prefix = f"t-{uuid.uuid4().hex[:8]}"
    admin = redis.Redis(port=redis_server.port, decode_responses=True)
    yield redis_server.uri(prefix=prefix), admin
    for key in admin.scan_iter(match=f"{{{prefix}}}:*"):
        admin.delete(key)
    admin.close()


def record(i: int = 0, *, cost: str | None = "0.01", task_id: str | None = None, **kw: object) -> CallRecord:
    values: dict[str, object] = {
        "id": f"rec-{i}",
        "time": NOW + timedelta(seconds=i),
        "latency_s": 0.5,
        "provider": "openai",
        "operation": "chat",
        "api": "chat.completions",
        "request_model": "gpt-4o-mini",
        "response_model": "gpt-4o-mini-2024-07-18",
        "response_id": f"chatcmpl-{uuid.uuid4().hex}",
        "input_tokens": 1200,
        "output_tokens": 350,
        "cost_usd": None if cost is None else Decimal(cost),
        "estimated_cost_usd": Decimal("0.0123"),
        "tags": {"team": "support", "app": "helpdesk", "user": f"user-{i % 7}"},
        "task_id": task_id,
        "task_name": "triage" if task_id else None,
        "decisions": ("budget:team-b:ok",),
    }
    values.update(kw)
    return CallRecord(**values)  # type: ignore[arg-type]


def charge(budget: Budget, now: datetime, estimate_usd: str = "0.01") -> Charge:
    _, end = budget.window(now)
    return Charge(
        budget=budget.name,
        window=budget.window_id(now),
        cap_nano=to_nano(budget.cap_usd),
        estimate_nano=to_nano(Decimal(estimate_usd), up=True),
        window_end=end,
    )


# -- URI -------------------------------------------------------------------------------------------


def test_uri_is_validated_without_connecting() -> None:
    port = free_port()  # nothing listens there
    store = open_store(f"redis://127.0.0.1:{port}/3?prefix=app.one&retention=500&socket_timeout=0.5")
    assert isinstance(store, RedisStore)
    assert (store.prefix, store.retention) == ("app.one", 500)
    assert RedisStore.from_uri("redis://localhost").prefix == "tokenguard"
    assert RedisStore.from_uri("redis://localhost").retention == 1_000_000
    tls = open_store("rediss://user:pw@cache.example:6380/0?ssl_cert_reqs=none&client_name=api")
    assert isinstance(tls, RedisStore) and "pw" not in repr(tls) and "***" in repr(tls)
    store.close()
    tls.close()


@pytest.mark.parametrize(
    ("uri", "says"),
    [
        ("redis://localhost:99999/0", "port"),
        ("redis://localhost:x/0", "port"),
        ("redis://localhost/zero", "database must be a number"),
        ("redis://localhost/0?pool=3", "unknown parameter 'pool'"),
        ("redis://localhost/0?prefix=a&prefix=b", "given twice"),
        ("redis://localhost/0?prefix=", "prefix"),
        ("redis://localhost/0?prefix=a{b}", "prefix"),
        ("redis://localhost/0?retention=-1", "retention"),
        ("redis://localhost/0?retention=lots", "retention"),
        ("redis://localhost/0?socket_timeout=0", "socket_timeout"),
        ("redis://localhost/0?max_connections=0", "max_connections"),
        ("redis://localhost/0?ssl_cert_reqs=none", "rediss://"),
        ("rediss://localhost/0?ssl_cert_reqs=maybe", "ssl_cert_reqs"),
        ("redis://localhost/0#frag", "fragment"),
        ("redis://localhost/0?prefix", "name=value"),
    ],
)
def test_bad_uris_are_config_errors(uri: str, says: str) -> None:
    with pytest.raises(ConfigError) as info:
        open_store(uri)
    assert says in str(info.value)
    assert uri.split("?", maxsplit=1)[0].split("#", maxsplit=1)[0] in str(info.value)  # names the URI


def test_config_errors_never_show_the_password() -> None:
    with pytest.raises(ConfigError) as info:
        open_store("redis://admin:hunter2-secret@localhost/0?bogus=1")
    message = str(info.value)
    assert "hunter2" not in message and "admin:***@localhost" in message


# -- one round trip, namespacing, expiry -----------------------------------------------------------


def store_commands(admin: redis.Redis, name: str) -> list[str]:
    return [
        e["command"].decode().split()[0] for e in reversed(admin.slowlog_get(1000)) if e["client_name"] == name.encode()
    ]


def test_one_round_trip_per_admission_and_settle(server: Server) -> None:
    admin = server.admin()
    store = open_store(server.uri(client_name="tg-under-test"))
    grant = Grant("g1", DAY.name, Decimal("0.5"), "cfo", "launch", NOW - timedelta(hours=1), NOW + timedelta(hours=1))
    store.add_grant(grant)  # the admission script also sums grants
    store.admit("warm", [charge(DAY, NOW)], NOW, 60)  # connects and loads the scripts
    store.settle("warm", [(DAY.name, DAY.window_id(NOW))], 0, record(), NOW)
    store.standing((DAY.name, DAY.window_id(NOW)), NOW)
    admin.config_set("slowlog-log-slower-than", 0)
    admin.config_set("slowlog-max-len", 1000)
    admin.slowlog_reset()

    assert store.admit("r1", [charge(DAY, NOW), charge(Budget("global", limit_usd=5, period="total"), NOW)], NOW, 60)
    assert store_commands(admin, "tg-under-test") == ["EVALSHA"]
    admin.slowlog_reset()
    store.settle("r1", [(DAY.name, DAY.window_id(NOW)), ("global", "total")], 10, record(task_id="t"), NOW)
    assert store_commands(admin, "tg-under-test") == ["EVALSHA"]
    admin.slowlog_reset()
    store.standing((DAY.name, DAY.window_id(NOW)), NOW)
    assert store_commands(admin, "tg-under-test") == ["EVALSHA"]
    store.close()
    admin.close()


def test_keys_are_namespaced_and_expire(server: Server) -> None:
    admin = server.admin()
    store = open_store(server.uri(prefix="acme"))
    day, total = (DAY.name, DAY.window_id(NOW)), ("global", "total")
    glob = Budget("global", limit_usd=5, period="total")
    assert store.admit("r1", [charge(DAY, NOW), charge(glob, NOW)], NOW, 60).admitted
    store.settle("r1", [day, total], to_nano(Decimal("0.01")), record(task_id="task-1"), NOW)
    assert store.admit("r2", [charge(DAY, NOW)], NOW, 60).admitted  # still in flight
    store.claim_event(day, "alert")
    later = (DAY.name, "20300101T000000Z")
    store.claim_event(later, "alert")  # a window no admission has seen yet
    grant = Grant("g1", DAY.name, Decimal("0.5"), "cfo", "launch", NOW, NOW + timedelta(days=1))
    store.add_grant(grant)
    store.review_task("task-1", Review(accepted=True, edit_distance=None, reviewer="ann"))

    keys = set(admin.keys("*"))
    assert keys and all(k.startswith("{acme}:") for k in keys), keys
    assert keys == {
        "{acme}:w:team-b:" + day[1],
        "{acme}:x:team-b:" + day[1],
        "{acme}:w:global:total",
        "{acme}:x:global:total",
        "{acme}:w:team-b:20300101T000000Z",
        "{acme}:g:team-b",
        "{acme}:grants",
        "{acme}:grants:order",
        "{acme}:ledger",
        "{acme}:t:task-1",
        "{acme}:reviews",
    }
    _, end = DAY.window(NOW)
    assert end is not None
    expected = (end + timedelta(days=7) - datetime.now(timezone.utc)).total_seconds()
    for key in ("{acme}:w:team-b:" + day[1], "{acme}:x:team-b:" + day[1]):
        assert abs(admin.ttl(key) - expected) < 5  # 7 days after the period ends
    assert admin.ttl("{acme}:w:global:total") == admin.ttl("{acme}:x:global:total") == -1  # never resets
    assert abs(admin.ttl("{acme}:w:team-b:20300101T000000Z") - 400 * 86400) < 5  # fallback
    assert abs(admin.ttl("{acme}:t:task-1") - 30 * 86400) < 5  # a running task's totals
    store.append_task(TaskRecord(id="task-1", name="triage", started_at=NOW))
    assert admin.ttl("{acme}:t:task-1") == -1  # kept with the finished task
    assert admin.ttl("{acme}:ledger") == -1  # bounded by retention instead

    # once every reservation is settled the emptied set keeps its expiry
    store.settle("r2", [day], 0, record(1), NOW)
    assert abs(admin.ttl("{acme}:x:team-b:" + day[1]) - expected) < 5
    # the first admission in a window an event created replaces the fallback expiry
    far = datetime(2030, 1, 1, 12, tzinfo=timezone.utc)
    assert store.admit("r-far", [charge(DAY, far)], far, 60).admitted
    far_end = DAY.window(far)[1]
    assert far_end is not None
    far_ttl = (far_end + timedelta(days=7) - datetime.now(timezone.utc)).total_seconds()
    assert abs(admin.ttl("{acme}:w:team-b:20300101T000000Z") - far_ttl) < 5
    assert store.claim_event(later, "alert") is False  # the claim survived

    # a window whose period ended long ago still lives a grace period from now, not zero
    old = datetime(2020, 1, 1, 12, tzinfo=timezone.utc)
    assert store.admit("r-old", [charge(DAY, old)], old, 60).admitted
    assert admin.ttl("{acme}:w:team-b:20200101T000000Z") > 6 * 86400

    other = open_store(server.uri(prefix="other"))
    assert other.standing(day, NOW).spent_nano == 0 and list(other.calls(CallQuery())) == []
    assert store.standing(day, NOW).spent_nano == to_nano(Decimal("0.01"))
    store.close()
    other.close()
    admin.close()


def test_expired_reservations_are_purged_by_admission(shared) -> None:
    uri, admin = shared
    store = open_store(uri)
    prefix = uri.split("prefix=")[1]
    key = (DAY.name, DAY.window_id(NOW))
    for i in range(5):
        assert store.admit(f"dead-{i}", [charge(DAY, NOW, "0.1")], NOW, ttl_s=10).admitted  # never settled
    assert store.standing(key, NOW).reserved_nano == to_nano(Decimal("0.5"))
    later = NOW + timedelta(seconds=11)
    assert store.standing(key, later).reserved_nano == 0
    assert store.admit("live", [charge(DAY, later, "0.9")], later, ttl_s=10).admitted
    fields = admin.hgetall(f"{{{prefix}}}:w:{key[0]}:{key[1]}")
    assert [f for f in fields if f.startswith("r:")] == ["r:live"]
    assert fields["reserved"] == str(to_nano(Decimal("0.9")))
    assert admin.zrangebyscore(f"{{{prefix}}}:x:{key[0]}:{key[1]}", "-inf", "(+inf") == ["live"]
    store.close()


def test_grants_clear_refusals_in_every_window_and_can_move(shared) -> None:
    uri, _ = shared
    store = open_store(uri)
    tomorrow = NOW + timedelta(days=1)
    today_key, tomorrow_key = (DAY.name, DAY.window_id(NOW)), (DAY.name, DAY.window_id(tomorrow))
    assert not store.admit("r1", [charge(DAY, NOW, "2")], NOW, 60).admitted
    assert not store.admit("r2", [charge(DAY, tomorrow, "2")], tomorrow, 60).admitted
    assert store.standing(today_key, NOW).refused and store.standing(tomorrow_key, tomorrow).refused
    grant = Grant("g1", "elsewhere", Decimal("5"), "cfo", "launch", NOW, NOW + timedelta(days=3))
    store.add_grant(grant)
    assert store.standing(today_key, NOW).refused  # another budget's grant changes nothing here
    store.add_grant(Grant("g1", DAY.name, Decimal("5"), "cfo", "moved", NOW, NOW + timedelta(days=3)))
    assert not store.standing(today_key, NOW).refused and not store.standing(tomorrow_key, tomorrow).refused
    assert store.standing(today_key, NOW).grant_nano == to_nano(Decimal(5))
    assert [g.reason for g in store.grants()] == ["moved"] and store.grants("elsewhere") == []
    assert store.admit("r3", [charge(DAY, NOW, "2")], NOW, 60).admitted
    store.close()


def test_amounts_beyond_floats_stay_exact(shared) -> None:
    uri, _ = shared
    store = open_store(uri)
    key = ("big", "total")
    huge = 2**62 + 12345  # ~4.6 billion dollars in nano-dollars: far beyond a double's 53 bits
    [st] = store.settle(None, [key], huge, record(0), NOW)
    assert st.spent_nano == huge
    [st] = store.settle(None, [key], 7, record(1), NOW)
    assert st.spent_nano == huge + 7 and store.standing(key, NOW).spent_nano == huge + 7
    store.close()


# -- ledger and tasks ------------------------------------------------------------------------------


def test_ledger_stream_keeps_about_retention_records(shared) -> None:
    uri, admin = shared
    prefix = uri.split("prefix=")[1]
    store = open_store(f"{uri}&retention=100")
    for i in range(1000):
        store.settle(None, (), 0, record(i), NOW)
    length = admin.xlen(f"{{{prefix}}}:ledger")
    assert 100 <= length < 300  # MAXLEN ~ trims whole stream nodes
    ids = [r.id for r in store.calls(CallQuery())]
    assert len(ids) == length and ids == [f"rec-{i}" for i in range(1000 - length, 1000)]  # the newest, in order
    store.close()


def test_ledger_reads_in_batches_and_unbounded_retention(shared) -> None:
    uri, _ = shared
    store = open_store(f"{uri}&retention=0")
    originals = [record(i, cost=f"0.{i:018d}" if i else None) for i in range(2500)]
    for r in originals:
        store.settle(None, (), 0, r, NOW)
    assert list(store.calls(CallQuery())) == originals
    assert [r.id for r in store.calls(CallQuery(tags={"user": "user-3"}))] == [
        f"rec-{i}" for i in range(2500) if i % 7 == 3
    ]
    store.close()


def test_ledger_memory_per_record(shared) -> None:
    """The figure the module documents: the record's JSON plus 50-100 bytes."""
    uri, admin = shared
    prefix = uri.split("prefix=")[1]
    store = open_store(uri)
    n = 5000
    for i in range(n):
        store.settle(None, (), 0, record(i, cost="0.000123456", task_id=f"task-{i // 10}"), NOW)
    per_record = admin.memory_usage(f"{{{prefix}}}:ledger", samples=0) / n
    json_size = len(record(1, cost="0.000123456", task_id="task-1").model_dump_json(exclude_defaults=True))
    print(f"ledger: {per_record:.0f} bytes of server memory per record ({json_size}-byte JSON)")
    assert per_record < json_size + 150
    store.close()


def test_task_costs_are_exact_and_match_the_memory_store(shared) -> None:
    uri, _ = shared
    stores = [open_store(uri), MemoryStore()]
    costs = ["0.000000123456789012", "1.5", None, "0.25", "0", "0.000000000000000001", "12345.678"]
    for s in stores:
        s.review_task("t1", Review(accepted=False, edit_distance=0.25, reviewer="bo"))
        for i, cost in enumerate(costs):
            s.settle(None, (), 0, record(i, cost=cost, task_id="t1"), NOW)
        s.settle(None, (), 0, record(99, cost="0.1", task_id="t2"), NOW)
        s.append_task(TaskRecord(id="t2", name="other", started_at=NOW + timedelta(seconds=1), outcome="failed"))
        s.append_task(TaskRecord(id="t1", name="triage", started_at=NOW, tags={"team": "b"}, outcome="succeeded"))
        s.append_task(TaskRecord(id="t0", name="empty", started_at=NOW))
        s.append_task(TaskRecord(id="t2", name="other", started_at=NOW + timedelta(seconds=1), outcome="failed"))
    redis_tasks, memory_tasks = (list(s.tasks(TaskQuery())) for s in stores)
    assert redis_tasks == memory_tasks
    assert [str(t.cost_usd) for t in redis_tasks] == [str(t.cost_usd) for t in memory_tasks]
    assert [t.id for t in redis_tasks] == ["t2", "t1", "t0"]  # first recorded first
    t1 = redis_tasks[1]
    assert t1.calls == len(costs) and t1.cost_usd == Decimal("12347.428000123456789013")
    assert (t1.accepted, t1.edit_distance, t1.reviewer) == (False, 0.25, "bo")
    assert [t.id for t in stores[0].tasks(TaskQuery(outcome="failed"))] == ["t2"]
    stores[0].close()


# -- failures --------------------------------------------------------------------------------------


def test_nothing_listening_is_a_clear_error() -> None:
    port = free_port()
    store = open_store(f"redis://:{PASSWORD_Q}@127.0.0.1:{port}/0")
    started = time.monotonic()
    with pytest.raises(RedisStoreError) as info:
        store.admit("r1", [charge(DAY, NOW)], NOW, 60)
    assert time.monotonic() - started < 2  # refused at once, not retried
    message = str(info.value)
    assert f"cannot reach the server at 127.0.0.1:{port}" in message and "admission" in message
    assert PASSWORD not in message and "***" in message
    with pytest.raises(RedisStoreError):
        list(store.calls(CallQuery()))
    store.close()


def test_wrong_credentials_are_a_clear_error(tmp_path: Path) -> None:
    server = Server(tmp_path, password=PASSWORD)
    try:
        good = open_store(server.uri())
        assert good.admit("r1", [charge(DAY, NOW)], NOW, 60).admitted
        for uri in (
            f"redis://:wrong-{PASSWORD[:4]}@127.0.0.1:{server.port}/0",
            f"redis://nobody:{PASSWORD_Q}@127.0.0.1:{server.port}/0",
            f"redis://127.0.0.1:{server.port}/0",  # none given
        ):
            bad = open_store(uri)
            with pytest.raises(RedisStoreError) as info:
                bad.settle(None, (), 0, record(), NOW)
            message = str(info.value)
            assert "authentication failed" in message and "check the user name and password" in message
            assert PASSWORD not in message and PASSWORD[:4] not in message.replace("***", "")
            assert PASSWORD not in repr(info.value.__cause__)
            bad.close()
        assert good.standing((DAY.name, DAY.window_id(NOW)), NOW).reserved_nano == to_nano(Decimal("0.01"))
        good.close()
    finally:
        server.stop()


def test_restart_mid_run_reconnects(server: Server) -> None:
    store = open_store(server.uri())
    key = (DAY.name, DAY.window_id(NOW))
    assert store.admit("r1", [charge(DAY, NOW)], NOW, 60).admitted
    store.settle("r1", [key], 10, record(0), NOW)
    server.stop()
    with pytest.raises(RedisStoreError, match="cannot reach the server"):
        store.admit("r2", [charge(DAY, NOW)], NOW, 60)
    with pytest.raises(RedisStoreError):
        store.settle(None, [key], 10, record(1), NOW)
    server.start()  # same port, empty (no persistence), no scripts loaded
    assert store.admit("r3", [charge(DAY, NOW)], NOW, 60).admitted
    [st] = store.settle("r3", [key], 20, record(2), NOW)
    assert (st.spent_nano, st.reserved_nano) == (20, 0)  # what was before the restart is gone
    assert [r.id for r in store.calls(CallQuery())] == ["rec-2"]
    # a restart while the pooled connection sits idle is not even noticed
    server.stop()
    server.start()
    assert store.admit("r4", [charge(DAY, NOW)], NOW, 60).admitted
    store.close()


def test_a_hung_server_times_out(server: Server) -> None:
    store = open_store(server.uri(socket_timeout="0.3"))
    assert store.admit("r1", [charge(DAY, NOW)], NOW, 60).admitted
    assert server.proc is not None
    server.proc.send_signal(signal.SIGSTOP)
    try:
        started = time.monotonic()
        with pytest.raises(RedisStoreError, match=r"timed out \(socket_connect_timeout=2.0 s, socket_timeout=0.3 s\)"):
            store.admit("r2", [charge(DAY, NOW)], NOW, 60)
        assert time.monotonic() - started < 2
    finally:
        server.proc.send_signal(signal.SIGCONT)
    assert store.admit("r3", [charge(DAY, NOW)], NOW, 60).admitted
    store.close()


# -- many processes --------------------------------------------------------------------------------

WORKER = r"""
import json, sys, threading, time
from datetime import datetime, timedelta
from decimal import Decimal
from tokenguard.budgets import Budget, to_nano
from tokenguard.records import CallRecord
from tokenguard.stores import open_store
from tokenguard.stores.base import Charge

uri, name, n, threads, start, step, go = sys.argv[1:8]
n, threads, step, go = int(n), int(threads), float(step), float(go)
start = datetime.fromisoformat(start)
budget = Budget("hammer", limit_usd="0.5", period="day", alert_at=1, review_at=1, hard_at=1)
store = open_store(uri)
estimate = to_nano(Decimal("0.01"))
admitted, lock = {}, threading.Lock()

def work(t):
    for i in range(n):
        now = start + timedelta(seconds=i * step)
        _, end = budget.window(now)
        c = Charge(budget.name, budget.window_id(now), to_nano(budget.cap_usd), estimate, None, end)
        rid = f"{name}-{t}-{i}"
        if store.admit(rid, [c], now, 60).admitted:
            record = CallRecord(
                id=rid, time=now, latency_s=0.01, provider="openai", operation="chat", api="chat.completions",
                request_model="gpt-4o-mini", cost_usd=Decimal("0.01"),
            )
            store.settle(rid, [c.key], estimate, record, now)
            with lock:
                admitted[c.window] = admitted.get(c.window, 0) + 1

while time.time() < go:
    time.sleep(0.001)
pool = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
for t in pool:
    t.start()
for t in pool:
    t.join()
print(json.dumps(admitted))
"""


@pytest.mark.parametrize("rollover", [False, True])
def test_processes_hammering_one_hard_cap(shared, rollover: bool) -> None:
    uri, admin = shared
    prefix = uri.split("prefix=")[1]
    budget = Budget("hammer", limit_usd="0.5", period="day", alert_at=1, review_at=1, hard_at=1)
    midnight = datetime.combine(NOW.date() + timedelta(days=1), datetime.min.time(), timezone.utc)
    n, threads, procs = 100, 2, 4
    step = 1.0 if rollover else 0.0
    start = midnight - timedelta(seconds=n // 2) if rollover else midnight + timedelta(hours=1)
    go = time.time() + 2.5  # every process starts together (after importing)
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, uri, f"p{p}", str(n), str(threads), start.isoformat(), str(step), str(go)],
            stdout=subprocess.PIPE,
            text=True,
        )
        for p in range(procs)
    ]
    totals: dict[str, int] = {}
    for w in workers:
        out, _ = w.communicate(timeout=120)
        assert w.returncode == 0
        for window, count in json.loads(out).items():
            totals[window] = totals.get(window, 0) + count
    windows = sorted({budget.window_id(start), budget.window_id(start + timedelta(seconds=(n - 1) * step))})
    assert len(windows) == (2 if rollover else 1)
    assert sorted(totals) == windows
    store = open_store(uri)
    cap = to_nano(budget.cap_usd)
    for window in windows:
        st = store.standing((budget.name, window), start)
        assert st.spent_nano <= cap  # never exceeded
        assert st.spent_nano == cap and totals[window] == 50  # the whole headroom is used
        assert st.reserved_nano == 0  # nothing leaked
        fields = admin.hgetall(f"{{{prefix}}}:w:hammer:{window}")
        assert fields["reserved"] == "0" and not [f for f in fields if f.startswith("r:")]
        assert admin.zcount(f"{{{prefix}}}:x:hammer:{window}", "-inf", "(+inf") == 0
    assert len(list(store.calls(CallQuery()))) == sum(totals.values())
    store.close()


def test_a_process_dying_mid_call_does_not_hold_budget(shared) -> None:
    uri, _ = shared
    code = (
        "import sys; from datetime import datetime; from tokenguard.stores import open_store;"
        "from tokenguard.stores.base import Charge;"
        "s = open_store(sys.argv[1]);"
        "a = s.admit('doomed', [Charge('team-b', 'w', 10**9, 9 * 10**8)], datetime.fromisoformat(sys.argv[2]), 30);"
        "import os; os._exit(0 if a.admitted else 1)"
    )
    subprocess.run([sys.executable, "-c", code, uri, NOW.isoformat()], check=True)
    store = open_store(uri)
    c = Charge("team-b", "w", 10**9, 5 * 10**8)
    assert not store.admit("r1", [c], NOW + timedelta(seconds=10), 30).admitted
    assert store.admit("r2", [c], NOW + timedelta(seconds=31), 30).admitted
    store.close()


# -- through the Guard -----------------------------------------------------------------------------

MSG = [{"role": "user", "content": "hi"}]


def guarded_call(guard: tg.Guard, fake: FakeLLMServer) -> object:
    client = guard.wrap(openai.OpenAI(base_url=fake.openai_base_url, api_key="k", max_retries=0))
    return client.chat.completions.create(model="gpt-4o-mini", messages=MSG, max_tokens=10)


def test_guard_fails_closed_when_redis_is_down(fake_llm: FakeLLMServer, tmp_path: Path) -> None:
    dead = f"redis://:{PASSWORD_Q}@127.0.0.1:{free_port()}/0"
    guard = tg.Guard(
        store=dead,
        on_store_error="closed",
        budgets=[tg.Budget("b", limit_usd=1)],
        telemetry=False,
        spool_dir=tmp_path,
    )
    with pytest.raises(tg.StoreUnavailable) as info:
        guarded_call(guard, fake_llm)
    assert fake_llm.requests == []
    assert PASSWORD not in str(info.value)


def test_guard_fails_open_when_redis_is_down(fake_llm: FakeLLMServer, tmp_path: Path) -> None:
    guard = tg.Guard(
        store=f"redis://127.0.0.1:{free_port()}/0",
        on_store_error="open",
        budgets=[tg.Budget("b", limit_usd=1)],
        telemetry=False,
        spool_dir=tmp_path,
    )
    guarded_call(guard, fake_llm)
    assert len(fake_llm.requests) == 1


def test_guards_share_budgets_and_ledger_through_redis(fake_llm: FakeLLMServer, shared, tmp_path: Path) -> None:
    uri, _ = shared
    fake_llm.set_usage(FakeUsage(input_tokens=1_000_000, output_tokens=0))  # $0.15 a call
    budgets = [tg.Budget("support", limit_usd="1.00")]
    a, b = (tg.Guard(store=uri, budgets=budgets, telemetry=False, spool_dir=tmp_path) for _ in range(2))
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


def test_guard_through_a_restart_spools_and_replays(fake_llm: FakeLLMServer, server: Server, tmp_path: Path) -> None:
    fake_llm.set_usage(FakeUsage(input_tokens=1_000_000, output_tokens=0))
    guard = tg.Guard(store=server.uri(), budgets=[tg.Budget("b", limit_usd=100)], telemetry=False, spool_dir=tmp_path)
    guarded_call(guard, fake_llm)
    server.stop()
    guarded_call(guard, fake_llm)  # fails open, its settlement is spooled
    server.start()
    guarded_call(guard, fake_llm)  # replays the spool, then settles
    assert len(fake_llm.requests) == 3
    # the first call was lost with the unpersisted server; the other two are in the store
    assert len(list(guard.records())) == 2
    assert guard.budget_status()[0].spent_usd == Decimal("0.30")
    guard.close()
