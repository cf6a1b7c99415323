"""analysis.plots: each figure draws what the frames hold, for 32 agents and for none."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from matplotlib.figure import Figure
from matplotlib.image import AxesImage

import analysis
from analysis import plots
from analysis.activity import STATES, occupancy
from analysis.run import RunFrames
from tests.analysis_runs import real_run
from tests.synthetic import write_run


@pytest.fixture(scope="module")
def big(tmp_path_factory: pytest.TempPathFactory) -> RunFrames:
    runs = tmp_path_factory.mktemp("runs")
    return analysis.load_run(write_run(runs, agents=32, turns=25, seed=3, name="big"))


@pytest.fixture(scope="module")
def quickstart(tmp_path_factory: pytest.TempPathFactory) -> RunFrames:
    return analysis.load_run(real_run(tmp_path_factory.mktemp("runs"), "quickstart"))


def rendered(fig: Figure) -> Figure:
    """Draw the figure to PNG (layout included), as the report does."""
    fig.savefig(io.BytesIO(), format="png", dpi=40)
    return fig


def image_of(fig: Figure, title: str) -> np.ndarray:
    for ax in fig.axes:
        if ax.get_title() == title or ax.get_xlabel() == title:
            (image,) = [a for a in ax.get_children() if isinstance(a, AxesImage)]
            return np.ma.filled(image.get_array(), np.nan).astype(float)
    raise AssertionError(f"no axes titled {title!r}")


def texts(fig: Figure) -> str:
    return " ".join(t.get_text() for ax in fig.axes for t in ax.texts)


def test_occupancy_integrates_every_interval_exactly(big: RunFrames) -> None:
    agents = plots.natural_order(big.agents["agent"])
    edges = np.linspace(0.0, big.activity["end"].max(), 101)
    spent = occupancy(big.activity, agents, edges)
    totals = big.activity.groupby(["agent", "state"])["duration"].sum()
    for (agent, state), seconds in totals.items():
        in_bins = spent[agents.index(agent), STATES.index(state)]
        assert in_bins.sum() == pytest.approx(seconds, abs=1e-6)
        assert (in_bins >= -1e-9).all() and (in_bins <= edges[1] + 1e-9).all()


def test_activity_shows_each_agents_time_by_state(big: RunFrames) -> None:
    fig = rendered(plots.activity_timeline(big))
    ax = fig.axes[0]
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert labels == [f"agent-{i:02d}" for i in range(1, 33)]
    assert fig.get_figheight() / 32 >= 0.25  # rows stay tall enough to read
    (image,) = ax.images
    shown = image.get_array()
    for i, agent in enumerate(labels):
        row = shown[i * 5 + 2].compressed()  # the agent's band, within its span
        time = big.activity[big.activity["agent"] == agent].groupby("state")["duration"].sum()
        for j, state in enumerate(STATES):
            share = time.get(state, 0.0) / time.sum()
            assert (row == j).mean() == pytest.approx(share, abs=0.05), (agent, state)


def test_lock_matrix_holds_the_seconds_each_holder_cost_each_waiter(big: RunFrames) -> None:
    fig = rendered(plots.lock_contention(big))
    grid = image_of(fig, "Who kept whom waiting (seconds)")
    waited = big.locks[big.locks["contended"]]
    expected = waited.pivot_table(index="agent", columns="holder", values="wait", aggfunc="sum")
    expected = expected.reindex(
        index=plots.natural_order(expected.index), columns=plots.natural_order(expected.columns)
    )
    assert np.allclose(grid, expected.to_numpy(dtype=float), equal_nan=True)


def test_token_heatmap_sums_to_the_runs_tokens(big: RunFrames) -> None:
    fig = rendered(plots.tokens_and_cost(big))
    grid = image_of(fig, "Tokens over time")
    assert np.nansum(grid) == pytest.approx(big.turns["total_tokens"].sum())
    assert texts(fig).count("unknown") == big.usage["cost_usd"].isna().sum()


def test_command_bars_count_every_command(big: RunFrames) -> None:
    fig = rendered(plots.command_outcomes(big))
    left = fig.axes[0]
    widths = sum(p.get_width() for p in left.patches)
    assert widths == len(big.commands)
    assert "truncated" in texts(fig) and big.commands["truncated"].any()


def test_message_graph_draws_every_pair_and_the_exact_counts(big: RunFrames) -> None:
    fig = rendered(plots.message_graph(big))
    graph = fig.axes[0]
    pairs = big.messages.groupby(["agent", "recipient"]).size()
    assert len(graph.patches) == len(pairs)
    grid = image_of(fig, "recipient")
    assert grid.sum() == len(big.messages)


def test_runs_with_nothing_to_show_say_so(quickstart: RunFrames) -> None:
    assert "no messages were sent" in texts(rendered(plots.message_graph(quickstart)))
    assert "scripted" in texts(rendered(plots.tokens_and_cost(quickstart)))
    assert "exited 0" in texts(rendered(plots.command_outcomes(quickstart)))
    fig = rendered(plots.activity_timeline(quickstart))
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == ["alice", "bob", "carol"]


def test_several_runs_need_a_run_id(big: RunFrames, quickstart: RunFrames, tmp_path: Path) -> None:
    both = analysis.load_runs([*big.paths, *quickstart.paths])
    with pytest.raises(ValueError, match="pass run_id"):
        plots.activity_timeline(both)
    fig = plots.activity_timeline(both, run_id=quickstart.run_ids[0])
    assert len(fig.axes[0].get_yticklabels()) == 3
