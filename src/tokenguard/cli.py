"""The ``tokenguard`` command: reports over the ledger (showback and chargeback, outcomes, budgets,
exceptions, the leaderboard, anomalies, governance), the HTML dashboard, what-if simulation of a
policy, and ``tokenguard demo``. Every report command takes ``--format table|csv|json``.

The store is ``--store URI``, else the ``store`` of the policy file given by ``--config`` or the
``TOKENGUARD_CONFIG`` environment variable (which also gives budgets and exceptions).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import sys
from collections.abc import Callable, Sequence
from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .guard import Guard
    from .reports import Table

__all__ = ["main"]


class CLIError(Exception):
    """A problem with the command line or the store: printed without a traceback, exit status 2."""


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


def demo(args: argparse.Namespace) -> int:
    try:
        import anthropic  # noqa: F401
        import openai  # noqa: F401
    except ImportError as exc:
        raise CLIError(
            f"the demo needs both vendor SDKs ({exc.name} is missing): pip install 'tokenguard[all]'"
        ) from None
    from .reports import render
    from .testing import FakeLLMServer

    guard = _demo_guard()
    with FakeLLMServer() as server:
        _demo_workload(guard, server)
    reports = guard.reports
    calls = sum(1 for _ in guard.records())
    print(f"tokenguard demo: {calls} model calls by 5 teams, against the offline fake server\n")
    for by in (["team"], ["app"], ["model"], ["status"]):
        print(render(reports.spend(by).table(), args.format))
    print(render(reports.outcomes(["task"]).table(), args.format))
    print(render(reports.governance().table(), args.format))
    if args.format == "table":
        total = reports.spend(["team"]).total.cost_usd
        print(f"Total committed spend: ${total}  (guard.spend() = ${guard.spend(period='total')})")
    return 0


# -- the store and the time window ---------------------------------------------------------------


def _guard(args: argparse.Namespace) -> Guard:
    """The Guard whose ledger the command reads: ``--config`` / ``TOKENGUARD_CONFIG`` for the policy,
    ``--store`` for the store (wins over the file's)."""
    import tokenguard as tg

    config = args.config or os.environ.get("TOKENGUARD_CONFIG")
    overrides: dict[str, Any] = {"telemetry": False, "nudges": False}
    if args.store:
        overrides["store"] = args.store
    if config:
        path = Path(config)
        if not path.is_file():
            raise CLIError(
                f"policy file {config} does not exist (from {'--config' if args.config else 'TOKENGUARD_CONFIG'})"
            )
        guard = tg.Guard.from_file(path, **overrides)
        uri = overrides.get("store") or _file_store(path)
    elif args.store:
        guard = tg.Guard(**overrides)
        uri = args.store
    else:
        raise CLIError(
            "no store to read: pass --store sqlite:///path/to/tokenguard.db (or redis://...), or a policy file "
            "with --config / TOKENGUARD_CONFIG"
        )
    _check_store(uri)
    return guard


def _file_store(path: Path) -> str:
    from .config import load_guard_kwargs

    return str(load_guard_kwargs(path)["store"])


def _check_store(uri: str) -> None:
    """A reporting command reads an existing ledger: a missing SQLite file is an error, not a new
    empty store; ``memory://`` has nothing to report."""
    if uri.startswith("memory://"):
        raise CLIError("the store is memory:// (one process, nothing kept): reports need sqlite:/// or redis://")
    if uri.startswith("sqlite:"):
        from .stores.sqlite import parse_uri

        path, _ = parse_uri(uri)
        if not Path(path).is_file():
            raise CLIError(f"no ledger at {path} (from {uri}): check the path, or run the application first")
        if not os.access(path, os.R_OK):
            raise CLIError(f"the ledger {path} is not readable by this user")


_PERIODS = ("today", "yesterday", "this-week", "last-week", "this-month", "last-month", "last-7d", "last-30d", "all")


def _when(text: str | None, what: str) -> datetime | None:
    if text is None:
        return None
    try:
        if len(text) == 10:
            return datetime.combine(date.fromisoformat(text), time(), tzinfo=timezone.utc)
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise CLIError(f"{what} {text!r} is not a date (YYYY-MM-DD) or an ISO date-time") from None
    return value if value.tzinfo is not None else value.replace(tzinfo=timezone.utc)


def _window(args: argparse.Namespace) -> tuple[datetime | None, datetime | None]:
    """``--since`` / ``--until`` (UTC dates or date-times), or ``--period``; default: all time."""
    since, until = _when(args.since, "--since"), _when(args.until, "--until")
    period = args.period
    if period and (since or until):
        raise CLIError("give either --period or --since/--until, not both")
    if not period or period == "all":
        return since, until
    now = datetime.now(timezone.utc)
    today = datetime.combine(now.date(), time(), tzinfo=timezone.utc)
    month = today.replace(day=1)
    previous_month = (month - timedelta(days=1)).replace(day=1)
    monday = today - timedelta(days=today.weekday())
    return {
        "today": (today, None),
        "yesterday": (today - timedelta(days=1), today),
        "this-week": (monday, None),
        "last-week": (monday - timedelta(days=7), monday),
        "this-month": (month, None),
        "last-month": (previous_month, month),
        "last-7d": (now - timedelta(days=7), None),
        "last-30d": (now - timedelta(days=30), None),
    }[period]


def _keys(text: str) -> list[str]:
    keys = [k.strip() for k in text.split(",") if k.strip()]
    if not keys:
        raise CLIError("--by needs at least one key, e.g. --by team or --by team,month")
    return keys


def _check_keys_seen(guard: Guard, keys: Sequence[str], since: datetime | None, until: datetime | None) -> None:
    """An unknown group key (a tag no call in the window carries) is an error naming the keys seen."""
    from itertools import islice

    from .stores.base import CALL_FIELDS, TASK_FIELDS, group_key

    tags = [name for kind, name in (group_key(k, (*CALL_FIELDS, *TASK_FIELDS)) for k in keys) if kind == "tag"]
    if not tags:
        return
    seen: set[str] = set()
    any_call = False
    for r in islice(guard.records(since=since, until=until), 20_000):
        any_call = True
        seen.update(r.tags)
    unknown = [t for t in tags if t not in seen]
    if unknown and any_call:  # an empty window is reported as such by the report itself
        known = ", ".join(sorted(seen)) or "none"
        raise CLIError(
            f"no call in this window carries the tag(s) {', '.join(unknown)}; tags seen: {known}; "
            f"fields: {', '.join(CALL_FIELDS)}"
        )


def _emit(table: Table, args: argparse.Namespace) -> int:
    from .reports import render

    if not table.rows:
        print(f"{table.title}: nothing in this window", file=sys.stderr)
        return 1
    out = render(table, args.format)
    if args.output:
        Path(args.output).write_text(out, encoding="utf-8")
    else:
        sys.stdout.write(out if out.endswith("\n") else out + "\n")
    return 0


# -- commands ------------------------------------------------------------------------------------


def report(args: argparse.Namespace) -> int:
    from .reports import Allocation

    guard = _guard(args)
    since, until = _window(args)
    view = args.view
    if view == "governance":
        return _emit(guard.reports.governance(since=since, until=until).table(), args)
    by = _keys(args.by or ("task" if view == "outcomes" else "team"))
    _check_keys_seen(guard, by, since, until)
    if view == "outcomes":
        return _emit(guard.reports.outcomes(by, since=since, until=until).table(), args)
    allocations = []
    for rule in args.allocate or ():
        source, _, to = rule.partition(":")
        key, _, value = source.partition("=")
        if not (key and value and to):
            raise CLIError(f"--allocate {rule!r}: write TAG=VALUE:KEY, e.g. --allocate app=search:team")
        allocations.append(Allocation(source={key: value}, to=to))
    return _emit(guard.reports.spend(by, since=since, until=until, allocations=allocations).table(), args)


def budgets(args: argparse.Namespace) -> int:
    guard = _guard(args)
    if not guard.budgets:
        raise CLIError("the policy has no budgets: give a policy file with [[budgets]] (--config or TOKENGUARD_CONFIG)")
    return _emit(guard.reports.budgets().table(), args)


def exceptions(args: argparse.Namespace) -> int:
    guard = _guard(args)
    action = args.action
    try:
        if action == "grant":
            try:
                amount = Decimal(args.extra_usd)
            except InvalidOperation:
                raise CLIError(f"extra_usd {args.extra_usd!r} is not an amount in USD") from None
            expires = _when(args.expires, "--expires")
            assert expires is not None
            grant = guard.grant_exception(args.budget, amount, args.approved_by, args.reason, expires)
            print(f"granted {grant.id}: +${grant.extra_usd} on {grant.budget} until {grant.expires_at.isoformat()}")
            return 0
        if action == "revoke":
            grant = guard.revoke_exception(args.grant_id)
            print(f"revoked {grant.id} ({grant.budget}, +${grant.extra_usd})")
            return 0
    except (KeyError, ValueError) as exc:
        raise CLIError(str(exc.args[0] if isinstance(exc, KeyError) else exc)) from None
    return _emit(guard.reports.exceptions(args.budget).table(), args)


def leaderboard(args: argparse.Namespace) -> int:
    guard = _guard(args)
    since, until = _window(args)
    _check_keys_seen(guard, [args.by], since, until)
    return _emit(guard.reports.leaderboard(args.by, since=since, until=until, min_tasks=args.min_tasks).table(), args)


def anomalies(args: argparse.Namespace) -> int:
    guard = _guard(args)
    since, until = _window(args)
    by = _keys(args.by)
    _check_keys_seen(guard, by, since, until)
    table = guard.reports.anomalies(by, bucket=args.bucket, since=since, until=until).table()
    if not table.rows:
        print("no anomalies found in this window")
        return 0
    return _emit(table, args)


def dashboard(args: argparse.Namespace) -> int:
    from .reports.dashboard import write_dashboard

    guard = _guard(args)
    since, until = _window(args)
    write_dashboard(guard, args.out, since=since, until=until)
    print(f"wrote {args.out}")
    return 0


def simulate(args: argparse.Namespace) -> int:
    from .reports.simulate import simulate as run

    guard = _guard(args)
    since, until = _window(args)
    policy = Path(args.policy)
    if not policy.is_file():
        raise CLIError(f"policy file {policy} does not exist")
    report = run(guard, policy, since=since, until=until, progress=args.format == "table" and sys.stderr.isatty())
    return _emit(report.table(), args)


# -- the parser ----------------------------------------------------------------------------------

EXAMPLES = {
    "report": """examples:
  tokenguard report --store sqlite:///tokenguard.db --by team --period this-month
  tokenguard report --by team,model --since 2026-11-01 --until 2026-12-01 --format csv > spend.csv
  tokenguard report --by team --allocate app=search:team          # chargeback: shared app by team
  tokenguard report outcomes --by task,team                        # cost per successful task
  tokenguard report governance --period last-7d --format json""",
    "budgets": """examples:
  tokenguard budgets --config tokenguard.toml
  tokenguard budgets --format json""",
    "exceptions": """examples:
  tokenguard exceptions list --config tokenguard.toml
  tokenguard exceptions grant support 100 --approved-by cfo@acme.example --reason "launch week" --expires 2026-12-31
  tokenguard exceptions revoke 3f2a9c1d0b7e4a55""",
    "leaderboard": """examples:
  tokenguard leaderboard --by team --period this-month
  tokenguard leaderboard --by user --min-tasks 50 --format csv""",
    "anomalies": """examples:
  tokenguard anomalies --by team --bucket day --period last-30d
  tokenguard anomalies --by app,model --format json""",
    "dashboard": """examples:
  tokenguard dashboard --out report.html --period this-month""",
    "simulate": """examples:
  tokenguard simulate --policy stricter.toml --period last-month
  tokenguard simulate --policy new.toml --since 2026-11-01 --format json""",
    "demo": """examples:
  tokenguard demo
  tokenguard demo --format json""",
}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tokenguard",
        description="Govern your application's own LLM spend: reports over the ledger, budgets, exceptions, "
        "the leaderboard, anomalies, the dashboard and what-if simulation.",
        epilog="Each command has --help with examples. The store: --store URI, or the policy file of --config / "
        "TOKENGUARD_CONFIG.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, help: str, func: Callable[[argparse.Namespace], int], *, window: bool = True) -> Any:
        p = sub.add_parser(
            name,
            help=help,
            description=help,
            epilog=EXAMPLES[name],
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        p.set_defaults(func=func)
        p.add_argument("--store", help="the store URI (sqlite:///path.db, redis://host:port/db)")
        p.add_argument("--config", help="a tokenguard.toml policy file (default: $TOKENGUARD_CONFIG)")
        p.add_argument("--format", choices=("table", "csv", "json"), default="table", help="output format")
        p.add_argument("--output", "-o", help="write to this file instead of standard output")
        if window:
            p.add_argument("--since", help="from this UTC date or date-time (inclusive)")
            p.add_argument("--until", help="to this UTC date or date-time (exclusive)")
            p.add_argument("--period", choices=_PERIODS, help="a named window instead of --since/--until")
        return p

    p = command("report", "spend by any tag, model, provider, task or period; outcomes; governance", report)
    p.add_argument("view", nargs="?", choices=("spend", "outcomes", "governance"), default="spend")
    p.add_argument("--by", help="comma-separated keys: tag keys, model, provider, api, status, task, day, week, month")
    p.add_argument(
        "--allocate", action="append", metavar="TAG=VALUE:KEY", help="chargeback: spread that spend over KEY"
    )
    command(
        "budgets", "every budget: spent, reserved, cap with exceptions, state, projected spend", budgets, window=False
    )
    p = command("exceptions", "list, grant or revoke budget exceptions (audited)", exceptions, window=False)
    p.add_argument("action", nargs="?", choices=("list", "grant", "revoke"), default="list")
    p.add_argument("budget", nargs="?", help="(grant, list) the budget's name")
    p.add_argument("extra_usd", nargs="?", help="(grant) the extra USD")
    p.add_argument("grant_id", nargs="?", help="(revoke) the exception's id")
    p.add_argument("--approved-by", help="(grant) who approved it")
    p.add_argument("--reason", help="(grant) why")
    p.add_argument("--expires", help="(grant) when it ends: a UTC date or date-time")
    p = command("leaderboard", "rank teams, users or workflows by cost per accepted task and quality", leaderboard)
    p.add_argument("--by", default="team", help="a tag key (team, user, ...) or task")
    p.add_argument("--min-tasks", type=int, default=20, help="tasks needed before a group is ranked")
    p = command("anomalies", "spend spikes and failure bursts against each group's own baseline", anomalies)
    p.add_argument("--by", default="team", help="comma-separated keys")
    p.add_argument("--bucket", choices=("day", "week", "month"), default="day")
    p = command("dashboard", "write one self-contained HTML dashboard", dashboard)
    p.add_argument("--out", required=True, help="the HTML file to write")
    p = command("simulate", "replay the ledger under another policy file: what would it have done and cost", simulate)
    p.add_argument("--policy", required=True, help="the policy file to simulate")
    p = sub.add_parser(
        "demo",
        help="run an offline multi-team demonstration and print the reports",
        epilog=EXAMPLES["demo"],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--format", choices=("table", "csv", "json"), default="table")
    p.set_defaults(func=demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command == "exceptions" and args.action == "revoke":
        args.grant_id = args.budget  # `exceptions revoke ID`: the first positional is the id
    if args.command == "exceptions" and args.action == "grant":
        missing = [f for f in ("budget", "extra_usd", "approved_by", "reason", "expires") if not getattr(args, f)]
        if missing:
            parser.error(f"exceptions grant needs {', '.join(missing)} (see tokenguard exceptions --help)")
    func: Callable[[argparse.Namespace], int] = args.func
    from .errors import TokenguardError

    try:
        return func(args)
    except CLIError as exc:
        print(f"tokenguard: {exc}", file=sys.stderr)
        return 2
    except TokenguardError as exc:
        print(f"tokenguard: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
