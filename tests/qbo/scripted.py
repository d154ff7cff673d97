"""The sandbox in front of the client, with answers queued ahead of it for the few cases it cannot give."""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime

import httpx
from sandbox.sandbox_helpers import REALM

from qbo.sandbox import Sandbox, SandboxClock

__all__ = ["REALM", "START", "Reply", "Scripted", "SandboxTime"]

START = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
Reply = httpx.Response | Callable[[httpx.Request], httpx.Response]


class SandboxTime:
    """The sandbox's clock, frozen but for `advance` and `sleep`, as the client's clock and sleep (it records every
    wait, so a 60 s throttle wait is checked, not slept)."""

    def __init__(self, start: datetime = START) -> None:
        self.clock = SandboxClock(start=start, monotonic=lambda: 0.0)
        self.slept: list[float] = []

    @property
    def now(self) -> datetime:
        return self.clock.now()

    def __call__(self) -> datetime:
        return self.clock.now()

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.clock.advance(seconds)

    def advance(self, seconds: float) -> None:
        self.clock.advance(seconds)

    def at(self, moment: datetime) -> None:
        """Move the clock forward to `moment` (a change made then carries it as LastUpdatedTime)."""
        self.clock.advance(max(0.0, (moment - self.clock.now()).total_seconds()))


class Scripted(httpx.BaseTransport):
    """The sandbox's in-process transport, recording every request, with a queue of scripted answers in front.

    The sandbox answers everything it can: entities, queries, CDC, batches, OAuth, faults from its business rules
    and the faults it injects. A scripted answer is for what it cannot send: a fuzzed or truncated body, a real
    capture from tests/qbo/real, a fault in a chosen shape or with a token echoed in it, a CDC page that keeps the
    newest 1000 changes (QBO's choice there is unconfirmed, the sandbox keeps the oldest), a dropped connection
    on one chosen call.
    """

    def __init__(self, sandbox: Sandbox) -> None:
        self.sandbox = sandbox
        self.inner = sandbox.transport()
        self.requests: list[httpx.Request] = []
        self.replies: deque[Reply] = deque()
        self.token_replies: deque[Reply] = deque()
        self.on_api: Callable[[httpx.Request], None] | None = None
        self.on_token: Callable[[httpx.Request], None] | None = None
        self.access: str | None = None  # the last tokens the token endpoint issued
        self.refresh: str | None = None

    def script(self, *replies: Reply) -> None:
        """Answer the next API requests with these, in order; the sandbox answers the rest."""
        self.replies.extend(replies)

    def script_token(self, *replies: Reply) -> None:
        self.token_replies.extend(replies)

    @property
    def api_requests(self) -> list[httpx.Request]:
        return [r for r in self.requests if r.url.path.startswith("/v3/")]

    @property
    def token_calls(self) -> int:
        return sum(1 for r in self.requests if r.url.path == "/oauth2/v1/tokens/bearer")

    def entities(self, entity: str) -> list[dict]:
        """Every object of an entity the sandbox holds for the realm, deleted ones included."""
        return self.sandbox.entities(REALM, entity)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        request.read()
        self.requests.append(request)
        if request.url.path == "/oauth2/v1/tokens/bearer":
            if self.on_token is not None:
                self.on_token(request)
            if self.token_replies:
                return _answer(self.token_replies.popleft(), request)
            response = self.inner.handle_request(request)
            if response.status_code == 200:
                payload = json.loads(response.read())
                self.access, self.refresh = payload.get("access_token"), payload.get("refresh_token")
            return response
        if request.url.path.startswith("/v3/"):
            if self.on_api is not None:
                self.on_api(request)
            if self.replies:
                return _answer(self.replies.popleft(), request)
        return self.inner.handle_request(request)


def _answer(reply: Reply, request: httpx.Request) -> httpx.Response:
    response = reply(request) if callable(reply) else reply
    response.request = request
    return response
