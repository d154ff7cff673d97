"""QBO webhooks (ref §9): verify `intuit-signature`, read legacy and CloudEvents bodies, queue what they name.

The route answers at once; the scheduler re-reads the named objects afterwards (QBO wants a reply within 3 s).
Nothing here touches the store on the request path: the inbox is memory, persisted by the scheduler.
A signed delivery seen before (same bytes) or whose newest event is older than REPLAY_WINDOW is acknowledged
and ignored: QBO retries until it gets a 200, so a replay must not be refused with an error, only not acted on.
A body is read in chunks and refused past MAX_BODY_BYTES before it is held whole; a signed body of any JSON shape that
is not a notification is answered 400 (never 500, which QBO would retry for ever). Deliveries that are refused or
ignored are all counted, but only a sample of them is kept (REFUSED_SAMPLE an hour), in memory and in the store.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from pipelines.pull import PULLED_ENTITIES
from pipelines.store import Store

__all__ = [
    "MAX_BODY_BYTES",
    "REFUSED_KEEP",
    "REFUSED_SAMPLE",
    "REPLAY_WINDOW",
    "SIGNATURE_HEADER",
    "WebhookBodyTooLargeError",
    "WebhookDelivery",
    "WebhookInbox",
    "WebhookPayloadError",
    "delivery_digest",
    "handle_delivery",
    "newest_event_time",
    "parse_notifications",
    "persist_deliveries",
    "read_body_limited",
    "refuse_oversize",
    "sign",
    "verify_signature",
]

SIGNATURE_HEADER = "intuit-signature"
# How long a delivery's digest is remembered, and the age past which its events are stale. QBO retries a delivery
# for hours (ref §9: 0 s ... 6 h); a later one is ignored, and the scheduled CDC pull still brings the change.
REPLAY_WINDOW = timedelta(hours=24)
# The largest body read. QBO's notifications name objects by id only (ref §9): a legacy entry is about 100 bytes and a
# CloudEvents event about 400, so 1 MiB holds 2,500 to 10,000 changes in one delivery, far more than one company's
# 1-5 minute aggregation brings here. A larger body is refused with 413 after at most this much (and one chunk) was
# read; QBO retries it, and the scheduled CDC pull brings the same changes meanwhile.
MAX_BODY_BYTES = 1 << 20
# Refused and ignored deliveries kept per clock hour (in memory until saved, and in webhook_events); the rest are only
# counted. 3,000 unsigned POSTs once made 3,006 rows. Fresh signed deliveries are always kept.
REFUSED_SAMPLE = 20
# How long the kept sample stays in webhook_events.
REFUSED_KEEP = timedelta(days=30)
_EARLIEST, _LATEST = datetime(1970, 1, 1, tzinfo=UTC), datetime(9000, 1, 1, tzinfo=UTC)
# Realm ids, entity names and object ids are short: a longer one is not QBO's.
_MAX_NAME = 100
Refs = dict[str, dict[str, list[str]]]  # realm -> QBO entity -> ids, in the order they were named

# CloudEvents carry the entity in lower case inside `type` (qbo.account.updated.v1); QBO's names are CamelCase.
_ENTITY_NAMES = {e.lower(): e for e in (*PULLED_ENTITIES, "Estimate", "CreditMemo", "Deposit", "Transfer")}


class WebhookPayloadError(ValueError):
    """A signed body that is neither a legacy notification nor a CloudEvents array."""


class WebhookBodyTooLargeError(ValueError):
    """A body larger than the limit; `seen` is how many bytes were declared or read before stopping."""

    def __init__(self, limit: int, seen: int) -> None:
        self.limit, self.seen = limit, seen
        super().__init__(f"the body is larger than {limit:,} bytes (stopped at {seen:,})")


class _Request(Protocol):  # what read_body_limited needs of a Starlette (ASGI) request
    @property
    def headers(self) -> Mapping[str, str]: ...

    def stream(self) -> Any: ...


async def read_body_limited(request: _Request, limit: int = MAX_BODY_BYTES) -> bytes:
    """The request body, read chunk by chunk; WebhookBodyTooLargeError as soon as it passes `limit` bytes.

    A Content-Length over the limit is refused before anything is read; otherwise at most limit + one chunk is held.
    """
    declared = (request.headers.get("content-length") or "").strip()
    if declared.isdigit() and int(declared) > limit:
        raise WebhookBodyTooLargeError(limit, int(declared))
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise WebhookBodyTooLargeError(limit, size)
        chunks.append(chunk)
    return b"".join(chunks)


def sign(verifier_token: str, body: bytes) -> str:
    """base64(HMAC-SHA256(key=verifier token, msg=raw body)), as QBO sends it."""
    return base64.b64encode(hmac.new(verifier_token.encode(), body, hashlib.sha256).digest()).decode("ascii")


def verify_signature(verifier_token: str | None, body: bytes, signature: str | None) -> str:
    """'valid', 'invalid' or 'missing'; compared in constant time over the raw bytes as received."""
    if not signature:
        return "missing"
    if not verifier_token:
        return "invalid"  # nothing can be verified without the app's verifier token
    expected = sign(verifier_token, body).encode("ascii")
    return "valid" if hmac.compare_digest(expected, signature.strip().encode("ascii", "replace")) else "invalid"


def _name(value: Any, what: str) -> str:
    """A realm id, entity name or object id as text: a short string or a whole number, nothing else."""
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise WebhookPayloadError(f"an event's {what} is not text or a number")
    text = str(value)
    if not text or len(text) > _MAX_NAME or not text.isprintable():
        raise WebhookPayloadError(f"an event's {what} is empty, too long or not printable")
    return text


def _add(refs: Refs, realm: Any, entity: Any, obj_id: Any) -> None:
    if realm in (None, "") or entity in (None, "") or obj_id in (None, ""):
        raise WebhookPayloadError("an event without realm, entity or id")
    realm, entity, obj_id = _name(realm, "realm"), _name(entity, "entity"), _name(obj_id, "id")
    name = _ENTITY_NAMES.get(entity.lower(), entity)
    ids = refs.setdefault(realm, {}).setdefault(name, [])
    if obj_id not in ids:
        ids.append(obj_id)


def _cloudevent_entity(event_type: Any) -> str:
    parts = event_type.split(".") if isinstance(event_type, str) else []  # qbo.<entity>.<operation>.v1
    if len(parts) < 3 or parts[0] != "qbo":
        raise WebhookPayloadError(f"unknown CloudEvents type {str(event_type)[:60]!r}")
    return parts[1]


def _json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except ValueError:  # not JSON, not UTF-8, or a number with too many digits
        raise WebhookPayloadError("the body is not JSON") from None
    except RecursionError:
        raise WebhookPayloadError("the body is JSON nested too deeply") from None


def _objects(value: Any, what: str) -> list[dict[str, Any]]:
    """A list of objects (null is an empty list); anything else is not a notification."""
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise WebhookPayloadError(f"{what} is not a list of objects")
    return value


def _legacy_changes(payload: dict[str, Any]) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(notification, entity change) pairs of a legacy body, every level checked for its type."""
    pairs = []
    for note in _objects(payload["eventNotifications"], "eventNotifications"):
        event = note.get("dataChangeEvent")
        if event is not None and not isinstance(event, dict):
            raise WebhookPayloadError("dataChangeEvent is not an object")
        pairs += [(note, change) for change in _objects((event or {}).get("entities"), "entities")]
    return pairs


def parse_notifications(body: bytes) -> tuple[str, Refs]:
    """The format and what a delivery names: {realm: {entity: [ids]}}; WebhookPayloadError for any other body."""
    payload = _json(body)
    refs: Refs = {}
    if isinstance(payload, dict) and isinstance(payload.get("eventNotifications"), list):
        for note, change in _legacy_changes(payload):
            _add(refs, note.get("realmId"), change.get("name"), change.get("id"))
        return "legacy", refs
    if isinstance(payload, list):
        for event in _objects(payload, "a CloudEvents array"):
            _add(
                refs,
                event.get("intuitaccountid"),
                _cloudevent_entity(event.get("type")),
                event.get("intuitentityid"),
            )
        return "cloudevents", refs
    raise WebhookPayloadError("neither eventNotifications (legacy) nor a CloudEvents array")


def delivery_digest(body: bytes) -> str:
    """SHA-256 of the raw body: the same signed bytes twice are the same delivery."""
    return hashlib.sha256(body).hexdigest()


def _parse_time(text: Any) -> datetime | None:
    if not isinstance(text, str):
        return None
    try:
        moment = datetime.fromisoformat(text.strip())
        if moment.tzinfo is None:
            return None  # a time without an offset cannot be compared safely
        moment = moment.astimezone(UTC)
    except (ValueError, OverflowError):
        return None
    # Only times the inbox can add its window to: year 9999 plus a day is no date at all (and was a 500).
    return moment if _EARLIEST < moment < _LATEST else None


def newest_event_time(body: bytes) -> datetime | None:
    """The latest `lastUpdated` (legacy) or `time` (CloudEvents) in a delivery; None when it carries none."""
    try:
        payload = _json(body)
        if isinstance(payload, dict) and isinstance(payload.get("eventNotifications"), list):
            found = [change.get("lastUpdated") for _, change in _legacy_changes(payload)]
        elif isinstance(payload, list):
            found = [event.get("time") for event in payload if isinstance(event, dict)]
        else:
            return None
    except WebhookPayloadError:
        return None
    times = [t for t in map(_parse_time, found) if t is not None]
    return max(times) if times else None


@dataclass
class WebhookDelivery:
    """One delivery as received: its verdict and, when valid, what it named."""

    received_at: datetime
    signature: str
    format: str | None = None
    refs: Refs = field(default_factory=dict)
    error: str | None = None
    digest: str | None = None
    ignored: str | None = None  # "replay" or "stale": acknowledged, not acted on

    @property
    def kind(self) -> str:
        """valid, invalid, missing (the signature), unreadable (signed, not a notification) or too_large."""
        if self.signature == "unverified":
            return "too_large"
        return self.signature if self.error is None else "unreadable"

    @property
    def sampled(self) -> bool:
        """Refused or ignored, so nothing is done with it: kept only in the hour's sample (REFUSED_SAMPLE)."""
        return self.signature != "valid" or self.error is not None or self.ignored is not None


def _hour(moment: datetime) -> datetime:
    return moment.replace(minute=0, second=0, microsecond=0)


class WebhookInbox:
    """Deliveries between the route and the scheduler: named objects to re-read, and counters for /healthz."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending: dict[str, dict[str, list[str]]] = {}
        self._unsaved: list[WebhookDelivery] = []
        self._seen: dict[str, datetime] = {}  # digest -> until when a repeat of it counts as a replay
        self.counts = {
            "valid": 0, "invalid": 0, "missing": 0, "unreadable": 0, "too_large": 0, "replay": 0, "stale": 0,
            "not_stored": 0,  # refused or ignored past the hour's sample: counted here only
        }  # fmt: skip
        self._sample_hour: datetime | None = None
        self._sampled = 0
        self.last_valid_at: datetime | None = None
        self.last_failure_at: datetime | None = None

    def screen(self, digest: str, newest: datetime | None, now: datetime) -> str | None:
        """None for a fresh signed delivery (remembered from now on); "replay" or "stale" for one to ignore."""
        with self._lock:
            for known in [d for d, until in self._seen.items() if until < now]:
                del self._seen[known]
            if newest is not None and newest < now - REPLAY_WINDOW:
                return "stale"
            if digest in self._seen:
                return "replay"
            # Kept until the delivery's own events are stale too, so a replay is always one or the other.
            self._seen[digest] = max(now, newest or now) + REPLAY_WINDOW
            return None

    def recall(self, store: Store, now: datetime) -> int:
        """After a restart: the digests of deliveries received within the window, so a replay stays ignored."""
        rows = store.rows(
            "SELECT digest, max(received_at) FROM webhook_events "
            "WHERE digest IS NOT NULL AND received_at >= ? GROUP BY digest",
            [now - REPLAY_WINDOW],
        )
        with self._lock:
            for digest, received in rows:
                self._seen[digest] = max(self._seen.get(digest, received), received + REPLAY_WINDOW)
        return len(rows)

    def receive(self, delivery: WebhookDelivery) -> None:
        with self._lock:
            kind = delivery.ignored or delivery.kind
            self.counts[kind] = self.counts.get(kind, 0) + 1
            if delivery.signature != "valid" or delivery.error is not None:
                self.last_failure_at = delivery.received_at
            elif not delivery.ignored:  # a replay or a stale delivery is recorded, and nothing is re-read
                self.last_valid_at = delivery.received_at
                for realm, entities in delivery.refs.items():
                    for entity, ids in entities.items():
                        known = self._pending.setdefault(realm, {}).setdefault(entity, [])
                        known.extend(i for i in ids if i not in known)
            if delivery.sampled:
                hour = _hour(delivery.received_at)
                if hour != self._sample_hour:
                    self._sample_hour, self._sampled = hour, 0
                if self._sampled >= REFUSED_SAMPLE:
                    self.counts["not_stored"] += 1
                    return
                self._sampled += 1
            self._unsaved.append(delivery)

    def has_pending(self) -> bool:
        with self._lock:
            return bool(self._pending)

    def pending_realms(self) -> list[str]:
        with self._lock:
            return sorted(self._pending)

    def take(self, realm_id: str) -> dict[str, list[str]]:
        """What the webhooks named for one realm since the last take (the caller re-reads them)."""
        with self._lock:
            return self._pending.pop(realm_id, {})

    def give_back(self, realm_id: str, refs: Mapping[str, list[str]]) -> None:
        """Put refs back after a failed re-read, so the next cycle tries them again."""
        with self._lock:
            for entity, ids in refs.items():
                known = self._pending.setdefault(realm_id, {}).setdefault(entity, [])
                known.extend(i for i in ids if i not in known)

    def checkout(self, realm_id: str) -> tuple[list[WebhookDelivery], dict[str, list[str]]]:
        """At once: every delivery not yet saved, and what they named for this realm.

        Atomic, so a delivery that arrives while the named objects are re-read is neither marked as
        processed too early nor lost (it is saved and taken together with its refs, next time).
        """
        with self._lock:
            out, self._unsaved = self._unsaved, []
            return out, self._pending.pop(realm_id, {})

    def unsaved(self) -> list[WebhookDelivery]:
        with self._lock:
            out, self._unsaved = self._unsaved, []
            return out

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "received": {k: v for k, v in self.counts.items() if k != "not_stored"},
                "not_stored": self.counts["not_stored"],
                "signature_failures": self.counts["invalid"] + self.counts["missing"],
                "ignored": {"replay": self.counts["replay"], "stale": self.counts["stale"]},
                "pending_objects": sum(len(ids) for e in self._pending.values() for ids in e.values()),
                "last_valid_at": self.last_valid_at.isoformat() if self.last_valid_at else None,
                "last_failure_at": self.last_failure_at.isoformat() if self.last_failure_at else None,
            }


def handle_delivery(
    inbox: WebhookInbox, verifier_token: str | None, body: bytes, signature: str | None, received: datetime
) -> tuple[int, dict[str, Any]]:
    """The webhook route's answer (HTTP status, JSON) after the delivery went into the inbox.

    Bad or missing signature: 401. Signed but unreadable: 400. A replay or stale delivery: 200 and ignored,
    because QBO retries anything else and holds later events back until the first is acknowledged (ref §9).
    """
    verdict = verify_signature(verifier_token, body, signature)
    if verdict != "valid":
        inbox.receive(WebhookDelivery(received, verdict))
        return 401, {"error": f"signature {verdict}"}
    try:
        fmt, refs = parse_notifications(body)
    except WebhookPayloadError as err:
        inbox.receive(WebhookDelivery(received, verdict, error=str(err)))
        return 400, {"error": str(err)}
    digest = delivery_digest(body)
    ignored = inbox.screen(digest, newest_event_time(body), received)
    if ignored:
        inbox.receive(WebhookDelivery(received, verdict, fmt, digest=digest, ignored=ignored))
        return 200, {"accepted": 0, "format": fmt, "ignored": ignored}
    inbox.receive(WebhookDelivery(received, verdict, fmt, refs, digest=digest))
    named = sum(len(ids) for entities in refs.values() for ids in entities.values())
    return 200, {"accepted": named, "format": fmt}


def refuse_oversize(
    inbox: WebhookInbox, err: WebhookBodyTooLargeError, received: datetime
) -> tuple[int, dict[str, Any]]:
    """The webhook route's answer to a body over the limit (413), counted in the inbox; nothing of it was verified."""
    inbox.receive(WebhookDelivery(received, "unverified", error=f"too large: {err}"))
    return 413, {"error": str(err)}


# Refused and ignored rows: what the sample counts against, and what ages out after REFUSED_KEEP.
_SAMPLED_SQL = "(signature <> 'valid' OR error IS NOT NULL)"


def persist_deliveries(store: Store, deliveries: list[WebhookDelivery]) -> list[int]:
    """Write deliveries to webhook_events (one row per realm named; one row for a refused or ignored delivery).

    Refused and ignored deliveries are kept only up to REFUSED_SAMPLE an hour, also across restarts, and for
    REFUSED_KEEP; the inbox's counters have them all.
    """
    ids: list[int] = []
    if not deliveries:
        return ids
    with store.transaction() as tx:
        kept: dict[datetime, int] = {}
        for d in deliveries:
            if d.sampled:
                hour = _hour(d.received_at)
                if hour not in kept:
                    kept[hour] = tx.execute(
                        f"SELECT count(*) FROM webhook_events WHERE received_at >= ? AND received_at < ? "
                        f"AND {_SAMPLED_SQL}",
                        [hour, hour + timedelta(hours=1)],
                    ).fetchall()[0][0]
                if kept[hour] >= REFUSED_SAMPLE:
                    continue
                kept[hour] += 1
            # A delivery that named nothing is still recorded, as one row without a realm.
            rows: list[tuple[str | None, dict[str, list[str]] | None]] = list(d.refs.items()) or [(None, None)]
            for realm, entities in rows:
                event_id = int(tx.execute("SELECT nextval('webhook_event_seq')").fetchall()[0][0])
                tx.execute(
                    "INSERT INTO webhook_events (event_id, received_at, signature, format, realm_id, entities, "
                    "error, digest, processed_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [
                        event_id,
                        d.received_at,
                        d.signature,
                        d.format,
                        realm,
                        json.dumps(entities) if entities else None,
                        d.error or (f"ignored: {d.ignored}" if d.ignored else None),
                        d.digest,
                        d.received_at if d.ignored else None,  # nothing left to do for it
                    ],
                ).fetchall()
                ids.append(event_id)
        newest = max(d.received_at for d in deliveries)
        tx.execute(
            f"DELETE FROM webhook_events WHERE received_at < ? AND {_SAMPLED_SQL}", [newest - REFUSED_KEEP]
        ).fetchall()
    return ids
