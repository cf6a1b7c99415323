"""`isolation: users` and `network: false` for real: users, permissions, escapes, secrets."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import anthropic
import pytest
import trio
import yaml

from sim.events import read_events
from sim.models.base import ModelRequest, Reply
from sim.runner import Run
from sim.scenario import AgentConfig, validate_scenario
from tests.conftest import run_cli
from tests.realrun import (
    as_nobody,
    needs_cgroup,
    needs_root,
    of,
    outputs,
    processes_with,
    run_scenario,
    scenario,
    sim_users,
    steps,
)

ROOT = Path(__file__).resolve().parent.parent
SECRET = "sk-ant-isolation-test-7f3a9c-DO-NOT-LEAK"


@needs_root
def test_agents_cannot_touch_each_others_directory_but_both_write_shared(runs_dir: Path) -> None:
    def probe(other: str) -> list[dict[str, str]]:
        return steps(
            "id -u",
            f"cat ../{other}/secret.txt; ls ../{other}; echo x > ../{other}/planted",
            f'echo {other}-was-here >> "$SIM_SHARED/board.txt"; '
            'echo "mine" > "$SIM_SHARED/$SIM_AGENT.txt"',
            f'echo edit >> "$SIM_SHARED/{other}.txt" && echo edited; stat -c "%a" .',
        )

    data = scenario(
        [{"name": "a", "steps": probe("b")}, {"name": "b", "steps": probe("a")}],
        isolation="users",
        scheduler="round_robin",  # every agent's step n comes before anyone's step n+1
        workspace={"agents": {"secret.txt": "private\n"}, "shared": {"board.txt": "board\n"}},
    )
    result, events = run_scenario(runs_dir, data)
    assert result.status == "completed"
    reports = {e["agent"]: e for e in of(events, "sandbox")}
    uids = {name: r["uid"] for name, r in reports.items()}
    assert 0 not in uids.values() and uids["a"] != uids["b"]
    for me, other in (("a", "b"), ("b", "a")):
        out = outputs(events, me)
        assert out[0].strip() == str(uids[me])
        assert out[1].count("Permission denied") == 3, out[1]
        assert "private" not in out[1]
        assert out[3].split() == ["edited", "700"]
        assert not (result.run_dir / f"workspace/agents/{other}/planted").exists()
    shared = result.run_dir / "workspace/shared"
    assert sorted((shared / "board.txt").read_text().split()) == [
        "a-was-here",
        "b-was-here",
        "board",
    ]
    assert (shared / "a.txt").read_text() == (shared / "b.txt").read_text() == "mine\nedit\n"
    # The run's users are gone and their files are the harness's again.
    assert not {r["user"] for r in reports.values()} & sim_users()
    assert (result.run_dir / "workspace/agents/a/secret.txt").stat().st_uid == os.getuid()


@needs_root
def test_a_run_directory_agents_cannot_reach_is_refused_up_front(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o700)
    data = scenario([{"name": "a", "steps": steps("echo hi")}], isolation="users")
    result, events = run_scenario(locked / "runs", data)
    assert result.status == "error"
    (error,) = of(events, "error")
    assert f"cannot pass through {locked} (mode 700)" in error["message"]
    assert "chmod o+x" in error["message"] and not of(events, "command")


@needs_root
def test_long_and_multiline_commands_run_as_the_agent_user(runs_dir: Path) -> None:
    long = "echo " + "x" * 3000 + " | wc -c"
    data = scenario(
        [{"name": "a", "steps": steps(long, "printf 'one\\n'\necho two")}], isolation="users"
    )
    result, events = run_scenario(runs_dir, data)
    assert result.status == "completed"
    assert [o.split() for o in outputs(events, "a")] == [["3001"], ["one", "two"]]


@pytest.mark.parametrize(
    ("mode", "caught"),
    [
        pytest.param({"isolation": "users"}, True, marks=needs_root, id="users"),
        pytest.param({}, True, marks=needs_cgroup("pids"), id="same-user-with-cgroup"),
        pytest.param(
            {"resources": {"memory_mb": None, "pids": None}},
            False,
            id="same-user-without-cgroup",
        ),
    ],
)
def test_setsid_and_nohup_escapes_die_with_the_agent(
    runs_dir: Path, mode: dict[str, Any], caught: bool
) -> None:
    token = str(800000 + os.getpid() % 100000)
    start = (
        f"setsid sleep {token}1 & nohup sleep {token}2 >/dev/null 2>&1 & disown -a; "
        f"sleep 0.3; pgrep -f 'sleep {token}' | wc -l"
    )
    result, events = run_scenario(
        runs_dir, scenario([{"name": "a", "steps": steps(start)}], **mode)
    )
    try:
        assert result.status == "completed"
        assert outputs(events, "a")[0].split()[-1] == "2"  # both were running
        left = processes_with(f"sleep\0{token}1".encode())
        (end,) = of(events, "sandbox_end", "a")
        if caught:
            assert left == [] and end["killed"] >= 1
        else:  # the documented gap: a setsid escape outlives a same-user agent
            assert len(left) == 1 and end["killed"] == 0
        assert processes_with(f"sleep\0{token}2".encode()) == []  # the session kill got it
    finally:
        for pid in processes_with(f"sleep\0{token}".encode()):
            os.kill(pid, 9)


def _probe_harness_env(isolation: str, runs: Path) -> tuple[str, Path]:
    """Run the harness as a real process with the key in its environment; return the agent's
    probe output and the run directory."""
    probe = (
        "tr '\\0' '\\n' < /proc/$PPID/environ; "
        "for f in /proc/[0-9]*/environ; do tr '\\0' '\\n' < $f; done 2>/dev/null "
        "| grep -c ANTHROPIC_API_KEY; env | grep -ci anthropic; "
        "cat ../../../meta.json ../../../events.jsonl 2>&1 | grep -c sk-ant"
    )
    data = scenario([{"name": "a", "steps": steps(probe)}], isolation=isolation)
    runs.mkdir()
    path = runs / "s.yaml"
    path.write_text(yaml.safe_dump(data))
    env = {**os.environ, "ANTHROPIC_API_KEY": SECRET, "SIM_TEST_TOKEN": SECRET}
    done = run_cli("run", str(path), "--runs-dir", str(runs), "--quiet", env=env)
    assert done.returncode == 0, done.stderr
    run_dir = Path(done.stdout.strip().splitlines()[-1])
    events = read_events(run_dir / "events.jsonl").events
    return outputs(events, "a")[0], run_dir


@needs_root
def test_harness_environment_and_key_are_out_of_the_agents_reach(runs_dir: Path) -> None:
    out, run_dir = _probe_harness_env("users", runs_dir / "users")
    assert "/environ: Permission denied" in out
    assert out.split()[-3:] == ["0", "0", "0"]  # no key in any readable environ, env, files
    for path in run_dir.rglob("*"):
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), path
    # As the harness's own user the probe does read /proc/$PPID/environ (so it works), but
    # the CLI blanked the key's value there (sim.procenv). Its memory stays readable to a
    # same-user ptrace: the README says only `isolation: users` closes that.
    out, _ = _probe_harness_env("none", runs_dir / "none")
    assert "PATH=" in out and "Permission denied" not in out
    assert SECRET not in out


def _run_as_nobody(data: dict[str, Any]) -> tuple[int, list[dict[str, Any]]]:
    runs = Path(tempfile.mkdtemp(prefix="sim-nobody-"))
    runs.chmod(0o777)
    scen = validate_scenario(data)

    def child() -> int:
        async def main() -> int:
            run = Run(scen, runs_dir=runs, env={"PATH": os.environ["PATH"]})
            return (await run.execute()).exit_code

        return trio.run(main)

    try:
        code = as_nobody(child)
        (run_dir,) = runs.iterdir()
        return code, read_events(run_dir / "events.jsonl").events
    finally:
        shutil.rmtree(runs, ignore_errors=True)


@needs_root  # to become nobody
@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ({"isolation": "users"}, "isolation: users needs the harness to run as root"),
        ({"network": False}, "network: false (agents a) needs a network namespace"),
    ],
)
def test_without_privilege_the_setting_fails_with_a_clear_message(
    setting: dict[str, Any], message: str
) -> None:
    agent = {"name": "a", "steps": steps("echo hi")}
    data = scenario([{**agent, **setting}] if "network" in setting else [agent])
    if "isolation" in setting:
        data.update(setting)
    code, events = _run_as_nobody(data)
    assert code == 1
    (error,) = of(events, "error")
    assert error["error"] == "IsolationError" and message in error["message"]
    assert "README" in error["message"]
    assert events[-1]["kind"] == "run_end" and events[-1]["status"] == "error"
    assert not of(events, "command")


@needs_root  # to become nobody
def test_without_root_cgroup_limits_are_reported_unavailable() -> None:
    code, events = _run_as_nobody(scenario([{"name": "a", "steps": steps("id -u")}]))
    assert code == 0 and outputs(events, "a")[0].strip() == "65534"
    (report,) = of(events, "sandbox", "a")
    unavailable = " ".join(report["unavailable"])
    assert "memory_mb: no cgroup for it here" in unavailable and "pids:" in unavailable
    assert "memory_mb" not in report["limits"] and report["limits"]["open_files"] == 1024


# ---------------------------------------------------------------------------------------------
# network: false, with the model side on a fake Messages API over real HTTP


class _FakeMessagesAPI(BaseHTTPRequestHandler):
    """POST /v1/messages: a bash tool_use with the command named in the task, then end_turn."""

    requests: list[dict[str, Any]]

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["content-length"])))
        self.requests.append(body)
        last = body["messages"][-1]["content"]
        if isinstance(last, str):
            content: list[dict[str, Any]] = [
                {"type": "tool_use", "id": "toolu_1", "name": "bash", "input": {"command": last}}
            ]
            stop = "tool_use"
        else:
            content, stop = [{"type": "text", "text": "done"}], "end_turn"
        reply = {
            "id": "msg_1",
            "type": "message",
            "role": "assistant",
            "model": body["model"],
            "content": content,
            "stop_reason": stop,
            "stop_sequence": None,
            "usage": {"input_tokens": 10, "output_tokens": 5},
        }
        data = json.dumps(reply).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def fake_api() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    handler = type("Handler", (_FakeMessagesAPI,), {"requests": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}", handler.requests
    server.shutdown()
    server.server_close()


class _ApiModel:
    """The model side through the real anthropic client (the harness's network)."""

    def __init__(self, base_url: str) -> None:
        self.name = "claude-test"
        self._client = anthropic.AsyncAnthropic(api_key="sk-test", base_url=base_url)

    async def respond(self, request: ModelRequest) -> Reply:
        msg = await self._client.messages.create(
            model=self.name,
            max_tokens=64,
            messages=request.messages,  # type: ignore[arg-type]
        )
        return Reply(
            content=[b.model_dump(exclude_none=True) for b in msg.content],
            stop_reason=msg.stop_reason,
            usage=msg.usage.model_dump(),
            model=msg.model,
        )

    async def aclose(self) -> None:
        await self._client.close()


@needs_root
def test_network_false_leaves_loopback_only_while_the_harness_reaches_the_api(
    runs_dir: Path, fake_api: tuple[str, list[dict[str, Any]]]
) -> None:
    base_url, requests = fake_api
    port = base_url.rsplit(":", 1)[1]
    interfaces = "tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' ' | sort | tr '\\n' ' '; echo"
    reach_api = f"(exec 3<>/dev/tcp/127.0.0.1/{port} && echo reached-api) 2>&1 | tail -n 1"
    own_loopback = (
        "python3 -c \"import socket; s = socket.create_server(('127.0.0.1', 0)); "
        "socket.create_connection(s.getsockname()); print('loopback-works')\""
    )
    # Only from inside the namespace, where no route exists and no packet can leave.
    outside = "(exec 3<>/dev/tcp/192.0.2.1/80) 2>&1 | tail -n 1"
    data = scenario(
        [
            {
                "name": "offline",
                "model": "claude-test",
                "network": False,
                "task": f"{interfaces}; {reach_api}; {own_loopback}; {outside}",
            },
            {"name": "online", "model": "claude-test", "task": f"{interfaces}; {reach_api}"},
        ],
        isolation="users",
    )

    def factory(cfg: AgentConfig) -> _ApiModel:
        return _ApiModel(base_url)

    result, events = run_scenario(runs_dir, data, model_factory=factory)
    assert result.status == "completed"
    assert len(requests) == 4 and len(of(events, "model_response")) == 4
    off = outputs(events, "offline")[0].splitlines()
    assert off[0].split() == ["lo"]
    assert "Connection refused" in off[1]  # the harness's 127.0.0.1 is not its 127.0.0.1
    assert off[2] == "loopback-works"
    assert "Network is unreachable" in off[3]
    on = outputs(events, "online")[0].splitlines()
    assert len(on[0].split()) > 1 and on[1] == "reached-api"
    (report,) = of(events, "sandbox", "offline")
    assert report["network"] is False and report["unavailable"] == []
