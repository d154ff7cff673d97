"""The one server's shared state: its store, commands, scheduler, webhook inbox and one-time links.

`server.py` builds a ServerState in its lifespan and installs it here; the pages (ui.data) and the routes read it
from here, so everything in the process uses the lifespan's one Store and the same commands.
"""

from __future__ import annotations

import secrets
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from pipelines.clock import Clock, system_clock
from pipelines.commands import Commands
from pipelines.config import ServerConfig, Settings
from pipelines.store import Store

if TYPE_CHECKING:
    from pipelines.fleet.relay import FleetRelay
    from pipelines.serve.scheduler import Scheduler
    from pipelines.serve.webhooks import WebhookInbox

__all__ = [
    "PAGE_LOCK_WAIT",
    "ROOT",
    "ServerState",
    "configure",
    "configured",
    "current",
    "install",
    "serve",
    "uninstall",
]

ROOT = Path(__file__).resolve().parents[2]
_LINK_SECONDS = 600  # a Connect link and an OAuth state live ten minutes (the sandbox's codes do too)
# A person's action or a CLI command beside a running cycle waits this long for the company, then is told it is busy
# (a cycle can take minutes; a person should not stare at a spinner that long).
PAGE_LOCK_WAIT = 10.0


@dataclass
class ServerState:
    """What the lifespan owns; one per process."""

    settings: Settings
    config: ServerConfig
    store: Store
    scheduler: Scheduler | FleetRelay  # fleet mode: no cycles here, webhooks relayed to the workers
    inbox: WebhookInbox
    clock: Clock = system_clock
    api_token: str = field(default_factory=lambda: secrets.token_urlsafe(32), repr=False)
    started_at: datetime | None = None
    commands: Commands | None = None
    _tickets: dict[str, tuple[str, float]] = field(default_factory=dict, repr=False)
    _states: dict[str, tuple[str, float]] = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __post_init__(self) -> None:
        if self.started_at is None:
            self.started_at = self.clock()
        if self.commands is None:
            self.commands = Commands(self.store, self.settings, lock_wait=PAGE_LOCK_WAIT)

    def now(self) -> datetime:
        return self.clock()

    @staticmethod
    def _issue(book: dict[str, tuple[str, float]], actor: str) -> str:
        now = time.monotonic()
        for key in [k for k, (_, until) in book.items() if until < now]:
            del book[key]
        key = secrets.token_urlsafe(24)
        book[key] = (actor, now + _LINK_SECONDS)
        return key

    @staticmethod
    def _take(book: dict[str, tuple[str, float]], key: str | None) -> str | None:
        found = book.pop(key, None) if key else None
        return found[0] if found and found[1] >= time.monotonic() else None

    def connect_ticket(self, actor: str) -> str:
        """A one-time link for /oauth/connect bound to the admin who pressed Connect."""
        with self._lock:
            return self._issue(self._tickets, actor)

    def redeem_ticket(self, ticket: str | None) -> str | None:
        with self._lock:
            return self._take(self._tickets, ticket)

    def begin_oauth(self, actor: str) -> str:
        """The OAuth `state` for one authorize round trip; the callback must bring it back."""
        with self._lock:
            return self._issue(self._states, actor)

    def finish_oauth(self, state: str | None) -> str | None:
        """Who started the round trip whose state this is; None for an unknown, used or expired state."""
        with self._lock:
            return self._take(self._states, state)


_current: ServerState | None = None
_configured: tuple[Settings, ServerConfig] | None = None


def install(state: ServerState) -> None:
    global _current
    _current = state


def uninstall(state: ServerState) -> None:
    global _current
    if _current is state:
        _current = None


def current() -> ServerState | None:
    """The running server's state, or None outside `synchealth serve` (e.g. `streamlit run`, tests)."""
    return _current


def configure(settings: Settings, config: ServerConfig) -> None:
    """The settings `synchealth serve` built, for the lifespan uvicorn runs in this same process."""
    global _configured
    _configured = (settings, config)


def configured() -> tuple[Settings, ServerConfig] | None:
    return _configured


def serve(settings: Settings, config: ServerConfig, *, host: str, port: int) -> int:
    """Run the one server (uvicorn serving server:app) until interrupted."""
    import logging

    import uvicorn

    # Our own lines (cycles that failed, refused webhooks, connects) beside uvicorn's; httpx stays quiet.
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    Store(settings.store_target).close()  # held elsewhere: StoreBusyError now, as one line, not a failed startup
    configure(settings, config)
    uvicorn.run("server:app", host=host, port=port, app_dir=str(ROOT), log_level="info", timeout_graceful_shutdown=5)
    return 0
