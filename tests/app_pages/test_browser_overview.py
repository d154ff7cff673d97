"""The Overview page in a real browser (Debian's Chromium through Playwright) against a served app."""

from __future__ import annotations

from pathlib import Path

import pytest
from browser import browser_page, choose_actor, require_chromium, screenshot, served_app
from fixtures import REALM, T0, tiny_snapshot, write_snapshot

from pipelines.ingest import ingest_snapshot
from pipelines.store import Store

pytestmark = pytest.mark.browser


def test_overview_shows_loaded_records_in_chromium(tmp_path: Path) -> None:
    require_chromium()
    db = tmp_path / "browser.duckdb"
    with Store(db) as store:
        ingest_snapshot(store, write_snapshot(tmp_path / "awra", tiny_snapshot()), realm_id=REALM, now=T0)

    with served_app({"SYNCHEALTH_DB": str(db), "SYNCHEALTH_REALM_ID": REALM}) as url, browser_page() as page:
        # The first visit of a fresh server lands on a page URL: the router (with its sidebar) must run it.
        page.goto(f"{url}/readiness")
        page.get_by_text("No readiness check has run yet").wait_for(timeout=60_000)
        assert "Acting as" in page.inner_text("section[data-testid='stSidebar']")
        page.goto(f"{url}/overview")
        page.get_by_text("Records by type").wait_for(timeout=60_000)
        page.get_by_text("Ingest history").wait_for()
        # the grids draw on a canvas after their own script loads; wait for all three
        page.locator("[data-testid='stDataFrame'] canvas").nth(2).wait_for()
        body = page.inner_text("body")
        shot = screenshot(page, "overview-1280x800")
        choose_actor(page, "admin@demo.local")
        page.get_by_text("Role: admin").wait_for()

    assert shot.stat().st_size > 10_000
    assert "Overview" in body and "15" in body
    assert "demo sign-in" in body
