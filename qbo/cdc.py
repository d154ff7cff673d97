"""Change data capture (ref §7): its limits, and CDC answers read, merged by Id and ordered by change."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from qbo.query import entity_name
from qbo.wire import parse_time

__all__ = [
    "CDC_MAX_LOOKBACK",
    "CDC_MAX_OBJECTS",
    "NO_CDC",
    "CdcWindowError",
    "cdc_objects",
    "is_deleted",
    "merge",
    "ordered",
    "updated_at",
]

CDC_MAX_LOOKBACK = timedelta(days=30)  # ref §7
CDC_MAX_OBJECTS = 1000  # per CDC response (ref §7)
NO_CDC = frozenset({"JournalCode", "TaxAgency", "TimeActivity", "TaxCode", "TaxRate"})  # ref §7


class CdcWindowError(ValueError):
    """CDC looks back at most 30 days (ref §7); older changes need a full query instead."""


def cdc_objects(body: Any) -> dict[str, list[dict[str, Any]]]:
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
                    found.setdefault(entity_name(key), []).extend(value)
    return found


def updated_at(obj: Mapping[str, Any]) -> datetime | None:
    meta = obj.get("MetaData")
    raw = meta.get("LastUpdatedTime") if isinstance(meta, Mapping) else None
    return parse_time(raw) if isinstance(raw, str) else None


def is_deleted(obj: Mapping[str, Any]) -> bool:
    return str(obj.get("status", "")).lower() == "deleted"


def _rank(obj: Mapping[str, Any]) -> tuple[int, datetime, int]:
    # Deleted is final (deleted transactions stay dead, ref §11.13); then the latest change, then SyncToken.
    token = str(obj.get("SyncToken", ""))
    return (
        int(is_deleted(obj)),
        updated_at(obj) or datetime.min.replace(tzinfo=UTC),
        int(token) if token.isdigit() else -1,
    )


def merge(into: dict[str, dict[str, dict[str, Any]]], found: Mapping[str, list[dict[str, Any]]]) -> None:
    for name, objects in found.items():
        bucket = into.get(name)
        if bucket is None:
            continue
        for obj in objects:
            key = str(obj.get("Id"))
            if key not in bucket or _rank(obj) >= _rank(bucket[key]):
                bucket[key] = obj


def ordered(objects: Any, until: datetime | None) -> list[dict[str, Any]]:
    kept = [o for o in objects if until is None or (t := updated_at(o)) is None or t < until]
    return sorted(kept, key=lambda o: (updated_at(o) or datetime.min.replace(tzinfo=UTC), str(o.get("Id"))))
