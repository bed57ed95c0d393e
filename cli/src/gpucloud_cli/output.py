"""How commands print: `--json` writes exactly one JSON document to stdout and nothing else
(no progress, no prompts on stdout); human output is rich tables on stdout, progress and
notes on stderr. rich is imported only when something human is printed."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console

_consoles: dict[bool, Console] = {}
WIDE_OUTPUT = 200


def emit_json(document: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(document, indent=2, ensure_ascii=False) + "\n")
    sys.stdout.flush()


def console(stderr: bool = False) -> Console:
    """rich's console on stdout (or stderr). Made per stream object, so a test runner's
    swapped streams are honoured."""
    stream = sys.stderr if stderr else sys.stdout
    found = _consoles.get(stderr)
    if found is None or found.file is not stream:
        from rich.console import Console

        found = Console(file=stream, highlight=False, soft_wrap=False)
        if not found.is_terminal and "COLUMNS" not in os.environ:
            # a pipe or a file: do not cut tables at rich's 80-column default
            found.width = WIDE_OUTPUT
        _consoles[stderr] = found
    return found


def note(message: str) -> None:
    """A human remark on stderr (never in --json mode: callers check)."""
    console(stderr=True).print(message)


def table(
    columns: Sequence[str],
    rows: Iterable[Sequence[Any]],
    *,
    title: str | None = None,
    empty: str = "nothing to show",
) -> None:
    from rich import box
    from rich.table import Table

    rows = list(rows)
    if not rows:
        console().print(f"[dim]{empty}[/dim]")
        return
    t = Table(title=title, box=box.SIMPLE_HEAD, title_justify="left", pad_edge=False)
    for column in columns:
        t.add_column(column, justify="right" if column.startswith("#") else "left")
    for row in rows:
        t.add_row(*("-" if v is None else str(v) for v in row))
    console().print(t)


def fields(pairs: Iterable[tuple[str, Any]], *, title: str | None = None) -> None:
    """A two-column key/value table."""
    from rich import box
    from rich.table import Table

    t = Table(title=title, box=box.SIMPLE, show_header=False, title_justify="left")
    t.add_column(style="bold")
    t.add_column()
    for key, value in pairs:
        t.add_row(key, "-" if value is None or value == "" else str(value))
    console().print(t)


def render_error(error: Any, as_json: bool) -> None:
    """An error as problem+json would tell it: title, detail, the fields it names."""
    if as_json:
        emit_json({"error": error.to_json()})
        return
    from rich.markup import escape

    out = console(stderr=True)
    detail = getattr(error, "detail", None)
    field_errors = getattr(error, "errors", None) or []
    restated = "; ".join(f"{e.field}: {e.message}" for e in field_errors)
    line = f"[bold red]Error:[/bold red] {escape(error.title)}"
    if detail and detail != error.title and detail != restated:
        line += f": {escape(detail)}"
    out.print(line)
    for field_error in field_errors:
        out.print(f"  [bold]{escape(field_error.field)}[/bold]: {escape(field_error.message)}")
    hint = getattr(error, "hint", None)
    if hint:
        out.print(f"  [yellow]{escape(hint)}[/yellow]")
    trace_id = getattr(error, "trace_id", None)
    if trace_id:
        out.print(f"  [dim]trace id {trace_id}[/dim]")
