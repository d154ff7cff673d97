"""The firm view on the Health page: one row per QuickBooks company for the period being closed, shown only when the
store holds more than one company. Each row links to the action queue filtered to that company (`?company=REALM`)."""

from __future__ import annotations

from datetime import datetime

import polars as pl
import streamlit as st

from pipelines.store import Store
from pipelines.views.firm import company_table
from pipelines.views.period import month_name
from ui.charts import DIMENSION_TITLES, money, queue_page_path

__all__ = ["company_section", "queue_company"]

LABELS = {
    "company": "Company",
    "connection": "Connection",
    "records_blocked": "Records blocked",
    "dollars": "Dollars blocked",
    "percent_complete": "% complete",
    "worst_dimension": "Worst dimension",
    "biggest_owner": "Owner of the biggest item",
    "queue": "Queue",
}


@st.cache_data(ttl=30, max_entries=8)
def _table(_store: Store, where: str, now: datetime, period: str) -> pl.DataFrame:
    """Cached half a minute per store (`where`), minute and period: one query per company is not free at hundreds."""
    return company_table(_store, now, period)


def company_section(store: Store, now: datetime, period: str) -> None:
    """The company table, under a heading; nothing at all for a single company (its page is the rest of Health)."""
    table = _table(store, str(store.url or store.path.resolve()), now.replace(second=0, microsecond=0), period)
    if table.height <= 1:
        return
    queue = queue_page_path()
    shown = table.with_columns(
        pl.coalesce("company", "realm_id").alias("company"),
        pl.col("dollars_blocked").map_elements(money, return_dtype=pl.String).alias("dollars"),
        pl.col("worst_dimension").replace_strict(DIMENSION_TITLES, default=None).fill_null("—"),
        pl.col("biggest_owner").fill_null("—"),
        (pl.lit(f"/{queue.removeprefix('app_pages/').removesuffix('.py')}?company=") + pl.col("realm_id")).alias(
            "queue"
        )
        if queue
        else pl.lit(None, pl.String).alias("queue"),
    ).select(list(LABELS))
    st.subheader(f"Companies — what blocks the close of {month_name(period)}")
    st.dataframe(
        shown.rename(LABELS),
        hide_index=True,
        width="stretch",
        key="firm_companies",
        column_config={
            LABELS["percent_complete"]: st.column_config.ProgressColumn(min_value=0, max_value=100, format="%.0f%%"),
            LABELS["queue"]: st.column_config.LinkColumn(display_text="open items"),
        },
    )


def queue_company(default: str) -> str:
    """The company the action queue shows: `?company=REALM` from the firm table's link, else the sidebar's."""
    return st.query_params.get("company") or default
