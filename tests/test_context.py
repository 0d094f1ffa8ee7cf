"""Tags, tasks and bind: attribution that follows the code."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

import openai
import pytest

import tokenguard as tg
from support import records
from tokenguard.testing import FakeUsage

MSG = [{"role": "user", "content": "hi"}]


def test_tags_nest_and_merge_inner_wins():
    assert dict(tg.current_tags()) == {}
    with tg.tags(team="a", app="x"):
        with tg.tags(team="b", user="u"):
            assert dict(tg.current_tags()) == {"team": "b", "app": "x", "user": "u"}
        assert dict(tg.current_tags()) == {"team": "a", "app": "x"}
    assert dict(tg.current_tags()) == {}


def test_current_tags_is_read_only():
    with tg.tags(team="a"):
        with pytest.raises(TypeError):
            tg.current_tags()["team"] = "b"  # type: ignore[index]


@pytest.mark.parametrize(
    ("tags", "error", "match"),
    [
        ({"team": 3}, TypeError, "'team' has a int value"),
        ({"9lives": "x"}, ValueError, "'9lives' is invalid"),
        ({"k" * 65: "x"}, ValueError, "is invalid"),
        ({"note": "x" * 257}, ValueError, "'note' has a value of 257"),
    ],
)
def test_tag_validation_names_the_key(tags, error, match):
    with pytest.raises(error, match=match), tg.tags(**tags):
        pass


def test_too_many_tags():
    with tg.tags(**{f"k{i}": "v" for i in range(32)}):
        with pytest.raises(ValueError, match="at most 32"), tg.tags(one_more="v"):
            pass


def test_tags_decorator_sync_and_async():
    @tg.tags(workflow="triage")
    def sync() -> dict[str, str]:
        return dict(tg.current_tags())

    @tg.tags(workflow="triage")
    async def async_() -> dict[str, str]:
        await asyncio.sleep(0)
        return dict(tg.current_tags())

    with tg.tags(team="t"):
        assert sync() == {"team": "t", "workflow": "triage"}
        assert asyncio.run(async_()) == {"team": "t", "workflow": "triage"}
    assert dict(tg.current_tags()) == {}


async def test_tags_follow_asyncio_tasks():
    async def child(value: str) -> str:
        with tg.tags(user=value):
            await asyncio.sleep(0.001)
            return tg.current_tags()["user"] + tg.current_tags()["team"]

    with tg.tags(team="T"):
        results = await asyncio.gather(*(asyncio.create_task(child(str(i))) for i in range(10)))
    assert results == [f"{i}T" for i in range(10)]


def test_bind_carries_tags_and_task_into_threads():
    with tg.tags(team="search"), tg.task("batch", guard=tg.Guard(telemetry=False)) as task:
        bound = tg.bind(lambda i: (dict(tg.current_tags()), tg.current_task(), i))
        with ThreadPoolExecutor(4) as pool:
            out = list(pool.map(bound, range(20)))
        unbound = ThreadPoolExecutor(1).submit(lambda: dict(tg.current_tags())).result()
    assert all(tags == {"team": "search"} and t is task for tags, t, _ in out)
    assert unbound == {}


def test_task_outcomes(guard):
    with tg.task("a", guard=guard) as t1:
        t1.succeed()
    with tg.task("b", guard=guard):
        pass
    with pytest.raises(RuntimeError), tg.task("c", guard=guard):
        raise RuntimeError("boom")
    with pytest.raises(RuntimeError), tg.task("d", guard=guard) as t4:
        t4.succeed()
        raise RuntimeError("after success")  # an explicit mark wins
    with tg.task("e", guard=guard) as t5:
        t5.fail("bad answer")
        assert t5.outcome == "failed"
    outcomes = {t.name: (t.outcome, t.failure_reason) for t in guard.tasks()}
    assert outcomes == {
        "a": ("succeeded", None),
        "b": ("unknown", None),
        "c": ("failed", "RuntimeError"),
        "d": ("succeeded", None),
        "e": ("failed", "bad answer"),
    }
    assert [t.name for t in guard.tasks(outcome="failed")] == ["c", "e"]


def test_task_cost_review_and_filters(guard, fake_llm):
    client = guard.wrap(openai.OpenAI(base_url=fake_llm.openai_base_url, api_key="k", max_retries=0))
    fake_llm.set_usage(FakeUsage(input_tokens=1000, output_tokens=1000))
    with tg.tags(team="support"), tg.task("summarize", guard=guard, app="helpdesk") as task:
        assert dict(tg.current_tags()) == {"team": "support", "app": "helpdesk"}
        for _ in range(3):
            client.chat.completions.create(model="gpt-4o-mini", messages=MSG)
        task.succeed()
    client.chat.completions.create(model="gpt-4o-mini", messages=MSG)  # outside the task
    assert isinstance(task.id, str) and task.id in str(task.id)
    task.review(accepted=True, edit_distance=0.12, reviewer="alice")
    [t] = guard.tasks(name="summarize")
    assert (t.calls, t.outcome, t.accepted, t.edit_distance, t.reviewer) == (3, "succeeded", True, 0.12, "alice")
    assert t.tags == {"team": "support", "app": "helpdesk"}
    assert t.cost_usd == sum(r.cost_usd for r in records(guard) if r.task_id == task.id)
    assert t.cost_usd == 3 * (Decimal("0.15") + Decimal("0.6")) / 1000
    assert [r.task_name for r in guard.records(task_id=task.id)] == ["summarize"] * 3
    assert len(list(guard.records(tags={"team": "support"}))) == 3
    assert len(list(guard.records())) == 4
    assert len(list(guard.records(tags={"app": "helpdesk"}))) == 3
    guard.review(task.id, accepted=False)
    assert next(guard.tasks()).accepted is False
    with pytest.raises(KeyError, match="no task with id"):
        guard.review("nope", accepted=True)
    with pytest.raises(ValueError, match="edit_distance"):
        guard.review(task.id, accepted=True, edit_distance=-1)


def test_tags_group_by_sums_to_total(guard, fake_llm):
    client = guard.wrap(openai.OpenAI(base_url=fake_llm.openai_base_url, api_key="k", max_retries=0))
    for team in ("a", "b", "a", "c"):
        with tg.tags(team=team, app="x"):
            client.chat.completions.create(model="gpt-4o-mini", messages=MSG)
    client.chat.completions.create(model="gpt-4o-mini", messages=MSG)
    total = guard.spend()
    by_team: dict[str | None, Decimal] = {}
    for r in guard.records():
        by_team[r.tags.get("team")] = by_team.get(r.tags.get("team"), Decimal(0)) + r.cost_usd
    assert sum(by_team.values()) == total
    assert guard.spend({"team": "a"}) == by_team["a"]
    assert guard.spend({"model": "gpt-4o-mini"}, period="total") == total
    assert guard.spend({"model": "gpt-4o"}) == 0


def test_task_decorator_makes_a_fresh_task_per_call(guard):
    @tg.task("job", guard=guard)
    def job() -> str:
        task = tg.current_task()
        assert task is not None
        task.succeed()
        return task.id

    assert job() != job()
    assert [t.outcome for t in guard.tasks()] == ["succeeded", "succeeded"]


def test_default_guard_records_tasks_and_wraps(fake_llm):
    guard = tg.configure(telemetry=False)
    client = tg.wrap(openai.OpenAI(base_url=fake_llm.openai_base_url, api_key="k", max_retries=0))
    with tg.task("default") as t:
        client.chat.completions.create(model="gpt-4o-mini", messages=MSG)
    assert [x.id for x in guard.tasks()] == [t.id]
    assert next(guard.records()).task_id == t.id


def test_task_runs_once(guard):
    task = tg.task("once", guard=guard)
    with task:
        with pytest.raises(RuntimeError, match="is already running"), task:
            pass
    with pytest.raises(RuntimeError, match="has finished"), task:
        pass


def test_configure_accepts_a_guard(tmp_path):
    (tmp_path / "tg.toml").write_text('on_store_error = "closed"\n')
    guard = tg.Guard.from_file(tmp_path / "tg.toml", telemetry=False)
    assert tg.configure(guard) is guard
    from tokenguard.guard import default_guard

    assert default_guard() is guard
    assert guard.on_store_error == "closed"
    with pytest.raises(TypeError, match="not both"):
        tg.configure(guard, telemetry=False)
