"""AWRA snapshot ingest: read a folder, validate it against the contract, stage it, swap it in atomically."""

from __future__ import annotations

import csv
import functools
import hashlib
import io
import json
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Concatenate, ParamSpec

import numpy as np
import pandera.errors
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipelines import audit, changes
from pipelines.clock import elapsed_from
from pipelines.store import Store, awra_table, crash_point, current_view
from schemas.awra import CONTRACT, Column, Table, contract_schema
from schemas.manifest import FULL, MANIFEST_FILE, Manifest, ManifestError, parse_manifest

__all__ = [
    "FORMATS",
    "LIMITS",
    "DELTA_OUT_OF_ORDER",
    "MASS_REMOVAL",
    "REMOVAL_FLOOR",
    "REMOVAL_SHARE",
    "IngestResult",
    "MassRemovalError",
    "Problem",
    "Removal",
    "SnapshotError",
    "SnapshotLimits",
    "ingest_snapshot",
    "read_snapshot",
    "validate_snapshot",
]

FORMATS = (".csv", ".parquet", ".jsonl")
_MAX_PROBLEMS_KEPT = 50
Progress = Callable[[float, str], None]


@dataclass(frozen=True)
class SnapshotLimits:
    """How much one snapshot file may hold; past any limit the file is refused (README "AWRA snapshot contract").

    A file is never read past max_file_bytes: its size is checked before reading, and the read itself stops there.
    Rows, columns and cells are checked as soon as the file is parsed, before anything else is done with it. A
    Parquet file is checked before its text is expanded: compression and dictionaries let a small file stand for
    gigabytes of text, so its text may total at most max_file_bytes too, as a CSV of the same data would.
    """

    max_file_bytes: int = 1 << 30  # 1 GiB per file: about 4 million bill lines; a 1M-record company fits well within
    max_rows: int = 10_000_000  # data rows per file
    max_columns: int = 1_000  # the contract's columns and any extra ones
    max_cell_chars: int = 10_000  # characters in one value; QuickBooks' longest text field takes 4,000


LIMITS = SnapshotLimits()


@dataclass(frozen=True)
class Problem:
    """One contract violation, located as a person would look for it."""

    file: str
    row: int | None
    column: str | None
    message: str

    def __str__(self) -> str:
        where = self.file
        if self.row is not None:
            where += f" row {self.row}"
        if self.column:
            where += f" column {self.column}"
        return f"{where}: {self.message}"


class SnapshotError(Exception):
    """The snapshot breaks the contract; nothing of it is applied. str() is the first problem, in one line."""

    def __init__(self, problems: list[Problem], rejected: dict[str, int] | None = None) -> None:
        self.problems = problems
        self.rejected = rejected or {}
        first = str(problems[0])
        more = len(problems) - 1
        super().__init__(first + (f" (and {more} more problem{'s' * (more > 1)})" if more else ""))


# A snapshot may remove up to this share of a table's live records on its own; past it (and at least REMOVAL_FLOOR
# records), or when a table that holds live records arrives empty, it is refused unless a person gives a reason. A
# header-only export once marked every record removed and resolved every exception as "corrected".
REMOVAL_SHARE = 0.20
# Fewer removals than this are never a mass removal: 1 of a company's 3 customers leaving is an ordinary day.
REMOVAL_FLOOR = 5
# The start of a mass-removal refusal's message, in the ingest history: the exception queue finds it by this.
MASS_REMOVAL = "mass removal refused"
# The start of a refusal of a delta whose base is not the snapshot last applied: the feed stops until a person acts.
DELTA_OUT_OF_ORDER = "delta out of order"


@dataclass(frozen=True)
class Removal:
    """What one table of a snapshot would remove: records (or, for a lines table, the lines of live records)."""

    table: str
    file: str
    removed: int
    live: int
    empty: bool  # the file holds no rows at all

    @property
    def what(self) -> str:
        noun = "lines" if CONTRACT[self.table].is_lines else "live records"
        share = f"{self.removed / self.live:.0%}" if self.live else "0%"
        tail = ", the file is empty" if self.empty else ""
        return f"would remove {self.removed:,} of {self.live:,} {noun} ({share}{tail})"

    def __str__(self) -> str:
        return f"{self.file} {self.what}"


class MassRemovalError(SnapshotError):
    """The snapshot would remove more of a table than a careful export does; nothing of it is applied.

    str() names each table, how many of how many records would go, and how to allow it with a reason.
    """

    def __init__(self, removals: list[Removal], share: float, reason_given: bool = False) -> None:
        self.removals = removals
        super().__init__([Problem(r.file, None, None, r.what) for r in removals], {r.table: 0 for r in removals})
        blank = " (--allow-removal needs a reason, not blank text)" if reason_given else ""
        self.args = (
            f"{MASS_REMOVAL}: {'; '.join(str(r) for r in removals)}. A snapshot may remove at most {share:.0%} of a "
            f"table's records (any {REMOVAL_FLOOR - 1} or fewer) and never empty a table on its own; if these "
            f'records really left AWRA, ingest it again with --allow-removal "reason"{blank}',
        )


@dataclass
class _RawFile:
    table: Table
    path: Path
    frame: pl.DataFrame  # every column as text
    first_row: int  # the row number a person sees for the first data row (CSV counts its header as row 1)
    positions: pl.Series | None = None  # when only some rows are kept: each kept row's position in the file

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def height(self) -> int:
        return self.frame.height

    def row_number(self, index: int) -> int:
        """The row a person sees in the file for row `index` of `frame`."""
        return (index if self.positions is None else int(self.positions[index])) + self.first_row


@dataclass(frozen=True)
class IngestResult:
    """What one ingest did: counts per table and per kind of change."""

    run_id: int
    status: str  # applied | unchanged
    rows: dict[str, int]
    new: int
    changed: int
    removed: int
    restored: int
    seconds: float
    changes_by_entity: dict[str, dict[str, int]] = field(default_factory=dict)
    kind: str = "full"  # full | delta
    snapshot_id: str | None = None
    note: str = ""  # e.g. why nothing was done


# -- reading ---------------------------------------------------------------------------------------------
def _find_file(folder: Path, table: Table) -> Path:
    found = [folder / f"{table.name}{ext}" for ext in FORMATS if (folder / f"{table.name}{ext}").is_file()]
    if not found:
        raise SnapshotError(
            [
                Problem(
                    f"{table.name}.csv",
                    None,
                    None,
                    "file is missing (expected .csv, .parquet or .jsonl); a table the company does not use "
                    "is a file with its header only, because a missing file would mark every record removed",
                )
            ]
        )
    if len(found) > 1:
        names = ", ".join(p.name for p in found)
        raise SnapshotError([Problem(found[0].name, None, None, f"more than one file for this table: {names}")])
    return found[0]


def _decode(path: Path, data: bytes, line_offset: int) -> str:
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data[: err.start].count(b"\n") + line_offset
        raise SnapshotError(
            [Problem(path.name, line, None, f"is not valid UTF-8 (byte 0x{data[err.start]:02x}); save as UTF-8")]
        ) from None


def _too_big(path: Path, size: int, limits: SnapshotLimits) -> SnapshotError:
    return SnapshotError(
        [
            Problem(
                path.name,
                None,
                None,
                f"is {size:,} bytes; a snapshot file may hold at most {limits.max_file_bytes:,} "
                "(split the export, or leave out what the contract does not need)",
            )
        ]
    )


def _read_bounded(path: Path, limits: SnapshotLimits) -> bytes:
    """The file's bytes, refused before reading when it is over the limit (and never read past it)."""
    size = path.stat().st_size
    if size > limits.max_file_bytes:
        raise _too_big(path, size, limits)
    with path.open("rb") as fh:
        data = fh.read(limits.max_file_bytes + 1)
    if len(data) > limits.max_file_bytes:  # it grew while being read
        raise _too_big(path, len(data), limits)
    return data


def _csv_header(path: Path, text: str, limits: SnapshotLimits) -> list[str]:
    """The header row's names, read as CSV (quotes and all), refused when a name repeats or there are too many."""
    head = text[: min(len(text), limits.max_columns * 1024)]
    try:
        names = next(csv.reader(io.StringIO(head)), [])
    except csv.Error as err:
        raise SnapshotError([Problem(path.name, 1, None, f"the header row is not readable CSV: {err}")]) from None
    if len(names) > limits.max_columns:
        raise SnapshotError(
            [Problem(path.name, 1, None, f"has {len(names):,} columns; a file may have at most {limits.max_columns:,}")]
        )
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise SnapshotError(
                [Problem(path.name, 1, name, "this column name appears more than once in the header; name each once")]
            )
        seen.add(name)
    return names


def _ragged_row(path: Path, text: str, width: int) -> Problem | None:
    """The first row with more fields than the header has (Polars refuses the file without saying which)."""
    try:
        for n, fields in enumerate(csv.reader(io.StringIO(text)), start=1):
            if len(fields) > width:
                return Problem(
                    path.name, n, None, f"has {len(fields)} fields but the header names {width}; quote a value that "
                    "holds a comma"
                )  # fmt: skip
    except csv.Error as err:
        return Problem(path.name, None, None, f"is not readable CSV: {err}")
    return None


def _read_csv(path: Path, data: bytes, limits: SnapshotLimits) -> pl.DataFrame:
    text = _decode(path, data, 1)
    if not text.strip():
        raise SnapshotError([Problem(path.name, None, None, "file is empty; expected at least the header row")])
    header = _csv_header(path, text, limits)
    try:
        # The bytes, now known to be UTF-8, not the text encoded again (a second copy of the whole file).
        return pl.read_csv(data.removeprefix(b"\xef\xbb\xbf"), infer_schema=False)
    except pl.exceptions.PolarsError as err:
        detail = str(err).strip().splitlines()[0]
        ragged = _ragged_row(path, text, len(header)) if "more fields" in detail else None
        raise SnapshotError([ragged or Problem(path.name, None, None, f"is not readable CSV: {detail}")]) from None


def _json_text(value: object) -> str | None:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        return json.dumps(value, sort_keys=True)
    return str(value)


def _refuse_surrogates(path: Path, line: int, row: dict[str, str | None]) -> None:
    # A "\\ud800" escape decodes to half a UTF-16 pair, which no UTF-8 text (nor the store) can hold.
    for key, value in row.items():
        for text in (key, value or ""):
            try:
                text.encode("utf-8")
            except UnicodeEncodeError:
                column = key if text is value else None
                raise SnapshotError(
                    [Problem(path.name, line, column, "holds an unpaired \\u surrogate escape; save as UTF-8")]
                ) from None


class _RepeatedKey(Exception):
    def __init__(self, key: str) -> None:
        self.key = key


def _unique_keys(pairs: list[tuple[str, object]]) -> dict[str, object]:
    # json.loads keeps the last of two equal keys without a word; which value was meant cannot be known.
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _RepeatedKey(key)
            seen.add(key)
    return obj


def _read_jsonl(path: Path, data: bytes, table: Table, limits: SnapshotLimits) -> pl.DataFrame:
    text = _decode(path, data, 1)
    # Parsed line by line with numbers kept as their exact text: Polars and DuckDB read JSON numbers as
    # 64-bit floats, and 123456789012345678.99 would come back rounded. Money must not be rounded.
    rows: list[dict[str, str | None]] = []
    # JSON Lines ends a line at \n (or \r\n) only: str.splitlines() would also split at U+2028, NEL or a form feed
    # inside a value, cutting one record in two.
    for n, line in enumerate(text.split("\n"), start=1):
        line = line.removesuffix("\r")
        if not line.strip():
            continue
        try:
            obj = json.loads(line, parse_float=str, parse_int=str, parse_constant=str, object_pairs_hook=_unique_keys)
        except json.JSONDecodeError as err:
            raise SnapshotError([Problem(path.name, n, None, f"is not valid JSON: {err.msg}")]) from None
        except RecursionError:
            raise SnapshotError([Problem(path.name, n, None, "is not valid JSON: nested too deeply")]) from None
        except _RepeatedKey as err:
            raise SnapshotError(
                [Problem(path.name, n, err.key, "this key appears more than once in the object; give each once")]
            ) from None
        if not isinstance(obj, dict):
            raise SnapshotError([Problem(path.name, n, None, "each line must be a JSON object")])
        if len(rows) >= limits.max_rows:
            raise SnapshotError(
                [Problem(path.name, n, None, f"has more than {limits.max_rows:,} rows, the most a file may hold")]
            )
        row = {k: _json_text(v) for k, v in obj.items()}
        _refuse_surrogates(path, n, row)
        rows.append(row)
    # JSON Lines has no header: a file without objects is a table without records, in the contract's columns.
    columns = list(dict.fromkeys(k for row in rows for k in row)) if rows else list(table.column_names)
    if len(columns) > limits.max_columns:
        raise SnapshotError(
            [
                Problem(
                    path.name, None, None, f"has {len(columns):,} keys; a file may have at most {limits.max_columns:,}"
                )
            ]
        )
    return pl.DataFrame({c: [row.get(c) for row in rows] for c in columns}, schema={c: pl.String for c in columns})


def _is_text(dtype: pa.DataType) -> bool:
    return pa.types.is_string(dtype) or pa.types.is_large_string(dtype)


def _parquet_text_problems(path: Path, table: pa.Table, limits: SnapshotLimits) -> list[Problem]:
    """Cells over the limit, or more text in all than the limit, found in the dictionary-encoded strings."""
    problems, total = _parquet_text_measure(path, table, limits, 0)
    if total > limits.max_file_bytes:
        problems.append(_expands(path, total, limits))
    return problems


def _expands(path: Path, total: int, limits: SnapshotLimits) -> Problem:
    return Problem(
        path.name, None, None, f"expands to {total:,} bytes of data; a snapshot file may hold at most "
        f"{limits.max_file_bytes:,}"
    )  # fmt: skip


def _parquet_text_measure(
    path: Path, table: pa.Table, limits: SnapshotLimits, first_index: int
) -> tuple[list[Problem], int]:
    """Cells over the limit (named by row: `first_index` is the file position of the table's first row), and the
    bytes of text the table holds, measured in the dictionary-encoded strings."""
    problems = []
    total = 0
    for name, column in zip(table.column_names, table.columns, strict=True):
        for chunk in column.chunks:
            if pa.types.is_dictionary(chunk.type) and _is_text(chunk.type.value_type):
                chars = pc.utf8_length(chunk.dictionary).fill_null(0)
                nbytes = pc.binary_length(chunk.dictionary).fill_null(0)
                total += pc.sum(pc.take(nbytes, chunk.indices)).as_py() or 0
                longest = pc.max(chars).as_py() or 0
                if longest > limits.max_cell_chars:
                    codes = np.flatnonzero(chars.to_numpy(zero_copy_only=False) > limits.max_cell_chars)
                    hits = pc.is_in(chunk.indices, value_set=pa.array(codes, type=chunk.indices.type))
                    index = int(np.flatnonzero(hits.to_numpy(zero_copy_only=False))[0])
                    offset = sum(len(c) for c in column.chunks[: column.chunks.index(chunk)])
                    problems.append(_long_cell(path, first_index + offset + index + 1, name, longest, limits))
                    break
            else:
                total += chunk.nbytes
    return problems, total


def _not_parquet(path: Path, err: Exception) -> SnapshotError:
    detail = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return SnapshotError([Problem(path.name, None, None, f"is not readable Parquet: {detail}")])


def _read_parquet(path: Path, data: bytes, table: Table, limits: SnapshotLimits) -> pl.DataFrame:
    try:
        meta = pq.ParquetFile(io.BytesIO(data))
    except Exception as err:  # a truncated or foreign file raises many kinds of errors
        raise _not_parquet(path, err) from None
    strings = _check_parquet_meta(path, meta, limits)
    try:
        # Strings stay dictionary-encoded until they are measured: a repeated value is held once, however often used.
        arrow = pq.ParquetFile(io.BytesIO(data), read_dictionary=strings).read()
        problems = _parquet_text_problems(path, arrow, limits)
        if problems:
            raise SnapshotError(problems)
        return _parquet_text(path, arrow, table)
    except SnapshotError:
        raise
    except Exception as err:  # a truncated or foreign file raises many kinds of errors
        raise _not_parquet(path, err) from None


def _check_parquet_meta(path: Path, meta: pq.ParquetFile, limits: SnapshotLimits) -> list[str]:
    """Refuse repeated column names and too many columns or rows, from the footer alone; the text columns' names."""
    names = meta.schema_arrow.names
    repeated = next((n for i, n in enumerate(names) if n in names[:i]), None)
    if repeated is not None:
        raise SnapshotError(
            [Problem(path.name, None, repeated, "this column name appears more than once; name each once")]
        )
    if len(names) > limits.max_columns:
        raise SnapshotError(
            [
                Problem(
                    path.name, None, None, f"has {len(names):,} columns; a file may have at most {limits.max_columns:,}"
                )
            ]
        )
    if meta.metadata.num_rows > limits.max_rows:
        raise SnapshotError(
            [Problem(path.name, None, None, f"has {meta.metadata.num_rows:,} rows; a file may hold at most "
                     f"{limits.max_rows:,}")]
        )  # fmt: skip
    return [f.name for f in meta.schema_arrow if _is_text(f.type)]


def _parquet_text(path: Path, arrow: pa.Table, table: Table) -> pl.DataFrame:
    """Parquet rows as text; amounts stored as floats are refused (a cent may already be lost)."""
    kinds = {c.name: c.kind for c in table.columns}
    frame = pl.from_arrow(arrow)
    assert isinstance(frame, pl.DataFrame)
    for name, dtype in frame.schema.items():
        if kinds.get(name, "").startswith(("money", "quantity")) and dtype.is_float():
            raise SnapshotError(
                [
                    Problem(
                        path.name,
                        None,
                        name,
                        f"is stored as a floating-point number ({dtype}); "
                        "amounts must be decimals or decimal strings so no cent is lost",
                    )
                ]
            )
    return frame.select(_as_text(path, frame[name], name in kinds) for name in frame.columns)


def _as_text(path: Path, column: pl.Series, in_contract: bool) -> pl.Series:
    """One Parquet column as text; a nested column is kept as JSON if extra, refused if in the contract."""
    try:
        return column.cast(pl.String)
    except pl.exceptions.PolarsError:
        if in_contract:
            raise SnapshotError(
                [Problem(path.name, None, column.name, f"holds {column.dtype} values; expected text or numbers")]
            ) from None
    # Unknown extra columns are kept and ignored (contract): keep what they hold, as JSON text.
    values = [None if v is None else json.dumps(v, sort_keys=True, default=repr) for v in column.to_list()]
    return pl.Series(column.name, values, dtype=pl.String)


def _long_cell(path: Path, row: int, column: str, chars: int, limits: SnapshotLimits) -> Problem:
    return Problem(
        path.name, row, column, f"holds {chars:,} characters; a value may hold at most {limits.max_cell_chars:,}"
    )


def _limit_problems(raw: _RawFile, limits: SnapshotLimits) -> list[Problem]:
    """Rows, columns and cells over the limits, each named where it is (one cell per column)."""
    frame = raw.frame
    if frame.width > limits.max_columns:
        return [Problem(raw.name, None, None, f"has {frame.width:,} columns; a file may have at most "
                        f"{limits.max_columns:,}")]  # fmt: skip
    if frame.height > limits.max_rows:
        return [
            Problem(raw.name, None, None, f"has {frame.height:,} rows; a file may hold at most {limits.max_rows:,}")
        ]
    if not frame.height or not frame.width:
        return []
    longest = frame.select(pl.col(c).str.len_chars().max() for c in frame.columns).row(0)
    problems = []
    for name, chars in zip(frame.columns, longest, strict=True):
        if chars is not None and chars > limits.max_cell_chars:
            index = frame.select(pl.col(name).str.len_chars().gt(limits.max_cell_chars).arg_true().first()).item()
            problems.append(_long_cell(raw.path, raw.row_number(int(index)), name, int(chars), limits))
    return problems


def _read_file(table: Table, path: Path, limits: SnapshotLimits = LIMITS) -> _RawFile:
    data = _read_bounded(path, limits)
    if path.suffix == ".jsonl":
        raw = _RawFile(table, path, _read_jsonl(path, data, table, limits), first_row=1)
    elif not data.strip():
        raise SnapshotError([Problem(path.name, None, None, "file is empty; expected at least the header row")])
    elif path.suffix == ".csv":
        raw = _RawFile(table, path, _read_csv(path, data, limits), first_row=2)
    else:
        raw = _RawFile(table, path, _read_parquet(path, data, table, limits), first_row=1)
    del data
    problems = _limit_problems(raw, limits)
    if problems:
        raise SnapshotError(problems)
    return raw


def _present_tables(folder: Path) -> set[str]:
    """The contract tables with at least one file in the folder (a delta leaves out what did not change)."""
    return {t.name for t in CONTRACT.values() if any((folder / f"{t.name}{ext}").is_file() for ext in FORMATS)}


def read_snapshot(folder: Path, tables: set[str] | None = None, limits: SnapshotLimits = LIMITS) -> dict[str, _RawFile]:
    """Every contract table's file (or these tables') as text; refuses a missing, duplicated or unreadable file."""
    if not folder.is_dir():
        raise SnapshotError([Problem(str(folder), None, None, "is not a folder")])
    problems: list[Problem] = []
    files: dict[str, _RawFile] = {}
    for table in CONTRACT.values():
        if tables is not None and table.name not in tables:
            continue
        try:
            files[table.name] = _read_file(table, _find_file(folder, table), limits)
        except SnapshotError as err:
            problems.extend(err.problems)
    if problems:
        raise SnapshotError(problems)
    return files


# -- the manifest: full or delta -------------------------------------------------------------------------
def read_manifest(folder: Path, limits: SnapshotLimits = LIMITS) -> Manifest:
    """The folder's manifest.json (none: a v1.0 full snapshot); refuses one that breaks the contract."""
    path = folder / MANIFEST_FILE
    if not path.exists():
        return FULL
    if not path.is_file():
        raise SnapshotError([Problem(MANIFEST_FILE, None, None, "is not a file")])
    text = _decode(path, _read_bounded(path, limits), 1)
    try:
        return parse_manifest(text, limits.max_rows)
    except ManifestError as err:
        raise SnapshotError([Problem(MANIFEST_FILE, None, err.field, str(err))]) from None


def _last_snapshot(store: Store, realm_id: str) -> tuple[bool, str | None]:
    """Whether a snapshot was ever applied to this company, and the id of the last one (None: it had no manifest)."""
    row = store.rows(
        "SELECT snapshot_id FROM ingest_runs WHERE realm_id = ? AND status <> 'refused' ORDER BY run_id DESC LIMIT 1",
        [realm_id],
    )
    return (True, row[0][0]) if row else (False, None)


def _check_base(manifest: Manifest, applied: bool, last: str | None) -> None:
    """A delta applies only on top of the snapshot it names: anything else would lose or resurrect records."""
    if last == manifest.base:
        return
    if not applied:
        why = "no snapshot has been applied to this company yet; send a full snapshot first"
    elif last is None:
        why = "the last snapshot applied carried no snapshot_id; send a full snapshot with a manifest first"
    else:
        why = f"the last snapshot applied is {last!r}; apply the deltas between them in order, or send a full snapshot"
    err = SnapshotError([Problem(MANIFEST_FILE, None, "base", f"this delta follows {manifest.base!r}, but {why}")])
    err.args = (f"{DELTA_OUT_OF_ORDER}: {err.args[0]}",)
    raise err


def _check_delta_files(present: set[str]) -> None:
    """A delta sends a changed record whole, so an entity comes with all its files or none of them."""
    problems = []
    for table in CONTRACT.values():
        family = [t.name for t in CONTRACT.values() if table.name in (t.name, t.parent)]
        if table.is_lines or not (set(family) & present):
            continue
        for name in family:
            if name not in present:
                problems.append(
                    Problem(
                        f"{name}.csv",
                        None,
                        None,
                        f"file is missing: a delta that carries {table.name} carries {name} too, for the records it "
                        "sends (a file with its header only when they have none)",
                    )
                )
    if problems:
        raise SnapshotError(problems)


def _check_removed_not_sent(manifest: Manifest, raw: dict[str, _RawFile]) -> None:
    problems = []
    for name, ids in manifest.removed.items():
        if name not in raw:
            continue
        sent = raw[name]
        listed = pl.Series(ids, dtype=pl.String)
        both = listed.filter(listed.is_in(sent.frame[sent.table.record_id].implode()))
        for rid in both.head(_MAX_PROBLEMS_KEPT):
            problems.append(
                Problem(
                    MANIFEST_FILE,
                    None,
                    f"removed.{name}",
                    f"{_shown(rid)} is both removed and sent in {raw[name].name}",
                )
            )
    if problems:
        raise SnapshotError(problems)


# -- validation ------------------------------------------------------------------------------------------
def _complete_columns(raw: _RawFile) -> tuple[pl.DataFrame, list[Problem]]:
    """Add a missing either/or column as empty, report missing required columns."""
    frame = raw.frame
    present = set(frame.columns)
    problems = []
    if raw.table.one_of and not present & set(raw.table.one_of):
        names = " or ".join(raw.table.one_of)
        problems.append(Problem(raw.name, 1, names, f"the header needs {names}"))
    for col in raw.table.columns:
        if col.name in present:
            continue
        if col.name in raw.table.one_of:
            frame = frame.with_columns(pl.lit(None, dtype=pl.String).alias(col.name))
        else:
            problems.append(Problem(raw.name, 1, col.name, "column is missing from the header"))
    present_cols = [c.name for c in raw.table.columns if c.name in frame.columns]
    return frame.with_columns(pl.col(present_cols).cast(pl.String)), problems


def _shown(value: object) -> str:
    text = "" if value is None else str(value)
    text = text.encode("unicode_escape").decode("ascii")
    return repr(text[:60] + ("..." if len(text) > 60 else ""))


def _failure_problems(raw: _RawFile, cases: pl.DataFrame, columns: dict[str, Column]) -> list[Problem]:
    problems = []
    cases = cases.sort("index", nulls_last=True)
    for case in cases.iter_rows(named=True):
        row = None if case["index"] is None else raw.row_number(int(case["index"]))
        check = str(case["check"])
        column = case["column"]
        if check == "multiple_fields_uniqueness" or column == raw.table.name:
            keys = " + ".join(raw.table.key)
            problems.append(
                Problem(
                    raw.name,
                    row,
                    raw.table.key[-1] if len(raw.table.key) == 1 else keys,
                    f"duplicate {keys}: each must appear once",
                )
            )
        elif check == "not_nullable":
            problems.append(Problem(raw.name, row, column, "a value is required"))
        elif column in columns:
            problems.append(Problem(raw.name, row, column, f"{_shown(case['failure_case'])} {check}"))
        else:
            problems.append(Problem(raw.name, row, column, f"{check}: {_shown(case['failure_case'])}"))
    return problems


def _validate_file(raw: _RawFile) -> tuple[pl.DataFrame, list[Problem], int]:
    frame, problems = _complete_columns(raw)
    if problems:
        return frame, problems, frame.height
    columns = {c.name: c for c in raw.table.columns}
    try:
        contract_schema(raw.table).validate(frame, lazy=True)
    except pandera.errors.SchemaErrors as err:
        cases = err.failure_cases
        bad_rows = cases.filter(pl.col("index").is_not_null())["index"].n_unique()
        return frame, _failure_problems(raw, cases, columns), bad_rows
    return frame, [], 0


def _orphan_lines(raw: _RawFile, frame: pl.DataFrame, parents: pl.DataFrame) -> list[Problem]:
    parent_id = raw.table.record_id
    orphans = (
        frame.select(parent_id)  # alone, so an extra column named like the row index cannot collide
        .with_row_index("_i")
        .join(parents.select(pl.col(parent_id)), on=parent_id, how="anti")
        .head(_MAX_PROBLEMS_KEPT)
    )
    parent_file = raw.table.parent
    return [
        Problem(
            raw.name,
            raw.row_number(int(r["_i"])),
            parent_id,
            f"{_shown(r[parent_id])} has no row in {parent_file}",
        )
        for r in orphans.iter_rows(named=True)
    ]


def validate_snapshot(files: dict[str, _RawFile]) -> dict[str, pl.DataFrame]:
    """Check every file against the contract; all problems of all files are gathered, then refused whole."""
    problems: list[Problem] = []
    rejected: dict[str, int] = {}
    frames: dict[str, pl.DataFrame] = {}
    for name, raw in files.items():
        frame, found, bad = _validate_file(raw)
        frames[name] = frame
        problems.extend(found)
        if found:
            rejected[name] = max(bad, 1)
    if not problems:
        for name, raw in files.items():
            if raw.table.parent:
                found = _orphan_lines(raw, frames[name], frames[raw.table.parent])
                problems.extend(found)
                if found:
                    rejected[name] = len(found)
    if problems:
        raise SnapshotError(problems, rejected)
    return frames


# -- what changed ----------------------------------------------------------------------------------------
# 64 bits are enough: a record's hash is only compared with the same record's last one, so a change goes unseen
# only if its new text hashes to exactly its old value (2^-64 per changed record), not by a birthday collision.
_SEED = 0x5EED_0001


def _row_hash(frame: pl.DataFrame) -> pl.Expr:
    # The column names take part, so a renamed or reordered header changes every row's hash.
    names = sorted(frame.columns)
    # Fields named by position: a file may have a column of any name, "_columns" included.
    fields = [pl.col(n).alias(str(i)) for i, n in enumerate(names, start=1)]
    return pl.struct(pl.lit("\x1f".join(names)).alias("0"), *fields).hash(_SEED).alias("raw_hash")


def _unhashable(raw: _RawFile) -> bool:
    """A file whose records cannot be told apart by their id: it lacks the id, or (a header) repeats one.

    Repeated lines need no check: a second copy of a line adds its hash to its record's sum, so the record differs
    from what was applied and is validated, where the contract reports the duplicate."""
    if not set(raw.table.key) <= set(raw.frame.columns):
        return True
    return not raw.table.is_lines and raw.frame[raw.table.record_id].is_duplicated().any()


def _raw_hashes(raw: dict[str, _RawFile]) -> dict[str, pl.DataFrame]:
    """Per header table read: record_id and raw_hash, a hash of each record's raw text with its lines.

    A table whose keys are missing or repeated (in its file or its lines' file) gets none: every row is then
    validated, and the contract reports the problem with its rows."""
    hashes = {}
    for name, head in raw.items():
        table = head.table
        lines = [raw[t.name] for t in CONTRACT.values() if t.parent == name and t.name in raw]
        if table.is_lines or any(_unhashable(r) for r in (head, *lines)):
            continue
        frame = _header_hashes(table, head.frame)
        for line in lines:
            frame = _with_lines_hash(frame, _lines_hashes(line.table, line.frame))
        hashes[name] = frame
    return hashes


def _header_hashes(table: Table, frame: pl.DataFrame) -> pl.DataFrame:
    """record_id and the hash of each header row's raw text."""
    return frame.select(pl.col(table.record_id).alias("record_id"), _row_hash(frame))


def _lines_hashes(table: Table, frame: pl.DataFrame) -> pl.DataFrame:
    """Per record (by a hash of its id): the wrapping sum of its lines' raw-text hashes.

    A wrapping sum: the line set in any order gives one value (each line's hash includes its line_no), and the sums
    of parts of a file add up to the sum of the file. Grouped by a hash of the id, which is cheaper than the text;
    two ids that share one only share their sum, so a change to either still changes both (more work, never a
    missed change)."""
    return (
        frame.select(pl.col(table.record_id).hash(_SEED).alias("id_hash"), _row_hash(frame))
        .group_by("id_hash")
        .agg(pl.col("raw_hash").sum().alias("lines_hash"))
    )


def _with_lines_hash(frame: pl.DataFrame, per_record: pl.DataFrame) -> pl.DataFrame:
    """Header hashes combined with their records' lines sums (a record without lines has none)."""
    return (
        frame.with_columns(pl.col("record_id").hash(_SEED).alias("id_hash"))
        .join(per_record, on="id_hash", how="left")
        .select("record_id", pl.struct("raw_hash", "lines_hash").hash(_SEED).alias("raw_hash"))
    )


def _unchanged_ids(store: Store, realm_id: str, hashes: dict[str, pl.DataFrame]) -> dict[str, pl.Series]:
    """Per header table: the ids of live records whose raw text is the text last applied."""
    cur = store.cursor()
    out = {}
    for name, frame in hashes.items():
        cur.register("_raw_hashes", frame.to_arrow())
        out[name] = store.frame(
            """SELECT h.record_id FROM _raw_hashes h JOIN records r
               ON r.realm_id = ? AND r.entity = ? AND r.record_id = h.record_id
              AND r.removed_at IS NULL AND r.raw_hash = h.raw_hash""",
            [realm_id, CONTRACT[name].entity],
        )["record_id"]
        cur.unregister("_raw_hashes")
    return out


def _only_changed(raw: dict[str, _RawFile], unchanged: dict[str, pl.Series]) -> dict[str, _RawFile]:
    """The files with the rows of unchanged records left out; each kept row remembers its place in the file."""
    kept = {}
    for name, r in raw.items():
        head = r.table.parent or name
        if head not in unchanged:
            kept[name] = r
            continue
        keep = ~r.frame[r.table.record_id].is_in(unchanged[head].implode())
        # Positions kept beside the frame, not in it: a file may have a column named like any index.
        positions = pl.Series("_position", range(r.frame.height), dtype=pl.UInt32).filter(keep)
        kept[name] = _RawFile(r.table, r.path, r.frame.filter(keep), r.first_row, positions)
    return kept


# -- staging and swap ------------------------------------------------------------------------------------
def _cast(col: Column) -> str:
    if col.sql_type == "VARCHAR":
        return col.name
    return f"CAST({col.name} AS {col.sql_type}) AS {col.name}"


def _with_extra(table: Table, frame: pl.DataFrame) -> pl.DataFrame:
    extra = [c for c in frame.columns if c not in table.column_names]
    # Unknown columns are kept (as JSON) and ignored: they do not take part in the content hash.
    extra_json = pl.struct(extra).struct.json_encode() if extra else pl.lit(None, dtype=pl.String)
    return frame.select(*table.column_names, extra_json.alias("extra"))


def _row_text(table: Table, alias: str = "") -> str:
    """One row's typed values as one text (NULL told apart from empty), the input of its content hash."""
    prefix = f"{alias}." if alias else ""
    parts = ", ".join(f"coalesce(CAST({prefix}{c.name} AS VARCHAR), chr(0))" for c in table.columns)
    return f"concat_ws(chr(31), {parts})"


# A record's content hash is the first 8 bytes of an md5 as a number (records.content_hash is UBIGINT, migration
# 17): compared only with the same record's last one, like the raw-text hash, so 64 bits are enough.
_CONTENT_HASH = "md5_number_upper"


def _stage(
    store: Store, frames: dict[str, pl.DataFrame], raw: dict[str, _RawFile], hashes: dict[str, pl.DataFrame]
) -> None:
    """Typed copies of the rows to apply, one content hash per record, its raw-text hash, and every record id
    in the files (removals are told by ids, not by the rows staged), in this thread's temp tables."""
    cur = store.cursor()
    for name, frame in frames.items():
        table = CONTRACT[name]
        cur.register("_incoming", _with_extra(table, frame).to_arrow())
        cols = ", ".join(_cast(c) for c in table.columns)
        cur.execute(f"CREATE OR REPLACE TEMP TABLE stage_{name} AS SELECT {cols}, extra FROM _incoming")
        cur.unregister("_incoming")
    for name, table in CONTRACT.items():
        if table.is_lines or name not in frames:
            continue
        ids = raw[name].frame.select(pl.col(table.record_id).alias("record_id"))
        _stage_record_hashes(cur, table, hashes.get(name, ids.with_columns(raw_hash=pl.lit(None, pl.UInt64))))


def _stage_record_hashes(cur: Any, table: Table, raw_hash: pl.DataFrame) -> None:
    """Every record id the file holds with its raw-text hash, and each staged record's content hash."""
    name = table.name
    cur.register("_incoming", raw_hash.to_arrow())
    cur.execute(f"CREATE OR REPLACE TEMP TABLE stage_raw_{name} AS SELECT * FROM _incoming")
    cur.unregister("_incoming")
    lines = [t for t in CONTRACT.values() if t.parent == name]
    header = _row_text(table, "h")
    if lines:
        line = lines[0]
        cur.execute(
            f"""CREATE OR REPLACE TEMP TABLE stage_hash_{name} AS
            WITH lh AS (
              SELECT {line.record_id} AS rid,
                     md5(string_agg(md5({_row_text(line)}), ',' ORDER BY line_no)) AS lines_hash
              FROM stage_{line.name} GROUP BY 1)
            SELECT h.{table.record_id} AS record_id,
                   {_CONTENT_HASH}(md5({header}) || '|' || coalesce(lh.lines_hash, '')) AS content_hash, x.raw_hash
            FROM stage_{name} h LEFT JOIN lh ON lh.rid = h.{table.record_id}
            LEFT JOIN stage_raw_{name} x ON x.record_id = h.{table.record_id}"""
        )
    else:
        cur.execute(
            f"""CREATE OR REPLACE TEMP TABLE stage_hash_{name} AS
            SELECT h.{table.record_id} AS record_id, {_CONTENT_HASH}({header}) AS content_hash, x.raw_hash
            FROM stage_{name} h LEFT JOIN stage_raw_{name} x ON x.record_id = h.{table.record_id}"""
        )


# -- a first ingest of Parquet files, in batches -------------------------------------------------------------
# An entity that has no record in the store yet (a company's first snapshot, or a table it starts to use) and comes
# in Parquet files is read a batch of rows at a time: each batch is measured, validated and staged before the next is
# read, so the memory it takes does not grow with the file. What only the whole file can tell (a key repeated in two
# batches, a line whose parent is not in the snapshot) is asked of the staged rows in SQL, each row named by its place
# in the file. Nothing leaves the temp tables before the apply, so a refusal changes nothing stored.
BATCH_ROWS = 65_536
# A first ingest stages every row of the company: DuckDB keeps what an ingest works on within this and spills the
# rest beside the store, so the engine's memory does not grow with the company (peak 1.39 GB at 1M records, 1.65 GB at
# 2M in bench.ingest).
INGEST_MEMORY = "1GB"
_P = ParamSpec("_P")


def _memory_bounded(
    ingest: Callable[Concatenate[Store, _P], IngestResult],
) -> Callable[Concatenate[Store, _P], IngestResult]:
    """`ingest` run with DuckDB's memory held to INGEST_MEMORY (read at each call)."""

    @functools.wraps(ingest)
    def bounded(store: Store, *args: _P.args, **kwargs: _P.kwargs) -> IngestResult:
        with store.memory_bounded(INGEST_MEMORY):
            return ingest(store, *args, **kwargs)

    return bounded


_ROW = "_row"  # the staged rows' place in their file (as a person counts: the first data row is 1)


@dataclass
class _Streamed:
    """One file read in batches: its rows, its problems, and its records' raw-text hashes (small: no text)."""

    table: Table
    path: Path
    rows: int = 0
    bad: int = 0
    problems: list[Problem] = field(default_factory=list)
    hashes: list[pl.DataFrame] = field(default_factory=list)  # header: record_id, raw_hash; lines: per-record sums

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def height(self) -> int:
        return self.rows


def _family(name: str) -> list[Table]:
    """A header table and its lines tables."""
    return [t for t in CONTRACT.values() if name in (t.name, t.parent)]


def _streamable(store: Store, realm_id: str, folder: Path, tables: set[str]) -> set[str]:
    """Of these tables: those of entities whose files are all Parquet and that have no record in the store yet."""
    found: set[str] = set()
    for table in CONTRACT.values():
        family = _family(table.name)
        if table.is_lines or not {t.name for t in family} <= tables:
            continue
        try:
            if any(_find_file(folder, t).suffix != ".parquet" for t in family):
                continue
        except SnapshotError:
            continue  # read_snapshot reports it, with the others
        if not store.rows("SELECT 1 FROM records WHERE realm_id = ? AND entity = ? LIMIT 1", [realm_id, table.entity]):
            found |= {t.name for t in family}
    return found


def _open_parquet(path: Path, limits: SnapshotLimits) -> tuple[pa.OSFile, pq.ParquetFile, list[str]]:
    """The open file, its footer (checked) and its text columns; refused past the size limit, and never read past
    it: the size is checked when the file is opened, and Parquet reads only what its footer places within it."""
    size = path.stat().st_size
    if size > limits.max_file_bytes:
        raise _too_big(path, size, limits)
    if size < 4096 and not path.read_bytes().strip():
        raise SnapshotError([Problem(path.name, None, None, "file is empty; expected at least the header row")])
    source = pa.OSFile(str(path))
    try:
        if source.size() > limits.max_file_bytes:  # it grew since
            raise _too_big(path, source.size(), limits)
        meta = pq.ParquetFile(source)
        return source, meta, _check_parquet_meta(path, meta, limits)
    except SnapshotError:
        source.close()
        raise
    except Exception as err:  # a truncated or foreign file raises many kinds of errors
        source.close()
        raise _not_parquet(path, err) from None


def _parquet_batches(path: Path, source: pa.OSFile, strings: list[str], batch_rows: int) -> Iterator[pa.Table]:
    """The file's rows a batch at a time (a file with its header only: one batch of no rows)."""
    try:
        # Strings stay dictionary-encoded until they are measured: a repeated value is held once, however often used.
        reader = pq.ParquetFile(source, read_dictionary=strings)
        batches = reader.iter_batches(batch_size=batch_rows)
        empty = reader.schema_arrow.empty_table()
    except Exception as err:  # a truncated or foreign file raises many kinds of errors
        raise _not_parquet(path, err) from None
    sent = False
    while True:
        try:
            batch = next(batches, None)
        except Exception as err:
            raise _not_parquet(path, err) from None
        if batch is None:
            break
        sent = True
        yield pa.Table.from_batches([batch])
    if not sent:
        yield empty


def _stream_file(cur: Any, table: Table, path: Path, limits: SnapshotLimits, batch_rows: int) -> _Streamed:
    """Read, check and stage one Parquet file a batch at a time; stops staging at its first problem."""
    out = _Streamed(table, path)
    source, meta, strings = _open_parquet(path, limits)
    try:
        header = _RawFile(table, path, pl.DataFrame(schema={n: pl.String for n in meta.schema_arrow.names}), 1)
        missing = _complete_columns(header)[1]
        if missing:
            raise SnapshotError(missing)
        total = 0
        for arrow in _parquet_batches(path, source, strings, batch_rows):
            found, size = _parquet_text_measure(path, arrow, limits, out.rows)
            total += size
            if total > limits.max_file_bytes:
                found.append(_expands(path, total, limits))
            if found:
                raise SnapshotError(found)
            raw = _RawFile(table, path, _parquet_text(path, arrow, table), first_row=out.rows + 1)
            del arrow
            found = _limit_problems(raw, limits)
            if found:
                raise SnapshotError(found)
            checked, found, bad = _validate_file(raw)
            out.problems.extend(found)
            out.bad += bad
            if not out.problems:
                _stage_batch(cur, table, checked, raw.first_row, first=not out.rows)
                out.hashes.append((_lines_hashes if table.is_lines else _header_hashes)(table, raw.frame))
            out.rows += raw.frame.height
            if len(out.problems) >= _MAX_PROBLEMS_KEPT:
                break
    finally:
        source.close()
    return out


def _stage_batch(cur: Any, table: Table, frame: pl.DataFrame, first_row: int, first: bool) -> None:
    """One validated batch into the file's temp table, each row with its place in the file."""
    staged = _with_extra(table, frame).with_columns(pl.int_range(pl.len(), dtype=pl.Int64).add(first_row).alias(_ROW))
    into = "CREATE OR REPLACE TEMP TABLE {} AS " if first else "INSERT INTO {} "
    cols = ", ".join(_cast(c) for c in table.columns)
    cur.register("_incoming", staged.to_arrow())
    try:
        cur.execute(into.format(f"stage_{table.name}") + f"SELECT {cols}, extra, {_ROW} FROM _incoming")
    finally:
        cur.unregister("_incoming")


def _duplicate_keys(cur: Any, streamed: _Streamed) -> list[Problem]:
    """Rows whose key another row of the same file has (in any batch), each named by its row."""
    table = streamed.table
    keys = ", ".join(table.key)
    rows = cur.execute(
        f"""WITH dup AS (
              SELECT s.{_ROW} FROM stage_{table.name} s
              JOIN (SELECT {keys} FROM stage_{table.name} GROUP BY {keys} HAVING count(*) > 1) d USING ({keys}))
            SELECT {_ROW}, (SELECT count(*) FROM dup) FROM dup ORDER BY {_ROW} LIMIT ?""",
        [_MAX_PROBLEMS_KEPT],
    ).fetchall()
    if not rows:
        return []
    shown = " + ".join(table.key)
    column = table.key[-1] if len(table.key) == 1 else shown
    streamed.bad += int(rows[0][1])
    return [Problem(streamed.name, int(r[0]), column, f"duplicate {shown}: each must appear once") for r in rows]


def _orphans(cur: Any, streamed: _Streamed) -> list[Problem]:
    """Lines whose record is not in the snapshot's header file, each named by its row."""
    table = streamed.table
    rid = table.record_id
    rows = cur.execute(
        f"""SELECT l.{_ROW}, l.{rid} FROM stage_{table.name} l
            WHERE NOT EXISTS (SELECT 1 FROM stage_{table.parent} h WHERE h.{rid} = l.{rid})
            ORDER BY l.{_ROW} LIMIT ?""",
        [_MAX_PROBLEMS_KEPT],
    ).fetchall()
    return [Problem(streamed.name, int(r[0]), rid, f"{_shown(r[1])} has no row in {table.parent}") for r in rows]


def _stream_tables(
    store: Store,
    folder: Path,
    names: set[str],
    limits: SnapshotLimits,
    done: dict[str, _Streamed],
    batch_rows: int = BATCH_ROWS,
) -> None:
    """Read, check and stage these tables' Parquet files in batches into `done`; all problems of all of them are
    raised together (`done` then says what each file held, for the history)."""
    cur = store.cursor()
    problems: list[Problem] = []
    for table in CONTRACT.values():
        if table.name not in names:
            continue
        path = _find_file(folder, table)
        try:
            done[table.name] = _stream_file(cur, table, path, limits, batch_rows)
        except SnapshotError as err:
            problems.extend(err.problems)
            done[table.name] = _Streamed(table, path, bad=1, problems=list(err.problems))
            continue
        problems.extend(done[table.name].problems)
    if not problems:
        for streamed in done.values():
            found = _duplicate_keys(cur, streamed)
            streamed.problems.extend(found)
            problems.extend(found)
    if not problems:
        for streamed in done.values():
            if streamed.table.is_lines:
                found = _orphans(cur, streamed)
                streamed.bad += len(found)
                streamed.problems.extend(found)
                problems.extend(found)
    if problems:
        raise SnapshotError(problems, {n: max(s.bad, 1) for n, s in done.items() if s.problems})
    for name, streamed in done.items():
        table = streamed.table
        if table.is_lines:
            continue
        hashes = pl.concat(streamed.hashes) if streamed.hashes else _header_hashes(table, _empty_text(table))
        for line in (t for t in _family(name) if t.is_lines):
            parts = done[line.name].hashes or [_lines_hashes(line, _empty_text(line))]
            # Sums of parts of a file add up (wrapping) to the file's: the same hash a whole read gives.
            hashes = _with_lines_hash(hashes, pl.concat(parts).group_by("id_hash").agg(pl.col("lines_hash").sum()))
            done[line.name].hashes.clear()
        _stage_record_hashes(cur, table, hashes)
        streamed.hashes.clear()


def _empty_text(table: Table) -> pl.DataFrame:
    return pl.DataFrame(schema={c: pl.String for c in table.column_names})


def _diff(cur, table: Table, realm_id: str) -> None:
    cur.execute(
        f"""CREATE OR REPLACE TEMP TABLE diff_{table.name} AS
        SELECT s.record_id, s.content_hash, s.raw_hash, r.current_version,
               CASE WHEN r.record_id IS NULL THEN 'new'
                    WHEN r.content_hash <> s.content_hash THEN 'changed'
                    WHEN r.removed_at IS NOT NULL THEN 'restored'
                    ELSE 'same' END AS change,
               coalesce(r.current_version, 0) + 1 AS new_version,
               r.raw_hash IS DISTINCT FROM s.raw_hash AS new_text
        FROM stage_hash_{table.name} s
        LEFT JOIN records r ON r.realm_id = ? AND r.entity = ? AND r.record_id = s.record_id""",
        [realm_id, table.entity],
    )


def _apply_table(cur, table: Table, realm_id: str, run_id: int, now: datetime) -> dict[str, int]:
    """New versions of the staged records that are new or changed, and the return of removed ones."""
    _diff(cur, table, realm_id)
    # Count first and run only the statements that have rows: a delta touches few tables, and an empty UPDATE ...
    # FROM still joins the whole records table.
    counts = {
        change: (int(n), int(new_text))
        for change, n, new_text in cur.execute(
            f"SELECT change, count(*), count(*) FILTER (WHERE new_text) FROM diff_{table.name} GROUP BY 1"
        ).fetchall()
    }
    new, changed, restored = (counts.get(c, (0, 0))[0] for c in ("new", "changed", "restored"))
    if new or changed:
        for t in [table, *(x for x in CONTRACT.values() if x.parent == table.name)]:
            tcols = ", ".join(f"s.{c}" for c in t.column_names)
            cur.execute(
                f"""INSERT INTO {awra_table(t.name)} ({", ".join(t.column_names)}, realm_id, version, extra,
                                                     ingest_run_id)
                SELECT {tcols}, ?, d.new_version, s.extra, ?
                FROM stage_{t.name} s JOIN diff_{table.name} d ON d.record_id = s.{t.record_id}
                WHERE d.change IN ('new', 'changed')""",
                [realm_id, run_id],
            )
        cur.execute(
            f"""INSERT INTO record_versions
            SELECT ?, ?, record_id, new_version, content_hash, ?, ? FROM diff_{table.name}
            WHERE change IN ('new', 'changed')""",
            [realm_id, table.entity, run_id, now],
        )
    if new:
        cur.execute(
            f"""INSERT INTO records (realm_id, entity, record_id, current_version, content_hash, first_seen_at,
                                     changed_at, removed_at, state, raw_hash)
            SELECT ?, ?, record_id, 1, content_hash, ?, ?, NULL, 'not_ready', raw_hash FROM diff_{table.name}
            WHERE change = 'new'""",
            [realm_id, table.entity, now, now],
        )
    if changed:
        cur.execute(
            f"""UPDATE records SET current_version = d.new_version, content_hash = d.content_hash,
                                   changed_at = ?, removed_at = NULL, raw_hash = d.raw_hash
            FROM diff_{table.name} d
            WHERE records.realm_id = ? AND records.entity = ? AND records.record_id = d.record_id
              AND d.change = 'changed'""",
            [now, realm_id, table.entity],
        )
    if restored:
        cur.execute(
            f"""UPDATE records SET removed_at = NULL, changed_at = ?, raw_hash = d.raw_hash
            FROM diff_{table.name} d
            WHERE records.realm_id = ? AND records.entity = ? AND records.record_id = d.record_id
              AND d.change = 'restored'""",
            [now, realm_id, table.entity],
        )
    if counts.get("same", (0, 0))[1]:
        # Text that changed without changing a value (e.g. 12.5 written as 12.50): remember the new text.
        cur.execute(
            f"""UPDATE records SET raw_hash = d.raw_hash
            FROM diff_{table.name} d
            WHERE records.realm_id = ? AND records.entity = ? AND records.record_id = d.record_id
              AND d.change = 'same' AND d.new_text""",
            [realm_id, table.entity],
        )
    return {"new": new, "changed": changed, "restored": restored}


def _gone(table: Table, delta: bool) -> str:
    """The ids of the records a snapshot removes: a full one by leaving them out, a delta by listing them."""
    if delta:
        return f"record_id IN (SELECT record_id FROM removed_{table.name})"
    return f"record_id NOT IN (SELECT record_id FROM stage_raw_{table.name})"


def _remove(cur, table: Table, realm_id: str, now: datetime, delta: bool) -> int:
    removed = cur.execute(
        f"""UPDATE records SET removed_at = ?, changed_at = ?
        WHERE realm_id = ? AND entity = ? AND removed_at IS NULL AND {_gone(table, delta)}""",
        [now, now, realm_id, table.entity],
    ).fetchall()[0][0]
    return int(removed)


def _stage_removed(store: Store, manifest: Manifest) -> None:
    """A delta's removals as one temp table per header table it names."""
    cur = store.cursor()
    for name, ids in manifest.removed.items():
        cur.register("_incoming", pl.DataFrame({"record_id": list(ids)}, schema={"record_id": pl.String}).to_arrow())
        cur.execute(f"CREATE OR REPLACE TEMP TABLE removed_{name} AS SELECT record_id FROM _incoming")
        cur.unregister("_incoming")


def _record_run(
    cur,
    run_id: int,
    realm_id: str,
    source: str,
    started: datetime,
    finished: datetime,
    status: str,
    files: Mapping[str, tuple[str | None, int, int, int, str | None]],
    totals: dict[str, int],
    error: str | None,
    prints: dict[str, tuple[str, str]] | None = None,
    actor: str | None = None,
    manifest: Manifest = FULL,
) -> None:
    rows = sum(f[1] for f in files.values())
    accepted = sum(f[2] for f in files.values())
    rejected = sum(f[3] for f in files.values())
    cur.execute(
        "INSERT INTO ingest_runs (run_id, realm_id, source, started_at, finished_at, status, rows, accepted, "
        "rejected, new_records, changed_records, removed_records, error, actor, snapshot_id, kind, base) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            run_id,
            realm_id,
            source,
            started,
            finished,
            status,
            rows,
            accepted,
            rejected,
            totals.get("new", 0),
            totals.get("changed", 0),
            totals.get("removed", 0),
            error,
            actor,
            manifest.snapshot_id,
            manifest.kind,
            manifest.base,
        ],
    )
    cur.executemany(
        "INSERT INTO ingest_files VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            [run_id, realm_id, name, f[0], f[1], f[2], f[3], f[4], (prints or {}).get(name, (None, None))[1]]
            for name, f in files.items()
        ],
    )


def _refuse(
    store: Store,
    folder: Path,
    realm_id: str,
    started: datetime,
    finished: datetime,
    err: SnapshotError,
    raw: Mapping[str, _RawFile | _Streamed] | None,
    actor: str | None = None,
    manifest: Manifest = FULL,
) -> None:
    """Only the ingest history notes a refusal; no record or version is touched."""
    by_file: dict[str, list[Problem]] = {}
    for p in err.problems:
        by_file.setdefault(p.file, []).append(p)
    files: dict[str, tuple[str | None, int, int, int, str | None]] = {}
    for name in CONTRACT:
        r = (raw or {}).get(name)
        fname = r.name if r else None
        rows = r.height if r else 0
        probs = next((v for k, v in by_file.items() if k.rsplit(".", 1)[0] == name), [])
        bad = err.rejected.get(name, len(probs))
        msg = "; ".join(str(p) for p in probs[:5]) or None
        files[name] = (fname, rows, max(rows - bad, 0) if probs else rows, bad if probs else 0, msg)
    with store.transaction() as cur:
        run_id = cur.execute("SELECT nextval('ingest_run_seq')").fetchall()[0][0]
        _record_run(
            cur, run_id, realm_id, str(folder), started, finished, "refused", files, {}, str(err), actor=actor,
            manifest=manifest,
        )  # fmt: skip


def _fingerprints(folder: Path) -> dict[str, tuple[str, str]]:
    """table -> (file name, SHA-256 of its bytes) for every table whose one file is there."""
    prints = {}
    for table in CONTRACT.values():
        try:
            path = _find_file(folder, table)
        except SnapshotError:
            continue  # read_snapshot reports it, with the others
        digest = hashlib.sha256()
        with path.open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
        prints[table.name] = (path.name, digest.hexdigest())
    return prints


def _unchanged_tables(store: Store, realm_id: str, prints: dict[str, tuple[str, str]]) -> dict[str, int]:
    """Tables of entities whose every file is byte-for-byte the one last applied, with their row counts."""
    last = store.rows(
        """SELECT f.table_name, f.file, f.sha256, f.rows FROM ingest_files f
           WHERE f.run_id = (SELECT max(run_id) FROM ingest_runs WHERE realm_id = ? AND status <> 'refused')""",
        [realm_id],
    )
    same = {t: rows for t, file, sha, rows in last if sha is not None and prints.get(t) == (file, sha)}
    by_entity: dict[str, list[str]] = {}
    for table in CONTRACT.values():
        by_entity.setdefault(table.entity, []).append(table.name)
    return {t: same[t] for names in by_entity.values() if all(n in same for n in names) for t in names}


def _removals(cur, raw: dict[str, _RawFile], realm_id: str) -> list[Removal]:
    """Per table read: the live records the staged snapshot leaves out; a lines file that arrives empty."""
    found = []
    for name, r in raw.items():
        table = r.table
        if table.is_lines:
            if r.frame.height:
                continue
            live = cur.execute(f"SELECT count(*) FROM {current_view(name)} WHERE realm_id = ?", [realm_id]).fetchall()
            found.append(Removal(name, r.name, int(live[0][0]), int(live[0][0]), True))
            continue
        removed, live = cur.execute(
            f"""SELECT count(*) FILTER (WHERE s.record_id IS NULL), count(*) FROM records r
                LEFT JOIN stage_raw_{name} s ON s.record_id = r.record_id
                WHERE r.realm_id = ? AND r.entity = ? AND r.removed_at IS NULL""",
            [realm_id, table.entity],
        ).fetchall()[0]
        found.append(Removal(name, r.name, int(removed), int(live), r.frame.height == 0))
    return found


def _delta_removals(cur, manifest: Manifest, realm_id: str) -> list[Removal]:
    """Per table a delta lists removals for: how many of them are live records, of how many live ones."""
    found = []
    for name in manifest.removed:
        table = CONTRACT[name]
        removed, live = cur.execute(
            f"""SELECT count(*) FILTER (WHERE x.record_id IS NOT NULL), count(*) FROM records r
                LEFT JOIN removed_{name} x ON x.record_id = r.record_id
                WHERE r.realm_id = ? AND r.entity = ? AND r.removed_at IS NULL""",
            [realm_id, table.entity],
        ).fetchall()[0]
        found.append(Removal(name, f"{MANIFEST_FILE} removed.{name}", int(removed), int(live), False))
    return found


def _mass(removal: Removal, share: float) -> bool:
    if not removal.live or not removal.removed:
        return False
    return removal.empty or (removal.removed > share * removal.live and removal.removed >= REMOVAL_FLOOR)


@_memory_bounded
def ingest_snapshot(
    store: Store,
    folder: Path,
    *,
    realm_id: str,
    now: datetime,
    progress: Progress | None = None,
    allow_removal: str | None = None,
    actor: str | None = None,
    actor_role: str | None = None,
    max_removal_share: float = REMOVAL_SHARE,
    limits: SnapshotLimits = LIMITS,
) -> IngestResult:
    """Validate a snapshot folder and apply it in one transaction, or refuse it whole with SnapshotError.

    A full snapshot (no manifest, or one saying "full") holds every live record; a record it leaves out was removed.
    A delta (contract v1.1) holds only the records that changed, whole, and lists removals; it applies only on top of
    the snapshot it names as its base, and applying the same delta again does nothing.

    `actor` is who asked for it (a person, or the scheduler as "system"); the ingest history keeps it. A snapshot
    that would remove more than max_removal_share of a table's live records (and at least REMOVAL_FLOOR), or arrives
    with an empty file for a table that holds live records, is refused with MassRemovalError unless allow_removal
    carries a reason; then it is applied and the reason goes to the audit log under actor, in the same transaction.
    """
    clock = time.perf_counter()
    started = now
    say = progress or (lambda _f, _l: None)
    raw: dict[str, _RawFile] | None = None
    streamed: dict[str, _Streamed] = {}
    manifest = FULL
    prints = _fingerprints(folder) if folder.is_dir() else {}
    reason = (allow_removal or "").strip()
    try:
        if not folder.is_dir():
            raise SnapshotError([Problem(str(folder), None, None, "is not a folder")])
        manifest = read_manifest(folder, limits)
        if manifest.is_delta:
            applied, last = _last_snapshot(store, realm_id)
            if applied and last == manifest.snapshot_id:
                return _already_applied(store, folder, realm_id, started, clock, manifest, prints, actor)
            _check_base(manifest, applied, last)
            present = _present_tables(folder)
            _check_delta_files(present)
            skipped: dict[str, int] = {}
        else:
            present = set(CONTRACT)
            # An entity whose files did not change since the last applied snapshot cannot have changed records.
            skipped = _unchanged_tables(store, realm_id, prints)
        # An entity new to the store, in Parquet, is read in batches (bounded memory); the rest is read whole.
        stream = set() if manifest.is_delta else _streamable(store, realm_id, folder, present - set(skipped))
        say(0.05, "reading files")
        raw = read_snapshot(folder, present - set(skipped) - stream, limits)
        _check_removed_not_sent(manifest, raw)
        say(0.3, "finding changed records")
        hashes = _raw_hashes(raw)
        # A delta sends only records that changed: looking each up among the store's live records would cost a pass
        # over them (a cost that grows with the history, not with the change) to skip next to nothing. A record sent
        # unchanged is still told apart later, as "same", and gets no new version.
        todo = raw if manifest.is_delta else _only_changed(raw, _unchanged_ids(store, realm_id, hashes))
        say(0.35, "checking the contract")
        frames = validate_snapshot(todo)
        say(0.6, "staging")
        _stage(store, frames, raw, hashes)
        _stream_tables(store, folder, stream, limits, streamed, BATCH_ROWS)
        _stage_removed(store, manifest)
        cur = store.cursor()
        removals = _delta_removals(cur, manifest, realm_id) if manifest.is_delta else _removals(cur, raw, realm_id)
        massive = [r for r in removals if _mass(r, max_removal_share)]
        if massive and not reason:
            raise MassRemovalError(massive, max_removal_share, reason_given=allow_removal is not None)
    except SnapshotError as err:
        read: dict[str, _RawFile | _Streamed] | None = None
        if raw is not None or streamed:
            read = {**streamed, **(raw or {})}
        _refuse(store, folder, realm_id, started, elapsed_from(started, clock), err, read, actor, manifest)
        raise
    crash_point("ingest.staged")
    say(0.8, "applying")
    by_entity: dict[str, dict[str, int]] = {}
    with store.transaction() as cur:
        run_id = cur.execute("SELECT nextval('ingest_run_seq')").fetchall()[0][0]
        for table in CONTRACT.values():
            if table.is_lines:
                continue
            sent, listed = table.name in raw or table.name in streamed, table.name in manifest.removed
            if not (sent or listed):
                continue
            counts = {"new": 0, "changed": 0, "restored": 0}
            if sent:
                counts = _apply_table(cur, table, realm_id, run_id, started)
            removes = listed if manifest.is_delta else sent
            by_entity[table.entity] = counts | {
                "removed": _remove(cur, table, realm_id, started, manifest.is_delta) if removes else 0
            }
            crash_point("ingest.swap")
        changes.log_ingested(cur, realm_id, started)  # the read model's change log: the records this run changed
        totals = {k: sum(v[k] for v in by_entity.values()) for k in ("new", "changed", "removed", "restored")}
        status = "applied" if any(totals.values()) else "unchanged"
        rows = {n: 0 for n in CONTRACT} | {n: r.height for n, r in (raw | streamed).items()} | skipped
        files = {n: (prints.get(n, (None, ""))[0], rows[n], rows[n], 0, None) for n in CONTRACT}
        _record_run(
            cur,
            run_id,
            realm_id,
            str(folder),
            started,
            elapsed_from(started, clock),
            status,
            files,
            totals,
            None,
            prints,
            actor=actor,
            manifest=manifest,
        )
        if massive:
            _audit_removal(
                cur, realm_id, int(run_id), folder, massive, reason, actor or "system", actor_role or "system", started
            )
    say(1.0, "done")
    return IngestResult(
        run_id=int(run_id),
        status=status,
        rows=rows,
        new=totals["new"],
        changed=totals["changed"],
        removed=totals["removed"],
        restored=totals["restored"],
        seconds=time.perf_counter() - clock,
        changes_by_entity=by_entity,
        kind=manifest.kind,
        snapshot_id=manifest.snapshot_id,
    )


def _already_applied(
    store: Store,
    folder: Path,
    realm_id: str,
    started: datetime,
    clock: float,
    manifest: Manifest,
    prints: dict[str, tuple[str, str]],
    actor: str | None,
) -> IngestResult:
    """The delta last applied, sent again (a watched folder seen twice): nothing to do, and the history says so."""
    files: dict[str, tuple[str | None, int, int, int, str | None]] = {
        n: (prints.get(n, (None, ""))[0], 0, 0, 0, None) for n in CONTRACT
    }
    with store.transaction() as cur:
        run_id = cur.execute("SELECT nextval('ingest_run_seq')").fetchall()[0][0]
        _record_run(
            cur, int(run_id), realm_id, str(folder), started, elapsed_from(started, clock), "unchanged", files, {},
            None, prints, actor=actor, manifest=manifest,
        )  # fmt: skip
    return IngestResult(
        run_id=int(run_id),
        status="unchanged",
        rows={n: 0 for n in CONTRACT},
        new=0,
        changed=0,
        removed=0,
        restored=0,
        seconds=time.perf_counter() - clock,
        kind=manifest.kind,
        snapshot_id=manifest.snapshot_id,
        note=f"delta {manifest.snapshot_id!r} is the snapshot last applied; nothing to do",
    )


def _audit_removal(
    cur,
    realm_id: str,
    run_id: int,
    folder: Path,
    removals: list[Removal],
    reason: str,
    actor: str,
    role: str,
    now: datetime,
) -> None:
    """A mass removal applied on a person's word: who, why, and what it removed, in the append-only audit log."""
    before = {r.table: {"live": r.live} for r in removals}
    after = {"run_id": run_id, **{r.table: {"removed": r.removed} for r in removals}}
    audit.append(cur, [audit.Entry(realm_id, now, actor, role, "allow_removal", f"snapshot:{folder}", reason, before,
                                   after)])  # fmt: skip
