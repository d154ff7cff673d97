"""The firm view: one row per QuickBooks company for the period being closed, for a firm that runs many of them.

Per company: the records and dollars still blocked in the period, % complete, the connection's state, the worst
dimension among what blocks it (authorization first: nothing moves until someone reconnects), and who owns the biggest
open item. Health shows it as the company table; `synchealth status --json` reports it as `companies`.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

import polars as pl

from pipelines.store import Store
from pipelines.views import period as periods
from pipelines.views.health import blocked, period_close
from pipelines.views.queue import action_queue

__all__ = ["COMPANY_COLUMNS", "companies", "company_table"]

# Worst first: a lost connection stops everything; then what only a person can fix, then what retries on its own.
_DIMENSION_ORDER = ("authorization", "source_data", "mapping", "duplicate_risk", "provider_rejection", "transport")
COMPANY_COLUMNS: dict[str, pl.DataType | type[pl.DataType]] = {
    "realm_id": pl.String,
    "company": pl.String,
    "connection": pl.String,
    "records": pl.Int64,
    "records_blocked": pl.Int64,
    "dollars_blocked": pl.Decimal(18, 2),
    "percent_complete": pl.Float64,
    "worst_dimension": pl.String,
    "biggest_item": pl.String,
    "biggest_owner": pl.String,
}


def _realms(store: Store) -> list[str]:
    return [
        r[0]
        for r in store.rows(
            "SELECT realm_id FROM records UNION SELECT realm_id FROM qbo_connections ORDER BY 1",
        )
    ]


def _worst(dimensions: list[str | None], connection: str | None) -> str | None:
    if connection not in (None, "connected"):
        return "authorization"
    present = {d for d in dimensions if d}
    return next((d for d in _DIMENSION_ORDER if d in present), None)


def _company_row(store: Store, realm_id: str, period: str, now: datetime) -> dict[str, Any]:
    # Live, not through the prepared read model: it holds the companies a page showed, and building the rows of each
    # company here would cost more than reading each company's period once. The numbers are Health's and the queue's for
    # the same company and period: what is blocked counted once per document chain, the queue's own ranking.
    summary = period_close(store, realm_id, period)["summary"]
    queue = action_queue(store, realm_id, now=now, period=period)
    held = blocked(queue)
    dims = held["dimensions"].filter(pl.col("records") > 0)["dimension"].to_list()
    info = store.rows(
        """SELECT (SELECT company_name FROM qbo_company WHERE realm_id = ?),
                  (SELECT status FROM qbo_connections WHERE realm_id = ?)""",
        [realm_id, realm_id],
    )[0]
    items = queue.filter(pl.col("entity") != "connection").sort("at_stake", descending=True, nulls_last=True)
    biggest = items.row(0, named=True) if items.height else None
    return {
        "realm_id": realm_id,
        "company": info[0],
        "connection": info[1] or "not connected",
        "records": summary["records"],
        "records_blocked": held["records"],
        "dollars_blocked": Decimal(held["dollars"] or 0).quantize(Decimal("0.01")),
        "percent_complete": summary["percent_complete"],
        "worst_dimension": _worst(dims, info[1]),
        "biggest_item": biggest["key"] if biggest else None,
        "biggest_owner": biggest["owned_by"] if biggest else None,
    }


def company_table(store: Store, now: datetime, period: str | None = None) -> pl.DataFrame:
    """One row per company, the most dollars blocked first: for `period`, else each company's month being closed."""
    rows = [
        _company_row(store, realm, period or periods.closing_period(store, realm, now), now) for realm in _realms(store)
    ]
    frame = pl.DataFrame(rows, schema=COMPANY_COLUMNS, orient="row")
    return frame.sort(["dollars_blocked", "records_blocked", "realm_id"], descending=[True, True, False])


def companies(store: Store, now: datetime, period: str | None = None) -> dict[str, Any]:
    """The firm view for a program (`status --json`): the period ("closing": each company's month being closed) and
    one object per company."""
    return {"period": period or "closing", "companies": company_table(store, now, period).to_dicts()}
