"""Following an allocation through its states (docs/state-machines.md, Allocation) until it
reaches the state a command waits for, or one from which it cannot get there.

gpuaas has no push channel for allocation states, so this polls `GET .../allocations/{id}`
(every 0.25 s; a launch takes about 100 ms to run on the devstack). The display is a live
list of the states seen with their times on a terminal, one line per change otherwise,
and nothing with --json (the history is in the document instead)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gpucloud_cli.sdk.models import Allocation

POLL_S = 0.25
# waiting for running: every state after which an allocation can no longer run
NOT_RUNNING_ANY_MORE = frozenset({"rejected", "failed", "releasing", "released", "release_failed"})
NOT_RELEASED_ANY_MORE = frozenset({"release_failed"})
# the state a command waits for -> the states that end the wait without it
GIVES_UP = {"running": NOT_RUNNING_ANY_MORE, "released": NOT_RELEASED_ANY_MORE}


def first_entry(allocation: Allocation) -> dict[str, Any]:
    """The history of an allocation not followed: the state it was answered in."""
    return {"state": allocation.state, "reason": allocation.reason, "seconds": 0.0}


class Follow:
    def __init__(
        self,
        fetch: Callable[[], Allocation],
        *,
        until: frozenset[str],
        gives_up: frozenset[str],
        timeout_s: float,
        display: bool,
        label: str,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.fetch, self.until, self.gives_up = fetch, until, gives_up
        self.timeout_s, self.display, self.label = timeout_s, display, label
        self.clock, self.sleep = clock, sleep
        self.history: list[dict[str, Any]] = []
        self._started = clock()

    def _record(self, allocation: Allocation) -> bool:
        if self.history and self.history[-1]["state"] == allocation.state:
            return False
        seconds = round(self.clock() - self._started, 3)
        self.history.append({**first_entry(allocation), "seconds": seconds})
        return True

    def done(self, allocation: Allocation) -> bool:
        return allocation.state in self.until or allocation.state in self.gives_up

    def run(self, first: Allocation) -> tuple[Allocation, bool]:
        """The last allocation seen, and whether it reached `until` (False: it gave up or
        the time ran out)."""
        self._record(first)
        if not self.display:
            return self._loop(first, lambda: None)
        from rich.live import Live

        from gpucloud_cli.output import console

        out = console(stderr=True)
        if not out.is_terminal:
            self._print_line(out, first)
            return self._loop(first, lambda: self._print_line(out, self._last))
        with Live(self._render(), console=out, refresh_per_second=8, transient=False) as live:
            return self._loop(first, lambda: live.update(self._render()))

    def _loop(self, allocation: Allocation, changed: Callable[[], None]) -> tuple[Allocation, bool]:
        self._last = allocation
        while not self.done(allocation):
            if self.clock() - self._started > self.timeout_s:
                return allocation, False
            self.sleep(POLL_S)
            allocation = self.fetch()
            self._last = allocation
            if self._record(allocation):
                changed()
        return allocation, allocation.state in self.until

    def _print_line(self, out: Any, allocation: Allocation) -> None:
        entry = self.history[-1]
        reason = f" ({entry['reason']})" if entry["reason"] else ""
        out.print(f"{self.label}: {entry['state']}{reason} after {entry['seconds']:.1f}s")

    def _render(self) -> Any:
        from rich.spinner import Spinner
        from rich.table import Table

        grid = Table.grid(padding=(0, 1))
        for i, entry in enumerate(self.history):
            last = i == len(self.history) - 1
            finished = entry["state"] in self.until | self.gives_up
            mark: Any = "[green]✓[/green]"
            if last and not finished:
                mark = Spinner("dots")
            elif last and entry["state"] in self.gives_up:
                mark = "[red]✗[/red]"
            reason = f" [dim]({entry['reason']})[/dim]" if entry["reason"] else ""
            grid.add_row(mark, f"{entry['state']}{reason}", f"[dim]{entry['seconds']:.1f}s[/dim]")
        return grid
