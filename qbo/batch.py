"""QBO batches (ref §8): the items, their bIds and request ids, and one result per item of an answer."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from qbo.faults import classify
from qbo.ids import VISIBLE_ASCII
from qbo.query import Select, entity_name
from qbo.results import QboResult, fault_result, malformed
from qbo.wire import entity_object, fault_from_json

__all__ = [
    "BATCH_MAX_ITEMS",
    "BATCH_REQUEST_ID_MAX",
    "BID_MAX",
    "BatchItem",
    "check_bids",
    "chunk_request_id",
    "each_item",
    "item_entity",
    "item_results",
]

BATCH_MAX_ITEMS = 30  # 31 is rejected (ref §4, §11.14)
BATCH_REQUEST_ID_MAX = 36  # ref §1
# No bId limit is documented; production batches used bIds of 36 to 65 characters (finoptimal/fo_qbo), so the
# 10 once inferred for batches with a requestid (ref §1) is no limit of QBO's. 100 keeps a batch body small.
BID_MAX = 100


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
            entity_name(self.entity): dict(self.body),
        }
        if self.options_data:
            wire["optionsData"] = self.options_data
        return wire


def item_entity(wire: Mapping[str, Any]) -> str | None:
    return next((k for k in wire if k not in ("bId", "operation", "optionsData", "Query")), None)


def each_item(chunk: list[dict[str, Any]], result: QboResult) -> dict[str, QboResult]:
    return {
        str(w["bId"]): replace(
            result,
            operation=f"batch.{w.get('operation') or 'query'}",
            entity=item_entity(w),
            bid=str(w["bId"]),
            data=None,
        )
        for w in chunk
    }


def check_bids(wire: list[dict[str, Any]]) -> None:
    bids = [str(w.get("bId", "")) for w in wire]
    if any(not b or len(b) > BID_MAX or not VISIBLE_ASCII.match(b) for b in bids):
        raise ValueError(f"every batch item needs a bId of 1-{BID_MAX} visible characters (ref §1)")
    if len(set(bids)) != len(bids):
        raise ValueError("batch bIds must be unique: results are matched by bId (ref §8)")


_BATCH_NAMESPACE = uuid.UUID("5b1e0c52-4f0e-4a55-9d59-3f6f1f0c9a21")


def chunk_request_id(request_id: str, chunk: list[dict[str, Any]]) -> str:
    # Deterministic (the same retry gets the same id, so QBO replays) and bound to the chunk's items,
    # so a retry with a different set of items is never mistaken for a repeat. 36 characters (ref §1).
    return str(uuid.uuid5(_BATCH_NAMESPACE, request_id + "|" + ",".join(str(w["bId"]) for w in chunk)))


def item_results(result: QboResult, chunk: list[dict[str, Any]]) -> dict[str, QboResult]:
    """One result per item of a batch QBO answered, matched by bId (ref §8); an item without an answer may have
    been written, so for a write its outcome is unknown."""
    listed = (result.data or {}).get("BatchItemResponse")
    answers = {str(a.get("bId")): a for a in (listed if isinstance(listed, list) else []) if isinstance(a, Mapping)}
    out: dict[str, QboResult] = {}
    for item in chunk:
        bid, entity, write = str(item["bId"]), item_entity(item), bool(item.get("operation"))
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
            out[bid] = replace(base, outcome=classify(result.status, transport_error="malformed", write=write))
        elif (fault := fault_from_json(answer)) is not None:
            out[bid] = replace(base, **fault_result(200, fault, write, operation))
        elif "Query" in item:
            out[bid] = replace(base, data=answer.get("QueryResponse"))
        else:
            obj = entity_object(answer, entity or "", needs_id=item.get("operation") != "delete")
            # An answer that names no object proves nothing: for a write, the outcome is unknown.
            out[bid] = replace(base, data=obj) if obj is not None else malformed(base, write)
    return out
