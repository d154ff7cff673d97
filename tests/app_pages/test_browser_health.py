"""The Health page in Debian's Chromium against `synchealth serve`: every section, presentation mode at 1920x1080,
normal mode at 1280x800 (PNG screenshots kept in test-artifacts/), Top ten to the Record page, an admin's retry."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from browser import browser_page, require_chromium, served
from fixtures import PERIOD, PERIOD_NAME, REALM, tiny_company, tiny_snapshot
from reading import choose, shot
from world import World

from pipelines.clock import system_clock
from pipelines.store import Store
from pipelines.views import health
from pipelines.views.queue import action_queue
from qbo.sandbox import Sandbox
from qbo.sandbox.server import start_in_thread

pytestmark = pytest.mark.browser
ROOT = Path(__file__).resolve().parents[2]
SECTIONS = (
    "Why: what blocks",
    "Top ten to fix",
    "Records by state",
    "Readiness funnel to synced",
    f"Control totals for {PERIOD_NAME}",
)


def _wait_for_sections(page) -> None:
    for section in SECTIONS:
        page.get_by_text(section).first.wait_for(timeout=60_000)
    page.locator("[data-testid='stVegaLiteChart'] canvas, [data-testid='stVegaLiteChart'] svg").nth(1).wait_for()
    time.sleep(1.5)  # the charts finish drawing


def test_health_page_in_chromium(tmp_path: Path) -> None:
    require_chromium()
    snap = tiny_snapshot()
    snap["bill_lines"][0]["item_sku"] = "WID-220"  # one bill (and its payment) blocked on a missing item
    with start_in_thread(Sandbox(tiny_company())) as running:
        world = World(tmp_path, snap, base_url=running.base_url, sandbox=running.sandbox)
        world.now = system_clock()  # the server's own cycles run on the wall clock
        running.sandbox.set_faults("http_503_html@write=1", seed=1)  # QuickBooks is down for the first send
        world.cycle()
        running.sandbox.set_faults(None)
        with health.prepared(world.store, REALM):
            top = health.top_fixes(action_queue(world.store, REALM, now=world.now, period=PERIOD))
        # the period's Top ten holds its transactions: one of them waits on QuickBooks coming back
        target = next(r for r in top.iter_rows(named=True) if r["reason"].startswith("transport."))
        assert world.state(target["key"]) == "retry_scheduled"
        world.store.close()
        env = {
            "SYNCHEALTH_DB": str(world.settings.db_path),
            "SYNCHEALTH_REALM_ID": REALM,
            "SYNCHEALTH_QBO_BASE_URL": running.base_url,
            "SYNCHEALTH_SECRET_KEY": world.settings.secret_key,
        }
        with served(env, tmp_path / "serve.log") as url:
            with browser_page(1920, 1080) as page:
                page.goto(f"{url}/?present=1&period={PERIOD}")  # Health is the home page
                _wait_for_sections(page)
                assert not page.locator("[data-testid='stSidebar']").is_visible()  # presentation: no sidebar
                size = page.evaluate("getComputedStyle(document.querySelector('[data-testid=\"stMetricValue\"] p'))"
                                     ".fontSize")  # fmt: skip
                present = [shot(page, "health-present-1920x1080", full=False),
                           shot(page, "health-present-1920x1080-full", full=True)]  # fmt: skip
            with browser_page(1280, 800) as page:
                page.goto(f"{url}/?period={PERIOD}")
                _wait_for_sections(page)
                body = page.inner_text("body")
                assert page.locator("[data-testid='stSidebar']").is_visible()
                # an admin (the sidebar's demo sign-in) follows Top ten to the record's page and retries it there
                choose(page, "Acting as", "admin@demo.local")
                page.get_by_text("Role: admin").wait_for()
                normal = [shot(page, "health-1280x800", full=False), shot(page, "health-1280x800-full", full=True)]
                page.get_by_role("link", name=target["record_id"]).first.click()
                page.get_by_text("Retry now").wait_for(timeout=60_000)
                assert f"key={target['key'].replace(':', '%3A')}" in page.url or target["key"] in page.url
                state = page.locator("[data-testid='stMetric']").filter(has_text="State")
                assert "retry scheduled" in state.inner_text()
                page.get_by_role("button", name="Retry now").click()
                page.get_by_text("sent: in QuickBooks as Id").wait_for(timeout=60_000)
                record_shot = shot(page, "health-record-after-retry-1280x800", full=False)
                page.reload()
                page.get_by_text("Retry now").or_(page.get_by_text("Attempts")).first.wait_for(timeout=60_000)
                page.locator("[data-testid='stMetric']").filter(has_text="synced").wait_for(timeout=30_000)
        with Store(world.settings.db_path) as store:
            assert (
                store.scalar(
                    "SELECT state FROM records WHERE entity = ? AND record_id = ?",
                    [target["entity"], target["record_id"]],
                )
                == "synced"
            )

    assert float(size.removesuffix("px")) >= 48  # large type when shared
    assert f"Sync health — {PERIOD_NAME}" in body and "Dollars blocked" in body
    for png in (*present, *normal, record_shot):
        assert png.stat().st_size > 20_000
