"""The text editor tool, driven by scripted steps on a MockClock with fake shells."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from sim.errors import PathError, ToolError
from sim.tools.editor import EditorTool
from sim.workspace import Workspace
from tests.conftest import scenario_dict
from tests.test_scheduler import run_fake

EDIT = "str_replace_based_edit_tool"


def edit(**args: Any) -> dict[str, Any]:
    return {EDIT: args}


def results(events: list[dict[str, Any]], agent: str = "a") -> list[dict[str, Any]]:
    return [e for e in events if e["kind"] == "tool_result" and e["agent"] == agent]


def run_steps(tmp_path: Path, steps: list[dict[str, Any]], **extra: Any) -> Any:
    agents = [{"name": "a", "steps": steps}, *extra.pop("others", [])]
    return run_fake(tmp_path, scenario_dict(agents=agents, **extra))


def test_every_command_round_trips_through_a_scripted_agent(tmp_path: Path) -> None:
    steps = [
        edit(command="create", path="notes/todo.txt", file_text="one\ntwo\nthree\n"),
        edit(command="view", path="notes/todo.txt"),
        edit(command="view", path="notes/todo.txt", view_range=[2, -1]),
        edit(command="str_replace", path="notes/todo.txt", old_str="two", new_str="TWO"),
        edit(command="insert", path="notes/todo.txt", insert_line=0, insert_text="zero"),
        edit(command="insert", path="notes/todo.txt", insert_line=4, insert_text="four\nfive"),
        edit(command="view", path="."),
    ]
    result, events = run_steps(tmp_path, steps)
    out = [r["content"] for r in results(events)]
    assert not any(r["is_error"] for r in results(events)[:-1]), out
    agent_dir = result.run_dir / "workspace/agents/a"
    assert (agent_dir / "notes/todo.txt").read_text() == "zero\none\nTWO\nthree\nfour\nfive\n"
    assert out[0].startswith("Created ") and out[0].endswith("(14 chars)")
    assert out[1].endswith("     1\tone\n     2\ttwo\n     3\tthree")  # no line for the final \n
    assert out[2] == "     2\ttwo\n     3\tthree"
    assert "     2\tTWO" in out[3] and out[3].startswith("Edited ")
    assert "Inserted 1 line(s) after line 0" in out[4] and "     1\tzero" in out[4]
    assert "Inserted 2 line(s) after line 4" in out[5] and "     6\tfive" in out[5]
    assert f"{agent_dir}/notes/" in out[6] and f"{agent_dir}/notes/todo.txt" in out[6]


def test_str_replace_needs_exactly_one_match(tmp_path: Path) -> None:
    steps = [
        edit(command="create", path="f.py", file_text="x = 1\ny = 1\nx = 1\n"),
        edit(command="str_replace", path="f.py", old_str="x = 1", new_str="x = 2"),
        edit(command="str_replace", path="f.py", old_str="z = 1", new_str="z = 2"),
        edit(command="str_replace", path="f.py", old_str="", new_str="z"),
    ]
    result, events = run_steps(tmp_path, steps)
    many, none, empty = results(events)[1:4]
    assert many["is_error"] and "occurs 2 times" in many["content"] and "[1, 3]" in many["content"]
    assert none["is_error"] and "did not appear verbatim" in none["content"]
    assert empty["is_error"] and "old_str is empty" in empty["content"]
    assert (result.run_dir / "workspace/agents/a/f.py").read_text() == "x = 1\ny = 1\nx = 1\n"


def test_bad_input_gets_clear_errors(tmp_path: Path) -> None:
    steps = [
        edit(command="view", path="/etc/passwd"),
        edit(command="create", path="../b/x.txt", file_text="hi"),
        edit(command="view", path="missing.txt"),
        edit(command="undo_edit", path="missing.txt"),
        edit(command="create", path="../../shared/.locks/x.lock", file_text=""),
        edit(command="create", path="a.txt", file_text="1\n2\n"),
        edit(command="view", path="a.txt", view_range=[3, 4]),
        edit(command="insert", path="a.txt", insert_line=9, insert_text="x"),
        edit(command="create", path="a.txt"),
    ]
    _, events = run_steps(tmp_path, steps)
    out = [(r["is_error"], r["content"]) for r in results(events)]
    assert all(is_error for is_error, _ in out[:5]) and not out[5][0]
    assert "outside your directory" in out[0][1] and "outside your directory" in out[1][1]
    assert "does not exist" in out[2][1]
    assert "undo_edit is not available" in out[3][1]
    assert "lock files" in out[4][1]
    assert out[6][0] and "between 1 and 2" in out[6][1]
    assert out[7][0] and "from 0 (before the first line) to 2" in out[7][1]
    assert out[8][0] and "needs `file_text`" in out[8][1]


def test_a_write_to_a_shared_file_waits_for_its_lock(tmp_path: Path) -> None:
    holder = {
        "name": "b",
        "steps": [{"lock": "plan.md"}, {"bash": "sleep 5"}, {"unlock": "plan.md"}],
    }
    steps = [
        {"bash": "sleep 1"},
        edit(command="create", path="../../shared/plan.md", file_text="# plan\n"),
    ]
    result, events = run_steps(tmp_path, steps, others=[holder])
    (write,) = [e for e in events if e["kind"] == "file_write"]
    assert write["agent"] == "a" and write["path"] == "plan.md" and write["via"] == "editor"
    assert write["locked"] and write["bytes"] == 7 and write["t"] == 5.0  # after b's unlock
    waits = [e for e in events if e["kind"] == "lock_wait" and e["agent"] == "a"]
    assert waits and waits[0]["holder"] == "b"
    releases = [e for e in events if e["kind"] == "lock_release" and e["agent"] == "a"]
    assert releases and releases[0]["lock"] == "plan.md"  # held for the write only
    assert (result.run_dir / "workspace/shared/plan.md").read_text() == "# plan\n"


def test_an_edit_under_a_lock_the_agent_holds_does_not_wait(tmp_path: Path) -> None:
    steps = [
        {"lock": "plan.md"},
        edit(command="create", path="../../shared/plan.md", file_text="a\n"),
        edit(command="str_replace", path="../../shared/plan.md", old_str="a", new_str="b"),
        {"unlock": "plan.md"},
    ]
    result, events = run_steps(tmp_path, steps)
    assert [e["kind"] for e in events if e["kind"].startswith("lock_")] == [
        "lock_acquire",
        "lock_release",
    ]
    assert sum(e["kind"] == "file_write" for e in events) == 2
    assert (result.run_dir / "workspace/shared/plan.md").read_text() == "b\n"


def test_the_default_tools_include_the_editor(tmp_path: Path) -> None:
    _, events = run_steps(tmp_path, [{"finish": "ok"}])
    (start,) = [e for e in events if e["kind"] == "agent_start"]
    assert EDIT in start["tools"]


def test_an_agent_cannot_widen_its_directory_by_swapping_it_for_a_symlink(tmp_path: Path) -> None:
    import pytest

    from sim.errors import PathError
    from sim.workspace import Workspace

    ws = Workspace(tmp_path / "run")
    ws.create(["a"])
    assert ws.confine("a", "notes.txt") == (ws.agent_dir("a") / "notes.txt").resolve()
    ws.agent_dir("a").rename(tmp_path / "moved")
    ws.agent_dir("a").symlink_to("/")
    with pytest.raises(PathError, match="is no longer a directory"):
        ws.confine("a", "etc/passwd")


def _editor_on(tmp_path: Path) -> tuple[Workspace, Any]:
    ws = Workspace(tmp_path / "run")
    ws.create(["a"])
    return ws, SimpleNamespace(agent="a", workspace=ws)  # all that reading and writing use


def test_a_directory_swapped_for_a_symlink_after_the_check_leads_nowhere(tmp_path: Path) -> None:
    # The race an agent's process could win between confine's check and the open: the
    # editor opens through open_confined, which refuses a symlink on the way.
    ws, ctx = _editor_on(tmp_path)
    sub = ws.agent_dir("a") / "sub"
    sub.mkdir()
    (sub / "f.txt").write_text("mine")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "f.txt").write_text("secret")
    path = ws.confine("a", "sub/f.txt")  # checked while sub is a real directory
    sub.rename(sub.with_name("old"))
    sub.symlink_to(outside)  # then swapped
    tool = EditorTool()
    with pytest.raises(PathError):
        tool._read(ctx, path)
    with pytest.raises(PathError):
        tool._replace(ctx, path, "overwritten", create_dirs=False)
    assert (outside / "f.txt").read_text() == "secret"
    assert list(outside.iterdir()) == [outside / "f.txt"]  # no temporary file left there


def test_a_directory_listing_shows_symlinks_but_never_follows_them(tmp_path: Path) -> None:
    # An agent's links to another agent's directory and to /etc: listed as entries, their
    # contents never (the harness may be root, reading where the agent's user may not).
    ws, ctx = _editor_on(tmp_path)
    ws.create(["b"])
    (ws.agent_dir("b") / "b_secret.txt").write_text("b's")
    own = ws.agent_dir("a")
    (own / "notes").mkdir()
    (own / "notes" / "todo.txt").write_text("mine")
    (own / "notes" / "deeper").mkdir()
    (own / "to_b").symlink_to(ws.agent_dir("b"))
    (own / "notes" / "to_etc").symlink_to("/etc")
    (own / ".hidden").mkdir()
    out = EditorTool()._view(ctx, ws.confine("a", "."), None)
    base = str(ws.confine("a", "."))
    assert out.splitlines()[1:] == [
        f"{base}/notes/",
        f"{base}/notes/deeper/",
        f"{base}/notes/to_etc",
        f"{base}/notes/todo.txt",
        f"{base}/to_b",
    ]
    assert "b_secret" not in out and "passwd" not in out
    with pytest.raises(ToolError, match="view_range applies to files, not directories"):
        EditorTool()._view(ctx, ws.confine("a", "notes"), [1, 2])
    with pytest.raises(ToolError, match="is a directory; view it, or give a file path"):
        EditorTool()._read(ctx, ws.confine("a", "notes"))


def test_a_fifo_is_refused_without_hanging_the_harness(tmp_path: Path) -> None:
    ws, ctx = _editor_on(tmp_path)
    os.mkfifo(ws.agent_dir("a") / "pipe")
    with pytest.raises(ToolError, match="not a regular file"):
        EditorTool()._read(ctx, ws.confine("a", "pipe"))


def test_a_file_is_read_whole_up_to_the_size_limit_and_refused_past_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("sim.tools.editor._MAX_FILE_BYTES", 100_000)
    ws, ctx = _editor_on(tmp_path)
    tool = EditorTool()
    big = ws.agent_dir("a") / "big.txt"
    text = "".join(f"line {i}\n" for i in range(20_000))[:100_000]  # past one 64 KiB read
    big.write_text(text)
    assert tool._read(ctx, ws.confine("a", "big.txt")) == text
    big.write_text(text + "x")
    with pytest.raises(ToolError, match="is 100001 bytes: too large for the editor"):
        tool._read(ctx, ws.confine("a", "big.txt"))
    (ws.agent_dir("a") / "empty.txt").write_text("")
    assert tool._read(ctx, ws.confine("a", "empty.txt")) == ""
    # No descriptor is left open on either file, the refused one included. (Named, not
    # counted: an earlier test's inotify descriptor may close in its thread meanwhile.)
    open_files = set()
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):  # the listing's own descriptor, closed by now
            open_files.add(os.readlink(f"/proc/self/fd/{fd}"))
    assert not open_files & {os.path.realpath(big), os.path.realpath(big.with_name("empty.txt"))}
