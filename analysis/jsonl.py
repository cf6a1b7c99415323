"""Reading `events.jsonl` fast: pyarrow's JSON reader, one pass per event kind.

Events of different kinds share field names with different types (`content` is a list of
blocks in `model_response` and a string in `tool_result`), so no one schema reads the whole
log. Instead the lines are grouped by kind (a regex over an Arrow view of the file, no copy),
and the lines of each kind are parsed with that kind's schema by pyarrow's multi-threaded
C++ reader; Python only moves buffers. On 1,000,000 events this is several times faster than
`json.loads` per line (bench/analysis_load.py).

The schemas mirror `sim/events.py`. The log is the only contract between sim and analysis,
so this module does not import sim; a test checks that every field named here exists there
with the same type. Fields whose shape varies (`tool_call.input`, a block's `input`) are not
read into tables: the `json` column keeps every event whole.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pj

_S, _F, _I, _B = pa.string(), pa.float64(), pa.int64(), pa.bool_()

ENVELOPE = pa.schema(
    [("seq", _I), ("t", _F), ("ts", pa.timestamp("us", tz="UTC")), ("agent", _S), ("kind", _S)]
)
_BLOCK = pa.struct([("type", _S), ("text", _S), ("id", _S), ("name", _S)])
_USAGE = pa.struct(
    [
        ("input_tokens", _I),
        ("output_tokens", _I),
        ("cache_read_input_tokens", _I),
        ("cache_creation_input_tokens", _I),
    ]
)

# Per kind, the payload fields the frames use (the rest stays in `events.json`).
KIND_FIELDS: dict[str, list[tuple[str, pa.DataType]]] = {
    "run_start": [("run_id", _S), ("scenario", _S), ("seed", _I), ("agents", pa.list_(_S))],
    "run_end": [("status", _S), ("reason", _S), ("duration", _F)],
    "agent_start": [("model", _S), ("shell_pid", _I)],
    "agent_end": [("reason", _S), ("turns", _I), ("message", _S)],
    "model_request": [("turn", _I), ("model", _S)],
    "model_response": [
        ("turn", _I),
        ("model", _S),
        ("content", pa.list_(_BLOCK)),
        ("stop_reason", _S),
        ("usage", _USAGE),
        ("latency", _F),
        ("retries", _I),
        ("cost_usd", _F),
    ],
    "tool_call": [("turn", _I), ("tool_use_id", _S), ("name", _S)],
    "tool_result": [("tool_use_id", _S), ("content", _S), ("is_error", _B), ("duration", _F)],
    "command": [
        ("turn", _I),
        ("command", _S),
        ("output", _S),
        ("exit_code", _I),
        ("duration", _F),
        ("bytes", _I),
        ("timed_out", _B),
        ("truncated", _B),
        ("restarted", _B),
        ("cwd", _S),
        ("late_output", _S),
    ],
    "lock_wait": [("lock", _S), ("holder", _S)],
    "lock_acquire": [("lock", _S), ("wait", _F), ("contended", _B)],
    "lock_release": [("lock", _S), ("hold", _F), ("reason", _S)],
    "lock_overdue": [("lock", _S), ("holder", _S), ("held", _F), ("broken", _B)],
    "message": [("recipients", pa.list_(_S)), ("size", _I), ("text", _S)],
    "file_write": [("path", _S), ("bytes", _I), ("locked", _B), ("via", _S)],
    "clobber": [("path", _S), ("overwrote", _S), ("locked", _B), ("via", _S)],
    "deadlock": [("cycle", pa.list_(_S)), ("locks", pa.list_(_S)), ("victim", _S)],
    "interrupted": [("tool_use_id", _S), ("name", _S), ("turn", _I)],
}


def kind_schema(kind: str) -> pa.Schema:
    """The envelope and the fields of one kind (just the envelope for a kind not listed)."""
    return pa.schema([*ENVELOPE, *KIND_FIELDS.get(kind, [])])


class LogError(ValueError):
    """The event log cannot be read; the message names the file, the line and what to do."""


@dataclass
class LogTables:
    """What `read_log` found: every event's envelope and JSON text, in file order, and one
    table per kind in KIND_FIELDS with that kind's fields (empty when the log has none)."""

    events: pa.Table  # seq, t, ts, agent, kind, json
    kinds: dict[str, pa.Table] = field(default_factory=dict)
    torn_line: str | None = None  # a partial last line a killed writer left, dropped


def _parse(data: pa.Buffer | bytes | memoryview, schema: pa.Schema) -> pa.Table:
    return pj.read_json(
        pa.BufferReader(data),
        read_options=pj.ReadOptions(block_size=1 << 24),
        parse_options=pj.ParseOptions(explicit_schema=schema, unexpected_field_behavior="ignore"),
    )


def _locate(path: Path, data: bytes) -> LogError:
    """The slow path, for errors only: find the first line that is not a valid event."""
    for number, line in enumerate(data.split(b"\n"), start=1):
        if not line.strip():
            continue
        what = "event"
        try:
            event = json.loads(line)
            if not isinstance(event, dict) or not isinstance(event.get("kind"), str):
                raise ValueError("an event is a JSON object with a string `kind`")
            what = f"{event['kind']} event"
            _parse(line, kind_schema(event["kind"]))
        except (ValueError, pa.ArrowInvalid) as err:
            return LogError(
                f"{path}:{number}: not a valid {what} ({err}); the log is damaged before its "
                "last line, which a crash cannot cause: restore the file or delete that line"
            )
    return LogError(f"{path}: cannot read the event log")


def _drop_torn_line(data: bytes) -> tuple[memoryview, str | None]:
    """The log without a partial last line, ending in a newline; and that line, if any.
    Slices are views: the log can be hundreds of megabytes, and a copy costs a second."""
    end = len(data)
    while end and data[end - 1] in b" \t\r\n":
        end -= 1
    cut = data.rfind(b"\n", 0, end) + 1
    last = data[cut:end]
    if not last:
        return memoryview(b""), None
    try:
        json.loads(last)
    except ValueError:
        return memoryview(data)[:cut], last.decode("utf-8", errors="replace")
    if end < len(data) and data[end] == ord("\n"):
        return memoryview(data)[: end + 1], None
    return memoryview(data[:end] + b"\n"), None  # a last line without its newline: rare


def _lines(data: memoryview) -> pa.LargeStringArray:
    """Every line, newline included, as one Arrow array over `data` itself (no copy): the
    lines of one kind taken from it are then a ready-made JSONL body for pyarrow."""
    ends = np.flatnonzero(np.frombuffer(data, dtype=np.uint8) == ord("\n"))
    offsets = np.zeros(len(ends) + 1, dtype=np.int64)
    offsets[1:] = ends + 1
    lines = pa.LargeStringArray.from_buffers(len(ends), pa.py_buffer(offsets), pa.py_buffer(data))
    blank = np.diff(offsets) <= 1  # a stray empty line: rare, so dropping it by a copy is fine
    return lines.filter(pa.array(~blank)) if blank.any() else lines


def _body(lines: pa.LargeStringArray) -> pa.Buffer:
    """The bytes of a lines array: its lines back to back."""
    offsets = np.frombuffer(lines.buffers()[1], dtype=np.int64)
    first, last = offsets[lines.offset], offsets[lines.offset + len(lines)]
    return lines.buffers()[2].slice(int(first), int(last - first))


def _codes(kinds: pa.Array | pa.ChunkedArray) -> tuple[np.ndarray, list[str | None]]:
    if isinstance(kinds, pa.ChunkedArray):
        kinds = kinds.combine_chunks()
    encoded = kinds.dictionary_encode(null_encoding="encode")
    return encoded.indices.to_numpy(zero_copy_only=False), encoded.dictionary.to_pylist()


def _parse_by_kind(
    lines: pa.LargeStringArray, codes: np.ndarray, kinds: list[str | None]
) -> dict[str | None, tuple[np.ndarray, pa.Table]]:
    out: dict[str | None, tuple[np.ndarray, pa.Table]] = {}
    for code, kind in enumerate(kinds):
        rows = np.flatnonzero(codes == code)
        out[kind] = (rows, _parse(_body(lines.take(pa.array(rows))), kind_schema(kind or "")))
    return out


def _consistent(parsed: dict[str | None, tuple[np.ndarray, pa.Table]]) -> bool:
    """Every line was grouped under the kind its parse found."""
    for kind, (rows, table) in parsed.items():
        column = table.column("kind")
        if kind is None or table.num_rows != len(rows) or column.null_count:
            return False
        if not pc.all(pc.equal(column, kind)).as_py():
            return False
    return True


_KIND = r'"kind"\s*:\s*"(?P<kind>[^"\\]*)"'


def read_log(path: Path) -> LogTables:
    """Read an event log. A last line that is not complete JSON is dropped and reported in
    `torn_line` (a killed writer leaves one); a bad line anywhere else raises LogError naming
    the file and line. Kinds this module does not know are kept in `events` only."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise LogError(f"{path}: cannot read the event log ({exc.strerror})") from exc
    data, torn = _drop_torn_line(raw)
    lines = _lines(data)
    try:
        # Group by the first `"kind":"..."` in each line: a regex over the Arrow view, several
        # times faster than a full parse. _consistent checks it against each line's parse.
        found = pc.struct_field(pc.extract_regex(lines, _KIND), "kind")
        if found.null_count:  # lines of only whitespace, say: drop them (a copy; rare)
            blank = pc.equal(pc.utf8_length(pc.utf8_trim_whitespace(lines)), 0)
            lines = lines.filter(pc.invert(blank))
            found = pc.struct_field(pc.extract_regex(lines, _KIND), "kind")
        parsed = _parse_by_kind(lines, *_codes(found))
        if not _consistent(parsed):  # e.g. a hand-written log with nested "kind" keys first
            parsed = _parse_by_kind(lines, *_codes(_parse(_body(lines), ENVELOPE).column("kind")))
            if not _consistent(parsed):
                raise pa.ArrowInvalid("an event without a string kind")
    except pa.ArrowInvalid as exc:
        raise _locate(path, raw) from exc
    return _assemble(lines, parsed, torn)


def _assemble(
    lines: pa.LargeStringArray,
    parsed: dict[str | None, tuple[np.ndarray, pa.Table]],
    torn: str | None,
) -> LogTables:
    if not parsed:
        empty = ENVELOPE.append(pa.field("json", pa.large_string())).empty_table()
        kinds = {kind: kind_schema(kind).empty_table() for kind in KIND_FIELDS}
        return LogTables(events=empty, kinds=kinds, torn_line=torn)
    rows = np.concatenate([r for r, _ in parsed.values()])
    envelope = pa.concat_tables(t.select(ENVELOPE.names) for _, t in parsed.values())
    envelope = envelope.take(pa.array(np.argsort(rows, kind="stable")))
    text = pc.utf8_rtrim(lines, characters="\r\n")
    events = envelope.append_column("json", text)
    kinds = {str(kind): table for kind, (_, table) in parsed.items() if kind in KIND_FIELDS}
    for kind in KIND_FIELDS:
        kinds.setdefault(kind, kind_schema(kind).empty_table())
    return LogTables(events=events, kinds=kinds, torn_line=torn)
