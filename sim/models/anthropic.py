"""Claude through the Anthropic Messages API: one shared `AsyncAnthropic` per run.

The runner opens the client with `open_client` (after `check_ready` passed, before anything
starts) and closes it at the end; each Claude agent gets a `ClaudeModel` over it. The SDK does
the HTTP, the retries (408, 409, 429, 5xx, 529 and dropped connections; `api.max_retries`) and
the request's types. The reply is read as JSON and checked here (`_reply_parts`): the SDK's
typed Message checks nothing and cost 0.2 ms a call to build. Two things the SDK does not do
are done by `_RetryPolicy`, an SDK middleware (it runs once per HTTP attempt, inside the
SDK's retry loop):

- it counts the attempts of each call, so a retried call is one `model_response` with its
  `retries` (the count lives in a context variable, which trio keeps per task, i.e. per agent);
- it caps the wait the server asks for: the SDK honours `retry-after` without a limit (a 30 s
  header sleeps 30 s), so a larger value is rewritten to `api.max_retry_wait` before the SDK
  reads it.

Each request marks three prompt-cache breakpoints (`cache_control`): the system prompt, the last
tool (which caches all tools) and the newest message, so a long conversation reads its prefix
from the cache. Old tool results are trimmed near the context window (sim/models/trim.py).

Errors: a 401 raises AuthError (the run ends: a bad key fails every agent alike); anything
else that outlasts the retries raises ModelError (that agent ends with reason `error`).
"""

from __future__ import annotations

import email.utils
import json
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from contextvars import ContextVar
from typing import Any

import anthropic
import httpx2
from anthropic import AsyncAnthropic

from sim.errors import AuthError, ModelError, RunError
from sim.models.base import Message, ModelRequest, Reply
from sim.models.trim import ContextTrimmer
from sim.pricing import context_window, cost_usd, is_priced
from sim.scenario import Api, Scenario

KEY_VAR = "ANTHROPIC_API_KEY"
BASE_URL_VAR = "ANTHROPIC_BASE_URL"
DEFAULT_BASE_URL = "https://api.anthropic.com"
_HOW_TO_SET_KEY = (
    f"Set it with `export {KEY_VAR}=sk-ant-...` "
    "(keys: https://console.anthropic.com/settings/keys). "
    "Without a key, run an offline scenario (python -m sim run scenarios/quickstart.yaml) or "
    "replay a recorded run (python -m sim replay RUN_DIR)"
)


def claude_agents(scenario: Scenario) -> list[str]:
    return [cfg.name for cfg in scenario.expanded_agents() if cfg.spec.is_claude]


def check_ready(scenario: Scenario, env: Mapping[str, str]) -> None:
    """Raise RunError, before anything starts, if a Claude scenario cannot run: no API key, or
    a budget that cannot be enforced because a model's price is unknown."""
    agents = claude_agents(scenario)
    if not agents:
        return
    if not env.get(KEY_VAR, "").strip():
        raise RunError(
            f"scenario {scenario.name!r} has Claude agents ({', '.join(agents[:5])}) but "
            f"{KEY_VAR} is not set. {_HOW_TO_SET_KEY}"
        )
    limits = scenario.limits
    if limits.budget_usd is not None or limits.run_budget_usd is not None:
        for cfg in scenario.expanded_agents():
            if cfg.spec.is_claude and not is_priced(cfg.spec.model):
                raise RunError(
                    f"agent {cfg.name}: model {cfg.spec.model!r} has no price in sim/pricing.py, "
                    "so limits.budget_usd / limits.run_budget_usd cannot be enforced; add the "
                    "model's prices there, or remove the budget"
                )


@asynccontextmanager
async def open_client(
    scenario: Scenario, env: Mapping[str, str]
) -> AsyncIterator[AsyncAnthropic | None]:
    """Yield the run's one AsyncAnthropic (None when no agent is Claude) and close it after.

    The key comes from `env` only, never from the scenario; the endpoint from the scenario's
    `base_url`, else ANTHROPIC_BASE_URL in `env`, else Anthropic's API."""
    if not claude_agents(scenario):
        yield None
        return
    api = scenario.api
    try:
        client = AsyncAnthropic(
            api_key=env[KEY_VAR].strip(),
            base_url=scenario.base_url or env.get(BASE_URL_VAR) or DEFAULT_BASE_URL,
            max_retries=api.max_retries,
            timeout=api.timeout,
            middleware=[_RetryPolicy(api.max_retry_wait)],
        )
    except (anthropic.AnthropicError, ValueError) as exc:
        raise RunError(f"cannot set up the Anthropic client: {exc}") from exc
    async with client:
        yield client


class _Attempts:
    __slots__ = ("retries",)

    def __init__(self) -> None:
        self.retries = 0


_CALL: ContextVar[_Attempts | None] = ContextVar("sim_claude_call", default=None)


def _requested_wait(headers: httpx2.Headers) -> float | None:
    """Seconds a response asks to wait, read as the SDK reads it (retry-after-ms first)."""
    for name, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
        value = headers.get(name)
        if value is None:
            continue
        try:
            return float(value) * scale
        except ValueError:
            parsed = email.utils.parsedate_tz(value)
            if parsed is not None:
                return float(email.utils.mktime_tz(parsed) - time.time())
    return None


class _RetryPolicy(anthropic.Middleware):
    """Counts attempts per call and caps `retry-after` at `max_wait` seconds."""

    def __init__(self, max_wait: float) -> None:
        self.max_wait = max_wait

    async def handle_async(self, request: Any, call_next: Any) -> Any:
        call = _CALL.get()
        if call is not None:
            call.retries = request.retries_taken
        response = await call_next(request)
        http = response.http_response
        if http.status_code >= 400:
            wait = _requested_wait(http.headers)
            if wait is not None and wait > self.max_wait:
                # retry-after-ms is read first by the SDK; it then sleeps exactly this long.
                http.headers["retry-after-ms"] = str(int(self.max_wait * 1000))
        return response


def _reply_parts(msg: object) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """A reply's content blocks and usage; ValueError saying what is wrong with it. Nothing
    checks a 200 for us: it may be a proxy's error page, an error body, a tool_use without an
    id. Caught here, not as a KeyError three calls on."""
    if not isinstance(msg, dict):
        raise ValueError(f"a JSON {type(msg).__name__}, not a Messages reply object")
    content = msg.get("content")
    usage = msg.get("usage")
    if not isinstance(content, list) or not all(
        isinstance(b, dict) and isinstance(b.get("type"), str) for b in content
    ):
        raise ValueError("its `content` is not a list of content blocks")
    if not isinstance(usage, dict):
        raise ValueError("it has no `usage`")
    for block in content:
        if block["type"] == "tool_use" and not (
            isinstance(block.get("id"), str)
            and isinstance(block.get("name"), str)
            and isinstance(block.get("input"), dict)
        ):
            raise ValueError(
                f"a tool_use block needs a string id and name and an object input: {block}"
            )
    if not all(type(usage.get(k)) is int for k in ("input_tokens", "output_tokens")) or not all(
        type(usage.get(k)) in (int, type(None))
        for k in ("cache_creation_input_tokens", "cache_read_input_tokens")
    ):
        raise ValueError(f"its usage has no whole token counts: {usage}")
    if not isinstance(msg.get("stop_reason"), str | None) or not isinstance(msg.get("model"), str):
        raise ValueError("it needs a string `model` and a string or null `stop_reason`")
    return content, usage


def _error_detail(exc: anthropic.APIStatusError) -> str:
    body = exc.body
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        err = body["error"]
        return f"{err.get('type', 'error')}: {err.get('message', '')}"
    return str(exc.message)


class ClaudeModel:
    """A Model that asks Claude. One per agent (it keeps the agent's trimming state)."""

    def __init__(self, client: AsyncAnthropic, *, model: str, api: Api) -> None:
        self.name = model
        self._client = client
        self._max_tokens = api.max_output_tokens
        self._cache: dict[str, str] = {"type": "ephemeral", "ttl": api.cache_ttl}
        window = api.context_window or context_window(model)
        self._trimmer = ContextTrimmer(max(1000, window - api.max_output_tokens))
        self._tools_src: list[dict[str, Any]] | None = None
        self._tools: list[dict[str, Any]] = []
        self._system_src: str | None = None
        self._system: list[dict[str, Any]] = []

    async def respond(self, request: ModelRequest) -> Reply:
        """One Messages call. Raises AuthError on 401, ModelError when an error outlasts the
        retries. On cancel the request is aborted (the SDK leaves its pool usable)."""
        messages = self._with_cache_mark(self._trimmer.prepare(request.messages))
        call = _Attempts()
        token = _CALL.set(call)
        try:
            # The reply is read as JSON, not as the SDK's typed Message: building that
            # (and turning its blocks back into dicts for the conversation) cost 0.2 ms a
            # call, a tenth of the whole request's CPU. _reply_parts checks what we use.
            raw = await self._client.messages.with_raw_response.create(
                model=self.name,
                max_tokens=self._max_tokens,
                system=self._system_blocks(request.system),
                tools=self._tool_defs(request.tools),  # type: ignore[arg-type]
                messages=messages,  # type: ignore[arg-type]
            )
        except anthropic.AuthenticationError as exc:
            raise AuthError(
                f"the Anthropic API rejected {KEY_VAR} (401 {_error_detail(exc)}). "
                + _HOW_TO_SET_KEY
            ) from None
        except anthropic.APIStatusError as exc:
            raise ModelError(
                f"{self.name}: the API answered {exc.status_code} {_error_detail(exc)} "
                f"(after {call.retries} retries)"
            ) from None
        except anthropic.APIConnectionError as exc:
            raise ModelError(
                f"{self.name}: {exc.message} ({type(exc).__name__}, after {call.retries} "
                f"retries) to {self._client.base_url}"
            ) from None
        finally:
            _CALL.reset(token)
        body = raw.http_response.content
        try:
            msg = json.loads(body)
        except ValueError as exc:  # JSONDecodeError, or bytes that are not UTF-8
            kind = raw.http_response.headers.get("content-type", "no content-type")
            raise self._not_a_reply(f"not JSON ({kind}): {exc}", body) from None
        try:
            content, usage = _reply_parts(msg)
        except ValueError as exc:
            raise self._not_a_reply(str(exc), body) from None
        self._trimmer.observe(usage, len(request.messages))
        priced = self.name if is_priced(self.name) else msg["model"]
        return Reply(
            content=content,
            stop_reason=msg.get("stop_reason"),  # None when absent, as the SDK's Message has it
            usage=usage,
            model=msg["model"],
            retries=call.retries,
            cost_usd=cost_usd(priced, usage),
        )

    def _not_a_reply(self, problem: str, body: bytes) -> ModelError:
        text = body.decode("utf-8", "replace")
        return ModelError(
            f"{self.name}: the API at {self._client.base_url} answered 200 with what is not a "
            f"Messages reply ({problem[:300]}); check that base_url (or {BASE_URL_VAR}) is the "
            f"Anthropic Messages API. It began: {text[:200]!r}"
        )

    async def aclose(self) -> None:
        return None  # the client is the run's, closed by the runner

    def _system_blocks(self, system: str) -> Any:
        if system != self._system_src:
            self._system_src = system
            self._system = (
                [{"type": "text", "text": system, "cache_control": self._cache}] if system else []
            )
        return self._system or anthropic.omit

    def _tool_defs(self, tools: list[dict[str, Any]]) -> Any:
        if tools is not self._tools_src:
            self._tools_src = tools
            self._tools = [dict(t) for t in tools]
            if self._tools:
                self._tools[-1]["cache_control"] = self._cache
        return self._tools or anthropic.omit

    def _with_cache_mark(self, messages: list[Message]) -> list[Message]:
        """A shallow copy whose newest message carries a cache breakpoint on its last block."""
        if not messages:
            return messages
        last = messages[-1]
        content = last.get("content")
        if isinstance(content, str):
            blocks: list[dict[str, Any]] = [{"type": "text", "text": content}]
        elif isinstance(content, list) and content:
            blocks = list(content)
        else:
            return messages
        blocks[-1] = {**blocks[-1], "cache_control": self._cache}
        return [*messages[:-1], {**last, "content": blocks}]
