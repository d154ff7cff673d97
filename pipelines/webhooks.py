"""QBO webhooks (ref §9): verify `intuit-signature`, read legacy and CloudEvents bodies, queue what they name.

The route answers at once; the scheduler re-reads the named objects afterwards (QBO wants a reply within 3 s).
Nothing here touches the store on the request path: the inbox is memory, persisted by the scheduler.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pipelines.qbo_pull import PULLED_ENTITIES
from pipelines.store import Store

__all__ = [
    "SIGNATURE_HEADER",
    "WebhookDelivery",
    "WebhookInbox",
    "WebhookPayloadError",
    "parse_notifications",
    "persist_deliveries",
    "sign",
    "verify_signature",
]

SIGNATURE_HEADER = "intuit-signature"
Refs = dict[str, dict[str, list[str]]]  # realm -> QBO entity -> ids, in the order they were named

# CloudEvents carry the entity in lower case inside `type` (qbo.account.updated.v1); QBO's names are CamelCase.
_ENTITY_NAMES = {e.lower(): e for e in (*PULLED_ENTITIES, "Estimate", "CreditMemo", "Deposit", "Transfer")}


class WebhookPayloadError(ValueError):
    """A signed body that is neither a legacy notification nor a CloudEvents array."""


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


def _add(refs: Refs, realm: Any, entity: Any, obj_id: Any) -> None:
    if not realm or not entity or obj_id in (None, ""):
        raise WebhookPayloadError("an event without realm, entity or id")
    name = _ENTITY_NAMES.get(str(entity).lower(), str(entity))
    ids = refs.setdefault(str(realm), {}).setdefault(name, [])
    if str(obj_id) not in ids:
        ids.append(str(obj_id))


def _cloudevent_entity(event_type: str) -> str:
    parts = event_type.split(".")  # qbo.<entity>.<operation>.v1
    if len(parts) < 3 or parts[0] != "qbo":
        raise WebhookPayloadError(f"unknown CloudEvents type {event_type!r}")
    return parts[1]


def parse_notifications(body: bytes) -> tuple[str, Refs]:
    """The format and what a delivery names: {realm: {entity: [ids]}}."""
    try:
        payload = json.loads(body)
    except ValueError:
        raise WebhookPayloadError("the body is not JSON") from None
    refs: Refs = {}
    if isinstance(payload, dict) and isinstance(payload.get("eventNotifications"), list):
        for note in payload["eventNotifications"]:
            entities = ((note or {}).get("dataChangeEvent") or {}).get("entities") or []
            for change in entities:
                _add(refs, note.get("realmId"), change.get("name"), change.get("id"))
        return "legacy", refs
    if isinstance(payload, list):
        for event in payload:
            if not isinstance(event, dict):
                raise WebhookPayloadError("a CloudEvents array holds objects")
            _add(
                refs,
                event.get("intuitaccountid"),
                _cloudevent_entity(str(event.get("type", ""))),
                event.get("intuitentityid"),
            )
        return "cloudevents", refs
    raise WebhookPayloadError("neither eventNotifications (legacy) nor a CloudEvents array")


@dataclass
class WebhookDelivery:
    """One delivery as received: its verdict and, when valid, what it named."""

    received_at: datetime
    signature: str
    format: str | None = None
    refs: Refs = field(default_factory=dict)
    error: str | None = None


class WebhookInbox:
    """Deliveries between the route and the scheduler: named objects to re-read, and counters for /healthz."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending: dict[str, dict[str, list[str]]] = {}
        self._unsaved: list[WebhookDelivery] = []
        self.counts = {"valid": 0, "invalid": 0, "missing": 0, "unreadable": 0}
        self.last_valid_at: datetime | None = None
        self.last_failure_at: datetime | None = None

    def receive(self, delivery: WebhookDelivery) -> None:
        with self._lock:
            kind = delivery.signature if delivery.error is None else "unreadable"
            self.counts[kind] = self.counts.get(kind, 0) + 1
            if delivery.signature == "valid" and delivery.error is None:
                self.last_valid_at = delivery.received_at
                for realm, entities in delivery.refs.items():
                    for entity, ids in entities.items():
                        known = self._pending.setdefault(realm, {}).setdefault(entity, [])
                        known.extend(i for i in ids if i not in known)
            else:
                self.last_failure_at = delivery.received_at
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
                "received": dict(self.counts),
                "signature_failures": self.counts["invalid"] + self.counts["missing"],
                "pending_objects": sum(len(ids) for e in self._pending.values() for ids in e.values()),
                "last_valid_at": self.last_valid_at.isoformat() if self.last_valid_at else None,
                "last_failure_at": self.last_failure_at.isoformat() if self.last_failure_at else None,
            }


def persist_deliveries(store: Store, deliveries: list[WebhookDelivery]) -> list[int]:
    """Write deliveries to webhook_events (one row per realm named; one row for a refused delivery)."""
    ids: list[int] = []
    if not deliveries:
        return ids
    with store.transaction() as tx:
        for d in deliveries:
            rows = [(realm, entities) for realm, entities in d.refs.items()] or [(None, None)]
            for realm, entities in rows:
                event_id = int(tx.execute("SELECT nextval('webhook_event_seq')").fetchall()[0][0])
                tx.execute(
                    "INSERT INTO webhook_events (event_id, received_at, signature, format, realm_id, entities, error) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?)",
                    [
                        event_id,
                        d.received_at,
                        d.signature,
                        d.format,
                        realm,
                        json.dumps(entities) if entities else None,
                        d.error,
                    ],
                ).fetchall()
                ids.append(event_id)
    return ids
