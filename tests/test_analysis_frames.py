"""analysis.load_run: every frame checked against the raw log, read independently by sim."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import trio

import analysis
from analysis import columns
from analysis.run import RunFrames
from sim.events import read_events
from sim.runner import Run
from sim.scenario import validate_scenario
from tests.analysis_runs import ROOT, counter_race, real_run
from tests.conftest import scenario_dict
from tests.realrun import of
from tests.synthetic import write_run


def raw(run_dir: Path) -> list[dict[str, Any]]:
    return read_events(run_dir / "events.jsonl").events


@pytest.fixture(scope="module")
def runs_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("runs")


@pytest.fixture(scope="module")
def quickstart(runs_dir: Path) -> Path:
    return real_run(runs_dir, "quickstart")


@pytest.fixture(scope="module")
def race(runs_dir: Path) -> Path:
    return counter_race(runs_dir, seed=1, use_lock=True)


@pytest.fixture(scope="module")
def synthetic(runs_dir: Path) -> Path:
    # Seed 5 gives every kind the synthetic world makes, deadlocks among them (checked below).
    return write_run(runs_dir, agents=6, turns=40, seed=5, name="synthetic")


def assert_documented(run: RunFrames) -> None:
    for name, spec in columns.FRAMES.items():
        frame = getattr(run, name)
        assert list(frame.columns) == list(spec.dtypes), name
        assert {c: str(t) for c, t in frame.dtypes.items()} == spec.dtypes, name


def test_quickstart_frames_match_the_log(quickstart: Path) -> None:
    run = analysis.load_run(quickstart)
    events = raw(quickstart)
    assert_documented(run)
    assert run.events["seq"].tolist() == [e["seq"] for e in events]
    assert set(run.events["run_id"]) == {quickstart.name}
    assert sorted(run.agents["agent"]) == ["alice", "bob", "carol"]
    assert set(run.agents["end_reason"]) == {"finished"} and (run.agents["turns"] == 5).all()
    assert len(run.turns) == 15 and (run.turns["tools"] == 1).all()
    assert (run.turns["cost_usd"] == 0).all()  # scripted: known to cost nothing
    assert (run.turns["requested"] <= run.turns["responded"]).all()
    assert len(run.commands) == 6 and set(run.commands["outcome"]) == {"ok"}
    logged = {
        (e["agent"], e["command"]): (e["output"], e["exit_code"]) for e in of(events, "command")
    }
    framed = zip(
        run.commands["agent"],
        run.commands["command"],
        run.commands["output"],
        run.commands["exit_code"],
        strict=True,
    )
    assert {(a, c): (o, x) for a, c, o, x in framed} == logged
    calls = run.tool_calls
    assert len(calls) == 15 and calls["returned"].notna().all() and not calls["interrupted"].any()
    first = calls[(calls["agent"] == "alice") & (calls["turn"] == 2)].iloc[0]
    assert first["name"] == "lock" and json.loads(first["input"]) == {"path": "report.md"}
    locks = run.locks
    assert len(locks) == 3 and set(locks["lock"]) == {"report.md"}
    acquires = {(e["agent"], e["wait"]) for e in of(events, "lock_acquire")}
    assert set(zip(locks["agent"], locks["wait"], strict=True)) == acquires
    ordered = locks.sort_values("acquired")
    # One holder at a time: each hold ends before the next begins.
    assert (ordered["acquired"].to_numpy()[1:] >= ordered["released"].to_numpy()[:-1]).all()
    assert np.allclose(locks["released"] - locks["acquired"], locks["hold"], atol=1e-3)
    assert run.messages.empty and run.deadlocks.empty
    files = run.files  # each agent appended its section to report.md, holding the lock
    assert sorted(files["agent"]) == ["alice", "bob", "carol"]
    assert set(files["path"]) == {"report.md"} and files["locked"].all()
    assert set(files["kind"]) == {"file_write"}
    assert run.runs.iloc[0]["status"] == "completed" and run.runs.iloc[0]["agents"] == 3


def test_contended_lock_rows_name_the_holder_and_the_wait(race: Path) -> None:
    run = analysis.load_run(race)
    events = raw(race)
    waits = of(events, "lock_wait")
    assert len(run.locks) == 20 and run.locks["contended"].sum() == len(waits) > 0
    assert len(run.turns) == 4 * (5 * 4 + 1)  # lock, read, write, unlock five times; finish
    contended = run.locks[run.locks["contended"]]
    assert contended["holder"].notna().all()
    assert (contended["requested"] < contended["acquired"]).all()
    assert np.allclose(contended["acquired"] - contended["requested"], contended["wait"], atol=2e-3)
    uncontended = run.locks[~run.locks["contended"]]
    assert uncontended["holder"].isna().all()
    assert (uncontended["requested"] == uncontended["acquired"] - uncontended["wait"]).all()
    assert set(zip(contended["agent"], contended["holder"], strict=True)) == {
        (e["agent"], e["holder"]) for e in waits
    }


def test_activity_tiles_each_agents_time_exactly(race: Path) -> None:
    run = analysis.load_run(race)
    for agent, group in run.activity.groupby("agent"):
        span = run.agents.set_index("agent").loc[agent]
        group = group.sort_values("start")
        assert group["start"].iloc[0] == pytest.approx(span["started"])
        assert group["end"].iloc[-1] == pytest.approx(span["ended"])
        # Back to back: no gap and no overlap between consecutive intervals.
        assert np.allclose(group["start"].to_numpy()[1:], group["end"].to_numpy()[:-1])
    waits = run.activity[run.activity["state"] == "lock_wait"]
    assert len(waits) == run.locks["contended"].sum()
    assert set(run.activity["state"]) == {"thinking", "command", "lock_wait", "idle"}


def test_synthetic_frames_match_the_log(synthetic: Path) -> None:
    run = analysis.load_run(synthetic)
    events = raw(synthetic)
    assert_documented(run)
    kinds = Counter(e["kind"] for e in events)
    for kind in ("message", "file_write", "clobber", "deadlock", "lock_overdue", "lock_wait"):
        assert kinds[kind] > 0, f"seed 5 no longer makes a {kind}; pick another seed"
    responses = of(events, "model_response")
    assert len(run.turns) == len(responses)
    totals = run.turns.groupby("agent")["input_tokens"].sum()
    for agent in totals.index:
        mine = [e for e in responses if e["agent"] == agent]
        assert totals[agent] == sum(e["usage"].get("input_tokens", 0) for e in mine)
        tools = [sum(b["type"] == "tool_use" for b in e["content"]) for e in mine]
        assert run.turns[run.turns["agent"] == agent]["tools"].tolist() == tools
    unpriced = run.turns["model"] == "claude-x-unpriced"
    assert run.turns.loc[unpriced, "cost_usd"].isna().all()
    assert run.turns.loc[~unpriced, "cost_usd"].notna().all()
    assert run.usage.loc[run.usage["model"] == "claude-x-unpriced", "cost_usd"].isna().all()
    assert run.usage["total_tokens"].sum() == run.turns["total_tokens"].sum()
    messages = of(events, "message")
    assert len(run.messages) == sum(len(e["recipients"]) for e in messages)
    pairs = Counter((e["agent"], r) for e in messages for r in e["recipients"])
    assert Counter(zip(run.messages["agent"], run.messages["recipient"], strict=True)) == pairs
    assert len(run.files) == kinds["file_write"] + kinds["clobber"]
    clobbers = run.files[run.files["kind"] == "clobber"]
    assert clobbers["overwrote"].notna().all() and clobbers["bytes"].isna().all()
    deadlocks = of(events, "deadlock")
    assert len(run.deadlocks) == sum(len(e["cycle"]) for e in deadlocks)
    victims = run.deadlocks[run.deadlocks["victim"]]
    assert sorted(victims["agent"]) == sorted(e["victim"] for e in deadlocks)
    overdue = of(events, "lock_overdue")
    assert run.locks["overdue"].sum() == len({(e["holder"], e["lock"], e["t"]) for e in overdue})
    inputs = {e["tool_use_id"]: e["input"] for e in of(events, "tool_call")}
    framed = zip(run.tool_calls["tool_use_id"], run.tool_calls["input"], strict=True)
    assert all(json.loads(text) == inputs[use_id] for use_id, text in framed)


def test_a_killed_run_loads_with_its_torn_line_and_open_calls(tmp_path: Path) -> None:
    run_dir = write_run(tmp_path, agents=4, turns=30, seed=2, name="killed", crash_at=25.0)
    run = analysis.load_run(run_dir)
    assert run.torn_lines["killed"].startswith('{"seq":999999')
    interrupted = of(raw(run_dir), "interrupted")
    assert interrupted and run.tool_calls["interrupted"].sum() == len(interrupted)
    open_calls = run.tool_calls[run.tool_calls["interrupted"]]
    assert open_calls["returned"].isna().all() and open_calls["is_error"].isna().all()
    assert run.agents["ended"].isna().all() and run.runs.iloc[0]["status"] == "unfinished"
    last = run.events.groupby("agent")["t"].max()
    ends = run.activity.groupby("agent")["end"].max()
    assert np.allclose(ends.sort_index(), last.reindex(ends.index).sort_index())


def test_a_run_that_failed_in_setup_has_empty_frames(tmp_path: Path) -> None:
    scenario = validate_scenario(scenario_dict(workspace={"setup": ["echo nope; exit 3"]}))

    async def main() -> Path:
        return (await Run(scenario, runs_dir=tmp_path).execute()).run_dir

    run = analysis.load_run(trio.run(main))
    assert_documented(run)
    assert run.events["kind"].tolist() == ["run_start", "setup", "error", "run_end"]
    assert run.agents.empty and run.turns.empty and run.activity.empty
    assert run.runs.iloc[0]["status"] == "error"
    assert "exit code 3" in run.runs.iloc[0]["reason"]


def test_parquet_round_trip_is_exact_and_used_while_fresh(
    synthetic: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    copy = tmp_path / "copy"
    copy.mkdir()
    (copy / "events.jsonl").write_bytes((synthetic / "events.jsonl").read_bytes())
    from_log = analysis.load_run(copy)
    written = from_log.to_parquet()
    assert written == copy / "frames" and len(list(written.glob("*.parquet"))) == 12

    def no_log(path: Path) -> None:
        raise AssertionError(f"read {path} although fresh Parquet frames exist")

    with monkeypatch.context() as patch:
        patch.setattr("analysis.run.read_log", no_log)
        from_parquet = analysis.load_run(copy)
    assert_documented(from_parquet)
    for name in columns.FRAMES:
        pd.testing.assert_frame_equal(getattr(from_log, name), getattr(from_parquet, name))
    with (copy / "events.jsonl").open("a") as log:  # the run goes on: the frames are stale
        event = {"seq": 10**6, "t": 1e4, "ts": "2026-01-01T00:00:00+00:00", "agent": None}
        log.write(json.dumps({**event, "kind": "limit", "limit": "wall_time"}) + "\n")
    assert len(analysis.load_run(copy).events) == len(from_log.events) + 1
    analysis.load_run(copy).to_parquet()
    moved = copy.rename(tmp_path / "moved")  # frames in <run>/frames/ follow their run
    with monkeypatch.context() as patch:
        patch.setattr("analysis.run.read_log", no_log)
        assert analysis.load_run(moved).paths == [moved]


def test_load_runs_joins_runs_by_run_id(quickstart: Path, race: Path, tmp_path: Path) -> None:
    both = analysis.load_runs([quickstart, race])
    assert both.run_ids == [quickstart.name, race.name]
    assert both.turns.groupby("run_id").size().to_dict() == {quickstart.name: 15, race.name: 84}
    assert_documented(both)
    pattern = str(quickstart.parent / "*quickstart")
    assert analysis.load_runs(pattern).run_ids == [quickstart.name]
    with pytest.raises(analysis.RunLoadError, match="no run matches"):
        analysis.load_runs(str(tmp_path / "nothing-*"))
    with pytest.raises(analysis.RunLoadError, match="sharing an id"):
        analysis.load_runs([quickstart, quickstart])
    saved = both.to_parquet(tmp_path / "both")
    assert analysis.load_run(saved).run_ids == both.run_ids


def test_bad_input_gives_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(analysis.RunLoadError, match="no such run directory"):
        analysis.load_run(tmp_path / "missing")
    with pytest.raises(analysis.RunLoadError, match=r"no events\.jsonl"):
        analysis.load_run(tmp_path)
    good = '{"seq":0,"t":0.0,"ts":"2026-01-01T00:00:00+00:00","agent":null,"kind":"setup"}'
    (tmp_path / "events.jsonl").write_text(f"{good}\nnot json\n{good}\n")
    with pytest.raises(analysis.RunLoadError, match=r"events\.jsonl:2: "):
        analysis.load_run(tmp_path)
    bad_type = good.replace('"kind":"setup"', '"kind":"command","exit_code":"zero"')
    (tmp_path / "events.jsonl").write_text(f"{good}\n{bad_type}\n{good}\n")
    with pytest.raises(analysis.RunLoadError, match=r"events\.jsonl:2: .*command"):
        analysis.load_run(tmp_path)


def test_unknown_kinds_and_unusual_key_order_are_read(tmp_path: Path) -> None:
    lines = [
        # Payload first, with a nested "kind" key: the kind must come from the event itself.
        {
            "input": {"kind": "x"},
            "name": "bash",
            "tool_use_id": "u1",
            "turn": 1,
            "kind": "tool_call",
            "agent": "a",
            "ts": "2026-01-01T00:00:00+00:00",
            "t": 0.5,
            "seq": 0,
        },
        {
            "seq": 1,
            "t": 0.6,
            "ts": "2026-01-01T00:00:01+00:00",
            "agent": "a",
            "kind": "from_the_future",
            "anything": [1, {"x": 2}],
        },
    ]
    spaced = '{"seq": 2, "t": 0.7, "ts": "2026-01-01T00:00:02+00:00", "agent": "a", "kind": '
    spaced += '"tool_call", "turn": 2, "tool_use_id": "u2", "name": "x", "input" : {"y": [1]}}'
    text = "".join(json.dumps(e) + "\n" for e in lines) + "\n   \n" + spaced + "\n"
    (tmp_path / "events.jsonl").write_text(text)  # with a blank and a whitespace-only line
    run = analysis.load_run(tmp_path)
    assert run.events["kind"].tolist() == ["tool_call", "from_the_future", "tool_call"]
    assert [json.loads(i) for i in run.tool_calls["input"]] == [{"kind": "x"}, {"y": [1]}]
    assert run.payloads("from_the_future").iloc[0]["anything"] == [1, {"x": 2}]


def test_the_schemas_read_fields_that_sim_declares() -> None:
    from analysis.jsonl import KIND_FIELDS
    from sim.events import Payload

    numeric = {"int64": (int,), "double": (float, int), "bool": (bool,), "string": (str,)}
    for kind, fields in KIND_FIELDS.items():
        model = Payload.registry[kind]
        for name, arrow_type in fields:
            assert name in model.model_fields, f"{kind}.{name} is not in sim/events.py"
            annotation = str(model.model_fields[name].annotation)
            allowed = numeric.get(str(arrow_type))
            if allowed:
                assert any(t.__name__ in annotation for t in allowed), (kind, name, annotation)


def test_readme_documents_every_column() -> None:
    readme = (ROOT / "analysis" / "README.md").read_text()
    assert columns.render_markdown() in readme, "paste analysis.columns.render_markdown() into it"


def test_sim_and_analysis_keep_their_imports_apart() -> None:
    code = (
        "import sys, sim.cli, sim.runner;"
        "bad = {'pandas', 'matplotlib', 'pyarrow', 'analysis'} & set(sys.modules);"
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)
    code = (
        "import sys, analysis, analysis.plots, analysis.report;"
        "bad = {'trio', 'pexpect', 'sim'} & set(sys.modules); assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)
