"""The QBO v3 resources over one realm: entity create/read/update/delete/void, query, CDC and batch."""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta
from typing import Any

from qbo.sandbox import shapes
from qbo.sandbox.clock import format_meta_time, format_qbo_time, parse_qbo_time
from qbo.sandbox.compute import apply_defaults, finalize, refresh_balances
from qbo.sandbox.entities import ACTIVE_FLAG, NOT_IN_CDC, READ_ONLY, SINGLETONS, TRANSACTIONS, canonical
from qbo.sandbox.query import QueryError, matching, page_of, parse_query, run_query
from qbo.sandbox.rules import check_closed_books, check_sync_token, validate
from qbo.sandbox.store import RealmStore
from qbo.sandbox.wire import loads

__all__ = [
    "BATCH_MAX_ITEMS",
    "CDC_LOOKBACK",
    "CDC_MAX_OBJECTS",
    "ApiRequest",
    "Notify",
    "RealmApi",
    "classify",
]

BATCH_MAX_ITEMS = 30  # ref §4: the API accepts 30 and rejects 31
CDC_MAX_OBJECTS = 1000  # ref §7
CDC_LOOKBACK = timedelta(days=30)  # ref §7
_READ_ONLY_KEYS = ("MetaData", "SyncToken", "domain", "sparse", "status")
_NOT_FOUND = (
    "Something you're trying to use has been made inactive. Check the fields with accounts, customers, "
    "items, vendors or employees."
)
_DELETED = "Another user has deleted this transaction."
# QBO names its internal host in "Could not find resource" details (qbo_api cassette error/500.yml).
_INTERNAL_BASE = "https://c50.sandbox.qbo.intuit.com/qbo50"
_VOIDABLE = {"Invoice": "operation=void", "Payment": "include=void", "BillPayment": "include=void"}

# notify(entity, Id, operation, when): a committed change, for webhooks (Create, Update, Delete, Void).
Notify = Callable[[str, str, str, datetime], None]


@dataclass
class ApiRequest:
    """A request to `/v3/company/{realm}/...`, already split: `segments` is what follows the realm."""

    method: str
    segments: list[str]
    params: dict[str, str] = field(default_factory=dict)
    body: bytes = b""

    def options(self) -> set[str]:
        return {part.strip().lower() for part in self.params.get("include", "").split(",") if part.strip()}


def _json_object(body: bytes) -> dict[str, Any]:
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        # Non-UTF-8 bodies give code 500 with this text (ref §1, §3).
        raise shapes.QboFault("500", "Unsupported Operation", "Invalid byte 1 of 1-byte UTF-8 sequence.") from None
    try:
        value = loads(text)
    except ValueError as exc:
        raise shapes.bad_request(f"Request body is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise shapes.bad_request("Request body must be a JSON object")
    return value


def classify(request: ApiRequest) -> str:
    """The operation a request performs, as fault rules name it: read, query, cdc, batch, create, ..."""
    head = request.segments[0].lower() if request.segments else ""
    if head in ("query", "cdc", "batch"):
        return head
    if request.method == "GET":
        return "read"
    operation = request.params.get("operation", "").lower()
    if operation == "delete":
        return "delete"
    if operation == "void" or (operation == "update" and "void" in request.options()):
        return "void"
    try:
        body = loads(request.body)
    except ValueError:
        return "create"
    return "update" if isinstance(body, dict) and body.get("Id") not in (None, "") else "create"


class RealmApi:
    """Runs one request against one realm's store; the engine holds the lock around it."""

    def __init__(self, store: RealmStore, now: datetime, today: date, notify: Notify) -> None:
        self.store = store
        self.now = now
        self.today = today
        self.notify = notify
        self.time = format_qbo_time(now)

    def execute(self, request: ApiRequest) -> dict[str, Any]:
        """The JSON reply of a successful request; a rule that fails raises QboFault."""
        segments = [s for s in request.segments if s]
        if not segments:
            raise shapes.unsupported("without a resource")
        head = segments[0].lower()
        if head == "query":
            text = request.params.get("query")
            if text is None and request.method == "POST":
                text = request.body.decode("utf-8", errors="replace")
            return {"QueryResponse": self.query(text or ""), "time": self.time}
        if head == "cdc" and request.method == "GET":
            return {"CDCResponse": self.cdc(request.params), "time": self.time}
        if head == "batch" and request.method == "POST":
            return self.batch(request)
        entity = canonical(head)
        if entity is None or len(segments) > 2:
            relative = f"/v3/company/{self.store.realm_id}/{'/'.join(segments)}"
            raise shapes.no_resource(relative, f"{_INTERNAL_BASE}{relative}")
        if request.method == "GET":
            # /companyinfo/{realmId} and /preferences: one object each, whatever the URL says.
            obj_id = "1" if entity in SINGLETONS else (segments[1] if len(segments) == 2 else "")
            return {entity: self.read(entity, obj_id), "time": self.time}
        if request.method != "POST" or len(segments) != 1:
            raise shapes.unsupported(f"{request.method} /{'/'.join(segments)}")
        body = _json_object(request.body)
        return {entity: self.write(entity, body, request), "time": self.time}

    def write(self, entity: str, body: dict[str, Any], request: ApiRequest) -> dict[str, Any]:
        options = request.options()
        operation = request.params.get("operation", "").lower()
        allow_duplicate = "allowduplicatedocnum" in options
        if operation == "delete":
            return self.delete(entity, body)
        if operation == "void" or (operation == "update" and "void" in options):
            if _VOIDABLE.get(entity) != ("operation=void" if operation == "void" else "include=void"):
                raise shapes.unsupported(f"Void for {entity} through this URL")
            return self.void(entity, body)
        if body.get("Id") not in (None, ""):
            return self.update(entity, body, allow_duplicate=allow_duplicate)
        return self.create(entity, body, allow_duplicate=allow_duplicate)

    def _existing(self, entity: str, obj_id: str) -> dict[str, Any]:
        obj = self.store.get(entity, obj_id)
        if obj is None or (entity, obj_id) in self.store.hidden:
            raise shapes.not_found(_NOT_FOUND)
        if self.store.is_deleted(entity, obj_id):
            raise shapes.not_found(_DELETED)
        return obj

    def read(self, entity: str, obj_id: str) -> dict[str, Any]:
        return copy.deepcopy(self._existing(entity, str(obj_id)))

    def create(self, entity: str, body: dict[str, Any], *, allow_duplicate: bool) -> dict[str, Any]:
        if entity in READ_ONLY or entity in SINGLETONS:
            # Tax codes are created through /taxservice/taxcode, which is not emulated (ref §5).
            raise shapes.unsupported(f"Create for {entity}")
        obj = {k: copy.deepcopy(v) for k, v in body.items() if k not in (*_READ_ONLY_KEYS, "Id")}
        apply_defaults(self.store, entity, obj, today=self.today, creating=True)
        validate(self.store, entity, obj, existing=None, allow_duplicate_docnumber=allow_duplicate)
        obj = {"Id": self.store.new_id(entity), **obj}
        finalize(self.store, entity, obj, now=self.now, existing=None)
        self._commit(entity, obj, None, "Create")
        return copy.deepcopy(obj)

    def update(self, entity: str, body: dict[str, Any], *, allow_duplicate: bool) -> dict[str, Any]:
        if entity in READ_ONLY:
            raise shapes.unsupported(f"Update for {entity}")
        obj_id = str(body["Id"])
        existing = self._existing(entity, obj_id)
        check_sync_token(body, existing)
        changes = {k: copy.deepcopy(v) for k, v in body.items() if k not in _READ_ONLY_KEYS}
        if body.get("sparse") in (True, "true"):
            obj = {**copy.deepcopy(existing), **changes}
        else:
            # A full update clears every field it leaves out (ref §5, quickbooks-ruby#383).
            obj = changes
        obj["Id"] = existing["Id"]
        # Computed fields are recomputed, unless the caller sends them (a sent TotalAmt is then checked).
        computed = ["Balance", "UnappliedAmt", "FullyQualifiedName"]
        if entity not in ("Payment", "BillPayment"):
            computed.append("TotalAmt")
        for computed_field in computed:
            if computed_field not in changes:
                obj.pop(computed_field, None)
        apply_defaults(self.store, entity, obj, today=self.today, creating=False)
        if entity not in SINGLETONS:
            validate(self.store, entity, obj, existing=existing, allow_duplicate_docnumber=allow_duplicate)
        finalize(self.store, entity, obj, now=self.now, existing=existing)
        self._commit(entity, obj, existing, "Update")
        return copy.deepcopy(obj)

    def delete(self, entity: str, body: dict[str, Any]) -> dict[str, Any]:
        if entity not in TRANSACTIONS:
            # Name lists cannot be deleted; set Active false instead (ref §5).
            raise shapes.unsupported(f"Delete for {entity} (make it inactive with Active=false)")
        if body.get("Id") in (None, ""):
            raise shapes.required("Id")
        obj_id = str(body["Id"])
        existing = self._existing(entity, obj_id)
        check_sync_token(body, existing)
        check_closed_books(self.store, entity, None, existing)
        self.store.delete(entity, obj_id, self.now)
        refresh_balances(self.store, entity, existing, None, self.now)
        self.notify(entity, obj_id, "Delete", self.now)
        # The delete reply's shape is unconfirmed (ref §5); this is the commonly quoted one.
        return {"status": "Deleted", "domain": "QBO", "Id": obj_id}

    def void(self, entity: str, body: dict[str, Any]) -> dict[str, Any]:
        if body.get("Id") in (None, ""):
            raise shapes.required("Id")
        existing = self._existing(entity, str(body["Id"]))
        check_sync_token(body, existing)
        check_closed_books(self.store, entity, None, existing)
        obj = copy.deepcopy(existing)
        for line in obj.get("Line") or []:
            if "Amount" in line:
                line["Amount"] = 0
        obj["TotalAmt"] = 0
        note = str(obj.get("PrivateNote") or "")
        obj["PrivateNote"] = f"Voided - {note}" if note else "Voided"
        finalize(self.store, entity, obj, now=self.now, existing=existing)
        self._commit(entity, obj, existing, "Void")
        return copy.deepcopy(obj)

    def _commit(self, entity: str, obj: dict[str, Any], existing: dict[str, Any] | None, op: str) -> None:
        self.store.save(entity, obj, self.now)
        if op == "Create":
            self.store.hidden.add((entity, str(obj["Id"])))  # emptied after each request
        refresh_balances(self.store, entity, existing, obj, self.now)
        self.notify(entity, str(obj["Id"]), op, self.now)

    def query(self, text: str) -> dict[str, Any]:
        try:
            parsed = parse_query(text)
        except QueryError as exc:
            raise shapes.query_parse(str(exc)) from None
        entity = canonical(parsed.entity)
        if entity is None:
            raise shapes.query_parse(f'Invalid entity "{parsed.entity}" at line 1.')
        if parsed.count or self.store.hidden:
            rows = [row for row in self.store.live(entity) if (entity, str(row["Id"])) not in self.store.hidden]
            return copy.deepcopy(run_query(parsed, entity, rows, has_active=entity in ACTIVE_FLAG))
        # A paged read asks the same query again from the next STARTPOSITION: the rows it selected are kept until
        # the company changes, and only the page is copied, so reading a large entity page by page stays linear.
        key = (replace(parsed, start_position=1, max_results=None), self.store.version)
        cached = self.store.selected.get(entity)
        if cached is None or cached[0] != key:
            cached = (key, matching(parsed, self.store.live(entity), has_active=entity in ACTIVE_FLAG))
            self.store.selected[entity] = cached
        return copy.deepcopy(page_of(parsed, entity, cached[1]))

    def cdc(self, params: dict[str, str]) -> list[dict[str, Any]]:
        """Objects changed since `changedSince`, oldest first, at most 1000 in all (ref §7).

        The cap keeps the oldest 1000 changes; a client that gets 1000 objects asks again from the
        latest LastUpdatedTime it received (or with a shorter window).
        """
        names = [n.strip() for n in params.get("entities", "").split(",") if n.strip()]
        if not names:
            raise shapes.required("entities")
        entities = []
        for name in names:
            entity = canonical(name)
            if entity is None or entity in NOT_IN_CDC:
                raise shapes.bad_request(f"Change data capture is not available for {name}", "entities")
            entities.append(entity)
        since_text = params.get("changedSince")
        if not since_text:
            raise shapes.required("changedSince")
        try:
            since = parse_qbo_time(since_text)
        except ValueError:
            raise shapes.bad_request(f"changedSince is not a date-time: {since_text}", "changedSince") from None
        if since < self.now - CDC_LOOKBACK:
            # Ref §7 leaves a look-back over 30 days unconfirmed; we refuse it, so the client falls back to
            # a full query rather than trusting a partial answer.
            raise shapes.bad_request(
                "changedSince must be within the last 30 days; use a query to reload older data",
                "changedSince",
            )
        changed = self.store.changed_since(entities, since)[:CDC_MAX_OBJECTS]
        groups: dict[str, list[dict[str, Any]]] = {entity: [] for entity in entities}
        for at, _seq, entity, obj_id in changed:
            groups[entity].append(self._cdc_object(entity, obj_id, at))
        responses = []
        for entity in dict.fromkeys(entities):
            rows = groups[entity]
            responses.append({entity: rows, "startPosition": 1, "maxResults": len(rows)} if rows else {})
        return [{"QueryResponse": responses}]

    def _cdc_object(self, entity: str, obj_id: str, at: datetime) -> dict[str, Any]:
        obj = self.store.get(entity, obj_id) or {}
        if self.store.is_deleted(entity, obj_id):
            # Deleted records carry status Deleted (ref §7); their other fields are unconfirmed.
            meta = dict(obj.get("MetaData") or {})
            meta["LastUpdatedTime"] = format_meta_time(at)
            return {"Id": obj_id, "status": "Deleted", "domain": "QBO", "MetaData": meta}
        return copy.deepcopy(obj)

    def batch(self, request: ApiRequest) -> dict[str, Any]:
        """Items run in order; each fails on its own; the HTTP status is 200 (ref §8)."""
        body = _json_object(request.body)
        items = body.get("BatchItemRequest")
        if not isinstance(items, list) or not items:
            raise shapes.required("BatchItemRequest")
        if len(items) > BATCH_MAX_ITEMS:
            raise shapes.bad_request(
                f"A batch holds at most {BATCH_MAX_ITEMS} items; this one has {len(items)}",
                "BatchItemRequest",
            )
        replies = []
        for item in items:
            if not isinstance(item, dict):
                raise shapes.bad_request("Each BatchItemRequest entry must be an object", "BatchItemRequest")
            bid = str(item.get("bId") or "")
            if not bid:
                raise shapes.required("BatchItemRequest.bId")
            try:
                replies.append({"bId": bid, **self._batch_item(item)})
            except shapes.QboFault as fault:
                replies.append({"bId": bid, "Fault": fault.fault()})
        return {"BatchItemResponse": replies, "time": self.time}

    def _batch_item(self, item: dict[str, Any]) -> dict[str, Any]:
        if "Query" in item:
            return {"QueryResponse": self.query(str(item["Query"]))}
        entity_keys = [k for k in item if k not in ("bId", "operation", "optionsData") and canonical(k)]
        if len(entity_keys) != 1 or not isinstance(item[entity_keys[0]], dict):
            raise shapes.bad_request("A batch item needs exactly one entity object or a Query")
        entity = canonical(entity_keys[0])
        assert entity is not None
        operation = str(item.get("operation") or "").lower()
        options = {o.strip().lower() for o in str(item.get("optionsData") or "").split(",") if o.strip()}
        params = {"include": ",".join(sorted(options))}
        if operation == "delete":
            params["operation"] = "delete"
        elif "void" in options:
            params["operation"] = "void" if entity == "Invoice" else "update"
        elif operation not in ("create", "update"):
            raise shapes.invalid_enum("operation", item.get("operation"))
        body = item[entity_keys[0]]
        if operation == "create" and body.get("Id") not in (None, ""):
            raise shapes.bad_request("A create item must not carry an Id", "Id")
        if operation == "update" and body.get("Id") in (None, ""):
            raise shapes.required("Id")
        request = ApiRequest("POST", [entity.lower()], params, b"")
        return {entity: self.write(entity, body, request)}
