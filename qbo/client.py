"""The QBO v3 client (httpx): minorversion, requestid, query paging, CDC, batch, faults, rate limits."""

from __future__ import annotations

import html
import json
import logging
import re
import threading
import time
import uuid
import xml.etree.ElementTree as ET
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from qbo.faults import ACCEPTED, ALREADY_DELETED, Outcome, classify, classify_errors, outcome_for
from qbo.oauth import OAuthClient, OAuthError, OAuthSettings, transport_error_kind, utcnow
from qbo.tokens import Secret, TokenStore

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
PAGE_SIZE = 1000  # MAXRESULTS maximum (ref §6)
BATCH_MAX_ITEMS = 30  # 31 is rejected (ref §4, §11.14)
CDC_MAX_LOOKBACK = timedelta(days=30)  # ref §7
CDC_MAX_OBJECTS = 1000  # per CDC response (ref §7)
_REQUEST_ID_MAX = 50  # ref §1
_BATCH_REQUEST_ID_MAX = 36  # ref §1
# No bId limit is documented; production batches used bIds of 36 to 65 characters (finoptimal/fo_qbo), so the
# 10 once inferred for batches with a requestid (ref §1) is no limit of QBO's. 100 keeps a batch body small.
_BID_MAX = 100
_THROTTLE_DEFAULT_WAIT = 60.0  # no Retry-After: wait a minute (ref §4, D-lim)
_NO_CDC = frozenset({"JournalCode", "TaxAgency", "TimeActivity", "TaxCode", "TaxRate"})  # ref §7

KNOWN_ENTITIES = (
    "Account",
    "Attachable",
    "Bill",
    "BillPayment",
    "Class",
    "CompanyInfo",
    "CreditMemo",
    "Customer",
    "Department",
    "Deposit",
    "Employee",
    "Estimate",
    "Invoice",
    "Item",
    "JournalCode",
    "JournalEntry",
    "Payment",
    "PaymentMethod",
    "Preferences",
    "Purchase",
    "PurchaseOrder",
    "RefundReceipt",
    "SalesReceipt",
    "TaxAgency",
    "TaxCode",
    "TaxRate",
    "Term",
    "TimeActivity",
    "Transfer",
    "Vendor",
    "VendorCredit",
)
# Name lists carry `Active`; their inactive rows appear only with `Active IN (true, false)` (ref §6).
NAME_LISTS = frozenset(
    {
        "Account",
        "Class",
        "Customer",
        "Department",
        "Employee",
        "Item",
        "PaymentMethod",
        "TaxCode",
        "TaxRate",
        "Term",
        "Vendor",
    }
)
_BY_LOWER = {name.lower(): name for name in KNOWN_ENTITIES}
_IDENT = re.compile(r"^[A-Za-z][A-Za-z0-9]*(\.[A-Za-z][A-Za-z0-9]*)*$")
_OBJECT_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_VISIBLE_ASCII = re.compile(r"^[\x21-\x7e]+$")


# Query builder (ref §6)
def escape_literal(value: str) -> str:
    """Escape text for the inside of a QBO query literal: `'` becomes `\\'` (ref §6).

    No escape for a backslash itself is documented, and parsers in the wild disagree on `\\\\`; one
    before the closing quote escapes the quote and lets the rest of the query be read as syntax (ref §6,
    quickbooks-ruby#345). So a value with a backslash is refused here, and `Select.where` matches such
    values another way.
    """
    if "\\" in value:
        raise ValueError(
            "a QBO query literal cannot hold a backslash (ref §6); use Select.where(field, '=', v)"
        )
    return value.replace("'", "\\'")


def quote_literal(value: str) -> str:
    return f"'{escape_literal(value)}'"


def _render(value: Any) -> str:
    if isinstance(value, bool):  # before int: bool is an int
        return "true" if value else "false"
    if isinstance(value, int | Decimal):
        if isinstance(value, Decimal) and not value.is_finite():
            raise ValueError("a query value must be a finite number")
        return str(value)
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError("query times need a time zone (QBO compares instants)")
        return quote_literal(value.isoformat(timespec="seconds"))
    if isinstance(value, date):
        return quote_literal(value.isoformat())
    if isinstance(value, str):
        return quote_literal(value)
    raise TypeError(f"cannot put a {type(value).__name__} in a QBO query (use str, int, Decimal, bool, date)")


def _check_field(name: str) -> str:
    if not _IDENT.match(name):
        raise ValueError(f"not a QBO property name: {name!r}")
    return name


@dataclass(frozen=True)
class Select:
    """`SELECT * | count(*) FROM Entity [WHERE a AND b] [ORDERBY f]`; values are always escaped."""

    entity: str
    conditions: tuple[str, ...] = ()
    order: str | None = None
    count_only: bool = False
    exact: tuple[tuple[str, str, str], ...] = ()  # checked locally on the rows (see where)

    def where(self, field_name: str, op: str, value: Any) -> Select:
        field_name, op = _check_field(field_name), op.strip().upper()
        if op not in ("=", "<", ">", "<=", ">=", "IN", "LIKE"):
            raise ValueError(f"QBO queries know = < > <= >= IN LIKE, not {op!r} (ref §6)")
        if isinstance(value, str) and "\\" in value:
            return self._where_backslash(field_name, op, value)
        if op == "IN":
            if (
                isinstance(value, str | bytes)
                or not isinstance(value, Sequence | set | frozenset)
                or not value
            ):
                raise ValueError("IN needs a non-empty list of values")
            rendered = "(" + ", ".join(_render(v) for v in value) + ")"
        else:
            rendered = _render(value)
        return replace(self, conditions=(*self.conditions, f"{field_name} {op} {rendered}"))

    def _where_backslash(self, field_name: str, op: str, value: str) -> Select:
        # No literal can carry a backslash (see escape_literal), so QBO gets a LIKE with `%` where the
        # backslashes were (LIKE's only wildcard, ref §6) and the exact test runs here on the rows.
        if op not in ("=", "LIKE"):
            raise ValueError("a value with a backslash can only be matched with = or LIKE")
        pattern = "%".join(re.split(r"\\+", value))
        return replace(
            self,
            conditions=(*self.conditions, f"{field_name} LIKE {quote_literal(pattern)}"),
            exact=(*self.exact, (field_name, op, value)),
        )

    def keeps(self, row: Mapping[str, Any]) -> bool:
        """Whether a returned row passes the checks that had to run locally (values with backslashes)."""
        return all(_matches_exactly(_property(row, f), op, v) for f, op, v in self.exact)

    def order_by(self, field_name: str, *, descending: bool = False) -> Select:
        return replace(self, order=f"{_check_field(field_name)} {'DESC' if descending else 'ASC'}")

    def include_inactive(self) -> Select:
        """Name lists hide inactive rows unless asked (ref §6)."""
        return self.where("Active", "IN", [True, False])

    def sql(self) -> str:
        head = "SELECT count(*)" if self.count_only else "SELECT *"
        text = f"{head} FROM {_entity_name(self.entity)}"
        if self.conditions:
            text += " WHERE " + " AND ".join(self.conditions)
        if self.order and not self.count_only:
            text += f" ORDERBY {self.order}"
        return text

    __str__ = sql


def select(entity: str) -> Select:
    return Select(_entity_name(entity))


def _property(row: Mapping[str, Any], path: str) -> Any:
    value: Any = row
    for part in path.split("."):
        value = value.get(part) if isinstance(value, Mapping) else None
    return value.get("value") if isinstance(value, Mapping) else value  # a Ref compares on its value


def _matches_exactly(actual: Any, op: str, value: str) -> bool:
    # Text comparisons in QBO queries ignore case (as the server would have done for a plain literal).
    if actual is None or isinstance(actual, Mapping | list):
        return False
    text = str(actual).casefold()
    if op == "=":
        return text == value.casefold()
    regex = ".*".join(re.escape(part) for part in value.casefold().split("%"))
    return re.fullmatch(regex, text, flags=re.DOTALL) is not None


def select_count(entity: str) -> Select:
    return Select(_entity_name(entity), count_only=True)


def _entity_name(entity: str) -> str:
    """The capitalised QBO name ("journalentry" -> "JournalEntry"); unknown names must be identifiers."""
    known = _BY_LOWER.get(entity.lower())
    if known:
        return known
    if not _IDENT.match(entity) or "." in entity:
        raise ValueError(f"not a QBO entity name: {entity!r}")
    return entity


# Paging clauses outside string literals (a name may well contain the word MAXRESULTS).
_LITERALS = re.compile(r"'(?:\\.|[^'\\])*'")
_PAGING = re.compile(r"\b(STARTPOSITION|MAXRESULTS)\b", re.I)
_COUNT = re.compile(r"^\s*select\s+count\s*\(", re.I)


def _has_paging(sql: str) -> bool:
    return bool(_PAGING.search(_LITERALS.sub("''", sql)))


# Fault parsing (ref §3): every shape the service has been seen to send
@dataclass(frozen=True)
class FaultError:
    code: str | None
    message: str | None = None
    detail: str | None = None
    element: str | None = None


@dataclass(frozen=True)
class Fault:
    """One fault, whatever shape it came in: json (`Fault`), gateway (`fault`), xml, or oauth.

    Every error is kept: a real batch item carried a 6140 and three 2020s, and each is the record's problem.
    """

    shape: str
    type: str | None
    errors: tuple[FaultError, ...]
    time: datetime | None = None

    @property
    def first(self) -> FaultError:
        return self.errors[0] if self.errors else FaultError(None)


@dataclass(frozen=True)
class Parsed:
    """A response body, sniffed: kind is json, xml, html, text, empty or malformed."""

    kind: str
    body: Any = None
    fault: Fault | None = None
    summary: str | None = None


def _pick(mapping: Mapping[str, Any], name: str) -> Any:
    # Standard faults say "Message", gateway faults "message" (ref §3, pqb#250).
    if name in mapping:
        return mapping[name]
    return mapping.get(name.lower(), mapping.get(name[:1].upper() + name[1:]))


_GATEWAY_CODE = re.compile(r"errorCode=0*(\d+)")


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def _fault_error(item: Any) -> FaultError:
    if not isinstance(item, Mapping):
        return FaultError(None, _text(item))
    message = _text(_pick(item, "Message"))
    code = _text(_pick(item, "code"))
    if not code and message and (m := _GATEWAY_CODE.search(message)):
        code = m.group(1)  # "message=AuthenticationFailed; errorCode=003200; statusCode=401"
    return FaultError(code, message, _text(_pick(item, "Detail")), _text(_pick(item, "element")) or None)


def _fault_time(value: Any) -> datetime | None:
    try:
        if isinstance(value, int | float | Decimal) and not isinstance(value, bool):
            return datetime.fromtimestamp(float(value) / 1000, UTC)  # gateway: epoch milliseconds (ref §3)
        if isinstance(value, str) and value:
            return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except (ValueError, OverflowError, OSError):
        return None
    return None


def _errors(raw: Any) -> tuple[FaultError, ...]:
    items = raw if isinstance(raw, list) else [raw] if raw else []
    return tuple(_fault_error(i) for i in items)


def _fault_from_json(obj: Any) -> Fault | None:
    """The fault in a JSON body or batch item, if any (standard, lowercase gateway, or OAuth error)."""
    if not isinstance(obj, Mapping):
        return None
    if isinstance(obj.get("Fault"), Mapping):
        f = obj["Fault"]
        return Fault("json", _text(f.get("type")), _errors(_pick(f, "Error")), _fault_time(obj.get("time")))
    if isinstance(obj.get("fault"), Mapping):
        f = obj["fault"]
        return Fault(
            "gateway", _text(f.get("type")), _errors(_pick(f, "error")), _fault_time(obj.get("time"))
        )
    if isinstance(obj.get("error"), str):  # OAuth: {"error": "invalid_grant", "error_description": ...}
        return Fault("oauth", "OAuth", (FaultError(obj["error"], _text(obj.get("error_description"))),))
    return None


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _xml_fault(root: ET.Element) -> Fault | None:
    """The response's own fault: the root itself, or a Fault right under it. A fault deeper down belongs to a
    batch item (`<BatchItemResponse bId><Fault>`), and giving it to the whole batch failed every other item."""
    fault = root if _local(root.tag) == "Fault" else next((el for el in root if _local(el.tag) == "Fault"), None)
    if fault is None:
        return None
    return Fault("xml", fault.get("type"), _xml_errors(fault), _fault_time(root.get("time")))


def _xml_errors(fault: ET.Element) -> tuple[FaultError, ...]:
    errors = []
    for err in (el for el in fault if _local(el.tag) == "Error"):
        texts = {_local(child.tag): (child.text or "").strip() for child in err}
        errors.append(
            FaultError(err.get("code"), texts.get("Message"), texts.get("Detail"), err.get("element") or None)
        )
    return tuple(errors)


def _xml_value(el: ET.Element) -> Any:
    """An XML element as the JSON QBO would have sent: children become keys (repeated ones a list), a Ref's
    attributes sit beside its `value`. Numbers stay text: XML does not say which text is money."""
    children = list(el)
    if not children:
        text = (el.text or "").strip()
        return {"value": text, **el.attrib} if el.attrib else text
    out: dict[str, Any] = dict(el.attrib)
    for child in children:
        key, value = _local(child.tag), _xml_value(child)
        if key in out:
            out[key] = [*out[key], value] if isinstance(out[key], list) else [out[key], value]
        else:
            out[key] = value
    return out


def _xml_batch(root: ET.Element) -> dict[str, Any] | None:
    """`<IntuitResponse><BatchItemResponse bId>...` as the JSON shape (ref §8), each item with its own fault."""
    items = [el for el in root if _local(el.tag) == "BatchItemResponse"]
    if not items:
        return None
    answers = []
    for item in items:
        answer: dict[str, Any] = {"bId": item.get("bId")}
        for child in item:
            if _local(child.tag) == "Fault":
                errors = [
                    {"Message": e.message, "Detail": e.detail, "code": e.code, "element": e.element}
                    for e in _xml_errors(child)
                ]
                answer["Fault"] = {"type": child.get("type"), "Error": errors}
            else:
                answer[_local(child.tag)] = _xml_value(child)
        answers.append(answer)
    return {"BatchItemResponse": answers, "time": root.get("time")}


_SALVAGE_FAULT = re.compile(rb"<(?:[\w.-]+:)?Fault\b([^>]*)>(.*?)</(?:[\w.-]+:)?Fault>", re.S)
_SALVAGE_ERROR = re.compile(rb"<(?:[\w.-]+:)?Error\b([^>]*)>(.*?)</(?:[\w.-]+:)?Error>", re.S)
_SALVAGE_ATTR = re.compile(rb'([\w:.-]+)\s*=\s*"([^"]*)"')


def _salvage_text(body: bytes, tag: bytes) -> str | None:
    m = re.search(rb"<(?:[\w.-]+:)?" + tag + rb"\b[^>]*>(.*?)</(?:[\w.-]+:)?" + tag + rb">", body, re.S)
    return html.unescape(m.group(1).decode("utf-8", "replace")).strip() if m else None


def _salvage_fault(content: bytes) -> Fault | None:
    """The fault of XML that does not parse, read from its tags: a gateway 401 whose Detail carried an unescaped
    `<` (qbo_api cassette) lost its code 3200 otherwise. Not for a batch, whose items could not be told apart."""
    m = _SALVAGE_FAULT.search(content)
    if m is None or b"BatchItemResponse" in content:
        return None
    attrs = dict(_SALVAGE_ATTR.findall(m.group(1)))
    errors = []
    for e in _SALVAGE_ERROR.finditer(m.group(2)):
        err_attrs = {k.decode(): v.decode("utf-8", "replace") for k, v in _SALVAGE_ATTR.findall(e.group(1))}
        errors.append(
            FaultError(
                err_attrs.get("code"),
                _salvage_text(e.group(2), b"Message"),
                _salvage_text(e.group(2), b"Detail"),
                err_attrs.get("element") or None,
            )
        )
    fault_type = attrs.get(b"type")
    return Fault("xml", fault_type.decode("utf-8", "replace") if fault_type else None, tuple(errors))


_HTML = re.compile(rb"^\s*(<!doctype\s+html|<html)", re.I)
_TITLE = re.compile(rb"<title[^>]*>(.*?)</title>", re.I | re.S)
_XML_LIMIT = 1_000_000


def _html_summary(content: bytes) -> str:
    m = _TITLE.search(content)
    raw = m.group(1) if m else re.sub(rb"<[^>]+>", b" ", content[:2000])
    return " ".join(raw.decode("utf-8", "replace").split())[:200]


def parse_body(content: bytes, content_type: str | None = None) -> Parsed:
    """Sniff and parse a body: the content type is not trusted (throttle faults come as XML, ref §3)."""
    head = content.lstrip(b"\xef\xbb\xbf \t\r\n")
    if not head:
        return Parsed("empty")
    if head.startswith((b"{", b"[")):
        try:
            # Amounts stay exact: money is Decimal, never float (ARCHITECTURE.md; pqb PR#356).
            body = json.loads(head.decode("utf-8"), parse_float=Decimal)
        except (ValueError, UnicodeDecodeError, RecursionError):  # deep nesting overflows the parser
            return Parsed("malformed", summary=_snippet(head))
        return Parsed("json", body, _fault_from_json(body))
    if _HTML.match(head):
        return Parsed("html", summary=_html_summary(head))
    if head.startswith(b"<") and len(head) <= _XML_LIMIT:
        try:
            # ElementTree resolves no external entities; expat caps entity expansion.
            root = ET.fromstring(head)
        except ET.ParseError:
            if "html" in (content_type or "").lower():
                return Parsed("html", summary=_html_summary(head))
            return Parsed("malformed", fault=_salvage_fault(head), summary=_snippet(head))
        return Parsed("xml", root, _xml_fault(root), summary=_local(root.tag))
    return Parsed("text", summary=_snippet(head))


def _snippet(content: bytes) -> str:
    return " ".join(content[:200].decode("utf-8", "replace").split())


# Results
@dataclass(frozen=True)
class QboResult:
    """What one call (or one batch item) did: everything an attempt record needs, and never token text."""

    operation: str
    entity: str | None
    outcome: Outcome
    status: int | None = None
    code: str | None = None
    message: str | None = None
    detail: str | None = None
    element: str | None = None
    fault_type: str | None = None
    intuit_tid: str | None = None
    duration: float = 0.0
    request_id: str | None = None
    bid: str | None = None
    retry_after: float | None = None
    attempts: int = 1  # HTTP sends for this call, throttled ones included
    throttle_waits: int = 0  # throttles waited out along the way (not failures)
    data: Any = field(default=None, repr=False)
    errors: tuple[FaultError, ...] = ()  # every error of the fault; code/message/detail are the deciding one's
    error_outcomes: tuple[Outcome, ...] = ()  # each error's own classification, in the same order

    @property
    def ok(self) -> bool:
        return self.outcome.accepted

    @property
    def object(self) -> dict[str, Any] | None:
        """The entity QBO returned (create, update, read, batch item)."""
        return self.data if isinstance(self.data, dict) else None

    def describe(self) -> str:
        parts = [f"{self.operation} {self.entity or ''}".strip() + f": {self.outcome.reason}"]
        facts = [
            f"HTTP {self.status}" if self.status is not None else "no response",
            f"QBO code {self.code}" if self.code else None,
            f"element {self.element}" if self.element else None,
            f"intuit_tid {self.intuit_tid}" if self.intuit_tid else None,
            f"request id {self.request_id}" if self.request_id else None,
            f"bId {self.bid}" if self.bid else None,
        ]
        parts.append("(" + ", ".join(f for f in facts if f) + ")")
        text = " ".join(p for p in (self.message, self.detail) if p)
        return " ".join(parts) + (f": {text}" if text else "")

    def describe_errors(self) -> list[str]:
        """One line per error of the fault with its own reason, for the record's chain."""
        return [f"{_error_line(e)} ({o.reason})" for e, o in zip(self.errors, self.error_outcomes, strict=True)]


class QboCallError(Exception):
    """A call ended in anything but `accepted`; `.result` has the facts, the message is safe to log."""

    def __init__(self, result: QboResult) -> None:
        self.result = result
        super().__init__(result.describe())

    @property
    def outcome(self) -> Outcome:
        return self.result.outcome


class CdcWindowError(ValueError):
    """CDC looks back at most 30 days (ref §7); older changes need a full query instead."""


_BEARER = re.compile(r"(?i)bearer\s+[A-Za-z0-9._~+/=-]+")


def _redact_fault(fault: Fault, token: Secret) -> Fault:
    errors = tuple(replace(e, message=_redact(e.message, token), detail=_redact(e.detail, token)) for e in fault.errors)
    return replace(fault, errors=errors)


def _redact(text: str | None, *secrets: Secret | None) -> str | None:
    # Provider text is echoed into logs and the UI; make sure no token ever rides along.
    if text is None:
        return None
    for secret in secrets:
        if secret is not None:
            text = text.replace(secret.reveal(), "[redacted]")
    return _BEARER.sub("Bearer [redacted]", text)


# Rate limits (ref §4): 10 in flight, 500 per minute, 40 batch per minute, per realm
class _HeldTooLong(Exception):
    def __init__(self, seconds: float) -> None:
        self.seconds = seconds


class RateLimiter:
    """Client-side limits for one realm; share one instance between every client of that realm."""

    def __init__(
        self,
        *,
        clock: Callable[[], datetime] = utcnow,
        sleep: Callable[[float], None] = time.sleep,
        max_in_flight: int = 10,
        per_minute: int = 500,
        batch_per_minute: int = 40,
        window_seconds: float = 60.0,
        max_wait_seconds: float = 600.0,
        margin_seconds: float = 1.0,
    ) -> None:
        self._clock, self._sleep = clock, sleep
        self._slots = threading.BoundedSemaphore(max_in_flight)
        self._lock = threading.Lock()
        self._per_minute, self._batch_per_minute = per_minute, batch_per_minute
        # QBO counts a request when it arrives, a little after we stamp it and not always equally late; a window
        # that ends exactly where QBO's does gets the next request refused (then every call waits 60 s). A window
        # a margin longer costs under 2% of the rate.
        self._window = window_seconds + margin_seconds
        self._max_wait = max_wait_seconds
        self._starts: deque[float] = deque()
        self._batch_starts: deque[float] = deque()
        self._held_until = 0.0

    def _now(self) -> float:
        return self._clock().timestamp()

    @contextmanager
    def slot(self, *, batch: bool = False) -> Iterator[None]:
        """Hold one of the in-flight slots, after waiting for the per-minute windows and any hold."""
        with self._slots:
            self._wait_turn(batch)
            yield

    def hold(self, seconds: float) -> None:
        """QBO said slow down: nobody on this realm sends anything for `seconds` (never hammer)."""
        with self._lock:
            self._held_until = max(self._held_until, self._now() + seconds)

    def _wait_turn(self, batch: bool) -> None:
        while True:
            with self._lock:
                now = self._now()
                wait = self._wait_needed(now, batch)
                if wait <= 0:
                    self._starts.append(now)
                    if batch:
                        self._batch_starts.append(now)
                    return
            if wait > self._max_wait:
                raise _HeldTooLong(wait)
            self._sleep(wait)

    def _wait_needed(self, now: float, batch: bool) -> float:
        for starts in (self._starts, self._batch_starts):
            while starts and starts[0] <= now - self._window:
                starts.popleft()
        waits = [self._held_until - now]
        if len(self._starts) >= self._per_minute:
            waits.append(self._starts[0] + self._window - now)
        if batch and len(self._batch_starts) >= self._batch_per_minute:
            waits.append(self._batch_starts[0] + self._window - now)
        return max(waits)


def _retry_after(headers: httpx.Headers, now: datetime) -> float | None:
    value = headers.get("Retry-After")  # not confirmed for QBO (ref §4); honoured when present
    if not value:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():  # '²'.isdigit() is True, and float('²') fails
        return float(value)
    try:
        return max(0.0, (parsedate_to_datetime(value) - now).total_seconds())
    except (TypeError, ValueError):
        return None


# Batch items (ref §8)
@dataclass(frozen=True)
class BatchItem:
    """One batch entry: an operation on an entity (create, update, delete) or a query."""

    bid: str
    operation: str | None = None
    entity: str | None = None
    body: Mapping[str, Any] | None = None
    query: str | Select | None = None
    options_data: str | None = None  # "void" or "allowduplicatedocnum" (ref §8)

    def to_wire(self) -> dict[str, Any]:
        if self.query is not None:
            return {"bId": self.bid, "Query": str(self.query)}
        if self.operation not in ("create", "update", "delete") or not self.entity or self.body is None:
            raise ValueError(f"batch item {self.bid!r} needs operation create|update|delete, entity and body")
        wire: dict[str, Any] = {
            "bId": self.bid,
            "operation": self.operation,
            _entity_name(self.entity): dict(self.body),
        }
        if self.options_data:
            wire["optionsData"] = self.options_data
        return wire


def _item_entity(wire: Mapping[str, Any]) -> str | None:
    return next((k for k in wire if k not in ("bId", "operation", "optionsData", "Query")), None)


# JSON with exact money
def _dumps(body: Any) -> bytes:
    """JSON with Decimals written as exact numbers (json.dumps would refuse them or go through float)."""
    marks: dict[str, str] = {}
    nonce = uuid.uuid4().hex

    def swap(value: Any) -> Any:
        if isinstance(value, Decimal):
            if not value.is_finite():
                raise ValueError("amounts must be finite")
            mark = f"@dec{nonce}{len(marks)}@"
            marks[mark] = format(value, "f")
            return mark
        if isinstance(value, Mapping):
            return {k: swap(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [swap(v) for v in value]
        return value

    text = json.dumps(swap(body), ensure_ascii=False, separators=(",", ":"))
    for mark, number in marks.items():
        text = text.replace(f'"{mark}"', number)
    return text.encode("utf-8")  # QBO refuses bodies that are not UTF-8 (code 500, ref §1)


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
        clock: Callable[[], datetime] = utcnow,
        sleep: Callable[[float], None] = time.sleep,
        limiter: RateLimiter | None = None,
        read_retries: int = 2,
        max_throttle_waits: int = 5,
    ) -> None:
        if not _OBJECT_ID.match(realm_id):
            raise ValueError("realm id must be 1-64 letters, digits, '-' or '_'")
        self.realm_id = realm_id
        self._http = http
        self._clock, self._sleep = clock, sleep
        self._oauth = OAuthClient(settings_like, token_store, http=http, clock=clock)
        self._limiter = limiter or RateLimiter(clock=clock, sleep=sleep)
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
        name = _entity_name(entity)
        params = {"include": "allowduplicatedocnum"} if allow_duplicate_docnum else {}  # ref §10
        return self._entity_call("create", name, "POST", name.lower(), body, request_id, params)

    def update(
        self, entity: str, body: Mapping[str, Any], *, request_id: str, sparse: bool = True
    ) -> QboResult:
        """Update by Id and SyncToken; sparse by default: a full update wipes omitted fields (ref §11.11)."""
        if not body.get("Id") or body.get("SyncToken") in (None, ""):
            raise ValueError("an update needs the object's Id and SyncToken (read it first)")
        payload = {**body, "sparse": True} if sparse else {**body, "sparse": False}
        name = _entity_name(entity)
        return self._entity_call("update", name, "POST", name.lower(), payload, request_id, {})

    def delete(self, entity: str, id: str, sync_token: str, request_id: str) -> QboResult:
        """Delete a transaction (name lists cannot be deleted: set Active false instead, ref §5)."""
        name = _entity_name(entity)
        if name in NAME_LISTS:
            raise ValueError(f"{name} cannot be deleted in QBO; update it with Active false (ref §5)")
        body = {"Id": _check_id(id), "SyncToken": str(sync_token)}
        return self._entity_call(
            "delete", name, "POST", name.lower(), body, request_id, {"operation": "delete"}
        )

    def read(self, entity: str, id: str) -> QboResult:
        name = _entity_name(entity)
        req = _Request("read", name, "GET", f"{name.lower()}/{_check_id(id)}", {})
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
        rid = _check_request_id(request_id, _REQUEST_ID_MAX)
        req = _Request(
            op,
            name,
            method,
            path,
            {**params, "requestid": rid},
            _dumps(body),
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
        obj = _entity_object(result.data, name, needs_id=req.operation in ("create", "update"))
        if obj is None:  # a 2xx that does not name the object: a write may or may not have landed
            raise QboCallError(_malformed(result, req.write))
        return replace(result, data=obj)

    # queries
    def query(self, sql: str | Select) -> list[dict[str, Any]]:
        """Run a query, paging by 1000 (STARTPOSITION/MAXRESULTS) to a short page, unless sql pages itself."""
        text = str(sql)
        if _COUNT.match(text):
            raise ValueError("use count() for count(*) queries")
        if _has_paging(text):
            rows = self._query_page(text)
        else:
            rows, start = [], 1
            while True:
                page = self._query_page(f"{text} STARTPOSITION {start} MAXRESULTS {PAGE_SIZE}")
                rows.extend(page)
                if len(page) < PAGE_SIZE:
                    break
                start += PAGE_SIZE
        return [r for r in rows if sql.keeps(r)] if isinstance(sql, Select) else rows

    def query_all(
        self,
        entity: str,
        where: Mapping[str, Any] | Sequence[tuple[str, str, Any]] | None = None,
        include_inactive: bool = False,
    ) -> list[dict[str, Any]]:
        """Every row of an entity (paged, ordered by Id so pages do not shift), optionally filtered."""
        return self.query(self._select(select(entity), where, include_inactive).order_by("Id"))

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
            raise QboCallError(_malformed(result, False))
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
            raise QboCallError(_malformed(result, False))
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
        names = [_entity_name(e) for e in entities]
        if not names:
            raise ValueError("cdc needs at least one entity")
        if bad := [n for n in names if n in _NO_CDC]:
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
            _merge(merged, found)
            if not capped:
                break
            capped_once = True
            newest = max((t for objs in found.values() for o in objs if (t := _updated_at(o))), default=None)
            if newest is None or newest <= cursor:
                stalled = True  # over 1000 changes share one instant: no shorter window exists
                break
            cursor = newest  # the next window starts at the newest change seen (inclusive, deduplicated)
        if capped_once:
            for name in names:
                self._cdc_verify(name, since, merged[name], stalled)
        return {n: _ordered(merged[n].values(), until) for n in names}

    def _cdc_verify(self, name: str, since: datetime, into: dict[str, dict[str, Any]], stalled: bool) -> None:
        where = [("MetaData.LastUpdatedTime", ">=", since)]
        inactive = name in NAME_LISTS
        live = sum(1 for o in into.values() if not _deleted(o) and (t := _updated_at(o)) and t >= since)
        if not stalled and self.count(name, where, include_inactive=inactive) <= live:
            return
        log.warning(
            "CDC for %s since %s was capped and incomplete; completing it with a paged query",
            name,
            since.isoformat(),
        )
        _merge({name: into}, {name: self.query_all(name, where, include_inactive=inactive)})

    def _cdc_call(
        self, names: Sequence[str], since: datetime
    ) -> tuple[dict[str, list[dict[str, Any]]], bool]:
        params = {"entities": ",".join(names), "changedSince": since.isoformat(timespec="seconds")}
        result = self._call(_Request("cdc", ",".join(names), "GET", "cdc", params))
        if not result.ok:
            raise QboCallError(result)
        try:
            found = _cdc_objects(result.data)
        except (TypeError, ValueError):  # not the shape of ref §7: nothing in it can be trusted
            raise QboCallError(_malformed(result, False)) from None
        return found, sum(len(v) for v in found.values()) >= CDC_MAX_OBJECTS

    # batch
    def batch(
        self, items: Sequence[BatchItem | Mapping[str, Any]], *, request_id: str
    ) -> dict[str, QboResult]:
        """Send items in batches of at most 30 (ref §8); results matched by bId, one per item, never raises
        for item faults. After a batch fails as a whole, the later ones are not sent (`transport.not_sent`).
        With more than one batch, each gets a request id derived from `request_id` and its bIds.
        """
        wire = [i.to_wire() if isinstance(i, BatchItem) else dict(i) for i in items]
        _check_bids(wire)
        chunks = [wire[i : i + BATCH_MAX_ITEMS] for i in range(0, len(wire), BATCH_MAX_ITEMS)]
        results: dict[str, QboResult] = {}
        stopped: QboResult | None = None
        for chunk in chunks:
            rid = request_id if len(chunks) == 1 else _chunk_request_id(request_id, chunk)
            _check_request_id(rid, _BATCH_REQUEST_ID_MAX)
            if stopped is not None:
                held = (
                    stopped.outcome
                    if stopped.outcome.dimension == "authorization"
                    else outcome_for("transport.not_sent")
                )
                results.update(_each_item(chunk, QboResult("batch", None, held, request_id=rid, attempts=0)))
                continue
            req = _Request(
                "batch",
                None,
                "POST",
                "batch",
                {"requestid": rid},
                _dumps({"BatchItemRequest": chunk}),
                "application/json",
                rid,
                write=any(w.get("operation") for w in chunk),
                batch=True,
            )
            result = self._call(req)
            if result.ok:
                results.update(self._batch_results(result, chunk))
            else:
                results.update(_each_item(chunk, result))
                stopped = result
        return results

    def _batch_results(self, result: QboResult, chunk: list[dict[str, Any]]) -> dict[str, QboResult]:
        listed = (result.data or {}).get("BatchItemResponse")
        answers = {
            str(a.get("bId")): a for a in (listed if isinstance(listed, list) else []) if isinstance(a, Mapping)
        }
        out: dict[str, QboResult] = {}
        for item in chunk:
            bid, entity, write = str(item["bId"]), _item_entity(item), bool(item.get("operation"))
            operation = str(item.get("operation") or "query")
            base = replace(
                result,
                operation=f"batch.{item.get('operation') or 'query'}",
                entity=entity,
                bid=bid,
                data=None,
            )
            answer = answers.get(bid)
            if answer is None:  # sent, no answer for it: a write may or may not have happened
                out[bid] = replace(
                    base, outcome=classify(result.status, transport_error="malformed", write=write)
                )
            elif (fault := _fault_from_json(answer)) is not None:
                out[bid] = replace(base, **_fault_result(200, fault, write, operation))
            elif "Query" in item:
                out[bid] = replace(base, data=answer.get("QueryResponse"))
            else:
                obj = _entity_object(answer, entity or "", needs_id=item.get("operation") != "delete")
                # An answer that names no object proves nothing: for a write, the outcome is unknown.
                out[bid] = replace(base, data=obj) if obj is not None else _malformed(base, write)
        return out

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
            except _HeldTooLong as held:
                return _not_sent(
                    req, outcome_for("transport.throttled"), attempts - 1, retry_after=held.seconds
                )
            result = self._interpret(req, response, broken, duration, attempts, token)
            result = replace(result, throttle_waits=throttles)
            if result.outcome.reason == "transport.throttled" and throttles < self._max_throttle_waits:
                throttles += 1
                wait = result.retry_after if result.retry_after is not None else _THROTTLE_DEFAULT_WAIT
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
            retry_after=_retry_after(response.headers, self._clock()),
        )
        parsed = parse_body(response.content, response.headers.get("content-type"))
        if parsed.fault is not None:  # including a 200 that carries a Fault (ref §3)
            fault = _redact_fault(parsed.fault, token)  # a gateway 401 has echoed the rejected token
            fields = _fault_result(status, fault, req.write, req.operation)
            return QboResult(req.operation, req.entity, **facts, **fields)
        if 200 <= status < 300 and parsed.kind == "json" and isinstance(parsed.body, dict):
            return QboResult(req.operation, req.entity, ACCEPTED, data=parsed.body, **facts)
        if 200 <= status < 300 and req.batch and parsed.kind == "xml" and (items := _xml_batch(parsed.body)):
            return QboResult(req.operation, req.entity, ACCEPTED, data=items, **facts)
        if 200 <= status < 300:  # truncated JSON, or XML or HTML where JSON was asked
            outcome = classify(status, transport_error="malformed", write=req.write)
        else:  # an error without a readable fault: HTML 503 pages, bare 502s (ref §3)
            outcome = classify(status, write=req.write)
        return QboResult(req.operation, req.entity, outcome, message=_redact(parsed.summary, token), **facts)

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


def _error_line(e: FaultError) -> str:
    return f"{e.code or '-'}" + (f" {e.element}" if e.element else "") + f": {e.detail or e.message or ''}"


def _fault_result(status: int, fault: Fault, write: bool, operation: str | None) -> dict[str, Any]:
    """The classified fault as QboResult fields: every error is classified and kept; the one PRECEDENCE puts first
    decides the outcome and fills code, message and element, and the detail also names the others, so a record's
    chain shows all of them (a 6140 beside three missing AccountRefs must not hide them)."""
    triples = [(e.code, e.message, e.detail) for e in fault.errors]
    index, outcomes = classify_errors(status, triples, fault.type, write=write, operation=operation)
    deciding = fault.errors[index] if fault.errors else FaultError(None)
    others = [e for i, e in enumerate(fault.errors) if i != index]
    detail = deciding.detail
    if others:
        also = "; ".join(_error_line(e) for e in others)
        detail = f"{detail or deciding.message or ''} (also {also})"
    return {
        "outcome": outcomes[index],
        "code": deciding.code,
        "message": deciding.message,
        "detail": detail,
        "element": deciding.element,
        "fault_type": fault.type,
        "errors": fault.errors,
        "error_outcomes": outcomes if fault.errors else (),
    }


def _each_item(chunk: list[dict[str, Any]], result: QboResult) -> dict[str, QboResult]:
    return {
        str(w["bId"]): replace(
            result,
            operation=f"batch.{w.get('operation') or 'query'}",
            entity=_item_entity(w),
            bid=str(w["bId"]),
            data=None,
        )
        for w in chunk
    }


def _malformed(result: QboResult, write: bool) -> QboResult:
    """A 2xx whose JSON is not the shape QBO documents: unreadable, and for a write, outcome unknown."""
    return replace(result, outcome=classify(result.status, transport_error="malformed", write=write), data=None)


def _query_response(result: QboResult) -> Mapping[str, Any]:
    response = (result.data or {}).get("QueryResponse")
    if not isinstance(response, Mapping):
        raise QboCallError(_malformed(result, False))
    return response


def _cdc_objects(body: Any) -> dict[str, list[dict[str, Any]]]:
    """`{"CDCResponse":[{"QueryResponse":[{"Customer":[..]},..]}]}` (ref §7); TypeError for any other shape."""
    blocks = body.get("CDCResponse") if isinstance(body, Mapping) else None
    if not isinstance(blocks, list):
        raise TypeError("CDCResponse is not a list")
    found: dict[str, list[dict[str, Any]]] = {}
    for block in blocks:
        responses = (block.get("QueryResponse") or []) if isinstance(block, Mapping) else None
        if not isinstance(responses, list) or not all(isinstance(r, Mapping) for r in responses):
            raise TypeError("a CDC block is not a list of query responses")
        for response in responses:
            for key, value in response.items():
                if isinstance(value, list):
                    if not all(isinstance(o, dict) for o in value):
                        raise TypeError(f"a CDC {key} entry is not an object")
                    found.setdefault(_entity_name(key), []).extend(value)
    return found


def _entity_object(body: Any, name: str, *, needs_id: bool) -> dict[str, Any] | None:
    """The entity of `{"Bill": {...}, "time": ..}` (ref §5), or None when the body names none.

    Creates and updates must also carry the object's Id: a record is marked synced by it.
    """
    if not isinstance(body, dict):
        return None
    obj = body.get(name, next((v for k, v in body.items() if k.lower() == name.lower()), None))
    if not isinstance(obj, dict) or (needs_id and not obj.get("Id")):
        return None
    return obj


def _check_request_id(request_id: str, limit: int) -> str:
    if not isinstance(request_id, str) or not _VISIBLE_ASCII.match(request_id) or len(request_id) > limit:
        raise ValueError(f"requestid must be 1-{limit} visible ASCII characters (ref §1)")
    return request_id


def _check_id(value: str) -> str:
    if not _OBJECT_ID.match(str(value)):
        raise ValueError(f"not a QBO object id: {value!r}")
    return str(value)


def _check_bids(wire: list[dict[str, Any]]) -> None:
    bids = [str(w.get("bId", "")) for w in wire]
    if any(not b or len(b) > _BID_MAX or not _VISIBLE_ASCII.match(b) for b in bids):
        raise ValueError(f"every batch item needs a bId of 1-{_BID_MAX} visible characters (ref §1)")
    if len(set(bids)) != len(bids):
        raise ValueError("batch bIds must be unique: results are matched by bId (ref §8)")


_BATCH_NAMESPACE = uuid.UUID("5b1e0c52-4f0e-4a55-9d59-3f6f1f0c9a21")


def _chunk_request_id(request_id: str, chunk: list[dict[str, Any]]) -> str:
    # Deterministic (the same retry gets the same id, so QBO replays) and bound to the chunk's items,
    # so a retry with a different set of items is never mistaken for a repeat. 36 characters (ref §1).
    return str(uuid.uuid5(_BATCH_NAMESPACE, request_id + "|" + ",".join(str(w["bId"]) for w in chunk)))


def _updated_at(obj: Mapping[str, Any]) -> datetime | None:
    meta = obj.get("MetaData")
    raw = meta.get("LastUpdatedTime") if isinstance(meta, Mapping) else None
    return _fault_time(raw) if isinstance(raw, str) else None


def _deleted(obj: Mapping[str, Any]) -> bool:
    return str(obj.get("status", "")).lower() == "deleted"


def _rank(obj: Mapping[str, Any]) -> tuple[int, datetime, int]:
    # Deleted is final (deleted transactions stay dead, ref §11.13); then the latest change, then SyncToken.
    token = str(obj.get("SyncToken", ""))
    return (
        int(_deleted(obj)),
        _updated_at(obj) or datetime.min.replace(tzinfo=UTC),
        int(token) if token.isdigit() else -1,
    )


def _merge(into: dict[str, dict[str, dict[str, Any]]], found: Mapping[str, list[dict[str, Any]]]) -> None:
    for name, objects in found.items():
        bucket = into.get(name)
        if bucket is None:
            continue
        for obj in objects:
            key = str(obj.get("Id"))
            if key not in bucket or _rank(obj) >= _rank(bucket[key]):
                bucket[key] = obj


def _ordered(objects: Any, until: datetime | None) -> list[dict[str, Any]]:
    kept = [o for o in objects if until is None or (t := _updated_at(o)) is None or t < until]
    return sorted(kept, key=lambda o: (_updated_at(o) or datetime.min.replace(tzinfo=UTC), str(o.get("Id"))))
