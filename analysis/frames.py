"""The frames of one run, built from the tables `jsonl.read_log` parsed.

Each builder takes the parsed log and returns one frame, conformed to its documented columns
(analysis/columns.py). Everything is vectorised (pyarrow compute, pandas merges): a log of a
million events must load in seconds. Joins between events use the log's own keys:
`(agent, turn)` for model calls, `tool_use_id` for tool calls, and time order within
`(agent, lock)` for locks, where an agent holds a given lock at most once at a time.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from analysis.activity import activity, asof
from analysis.columns import conform
from analysis.jsonl import LogTables

_TOKENS = {
    "input_tokens": "input_tokens",
    "output_tokens": "output_tokens",
    "cache_read_input_tokens": "cache_read_tokens",
    "cache_creation_input_tokens": "cache_write_tokens",
}
TOKEN_COLUMNS = list(_TOKENS.values())


def _df(log: LogTables, kind: str, drop: tuple[str, ...] = ()) -> pd.DataFrame:
    table = log.kinds[kind]
    return table.drop_columns(
        [c for c in ("ts", "kind", *drop) if c in table.column_names]
    ).to_pandas()


def events(log: LogTables) -> pd.DataFrame:
    return log.events.to_pandas()


def agents(log: LogTables) -> pd.DataFrame:
    starts = _df(log, "agent_start").drop_duplicates("agent").rename(columns={"t": "started"})
    ends = _df(log, "agent_end").drop_duplicates("agent", keep="last")
    ends = ends.rename(columns={"t": "ended", "reason": "end_reason", "message": "end_message"})
    out = starts.merge(ends[["agent", "ended", "end_reason", "end_message", "turns"]], "left")
    calls = _df(log, "model_request").groupby("agent").size()
    out["turns"] = out["turns"].fillna(out["agent"].map(calls)).fillna(0)
    return out


def _content_summary(content: pa.ChunkedArray) -> tuple[np.ndarray, list[Any]]:
    """Per reply: the number of tool_use blocks, and its text blocks joined by newlines."""
    lists = content.combine_chunks() if content.num_chunks else pa.array([], content.type)
    n = len(lists)
    blocks = pc.list_flatten(lists)
    parents = pc.list_parent_indices(lists).to_numpy(zero_copy_only=False)
    types = pc.struct_field(blocks, "type")
    is_tool = pc.fill_null(pc.equal(types, "tool_use"), False).to_numpy(zero_copy_only=False)
    is_text = pc.fill_null(pc.equal(types, "text"), False).to_numpy(zero_copy_only=False)
    tools = np.bincount(parents[is_tool], minlength=n)
    text_rows = parents[is_text]
    texts = pc.struct_field(blocks, "text").filter(pa.array(is_text)).to_pylist()
    joined: list[Any] = [None] * n
    if len(np.unique(text_rows)) == len(text_rows):
        for row, text in zip(text_rows.tolist(), texts, strict=True):
            joined[row] = text
    else:
        grouped = pd.Series(texts, index=text_rows, dtype=object).groupby(level=0).agg("\n".join)
        for row, text in grouped.items():
            joined[int(row)] = text
    return tools, joined


def turns(log: LogTables) -> pd.DataFrame:
    table = log.kinds["model_response"]
    tools, text = _content_summary(table.column("content"))
    usage = table.column("usage").combine_chunks() if table.num_rows else None
    out = _df(log, "model_response", drop=("content", "usage"))
    for field, column in _TOKENS.items():
        values = pc.struct_field(usage, field) if usage is not None else pa.array([], pa.int64())
        out[column] = pc.fill_null(values, 0).to_numpy(zero_copy_only=False)
    out["total_tokens"] = out[TOKEN_COLUMNS].sum(axis=1)
    out["tools"], out["text"] = tools, text
    out["retries"] = out["retries"].fillna(0)
    # A scripted brain calls no API: its cost is known to be zero, not unknown.
    out.loc[out["cost_usd"].isna() & (out["model"] == "scripted"), "cost_usd"] = 0.0
    requests = _df(log, "model_request")[["agent", "turn", "t"]].drop_duplicates(
        ["agent", "turn"], keep="last"
    )
    out = out.rename(columns={"t": "responded"})
    return out.merge(requests.rename(columns={"t": "requested"}), on=["agent", "turn"], how="left")


def _tool_inputs(log: LogTables) -> list[str]:
    """Each tool_call's `input` as its JSON text, in log order. Its shape varies by tool, so
    it is cut from the line rather than given a schema; `raw_decode` parses only the input."""
    events = log.events
    lines = events.column("json").filter(pc.equal(events.column("kind"), "tool_call")).to_pylist()
    decode = json.JSONDecoder().raw_decode
    out = []
    for line in lines:
        # The first `"input":` is the event's own: a quote inside a string is escaped, and
        # no field before it holds an object. Anything else takes the slow, sure way.
        start = line.find('"input":') + 8
        while 8 <= start < len(line) and line[start] in " \t":
            start += 1
        try:
            if start < 8:
                raise ValueError("no input")
            _, end = decode(line, start)
            out.append(line[start:end])
        except ValueError:
            value = json.loads(line).get("input")
            out.append(json.dumps(value) if value is not None else "{}")
    return out


def tool_calls(log: LogTables) -> pd.DataFrame:
    calls = _df(log, "tool_call").rename(columns={"t": "called"})
    calls["input"] = _tool_inputs(log)
    results = _df(log, "tool_result").drop_duplicates("tool_use_id")
    results = results.rename(columns={"t": "returned", "content": "result"})
    out = calls.merge(
        results[["agent", "tool_use_id", "returned", "duration", "is_error", "result"]],
        on=["agent", "tool_use_id"],
        how="left",
    )
    out["interrupted"] = out["tool_use_id"].isin(_df(log, "interrupted")["tool_use_id"])
    return out


def commands(log: LogTables) -> pd.DataFrame:
    out = _df(log, "command").rename(columns={"t": "ended"})
    out["started"] = out["ended"] - out["duration"]
    for flag in ("timed_out", "truncated", "restarted"):
        out[flag] = out[flag].fillna(False).astype(bool)
    code = out["exit_code"]
    out["outcome"] = np.select(
        [out["timed_out"], code.isna(), code == 0], ["timed_out", "killed", "ok"], "failed"
    )
    return out


def locks(log: LogTables) -> pd.DataFrame:
    acq = _df(log, "lock_acquire").sort_values("seq").reset_index(drop=True)
    acq["contended"] = acq["contended"].fillna(False).astype(bool)
    waits = _df(log, "lock_wait")[["agent", "lock", "t", "holder"]]
    out = asof(acq, waits, ["agent", "lock"], "backward").rename(columns={"_t": "waited"})
    out["acquired"] = out["t"]
    uncontended = ~out["contended"] | out["waited"].isna()
    out["requested"] = out["waited"].where(~uncontended, out["acquired"] - out["wait"])
    out["holder"] = out["holder"].where(~uncontended)
    rel = _df(log, "lock_release")[["agent", "lock", "t", "hold", "reason"]]
    out = asof(out, rel, ["agent", "lock"], "forward").rename(
        columns={"_t": "released", "reason": "release_reason"}
    )
    # An acquire whose release was never logged would borrow the next hold's release.
    following = out.groupby(["agent", "lock"])["acquired"].shift(-1)
    lost = out["released"] > following
    out.loc[lost, ["released", "hold", "release_reason"]] = np.nan
    out["hold"] = out["hold"].fillna(out["released"] - out["acquired"])
    overdue = _df(log, "lock_overdue").drop(columns="agent").rename(columns={"holder": "agent"})
    marks = asof(
        overdue[["agent", "lock", "t", "broken"]],
        out[["agent", "lock", "t", "seq"]],
        ["agent", "lock"],
        "backward",
    )
    out["overdue"] = out["seq"].isin(marks["seq"])
    out["broken"] = out["seq"].isin(marks.loc[marks["broken"].fillna(False).astype(bool), "seq"])
    return out


def messages(log: LogTables) -> pd.DataFrame:
    table = log.kinds["message"]
    lists = table.column("recipients").combine_chunks() if table.num_rows else None
    out = _df(log, "message", drop=("recipients",))
    if lists is None:
        return out.assign(recipient=pd.Series([], dtype="str"), recipients=0)
    out["recipients"] = pc.fill_null(pc.list_value_length(lists), 0).to_numpy(zero_copy_only=False)
    rows = pc.list_parent_indices(lists).to_numpy(zero_copy_only=False)
    exploded = out.iloc[rows].reset_index(drop=True)
    exploded["recipient"] = pc.list_flatten(lists).to_pandas()
    return exploded


def files(log: LogTables) -> pd.DataFrame:
    writes = _df(log, "file_write").assign(kind="file_write", overwrote=None)
    clobbers = _df(log, "clobber").assign(kind="clobber", bytes=None)
    frames = [f for f in (writes, clobbers) if len(f)]
    if not frames:
        return writes
    out = pd.concat(frames, ignore_index=True).sort_values("seq")
    out["locked"] = out["locked"].fillna(False).astype(bool)
    return out


def usage(turns_frame: pd.DataFrame) -> pd.DataFrame:
    keys = ["agent", "model"]
    grouped = turns_frame.groupby(keys, sort=True)
    out = grouped[[*TOKEN_COLUMNS, "total_tokens", "latency"]].sum()
    out["turns"] = grouped.size()
    out["cost_usd"] = grouped["cost_usd"].sum()
    out.loc[grouped["cost_usd"].apply(lambda s: s.isna().any()), "cost_usd"] = np.nan
    return out.reset_index()


def deadlocks(log: LogTables) -> pd.DataFrame:
    rows = []
    for event in log.kinds["deadlock"].to_pylist():
        cycle, wanted = event["cycle"] or [], event["locks"] or []
        for i, agent in enumerate(cycle):
            rows.append(
                {
                    "agent": agent,
                    "t": event["t"],
                    "lock": wanted[i] if i < len(wanted) else None,
                    "holder": cycle[(i + 1) % len(cycle)],
                    "victim": agent == event["victim"],
                    "deadlock": event["seq"],
                }
            )
    columns = ["agent", "t", "lock", "holder", "victim", "deadlock"]
    return pd.DataFrame(rows, columns=columns)


def build(log: LogTables, run_id: str) -> dict[str, pd.DataFrame]:
    """Every event frame of one run (all but `runs`), conformed to analysis/columns.py."""
    built: dict[str, pd.DataFrame] = {}
    builders: dict[str, Callable[[LogTables], pd.DataFrame]] = {
        "events": events,
        "agents": agents,
        "turns": turns,
        "tool_calls": tool_calls,
        "commands": commands,
        "locks": locks,
        "messages": messages,
        "files": files,
        "deadlocks": deadlocks,
    }
    for name, builder in builders.items():
        built[name] = builder(log)
    built["usage"] = usage(built["turns"])
    built["activity"] = activity(
        built, _df(log, "model_request"), _df(log, "lock_wait"), _df(log, "tool_result")
    )
    out = {}
    for name, frame in built.items():
        frame.insert(0, "run_id", run_id)
        out[name] = conform(name, frame)
    return out
