"""The control API under /_sandbox/: reset, load, faults, clock, entities, user edits, stats."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from qbo.sandbox import Sandbox

from .sandbox_helpers import REALM, Qbo, body, company


def test_the_route_list_documents_itself(control: httpx.Client) -> None:
    routes = body(control.get("/_sandbox/"))
    assert {
        "method": "POST",
        "path": "/_sandbox/reset",
        "does": "back to the startup company; tokens, counters and faults reset",
    } in routes


def test_entities_lists_inactive_and_deleted_objects(sandbox: Sandbox, control: httpx.Client, qbo: Qbo) -> None:
    qbo.delete("Bill", "1", "0")
    vendors = body(control.get(f"/_sandbox/{REALM}/entities/Vendor"))
    assert [(v["Id"], v["Active"]) for v in vendors] == [("1", True), ("2", False)]
    (bill,) = body(control.get(f"/_sandbox/{REALM}/entities/bill"))
    assert bill["status"] == "Deleted" and bill["DocNumber"] == "B-100"


def test_a_user_patch_bumps_the_sync_token_and_shows_in_cdc(control: httpx.Client, qbo: Qbo) -> None:
    patched = body(control.post(f"/_sandbox/{REALM}/entities/Vendor/1", json={"Active": False}))
    assert (patched["Active"], patched["SyncToken"]) == (False, "1")
    cdc = body(qbo.cdc("Vendor", "2025-06-10T00:00:00-07:00"))["CDCResponse"][0]["QueryResponse"][0]
    assert cdc["Vendor"][0]["Active"] is False
    stale = qbo.update("Vendor", {"Id": "1", "SyncToken": "0", "sparse": True, "Notes": "x"})
    assert body(stale)["Fault"]["Error"][0]["code"] == "5010"


def test_user_create_and_delete(control: httpx.Client, qbo: Qbo) -> None:
    created = body(control.post(f"/_sandbox/{REALM}/entities/Vendor", json={"DisplayName": "Typed By Hand"}))
    assert created["Id"] == "3"
    assert control.delete(f"/_sandbox/{REALM}/entities/Invoice/1").status_code == 200
    assert qbo.read("Invoice", "1").status_code == 400
    refused = control.delete(f"/_sandbox/{REALM}/entities/Vendor/1")
    assert refused.status_code == 400 and "inactive" in body(refused)["error"]
    assert control.delete(f"/_sandbox/{REALM}/entities/Invoice/1").status_code == 404


def test_reset_returns_to_the_startup_company(sandbox: Sandbox, control: httpx.Client, qbo: Qbo) -> None:
    qbo.create("Vendor", {"DisplayName": "Gone After Reset"})
    assert body(control.post("/_sandbox/reset")) == {"realms": [REALM]}
    assert [v["DisplayName"] for v in sandbox.entities(REALM, "Vendor")] == ["Acme Supplies", "Old Vendor"]
    assert qbo.read("Vendor", "1").status_code == 401  # tokens are gone too
    assert sandbox.stats()["realms"] == {}


def test_load_a_company_from_json_or_a_path(sandbox: Sandbox, control: httpx.Client, tmp_path: Path) -> None:
    other = company()
    other["realm_id"] = "1111"
    assert body(control.post("/_sandbox/load", content=json.dumps(other, default=str))) == {"realm_id": "1111"}
    path = tmp_path / "qbo-company.json"
    other["realm_id"] = "2222"
    path.write_text(json.dumps(other, default=str))
    assert body(control.post("/_sandbox/load", json={"path": str(path)})) == {"realm_id": "2222"}
    assert sandbox.default_realm == "2222"
    assert set(sandbox.realm_ids) == {REALM, "1111", "2222"}


@pytest.mark.parametrize(
    "payload",
    [
        {"format": "other"},
        {"format": "synchealth-qbo-company/1"},
        {"path": "/nonexistent/company.json"},
        {"format": "synchealth-qbo-company/1", "realm_id": "1", "objects": {"Widget": []}},
    ],
)
def test_a_bad_company_is_refused_with_a_reason(control: httpx.Client, payload: dict[str, object]) -> None:
    reply = control.post("/_sandbox/load", json=payload)
    assert reply.status_code == 400 and body(reply)["error"].startswith("cannot load the company")


def test_faults_and_clock_routes(sandbox: Sandbox, control: httpx.Client) -> None:
    plan = body(control.post("/_sandbox/faults", json={"spec": "http_500=0.25", "seed": 3}))
    assert (plan["spec"], plan["seed"]) == ("http_500=0.25", 3)
    assert control.post("/_sandbox/faults", json={"spec": "nope=1"}).status_code == 400
    assert body(control.post("/_sandbox/faults", json={}))["spec"] == ""
    before = body(control.get("/_sandbox/clock"))
    after = body(control.post("/_sandbox/clock/advance", json={"seconds": 3600}))
    assert after["seconds"] - before["seconds"] >= 3600
    assert after["now"].startswith("2025-06-15T11:00")
    assert control.post("/_sandbox/clock/advance", json={"seconds": -1}).status_code == 400


def test_stats_and_log(control: httpx.Client, qbo: Qbo) -> None:
    qbo.read("Vendor", "1")
    qbo.send("GET", "vendor/1", requestid="log-1", minorversion="75")
    stats = body(control.get("/_sandbox/stats"))
    assert stats["realms"][REALM]["requests"] == 2 and stats["over_limit"] == 0
    assert stats["limits"]["per_minute"] == 500
    (entry,) = body(control.get("/_sandbox/log", params={"limit": "1"}))
    assert (entry["requestid"], entry["minorversion"], entry["status"]) == ("log-1", "75", 200)


def test_tokens_route_and_unknown_routes(control: httpx.Client) -> None:
    tokens = body(control.post("/_sandbox/tokens", json={"realm": REALM}))
    reply = control.get(f"/v3/company/{REALM}/vendor/1", headers={"authorization": f"Bearer {tokens['access_token']}"})
    assert reply.status_code == 200
    assert control.get("/_sandbox/nothing/here").status_code == 404
    assert control.get(f"/_sandbox/{REALM}/entities/Widget").status_code == 404
    assert control.post("/_sandbox/faults", content=b"not json").status_code == 400
    assert control.post("/_sandbox/faults", json={"spec": "", "seed": "x"}).status_code == 400
    assert control.get("/_sandbox/log", params={"limit": "many"}).status_code == 400
    assert control.get("/elsewhere").status_code == 404
