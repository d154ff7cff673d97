"""Action queue, Audit and Help pages through AppTest, against a sandbox on loopback: roles decide the buttons."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fixtures import PERIOD, PERIOD_NAME, REALM, tiny_snapshot
from served import open_page, serve
from streamlit.testing.v1 import AppTest
from world import World

from pipelines.catalogue import catalogue
from pipelines.mappings import set_mapping

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def served(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    """BILL-1 waits on an unmapped item (admin's), BP-1 on BILL-1, BILL-2 is pending and unposted (finance's)."""
    snap = tiny_snapshot()
    snap["bill_lines"][0]["item_sku"] = "WID-220"
    yield from serve(tmp_path, monkeypatch, snap)


def _page(page: str, actor: str = "viewer@demo.local", **query: str) -> AppTest:
    """The page for the tiny company's month (its documents are all in it), as `actor`."""
    at = open_page(page, actor, **{"period": PERIOD, **query})
    assert not at.exception
    return at


def _select(at: AppTest, key_text: str) -> AppTest:
    """Filter the queue to the records whose key contains the text, and select every item shown."""
    at.text_input(key="q_key").set_value(key_text).run()
    at.checkbox(key="q_all").check().run()
    return at


def _keys(at: AppTest, index: int = 0) -> set[str]:
    """The records the queue's table lists (by AWRA id)."""
    return set(at.dataframe[index].value["record_id"])


def _metrics(at: AppTest) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def test_a_viewer_reads_the_queue_with_the_fix_and_a_link_and_gets_no_action(served: World) -> None:
    at = _page("action_queue.py")
    assert _metrics(at)["Records blocked"] == "3"
    table = at.dataframe[0].value
    assert table.columns[:4].tolist() == ["at_stake", "owner_shown", "when", "document"]  # first at 1280 px
    assert set(table["record_id"]) == {"BILL-1", "BILL-2", "BP-1"}
    bill1 = table[table["record_id"] == "BILL-1"].iloc[0]
    assert bill1["why"] == "Item SKU not mapped to QuickBooks" and bill1["fix"].startswith("An admin maps the item SKU")
    assert bill1["owner_shown"] == "admin@demo.local" and bill1["at_stake"] == 30.5  # a person, and the money
    assert bill1["document"] == "INV-9 · Acme Supplies"  # the bill as a person knows it: its number, its vendor
    assert len(at.button) == 0  # no assign, resolve, exclude or retry for a viewer
    assert any("Read-only" in c.value and "you are signed in as a viewer" in c.value for c in at.caption)
    assert at.get("download_button")  # reading includes exporting

    at.multiselect(key="q_kind").select("mapping").run()
    assert _keys(at) == {"BILL-1", "BP-1"}  # the payment waits on the bill: its cause is the bill's mapping
    at.checkbox(key="q_all").check().run()
    (link,) = [p.proto for p in at.get("page_link") if "BILL-1" in p.proto.label]
    assert link.page == "record" and link.query_string == "key=bill%3ABILL-1"  # a page link: same tab, same session
    # the grid cuts long cells; the selected item's cause and next step are written out in full under its link
    words = [c.value.replace("\\", "") for c in at.caption]  # (Markdown's characters arrive escaped)
    assert any(w.startswith("INV-9 · Acme Supplies: Item SKU not mapped") and "Next step: An admin maps the item" in w
               for w in words), words  # fmt: skip


def test_finance_resolves_a_source_data_item_but_not_a_mapping_one_and_cannot_retry_or_map(served: World) -> None:
    at = _page("action_queue.py", actor="finance@demo.local")
    assert not [b for b in at.button if b.key == "q_retry"]
    assert any("Retry needs the admin role; you are signed in as a finance" in c.value for c in at.caption)

    _select(at, "BILL-2")
    at.text_input(key="q_reason").set_value("approved by AP on the phone").run()
    at.button(key="q_resolve").click().run()
    assert not at.exception
    results = at.dataframe[0].value
    assert len(results) == 2 and (results["Result"] == "done").all()
    assert all("resolved: fixed in QuickBooks" in m for m in results["What happened"])
    assert at.progress[0].value == 100
    assert "BILL-2" not in _keys(at, 1)  # the queue below no longer lists them

    _select(at, "BILL-1")
    assert any("acting on them needs the admin role" in i.value for i in at.info)
    at.button(key="q_resolve").click().run()
    (message,) = at.dataframe[0].value["What happened"]
    assert message.startswith("resolve of a mapping exception needs the admin role")

    mappings = _page("mappings.py", actor="finance@demo.local")
    assert not [b for b in mappings.button if b.key == "map_go"]
    assert any("mapping needs the admin role" in c.value for c in mappings.caption)


def test_an_admin_assigns_retries_and_maps_and_the_audit_page_shows_who_did_what(served: World) -> None:
    at = _page("action_queue.py", actor="admin@demo.local")
    _select(at, "BILL-1")
    at.selectbox(key="q_assign_to").select("admin@demo.local").run()
    at.button(key="q_assign").click().run()
    (message,) = at.dataframe[0].value["What happened"]
    assert message.endswith("assigned to admin@demo.local")
    table = at.dataframe[1].value
    assert table[table["record_id"] == "BILL-1"].iloc[0][["status", "owner_shown"]].tolist() == [
        "assigned",
        "admin@demo.local",
    ]
    at.button(key="q_retry").click().run()  # still unmapped: refused with the reason, per record
    retried = at.dataframe[0].value
    assert retried["Item"].tolist() == ["bill:BILL-1"] and (retried["Result"] == "refused").all()
    assert "still line 1: item SKU WID-220 has no QuickBooks item" in retried["What happened"][0]
    assert [b for b in _page("mappings.py", actor="admin@demo.local").button if b.key == "map_go"]

    audit = _page("audit.py", actor="viewer@demo.local")
    log = audit.dataframe[0].value
    assert "assign" in set(log["action"])  # the refused retry changed nothing, so it left no entry
    mine = log[log["actor"] == "admin@demo.local"].iloc[0]
    assert (mine["role"], mine["action"], mine["target"]) == ("admin", "assign", "bill BILL-1")  # in words
    assert "status: open" in mine["before_json"] and "owner: admin@demo.local" in mine["after_json"]
    assert not set(mine["before_json"] + mine["after_json"]) & set('{}"')  # sentences, not JSON
    audit.multiselect(key="audit_action").select("assign").run()
    assert set(audit.dataframe[0].value["action"]) == {"assign"}
    assert audit.get("download_button")


def test_the_help_page_lists_every_reason_code_with_its_fix_owner_and_evidence() -> None:
    at = AppTest.from_file(str(ROOT / "app_pages" / "help.py"), default_timeout=60).run()
    assert not at.exception
    shown = [frame.value for frame in at.dataframe]
    reasons = {r for frame in shown for r in frame["reason"]}
    assert reasons == set(catalogue()["reason"])
    assert all(frame["fix"].str.len().min() > 10 and frame["owner"].notna().all() for frame in shown)
    text = " ".join(m.value for m in at.markdown)
    assert "intuit_tid" in text and "Escalate to" in text
    at.text_input(key="help_search").set_value("6000").run()
    assert [set(f.value["reason"]) for f in at.dataframe] == [{"provider_rejection.business_rule"}]


# -- bulk work -------------------------------------------------------------------------------------------
BULK, SENDABLE = 500, 30


def _bulk_snapshot() -> dict:
    """500 more bills for VEN-1: the first 30 use item WID-220, the rest WID-330; neither is mapped yet."""
    snap = tiny_snapshot()
    template = snap["bills"][0]
    for n in range(1, BULK + 1):
        bill_id = f"BULK-{n:04d}"
        snap["bills"].append(
            {**template, "bill_id": bill_id, "bill_number": f"B{n:04d}", "po_id": None, "total": "10.00"}
        )
        snap["bill_lines"].append(
            {**snap["bill_lines"][0], "bill_id": bill_id, "item_sku": "WID-220" if n <= SENDABLE else "WID-330",
             "qty": "1", "unit_price": "10.00", "amount": "10.00"}
        )  # fmt: skip
    return snap


@pytest.fixture
def bulk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    def map_one(world: World) -> None:  # WID-220 is mapped now; the records learn it when they are re-checked
        with world.store.transaction() as tx:
            set_mapping(
                tx, REALM, "item", "WID-220", "1", actor="admin@demo.local", reason="same widget", now=world.now
            )

    yield from serve(tmp_path, monkeypatch, _bulk_snapshot(), after=map_one)


def test_a_bulk_retry_of_500_items_shows_progress_and_each_items_result(bulk: World) -> None:
    at = _page("action_queue.py", actor="admin@demo.local")
    at.multiselect(key="q_kind").select("mapping").run()
    at.checkbox(key="q_all").check().run()
    assert at.button(key="q_retry").label == f"Retry {BULK} record(s)"
    at.button(key="q_retry").click().run()
    assert not at.exception
    assert at.progress[0].value == 100 and at.progress[0].text == f"Retry: {BULK} of {BULK} processed"
    results = at.dataframe[0].value
    assert len(results) == BULK and results["Item"].is_unique
    sent = results[results["Result"] == "done"]
    assert len(sent) == SENDABLE and sent["What happened"].str.startswith("sent: in QuickBooks as Id").all()
    refused = results[results["Result"] == "refused"]
    assert refused["What happened"].str.contains("item SKU WID-330 has no QuickBooks item").all()
    assert f"{SENDABLE:,} of {BULK:,} done, {BULK - SENDABLE:,} refused" in at.warning[0].value


def test_a_drill_link_from_the_health_page_arrives_filtered(served: World) -> None:
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    at.query_params["dimension"] = "mapping"
    at.query_params["period"] = PERIOD
    at.run()
    at.switch_page("app_pages/action_queue.py").run()
    assert not at.exception
    assert at.multiselect(key="q_kind").value == ["mapping"]
    assert _keys(at) == {"BILL-1", "BP-1"}


def test_a_drill_keeps_every_filter_it_names_and_says_so(served: World) -> None:
    """owner, reason, entity, period and company from the address: each applied, each shown above the table."""
    at = _page("action_queue.py", owner="ap@acme.example", reason="source_data.not_approved", entity="bill",
               company=REALM)  # fmt: skip
    assert _keys(at) == {"BILL-2"}
    assert at.multiselect(key="q_owner").value == ["ap@acme.example"]
    (line,) = [m.value for m in at.markdown if "items** of" in m.value]
    assert line.startswith("**2 of 4 items**") and PERIOD_NAME in line  # BILL-2's two items share the cause
    for shown in ("owner\\: ap", "cause\\: Not approved in AWRA", "record type\\: bill"):
        assert shown in line, line

    nobody = _page("action_queue.py", owner="nobody@acme.example")  # a filter that matches nothing still holds
    assert nobody.dataframe[0].value.empty
    assert any("owner\\: nobody" in m.value for m in nobody.markdown)
