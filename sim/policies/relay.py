"""A pipeline that hands work along by messages: source -> stage -> ... -> sink.

- `source` (params `to`, `items`): sends each item as `item N: text`, one a turn, then `done`.
- `stage` (params `to`, `command`): waits for messages; pipes each item's text through the
  shell `command` (e.g. `tr a-z A-Z`) and sends `item N: result` on; passes `done` on last.
- `sink` (param `file`): appends each item to shared/<file>, one line each, and ends at `done`.

Stages wait with `wait_for_message`, which parks them without using turns, so a pipeline of k
stages costs about k turns per item however slow the source is.
"""

from __future__ import annotations

import shlex
from collections import deque
from typing import Any

from sim.mailbox import parse_delivery
from sim.models.scripted import Observation, Step

DONE = "done"


def _queue(obs: Observation) -> deque[str]:
    queue: deque[str] = obs.state.setdefault("queue", deque())
    for text in obs.inbox:
        parsed = parse_delivery(text)
        if parsed is not None:
            queue.append(parsed[1])
    return queue


def source(obs: Observation) -> Step | None:
    items: list[Any] = list(obs.params["items"])
    i = obs.turn - 1
    if i < len(items):
        return {"send_message": {"to": obs.params["to"], "text": f"item {i + 1}: {items[i]}"}}
    if i == len(items):
        return {"send_message": {"to": obs.params["to"], "text": DONE}}
    return None


def stage(obs: Observation) -> Step | None:
    queue = _queue(obs)
    s = obs.state
    if s.get("done_sent"):
        return None
    if "label" in s:  # the shell ran this item's command last turn: send its output on
        label = s.pop("label")
        output = obs.last.output if obs.last is not None else ""
        return {"send_message": {"to": obs.params["to"], "text": f"{label}: {output.strip()}"}}
    if not queue:
        return {"wait_for_message": {}}
    text = queue.popleft()
    if text == DONE:
        s["done_sent"] = True
        return {"send_message": {"to": obs.params["to"], "text": DONE}}
    label, _, payload = text.partition(": ")
    s["label"] = label
    return {"bash": f"printf '%s' {shlex.quote(payload)} | {obs.params['command']}"}


def sink(obs: Observation) -> Step | None:
    queue = _queue(obs)
    if not queue:
        return {"wait_for_message": {}}
    text = queue.popleft()
    if text == DONE:
        return None
    path = f'"$SIM_SHARED/{obs.params.get("file", "relay.txt")}"'
    return {"bash": f"printf '%s\\n' {shlex.quote(text)} >> {path}"}
