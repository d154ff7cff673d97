"""The firm view: one row per company for the period being closed, the same on both stores, and in status --json."""

from __future__ import annotations

from pathlib import Path

from fixtures import REALM
from world import World

from pipelines.views.api import read_view
from pipelines.views.firm import company_table


def test_each_company_has_its_blocked_money_completion_connection_worst_dimension_and_owner(
    tmp_path: Path, store_target
) -> None:
    w = World(tmp_path, database_url=store_target if isinstance(store_target, str) else None)
    try:
        w.cycle()
        period = w.store.scalar("SELECT max(txn_date) FROM cur_bills").strftime("%Y-%m")
        table = company_table(w.store, w.now, period)
        assert table["realm_id"].to_list() == [REALM]
        row = table.row(0, named=True)
        assert row["connection"] == "connected"
        assert row["records"] > 0 and 0 <= row["percent_complete"] <= 100
        if row["records_blocked"]:
            assert row["biggest_item"] and row["biggest_owner"] and row["worst_dimension"] is not None
        status = read_view(w.store, "status", REALM, w.now, {"period": period})
        assert status["firm"]["period"] == period
        assert [c["realm_id"] for c in status["firm"]["companies"]] == [REALM]
    finally:
        w.close()
