"""The Record page's search: the query read as a person means it, the records narrowed in Polars, bounded."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path

import polars as pl
from fixtures import REALM, tiny_snapshot
from hypothesis import example, given
from hypothesis import strategies as st
from world import World

from pipelines.views.search import LIMIT, MAX_TERMS, SEARCH_SCHEMA, Query, find, parse_query, search
from schemas.awra import ENTITY_TABLES


# -- the query --------------------------------------------------------------------------------------------------
@given(st.text(max_size=400))
@example("bill:")
@example("  ::: ")
@example('"bill:BILL-1"')
@example("foo:bar baz")
def test_any_text_reads_as_a_query_of_lower_case_words(text: str) -> None:
    query = parse_query(text)
    assert len(query.terms) <= MAX_TERMS
    assert all(t and t == t.lower() and not any(c.isspace() for c in t) for t in query.terms)
    assert len(set(query.terms)) == len(query.terms)
    assert query.entity is None or query.entity in ENTITY_TABLES


@given(st.sampled_from(sorted(ENTITY_TABLES)), st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,20}", fullmatch=True))
def test_a_record_key_reads_back_as_that_key(entity: str, record_id: str) -> None:
    for text in (f"{entity}:{record_id}", f"  {entity}: {record_id} "):
        query = parse_query(text)
        assert query == Query(entity, (record_id.lower(),))
        assert query.key == f"{entity}:{record_id}".lower()


def test_words_and_unknown_prefixes_are_terms() -> None:
    assert parse_query("Northgate  2026") == Query(None, ("northgate", "2026"))
    assert parse_query("foo:bar") == Query(None, ("foo:bar",))  # a document number may hold a colon
    assert parse_query("bill:") == Query("bill", ())
    assert parse_query("").empty and parse_query(None).empty


# -- the records ------------------------------------------------------------------------------------------------
def _frame(n: int) -> pl.DataFrame:
    """n bills of two vendors, then the vendors themselves: the shape `searchable` answers."""
    start = date(2030, 1, 1)
    rows = [
        {
            "key": f"bill:BILL-{i:05d}",
            "entity": "bill",
            "record_id": f"BILL-{i:05d}",
            "number": f"{100000 + i}",
            "party": "Northgate Supply" if i % 2 else "Bolt & Nut Co",
            "txn_date": start + timedelta(days=i % 300),
            "amount": Decimal(i) / 4,
            "state": "synced",
        }
        for i in range(n)
    ]
    rows += [
        {"key": "vendor:VEN-1", "entity": "vendor", "record_id": "VEN-1", "number": None, "party": "Northgate Supply",
         "txn_date": None, "amount": None, "state": "synced"},
    ]  # fmt: skip
    return pl.DataFrame(rows, schema=SEARCH_SCHEMA)


def test_find_is_bounded_and_puts_the_exact_number_first() -> None:
    frame = _frame(5_000)
    found = find(frame, parse_query("100123"))
    assert found["number"][0] == "100123"  # exact before the numbers that merely contain it (1001230...)
    assert found.height <= LIMIT and found.schema == pl.Schema(SEARCH_SCHEMA)
    assert find(frame, parse_query("northgate")).height == LIMIT  # thousands match: a person reads 25


def test_every_term_must_match_and_an_entity_prefix_narrows() -> None:
    frame = _frame(40)
    both = find(frame, parse_query("northgate 10001"), limit=100)
    # numbers 100010-100019 hold "10001"; the odd ones are Northgate's
    assert set(both["key"]) == {f"bill:BILL-{i:05d}" for i in (11, 13, 15, 17, 19)}
    assert set(find(frame, parse_query("vendor:northgate"))["key"]) == {"vendor:VEN-1"}
    assert find(frame, parse_query("bill:bill-00007"))["key"].to_list() == ["bill:BILL-00007"]


def test_user_text_is_never_a_pattern() -> None:
    frame = _frame(10)
    assert find(frame, parse_query(".*")).is_empty()
    assert find(frame, parse_query("(")).is_empty()
    assert find(frame, parse_query("bolt & nut"), limit=100).height == 5


def test_search_finds_a_bill_by_its_document_number_and_a_party_by_name(tmp_path: Path) -> None:
    world = World(tmp_path, tiny_snapshot())
    assert search(world.store, REALM, "INV-9")["key"].to_list() == ["bill:BILL-1"]  # BILL-1's number
    acme = search(world.store, REALM, "acme")
    assert {"bill:BILL-1", "vendor:VEN-1", "purchase_order:PO-1"} <= set(acme["key"])
    assert set(acme["party"]) == {"Acme Supplies"}
    assert search(world.store, REALM, "  ").is_empty()
