"""What a person does and reads in the browser, for the journeys: open a page and wait until it has drawn, read its
text as shown (icons' ligature names left out), pick from a select box, keep a screenshot of each step."""

from __future__ import annotations

import re
import time
from datetime import date, timedelta
from pathlib import Path

from browser import ARTIFACTS
from playwright.sync_api import Page
from playwright.sync_api import TimeoutError as PlaywrightTimeout

__all__ = [
    "MONEY",
    "PAGES",
    "REASON_CODE",
    "choose",
    "closing_month",
    "grid_text",
    "main_text",
    "metric",
    "month_name",
    "open_page",
    "settle",
    "shot",
    "wording_problems",
]

# A reason code as the engine writes it (source_data.not_approved): what a finance viewer must never read.
REASON_CODE = re.compile(
    r"\b(?:authorization|mapping|source_data|provider_rejection|duplicate_risk|transport|connection|snapshot)"
    r"\.[a-z_]+\b"
)
MONEY = r"\$[\d,.]+[kMB]?"
# Each page of the navigation at its address, and the title it draws.
PAGES = {
    "": "Sync health",
    "action_queue": "Action queue",
    "trends": "Trends",
    "readiness": "Readiness",
    "mappings": "Mappings",
    "sync_runs": "Sync runs",
    "record": "Record",
    "connection": "Connection",
    "overview": "Overview",
    "audit": "Audit",
    "help": "Help",
}
SNAKE = re.compile(r"(?<![\w./:-])[a-z]+_[a-z_]+\b(?![\w./-])")
# QuickBooks' own name for its request id, which support asks for by that name (Help's evidence to attach).
QUICKBOOKS_TERMS = {"intuit_tid"}
EMPTY = re.compile(r"\bNone\b|\bnan\b|\bNaN\b|\bnull\b")


def wording_problems(text: str) -> list[str]:
    """What a finance viewer must never read in `text`: reason codes, snake_case names, None/nan, a traceback."""
    snake = [name for name in SNAKE.findall(text) if name not in QUICKBOOKS_TERMS]
    found = [*REASON_CODE.findall(text), *EMPTY.findall(text), *snake]
    if "Traceback" in text:
        found.append("Traceback")
    return found


_BUSY = """() => document.querySelector('[data-testid="stApp"]')?.getAttribute('data-test-script-state')
                !== 'notRunning'
             || document.querySelector('[data-testid="stSkeleton"], [data-stale="true"]') !== null"""


def settle(page: Page, quiet: float = 1.0, timeout: float = 90) -> None:
    """Wait until the app has finished its run and drawn it: the script's state (Streamlit's own attribute) not
    running, and no placeholder or stale element left, for `quiet` seconds."""
    deadline = time.monotonic() + timeout
    calm_since = None
    while time.monotonic() < deadline:
        if page.evaluate(_BUSY):
            calm_since = None
        elif calm_since is None:
            calm_since = time.monotonic()
        elif time.monotonic() - calm_since >= quiet:
            return
        time.sleep(0.2)
    raise AssertionError("the page kept running")


def open_page(page: Page, url: str, wait_for: str) -> None:
    """Go to `url` and wait until `wait_for` is drawn and the run has settled; a page (or the sidebar) that failed
    shows one sentence with an incident id instead of a trace (ui/guard.py), and no journey may pass over one."""
    page.goto(url)
    page.get_by_text(wait_for).first.wait_for(timeout=90_000)
    settle(page)
    failed = page.locator("[data-testid='stAlert']", has_text="could not be shown (incident")
    assert failed.count() == 0, f"{url}: {failed.first.inner_text()}"


def main_text(page: Page) -> str:
    """The main block's text as a person reads it: without the Material icons' ligature names (arrow_forward)."""
    return page.evaluate(
        """() => {
            const main = document.querySelector('[data-testid="stMain"]').cloneNode(true);
            main.querySelectorAll('[data-testid="stIconMaterial"], [role="img"][translate="no"]')
                .forEach(e => e.remove());
            document.body.appendChild(main);
            main.style.position = 'absolute'; main.style.left = '-99999px';
            const text = main.innerText;
            main.remove();
            return text;
        }"""
    ).replace("\u200b", "")  # zero-width spaces keep an email from becoming a link; nobody reads them


def grid_text(page: Page) -> str:
    """The text of every data grid on the page as drawn: its column headers and the cells it has rendered (the grid
    paints on a canvas; its accessible table holds the same words, for the rows and columns in view)."""
    cells = page.locator(
        "[data-testid='stDataFrame'] [role='columnheader'], [data-testid='stDataFrame'] [role='gridcell']"
    )
    return "\n".join(cells.all_inner_texts())


def metric(page: Page, label: str) -> str:
    """The value of the metric tile whose label starts with `label`."""
    tile = page.locator("[data-testid='stMetric']").filter(
        has=page.locator("[data-testid='stMetricLabel']", has_text=label)
    )
    return tile.first.locator("[data-testid='stMetricValue']").inner_text().strip()


def choose(page: Page, label: str, option: str) -> None:
    """Pick an option of a select box; a click that lands while the page redraws is tried again."""
    box = page.locator("[data-testid='stSelectbox']").filter(has_text=label).locator("input")
    for _ in range(5):
        box.click()
        try:
            page.get_by_role("option", name=option).first.click(timeout=3_000)
            settle(page)
            return
        except PlaywrightTimeout:
            page.keyboard.press("Escape")
    raise AssertionError(f"the {label} box never offered {option}")


def shot(page: Page, name: str, full: bool = False) -> Path:
    """A PNG in test-artifacts/: the screen as seen, or (full) the whole page however long it is."""
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    if full:  # Streamlit scrolls inside its main block, not the document: grow the window to the content
        size = page.viewport_size
        height = page.evaluate("document.querySelector('[data-testid=\"stMain\"]').scrollHeight")
        page.set_viewport_size({"width": size["width"], "height": height + 40})
        time.sleep(1.5)  # the charts redraw at the new size
        page.screenshot(path=str(path))
        page.set_viewport_size(size)
        time.sleep(0.5)
    else:
        page.screenshot(path=str(path))
    return path


def closing_month(book_close: date | None, today: date) -> str:
    """The month being closed, as the product defines it: the month after the book close date (the previous month
    where none is set), never later than the current month. Written independently of the product's code."""
    first = today.replace(day=1)
    if book_close is None:
        return f"{first - timedelta(days=1):%Y-%m}"
    after = book_close + timedelta(days=1)
    return f"{min(after, first):%Y-%m}"


def month_name(period: str) -> str:
    return f"{date.fromisoformat(period + '-01'):%B %Y}"
