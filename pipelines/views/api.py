"""The reads a program asks for by name (the CLI's status, record, find, queue, digest, audit check), as JSON-safe data.

The CLI runs them on the store itself, or through the server's local API while the server holds the file; either
way they read without waiting for a sync cycle (reads take no company lock).
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

from pipelines import audit
from pipelines.store import Store
from pipelines.views import firm, metrics
from pipelines.views.queue import OPEN_STATUSES, action_queue, digest, filter_queue, queue_summary
from pipelines.views.search import LIMIT, search

__all__ = ["VIEWS", "read_view"]


def _safe(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


def _status(store: Store, realm_id: str, now: datetime, params: dict[str, Any]) -> dict[str, Any]:
    summary = metrics.status_summary(store, realm_id)
    summary["audit"] = _audit_state(store)
    # Per company, for the period being closed (the firm view): every company of the store, not only this one.
    summary["firm"] = firm.companies(store, now, params.get("period"))
    return summary


def _record(store: Store, realm_id: str, now: datetime, params: dict[str, Any]) -> dict[str, Any]:
    return metrics.record_chain(store, realm_id, str(params["key"]))


def _find(store: Store, realm_id: str, now: datetime, params: dict[str, Any]) -> dict[str, Any]:
    """Records by document number or vendor or customer name (the Record page's search), the closest first."""
    found = search(store, realm_id, str(params.get("text") or ""))
    return {"count": found.height, "more": found.height >= LIMIT, "matches": found.to_dicts()}


def _queue(store: Store, realm_id: str, now: datetime, params: dict[str, Any]) -> dict[str, Any]:
    frame = action_queue(store, realm_id, now=now, statuses=params.get("status") or OPEN_STATUSES)
    owner = params.get("owner")
    frame = filter_queue(frame, owners=[owner] if owner else None, dimensions=params.get("dimension"))
    limit = params.get("limit")
    shown = frame.head(limit) if limit else frame
    columns = [c for c in shown.columns if c != "link"]
    return {"count": frame.height, "summary": queue_summary(frame), "items": shown.select(columns).to_dicts()}


def _digest(store: Store, realm_id: str, now: datetime, params: dict[str, Any]) -> dict[str, Any]:
    hours = float(params.get("since_hours") or 24.0)
    return digest(store, realm_id, now=now, since=now - timedelta(hours=hours))


def _audit_state(store: Store) -> dict[str, Any]:
    check = store.audit_check
    return {"ok": check.ok, "checked_rows": check.rows, "newest_hash": check.newest_hash, "problem": check.problem}


def _audit_verify(store: Store, realm_id: str, now: datetime, params: dict[str, Any]) -> dict[str, Any]:
    check = audit.verify(store.cursor(), full=True)
    return {"ok": check.ok, "rows": check.rows, "newest_hash": check.newest_hash, "problem": check.problem}


VIEWS = {
    "status": _status,
    "record": _record,
    "find": _find,
    "queue": _queue,
    "digest": _digest,
    "audit_verify": _audit_verify,
}


def read_view(store: Store, name: str, realm_id: str, now: datetime, params: dict[str, Any]) -> dict[str, Any]:
    """One named read; LookupError for an unknown view or record, ValueError for a bad parameter."""
    view = VIEWS.get(name)
    if view is None:
        raise LookupError(f"there is no view {name!r}")
    return _safe(view(store, realm_id, now, params))
