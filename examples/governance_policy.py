"""A governance policy in tokenguard.toml (examples/governance.toml), case by case.

The policy, as a platform team would write it:

* low-risk ticket summaries may use only the cheaper models: a call to gpt-4o is sent to
  gpt-4o-mini instead, and e-mail addresses in the prompt are flagged;
* the high-risk contract review is refused until an approval reference is in force, and then
  sends contact details redacted;
* a task the catalog does not know gets the medium tier: sensitive data redacted;
* the support team's $50-a-day budget downgrades its gpt-4o calls to gpt-4o-mini once it is in
  review, and a rate-limited gpt-4o falls back to gpt-4o-mini;
* prompts above the organisation's standard length (8,000 input tokens) get a nudge.

Offline: the real ``openai`` SDK talks to tokenguard's fake server, which reports a usage of ten
million input tokens for the budget's calls so that the day's budget fills in two calls. The
SQLite store lives in a temporary directory.

    python examples/governance_policy.py
"""

from __future__ import annotations

import logging
import sys
import tempfile
import warnings
from decimal import Decimal
from pathlib import Path

from openai import OpenAI

import tokenguard as tg
from tokenguard.testing import FakeLLMServer, FakeUsage

POLICY = Path(__file__).with_name("governance.toml")
CUSTOMER = "Customer jane.doe@example.com writes: the CSV export fails since Monday."


def usd(amount: Decimal | None) -> str:
    return "unpriced" if amount is None else f"${amount:.6f}"


def ask(client: OpenAI, model: str, content: str = CUSTOMER) -> str:
    reply = client.chat.completions.create(model=model, messages=[{"role": "user", "content": content}], max_tokens=50)
    return reply.model


def show(record: tg.CallRecord) -> None:
    routed = f" (asked for {record.routed_from}: {record.route_reason})" if record.routed_from else ""
    print(f"   sent to {record.request_model}{routed}, status {record.status}, cost {usd(record.cost_usd)}")
    print(f"   decisions {list(record.decisions)}")
    if record.findings:
        print(f"   findings {dict(record.findings)}")


def print_ledger(guard: tg.Guard) -> None:
    header = (
        f"   {'team':<8} {'task':<16} {'model':<12} {'asked for':<10} {'reason':<17} {'try':>3} {'chain':<9}"
        f"{'status':<8} {'cost':>11}"
    )
    print(header)
    print("   " + "-" * (len(header) - 3))
    for r in guard.records():
        print(
            f"   {r.tags.get('team', ''):<8} {r.task_name or '':<16} {r.request_model:<12} {r.routed_from or '':<10} "
            f"{r.route_reason or '':<17} {r.attempt:>3} {(r.chain_id or '')[:8]:<9}{r.status:<8} {usd(r.cost_usd):>11}"
        )


def main() -> None:
    # tokenguard logs each fallback, and budget events, on the "tokenguard" logger.
    logging.basicConfig(stream=sys.stdout, format="   [log] %(message)s")
    with FakeLLMServer() as server, tempfile.TemporaryDirectory() as tmp:
        # The file's store is a relative SQLite path; here it goes to a temporary directory.
        guard = tg.Guard.from_file(
            POLICY, store=f"sqlite:///{Path(tmp) / 'tokenguard.db'}", spool_dir=Path(tmp) / "spool"
        )
        client = guard.wrap(OpenAI(base_url=server.openai_base_url, api_key="offline", max_retries=0))

        def last() -> tg.CallRecord:
            return list(guard.records())[-1]

        def sent() -> str:
            return str(server.requests[-1].body["messages"][0]["content"])

        print(f"Policy: {POLICY.name}\n")
        print("1. A low-risk summary asks for gpt-4o")
        with tg.tags(team="support", app="helpdesk"), tg.task("summarize_ticket", guard=guard) as task:
            ask(client, "gpt-4o")
            task.succeed()
        show(last())
        print(f"   sent as is (flagged only): {sent()!r}")

        print("\n2. A high-risk contract review, first without an approval reference")
        with tg.tags(team="legal"):
            try:
                with tg.task("contract_review", guard=guard):
                    ask(client, "gpt-4o", "Review clause 7. Counterparty contact: jane.doe@example.com")
            except tg.PolicyViolation as exc:
                print(f"   refused before sending: {exc}")
            show(last())
            print("   ... then with one")
            with tg.task("contract_review", guard=guard, approval_id="LEGAL-2291") as task:
                ask(client, "gpt-4o", "Review clause 7. Counterparty contact: jane.doe@example.com")
                task.succeed()
            show(last())
            print(f"   what the vendor received: {sent()!r}")
            print(f"   the approval is on the record: approval_id={last().tags['approval_id']}")

        print("\n3. A task the catalog does not know gets the default tier (medium: redact)")
        with tg.tags(team="sales"), tg.task("draft_follow_up", guard=guard):
            ask(client, "gpt-4o")
        show(last())
        print(f"   what the vendor received: {sent()!r}")

        print("\n4. The support team's gpt-4o is rate-limited: the route falls back")
        server.fail_next(429, model="gpt-4o")
        with tg.tags(team="support", app="helpdesk"):
            model = ask(client, "gpt-4o", "Draft a reply to ticket 4711.")
        failed, answered = list(guard.records())[-2:]
        print(f"   answered by {model}; attempts of chain {answered.chain_id}:")
        for r in (failed, answered):
            print(f"     attempt {r.attempt}: {r.request_model} {r.status} {r.error_type or ''} {r.route_reason or ''}")

        print("\n5. Support's $50-a-day budget fills up: from review, gpt-4o calls are downgraded")
        server.set_usage(FakeUsage(input_tokens=10_000_000, output_tokens=0))  # $25 on gpt-4o
        with tg.tags(team="support", app="helpdesk"), warnings.catch_warnings(record=True) as nudges:
            warnings.simplefilter("always", tg.Nudge)
            for n in range(1, 4):
                ask(client, "gpt-4o", "Summarise this quarter's 40,000 tickets.")
                r = last()
                status = guard.budget_status()[0]
                print(
                    f"   call {n}: {r.request_model:<12} {r.route_reason or '':<17} cost {usd(r.cost_usd):>11}"
                    f"   budget now {status.state} at {usd(status.spent_usd)}"
                )
        server.set_usage(None)
        for w in nudges:
            print(f"   nudge ({w.message.kind}): {w.message}")  # type: ignore[union-attr]

        print("\n6. A prompt above the organisation's standard length is nudged, not refused")
        with tg.tags(team="sales"), warnings.catch_warnings(record=True) as nudges:
            warnings.simplefilter("always", tg.Nudge)
            ask(client, "gpt-4o-mini", "Summarise: " + "the export fails again " * 2_000)
        for w in nudges:
            print(f"   nudge ({w.message.kind}): {w.message}")  # type: ignore[union-attr]
        print(f"   the record keeps it: nudges={last().nudges}")

        print("\nThe ledger")
        print_ledger(guard)
        guard.close()


if __name__ == "__main__":
    main()
