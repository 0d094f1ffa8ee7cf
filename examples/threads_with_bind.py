"""Attribution across threads with tg.bind.

Threads do not inherit contextvars: a function submitted to a ThreadPoolExecutor (or run in a
threading.Thread) starts with no tags and no task, and its calls would be unattributed. Wrap it
with tg.bind(fn) where you submit it: it runs with the tags and task in force at that moment.

Offline: the real ``openai`` SDK talks to tokenguard's fake server.

    python examples/threads_with_bind.py
"""

from __future__ import annotations

import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

from openai import OpenAI

import tokenguard as tg
from tokenguard.testing import FakeLLMServer

DOCUMENTS = [f"Document {i}: quarterly revenue grew in region {i % 3}." for i in range(8)]


def main() -> None:
    with FakeLLMServer() as server:
        guard = tg.Guard()
        client = guard.wrap(OpenAI(base_url=server.openai_base_url, api_key="offline", max_retries=0))

        def summarize(doc: str) -> str:
            reply = client.chat.completions.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": f"Summarize: {doc}"}], max_tokens=10
            )
            return f"{threading.current_thread().name}: {reply.choices[0].message.content}"

        with ThreadPoolExecutor(max_workers=4, thread_name_prefix="worker") as pool:
            with tg.tags(team="finance", app="reports"), tg.task("summarize_batch", guard=guard) as task:
                # Without bind: the workers see no tags and no task.
                list(pool.map(summarize, DOCUMENTS[:2]))
                # With bind: every call made by the workers carries team, app and the task.
                for line in pool.map(tg.bind(summarize), DOCUMENTS[2:]):
                    print(line)
                task.succeed()

            # threading.Thread works the same way.
            with tg.tags(team="finance", app="alerts"):
                thread = threading.Thread(target=tg.bind(summarize), args=("An urgent alert.",), name="alert-thread")
            thread.start()
            thread.join()

    print()
    attributed = Counter(
        (r.tags.get("team", "(none)"), r.tags.get("app", "(none)"), r.task_name or "(no task)") for r in guard.records()
    )
    for (team, app, task_name), calls in attributed.items():
        print(f"{calls} calls  team={team:<7} app={app:<8} task={task_name}")

    [batch] = guard.tasks(name="summarize_batch")
    print(f"\ntask summarize_batch: {batch.outcome}, {batch.calls} calls, ${batch.cost_usd:.8f}")
    unattributed = [r for r in guard.records() if not r.tags]
    assert len(unattributed) == 2  # the two calls submitted without tg.bind
    print(f"{len(unattributed)} calls were made without tg.bind and are attributed to no one")


if __name__ == "__main__":
    main()
