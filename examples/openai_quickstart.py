"""Wrap the official OpenAI client, tag its calls, and read the ledger.

Offline: the script starts tokenguard's fake OpenAI server on 127.0.0.1 and points the real
``openai`` SDK at it, so it needs no API key and no network.

    python examples/openai_quickstart.py
"""

from __future__ import annotations

from collections import defaultdict
from decimal import Decimal

from openai import OpenAI

import tokenguard as tg
from tokenguard.testing import FakeLLMServer


def usd(amount: Decimal | None) -> str:
    return "unpriced" if amount is None else f"${amount:.8f}"


def main() -> None:
    with FakeLLMServer() as server:
        guard = tg.Guard()
        # In production: guard.wrap(OpenAI()). Here: the same SDK, pointed at the fake server.
        client = guard.wrap(OpenAI(base_url=server.openai_base_url, api_key="offline", max_retries=0))
        assert isinstance(client, OpenAI)  # still an OpenAI client, same methods and return types

        with tg.tags(team="support", app="helpdesk"):
            for user in ("u-1", "u-2"):
                with tg.tags(user=user), tg.task("summarize_ticket", guard=guard) as task:
                    reply = client.chat.completions.create(
                        model="gpt-4o-mini",
                        messages=[
                            {"role": "system", "content": "You summarize support tickets."},
                            {"role": "user", "content": "The CSV export times out after 30 seconds."},
                        ],
                        max_tokens=40,
                    )
                    print(f"{user}: {reply.choices[0].message.content}")
                    task.succeed()

        with tg.tags(team="search", app="indexer"):
            client.embeddings.create(model="text-embedding-3-small", input=["doc one", "doc two", "doc three"])
            stream = client.chat.completions.create(
                model="gpt-4.1-mini",
                messages=[{"role": "user", "content": "Suggest three search synonyms for 'invoice'."}],
                stream=True,
            )
            words = [
                chunk.choices[0].delta.content for chunk in stream if chunk.choices and chunk.choices[0].delta.content
            ]
            print(f"streamed {len(words)} text chunks")

        with tg.tags(team="ops", app="chatbot"):
            client.responses.create(model="gpt-4.1-mini", input="Why is the queue backing up?", max_output_tokens=30)

    print("\nThe ledger, one record per call:")
    print(f"{'api':<17} {'model':<23} {'team':<8} {'in':>4} {'out':>4} {'status':<6} cost")
    for r in guard.records():
        print(
            f"{r.api:<17} {r.request_model:<23} {r.tags.get('team', '-'):<8} "
            f"{r.input_tokens:>4} {r.output_tokens:>4} {r.status:<6} {usd(r.cost_usd)}"
        )

    by_team: dict[str, Decimal] = defaultdict(Decimal)
    for r in guard.records():
        by_team[r.tags.get("team", "(untagged)")] += r.cost_usd or Decimal(0)
    print("\nSpend by team:")
    for team, cost in sorted(by_team.items(), key=lambda item: item[1], reverse=True):
        print(f"  {team:<8} {usd(cost)}")
    total = guard.spend(period="total")
    assert sum(by_team.values()) == total  # one value per tag key: the groups add up to the total
    print(f"  {'total':<8} {usd(total)}")

    [task_record, *_] = guard.tasks(name="summarize_ticket")
    print(f"\nTask {task_record.name}: outcome={task_record.outcome} calls={task_record.calls}", end=" ")
    print(f"cost={usd(task_record.cost_usd)}")


if __name__ == "__main__":
    main()
