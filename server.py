"""The one server: `st.App` serves the pages (app.py) beside the OAuth, webhook, health and local API routes.

Its lifespan owns the process's one Store, its commands and the scheduler. Run it with `synchealth serve` (or
`uvicorn server:app`); this module is the ASGI entry, app.py stays the Streamlit script it serves.

Routes:
    GET  /oauth/connect?ticket=T   one-time link from the Connection page -> Intuit's authorize URL with a state
    GET  /oauth/callback           checks the state; the connect command exchanges the code and stores the tokens
    POST /webhooks/qbo             verifies intuit-signature, answers at once, the scheduler re-reads later
    GET  /healthz                  ok or degraded; with the local API token, the store, scheduler and connections
    POST /api/command, /api/view   the local API (bearer token from the 0600 server file): commands and reads, JSON
    POST /api/connect              a one-time Connect link for an admin
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import streamlit as st
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

from pipelines.clock import system_clock
from pipelines.commands import Caller
from pipelines.config import load_server_config, load_settings
from pipelines.connection_health import connection_health
from pipelines.fleet.relay import FleetRelay
from pipelines.identity import PermissionDeniedError, load_roles, require, resolve
from pipelines.incidents import configure_log, log_path_for, record_incident
from pipelines.serve import state as serving
from pipelines.serve.remote import remove_server_file, write_server_file
from pipelines.serve.scheduler import Scheduler, SchedulerConfig
from pipelines.serve.webhooks import (
    SIGNATURE_HEADER,
    WebhookBodyTooLargeError,
    WebhookInbox,
    handle_delivery,
    read_body_limited,
    refuse_oversize,
)
from pipelines.store import Store
from pipelines.views.api import read_view
from qbo.oauth import authorize_url

__all__ = ["app", "create_app"]

log = logging.getLogger("synchealth.server")
ROOT = Path(__file__).resolve().parent
_HTTP_TIMEOUT = httpx.Timeout(30.0, connect=10.0)
_API_BODY_LIMIT = 1 << 20  # a command's JSON: names, keys and reasons, never near a megabyte


def _state() -> serving.ServerState:
    state = serving.current()
    if state is None:  # a request before the lifespan finished or after it ended
        raise RuntimeError("the server is not running")
    return state


# -- OAuth -------------------------------------------------------------------------------------------------
async def oauth_connect(request: Request) -> Response:
    state = _state()
    actor = state.redeem_ticket(request.query_params.get("ticket"))
    if actor is None:
        return PlainTextResponse(
            "This connect link is not valid (it works once, for ten minutes). Open the Connection page and "
            "press Connect again, as an admin.",
            status_code=403,
        )
    url = authorize_url(state.settings, state.begin_oauth(actor))
    log.info("OAuth connect started by %s", actor)
    return RedirectResponse(url, status_code=302)


def _exchange(state: serving.ServerState, code: str, realm_id: str, actor: str):
    identity = resolve(actor, load_roles(state.settings.roles_file))
    with httpx.Client(timeout=_HTTP_TIMEOUT) as http:
        caller = Caller(identity, realm_id, state.clock)
        return state.commands.finish_connect(caller, code, realm_id, http=http)


async def oauth_callback(request: Request) -> Response:
    state = _state()
    params = request.query_params
    actor = state.finish_oauth(params.get("state"))
    if actor is None:
        log.warning("OAuth callback refused: unknown or reused state")
        return PlainTextResponse(
            "Refused: this callback does not belong to a connect started here (state mismatch); nothing was stored.",
            status_code=400,
        )
    if params.get("error"):
        return PlainTextResponse(f"QuickBooks did not grant access ({params['error']}).", status_code=400)
    code, realm_id = params.get("code"), params.get("realmId")
    if not code or not realm_id:
        return PlainTextResponse("The callback carried no code or realmId.", status_code=400)
    done = await run_in_threadpool(_exchange, state, code, realm_id, actor)
    if not done.ok:
        return PlainTextResponse(f"QuickBooks refused the connection: {done.message}", status_code=400)
    state.scheduler.request_cycle()  # pull and sync what waited for the connection, now
    return RedirectResponse(f"/connection?connected={realm_id}", status_code=303)


# -- webhooks ----------------------------------------------------------------------------------------------
async def qbo_webhook(request: Request) -> Response:
    """Answer within QBO's 3 s: verify and queue here, re-read the named objects in the scheduler."""
    state = _state()
    try:
        body = await read_body_limited(request)  # refused past MAX_BODY_BYTES before it is held whole
    except WebhookBodyTooLargeError as err:
        status, answer = refuse_oversize(state.inbox, err, state.now())
        log.warning("webhook refused: %s", answer.get("error"))
        return JSONResponse(answer, status_code=status)
    status, answer = handle_delivery(
        state.inbox, state.config.webhook_verifier, body, request.headers.get(SIGNATURE_HEADER), state.now()
    )
    state.scheduler.wake()
    if status == 401:
        log.warning("webhook refused: %s", answer["error"])
    elif answer.get("ignored"):
        log.warning("webhook ignored: %s delivery (acknowledged, nothing re-read)", answer["ignored"])
    return JSONResponse(answer, status_code=status)


# -- health ------------------------------------------------------------------------------------------------
def _health(state: serving.ServerState, detailed: bool) -> tuple[int, dict[str, Any]]:
    store: dict[str, Any] = {}
    realms: list[dict[str, Any]] = []
    try:
        store["schema_version"] = state.store.schema_version
        store["ok"] = True
        check = state.store.audit_check
        store["audit"] = {"ok": check.ok, "problem": check.problem}
        now = state.now()
        for (realm_id,) in state.store.rows("SELECT realm_id FROM qbo_connections ORDER BY 1"):
            h = connection_health(state.store, realm_id, now=now, host=state.settings.api_base_url)
            realms.append(
                {
                    "realm_id": realm_id,
                    "status": h.status,
                    "reason": h.reason,
                    "connected_by": h.connected_by,
                    "access_seconds_left": h.access_seconds_left,
                    "days_to_lapse": h.days_to_lapse,
                    "warnings": [w["reason"] for w in h.warnings],
                }
            )
    except Exception as err:  # the health route reports a broken store; it does not become one more error
        store.update(ok=False, error=f"{type(err).__name__}: {err}")
    scheduler = state.scheduler.status()
    ok = bool(store.get("ok")) and scheduler["running"] and store.get("audit", {}).get("ok", False)
    code = 200 if ok else 503
    if not detailed:  # anyone may ask whether it is up; only the holder of the local API token sees the rest
        return code, {"status": "ok" if ok else "degraded"}
    return code, {
        "status": "ok" if ok else "degraded",
        "started_at": state.started_at.isoformat() if state.started_at else None,
        "store": {"path": str(state.store.path), **store},
        "scheduler": scheduler,
        "last_cycle": scheduler["last_cycle"],
        "last_error": scheduler["last_error"],
        "webhooks": scheduler["webhooks"],
        "connections": realms,
    }


async def healthz(request: Request) -> Response:
    state = _state()
    code, body = await run_in_threadpool(_health, state, _authorized(request, state))
    return JSONResponse(body, status_code=code)


# -- local API ---------------------------------------------------------------------------------------------
def _authorized(request: Request, state: serving.ServerState) -> bool:
    given = request.headers.get("authorization", "").removeprefix("Bearer ").encode()
    return hmac.compare_digest(given, state.api_token.encode())


async def _json_body(request: Request) -> dict[str, Any] | None:
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > _API_BODY_LIMIT:
            return None
    try:
        found = json.loads(body or b"null")
    except (ValueError, RecursionError):
        return None
    return found if isinstance(found, dict) else None


def _run_command(state: serving.ServerState, payload: dict[str, Any]) -> dict[str, Any]:
    identity = resolve(payload.get("actor"), load_roles(state.settings.roles_file))
    caller = Caller(identity, str(payload.get("realm") or state.settings.realm_id), state.clock)
    return state.commands.dispatch(str(payload["command"]), caller, payload.get("params") or {}).to_json()


def _run_view(state: serving.ServerState, payload: dict[str, Any]) -> dict[str, Any]:
    realm = str(payload.get("realm") or state.settings.realm_id)
    try:
        data = read_view(state.store, str(payload["view"]), realm, state.now(), payload.get("params") or {})
    except (LookupError, ValueError) as err:
        return {"error": str(err).strip("'\""), "bad_input": True}
    except Exception as err:
        return {"error": str(record_incident(err, f"the {payload['view']} view"))}
    return {"data": data}


async def api_command(request: Request) -> Response:
    """Run a command for the CLI beside the server: the same commands, the same role checks and audit."""
    state = _state()
    if not _authorized(request, state):
        return JSONResponse({"error": "unauthorized"}, status_code=401)
    payload = await _json_body(request)
    if payload is None or not isinstance(payload.get("command"), str) or not isinstance(payload.get("params", {}),
                                                                                        dict):  # fmt: skip
        return JSONResponse({"error": "expected {command, actor, realm, params}"}, status_code=400)
    return JSONResponse(await run_in_threadpool(_run_command, state, payload))


async def api_view(request: Request) -> Response:
    """A read for the CLI beside the server: answered from the store at once, never behind a cycle."""
    state = _state()
    if not _authorized(request, state):
        return JSONResponse({"error": "unauthorized"}, status_code=401)
    payload = await _json_body(request)
    if payload is None or not isinstance(payload.get("view"), str) or not isinstance(payload.get("params", {}), dict):
        return JSONResponse({"error": "expected {view, realm, params}"}, status_code=400)
    return JSONResponse(await run_in_threadpool(_run_view, state, payload))


async def api_connect(request: Request) -> Response:
    """A one-time /oauth/connect link for an admin (what the Connection page's button opens)."""
    state = _state()
    if not _authorized(request, state):
        return JSONResponse({"error": "unauthorized"}, status_code=401)
    payload = await _json_body(request) or {}
    identity = resolve(payload.get("actor"), load_roles(state.settings.roles_file))
    try:
        require(identity, "connect")
    except PermissionDeniedError as err:
        return JSONResponse({"error": str(err)}, status_code=403)
    return JSONResponse({"url": f"/oauth/connect?ticket={state.connect_ticket(identity.email)}"})


# -- lifespan ----------------------------------------------------------------------------------------------
def _register_local_webhooks(state: serving.ServerState) -> None:
    """Against the local sandbox, ask it to post its webhooks here (real QBO: the Intuit developer portal)."""
    try:
        httpx.post(
            f"{state.settings.qbo_base_url.rstrip('/')}/_sandbox/webhooks",
            json={
                "url": f"{state.config.url}/webhooks/qbo",
                "verifier_token": state.config.webhook_verifier,
                "format": "legacy",
            },
            timeout=5,
        ).raise_for_status()
        log.info("the local sandbox posts its webhooks to %s/webhooks/qbo", state.config.url)
    except httpx.HTTPError as err:
        log.warning("could not register webhooks with the local sandbox (%s); changes arrive by CDC only", err)


def _settings_and_config():
    """What `synchealth serve` built; under a bare `uvicorn server:app`, read here."""
    given = serving.configured()
    if given is not None:
        return given
    settings = load_settings()
    return settings, load_server_config(settings)


@asynccontextmanager
async def lifespan(_app: st.App):
    settings, config = _settings_and_config()
    configure_log(log_path_for(settings.db_path))
    store = Store(settings.store_target)
    if not store.audit_check.ok:
        log.error("the audit log is not intact: %s", store.audit_check.problem)
    clock = system_clock  # the server's one clock: routes, webhooks and the scheduler all read this one
    inbox = WebhookInbox()
    inbox.recall(store, clock())  # a delivery replayed across a restart is still recognised
    scheduler: Scheduler | FleetRelay
    if settings.database_url:  # fleet mode: the workers run the cycles; webhooks go to the shared inbox
        scheduler = FleetRelay(store, settings, inbox, clock=clock)
    else:
        scheduler = Scheduler(
            store,
            settings,
            SchedulerConfig(
                interval=config.interval,
                snapshot_dir=settings.snapshot_dir,
                reconnect_warn_days=config.reconnect_warn_days,
            ),
            inbox=inbox,
            clock=clock,
        )
    state = serving.ServerState(settings, config, store, scheduler, inbox, clock=clock)
    serving.install(state)
    if not settings.database_url:  # the CLI beside an embedded server finds it by this file; in fleet mode it
        write_server_file(settings.db_path, config.url, state.api_token)  # opens the shared store itself
    if settings.qbo_env == "local":
        await asyncio.to_thread(_register_local_webhooks, state)
    scheduler.start()
    where = "the fleet's PostgreSQL store" if settings.database_url else settings.db_path
    log.info("QBO Sync Health serving %s on %s (cycle every %.0f s)", where, config.url, config.interval)
    try:
        yield {"server": state}
    finally:
        # The scheduler ends its step under way first; only then does the store close (no half-written file).
        await asyncio.to_thread(scheduler.stop)
        if not settings.database_url:
            remove_server_file(settings.db_path)
        serving.uninstall(state)
        store.close()
        log.info("QBO Sync Health stopped; the store is closed")


ROUTES = [
    Route("/oauth/connect", oauth_connect, methods=["GET"]),
    Route("/oauth/callback", oauth_callback, methods=["GET"]),
    Route("/webhooks/qbo", qbo_webhook, methods=["POST"]),
    Route("/healthz", healthz, methods=["GET"]),
    Route("/api/command", api_command, methods=["POST"]),
    Route("/api/view", api_view, methods=["POST"]),
    Route("/api/connect", api_connect, methods=["POST"]),
]


def create_app() -> st.App:
    return st.App(str(ROOT / "app.py"), routes=ROUTES, lifespan=lifespan)


app = create_app()
