"""`synchealth record` as the admin types it, in a subprocess: by key, by its AWRA id, by the number on the document,
or by the vendor's name (a list to name one from); nothing matching is one line and exit 2. On both stores: a fleet
company is found the same way."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from fixtures import REALM, tiny_company, tiny_snapshot
from world import World

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def db(tmp_path: Path, backend: str, request: pytest.FixtureRequest) -> Path | str:
    url = request.getfixturevalue("pg_url") if backend == "postgresql" else None
    world = World(tmp_path, tiny_snapshot(), company=tiny_company(), database_url=url)
    world.cycle()
    world.store.close()
    return world.settings.store_target


def _cli(db: Path | str, *args: str) -> subprocess.CompletedProcess:
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("SYNCHEALTH_")}, "SYNCHEALTH_DB": str(db),
           "SYNCHEALTH_REALM_ID": REALM}  # fmt: skip
    return subprocess.run([sys.executable, "-m", "pipelines.cli", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=120)  # fmt: skip


def test_the_admin_finds_a_record_by_key_number_or_vendor(db: Path | str) -> None:
    by_key = _cli(db, "record", "bill:BILL-1")
    assert by_key.returncode == 0 and by_key.stdout.startswith("bill:BILL-1 v1: ")
    by_number = _cli(db, "record", "INV-9")  # the number on bill BILL-1: the same record
    assert by_number.returncode == 0 and by_number.stdout == by_key.stdout
    by_id = _cli(db, "record", "BP-1")  # the AWRA id alone, as Sync runs and Audit show it after the record type
    assert by_id.returncode == 0 and by_id.stdout.startswith("bill_payment:BP-1 v1: "), by_id.stderr

    by_vendor = _cli(db, "record", "acme")  # Acme Supplies: itself and its documents, to name one from
    assert by_vendor.returncode == 0, by_vendor.stderr
    head, *rows = by_vendor.stdout.splitlines()
    assert head.endswith("records matching 'acme', the closest first; name one by its key:")
    assert any(r.split()[0] == "bill:BILL-1" and "INV-9" in r and "Acme Supplies" in r for r in rows)

    none = _cli(db, "record", "no-such-thing")
    assert none.returncode == 2 and len(none.stderr.strip().splitlines()) == 1 and not none.stdout
    assert "no record matches 'no-such-thing'" in none.stderr and "Traceback" not in none.stderr
