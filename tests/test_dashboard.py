"""The dashboard, opened in a real headless Chromium.

The ledger is the demo's multi-team workload (real governed calls: the openai and anthropic SDKs
over HTTP to the fake server) under a few more budgets, two weeks of earlier history appended to the
store (so there is something over time, and a spike today), a grant and a revoked grant, and a team
whose name is markup. The page is written to a file and loaded by Chromium over the DevTools
protocol; the test listens for console errors, exceptions and network requests, then reads the
numbers back from the rendered DOM (the elements' ``data-*`` hooks and their visible text) and
compares them with the report API's, and measures the charts' SVG boxes.

Skips when Chromium is not installed (``TOKENGUARD_CHROMIUM`` names another binary), fails in CI
(``TOKENGUARD_REQUIRE_SERVICES=1``), where ``.ci/run`` installs Debian's ``chromium``.
"""

from __future__ import annotations

import base64
import json
import os
import queue
import re
import shutil
import subprocess
import threading
import time
from collections import defaultdict
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from itertools import count
from pathlib import Path
from typing import Any

import openai
import pytest
import websocket

import tokenguard as tg
from support import API_KEY, require_service
from tokenguard.cli import _demo_workload
from tokenguard.records import CallRecord
from tokenguard.reports.anomalies import find_anomalies
from tokenguard.reports.dashboard import build_dashboard, model_class, write_dashboard
from tokenguard.reports.leaderboard import leaderboard
from tokenguard.testing import FakeLLMServer

NOW = datetime.now(timezone.utc)
TODAY = NOW.date().isoformat()
EVIL = '<script>alert("x")</script>'
EVIL_TASK = "q&a <i>'"
MIN_TASKS = 5  # the demo reviews 12 support tasks: enough to rank with a minimum of 5
_ids = count()


# -- the ledger --------------------------------------------------------------------------------------


def history(guard: tg.Guard, days_ago: int, team: str, cost: str, model: str = "gpt-4o-mini") -> None:
    """One call record of ``team`` made ``days_ago`` days ago (the ledger's earlier history)."""
    record = CallRecord(
        id=f"history-{next(_ids)}",
        time=NOW - timedelta(days=days_ago),
        latency_s=0.4,
        provider="anthropic" if model.startswith("claude") else "openai",
        operation="chat",
        api="messages" if model.startswith("claude") else "chat.completions",
        request_model=model,
        response_model=model,
        input_tokens=2000,
        output_tokens=150,
        cost_usd=Decimal(cost),
        estimated_cost_usd=Decimal(cost),
        tags={"team": team},
        status="ok",
    )
    guard.store.settle(None, (), 0, record, record.time)


@pytest.fixture(scope="module")
def ledger() -> tg.Guard:
    guard = tg.Guard(
        telemetry=False,
        nudges=False,
        use_cases=[
            tg.UseCase("summarize_ticket", risk="low"),
            tg.UseCase("draft_email", risk="medium"),
            tg.UseCase("contract_review", risk="high", approver="legal-ops@acme.example"),
        ],
        budgets=[
            # the demo's: it ends exceeded (the workload refuses nothing: it downgrades in review)
            tg.Budget("research", limit_usd="0.06", hard_at=3, scope={"team": "research"}, review_action="downgrade"),
            tg.Budget("org", limit_usd="0.40"),  # everything: ends in alert
            tg.Budget("sales", limit_usd="0.02", scope={"team": "sales"}),  # ends ok
        ],
        routes=[tg.Route(scope={"team": "research"}, downgrade={"gpt-4o": "gpt-4o-mini"}, fallbacks=["gpt-4.1"])],
    )
    for days_ago in range(14, 0, -1):  # two weeks of steady history: today's research spend is a spike
        history(guard, days_ago, "research", "0.0100" if days_ago % 2 else "0.0110", "gpt-4o")
        history(guard, days_ago, "support", "0.0020")
        if days_ago % 3 == 0:
            history(guard, days_ago, "sales", "0.0040", "claude-haiku-4-5")
    with FakeLLMServer() as server:
        _demo_workload(guard, server)
        client = guard.wrap(openai.OpenAI(base_url=server.openai_base_url, api_key=API_KEY, max_retries=0))
        with tg.tags(team=EVIL), tg.task(EVIL_TASK, guard=guard) as task:
            client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
            task.succeed()
        client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "no tags"}])
    expires = NOW + timedelta(days=7)
    revoked = guard.grant_exception("research", "0.10", "cfo@acme.example", "quarter-end <analysis>", expires)
    guard.revoke_exception(revoked.id)
    guard.grant_exception("org", "0.10", "cfo@acme.example", "launch week", expires)
    return guard


# -- Chromium over the DevTools protocol ------------------------------------------------------------


def chromium_binary() -> str:
    configured = os.environ.get("TOKENGUARD_CHROMIUM")
    if configured:
        found = shutil.which(configured)
        if found is None:
            require_service(f"chromium (TOKENGUARD_CHROMIUM={configured})")
        return str(found)
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        found = shutil.which(name)
        if found:
            return found
    require_service("chromium")
    raise AssertionError("unreachable")


class Chromium:
    """A headless Chromium driven over its DevTools websocket (one page, flattened sessions)."""

    def __init__(self, binary: str, profile: Path) -> None:
        args = [
            binary,
            "--headless=new",
            "--remote-debugging-port=0",
            f"--user-data-dir={profile}",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-extensions",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--mute-audio",
            "about:blank",
        ]
        if os.geteuid() == 0:
            args.insert(1, "--no-sandbox")  # Chromium refuses to run as root with its sandbox
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self.stderr: list[str] = []
        found: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._drain, args=(found,), daemon=True).start()
        try:
            url = found.get(timeout=60)
        except queue.Empty:
            self.close()
            raise RuntimeError("Chromium printed no DevTools URL:\n" + "".join(self.stderr[-30:])) from None
        self.ws = websocket.create_connection(url, timeout=60, suppress_origin=True)
        self.events: list[dict[str, Any]] = []
        self._next = count(1)

    def _drain(self, found: queue.Queue[str]) -> None:
        assert self.proc.stderr is not None
        for raw in self.proc.stderr:
            line = raw.decode(errors="replace")
            self.stderr.append(line)
            match = re.search(r"DevTools listening on (ws://\S+)", line)
            if match:
                found.put(match.group(1))

    def send(self, method: str, params: dict[str, Any] | None = None, session: str | None = None) -> dict[str, Any]:
        msg_id = next(self._next)
        message: dict[str, Any] = {"id": msg_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        self.ws.send(json.dumps(message))
        while True:
            reply = json.loads(self.ws.recv())
            if reply.get("id") == msg_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply["result"]
            self.events.append(reply)

    def wait_for(self, method: str, session: str, timeout: float = 30) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        seen = 0
        while True:
            for event in self.events[seen:]:
                if event.get("method") == method and event.get("sessionId") == session:
                    return event
            seen = len(self.events)
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no {method} within {timeout} s")
            self.ws.settimeout(left)
            self.events.append(json.loads(self.ws.recv()))

    def open(self, url: str, width: int = 1280, height: int = 900) -> Page:
        target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Page", "Runtime", "Log", "Network"):
            self.send(f"{domain}.enable", session=session)
        self.send(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
            session=session,
        )
        start = len(self.events)
        navigated = self.send("Page.navigate", {"url": url}, session=session)
        assert "errorText" not in navigated, navigated
        self.wait_for("Page.loadEventFired", session)
        return Page(self, session, target, start)

    def close(self) -> None:
        if getattr(self, "ws", None) is not None:
            self.ws.close()
        self.proc.terminate()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(15)


class Page:
    def __init__(self, browser: Chromium, session: str, target: str, start: int) -> None:
        self.browser, self.session, self.target, self.start = browser, session, target, start

    def evaluate(self, expression: str) -> Any:
        result = self.browser.send(
            "Runtime.evaluate", {"expression": expression, "returnByValue": True}, session=self.session
        )
        assert "exceptionDetails" not in result, result["exceptionDetails"]
        return result["result"].get("value")

    def events(self, method: str) -> list[dict[str, Any]]:
        return [
            e["params"]
            for e in self.browser.events[self.start :]
            if e.get("method") == method and e.get("sessionId") == self.session
        ]

    def errors(self) -> list[str]:
        """Console errors, uncaught exceptions and error log entries (CSP violations, failed loads)."""
        found = [
            f"console.{p['type']}: {[a.get('value', a.get('description')) for a in p['args']]}"
            for p in self.events("Runtime.consoleAPICalled")
            if p["type"] in ("error", "assert")
        ]
        found += [f"exception: {p['exceptionDetails']}" for p in self.events("Runtime.exceptionThrown")]
        found += [
            f"log {p['entry']['source']}: {p['entry']['text']}"
            for p in self.events("Log.entryAdded")
            if p["entry"]["level"] == "error"
        ]
        return found

    def close(self) -> None:
        self.browser.send("Target.closeTarget", {"targetId": self.target})


@pytest.fixture(scope="module")
def chromium(tmp_path_factory: pytest.TempPathFactory):
    browser = Chromium(chromium_binary(), tmp_path_factory.mktemp("chromium-profile"))
    yield browser
    browser.close()


READ_PAGE = """(() => {
  const box = el => { const r = el.getBoundingClientRect(); return [r.width, r.height]; };
  return {
    title: document.title,
    scripts: document.scripts.length,
    overflow: document.documentElement.scrollWidth - window.innerWidth,
    hooks: [...document.querySelectorAll('[data-metric]')].map(el => ({
      metric: el.dataset.metric, key: el.dataset.key, value: el.dataset.value ?? null,
      text: el.textContent.trim(), svg: el instanceof SVGElement, box: box(el),
    })),
    charts: [...document.querySelectorAll('svg.chart')].map(svg => ({
      name: svg.dataset.chart, box: box(svg), title: svg.querySelector('title').textContent,
      marks: [...svg.querySelectorAll('rect')].filter(r => r.getBBox().width > 0 && r.getBBox().height > 0).length,
    })),
    teams: [...document.querySelectorAll('#spend-over-time tbody th')].map(th => th.textContent),
    flagged: [...document.querySelectorAll('svg rect.anomalous')].map(r => r.dataset.key),
    sections: [...document.querySelectorAll('main > section > h2')].map(h => h.textContent),
  };
})()"""


def hooks_by_metric(hooks: list[dict[str, Any]]) -> dict[str, dict[tuple[Any, ...], set[str | None]]]:
    """metric -> key -> every value shown for it (a number may be shown twice: chart and table)."""
    out: dict[str, dict[tuple[Any, ...], set[str | None]]] = defaultdict(lambda: defaultdict(set))
    for h in hooks:
        out[h["metric"]][tuple(json.loads(h["key"]))].add(h["value"])
    return out


def shown_usd(text: str) -> Decimal:
    """The dollar amount an element shows (e.g. ``$1,234.56`` or ``$0.004521 (12.0% of limit)``)."""
    match = re.match(r"\$([\d,]+\.\d+)", text)
    assert match, text
    return Decimal(match.group(1).replace(",", ""))


def rounded(value: Decimal) -> Decimal:
    return value.quantize(Decimal("0.000001")) if abs(value) < 100 else value.quantize(Decimal("0.01"))


# -- the tests ---------------------------------------------------------------------------------------


def test_the_dashboard_in_headless_chromium(ledger, chromium, tmp_path):
    at = datetime.now(timezone.utc)  # budgets' projections move with the clock: one instant for page and API
    path = write_dashboard(
        ledger, tmp_path / "report.html", title="Acme AI spend", leaderboard_min_tasks=MIN_TASKS, now=at
    )
    url = path.resolve().as_uri()
    page = chromium.open(url)
    try:
        got = page.evaluate(READ_PAGE)
        assert page.errors() == []
        # self-contained: the document is the only thing the page loaded
        requested = [p["request"]["url"] for p in page.events("Network.requestWillBeSent")]
        assert [u for u in requested if not u.startswith("data:")] == [url]
        pdf = base64.b64decode(chromium.send("Page.printToPDF", {}, session=page.session)["data"])
        assert pdf.startswith(b"%PDF") and len(pdf) > 10_000
    finally:
        page.close()

    assert got["title"] == "Acme AI spend · LLM spend report"
    assert got["scripts"] == 0  # no script at all: the markup team name stayed text
    assert got["overflow"] <= 0  # nothing wider than the window
    assert got["sections"] == [
        "Summary",
        "Spend over time by team",
        "Spend by model class",
        "Cost per successful task",
        "Budgets",
        "Exceptions",
        "Anomalies",
        "Leaderboard",
        "Governance",
    ]
    assert EVIL in got["teams"] and "(unattributed)" in got["teams"]

    # the charts rendered: every SVG has a size, and marks with a size
    charts = {c["name"]: c for c in got["charts"]}
    reports = ledger.reports
    budgets = reports.budgets(now=at).rows
    assert set(charts) == {
        "spend-over-time",
        "spend-by-model-class",
        "cost-per-success",
        "exceptions-by-budget",
        *(f"budget-gauge-{i}" for i in range(len(budgets))),
    }
    for c in charts.values():
        width, height = c["box"]
        assert width > 300 and height > 40, c
        assert c["marks"] > 0, c
    hooks = got["hooks"]
    for h in hooks:
        if h["svg"] and h["metric"].startswith(("spend.bucket_team", "spend.model_class", "outcomes.")):
            assert h["box"][0] > 0 and h["box"][1] >= 0, h  # bars are drawn (a tiny one may be flat)

    shown = hooks_by_metric(hooks)

    def value(metric: str, *key: Any) -> str | None:
        values = shown[metric][key]
        assert len(values) == 1, (metric, key, values)  # where a number is shown twice, it is the same
        return next(iter(values))

    # spend: the total, per team, per day and team, per model, per class
    by_team = reports.spend(["team"])
    assert value("spend.total") == str(by_team.total.cost_usd)
    assert value("spend.calls") == str(by_team.total.calls)
    assert value("spend.unattributed") == str(next(r.cost_usd for r in by_team.rows if r.key == (None,)))
    for row in by_team.rows:
        assert value("spend.team", *row.key) == str(row.cost_usd)
        assert value("spend.team.calls", *row.key) == str(row.calls)
    assert set(shown["spend.team"]) == {r.key for r in by_team.rows}
    over_time = reports.spend(["day", "team"])
    assert {k: v for k, (v,) in shown["spend.bucket_team"].items()} == {r.key: str(r.cost_usd) for r in over_time.rows}
    assert len({r.key[0] for r in over_time.rows}) == 15  # two weeks of history and today
    by_model = reports.spend(["provider", "model", "operation"])
    assert {k: v for k, (v,) in shown["spend.model"].items()} == {r.key: str(r.cost_usd) for r in by_model.rows}
    classes: dict[str, Decimal] = defaultdict(Decimal)
    for r in by_model.rows:
        classes[model_class(r.key[1], r.key[2])] += r.cost_usd
    assert {k[0]: Decimal(v) for k, (v,) in shown["spend.model_class"].items()} == classes
    assert set(classes) == {"mid", "small", "embedding"}
    assert sum(classes.values()) == by_team.total.cost_usd

    # cost per successful task, per task type (none for a type that never succeeded)
    outcomes = reports.outcomes(["task"]).rows
    assert {r.key[0] for r in outcomes} >= {"summarize_ticket", "analysis", EVIL_TASK}
    for row in outcomes:
        cps = row.cost_per_success
        assert value("outcomes.cost_per_success", *row.key) == (None if cps is None else str(cps))
        assert value("outcomes.tasks", *row.key) == str(row.tasks)
        assert value("outcomes.succeeded", *row.key) == str(row.succeeded)
    assert value("outcomes.cost_per_success", "analysis") is None

    # budgets: state and money, as the API says
    states = {}
    for row in budgets:
        s = row.status
        states[s.name] = value("budget.state", s.name)
        assert value("budget.spent", s.name) == str(s.spent_usd)
        assert value("budget.limit", s.name) == str(s.limit_usd)
        assert value("budget.cap", s.name) == str(s.cap_usd)
        assert value("budget.reserved", s.name) == str(s.reserved_usd)
        assert value("budget.projected", s.name) == str(row.projected_usd)
    assert states == {"research": "exceeded", "org": "alert", "sales": "ok"}
    assert value("budgets.attention") == "2"

    # exceptions: counts by status, and the audit's amounts
    grants = reports.exceptions(now=at).rows
    assert {k[0]: v for k, (v,) in shown["exceptions.count"].items()} == {"active": "1", "expired": "0", "revoked": "1"}
    for g in grants:
        assert value("exceptions.extra", g.id) == str(g.extra_usd)
        assert value("exceptions.used", g.id) == str(g.used_usd)

    # anomalies: today's research spike is listed and highlighted in the spend chart
    anomalies = find_anomalies(ledger, by=("team",), bucket="day").rows
    spike = next(a for a in anomalies if a.kind == "spend_spike" and a.key == ("research",))
    assert spike.when == TODAY
    assert value("anomaly.score", "spend_spike", "research", TODAY) == repr(spike.score)
    assert json.dumps([TODAY, "research"]) in got["flagged"]
    assert value("anomalies.count") == str(len(anomalies))

    # the leaderboard
    board = leaderboard(ledger, "team", min_tasks=MIN_TASKS).rows
    assert any(r.rank is not None for r in board)
    for r in board:
        assert value("leaderboard.rank", r.key) == (None if r.rank is None else str(r.rank))
        assert value("leaderboard.tokens", r.key) == str(r.tokens)
        cpa = r.cost_per_accepted
        assert value("leaderboard.cost_per_accepted", r.key) == (None if cpa is None else str(cpa))

    # governance
    governance = reports.governance()
    assert value("governance.calls") == str(governance.calls)
    assert value("governance.count", "refused before sending", "usecase:contract_review:block") == "1"

    # what the eye reads is the same number, rounded to the dollar-millionth
    visible = {(h["metric"], h["key"]): h["text"] for h in hooks if not h["svg"]}
    assert shown_usd(visible[("spend.total", "[]")]) == rounded(by_team.total.cost_usd)
    for row in by_team.rows:
        assert shown_usd(visible[("spend.team", json.dumps(list(row.key)))]) == rounded(row.cost_usd)
    for row in budgets:
        assert shown_usd(visible[("budget.spent", json.dumps([row.status.name]))]) == rounded(row.status.spent_usd)
        assert visible[("budget.state", json.dumps([row.status.name]))] == row.status.state
    for row in outcomes:
        if row.cost_per_success is not None:
            text = visible[("outcomes.cost_per_success", json.dumps(list(row.key)))]
            assert shown_usd(text) == rounded(row.cost_per_success)


def test_an_empty_ledger_and_an_empty_window_load_cleanly(ledger, chromium, tmp_path):
    empty = build_dashboard(tg.Guard(telemetry=False))
    assert "No calls in this window." in empty and "No budgets are configured." in empty
    future = build_dashboard(ledger, since=NOW + timedelta(days=1))
    assert future.count("No calls in this window.") == 2
    assert "No finished tasks in this window" in future
    assert 'data-metric="budget.state"' in future  # budgets show their current period regardless
    for name, html in (("empty", empty), ("future", future)):
        path = tmp_path / f"{name}.html"
        path.write_text(html, encoding="utf-8")
        page = chromium.open(path.resolve().as_uri())
        try:
            got = page.evaluate(READ_PAGE)
            assert page.errors() == []
        finally:
            page.close()
        assert got["hooks"] and all(c["box"][0] > 0 for c in got["charts"])
        # only what does not depend on the window: the budgets' current periods and the grants
        assert {c["name"] for c in got["charts"]} <= {
            "budget-gauge-0",
            "budget-gauge-1",
            "budget-gauge-2",
            "exceptions-by-budget",
        }


def test_self_contained_and_escaped(ledger):
    html = build_dashboard(ledger, title="<b>Acme</b> & co", leaderboard_min_tasks=MIN_TASKS)
    assert html.startswith("<!DOCTYPE html>")
    assert "<title>&lt;b&gt;Acme&lt;/b&gt; &amp; co · LLM spend report</title>" in html
    # no script, and nothing to fetch: every reference is in-page or a data: URL
    assert "<script" not in html.lower()
    assert re.findall(r"(?:src|href)=\"(?!#|data:)[^\"]*\"", html) == []
    assert (
        "http://" not in html
        and "https://" not in html
        and "@import" not in html
        and "url(" not in (html.replace("url(#", ""))
    )
    assert "Content-Security-Policy" in html
    # user strings are escaped everywhere, in text and in attributes
    assert EVIL not in html and "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in html
    assert "q&amp;a &lt;i&gt;&#x27;" in html and EVIL_TASK not in html
    assert "quarter-end &lt;analysis&gt;" in html


def test_model_classes():
    assert model_class("gpt-5") == "frontier"
    assert model_class("claude-opus-4-1") == "frontier"
    assert model_class("o3") == "frontier"
    assert model_class("gemini-2.5-pro") == "frontier"
    assert model_class("gpt-4o") == "mid"
    assert model_class("claude-sonnet-4-6") == "mid"
    assert model_class("gemini-2.5-flash") == "mid"
    assert model_class("gpt-4o-mini") == "small"
    assert model_class("gpt-5-mini") == "small"
    assert model_class("o4-mini") == "small"
    assert model_class("claude-haiku-4-5") == "small"
    assert model_class("llama-3.1-8b-instruct") == "small"
    assert model_class("text-embedding-3-large") == "embedding"
    assert model_class("my-finetune", "embeddings") == "embedding"
    assert model_class("my-finetune") == "other"


def test_a_custom_classifier_and_write_dashboard(ledger, tmp_path):
    out = write_dashboard(
        ledger, tmp_path / "r.html", classify=lambda model, op: "anthropic" if "claude" in model else "openai"
    )
    html = out.read_text(encoding="utf-8")
    assert 'data-metric="spend.model_class" data-key="[&quot;anthropic&quot;]"' in html
    assert 'data-key="[&quot;frontier&quot;]"' not in html


def test_a_long_ledger_is_drawn_by_week_and_quiet_weeks_keep_their_place():
    guard = tg.Guard(telemetry=False)
    for days_ago in (200, 150, 100, 3):
        history(guard, days_ago, "support", "0.50")
    history(guard, 3, "sales", "0.25")
    html = build_dashboard(guard)
    weekly = guard.reports.spend(["week", "team"])
    first, last = (datetime.fromisoformat(weekly.rows[i].key[0]) for i in (0, -1))
    weeks = (last - first).days // 7 + 1
    assert html.count('<g class="bar"') == weeks > 25  # one slot per week, spend or not
    shown = dict(re.findall(r'data-metric="spend.bucket_team" data-key="([^"]+)" data-value="([^"]+)"', html))
    assert {tuple(json.loads(k.replace("&quot;", '"'))): v for k, v in shown.items()} == {
        r.key: str(r.cost_usd) for r in weekly.rows
    }
    assert "Committed spend per week (UTC)" in html


def test_a_crowded_chart_merges_the_smallest_teams_and_the_table_keeps_them_all():
    guard = tg.Guard(telemetry=False)
    for i in range(12):
        history(guard, 1, f"team-{i:02d}", f"0.{12 - i:02d}")
    html = build_dashboard(guard)
    assert "other teams (4)" in html
    by_team = guard.reports.spend(["team"]).rows
    merged = sum((r.cost_usd for r in by_team[-4:]), Decimal(0))  # the four cheapest
    day = (NOW - timedelta(days=1)).date().isoformat()
    assert f'data-metric="spend.bucket_other" data-key="[&quot;{day}&quot;]" data-value="{merged}"' in html
    for r in by_team:  # every team in the table, with its exact spend
        assert f'data-metric="spend.team" data-key="[&quot;{r.key[0]}&quot;]" data-value="{r.cost_usd}"' in html
