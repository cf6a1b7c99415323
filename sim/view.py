"""The terminal: a live table while a run goes, and a summary table at its end (rich)."""

from __future__ import annotations

from rich.console import Console
from rich.live import Live
from rich.table import Table

from sim.tally import RunTally


def _cost(value: float | None) -> str:
    return "unknown" if value is None else f"${value:.4f}"


def live_table(tally: RunTally, title: str) -> Table:
    table = Table(title=title, expand=False)
    for column in ("agent", "status", "turn", "last command"):
        table.add_column(column, overflow="ellipsis", no_wrap=True, max_width=60)
    rows = list(tally.agents.values())
    shown = rows[:40]  # a terminal shows only so much; the summary lists everyone
    for t in shown:
        table.add_row(t.name, t.end_reason or t.status, str(t.turns), t.last_command[:60])
    if len(rows) > len(shown):
        ended = sum(1 for t in rows if t.end_reason)
        table.caption = f"… and {len(rows) - len(shown)} more agents ({ended} of {len(rows)} ended)"
    return table


def summary_table(tally: RunTally, title: str) -> Table:
    table = Table(title=title)
    columns = ("agent", "turns", "commands", "failed", "lock waits", "tokens", "cost", "end")
    for column in columns:
        table.add_column(column, justify="left" if column in ("agent", "end") else "right")
    for t in tally.agents.values():
        table.add_row(
            t.name,
            str(t.turns),
            str(t.commands),
            str(t.failed_commands),
            str(t.lock_waits),
            str(t.tokens),
            _cost(t.cost_usd),
            t.end_reason or "?",
        )
    table.caption = f"run total: {tally.total_tokens} tokens, {_cost(tally.total_cost)}"
    return table


def end_messages(tally: RunTally) -> list[str]:
    """One line per agent that ended with a message (errors), for under the summary."""
    return [f"{t.name}: {t.message}" for t in tally.agents.values() if t.message]


class LiveView:
    """A rich Live display refreshed a few times a second; a no-op when disabled."""

    def __init__(self, console: Console, enabled: bool) -> None:
        self.console = console
        self.enabled = enabled
        self._live: Live | None = None
        self._tally: RunTally | None = None
        self._title = ""

    def attach(self, tally: RunTally, title: str) -> None:
        self._tally, self._title = tally, title
        if self.enabled:
            self._live = Live(
                get_renderable=lambda: live_table(tally, title),
                console=self.console,
                refresh_per_second=4,
                transient=True,
            )
            self._live.start()

    def stop(self) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None
