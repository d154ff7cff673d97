"""The store's promises on both backends: the embedded DuckDB file and the fleet's PostgreSQL database.

Same migrations (versioned, a newer schema refused), the same append-only audit log with its hash chain, the same
transactions, and the same read models: for the same content, the frames the pages read are identical.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import polars as pl
import pytest
from fixtures import REALM, T0, tiny_snapshot, write_snapshot
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal
from world import ADMIN, World

from pipelines import audit
from pipelines.audit import Entry
from pipelines.ingest import ingest_snapshot
from pipelines.store import MIGRATIONS, Migration, Store, StoreTooNewError
from pipelines.views import read_model


def _first_version(target: str | Path) -> None:
    with Store(target, migrations=MIGRATIONS[:1]) as old:
        assert old.schema_version == 1
        old.execute(
            "INSERT INTO records VALUES (?, 'bill', 'BILL-1', 1, 'abc', ?, ?, NULL, 'not_ready')", [REALM, T0, T0]
        )
        old.execute(
            "INSERT INTO audit_log (realm_id, acted_at, actor, role, action, target) VALUES (?, ?, 'a', 'admin', "
            "'map', 'x')",
            [REALM, T0],
        )


def test_the_first_schema_is_migrated_all_the_way_and_keeps_its_data(store_target, snapshot_dir: Path) -> None:
    _first_version(store_target)
    later = Migration(MIGRATIONS[-1].version + 1, "test: a note column", "ALTER TABLE records ADD COLUMN note VARCHAR")
    with Store(store_target, migrations=[*MIGRATIONS, later]) as new:
        assert new.schema_version == later.version
        assert new.rows("SELECT record_id, note FROM records") == [("BILL-1", None)]
        assert [r[0] for r in new.rows("SELECT version FROM schema_version ORDER BY 1")] == list(
            range(1, later.version + 1)
        )
        # the row written before the chain existed got its hash in migration 12, and the guard is back
        assert new.audit_check.ok and new.audit_check.rows == 1
        result = ingest_snapshot(new, snapshot_dir, realm_id=REALM, now=T0)
        assert (result.new, result.changed) == (14, 1)


def test_a_newer_schema_is_refused(store_target) -> None:
    future = Migration(MIGRATIONS[-1].version + 5, "from the future", "CREATE TABLE future (x INTEGER)")
    Store(store_target, migrations=[*MIGRATIONS, future]).close()
    with pytest.raises(StoreTooNewError, match="newer than this app knows"):
        Store(store_target)


def test_the_audit_log_is_append_only_and_chained(any_store: Store) -> None:
    entries = [Entry(REALM, T0, ADMIN.email, "admin", "map", f"item:W-{i}", reason="r") for i in range(3)]
    with any_store.transaction() as tx:
        ids = audit.append(tx, entries)
    assert ids == sorted(ids) and len(ids) == 3
    for statement in ("UPDATE audit_log SET reason = 'tampered'", "DELETE FROM audit_log"):
        with pytest.raises(any_store.sql_error, match="append-only"):
            any_store.execute(statement)
    if any_store.url:  # PostgreSQL also has TRUNCATE, which would empty the table without a DELETE
        with pytest.raises(any_store.sql_error, match="append-only"):
            any_store.execute("TRUNCATE audit_log")
    check = audit.verify(any_store.cursor())
    assert check.ok and check.rows == 3
    assert any_store.rows("SELECT count(*) FROM audit_log") == [(3,)]


def test_the_same_entries_chain_to_the_same_hash_on_both_stores(tmp_path: Path, pg_url: str) -> None:
    entries = [Entry(REALM, T0, ADMIN.email, "admin", "resolve", f"exception:{i}", after={"n": i}) for i in range(5)]
    newest = []
    for target in (tmp_path / "a.duckdb", pg_url):
        with Store(target) as store:
            with store.transaction() as tx:
                audit.append(tx, entries)
            newest.append(audit.verify(store.cursor()).newest_hash)
    assert newest[0] == newest[1] is not None


def test_a_transaction_commits_whole_or_not_at_all_and_nests(any_store: Store) -> None:
    def insert(key: str) -> None:
        any_store.execute(
            "INSERT INTO exclusions VALUES (?, 'bill', ?, 'a', 'why', ?)",
            [REALM, key, T0],
        )

    with pytest.raises(RuntimeError):
        with any_store.transaction():
            insert("B-1")
            raise RuntimeError("stop")
    assert any_store.rows("SELECT count(*) FROM exclusions") == [(0,)]
    with any_store.transaction():
        insert("B-2")
        with any_store.transaction():  # joins the outer one
            insert("B-3")
    assert any_store.rows("SELECT record_id FROM exclusions ORDER BY 1") == [("B-2",), ("B-3",)]
    with pytest.raises(any_store.sql_error):
        insert("B-2")  # the primary key holds on both


def test_money_comes_back_as_decimal_and_frames_keep_their_types_when_empty(any_store: Store) -> None:
    any_store.execute(
        "INSERT INTO exceptions (exception_id, realm_id, entity, record_id, dimension, reason, owner_role, status, "
        "opened_at, last_seen_at, amount) VALUES (1, ?, 'bill', 'B-1', 'mapping', 'm', 'admin', 'open', ?, ?, ?)",
        [REALM, T0, T0, Decimal("1234567890123456.78")],
    )
    frame = any_store.frame("SELECT amount, opened_at FROM exceptions")
    utc = pl.Datetime("us", "Etc/UTC")
    assert frame.schema == {"amount": pl.Decimal(18, 2), "opened_at": utc}
    assert frame["amount"][0] == Decimal("1234567890123456.78")
    empty = any_store.frame("SELECT amount, opened_at, exception_id FROM exceptions WHERE false")
    assert empty.schema == {"amount": pl.Decimal(18, 2), "opened_at": utc, "exception_id": pl.Int64}


# -- the read models --------------------------------------------------------------------------------------------
def _read_models(world: World) -> dict[str, pl.DataFrame]:
    """Each read-model table as the pages read it, rows in a stable order."""
    out = {}
    for name, build in read_model._TABLES.items():
        frame = world.store.frame(f"SELECT * FROM ({build(read_model.facts())}) q", {"realm": REALM})
        out[name] = frame.sort(frame.columns, nulls_last=True)
    return out


def test_the_read_models_are_identical_frames_on_both_stores(tmp_path: Path, pg_url: str) -> None:
    frames = []
    for name, url in (("duckdb", None), ("postgresql", pg_url)):
        world = World(tmp_path / name, database_url=url)
        try:
            world.cycle()
            frames.append(_read_models(world))
        finally:
            world.close()
    embedded, fleet = frames
    assert embedded.keys() == fleet.keys()
    for name in embedded:
        assert embedded[name].height > 0 or name == "rm_offenders", name
        assert_frame_equal(embedded[name], fleet[name], check_dtypes=False, check_exact=True)


_NAMES = st.text(alphabet=st.sampled_from("abcdeilnorst 0123&-éÅ"), max_size=14)


@st.composite
def _name_pairs(draw: st.DrawFn) -> tuple[str, str]:
    """Two names, often alike (what a suggestion weighs): the second an edit of the first, or any other name."""
    left = draw(_NAMES)
    edit = draw(st.sampled_from(["other", "same", "swap", "replace", "append", "drop"]))
    if edit == "other" or len(left) < 2:
        return left, draw(_NAMES)
    at = draw(st.integers(0, len(left) - 2))
    return left, {
        "same": left,
        "swap": left[:at] + left[at + 1] + left[at] + left[at + 2 :],
        "replace": left[:at] + draw(st.sampled_from("xyz")) + left[at + 1 :],
        "append": left + draw(_NAMES),
        "drop": left[:at] + left[at + 1 :],
    }[edit]


@pytest.fixture
def both_stores(tmp_path: Path, pg_url: str):
    with Store(tmp_path / "names.duckdb") as duck, Store(pg_url) as pg:
        yield duck, pg


@given(_name_pairs())
@example(("csbebooo", "cstndboa"))  # Jaro 0.67 and a common prefix: no prefix bonus at or below 0.7
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_name_similarity_scores_the_same_on_both_stores(both_stores, names: tuple[str, str]) -> None:
    """The Mappings page's suggestions score names with DuckDB's jaro_winkler_similarity and jaccard; a fleet
    company on PostgreSQL must get the same scores (the same target proposed at the same threshold)."""
    left, right = names
    sql = "SELECT jaro_winkler_similarity($l, $r), jaccard($l, $r)"
    if not left or not right:
        sql = "SELECT jaro_winkler_similarity($l, $r), NULL"  # DuckDB's jaccard refuses an empty string
    (jw_duck, jac_duck), (jw_pg, jac_pg) = (store.rows(sql, {"l": left, "r": right})[0] for store in both_stores)
    assert jw_pg == pytest.approx(jw_duck, abs=1e-9), (left, right)
    assert (jac_pg is None and jac_duck is None) or jac_pg == pytest.approx(jac_duck, abs=1e-9), (left, right)


def test_the_mappings_page_proposes_the_same_targets_on_both_stores(tmp_path: Path, pg_url: str) -> None:
    from pipelines.views.suggest import target_scores

    asked = [("item", "WID-22"), ("item", "Widgit"), ("account", "5000"), ("account", "Cost of Goods Sold")]
    scores = []
    for name, url in (("duckdb", None), ("postgresql", pg_url)):
        world = World(tmp_path / name, database_url=url)
        try:
            world.cycle()
            scores.append([target_scores(world.store, REALM, kind, value) for kind, value in asked])
        finally:
            world.close()
    for (kind, value), embedded, fleet in zip(asked, *scores, strict=True):
        assert embedded.height > 0, (kind, value)
        assert_frame_equal(embedded, fleet, check_exact=True)


@given(st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\x00"), max_size=200))
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_a_content_hash_is_the_same_number_on_both_stores(both_stores, text: str) -> None:
    """A record's content hash is md5_number_upper of its typed values: a fleet company must get DuckDB's number, or
    a store moved between the two would see every record changed; and the number is the stored digest's converted
    by migration 17, or an upgraded store would."""
    duck, pg = both_stores
    sql = "SELECT md5_number_upper($t), md5($t)"
    (number, digest), (pg_number, pg_digest) = (store.rows(sql, {"t": text})[0] for store in both_stores)
    assert (int(pg_number), pg_digest) == (number, digest)
    assert int.from_bytes(bytes.fromhex(digest)[:8], "little") == number


def _ingested_before_the_number(target: str | Path, folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A store at schema 16 holding the tiny snapshot as the release before kept it: each content hash the md5 hex
    digest of the same text."""
    with monkeypatch.context() as before, Store(target, migrations=MIGRATIONS[:16]) as old:
        before.setattr("pipelines.ingest._CONTENT_HASH", "md5")
        ingest_snapshot(old, folder, realm_id=REALM, now=T0)
        assert {len(h) for (h,) in old.rows("SELECT content_hash FROM records")} == {32}


def test_an_upgraded_store_sees_no_record_changed_by_the_new_hash(
    store_target, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Migration 17 turns each stored digest into the number a new ingest computes: after the upgrade, a snapshot
    whose text changed but not its values (20.00 written 20.0) changes no record, and a real edit changes just one."""
    snapshot = tiny_snapshot()
    _ingested_before_the_number(store_target, write_snapshot(tmp_path / "s0", snapshot), monkeypatch)
    snapshot["purchase_orders"][0]["total"] = "20.0"  # was 20.00: the same amount
    snapshot["vendors"][1]["name"] = "Bolt & Nut Company"
    with Store(store_target) as new:
        versions = new.scalar("SELECT count(*) FROM record_versions")
        result = ingest_snapshot(new, write_snapshot(tmp_path / "s1", snapshot), realm_id=REALM, now=T0)
        assert (result.new, result.changed) == (0, 1)
        assert new.rows("SELECT entity, record_id FROM record_versions WHERE version = 2") == [("vendor", "VEN-2")]
        assert new.scalar("SELECT count(*) FROM record_versions") == versions + 1
        assert new.scalar("SELECT current_version FROM records WHERE record_id = 'PO-1'") == 1
