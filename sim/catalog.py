"""`python -m sim runs`: one row per run directory, from meta.json (and the log if needed)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from sim.budget import usage_tokens
from sim.events import read_events


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
    rows = []
    for meta_path in sorted(runs_dir.glob("*/meta.json")):
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        duration, tokens = meta.get("duration"), meta.get("tokens")
        status = meta.get("status", "?")
        if duration is None:
            duration, tokens = _from_log(meta_path.parent)
            if status == "running" and not writer_alive(meta):
                status = "killed"  # its process is gone without writing how it ended
        rows.append(
            RunRow(
                run_id=meta_path.parent.name,
                scenario=meta.get("scenario", "?"),
                status=status,
                start=datetime.fromisoformat(meta["start"]).strftime("%Y-%m-%d %H:%M:%S")
                if meta.get("start")
                else "?",
                duration=duration,
                agents=len(meta.get("agents", [])),
                tokens=tokens,
                cost_usd=meta.get("cost_usd"),
            )
        )
    return rows
