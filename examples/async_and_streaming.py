"""Async clients and streams: concurrent asyncio tasks, each with its own tags.

Tags live in contextvars, so every asyncio task keeps the tags in force where it was created and
never sees another task's. Streams are settled when they end, are closed or are abandoned, and a
stream the caller stops early is recorded as "cancelled" with the usage it consumed.

Offline: the real ``openai`` and ``anthropic`` async SDKs talk to tokenguard's fake server.

    python examples/async_and_streaming.py
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter

from anthropic import AsyncAnthropic
from openai import AsyncOpenAI

import tokenguard as tg
from tokenguard.testing import FakeLLMServer

MESSAGES = [{"role": "user", "content": "Write a short paragraph about rivers."}]


async def openai_stream(client: AsyncOpenAI, user: str) -> int:
    with tg.tags(user=user):
        stream = await client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True)
        chunks = 0
        async for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                chunks += 1
        return chunks


async def anthropic_stream(client: AsyncAnthropic, user: str) -> str:
    with tg.tags(user=user):
        async with client.messages.stream(model="claude-haiku-4-5", max_tokens=15, messages=MESSAGES) as stream:
            return "".join([text async for text in stream.text_stream])


async def impatient_reader(client: AsyncOpenAI) -> None:
    """Reads three chunks, then stops: the stream is settled as cancelled when it is closed."""
    with tg.tags(user="impatient"):
        stream = await client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True)
        seen = 0
        async for _chunk in stream:
            seen += 1
            if seen == 3:
                break
        await stream.close()


async def slow_consumer(client: AsyncAnthropic) -> None:
    """A task cancelled while it reads a stream (a client disconnected, a timeout fired)."""
    with tg.tags(user="cancelled-task"):
        async with client.messages.stream(model="claude-haiku-4-5", max_tokens=20, messages=MESSAGES) as stream:
            async for _text in stream.text_stream:
                await asyncio.sleep(0.05)


async def team_workload(team: str, oai: AsyncOpenAI, claude: AsyncAnthropic) -> None:
    with tg.tags(team=team):
        # Four concurrent streams per team; each task inherits team=<team> from this scope.
        await asyncio.gather(
            openai_stream(oai, f"{team}-1"),
            openai_stream(oai, f"{team}-2"),
            anthropic_stream(claude, f"{team}-3"),
            anthropic_stream(claude, f"{team}-4"),
        )


async def main() -> None:
    with FakeLLMServer() as server:
        server.set_chunk_delay(0.002)  # make the streams interleave
        guard = tg.Guard()
        async with (
            guard.wrap(AsyncOpenAI(base_url=server.openai_base_url, api_key="offline", max_retries=0)) as oai,
            guard.wrap(AsyncAnthropic(base_url=server.anthropic_base_url, api_key="offline", max_retries=0)) as claude,
        ):
            await asyncio.gather(*(team_workload(team, oai, claude) for team in ("search", "ads", "support")))

            with tg.tags(team="support"):
                await impatient_reader(oai)
                task = asyncio.create_task(slow_consumer(claude))
            await asyncio.sleep(0.12)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    records = list(guard.records())
    print(f"{len(records)} streamed calls recorded\n")
    print(f"{'team':<8} {'user':<15} {'provider':<10} {'status':<10} {'in':>4} {'out':>4} estimated")
    for r in sorted(records, key=lambda r: (r.tags["team"], r.tags["user"])):
        print(
            f"{r.tags['team']:<8} {r.tags['user']:<15} {r.provider:<10} {r.status:<10} "
            f"{r.input_tokens:>4} {r.output_tokens:>4} {r.usage_estimated}"
        )
    # Every record carries exactly the team of the task that made it, despite the interleaving.
    for r in records:
        user = r.tags["user"]
        expected_team = "support" if user in ("impatient", "cancelled-task") else user.rsplit("-", 1)[0]
        assert r.tags["team"] == expected_team, r.tags
    print("\nby status:", dict(Counter(r.status for r in records)))
    print(f"total spend: ${guard.spend(period='total'):.8f}")


if __name__ == "__main__":
    asyncio.run(main())
