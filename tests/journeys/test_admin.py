"""The admin's loop, in Chromium against what `make run` serves (the demo company after its weeks of history, a
loopback sandbox, `synchealth serve`), at 1280x800, as a person does it: find the bill QuickBooks refused by its
document number, read why, fix the cause in QuickBooks, retry from the Record page, and see it synced with its
attempts, in QuickBooks exactly once. The refusal is the history's own: in its last cycle a QuickBooks user made a
vendor inactive between the pull and the send, so QuickBooks refused that vendor's bill (2500). And: an action the
engine would refuse is shown disabled with who must act instead, reached from the queue through a link that keeps
the tab and the identity.

Mappings' "no suggestion" case needs an AWRA value nothing in QuickBooks resembles, which the demo does not promise:
that one runs on the tiny company of the unit tests, with such an item added. Screenshots go to
test-artifacts/admin-*.png.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from browser import ROOT, browser_page, choose_actor, first_cycle_done, require_chromium, served
from fixtures import REALM, tiny_company, tiny_snapshot
from playwright.sync_api import Page, expect
from reading import choose, main_text, metric, settle, shot
from world import World

from pipelines.clock import system_clock
from qbo.sandbox import Sandbox
from qbo.sandbox.server import start_in_thread

pytestmark = pytest.mark.browser


@dataclass(frozen=True)
class Served:
    url: str
    sandbox_url: str
    db: Path


@pytest.fixture(scope="module")
def tiny_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """The tiny company with an AWRA item QuickBooks has nothing like (a mapping gap with no suggestion), served."""
    require_chromium()
    tmp = tmp_path_factory.mktemp("admin")
    with start_in_thread(Sandbox(tiny_company())) as running:
        snap = tiny_snapshot()
        snap["invoice_lines"][0]["item_sku"] = "GADGET-9"
        world = World(tmp, snap, base_url=running.base_url, sandbox=running.sandbox)
        world.now = system_clock()  # the server's cycles run on the wall clock (moved by faketime in test-later)
        world.cycle()
        world.store.close()
        env = {
            "SYNCHEALTH_DB": str(world.settings.db_path),
            "SYNCHEALTH_REALM_ID": REALM,
            "SYNCHEALTH_QBO_BASE_URL": running.base_url,
            "SYNCHEALTH_SECRET_KEY": world.settings.secret_key,
        }
        with served(env, tmp / "serve.log") as url:
            first_cycle_done(url, world.settings.db_path)
            yield Served(url, running.base_url, world.settings.db_path)


def _as_admin(page: Page, url: str) -> None:
    page.goto(url)
    page.get_by_text("Acting as").first.wait_for(timeout=90_000)
    settle(page)
    choose_actor(page, "admin@demo.local")
    page.get_by_text("Role: admin").wait_for()
    settle(page)


def _record_json(db: Path, key: str) -> dict:
    """`synchealth record KEY --json`, which goes through the server's local API while the server holds the store."""
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("SYNCHEALTH_")}, "SYNCHEALTH_DB": str(db),
           "SYNCHEALTH_REALM_ID": REALM}  # fmt: skip
    done = subprocess.run([sys.executable, "-m", "pipelines.cli", "record", key, "--json"], cwd=ROOT, env=env,
                          capture_output=True, text=True, check=True)  # fmt: skip
    return json.loads(done.stdout)


def _ours_in_quickbooks(sandbox_url: str, entity: str, key: str) -> int:
    """How many live QuickBooks objects carry the record's source marker (read through the sandbox's control API)."""
    objects = httpx.get(f"{sandbox_url}/_sandbox/{REALM}/entities/{entity}", timeout=10).json()
    marker = f"awra:{key}:"
    return sum(1 for o in objects if o.get("status") != "Deleted" and (o.get("PrivateNote") or "").startswith(marker))


def test_the_admin_finds_a_refused_bill_by_its_number_fixes_the_cause_and_retries_it(demo_app) -> None:
    bill = demo_app.refused
    with browser_page(1280, 800) as page:
        _as_admin(page, f"{demo_app.url}/record")
        shot(page, "admin-1-record-search")

        # 1. find it: by the vendor's name, a list to pick from; by the number on the document, the bill itself
        search = page.get_by_label("Find a record")
        search.fill(bill.party)
        search.press("Enter")
        page.get_by_text("records match").or_(page.get_by_text("record matches")).first.wait_for(timeout=60_000)
        settle(page)
        assert f"Bill · {bill.party}" in main_text(page)  # the vendor's bills, listed with their party
        shot(page, "admin-1b-search-by-party-1280x800")
        search.fill(bill.number)
        search.press("Enter")
        page.locator("[data-testid='stMetric']").filter(has_text="State").wait_for(timeout=60_000)
        settle(page)
        text = main_text(page)
        assert f"Bill {bill.number} — {bill.party}" in text
        assert metric(page, "At stake") == bill.amount
        assert re.fullmatch(r"\S+@\S+", metric(page, "Owner").replace("\u200b", ""))  # a person

        # 2. read the cause: QuickBooks's answer in the catalogue's words, and what it said
        assert "has been made inactive" in text and bill.party in text  # QuickBooks's own detail: the vendor
        assert "Refused by QuickBooks" in text  # the attempt, listed
        shot(page, "admin-2-refused-bill-1280x800")
        shot(page, "admin-2-refused-bill-full", full=True)

        # 3. fix the cause where it lives: a QuickBooks user makes the vendor active again
        vendor = f"{demo_app.sandbox_url}/_sandbox/{REALM}/entities/Vendor/{bill.vendor_qbo_id}"
        fixed = httpx.post(vendor, json={"Active": True}, timeout=10)
        assert fixed.status_code == 200 and fixed.json()["Active"] is True
        recheck = page.get_by_role("button", name="Read QuickBooks and re-check")
        if recheck.count():  # the last check saw the inactive vendor: read QuickBooks again first
            recheck.click()
            settle(page)
        retry = page.get_by_role("button", name="Retry now")
        expect(retry).to_be_enabled(timeout=60_000)
        shot(page, "admin-3-cause-fixed-1280x800")

        # 4. retry from the Record page, and see it synced with both attempts
        retry.click()
        page.get_by_text("sent: in QuickBooks as Id").wait_for(timeout=60_000)
        settle(page)
        assert metric(page, "State") == "synced"
        text = main_text(page)
        assert "Attempts (2)" in text and "Refused by QuickBooks" in text and "Accepted" in text
        assert "In QuickBooks, nothing open." in text
        shot(page, "admin-4-synced-1280x800")
        shot(page, "admin-4-synced-full", full=True)

    # exactly once in QuickBooks, and the engine's record of it agrees (read through the server, which holds the store)
    assert _ours_in_quickbooks(demo_app.sandbox_url, "Bill", bill.key) == 1
    chain = _record_json(demo_app.db, bill.key)
    assert chain["state"] == "synced" and chain["exception"] is None
    assert [a["outcome"] for a in chain["attempts"]] == ["rejected", "accepted"]
    assert chain["attempts"][0]["qbo_code"] == "2500"


def test_from_the_queue_a_record_only_awra_can_fix_shows_retry_disabled_with_who_must_fix_it(demo_app) -> None:
    with browser_page(1280, 800) as page:
        _as_admin(page, f"{demo_app.url}/action_queue?period=all&reason=source_data.not_approved")
        page.get_by_text("items** of", exact=False).or_(page.get_by_text("filters:")).first.wait_for(timeout=60_000)
        settle(page)
        text = main_text(page)
        assert "filters: cause: Not approved in AWRA" in text  # the drill's filter, applied and shown
        shot(page, "admin-5-queue-1280x800")

        page.get_by_text("Select all").click()  # then open the first record from the queue: a link in this tab
        link = page.get_by_role("link", name=re.compile(r"^Open [a-z_]+:"))
        link.first.wait_for(timeout=30_000)
        settle(page)
        assert "Next step:" in main_text(page)  # the selected item's cause and next step, in full
        link.first.click()
        page.locator("[data-testid='stMetric']").filter(has_text="State").wait_for(timeout=60_000)
        settle(page)
        assert len(page.context.pages) == 1 and "/record" in page.url  # the same tab ...
        assert "Role: admin" in page.locator("[data-testid='stSidebar']").inner_text()  # ... as the same person

        retry = page.get_by_role("button", name="Retry now")
        expect(retry).to_be_disabled()
        page.get_by_text("Retry is off").scroll_into_view_if_needed()  # the reason on screen, under the button
        time.sleep(0.5)
        text = main_text(page)
        assert metric(page, "State") == "not ready"
        assert "Retry is off: “Not approved in AWRA” holds it" in text
        assert re.search(r"Only .+ can fix that, in AWRA", text)
        shot(page, "admin-6-retry-disabled-1280x800")


def test_mappings_asks_for_a_choice_where_no_name_matches_and_takes_a_reason(tiny_app: Served) -> None:
    with browser_page(1280, 800) as page:
        _as_admin(page, f"{tiny_app.url}/mappings")
        page.get_by_text("Map a value").wait_for(timeout=60_000)
        settle(page)
        choose(page, "AWRA value", "GADGET-9")
        text = main_text(page)
        assert "Item SKU not mapped to QuickBooks: blocks 1 record(s), $150.00" in text
        assert "No suggestion" in text  # nothing preselected without a score behind it
        go = page.get_by_role("button", name="Map and re-check")
        expect(go).to_be_disabled()
        page.get_by_text("No suggestion").scroll_into_view_if_needed()
        shot(page, "admin-7-mappings-no-suggestion-1280x800")

        choose(page, "QuickBooks object", "Install (Item 2)")  # each choice says its score: "26%, similar name"
        expect(go).to_be_disabled()  # still: the reason is required
        reason = page.get_by_label("Reason (required, kept in the audit log)")
        reason.fill("GADGET-9 is the installation service")
        reason.press("Enter")
        settle(page)
        expect(go).to_be_enabled()
        go.click()
        page.get_by_text("waiting records now ready").wait_for(timeout=60_000)
        settle(page)
        shot(page, "admin-8-mapped-1280x800")
        text = main_text(page)
        assert "mapped item GADGET-9 to QuickBooks Item 2 (Install)" in text
        assert "GADGET-9" not in text.replace("mapped item GADGET-9", "")  # the gap is gone from the page
