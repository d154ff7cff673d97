"""A record's key, `<entity>:<awra id>` (e.g. bill:BILL-000123): parsed once at the edge, passed on as a RecordKey."""

from __future__ import annotations

from typing import NamedTuple

from schemas.awra import CONTRACT

__all__ = ["ENTITIES", "RecordKey"]

ENTITIES: tuple[str, ...] = tuple(dict.fromkeys(t.entity for t in CONTRACT.values() if not t.is_lines))


class RecordKey(NamedTuple):
    """Which AWRA record: its entity and its id in AWRA."""

    entity: str
    record_id: str

    @classmethod
    def parse(cls, text: str) -> RecordKey:
        """`bill:BILL-000123` -> RecordKey('bill', 'BILL-000123'); ValueError with the expected form otherwise."""
        entity, sep, record_id = str(text).strip().partition(":")
        if not sep or not record_id or not entity:
            raise ValueError(f"record key {text!r} must be <entity>:<awra id>, e.g. bill:BILL-000123")
        if entity not in ENTITIES:
            raise ValueError(f"record key {text!r}: unknown entity {entity!r}; entities are {', '.join(ENTITIES)}")
        return cls(entity, record_id)

    def __str__(self) -> str:
        return f"{self.entity}:{self.record_id}"
