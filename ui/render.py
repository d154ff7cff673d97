"""Rows and captions the pages share: causes and queue items as rows with same-tab links, dates and scopes in words.

Links are st.page_link: they stay in the tab and keep the session (who is acting, the period), where a link column
of a grid opens a new tab as a signed-out viewer.
"""

from __future__ import annotations

from datetime import UTC, datetime
from textwrap import shorten

import polars as pl
import streamlit as st

from pipelines.views.period import ALL, month_name
from ui.charts import DIMENSION_TITLES, money, plain

__all__ = [
    "QUEUE_PAGE",
    "RECORD_PAGE",
    "ago",
    "cause_rows",
    "day",
    "entity_name",
    "named_entities",
    "escalation_words",
    "first_sentence",
    "queue_link",
    "scope_words",
    "top_rows",
]

QUEUE_PAGE = "app_pages/action_queue.py"
RECORD_PAGE = "app_pages/record.py"
_ENTITY_NAMES = {
    "purchase_order": "purchase order",
    "bill_payment": "bill payment",
    "journal_entry": "journal entry",
    "connection": "QuickBooks connection",
    "snapshot": "AWRA snapshot",
}


def entity_name(entity: str | None) -> str:
    return _ENTITY_NAMES.get(entity or "", (entity or "record").replace("_", " "))


def named_entities(frame: pl.DataFrame, column: str = "entity") -> pl.DataFrame:
    """The frame with its entity column in words (bill payment, journal entry)."""
    return frame.with_columns(pl.col(column).map_elements(entity_name, return_dtype=pl.String))


def scope_words(period: str, closing: str | None = None) -> str:
    """'November 2026 (the month being closed)', 'October 2026' or 'all periods'."""
    if period == ALL:
        return "all periods"
    name = month_name(period)
    return f"{name} (the month being closed)" if period == closing else name


def day(value: object) -> str:
    """A date or moment as 2026-11-02 (a moment in UTC); a dash when there is none."""
    if value is None:
        return "—"
    if isinstance(value, datetime):
        return f"{value.astimezone(UTC):%Y-%m-%d}"
    return str(value)


def first_sentence(text: object) -> str:
    """The first sentence of a fix: a reason that covers several cases lists each one's fix, and the item's detail
    says which case it is."""
    words = str(text or "").strip()
    head, dot, _ = words.partition(". ")
    return f"{head}." if dot else words


def ago(value: datetime | None, now: datetime) -> str:
    """How long ago, in days (or hours under a day)."""
    if value is None:
        return "—"
    hours = (now - value).total_seconds() / 3600
    return f"{hours:.0f} h ago" if hours < 24 else f"{hours / 24:.0f} d ago"


def escalation_words(row: dict, now: datetime) -> str:
    """An escalation as the event it is: when, and why (the due-by that passed, or the retries used up)."""
    if not row.get("escalated"):
        due = row.get("due_by")
        if due is None:
            return "no due-by"
        return f"due by {day(due)}" + (" (overdue)" if row.get("overdue") else "")
    why = str(row.get("escalation_reason") or "")
    why = "due-by passed" if why.startswith("overdue") else "automatic retries used up" if "retr" in why else why
    return f"escalated {day(row.get('escalated_at'))} ({ago(row.get('escalated_at'), now)}): {why}"


def queue_link(label: str, *, period: str, icon: str = ":material/filter_alt:", **filters: str | None) -> None:
    """A same-tab link to the action queue for the period with these filters (the queue shows them)."""
    params = {"period": period, **{k: v for k, v in filters.items() if v}}
    st.page_link(QUEUE_PAGE, label=label, query_params=params, icon=icon)


def cause_rows(causes: pl.DataFrame, period: str, *, present: bool, limit: int | None = None) -> None:
    """Why, ranked by dollars: each cause in finance words with its records, dollars, owner and who decides, and a
    link to exactly those items in the queue."""
    shown = causes.head(limit) if limit else causes
    widths = [3.7, 0.8, 0.9, 2.4, 1.5]
    heads = ["Cause", "Records", "Dollars", "Owner", "Who decides"]
    for col, name in zip(st.columns(widths), heads, strict=True):
        col.markdown(f"**{name}**")
    for row in shown.iter_rows(named=True):
        cols = st.columns(widths, vertical_alignment="center")
        kind = DIMENSION_TITLES.get(row["dimension"], "")
        if present:
            cols[0].markdown(f"{plain(row['cause'])}")
        else:
            with cols[0]:
                queue_link(row["cause"], period=period, cause=row["cause_reason"], icon=":material/arrow_forward:")
        cols[0].caption(kind)
        cols[1].markdown(f"{row['records']:,}")
        cols[2].markdown(money(row["dollars"], compact=True))
        others = f" +{row['owners'] - 1:,}" if row["owners"] and row["owners"] > 1 else ""
        cols[3].markdown(plain(row["owner"] or "—") + (plain(others) if others else ""))
        cols[4].markdown(plain(row["decides"]))
    if limit and causes.height > limit:
        rest = causes.tail(causes.height - limit)
        st.caption(
            f"and {rest.height:,} more cause(s): {int(rest['records'].sum()):,} records, "
            f"{money(rest['dollars'].sum(), compact=True)}"
        )


def top_rows(top: pl.DataFrame, now: datetime, *, present: bool) -> None:
    """The top of the queue, in its order: the record (a same-tab link), the money at stake, why and the next step,
    the owner and the due-by or escalation."""
    widths = [0.3, 1.4, 0.9, 3.2, 2.3]
    for col, name in zip(
        st.columns(widths), ["#", "Record", "At stake", "Why, and the next step", "Owner"], strict=True
    ):
        col.markdown(f"**{name}**")
    for item in top.iter_rows(named=True):
        cols = st.columns(widths, vertical_alignment="top")
        cols[0].markdown(f"**{item['priority']}**")
        with cols[1]:
            if item["entity"] == "connection":
                st.page_link("app_pages/connection.py", label="Connection", icon=":material/key:")
            elif item["entity"] == "snapshot":
                st.page_link("app_pages/overview.py", label="AWRA snapshot", icon=":material/database:")
            else:
                st.page_link(RECORD_PAGE, label=item["record_id"], query_params={"key": item["key"]},
                             icon=":material/receipt_long:")  # fmt: skip
        cols[1].caption(entity_name(item["entity"]) + (f" · {day(item['txn_date'])}" if item.get("txn_date") else ""))
        cols[2].markdown(money(item["at_stake"]))
        if item.get("carried_by"):
            cols[2].caption(f"counted under {item['carried_by'].replace(':', ' ')}")
        cols[3].markdown(f"**{plain(item['title'])}.** {plain(first_sentence(item['fix']))}")
        if not present and item.get("detail"):
            cols[3].caption(plain(shorten(str(item["detail"]), 160, placeholder=" …")))
        cols[4].markdown(plain(item["owner"] or item["owner_role"]))
        cols[4].caption(escalation_words(item, now))
