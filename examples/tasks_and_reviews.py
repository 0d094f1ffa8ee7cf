"""Cost per successful task: outcomes, retries, human reviews.

Token volume says what was consumed, not what it achieved. Here two ways of drafting support
replies are compared on what matters: what each *successful* task cost and how often a human
accepted the result. The cheap model needs retries and is edited more; the ledger shows whether it
is still cheaper per success.

Offline: the real ``openai`` SDK talks to tokenguard's fake server.

    python examples/tasks_and_reviews.py
"""

from __future__ import annotations

import random
from collections import defaultdict
from decimal import Decimal

from openai import OpenAI

import tokenguard as tg
from tokenguard.testing import FakeLLMServer

TICKETS = [f"Ticket {i}: the export to CSV fails for account {1000 + i}." for i in range(12)]


def draft_reply(client: OpenAI, model: str, ticket: str, rng: random.Random, failure_rate: float) -> str | None:
    """One attempt; returns None when the (simulated) quality check rejects the draft."""
    reply = client.chat.completions.create(
        model=model,
        messages=[
            {"role": "system", "content": "Draft a reply to this support ticket."},
            {"role": "user", "content": ticket},
        ],
        max_tokens=120,
        extra_headers={"x-fake-output-tokens": str(rng.randint(60, 120))},  # the fake server's reply length
    )
    return None if rng.random() < failure_rate else reply.choices[0].message.content


def run(guard: tg.Guard, client: OpenAI, workflow: str, model: str, failure_rate: float, seed: int) -> None:
    rng = random.Random(seed)
    with tg.tags(team="support", app="helpdesk", workflow=workflow):
        for ticket in TICKETS:
            with tg.task("draft_reply", guard=guard) as task:
                draft = None
                for _attempt in range(2):  # one retry: it costs too, and counts against this task
                    draft = draft_reply(client, model, ticket, rng, failure_rate)
                    if draft:
                        break
                if draft:
                    task.succeed()
                else:
                    task.fail("no acceptable draft after 2 attempts")
            if draft:
                # Later, an agent reviews the draft: accepted as is, edited, or rewritten.
                edit = round(rng.random() * (0.6 if failure_rate > 0.3 else 0.3), 2)
                guard.review(task.id, accepted=edit < 0.4, edit_distance=edit, reviewer=f"agent-{rng.randint(1, 4)}")


def main() -> None:
    with FakeLLMServer() as server:
        guard = tg.Guard()
        client = guard.wrap(OpenAI(base_url=server.openai_base_url, api_key="offline", max_retries=0))
        run(guard, client, workflow="small-model", model="gpt-4o-mini", failure_rate=0.45, seed=1)
        run(guard, client, workflow="large-model", model="gpt-4o", failure_rate=0.05, seed=2)

    groups: dict[str, list[tg.TaskRecord]] = defaultdict(list)
    for t in guard.tasks(name="draft_reply"):
        groups[t.tags["workflow"]].append(t)

    header = (
        f"{'workflow':<12} {'tasks':>5} {'calls':>5} {'succeeded':>9} {'accepted':>8} {'edit':>5} "
        f"{'spent':>12} {'per success':>12}"
    )
    print(header)
    print("-" * len(header))
    for workflow, tasks in groups.items():
        spent = sum((t.cost_usd for t in tasks), Decimal(0))
        calls = sum(t.calls for t in tasks)
        succeeded = [t for t in tasks if t.outcome == "succeeded"]
        reviewed = [t for t in tasks if t.accepted is not None]
        accepted = sum(bool(t.accepted) for t in reviewed) / len(reviewed) if reviewed else 0.0
        edits = [t.edit_distance for t in reviewed if t.edit_distance is not None]
        per_success = f"${spent / len(succeeded):.6f}" if succeeded else "n/a"
        print(
            f"{workflow:<12} {len(tasks):>5} {calls:>5} {len(succeeded):>9} {accepted:>8.0%} "
            f"{sum(edits) / len(edits):>5.2f} {f'${spent:.6f}':>12} {per_success:>12}"
        )

    failed = list(guard.tasks(outcome="failed"))
    print(f"\n{len(failed)} failed tasks, e.g. {failed[0].failure_reason!r}" if failed else "\nno failed tasks")
    print(f"ledger: {len(list(guard.records()))} calls, ${guard.spend(period='total'):.6f} in total")


if __name__ == "__main__":
    main()
