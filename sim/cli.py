"""`python -m sim ...`: run, validate, schema, report (more subcommands join as they are built).

Errors a user can fix (a bad scenario, a missing key) print one clear message and exit 2,
never a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import trio
from rich.console import Console

from sim.errors import SimError
from sim.runner import Run, RunResult
from sim.scenario import json_schema, load_scenario
from sim.view import LiveView, end_messages, summary_table

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

    report = sub.add_parser("report", help="write a run's self-contained HTML report")
    report.add_argument("run_dir", type=Path, help="the run directory, e.g. runs/<run-id>")
    report.add_argument("--output", "-o", type=Path, help="default: <run_dir>/report.html")
    return parser


def cmd_run(args: argparse.Namespace, console: Console) -> int:
    scenario = load_scenario(args.scenario, args.overrides)
    view = LiveView(console, enabled=console.is_terminal and not args.quiet)

    def started(run: Run) -> None:
        view.attach(run.tally, f"{scenario.name} — {run.run_dir}")

    async def main() -> RunResult:
        run = Run(
            scenario,
            runs_dir=args.runs_dir,
            scenario_dir=args.scenario.resolve().parent,
            on_start=started,
        )
        return await run.execute()

    try:
        result = trio.run(main)
    finally:
        view.stop()
    if args.quiet:
        print(result.run_dir)
    else:
        console.print(summary_table(result.tally, f"{scenario.name}: {result.status}"))
        for line in end_messages(result.tally):
            console.print(line, style="red", markup=False, highlight=False)
        console.print(f"run directory: {result.run_dir}")
    if result.status != "completed":
        print(f"run {result.status}: {result.reason}", file=sys.stderr)
    return result.exit_code


def cmd_report(args: argparse.Namespace) -> int:
    # Imported here, not at the top: analysis pulls in pandas and matplotlib (about a second
    # of start-up, and sim itself must never depend on them), so only `report` pays for it.
    from analysis import RunLoadError
    from analysis.report import write_report

    try:
        path = write_report(args.run_dir, args.output)
    except RunLoadError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    print(path)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    console = Console()
    try:
        if args.command == "run":
            return cmd_run(args, console)
        if args.command == "validate":
            scenario = load_scenario(args.scenario, args.overrides)
            agents = len(scenario.expanded_agents())
            print(f"{args.scenario}: ok ({scenario.name}, {agents} agents)")
            return 0
        if args.command == "schema":
            print(json.dumps(json_schema(), indent=2))
            return 0
        if args.command == "report":
            return cmd_report(args)
    except SimError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    return EXIT_USAGE
