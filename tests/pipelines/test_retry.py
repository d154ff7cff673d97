"""An admin's targeted retry: always an answer, refused while the cause stands, sent once when it is gone."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from fixtures import REALM, tiny_company
from world import ADMIN, World

from pipelines.cycle import run_cycle
from pipelines.pull import pull
from pipelines.views.metrics import record_chain


def _refused_by_quickbooks(tmp_path: Path) -> World:
    """VEN-1 sent and refused with 6240: a QuickBooks user added an employee with its name after the last pull.

    (Names are shared across vendors, customers and employees; a name the mirror knows is caught before any send.)
    """
    w = World(tmp_path, company=tiny_company())
    with w.client() as client:
        pull(w.store, client, now=w.now)
        w.sandbox.user_create(REALM, "Employee", {"DisplayName": "Acme Supplies", "Active": True})
        run_cycle(w.store, client, w.settings, now=w.now, trigger="manual", actor=ADMIN.email)
    return w


def _retry(w: World, key: str):
    (answer,) = w.retry(key).items
    return answer


def test_a_record_quickbooks_refused_is_refused_while_the_cause_stands_and_sent_once_after_it_is_fixed(
    tmp_path: Path,
) -> None:
    w = _refused_by_quickbooks(tmp_path)
    assert w.state("vendor:VEN-1") == "needs_fix"
    (attempt,) = record_chain(w.store, REALM, "vendor:VEN-1")["attempts"]
    assert attempt["qbo_code"] == "6240"

    refused = _retry(w, "vendor:VEN-1")  # this crashed with a BinderException before
    assert not refused.done and "nothing has changed since" in refused.message
    assert w.state("vendor:VEN-1") == "needs_fix"

    # Someone renames the employee in QuickBooks; the next pull sees it, and the retry now has a reason to send.
    (employee,) = w.sandbox.entities(REALM, "Employee")
    w.sandbox.user_patch(REALM, "Employee", employee["Id"], {"DisplayName": "Acme Supplies (employee)"})
    w.now += timedelta(minutes=5)
    with w.client() as client:
        pull(w.store, client, now=w.now)
    sent = _retry(w, "vendor:VEN-1")
    assert sent.done and sent.data["state"] == "synced", sent.message
    chain = record_chain(w.store, REALM, "vendor:VEN-1")
    assert [a["outcome"] for a in chain["attempts"]] == ["duplicate", "accepted"]  # the history is kept
    assert w.in_qbo()["Vendor"]["VEN-1"] == 1  # exactly one vendor carries the record's marker


def test_a_bill_refused_for_its_inactive_vendor_is_sent_once_the_vendor_is_active_again(tmp_path: Path) -> None:
    """A QuickBooks user made the bill's vendor inactive between the pull and the send (2500). The vendor is the
    bill's party, mapped by its own kind: making it active again in QuickBooks is a change the retry must see."""
    w = World(tmp_path, company=tiny_company())
    w.cycle(only=[("vendor", "VEN-1")])  # the vendor goes first, alone
    (vendor,) = [v for v in w.sandbox.entities(REALM, "Vendor") if v.get("DisplayName") == "Acme Supplies"]
    w.now += timedelta(minutes=5)
    with w.client() as client:
        pull(w.store, client, now=w.now)
        w.sandbox.user_patch(REALM, "Vendor", vendor["Id"], {"Active": False})  # after the pull: unseen
        run_cycle(
            w.store, client, w.settings, now=w.now, trigger="manual", actor=ADMIN.email, only=[("bill", "BILL-1")]
        )
    assert w.state("bill:BILL-1") == "needs_fix"
    assert [a["qbo_code"] for a in record_chain(w.store, REALM, "bill:BILL-1")["attempts"]] == ["2500"]

    w.sandbox.user_patch(REALM, "Vendor", vendor["Id"], {"Active": True})
    w.now += timedelta(minutes=5)
    with w.client() as client:
        pull(w.store, client, now=w.now)
    sent = _retry(w, "bill:BILL-1")
    assert sent.done and sent.data["state"] == "synced", sent.message
    assert [a["outcome"] for a in record_chain(w.store, REALM, "bill:BILL-1")["attempts"]] == ["rejected", "accepted"]
    assert w.in_qbo()["Bill"]["BILL-1"] == 1
