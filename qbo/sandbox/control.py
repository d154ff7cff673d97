"""The control API under `/_sandbox/` (not part of QBO): never faulted, never rate limited, no auth."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from qbo.sandbox.clock import format_qbo_time
from qbo.sandbox.response import SandboxError, SandboxResponse, json_response
from qbo.sandbox.wire import loads

if TYPE_CHECKING:
    from qbo.sandbox.engine import Sandbox

__all__ = ["CONTROL_ROUTES", "handle_control"]

# (method, path pattern, what it does); the list doubles as documentation (GET /_sandbox/ returns it).
CONTROL_ROUTES = (
    ("GET", "/_sandbox/", "this list"),
    ("POST", "/_sandbox/reset", "back to the startup company; tokens, counters and faults reset"),
    ("POST", "/_sandbox/load", 'load a company file: its JSON, or {"path": ...}'),
    ("GET", "/_sandbox/faults", "the fault plan and what it injected"),
    ("POST", "/_sandbox/faults", '{"spec": "http_500=0.1,...", "seed": N}, or {} to clear'),
    ("GET", "/_sandbox/clock", "sandbox time and scale"),
    ("POST", "/_sandbox/clock/advance", '{"seconds": N}'),
    ("GET", "/_sandbox/stats", "requests per realm and window, max concurrency, over-limit count"),
    ("GET", "/_sandbox/log", "recent API requests (?limit=N)"),
    ("POST", "/_sandbox/webhooks", '{"url", "verifier_token", "format": legacy|cloudevents}, or {}'),
    ("POST", "/_sandbox/tokens", '{"realm", "scope"}: a token response without the OAuth round trip'),
    ("POST", "/_sandbox/{realm}/tokens/expire", 'access tokens expire now; {"refresh": true} revokes too'),
    ("POST", "/_sandbox/{realm}/user-left", "the user who connected leaves the company: refreshes fail"),
    ("GET", "/_sandbox/{realm}/entities/{Entity}", "every object, inactive and deleted included"),
    ("POST", "/_sandbox/{realm}/entities/{Entity}", "create an object as a QBO user"),
    ("POST", "/_sandbox/{realm}/entities/{Entity}/{Id}", "sparse-patch an object as a QBO user"),
    ("DELETE", "/_sandbox/{realm}/entities/{Entity}/{Id}", "delete a transaction as a QBO user"),
)
_REALM_ROUTE = re.compile(r"/_sandbox/([^/]+)/(tokens/expire|user-left|entities/([^/]+)(?:/([^/]+))?)")


def handle_control(sandbox: Sandbox, method: str, path: str, params: dict[str, str], body: bytes) -> SandboxResponse:
    """Answer one control request; a bad one gets 400 or 404 with `{"error": ...}`."""
    try:
        payload = _body(body)
        status, result = _route(sandbox, method, path.rstrip("/") or "/", params, payload)
    except SandboxError as exc:
        status, result = exc.status, {"error": str(exc)}
    except (TypeError, ValueError) as exc:  # e.g. a seed or limit that is not a number
        status, result = 400, {"error": f"bad control request: {exc}"}
    return json_response(status, result)


def _body(body: bytes) -> dict[str, Any]:
    if not body.strip():
        return {}
    try:
        value = loads(body)
    except ValueError as exc:
        raise SandboxError(f"the body is not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise SandboxError("the body must be a JSON object")
    return value


def _clock(sandbox: Sandbox) -> dict[str, Any]:
    return {
        "now": format_qbo_time(sandbox.clock.now()),
        "seconds": sandbox.clock.seconds(),
        "time_scale": sandbox.clock.time_scale,
    }


def _route(
    sandbox: Sandbox, method: str, path: str, params: dict[str, str], payload: dict[str, Any]
) -> tuple[int, Any]:
    key = (method, path)
    if key == ("GET", "/_sandbox"):
        return 200, [{"method": m, "path": p, "does": d} for m, p, d in CONTROL_ROUTES]
    if key == ("POST", "/_sandbox/reset"):
        sandbox.reset()
        return 200, {"realms": sandbox.realm_ids}
    if key == ("POST", "/_sandbox/load"):
        source = payload["path"] if set(payload) == {"path"} else payload
        return 200, {"realm_id": sandbox.load_company(source)}
    if key == ("GET", "/_sandbox/faults"):
        return 200, sandbox.faults.describe()
    if key == ("POST", "/_sandbox/faults"):
        seed = payload.get("seed")
        sandbox.set_faults(payload.get("spec"), int(seed) if seed is not None else None)
        return 200, sandbox.faults.describe()
    if key == ("GET", "/_sandbox/clock"):
        return 200, _clock(sandbox)
    if key == ("POST", "/_sandbox/clock/advance"):
        try:
            sandbox.clock.advance(float(payload.get("seconds", 0)))
        except (TypeError, ValueError) as exc:
            raise SandboxError(f"cannot advance the clock: {exc}") from None
        return 200, _clock(sandbox)
    if key == ("GET", "/_sandbox/stats"):
        return 200, sandbox.stats()
    if key == ("GET", "/_sandbox/log"):
        limit = int(params.get("limit", "100"))
        return 200, list(sandbox.request_log)[-limit:]
    if key == ("POST", "/_sandbox/webhooks"):
        if not payload:
            sandbox.webhooks.clear()
            return 200, {"configured": False}
        sandbox.configure_webhooks(
            str(payload.get("url") or ""),
            str(payload.get("verifier_token") or ""),
            str(payload.get("format", "legacy")),
        )
        return 200, {"configured": True, "format": payload.get("format", "legacy")}
    if key == ("POST", "/_sandbox/tokens"):
        scope = str(payload.get("scope") or "com.intuit.quickbooks.accounting")
        return 200, sandbox.issue_tokens(payload.get("realm"), scope)
    match = _REALM_ROUTE.fullmatch(path)
    if match is None:
        raise SandboxError(f"no control route {method} {path}", 404)
    realm, action, entity, obj_id = match.groups()
    if action == "tokens/expire" and method == "POST":
        return 200, sandbox.expire_tokens(realm, refresh=bool(payload.get("refresh")))
    if action == "user-left" and method == "POST":
        return 200, sandbox.user_left(realm)
    if entity is not None and obj_id is None:
        if method == "GET":
            return 200, sandbox.entities(realm, entity)
        if method == "POST":
            return 200, sandbox.user_create(realm, entity, payload)
    if entity is not None and obj_id is not None:
        if method == "POST":
            return 200, sandbox.user_patch(realm, entity, obj_id, payload)
        if method == "DELETE":
            sandbox.user_delete(realm, entity, obj_id)
            return 200, {"Id": obj_id, "status": "Deleted"}
    raise SandboxError(f"no control route {method} {path}", 404)
