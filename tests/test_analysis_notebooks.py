"""The notebooks in analysis/notebooks/, executed with nbclient against runs made here.

The kernel is this interpreter, through a kernelspec written to a temporary directory: it
does not depend on which kernels a machine has installed, so a fresh CI machine runs it too.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import nbformat
import pytest
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import KernelManager
from nbclient import NotebookClient
from nbformat.v4 import new_code_cell

from tests.analysis_runs import ROOT, counter_race, real_run

NOTEBOOKS = ROOT / "analysis" / "notebooks"


@pytest.fixture(scope="module")
def kernels(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("kernels")
    spec = directory / "python3"
    spec.mkdir()
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    kernel = {"argv": argv, "display_name": "Python 3 (sim tests)", "language": "python"}
    (spec / "kernel.json").write_text(json.dumps(kernel))
    return directory


def execute(kernels: Path, name: str, parameters: str, check: str) -> tuple[list[str], str]:
    """Run notebook `name` with its parameters cell replaced and `check` appended; return
    the MIME types of every output and what `check` printed."""
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    (cell,) = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    cell.source = parameters
    nb.cells.append(new_code_cell(check))
    manager = KernelManager(
        kernel_name="python3", kernel_spec_manager=KernelSpecManager(kernel_dirs=[str(kernels)])
    )
    client = NotebookClient(
        nb, km=manager, timeout=300, resources={"metadata": {"path": str(NOTEBOOKS)}}
    )
    env = dict(
        os.environ, PYTHONPATH=str(ROOT), MPLBACKEND="module://matplotlib_inline.backend_inline"
    )
    client.execute(env=env)  # raises CellExecutionError, with the traceback, if a cell fails
    mimes = [
        m for c in nb.cells if c.cell_type == "code" for o in c.outputs for m in o.get("data", {})
    ]
    printed = "".join(o.get("text", "") for o in nb.cells[-1].outputs if o.output_type == "stream")
    return mimes, printed


def test_explore_run_runs_on_a_fresh_run(kernels: Path, tmp_path: Path) -> None:
    run_dir = real_run(tmp_path, "quickstart")
    mimes, printed = execute(
        kernels,
        "explore_run.ipynb",
        f"RUN_DIR = {str(run_dir)!r}",
        "import json; print(json.dumps({'run': run.run_ids, 'agents': sorted(run.agents.agent),"
        " 'turns': len(run.turns)}))",
    )
    assert json.loads(printed) == {
        "run": [run_dir.name],
        "agents": ["alice", "bob", "carol"],
        "turns": 15,
    }
    assert mimes.count("image/png") == 5  # the five plots rendered inline


def test_compare_runs_counts_lost_updates_per_seed(kernels: Path, tmp_path: Path) -> None:
    runs = {
        (seed, lock): counter_race(tmp_path, seed=seed, use_lock=lock)
        for seed in (1, 2)
        for lock in (True, False)
    }
    mimes, printed = execute(
        kernels,
        "compare_runs.ipynb",
        f"RUNS = {[str(p) for p in runs.values()]!r}",
        "print(summary[['run_id', 'seed', 'use_lock', 'expected', 'final', 'lost']]"
        ".to_json(orient='records'))",
    )
    rows = {r["run_id"]: r for r in json.loads(printed)}
    assert len(rows) == 4
    for (seed, lock), run_dir in runs.items():
        row = rows[run_dir.name]
        final = int((run_dir / "workspace/shared/counter.txt").read_text())
        assert (row["seed"], row["use_lock"], row["expected"]) == (seed, lock, 20)
        assert (row["final"], row["lost"]) == (final, 20 - final)
        assert (row["lost"] == 0) if lock else (row["lost"] > 0)
    assert mimes.count("image/png") == 2
