"""One run end to end: run directory, workspace, models, agents, scheduler, final status.

A run's status is `completed` (every agent ended, `done_when` held, or the wall time ran out),
`interrupted` (Ctrl-C) or `error` (setup failed, or the API rejected the key). Whatever
happens, `run_end` is logged and `meta.json` says how it ended.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import os
import platform
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

import filelock
import pexpect
import pydantic
import trio

from sim.agent import Agent
from sim.clobbers import ClobberDetector
from sim.environment import agent_env
from sim.errors import RunError, SimError
from sim.events import (
    Error,
    EventLog,
    Interrupted,
    RunEnd,
    RunResume,
    RunStart,
    Setup,
    ShellRestart,
    parse_payload,
)
from sim.isolation import Sandbox
from sim.locks import LockManager
from sim.mailbox import Mailbox
from sim.models import check_policies, check_ready, make_model, open_client
from sim.models.base import Model
from sim.scenario import AgentConfig, Scenario
from sim.scheduler import Scheduler
from sim.shell import Shell
from sim.tally import RunTally
from sim.tools import ToolContext, build_tools
from sim.workspace import Workspace, new_run_dir

if TYPE_CHECKING:
    from sim.resume import ResumePlan

EXIT_CODES = {"completed": 0, "error": 1, "interrupted": 130}
ModelFactory = Callable[[AgentConfig], Model]


@dataclass
class RunResult:
    run_dir: Path
    status: str  # completed | interrupted | error
    reason: str  # what ended it: all_ended | done_when | wall_time | a message
    tally: RunTally
    duration: float

    @property
    def exit_code(self) -> int:
        if self.status == "interrupted" and self.reason == "SIGTERM":
            return 128 + signal.SIGTERM
        return EXIT_CODES.get(self.status, 1)


async def _kill_group(process: trio.Process) -> None:
    """trio.run_process's deliver_cancel: the setup command and everything it started."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)


def _only_interrupts(exc: BaseException) -> bool:
    """KeyboardInterrupt, alone or in (nested) exception groups made only of it."""
    if isinstance(exc, BaseExceptionGroup):
        return all(_only_interrupts(e) for e in exc.exceptions)
    return isinstance(exc, KeyboardInterrupt)


_frozen = False  # whether _freeze_startup_objects has run in this process


def _freeze_startup_objects() -> None:
    """Move every object alive now (modules, the SDK's types, pydantic's schemas) out of the
    cyclic garbage collector's reach, once per process: they live as long as the process,
    yet each full collection walked them all (130 ms a time with the SDK loaded, measured in
    bench/claude_overhead.py). What a run makes afterwards is collected as usual.

    A flag, not `gc.get_freeze_count()`: that counts the frozen objects one by one (19 ms
    with the SDK loaded), and a notebook or benchmark runs many runs in one process."""
    global _frozen
    if not _frozen:
        _frozen = True
        gc.freeze()


@functools.cache  # a notebook or benchmark makes many runs in one process
def _versions() -> dict[str, str]:
    # The libraries' own version attributes where they are imported: a metadata lookup scans
    # sys.path (1-4 ms each, a tenth of a short replay's setup).
    out = {"python": platform.python_version()}
    sdk = sys.modules.get("anthropic")  # imported only by Claude runs
    if sdk is not None:
        out["anthropic"] = sdk.__version__
    for dist in ("sim", "anthropic"):
        if dist not in out:
            try:
                out[dist] = metadata.version(dist)
            except metadata.PackageNotFoundError:
                out[dist] = "not installed"
    out.update(
        trio=trio.__version__,
        pexpect=pexpect.__version__,
        filelock=filelock.__version__,
        pydantic=pydantic.VERSION,
    )
    return out


async def _retake_locks(
    plan: ResumePlan, locks: LockManager, events: EventLog, ws: Workspace
) -> None:
    """Before any agent moves: locks held at the crash go back to their holders, and calls
    that were in flight are logged as interrupted."""
    for agent in plan.agents.values():
        if agent.ended:
            continue
        for name in agent.locks:
            await locks.acquire(agent.name, name)
        for call in agent.interrupted:
            events.emit(
                Interrupted(tool_use_id=call["tool_use_id"], name=call["name"], turn=call["turn"]),
                agent.name,
            )
        cwd = agent.cwd if agent.cwd and Path(agent.cwd).is_dir() else str(ws.agent_dir(agent.name))
        events.emit(ShellRestart(reason="resume", cwd=cwd), agent.name)


class Run:
    """Sets up and runs one scenario. Use `await Run(...).execute()`."""

    def __init__(
        self,
        scenario: Scenario,
        *,
        runs_dir: Path,
        scenario_dir: Path | None = None,
        env: Mapping[str, str] | None = None,
        model_factory: ModelFactory | None = None,
        on_start: Callable[[Run], None] | None = None,
        shell_factory: Callable[..., Shell] = Shell,
        round_orders: list[list[str]] | None = None,
        resume: ResumePlan | None = None,
        use_api: bool | None = None,
    ) -> None:
        """`use_api` (default: when the models are the scenario's own) opens the run's
        Anthropic client; a replay needs none, and so no key."""
        self.scenario = scenario
        self.scenario_dir = scenario_dir
        self.env = dict(os.environ if env is None else env)
        self.agent_configs = scenario.expanded_agents()
        self.names = [a.name for a in self.agent_configs]
        self._use_api = model_factory is None if use_api is None else use_api
        if self._use_api:
            check_ready(scenario, self.env)  # no API key: fail before the run directory exists
        if model_factory is None:
            check_policies(scenario, scenario_dir)  # nor with a policy that cannot load
        self.client: object = None  # the run's Anthropic client, open while agents run
        self.scheduler: Scheduler | None = None  # made once the workspace is set up
        self._interrupted: str | None = None  # "Ctrl-C" or "SIGTERM", the first one to come
        self._body = trio.CancelScope()  # the run up to its cleanup: a signal during set-up
        self.resume = resume  # go on with a killed run, in its own directory
        self.run_dir = resume.run_dir if resume else new_run_dir(runs_dir, scenario.name)
        self.workspace = Workspace(self.run_dir)
        self.tally = RunTally(self.names)
        for event in resume.events if resume else []:
            self.tally.on_event(event.get("agent"), parse_payload(event))
        self._model_factory = model_factory or (
            lambda cfg: make_model(cfg, scenario, scenario_dir, self.env, self.client)
        )
        self._on_start = on_start
        self._shell_factory = shell_factory  # tests pass a fake, to run logic on a MockClock
        self._round_orders = round_orders  # a replay follows the recorded turn order
        self.sandbox = Sandbox(scenario, self.workspace, self.agent_configs)
        self._meta: dict[str, Any] = {
            "run_id": self.run_dir.name,
            "scenario": scenario.name,
            "seed": scenario.seed,
            "scenario_dir": str(scenario_dir) if scenario_dir else None,
            "agents": self.names,
            "versions": dict(_versions()),
            "argv": [a for a in sys.argv if "key" not in a.lower()],
            "pid": os.getpid(),
            "start": datetime.now(UTC).isoformat(),
            "end": None,
            "status": "running",
        }
        if resume:
            self._meta = {
                **self.workspace.read_meta(),
                **{k: self._meta[k] for k in ("pid", "argv")},
            }
            self._meta.update(status="running", end=None, resumed=self._meta.get("resumed", 0) + 1)

    async def execute(self) -> RunResult:
        ws, plan = self.workspace, self.resume
        if plan is None:
            ws.create(self.names)
            ws.scenario_path.write_text(self.scenario.to_yaml(), encoding="utf-8")
        else:
            plan.cut_torn_line()
        ws.write_meta(self._meta)
        events = EventLog(
            ws.events_path,
            # the run's clock itself (trio.current_time, but without its lookups, per event)
            trio.lowlevel.current_clock().current_time,
            start_seq=plan.next_seq if plan else 0,
            start_t=plan.elapsed if plan else 0.0,
        )
        events.subscribe(self.tally.on_event)
        self.events = events
        start = trio.current_time()
        status, reason = "error", "setup failed"
        with self._stop_on_signals():  # until the run is on record: then it is the caller's
            try:
                events.emit(
                    self._resume_event(plan)
                    if plan
                    else RunStart(
                        run_id=self.run_dir.name,
                        scenario=self.scenario.name,
                        seed=self.scenario.seed,
                        agents=self.names,
                        scheduler=self.scenario.scheduler,
                    )
                )
                if self._on_start:
                    self._on_start(self)
                with self._body:
                    if self._use_api:
                        async with open_client(self.scenario, self.env) as self.client:
                            status, reason = await self._run(events)
                    else:
                        status, reason = await self._run(events)
                # A signal during set-up (one while agents run stops the scheduler: see _run).
                if self._body.cancelled_caught:
                    status, reason = "interrupted", self._interrupted or "Ctrl-C"
            except SimError as exc:
                status, reason = "error", str(exc)
                events.emit(Error(error=type(exc).__name__, message=str(exc), where="run"))
            except BaseException as exc:  # a Ctrl-C from before the handler, maybe in a group
                if not _only_interrupts(exc):
                    raise
                status, reason = "interrupted", "Ctrl-C"
            finally:
                duration = await self._record_end(status, reason, start)
        return RunResult(self.run_dir, status, reason, self.tally, duration)

    async def _record_end(self, status: str, reason: str, start: float) -> float:
        """Undo the sandbox, then log run_end and write meta.json; return the run's duration."""
        with trio.CancelScope(shield=True):
            await self.sandbox.close()  # users and cgroups go, even after a failure
        duration = trio.current_time() - start
        events = self.events
        events.emit(
            RunEnd(
                status=status,
                reason=reason,
                duration=round(duration, 6),
                tokens=self.tally.total_tokens,
                cost_usd=self.tally.total_cost,
            )
        )
        events.close()
        self._meta.update(
            end=datetime.now(UTC).isoformat(),
            status=status,
            reason=reason,
            duration=round(duration, 3),
            tokens=self.tally.total_tokens,
            cost_usd=self.tally.total_cost,
        )
        self.workspace.write_meta(self._meta)
        return duration

    def _resume_event(self, plan: ResumePlan) -> RunResume:
        going_on = [a for a in plan.agents.values() if not a.ended]
        return RunResume(
            torn_line_dropped=plan.torn_line is not None,
            agents=[a.name for a in going_on],
            locks={a.name: a.locks for a in going_on if a.locks},
            interrupted=sum(len(a.interrupted) for a in going_on),
        )

    async def _run(self, events: EventLog) -> tuple[str, str]:
        ws, scenario, plan = self.workspace, self.scenario, self.resume
        harness_env = agent_env(self.env, ws, "harness")
        if plan is None:
            ws.seed(ws.shared, scenario.workspace.shared)
            for name in self.names:
                ws.seed(ws.agent_dir(name), scenario.workspace.agents)
            for command in scenario.workspace.setup:
                await self._setup(events, command, harness_env)
        await self.sandbox.prepare()
        configs = [c for c in self.agent_configs if not (plan and plan.agents[c.name].ended)]
        models = {cfg.name: self._model_factory(cfg) for cfg in configs}
        mailbox = Mailbox(self.run_dir / "mailboxes", self.names, events)
        events.subscribe(mailbox.on_event)
        locks = LockManager(
            ws,
            events,
            lease=scenario.locks.lease,
            break_overdue=scenario.locks.break_overdue,
            on_broken=mailbox.notify,
        )
        mailbox.lock_stuck, locks.on_wait_forever = locks.stuck, mailbox.check_stalemate
        if plan is not None:
            await _retake_locks(plan, locks, events, ws)
        # Made after seeding and setup, so their files are the starting versions (by nobody).
        clobbers = (
            ClobberDetector(ws.shared, events, locks.holder) if scenario.detect_clobbers else None
        )
        try:
            scheduler = Scheduler(
                events,
                mode=scenario.scheduler,
                seed=scenario.seed,
                agent_names=self.names,
                wall_time=scenario.limits.wall_time - (plan.elapsed if plan else 0.0),
                done_when=scenario.done_when,
                done_when_timeout=scenario.limits.command_timeout,
                shared_dir=ws.shared,
                env=harness_env,
                max_rounds=scenario.limits.max_rounds,
                round_orders=self._round_orders,
            )
            self.scheduler = scheduler
            agents = [
                self._agent(cfg, models[cfg.name], locks, events, scheduler) for cfg in configs
            ]
            for agent in agents:
                agent.ctx.mailbox, agent.ctx.clobbers = mailbox, clobbers
                agent.ctx.park = functools.partial(scheduler.park, agent.name)
            _freeze_startup_objects()
            async with trio.open_nursery() as nursery:
                nursery.start_soon(locks.watch_leases)
                stopped = await scheduler.run(agents)
                nursery.cancel_scope.cancel()
            if scheduler.fatal is not None:
                raise scheduler.fatal
            if stopped == "interrupted":
                return "interrupted", self._interrupted or "Ctrl-C"
            ended = self.tally.agents.values()
            if all(t.end_reason == "error" for t in ended):
                first = next(iter(ended)).message
                return "error", f"every agent ended in error; the first: {first}"
            return "completed", stopped or "all_ended"
        finally:
            if clobbers is not None:
                clobbers.close()

    async def _setup(self, events: EventLog, command: str, env: dict[str, str]) -> None:
        """One `workspace.setup` command, in its own session, for at most command_timeout
        seconds; when that passes, or the run is interrupted, its whole group is killed."""
        timeout = self.scenario.limits.command_timeout
        result: subprocess.CompletedProcess[bytes] | None = None
        with trio.move_on_after(timeout):
            result = await trio.run_process(
                ["bash", "-c", command],
                cwd=self.workspace.shared,
                env=env,
                check=False,
                capture_stdout=True,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                deliver_cancel=_kill_group,
            )
        if result is None:
            raise RunError(
                f"workspace.setup command {command!r} did not finish within {timeout:g} s "
                "(limits.command_timeout) and was killed; make it faster, or raise the limit"
            )
        output = result.stdout.decode(errors="replace")
        events.emit(Setup(command=command, output=output[-4000:], exit_code=result.returncode))
        if result.returncode != 0:
            raise RunError(
                f"workspace.setup command {command!r} failed with exit code "
                f"{result.returncode}: {output.strip()[-500:]}"
            )

    def _agent(
        self,
        cfg: AgentConfig,
        model: Model,
        locks: LockManager,
        events: EventLog,
        scheduler: Scheduler,
    ) -> Agent:
        ws, limits = self.workspace, self.scenario.limits
        resumed = self.resume.agents[cfg.name] if self.resume else None
        cwd = ws.agent_dir(cfg.name)
        if resumed and resumed.cwd:  # the shell restarts where the agent left it, or at home
            cwd = Path(resumed.cwd)
        sandbox = self.sandbox.agents[cfg.name]
        shell = self._shell_factory(
            cwd,
            agent_env(self.env, ws, cfg.name),
            home=ws.agent_dir(cfg.name),
            max_output_bytes=limits.max_output_bytes,
            **sandbox.shell_kwargs(),
        )
        ctx = ToolContext(
            agent=cfg.name,
            workspace=ws,
            shell=shell,
            locks=locks,
            events=events,
            limits=limits,
            sandbox=sandbox,
        )
        return Agent(
            name=cfg.name,
            model=model,
            model_name=cfg.spec.model,
            system=cfg.spec.system,
            task=cfg.spec.task,
            tools=build_tools(cfg.spec.tools),
            ctx=ctx,
            max_turns=limits.max_turns,
            gate=scheduler.gate,
            leave=scheduler.leave,
            stop_reason=scheduler.stop_reason,
            tally=self.tally,
            history=resumed.messages if resumed else None,
            turns_used=resumed.turns if resumed else 0,
        )

    @contextlib.contextmanager
    def _stop_on_signals(self) -> Iterator[None]:
        """From the run's start to its record, SIGINT and SIGTERM stop the run instead of
        raising at a random checkpoint, so shells close and the log ends with run_end
        `interrupted`: while agents run, the scheduler stops them; during set-up, the set-up
        is cancelled. Later signals are taken and dropped: the cleanup is bounded, and a
        second Ctrl-C inside it would leave agents without their end and the record wrong.
        A handler of its own, not trio.open_signal_receiver: that one delivers again, on
        exit, the signals it has not handed out, and so the second Ctrl-C after all."""
        if threading.current_thread() is not threading.main_thread():  # signals come there
            yield
            return
        token = trio.lowlevel.current_trio_token()

        def handler(signum: int, frame: object) -> None:
            token.run_sync_soon(self._signalled, signum, idempotent=True)

        previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for signum, old in previous.items():
                signal.signal(signum, old)

    def _signalled(self, signum: int) -> None:
        if self._interrupted is not None:
            return
        self._interrupted = "SIGTERM" if signum == signal.SIGTERM else "Ctrl-C"
        if self.scheduler is not None:
            self.scheduler.stop("interrupted")
        else:
            self._body.cancel()
