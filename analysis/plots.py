"""Plots of one run. Each function takes `RunFrames` and returns a matplotlib `Figure`.

Figures are built with the object-oriented API (`Figure`, not pyplot), so no global state
is touched and nothing is shown: save with `fig.savefig(...)`, or display it in a notebook.
Every plot stays readable at 32 agents: rows per agent grow the figure, dense pairs become a
matrix, and labels are sized to fit. A run with nothing to show (no messages, no lock
contention) gets a figure that says so rather than an empty frame.

When `run` holds several runs, pass `run_id`; otherwise the only run is plotted.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.colors import ListedColormap, LogNorm
from matplotlib.figure import Figure
from matplotlib.patches import FancyArrowPatch, Patch
from matplotlib.ticker import MaxNLocator

from analysis.activity import STATES, occupancy
from analysis.run import RunFrames

STATE_COLORS = {
    "thinking": "#4C72B0",
    "command": "#55A868",
    "lock_wait": "#C44E52",
    "idle": "#E5E5E5",
}
OUTCOME_COLORS = {"ok": "#55A868", "failed": "#DD8452", "timed_out": "#C44E52", "killed": "#8172B3"}
MAX_ARROWS = 120  # message graph: pairs drawn as arrows
TOKEN_COLORS = {
    "input_tokens": "#4C72B0",
    "output_tokens": "#DD8452",
    "cache_read_tokens": "#8DA0CB",
    "cache_write_tokens": "#937860",
}


def _natural(name: str) -> list[object]:
    """Sort key: agent-2 before agent-10."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def natural_order(names: Iterable[str]) -> list[str]:
    """Distinct names, naturally sorted (missing values dropped)."""
    return sorted({str(n) for n in names if isinstance(n, str)}, key=_natural)


def _select(run: RunFrames, run_id: str | None) -> tuple[str, dict[str, pd.DataFrame]]:
    ids = run.run_ids
    if run_id is None:
        if len(ids) != 1:
            raise ValueError(f"{len(ids)} runs loaded: pass run_id= one of {ids}")
        run_id = ids[0]
    elif run_id not in ids:
        raise ValueError(f"no run {run_id!r} here; loaded: {ids}")
    return run_id, {name: f[f["run_id"] == run_id] for name, f in run.frames.items()}


def _rows_height(n: int) -> float:
    return max(2.5, 0.26 * n + 1.6)


def _label_size(n: int) -> float:
    return 9 if n <= 16 else 7 if n <= 40 else 5


def _empty(fig: Figure, ax: Axes, text: str) -> Figure:
    ax.set_axis_off()
    ax.text(0.5, 0.5, text, ha="center", va="center", fontsize=12, transform=ax.transAxes)
    return fig


def _nothing(title: str, text: str) -> Figure:
    """A small figure that says why there is nothing to plot."""
    fig = Figure(figsize=(10, 1.6), layout="constrained")
    fig.suptitle(title, fontsize=11)
    return _empty(fig, fig.add_subplot(), text)


def activity_timeline(run: RunFrames, run_id: str | None = None, bins: int = 1600) -> Figure:
    """A Gantt chart: one row per agent, colored by what it was doing (thinking, running a
    command, waiting on a lock, idle), over seconds since the run started.

    The run's time is cut into `bins` columns (finer than the figure's pixels) and each
    column takes the state the agent spent most of it in (`activity.occupancy`): the cost
    stays the same for a million events, where one rectangle per interval took seconds."""
    run_id, f = _select(run, run_id)
    act = f["activity"]
    agents = natural_order(f["agents"]["agent"])
    title = f"What each agent was doing — {run_id}"
    if not agents:
        return _nothing(title, "no agent started in this run")
    fig = Figure(figsize=(12, _rows_height(len(agents))), layout="constrained")
    ax = fig.add_subplot()
    fig.suptitle(title, fontsize=11)
    end = max(float(act["end"].max()) if len(act) else 1.0, 1e-3)
    spent = occupancy(act, agents, np.linspace(0.0, end, bins + 1))
    # A bin nobody's span covers sums to rounding noise, not to zero: mask it by width.
    empty = spent.sum(axis=1) <= 1e-3 * end / bins
    dominant = np.ma.masked_where(empty, spent.argmax(axis=1))
    # Each agent's row is drawn thinner than its slot, so rows stay apart.
    rows = np.ma.masked_all((len(agents) * 5, bins), dtype=int)
    for i in range(len(agents)):
        rows[i * 5 + 1 : i * 5 + 5] = dominant[i]
    colors = ListedColormap([STATE_COLORS[s] for s in STATES])
    ax.imshow(
        rows,
        aspect="auto",
        cmap=colors,
        vmin=-0.5,
        vmax=len(STATES) - 0.5,
        extent=(0.0, end, len(agents) - 0.6, -0.6),
        interpolation="nearest",
    )
    ax.set_yticks(range(len(agents)), agents, fontsize=_label_size(len(agents)))
    ax.set_ylim(len(agents) - 0.5, -0.5)
    ax.set_xlabel("seconds since the run started")
    ax.set_xlim(0, end)
    ax.grid(axis="x", alpha=0.3)
    handles = [Patch(color=c, label=s.replace("_", " ")) for s, c in STATE_COLORS.items()]
    ax.legend(
        handles=handles,
        loc="lower center",
        bbox_to_anchor=(0.5, 1.0),
        ncols=4,
        frameon=False,
        fontsize=9,
    )
    return fig


def lock_contention(run: RunFrames, run_id: str | None = None) -> Figure:
    """Left: seconds waited per lock (total, with the number of waits and the longest).
    Right: who kept whom waiting — total seconds each waiter (row) waited on a lock held
    by each holder (column) when its wait began."""
    run_id, f = _select(run, run_id)
    locks = f["locks"]
    waited = locks[locks["contended"]]
    agents = natural_order(f["agents"]["agent"])
    title = f"Lock contention — {run_id}"
    if waited.empty:
        return _nothing(title, f"no lock was contended ({len(locks)} acquisitions, none waited)")
    fig = Figure(figsize=(14, max(4.0, _rows_height(len(agents)) * 0.8)), layout="constrained")
    left, right = fig.subplots(1, 2, width_ratios=[1, 1.3])
    fig.suptitle(title, fontsize=11)
    per_lock = waited.groupby("lock")["wait"].agg(["sum", "count", "max"]).sort_values("sum")
    per_lock = per_lock.tail(30)  # the 30 most waited-on locks
    y = np.arange(len(per_lock))
    left.barh(y, per_lock["sum"], color=STATE_COLORS["lock_wait"])
    left.set_yticks(y, per_lock.index, fontsize=_label_size(len(per_lock)))
    left.set_xlabel("seconds waited (total)")
    left.set_title("Wait time per lock", fontsize=10)
    for i, (_, r) in enumerate(per_lock.iterrows()):
        label = f" {int(r['count'])} waits, longest {r['max']:.1f} s"
        left.text(r["sum"], i, label, va="center", fontsize=7)
    left.set_xlim(0, per_lock["sum"].max() * 1.6)
    matrix = waited.pivot_table(index="agent", columns="holder", values="wait", aggfunc="sum")
    waiters = natural_order(matrix.index)
    holders = natural_order(matrix.columns)
    matrix = matrix.reindex(index=waiters, columns=holders)
    image = right.imshow(matrix.to_numpy(dtype=float), aspect="auto", cmap="Reds")
    right.set_xticks(range(len(holders)), holders, rotation=90, fontsize=_label_size(len(holders)))
    right.set_yticks(range(len(waiters)), waiters, fontsize=_label_size(len(waiters)))
    right.set_xlabel("holder (held the lock when the wait began)")
    right.set_ylabel("waiter")
    right.set_title("Who kept whom waiting (seconds)", fontsize=10)
    fig.colorbar(image, ax=right, label="seconds waited", shrink=0.8)
    return fig


def _time_bins(
    turns: pd.DataFrame, agents: list[str], column: str, edges: np.ndarray
) -> np.ndarray:
    out = np.zeros((len(agents), len(edges) - 1))
    index = {a: i for i, a in enumerate(agents)}
    bins = np.clip(np.searchsorted(edges, turns["responded"], side="right") - 1, 0, len(edges) - 2)
    rows = turns["agent"].map(index).to_numpy()
    np.add.at(out, (rows, bins), turns[column].fillna(0).to_numpy(dtype=float))
    return out


def tokens_and_cost(run: RunFrames, run_id: str | None = None, bins: int = 60) -> Figure:
    """Tokens (top) and cost (bottom) per agent over time, as heatmaps of time bins, beside
    each agent's totals (tokens by kind; cost, `unknown` where a price was unknown)."""
    run_id, f = _select(run, run_id)
    turns = f["turns"]
    agents = natural_order(f["agents"]["agent"]) or natural_order(turns["agent"])
    title = f"Tokens and cost per agent over time — {run_id}"
    if turns["total_tokens"].sum() == 0 and not turns["cost_usd"].fillna(0).any():
        return _nothing(title, "no tokens and no cost: every model call in this run was scripted")
    height = max(5.0, 2 * _rows_height(len(agents)) * 0.75)
    fig = Figure(figsize=(14, height), layout="constrained")
    axes = fig.subplots(2, 2, width_ratios=[2.2, 1], sharey=True)
    fig.suptitle(title, fontsize=11)
    end = max(float(turns["responded"].max()), 1e-3)
    edges = np.linspace(0, end, bins + 1)
    size = _label_size(len(agents))
    extent = (0, end, len(agents) - 0.5, -0.5)
    for ax, column, label, heading in (
        (axes[0, 0], "total_tokens", "tokens per time bin", "Tokens over time"),
        (axes[1, 0], "cost_usd", "USD per time bin", "Cost over time (blank: none or unknown)"),
    ):
        ax.set_title(heading, fontsize=10)
        grid = _time_bins(turns, agents, column, edges)
        masked = np.ma.masked_less_equal(grid, 0)
        norm = (
            LogNorm(vmin=max(masked.min(), 1e-9), vmax=max(masked.max(), 1e-9))
            if masked.count()
            else None
        )
        image = ax.imshow(
            masked, aspect="auto", cmap="viridis", norm=norm, extent=extent, interpolation="nearest"
        )
        ax.set_facecolor("#F2F2F2")
        ax.set_yticks(range(len(agents)), agents, fontsize=size)
        fig.colorbar(image, ax=ax, label=label, shrink=0.9, pad=0.01)
    axes[1, 0].set_xlabel("seconds since the run started")
    usage = f["usage"].groupby("agent").sum(numeric_only=True).reindex(agents)
    left = np.zeros(len(agents))
    for column, color in TOKEN_COLORS.items():
        values = usage[column].fillna(0).to_numpy(dtype=float)
        axes[0, 1].barh(
            range(len(agents)),
            values,
            left=left,
            color=color,
            label=column.replace("_tokens", "").replace("_", " "),
        )
        left += values
    axes[0, 1].legend(fontsize=7, loc="lower right")
    axes[0, 1].set_xlabel("tokens (total)")
    unknown = f["usage"].groupby("agent")["cost_usd"].apply(lambda s: s.isna().any())
    cost = f["usage"].groupby("agent")["cost_usd"].sum().reindex(agents).fillna(0)
    axes[1, 1].barh(range(len(agents)), cost.to_numpy(dtype=float), color="#55A868")
    for i, agent in enumerate(agents):
        text = " unknown" if unknown.get(agent, False) else f" ${cost[agent]:.3g}"
        axes[1, 1].text(cost[agent], i, text, va="center", fontsize=size)
    axes[1, 1].set_xlabel("USD (total)")
    axes[1, 1].set_xlim(0, max(float(cost.max()), 1e-6) * 1.35)
    return fig


def command_outcomes(run: RunFrames, run_id: str | None = None) -> Figure:
    """Left: each agent's commands by outcome (ok, failed, timed out, killed), with how many
    were truncated. Right: the commands that failed most often."""
    run_id, f = _select(run, run_id)
    cmds = f["commands"]
    agents = natural_order(f["agents"]["agent"])
    title = f"Command outcomes — {run_id}"
    if cmds.empty:
        return _nothing(title, "no shell commands ran in this run")
    fig = Figure(figsize=(14, _rows_height(len(agents))), layout="constrained")
    left, right = fig.subplots(1, 2, width_ratios=[1.4, 1])
    fig.suptitle(title, fontsize=11)
    counts = pd.crosstab(cmds["agent"], cmds["outcome"]).reindex(index=agents, fill_value=0)
    start = np.zeros(len(agents))
    for outcome, color in OUTCOME_COLORS.items():
        values = counts[outcome].to_numpy() if outcome in counts else np.zeros(len(agents))
        left.barh(
            range(len(agents)), values, left=start, color=color, label=outcome.replace("_", " ")
        )
        start += values
    truncated = cmds.groupby("agent")["truncated"].sum().reindex(agents, fill_value=0)
    size = _label_size(len(agents))
    for i, agent in enumerate(agents):
        if truncated[agent]:
            left.text(
                start[i], i, f" {int(truncated[agent])} truncated", va="center", fontsize=size
            )
    left.set_yticks(range(len(agents)), agents, fontsize=size)
    left.set_ylim(len(agents) - 0.5, -0.5)
    left.set_xlim(0, max(start.max(), 1) * 1.2)
    left.set_xlabel("commands")
    left.legend(loc="lower center", bbox_to_anchor=(0.5, 1.0), ncols=4, frameon=False, fontsize=9)
    failed = cmds[cmds["outcome"] != "ok"]
    if failed.empty:
        return _empty(fig, right, f"all {len(cmds)} commands exited 0")
    top = failed["command"].value_counts().head(15).iloc[::-1]
    labels = [c if len(c) <= 45 else c[:42] + "…" for c in top.index]
    right.barh(range(len(top)), top.to_numpy(), color=OUTCOME_COLORS["failed"])
    right.set_yticks(range(len(top)), labels, fontsize=8, family="monospace")
    right.set_xlabel("times it did not exit 0")
    right.set_title("Commands that failed most", fontsize=10)
    return fig


def message_graph(run: RunFrames, run_id: str | None = None) -> Figure:
    """Who talks to whom. Left: agents on a circle, an arrow per sender and recipient pair
    (the MAX_ARROWS busiest), as thick as its message count. Right: every pair's count in a
    sender × recipient matrix, which stays exact however dense the graph gets."""
    run_id, f = _select(run, run_id)
    msgs = f["messages"]
    title = f"Messages between agents — {run_id}"
    if msgs.empty:
        return _nothing(title, "no messages were sent in this run")
    fig = Figure(figsize=(15, 7.5), layout="constrained")
    graph, matrix_ax = fig.subplots(1, 2, width_ratios=[1, 1.1])
    fig.suptitle(title, fontsize=11)
    pairs = msgs.groupby(["agent", "recipient"]).size()
    names = natural_order([*f["agents"]["agent"], *msgs["agent"], *msgs["recipient"]])
    angle = {n: np.pi / 2 - 2 * np.pi * i / len(names) for i, n in enumerate(names)}
    pos = {n: (np.cos(a), np.sin(a)) for n, a in angle.items()}
    traffic = msgs.groupby("agent").size().add(msgs.groupby("recipient").size(), fill_value=0)
    fewest, biggest = pairs.min(), pairs.max()
    # Past a few hundred arrows a graph is a hairball (and slow to draw): the busiest pairs
    # are drawn, and the matrix beside it has them all.
    drawn = pairs.sort_values(ascending=False, kind="stable").head(MAX_ARROWS)
    for (sender, recipient), count in drawn.items():
        weight = (count - fewest + 1) / (biggest - fewest + 1)  # contrast among the pairs
        width = 0.5 + 5.0 * weight
        arrow = FancyArrowPatch(
            pos[str(sender)],
            pos[str(recipient)],
            arrowstyle="-|>",
            mutation_scale=8 + width * 2,
            linewidth=width,
            alpha=0.15 + 0.6 * weight,
            color="#4C72B0",
            connectionstyle="arc3,rad=0.12",
            shrinkA=9,
            shrinkB=9,
        )
        graph.add_patch(arrow)
    xs, ys = zip(*(pos[n] for n in names), strict=True)
    sizes = [60 + 340 * traffic.get(n, 0) / max(traffic.max(), 1) for n in names]
    graph.scatter(xs, ys, s=sizes, color="#DD8452", zorder=3, edgecolor="white")
    for n in names:
        x, y = pos[n]
        rotation = np.degrees(angle[n]) % 360
        flip = 90 < rotation < 270
        graph.text(
            1.13 * x,
            1.13 * y,
            n,
            rotation=rotation - 180 if flip else rotation,
            ha="right" if flip else "left",
            va="center",
            rotation_mode="anchor",
            fontsize=_label_size(len(names)),
        )
    graph.set_xlim(-1.6, 1.6)
    graph.set_ylim(-1.6, 1.6)
    graph.set_aspect("equal")
    graph.set_axis_off()
    shown = f"the {len(drawn)} busiest of {len(pairs)} pairs; " if len(drawn) < len(pairs) else ""
    graph.set_title(
        f"{shown}arrow width: messages sent (node size: messages in and out)", fontsize=9
    )
    counts = pairs.unstack(fill_value=0).reindex(index=names, columns=names, fill_value=0)
    image = matrix_ax.imshow(counts.to_numpy(), cmap="Blues", aspect="auto")
    size = _label_size(len(names))
    matrix_ax.set_xticks(range(len(names)), names, rotation=90, fontsize=size)
    matrix_ax.set_yticks(range(len(names)), names, fontsize=size)
    matrix_ax.set_xlabel("recipient")
    matrix_ax.set_ylabel("sender")
    if len(names) <= 12:
        for (i, j), value in np.ndenumerate(counts.to_numpy()):
            if value:
                matrix_ax.text(j, i, str(value), ha="center", va="center", fontsize=8)
    bar = fig.colorbar(image, ax=matrix_ax, label="messages", shrink=0.8)
    bar.locator = MaxNLocator(integer=True)
    bar.update_ticks()
    return fig


PLOTS = {
    "activity": activity_timeline,
    "locks": lock_contention,
    "tokens": tokens_and_cost,
    "commands": command_outcomes,
    "messages": message_graph,
}
