"""Claude agents against the fake Messages API over real HTTP, driven by the real SDK."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import trio

from sim.errors import RunError
from sim.events import read_events
from sim.pricing import cost_usd
from sim.runner import Run, RunResult
from sim.scenario import validate_scenario
from sim.shell import Shell
from tests.conftest import FakeShell
from tests.fake_anthropic import (
    KEY,
    FakeAnthropic,
    Fault,
    Turn,
    bash,
    edit,
    finish,
    text,
    tool_use,
    turn,
)
from tests.realrun import of

MODEL = "claude-sonnet-5-5"


def agent(name: str, **kw: Any) -> dict[str, Any]:
    return {"name": name, "model": MODEL, "system": f"You are agent {name}.", **kw}


def scenario(fake: FakeAnthropic, agents: list[dict[str, Any]], **kw: Any) -> Any:
    data: dict[str, Any] = {
        "name": "claude",
        "seed": 1,
        "base_url": fake.base_url,
        "limits": {"max_turns": 10, "wall_time": 60, "command_timeout": 10},
        "api": {"max_retry_wait": 5},
        "agents": agents,
    }
    for key, value in kw.items():
        data[key] = {**data[key], **value} if isinstance(value, dict) and key in data else value
    return validate_scenario(data)


def run(
    tmp_path: Path, spec: Any, *, real_shells: bool = False, key: str = KEY
) -> tuple[RunResult, list[dict[str, Any]]]:
    env = {"PATH": os.environ["PATH"], "ANTHROPIC_API_KEY": key}

    async def main() -> RunResult:
        shells = Shell if real_shells else FakeShell
        return await Run(spec, runs_dir=tmp_path / "runs", env=env, shell_factory=shells).execute()

    result = trio.run(main)
    return result, read_events(result.run_dir / "events.jsonl").events


def last_results(body: dict[str, Any]) -> list[dict[str, Any]]:
    last = body["messages"][-1]
    assert last["role"] == "user"
    return [b for b in last["content"] if b["type"] == "tool_result"]


def test_a_multi_turn_bash_conversation_runs_in_a_real_shell(tmp_path: Path) -> None:
    first, second = bash("echo hello > greet.txt; cat greet.txt"), bash("wc -c < greet.txt")
    script = {"agent alice": [turn(text("Let me look."), first), turn(second), turn(finish("ok"))]}
    with FakeAnthropic(script) as api:
        result, events = run(tmp_path, scenario(api, [agent("alice")]), real_shells=True)
    assert result.status == "completed"
    bodies = api.messages_for("agent alice")
    assert len(bodies) == 3
    (r1,) = last_results(bodies[1])
    assert r1["tool_use_id"] == first["id"] and r1["content"] == "hello"
    (r2,) = last_results(bodies[2])
    assert r2["tool_use_id"] == second["id"] and r2["content"].strip() == "6"
    # The assistant turn goes back verbatim, text and tool call alike.
    assert bodies[1]["messages"][1] == {
        "role": "assistant",
        "content": [text("Let me look."), first],
    }
    assert [c["output"].strip() for c in of(events, "command")] == ["hello", "6"]
    assert of(events, "agent_end")[0]["reason"] == "finished"
    headers = api.requests[0].headers
    assert headers["authorization"] == f"Bearer {KEY}" or headers.get("x-api-key") == KEY


def test_requests_carry_tools_and_three_cache_breakpoints(tmp_path: Path) -> None:
    script = {"agent alice": [turn(bash("true")), turn(finish("ok"))]}
    with FakeAnthropic(script) as api:
        run(tmp_path, scenario(api, [agent("alice")], api={"cache_ttl": "1h"}))
    body = api.messages_for("agent alice")[1]
    cache = {"type": "ephemeral", "ttl": "1h"}
    assert body["model"] == MODEL and body["max_tokens"] == 8192
    assert body["system"] == [
        {"type": "text", "text": "You are agent alice.", "cache_control": cache}
    ]
    tools = body["tools"]
    assert tools[0] == {"type": "bash_20250124", "name": "bash"}
    assert tools[1] == {"type": "text_editor_20250728", "name": "str_replace_based_edit_tool"}
    assert [t["name"] for t in tools] == [
        "bash",
        "str_replace_based_edit_tool",
        "lock",
        "unlock",
        "finish",
    ]
    assert [("cache_control" in t) for t in tools] == [False] * 4 + [True]
    assert all("input_schema" in t and t["description"] for t in tools[2:])
    messages = body["messages"]
    assert messages[-1]["content"][-1]["cache_control"] == cache
    assert "cache_control" not in str(messages[:-1])  # only the newest message is marked


def test_a_scenario_can_restrict_the_tools(tmp_path: Path) -> None:
    script = {"agent alice": [turn(bash("true")), turn(finish("ok"))]}
    with FakeAnthropic(script) as api:
        _, events = run(tmp_path, scenario(api, [agent("alice", tools=["finish"])]))
    body = api.messages_for("agent alice")[1]
    assert [t["name"] for t in body["tools"]] == ["finish"]
    (result,) = last_results(body)
    assert result["is_error"] is True and "no tool named 'bash'" in result["content"]
    assert of(events, "tool_result")[0]["is_error"] is True


def test_every_editor_command_through_claude(tmp_path: Path) -> None:
    steps = [
        edit(command="create", path="app.py", file_text="def f():\n    return 1\n"),
        edit(command="str_replace", path="app.py", old_str="return 1", new_str="return 2"),
        edit(command="insert", path="app.py", insert_line=0, insert_text="import os"),
        edit(command="view", path="app.py", view_range=[1, 2]),
        edit(command="view", path="."),
        edit(command="str_replace", path="app.py", old_str="nope", new_str="x"),
    ]
    script = {"agent alice": [turn(s) for s in steps] + [turn(finish("ok"))]}
    with FakeAnthropic(script) as api:
        result, _ = run(tmp_path, scenario(api, [agent("alice")]))
    app = result.run_dir / "workspace/agents/alice/app.py"
    assert app.read_text() == "import os\ndef f():\n    return 2\n"
    answers = [last_results(b)[0] for b in api.messages_for("agent alice")[1:]]
    assert [a.get("is_error", False) for a in answers] == [False] * 5 + [True]
    assert answers[3]["content"] == "     1\timport os\n     2\tdef f():"
    assert str(app) in answers[4]["content"]
    assert "did not appear verbatim" in answers[5]["content"]


def test_parallel_tool_uses_all_run_and_answer_in_one_message_in_order(tmp_path: Path) -> None:
    calls = [
        bash("echo one"),
        edit(command="create", path="two.txt", file_text="2\n"),
        tool_use("lock", path="three.txt"),
        bash("cat two.txt"),
    ]
    script = {"agent alice": [turn(text("All at once."), *calls), turn(finish("ok"))]}
    with FakeAnthropic(script) as api:
        _, events = run(tmp_path, scenario(api, [agent("alice")]), real_shells=True)
    body = api.messages_for("agent alice")[1]
    results = last_results(body)
    assert len(body["messages"][-1]["content"]) == 4  # one user message holds every result
    assert [r["tool_use_id"] for r in results] == [c["id"] for c in calls]
    assert results[0]["content"] == "one" and results[3]["content"] == "2"
    assert results[2]["content"].startswith("locked three.txt")
    assert [e["tool_use_id"] for e in of(events, "tool_call")] == [c["id"] for c in calls] + [
        script["agent alice"][1].content[0]["id"]
    ]


def test_every_usage_field_is_recorded_and_priced(tmp_path: Path) -> None:
    usage = {
        "input_tokens": 1200,
        "output_tokens": 300,
        "cache_creation_input_tokens": 5000,
        "cache_read_input_tokens": 40000,
        "cache_creation": {"ephemeral_5m_input_tokens": 4000, "ephemeral_1h_input_tokens": 1000},
        "service_tier": "standard",
        "server_tool_use": {"web_search_requests": 0, "web_fetch_requests": 0},
    }
    script = {"agent alice": [turn(bash("true"), usage=usage), turn(finish("ok"), usage=usage)]}
    with FakeAnthropic(script) as api:
        result, events = run(tmp_path, scenario(api, [agent("alice")]))
    responses = of(events, "model_response")
    assert [r["usage"] for r in responses] == [usage, usage]
    # $2 input, $2.50 5m write, $4 1h write, $0.10 read, $10 output per million (Sonnet 5.5)
    one = (1200 * 2 + 4000 * 2.5 + 1000 * 4 + 40000 * 0.1 + 300 * 10) / 1e6
    assert responses[0]["cost_usd"] == pytest.approx(one) == cost_usd(MODEL, usage)
    assert responses[0]["model"] == MODEL and responses[0]["retries"] == 0
    (end,) = of(events, "agent_end")
    assert end["tokens"] == 2 * 46500 and end["cost_usd"] == pytest.approx(2 * one)
    run_end = events[-1]
    assert run_end["tokens"] == 2 * 46500 and run_end["cost_usd"] == pytest.approx(2 * one)
    assert result.tally.agents["alice"].cache_read_tokens == 80000


def test_an_unknown_model_costs_unknown_not_zero(tmp_path: Path) -> None:
    script = {"agent alice": [turn(finish("ok"))]}
    with FakeAnthropic(script) as api, pytest.warns(UserWarning, match="no price for model"):
        result, events = run(tmp_path, scenario(api, [agent("alice", model="claude-imaginary-9")]))
    assert of(events, "model_response")[0]["cost_usd"] is None
    assert of(events, "agent_end")[0]["cost_usd"] is None and events[-1]["cost_usd"] is None
    assert result.tally.total_cost is None


@pytest.mark.parametrize("status", [408, 409, 429, 500, 529])
def test_a_retried_call_is_one_event_with_its_retry_count(tmp_path: Path, status: int) -> None:
    fault = Fault(status, times=2, retry_after="0.01")
    script = {"agent alice": [turn(bash("true"), fault=fault), turn(finish("ok"))]}
    with FakeAnthropic(script) as api:
        result, events = run(tmp_path, scenario(api, [agent("alice")]))
    assert result.status == "completed"
    assert [(r.attempt, r.status) for r in api.requests[:3]] == [(0, status), (1, status), (2, 200)]
    responses = of(events, "model_response")
    assert [r["retries"] for r in responses] == [2, 0]
    assert len(of(events, "model_request")) == 2


def test_retry_after_is_capped_by_the_scenario_max_wait(tmp_path: Path) -> None:
    fault = Fault(429, times=1, retry_after="30")
    script = {"agent alice": [turn(finish("ok"), fault=fault)]}
    with FakeAnthropic(script) as api:
        _, events = run(tmp_path, scenario(api, [agent("alice")], api={"max_retry_wait": 0.3}))
    (response,) = of(events, "model_response")
    assert response["retries"] == 1
    waited = api.requests[1].at - api.requests[0].at
    assert 0.3 <= waited < 5  # not 30: the cap, not the header


def test_an_error_outlasting_the_retries_ends_only_that_agent(tmp_path: Path) -> None:
    failing = {"agent alice": [turn(finish("x"), fault=Fault(529, times=9, retry_after="0.01"))]}
    failing["agent bob"] = [turn(bash("echo hi")), turn(finish("ok"))]
    with FakeAnthropic(failing) as api:
        spec = scenario(api, [agent("alice"), agent("bob")], api={"max_retries": 2})
        result, events = run(tmp_path, spec)
    ends = {e["agent"]: e for e in of(events, "agent_end")}
    assert ends["alice"]["reason"] == "error" and ends["bob"]["reason"] == "finished"
    assert "529 overloaded_error" in ends["alice"]["message"]
    assert "after 2 retries" in ends["alice"]["message"]
    assert sum(r.body["system"][0]["text"] == "You are agent alice." for r in api.requests) == 3
    assert result.status == "completed"
    assert of(events, "error", "alice")[0]["error"] == "ModelError"


def test_a_bad_request_is_not_retried(tmp_path: Path) -> None:
    script = {"agent alice": [turn(finish("x"), fault=Fault(400, times=5, message="bad blocks"))]}
    with FakeAnthropic(script) as api:
        _, events = run(tmp_path, scenario(api, [agent("alice")]))
    assert len(api.requests) == 1
    (end,) = of(events, "agent_end")
    assert end["reason"] == "error" and "400 invalid_request_error: bad blocks" in end["message"]


_MESSAGE = (
    b'{"id": "m", "type": "message", "role": "assistant", "model": "x", '
    b'"stop_reason": "tool_use", "stop_sequence": null, '
)
_USAGE = b'"usage": {"input_tokens": 1, "output_tokens": 1}'


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        (b"<html>Sign in to the network</html>", "not JSON (text/html"),
        (b"{not json", "not JSON"),
        (b'{"type": "error", "error": {"type": "api_error"}}', "not a list of content blocks"),
        (b'["a", "list"]', "a JSON list, not a Messages reply object"),
        (b"\xff\xfe not utf-8", "not JSON (application/json)"),
        (_MESSAGE + b'"content": null, ' + _USAGE + b"}", "not a list of content blocks"),
        (
            _MESSAGE
            + b'"content": [{"type": "tool_use", "name": "bash", "input": "ls"}], '
            + _USAGE
            + b"}",
            "a tool_use block needs a string id and name and an object input",
        ),
        (
            _MESSAGE + b'"content": [], "usage": {"input_tokens": "lots", "output_tokens": 1}}',
            "its usage has no whole token counts",
        ),
        (
            b'{"model": "x", "stop_reason": ["tool_use"], "content": [], ' + _USAGE + b"}",
            "a string or null `stop_reason`",
        ),
        (
            _MESSAGE
            + b'"content": [], "usage": {"input_tokens": 1, "output_tokens": 1, '
            + b'"cache_read_input_tokens": "7"}}',
            "its usage has no whole token counts",
        ),
    ],
    ids=[
        "html",
        "not-json",
        "error-body",
        "a-list",
        "not-utf8",
        "null-content",
        "bad-tool-use",
        "bad-usage",
        "bad-stop-reason",
        "bad-cache-usage",
    ],
)
def test_a_200_that_is_not_a_messages_reply_ends_the_agent_saying_so(
    tmp_path: Path, raw: bytes, problem: str
) -> None:
    kind = "text/html" if raw.startswith(b"<") else "application/json"
    script = {"agent alice": [Turn([], raw=raw, raw_type=kind)]}
    with FakeAnthropic(script) as api:
        _, events = run(tmp_path, scenario(api, [agent("alice")]))
    (end,) = of(events, "agent_end")
    assert (
        end["reason"] == "error"
        and "answered 200 with what is not a Messages reply" in end["message"]
    ), end
    assert problem in end["message"] and "check that base_url" in end["message"], end
    assert of(events, "error", "alice")[0]["error"] == "ModelError"
    assert events[-1]["kind"] == "run_end"


def test_a_reply_without_a_stop_reason_is_taken_as_null(tmp_path: Path) -> None:
    # The SDK's Message defaults it to None; the reply is read as JSON, so sim does the same.
    raw = (
        b'{"id": "m", "type": "message", "role": "assistant", "model": "x", '
        b'"content": [{"type": "text", "text": "done"}], ' + _USAGE + b"}"
    )
    script = {"agent alice": [Turn([], raw=raw, raw_type="application/json")]}
    with FakeAnthropic(script) as api:
        result, events = run(tmp_path, scenario(api, [agent("alice")]))
    assert result.status == "completed", result.reason
    (response,) = of(events, "model_response", "alice")
    assert response["stop_reason"] is None and response["content"][0]["text"] == "done"
    assert of(events, "agent_end")[0]["reason"] == "finished"


def test_tool_calls_of_a_reply_cut_at_max_tokens_are_not_run(tmp_path: Path) -> None:
    # Cut mid-way, a tool call's input may be incomplete: a heredoc missing its end.
    cut = bash("cat > notes.txt <<'EOF'\nline 1\nline")
    script = {"agent alice": [Turn([cut], stop_reason="max_tokens"), turn(finish("ok"))]}
    with FakeAnthropic(script) as api:
        result, events = run(tmp_path, scenario(api, [agent("alice")]), real_shells=True)
    assert not of(events, "command", "alice")  # nothing ran
    (answer,) = last_results(api.requests[-1].body)
    assert answer["is_error"] and "max_tokens" in answer["content"], answer
    (call,) = of(events, "tool_call", "alice")[:1]
    assert call["input"] == cut["input"]  # logged as the model sent it
    assert not (result.run_dir / "workspace/agents/alice/notes.txt").exists()


def test_a_bad_key_ends_the_whole_run_at_once_saying_how_to_set_it(tmp_path: Path) -> None:
    script = {"agent alice": [turn(finish("ok"))]}
    slow = {"name": "slow", "steps": [{"bash": "sleep 30"}]}
    with FakeAnthropic(script) as api:
        result, events = run(tmp_path, scenario(api, [agent("alice"), slow]), key="sk-ant-wrong")
    assert result.status == "error" and result.exit_code == 1
    assert "ANTHROPIC_API_KEY" in result.reason and "export ANTHROPIC_API_KEY" in result.reason
    assert "401" in result.reason
    assert len(api.requests) == 1  # a 401 is not retried
    ends = {e["agent"]: (e["reason"], e["message"]) for e in of(events, "agent_end")}
    assert ends == {
        "alice": ("error", "the API rejected the key"),
        "slow": ("error", "stopped with the run: another agent's error ended it"),
    }
    assert events[-1]["kind"] == "run_end" and events[-1]["duration"] < 10  # not the sleep 30


def test_a_missing_key_fails_before_the_run_directory_exists(tmp_path: Path) -> None:
    spec = validate_scenario({"name": "c", "agents": [agent("alice")]})
    with pytest.raises(RunError) as info:
        Run(spec, runs_dir=tmp_path / "runs", env={"PATH": "/usr/bin"})
    message = str(info.value)
    assert "ANTHROPIC_API_KEY is not set" in message
    assert "scenarios/quickstart.yaml" in message and "replay" in message
    assert not (tmp_path / "runs").exists()


def test_a_budget_without_a_price_is_refused_before_the_run(tmp_path: Path) -> None:
    spec = validate_scenario(
        {"name": "c", "limits": {"budget_usd": 1}, "agents": [agent("a", model="claude-x-1")]}
    )
    with pytest.raises(RunError, match=r"no price in sim/pricing\.py"):
        Run(spec, runs_dir=tmp_path / "runs", env={"ANTHROPIC_API_KEY": KEY})


BIG = {"input_tokens": 100_000, "output_tokens": 1000}  # $0.21 a call on Sonnet 5.5


@pytest.mark.parametrize(
    ("limits", "limit", "calls"),
    [
        ({"budget_usd": 0.3}, "budget_usd", 2),  # 0.21 < 0.3: a second call; 0.42: stop
        ({"max_tokens": 150_000}, "max_tokens", 2),
        ({"run_budget_usd": 0.2}, "run_budget_usd", 1),
    ],
)
def test_a_call_past_the_budget_is_not_made(
    tmp_path: Path, limits: dict[str, float], limit: str, calls: int
) -> None:
    script = {"agent alice": [turn(bash("true"), usage=BIG) for _ in range(5)]}
    with FakeAnthropic(script) as api:
        _, events = run(tmp_path, scenario(api, [agent("alice")], limits=limits))
    assert len(api.requests) == calls
    (end,) = of(events, "agent_end")
    assert end["reason"] == "budget"
    assert of(events, "limit")[0]["limit"] == limit


def test_the_run_budget_stops_every_agent(tmp_path: Path) -> None:
    script = {
        "agent alice": [turn(bash("true"), usage=BIG) for _ in range(5)],
        "agent bob": [turn(bash("sleep 1"), usage=BIG) for _ in range(5)],
    }
    with FakeAnthropic(script) as api:
        spec = scenario(api, [agent("alice"), agent("bob")], limits={"run_budget_usd": 0.4})
        _, events = run(tmp_path, spec)
    assert {e["agent"]: e["reason"] for e in of(events, "agent_end")} == {
        "alice": "budget",
        "bob": "budget",
    }
    assert len(api.requests) <= 3  # two calls reach $0.42; at most one more was in flight


def test_old_tool_results_are_trimmed_near_the_context_window(tmp_path: Path) -> None:
    big = "A" * 6000
    script = {
        "agent alice": [
            turn(bash(f"echo {big}")),
            turn(bash(f"echo {big}"), usage={"input_tokens": 2100, "output_tokens": 20}),
            turn(finish("ok")),
        ]
    }
    with FakeAnthropic(script) as api:
        spec = scenario(
            api, [agent("alice")], api={"context_window": 4000, "max_output_tokens": 1000}
        )
        _, events = run(tmp_path, spec)
    second, third = api.messages_for("agent alice")[1:]
    assert last_results(second)[0]["content"] == f"echo {big}"  # 2,120 est. tokens: kept
    old = third["messages"][2]["content"][0]
    assert old["type"] == "tool_result" and "was removed to keep the conversation" in old["content"]
    assert last_results(third)[0]["content"] == f"echo {big}"  # the newest result is kept
    assert all(r["content"] == f"echo {big}" for r in of(events, "tool_result")[:2])  # log: full


def test_the_wall_time_cancels_a_call_in_flight(tmp_path: Path) -> None:
    script = {"agent alice": [turn(finish("ok"), delay=5)]}
    with FakeAnthropic(script) as api:
        result, events = run(tmp_path, scenario(api, [agent("alice")], limits={"wall_time": 0.5}))
    assert result.reason == "wall_time"
    assert of(events, "agent_end")[0]["reason"] == "wall_time"
    assert events[-1]["duration"] < 4


def test_the_scenario_base_url_wins_over_the_environment(tmp_path: Path) -> None:
    script = {"agent alice": [Turn([finish("ok")])]}
    with FakeAnthropic(script) as api:
        spec = scenario(api, [agent("alice")])
        env = {"PATH": os.environ["PATH"], "ANTHROPIC_API_KEY": KEY}
        env["ANTHROPIC_BASE_URL"] = "http://127.0.0.1:9"  # nothing listens there

        async def main() -> RunResult:
            return await Run(spec, runs_dir=tmp_path, env=env, shell_factory=FakeShell).execute()

        assert trio.run(main).status == "completed"
        assert len(api.requests) == 1


def test_anthropic_base_url_from_the_environment_is_used(tmp_path: Path) -> None:
    script = {"agent alice": [Turn([finish("ok")])]}
    with FakeAnthropic(script) as api:
        spec = validate_scenario({"name": "c", "agents": [agent("alice")]})
        env = {"ANTHROPIC_API_KEY": KEY, "ANTHROPIC_BASE_URL": api.base_url}

        async def main() -> RunResult:
            return await Run(spec, runs_dir=tmp_path, env=env, shell_factory=FakeShell).execute()

        assert trio.run(main).status == "completed"
        assert len(api.requests) == 1


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ({"api": {"cache_ttl": "2h"}}, "api.cache_ttl"),
        ({"api": {"max_retry_wait": 0}}, "api.max_retry_wait"),
        (
            {"api": {"retries": 3}},
            "allowed keys here: cache_ttl, context_window, max_output_tokens",
        ),
        ({"base_url": "localhost:8080"}, "base_url must be an http(s) URL"),
    ],
)
def test_bad_api_settings_are_named_in_the_error(override: dict[str, Any], expected: str) -> None:
    from sim.errors import ScenarioError

    with pytest.raises(ScenarioError) as info:
        validate_scenario({"name": "c", "agents": [agent("a")], **override})
    assert expected in str(info.value)
