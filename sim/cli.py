"""`python -m sim ...`: run, validate, schema, replay, resume, show, runs and report.

Errors a user can fix (a bad scenario, a missing key) print one clear message and exit 2,
never a traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import sys
from collections.abc import Callable
from pathlib import Path

import trio
from rich.console import Console
from rich.table import Table

from sim import catalog, replay, transcript
from sim.environment import scrubbed_env
from sim.errors import RunError, SimError
from sim.events import Payload
from sim.models import check_policies
from sim.procenv import hide_from_children
from sim.resume import plan_resume
from sim.runner import Run, RunResult
from sim.scenario import json_schema, load_scenario
from sim.view import LiveView, end_messages, summary_table
from sim.workspace import load_meta

EXIT_USAGE = 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m sim", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run a scenario")
    run.add_argument("scenario", type=Path)
    run.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a scenario key, e.g. --set limits.max_turns=5 --set agents.0.replicas=32",
    )
    run.add_argument("--runs-dir", type=Path, default=Path("runs"), help="default: ./runs")
    run.add_argument("--quiet", action="store_true", help="print only the run directory")

    validate = sub.add_parser("validate", help="check a scenario file")
    validate.add_argument("scenario", type=Path)
    validate.add_argument("--set", dest="overrides", action="append", default=[])

    sub.add_parser("schema", help="print the scenario JSON Schema")

    replay = sub.add_parser("replay", help="re-simulate a recorded run (or --playback its events)")
    replay.add_argument("run_dir", type=Path)
    replay.add_argument("--playback", action="store_true", help="print events, touch no shell")
    replay.add_argument("--speed", type=float, default=1.0, help="playback speed; 0: instant")
    replay.add_argument("--until", metavar="AGENT:TURN", help="replay up to this turn, then...")
    replay.add_argument("--then", choices=["live"], help="...carry on with the live models")
    replay.add_argument("--runs-dir", type=Path, default=None, help="default: beside the run")
    replay.add_argument("--quiet", action="store_true")

    show = sub.add_parser("show", help="print a run's transcript")
    show.add_argument("run_dir", type=Path)
    show.add_argument("--agent", help="only this agent")
    show.add_argument("--kind", action="append", help="only these event kinds (repeatable)")
    show.add_argument("--by-agent", action="store_true", help="group per agent, not by time")
    show.add_argument("--follow", action="store_true", help="keep printing a live run")

    resume = sub.add_parser("resume", help="go on with a run that was killed partway")
    resume.add_argument("run_dir", type=Path)
    resume.add_argument("--quiet", action="store_true", help="print only the run directory")

    runs = sub.add_parser("runs", help="list runs")
    runs.add_argument("--runs-dir", type=Path, default=Path("runs"))
    report = sub.add_parser("report", help="write a run's self-contained HTML report")
    report.add_argument("run_dir", type=Path, help="the run directory, e.g. runs/<run-id>")
    report.add_argument("--output", "-o", type=Path, help="default: <run_dir>/report.html")
    return parser


def _harness_env() -> dict[str, str]:
    """The environment the harness works with. Agents' shells are our children: keep the
    secrets in this copy and out of /proc/<us>/environ (see sim.procenv)."""
    env = dict(os.environ)
    hide_from_children(set(env) - set(scrubbed_env(env, home=Path.home())))
    return env


def cmd_run(args: argparse.Namespace, console: Console) -> int:
    scenario = load_scenario(args.scenario, args.overrides)
    env = _harness_env()
    view = LiveView(console, enabled=console.is_terminal and not args.quiet)

    def started(run: Run) -> None:
        view.attach(run.tally, f"{scenario.name} — {run.run_dir}")

    async def main() -> RunResult:
        run = Run(
            scenario,
            runs_dir=args.runs_dir,
            scenario_dir=args.scenario.resolve().parent,
            env=env,
            on_start=started,
        )
        return await run.execute()

    try:
        result = trio.run(main)
    finally:
        view.stop()
    return _report(result, scenario.name, console, args.quiet)


def _report(result: RunResult, name: str, console: Console, quiet: bool) -> int:
    """The end of a run in the terminal: the summary table (or only the path), and the code."""
    if quiet:
        print(result.run_dir)
    else:
        console.print(summary_table(result.tally, f"{name}: {result.status}"))
        for line in end_messages(result.tally):
            console.print(line, style="red", markup=False, highlight=False)
        console.print(f"run directory: {result.run_dir}")
    if result.status != "completed":
        print(f"run {result.status}: {result.reason}", file=sys.stderr)
    return result.exit_code


def cmd_playback(args: argparse.Namespace) -> int:
    events, torn = transcript.load(args.run_dir)
    transcript.playback(transcript.select(events), args.speed, lambda line: print(line, flush=True))
    if torn:
        print("(the log's last line was torn by a crash and is not shown)", file=sys.stderr)
    return 0


def cmd_replay(args: argparse.Namespace, console: Console) -> int:
    if not (args.speed == 0 or 1e-6 <= args.speed < math.inf):  # nan fails both
        raise RunError(
            f"--speed {args.speed:g}: give 0 (no pauses) or a factor of 1e-6 or more "
            "(2: twice as fast)"
        )
    if args.playback:
        return _into_pipe(lambda: cmd_playback(args))
    if bool(args.until) != bool(args.then):
        raise RunError("--until AGENT:TURN and --then live go together")
    until = replay.parse_until(args.until) if args.until else None
    runs_dir = args.runs_dir or args.run_dir.resolve().parent
    view = LiveView(console, enabled=console.is_terminal and not args.quiet)

    async def main() -> tuple[RunResult, replay.Report]:
        return await replay.resimulate(
            args.run_dir,
            runs_dir=runs_dir,
            until=until,
            live=bool(args.then),
            env=_harness_env(),
            on_start=lambda run: view.attach(run.tally, f"replay of {args.run_dir.name}"),
        )

    try:
        result, report = trio.run(main)
    finally:
        view.stop()
    print(result.run_dir if args.quiet else f"replay run directory: {result.run_dir}")
    print(report.summary(), file=sys.stderr if args.quiet else sys.stdout)
    if result.status != "completed":
        print(f"replay {result.status}: {result.reason}", file=sys.stderr)
        return result.exit_code
    return replay.EXIT_DIVERGED if report.divergences else 0


def cmd_resume(args: argparse.Namespace, console: Console) -> int:
    plan = plan_resume(args.run_dir)
    if plan.torn_line is not None:
        print(
            f"the log's last line was torn by the crash and was dropped: {plan.torn_line[:120]!r}",
            file=sys.stderr,
        )
    meta_dir = plan.meta.get("scenario_dir")  # where the policies beside the scenario are
    view = LiveView(console, enabled=console.is_terminal and not args.quiet)

    async def main() -> RunResult:
        run = Run(
            plan.scenario,
            runs_dir=plan.run_dir.parent,
            scenario_dir=Path(meta_dir) if meta_dir else plan.run_dir,
            env=_harness_env(),
            resume=plan,
            on_start=lambda run: view.attach(run.tally, f"resumed {plan.run_dir.name}"),
        )
        return await run.execute()

    try:
        result = trio.run(main)
    finally:
        view.stop()
    return _report(result, plan.scenario.name, console, args.quiet)


def _into_pipe(command: Callable[[], int]) -> int:
    """Run a command that only prints; a reader that stops early (`| head`) ends it quietly."""
    try:
        return command()
    except BrokenPipeError:
        # Python would report the pipe again when it flushes stdout at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


def cmd_schema() -> int:
    print(json.dumps(json_schema(), indent=2))
    return 0


def _check_show_filters(args: argparse.Namespace, first: dict[str, object] | None) -> None:
    """RunError for a --kind no event has, or an --agent the run does not have (`first` is
    the log's first event, run_start): a filter that can match nothing is a typo, and would
    print nothing without saying why."""
    unknown = sorted(set(args.kind or ()) - set(Payload.registry))
    if unknown:
        kinds = ", ".join(sorted(Payload.registry))
        raise RunError(f"--kind {', '.join(unknown)}: no such event kind; the kinds are {kinds}")
    agents = first.get("agents") if first and first.get("kind") == "run_start" else None
    if args.agent and isinstance(agents, list) and args.agent not in agents:
        names = ", ".join(map(str, agents))
        raise RunError(f"--agent {args.agent}: no agent of that name; this run has {names}")


def cmd_show(args: argparse.Namespace) -> int:
    kinds = args.kind or None
    if args.follow:
        log = args.run_dir / "events.jsonl"
        with contextlib.suppress(OSError, ValueError), log.open(encoding="utf-8") as f:
            _check_show_filters(args, json.loads(f.readline()))  # (if it has logged yet)
        calls_shown = kinds is None or "tool_call" in kinds

        def emit(event: dict[str, object]) -> None:
            if transcript.select([event], args.agent, kinds):
                line = transcript.format_event(event, calls_shown=calls_shown)
                if line:
                    print(line, flush=True)

        meta = load_meta(args.run_dir)  # read once: its pid is the writer's
        if not transcript.follow(log, emit, writer_alive=lambda: catalog.writer_alive(meta)):
            print("(the run's process is gone: it ended without logging its end)", file=sys.stderr)
        return 0
    events, torn = transcript.load(args.run_dir)
    _check_show_filters(args, events[0] if events else None)
    for line in transcript.transcript(transcript.select(events, args.agent, kinds), args.by_agent):
        print(line)
    if torn:
        print("(the log's last line was torn by a crash and is not shown)", file=sys.stderr)
    return 0


def cmd_runs(args: argparse.Namespace, console: Console) -> int:
    if not args.runs_dir.is_dir():
        raise RunError(f"{args.runs_dir}: no such directory; --runs-dir names where runs are")
    table = Table(title=f"runs in {args.runs_dir}")
    for column in ("run", "scenario", "status", "start", "duration", "agents", "tokens", "cost"):
        table.add_column(column)
    for row in catalog.list_runs(args.runs_dir):
        table.add_row(
            row.run_id,
            row.scenario,
            row.status,
            row.start,
            "?" if row.duration is None else f"{row.duration:.1f}s",
            str(row.agents),
            "?" if row.tokens is None else str(row.tokens),
            "unknown" if row.cost_usd is None else f"${row.cost_usd:.4f}",
        )
    console.print(table)
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    # Imported here, not at the top: analysis pulls in pandas and matplotlib (about a second
    # of start-up, and sim itself must never depend on them), so only `report` pays for it.
    from analysis import RunLoadError, load_run
    from analysis.report import save_report

    try:
        run = load_run(args.run_dir)
    except RunLoadError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        print(save_report(run, args.output))
    except OSError as exc:
        print(f"error: cannot write the report: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if run.torn_lines:
        print("(the log's last line was torn by a crash and is not in the report)", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    # Piped output is read by scripts and people alike: do not cut columns to 80 characters.
    console = Console() if sys.stdout.isatty() else Console(width=200)
    try:
        if args.command == "run":
            return cmd_run(args, console)
        if args.command == "validate":
            scenario = load_scenario(args.scenario, args.overrides)
            check_policies(scenario, args.scenario.resolve().parent)
            agents = len(scenario.expanded_agents())
            print(f"{args.scenario}: ok ({scenario.name}, {agents} agents)")
            return 0
        if args.command == "schema":
            return _into_pipe(cmd_schema)
        if args.command == "replay":
            return cmd_replay(args, console)
        if args.command == "show":
            return _into_pipe(lambda: cmd_show(args))
        if args.command == "resume":
            return cmd_resume(args, console)
        if args.command == "runs":
            return _into_pipe(lambda: cmd_runs(args, console))
        if args.command == "report":
            return cmd_report(args)
    except SimError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    return EXIT_USAGE
