"""Webhook delivery (ref §9): legacy or CloudEvents JSON signed with `intuit-signature`, in the background."""

from __future__ import annotations

import base64
import hashlib
import hmac
import queue
import threading
import uuid
from collections import deque
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx

from qbo.sandbox.clock import format_cloudevent_time, format_webhook_time
from qbo.sandbox.wire import dumps

__all__ = [
    "WEBHOOK_FORMATS",
    "WebhookConfig",
    "WebhookDispatcher",
    "cloudevents_payload",
    "legacy_payload",
    "sign",
]

WEBHOOK_FORMATS = ("legacy", "cloudevents")
_PAST = {"Create": "created", "Update": "updated", "Delete": "deleted", "Void": "voided", "Merge": "merged"}


@dataclass(frozen=True)
class WebhookConfig:
    url: str
    verifier_token: str
    format: str = "legacy"


def sign(verifier_token: str, body: bytes) -> str:
    """`intuit-signature`: base64(HMAC-SHA256(key=verifier token, msg=raw body)) (ref §9)."""
    digest = hmac.new(verifier_token.encode("utf-8"), body, hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


def legacy_payload(realm: str, entity: str, obj_id: str, operation: str, when: datetime) -> dict[str, Any]:
    """One realm per notification, ids only (ref §9)."""
    change = {"name": entity, "id": obj_id, "operation": operation, "lastUpdated": format_webhook_time(when)}
    return {"eventNotifications": [{"realmId": realm, "dataChangeEvent": {"entities": [change]}}]}


def cloudevents_payload(realm: str, entity: str, obj_id: str, operation: str, when: datetime) -> list[Any]:
    """A JSON array of CloudEvents (ref §9); the `type` names beyond the sample are unconfirmed."""
    source = base64.b64encode(f"realm:{realm}".encode()).decode("ascii")
    return [
        {
            "specversion": "1.0",
            "id": str(uuid.uuid4()),
            "source": f"intuit.{source}",
            "type": f"qbo.{entity.lower()}.{_PAST.get(operation, operation.lower())}.v1",
            "datacontenttype": "application/json",
            "time": format_cloudevent_time(when),
            "intuitentityid": obj_id,
            "intuitaccountid": realm,
            "data": {},
        }
    ]


class WebhookDispatcher:
    """Posts each change as it happens (the sandbox is near real time), one at a time, best effort.

    Deliveries run on one background thread, in order; a failed delivery is recorded, not retried.
    """

    def __init__(self, client: httpx.Client | None = None) -> None:
        self.config: WebhookConfig | None = None
        self._client = client
        self._owns_client = client is None
        self._queue: queue.Queue[tuple[WebhookConfig, bytes] | None] = queue.Queue()
        self._pending = 0
        self._idle = threading.Condition()
        self._thread: threading.Thread | None = None
        self.deliveries: deque[dict[str, Any]] = deque(maxlen=1000)

    def configure(self, url: str, verifier_token: str, fmt: str = "legacy") -> None:
        if fmt not in WEBHOOK_FORMATS:
            raise ValueError(f"webhook format must be one of {', '.join(WEBHOOK_FORMATS)}, not {fmt!r}")
        if not url or not verifier_token:
            raise ValueError("a webhook needs a url and a verifier_token")
        self.config = WebhookConfig(url, verifier_token, fmt)

    def clear(self) -> None:
        self.config = None

    def emit(self, realm: str, entity: str, obj_id: str, operation: str, when: datetime) -> None:
        config = self.config
        if config is None:
            return
        build = cloudevents_payload if config.format == "cloudevents" else legacy_payload
        body = dumps(build(realm, entity, obj_id, operation, when))
        with self._idle:
            self._pending += 1
        self._ensure_thread()
        self._queue.put((config, body))

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until every queued delivery was attempted; False on timeout."""
        with self._idle:
            return self._idle.wait_for(lambda: self._pending == 0, timeout=timeout)

    def close(self) -> None:
        thread = self._thread
        if thread is not None:
            self._queue.put(None)
            thread.join(timeout=5)
            self._thread = None
        if self._owns_client and self._client is not None:
            self._client.close()
            self._client = None

    def _ensure_thread(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._run, name="sandbox-webhooks", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while True:
            job = self._queue.get()
            if job is None:
                return
            config, body = job
            record: dict[str, Any] = {"url": config.url, "format": config.format, "body": body}
            try:
                if self._client is None:
                    self._client = httpx.Client(timeout=10.0)
                response = self._client.post(
                    config.url,
                    content=body,
                    headers={
                        "content-type": "application/json",
                        "intuit-signature": sign(config.verifier_token, body),
                    },
                )
                record["status"] = response.status_code
            except httpx.HTTPError as exc:
                record["error"] = f"{type(exc).__name__}: {exc}"
            self.deliveries.append(record)
            with self._idle:
                self._pending -= 1
                self._idle.notify_all()
