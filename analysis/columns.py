"""The columns of every frame `load_run` returns: name, dtype, meaning. One source of truth.

The frame builders end with `conform`, which selects exactly these columns in this order and
casts them to these dtypes, so what is documented here is what a user gets, whether the run
was read from its log or from Parquet (the tests check both). `RunFrames`' docstring and
analysis/README.md are rendered from this table (`render_markdown()` gives the README
section; a test fails when the README is stale).

Times are seconds since the run started (the log's `t`), as float64. Dtypes are pandas
dtypes: `str` is pandas' string dtype (missing values are NaN), `Int64` and `boolean` are
the nullable integer and boolean dtypes (missing values are `pd.NA`).
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd


@dataclass(frozen=True)
class Frame:
    doc: str
    columns: tuple[tuple[str, str, str], ...]  # (name, dtype, meaning)

    @property
    def dtypes(self) -> dict[str, str]:
        return {name: dtype for name, dtype, _ in self.columns}


_RUN = ("run_id", "str", "the run directory's name")
_AGENT = ("agent", "str", "the agent (NaN for the harness)")
_SEQ = ("seq", "int64", "the event's `seq` in the log")

FRAMES: dict[str, Frame] = {
    "events": Frame(
        "One row per event in the log, in `seq` order.",
        (
            _RUN,
            _SEQ,
            ("t", "float64", "seconds since the run started"),
            ("ts", "datetime64[us, UTC]", "wall-clock time"),
            _AGENT,
            ("kind", "str", "the event kind, e.g. `model_response`"),
            ("json", "str", "the event as logged; `RunFrames.payloads(kind)` parses them"),
        ),
    ),
    "agents": Frame(
        "One row per agent that started.",
        (
            _RUN,
            ("agent", "str", "the agent"),
            ("model", "str", "its model (`scripted` for a scripted brain)"),
            ("started", "float64", "time of `agent_start`"),
            ("ended", "float64", "time of `agent_end` (NaN: it never ended; a killed run)"),
            ("end_reason", "str", "`agent_end.reason`: finished, max_turns, error, …"),
            ("end_message", "str", "`agent_end.message` (the error, if any)"),
            ("turns", "int64", "model calls made"),
            ("shell_pid", "Int64", "its shell's process id"),
        ),
    ),
    "turns": Frame(
        "One row per model call (`model_response`).",
        (
            _RUN,
            ("agent", "str", "the agent"),
            ("turn", "int64", "1-based turn number"),
            ("model", "str", "the model that answered"),
            ("requested", "float64", "time of the `model_request` (NaN if not logged)"),
            ("responded", "float64", "time of the `model_response`"),
            ("latency", "float64", "seconds the model took, retries included"),
            ("input_tokens", "int64", "uncached input tokens"),
            ("output_tokens", "int64", "output tokens"),
            ("cache_read_tokens", "int64", "input tokens read from the prompt cache"),
            ("cache_write_tokens", "int64", "input tokens written to the prompt cache"),
            ("total_tokens", "int64", "the four token counts summed"),
            ("cost_usd", "float64", "USD; NaN when the price is unknown, 0 for `scripted`"),
            ("stop_reason", "str", "why the model stopped, e.g. `tool_use`, `end_turn`"),
            ("tools", "int64", "tool calls in the reply"),
            ("retries", "int64", "API retries before this answer"),
            ("text", "str", "the reply's text blocks, joined by newlines"),
            _SEQ,
        ),
    ),
    "tool_calls": Frame(
        "One row per tool call, joined to its result.",
        (
            _RUN,
            ("agent", "str", "the agent"),
            ("turn", "int64", "the turn that made the call"),
            ("tool_use_id", "str", "the call's id"),
            ("name", "str", "the tool, e.g. `bash`, `lock`"),
            ("input", "str", "the call's input, as JSON text"),
            ("called", "float64", "time of `tool_call`"),
            ("returned", "float64", "time of `tool_result` (NaN: no result)"),
            ("duration", "float64", "seconds the tool took (NaN: no result)"),
            ("is_error", "boolean", "the result was an error (NA: no result)"),
            ("result", "str", "the result's text (NaN: no result)"),
            ("interrupted", "bool", "the run died while the call was in flight"),
            _SEQ,
        ),
    ),
    "commands": Frame(
        "One row per shell command the bash tool ran.",
        (
            _RUN,
            ("agent", "str", "the agent"),
            ("turn", "int64", "the turn that ran it"),
            ("started", "float64", "when it started (`ended - duration`)"),
            ("ended", "float64", "when it ended (time of the `command` event)"),
            ("command", "str", "the command line"),
            ("exit_code", "Int64", "exit code (NA: timed out or killed)"),
            ("outcome", "str", "`ok` (exit 0), `failed` (other exit), `timed_out`, `killed`"),
            ("duration", "float64", "seconds"),
            ("bytes", "int64", "bytes of output produced"),
            ("timed_out", "bool", "the command hit its deadline and was interrupted"),
            ("truncated", "bool", "output was cut to the cap"),
            ("restarted", "bool", "the shell was restarted after it"),
            ("cwd", "str", "the shell's directory afterwards"),
            ("output", "str", "the output kept"),
            (
                "late_output",
                "str",
                "printed since the command before (background jobs), shown first",
            ),
            _SEQ,
        ),
    ),
    "locks": Frame(
        "One row per lock acquisition, with its wait and its hold.",
        (
            _RUN,
            ("agent", "str", "the agent that took the lock"),
            ("lock", "str", "the lock's name (a path in shared/)"),
            ("requested", "float64", "time of `lock_wait`; uncontended: `acquired - wait`"),
            ("acquired", "float64", "time of `lock_acquire`"),
            ("released", "float64", "time of `lock_release` (NaN: never released)"),
            ("wait", "float64", "seconds waited"),
            ("hold", "float64", "seconds held (NaN: never released)"),
            ("contended", "bool", "someone else held or queued for it when asked"),
            ("holder", "str", "who held it when the wait began (NaN: uncontended)"),
            ("release_reason", "str", "`unlock`, `agent_end`, … (NaN: never released)"),
            ("overdue", "bool", "a `lock_overdue` event named this hold"),
            ("broken", "bool", "the harness took this lock away"),
            ("seq", "int64", "the `lock_acquire` event's `seq`"),
        ),
    ),
    "messages": Frame(
        "One row per message and recipient (a message to three agents is three rows).",
        (
            _RUN,
            ("agent", "str", "the sender"),
            ("recipient", "str", "one recipient"),
            ("t", "float64", "when it was sent"),
            ("size", "int64", "bytes of text"),
            ("recipients", "int64", "how many recipients the message had"),
            ("text", "str", "the text"),
            ("seq", "int64", "the `message` event's `seq` (shared by its rows)"),
        ),
    ),
    "files": Frame(
        "One row per write to a shared file (`file_write`) or lost update (`clobber`).",
        (
            _RUN,
            ("agent", "str", "the writer"),
            ("t", "float64", "when"),
            ("kind", "str", "`file_write` or `clobber`"),
            ("path", "str", "relative to shared/"),
            ("bytes", "Int64", "size after the write, -1 if deleted (NA for a clobber)"),
            ("locked", "bool", "the writer held the file's lock"),
            ("via", "str", "`bash` or `editor`"),
            ("overwrote", "str", "a clobber: whose change was lost (NaN for a write)"),
            _SEQ,
        ),
    ),
    "usage": Frame(
        "One row per agent and model: totals over the run.",
        (
            _RUN,
            ("agent", "str", "the agent"),
            ("model", "str", "the model"),
            ("turns", "int64", "model calls"),
            ("input_tokens", "int64", "uncached input tokens"),
            ("output_tokens", "int64", "output tokens"),
            ("cache_read_tokens", "int64", "cache-read input tokens"),
            ("cache_write_tokens", "int64", "cache-write input tokens"),
            ("total_tokens", "int64", "all four summed"),
            ("cost_usd", "float64", "USD; NaN if any call's price was unknown"),
            ("latency", "float64", "seconds spent waiting for the model"),
        ),
    ),
    "deadlocks": Frame(
        "One row per agent in each wait-for cycle the harness broke.",
        (
            _RUN,
            ("agent", "str", "an agent in the cycle"),
            ("t", "float64", "when the cycle was found"),
            ("lock", "str", "the lock this agent waited for"),
            ("holder", "str", "the next agent in the cycle, which held that lock"),
            ("victim", "bool", "this agent's lock call was failed to break the cycle"),
            ("deadlock", "int64", "the `deadlock` event's `seq` (shared by its rows)"),
        ),
    ),
    "activity": Frame(
        "Each agent's time, cut into intervals: `thinking` (model_request to "
        "model_response), `command` (a bash tool call to its result), `lock_wait` "
        "(lock_wait to lock_acquire) and `idle` (the rest, from agent_start to agent_end).",
        (
            _RUN,
            ("agent", "str", "the agent"),
            ("state", "str", "`thinking`, `command`, `lock_wait` or `idle`"),
            ("start", "float64", "interval start"),
            ("end", "float64", "interval end"),
            ("duration", "float64", "`end - start`"),
        ),
    ),
    "runs": Frame(
        "One row per run. The one frame without an `agent` column: it describes runs.",
        (
            _RUN,
            ("scenario", "str", "the scenario's name"),
            ("seed", "Int64", "the scenario seed"),
            ("status", "str", "`run_end.status`, or `unfinished` when the log has no run_end"),
            ("reason", "str", "`run_end.reason`"),
            ("started", "datetime64[us, UTC]", "wall-clock start"),
            ("duration", "float64", "seconds (`run_end.duration`, else the last event's `t`)"),
            ("agents", "int64", "agents in the run"),
            ("events", "int64", "events in the log"),
            ("path", "str", "the run directory"),
        ),
    ),
}


def conform(name: str, df: pd.DataFrame) -> pd.DataFrame:
    """Exactly the documented columns of frame `name`, in order, with their dtypes.

    Raises KeyError naming the frame and the missing columns (a builder bug, not bad input)."""
    spec = FRAMES[name]
    missing = [c for c in spec.dtypes if c not in df.columns]
    if missing:
        raise KeyError(f"frame {name!r} is missing columns {missing}")
    out = df[list(spec.dtypes)]
    casts = {c: d for c, d in spec.dtypes.items() if str(out[c].dtype) != d}
    out = out.astype(casts) if casts else out
    return out.reset_index(drop=True)


def render_markdown() -> str:
    """The README section: one table per frame."""
    parts = []
    for name, spec in FRAMES.items():
        parts.append(f"### `{name}`\n\n{spec.doc}\n\n| column | dtype | meaning |\n|---|---|---|")
        parts.extend(f"| `{c}` | {d} | {m} |" for c, d, m in spec.columns)
        parts.append("")
    return "\n".join(parts)


def render_docstring() -> str:
    """The same, as plain text for `help(RunFrames)`."""
    lines = []
    for name, spec in FRAMES.items():
        lines.append(f"{name}: {spec.doc}")
        lines.extend(f"    {c:<20} {d:<20} {m}" for c, d, m in spec.columns)
    return "\n".join(lines)
