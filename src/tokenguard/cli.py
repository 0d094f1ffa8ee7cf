"""The ``tokenguard`` command. ``tokenguard demo`` runs an offline, multi-team scenario against the
built-in fake server and prints where the money went; reporting commands arrive with reports."""

from __future__ import annotations

import argparse
import contextlib
import random
import sys
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from decimal import Decimal
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .guard import Guard
    from .records import CallRecord, TaskRecord

__all__ = ["main"]


def _table(title: str, headers: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    body = [[str(cell) for cell in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in body)) if body else len(h) for i, h in enumerate(headers)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(
            c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        )

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([title, line(headers), rule, *(line(r) for r in body), ""])


def _usd(value: Decimal | None) -> str:
    return "unpriced" if value is None else f"${value.quantize(Decimal('0.000001'))}"


def spend_by(records: Sequence[CallRecord], key: Callable[[CallRecord], str]) -> list[tuple[str, int, int, Decimal]]:
    """Group the ledger by ``key``: (group, calls, tokens, cost), dearest first."""
    groups: dict[str, list[Any]] = defaultdict(lambda: [0, 0, Decimal(0)])
    for r in records:
        g = groups[key(r)]
        g[0] += 1
        g[1] += r.input_tokens + r.output_tokens
        g[2] += r.cost_usd or 0
    return sorted(((k, *v) for k, v in groups.items()), key=lambda row: row[3], reverse=True)


def _demo_guard() -> Guard:
    """The demo's policy: a use-case catalog by risk, and a research budget that downgrades in review."""
    import tokenguard as tg

    return tg.Guard(
        telemetry=False,
        use_cases=[
            tg.UseCase("summarize_ticket", risk="low"),
            tg.UseCase("draft_email", risk="medium"),  # personal data is redacted before sending
            tg.UseCase("contract_review", risk="high", approver="legal-ops@acme.example"),
        ],
        budgets=[
            tg.Budget("research", limit_usd="0.06", hard_at=3, scope={"team": "research"}, review_action="downgrade")
        ],
        routes=[tg.Route(scope={"team": "research"}, downgrade={"gpt-4o": "gpt-4o-mini"}, fallbacks=["gpt-4.1"])],
        nudges=False,
    )


def _demo_workload(guard: Guard, server: Any) -> None:
    """Four teams, OpenAI and Anthropic, streams, a rate limit, an abandoned stream, and governance:
    a fallback, a budget downgrade, redaction and a high-risk task refused until approved."""
    import openai
    from anthropic import Anthropic

    import tokenguard as tg

    from .testing import FakeUsage

    oai = guard.wrap(openai.OpenAI(base_url=server.openai_base_url, api_key="demo-key", max_retries=0))
    claude = guard.wrap(Anthropic(base_url=server.anthropic_base_url, api_key="demo-key", max_retries=0))
    rng = random.Random(42)

    def ticket() -> Any:  # the SDKs' message TypedDicts
        text = "Customer reports the export fails. " * rng.randint(20, 120)
        return [{"role": "system", "content": "You are a support assistant."}, {"role": "user", "content": text}]

    def out(n: int) -> dict[str, str]:
        return {"x-fake-output-tokens": str(n)}

    # support / helpdesk: ticket summaries on a small model, reviewed by agents
    with tg.tags(team="support", app="helpdesk"):
        for i in range(12):
            with tg.tags(user=f"agent-{i % 4}"), tg.task("summarize_ticket", guard=guard) as task:
                oai.chat.completions.create(
                    model="gpt-4o-mini", messages=ticket(), max_tokens=300, extra_headers=out(rng.randint(60, 200))
                )
                if i % 5 == 4:
                    task.fail("summary missed the customer's question")
                else:
                    task.succeed()
            task.review(accepted=i % 5 != 4 and i % 6 != 0, edit_distance=round(rng.random() * 0.4, 2))
        # a burst hits a rate limit: the vendor error reaches the app and is still in the ledger
        server.fail_next(429, retry_after=0.01)
        with (
            tg.task("summarize_ticket", guard=guard),
            tg.tags(user="agent-9"),
            contextlib.suppress(openai.RateLimitError),
        ):
            oai.chat.completions.create(model="gpt-4o-mini", messages=ticket())

    # sales / crm: email drafts streamed from Claude; one is abandoned half way
    with tg.tags(team="sales", app="crm"):
        for i in range(8):
            with tg.tags(user=f"rep-{i % 3}"), tg.task("draft_email", guard=guard) as task:
                with claude.messages.stream(
                    model="claude-haiku-4-5",
                    max_tokens=400,
                    messages=[
                        {"role": "user", "content": f"Follow up with jane.doe{i}@example.com (+1 415 555 01{i:02d})."}
                    ],
                    extra_headers=out(rng.randint(80, 250)),
                ) as stream:
                    for j, _ in enumerate(stream.text_stream):
                        if i == 7 and j == 30:
                            break  # the rep closed the window: settled as cancelled
                if i != 7:
                    task.succeed()

    # research / notebook: a big model with prompt caching, embeddings, and a long Claude analysis.
    # gpt-4o is rate-limited at first (the route falls back to gpt-4.1); then the research budget goes
    # into review and its route downgrades gpt-4o to gpt-4o-mini.
    with tg.tags(team="research", app="notebook", user="dr-lee"):
        server.set_usage(FakeUsage(input_tokens=24_000, output_tokens=900, cache_read_tokens=20_000))
        server.fail_next(429, retry_after=0.01, model="gpt-4o")
        with tg.task("literature_review", guard=guard) as task:
            for _ in range(3):
                oai.chat.completions.create(model="gpt-4o", messages=ticket(), max_tokens=1000)
            task.succeed()
        server.set_usage(FakeUsage(input_tokens=8_000, output_tokens=0))
        oai.embeddings.create(model="text-embedding-3-small", input=["paper abstract"] * 16)
        server.set_usage(FakeUsage(input_tokens=60_000, output_tokens=2_500, cache_write_tokens=50_000))
        with tg.task("analysis", guard=guard):
            claude.messages.create(model="claude-sonnet-4-6", max_tokens=4000, messages=ticket())
        server.set_usage(None)

    # legal / contracts: a high-risk use case is refused until the task carries an approval id
    with tg.tags(team="legal", app="contracts", user="counsel-1"):
        with contextlib.suppress(tg.PolicyViolation), tg.task("contract_review", guard=guard):
            oai.chat.completions.create(model="gpt-4o", messages=ticket(), max_tokens=500)
        with tg.task("contract_review", guard=guard, approval_id="LEGAL-2291") as task:
            oai.chat.completions.create(model="gpt-4o", messages=ticket(), max_tokens=500)
            task.succeed()

    # ops / chatbot: the Responses API
    with tg.tags(team="ops", app="chatbot", user="oncall"), tg.task("incident_qa", guard=guard) as task:
        for _ in range(4):
            oai.responses.create(model="gpt-4.1-mini", input="Why is the queue backing up?", max_output_tokens=200)
        task.succeed()


def demo(_args: argparse.Namespace) -> int:
    try:
        import anthropic  # noqa: F401
        import openai  # noqa: F401
    except ImportError as exc:
        print(
            f"the demo needs both vendor SDKs ({exc.name} is missing): pip install 'tokenguard[all]'",
            file=sys.stderr,
        )
        return 2

    from .testing import FakeLLMServer

    guard = _demo_guard()
    with FakeLLMServer() as server:
        _demo_workload(guard, server)
    records = list(guard.records())
    tasks = list(guard.tasks())
    print(f"tokenguard demo: {len(records)} model calls by 5 teams, against the offline fake server\n")
    headers = ("", "calls", "tokens", "cost")
    for title, key in (
        ("Spend by team", lambda r: r.tags.get("team", "-")),
        ("Spend by app", lambda r: r.tags.get("app", "-")),
        ("Spend by model (the one that billed)", lambda r: r.response_model or r.request_model),
        ("Calls by status", lambda r: r.status),
    ):
        rows = [(k, calls, tokens, _usd(cost)) for k, calls, tokens, cost in spend_by(records, key)]
        print(_table(title, headers, rows))
    print(_table("Tasks: cost per successful task, not raw volume", *task_rows(tasks)))
    print(_table("Governance: what the policy did", ("", "calls"), governance_rows(records)))
    total = sum((r.cost_usd or Decimal(0) for r in records), Decimal(0))
    print(f"Total committed spend: {_usd(total)}  (guard.spend() = {_usd(guard.spend())})")
    return 0


def governance_rows(records: Sequence[CallRecord]) -> list[tuple[str, int]]:
    """Counts of routing reasons, refusals (by the decision that refused) and sensitive data found."""
    counts: dict[str, int] = defaultdict(int)
    for r in records:
        if r.route_reason:
            counts[f"routed: {r.route_reason} ({r.routed_from} -> {r.request_model})"] += 1
        if r.status == "blocked":
            refusal = next((d for d in r.decisions if d.endswith((":block", ":blocked"))), "other")
            counts[f"refused before sending: {refusal}"] += 1
        for kind, n in r.findings.items():
            action = next((d.rsplit(":", 1)[1] for d in r.decisions if d.startswith(f"sensitive:{kind}:")), "?")
            counts[f"sensitive data: {kind} ({action})"] += n
    return sorted(counts.items())


def task_rows(tasks: Sequence[TaskRecord]) -> tuple[tuple[str, ...], list[tuple[object, ...]]]:
    """Per task name: runs, success rate, acceptance rate, cost, and cost per successful task."""
    by_name: dict[str, list[TaskRecord]] = defaultdict(list)
    for t in tasks:
        by_name[t.name].append(t)
    rows: list[tuple[object, ...]] = []
    for name, group in sorted(by_name.items()):
        cost = sum((t.cost_usd for t in group), Decimal(0))
        ok = sum(t.outcome == "succeeded" for t in group)
        reviewed = [t for t in group if t.accepted is not None]
        accepted = sum(bool(t.accepted) for t in reviewed)
        rows.append(
            (
                name,
                len(group),
                f"{ok / len(group):.0%}",
                f"{accepted / len(reviewed):.0%}" if reviewed else "-",
                _usd(cost),
                _usd(cost / ok) if ok else "n/a",
            )
        )
    return ("task", "runs", "succeeded", "accepted", "cost", "cost/success"), rows


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tokenguard", description="Govern your application's own LLM spend.")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("demo", help="run an offline multi-team demonstration and print the spend").set_defaults(func=demo)
    args = parser.parse_args(argv)
    func: Callable[[argparse.Namespace], int] = args.func
    return func(args)


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
