"""The sandbox over loopback HTTP (Starlette on uvicorn), in a thread for tests, and `synchealth sandbox`."""

from __future__ import annotations

import argparse
import asyncio
import socket
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any, NoReturn

import uvicorn
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from uvicorn.protocols.http.h11_impl import H11Protocol

from qbo.sandbox.engine import Sandbox
from qbo.sandbox.limits import Limits
from qbo.sandbox.response import RESET, TIMEOUT, SandboxError

__all__ = ["RunningSandbox", "asgi_app", "main", "parse_limits", "serve", "start_in_thread"]

_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]


class _ConnectionDropped(BaseException):
    """Raised by the app to close the socket with no HTTP response at all.

    A BaseException, so Starlette's error middleware (which catches Exception) cannot turn it into a 500.
    """


class _DroppingH11Protocol(H11Protocol):
    """uvicorn's h11 protocol, plus: an app that raises _ConnectionDropped gets its connection aborted."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        inner = self.app

        async def app(scope: Any, receive: Any, send: Any) -> None:
            try:
                await inner(scope, receive, send)
            except _ConnectionDropped:
                # Marked disconnected first, so uvicorn neither logs nor writes a 500 to the dead socket.
                self.cycle.disconnected = True
                self.transport.abort()

        self.app = app


async def _hold(seconds: float, stopping: threading.Event) -> None:
    """Keep a response back so the client's read timeout fires; a server shutdown cuts it short."""
    deadline = time.monotonic() + seconds
    while not stopping.is_set():
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return
        await asyncio.sleep(min(0.05, remaining))


def asgi_app(sandbox: Sandbox, stopping: threading.Event | None = None) -> Starlette:
    """A Starlette app that hands every request to `sandbox.handle()` on a worker thread.

    Worker threads let requests overlap for real, which the concurrency limit needs. A timeout holds
    the response `sandbox.timeout_hold_seconds`; a reset drops the connection (under the server this
    module starts; another server answers it with its own 500).
    """
    stop = stopping or threading.Event()

    async def endpoint(request: Request) -> Response:
        body = await request.body()
        reply = await run_in_threadpool(
            sandbox.handle,
            request.method,
            request.url.path,
            request.query_params.multi_items(),
            dict(request.headers),
            body,
        )
        if reply.action == TIMEOUT:
            await _hold(sandbox.timeout_hold_seconds, stop)
        elif reply.action == RESET:
            raise _ConnectionDropped()
        return Response(reply.body, status_code=reply.status, headers=reply.headers)

    return Starlette(routes=[Route("/{path:path}", endpoint, methods=_METHODS)])


def _config(app: Starlette, **kwargs: Any) -> uvicorn.Config:
    return uvicorn.Config(
        app,
        http=_DroppingH11Protocol,
        lifespan="off",
        access_log=False,
        timeout_graceful_shutdown=2,
        **kwargs,
    )


@dataclass
class RunningSandbox:
    """A sandbox served on a loopback port by a background thread; stop it, or use it as a context."""

    sandbox: Sandbox
    host: str
    port: int
    _server: uvicorn.Server = field(repr=False)
    _thread: threading.Thread = field(repr=False)
    _stopping: threading.Event = field(repr=False)

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def stop(self) -> None:
        self._stopping.set()
        self._server.should_exit = True
        self._thread.join(timeout=10)

    def __enter__(self) -> RunningSandbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_in_thread(sandbox: Sandbox, host: str = "127.0.0.1", port: int = 0) -> RunningSandbox:
    """Serve `sandbox` on `host:port` (0 picks a free port) until `stop()`; returns once it listens."""
    stopping = threading.Event()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    server = uvicorn.Server(_config(asgi_app(sandbox, stopping), log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="qbo-sandbox", daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            sock.close()
            raise RuntimeError("the sandbox server did not start")
        time.sleep(0.01)
    return RunningSandbox(sandbox, host, sock.getsockname()[1], server, thread, stopping)


def serve(sandbox: Sandbox, host: str = "127.0.0.1", port: int = 8765) -> None:
    """Serve until interrupted (blocking)."""
    uvicorn.Server(_config(asgi_app(sandbox), host=host, port=port, log_level="info")).run()


class _UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise _UsageError(message)


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="synchealth sandbox", description="Run the local QuickBooks Online sandbox.")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8765, help="port to listen on (default 8765)")
    parser.add_argument("--company", metavar="FILE", help="company file written by `synchealth demo`")
    parser.add_argument("--faults", metavar="SPEC", help="kind[@operation]=rate,... e.g. http_500=0.05")
    parser.add_argument("--seed", type=int, default=0, help="seed of the fault draws (default 0)")
    parser.add_argument("--time-scale", type=float, default=1.0, metavar="K", help="run the clock K times faster")
    parser.add_argument(
        "--throttle",
        choices=("xml", "xml-403", "json"),
        default="xml",
        help="how rate limits are answered: XML with 429 as QBO does (default), XML with 403 as in 2016, or JSON",
    )
    parser.add_argument("--retry-after", type=int, metavar="SECONDS", help="send Retry-After on 429s")
    parser.add_argument(
        "--timeout-hold",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="how long a timeout fault holds the response (default 30)",
    )
    parser.add_argument(
        "--limits",
        metavar="SPEC",
        help="per-realm limits other than QBO's, e.g. per_minute=60,batch_per_minute=4,max_concurrent=10 (benches)",
    )
    return parser


def parse_limits(spec: str | None) -> Limits:
    """`name=N,...` over QBO's limits (per_minute, batch_per_minute, max_concurrent); ValueError names a bad one."""
    values: dict[str, int] = {}
    for part in (spec or "").split(","):
        if not part.strip():
            continue
        name, _, number = part.partition("=")
        name = name.strip()
        if name not in ("per_minute", "batch_per_minute", "max_concurrent"):
            raise ValueError(f"--limits: unknown limit {name!r} (per_minute, batch_per_minute, max_concurrent)")
        if not number.strip().isdigit() or int(number) < 1:
            raise ValueError(f"--limits: {name} must be a whole number of at least 1, not {number.strip()!r}")
        values[name] = int(number)
    return Limits(**values)


def main(argv: list[str] | None = None) -> int:
    """Run `synchealth sandbox`: 0 after a clean shutdown, 2 for bad options or an unreadable company."""
    try:
        args = _parser().parse_args(argv)
        if not args.time_scale > 0:
            raise _UsageError("--time-scale must be positive")
        if not 0 <= args.port <= 65535:
            raise _UsageError("--port must be between 0 and 65535")
        sandbox = Sandbox(
            args.company,
            faults=args.faults,
            seed=args.seed,
            time_scale=args.time_scale,
            throttle_format="json" if args.throttle == "json" else "xml",
            throttle_status=403 if args.throttle == "xml-403" else 429,
            retry_after_seconds=args.retry_after,
            timeout_hold_seconds=args.timeout_hold,
            limits=parse_limits(args.limits),
        )
    except SystemExit as exc:  # --help
        return int(exc.code or 0)
    except (_UsageError, SandboxError, ValueError, OSError) as exc:
        print(f"synchealth sandbox: {exc}", file=sys.stderr)
        return 2
    print(
        f"QBO sandbox on http://{args.host}:{args.port} (realm {sandbox.default_realm}, "
        f"time scale {args.time_scale:g}, faults {sandbox.faults.spec or 'none'})",
        flush=True,
    )
    try:
        serve(sandbox, args.host, args.port)
    except KeyboardInterrupt:
        pass
    finally:
        sandbox.close()
    return 0
