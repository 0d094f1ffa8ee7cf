"""Nudges: non-blocking advice toward the cheaper path, and how to read, limit, escalate or
silence it.

1. a prompt above the organisation's standard length: one nudge, delivered four ways (a tg.Nudge
   warning, a log line, a span event, the ledger record), then rate-limited;
2. "this task can be done with a smaller model": a new Guard (the next deployment) reads the
   ledger that the previous one wrote to SQLite, and states the saving in dollars; a cheaper
   model with a poor success rate, or one the route does not allow, is not recommended;
3. a budget past its alert threshold;
4. escalated with the warnings module: the nudged call is refused and recorded as blocked;
5. turned off.

Offline: the real ``openai`` SDK talks to tokenguard's fake server; the SQLite ledger lives in a
temporary directory.

    python examples/nudges.py
"""

from __future__ import annotations

import logging
import sys
import tempfile
import time
import warnings
from pathlib import Path

from openai import OpenAI
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import tokenguard as tg
from tokenguard.testing import FakeLLMServer, FakeUsage

SHORT = [{"role": "user", "content": "Summarize ticket #4711."}]
LONG = [{"role": "user", "content": "Summarize this thread: " + "the export fails again. " * 300}]


def caught_nudges(caught: list[warnings.WarningMessage]) -> list[tg.Nudge]:
    return [w.message for w in caught if isinstance(w.message, tg.Nudge)]


def main() -> None:
    # Nudges are logged at INFO on the "tokenguard.nudge" logger: show them here.
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("   [log %(name)s] %(message)s"))
    logging.getLogger("tokenguard.nudge").addHandler(handler)
    logging.getLogger("tokenguard.nudge").setLevel(logging.INFO)
    spans = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans))

    with FakeLLMServer() as server, tempfile.TemporaryDirectory() as tmp:
        print("1. A long prompt (the standard is 500 input tokens), three times")
        guard = tg.Guard(tracer_provider=tracer_provider, nudges={"context_length_tokens": 500, "interval_s": 1})
        client = guard.wrap(OpenAI(base_url=server.openai_base_url, api_key="offline", max_retries=0))
        for n, pause in enumerate((0, 0, 1.1), start=1):
            time.sleep(pause)
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                client.chat.completions.create(model="gpt-4o-mini", messages=LONG, max_tokens=20)
            nudges = caught_nudges(caught)
            record = list(guard.records())[-1]
            span = spans.get_finished_spans()[-1]
            events = [e.attributes["tokenguard.nudge.kind"] for e in span.events if e.name == "tokenguard.nudge"]
            print(
                f"   call {n}{' (after 1.1 s)' if pause else ''}: warnings={[w.kind for w in nudges]} "
                f"span events={events} record.nudges={record.nudges}"
            )
        print("   (interval_s=1: the second call is not nudged again, the third is)")

        print("\n2. 'This task can be done with a smaller model', from last month's ledger")
        store = f"sqlite:///{Path(tmp) / 'ledger.db'}"
        server.set_usage(FakeUsage(input_tokens=10_000, output_tokens=1_000))
        last_month = tg.Guard(store=store, telemetry=False, nudges=False)
        previous = last_month.wrap(OpenAI(base_url=server.openai_base_url, api_key="offline", max_retries=0))
        # 20 tasks per model (min_tasks); gpt-4.1-nano is cheapest but succeeds only 12 times in 20.
        for model, succeeded in (("gpt-4o", 19), ("gpt-4o-mini", 19), ("gpt-4.1-nano", 12)):
            for i in range(20):
                with tg.task("summarize_ticket", guard=last_month) as task:
                    previous.chat.completions.create(model=model, messages=SHORT, max_tokens=50)
                    if i < succeeded:
                        task.succeed()
                    else:
                        task.fail("the agent rewrote the summary")
        last_month.close()
        for model in ("gpt-4o", "gpt-4o-mini", "gpt-4.1-nano"):
            print(f"   {model:<13} 20 tasks, {'19' if model != 'gpt-4.1-nano' else '12'} succeeded")

        this_deploy = tg.Guard(store=store, telemetry=False)  # nudges on, by default
        client = this_deploy.wrap(OpenAI(base_url=server.openai_base_url, api_key="offline", max_retries=0))
        # The first call in a task starts reading the ledger, in the background.
        with tg.task("summarize_ticket", guard=this_deploy) as task:
            client.chat.completions.create(model="gpt-4o-mini", messages=SHORT, max_tokens=50)
            task.succeed()
        assert this_deploy.nudger is not None
        this_deploy.nudger.wait_seeded(10)  # a script can wait for the read; calls never do
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with tg.route(allow=["gpt-4o", "gpt-4.1-nano"]), tg.task("summarize_ticket", guard=this_deploy) as task:
                client.chat.completions.create(model="gpt-4o", messages=SHORT, max_tokens=50)
                task.succeed()
        print(f"   gpt-4o, with a route that does not allow gpt-4o-mini: {len(caught_nudges(caught))} nudges")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with tg.task("summarize_ticket", guard=this_deploy) as task:
                client.chat.completions.create(model="gpt-4o", messages=SHORT, max_tokens=50)
                task.succeed()
        for nudge in caught_nudges(caught):
            print(f"   gpt-4o: nudge ({nudge.kind}): {nudge}")
        this_deploy.close()
        server.set_usage(None)

        print("\n3. A budget past its alert threshold (80 %)")
        budgeted = tg.Guard(telemetry=False, budgets=[tg.Budget("pilot", limit_usd="0.0001")])
        client = budgeted.wrap(OpenAI(base_url=server.openai_base_url, api_key="offline", max_retries=0))
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            for _ in range(8):
                client.chat.completions.create(model="gpt-4o-mini", messages=SHORT, max_tokens=20)
        for nudge in caught_nudges(caught):
            print(f"   nudge ({nudge.kind}): {nudge}")
        print(f"   records with it: {sum(1 for r in budgeted.records() if 'budget_alert' in r.nudges)} of 8")

        print("\n4. Escalated: warnings.simplefilter('error', tg.Nudge) refuses the nudged call")
        strict = tg.Guard(telemetry=False, nudges={"context_length_tokens": 500})
        client = strict.wrap(OpenAI(base_url=server.openai_base_url, api_key="offline", max_retries=0))
        before = server.request_count
        with warnings.catch_warnings():
            warnings.simplefilter("error", tg.Nudge)
            try:
                client.chat.completions.create(model="gpt-4o-mini", messages=LONG, max_tokens=20)
            except tg.Nudge as exc:
                print(f"   raised tg.Nudge ({exc.kind}); requests sent: {server.request_count - before}")
        [record] = strict.records()
        print(f"   recorded: status={record.status} cost={record.cost_usd} nudges={record.nudges}")

        print("\n5. Turned off")
        quiet = tg.Guard(telemetry=False, nudges=False)
        client = quiet.wrap(OpenAI(base_url=server.openai_base_url, api_key="offline", max_retries=0))
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            client.chat.completions.create(model="gpt-4o-mini", messages=LONG, max_tokens=20)
        print(
            f"   Guard(nudges=False): {len(caught_nudges(caught))} warnings, "
            f"record.nudges={list(quiet.records())[-1].nudges}"
        )
        logging.getLogger("tokenguard.nudge").setLevel(logging.WARNING)  # no more log lines below
        silenced = tg.Guard(telemetry=False, nudges={"context_length_tokens": 500})
        client = silenced.wrap(OpenAI(base_url=server.openai_base_url, api_key="offline", max_retries=0))
        with warnings.catch_warnings(record=True) as caught:
            warnings.filterwarnings("ignore", category=tg.Nudge)
            client.chat.completions.create(model="gpt-4o-mini", messages=LONG, max_tokens=20)
        print(
            f"   warnings ignored: {len(caught_nudges(caught))} warnings, "
            f"but record.nudges={list(silenced.records())[-1].nudges}"
        )


if __name__ == "__main__":
    main()
