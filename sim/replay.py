"""Re-simulate a recorded run and report where the tools' results diverge from the recording.

`python -m sim replay runs/<id>` runs the recorded scenario again in a fresh run directory.
Each agent gets its recorded model responses in order (no network, no key) while the tools
run for real, and a round-robin run follows the recorded turn order. Then every tool result
of the new run is compared with the recorded one of the same agent and tool_use id; the
first difference and the count go to `divergence.json` in the new run directory.

With `until=(agent, turn)` and `live=True` it is a fork: every agent replays what it had done
when that agent's turn was recorded, then carries on with the scenario's live models.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from sim.errors import RunError
from sim.events import read_events
from sim.models import make_model
from sim.models.base import Model
from sim.models.replay import ForkModel, ReplayModel
from sim.recording import Recording, load_recording
from sim.runner import Run, RunResult
from sim.scenario import AgentConfig

EXIT_DIVERGED = 3
Event = dict[str, Any]


def fork_turns(recording: Recording, agent: str, turn: int) -> dict[str, int]:
    """For each agent, how many of its turns had been recorded when `agent` took `turn`."""
    point = next(
        (e["seq"] for e in recording.responses(agent) if e["turn"] == turn),
        None,
    )
    if point is None:
        known = [e["turn"] for e in recording.responses(agent)]
        raise RunError(
            f"--until {agent}:{turn}: the recording has no such turn "
            f"({agent} has turns {known[:1]}..{known[-1:]})"
            if known
            else f"--until {agent}:{turn}: no agent named {agent!r} took a turn in this run"
        )
    counts: dict[str, int] = {}
    for e in recording.of_kind("model_response"):
        if e["seq"] <= point:
            counts[e["agent"]] = max(counts.get(e["agent"], 0), int(e["turn"]))
    return counts


@dataclass
class Divergence:
    agent: str
    turn: int
    tool: str
    command: str
    expected: str | None  # None: the recording has no such call
    actual: str | None  # None: the new run made no such call
    diff: str = ""


@dataclass
class Report:
    source: str
    replay: str
    compared: int
    divergences: list[Divergence] = field(default_factory=list)
    torn_line: str | None = None  # the recording's torn last line, dropped

    @property
    def first(self) -> Divergence | None:
        return self.divergences[0] if self.divergences else None

    def to_json(self) -> str:
        data = asdict(self)
        data["count"] = len(self.divergences)
        data["first"] = asdict(self.first) if self.first else None
        return json.dumps(data, indent=2, ensure_ascii=False)

    def summary(self) -> str:
        lines = []
        if self.torn_line is not None:
            lines.append("the recording's last line was torn by a crash and was dropped")
        d = self.first
        if d is None:
            matched = f"{self.compared} tool results, 0 divergences"
            lines.append(f"replay matches the recording: {matched}")
        else:
            lines += [
                f"{len(self.divergences)} divergence(s) in {self.compared} tool results.",
                f"first: agent {d.agent}, turn {d.turn}, {d.tool} {d.command}",
                d.diff or f"expected: {d.expected!r}\nactual:   {d.actual!r}",
            ]
        return "\n".join(lines)


def _normalise(text: str, run_dirs: list[str]) -> str:
    # Paths name the run directory, which differs between the recording and the replay.
    for run_dir in run_dirs:
        text = text.replace(run_dir, "<run>")
    return text


def compare(
    recording: Recording, new: list[Event], new_dir: Path, limits: Mapping[str, int]
) -> Report:
    """Compare tool results by (agent, tool_use_id); only turns within `limits` when given."""
    # Each directory as resolved (what the shells print) and as given; resolved once, here.
    dirs = [str(d.resolve()) for d in (recording.run_dir, new_dir)]
    dirs += [str(d) for d in (recording.run_dir, new_dir)]

    def results(events: list[Event]) -> dict[tuple[str, str], Event]:
        return {
            (e["agent"], e["tool_use_id"]): e
            for e in events
            if e["kind"] == "tool_result" and (not limits or e["turn"] <= limits.get(e["agent"], 0))
        }

    calls = {
        (e["agent"], e["tool_use_id"]): e for e in recording.events if e["kind"] == "tool_call"
    }
    calls.update({(e["agent"], e["tool_use_id"]): e for e in new if e["kind"] == "tool_call"})
    old_results, new_results = results(recording.events), results(new)
    report = Report(str(recording.run_dir), str(new_dir), compared=len(old_results))
    order = list(new_results) + [k for k in old_results if k not in new_results]
    for key in order:
        old, fresh = old_results.get(key), new_results.get(key)
        expected = _normalise(old["content"], dirs) if old else None
        actual = _normalise(fresh["content"], dirs) if fresh else None
        if expected == actual:
            continue
        call = calls.get(key, {})
        args = call.get("input", {})
        diff = "\n".join(
            difflib.unified_diff(
                (expected or "").splitlines(),
                (actual or "").splitlines(),
                "recorded",
                "replayed",
                lineterm="",
            )
        )
        report.divergences.append(
            Divergence(
                agent=key[0],
                turn=int((old or fresh or {}).get("turn", 0)),
                tool=call.get("name", "?"),
                command=str(args.get("command") or args.get("path") or json.dumps(args)),
                expected=expected,
                actual=actual,
                diff=diff,
            )
        )
    return report


async def resimulate(
    source: Path,
    *,
    runs_dir: Path,
    until: tuple[str, int] | None = None,
    live: bool = False,
    env: Mapping[str, str] | None = None,
    on_start: Any = None,
) -> tuple[RunResult, Report]:
    recording = load_recording(source)
    scenario = recording.scenario
    limits = fork_turns(recording, *until) if until else {}

    meta_dir = recording.meta.get("scenario_dir")
    scenario_dir = Path(meta_dir) if meta_dir else None

    def model_for(cfg: AgentConfig) -> Model:
        replay = ReplayModel(cfg.name, recording.responses(cfg.name))
        if not live:
            return replay
        live_model = make_model(cfg, scenario, scenario_dir, env or {}, run.client)
        return ForkModel(replay, live_model, limits.get(cfg.name, 0))

    run = Run(
        scenario,
        runs_dir=runs_dir,
        env=env,
        model_factory=model_for,
        on_start=on_start,
        round_orders=recording.round_orders() if not live else None,
        use_api=live,
    )
    result = await run.execute()
    new_events = read_events(result.run_dir / "events.jsonl").events
    report = compare(recording, new_events, result.run_dir, limits)
    report.torn_line = recording.torn_line
    (result.run_dir / "divergence.json").write_text(report.to_json() + "\n", encoding="utf-8")
    return result, report


def parse_until(text: str) -> tuple[str, int]:
    agent, sep, turn = text.rpartition(":")
    if not sep or not agent or not turn.isdigit() or int(turn) < 1:
        raise RunError(f"--until {text!r}: write it as AGENT:TURN, e.g. --until alice:3")
    return agent, int(turn)
