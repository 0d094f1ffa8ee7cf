"""The dashboard: one self-contained HTML file of the reports, for finance and for the teams.

:func:`build_dashboard` returns the document, :func:`write_dashboard` writes it to a file (what
``tokenguard dashboard --out report.html`` does). The page needs no server and no network when it
is opened: the CSS is inline, the charts are inline SVG drawn here, there is no script, no font and
no image to fetch (a Content-Security-Policy in the page forbids any). It reads without JavaScript,
with a screen reader (every chart has a title, a description and a table of its numbers next to it)
and on paper.

Sections: spend over time by team, spend by model class, cost per successful task by task type,
budget gauges with their alert / review / hard bands, exceptions (grants) by budget and status,
anomalies (highlighted in the spend chart too), the leaderboard, and what governance did.

Every number on the page comes from the report API (:class:`~tokenguard.reports.Reports`,
:func:`~tokenguard.reports.anomalies.find_anomalies`, :func:`~tokenguard.reports.leaderboard.leaderboard`)
and the element that shows it carries it machine-readably::

    <td data-metric="spend.team" data-key='["support"]' data-value="0.002115">$0.002115</td>

``data-key`` is the JSON list of the row's key (``null`` for unattributed), ``data-value`` the exact
value (money as the ``Decimal``'s string; no ``data-value`` when the report has none, e.g. the cost
per success of a task type that never succeeded). The metrics:

* ``spend.total`` / ``spend.calls`` / ``spend.input_tokens`` / ``spend.output_tokens`` /
  ``spend.error_calls`` / ``spend.blocked_calls`` / ``spend.unpriced_calls`` / ``spend.unattributed``
  (the spend no ``team`` tag claims) (key ``[]``);
  ``spend.team`` / ``spend.team.calls`` (key ``[team]``); ``spend.bucket_team`` (key
  ``[bucket, team]``; ``spend.bucket_other`` for the teams a crowded chart merges);
* ``spend.model`` (key ``[provider, model, operation]``) and ``spend.model_class`` (key ``[class]``);
* ``outcomes.tasks`` / ``.succeeded`` / ``.success_rate`` / ``.acceptance_rate`` / ``.cost`` /
  ``.cost_per_success`` (key ``[task]``);
* ``budget.state`` / ``.spent`` / ``.reserved`` / ``.limit`` / ``.cap`` / ``.projected`` (key ``[budget]``);
* ``exceptions.count`` (key ``[status]``), ``exceptions.budget_count`` (key ``[budget, status]``),
  ``exceptions.extra`` / ``exceptions.used`` (key ``[grant id]``);
* ``anomaly.value`` / ``anomaly.baseline`` / ``anomaly.score`` (key ``[kind, *group, when]``);
* ``leaderboard.rank`` / ``.tasks`` / ``.acceptance_rate`` / ``.cost_per_accepted`` /
  ``.compliance_rate`` / ``.tokens`` (key ``[group]``);
* ``governance.calls``, ``governance.downgrade_savings`` (key ``[]``) and ``governance.count``
  (key ``[area, what]``);
* ``budgets.attention`` (budgets not ``ok``) and ``anomalies.count`` (key ``[]``).

Model classes group the models that billed into ``frontier``, ``mid``, ``small`` and
``embedding`` by name (:data:`MODEL_CLASSES`, :func:`model_class`); pass ``classify=`` for your own.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from html import escape
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .table import UNATTRIBUTED

if TYPE_CHECKING:
    import os

    from ..guard import Guard
    from . import BudgetReport, ExceptionsReport, GovernanceReport, OutcomeReport, SpendReport
    from .anomalies import Anomaly, AnomalyReport
    from .leaderboard import Leaderboard

__all__ = ["CLASS_ORDER", "MODEL_CLASSES", "build_dashboard", "model_class", "write_dashboard"]

_ZERO = Decimal(0)
DASH = "\N{EN DASH}"  # a figure the report does not have

MODEL_CLASSES: tuple[tuple[str, str], ...] = (
    ("embedding", r"embed"),
    ("small", r"(?<![a-z])(?:mini|nano|lite|small|tiny)|haiku|3\.5-turbo|(?<![\d.])[1-9]b\b"),
    ("frontier", r"opus|gpt-5|gpt-4\.5|^o[1-9](?:-|$)|-pro\b|ultra|large"),
    ("mid", r"sonnet|gpt-4|flash|medium|mistral|llama|command|^o[1-9]"),
)
"""How :func:`model_class` names a model's class: the first pattern (a regular expression searched
in the lower-cased model name) that matches wins, in this order. ``small`` comes before
``frontier`` so that ``gpt-5-mini`` is small and ``gpt-5`` frontier. A model none of them matches is
``other``; an ``embeddings`` call is always ``embedding``."""

CLASS_ORDER = ("frontier", "mid", "small", "embedding", "other")
"""The order model classes are shown in (a custom ``classify`` may add classes: they follow)."""

_CLASS_PATTERNS = tuple((name, re.compile(pattern)) for name, pattern in MODEL_CLASSES)


def model_class(model: str, operation: str = "chat") -> str:
    """The class of ``model`` by :data:`MODEL_CLASSES`: ``"frontier"``, ``"mid"``, ``"small"``,
    ``"embedding"`` or ``"other"``. E.g. ``claude-opus-4-1`` and ``gpt-5`` are frontier,
    ``claude-sonnet-4-6`` and ``gpt-4o`` mid, ``gpt-4o-mini`` and ``claude-haiku-4-5`` small."""
    if operation == "embeddings":
        return "embedding"
    name = model.lower()
    for cls, pattern in _CLASS_PATTERNS:
        if pattern.search(name):
            return cls
    return "other"


# -- formatting and hooks --------------------------------------------------------------------------

PALETTE = ("#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#b07aa1", "#edc948", "#ff9da7", "#9c755f")
"""Series colours (Tableau 10 less its grey, which marks unattributed spend and merged groups)."""
GREY = "#9d9d9d"
MAX_SERIES = len(PALETTE)


def _e(value: object) -> str:
    """Text or attribute value, HTML-escaped (tag values can hold anything)."""
    return escape(str(value), quote=True)


def _label(value: str | None) -> str:
    return UNATTRIBUTED if value is None else value


def _money(value: Decimal | None) -> str:
    """Money as shown: to a millionth of a dollar below $100 (LLM calls are cheap), else cents."""
    if value is None:
        return DASH
    if not value.is_finite():
        return "unbounded"
    return f"${value:,.6f}" if abs(value) < 100 else f"${value:,.2f}"


def _stamp(t: datetime) -> str:
    """A time as UTC to the minute: ``2026-11-29 14:05``."""
    return t.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M")


def _pct(value: float | Decimal | None) -> str:
    return DASH if value is None else f"{float(value):.1%}"


def _int(value: int) -> str:
    return f"{value:,}"


def _plain(value: object) -> str:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, date):
        return value.isoformat()
    return str(value)


def _hook(metric: str, key: Sequence[str | None] = (), value: object = None) -> str:
    """The machine-readable attributes of an element that shows ``metric`` of row ``key``."""
    attrs = f' data-metric="{_e(metric)}" data-key="{_e(json.dumps(list(key)))}"'
    if value is not None:
        attrs += f' data-value="{_e(_plain(value))}"'
    return attrs


def _td(text: str, metric: str | None = None, key: Sequence[str | None] = (), value: object = None) -> str:
    """A numeric table cell (``text`` is already HTML)."""
    hook = _hook(metric, key, value) if metric else ""
    return f'<td class="num"{hook}>{text}</td>'


def _th_row(text: str) -> str:
    return f'<th scope="row">{_e(text)}</th>'


def _thead(*names: str, text: Sequence[int] = (0,)) -> str:
    """A header row; the columns but those in ``text`` hold numbers (right-aligned)."""
    cells = "".join(f'<th scope="col"{"" if i in text else " class=num"}>{_e(n)}</th>' for i, n in enumerate(names))
    return f"<thead><tr>{cells}</tr></thead>"


def _nice_step(top: float, ticks: int = 4) -> float:
    """A round axis step (1, 2, 2.5 or 5 times a power of ten) giving about ``ticks`` ticks up to ``top``."""
    if top <= 0:
        return 1.0
    raw = top / ticks
    magnitude = 10.0 ** math.floor(math.log10(raw))
    for m in (1, 2, 2.5, 5, 10):
        if m * magnitude >= raw:
            return m * magnitude
    return 10 * magnitude  # pragma: no cover - the loop always returns


def _axis_money(value: float, step: float) -> str:
    decimals = max(0, -math.floor(math.log10(step)) + (1 if str(step).rstrip("0").endswith("25") else 0))
    return f"${value:,.{decimals}f}"


def _f(x: float) -> str:
    """An SVG coordinate."""
    return f"{x:.2f}".rstrip("0").rstrip(".")


def _svg_open(name: str, width: int, height: int, title: str, desc: str) -> str:
    return (
        f'<svg class="chart" data-chart="{_e(name)}" viewBox="0 0 {width} {height}" role="img"'
        f' aria-labelledby="{name}-title {name}-desc">'
        f'<title id="{name}-title">{_e(title)}</title><desc id="{name}-desc">{_e(desc)}</desc>'
    )


def _hatch(pattern_id: str, colour: str) -> str:
    return (
        f'<pattern id="{pattern_id}" width="6" height="6" patternUnits="userSpaceOnUse"'
        f' patternTransform="rotate(45)"><rect width="6" height="6" fill="#fff"/>'
        f'<rect width="3" height="6" fill="{colour}"/></pattern>'
    )


# -- the page ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Section:
    id: str
    title: str
    body: str


def build_dashboard(
    guard: Guard,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    title: str = "tokenguard",
    classify: Callable[[str, str], str] | None = None,
    leaderboard_by: str = "team",
    leaderboard_min_tasks: int = 20,
    now: datetime | None = None,
) -> str:
    """The dashboard of ``guard``'s ledger as one self-contained HTML document.

    ``since`` (inclusive) / ``until`` (exclusive) bound the spend, outcomes, anomalies, leaderboard
    and governance sections; budgets show their current period and exceptions every grant.
    ``classify(model, operation) -> class`` replaces :func:`model_class`; ``leaderboard_by`` and
    ``leaderboard_min_tasks`` are :func:`~tokenguard.reports.leaderboard.leaderboard`'s ``by`` and
    ``min_tasks``; ``now`` is the time the budgets' projections and the grants' status are taken at.
    """
    from .anomalies import find_anomalies
    from .leaderboard import leaderboard

    now = now or datetime.now(timezone.utc)
    reports = guard.reports
    by_team = reports.spend(["team"], since=since, until=until)
    over_time, bucket = _spend_over_time(guard, since, until)
    by_model = reports.spend(["provider", "model", "operation"], since=since, until=until)
    outcomes = reports.outcomes(["task"], since=since, until=until)
    budgets = reports.budgets(now=now)
    exceptions = reports.exceptions(now=now)
    governance = reports.governance(since=since, until=until)
    anomalies = find_anomalies(guard, by=("team",), bucket="day", since=since, until=until)
    board = leaderboard(guard, by=leaderboard_by, since=since, until=until, min_tasks=leaderboard_min_tasks)

    sections = [
        _Section("spend-over-time", "Spend over time by team", _spend_section(by_team, over_time, bucket, anomalies)),
        _Section("spend-by-model-class", "Spend by model class", _model_section(by_model, classify or model_class)),
        _Section("cost-per-success", "Cost per successful task", _outcomes_section(outcomes)),
        _Section("budgets", "Budgets", _budgets_section(guard, budgets)),
        _Section("exceptions", "Exceptions", _exceptions_section(exceptions)),
        _Section("anomalies", "Anomalies", _anomalies_section(anomalies)),
        _Section("leaderboard", "Leaderboard", _leaderboard_section(board, leaderboard_by)),
        _Section("governance", "Governance", _governance_section(governance)),
    ]
    return _page(title, since, until, now, by_team, budgets, anomalies, sections)


def write_dashboard(guard: Guard, path: str | os.PathLike[str], **kw: Any) -> Path:
    """Write :func:`build_dashboard`\\ ``(guard, **kw)`` to ``path`` (UTF-8); returns the path."""
    out = Path(path)
    out.write_text(build_dashboard(guard, **kw), encoding="utf-8")
    return out


def _spend_over_time(guard: Guard, since: datetime | None, until: datetime | None) -> tuple[SpendReport, str]:
    """Spend by day and team; by week when the days span more than a quarter, by month past two years."""
    report = guard.reports.spend(["day", "team"], since=since, until=until)
    days = sorted(date.fromisoformat(r.key[0]) for r in report.rows if r.key[0])
    span = (days[-1] - days[0]).days if days else 0
    if span <= 92:
        return report, "day"
    if span <= 2 * 365:
        return guard.reports.spend(["week", "team"], since=since, until=until), "week"
    return guard.reports.spend(["month", "team"], since=since, until=until), "month"


def _window(since: datetime | None, until: datetime | None) -> str:
    if since is None and until is None:
        return "the whole ledger"
    a = since.isoformat(timespec="seconds") if since else "the start"
    b = until.isoformat(timespec="seconds") if until else "now"
    return f"{a} to {b}"


def _page(
    title: str,
    since: datetime | None,
    until: datetime | None,
    now: datetime,
    by_team: SpendReport,
    budgets: BudgetReport,
    anomalies: AnomalyReport,
    sections: Sequence[_Section],
) -> str:
    from .. import __version__

    t = by_team.total
    attention = sum(r.status.state != "ok" for r in budgets.rows)
    unattributed = next((r.cost_usd for r in by_team.rows if r.key == (None,)), _ZERO)
    kpis = [
        ("Total spend", _money(t.cost_usd), _hook("spend.total", (), t.cost_usd)),
        ("Calls", _int(t.calls), _hook("spend.calls", (), t.calls)),
        ("Input tokens", _int(t.input_tokens), _hook("spend.input_tokens", (), t.input_tokens)),
        ("Output tokens", _int(t.output_tokens), _hook("spend.output_tokens", (), t.output_tokens)),
        ("Unattributed spend", _money(unattributed), _hook("spend.unattributed", (), unattributed)),
        ("Failed calls", _int(t.error_calls), _hook("spend.error_calls", (), t.error_calls)),
        ("Refused calls", _int(t.blocked_calls), _hook("spend.blocked_calls", (), t.blocked_calls)),
        ("Budgets needing attention", f"{attention} of {len(budgets.rows)}", _hook("budgets.attention", (), attention)),
        ("Anomalies", _int(len(anomalies.rows)), _hook("anomalies.count", (), len(anomalies.rows))),
    ]
    if t.unpriced_calls:
        kpis.append(("Unpriced calls", _int(t.unpriced_calls), _hook("spend.unpriced_calls", (), t.unpriced_calls)))
    kpi_html = "".join(f'<div class="kpi"><dt>{_e(k)}</dt><dd{hook}>{v}</dd></div>' for k, v, hook in kpis)
    nav = "".join(f'<li><a href="#{s.id}">{_e(s.title)}</a></li>' for s in sections)
    body = "\n".join(
        f'<section id="{s.id}" aria-labelledby="{s.id}-h"><h2 id="{s.id}-h">{_e(s.title)}</h2>\n{s.body}</section>'
        for s in sections
    )
    notes = "".join(f"<li>{_e(n)}</li>" for n in by_team.notes)
    generated = _stamp(now) + " UTC"
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'; img-src data:">
<meta name="generator" content="tokenguard {_e(__version__)}">
<title>{_e(title)} · LLM spend report</title>
<link rel="icon" href="data:,">
<style>{_CSS}</style>
</head>
<body>
<header>
<h1>{_e(title)} <span class="sub">LLM spend report</span></h1>
<p class="meta">Window: <strong>{_e(_window(since, until))}</strong> · generated {_e(generated)} by tokenguard
{_e(__version__)} · every number comes from the ledger's reports; money is exact to the ledger.</p>
</header>
<nav aria-label="Sections"><ul>{nav}</ul></nav>
<main>
<section id="summary" aria-labelledby="summary-h"><h2 id="summary-h">Summary</h2>
<dl class="kpis">{kpi_html}</dl>
</section>
{body}
</main>
<footer>
<ul>{notes}<li>Spend is committed cost (<code>cost_usd</code>) of the calls in the window; budgets show their
current period. Times are UTC.</li></ul>
</footer>
</body>
</html>
"""


# -- spend over time -------------------------------------------------------------------------------


def _anomalous_cells(anomalies: AnomalyReport) -> set[tuple[str, str | None]]:
    """(bucket, team) pairs an anomaly points at, to highlight in the spend chart."""
    cells: set[tuple[str, str | None]] = set()
    for a in anomalies.rows:
        if a.when is not None and len(a.key) == 1:
            cells.add((a.when, a.key[0]))
    return cells


def _spend_section(by_team: SpendReport, over_time: SpendReport, bucket: str, anomalies: AnomalyReport) -> str:
    if not by_team.rows:
        return '<p class="empty">No calls in this window.</p>'
    # series: the dearest teams, each its colour; the rest merged; unattributed always its own, grey
    named = sorted((r for r in by_team.rows if r.key[0] is not None), key=lambda r: (-r.cost_usd, r.key[0] or ""))
    unattributed = [r for r in by_team.rows if r.key[0] is None]
    shown = named if len(named) <= MAX_SERIES else named[: MAX_SERIES - 1]
    merged = {r.key[0] for r in named[len(shown) :]}
    colours: dict[str | None, str] = {r.key[0]: PALETTE[i] for i, r in enumerate(shown)}
    series: list[tuple[str | None, str, str]] = [(r.key[0], _label(r.key[0]), colours[r.key[0]]) for r in shown]
    if merged:
        series.append(("\x00other", f"other teams ({len(merged)})", GREY))
    if unattributed:
        series.append((None, UNATTRIBUTED, "url(#spend-over-time-hatch)"))

    buckets = _continuous(sorted({r.key[0] or "" for r in over_time.rows}), bucket)
    cells: dict[tuple[str, str | None], Decimal] = {}
    for r in over_time.rows:
        b, team = r.key[0] or "", r.key[1]
        target = "\x00other" if team in merged else team
        cells[(b, target)] = cells.get((b, target), _ZERO) + r.cost_usd
    exact = {(r.key[0] or "", r.key[1]): r.cost_usd for r in over_time.rows}
    flagged = _anomalous_cells(anomalies)
    totals = {b: sum((v for (bb, _), v in cells.items() if bb == b), _ZERO) for b in buckets}
    chart = _stacked_bars(buckets, series, cells, exact, totals, flagged, bucket)

    legend = "".join(
        f'<li><span class="swatch{" hatched" if key is None else ""}" style="background:'
        f'{GREY if key is None else colour}"></span>{_e(name)}</li>'
        for key, name, colour in series
    )
    rows = []
    for r in [*named, *unattributed]:
        key = r.key[0]
        share = r.cost_usd / by_team.total.cost_usd if by_team.total.cost_usd else None
        rows.append(
            "<tr>"
            + _th_row(_label(key))
            + _td(_int(r.calls), "spend.team.calls", r.key, r.calls)
            + _td(_int(r.input_tokens + r.output_tokens))
            + _td(_money(r.cost_usd), "spend.team", r.key, r.cost_usd)
            + _td(_pct(share))
            + "</tr>"
        )
    t = by_team.total
    foot = (
        '<tfoot><tr><th scope="row">Total</th>'
        + _td(_int(t.calls))
        + _td(_int(t.input_tokens + t.output_tokens))
        + _td(_money(t.cost_usd), "spend.total", (), t.cost_usd)
        + _td(_pct(1 if t.cost_usd else None))
        + "</tr></tfoot>"
    )
    flagged_note = (
        '<p class="note"><span class="flag" aria-hidden="true">▲</span> marks a team and '
        f'{_e(bucket)} an anomaly points at (see <a href="#anomalies">Anomalies</a>).</p>'
        if any((b, s[0]) in flagged for b in buckets for s in series)
        else ""
    )
    return (
        f'<p class="lede">Committed spend per {_e(bucket)} (UTC), stacked by team: {len(named)} team(s)'
        f"{', and spend no team tag claims' if unattributed else ''}.</p>"
        f'<figure>{chart}<figcaption><ul class="legend" aria-label="Teams">{legend}</ul></figcaption></figure>'
        f"{flagged_note}"
        f'<div class="scroll"><table class="data"><caption>Spend by team</caption>'
        f"{_thead('Team', 'Calls', 'Tokens', 'Cost', 'Share')}<tbody>{''.join(rows)}</tbody>{foot}</table></div>"
    )


def _continuous(buckets: Sequence[str], bucket: str) -> list[str]:
    """Every bucket from the first to the last, so that quiet days keep their place on the axis."""
    if len(buckets) < 2:
        return list(buckets)
    if bucket == "month":
        (y, m), (y_end, m_end) = (tuple(map(int, b.split("-"))) for b in (buckets[0], buckets[-1]))
        out = []
        while (y, m) <= (y_end, m_end):
            out.append(f"{y:04d}-{m:02d}")
            y, m = (y + 1, 1) if m == 12 else (y, m + 1)
        return out
    step = timedelta(days=7 if bucket == "week" else 1)
    day, last = date.fromisoformat(buckets[0]), date.fromisoformat(buckets[-1])
    days = []
    while day <= last:
        days.append(day.isoformat())
        day += step
    return days


def _stacked_bars(
    buckets: Sequence[str],
    series: Sequence[tuple[str | None, str, str]],
    cells: Mapping[tuple[str, str | None], Decimal],
    exact: Mapping[tuple[str, str | None], Decimal],
    totals: Mapping[str, Decimal],
    flagged: set[tuple[str, str | None]],
    bucket: str,
) -> str:
    width, height = 1000, 300
    left, right, top, bottom = 78, 24, 18, 42
    plot_w, plot_h = width - left - right, height - top - bottom
    peak = float(max(totals.values(), default=_ZERO)) or 1.0
    step = _nice_step(peak)
    y_max = step * math.ceil(peak / step)
    slot = plot_w / max(len(buckets), 1)
    bar_w = min(slot * 0.72, 90)
    parts = [
        _svg_open(
            "spend-over-time",
            width,
            height,
            f"Spend per {bucket} by team",
            f"Stacked bars: one per {bucket} from {buckets[0]} to {buckets[-1]}, one segment per team.",
        ),
        f"<defs>{_hatch('spend-over-time-hatch', GREY)}</defs>",
    ]
    n_ticks = round(y_max / step)
    for i in range(n_ticks + 1):
        v = step * i
        y = top + plot_h - plot_h * v / y_max
        parts.append(
            f'<line class="grid" x1="{left}" x2="{width - right}" y1="{_f(y)}" y2="{_f(y)}"/>'
            f'<text class="axis" x="{left - 6}" y="{_f(y + 4)}" text-anchor="end">{_e(_axis_money(v, step))}</text>'
        )
    every = max(1, math.ceil(len(buckets) / 12))
    for i, b in enumerate(buckets):
        x = left + slot * i + (slot - bar_w) / 2
        y = top + plot_h
        parts.append(f'<g class="bar"{_hook("spend.bucket", [b], totals[b])}>')
        for key, name, colour in series:
            value = cells.get((b, key))
            if not value:
                continue
            h = plot_h * float(value) / y_max
            y -= h
            metric, hook_key = ("spend.bucket_other", [b]) if key == "\x00other" else ("spend.bucket_team", [b, key])
            mark = (b, key) in flagged
            parts.append(
                f'<rect x="{_f(x)}" y="{_f(y)}" width="{_f(bar_w)}" height="{_f(max(h, 0.0))}" fill="{colour}"'
                f"{' class=anomalous' if mark else ''}{_hook(metric, hook_key, exact.get((b, key), value))}>"
                f"<title>{_e(name)}, {_e(b)}: {_e(_money(value))}{' (anomaly)' if mark else ''}</title></rect>"
            )
            if mark:
                parts.append(f'<text class="flag" x="{_f(x + bar_w + 3)}" y="{_f(y + min(h, 14) / 2 + 5)}">▲</text>')
        parts.append("</g>")
        if i % every == 0:
            label = b[5:] if bucket != "month" else b
            parts.append(
                f'<text class="axis" x="{_f(x + bar_w / 2)}" y="{height - bottom + 16}" text-anchor="middle">'
                f"{_e(label)}</text>"
            )
    parts.append(
        f'<line class="baseline" x1="{left}" x2="{width - right}" y1="{top + plot_h}" y2="{top + plot_h}"/>'
        f'<text class="axis" x="{left + plot_w / 2}" y="{height - 6}" text-anchor="middle">'
        f"{_e(bucket)} (UTC{', ' + buckets[0][:4] if bucket != 'month' else ''})</text></svg>"
    )
    return "".join(parts)


# -- horizontal bars (model classes, cost per success, exceptions) -----------------------------------


@dataclass(frozen=True)
class _Bar:
    label: str
    value: Decimal | None
    text: str
    hook: str
    colour: str = PALETTE[0]
    note: str = ""


def _hbars(name: str, title: str, desc: str, bars: Sequence[_Bar]) -> str:
    width, row_h, left, right = 1000, 28, 200, 190
    height = row_h * len(bars) + 10
    peak = max((float(b.value) for b in bars if b.value is not None), default=0.0) or 1.0
    plot_w = width - left - right
    parts = [_svg_open(name, width, height, title, desc), f"<defs>{_hatch(name + '-hatch', GREY)}</defs>"]
    for i, b in enumerate(bars):
        y = 5 + i * row_h
        label = b.label if len(b.label) <= 28 else b.label[:27] + "…"
        parts.append(
            f'<text class="label" x="{left - 8}" y="{_f(y + row_h / 2 + 4)}" text-anchor="end">{_e(label)}'
            f"<title>{_e(b.label)}</title></text>"
        )
        if b.value is None:
            parts.append(
                f'<text class="value muted" x="{left}" y="{_f(y + row_h / 2 + 4)}"{b.hook}>{_e(b.note)}</text>'
            )
            continue
        w = max(plot_w * float(b.value) / peak, 1.0 if b.value else 0.0)
        parts.append(
            f'<rect x="{left}" y="{_f(y + 4)}" width="{_f(w)}" height="{row_h - 8}" fill="{b.colour}"{b.hook}>'
            f"<title>{_e(b.label)}: {b.text}</title></rect>"
            f'<text class="value" x="{_f(left + w + 6)}" y="{_f(y + row_h / 2 + 4)}">{b.text}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def _model_section(by_model: SpendReport, classify: Callable[[str, str], str]) -> str:
    if not by_model.rows:
        return '<p class="empty">No calls in this window.</p>'
    classes: dict[str, Decimal] = {}
    members: dict[str, list[Any]] = {}
    for r in by_model.rows:
        provider, model, operation = r.key
        cls = classify(model or "", operation or "")
        classes[cls] = classes.get(cls, _ZERO) + r.cost_usd
        members.setdefault(cls, []).append(r)
    order = sorted(classes, key=lambda c: (CLASS_ORDER.index(c) if c in CLASS_ORDER else len(CLASS_ORDER), c))
    total = by_model.total.cost_usd
    bars = [
        _Bar(
            c,
            classes[c],
            f"{_e(_money(classes[c]))} ({_e(_pct(classes[c] / total if total else None))})",
            _hook("spend.model_class", [c], classes[c]),
            PALETTE[i % len(PALETTE)],
        )
        for i, c in enumerate(order)
    ]
    chart = _hbars(
        "spend-by-model-class", "Spend by model class", "One bar per model class: its committed spend.", bars
    )
    rows = []
    for c in order:
        for j, r in enumerate(sorted(members[c], key=lambda r: -r.cost_usd)):
            provider, model, operation = r.key
            rows.append(
                "<tr>"
                + (
                    f'<th scope="rowgroup" rowspan="{len(members[c])}"{_hook("spend.model_class", [c], classes[c])}'
                    f'>{_e(c)}<br><span class="muted">{_e(_money(classes[c]))}</span></th>'
                    if j == 0
                    else ""
                )
                + f"<td>{_e(_label(model))}</td><td>{_e(_label(provider))}</td><td>{_e(_label(operation))}</td>"
                + _td(_int(r.calls))
                + _td(_int(r.input_tokens + r.output_tokens))
                + _td(_money(r.cost_usd), "spend.model", r.key, r.cost_usd)
                + "</tr>"
            )
    return (
        '<p class="lede">The models that billed, grouped by class: <em>frontier</em> (e.g. Opus, GPT-5, o3, '
        "Gemini Pro), <em>mid</em> (Sonnet, GPT-4o, GPT-4.1, Gemini Flash), <em>small</em> (Haiku and the "
        "mini, nano and lite models), <em>embedding</em>; anything else is <em>other</em>.</p>"
        f"<figure>{chart}</figure>"
        f'<div class="scroll"><table class="data"><caption>Spend by model</caption>'
        f"{_thead('Class', 'Model', 'Provider', 'Operation', 'Calls', 'Tokens', 'Cost', text=(0, 1, 2, 3))}"
        f"<tbody>{''.join(rows)}</tbody></table></div>"
    )


def _outcomes_section(outcomes: OutcomeReport) -> str:
    if not outcomes.rows:
        return '<p class="empty">No finished tasks in this window: cost per success needs tasks (tg.task).</p>'
    rows = sorted(outcomes.rows, key=lambda r: (r.cost_per_success is None, -(r.cost_per_success or 0), r.key))
    bars = []
    for r in rows:
        name = _label(r.key[0])
        cps = r.cost_per_success
        note = f"no successful task ({_money(r.cost_usd)} spent on {r.tasks})"
        bars.append(
            _Bar(
                name,
                cps,
                _e(_money(cps)),
                _hook("outcomes.cost_per_success", r.key, cps),
                PALETTE[0] if cps is not None else GREY,
                note,
            )
        )
    chart = _hbars(
        "cost-per-success",
        "Cost per successful task by task type",
        "One bar per task type: all its cost, failed tasks included, over its successful tasks.",
        bars,
    )
    body = []
    for r in rows:
        body.append(
            "<tr>"
            + _th_row(_label(r.key[0]))
            + _td(_int(r.tasks), "outcomes.tasks", r.key, r.tasks)
            + _td(_int(r.succeeded), "outcomes.succeeded", r.key, r.succeeded)
            + _td(_pct(r.success_rate), "outcomes.success_rate", r.key, r.success_rate)
            + _td(
                _pct(r.acceptance_rate) + (f' <span class="muted">of {r.reviewed}</span>' if r.reviewed else ""),
                "outcomes.acceptance_rate",
                r.key,
                r.acceptance_rate,
            )
            + _td(_money(r.cost_usd), "outcomes.cost", r.key, r.cost_usd)
            + _td(_money(r.cost_per_success), "outcomes.cost_per_success", r.key, r.cost_per_success)
            + _td(DASH if r.tokens_per_success is None else _int(round(r.tokens_per_success)))
            + "</tr>"
        )
    return (
        '<p class="lede">What a <em>successful</em> task costs, per task type: all of the type\'s cost, failed '
        "tasks included, over its successes. Lower is better; a type without successes has no bar.</p>"
        f"<figure>{chart}</figure>"
        f'<div class="scroll"><table class="data"><caption>Outcomes by task type</caption>'
        + _thead("Task", "Tasks", "Succeeded", "Success rate", "Accepted", "Cost", "Cost / success", "Tokens / success")
        + f"<tbody>{''.join(body)}</tbody></table></div>"
    )


# -- budgets -----------------------------------------------------------------------------------------


def _budgets_section(guard: Guard, budgets: BudgetReport) -> str:
    if not budgets.rows:
        return '<p class="empty">No budgets are configured.</p>'
    policies = {b.name: b for b in guard.budgets}
    cards: list[str] = []
    for r in budgets.rows:
        s = r.status
        key = [s.name]
        policy = policies.get(s.name)
        bands = (float(policy.alert_at), float(policy.review_at), float(policy.hard_at)) if policy else (0.8, 1.0, 1.2)
        period = (
            "total (no period)"
            if s.period_start is None or s.period_end is None
            else f"{s.period_start.date().isoformat()} to {s.period_end.date().isoformat()} (exclusive)"
        )
        used = s.spent_usd / s.limit_usd if s.limit_usd else None
        projected = (
            f"{_money(r.projected_usd)} <span class=muted>({_e(r.projected_state)})</span>"
            if r.projected_usd is not None
            else DASH
        )
        cards.append(
            f'<article class="gauge state-{_e(s.state)}" aria-labelledby="budget-{len(cards)}-h">'
            f'<h3 id="budget-{len(cards)}-h">{_e(s.name)} '
            f'<span class="badge"{_hook("budget.state", key, s.state)}>{_e(s.state)}</span></h3>'
            f"{_gauge(len(cards), s.name, s.spent_usd, s.reserved_usd, s.limit_usd, s.cap_usd, bands)}"
            '<dl class="facts">'
            f"<div><dt>Spent</dt><dd{_hook('budget.spent', key, s.spent_usd)}>{_money(s.spent_usd)}"
            f" <span class=muted>({_pct(used)} of limit)</span></dd></div>"
            f"<div><dt>Reserved</dt><dd{_hook('budget.reserved', key, s.reserved_usd)}>"
            f"{_money(s.reserved_usd)}</dd></div>"
            f"<div><dt>Limit</dt><dd{_hook('budget.limit', key, s.limit_usd)}>{_money(s.limit_usd)}</dd></div>"
            f"<div><dt>Cap</dt><dd{_hook('budget.cap', key, s.cap_usd)}>{_money(s.cap_usd)}</dd></div>"
            f"<div><dt>Projected</dt><dd{_hook('budget.projected', key, r.projected_usd)}>{projected}</dd></div>"
            f"<div><dt>Period</dt><dd>{_e(period)}</dd></div>"
            "</dl></article>"
        )
    return (
        '<p class="lede">Each budget\'s current period: spent (solid) and reserved by calls in flight (hatched) '
        "against its bands: alert, review and the hard cap (green, amber, orange, red from the cap). The "
        "dashed line is the cap with active exceptions.</p>"
        f'<div class="gauges">{"".join(cards)}</div>'
    )


def _gauge(
    i: int, name: str, spent: Decimal, reserved: Decimal, limit: Decimal, cap: Decimal, bands: tuple[float, ...]
) -> str:
    alert, review, hard = bands
    width, height, pad = 320, 62, 12
    cap_ratio = float(cap / limit) if limit else hard
    top = max(hard * 1.25, cap_ratio * 1.08)
    plot_w = width - 2 * pad
    chart_id = f"budget-gauge-{i}"

    def x(ratio: float) -> float:
        return pad + plot_w * min(max(ratio, 0.0), top) / top

    spent_ratio = float(spent / limit) if limit else (math.inf if spent else 0.0)
    reserved_ratio = float((spent + reserved) / limit) if limit else spent_ratio
    parts = [
        _svg_open(
            chart_id,
            width,
            height,
            f"Budget {name}",
            f"Spent {_pct(spent_ratio) if limit else _money(spent)} of the limit; alert at {alert:.0%}, "
            f"review at {review:.0%}, hard cap at {hard:.0%}"
            + (f", {cap_ratio:.0%} with exceptions." if abs(cap_ratio - hard) > 1e-9 else "."),
        ),
        f"<defs>{_hatch(chart_id + '-hatch', '#1a202c')}</defs>",
    ]
    for lo, hi, cls, label in (
        (0.0, alert, "band-ok", "ok"),
        (alert, review, "band-alert", "alert"),
        (review, hard, "band-review", "review"),
        (hard, top, "band-hard", "over the hard cap"),
    ):
        parts.append(
            f'<rect class="{cls}" x="{_f(x(lo))}" y="6" width="{_f(max(x(hi) - x(lo), 0))}" height="26">'
            f"<title>{_e(label)}: {lo:.0%} to {hi:.0%} of the limit</title></rect>"
        )
    parts.append(
        f'<rect class="spent" x="{pad}" y="12" width="{_f(max(x(spent_ratio) - pad, 0))}" height="14"'
        f"{_hook('budget.spent', [name], spent)}><title>spent {_e(_money(spent))}</title></rect>"
    )
    if reserved > 0:
        parts.append(
            f'<rect x="{_f(x(spent_ratio))}" y="12" width="{_f(max(x(reserved_ratio) - x(spent_ratio), 1))}"'
            f' height="14" fill="url(#{chart_id}-hatch)"><title>reserved {_e(_money(reserved))}</title></rect>'
        )
    if spent_ratio > top:
        parts.append(
            f'<text class="overflow" x="{_f(width - pad - 3)}" y="23" text-anchor="end">'
            f"{_e(_pct(spent_ratio) if math.isfinite(spent_ratio) else 'over')} ▶</text>"
        )
    ticks = [(0.0, "0"), (alert, f"{alert:.0%}"), (review, f"{review:.0%}"), (hard, f"{hard:.0%}")]
    if abs(cap_ratio - hard) > 1e-9:
        ticks.append((cap_ratio, f"cap {cap_ratio:.0%}"))
        parts.append(f'<line class="cap" x1="{_f(x(cap_ratio))}" x2="{_f(x(cap_ratio))}" y1="2" y2="36"/>')
    # labels that would overlap the previous one drop to a second row (then are left to the tooltips)
    rows_end = [-math.inf, -math.inf]
    for ratio, label in sorted(ticks):
        at = x(ratio)
        half = 3.5 * len(label)
        parts.append(f'<line class="tick" x1="{_f(at)}" x2="{_f(at)}" y1="32" y2="37"/>')
        for row, y in enumerate((48, 59)):
            if at - half >= rows_end[row] + 3:
                anchor = "start" if ratio == 0 else "middle"
                parts.append(f'<text class="axis" x="{_f(at)}" y="{y}" text-anchor="{anchor}">{_e(label)}</text>')
                rows_end[row] = at + (2 * half if ratio == 0 else half)
                break
    parts.append("</svg>")
    return "".join(parts)


# -- exceptions --------------------------------------------------------------------------------------

_GRANT_STATUSES = ("active", "expired", "revoked")
_GRANT_COLOURS = {"active": PALETTE[0], "expired": GREY, "revoked": PALETTE[3]}


def _exceptions_section(exceptions: ExceptionsReport) -> str:
    counts = {s: sum(r.status == s for r in exceptions.rows) for s in _GRANT_STATUSES}
    tiles = "".join(
        f'<div class="kpi"><dt>{_e(s)}</dt><dd{_hook("exceptions.count", [s], counts[s])}>{counts[s]}</dd></div>'
        for s in _GRANT_STATUSES
    )
    if not exceptions.rows:
        return (
            f'<dl class="kpis small">{tiles}</dl>'
            '<p class="empty">No exceptions were granted: every budget held its own cap.</p>'
        )
    per_budget: dict[str, dict[str, int]] = {}
    for r in exceptions.rows:
        per_budget.setdefault(r.budget, dict.fromkeys(_GRANT_STATUSES, 0))[r.status] += 1
    chart = _exception_bars(per_budget)
    body = "".join(
        "<tr>"
        + f"<td><code>{_e(r.id)}</code></td><td>{_e(r.budget)}</td>"
        + _td(_money(r.extra_usd), "exceptions.extra", [r.id], r.extra_usd)
        + _td(_money(r.used_usd), "exceptions.used", [r.id], r.used_usd)
        + f"<td>{_e(r.approved_by)}</td><td>{_e(r.reason)}</td>"
        + f"<td>{_e(_stamp(r.created_at))}</td><td>{_e(_stamp(r.expires_at))}</td>"
        + f'<td class="status-{_e(r.status)}">{_e(r.status)}</td></tr>'
        for r in exceptions.rows
    )
    return (
        '<p class="lede">Approved, time-boxed raises of budgets\' hard caps: who approved what, why, and how '
        "much of it the spend used.</p>"
        f'<dl class="kpis small">{tiles}</dl>'
        f"<figure>{chart}</figure>"
        f'<div class="scroll"><table class="data"><caption>The exceptions audit</caption>'
        + _thead(
            "Grant",
            "Budget",
            "Extra",
            "Used",
            "Approved by",
            "Reason",
            "Granted",
            "Expires",
            "Status",
            text=(0, 1, 4, 5, 6, 7, 8),
        )
        + f"<tbody>{body}</tbody></table></div>"
    )


def _exception_bars(per_budget: Mapping[str, Mapping[str, int]]) -> str:
    width, row_h, left, right = 1000, 26, 200, 60
    height = row_h * len(per_budget) + 34
    peak = max(sum(c.values()) for c in per_budget.values())
    unit = (width - left - right) / peak
    parts = [
        _svg_open(
            "exceptions-by-budget",
            width,
            height,
            "Exceptions by budget and status",
            "One stacked bar per budget: its active, expired and revoked exceptions.",
        )
    ]
    for i, (budget, counts) in enumerate(sorted(per_budget.items())):
        y = 4 + i * row_h
        x = float(left)
        label = budget if len(budget) <= 28 else budget[:27] + "…"
        parts.append(
            f'<text class="label" x="{left - 8}" y="{_f(y + row_h / 2 + 4)}" text-anchor="end">{_e(label)}</text>'
        )
        for status in _GRANT_STATUSES:
            n = counts[status]
            if not n:
                continue
            parts.append(
                f'<rect x="{_f(x)}" y="{y + 4}" width="{_f(unit * n)}" height="{row_h - 8}"'
                f' fill="{_GRANT_COLOURS[status]}"{_hook("exceptions.budget_count", [budget, status], n)}>'
                f"<title>{_e(budget)}: {n} {_e(status)}</title></rect>"
            )
            x += unit * n
        parts.append(f'<text class="value" x="{_f(x + 6)}" y="{_f(y + row_h / 2 + 4)}">{sum(counts.values())}</text>')
    y = 4 + len(per_budget) * row_h + 16
    x = float(left)
    for status in _GRANT_STATUSES:
        parts.append(
            f'<rect x="{_f(x)}" y="{y - 10}" width="12" height="12" fill="{_GRANT_COLOURS[status]}"/>'
            f'<text class="axis" x="{_f(x + 16)}" y="{y}">{_e(status)}</text>'
        )
        x += 90
    parts.append("</svg>")
    return "".join(parts)


# -- anomalies ---------------------------------------------------------------------------------------


_ANOMALY_TITLES = {
    "spend_spike": "Spend spike",
    "failure_burst": "Burst of failed calls",
    "high_spend_low_success": "High spend, low success",
}


def _anomaly_value(a: Anomaly, value: float) -> str:
    """A spike's value and baseline are USD; a burst's error rates; the last kind's success rates."""
    if a.kind == "spend_spike":
        return f"${value:,.6f}" if abs(value) < 100 else f"${value:,.2f}"
    return _pct(value)


def _anomalies_section(anomalies: AnomalyReport) -> str:
    if not anomalies.rows and not anomalies.notes:
        return '<p class="empty">No anomalies in this window.</p>'
    by = ", ".join(anomalies.by)
    items = []
    for a in anomalies.rows:
        key = [a.kind, *a.key, a.when]
        group = ", ".join(_label(k) for k in a.key)
        when = f" · {a.when}" if a.when else ""
        items.append(
            f'<li class="anomaly kind-{_e(a.kind)}">'
            f'<p class="what"><span class="flag" aria-hidden="true">▲</span> '
            f"<strong>{_e(_ANOMALY_TITLES.get(a.kind, a.kind))}</strong> · {_e(by)} {_e(group)}{_e(when)}</p>"
            f"<p>{_e(a.message)}</p>"
            '<dl class="facts">'
            f"<div><dt>Seen</dt><dd{_hook('anomaly.value', key, a.value)}>{_anomaly_value(a, a.value)}</dd></div>"
            f"<div><dt>Usual</dt><dd{_hook('anomaly.baseline', key, a.baseline)}>"
            f"{_anomaly_value(a, a.baseline)}</dd></div>"
            f"<div><dt>Score</dt><dd{_hook('anomaly.score', key, a.score)}>{a.score:.1f}</dd></div>"
            "</dl></li>"
        )
    notes = "".join(f"<li>{_e(n)}</li>" for n in anomalies.notes)
    return (
        f'<p class="lede">What stands out, each {_e(by)} judged against its own history per {_e(anomalies.bucket)} '
        "(robust statistics, not one fixed threshold): spend spikes, bursts of failed calls, high spend with "
        "low success.</p>"
        + (f'<ul class="anomalies" role="list">{"".join(items)}</ul>' if items else "")
        + (f'<ul class="notes">{notes}</ul>' if notes else "")
    )


# -- leaderboard -------------------------------------------------------------------------------------


def _ci(ci: tuple[Any, Any] | None, fmt: Callable[[Any], str]) -> str:
    """A 95% interval under its figure."""
    if ci is None:
        return ""
    return f'<span class="ci" title="95% interval">{fmt(ci[0])} to {fmt(ci[1])}</span>'


def _leaderboard_section(board: Leaderboard, by: str) -> str:
    if not board.rows:
        return '<p class="empty">No finished tasks in this window to rank.</p>'
    body = []
    for r in board.rows:
        key = [r.key]
        rank = DASH if r.rank is None else str(r.rank)
        body.append(
            f'<tr class="{"ranked" if r.rank is not None else "unranked"}">'
            + _td(rank, "leaderboard.rank", key, r.rank)
            + _th_row(_label(r.key))
            + _td(_int(r.tasks), "leaderboard.tasks", key, r.tasks)
            + _td(f"{_int(r.accepted)} of {_int(r.reviewed)}")
            + _td(
                _pct(r.acceptance_rate) + _ci(r.acceptance_ci, _pct),
                "leaderboard.acceptance_rate",
                key,
                r.acceptance_rate,
            )
            + _td(
                _money(r.cost_per_accepted) + _ci(r.cost_per_accepted_ci, _money),
                "leaderboard.cost_per_accepted",
                key,
                r.cost_per_accepted,
            )
            + _td(_pct(r.compliance_rate), "leaderboard.compliance_rate", key, r.compliance_rate)
            + _td(_money(r.cost_usd))
            + _td(_int(r.tokens), "leaderboard.tokens", key, r.tokens)
            + f'<td class="muted">{_e(r.note or "")}</td>'
            + "</tr>"
        )
    return (
        f'<p class="lede">{_e(by.capitalize())}s ranked by efficiency and quality: cost per accepted task, '
        "acceptance rate and compliance, with their uncertainty (the ranges). A group needs a minimum number "
        "of reviewed tasks before it is ranked. Token volume is shown for context and never ranks anyone.</p>"
        + "".join(f'<p class="note">{_e(n)}</p>' for n in board.notes)
        + f'<div class="scroll"><table class="data leaderboard"><caption>Leaderboard by {_e(by)}</caption>'
        + _thead(
            "Rank",
            by.capitalize(),
            "Tasks",
            "Accepted",
            "Acceptance",
            "Cost / accepted",
            "Compliance",
            "Cost",
            "Tokens",
            "Note",
            text=(1, 9),
        )
        + f"<tbody>{''.join(body)}</tbody></table></div>"
    )


# -- governance --------------------------------------------------------------------------------------


def _governance_section(g: GovernanceReport) -> str:
    rows: list[tuple[str, str, int]] = []
    rows += [("sensitive data", f"{kind} ({action})", n) for (kind, action), n in sorted(g.sensitive.items())]
    rows += [("refused before sending", d, n) for d, n in sorted(g.blocked.items())]
    rows += [("high-risk, no approval", u, n) for u, n in sorted(g.unapproved_high_risk.items())]
    rows += [("routed", reason, n) for reason, n in sorted(g.routed.items())]
    rows += [("nudges", kind, n) for kind, n in sorted(g.nudges.items())]
    facts = (
        f'<dl class="kpis small"><div class="kpi"><dt>Calls governed</dt>'
        f"<dd{_hook('governance.calls', (), g.calls)}>{_int(g.calls)}</dd></div>"
        f'<div class="kpi"><dt>Saved by downgrades</dt>'
        f"<dd{_hook('governance.downgrade_savings', (), g.downgrade_savings_usd)}>"
        f"{_money(g.downgrade_savings_usd)}</dd></div></dl>"
    )
    if not rows:
        return facts + '<p class="empty">Governance took no action in this window.</p>'
    body = "".join(
        f"<tr><td>{_e(area)}</td><td>{_e(what)}</td>{_td(_int(n), 'governance.count', [area, what], n)}</tr>"
        for area, what, n in rows
    )
    return (
        '<p class="lede">What the policy did: sensitive data found, calls refused and why, routing, nudges.</p>'
        + facts
        + '<div class="scroll"><table class="data"><caption>Governance actions</caption>'
        + _thead("Area", "What", "Count", text=(0, 1))
        + f"<tbody>{body}</tbody></table></div>"
    )


_CSS = """
:root{color-scheme:light;--fg:#1a202c;--muted:#5a6475;--line:#d9dee7;--bg:#fff;--panel:#f6f8fb;--accent:#2b6cb0}
*{box-sizing:border-box}
body{margin:0;font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif;
color:var(--fg);background:var(--bg)}
header,nav,main,footer{max-width:1120px;margin:0 auto;padding:0 20px}
header{padding-top:20px}
h1{font-size:1.6rem;margin:0 0 4px}h1 .sub{font-weight:400;color:var(--muted);font-size:1.1rem}
h2{font-size:1.25rem;margin:0 0 6px;padding-top:8px;border-top:2px solid var(--line)}
h3{font-size:1rem;margin:0 0 6px}
.meta,.lede,.note,.muted,footer{color:var(--muted)}.meta{margin:0 0 8px}
nav ul{list-style:none;display:flex;flex-wrap:wrap;gap:4px 14px;padding:0;margin:8px 0 4px}
nav a{color:var(--accent);text-decoration:none}nav a:hover,nav a:focus{text-decoration:underline}
section{margin:22px 0 30px}
figure{margin:10px 0}
.scroll{overflow-x:auto}
svg.chart{display:block;width:100%;height:auto;max-width:100%}
svg text{font:12px system-ui,-apple-system,"Segoe UI",Roboto,Arial,sans-serif;fill:var(--fg)}
svg .axis{fill:var(--muted);font-size:11px}svg .value{font-size:12px}svg .muted{fill:var(--muted);font-style:italic}
svg .grid{stroke:#e6e9ef;stroke-width:1}svg .baseline{stroke:#8a94a6;stroke-width:1}
svg .tick{stroke:#5a6475}svg .cap{stroke:#1a202c;stroke-width:2;stroke-dasharray:4 3}
svg rect.anomalous{stroke:#c53030;stroke-width:2.5}
svg .flag,.flag{fill:#c53030;color:#c53030}
svg .band-ok{fill:#c6f6d5}svg .band-alert{fill:#fefcbf}svg .band-review{fill:#feebc8}svg .band-hard{fill:#fed7d7}
svg .spent{fill:#2d3748}svg .overflow{fill:#fff;font-weight:700;font-size:11px}
.legend{list-style:none;display:flex;flex-wrap:wrap;gap:4px 16px;padding:0;margin:6px 0 0;font-size:.9rem}
.swatch{display:inline-block;width:12px;height:12px;margin-right:6px;vertical-align:-1px;border-radius:2px}
.swatch.hatched{background-image:repeating-linear-gradient(45deg,#fff 0 2px,transparent 2px 4px)!important}
.kpis{display:grid;grid-template-columns:repeat(auto-fill,minmax(170px,1fr));gap:10px;margin:8px 0}
.kpi{background:var(--panel);border:1px solid var(--line);border-radius:8px;padding:10px 12px}
.kpi dt{color:var(--muted);font-size:.85rem}.kpi dd{margin:2px 0 0;font-size:1.3rem;font-weight:600;
font-variant-numeric:tabular-nums}
.kpis.small .kpi dd{font-size:1.1rem}
table.data{border-collapse:collapse;width:100%;margin:10px 0;font-size:.9rem;font-variant-numeric:tabular-nums}
table.data caption{text-align:left;font-weight:600;padding:4px 0;color:var(--fg)}
table.data th,table.data td{padding:5px 8px;border-bottom:1px solid var(--line);text-align:left;vertical-align:top}
table.data thead th{border-bottom:2px solid #b8c0cc;font-weight:600}
table.data .num{text-align:right;white-space:nowrap}
table.data tfoot th,table.data tfoot td{font-weight:700;border-top:2px solid #b8c0cc}
table.data th[scope=rowgroup]{background:var(--panel)}
.ci{display:block;color:var(--muted);font-size:.8rem}
tr.unranked{color:var(--muted)}
.gauges{display:grid;grid-template-columns:repeat(auto-fill,minmax(300px,1fr));gap:14px}
.gauge{border:1px solid var(--line);border-left:6px solid #2e7d32;border-radius:8px;padding:10px 12px}
.gauge.state-alert{border-left-color:#b7791f}.gauge.state-review{border-left-color:#c05621}
.gauge.state-exceeded{border-left-color:#c53030}
.badge{display:inline-block;font-size:.75rem;font-weight:700;text-transform:uppercase;letter-spacing:.04em;
padding:1px 8px;border-radius:10px;color:#fff;background:#2e7d32;vertical-align:2px}
.state-alert .badge{background:#975a16}.state-review .badge{background:#c05621}
.state-exceeded .badge{background:#c53030}
.facts{display:grid;grid-template-columns:repeat(auto-fill,minmax(140px,1fr));gap:2px 12px;margin:6px 0 0;
font-size:.9rem}
.facts dt{color:var(--muted);font-size:.8rem}.facts dd{margin:0;font-variant-numeric:tabular-nums}
.anomalies{list-style:none;padding:0;margin:0;display:grid;gap:10px}
.anomaly{border:1px solid #feb2b2;border-left:6px solid #c53030;background:#fff5f5;border-radius:8px;padding:8px 12px}
.anomaly p{margin:2px 0}
.status-active{color:#2b6cb0;font-weight:600}.status-revoked{color:#c53030}.status-expired{color:var(--muted)}
.empty{padding:10px 12px;background:var(--panel);border-radius:8px;color:var(--muted)}
code{font-size:.85em;background:var(--panel);padding:0 3px;border-radius:3px;word-break:break-all}
footer{border-top:2px solid var(--line);margin-top:30px;padding-bottom:30px;font-size:.85rem}
@media print{
body{font-size:10.5pt}nav{display:none}
*{-webkit-print-color-adjust:exact;print-color-adjust:exact}
section,figure,.gauge,.anomaly,tr{break-inside:avoid}
h2{break-after:avoid}
a{color:inherit;text-decoration:none}
header,main,footer{max-width:none;padding:0}
}
"""
