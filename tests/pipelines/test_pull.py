"""Connect and pull against the sandbox: a full pull first, then CDC brings new, changed, deleted, inactive."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from cryptography.fernet import Fernet
from fixtures import BOOK_CLOSE, REALM, T0, iso, tiny_company, tiny_snapshot, write_snapshot

from pipelines.cli import main
from pipelines.config import Settings
from pipelines.connection import connect, qbo_client
from pipelines.ingest import ingest_snapshot
from pipelines.pull import pull
from pipelines.readiness import run_check
from pipelines.store import Store
from qbo.sandbox import Sandbox
from qbo.sandbox.server import start_in_thread


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    sb = Sandbox(tiny_company())
    yield sb
    sb.close()


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(
        db_path=tmp_path / "pull.duckdb",
        qbo_base_url="http://sandbox.local",
        secret_key=Fernet.generate_key().decode(),
        secret_key_file=tmp_path / "secret.key",
    )


@pytest.fixture
def http(sandbox: Sandbox) -> Iterator[httpx.Client]:
    with httpx.Client(transport=sandbox.transport()) as client:
        yield client


def _objects(store: Store, entity: str) -> dict[str, tuple]:
    rows = store.rows(
        "SELECT qbo_id, name, active, deleted FROM qbo_objects WHERE entity = ? ORDER BY qbo_id", [entity]
    )
    return {r[0]: r[1:] for r in rows}


def test_connect_then_full_pull_then_cdc(settings: Settings, sandbox: Sandbox, http: httpx.Client) -> None:
    store = Store(settings.db_path)
    status = connect(settings, store, actor="admin@demo.local", http=http).status
    assert status is not None and status.to_dict()["status"] == "connected"

    with qbo_client(settings, store, http=http) as client:
        first = pull(store, client, now=T0)
        assert first.kind == "full"
        assert _objects(store, "Account")["3"] == ("Cost of Goods", True, False)
        assert store.rows(
            "SELECT book_close_date::VARCHAR, home_currency, duplicate_docnum_check FROM qbo_company"
        ) == [(BOOK_CLOSE, "USD", True)]

        # A QuickBooks user deactivates an account, adds a vendor and keys in a bill, then deletes it.
        sandbox.clock.advance(60)
        sandbox.user_patch(REALM, "Account", "3", {"Active": False})
        vendor = sandbox.user_create(REALM, "Vendor", {"DisplayName": "Walk-in Supplier"})
        bill = sandbox.user_create(
            REALM,
            "Bill",
            {
                "VendorRef": {"value": vendor["Id"]},
                "TxnDate": iso(20),
                "Line": [
                    {
                        "Amount": 12.5,
                        "DetailType": "AccountBasedExpenseLineDetail",
                        "AccountBasedExpenseLineDetail": {"AccountRef": {"value": "1"}},
                    }
                ],
            },
        )
        sandbox.user_delete(REALM, "Bill", bill["Id"])
        sandbox.clock.advance(60)

        second = pull(store, client, now=T0)

    assert second.kind == "cdc"
    assert _objects(store, "Account")["3"] == ("Cost of Goods", False, False)
    assert _objects(store, "Vendor")[vendor["Id"]] == ("Walk-in Supplier", True, False)
    assert _objects(store, "Bill")[bill["Id"]][2] is True  # deleted, kept with what we knew of it
    assert store.scalar("SELECT count(*) FROM qbo_pulls WHERE status = 'done'") == 2


def test_an_account_made_inactive_in_qbo_makes_its_mapping_stale_after_the_next_pull(
    settings: Settings, sandbox: Sandbox, http: httpx.Client, tmp_path: Path
) -> None:
    store = Store(settings.db_path)
    ingest_snapshot(store, write_snapshot(tmp_path / "awra", tiny_snapshot()), realm_id=REALM, now=T0)
    connect(settings, store, actor="admin@demo.local", http=http)
    now = datetime.now(UTC)
    with qbo_client(settings, store, http=http) as client:
        pull(store, client, now=T0)
        run_check(store, REALM, now=now)
        assert store.scalar("SELECT status FROM mappings WHERE kind = 'account' AND awra_value = '5000'") == "mapped"

        sandbox.clock.advance(30)
        sandbox.user_patch(REALM, "Account", "3", {"Active": False})
        sandbox.clock.advance(30)
        pull(store, client, now=T0)
    run_check(store, REALM, now=now)

    assert store.scalar("SELECT status FROM mappings WHERE kind = 'account' AND awra_value = '5000'") == "stale"
    blocked = {
        r[0]
        for r in store.rows(
            "SELECT record_id FROM findings WHERE reason = 'mapping.account_stale' "
            "AND run_id = (SELECT max(run_id) FROM check_runs)"
        )
    }
    assert blocked == {"BILL-1", "BILL-2", "JE-1", "5000"}


def test_cli_connect_and_pull_over_loopback_http(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    db = tmp_path / "cli.duckdb"
    with start_in_thread(Sandbox(tiny_company())) as running:
        monkeypatch.setenv("SYNCHEALTH_QBO_BASE_URL", running.base_url)
        monkeypatch.setenv("SYNCHEALTH_SECRET_KEY", Fernet.generate_key().decode())
        assert main(["--db", str(db), "--actor", "viewer@demo.local", "connect"]) == 1
        assert "connect needs the admin role" in capsys.readouterr().err
        assert main(["--db", str(db), "--actor", "admin@demo.local", "connect"]) == 0
        assert main(["--db", str(db), "--actor", "admin@demo.local", "--json", "pull"]) == 0
    out = capsys.readouterr().out
    assert f"connected to QuickBooks company {REALM}" in out
    assert '"kind": "full"' in out


def test_pull_without_a_running_sandbox_says_so_in_one_line(tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.setenv("SYNCHEALTH_QBO_BASE_URL", "http://127.0.0.1:9")
    code = main(["--db", str(tmp_path / "x.duckdb"), "--actor", "admin@demo.local", "connect"])
    err = capsys.readouterr().err.strip()
    assert code == 1 and len(err.splitlines()) == 1 and "cannot reach" in err


def test_a_full_pull_stores_each_page_before_it_reads_the_next(
    settings: Settings, sandbox: Sandbox, http: httpx.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A large company's full pull must never hold an entity whole: pages land in the store as they arrive (here
    # each page, as a flush is set to one page's size).
    monkeypatch.setattr("qbo.client.PAGE_SIZE", 2)
    monkeypatch.setattr("pipelines.pull.FLUSH_OBJECTS", 2)
    for i in range(5):
        sandbox.user_create(REALM, "Vendor", {"DisplayName": f"Paged Supplier {i}"})
    store = Store(settings.db_path)
    connect(settings, store, actor="admin@demo.local", http=http)
    in_store_before_each_page: list[int] = []
    with qbo_client(settings, store, http=http) as client:
        pages_of = client.query_all_pages

        def watched(entity: str, *args, **kwargs):
            for page in pages_of(entity, *args, **kwargs):
                if entity == "Vendor":
                    in_store_before_each_page.append(len(_objects(store, "Vendor")))
                yield page

        client.query_all_pages = watched  # type: ignore[method-assign]
        result = pull(store, client, now=T0)
    vendors = len(_objects(store, "Vendor"))
    assert vendors >= 5 and result.by_entity["Vendor"] == vendors
    # Before page k arrives, the k-1 pages of two before it are already stored.
    assert in_store_before_each_page == [2 * k for k in range(len(in_store_before_each_page))]
    assert len(in_store_before_each_page) == vendors // 2 + 1
    store.close()
