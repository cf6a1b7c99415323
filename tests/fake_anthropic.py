"""A fake Anthropic Messages API: real HTTP on 127.0.0.1, scripted replies, faults on demand.

    with FakeAnthropic({"alice": [turn(bash("ls")), turn(finish("done"))]}) as api:
        ... run a scenario with base_url=api.base_url and ANTHROPIC_API_KEY=api.key ...
        api.requests  # every request received, parsed

A conversation is found by a marker: the first key of `scripts` that occurs in the request's
system prompt or first user message. Its turn number is the number of assistant messages in
the request, so the server keeps no per-conversation state and a retried request gets the
same answer. A `Fault` on a turn fails the first `times` attempts of that request (the SDK
numbers its attempts in `x-stainless-retry-count`), then the reply is served.

Every body the server sends is validated first against the SDK's own types
(`anthropic.types.Message`, `anthropic.types.ErrorResponse`), so a test cannot pass on a
response the real API could not give. The server is a stdlib `ThreadingHTTPServer` in a
thread: HTTP/1.1 keep-alive, and Nagle off (without it each response waits ~40 ms for an ACK).
"""

from __future__ import annotations

import argparse
import itertools
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from anthropic.types import ErrorResponse, Message

KEY = "sk-ant-fake-test-key-0123456789abcdef"
_ids = itertools.count(1)
_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    408: "timeout_error",
    409: "invalid_request_error",
    429: "rate_limit_error",
    500: "api_error",
    503: "api_error",
    529: "overloaded_error",
}


def tool_use(name: str, **args: Any) -> dict[str, Any]:
    return {"type": "tool_use", "id": f"toolu_fake_{next(_ids):05d}", "name": name, "input": args}


def bash(command: str) -> dict[str, Any]:
    return tool_use("bash", command=command)


def edit(**args: Any) -> dict[str, Any]:
    return tool_use("str_replace_based_edit_tool", **args)


def finish(summary: str) -> dict[str, Any]:
    return tool_use("finish", summary=summary)


def text(words: str) -> dict[str, Any]:
    return {"type": "text", "text": words}


@dataclass(frozen=True)
class Fault:
    """Fail the first `times` attempts of a request with `status`."""

    status: int
    times: int = 1
    retry_after: str | None = None
    message: str = "injected by the fake server"


@dataclass(frozen=True)
class Turn:
    content: list[dict[str, Any]]
    usage: dict[str, Any] | None = None
    fault: Fault | None = None
    delay: float = 0.0  # seconds before answering
    stop_reason: str | None = None  # default: tool_use when a block is one, else end_turn
    raw: bytes | None = None  # sent as it is with a 200, unchecked: a misbehaving server
    raw_type: str = "application/json"  # its content-type


def turn(*blocks: dict[str, Any], **kw: Any) -> Turn:
    return Turn(list(blocks), **kw)


DEFAULT_USAGE = {
    "input_tokens": 100,
    "output_tokens": 20,
    "cache_creation_input_tokens": 0,
    "cache_read_input_tokens": 0,
}


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]
    attempt: int  # x-stainless-retry-count
    status: int = 0  # what the server answered
    at: float = field(default_factory=time.monotonic)


def _first_user_text(body: dict[str, Any]) -> str:
    messages = body.get("messages") or [{}]
    content = messages[0].get("content", "")
    if isinstance(content, list):
        return " ".join(str(b.get("text", "")) for b in content if isinstance(b, dict))
    return str(content)


def _system_text(body: dict[str, Any]) -> str:
    system = body.get("system", "")
    if isinstance(system, list):
        return " ".join(str(b.get("text", "")) for b in system)
    return str(system)


class FakeAnthropic:
    """The server. Use as a context manager; `base_url` and `key` point a client at it."""

    def __init__(
        self,
        scripts: dict[str, list[Turn]] | None = None,
        *,
        key: str = KEY,
        respond: Callable[[dict[str, Any]], Turn] | None = None,
    ) -> None:
        self.scripts = scripts or {}
        self.key = key
        self.respond = respond
        self.requests: list[Received] = []
        self.failures: list[str] = []  # replies that did not validate against the SDK's types
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> FakeAnthropic:
        self._thread.start()
        return self

    def __exit__(self, exc_type: object, *_: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        if exc_type is None and self.failures:
            raise AssertionError(f"the fake server could not answer: {self.failures}")

    def messages_for(self, marker: str) -> list[dict[str, Any]]:
        """The bodies of the successful requests of one conversation, in order."""
        return [
            r.body
            for r in self.requests
            if r.status == 200 and marker in _system_text(r.body) + _first_user_text(r.body)
        ]

    # -- answering --------------------------------------------------------------------------

    def _turn_for(self, body: dict[str, Any]) -> Turn:
        if self.respond is not None:
            return self.respond(body)
        haystack = _system_text(body) + "\n" + _first_user_text(body)
        for marker, turns in self.scripts.items():
            if marker in haystack:
                index = sum(m.get("role") == "assistant" for m in body.get("messages", []))
                if index < len(turns):
                    return turns[index]
                return Turn([text("(the fake server's script for this agent has ended)")])
        return Turn([text("(no script matches this conversation)")])

    def answer(
        self, headers: dict[str, str], body: dict[str, Any]
    ) -> tuple[int, dict[str, str], dict[str, Any] | bytes]:
        auth = headers.get("x-api-key") or headers.get("authorization", "").removeprefix("Bearer ")
        if auth != self.key:
            return self._error(401, "invalid x-api-key")
        if not isinstance(body.get("max_tokens"), int) or not body.get("messages"):
            return self._error(400, "max_tokens and messages are required")
        reply = self._turn_for(body)
        attempt = int(headers.get("x-stainless-retry-count", "0"))
        fault = reply.fault
        if fault is not None and attempt < fault.times:
            extra = {"retry-after": fault.retry_after} if fault.retry_after else {}
            return self._error(fault.status, fault.message, extra)
        if reply.delay:
            time.sleep(reply.delay)
        if reply.raw is not None:
            return 200, {"content-type": reply.raw_type}, reply.raw
        uses_tools = any(b["type"] == "tool_use" for b in reply.content)
        message = {
            "id": f"msg_fake_{next(_ids):05d}",
            "type": "message",
            "role": "assistant",
            "model": body.get("model", "claude-fake"),
            "content": reply.content,
            "stop_reason": reply.stop_reason or ("tool_use" if uses_tools else "end_turn"),
            "stop_sequence": None,
            "usage": reply.usage or DEFAULT_USAGE,
        }
        Message.model_validate(message)
        return 200, {}, message

    def _error(
        self, status: int, message: str, headers: dict[str, str] | None = None
    ) -> tuple[int, dict[str, str], dict[str, Any]]:
        kind = _ERROR_TYPES.get(status, "api_error")
        body = {"type": "error", "error": {"type": kind, "message": message}}
        ErrorResponse.model_validate(body)
        return status, headers or {}, body

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", "0"))
                raw = self.rfile.read(length)
                headers = {k.lower(): v for k, v in self.headers.items()}
                path = self.path.split("?", 1)[0]
                body = json.loads(raw) if raw else {}
                received = Received(
                    path, headers, body, int(headers.get("x-stainless-retry-count", "0"))
                )
                try:
                    if path != "/v1/messages":
                        status, extra, answer = fake._error(404, f"no route {path}")
                    else:
                        status, extra, answer = fake.answer(headers, body)
                except Exception as exc:  # a bad script: fail the call loudly, without retries
                    fake.failures.append(repr(exc))
                    status, extra = 500, {"x-should-retry": "false"}
                    answer: dict[str, Any] | bytes = {
                        "type": "error",
                        "error": {"type": "api_error", "message": repr(exc)},
                    }
                received.status = status
                with fake._lock:
                    fake.requests.append(received)
                data = answer if isinstance(answer, bytes) else json.dumps(answer).encode()
                try:
                    self.send_response(status)
                    self.send_header("content-type", extra.pop("content-type", "application/json"))
                    self.send_header("content-length", str(len(data)))
                    self.send_header("request-id", f"req_fake_{next(_ids):05d}")
                    for name, value in extra.items():
                        self.send_header(name, value)
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (a cancelled call): nobody to answer

        return Handler


def _instant_echo(turns: int) -> Callable[[dict[str, Any]], Turn]:
    """For the benchmark: `turns` cheap tool calls, then finish, whatever the conversation."""

    def respond(body: dict[str, Any]) -> Turn:
        done = sum(m.get("role") == "assistant" for m in body.get("messages", []))
        if done >= turns:
            return Turn([finish("done")])
        return Turn([edit(command="view", path="note.txt")])

    return respond


def main() -> None:
    """`python -m tests.fake_anthropic --turns N`: serve the benchmark's replies; print the URL."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--turns", type=int, default=20)
    args = parser.parse_args()
    with FakeAnthropic(respond=_instant_echo(args.turns)) as api:
        print(api.base_url, flush=True)
        threading.Event().wait()


if __name__ == "__main__":
    main()
