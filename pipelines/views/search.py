"""Find a record the way a person remembers it: its key (`bill:BILL-000123`), its document number (INV-9, 101384), or
its vendor's or customer's name (Northgate). The Record page's search box and nothing else writes here: read-only.

Two steps, so each can be tested alone: `searchable` reads one frame of every live record (one query, cached by the
page per store version), `find` narrows it with Polars (every term a literal, case-blind substring; no regex from
the user) and answers at most `limit` rows, the closest first.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import polars as pl

from pipelines.store import Store, current_view
from pipelines.views.metrics import RECORD_FACTS
from schemas.awra import ENTITY_TABLES

__all__ = ["LIMIT", "MAX_TERMS", "SEARCH_SCHEMA", "Query", "find", "parse_query", "search", "searchable"]

LIMIT = 25  # rows a search answers: a person reads a short list, then narrows the words
MAX_TERMS = 6  # words a query keeps (the rest are dropped: a pasted paragraph is not a search)
_MAX_CHARS = 200
_ENTITIES = frozenset(ENTITY_TABLES)
_SPLIT = re.compile(r"[\s,;]+")
SEARCH_SCHEMA = pl.Schema(
    {
        "key": pl.String(),
        "entity": pl.String(),
        "record_id": pl.String(),
        "number": pl.String(),
        "party": pl.String(),
        "txn_date": pl.Date(),
        "amount": pl.Decimal(18, 2),
        "state": pl.String(),
    }
)


@dataclass(frozen=True)
class Query:
    """What a person typed, read: an entity named with a colon (`bill:`) narrows the kind of record, and every term
    must appear in the record's AWRA id, document number or party name. Terms are lower case, never empty."""

    entity: str | None = None
    terms: tuple[str, ...] = ()

    @property
    def empty(self) -> bool:
        return not self.terms and self.entity is None

    @property
    def key(self) -> str | None:
        """The record key the query names exactly (`bill:bill-1`, lower case), when it is one."""
        return f"{self.entity}:{self.terms[0]}" if self.entity and len(self.terms) == 1 else None


def parse_query(text: str | None) -> Query:
    """Read the search box; never raises. `bill:BILL-1` and `bill: BILL-1` name a bill; `Northgate 2026` is two
    terms; an unknown prefix (`foo:bar`) is an ordinary term, since a document number may hold a colon."""
    words = [w for w in _SPLIT.split((text or "")[:_MAX_CHARS].strip().strip("\"'").lower()) if w]
    entity = None
    if words:
        head, sep, rest = words[0].partition(":")
        if sep and head in _ENTITIES:
            entity = head
            words = [rest, *words[1:]] if rest else words[1:]
    terms = tuple(dict.fromkeys(w.strip("\"'") for w in words if w.strip("\"'")))[:MAX_TERMS]
    return Query(entity, terms)


def searchable(store: Store, realm_id: str) -> pl.DataFrame:
    """Every live record of the company with what a person searches it by: its key, document number, party name (a
    vendor's or customer's own name for the party itself, an item's or account's name), date, money and state."""
    names = f"""
      SELECT 'vendor' AS kind, vendor_id AS id, name FROM {current_view("vendors")} WHERE realm_id = $realm
      UNION ALL SELECT 'customer', customer_id, name FROM {current_view("customers")} WHERE realm_id = $realm
      UNION ALL SELECT 'item', item_sku, name FROM {current_view("items")} WHERE realm_id = $realm
      UNION ALL SELECT 'account', account_code, name FROM {current_view("accounts")} WHERE realm_id = $realm"""
    frame = store.frame(
        f"""WITH names AS ({names}),
                 facts AS (SELECT * FROM ({RECORD_FACTS}) WHERE realm_id = $realm)
            SELECT r.entity || ':' || r.record_id AS key, r.entity, r.record_id, f.number,
                   coalesce(p.name, own.name) AS party, f.txn_date::DATE AS txn_date,
                   f.amount::DECIMAL(18,2) AS amount, r.state
            FROM records r
            LEFT JOIN facts f ON f.entity = r.entity AND f.record_id = r.record_id
            LEFT JOIN names p ON f.party_id IS NOT NULL AND p.id = f.party_id
                 AND p.kind = CASE WHEN r.entity IN ('invoice', 'payment') THEN 'customer' ELSE 'vendor' END
            LEFT JOIN names own ON own.kind = r.entity AND own.id = r.record_id
            WHERE r.realm_id = $realm AND r.removed_at IS NULL""",
        {"realm": realm_id},
    )
    return frame.select([pl.col(c).cast(t) for c, t in SEARCH_SCHEMA.items()])


def find(frame: pl.DataFrame, query: Query, limit: int = LIMIT) -> pl.DataFrame:
    """The records matching every term (in the AWRA id, document number or party name), at most `limit`, the closest
    first: the exact key, then an exact id or number, then one that starts with the first term, then the newest."""
    if query.empty:
        return pl.DataFrame(schema=SEARCH_SCHEMA)
    rid = pl.col("record_id").str.to_lowercase()
    number = pl.col("number").fill_null("").str.to_lowercase()
    party = pl.col("party").fill_null("").str.to_lowercase()
    conditions = [
        rid.str.contains(t, literal=True) | number.str.contains(t, literal=True) | party.str.contains(t, literal=True)
        for t in query.terms
    ]
    if query.entity:
        conditions.append(pl.col("entity") == query.entity)
    first = query.terms[0] if query.terms else ""
    closeness = (
        pl.when(pl.lit(query.key is not None) & (pl.col("key").str.to_lowercase() == (query.key or "")))
        .then(0)
        .when((rid == first) | (number == first))
        .then(1)
        .when(rid.str.starts_with(first) | number.str.starts_with(first) | party.str.starts_with(first))
        .then(2)
        .otherwise(3)
    )
    return (
        frame.filter(*conditions)
        .with_columns(closeness.alias("_close"))
        .sort(["_close", "txn_date", "key"], descending=[False, True, False], nulls_last=True)
        .head(limit)
        .select(list(SEARCH_SCHEMA))
    )


def search(store: Store, realm_id: str, text: str, limit: int = LIMIT) -> pl.DataFrame:
    """`find` over the company's records for what a person typed (one read; the page caches `searchable`)."""
    query = parse_query(text)
    if query.empty:
        return pl.DataFrame(schema=SEARCH_SCHEMA)
    return find(searchable(store, realm_id), query, limit)
