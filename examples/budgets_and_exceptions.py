"""Budgets that hold: the threshold ladder (alert -> review -> refusal before sending), an approved
exception that lets the next call through, budget_status() and threshold events, on a SQLite store
that every process of a host can share.

Two budgets match the support team's calls: "support" ($0.50 a month, review_action="downgrade")
and "company" ($5 a month). Each call costs $0.10005 (10,000 output tokens of gpt-4o), so support
alerts at 80 % ($0.40), is in review at 100 % ($0.50), and refuses the call that would take it past
its hard cap of 120 % ($0.60). An approver then grants $0.25 more, and the next call goes through.
Threshold events (">> event") print as the call that crossed the threshold settles, so just before
that call's own line; the same events go to the "tokenguard" logger ("[log]").

Offline: the real ``openai`` SDK talks to tokenguard's fake server; the SQLite file and the spool
live in a temporary directory.

    python examples/budgets_and_exceptions.py
"""

from __future__ import annotations

import logging
import sys
import tempfile
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

from openai import OpenAI

import tokenguard as tg
from tokenguard.testing import FakeLLMServer, FakeUsage

MESSAGES = [{"role": "user", "content": "Summarize ticket #4711 for the customer."}]
BUDGETS = [
    tg.Budget("support", limit_usd="0.50", scope={"team": "support"}, review_action="downgrade"),
    tg.Budget("company", limit_usd="5.00"),
]
# Pinned at gpt-4o's list price so the figures below do not move when price data is updated.
PRICES = {"gpt-4o": tg.Price(input_mtok="2.50", output_mtok="10.00")}


def usd(amount: Decimal | None) -> str:
    return "unpriced" if amount is None else f"${amount:.5f}"


def on_event(event: tg.BudgetEvent) -> None:
    print(
        f"   >> event {event.kind!r} of budget {event.budget!r}: spent {usd(event.spent_usd)} "
        f"of {usd(event.limit_usd)}, cap {usd(event.cap_usd)}"
    )


def print_status(guard: tg.Guard) -> None:
    print(f"   {'budget':<8} {'state':<9} {'spent':>9} {'reserved':>9} {'limit':>9} {'cap':>9}  period")
    for s in guard.budget_status():
        period = "total" if s.period_start is None else f"{s.period_start:%Y-%m-%d} .. {s.period_end:%Y-%m-%d}"
        print(
            f"   {s.name:<8} {s.state:<9} {usd(s.spent_usd):>9} {usd(s.reserved_usd):>9} "
            f"{usd(s.limit_usd):>9} {usd(s.cap_usd):>9}  {period}"
        )


def main() -> None:
    logging.basicConfig(stream=sys.stdout, format="   [log] %(message)s")
    with FakeLLMServer() as server, tempfile.TemporaryDirectory() as tmp:
        # Every call reports the same usage: 20 input tokens, 10,000 output tokens ($0.10005).
        server.set_usage(FakeUsage(input_tokens=20, output_tokens=10_000))
        store = f"sqlite:///{Path(tmp) / 'tokenguard.db'}"  # an absolute path: four slashes
        guard = tg.Guard(store=store, budgets=BUDGETS, prices=PRICES, on_event=on_event, spool_dir=Path(tmp) / "spool")
        client = guard.wrap(OpenAI(base_url=server.openai_base_url, api_key="k", max_retries=0))

        def call() -> tg.CallRecord:
            with tg.tags(team="support", app="helpdesk"):
                client.chat.completions.create(model="gpt-4o", messages=MESSAGES, max_tokens=10_000)
            return list(guard.records())[-1]

        print(f"1. Support calls walk up the ladder (store: {store})")
        refused: tg.BudgetExceeded | None = None
        for n in range(1, 10):
            sent_before = server.request_count
            try:
                record = call()
            except tg.BudgetExceeded as exc:
                refused = exc
                assert server.request_count == sent_before  # refused before anything was sent
                print(f"   call {n}: refused before sending")
                break
            print(
                f"   call {n}: cost {usd(record.cost_usd)} (reserved {usd(record.estimated_cost_usd)} "
                f"before sending)  decisions={list(record.decisions)}"
            )
        assert refused is not None

        print("\n2. The refusal: tg.BudgetExceeded carries the facts its message states")
        print(f"   budget={refused.budget!r} spent={usd(refused.spent_usd)} reserved={usd(refused.reserved_usd)}")
        print(f"   this call's estimate={usd(refused.estimate_usd)} cap={usd(refused.cap_usd)}")
        print(f"   message: {refused}")
        blocked = list(guard.records())[-1]
        print(f"   ledger: status={blocked.status} cost={usd(blocked.cost_usd)} decisions={list(blocked.decisions)}")
        print_status(guard)

        print("\n3. An approver grants an exception: +$0.25 on support's cap for one day")
        grant = guard.grant_exception(
            "support",
            extra_usd="0.25",
            approved_by="cfo@example.com",
            reason="ticket backlog after the outage (INC-4711)",
            expires_at=datetime.now(timezone.utc) + timedelta(days=1),
        )
        # The grant lives in the store: another process of this host (here, another Guard on the
        # same file) sees it at once.
        other_process = tg.Guard(store=store, budgets=BUDGETS)
        seen = [(g.id, str(g.extra_usd), g.approved_by) for g in other_process.exceptions()]
        print(f"   grant {grant.id}, as another process sees it: {seen}")
        other_process.close()

        record = call()
        print(
            f"   the next call goes through: status={record.status} cost={usd(record.cost_usd)} "
            f"decisions={list(record.decisions)}"
        )
        assert f"grant:{grant.id}" in record.decisions
        print_status(guard)

        print("\n4. Exceptions on record, and one revoked")
        guard.revoke_exception(grant.id)
        for g in guard.exceptions():
            print(
                f"   {g.id} budget={g.budget} extra={usd(g.extra_usd)} approved_by={g.approved_by} "
                f"until={g.expires_at:%Y-%m-%d %H:%M} UTC revoked={g.revoked}  ({g.reason})"
            )
        print_status(guard)
        spent = guard.budget_status()[0].spent_usd
        ledger_total = sum((r.cost_usd or Decimal(0) for r in guard.records()), Decimal(0))
        print(f"\n   support's spent {usd(spent)} = the ledger's total {usd(ledger_total)}: exact, no floats")
        assert spent == ledger_total
        guard.close()


if __name__ == "__main__":
    main()
