"""The admin's loop, in Chromium against `synchealth serve` and a loopback sandbox, at 1280x800, as a person does it:
find the bill QuickBooks refused by its document number, read why, fix the cause in QuickBooks, retry from the Record
page, and see it synced with its attempts, in QuickBooks exactly once. And: an action the engine would refuse is
shown disabled with who must act instead, reached from the queue through a link that keeps the tab and the identity.

The company is the tiny one of the unit tests (dated from the clock), with one real refusal made the way it happens:
a QuickBooks user made an item inactive after the last pull, so QuickBooks refused the bill that uses it (2500).
Screenshots of every step go to test-artifacts/admin-*.png.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from browser import ROOT, browser_page, choose_actor, require_chromium, served
from fixtures import PERIOD, REALM, tiny_company, tiny_snapshot
from playwright.sync_api import Page, expect
from reading import choose, main_text, metric, settle, shot
from world import ADMIN, World

from pipelines.clock import system_clock
from pipelines.cycle import run_cycle
from pipelines.serve.remote import read_server_file
from qbo.sandbox import Sandbox
from qbo.sandbox.server import start_in_thread

pytestmark = pytest.mark.browser

REFUSED = "bill:BILL-1"  # document number INV-9, vendor Acme Supplies; its line 1 is item WID-100 ("Widget", Id 1)
NUMBER = "INV-9"
WAITS_ON_AWRA = "bill:BILL-2"  # pending approval and unposted in AWRA: nothing an admin can send


@dataclass(frozen=True)
class Served:
    url: str
    sandbox_url: str
    db: Path


def _first_cycle_done(url: str, db: Path, seconds: float = 120) -> None:
    """The server's first cycle (pull, check, sync, queue) has finished: every page reads the same state."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        info = read_server_file(db)
        if info:
            body = httpx.get(f"{url}/healthz", headers={"authorization": f"Bearer {info['token']}"}, timeout=10).json()
            scheduler = body.get("scheduler", {})
            if scheduler.get("cycles", 0) + scheduler.get("failed_cycles", 0) >= 1 and not scheduler.get("current"):
                return
        time.sleep(0.5)
    raise AssertionError(f"the server's first cycle did not finish within {seconds:.0f} s")


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    require_chromium()
    tmp = tmp_path_factory.mktemp("admin")
    with start_in_thread(Sandbox(tiny_company())) as running:
        snap = tiny_snapshot()
        snap["invoice_lines"][0]["item_sku"] = "GADGET-9"  # an AWRA item QuickBooks has nothing like: a mapping gap
        world = World(tmp, snap, base_url=running.base_url, sandbox=running.sandbox)
        world.now = system_clock()  # the server's cycles run on the wall clock (moved by faketime in test-later)
        world.pull()
        (widget,) = [i for i in running.sandbox.entities(REALM, "Item") if i.get("Sku") == "WID-100"]
        running.sandbox.user_patch(REALM, "Item", widget["Id"], {"Active": False})  # after the pull: unseen
        with world.client() as client:
            run_cycle(world.store, client, world.settings, now=world.now, trigger="manual", actor=ADMIN.email)
        assert world.state(REFUSED) == "needs_fix" and world.state(WAITS_ON_AWRA) == "not_ready"
        world.store.close()
        env = {
            "SYNCHEALTH_DB": str(world.settings.db_path),
            "SYNCHEALTH_REALM_ID": REALM,
            "SYNCHEALTH_QBO_BASE_URL": running.base_url,
            "SYNCHEALTH_SECRET_KEY": world.settings.secret_key,
        }
        with served(env, tmp / "serve.log") as url:
            _first_cycle_done(url, world.settings.db_path)
            yield Served(url, running.base_url, world.settings.db_path)


def _as_admin(page: Page, url: str) -> None:
    page.goto(url)
    page.get_by_text("Acting as").first.wait_for(timeout=90_000)
    settle(page)
    choose_actor(page, "admin@demo.local")
    page.get_by_text("Role: admin").wait_for()
    settle(page)


def _record_json(app: Served, key: str) -> dict:
    """`synchealth record KEY --json`, which goes through the server's local API while the server holds the store."""
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("SYNCHEALTH_")}, "SYNCHEALTH_DB": str(app.db),
           "SYNCHEALTH_REALM_ID": REALM}  # fmt: skip
    done = subprocess.run([sys.executable, "-m", "pipelines.cli", "record", key, "--json"], cwd=ROOT, env=env,
                          capture_output=True, text=True, check=True)  # fmt: skip
    return json.loads(done.stdout)


def _ours_in_quickbooks(sandbox_url: str, entity: str, key: str) -> int:
    """How many live QuickBooks objects carry the record's source marker (read through the sandbox's control API)."""
    objects = httpx.get(f"{sandbox_url}/_sandbox/{REALM}/entities/{entity}", timeout=10).json()
    marker = f"awra:{key}:"
    return sum(1 for o in objects if o.get("status") != "Deleted" and (o.get("PrivateNote") or "").startswith(marker))


def test_the_admin_finds_a_refused_bill_by_its_number_fixes_the_cause_and_retries_it(app: Served) -> None:
    with browser_page(1280, 800) as page:
        _as_admin(page, f"{app.url}/record")
        shot(page, "admin-1-record-search")

        # 1. find it: by the vendor's name, a list to pick from; by the number on the document, the bill itself
        search = page.get_by_label("Find a record")
        search.fill("acme")
        search.press("Enter")
        page.get_by_role("link", name=NUMBER).wait_for(timeout=60_000)
        settle(page)
        listed = main_text(page)
        assert "records match" in listed and "Bill · Acme Supplies" in listed and "$30.50" in listed
        shot(page, "admin-1b-search-by-party-1280x800")
        search.fill(NUMBER)
        search.press("Enter")
        page.locator("[data-testid='stMetric']").filter(has_text="State").wait_for(timeout=60_000)
        settle(page)
        text = main_text(page)
        assert f"Bill {NUMBER} — Acme Supplies" in text
        assert metric(page, "At stake") == "$30.50"
        assert metric(page, "Owner").replace("\u200b", "").endswith("@demo.local")  # a person

        # 2. read the cause: QuickBooks's answer in the catalogue's words, and what it said
        assert "QuickBooks refused: unknown account, item or party" in text or "inactive QuickBooks item" in text
        assert "has been made inactive" in text  # QuickBooks's own detail: the item Widget is inactive
        assert "Refused by QuickBooks" in text  # the attempt, listed
        assert "Widget" in text and "$20.50" in text  # the document: its lines, to the cent
        shot(page, "admin-2-refused-bill-1280x800")
        shot(page, "admin-2-refused-bill-full", full=True)

        # 3. fix the cause where it lives: a QuickBooks user makes the item active again
        fixed = httpx.post(f"{app.sandbox_url}/_sandbox/{REALM}/entities/Item/1", json={"Active": True}, timeout=10)
        assert fixed.status_code == 200 and fixed.json()["Active"] is True
        recheck = page.get_by_role("button", name="Read QuickBooks and re-check")
        if recheck.count():  # the last check saw the inactive item: read QuickBooks again first
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
    assert _ours_in_quickbooks(app.sandbox_url, "Bill", REFUSED) == 1
    chain = _record_json(app, REFUSED)
    assert chain["state"] == "synced" and chain["exception"] is None
    assert [a["outcome"] for a in chain["attempts"]] == ["rejected", "accepted"]
    assert chain["attempts"][0]["qbo_code"] == "2500"


def test_from_the_queue_a_record_only_awra_can_fix_shows_retry_disabled_with_who_must_fix_it(app: Served) -> None:
    with browser_page(1280, 800) as page:
        _as_admin(page, f"{app.url}/action_queue?period={PERIOD}&reason=source_data.not_approved")
        page.get_by_text("items** of", exact=False).or_(page.get_by_text("filters:")).first.wait_for(timeout=60_000)
        settle(page)
        text = main_text(page)
        assert "filters: cause: Not approved in AWRA" in text  # the drill's filter, applied and shown
        shot(page, "admin-5-queue-1280x800")

        page.get_by_text("Select all").click()  # then open the record from the queue: a link in this tab
        link = page.get_by_role("link", name=f"Open {WAITS_ON_AWRA}")
        link.wait_for(timeout=30_000)
        link.click()
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
        assert "Only approver in AWRA (ap@acme.example) can fix that, in AWRA" in text
        shot(page, "admin-6-retry-disabled-1280x800")


def test_mappings_asks_for_a_choice_where_no_name_matches_and_takes_a_reason(app: Served) -> None:
    with browser_page(1280, 800) as page:
        _as_admin(page, f"{app.url}/mappings")
        page.get_by_text("Map a value").wait_for(timeout=60_000)
        settle(page)
        choose(page, "AWRA value", "GADGET-9")  # (first on the list once the bill's item is active again)
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
