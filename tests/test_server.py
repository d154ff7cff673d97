"""The one server over loopback HTTP: `uvicorn server:app` with the sandbox; pages, OAuth, webhooks, health, CLI."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from browser import browser_page, choose_actor, free_port, require_chromium, screenshot
from cryptography.fernet import Fernet
from fixtures import REALM, T0, tiny_company, tiny_snapshot, write_snapshot

from pipelines.clock import system_clock
from pipelines.ingest import ingest_snapshot
from pipelines.serve.remote import read_server_file, server_file, write_server_file
from pipelines.serve.webhooks import sign
from pipelines.store import Store
from qbo.sandbox import Sandbox
from qbo.sandbox.server import RunningSandbox, start_in_thread

ROOT = Path(__file__).resolve().parents[1]
VERIFIER = "test-verifier-token"


@dataclass
class Served:
    url: str
    sandbox: RunningSandbox
    db: Path
    env: dict[str, str]
    proc: subprocess.Popen
    log: Path

    @property
    def auth(self) -> dict[str, str]:
        return {"authorization": f"Bearer {read_server_file(self.db)['token']}"}

    def health(self) -> dict[str, Any]:
        """The detailed health: what the holder of the local API token sees."""
        return httpx.get(f"{self.url}/healthz", headers=self.auth, timeout=10).json()

    def cli(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "pipelines.cli", *args], cwd=ROOT, env=self.env, capture_output=True, text=True
        )

    def reads_since(self, mark: int) -> list[tuple[str, str]]:
        return [(e["method"], e["path"]) for e in list(self.sandbox.sandbox.request_log)[mark:]]

    def queries_since(self, mark: int) -> list[str]:
        """The text of each query the sandbox answered after `mark`."""
        return [e["query"] for e in list(self.sandbox.sandbox.request_log)[mark:] if e.get("query")]


def _until(check: Callable[[], Any], seconds: float = 30, what: str = "the server") -> Any:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if found := check():
            return found
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    tmp = tmp_path_factory.mktemp("server")
    sandbox = start_in_thread(Sandbox(tiny_company()))
    db = tmp / "served.duckdb"
    with Store(db) as store:
        ingest_snapshot(store, write_snapshot(tmp / "awra", tiny_snapshot()), realm_id=REALM, now=T0)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("SYNCHEALTH_")},
        "SYNCHEALTH_DB": str(db),
        "SYNCHEALTH_REALM_ID": REALM,
        "SYNCHEALTH_QBO_BASE_URL": sandbox.base_url,
        "SYNCHEALTH_QBO_REDIRECT_URI": f"{url}/oauth/callback",
        "SYNCHEALTH_SECRET_KEY": Fernet.generate_key().decode(),
        "SYNCHEALTH_SERVER_URL": url,
        "SYNCHEALTH_CYCLE_SECONDS": "3600",  # no scheduled cycle during the tests: webhooks must act alone
        "SYNCHEALTH_QBO_WEBHOOK_VERIFIER": VERIFIER,
    }
    log = tmp / "server.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "server:app", "--host", "127.0.0.1", "--port", str(port)],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    served = Served(url, sandbox, db, env, proc, log)

    def up() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"the server exited: {log.read_text()[-3000:]}")
        try:
            return httpx.get(f"{url}/healthz", timeout=2).status_code == 200
        except httpx.TransportError:
            return False

    _until(up, 60, "the server to start")
    yield served
    if proc.poll() is None:
        proc.terminate()
        proc.wait(30)
    sandbox.stop()


def _connect(served: Served, actor: str = "admin@demo.local") -> httpx.Response:
    """The browser's path: the page's one-time link, Intuit's (the sandbox's) authorize, our callback."""
    link = httpx.post(f"{served.url}/api/connect", json={"actor": actor}, headers=served.auth).json()["url"]
    to_authorize = httpx.get(f"{served.url}{link}")
    assert to_authorize.status_code == 302
    authorize = to_authorize.headers["location"]
    assert authorize.startswith(f"{served.sandbox.base_url}/connect/oauth2?") and "state=" in authorize
    to_callback = httpx.get(authorize)
    assert to_callback.status_code in (302, 303)
    callback = to_callback.headers["location"]
    assert callback.startswith(f"{served.url}/oauth/callback?")
    return httpx.get(callback)


def _quiet(served: Served) -> dict[str, Any]:
    """Wait until the sandbox has posted every webhook and the scheduler has handled them all."""

    def settled() -> dict[str, Any] | None:
        served.sandbox.sandbox.flush_webhooks()
        h = served.health()
        s = h["scheduler"]
        return h if s["current"] is None and s["webhooks"]["pending_objects"] == 0 else None

    _until(settled, 30, "the webhooks to settle")
    time.sleep(0.3)  # a delivery posted in the last instant starts its own cycle: settle once more
    return _until(settled, 30, "the webhooks to settle")


def _after_webhook_cycle(served: Served, last_id: int) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        served.sandbox.sandbox.flush_webhooks()
        s = served.health()["scheduler"]
        last = s["last_cycle"]
        if last and last["cycle_id"] > last_id and last["trigger"] == "webhook" and s["current"] is None:
            return last if s["webhooks"]["pending_objects"] == 0 else None
        return None

    return _until(done, 30, "a webhook cycle")


@pytest.fixture(scope="module")
def connected(served: Served) -> Served:
    if not any(c["status"] == "connected" for c in served.health()["connections"]):
        assert _connect(served).status_code == 303
    _until(
        lambda: (served.health()["scheduler"]["last_cycle"] or {}).get("steps", {}).get(f"{REALM}.pull"),
        30,
        "the cycle after the connect",
    )
    _quiet(served)
    return served


def test_the_pages_and_the_health_route_are_served_over_http(served: Served) -> None:
    page = httpx.get(f"{served.url}/")
    assert page.status_code == 200 and '<div id="root">' in page.text  # the Streamlit shell
    assert httpx.get(f"{served.url}/_stcore/health").text == "ok"
    anyone = httpx.get(f"{served.url}/healthz")  # without the token: up or not, and nothing about the deployment
    assert anyone.status_code == 200 and anyone.json() == {"status": "ok"}
    h = served.health()
    assert h["status"] == "ok" and h["store"]["ok"] and h["store"]["path"] == str(served.db)
    assert h["scheduler"]["running"] and h["scheduler"]["interval_seconds"] == 3600
    assert server_file(served.db).stat().st_mode & 0o777 == 0o600


def test_connect_runs_the_real_oauth_flow_and_refuses_a_state_mismatch(served: Served) -> None:
    assert httpx.get(f"{served.url}/oauth/connect").status_code == 403  # not from the Connection page
    viewer = httpx.post(f"{served.url}/api/connect", json={"actor": "viewer@demo.local"}, headers=served.auth)
    assert viewer.status_code == 403 and "admin" in viewer.json()["error"]
    assert httpx.post(f"{served.url}/api/connect", json={"actor": "admin@demo.local"}).status_code == 401

    # A callback whose state was not issued here is refused and stores nothing.
    link = httpx.post(f"{served.url}/api/connect", json={"actor": "admin@demo.local"}, headers=served.auth).json()
    authorize = httpx.get(f"{served.url}{link['url']}").headers["location"]
    callback = httpx.get(authorize).headers["location"]
    state = callback.split("state=")[1].split("&")[0]
    forged = httpx.get(callback.replace(f"state={state}", "state=forged-by-someone"))
    assert forged.status_code == 400 and "state mismatch" in forged.text
    assert served.health()["connections"] == []

    done = _connect(served)
    assert done.status_code == 303 and done.headers["location"] == f"/connection?connected={REALM}"
    (conn,) = served.health()["connections"]
    assert conn["status"] == "connected" and conn["connected_by"] == "admin@demo.local"
    assert 3000 < conn["access_seconds_left"] <= 3600
    replay = httpx.get(callback)  # the first state is still unused, but its code was never exchanged
    assert replay.status_code in (303, 400)


def test_webhook_signatures_valid_invalid_and_missing(connected: Served) -> None:
    before = connected.health()["webhooks"]["received"]
    body = json.dumps(
        {
            "eventNotifications": [
                {
                    "realmId": REALM,
                    "dataChangeEvent": {
                        "entities": [
                            {
                                "name": "Class",
                                "id": "1",
                                "operation": "Update",
                                "lastUpdated": f"{system_clock():%Y-%m-%dT%H:%M:%S}-0000",
                            }
                        ]
                    },
                }
            ]
        }
    ).encode()
    url = f"{connected.url}/webhooks/qbo"
    started = time.monotonic()
    ok = httpx.post(url, content=body, headers={"intuit-signature": sign(VERIFIER, body)})
    assert ok.status_code == 200 and ok.json() == {"accepted": 1, "format": "legacy"}
    assert time.monotonic() - started < 3
    wrong = {"intuit-signature": sign("not-the-verifier", body)}
    assert httpx.post(url, content=body, headers=wrong).status_code == 401
    tampered = body.replace(b'"1"', b'"2"')  # signed before a byte changed
    assert httpx.post(url, content=tampered, headers={"intuit-signature": sign(VERIFIER, body)}).status_code == 401
    assert httpx.post(url, content=body).status_code == 401
    after = _quiet(connected)["webhooks"]
    assert after["received"]["valid"] == before["valid"] + 1
    assert after["received"]["invalid"] == before["invalid"] + 2
    assert after["received"]["missing"] == before["missing"] + 1
    assert after["signature_failures"] >= 3


@pytest.mark.parametrize(
    ("fmt", "entity", "obj_id", "patch"),
    [("legacy", "Term", "1", {"DueDays": 45}), ("cloudevents", "Class", "2", {"Name": "West Coast"})],
)
def test_each_payload_format_leads_to_a_pull_of_exactly_the_named_objects(
    connected: Served, fmt: str, entity: str, obj_id: str, patch: dict
) -> None:
    sandbox = connected.sandbox.sandbox
    sandbox.configure_webhooks(f"{connected.url}/webhooks/qbo", VERIFIER, fmt)
    last = _quiet(connected)["scheduler"]["last_cycle"]["cycle_id"]
    mark = len(sandbox.request_log)
    sandbox.user_patch(REALM, entity, obj_id, patch)  # as a QBO user would: the sandbox posts a signed webhook
    cycle = _after_webhook_cycle(connected, last)
    # one query for the entity, naming the object (inactive name-list rows included)
    assert connected.reads_since(mark) == [("GET", f"/v3/company/{REALM}/query")]
    (query,) = connected.queries_since(mark)
    assert f"FROM {entity} " in query and f"Id IN ('{obj_id}')" in query, query
    assert cycle["steps"][f"{REALM}.webhook_pull"]["read"] == {entity: [obj_id]}
    assert sandbox.webhooks.deliveries[-1]["format"] == fmt


def test_a_signed_cloudevents_delivery_naming_two_objects_reads_those_two(connected: Served) -> None:
    last = _quiet(connected)["scheduler"]["last_cycle"]["cycle_id"]
    mark = len(connected.sandbox.sandbox.request_log)
    events = [
        {
            "specversion": "1.0",
            "id": f"e{i}",
            "source": "intuit.test",
            "type": f"qbo.{entity}.updated.v1",
            "datacontenttype": "application/json",
            "time": f"{system_clock():%Y-%m-%dT%H:%M:%S}Z",
            "intuitentityid": obj_id,
            "intuitaccountid": REALM,
            "data": {},
        }
        for i, (entity, obj_id) in enumerate([("account", "1"), ("paymentmethod", "1")])
    ]
    body = json.dumps(events).encode()
    headers = {"intuit-signature": sign(VERIFIER, body)}
    answer = httpx.post(f"{connected.url}/webhooks/qbo", content=body, headers=headers)
    assert answer.json() == {"accepted": 2, "format": "cloudevents"}
    _after_webhook_cycle(connected, last)
    assert connected.reads_since(mark) == [("GET", f"/v3/company/{REALM}/query")] * 2  # one query per entity
    named = sorted(re.search(r"FROM (\w+) WHERE Id IN \('(\w+)'\)", q).groups() for q in connected.queries_since(mark))
    assert named == [("Account", "1"), ("PaymentMethod", "1")]


def test_an_account_made_inactive_turns_its_mapping_stale_before_the_next_scheduled_cycle(connected: Served) -> None:
    sandbox = connected.sandbox.sandbox
    sandbox.configure_webhooks(f"{connected.url}/webhooks/qbo", VERIFIER, "legacy")
    before = connected.cli("--json", "record", "account:5000")
    assert before.returncode == 0, before.stderr
    assert "stale" not in before.stdout
    last = _quiet(connected)["scheduler"]["last_cycle"]["cycle_id"]
    sandbox.user_patch(REALM, "Account", "3", {"Active": False})  # account 5000, Cost of Goods
    _after_webhook_cycle(connected, last)
    after = connected.cli("--json", "record", "account:5000")
    assert after.returncode == 0, after.stderr
    chain = json.loads(after.stdout)
    assert any("stale" in (f["reason"] + f["detail"]) for f in chain["findings"]), chain["findings"]
    scheduler = connected.health()["scheduler"]
    assert scheduler["next_cycle_in_seconds"] > 3000  # the scheduled cycle is still an hour away


def test_the_cli_beside_the_server_reads_and_writes_through_it(connected: Served) -> None:
    status = connected.cli("--json", "status")
    assert status.returncode == 0 and json.loads(status.stdout)["connection"]["status"] == "connected"
    sync = connected.cli("--actor", "admin@demo.local", "sync")
    assert sync.returncode == 0 and sync.stdout.startswith("sync run "), sync.stderr
    refused = connected.cli("--actor", "viewer@demo.local", "sync")
    assert refused.returncode == 1 and refused.stderr.strip().count("\n") == 0 and "admin" in refused.stderr
    again = connected.cli("serve", "--port", str(free_port()))
    assert again.returncode == 1 and again.stderr.strip() == (
        f"synchealth: a server already holds {connected.db} on {connected.url}; stop it first"
    )
    for run in (status, sync, refused, again):
        assert "Traceback" not in run.stderr


def test_synchealth_serve_starts_the_server_and_stops_cleanly_on_ctrl_c(tmp_path: Path) -> None:
    db = tmp_path / "serve.duckdb"
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("SYNCHEALTH_")},
        "SYNCHEALTH_DB": str(db),
        "SYNCHEALTH_SECRET_KEY": Fernet.generate_key().decode(),
        "SYNCHEALTH_QBO_BASE_URL": f"http://127.0.0.1:{free_port()}",  # no sandbox: webhooks arrive by CDC only
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "pipelines.cli", "serve", "--port", str(port), "--interval", "600"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:

        def up() -> bool:
            assert proc.poll() is None, proc.stdout.read()
            try:
                return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200
            except httpx.TransportError:
                return False

        _until(up, 60, "synchealth serve")
        assert read_server_file(db)["url"] == f"http://127.0.0.1:{port}"
        token = {"authorization": f"Bearer {read_server_file(db)['token']}"}
        detail = httpx.get(f"http://127.0.0.1:{port}/healthz", headers=token).json()
        assert detail["scheduler"]["interval_seconds"] == 600
    finally:
        proc.send_signal(signal.SIGINT)
        out = proc.communicate(timeout=30)[0]
    assert proc.returncode == 0 and "Traceback" not in out
    assert not server_file(db).exists()
    with Store(db) as store:
        assert store.scalar("SELECT count(*) FROM server_cycles WHERE status = 'running'") == 0


def test_a_write_beside_a_process_without_a_server_stops_with_one_line(tmp_path: Path) -> None:
    db = tmp_path / "held.duckdb"
    Store(db).close()
    hold = f"from pipelines.store import Store; s = Store({str(db)!r}); print('held', flush=True); input()"
    holder = subprocess.Popen(
        [sys.executable, "-c", hold], cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        env = {**{k: v for k, v in os.environ.items() if not k.startswith("SYNCHEALTH_")}, "SYNCHEALTH_DB": str(db)}

        def cli(*args: str) -> subprocess.CompletedProcess:
            return subprocess.run(
                [sys.executable, "-m", "pipelines.cli", *args], cwd=ROOT, env=env, capture_output=True, text=True
            )

        plain = cli("--actor", "admin@demo.local", "sync")
        assert plain.returncode == 1 and len(plain.stderr.strip().splitlines()) == 1
        assert "open in another process" in plain.stderr and "Traceback" not in plain.stderr
        write_server_file(db, f"http://127.0.0.1:{free_port()}", "stale-token")  # a server that died
        dead = cli("--actor", "admin@demo.local", "map", "account", "5000", "3", "--reason", "x")
        assert dead.returncode == 1 and len(dead.stderr.strip().splitlines()) == 1
        assert "does not answer" in dead.stderr and "Traceback" not in dead.stderr
    finally:
        holder.stdin.close()
        holder.wait(10)


@pytest.mark.browser
def test_an_admin_reconnects_from_the_connection_page_in_chromium(connected: Served) -> None:
    require_chromium()
    with browser_page() as page:
        page.goto(f"{connected.url}/connection")
        page.get_by_text("Access token expires in").wait_for(timeout=60_000)
        assert "needs the admin role" in page.inner_text("body")  # the demo picker starts as a viewer
        page.get_by_text("Role: viewer").wait_for()
        choose_actor(page, "admin@demo.local")
        button = page.get_by_role("link", name="Reconnect QuickBooks")
        button.wait_for(timeout=30_000)
        page.get_by_text("Last successful call").wait_for()
        body = page.inner_text("body")
        assert "connected" in body and "Hard expiry (5-year cap) in" in body and "Webhook signature failures" in body
        # the settings read as words: headed, each refresh counted in a sentence, never "— (0)" or a raw payload
        assert "Setting" in body and "Value" in body and "Last refresh" in body and "(0)" not in body
        assert "not yet refreshed since connecting" in body or "in all)" in body
        assert "{" not in body and "None" not in body
        screenshot(page, "connection-1280x800")
        with page.context.expect_page() as opened:  # the link button opens the sign-in in a new tab
            button.click()
        signin = opened.value  # the real flow: our /oauth/connect, the sandbox's authorize, our callback, here
        signin.wait_for_url("**/connection?connected=*", timeout=30_000)
        signin.get_by_text(f"QuickBooks company {REALM} is connected").wait_for(timeout=60_000)
    (conn,) = connected.health()["connections"]
    assert conn["status"] == "connected" and conn["connected_by"] == "admin@demo.local"
    _quiet(connected)


def test_a_stopped_server_leaves_a_whole_store_and_removes_its_file(connected: Served) -> None:
    connected.proc.terminate()
    connected.proc.wait(30)
    assert not server_file(connected.db).exists()
    assert "Traceback" not in connected.log.read_text()
    with Store(connected.db) as store:
        assert store.scalar("SELECT count(*) FROM server_cycles WHERE status = 'running'") == 0
        unprocessed = "SELECT count(*) FROM webhook_events WHERE signature = 'valid' AND processed_at IS NULL"
        assert store.scalar(unprocessed) == 0
        assert store.scalar("SELECT count(*) FROM webhook_events WHERE signature <> 'valid'") >= 3
        assert store.scalar("SELECT status FROM mappings WHERE kind = 'account' AND awra_value = '5000'") == "stale"
        assert store.scalar("SELECT actor FROM audit_log WHERE action = 'connect'") == "admin@demo.local"
