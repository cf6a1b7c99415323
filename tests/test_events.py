from __future__ import annotations

from itertools import count
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sim.errors import LogError
from sim.events import EventLog, Payload, parse_payload, read_events


def clock_from(values: list[float]) -> Any:
    it = iter(values)
    return lambda: next(it)


def test_every_event_has_envelope_and_seq_is_gap_free(tmp_path: Path) -> None:
    ticks = count()
    log = EventLog(tmp_path / "e.jsonl", lambda: float(next(ticks)))
    from sim.events import Limit, RunEnd

    log.emit(Limit(limit="max_turns", value=3), "a")
    log.emit(RunEnd(status="completed", duration=1.0))
    log.close()
    events = read_events(tmp_path / "e.jsonl").events
    assert [e["seq"] for e in events] == [0, 1]
    assert [e["t"] for e in events] == [1.0, 2.0]  # the clock read at open is t=0
    assert events[0]["agent"] == "a" and events[1]["agent"] is None
    assert all(e["ts"].endswith("+00:00") for e in events)


def test_torn_last_line_is_dropped_and_reported(tmp_path: Path) -> None:
    path = tmp_path / "e.jsonl"
    path.write_text('{"seq":0,"kind":"x"}\n{"seq":1,"kin')
    contents = read_events(path)
    assert len(contents.events) == 1
    assert contents.torn_line == '{"seq":1,"kin'


@pytest.mark.parametrize("bad", ["not json", "[1, 2]", "42", "{}", '{"kind": 3}'])
def test_corruption_before_the_last_line_is_an_error(tmp_path: Path, bad: str) -> None:
    path = tmp_path / "e.jsonl"
    path.write_text(f'{{"seq":0,"kind":"x"}}\n{bad}\n{{"seq":2,"kind":"x"}}\n')
    with pytest.raises(LogError, match=r"e\.jsonl:2: not an event"):
        read_events(path)
    path.write_text(f'{{"seq":0,"kind":"x"}}\n{bad}\n')  # as the last line: torn, dropped
    assert read_events(path).torn_line == f"{bad}\n"


def test_emit_after_close_raises(tmp_path: Path) -> None:
    from sim.events import Limit

    log = EventLog(tmp_path / "e.jsonl", lambda: 0.0)
    log.close()
    with pytest.raises(ValueError, match="closed"):
        log.emit(Limit(limit="x"))


KINDS = sorted(Payload.registry)

json_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**53), 2**53), st.text(max_size=20)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)


def _strategy_for(cls: type[Payload]) -> st.SearchStrategy[Payload]:
    # st.builds with explicit JSON-safe strategies for the Any-typed fields.
    overrides: dict[str, st.SearchStrategy[Any]] = {}
    for name, field in cls.model_fields.items():
        if name == "kind":
            continue
        ann = str(field.annotation)
        if "Any" not in ann and ("list" in ann or "dict" in ann):
            pass  # typed containers: hypothesis builds them from the annotation
        elif "list[dict" in ann:
            overrides[name] = st.lists(
                st.dictionaries(st.text(max_size=8), json_values), max_size=3
            )
        elif "dict" in ann:
            overrides[name] = st.dictionaries(st.text(max_size=8), json_values, max_size=3)
        elif "float" in ann and "str" not in ann:
            overrides[name] = st.floats(allow_nan=False, allow_infinity=False, width=32)
            if "None" in ann:
                overrides[name] = st.none() | overrides[name]
    return st.builds(cls, **overrides)


@pytest.mark.parametrize("kind", KINDS)
def test_every_kind_round_trips_through_the_log(tmp_path_factory: Any, kind: str) -> None:
    cls = Payload.registry[kind]
    directory = tmp_path_factory.mktemp(kind)

    @settings(max_examples=25, deadline=None)
    @given(payload=_strategy_for(cls), agent=st.none() | st.text(min_size=1, max_size=10))
    def round_trip(payload: Payload, agent: str | None) -> None:
        path = directory / "e.jsonl"
        path.unlink(missing_ok=True)
        log = EventLog(path, lambda: 0.0)
        seq = log.emit(payload, agent)
        log.close()
        (read,) = read_events(path).events
        assert read["seq"] == seq == 0
        assert read["kind"] == kind and read["agent"] == agent
        assert parse_payload(read) == payload

    round_trip()


def test_registry_knows_the_design_kinds() -> None:
    design = {
        "run_start", "agent_start", "model_request", "model_response", "tool_call",
        "tool_result", "command", "lock_wait", "lock_acquire", "lock_release", "limit",
        "error", "agent_end", "run_end",
    }  # fmt: skip
    assert design <= set(KINDS)
