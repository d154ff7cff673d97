"""Every page's text as a finance viewer reads it in Chromium, the grids' cells in view included: no reason code, no
snake_case name, no "None" or "nan", no traceback; and a number that appears on two pages agrees (Health's totals are
the queue's for the same period, and a cause's row on Health is what the queue shows for that cause)."""

from __future__ import annotations

import re

import pytest
from browser import browser_page
from reading import PAGES, grid_text, main_text, metric, open_page, settle, shot, wording_problems

pytestmark = pytest.mark.browser


@pytest.mark.parametrize("period", ["", "all"])
def test_every_page_reads_in_finance_words(demo_app, period: str) -> None:
    query = f"?period={period}" if period else ""
    found = {}
    with browser_page(1280, 800) as page:
        for path, title in PAGES.items():
            open_page(page, f"{demo_app.url}/{path}{query}", title)
            assert page.locator("[data-testid='stException']").count() == 0, path
            shot(page, f"text-{path or 'health'}-{period or 'closing'}-1280x800")
            # the page's words, then its grids' headers and the cells in view, read as text too
            for where, text in (("page", main_text(page)), ("grid", grid_text(page))):
                if problems := wording_problems(text):
                    found[f"{path or 'health'} {where}"] = sorted(set(problems))
    assert not found, found


def test_health_totals_are_the_queues_for_the_same_filters(demo_app) -> None:
    with browser_page(1280, 800) as page:
        for query in ("", "?period=all"):
            open_page(page, f"{demo_app.url}/{query}", "Top ten to fix")
            dollars, records = metric(page, "Dollars blocked"), metric(page, "Records blocked")
            text = main_text(page)
            row = re.search(r"Who decides\n+(.+)\n+.+\n+([\d,]+)\n+(\$[\d,.]+[kMB]?)\n", text)
            assert row, text
            cause, cause_records, cause_dollars = row.groups()
            open_page(page, f"{demo_app.url}/action_queue{query}", "Download these items (CSV)")
            assert (metric(page, "Dollars blocked"), metric(page, "Records blocked")) == (dollars, records), query
            # a cause's row on Health, followed to the queue: the same records and dollars, the cause shown
            open_page(page, f"{demo_app.url}/{query}", "Top ten to fix")
            page.get_by_role("link", name=re.compile(re.escape(cause))).first.click()
            page.get_by_text("Download these items (CSV)").wait_for(timeout=60_000)
            settle(page)
            shot(page, f"text-cause-drill-{query.strip('?') or 'closing'}-1280x800")
            line = " ".join(main_text(page).split())
            assert f"filters: cause: {cause}" in line, line[:600]
            assert (metric(page, "Records blocked"), metric(page, "Dollars blocked")) == (cause_records, cause_dollars)
