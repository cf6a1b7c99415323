"""Workspace.confine and open_confined against hostile paths: .., symlinks, /proc, races."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from sim.errors import PathError
from sim.workspace import Owner, Workspace, new_run_dir, real_path, relative_under


@pytest.fixture
def ws(tmp_path: Path) -> Workspace:
    workspace = Workspace(tmp_path / "run")
    workspace.create(["a", "b"])
    (workspace.agent_dir("a") / "notes.txt").write_text("a's notes")
    (workspace.agent_dir("b") / "secret.txt").write_text("b's secret")
    (workspace.shared / "board.txt").write_text("shared")
    (tmp_path / "outside.txt").write_text("outside")
    return workspace


def own(ws: Workspace) -> Path:
    return ws.agent_dir("a").resolve()


@pytest.mark.parametrize(
    "path",
    ["notes.txt", "./notes.txt", "sub/../notes.txt", "new/file.txt", "", "."],
)
def test_paths_inside_the_own_directory_are_allowed(ws: Workspace, path: str) -> None:
    assert ws.confine("a", path).is_relative_to(own(ws))


def test_shared_is_allowed_by_absolute_and_relative_paths(ws: Workspace) -> None:
    shared = ws.shared.resolve()
    assert ws.confine("a", str(shared / "board.txt")) == shared / "board.txt"
    assert ws.confine("a", "../../shared/board.txt") == shared / "board.txt"
    assert ws.confine("a", "board.txt", cwd=shared) == shared / "board.txt"


@pytest.mark.parametrize(
    "path",
    [
        "../../../outside.txt",
        "../../..",
        "/etc/passwd",
        "/",
        "sub/../../../../outside.txt",
        "/proc/self/root/etc/passwd",
        "/proc/self/cwd/../outside.txt",
        "//etc/passwd",
        "../..",  # the workspace itself, and its agents/ listing
    ],
)
def test_escapes_by_dotdot_absolute_and_proc_are_refused(ws: Workspace, path: str) -> None:
    with pytest.raises(PathError, match="outside your directory"):
        ws.confine("a", path)


def test_unreadable_magic_links_are_refused(ws: Workspace) -> None:
    # Another process's root: unreadable here, resolved elsewhere; refused either way.
    with pytest.raises(PathError):
        ws.confine("a", "/proc/1/root/etc/shadow")


@pytest.mark.parametrize("path", ["../b/secret.txt", "../b", "../a/../b/secret.txt"])
def test_another_agents_directory_is_refused_and_named(ws: Workspace, path: str) -> None:
    with pytest.raises(PathError, match="in agent b's directory"):
        ws.confine("a", path)
    absolute = str(ws.agent_dir("b").resolve() / "secret.txt")
    with pytest.raises(PathError, match="in agent b's directory"):
        ws.confine("a", absolute)


def test_symlink_to_outside_is_refused(ws: Workspace, tmp_path: Path) -> None:
    (ws.agent_dir("a") / "link").symlink_to(tmp_path / "outside.txt")
    (ws.agent_dir("a") / "dangling").symlink_to("/etc/sim-new-file")
    (ws.agent_dir("a") / "to_b").symlink_to(ws.agent_dir("b") / "secret.txt")
    for path in ("link", "dangling", "to_b"):
        with pytest.raises(PathError):
            ws.confine("a", path)


def test_symlinked_parent_directory_is_refused(ws: Workspace) -> None:
    (ws.agent_dir("a") / "etc").symlink_to("/etc")
    (ws.agent_dir("a") / "chain1").symlink_to("chain2")
    (ws.agent_dir("a") / "chain2").symlink_to("/")
    (ws.shared / "b_home").symlink_to(ws.agent_dir("b"))
    for path in ("etc/passwd", "chain1/etc/passwd", "../../shared/b_home/secret.txt"):
        with pytest.raises(PathError):
            ws.confine("a", path)


def test_symlinks_that_stay_inside_are_followed(ws: Workspace) -> None:
    (ws.agent_dir("a") / "real").mkdir()
    (ws.agent_dir("a") / "alias").symlink_to("real")
    (ws.agent_dir("a") / "board").symlink_to(ws.shared / "board.txt")
    assert ws.confine("a", "alias/x.txt") == own(ws) / "real" / "x.txt"
    assert ws.confine("a", "board") == ws.shared.resolve() / "board.txt"


def test_symlink_loop_and_nul_byte_are_refused_or_harmless(ws: Workspace) -> None:
    (ws.agent_dir("a") / "loop1").symlink_to("loop2")
    (ws.agent_dir("a") / "loop2").symlink_to("loop1")
    resolved = ws.confine("a", "loop1")  # stays inside; opening it is refused
    assert resolved.is_relative_to(own(ws))
    with pytest.raises(PathError):
        os.close(ws.open_confined("a", "loop1"))
    with pytest.raises(PathError, match="NUL byte"):
        ws.confine("a", "notes\0.txt")


def test_relative_path_from_a_cwd_outside_is_judged_where_it_leads(ws: Workspace) -> None:
    with pytest.raises(PathError):
        ws.confine("a", "passwd", cwd=Path("/etc"))
    assert ws.confine("a", "notes.txt", cwd=ws.agent_dir("a")) == own(ws) / "notes.txt"


def test_own_directory_swapped_for_a_symlink_gives_nothing(ws: Workspace, tmp_path: Path) -> None:
    home = ws.agent_dir("a")
    home.rename(tmp_path / "moved")
    home.symlink_to("/")
    with pytest.raises(PathError, match="no longer a directory"):
        ws.confine("a", "etc/passwd")


def test_open_confined_reads_and_creates_inside(ws: Workspace) -> None:
    fd = ws.open_confined("a", "notes.txt")
    with os.fdopen(fd) as f:
        assert f.read() == "a's notes"
    fd = ws.open_confined("a", "deep/er/new.txt", os.O_WRONLY | os.O_CREAT, parents=True)
    os.write(fd, b"made")
    os.close(fd)
    assert (ws.agent_dir("a") / "deep/er/new.txt").read_text() == "made"
    with pytest.raises(FileNotFoundError):
        ws.open_confined("a", "missing/new.txt", os.O_WRONLY | os.O_CREAT)


def test_open_confined_takes_a_checked_path_without_resolving_it_again(ws: Workspace) -> None:
    checked = str(ws.confine("a", "notes.txt"))
    with os.fdopen(ws.open_confined("a", checked, checked=True)) as f:
        assert f.read() == "a's notes"
    # `checked` skips only the resolving: the path must still be inside and plain.
    with pytest.raises(PathError, match="outside your directory"):
        ws.open_confined("a", str(ws.agent_dir("b").resolve() / "secret.txt"), checked=True)
    with pytest.raises(PathError, match="not a resolved path"):
        ws.open_confined("a", f"{own(ws)}/../b/secret.txt", checked=True)
    with pytest.raises(PathError, match="not a resolved path"):
        ws.open_confined("a", f"{own(ws)}//notes.txt", checked=True)


class _RacingWorkspace(Workspace):
    """Reproduces the race deterministically: right after the check passes, a process of
    the agent swaps a checked directory for a symlink to outside."""

    swap: Path
    target: Path

    def _confine(
        self, agent: str, path: str, cwd: Path | str | None, *, checked: bool = False
    ) -> tuple[str, str]:
        answer = super()._confine(agent, path, cwd, checked=checked)
        self.swap.rename(self.swap.with_name("old"))
        self.swap.symlink_to(self.target)
        return answer


@pytest.mark.parametrize("checked", [False, True])
def test_open_confined_refuses_a_symlink_swapped_in_after_the_check(
    tmp_path: Path, checked: bool
) -> None:
    ws = _RacingWorkspace(tmp_path / "run")
    ws.create(["a"])
    (ws.agent_dir("a") / "dir").mkdir()
    (tmp_path / "victim").mkdir()
    (tmp_path / "victim" / "file.txt").write_text("must not change")
    ws.swap, ws.target = ws.agent_dir("a") / "dir", tmp_path / "victim"
    plain = Workspace(tmp_path / "run")  # confines without the race
    path = str(plain.confine("a", "dir/file.txt")) if checked else "dir/file.txt"
    with pytest.raises(PathError, match="'dir' is not a plain directory"):
        ws.open_confined("a", path, os.O_WRONLY | os.O_TRUNC, checked=checked)
    assert (tmp_path / "victim" / "file.txt").read_text() == "must not change"


def test_open_confined_refuses_a_final_symlink_swapped_in(tmp_path: Path) -> None:
    ws = _RacingWorkspace(tmp_path / "run")
    ws.create(["a"])
    (ws.agent_dir("a") / "f.txt").write_text("mine")
    (tmp_path / "victim.txt").write_text("must not change")
    ws.swap, ws.target = ws.agent_dir("a") / "f.txt", tmp_path / "victim.txt"
    with pytest.raises(PathError, match=r"'f\.txt' is not a plain directory or file"):
        ws.open_confined("a", "f.txt", os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    assert (tmp_path / "victim.txt").read_text() == "must not change"


@pytest.mark.skipif(os.geteuid() != 0, reason="chown to another user needs root")
def test_files_made_for_an_agent_under_users_isolation_belong_to_it(ws: Workspace) -> None:
    ws.owners["a"] = Owner(uid=43210, gid=43211, shared_gid=43212)
    fd = ws.open_confined("a", "sub/new.txt", os.O_WRONLY | os.O_CREAT, 0o644, parents=True)
    os.close(fd)
    made, sub = ws.agent_dir("a") / "sub/new.txt", ws.agent_dir("a") / "sub"
    assert (made.stat().st_uid, made.stat().st_gid, made.stat().st_mode & 0o777) == (
        43210,
        43211,
        0o640,
    )
    assert (sub.stat().st_uid, sub.stat().st_mode & 0o777) == (43210, 0o700)
    os.close(ws.open_confined("a", "../../shared/note.txt", os.O_WRONLY | os.O_CREAT, 0o666))
    note = (ws.shared / "note.txt").stat()
    assert (note.st_uid, note.st_gid, note.st_mode & 0o777) == (43210, 43212, 0o660)
    # An existing file keeps its owner: the harness only writes into it.
    os.close(ws.open_confined("a", "notes.txt", os.O_WRONLY | os.O_CREAT))
    assert (ws.agent_dir("a") / "notes.txt").stat().st_uid == os.getuid()


def test_run_directory_is_absolute_from_a_relative_runs_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    run_dir = new_run_dir(Path("runs"), "x")
    assert run_dir.is_absolute() and run_dir.parent == tmp_path / "runs"
    assert Workspace(run_dir).shared.is_absolute()


def test_confine_works_before_the_directories_exist(tmp_path: Path) -> None:
    ws = Workspace(tmp_path / "run")
    assert ws.confine("a", "x.txt") == (tmp_path / "run/workspace/agents/a/x.txt").resolve()
    with pytest.raises(PathError, match="outside your directory"):
        ws.confine("a", "../../../../x.txt")


def test_real_path_agrees_with_os_path_realpath(tmp_path: Path) -> None:
    (tmp_path / "d/e").mkdir(parents=True)
    (tmp_path / "d/e/f.txt").write_text("x")
    (tmp_path / "link").symlink_to(tmp_path / "d/e")
    (tmp_path / "chain").symlink_to("link")
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    os.mkfifo(tmp_path / "fifo")  # O_PATH does not open it for reading: no blocking
    cases = [
        "d/e/f.txt",
        "link/f.txt",
        "chain/f.txt",
        "link/../e/f.txt",  # `..` after a symlink goes up from where the link led
        "dangling",
        "dangling/x",
        "d/e/new.txt",  # not made yet
        "d/e/f.txt/",  # a file with a trailing slash
        "fifo",
        "/proc/self/root" + str(tmp_path / "link/f.txt"),
        "",
    ]
    for case in cases:
        path = os.path.join(tmp_path, case)  # a string: pathlib would drop a trailing slash
        assert real_path(path) == os.path.realpath(path), case


def test_relative_under_compares_whole_components() -> None:
    assert relative_under("/w/shared", "/w/shared") == ""
    assert relative_under("/w/shared/a/b.txt", "/w/shared") == "a/b.txt"
    assert relative_under("/w/shared2/x", "/w/shared") is None  # a prefix, not a parent
    assert relative_under("/w", "/w/shared") is None
