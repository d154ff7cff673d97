"""The client against the local sandbox over loopback HTTP: tokens, throttling, replay, CDC, batch."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from cryptography.fernet import Fernet

from pipelines.config import DEMO_REALM_ID, Settings
from pipelines.store import Store
from qbo.client import BatchItem, QboCallError, QboClient, RateLimiter, select
from qbo.oauth import OAuthClient, authorize_url, new_state
from qbo.sandbox import Sandbox
from qbo.sandbox.server import start_in_thread
from qbo.tokens import Secret, TokenStore

REALM = DEMO_REALM_ID


@dataclass
class Live:
    """A sandbox on a loopback port and a connected client, timed by the sandbox's own clock."""

    sandbox: Sandbox
    base_url: str
    http: httpx.Client
    tokens: TokenStore
    client: QboClient
    sent: list[httpx.Request] = field(default_factory=list)

    def control(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        response = self.http.request(method, f"{self.base_url}/_sandbox{path}", json=body)
        response.raise_for_status()
        return response.json()

    def token_calls(self) -> int:
        return sum(1 for r in self.sent if r.url.path == "/oauth2/v1/tokens/bearer")

    def api_log(self) -> list[dict[str, Any]]:
        return self.control("GET", "/log?limit=5000")


def _connect(settings: Settings, tokens: TokenStore, http: httpx.Client, clock: Callable[[], datetime]) -> str:
    """The whole browser round trip: authorize URL -> redirect with code, state, realmId -> exchange."""
    state = new_state()
    redirect = http.get(authorize_url(settings, state), follow_redirects=False)
    assert redirect.status_code == 302
    callback = {k: v[0] for k, v in parse_qs(urlsplit(redirect.headers["location"]).query).items()}
    assert callback["state"] == state
    OAuthClient(settings, tokens, http=http, clock=clock).exchange_code(
        callback["code"], callback["realmId"], connected_by="admin@demo.local"
    )
    return callback["realmId"]


@pytest.fixture
def live_factory(tmp_path: Path, store: Store) -> Iterator[Callable[..., Live]]:
    started: list[tuple[Any, Sandbox, httpx.Client]] = []

    def start(*, client_timeout: float = 10.0, **sandbox_options: Any) -> Live:
        sandbox = Sandbox(**sandbox_options)
        server = start_in_thread(sandbox)
        sent: list[httpx.Request] = []
        http = httpx.Client(timeout=client_timeout, event_hooks={"request": [sent.append]})
        started.append((server, sandbox, http))
        settings = Settings(
            qbo_env="local",
            qbo_base_url=server.base_url,
            secret_key=Fernet.generate_key().decode(),
            secret_key_file=tmp_path / "unused.key",
        )
        tokens = TokenStore(store, settings)
        clock = sandbox.clock.now  # the sandbox's time, so token lifetimes and windows agree

        def sleep(seconds: float) -> None:
            time.sleep(sandbox.clock.real_seconds(seconds))

        realm = _connect(settings, tokens, http, clock)
        limiter = RateLimiter(clock=clock, sleep=sleep)
        client = QboClient(settings, tokens, realm, http=http, clock=clock, sleep=sleep, limiter=limiter)
        return Live(sandbox, server.base_url, http, tokens, client, sent)

    yield start
    for server, sandbox, http in started:
        http.close()
        server.stop()
        sandbox.close()
        assert sandbox.errors == [], "the sandbox hit a bug of its own"


def test_token_expiry_mid_run_refreshes_once_and_stores_the_new_refresh_token(
    live_factory: Callable[..., Live],
) -> None:
    live = live_factory()
    live.client.create("Vendor", {"DisplayName": "Before Expiry"}, request_id="vendor:1:v1")
    first_refresh = live.tokens.load(REALM).refresh_token
    before = live.token_calls()
    live.control("POST", f"/{REALM}/tokens/expire")
    created = live.client.create("Vendor", {"DisplayName": "After Expiry"}, request_id="vendor:2:v1")
    assert created.ok and live.token_calls() == before + 1
    stored = live.tokens.load(REALM).refresh_token
    assert stored != first_refresh  # the sandbox rotates on every refresh: the new one had to be kept
    # Prove the stored one is the live one: expire again, and the next refresh must be accepted.
    live.control("POST", f"/{REALM}/tokens/expire")
    assert live.client.read("Vendor", created.object["Id"]).ok
    assert live.token_calls() == before + 2
    assert [e["event"] for e in live.tokens.events(REALM)] == ["refreshed", "refreshed", "connected"]


def test_a_revoked_connection_ends_in_reconnect_needed(live_factory: Callable[..., Live]) -> None:
    live = live_factory()
    live.control("POST", f"/{REALM}/tokens/expire", {"refresh": True})  # the grant is revoked at Intuit
    with pytest.raises(QboCallError) as caught:
        live.client.company_info()
    assert caught.value.outcome.reason == "authorization.reconnect_needed"
    status = live.tokens.status(REALM)
    assert (status.status, status.reason) == ("reconnect_needed", "authorization.reconnect_needed")
    sent = len(live.sent)
    with pytest.raises(QboCallError, match="authorization.reconnect_needed"):
        live.client.company_info()
    assert len(live.sent) == sent


def test_the_client_stays_within_every_limit_under_load(live_factory: Callable[..., Live]) -> None:
    # 60x time: one sandbox minute is one real second, so the 500/min window is hit within it.
    live = live_factory(time_scale=60, latency_seconds=0.002)
    started = live.sandbox.clock.seconds()
    errors: list[BaseException] = []

    def work() -> None:
        try:
            for _ in range(50):
                live.client.company_info()
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    stats = live.control("GET", "/stats")
    realm = stats["realms"][REALM]
    assert realm["requests"] == 12 * 50
    assert stats["over_limit"] == 0 and realm["throttled"] == {}
    assert realm["max_in_window"] <= 500 and realm["max_concurrent"] <= 10
    assert live.sandbox.clock.seconds() - started >= 60  # 600 calls need at least two windows


def test_a_throttled_client_waits_and_resends_the_same_request(live_factory: Callable[..., Live]) -> None:
    live = live_factory(time_scale=600, throttle_format="xml")  # 60 sandbox seconds = 0.1 s
    live.control("POST", "/faults", {"spec": "throttle_429_xml=0.3", "seed": 4})
    for n in range(20):
        live.client.create("Vendor", {"DisplayName": f"Throttled {n}"}, request_id=f"vendor:T{n}:v1")
    log = [e for e in live.api_log() if e["operation"] == "create"]
    throttled = [e for e in log if e["status"] == 429]
    assert throttled, "the fault plan should have throttled some requests"
    for entry in throttled:  # each throttled request was sent again with the same requestid, and succeeded
        assert any(e["requestid"] == entry["requestid"] and e["status"] == 200 for e in log)
    assert len(live.sandbox.entities(REALM, "Vendor")) == 20


def test_requestid_replay_turns_an_ambiguous_timeout_into_one_vendor(
    live_factory: Callable[..., Live],
) -> None:
    live = live_factory(client_timeout=0.5, timeout_hold_seconds=3)
    live.control("POST", "/faults", {"spec": "timeout_after_commit@create=1.0", "seed": 1})
    with pytest.raises(QboCallError) as caught:
        live.client.create("Vendor", {"DisplayName": "Maybe Created"}, request_id="vendor:M1:v1")
    assert caught.value.outcome.outcome == "ambiguous"  # sent, outcome unknown: never resent blindly
    assert len([e for e in live.api_log() if e["operation"] == "create"]) == 1
    live.control("POST", "/faults", {})
    # The sync engine looks the record up first; sending the same requestid is also safe (ref §1):
    again = live.client.create("Vendor", {"DisplayName": "Maybe Created"}, request_id="vendor:M1:v1")
    vendors = [v for v in live.sandbox.entities(REALM, "Vendor") if v["DisplayName"] == "Maybe Created"]
    assert len(vendors) == 1 and again.object["Id"] == vendors[0]["Id"]
    assert live.api_log()[-1]["note"] == "replay"


def test_cdc_over_1000_changes_is_split_into_windows_and_merged(live_factory: Callable[..., Live]) -> None:
    live = live_factory()
    since = live.sandbox.clock.now() - timedelta(minutes=1)
    for n in range(1500):
        live.sandbox.user_create(REALM, "Vendor", {"DisplayName": f"CDC Vendor {n:04d}"})
        if n % 3 == 2:
            live.sandbox.clock.advance(1)  # three changes a second: windows can end between seconds
    changed = live.sandbox.entities(REALM, "Vendor")[10]
    live.sandbox.user_patch(REALM, "Vendor", changed["Id"], {"CompanyName": "Changed later"})
    found = live.client.cdc(["Vendor", "Customer"], since)
    assert len(found["Vendor"]) == 1500 and found["Customer"] == []
    assert len({v["Id"] for v in found["Vendor"]}) == 1500
    newest = next(v for v in found["Vendor"] if v["Id"] == changed["Id"])
    assert newest["CompanyName"] == "Changed later" and newest["SyncToken"] == "1"
    cdc_calls = [e for e in live.api_log() if e["operation"] == "cdc"]
    assert len(cdc_calls) == 2  # 1,501 changes: one full window of 1,000, then the rest
    assert not [e for e in live.api_log() if e["operation"] == "query" and "SELECT *" in str(e)]


def test_a_batch_of_30_with_mixed_item_faults_is_matched_by_bid(live_factory: Callable[..., Live]) -> None:
    live = live_factory()
    expense = live.sandbox.user_create(REALM, "Account", {"Name": "Office", "AccountType": "Expense"})
    live.sandbox.user_create(REALM, "Account", {"Name": "Payables", "AccountType": "Accounts Payable"})
    supplier = live.sandbox.user_create(REALM, "Vendor", {"DisplayName": "Dup Co"})
    stale = live.sandbox.user_create(REALM, "Vendor", {"DisplayName": "Stale Co"})
    live.sandbox.user_patch(REALM, "Vendor", stale["Id"], {"CompanyName": "changed in QuickBooks"})

    def bill(account: str, amount: Decimal | None = Decimal("10.00")) -> dict[str, Any]:
        line: dict[str, Any] = {
            "DetailType": "AccountBasedExpenseLineDetail",
            "AccountBasedExpenseLineDetail": {"AccountRef": {"value": account}},
        }
        if amount is not None:
            line["Amount"] = amount
        return {"VendorRef": {"value": supplier["Id"]}, "Line": [line]}

    items = [BatchItem(f"v{n}", "create", "Vendor", {"DisplayName": f"Batch Vendor {n}"}) for n in range(24)]
    items += [
        BatchItem("dup", "create", "Vendor", {"DisplayName": "Dup Co"}),
        BatchItem("bill-ok", "create", "Bill", bill(expense["Id"])),
        BatchItem("bill-ref", "create", "Bill", bill("999")),
        BatchItem("bill-req", "create", "Bill", bill(expense["Id"], amount=None)),
        BatchItem("stale", "update", "Vendor", {"Id": stale["Id"], "SyncToken": "0", "sparse": True}),
        BatchItem("q", query=select("Vendor").where("DisplayName", "=", "Dup Co")),
    ]
    results = live.client.batch(items, request_id="run-1:batch-1")
    assert len(results) == 30
    assert all(results[f"v{n}"].ok for n in range(24))
    assert results["bill-ok"].ok and results["bill-ok"].object["TotalAmt"] == Decimal("10.00")
    reasons = {bid: results[bid].outcome.reason for bid in ("dup", "bill-ref", "bill-req", "stale")}
    assert reasons == {
        "dup": "duplicate_risk.name_exists",
        "bill-ref": "provider_rejection.invalid_reference",
        "bill-req": "provider_rejection.required_field_missing",
        "stale": "provider_rejection.stale_object",
    }
    assert results["bill-ref"].element and "AccountRef" in results["bill-ref"].element
    assert results["q"].ok and results["q"].data["Vendor"][0]["Id"] == supplier["Id"]


def test_names_with_quotes_and_backslashes_are_found_exactly(live_factory: Callable[..., Live]) -> None:
    live = live_factory()
    names = ["O'Brien & Sons", "Back\\slash\\", "50% Off", "Back/slash/", "back\\SLASH\\"]
    ids = {n: live.sandbox.user_create(REALM, "Vendor", {"DisplayName": n})["Id"] for n in names}
    for name in ("O'Brien & Sons", "Back\\slash\\", "50% Off"):
        found = live.client.query_all("Vendor", {"DisplayName": name})
        expected = {ids[n] for n in names if n.casefold() == name.casefold()}
        assert {v["Id"] for v in found} == expected, name


def test_flaky_reads_recover_and_what_does_not_is_retryable_transport(
    live_factory: Callable[..., Live],
) -> None:
    live = live_factory(time_scale=60)  # the backoff between retries runs on sandbox seconds
    for n in range(5):
        live.sandbox.user_create(REALM, "Vendor", {"DisplayName": f"Flaky {n}"})
    live.control("POST", "/faults", {"spec": "http_500=0.15,http_503_html=0.1,connection_reset=0.05", "seed": 7})
    outcomes = []
    for _ in range(20):
        try:
            outcomes.append(len(live.client.query_all("Vendor")))
        except QboCallError as exc:  # three bad answers in a row: left to the sync engine's schedule
            assert exc.outcome.dimension == "transport" and exc.outcome.retryable
            outcomes.append(exc.outcome.reason)
    injected = live.control("GET", "/faults")["injected"]
    assert set(injected) == {"http_500", "http_503_html", "connection_reset"}
    assert outcomes.count(5) >= 17  # far more faults were injected than calls failed: retries absorbed them
    assert sum(injected.values()) > 20 - outcomes.count(5)
    token = live.tokens.load(REALM).access_token
    assert isinstance(token, Secret) and token.reveal() not in str(live.api_log())
