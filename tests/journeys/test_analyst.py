"""The analyst, on Trends: the month being closed in records and dollars, new against freed; a click on the biggest
cause's bar drills to the action queue, which shows the same records and dollars and says which filters it applies
(cause and period, in the address too); the period picker changes what Trends shows."""

from __future__ import annotations

import re
import time
from datetime import datetime
from urllib.parse import parse_qs, urlsplit

import pytest
from browser import browser_page
from playwright.sync_api import TimeoutError as PlaywrightTimeout
from reading import MONEY, REASON_CODE, choose, main_text, metric, open_page, settle, shot

pytestmark = pytest.mark.browser


def _click_top_bar(page, chart_key: str) -> str:
    """Click the first (top) bar of a horizontal bar chart, scanning down from the plot's top edge until the page
    offers the drill link; returns that link's text."""
    chart = page.locator(f".st-key-{chart_key} [data-testid='stVegaLiteChart']").first
    chart.scroll_into_view_if_needed()
    box = chart.bounding_box()
    assert box, "the chart is not on screen"
    link = page.get_by_role("link", name=re.compile("Open the action queue for"))
    for dy in range(6, 140, 8):
        page.mouse.click(box["x"] + box["width"] * 0.4, box["y"] + dy)
        try:
            link.first.wait_for(timeout=2_500)
        except PlaywrightTimeout:  # not on a bar yet: a little lower
            continue
        settle(page)
        return link.first.inner_text().splitlines()[-1].strip()  # without the icon's name
    raise AssertionError(f"no bar of {chart_key} answered a click")


def test_the_analyst_drills_from_a_trends_bar_to_the_queue_and_the_counts_agree(demo_app) -> None:
    with browser_page(1280, 800) as page:
        # 1. Trends opens on the month being closed, in dollars; the same in records
        open_page(page, f"{demo_app.url}/trends", "What blocks them now")
        text = main_text(page)
        shot(page, "analyst-1-trends-dollars-1280x800")
        shot(page, "analyst-1-trends-dollars-1280x800-full", full=True)
        month = re.search(r"^(\w+ \d{4}) \(the month being closed\)", text, re.M)
        assert month, text[:400]
        name = month.group(1)
        blocked_dollars = metric(page, "Blocked now")
        assert re.fullmatch(MONEY, blocked_dollars)
        assert "Newly blocked, last day" in text and "Freed, last day" in text
        assert not REASON_CODE.search(text) and not re.search(r"\bNone\b|\bnan\b", text)
        page.locator(".st-key-trends_measure button", has_text="records").click()
        settle(page)
        shot(page, "analyst-2-trends-records-1280x800")
        blocked_records = metric(page, "Blocked now")
        assert re.fullmatch(r"[\d,]+", blocked_records), blocked_records
        assert "What blocks them now, by cause (records)" in main_text(page)
        page.locator(".st-key-trends_measure button", has_text="dollars").click()
        settle(page)

        # 2. A click on the biggest cause's bar offers the queue for exactly those records
        label = _click_top_bar(page, "trends_causes")
        shot(page, "analyst-3-bar-clicked-1280x800")
        drill = rf"Open the action queue for (.+): ([\d,]+) records, ({MONEY}) \({re.escape(name)}\)"
        found = re.fullmatch(drill, label)
        assert found, label
        cause, records, dollars = found.groups()
        assert not REASON_CODE.search(cause)

        # 3. The queue: the same records and dollars, the filters shown and kept in the address
        page.get_by_role("link", name=re.compile(re.escape(label))).click()
        page.get_by_text("Download these items (CSV)").wait_for(timeout=60_000)
        settle(page)
        queue = main_text(page)
        shot(page, "analyst-4-queue-1280x800")
        shot(page, "analyst-4-queue-1280x800-full", full=True)
        assert metric(page, "Records blocked") == records and metric(page, "Dollars blocked") == dollars
        line = " ".join(queue.split())
        assert re.search(rf"[\d,]+ of [\d,]+ items .*in {re.escape(name)} — filters: cause: {re.escape(cause)}", line)
        params = parse_qs(urlsplit(page.url).query)
        assert params.get("period") == [datetime.strptime(name, "%B %Y").strftime("%Y-%m")], page.url
        assert params.get("cause"), page.url

        # 4. The period picker applies on Trends: all periods
        open_page(page, f"{demo_app.url}/trends", "What blocks them now")
        choose(page, "Period", "All periods")
        time.sleep(1)
        settle(page)
        shot(page, "analyst-5-trends-all-periods-1280x800")
        assert "All periods: records of every date" in main_text(page)
        assert "period=all" in page.url
    with browser_page(1920, 1080) as page:
        open_page(page, f"{demo_app.url}/trends", "What blocks them now")
        shot(page, "analyst-6-trends-1920x1080-full", full=True)
