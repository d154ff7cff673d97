"""The one server's shared state (store, scheduler, webhook inbox, one-time links) and the CLI's way to it.

`server.py` builds a ServerState in its lifespan and installs it here; pages (ui.data) and the
routes read it from here, so everything in the process uses the lifespan's one Store. Beside a running
server the CLI cannot open the DuckDB file (one process per file), so `beside_server` sends the command
to the server's local API, found through a 0600 file next to the store, or says so in one line.
"""

from __future__ import annotations

import io
import json
import os
import secrets
import sys
import threading
import time
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import httpx

from pipelines.clock import Clock, system_clock
from pipelines.config import Settings
from pipelines.connection_health import DEFAULT_WARN_DAYS
from pipelines.store import Store, StoreError

if TYPE_CHECKING:
    from pipelines.serve.scheduler import Scheduler
    from pipelines.serve.webhooks import WebhookInbox

__all__ = [
    "DEMO_WEBHOOK_VERIFIER",
    "ServerConfig",
    "ServerState",
    "beside_server",
    "borrow_store",
    "captured_output",
    "current",
    "install",
    "load_server_config",
    "read_server_file",
    "serve",
    "server_file",
    "uninstall",
]

ROOT = Path(__file__).resolve().parents[2]
DEMO_WEBHOOK_VERIFIER = "demo-local-webhook-verifier"
_LINK_SECONDS = 600  # a Connect link and an OAuth state live ten minutes (the sandbox's codes do too)
# Commands the server never runs for the CLI: they start processes or do not need the store.
_NOT_FORWARDED = ("serve", "sandbox", "demo")


# -- configuration ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ServerConfig:
    """The server's own settings (Settings holds what the CLI shares with it)."""

    url: str
    interval: float = 300.0
    webhook_verifier: str | None = field(default=None, repr=False)
    reconnect_warn_days: int = DEFAULT_WARN_DAYS


def load_server_config(
    settings: Settings, environ: dict[str, str] | None = None, secrets_file: Path | None = None
) -> ServerConfig:
    """SYNCHEALTH_SERVER_URL, _CYCLE_SECONDS, _QBO_WEBHOOK_VERIFIER, _RECONNECT_WARN_DAYS (env, then secrets)."""
    env = dict(os.environ if environ is None else environ)
    path = secrets_file or Path(".streamlit/secrets.toml")
    stored: dict[str, Any] = {}
    if path.is_file():
        with path.open("rb") as fh:
            stored = tomllib.load(fh)

    def get(name: str) -> str | None:
        value = env.get(name)
        if value is None and name in stored:
            value = str(stored[name])
        return value or None

    redirect = urlsplit(settings.qbo_redirect_uri)
    url = get("SYNCHEALTH_SERVER_URL") or f"{redirect.scheme}://{redirect.netloc}"
    verifier = get("SYNCHEALTH_QBO_WEBHOOK_VERIFIER")
    if verifier is None and settings.qbo_env == "local":
        verifier = DEMO_WEBHOOK_VERIFIER
    return ServerConfig(
        url=url.rstrip("/"),
        interval=float(get("SYNCHEALTH_CYCLE_SECONDS") or 300),
        webhook_verifier=verifier,
        reconnect_warn_days=int(get("SYNCHEALTH_RECONNECT_WARN_DAYS") or DEFAULT_WARN_DAYS),
    )


# -- the running server's state ----------------------------------------------------------------------------
@dataclass
class ServerState:
    """What the lifespan owns; one per process."""

    settings: Settings
    config: ServerConfig
    store: Store
    scheduler: Scheduler
    inbox: WebhookInbox
    clock: Clock = system_clock
    api_token: str = field(default_factory=lambda: secrets.token_urlsafe(32), repr=False)
    started_at: datetime | None = None
    _tickets: dict[str, tuple[str, float]] = field(default_factory=dict, repr=False)
    _states: dict[str, tuple[str, float]] = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __post_init__(self) -> None:
        if self.started_at is None:
            self.started_at = self.clock()

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


class _Borrowed:
    """The server's store for a `with` block that would otherwise close it (the CLI's `with open_store()`)."""

    def __init__(self, store: Store) -> None:
        self._store = store

    def __enter__(self) -> Store:
        return self._store

    def __exit__(self, *exc: object) -> None:
        return None


def borrow_store(db_path: str | Path) -> _Borrowed | None:
    """Inside the server process: its store for this path, not to be closed by the borrower."""
    state = _current
    if state is None or Path(db_path).resolve() != state.store.path.resolve():
        return None
    return _Borrowed(state.store)


# -- the CLI's output, captured per thread while the server runs a command for it ------------------------
class _Routed:
    """sys.stdout/stderr that writes to this thread's capture buffer when there is one, else through."""

    def __init__(self, through: Any, which: str) -> None:
        self._through = through
        self._which = which

    def _target(self) -> Any:
        buffers = getattr(_capture, "buffers", None)
        return buffers[self._which] if buffers else self._through

    def write(self, text: str) -> int:
        return self._target().write(text)

    def flush(self) -> None:
        self._target().flush()

    def isatty(self) -> bool:
        return False if getattr(_capture, "buffers", None) else self._through.isatty()

    def __getattr__(self, name: str) -> Any:  # encoding, fileno, ...: the real stream's
        return getattr(self._through, name)


_capture = threading.local()
_routing_lock = threading.Lock()


@contextmanager
def captured_output() -> Iterator[dict[str, io.StringIO]]:
    """Collect what this thread prints (other threads keep printing to the terminal)."""
    with _routing_lock:
        if not isinstance(sys.stdout, _Routed):
            sys.stdout = _Routed(sys.stdout, "out")
        if not isinstance(sys.stderr, _Routed):
            sys.stderr = _Routed(sys.stderr, "err")
    _capture.buffers = {"out": io.StringIO(), "err": io.StringIO()}
    try:
        yield _capture.buffers
    finally:
        _capture.buffers = None


def run_cli_here(argv: list[str], settings: Settings) -> dict[str, Any]:
    """Run a `synchealth` command inside the server on its store; exit code and output as the CLI gives them."""
    from pipelines import cli
    from pipelines.sync import _realm_lock

    values = {argv[i + 1] for i, a in enumerate(argv[:-1]) if a in ("--db", "--actor")}
    command = next((a for a in argv if not a.startswith("-") and a not in values), None)
    if command in _NOT_FORWARDED:
        return {"exit": 2, "stdout": "", "stderr": f"synchealth: `{command}` is not run through the server\n"}
    # Between cycles, never inside one: the same lock a cycle and a page's retry hold.
    with captured_output() as out, _realm_lock(settings.realm_id):
        try:
            code = cli.main(argv, settings_loader=lambda: settings)
        except SystemExit as exc:  # argparse on bad usage
            code = int(exc.code or 0) if isinstance(exc.code, int) else 2
    return {"exit": code, "stdout": out["out"].getvalue(), "stderr": out["err"].getvalue()}


# -- the file that tells the CLI where the server is ------------------------------------------------------
def server_file(db_path: str | Path) -> Path:
    return Path(f"{db_path}.server.json")


def write_server_file(db_path: str | Path, url: str, token: str) -> Path:
    """Readable by this user only: it holds the local API's token."""
    path = server_file(db_path)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump({"url": url, "token": token, "pid": os.getpid()}, fh)
    os.replace(tmp, path)
    return path


def read_server_file(db_path: str | Path) -> dict[str, Any] | None:
    try:
        info = json.loads(server_file(db_path).read_text())
    except (OSError, ValueError):
        return None
    return info if isinstance(info, dict) and info.get("url") and info.get("token") else None


def remove_server_file(db_path: str | Path) -> None:
    server_file(db_path).unlink(missing_ok=True)


def _forwarded(raw: list[str], command: str, path_arg: str | None) -> list[str]:
    """The argv the server runs: without --db (it uses its own store), with a folder made absolute."""
    out: list[str] = []
    skip = False
    for tok in raw:
        if skip:
            skip = False
            continue
        if tok == "--db":
            skip = True
            continue
        if tok.startswith("--db="):
            continue
        out.append(tok)
    if command == "ingest" and path_arg:
        at = out.index(path_arg, out.index("ingest") + 1)
        out[at] = str(Path(path_arg).resolve())
    return out


def beside_server(raw: list[str], command: str, path_arg: str | None, db_path: Path, err: StoreError) -> int:
    """The store is held by another process: run the command through the server, or say so in one line."""
    info = read_server_file(db_path)
    where = f" on {info['url']}" if info else ""
    if command == "serve" and info is not None:
        print(f"synchealth: a server already holds {db_path}{where}; stop it first", file=sys.stderr)
        return 1
    if info is None or command in _NOT_FORWARDED:
        print(f"synchealth: {err}", file=sys.stderr)
        return 1
    try:
        answer = httpx.post(
            f"{info['url']}/api/cli",
            json={"argv": _forwarded(raw, command, path_arg)},
            headers={"authorization": f"Bearer {info['token']}"},
            timeout=httpx.Timeout(None, connect=5.0),
        )
    except httpx.TransportError:
        print(
            f"synchealth: {db_path} is held by another process and the server{where} does not answer; "
            "stop that process or start `synchealth serve` again",
            file=sys.stderr,
        )
        return 1
    if answer.status_code != 200:
        print(
            f"synchealth: the server{where} holds {db_path} and refused the command (HTTP {answer.status_code}); "
            "use the app, or stop the server first",
            file=sys.stderr,
        )
        return 1
    result = answer.json()
    sys.stdout.write(result.get("stdout", ""))
    sys.stderr.write(result.get("stderr", ""))
    return int(result.get("exit", 1))


# -- `synchealth serve` ------------------------------------------------------------------------------------
def serve(settings: Settings, *, host: str, port: int, interval: float | None = None) -> int:
    """Run the one server (uvicorn serving server:app) until interrupted."""
    import logging

    import uvicorn

    # Our own lines (cycles that failed, refused webhooks, connects) beside uvicorn's; httpx stays quiet.
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    Store(settings.db_path).close()  # held elsewhere: StoreBusyError now, as one line, not a failed startup
    os.environ["SYNCHEALTH_DB"] = str(settings.db_path)
    shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    os.environ.setdefault("SYNCHEALTH_SERVER_URL", f"http://{shown}:{port}")
    if interval is not None:
        os.environ["SYNCHEALTH_CYCLE_SECONDS"] = str(interval)
    uvicorn.run(
        "server:app",
        host=host,
        port=port,
        app_dir=str(ROOT),
        log_level="info",
        timeout_graceful_shutdown=5,
    )
    return 0
