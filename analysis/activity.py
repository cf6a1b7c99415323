"""What each agent was doing when: the intervals behind the activity Gantt chart.

An agent's time runs from its `agent_start` to its `agent_end` (or its last event, in a run
that was killed). Within it:

- `thinking`: from a `model_request` to its `model_response` (same agent and turn);
- `command`: from a bash `tool_call` to its `tool_result`;
- `lock_wait`: from a `lock_wait` to the agent's next `lock_acquire` or `tool_result`
  (whichever comes first: a wait that timed out or was failed ends with its tool's result);
- `idle`: the rest (between turns, other tools, waiting for a round-robin turn).

An interval still open when the agent's time ends is closed there.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import pandas as pd

STATES = ("thinking", "command", "lock_wait", "idle")


def asof(
    left: pd.DataFrame,
    right: pd.DataFrame,
    by: list[str],
    direction: Literal["backward", "forward", "nearest"],
) -> pd.DataFrame:
    """`left` with, per row, the columns of the `right` row nearest in `t` within the same
    `by` group (`right`'s `t` comes back as `_t`), in `left`'s order."""
    if left.empty or right.empty:
        # pandas cannot merge_asof an empty Arrow-backed string key ("cannot construct
        # ChunkedArray from empty vector"); with nothing to match, every match is missing.
        extra = {c: np.nan for c in right.columns if c not in by and c != "t"}
        return left.assign(_t=np.nan, **extra).reset_index(drop=True)
    left = left.assign(_row=np.arange(len(left))).sort_values("t", kind="stable")
    right = right.sort_values("t", kind="stable").rename(columns={"t": "_t"})
    merged = pd.merge_asof(left, right, left_on="t", right_on="_t", by=by, direction=direction)
    return merged.sort_values("_row").drop(columns="_row").reset_index(drop=True)


def _intervals(agent: pd.Series, start: pd.Series, end: pd.Series, state: str) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "agent": agent.to_numpy(),
            "start": start.to_numpy(),
            "end": end.to_numpy(),
            "state": state,
        }
    )


def activity(
    frames: dict[str, pd.DataFrame],
    requests: pd.DataFrame,
    lock_waits: pd.DataFrame,
    tool_results: pd.DataFrame,
) -> pd.DataFrame:
    """The `activity` frame (see analysis/columns.py), from the other frames of the run and
    the raw `model_request`, `lock_wait` and `tool_result` events."""
    agents = frames["agents"]
    last_event = frames["events"].groupby("agent")["t"].max()
    span = pd.DataFrame({"agent": agents["agent"], "started": agents["started"]})
    span["ended"] = agents["ended"].fillna(agents["agent"].map(last_event)).to_numpy()
    ends = span.set_index("agent")["ended"]

    turns = frames["turns"][["agent", "turn", "responded"]]
    think = requests[["agent", "turn", "t"]].merge(turns, on=["agent", "turn"], how="left")
    calls = frames["tool_calls"]
    bash = calls[calls["name"] == "bash"]
    waits = lock_waits[["agent", "t"]]
    acquired = frames["locks"][["agent", "acquired"]].rename(columns={"acquired": "t"})
    next_acquire = asof(waits, acquired, ["agent"], "forward")["_t"]
    next_result = asof(waits, tool_results[["agent", "t"]], ["agent"], "forward")["_t"]
    busy = pd.concat(
        [
            _intervals(
                think["agent"],
                think["t"],
                think["responded"].fillna(think["agent"].map(ends)),
                "thinking",
            ),
            _intervals(
                bash["agent"],
                bash["called"],
                bash["returned"].fillna(bash["agent"].map(ends)),
                "command",
            ),
            _intervals(
                waits["agent"],
                waits["t"],
                np.fmin(next_acquire, next_result).fillna(waits["agent"].map(ends)),
                "lock_wait",
            ),
        ],
        ignore_index=True,
    )
    busy = busy[busy["agent"].isin(span["agent"]) & (busy["end"] >= busy["start"])]
    return (
        pd.concat([busy, _idle(busy, span)], ignore_index=True)
        .assign(duration=lambda f: f["end"] - f["start"])
        .sort_values(["agent", "start", "end"], kind="stable")
    )


def _idle(busy: pd.DataFrame, span: pd.DataFrame) -> pd.DataFrame:
    """The gaps in each agent's span not covered by any busy interval."""
    # Zero-length marks at each end of the span make the leading and trailing gaps ordinary.
    marks = pd.concat(
        [
            pd.DataFrame(
                {"agent": span["agent"], "start": span["started"], "end": span["started"]}
            ),
            pd.DataFrame({"agent": span["agent"], "start": span["ended"], "end": span["ended"]}),
        ]
    )
    every = pd.concat([busy[["agent", "start", "end"]], marks], ignore_index=True)
    every = every.dropna().sort_values(["agent", "start"], kind="stable")
    reach = every.groupby("agent")["end"].cummax()
    before = reach.groupby(every["agent"]).shift(1)
    gap = every["start"] > before
    idle = pd.DataFrame(
        {"agent": every["agent"][gap], "start": before[gap], "end": every["start"][gap]}
    )
    return idle.assign(state="idle")


def occupancy(frame: pd.DataFrame, agents: list[str], edges: np.ndarray) -> np.ndarray:
    """Seconds each agent spent in each state within each time bin: an array shaped
    (agents, STATES, bins), for the bins between consecutive `edges`.

    Exact, and linear in the number of intervals: the time an agent spent in a state up to
    x is the sum over intervals of clip(x - start, 0, duration), which sorted starts and
    ends with prefix sums give at every edge at once."""
    out = np.zeros((len(agents), len(STATES), len(edges) - 1))
    row = {agent: i for i, agent in enumerate(agents)}
    for (agent, state), group in frame.groupby(["agent", "state"]):
        if agent not in row or state not in STATES:
            continue
        starts = np.sort(group["start"].to_numpy(dtype=float))
        ends = np.sort(group["end"].to_numpy(dtype=float))
        start_sums = np.concatenate([[0.0], np.cumsum(starts)])
        end_sums = np.concatenate([[0.0], np.cumsum(ends)])
        began = np.searchsorted(starts, edges, side="right")
        ended = np.searchsorted(ends, edges, side="right")
        spent = edges * began - start_sums[began] - edges * ended + end_sums[ended]
        out[row[str(agent)], STATES.index(str(state))] = np.diff(spent)
    return out
