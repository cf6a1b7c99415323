"""The replay model: an agent's recorded responses, in order, with no network and no key.

A `ForkModel` replays up to a point and then hands over to a live model. While it replays,
it also steps a stateful live model (a scripted policy) with the same requests, so that the
policy's memory is where it would have been; a stateless one (Claude) is not called.
"""

from __future__ import annotations

from typing import Any

from sim.errors import ModelError
from sim.models.base import Model, ModelRequest, Reply


class RecordingExhausted(ModelError):
    """The recording has no response for this turn: the agent ends with `recording_end`."""


def reply_from_event(event: dict[str, Any]) -> Reply:
    return Reply(
        content=event["content"],
        stop_reason=event.get("stop_reason"),
        usage=event.get("usage") or {},
        model=event.get("model", ""),
        retries=event.get("retries", 0),
        cost_usd=event.get("cost_usd"),
    )


class ReplayModel:
    """Returns the recorded model_response events of one agent, one per turn."""

    name = "replay"

    def __init__(self, agent: str, responses: list[dict[str, Any]]) -> None:
        self._agent = agent
        self._by_turn = {int(e["turn"]): e for e in responses}

    async def respond(self, request: ModelRequest) -> Reply:
        event = self._by_turn.get(request.turn)
        if event is None:
            raise RecordingExhausted(
                f"{self._agent}: the recording has no model response for turn {request.turn}"
            )
        return reply_from_event(event)

    async def aclose(self) -> None:
        return None


class ForkModel:
    """Replay turns up to `until_turn`, then ask `live`."""

    def __init__(self, replay: ReplayModel, live: Model, until_turn: int) -> None:
        self._replay = replay
        self._live = live
        self._until = until_turn
        self.name = f"fork({live.name})"

    async def respond(self, request: ModelRequest) -> Reply:
        if request.turn > self._until:
            return await self._live.respond(request)
        if getattr(self._live, "stateful", False):
            await self._live.respond(request)  # keep the policy's memory in step
        return await self._replay.respond(request)

    async def aclose(self) -> None:
        await self._live.aclose()
