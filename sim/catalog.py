"""`python -m sim runs`: one row per run directory, from meta.json (and the log if needed)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from sim.budget import usage_tokens
from sim.errors import LogError
from sim.events import read_events
from sim.workspace import load_meta


@dataclass(frozen=True)
class RunRow:
    run_id: str
    scenario: str
    status: str
    start: str
    duration: float | None
    agents: int
    tokens: int | None
    cost_usd: float | None


def _from_log(run_dir: Path) -> tuple[float | None, int]:
    """Duration and tokens of a run that never wrote its totals (killed): read the log."""
    path = run_dir / "events.jsonl"
    if not path.exists():
        return None, 0
    events = read_events(path).events
    tokens = 0
    for e in events:
        if e["kind"] == "model_response":
            tokens += usage_tokens(e.get("usage") or {})
    return (events[-1]["t"] if events else None), tokens


def writer_alive(meta: dict[str, object]) -> bool:
    """Is the process that writes the run (meta.json's pid) still there? True if unknown."""
    pid = meta.get("pid")
    return not isinstance(pid, int) or Path(f"/proc/{pid}").exists()


def list_runs(runs_dir: Path) -> list[RunRow]:
    """One row per run directory (one with a meta.json or an events.jsonl); what cannot be
    read shows as "?", so one damaged run does not hide the others."""
    found = {p.parent for name in ("meta.json", "events.jsonl") for p in runs_dir.glob(f"*/{name}")}
    return [_row(run_dir) for run_dir in sorted(found)]


def _row(run_dir: Path) -> RunRow:
    meta = load_meta(run_dir)
    duration, tokens = meta.get("duration"), meta.get("tokens")
    status = str(meta.get("status", "?"))
    if duration is None:
        try:
            duration, tokens = _from_log(run_dir)
        except LogError:
            duration, tokens = None, None
        if status == "running" and not writer_alive(meta):
            status = "killed"  # its process is gone without writing how it ended
    try:
        start = datetime.fromisoformat(str(meta["start"])).strftime("%Y-%m-%d %H:%M:%S")
    except (KeyError, ValueError):
        start = "?"
    agents, cost = meta.get("agents"), meta.get("cost_usd")
    return RunRow(
        run_id=run_dir.name,
        scenario=str(meta.get("scenario", "?")),
        status=status,
        start=start,
        duration=duration if isinstance(duration, int | float) else None,
        agents=len(agents) if isinstance(agents, list) else 0,
        tokens=tokens if isinstance(tokens, int) else None,
        cost_usd=cost if isinstance(cost, int | float) else None,
    )
