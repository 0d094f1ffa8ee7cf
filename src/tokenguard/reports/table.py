"""One tabular shape for every report, rendered as a terminal table (``rich``), CSV or JSON.

Each report object has a ``table()`` method returning a :class:`Table`; the CLI and the dashboard
render those. Money stays ``Decimal`` up to the renderer: CSV and JSON carry it as an exact string.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any, Literal

__all__ = ["Column", "Table", "aware", "render", "window_title"]

Kind = Literal["text", "int", "usd", "pct", "float"]
Format = Literal["table", "csv", "json"]
UNATTRIBUTED = "(unattributed)"


@dataclass(frozen=True)
class Column:
    name: str
    kind: Kind = "text"


@dataclass
class Table:
    """A report as rows: ``total`` (when the report has one) is the exact sum of the rows."""

    title: str
    columns: Sequence[Column]
    rows: list[list[Any]] = field(default_factory=list)
    total: list[Any] | None = None
    notes: list[str] = field(default_factory=list)

    def records(self) -> list[dict[str, Any]]:
        """The rows as ``{column: value}`` mappings (the JSON shape)."""
        return [dict(zip((c.name for c in self.columns), row, strict=True)) for row in self.rows]


def aware(value: datetime | None) -> datetime | None:
    """A report's time bound, checked: timezone-aware, as everywhere in tokenguard."""
    if value is not None and value.tzinfo is None:
        raise ValueError(f"report times must be timezone-aware (e.g. datetime.now(timezone.utc)), got {value!r}")
    return value


def window_title(since: datetime | None, until: datetime | None) -> str:
    """``", <since> to <until>"`` for a report's title (empty for all time)."""
    if since is None and until is None:
        return ""
    a = since.isoformat(timespec="seconds") if since else "the start"
    b = until.isoformat(timespec="seconds") if until else "now"
    return f", {a} to {b}"


def _cell(value: Any, kind: Kind) -> str:
    if value is None:
        return "-" if kind != "text" else UNATTRIBUTED
    if kind == "usd":
        return f"${Decimal(value):,.6f}" if abs(Decimal(value)) < 100 else f"${Decimal(value):,.2f}"
    if kind == "pct":
        return f"{float(value):.1%}"
    if kind == "float":
        return f"{float(value):.3f}"
    if kind == "int":
        return f"{int(value):,}"
    return str(value)


def _plain(value: Any) -> Any:
    """JSON / CSV value: exact strings for money, plain numbers otherwise."""
    if isinstance(value, Decimal):
        return str(value)
    return value


def render(table: Table, fmt: Format = "table", *, width: int | None = None) -> str:
    """``table`` as text: a ``rich`` terminal table, CSV (header row, total row last, labelled
    ``TOTAL``) or JSON (``{"title", "columns", "rows", "total", "notes"}``)."""
    if fmt == "json":
        return json.dumps(
            {
                "title": table.title,
                "columns": [{"name": c.name, "kind": c.kind} for c in table.columns],
                "rows": [{c.name: _plain(v) for c, v in zip(table.columns, row, strict=True)} for row in table.rows],
                "total": None
                if table.total is None
                else {c.name: _plain(v) for c, v in zip(table.columns, table.total, strict=True)},
                "notes": table.notes,
            },
            indent=2,
        )
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow([c.name for c in table.columns])
        for row in table.rows:
            writer.writerow(["" if v is None else _plain(v) for v in row])
        if table.total is not None:
            writer.writerow(
                ["TOTAL" if i == 0 else ("" if v is None else _plain(v)) for i, v in enumerate(table.total)]
            )
        return out.getvalue()
    if fmt != "table":
        raise ValueError(f"format must be 'table', 'csv' or 'json', got {fmt!r}")
    from rich import box
    from rich.console import Console
    from rich.table import Table as RichTable

    rt = RichTable(title=table.title, box=box.SIMPLE_HEAVY, show_footer=table.total is not None, title_justify="left")
    for i, c in enumerate(table.columns):
        footer = ""
        if table.total is not None:
            footer = "TOTAL" if i == 0 else _cell(table.total[i], c.kind) if table.total[i] is not None else ""
        rt.add_column(c.name, justify="left" if c.kind == "text" else "right", footer=footer)
    for row in table.rows:
        rt.add_row(*(_cell(v, c.kind) for v, c in zip(row, table.columns, strict=True)))
    console = Console(file=io.StringIO(), width=width or 160, color_system=None, force_terminal=False)
    console.print(rt)
    for note in table.notes:
        console.print(note)
    return console.file.getvalue()  # type: ignore[attr-defined,no-any-return]
