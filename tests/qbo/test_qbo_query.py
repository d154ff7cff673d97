"""The query builder (escaping that no value can break out of) and paging by STARTPOSITION/MAXRESULTS."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st
from scripted import REALM, Scripted

from qbo.client import QboClient, escape_literal, quote_literal, select, select_count

KEYWORDS = {
    "SELECT",
    "FROM",
    "WHERE",
    "AND",
    "LIKE",
    "IN",
    "ORDERBY",
    "ASC",
    "DESC",
    "STARTPOSITION",
    "MAXRESULTS",
}


def lex(sql: str, *, backslash_escapes_anything: bool) -> list[tuple[str, str]]:
    """A reference lexer for QBO's query language, in both readings of a backslash found in the wild:
    an escape only before a quote (PQB, the local sandbox), or an escape of any next character (JavaCC).
    """
    tokens, i = [], 0
    while i < len(sql):
        ch = sql[i]
        if ch.isspace():
            i += 1
        elif ch == "'":
            value, i = [], i + 1
            while True:
                if i >= len(sql):
                    raise ValueError("unterminated literal")
                if sql[i] == "\\" and i + 1 < len(sql) and (backslash_escapes_anything or sql[i + 1] == "'"):
                    value.append(sql[i + 1])
                    i += 2
                elif sql[i] == "'":
                    i += 1
                    break
                else:
                    value.append(sql[i])
                    i += 1
            tokens.append(("string", "".join(value)))
        elif ch.isalnum() or ch == "_":
            j = i
            while j < len(sql) and (sql[j].isalnum() or sql[j] in "_."):
                j += 1
            word = sql[i:j]
            tokens.append(("keyword" if word.upper() in KEYWORDS else "word", word))
            i = j
        else:
            j = i + 2 if sql[i : i + 2] in ("<=", ">=") else i + 1
            tokens.append(("symbol", sql[i:j]))
            i = j
    return tokens


READINGS = (False, True)
plain_text = st.text().filter(lambda s: "\\" not in s)


@given(plain_text)
def test_escaping_round_trips_under_either_reading(value: str) -> None:
    for reading in READINGS:
        assert lex(quote_literal(value), backslash_escapes_anything=reading) == [("string", value)]


@given(plain_text, plain_text)
def test_escaping_is_injective(a: str, b: str) -> None:
    assert (escape_literal(a) == escape_literal(b)) == (a == b)


@given(st.text(), st.text())
def test_no_value_breaks_out_of_its_literal(name: str, doc: str) -> None:
    sql = select("Vendor").where("DisplayName", "=", name).where("DocNumber", "LIKE", doc).sql()
    for reading in READINGS:
        tokens = lex(sql, backslash_escapes_anything=reading)
        shape = [kind if kind == "string" else text.upper() for kind, text in tokens]
        first = "LIKE" if "\\" in name else "="
        assert shape == [
            "SELECT",
            "*",
            "FROM",
            "VENDOR",
            "WHERE",
            "DISPLAYNAME",
            first,
            "string",
            "AND",
            "DOCNUMBER",
            "LIKE",
            "string",
        ]


@given(st.text(alphabet=st.sampled_from("ab'\\% "), min_size=1))
def test_a_value_with_a_backslash_is_matched_exactly_after_a_broader_lookup(value: str) -> None:
    query = select("Vendor").where("DisplayName", "=", value)
    assert query.keeps({"DisplayName": value})
    assert query.keeps({"DisplayName": value.upper()})  # QBO compares text without regard to case
    if "\\" in value:
        assert not query.keeps({"DisplayName": value.replace("\\", "/")})


def test_escape_literal_refuses_a_backslash_it_cannot_express() -> None:
    with pytest.raises(ValueError, match="backslash"):
        escape_literal("Smith\\")


def test_the_builder_writes_qbo_syntax() -> None:
    when = datetime(2026, 11, 1, 9, 30, tzinfo=UTC)
    query = (
        select("vendor")
        .where("DisplayName", "=", "O'Brien")
        .where("Balance", ">=", Decimal("10.50"))
        .where("Active", "IN", [True, False])
        .where("MetaData.LastUpdatedTime", ">", when)
        .where("TxnDate", "<", date(2026, 11, 30))
        .order_by("Id")
    )
    assert query.sql() == (
        "SELECT * FROM Vendor WHERE DisplayName = 'O\\'Brien' AND Balance >= 10.50 "
        "AND Active IN (true, false) "
        "AND MetaData.LastUpdatedTime > '2026-11-01T09:30:00+00:00' AND TxnDate < '2026-11-30' ORDERBY Id ASC"
    )
    assert select_count("Bill").where("DocNumber", "=", "INV-1").sql() == (
        "SELECT count(*) FROM Bill WHERE DocNumber = 'INV-1'"
    )


@pytest.mark.parametrize(
    ("field", "op", "value", "error"),
    [
        ("Display Name", "=", "x", ValueError),
        ("DisplayName", "!=", "x", ValueError),  # QBO has no OR and no !=
        ("DisplayName", "IN", "abc", ValueError),
        ("Balance", "=", 1.5, TypeError),  # money is Decimal, never float
        ("DisplayName", ">", "a\\b", ValueError),
        ("MetaData.LastUpdatedTime", ">", datetime(2026, 1, 1), ValueError),
    ],
)
def test_the_builder_refuses_what_qbo_cannot_run(field: str, op: str, value: object, error: type) -> None:
    with pytest.raises(error):
        select("Vendor").where(field, op, value)


def _vendors(qbo: Scripted, count: int) -> list[str]:
    """Vendors typed in by hand until `count` are active, returned as the ids a full query must give, in order."""
    for n in range(len(_active(qbo)) + 1, count + 1):
        qbo.sandbox.user_create(REALM, "Vendor", {"DisplayName": f"Vendor {n}"})
    ids = _active(qbo)
    assert len(ids) == count
    return ids


def _active(qbo: Scripted) -> list[str]:
    return sorted((v["Id"] for v in qbo.entities("Vendor") if v.get("Active", True)), key=int)


def test_query_all_pages_by_1000_until_a_short_page(client: QboClient, qbo: Scripted) -> None:
    ids = _vendors(qbo, 2345)
    rows = client.query_all("Vendor")
    assert [r["Id"] for r in rows] == ids
    pages = [r.url.params["query"] for r in qbo.api_requests]
    assert pages == [
        f"SELECT * FROM Vendor ORDERBY Id ASC STARTPOSITION {start} MAXRESULTS 1000" for start in (1, 1001, 2001)
    ]


def test_an_exact_multiple_of_1000_costs_one_empty_page(client: QboClient, qbo: Scripted) -> None:
    _vendors(qbo, 2000)
    assert len(client.query("SELECT * FROM Vendor")) == 2000
    assert len(qbo.api_requests) == 3


def test_a_query_that_pages_itself_is_sent_once(client: QboClient, qbo: Scripted) -> None:
    ids = _vendors(qbo, 50)
    rows = client.query("SELECT * FROM Vendor ORDERBY Id STARTPOSITION 11 MAXRESULTS 5")
    assert [r["Id"] for r in rows] == ids[10:15]
    assert len(qbo.api_requests) == 1


def test_a_name_that_mentions_maxresults_does_not_stop_paging(client: QboClient, qbo: Scripted) -> None:
    qbo.sandbox.user_create(REALM, "Vendor", {"DisplayName": "MAXRESULTS 5 Ltd"})
    found = client.query(select("Vendor").where("DisplayName", "=", "MAXRESULTS 5 Ltd"))
    assert [r["DisplayName"] for r in found] == ["MAXRESULTS 5 Ltd"]
    assert qbo.api_requests[0].url.params["query"].endswith("STARTPOSITION 1 MAXRESULTS 1000")


def test_count_and_inactive_rows(client: QboClient, qbo: Scripted) -> None:
    _vendors(qbo, 7)
    assert client.count("Vendor", include_inactive=True) == 8  # the company's one inactive vendor counts too
    assert client.count("Vendor") == 7
    assert qbo.api_requests[-2].url.params["query"] == "SELECT count(*) FROM Vendor WHERE Active IN (true, false)"
    with pytest.raises(ValueError, match="name lists"):
        client.query_all("Bill", include_inactive=True)


def test_a_backslash_name_is_found_exactly(client: QboClient, qbo: Scripted) -> None:
    # QBO's LIKE treats the backslash differently from its '=': the client asks broadly and keeps the exact one.
    for name in ("Smith\\Jones", "Smith & Jones", "Smith/Jones"):
        qbo.sandbox.user_create(REALM, "Vendor", {"DisplayName": name})
    found = client.query_all("Vendor", {"DisplayName": "Smith\\Jones"})
    assert [r["DisplayName"] for r in found] == ["Smith\\Jones"]
    assert "DisplayName LIKE 'Smith%Jones'" in qbo.api_requests[-1].url.params["query"]
