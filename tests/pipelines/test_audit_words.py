"""The audit page's words: before and after read as sentences with catalogue titles, the stored rows untouched."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import polars as pl
from hypothesis import given
from hypothesis import strategies as st

from pipelines.catalogue import catalogue, title_of
from pipelines.views.queue import audit_words

CODES = catalogue()["reason"].to_list()


def _log(before: dict | None, after: dict | None, target: str = "purchase_order:PO-1") -> pl.DataFrame:
    return pl.DataFrame(
        {
            "audit_id": [1],
            "acted_at": [datetime(2026, 1, 2, tzinfo=UTC)],
            "actor": ["system"],
            "role": ["system"],
            "action": ["auto_resolve"],
            "target": [target],
            "reason": [None],
            "before_json": [json.dumps(before, ensure_ascii=False) if before is not None else None],
            "after_json": [json.dumps(after, ensure_ascii=False) if after is not None else None],
        }
    )


def test_an_auto_resolve_reads_as_words_with_the_causes_title() -> None:
    log = _log({"exception_id": 7, "cause": "mapping.account_stale", "status": "open", "escalated": False},
               {"status": "resolved", "record_state": "synced", "qbo_id": None})  # fmt: skip
    row = audit_words(log).row(0, named=True)
    assert row["action"] == "auto resolve" and row["target"] == "purchase order PO-1"
    assert row["before_json"] == (
        f"exception id: 7; cause: {title_of('mapping.account_stale')}; status: open; escalated: no"
    )
    assert row["after_json"] == "status: resolved; record state: synced; QuickBooks id: —"
    assert row["reason"] == ""
    assert log["before_json"][0].startswith('{"exception_id"')  # the frame itself is left as stored


@given(
    st.dictionaries(
        st.from_regex(r"[a-z]{1,8}(_[a-z]{1,8})?", fullmatch=True),
        st.one_of(
            st.none(),
            st.booleans(),
            st.integers(),
            st.sampled_from(CODES),
            st.text(st.characters(exclude_categories=("Cc", "Cs")), max_size=20),
        ),
        max_size=6,
    )
)
def test_any_object_reads_without_json_punctuation_or_reason_codes(doc: dict) -> None:
    text = audit_words(_log(doc, None)).row(0, named=True)["before_json"]
    codes = [v for v in doc.values() if isinstance(v, str) and v in CODES]
    assert not any(code in text for code in codes)
    assert all(title_of(code).replace("_", " ") in text for code in codes)
    plain_values = [v for v in doc.values() if isinstance(v, str) and not set(v) & set('{}",_:;\\') and v not in CODES]
    assert all(v in text for v in plain_values)
    assert not set(text) & set('{}"')
