"""The controller, screen-sharing Health in the close meeting: in ten seconds, from the page's text alone, how much is
blocked in the month being closed, why (the biggest cause in words, with its dollars and who decides), who owns it (a
person), and whether it is getting better or worse. Then the Top ten is the head of the queue, and presentation mode
opens on the same month at 1920x1080."""

from __future__ import annotations

import csv
import io
import re
from datetime import UTC, date, datetime

import httpx
import pytest
from browser import browser_page
from reading import MONEY, REASON_CODE, closing_month, main_text, metric, month_name, open_page, settle, shot

pytestmark = pytest.mark.browser
PERSON = re.compile(r"^[a-z][a-z0-9.]*@[a-z0-9.-]+\.[a-z]+$")


def _book_close(sandbox_url: str, realm: str) -> date | None:
    prefs = httpx.get(f"{sandbox_url}/_sandbox/{realm}/entities/Preferences", timeout=10).json()[0]
    text = (prefs.get("AccountingInfoPrefs") or {}).get("BookCloseDate")
    return date.fromisoformat(text) if text else None


def _lines(text: str, after: str, before: str) -> list[str]:
    """The non-empty lines between the first line starting with `after` and the next one starting with `before`."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    start = next(i for i, line in enumerate(lines) if line.startswith(after))
    end = next(i for i in range(start + 1, len(lines)) if lines[i].startswith(before))
    return lines[start + 1 : end]


def _causes(text: str) -> list[dict]:
    """The Why section's rows: cause, kind, records, dollars, owner, who decides (six lines each)."""
    rows = _lines(text, "Why:", "Blocked dollars, last six weeks")
    assert rows[:5] == ["Cause", "Records", "Dollars", "Owner", "Who decides"], rows[:8]
    body = [line for line in rows[5:] if not line.startswith("and ")]
    out = []
    for i in range(0, len(body) - len(body) % 6, 6):
        cause, kind, records, dollars, owner, decides = body[i : i + 6]
        out.append({"cause": cause, "kind": kind, "records": int(records.replace(",", "")), "dollars": dollars,
                    "owner": owner.split(" +")[0], "decides": decides})  # fmt: skip
    return out


def _csv_keys(page, button: str) -> list[str]:
    with page.expect_download() as download:
        page.get_by_role("button", name=button).first.click()
    raw = download.value.path().read_bytes().decode("utf-8-sig")
    return [row["key"] for row in csv.DictReader(io.StringIO(raw))]


def test_the_controller_reads_the_four_answers_from_health(demo_app) -> None:
    today = datetime.now(UTC).date()
    period = closing_month(_book_close(demo_app.sandbox_url, demo_app.realm), today)
    name = month_name(period)
    with browser_page(1280, 800) as page:
        # 1. Health is the home page; without a period in the address it opens on the month being closed
        open_page(page, demo_app.url, "Top ten to fix")
        text = main_text(page)
        shot(page, "controller-1-health-1280x800")
        shot(page, "controller-1-health-1280x800-full", full=True)
        assert f"Sync health — {name}" in text
        assert f"{name} (the month being closed)" in text

        # 2. How much: dollars and records blocked, in that month
        dollars, records = metric(page, "Dollars blocked"), metric(page, "Records blocked")
        assert re.fullmatch(MONEY, dollars), dollars
        blocked = int(records.replace(",", ""))
        assert blocked > 0
        assert f"Why: what blocks {records} records, {dollars}" in text

        # 3. Why: causes by their titles, biggest dollars first, with the dollars and who decides; they add up
        causes = _causes(text)
        assert causes, text
        top = causes[0]
        assert not REASON_CODE.search(top["cause"]) and "_" not in top["cause"]
        assert re.fullmatch(MONEY, top["dollars"]) and top["decides"]
        more = re.search(r"and ([\d,]+) more cause\(s\): ([\d,]+) records", text)
        listed = sum(c["records"] for c in causes) + (int(more.group(2).replace(",", "")) if more else 0)
        assert listed == blocked, (listed, blocked)

        # 4. Who owns it: a person, on every cause and on every one of the Top ten
        assert all(PERSON.match(c["owner"]) for c in causes), [c["owner"] for c in causes]
        top_ten = _lines(text, "Top ten to fix", "The whole action queue")
        owners = [line for line in top_ten if "@" in line and " " not in line]
        assert len(owners) == 10 and all(PERSON.match(o) for o in owners), owners

        # 5. Better or worse: six weeks of blocked dollars, new against freed this week, and a verdict in words
        assert "Blocked dollars, last six weeks" in text
        assert re.search(rf"(Worse|Better|Unchanged) than a week ago: {re.escape(dollars)} blocked now", text), text
        new, freed = (int(n.replace(",", "")) for n in metric(page, "New · freed").split(" · "))
        assert re.search(rf"This week: {new:,} records newly blocked \({MONEY}\), {freed:,} freed", text)
        assert not REASON_CODE.search(text) and not re.search(r"\bNone\b|\bnan\b", text)

        # 6. One ranking: the Top ten is the head of the queue for the same month, and the totals agree
        top_keys = _csv_keys(page, "Top ten (CSV)")
        page.get_by_role("link", name=re.compile("The whole action queue for")).click()
        page.get_by_text("Download these items (CSV)").wait_for(timeout=60_000)
        settle(page)
        queue_text = main_text(page)
        shot(page, "controller-2-queue-1280x800")
        assert f"in {name}" in queue_text and "filters: no filter" in queue_text
        assert metric(page, "Dollars blocked") == dollars and metric(page, "Records blocked") == records
        assert _csv_keys(page, "Download these items (CSV)")[:10] == top_keys

        # 7. Every period at once: the records dated in a closed QuickBooks period are the controller's decision
        open_page(page, f"{demo_app.url}/?period=all", "Top ten to fix")
        every = main_text(page)
        shot(page, "controller-3-health-all-periods-1280x800")
        assert "Sync health — all periods" in every
        closed = next(c for c in _causes(every) if c["cause"] == "Dated in a closed QuickBooks period")
        assert closed["decides"] == "controller" and closed["owner"].startswith("controller")
        assert re.fullmatch(MONEY, closed["dollars"]) and closed["records"] > 0

    # 8. Presentation mode, shared at 1920x1080: the same month by default, and any month by the address
    with browser_page(1920, 1080) as page:
        open_page(page, f"{demo_app.url}/?present=1", "Top ten to fix")
        shot(page, "controller-4-present-1920x1080")
        shot(page, "controller-4-present-1920x1080-full", full=True)
        assert not page.locator("[data-testid='stSidebar']").is_visible()
        present = main_text(page)
        assert f"Sync health — {name}" in present and metric(page, "Dollars blocked") == dollars
        open_page(page, f"{demo_app.url}/?present=1&period=all", "Top ten to fix")
        shot(page, "controller-5-present-all-1920x1080")
        assert "Sync health — all periods" in main_text(page)
    with browser_page(1920, 1080) as page:
        open_page(page, demo_app.url, "Top ten to fix")
        shot(page, "controller-6-health-1920x1080")
