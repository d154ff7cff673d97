"""Delta snapshots (contract v1.1): only what changed plus explicit removals, applied on top of the base they name."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest
from fixtures import REALM, T0, tiny_snapshot, write_delta, write_manifest, write_snapshot
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipelines.ingest import MassRemovalError, SnapshotError, ingest_snapshot
from pipelines.store import Store, awra_table
from schemas.awra import CONTRACT
from schemas.manifest import MANIFEST_FILE, Manifest, ManifestError, manifest_json, parse_manifest

ROOT = Path(__file__).resolve().parents[2]
HEADERS = [name for name, table in CONTRACT.items() if not table.is_lines]


def _dump(store: Store) -> dict[str, pl.DataFrame]:
    """What a person could see of the records: every version of every row, and which records are live."""
    out = {}
    for name, table in CONTRACT.items():
        out[name] = store.frame(
            f"SELECT * EXCLUDE (ingest_run_id) FROM {awra_table(name)} ORDER BY {', '.join(table.key)}, version"
        )
    out["records"] = store.frame(
        "SELECT entity, record_id, current_version, content_hash, removed_at IS NULL AS live FROM records ORDER BY ALL"
    )
    out["record_versions"] = store.frame(
        "SELECT entity, record_id, version, content_hash FROM record_versions ORDER BY ALL"
    )
    return out


def _same(a: dict[str, pl.DataFrame], b: dict[str, pl.DataFrame]) -> None:
    for name in a:
        assert a[name].equals(b[name]), name


def _lines_of(snapshot: dict, header: str) -> list[str]:
    return [name for name, table in CONTRACT.items() if table.parent == header and name in snapshot]


def delta_between(old: dict, new: dict) -> tuple[dict[str, list[dict]], dict[str, list[str]]]:
    """What AWRA would send as a delta from `old` to `new`: changed records whole (with all their lines), removals."""
    changed: dict[str, list[dict]] = {}
    removed: dict[str, list[str]] = {}
    for header in HEADERS:
        rid = CONTRACT[header].record_id
        before = {r[rid]: r for r in old.get(header, [])}
        after = {r[rid]: r for r in new.get(header, [])}

        def lines(snap: dict, key: str, header: str = header, rid: str = rid) -> list:
            return [[r for r in snap.get(t, []) if r[rid] == key] for t in _lines_of(snap, header)]

        sent = [r for k, r in after.items() if before.get(k) != r or lines(old, k) != lines(new, k)]
        gone = [k for k in before if k not in after]
        if sent:
            ids = {r[rid] for r in sent}
            changed[header] = sent
            for t in [n for n, tb in CONTRACT.items() if tb.parent == header]:
                changed[t] = [r for r in new.get(t, []) if r[rid] in ids]
        if gone:
            removed[header] = gone
    return changed, removed


def _ingest(store: Store, folder: Path, **kw):
    return ingest_snapshot(store, folder, realm_id=REALM, now=T0, **kw)


@pytest.fixture
def based(store: Store, tmp_path: Path) -> Store:
    """A store holding the tiny snapshot as full snapshot "s0"."""
    _ingest(store, write_manifest(write_snapshot(tmp_path / "s0", tiny_snapshot()), "s0"))
    return store


def test_a_delta_applies_what_it_sends_and_removes_what_it_lists(based: Store, tmp_path: Path) -> None:
    snap = tiny_snapshot()
    bill = copy.deepcopy(snap["bills"][0])
    bill["total"] = "99.00"
    lines = [
        dict(r, amount="99.00") if r["line_no"] == "1" else r
        for r in snap["bill_lines"]
        if r["bill_id"] == bill["bill_id"]
    ]
    vendor = dict(snap["vendors"][0], vendor_id="VEN-9", name="New Vendor Ltd")
    folder = write_delta(
        tmp_path / "d1",
        {"bills": [bill], "bill_lines": lines, "vendors": [vendor]},
        snapshot_id="s1",
        base="s0",
        removed={"customers": ["CUS-1"]},
    )
    result = _ingest(based, folder)
    assert (result.kind, result.snapshot_id, result.status) == ("delta", "s1", "applied")
    assert (result.new, result.changed, result.removed) == (1, 1, 1)
    live = dict(based.rows("SELECT record_id, removed_at IS NULL FROM records"))
    # what the delta does not mention is untouched: the other bill, the second vendor, every item and account
    assert live["BILL-2"] and live["VEN-2"] and live["WID-100"] and live["VEN-9"] and not live["CUS-1"]
    assert based.scalar("SELECT count(*) FROM record_versions") == 15 + 2
    history = based.rows("SELECT kind, snapshot_id, base FROM ingest_runs ORDER BY run_id")
    assert history == [("full", "s0", None), ("delta", "s1", "s0")]


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    edits=st.lists(
        st.tuples(st.sampled_from(["edit", "add", "remove", "edit_line"]), st.sampled_from(HEADERS), st.integers(0, 5)),
        max_size=8,
    ),
    fmt=st.sampled_from(["csv", "parquet", "jsonl"]),
)
def test_a_delta_leaves_the_store_as_the_full_snapshot_would(tmp_path_factory, edits, fmt) -> None:
    old = tiny_snapshot()
    new = copy.deepcopy(old)
    for n, (action, header, pick) in enumerate(edits):
        rows, rid = new[header], CONTRACT[header].record_id
        text = next(c.name for c in CONTRACT[header].columns if c.kind == "text" and c.name != rid)
        if action == "add" or not rows:
            row = dict(rows[pick % len(rows)]) if rows else dict(old[header][0])
            source = row[rid]
            row[rid] = f"NEW-{n}"
            rows.append(row)
            for t in _lines_of(new, header):
                new[t] += [dict(r, **{rid: row[rid]}) for r in new[t] if r[rid] == source]
        elif action == "remove":
            gone = rows.pop(pick % len(rows))[rid]
            for t in _lines_of(new, header):
                new[t] = [r for r in new[t] if r[rid] != gone]
        elif action == "edit":
            rows[pick % len(rows)][text] = f"edited {n}"
        else:  # a line edited, or (every other time) the record's first line dropped
            key = rows[pick % len(rows)][rid]
            for t in _lines_of(new, header):
                mine = [r for r in new[t] if r[rid] == key]
                if mine:
                    mine[-1]["description"] = f"line edited {n}"
                if len(mine) > 1 and n % 2:
                    new[t].remove(mine[0])
    work = tmp_path_factory.mktemp("delta")
    dumps = []
    for how in ("full", "delta"):
        with Store(work / f"{how}.duckdb") as store:
            _ingest(store, write_manifest(write_snapshot(work / how / "s0", old, fmt), "s0"))
            if how == "full":
                folder = write_manifest(write_snapshot(work / how / "s1", new, fmt), "s1")
            else:
                changed, removed = delta_between(old, new)
                folder = write_delta(work / how / "s1", changed, snapshot_id="s1", base="s0", removed=removed, fmt=fmt)
            _ingest(store, folder, allow_removal="a test removes at will")
            dumps.append(_dump(store))
    _same(*dumps)


def _cli(db: Path, folder: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SYNCHEALTH_REALM_ID": REALM}
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pipelines.cli",
            "--actor",
            "admin@demo.local",
            "--db",
            str(db),
            "ingest",
            str(folder),
            *extra,
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_a_delta_on_the_wrong_base_is_refused_in_one_line_and_changes_nothing(tmp_path: Path) -> None:
    db = tmp_path / "cli.duckdb"
    assert _cli(db, write_manifest(write_snapshot(tmp_path / "s0", tiny_snapshot()), "2026-12-01")).returncode == 0
    with Store(db) as store:
        before = _dump(store)
    snap = tiny_snapshot()
    vendor = dict(snap["vendors"][0], name="Renamed")
    folder = write_delta(tmp_path / "d", {"vendors": [vendor]}, snapshot_id="2026-12-03", base="2026-12-02")
    proc = _cli(db, folder)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert "delta out of order: manifest.json column base" in proc.stderr
    assert "'2026-12-02'" in proc.stderr and "'2026-12-01'" in proc.stderr
    with Store(db) as store:
        _same(before, _dump(store))
        assert store.rows("SELECT status, kind FROM ingest_runs ORDER BY run_id DESC LIMIT 1") == [("refused", "delta")]
    # the delta AWRA missed arrives, then the refused one applies on top of it
    missed = write_delta(tmp_path / "m", {}, snapshot_id="2026-12-02", base="2026-12-01")
    assert _cli(db, missed).returncode == 0
    proc = _cli(db, folder)
    assert proc.returncode == 0, proc.stderr
    assert "1 changed" in proc.stdout


def test_a_delta_before_any_snapshot_asks_for_a_full_one(store: Store, tmp_path: Path) -> None:
    folder = write_delta(tmp_path / "d", {"vendors": tiny_snapshot()["vendors"]}, snapshot_id="s1", base="s0")
    with pytest.raises(SnapshotError, match="no snapshot has been applied to this company yet; send a full snapshot"):
        _ingest(store, folder)
    assert store.scalar("SELECT count(*) FROM records") == 0


def test_a_full_snapshot_without_an_id_cannot_be_a_base(store: Store, tmp_path: Path) -> None:
    _ingest(store, write_snapshot(tmp_path / "v10", tiny_snapshot()))  # contract v1.0: no manifest
    folder = write_delta(tmp_path / "d", {}, snapshot_id="s1", base="s0")
    with pytest.raises(SnapshotError, match="carried no snapshot_id; send a full snapshot with a manifest"):
        _ingest(store, folder)


def test_the_same_delta_twice_does_nothing_the_second_time(based: Store, tmp_path: Path) -> None:
    vendor = dict(tiny_snapshot()["vendors"][0], name="Renamed")
    folder = write_delta(tmp_path / "d", {"vendors": [vendor]}, snapshot_id="s1", base="s0")
    assert _ingest(based, folder).changed == 1
    before = _dump(based)
    again = _ingest(based, folder)
    assert (again.status, again.changed) == ("unchanged", 0)
    assert "is the snapshot last applied" in again.note
    _same(before, _dump(based))


def test_a_delta_sends_a_record_with_all_its_files(based: Store, tmp_path: Path) -> None:
    bill = dict(tiny_snapshot()["bills"][0], total="1.00")
    folder = write_delta(tmp_path / "d", {"bills": [bill]}, snapshot_id="s1", base="s0")
    with pytest.raises(SnapshotError, match=r"bill_lines.csv: file is missing: a delta that carries bills carries"):
        _ingest(based, folder)


def test_a_record_both_sent_and_removed_is_refused(based: Store, tmp_path: Path) -> None:
    vendor = tiny_snapshot()["vendors"][0]
    folder = write_delta(
        tmp_path / "d", {"vendors": [vendor]}, snapshot_id="s1", base="s0", removed={"vendors": ["VEN-1"]}
    )
    with pytest.raises(SnapshotError, match=r"manifest.json column removed.vendors: 'VEN-1' is both removed and sent"):
        _ingest(based, folder)


def test_a_delta_removing_most_of_a_table_needs_a_reason(based: Store, tmp_path: Path) -> None:
    snap = tiny_snapshot()
    snap["vendors"] += [dict(snap["vendors"][0], vendor_id=f"VEN-{i}") for i in range(10, 20)]
    _ingest(based, write_manifest(write_snapshot(tmp_path / "s1", snap), "s1"))
    gone = [f"VEN-{i}" for i in range(10, 18)]
    folder = write_delta(tmp_path / "d", {}, snapshot_id="s2", base="s1", removed={"vendors": gone})
    with pytest.raises(MassRemovalError, match=r"manifest.json removed.vendors would remove 8 of 12 live records"):
        _ingest(based, folder)
    assert _ingest(based, folder, allow_removal="vendors merged in AWRA", actor="admin@demo.local").removed == 8


@pytest.mark.parametrize(
    ("text", "field", "says"),
    [
        ("[]", None, "must be one JSON object"),
        ('{"contract": "2.0", "kind": "full", "snapshot_id": "a"}', "contract", "the versions this app reads"),
        ('{"contract": "1.1", "kind": "partial", "snapshot_id": "a"}', "kind", '"full" or "delta"'),
        ('{"contract": "1.1", "kind": "delta", "snapshot_id": "a"}', "base", "the snapshot this delta follows"),
        ('{"contract": "1.1", "kind": "delta", "snapshot_id": "a", "base": "a"}', "base", "own snapshot_id"),
        ('{"contract": "1.1", "kind": "full", "snapshot_id": "a", "removed": {}}', "removed", "belongs to a delta"),
        ('{"contract": "1.1", "kind": "full", "kind": "delta"}', "kind", "more than once"),
        (
            '{"contract": "1.1", "kind": "delta", "snapshot_id": "b", "base": "a", "removed": {"bill_lines": []}}',
            'removed."bill_lines"',
            "not a table whose records can be removed",
        ),  # fmt: skip
        (
            '{"contract": "1.1", "kind": "delta", "snapshot_id": "b", "base": "a", "removed": {"bills": ["x", 3]}}',
            "removed.bills[1]",
            "identifier text",
        ),  # fmt: skip
        ('{"contract": "1.1", "kind": "full", "snapshot_id": ""}', "snapshot_id", "1-128 characters"),
        ("{", None, "not valid JSON (line 1"),
    ],
)
def test_a_bad_manifest_is_refused_naming_its_field(tmp_path: Path, store: Store, text: str, field, says) -> None:
    folder = write_snapshot(tmp_path / "s", tiny_snapshot())
    (folder / MANIFEST_FILE).write_text(text)
    with pytest.raises(SnapshotError) as err:
        _ingest(store, folder)
    assert err.value.problems[0].file == MANIFEST_FILE and err.value.problems[0].column == field
    assert says in str(err.value)
    assert store.scalar("SELECT count(*) FROM records") == 0


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)


@given(
    doc=st.fixed_dictionaries(
        {},
        optional={
            "contract": st.sampled_from(["1.0", "1.1", "1.2", 1.1]),
            "kind": st.sampled_from(["full", "delta", "Delta", None]),
            "snapshot_id": st.text(max_size=130),
            "base": st.text(max_size=10),
            "removed": st.dictionaries(st.sampled_from([*HEADERS, "bill_lines", "x"]), st.lists(_json, max_size=3))
            | _json,
        },
    )
)
def test_any_manifest_is_read_or_refused_with_a_field(doc: dict) -> None:
    try:
        manifest = parse_manifest(json.dumps(doc))
    except ManifestError as err:
        assert str(err)
        return
    assert parse_manifest(manifest_json(manifest)) == manifest


@given(text=st.text(max_size=200))
def test_any_text_is_read_or_refused(text: str) -> None:
    try:
        parse_manifest(text)
    except ManifestError:
        pass


@given(
    snapshot_id=st.from_regex(r"[^\x00-\x1f\x7f]{1,128}", fullmatch=True),
    removed=st.dictionaries(
        st.sampled_from(HEADERS), st.lists(st.from_regex(r"[^\x00-\x1f\x7f]{1,64}", fullmatch=True), max_size=4)
    ),
)
def test_a_delta_manifest_round_trips(snapshot_id: str, removed: dict[str, list[str]]) -> None:
    manifest = Manifest(
        "delta", snapshot_id, "base-" + snapshot_id[:100], {k: tuple(dict.fromkeys(v)) for k, v in removed.items()}
    )
    assert parse_manifest(manifest_json(manifest)) == manifest


def test_a_delta_out_of_order_holds_one_admin_exception_until_the_gap_is_filled(based: Store, tmp_path: Path) -> None:
    from pipelines.exceptions import refresh_exceptions

    late = write_delta(tmp_path / "late", {}, snapshot_id="s2", base="s1")
    with pytest.raises(SnapshotError):
        _ingest(based, late)
    refresh_exceptions(based, REALM, now=T0)
    row = based.rows(
        "SELECT reason, owner_role, status, detail FROM exceptions WHERE entity = 'snapshot' AND status = 'open'"
    )
    assert [r[:3] for r in row] == [("source_data.delta_out_of_order", "admin", "open")]
    assert "this delta follows 's1', but the last snapshot applied is 's0'" in row[0][3]
    _ingest(based, write_delta(tmp_path / "gap", {}, snapshot_id="s1", base="s0"))
    _ingest(based, late)
    refresh_exceptions(based, REALM, now=T0)
    assert based.scalar("SELECT status FROM exceptions WHERE entity = 'snapshot'") == "resolved"
