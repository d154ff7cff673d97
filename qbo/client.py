"""The QBO v3 client for one realm: calls with auth, limits and the few safe retries, each turned into a QboResult."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

import httpx

from qbo.batch import (
    BATCH_MAX_ITEMS,
    BATCH_REQUEST_ID_MAX,
    BatchItem,
    check_bids,
    chunk_request_id,
    each_item,
    item_results,
)
from qbo.cdc import (
    CDC_MAX_LOOKBACK,
    CDC_MAX_OBJECTS,
    NO_CDC,
    CdcWindowError,
    cdc_objects,
    is_deleted,
    merge,
    ordered,
    updated_at,
)
from qbo.faults import ACCEPTED, ALREADY_DELETED, Outcome, classify, outcome_for
from qbo.ids import OBJECT_ID, REQUEST_ID_MAX, check_object_id, check_request_id
from qbo.limiter import THROTTLE_DEFAULT_WAIT, HeldTooLongError, Limiter, RateLimiter, retry_after
from qbo.oauth import OAuthClient, OAuthError, OAuthSettings, transport_error_kind
from qbo.query import (
    KNOWN_ENTITIES,
    NAME_LISTS,
    PAGE_SIZE,
    Select,
    entity_name,
    escape_literal,
    has_paging,
    is_count_query,
    quote_literal,
    select,
    select_count,
)
from qbo.results import QboCallError, QboResult, fault_result, malformed, redact, redact_fault
from qbo.tokens import Secret, TokenStore
from qbo.wire import Fault, FaultError, Parsed, dumps, entity_object, parse_body, xml_batch

# The client itself, and what callers imported from here before the client was split by concern.
__all__ = [
    "BATCH_MAX_ITEMS",
    "CDC_MAX_LOOKBACK",
    "CDC_MAX_OBJECTS",
    "KNOWN_ENTITIES",
    "MINOR_VERSION",
    "NAME_LISTS",
    "PAGE_SIZE",
    "BatchItem",
    "CdcWindowError",
    "Fault",
    "FaultError",
    "Parsed",
    "QboCallError",
    "QboClient",
    "QboResult",
    "RateLimiter",
    "Select",
    "escape_literal",
    "parse_body",
    "quote_literal",
    "select",
    "select_count",
]

log = logging.getLogger(__name__)

MINOR_VERSION = "75"  # below 75, or none, is served as 75 anyway since 2025-08 (ref §1)


# The client
@dataclass(frozen=True)
class _Request:
    operation: str
    entity: str | None
    method: str
    path: str
    params: dict[str, str]
    body: bytes | None = None
    content_type: str | None = None
    request_id: str | None = None
    write: bool = False
    batch: bool = False


class QboClient:
    """One realm's QBO v3 API. Every call returns a QboResult (or list/dict of them) or raises QboCallError.

    Args:
        settings_like: has api_base_url, qbo_env, qbo_client_id, qbo_client_secret, qbo_redirect_uri.
        token_store: where the realm's encrypted tokens live.
        realm_id: the company.
        http: the transport seam; build it once at the edge (`httpx.Client(timeout=...)`).
        clock, sleep: injected so tests are exact (a 60 s throttle wait does not really sleep).
        limiter: share one RateLimiter per realm between clients; a private one is made when None.
    """

    def __init__(
        self,
        settings_like: OAuthSettings,
        token_store: TokenStore,
        realm_id: str,
        *,
        http: httpx.Client,
        clock: Callable[[], datetime],
        sleep: Callable[[float], None] = time.sleep,
        limiter: Limiter | None = None,
        read_retries: int = 2,
        max_throttle_waits: int = 5,
    ) -> None:
        if not OBJECT_ID.match(realm_id):
            raise ValueError("realm id must be 1-64 letters, digits, '-' or '_'")
        self.realm_id = realm_id
        self._http = http
        self._clock, self._sleep = clock, sleep
        self._oauth = OAuthClient(settings_like, token_store, http=http, clock=clock)
        self._limiter: Limiter = limiter or RateLimiter(clock=clock, sleep=sleep)
        self._base = f"{settings_like.api_base_url.rstrip('/')}/v3/company/{realm_id}"
        self._read_retries = read_retries
        self._max_throttle_waits = max_throttle_waits

    def __repr__(self) -> str:
        return f"QboClient(realm_id={self.realm_id!r}, base={self._base!r})"

    @property
    def oauth(self) -> OAuthClient:
        return self._oauth

    # entity calls
    def create(
        self, entity: str, body: Mapping[str, Any], *, request_id: str, allow_duplicate_docnum: bool = False
    ) -> QboResult:
        """POST /{entity} with the caller's requestid: a repeat returns the original answer (ref §1)."""
        name = entity_name(entity)
        params = {"include": "allowduplicatedocnum"} if allow_duplicate_docnum else {}  # ref §10
        return self._entity_call("create", name, "POST", name.lower(), body, request_id, params)

    def update(self, entity: str, body: Mapping[str, Any], *, request_id: str, sparse: bool = True) -> QboResult:
        """Update by Id and SyncToken; sparse by default: a full update wipes omitted fields (ref §11.11)."""
        if not body.get("Id") or body.get("SyncToken") in (None, ""):
            raise ValueError("an update needs the object's Id and SyncToken (read it first)")
        payload = {**body, "sparse": True} if sparse else {**body, "sparse": False}
        name = entity_name(entity)
        return self._entity_call("update", name, "POST", name.lower(), payload, request_id, {})

    def delete(self, entity: str, id: str, sync_token: str, request_id: str) -> QboResult:
        """Delete a transaction (name lists cannot be deleted: set Active false instead, ref §5)."""
        name = entity_name(entity)
        if name in NAME_LISTS:
            raise ValueError(f"{name} cannot be deleted in QBO; update it with Active false (ref §5)")
        body = {"Id": check_object_id(id), "SyncToken": str(sync_token)}
        return self._entity_call("delete", name, "POST", name.lower(), body, request_id, {"operation": "delete"})

    def read(self, entity: str, id: str) -> QboResult:
        name = entity_name(entity)
        req = _Request("read", name, "GET", f"{name.lower()}/{check_object_id(id)}", {})
        return self._unwrap(self._call(req), name, req)

    def company_info(self) -> QboResult:
        req = _Request("read", "CompanyInfo", "GET", f"companyinfo/{self.realm_id}", {})
        return self._unwrap(self._call(req), "CompanyInfo", req)

    def preferences(self) -> QboResult:
        req = _Request("read", "Preferences", "GET", "preferences", {})
        return self._unwrap(self._call(req), "Preferences", req)

    def _entity_call(
        self,
        op: str,
        name: str,
        method: str,
        path: str,
        body: Mapping[str, Any],
        request_id: str,
        params: dict[str, str],
    ) -> QboResult:
        rid = check_request_id(request_id, REQUEST_ID_MAX)
        req = _Request(
            op,
            name,
            method,
            path,
            {**params, "requestid": rid},
            dumps(body),
            "application/json",
            rid,
            write=True,
        )
        return self._unwrap(self._call(req), name, req)

    def _unwrap(self, result: QboResult, name: str, req: _Request) -> QboResult:
        if not result.ok:
            raise QboCallError(result)
        if result.outcome is ALREADY_DELETED:  # a 610 to a delete: done, and there is no object to return
            return result
        obj = entity_object(result.data, name, needs_id=req.operation in ("create", "update"))
        if obj is None:  # a 2xx that does not name the object: a write may or may not have landed
            raise QboCallError(malformed(result, req.write))
        return replace(result, data=obj)

    # queries
    def query(self, sql: str | Select) -> list[dict[str, Any]]:
        """Run a query, paging by 1000 (STARTPOSITION/MAXRESULTS) to a short page, unless sql pages itself."""
        text = str(sql)
        if is_count_query(text):
            raise ValueError("use count() for count(*) queries")
        if has_paging(text):
            rows = self._query_page(text)
            return [r for r in rows if sql.keeps(r)] if isinstance(sql, Select) else rows
        return [row for page in self.query_pages(sql) for row in page]

    def query_pages(self, sql: str | Select) -> Iterator[list[dict[str, Any]]]:
        """The rows of a query one page of 1000 at a time, so a caller never has to hold an entity whole."""
        text = str(sql)
        if is_count_query(text) or has_paging(text):
            raise ValueError("query_pages pages the query itself: give it one without count(*) or STARTPOSITION")
        start = 1
        while True:
            page = self._query_page(f"{text} STARTPOSITION {start} MAXRESULTS {PAGE_SIZE}")
            yield [r for r in page if sql.keeps(r)] if isinstance(sql, Select) else page
            if len(page) < PAGE_SIZE:
                return
            start += PAGE_SIZE

    def query_all(
        self,
        entity: str,
        where: Mapping[str, Any] | Sequence[tuple[str, str, Any]] | None = None,
        include_inactive: bool = False,
    ) -> list[dict[str, Any]]:
        """Every row of an entity (paged, ordered by Id so pages do not shift), optionally filtered."""
        return self.query(self._select(select(entity), where, include_inactive).order_by("Id"))

    def query_all_pages(
        self,
        entity: str,
        where: Mapping[str, Any] | Sequence[tuple[str, str, Any]] | None = None,
        include_inactive: bool = False,
    ) -> Iterator[list[dict[str, Any]]]:
        """`query_all` a page at a time: what a full pull of a large company streams into the store."""
        return self.query_pages(self._select(select(entity), where, include_inactive).order_by("Id"))

    def count(
        self,
        entity: str,
        where: Mapping[str, Any] | Sequence[tuple[str, str, Any]] | None = None,
        include_inactive: bool = False,
    ) -> int:
        """`SELECT count(*)`: how many rows match, without fetching them."""
        query = self._select(select_count(entity), where, include_inactive)
        if query.exact:  # part of the test runs locally, so the rows have to come back
            return len(self.query(replace(query, count_only=False)))
        result = self._call(_Request("query", query.entity, "GET", "query", {"query": query.sql()}))
        if not result.ok:
            raise QboCallError(result)
        total = _query_response(result).get("totalCount", 0)
        if isinstance(total, bool) or not isinstance(total, int) or total < 0:
            raise QboCallError(malformed(result, False))
        return total

    @staticmethod
    def _select(
        base: Select, where: Mapping[str, Any] | Sequence[tuple[str, str, Any]] | None, include_inactive: bool
    ) -> Select:
        conditions = where.items() if isinstance(where, Mapping) else where or ()
        for item in conditions:
            base = base.where(item[0], "=", item[1]) if len(item) == 2 else base.where(*item)
        if include_inactive:
            if base.entity not in NAME_LISTS:
                raise ValueError(f"{base.entity} has no Active flag; include_inactive is for name lists")
            base = base.include_inactive()
        return base

    def _query_page(self, sql: str) -> list[dict[str, Any]]:
        result = self._call(_Request("query", None, "GET", "query", {"query": sql}))
        if not result.ok:
            raise QboCallError(result)
        # With no matches the entity key is absent (ref §6).
        rows = next((v for v in _query_response(result).values() if isinstance(v, list)), [])
        if not all(isinstance(r, dict) for r in rows):
            raise QboCallError(malformed(result, False))
        return rows

    # change data capture
    def cdc(
        self, entities: Sequence[str], since: datetime, until: datetime | None = None
    ) -> dict[str, list[dict[str, Any]]]:
        """Every object of `entities` changed since `since` (deleted ones carry status "Deleted").

        One call when under the 1000-object cap (ref §7). Over it, the window is split at the newest
        change received and the rest fetched from there, then each entity is checked against a count
        query and completed with a paged query if anything is missing, so no change is lost silently.
        Objects are deduplicated by Id (the newest wins; deleted is final). With `until`, changes at or
        after it are left to the next window.
        """
        names = [entity_name(e) for e in entities]
        if not names:
            raise ValueError("cdc needs at least one entity")
        if bad := [n for n in names if n in NO_CDC]:
            raise ValueError(f"CDC does not cover {', '.join(bad)} (ref §7); query them instead")
        now = self._clock()
        if since.tzinfo is None or (until is not None and until.tzinfo is None):
            raise ValueError("cdc times need a time zone")
        if since < now - CDC_MAX_LOOKBACK:
            raise CdcWindowError(
                f"CDC looks back at most 30 days (ref §7); {since.isoformat()} is older: run a full query"
            )
        merged: dict[str, dict[str, dict[str, Any]]] = {n: {} for n in names}
        cursor, capped_once, stalled = since, False, False
        while True:
            found, capped = self._cdc_call(names, cursor)
            merge(merged, found)
            if not capped:
                break
            capped_once = True
            newest = max((t for objs in found.values() for o in objs if (t := updated_at(o))), default=None)
            if newest is None or newest <= cursor:
                stalled = True  # over 1000 changes share one instant: no shorter window exists
                break
            cursor = newest  # the next window starts at the newest change seen (inclusive, deduplicated)
        if capped_once:
            for name in names:
                self._cdc_verify(name, since, merged[name], stalled)
        return {n: ordered(merged[n].values(), until) for n in names}

    def _cdc_verify(self, name: str, since: datetime, into: dict[str, dict[str, Any]], stalled: bool) -> None:
        where = [("MetaData.LastUpdatedTime", ">=", since)]
        inactive = name in NAME_LISTS
        live = sum(1 for o in into.values() if not is_deleted(o) and (t := updated_at(o)) and t >= since)
        if not stalled and self.count(name, where, include_inactive=inactive) <= live:
            return
        log.warning(
            "CDC for %s since %s was capped and incomplete; completing it with a paged query",
            name,
            since.isoformat(),
        )
        merge({name: into}, {name: self.query_all(name, where, include_inactive=inactive)})

    def _cdc_call(self, names: Sequence[str], since: datetime) -> tuple[dict[str, list[dict[str, Any]]], bool]:
        params = {"entities": ",".join(names), "changedSince": since.isoformat(timespec="seconds")}
        result = self._call(_Request("cdc", ",".join(names), "GET", "cdc", params))
        if not result.ok:
            raise QboCallError(result)
        try:
            found = cdc_objects(result.data)
        except (TypeError, ValueError):  # not the shape of ref §7: nothing in it can be trusted
            raise QboCallError(malformed(result, False)) from None
        return found, sum(len(v) for v in found.values()) >= CDC_MAX_OBJECTS

    # batch
    def batch(self, items: Sequence[BatchItem | Mapping[str, Any]], *, request_id: str) -> dict[str, QboResult]:
        """Send items in batches of at most 30 (ref §8); results matched by bId, one per item, never raises
        for item faults. After a batch fails as a whole, the later ones are not sent (`transport.not_sent`).
        With more than one batch, each gets a request id derived from `request_id` and its bIds.
        """
        wire = [i.to_wire() if isinstance(i, BatchItem) else dict(i) for i in items]
        check_bids(wire)
        chunks = [wire[i : i + BATCH_MAX_ITEMS] for i in range(0, len(wire), BATCH_MAX_ITEMS)]
        results: dict[str, QboResult] = {}
        stopped: QboResult | None = None
        for chunk in chunks:
            rid = request_id if len(chunks) == 1 else chunk_request_id(request_id, chunk)
            check_request_id(rid, BATCH_REQUEST_ID_MAX)
            if stopped is not None:
                held = (
                    stopped.outcome
                    if stopped.outcome.dimension == "authorization"
                    else outcome_for("transport.not_sent")
                )
                results.update(each_item(chunk, QboResult("batch", None, held, request_id=rid, attempts=0)))
                continue
            req = _Request(
                "batch",
                None,
                "POST",
                "batch",
                {"requestid": rid},
                dumps({"BatchItemRequest": chunk}),
                "application/json",
                rid,
                write=any(w.get("operation") for w in chunk),
                batch=True,
            )
            result = self._call(req)
            if result.ok:
                results.update(item_results(result, chunk))
            else:
                results.update(each_item(chunk, result))
                stopped = result
        return results

    # the exchange
    def _call(self, req: _Request) -> QboResult:
        """Send with auth, limits and the few safe retries; always returns a result, never raises for QBO.

        A throttle is waited out and the same request sent again (ref §4); the result counts those waits
        in `throttle_waits`, apart from failures, so the sync engine never counts them as failed attempts.
        """
        attempts = throttles = retries = 0
        refreshed = False
        while True:
            try:
                token = self._oauth.access_token(self.realm_id)
            except OAuthError as exc:
                return _not_sent(req, exc.outcome, attempts, exc)
            attempts += 1
            try:
                with self._limiter.slot(batch=req.batch):
                    response, broken, duration = self._send(req, token)
            except HeldTooLongError as held:
                return _not_sent(req, outcome_for("transport.throttled"), attempts - 1, retry_after=held.seconds)
            result = self._interpret(req, response, broken, duration, attempts, token)
            result = replace(result, throttle_waits=throttles)
            if result.outcome.reason == "transport.throttled" and throttles < self._max_throttle_waits:
                throttles += 1
                wait = result.retry_after if result.retry_after is not None else THROTTLE_DEFAULT_WAIT
                log.warning(
                    "QBO throttled realm %s; every call waits %.0f s (intuit_tid %s)",
                    self.realm_id,
                    wait,
                    result.intuit_tid or "-",
                )
                self._limiter.hold(wait)  # the next slot() sleeps it out, same request and requestid
                continue
            if result.status == 401 and not refreshed:
                refreshed = True
                try:
                    self._oauth.refresh_rejected(self.realm_id, token)
                except OAuthError as exc:
                    return _not_sent(req, exc.outcome, attempts, exc)
                continue
            if self._may_retry(req, result, retries):
                retries += 1
                self._sleep(float(2**retries))
                continue
            return result

    def _may_retry(self, req: _Request, result: QboResult, retries: int) -> bool:
        if result.outcome.outcome != "transport":  # never ambiguous writes: they are looked up, not resent
            return False
        if not req.write:
            return retries < self._read_retries
        # A write QBO answered with a transient fault may have been saved all the same ("500 resubmit once",
        # ref §3, is no promise that it was not; the 6000 "try again" is often saved, and a 10000 has come with
        # a 400): it is looked up before any resend, which is the engine's job. Only a write that provably never
        # left is sent once more.
        return retries < 1 and result.outcome.reason == "transport.connection_failed"

    def _send(self, req: _Request, token: Secret) -> tuple[httpx.Response | None, str | None, float]:
        headers = {"Accept": "application/json", "Authorization": f"Bearer {token.reveal()}"}
        if req.content_type:
            headers["Content-Type"] = req.content_type
        params = {**req.params, "minorversion": MINOR_VERSION}
        started = time.perf_counter()
        try:
            response = self._http.request(
                req.method, f"{self._base}/{req.path}", params=params, headers=headers, content=req.body
            )
        except httpx.TransportError as exc:
            return None, transport_error_kind(exc), time.perf_counter() - started
        except httpx.DecodingError:
            return None, "malformed", time.perf_counter() - started
        return response, None, time.perf_counter() - started

    def _interpret(
        self,
        req: _Request,
        response: httpx.Response | None,
        broken: str | None,
        duration: float,
        attempts: int,
        token: Secret,
    ) -> QboResult:
        facts: dict[str, Any] = {"duration": duration, "request_id": req.request_id, "attempts": attempts}
        if response is None:
            outcome = classify(None, transport_error=broken, write=req.write)
            result = QboResult(req.operation, req.entity, outcome, **facts)
        else:
            result = self._read_response(req, response, token, facts)
        self._log(req, result)
        return result

    def _read_response(
        self, req: _Request, response: httpx.Response, token: Secret, facts: dict[str, Any]
    ) -> QboResult:
        status = response.status_code
        facts.update(
            status=status,
            intuit_tid=response.headers.get("intuit_tid"),  # support asks for it (ref §1)
            retry_after=retry_after(response.headers, self._clock()),
        )
        parsed = parse_body(response.content, response.headers.get("content-type"))
        if parsed.fault is not None:  # including a 200 that carries a Fault (ref §3)
            fault = redact_fault(parsed.fault, token)  # a gateway 401 has echoed the rejected token
            fields = fault_result(status, fault, req.write, req.operation)
            return QboResult(req.operation, req.entity, **facts, **fields)
        if 200 <= status < 300 and parsed.kind == "json" and isinstance(parsed.body, dict):
            return QboResult(req.operation, req.entity, ACCEPTED, data=parsed.body, **facts)
        if 200 <= status < 300 and req.batch and parsed.kind == "xml" and (items := xml_batch(parsed.body)):
            return QboResult(req.operation, req.entity, ACCEPTED, data=items, **facts)
        if 200 <= status < 300:  # truncated JSON, or XML or HTML where JSON was asked
            outcome = classify(status, transport_error="malformed", write=req.write)
        else:  # an error without a readable fault: HTML 503 pages, bare 502s (ref §3)
            outcome = classify(status, write=req.write)
        return QboResult(req.operation, req.entity, outcome, message=redact(parsed.summary, token), **facts)

    def _log(self, req: _Request, result: QboResult) -> None:
        # Method, path, status, reason and ids only: no headers, no bodies, no query text.
        log.log(
            logging.DEBUG if result.ok else logging.INFO,
            "QBO %s %s -> %s %s code=%s intuit_tid=%s requestid=%s %.0f ms",
            req.method,
            req.path,
            result.status if result.status is not None else "-",
            result.outcome.reason,
            result.code or "-",
            result.intuit_tid or "-",
            req.request_id or "-",
            result.duration * 1000,
        )


def _not_sent(
    req: _Request,
    outcome: Outcome,
    attempts: int,
    exc: OAuthError | None = None,
    retry_after: float | None = None,
) -> QboResult:
    return QboResult(
        req.operation,
        req.entity,
        outcome,
        status=getattr(exc, "status", None),
        code=getattr(exc, "code", None),
        intuit_tid=getattr(exc, "intuit_tid", None),
        request_id=req.request_id,
        attempts=attempts,
        retry_after=retry_after,
    )


def _query_response(result: QboResult) -> Mapping[str, Any]:
    response = (result.data or {}).get("QueryResponse")
    if not isinstance(response, Mapping):
        raise QboCallError(malformed(result, False))
    return response
