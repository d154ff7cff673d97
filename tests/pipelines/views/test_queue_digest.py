"""The digest prints amounts at stake to the cent, however large (they are DECIMAL(18,2), never floats)."""

from __future__ import annotations

from pipelines.views.queue import digest_html, digest_text


def _digest(at_stake: str) -> dict:
    item = {
        "exception_id": 1,
        "key": "bill:BILL-1",
        "reason": "mapping.item_missing",
        "at_stake": at_stake,
        "due_date": None,
        "escalation_reason": None,
        "detail": "The item is not in QuickBooks.",
        "fix": "Map it.",
    }
    owner = {"owner": "ap@acme.example", "open": 1, "new": [item], "overdue": [], "escalated": []}
    return {"realm_id": "1", "generated_at": "2025-03-14T09:00:00+00:00", "since": "2025-03-13", "owners": [owner]}


def test_a_sixteen_digit_amount_keeps_its_cents() -> None:
    d = _digest("12345678901234567.89")
    assert "$12,345,678,901,234,567.89" in digest_text(d)
    assert "$12,345,678,901,234,567.89" in digest_html(d)


def test_an_unknown_amount_prints_nothing_and_a_small_one_prints_as_before() -> None:
    assert "mapping.item_missing \n" in digest_text(_digest("None"))
    assert "mapping.item_missing $1,234.50\n" in digest_text(_digest("1234.50"))
