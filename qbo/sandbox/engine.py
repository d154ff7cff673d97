"""The sandbox: one transport-neutral `handle()` that routes QBO API, OAuth and control requests."""

from __future__ import annotations

import copy
import logging
import re
import threading
import time
import uuid
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

from pipelines.config import DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, DEMO_REALM_ID
from qbo.sandbox import shapes
from qbo.sandbox.api import ApiRequest, RealmApi, classify
from qbo.sandbox.clock import SandboxClock, format_qbo_time
from qbo.sandbox.compute import apply_defaults, finalize, refresh_balances
from qbo.sandbox.control import handle_control
from qbo.sandbox.entities import TRANSACTIONS, canonical
from qbo.sandbox.faults import PRE_COMMIT, FaultPlan
from qbo.sandbox.limits import Limits, RateLimiter
from qbo.sandbox.oauth import ACCOUNTING_SCOPE, BearerFailure, OAuthServer
from qbo.sandbox.response import DELIVER, RESET, TIMEOUT, SandboxError, SandboxResponse, json_response
from qbo.sandbox.store import RealmStore, empty_store, read_company, store_from_company
from qbo.sandbox.transport import SandboxTransport
from qbo.sandbox.webhooks import WebhookDispatcher

__all__ = ["DELIVER", "RESET", "TIMEOUT", "Sandbox", "SandboxError", "SandboxResponse"]

_API_PATH = re.compile(r"/v3/company/([^/]+)(?:/(.*))?")
_OAUTH_PATHS = ("/oauth2/v1/tokens/bearer", "/oauth2/v1/tokens/revoke", "/connect/oauth2")
# Real throttle texts, two spaces after the full stop included (pqb#43, qbruby#338, PHP-SDK#54).
_THROTTLE_DETAIL = "The request limit was reached.  Try again later"
_log = logging.getLogger(__name__)


def _tid() -> str:
    return f"1-{uuid.uuid4().hex[:8]}-{uuid.uuid4().hex[:24]}"


class Sandbox:
    """A local QBO: per-realm companies, OAuth, limits, faults, requestid replay, CDC and webhooks.

    Arguments:
        company: a company file (path or dict) loaded at start and again on `reset()`.
        faults: a fault spec (`kind[@op]=rate,...`) or a FaultPlan; `seed` seeds its draws.
        time_scale: sandbox seconds per real second (token lifetimes, rate windows, CDC look-back).
        limits: QBO's rate limits (ref §4).
        throttle_format: "xml", as real throttles come even to Accept: application/json (pqb#43, PHP-SDK#54), or
            "json" (the gateway shape); `throttle_status` 429, or 403 as QBO answered in 2016 (qbruby#338).
        retry_after_seconds: send `Retry-After` on 429s (unconfirmed in QBO, so off by default).
        timeout_hold_seconds: how long the HTTP server holds a response to make a client time out.
        latency_seconds: real seconds every admitted API request takes (to make concurrency visible).
        refresh_rotate_after_seconds: sandbox seconds before a refresh returns a new refresh token.
        webhook_client: the httpx.Client webhooks are posted with (tests pass a mock transport).
    """

    def __init__(
        self,
        company: str | Path | dict[str, Any] | None = None,
        *,
        faults: str | FaultPlan | None = None,
        seed: int = 0,
        time_scale: float = 1.0,
        clock: SandboxClock | None = None,
        clients: Mapping[str, str] | None = None,
        limits: Limits | None = None,
        throttle_format: str = "xml",
        throttle_status: int = 429,
        retry_after_seconds: int | None = None,
        timeout_hold_seconds: float = 30.0,
        latency_seconds: float = 0.0,
        refresh_rotate_after_seconds: float = 0.0,
        webhook_client: httpx.Client | None = None,
    ) -> None:
        if throttle_format not in ("json", "xml"):
            raise ValueError("throttle_format must be json or xml")
        if throttle_status not in (429, 403):
            raise ValueError("throttle_status must be 429 or 403")
        self.clock = clock or SandboxClock(time_scale)
        self.throttle_format = throttle_format
        self.throttle_status = throttle_status
        self.retry_after_seconds = retry_after_seconds
        self.timeout_hold_seconds = timeout_hold_seconds
        self.latency_seconds = latency_seconds
        self.oauth = OAuthServer(
            self.clock, dict(clients or {DEMO_CLIENT_ID: DEMO_CLIENT_SECRET}), refresh_rotate_after_seconds
        )
        self.limiter = RateLimiter(limits)
        self.webhooks = WebhookDispatcher(webhook_client)
        self.errors: list[str] = []  # sandbox bugs turned into 500s; tests assert there are none
        self.request_log: deque[dict[str, Any]] = deque(maxlen=5000)
        self._lock = threading.RLock()
        try:
            self._startup_company = read_company(company) if company is not None else None
        except (OSError, ValueError) as exc:
            raise SandboxError(f"cannot load the company: {exc}") from None
        self._startup_faults = faults if isinstance(faults, FaultPlan) else FaultPlan.parse(faults, seed)
        self.faults = self._startup_faults
        self._realms: dict[str, RealmStore] = {}
        self.default_realm = DEMO_REALM_ID
        self.reset()

    def reset(self) -> None:
        """Back to the state right after start: the startup company, no tokens, fresh counters and faults."""
        with self._lock:
            self._realms.clear()
            self.default_realm = DEMO_REALM_ID
            self.oauth.reset()
            self.limiter.reset()
            self.webhooks.clear()
            self.request_log.clear()
            plan = self._startup_faults
            self.faults = FaultPlan(plan.rules, plan.seed)
            if self._startup_company is not None:
                self.load_company(self._startup_company)

    def close(self) -> None:
        self.webhooks.close()

    def load_company(self, source: str | Path | dict[str, Any]) -> str:
        """Load (or replace) one realm from a company file or dict; returns its realm id."""
        try:
            doc = read_company(source)
            store = store_from_company(doc, self.clock.now())
        except (OSError, ValueError) as exc:
            raise SandboxError(f"cannot load the company: {exc}") from None
        with self._lock:
            self._realms[store.realm_id] = store
            self.default_realm = store.realm_id
        return store.realm_id

    @property
    def realm_ids(self) -> list[str]:
        with self._lock:
            return list(self._realms)

    def realm(self, realm_id: str) -> RealmStore:
        """The realm's store, created empty when nobody loaded it."""
        with self._lock:
            store = self._realms.get(realm_id)
            if store is None:
                store = self._realms[realm_id] = empty_store(realm_id, self.clock.now())
            return store

    def set_faults(self, spec: str | None, seed: int | None = None) -> None:
        """Replace the fault plan (None or "" clears it); raises SandboxError for a bad spec."""
        try:
            plan = FaultPlan.parse(spec, self.faults.seed if seed is None else seed)
        except ValueError as exc:
            raise SandboxError(str(exc)) from None
        with self._lock:
            self.faults = plan

    def issue_tokens(
        self, realm: str | None = None, scope: str = ACCOUNTING_SCOPE, client_id: str = DEMO_CLIENT_ID
    ) -> dict[str, Any]:
        """A token response as the token endpoint would give after a connect, without the round trip."""
        with self._lock:
            realm_id = realm or self.default_realm
            self.realm(realm_id)
            return self.oauth.issue(client_id, realm_id, tuple(scope.split()))

    def expire_tokens(self, realm: str, *, refresh: bool = False) -> dict[str, int]:
        with self._lock:
            expired = self.oauth.expire_access(realm)
            revoked = self.oauth.revoke_realm(realm) if refresh else 0
        return {"access_tokens_expired": expired, "grants_revoked": revoked}

    def user_left(self, realm: str) -> dict[str, int]:
        """The QBO user who connected `realm` leaves the company: its refreshes now answer the real invalid_grant
        with x_error_reason user_not_in_realm."""
        with self._lock:
            return {"grants": self.oauth.user_left(realm)}

    def configure_webhooks(self, url: str, verifier_token: str, fmt: str = "legacy") -> None:
        try:
            self.webhooks.configure(url, verifier_token, fmt)
        except ValueError as exc:
            raise SandboxError(str(exc)) from None

    def flush_webhooks(self, timeout: float = 5.0) -> bool:
        return self.webhooks.flush(timeout)

    def stats(self) -> dict[str, Any]:
        with self._lock:
            stats = self.limiter.stats()
            stats["faults"] = self.faults.describe()
            stats["requests_logged"] = len(self.request_log)
            return stats

    def entities(self, realm: str, entity: str) -> list[dict[str, Any]]:
        """Every object of an entity, inactive and deleted included (deleted ones: `status: Deleted`)."""
        name = self._entity(entity)
        with self._lock:
            return self._known(realm).every(name)

    def user_create(self, realm: str, entity: str, obj: dict[str, Any]) -> dict[str, Any]:
        """Add an object as a QBO user would (no API rules), e.g. a vendor someone typed in by hand."""
        name = self._entity(entity)
        with self._lock:
            store, now = self._known(realm), self.clock.now()
            new = {k: v for k, v in copy.deepcopy(obj).items() if k not in ("Id", "SyncToken", "MetaData")}
            apply_defaults(store, name, new, today=now.date(), creating=True)
            new = {"Id": store.new_id(name), **new}
            finalize(store, name, new, now=now, existing=None)
            store.save(name, new, now)
            refresh_balances(store, name, None, new, now)
            self.webhooks.emit(realm, name, new["Id"], "Create", now)
            return copy.deepcopy(new)

    def user_patch(self, realm: str, entity: str, obj_id: str, patch: dict[str, Any]) -> dict[str, Any]:
        """Change an object as a QBO user would: sparse, bumps SyncToken, shows in CDC, fires a webhook."""
        name = self._entity(entity)
        with self._lock:
            store, now = self._known(realm), self.clock.now()
            existing = self._user_target(store, name, obj_id)
            updated = copy.deepcopy(existing)
            updated.update({k: copy.deepcopy(v) for k, v in patch.items() if k not in ("Id", "SyncToken")})
            finalize(store, name, updated, now=now, existing=existing)
            store.save(name, updated, now)
            refresh_balances(store, name, existing, updated, now)
            self.webhooks.emit(realm, name, obj_id, "Update", now)
            return copy.deepcopy(updated)

    def user_delete(self, realm: str, entity: str, obj_id: str) -> None:
        """Delete a transaction as a QBO user would; name lists cannot be deleted (ref §5)."""
        name = self._entity(entity)
        if name not in TRANSACTIONS:
            raise SandboxError(f"{name} is a name list: make it inactive instead of deleting it")
        with self._lock:
            store, now = self._known(realm), self.clock.now()
            existing = self._user_target(store, name, obj_id)
            store.delete(name, str(obj_id), now)
            refresh_balances(store, name, existing, None, now)
            self.webhooks.emit(realm, name, str(obj_id), "Delete", now)

    def _known(self, realm: str) -> RealmStore:
        store = self._realms.get(realm)
        if store is None:
            raise SandboxError(f"no company for realm {realm}", 404)
        return store

    @staticmethod
    def _entity(entity: str) -> str:
        name = canonical(entity)
        if name is None:
            raise SandboxError(f"unknown entity {entity!r}", 404)
        return name

    @staticmethod
    def _user_target(store: RealmStore, entity: str, obj_id: str) -> dict[str, Any]:
        existing = store.get(entity, str(obj_id))
        if existing is None or store.is_deleted(entity, str(obj_id)):
            raise SandboxError(f"no live {entity} with Id {obj_id}", 404)
        return existing

    def transport(self) -> httpx.BaseTransport:
        """An httpx transport serving this sandbox in-process (for `httpx.Client(transport=...)`)."""
        return SandboxTransport(self)

    def handle(
        self,
        method: str,
        path: str,
        query: Mapping[str, str] | Iterable[tuple[str, str]] | None = None,
        headers: Mapping[str, str] | None = None,
        body: bytes = b"",
    ) -> SandboxResponse:
        """Answer one HTTP request. Thread-safe; the adapters act on the returned `action`."""
        pairs = list(query.items()) if isinstance(query, Mapping) else list(query or [])
        params: dict[str, str] = {}
        for key, value in pairs:
            params.setdefault(str(key), str(value))  # the first value wins, as most servers do
        lowered = {str(k).lower(): str(v) for k, v in (headers or {}).items()}
        method = method.upper()
        if path == "/_sandbox" or path.startswith("/_sandbox/"):
            response = handle_control(self, method, path, params, body)
        elif path in _OAUTH_PATHS:
            response = self._oauth(method, path, params, lowered, body)
        elif _API_PATH.fullmatch(path):
            response = self._api(method, path, params, lowered, body)
        else:
            # Outside the API and OAuth paths QBO's front end answers with its web server's HTML page.
            response = SandboxResponse(404, {"content-type": "text/html; charset=iso-8859-1"}, shapes.html_404(path))
        response.headers.setdefault("intuit_tid", _tid())
        return response

    def _oauth(
        self, method: str, path: str, params: dict[str, str], headers: dict[str, str], body: bytes
    ) -> SandboxResponse:
        with self._lock:
            if path == "/connect/oauth2" and method == "GET":
                realm = params.get("realm") or self.default_realm
                reply = self.oauth.authorize(params, realm)
                if reply.status == 302:
                    self.realm(realm)
            elif path == "/oauth2/v1/tokens/bearer" and method == "POST":
                reply = self.oauth.token(headers, body)
            elif path == "/oauth2/v1/tokens/revoke" and method == "POST":
                reply = self.oauth.revoke(headers, body)
            else:
                return json_response(405, {"error": "method not allowed"})
        return SandboxResponse(reply.status, dict(reply.headers), reply.body)

    def _api(
        self, method: str, path: str, params: dict[str, str], headers: dict[str, str], body: bytes
    ) -> SandboxResponse:
        match = _API_PATH.fullmatch(path)
        assert match is not None
        realm_id = match.group(1)
        request = ApiRequest(method, (match.group(2) or "").split("/"), params, body)
        operation = classify(request)
        entry = {
            "realm": realm_id,
            "method": method,
            "path": path,
            "operation": operation,
            "requestid": params.get("requestid"),
            "minorversion": params.get("minorversion"),
            "query": params.get("query"),  # what a query asked for (tests read which objects a pull named)
        }
        # Auth and limits come first, as at QBO's gateway; refused requests use no fault draw.
        with self._lock:
            entry["time"] = format_qbo_time(self.clock.now())
            denied = self.oauth.check_bearer(headers, realm_id)
            if denied is not None:
                return self._logged(entry, self._gateway(denied), "auth")
            reason = self.limiter.admit(realm_id, self.clock.seconds(), batch=operation == "batch")
            if reason is not None:
                throttled = self._throttled(xml=self.throttle_format == "xml", status=self.throttle_status)
                return self._logged(entry, throttled, f"limit:{reason}")
        try:
            if self.latency_seconds:
                time.sleep(self.latency_seconds)
            with self._lock:
                return self._admitted(realm_id, request, operation, entry)
        finally:
            with self._lock:
                self.limiter.release(realm_id)

    def _admitted(self, realm_id: str, request: ApiRequest, operation: str, entry: dict[str, Any]) -> SandboxResponse:
        fault = self.faults.draw(operation)
        if fault in PRE_COMMIT:
            return self._logged(entry, self._injected(fault), f"fault:{fault}")
        store = self.realm(realm_id)
        request_id = request.params.get("requestid")
        if request_id is not None:
            limit = 36 if operation == "batch" else 50  # ref §1
            if len(request_id) > limit:
                fault_obj = shapes.bad_request(f"requestid is longer than {limit} characters", "requestid")
                return self._logged(entry, self._fault_response(fault_obj), "rejected")
            original = store.replies.get(request_id)
            if original is not None:
                # A repeat returns the original response and does nothing else (ref §1, B-reqid).
                replay = replace(original, headers={k: v for k, v in original.headers.items() if k != "intuit_tid"})
                if fault == "timeout_after_commit":
                    replay.action = TIMEOUT
                return self._logged(entry, replay, "replay" + (f",fault:{fault}" if fault else ""))
        response = self._run(store, request)
        if request_id is not None:
            store.replies[request_id] = replace(response, headers=dict(response.headers))
        if fault == "timeout_after_commit":
            response.action = TIMEOUT
        elif fault == "try_again_6000" and response.status == 200:
            # Saved, and answered with the 6000 that asks to try again: what a client that resends blindly turns
            # into a duplicate. A repeat of the requestid replays the saved answer.
            response = self._fault_response(shapes.try_again())
        return self._logged(entry, response, f"fault:{fault}" if fault else None)

    def _run(self, store: RealmStore, request: ApiRequest) -> SandboxResponse:
        now = self.clock.now()
        realm = store.realm_id

        def notify(entity: str, obj_id: str, operation: str, when: datetime) -> None:
            self.webhooks.emit(realm, entity, obj_id, operation, when)

        api = RealmApi(store, now, now.date(), notify)
        try:
            return json_response(200, api.execute(request))
        except shapes.QboFault as fault:
            return self._fault_response(fault)
        except Exception as exc:  # a sandbox bug: answer like a failing QBO, and remember it for tests
            _log.exception("sandbox error on %s %s", request.method, request.segments)
            self.errors.append(f"{type(exc).__name__}: {exc}")
            return self._fault_response(shapes.system_failure())
        finally:
            store.hidden.clear()

    def _fault_response(self, fault: shapes.QboFault) -> SandboxResponse:
        return json_response(fault.status, shapes.standard_fault(fault, format_qbo_time(self.clock.now())))

    def _epoch_ms(self) -> int:
        return int(self.clock.now().timestamp() * 1000)

    def _gateway(self, failure: BearerFailure) -> SandboxResponse:
        payload = shapes.gateway_fault(
            failure.status, failure.code, failure.name, failure.detail, failure.fault_type, self._epoch_ms()
        )
        return json_response(failure.status, payload)

    def _throttled(self, *, xml: bool, status: int = 429) -> SandboxResponse:
        headers = {}
        if self.retry_after_seconds is not None:
            headers["retry-after"] = str(self.retry_after_seconds)
        message = f"message=ThrottleExceeded; errorCode=003001; statusCode={status}"
        if xml:
            # Every real throttle in the corpus is XML, although JSON was asked for (pqb#43, PHP-SDK#54).
            body = shapes.xml_fault("3001", message, _THROTTLE_DETAIL, "SERVICE", format_qbo_time(self.clock.now()))
            return SandboxResponse(status, {"content-type": "application/xml", **headers}, body)
        epoch_ms = self._epoch_ms()
        payload = shapes.gateway_fault(status, "3001", "ThrottleExceeded", _THROTTLE_DETAIL, "SERVICE", epoch_ms)
        return json_response(status, payload, headers)

    def _injected(self, kind: str) -> SandboxResponse:
        if kind == "timeout_before_commit":
            return SandboxResponse(504, {"content-type": "text/plain"}, b"upstream timed out", TIMEOUT)
        if kind == "connection_reset":
            return SandboxResponse(502, {}, b"", RESET)
        if kind == "http_500":
            return self._fault_response(shapes.system_failure())
        if kind == "http_503_html":
            return SandboxResponse(503, {"content-type": "text/html"}, shapes.html_503())
        if kind == "throttle_429_xml":
            return self._throttled(xml=True)
        if kind == "throttle_403_xml":
            return self._throttled(xml=True, status=403)
        if kind == "auth_401":
            return self._gateway(BearerFailure(401, "3200", "AuthenticationFailed", "Token expired", "AUTHENTICATION"))
        raise AssertionError(kind)

    def _logged(self, entry: dict[str, Any], response: SandboxResponse, note: str | None) -> SandboxResponse:
        entry.update(status=response.status, action=response.action, note=note)
        self.request_log.append(entry)
        return response
