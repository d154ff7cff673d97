"""The in-process adapter: an httpx transport that calls `Sandbox.handle()` without a socket."""

from __future__ import annotations

from typing import TYPE_CHECKING

import httpx

from qbo.sandbox.response import RESET, TIMEOUT

if TYPE_CHECKING:
    from qbo.sandbox.engine import Sandbox

__all__ = ["SandboxTransport"]


class SandboxTransport(httpx.BaseTransport):
    """Serve a sync `httpx.Client(transport=..., base_url="http://sandbox.local")` from a Sandbox.

    An injected timeout raises `httpx.ReadTimeout` and a dropped connection raises
    `httpx.RemoteProtocolError`, the exceptions httpx raises for the real thing.
    """

    def __init__(self, sandbox: Sandbox) -> None:
        self.sandbox = sandbox

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        body = request.read()
        reply = self.sandbox.handle(
            request.method, request.url.path, request.url.params.multi_items(), dict(request.headers), body
        )
        if reply.action == TIMEOUT:
            raise httpx.ReadTimeout("timed out", request=request)
        if reply.action == RESET:
            message = "Server disconnected without sending a response."
            raise httpx.RemoteProtocolError(message, request=request)
        return httpx.Response(reply.status, headers=reply.headers, content=reply.body, request=request)
