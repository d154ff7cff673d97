"""Fuzzed AWRA snapshots: each is applied, or refused whole naming file (row, column), and the store is untouched."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq
import pytest
from fixtures import REALM, T0, tiny_snapshot, write_frame, write_snapshot
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from pipelines.ingest import FORMATS, IngestResult, SnapshotError, ingest_snapshot
from pipelines.store import Store
from schemas.awra import CONTRACT

ROOT = Path(__file__).resolve().parents[2]
# A store per example costs a file copy and an open; a few dozen examples per test keep the file near 30 s.
FUZZ = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
_HISTORY = {"ingest_runs", "ingest_files"}  # the only tables a refusal may write to


# -- the prepared store ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store holding the tiny snapshot, ingested once; each example works on a copy of its file."""
    base = tmp_path_factory.mktemp("fuzz-base")
    with Store(base / "store.duckdb") as store:
        ingest_snapshot(store, write_snapshot(base / "awra", tiny_snapshot()), realm_id=REALM, now=T0)
    return base / "store.duckdb"


@dataclass
class Workspace:
    """A fresh copy of the prepared store and an empty folder for the mutated snapshot."""

    db: Path
    folder: Path
    tmp: Path


@pytest.fixture
def workspace(prepared: Path, tmp_path: Path) -> Callable[[], Workspace]:
    made = iter(range(10**6))

    def fresh() -> Workspace:
        n = next(made)
        db = tmp_path / f"store-{n}.duckdb"
        shutil.copyfile(prepared, db)  # the store is closed, so its file alone is the whole database
        return Workspace(db, tmp_path / f"awra-{n}", tmp_path)

    return fresh


def _fingerprint(store: Store) -> dict[str, str]:
    """An md5 of every table's sorted rows (the AWRA tables, records, versions...), ingest history aside."""
    names = [
        r[0]
        for r in store.rows("SELECT table_name FROM duckdb_tables() WHERE NOT temporary ORDER BY 1")
        if r[0] not in _HISTORY
    ]
    return {
        n: str(
            store.scalar(f"SELECT md5(coalesce(string_agg(t::VARCHAR, chr(30) ORDER BY t::VARCHAR), '')) FROM {n} t")
        )
        for n in names
    }


# -- mutations -------------------------------------------------------------------------------------------
TEXT_VALUES = [
    # wrong types
    "five dollars", "1,000.00", "$5", "1e5", "0x10", " 5 ", "5.", ".5", "true", "[]", "{}", "null",
    # NaN and negative money, huge values
    "NaN", "nan", "Infinity", "-inf", "-5.00", "-0.01", "-0", "9" * 16 + ".99", "9" * 17, "1" + "0" * 40,
    "0", "-1", "2147483648", "999999999", "3.005", "0.001",
    # dates out of range or not real
    "2026-02-30", "0000-01-01", "9999-12-31", "1899-12-31", "2200-01-01", "2026-13-01", "26-11-01", "2026/11/01",
    "2026-11-01T25:00:00Z", "2026-11-01T23:59:60Z", "2026-11-01T10:00:00+99:00", "2026-11-01T10:00:00.1234567891Z",
    # formula strings and control characters
    "=1+1", "+SUM(A1:A9)", "-2+3", "@cmd", '=HYPERLINK("http://x","y")', "\t=1", "a\x00b", "\x1b[31m", "\x7f",
    "line\nbreak", "cr\rreturn", "quote\"inside", "comma,inside", "",
    # legal values, so some mutations are applied
    "approved", "posted", "active", "USD", "12.34", "2026-11-15", "2026-11-15T08:30:00+01:00", "7", "VEN-9",
    # past the cell limit; Unicode digits
    "x" * 10_001, "١٢٣", "１２.３４", "2026-11-1５",
]  # fmt: skip
EXTRA_NAMES = ["crm_id", "_i", "_position", "_columns", "raw_hash", "record_id", "extra", "index", "", "é", "a b"]

values = st.sampled_from(TEXT_VALUES) | st.text(max_size=70) | st.none()
files = st.sampled_from(sorted(CONTRACT))


@dataclass(frozen=True, repr=False)
class Mutation:
    """One change to one file of a valid snapshot; cell mutations know the row and column they touched."""

    table: str
    kind: str
    apply: Callable[[Path, str], None]
    row: int | None = None  # 0-based data row
    column: str | None = None

    def __repr__(self) -> str:  # Hypothesis prints this for a failing example
        return f"Mutation({self.table!r}, {self.kind!r}, row={self.row}, column={self.column!r})"


def _frame(table: str) -> pl.DataFrame:
    return pl.DataFrame(tiny_snapshot()[table], schema={c: pl.String for c in CONTRACT[table].column_names})


def _frame_change(table: str, kind: str, change: Callable[[pl.DataFrame], pl.DataFrame], **where) -> Mutation:
    return Mutation(
        table, kind, lambda folder, fmt: write_frame(change(_frame(table)), folder / f"{table}.{fmt}"), **where
    )


def _cell(table: str, row: int, column: str, value: str | None) -> Mutation:
    def change(f: pl.DataFrame) -> pl.DataFrame:
        hit = pl.int_range(pl.len()) == row
        return f.with_columns(pl.when(hit).then(pl.lit(value, pl.String)).otherwise(pl.col(column)).alias(column))

    return _frame_change(table, "cell", change, row=row, column=column)


def _extra(table: str, name: str) -> Mutation:
    return _frame_change(table, "extra_column", lambda f: f.with_columns(pl.lit("x").alias(name)))


def _write_text(table: str, fmt: str, text: str) -> Mutation:
    return Mutation(table, "text", lambda folder, _: (folder / f"{table}.{fmt}").write_text(text))


def _edit_text(table: str, fmt: str, old: str, new: str) -> Mutation:
    def apply(folder: Path, _fmt: str) -> None:
        path = folder / f"{table}.{fmt}"
        path.write_text(path.read_text().replace(old, new))

    return Mutation(table, "text", apply)


@st.composite
def cell_mutations(draw: st.DrawFn) -> Mutation:
    table = draw(files)
    frame = _frame(table)
    row = draw(st.integers(min_value=0, max_value=frame.height - 1)) if frame.height else 0
    column = draw(st.sampled_from(frame.columns))
    return _cell(table, row, column, draw(values))


@st.composite
def shape_mutations(draw: st.DrawFn) -> Mutation:
    """Missing, extra, renamed and reordered columns; duplicated, dropped and added rows."""
    table = draw(files)
    frame = _frame(table)
    kind = draw(
        st.sampled_from(
            [
                "drop_column",
                "extra_column",
                "rename_column",
                "reorder",
                "duplicate_row",
                "drop_row",
                "add_row",
                "repeat_column",
                "ragged_row",
            ]  # fmt: skip
        )
    )
    column = draw(st.sampled_from(frame.columns))
    if kind == "drop_column":
        return _frame_change(table, kind, lambda f: f.drop(column))
    if kind == "repeat_column":
        return _repeat_column(table, column)
    if kind == "ragged_row":
        return Mutation(table, kind, _ragged(table))
    if kind == "extra_column":
        name = draw(st.sampled_from(EXTRA_NAMES) | st.text(min_size=1, max_size=8))
        if name in frame.columns:
            name += "_x"
        value = draw(values)
        return _frame_change(table, kind, lambda f: f.with_columns(pl.lit(value, pl.String).alias(name)))
    if kind == "rename_column":
        new = draw(st.sampled_from(["", column.upper(), f" {column}", column + "\u200b"]))
        return _frame_change(table, kind, lambda f: f.rename({column: new}) if new not in f.columns else f)
    if kind == "reorder":
        return _frame_change(table, kind, lambda f: f.select(list(reversed(f.columns))))
    if kind == "duplicate_row":
        return _frame_change(table, kind, lambda f: pl.concat([f, f.head(1)]))
    if kind == "drop_row":
        return _frame_change(table, kind, lambda f: f.tail(max(f.height - 1, 0)))
    row = {c: draw(values) for c in frame.columns}
    return _frame_change(table, kind, lambda f: pl.concat([f, pl.DataFrame([row], schema=f.schema)]))


def _repeat_column(table: str, column: str) -> Mutation:
    """The file names one column twice (a CSV header, a JSON object's key, a Parquet schema)."""

    def apply(folder: Path, fmt: str) -> None:
        frame, path = _frame(table), folder / f"{table}.{fmt}"
        if fmt == "parquet":
            arrow = frame.to_arrow()
            pq.write_table(arrow.append_column(column, arrow.column(column)), path)
        elif fmt == "csv":
            lines = frame.write_csv().splitlines() or [""]
            path.write_text("\n".join([lines[0] + f",{column}", *(line + ",x" for line in lines[1:])]) + "\n")
        else:
            lines = frame.write_ndjson().splitlines()
            path.write_text("".join(line[:-1] + f',"{column}":"x"}}\n' for line in lines) or f'{{"{column}":1}}\n')

    return Mutation(table, "repeat_column", apply)


def _ragged(table: str) -> Callable[[Path, str], None]:
    """A row with more fields than the header (CSV), or an extra key (JSONL), or a wider file (Parquet)."""

    def apply(folder: Path, fmt: str) -> None:
        frame, path = _frame(table), folder / f"{table}.{fmt}"
        if fmt == "csv":
            lines = frame.write_csv().splitlines()
            path.write_text("\n".join([*lines[:-1], lines[-1] + ",surplus"]) + "\n")
        else:
            write_frame(frame.with_columns(pl.lit("surplus").alias("surplus")), path)

    return apply


def _rewrite(table: str, fmt: str, change: Callable[[bytes], bytes]) -> Callable[[Path, str], None]:
    def apply(folder: Path, _fmt: str) -> None:
        path = folder / f"{table}.{fmt}"
        path.write_bytes(change(path.read_bytes()))

    return apply


@st.composite
def byte_mutations(draw: st.DrawFn) -> Mutation:
    """Bad encodings, truncated, empty and random files, a missing file, two files for one table."""
    table = draw(files)
    kind = draw(
        st.sampled_from(
            [
                "bad_byte",
                "utf16",
                "latin1",
                "truncate",
                "empty",
                "header_only",
                "random",
                "nul",
                "crlf",
                "bom",
                "missing",
                "twice",
            ]
        )
    )
    at = draw(st.integers(min_value=0, max_value=400))
    junk = draw(st.binary(max_size=40))
    bad = draw(st.sampled_from([b"\xff", b"\xc3", b"\xe2\x82", b"\xed\xa0\x80", b"\x80"]))

    def change(data: bytes) -> bytes:
        cut = min(at, len(data))
        text = data.decode("utf-8", "replace")  # Parquet is binary: its "text" is only to re-encode it
        return {
            "bad_byte": data[:cut] + bad + data[cut:],
            "utf16": text.encode("utf-16"),
            "latin1": text.replace("e", "\u00e9").encode("latin-1", "replace"),
            "truncate": data[:cut],
            "empty": b"",
            "header_only": data.split(b"\n", 1)[0] + b"\n",
            "random": junk,
            "nul": data[:cut] + b"\x00" + data[cut:],
            "crlf": data.replace(b"\n", b"\r\n"),
            "bom": b"\xef\xbb\xbf" + data,
        }[kind]

    if kind == "missing":
        return Mutation(table, kind, lambda folder, fmt: (folder / f"{table}.{fmt}").unlink())
    if kind == "twice":
        other = lambda fmt: ".jsonl" if fmt == "csv" else ".csv"  # noqa: E731
        return Mutation(table, kind, lambda folder, fmt: write_frame(_frame(table), folder / f"{table}{other(fmt)}"))
    return Mutation(table, kind, lambda folder, fmt: _rewrite(table, fmt, change)(folder, fmt))


@st.composite
def jsonl_mutations(draw: st.DrawFn) -> Mutation:
    """A JSONL line with JSON values of any type, or a line that is not an object or not JSON."""
    table = draw(files)
    frame = _frame(table)
    column = draw(st.sampled_from(frame.columns))
    json_value = st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
        lambda kids: st.lists(kids, max_size=3) | st.dictionaries(st.text(max_size=4), kids, max_size=3),
        max_leaves=8,
    )
    raw = draw(
        json_value.map(lambda v: None)
        | st.sampled_from(["[1, 2]", '"text"', "{", '{"a": 1', "[" * 5000, '{"\\ud800": 1}'])
    )
    value = draw(json_value)

    def apply(folder: Path, _fmt: str) -> None:
        lines = [json.loads(line) for line in _frame(table).write_ndjson().splitlines()] or [{}]
        lines[0][column] = value
        text = [json.dumps(line) for line in lines]
        if raw is not None:
            text.append(raw)
        (folder / f"{table}.jsonl").write_text("\n".join(text) + "\n")

    return Mutation(table, "jsonl", apply, row=0, column=column if raw is None else None)


@st.composite
def parquet_mutations(draw: st.DrawFn) -> Mutation:
    """A Parquet column of another type: float money, integers, dates, lists, structs, binary."""
    table = draw(files)
    column = draw(st.sampled_from(CONTRACT[table].column_names + ["tags"]))
    kind = draw(st.sampled_from(["float", "int", "bool", "list", "struct", "binary", "date", "decimal"]))

    def typed(f: pl.DataFrame) -> pl.DataFrame:
        n = f.height
        series = {
            "float": pl.Series(column, [1.5] * n, pl.Float64),
            "int": pl.Series(column, [7] * n, pl.Int64),
            "bool": pl.Series(column, [True] * n),
            "list": pl.Series(column, [[1, 2]] * n),
            "struct": pl.Series(column, [{"a": 1}] * n),
            "binary": pl.Series(column, [b"\xff\xfe"] * n),
            "date": pl.Series(column, ["2026-11-01"] * n).str.to_date(),
            "decimal": pl.Series(column, ["12.345"] * n).cast(pl.Decimal(18, 3)),
        }[kind]
        return f.with_columns(series)

    def apply(folder: Path, _fmt: str) -> None:
        typed(_frame(table)).write_parquet(folder / f"{table}.parquet")

    return Mutation(table, f"parquet_{kind}", apply, column=column)


def _parquet_column(table: str, column: str, value: object) -> Mutation:
    def apply(folder: Path, _fmt: str) -> None:
        _frame(table).with_columns(pl.lit(value).alias(column)).write_parquet(folder / f"{table}.parquet")

    return Mutation(table, "parquet_typed", apply, column=column)


# -- the oracle ------------------------------------------------------------------------------------------
def _ingest_mutated(ws: Workspace, mutation: Mutation, fmt: str) -> tuple[IngestResult | SnapshotError, bool]:
    """Write the snapshot, mutate one file, ingest; the outcome and whether the store kept its data."""
    write_snapshot(ws.folder, tiny_snapshot(), fmt)
    mutation.apply(ws.folder, fmt)
    with Store(ws.db) as store:
        before = _fingerprint(store)
        runs = store.scalar("SELECT count(*) FROM ingest_runs")
        try:
            outcome: IngestResult | SnapshotError = ingest_snapshot(store, ws.folder, realm_id=REALM, now=T0)
        except SnapshotError as err:  # the one error bad input may raise; anything else fails the test
            outcome = err
        same = _fingerprint(store) == before
        if isinstance(outcome, SnapshotError):
            assert store.scalar("SELECT count(*) FROM ingest_runs") == runs + 1
            assert store.scalar("SELECT status FROM ingest_runs ORDER BY run_id DESC LIMIT 1") == "refused"
    return outcome, same


def _related(table: str) -> set[str]:
    """A table, its lines or its header: a change to one can be found in the other (orphan lines)."""
    return {table, CONTRACT[table].parent or table} | {t.name for t in CONTRACT.values() if t.parent == table}


def _assert_refusal_is_clear(err: SnapshotError, mutation: Mutation, fmt: str) -> None:
    names = {f"{t}{ext}" for t in CONTRACT for ext in FORMATS}
    assert err.problems and "\n" not in str(err) and "\r" not in str(err), repr(str(err))
    assert all(p.file in names for p in err.problems), err.problems
    assert any(p.file.rsplit(".", 1)[0] in _related(mutation.table) for p in err.problems), err.problems
    if mutation.row is not None and mutation.column is not None:
        # A bad value is found where it is: every problem names a row and a column (an id change may
        # also orphan lines in the lines file, found at their own row and column).
        assert all(p.row is not None and p.column for p in err.problems), err.problems
        hits = [p for p in err.problems if p.file == f"{mutation.table}.{fmt}" and p.column == mutation.column]
        row = mutation.row + (2 if fmt == "csv" else 1)  # a CSV's header is its row 1
        assert not hits or any(p.row == row or "duplicate" in p.message for p in hits), hits


def _check(ws: Workspace, mutation: Mutation, fmt: str) -> None:
    outcome, same = _ingest_mutated(ws, mutation, fmt)
    if isinstance(outcome, SnapshotError):
        assert same, f"refused, yet the store changed: {outcome}"
        _assert_refusal_is_clear(outcome, mutation, fmt)
    else:
        assert outcome.status in ("applied", "unchanged")


# -- the tests -------------------------------------------------------------------------------------------
@FUZZ
@given(mutation=st.one_of(cell_mutations(), shape_mutations(), byte_mutations()))
# Regressions: each crashed the ingest (after validation had passed) before it was fixed.
@example(mutation=_cell("vendors", 0, "updated_at", "2026-11-01T99:99:99Z"))  # DuckDB cast error
@example(mutation=_cell("bills", 1, "updated_at", "2026-02-30"))
@example(mutation=_extra("bill_lines", "_i"))  # DuplicateError in the orphan-line check
@example(mutation=_extra("bills", "_position"))  # DuplicateError re-reading only the changed rows
@example(mutation=_extra("vendors", "_columns"))  # DuplicateError in the raw-text hash
# Guards: a repeated column name (the first was taken), a ragged row, a cell past the limit, an emptied table.
@example(mutation=_repeat_column("bills", "total"))
@example(mutation=Mutation("bills", "ragged_row", _ragged("bills")))
@example(mutation=_cell("vendors", 1, "name", "x" * 10_001))
@example(mutation=_frame_change("customers", "drop_row", lambda f: f.head(0)))
def test_every_fuzzed_csv_snapshot_is_applied_or_refused_whole(
    workspace: Callable[[], Workspace], mutation: Mutation
) -> None:
    _check(workspace(), mutation, "csv")


@FUZZ
@given(mutation=st.one_of(jsonl_mutations(), cell_mutations(), byte_mutations()))
@example(mutation=_write_text("vendors", "jsonl", "[" * 100_000 + "\n"))  # RecursionError from json
@example(mutation=_edit_text("vendors", "jsonl", '"Acme Supplies"', '"Acme \\ud800"'))  # a lone surrogate
# A line separator inside a value (U+2028, NEL, form feed): a record split in two, refused without its column.
@example(mutation=_cell("vendors", 0, "name", "Acme\u2028Supplies"))
@example(mutation=_cell("customers", 0, "name", "North\x85wind\x0c"))
@example(mutation=_repeat_column("vendors", "name"))  # a repeated key: the last was taken
def test_every_fuzzed_jsonl_snapshot_is_applied_or_refused_whole(
    workspace: Callable[[], Workspace], mutation: Mutation
) -> None:
    _check(workspace(), mutation, "jsonl")


@settings(FUZZ, max_examples=20)
@given(mutation=st.one_of(parquet_mutations(), byte_mutations()))
@example(mutation=_parquet_column("vendors", "name", b"\xff"))  # binary that is not UTF-8: a cast error
@example(mutation=_parquet_column("vendors", "tags", [1, 2]))  # a list: a cast error, for an extra column
@example(mutation=_repeat_column("items", "name"))  # a repeated name: a Parquet error that named no column
def test_every_fuzzed_parquet_snapshot_is_applied_or_refused_whole(
    workspace: Callable[[], Workspace], mutation: Mutation
) -> None:
    _check(workspace(), mutation, "parquet")


# -- through the real command line -----------------------------------------------------------------------
CLI_CASES = {
    # name: (format, mutation, file, row, column)
    "timestamp out of range": (
        "csv", _cell("vendors", 1, "updated_at", "2026-11-01T24:61:00Z"), "vendors.csv", 3, "updated_at"
    ),
    "negative money": ("csv", _cell("payments", 0, "amount", "-150.00"), "payments.csv", 2, "amount"),
    "control character in an id": (
        "csv", _cell("customers", 0, "customer_id", "CUS\x07"), "customers.csv", 2, "customer_id"
    ),
    "json nested too deeply": ("jsonl", _write_text("bills", "jsonl", "[" * 100_000), "bills.jsonl", 1, None),
    "truncated parquet": (
        "parquet", Mutation("items", "truncate", _rewrite("items", "parquet", lambda b: b[:100])), "items.parquet",
        None, None,
    ),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(CLI_CASES))
def test_the_cli_refuses_bad_input_with_exit_2_and_one_clear_line(
    workspace: Callable[[], Workspace], case: str
) -> None:
    fmt, mutation, file, row, column = CLI_CASES[case]
    ws = workspace()
    write_snapshot(ws.folder, tiny_snapshot(), fmt)
    mutation.apply(ws.folder, fmt)
    with Store(ws.db) as store:
        before = _fingerprint(store)
    env = {**os.environ, "SYNCHEALTH_DB": str(ws.db), "SYNCHEALTH_REALM_ID": REALM}
    proc = subprocess.run(
        [sys.executable, "-m", "pipelines.cli", "--actor", "admin@demo.local", "ingest", str(ws.folder)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    err = proc.stderr.strip()
    assert proc.returncode == 2, proc.stderr
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert err.startswith("synchealth: snapshot refused, nothing applied: ") and file in err, err
    if row is not None:
        assert f"row {row}" in err, err
    if column is not None:
        assert f"column {column}" in err, err
    with Store(ws.db) as store:
        assert _fingerprint(store) == before


# -- Unicode digits, spaces and look-alikes in every typed column ------------------------------------------
# Regex `\d` and Python's int() accept every Unicode decimal digit (Arabic-Indic ١, full-width １, Devanagari ४ ...),
# DuckDB's casts do not: a value the contract let through must also convert, so the contract takes ASCII only.
LOOKALIKES = [
    "٫", "٬", "．", "，", "−", "－", "‐", "‑", "–", "：", "Ｔ", "Ｚ", "ｚ", "\u200b", "\ufeff", "\u00ad", "Ⅸ", "²", "①",
    "𝟗", "\u0660", "\u06f5", "\u0967", "\uff11", "\u2007", "\u00a0", "\u3000", "\u202f", "⁺", "₋",
]  # fmt: skip
_TYPED = {
    # kind -> a valid value the mutation starts from
    "money": "1250.00",
    "money_nonneg": "30.50",
    "quantity": "2.5",
    "date": "2026-11-15",
    "timestamp": "2026-11-15T09:30:00+01:00",
    "int": "7",
    "currency": "USD",
}
TYPED_COLUMNS = sorted(
    (t.name, c.name, c.kind) for t in CONTRACT.values() for c in t.columns if c.kind in _TYPED and _frame(t.name).height
)
odd_chars = (
    st.characters(categories=["Nd"])
    | st.characters(categories=["Zs"])
    | st.characters(categories=["No", "Nl", "Pd", "Cf"])
    | st.sampled_from(LOOKALIKES)
)


@st.composite
def unicode_mutations(draw: st.DrawFn) -> Mutation:
    """A valid typed value with some characters swapped for Unicode digits, spaces or look-alikes (or some added)."""
    table, column, kind = draw(st.sampled_from(TYPED_COLUMNS))
    chars = list(_TYPED[kind])
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        at = draw(st.integers(min_value=0, max_value=len(chars)))
        if draw(st.booleans()) and at < len(chars):
            chars[at] = draw(odd_chars)
        else:
            chars.insert(at, draw(odd_chars))
    row = draw(st.integers(min_value=0, max_value=_frame(table).height - 1))
    return _cell(table, row, column, "".join(chars))


def _check_unicode(ws: Workspace, mutation: Mutation, fmt: str) -> None:
    outcome, same = _ingest_mutated(ws, mutation, fmt)
    if isinstance(outcome, IngestResult):
        assert outcome.status in ("applied", "unchanged")
        return
    assert same, f"refused, yet the store changed: {outcome}"
    row = mutation.row + (2 if fmt == "csv" else 1)
    assert all(p.row is not None and p.column for p in outcome.problems), outcome.problems
    assert any(p.file == f"{mutation.table}.{fmt}" and p.row == row and p.column == mutation.column
               for p in outcome.problems), outcome.problems  # fmt: skip


@FUZZ
@given(mutation=unicode_mutations(), fmt=st.sampled_from(["csv", "jsonl", "parquet"]))
# Regressions: each passed the contract's `\d`, then failed the store's cast with a traceback (exit 1).
@example(mutation=_cell("bills", 0, "total", "١٢٣"), fmt="csv")
@example(mutation=_cell("payments", 0, "amount", "１２３.４５"), fmt="jsonl")
@example(mutation=_cell("bill_lines", 0, "line_no", "1١"), fmt="csv")
@example(mutation=_cell("vendors", 0, "updated_at", "2026-11-15T0٩:30:00Z"), fmt="parquet")
@example(mutation=_cell("bills", 0, "txn_date", "２０２６-11-15"), fmt="csv")
def test_unicode_digits_spaces_and_look_alikes_in_typed_columns_are_applied_or_refused_at_their_cell(
    workspace: Callable[[], Workspace], mutation: Mutation, fmt: str
) -> None:
    _check_unicode(workspace(), mutation, fmt)
