"""The PostgreSQL store's connection and cursor (fleet mode), speaking the subset of DuckDB's cursor the engine uses.

The engine holds a cursor from `Store.cursor()` or `Store.transaction()` and calls `execute`, `executemany`,
`fetchall`, `fetchone`, `description`, `sql(...).pl()`, `register` and `unregister` on it. `PgCursor` answers the
same calls on one psycopg connection: the text is translated once (pipelines.dialect), parameters are bound by
psycopg on the client (so `? IS NULL` and `SELECT ? AS x` mean what they mean in DuckDB), results become Polars
frames from the rows psycopg decoded (NUMERIC stays Decimal; no Python loop per row here), and a registered frame
becomes a temporary table filled with one COPY.
"""

from __future__ import annotations

import hashlib
import io
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import polars as pl
import psycopg
from psycopg import sql as pgsql
from psycopg.adapt import Loader

from pipelines.dialect import DIALECT_ATTRIBUTE, POSTGRES, translate, translate_script

__all__ = ["AdvisoryLocks", "PgCursor", "connect", "frame_of", "lock_key"]

# PostgreSQL type oids -> the Polars type DuckDB would give the same column.
_SIMPLE: dict[int, Any] = {
    16: pl.Boolean,
    17: pl.Binary,
    18: pl.String,
    19: pl.String,
    20: pl.Int64,
    21: pl.Int16,
    23: pl.Int32,
    25: pl.String,
    114: pl.String,
    700: pl.Float32,
    701: pl.Float64,
    705: pl.String,
    1042: pl.String,
    1043: pl.String,
    1082: pl.Date,
    1114: pl.Datetime("us"),
    1184: pl.Datetime("us", "Etc/UTC"),  # as DuckDB names UTC to Polars
    1186: pl.Duration("us"),
    2950: pl.String,
    3802: pl.String,
    1009: pl.List(pl.String),
    1015: pl.List(pl.String),
    1016: pl.List(pl.Int64),
    1007: pl.List(pl.Int32),
}
_NUMERIC = 1700


class _Text(Loader):
    """JSON as its text, as DuckDB gives a VARCHAR holding JSON."""

    def load(self, data: Any) -> str:
        return bytes(data).decode()


def connect(url: str) -> psycopg.Connection:
    """A connection in autocommit (transactions are explicit, as on DuckDB), on UTC, binding on the client."""
    try:
        con = psycopg.connect(url, autocommit=True, cursor_factory=psycopg.ClientCursor, connect_timeout=10)
    except psycopg.OperationalError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConnectionError(f"cannot reach the PostgreSQL store: {first}") from None
    con.execute("SET TimeZone = 'UTC'")
    for name in ("json", "jsonb"):
        con.adapters.register_loader(name, _Text)
    return con


def _dtype(column: Any, domains: Mapping[int, Any]) -> Any:
    oid = column.type_code
    if oid in domains:
        return domains[oid]
    if oid == _NUMERIC:
        if column.precision is not None and column.scale is not None:
            return pl.Decimal(column.precision, column.scale)
        return None  # unconstrained (a sum): the values' own scale
    return _SIMPLE.get(oid)


def frame_of(description: Sequence[Any] | None, rows: list[tuple], domains: Mapping[int, Any]) -> pl.DataFrame:
    """A Polars frame of psycopg rows, typed from the result's description (so an empty result keeps its types)."""
    if not description:
        return pl.DataFrame()
    names = [c.name for c in description]
    dtypes = [_dtype(c, domains) for c in description]
    known = {n: t for n, t in zip(names, dtypes, strict=True) if t is not None}
    # An unconstrained NUMERIC (a sum, a union's column) with no value at all is still a number, not a Null column.
    numeric = {c.name: pl.Decimal(38, 2) for c in description if c.type_code == _NUMERIC and c.name not in known}
    if not rows:
        return pl.DataFrame(schema={n: known.get(n, numeric.get(n, pl.Null)) for n in names})
    inferred = pl.DataFrame(rows, schema=names, orient="row", infer_schema_length=None)
    wanted = {**{n: t for n, t in numeric.items() if inferred.schema[n] == pl.Null}, **known}
    return inferred.with_columns(pl.col(n).cast(t, strict=False) for n, t in wanted.items() if inferred.schema[n] != t)


def _pg_type(dtype: pl.DataType) -> str:
    if dtype == pl.String or dtype == pl.Categorical:
        return "text"
    if dtype == pl.Boolean:
        return "boolean"
    if dtype in (pl.Int8, pl.Int16, pl.Int32, pl.Int64, pl.UInt8, pl.UInt16, pl.UInt32):
        return "bigint"
    if dtype == pl.UInt64:
        return "ubigint"
    if dtype in (pl.Float32, pl.Float64):
        return "double precision"
    if isinstance(dtype, pl.Decimal):
        return f"numeric({dtype.precision or 38}, {dtype.scale or 0})"
    if dtype == pl.Date:
        return "date"
    if isinstance(dtype, pl.Datetime):
        return "timestamptz" if dtype.time_zone else "timestamp"
    if dtype == pl.Null:
        return "text"
    raise TypeError(f"a frame column of type {dtype} cannot be registered in the PostgreSQL store")


class _Relation:
    def __init__(self, cursor: PgCursor) -> None:
        self._cursor = cursor

    def pl(self) -> pl.DataFrame:
        return self._cursor.pl()

    def fetchall(self) -> list[tuple]:
        return self._cursor.fetchall()


class PgCursor:
    """DuckDB's cursor calls the engine makes, on one psycopg connection (one per thread, like DuckDB's cursors)."""

    def __init__(self, con: psycopg.Connection, keys: Mapping[str, Any], domains: Mapping[int, Any]):
        self.connection = con
        self._cur = con.cursor()
        self._keys = keys
        self._domains = domains
        setattr(self, DIALECT_ATTRIBUTE, POSTGRES)

    # -- statements -------------------------------------------------------------------------------------------
    def execute(self, sql: str, params: Sequence[Any] | Mapping[str, Any] | None = None) -> PgCursor:
        translated = translate(sql, self._keys)
        bound = translated.params(params)
        for statement in translated.statements:
            self._cur.execute(statement, bound)
        return self

    def _changed(self) -> list[tuple]:
        # DuckDB answers INSERT, UPDATE and DELETE with one row: how many rows they changed.
        status = (self._cur.statusmessage or "").split(" ", 1)[0]
        return [(self._cur.rowcount,)] if status in ("INSERT", "UPDATE", "DELETE", "MERGE") else []

    def executemany(self, sql: str, params: Iterable[Sequence[Any] | Mapping[str, Any]]) -> PgCursor:
        translated = translate(sql, self._keys)
        (statement,) = translated.statements
        self._cur.executemany(statement, [translated.params(p) for p in params])
        return self

    def script(self, sql: str) -> None:
        """DDL of several statements in DuckDB's dialect (a migration)."""
        for statement in translate_script(sql):
            self._cur.execute(statement)

    def native(self, sql: str) -> None:
        """PostgreSQL's own text, run as written (the dialect's pieces: triggers, functions)."""
        self._cur.execute(sql)

    def sql(self, sql: str, params: Sequence[Any] | Mapping[str, Any] | None = None) -> _Relation:
        self.execute(sql, params)
        return _Relation(self)

    # -- results ----------------------------------------------------------------------------------------------
    @property
    def description(self) -> Any:
        return self._cur.description

    def fetchall(self) -> list[tuple]:
        return self._cur.fetchall() if self._cur.description else self._changed()

    def fetchone(self) -> tuple | None:
        if self._cur.description:
            return self._cur.fetchone()
        changed = self._changed()
        return changed[0] if changed else None

    def pl(self) -> pl.DataFrame:
        return frame_of(self._cur.description, self.fetchall(), self._domains)

    # -- frames as tables -------------------------------------------------------------------------------------
    def register(self, name: str, data: Any) -> PgCursor:
        """A frame (or Arrow table) as a temporary table of this connection, as DuckDB's register makes a view."""
        frame = data if isinstance(data, pl.DataFrame) else pl.from_arrow(data)
        assert isinstance(frame, pl.DataFrame)
        ident = pgsql.Identifier(name)
        columns = pgsql.SQL(", ").join(
            pgsql.SQL("{} {}").format(pgsql.Identifier(c), pgsql.SQL(_pg_type(t))) for c, t in frame.schema.items()
        )
        self._cur.execute(pgsql.SQL("DROP TABLE IF EXISTS pg_temp.{}").format(ident))
        self._cur.execute(pgsql.SQL("CREATE TEMP TABLE {} ({})").format(ident, columns))
        if frame.height:
            text = io.BytesIO()
            frame.write_csv(text, include_header=False, null_value="\\N")
            copy = pgsql.SQL("COPY {} FROM STDIN (FORMAT csv, NULL '\\N')").format(ident)
            with self._cur.copy(copy) as out:
                out.write(text.getvalue())
        return self

    def unregister(self, name: str) -> PgCursor:
        self._cur.execute(pgsql.SQL("DROP TABLE IF EXISTS pg_temp.{}").format(pgsql.Identifier(name)))
        return self

    def close(self) -> None:
        self._cur.close()


def lock_key(name: str) -> int:
    """A named lock as PostgreSQL's advisory-lock key (a signed 64-bit number)."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)


class AdvisoryLocks:
    """Named locks held across every process of the fleet: PostgreSQL session advisory locks, one connection per
    thread (apart from the thread's data connection, so a rolled-back transaction never drops a lock)."""

    def __init__(self, url: str) -> None:
        self._url = url
        self._local = threading.local()
        self._all: list[psycopg.Connection] = []
        self._guard = threading.Lock()

    def _con(self) -> psycopg.Connection:
        con = getattr(self._local, "con", None)
        if con is None or con.closed:
            con = connect(self._url)
            self._local.con = con
            with self._guard:
                self._all.append(con)
        return con

    @contextmanager
    def hold(self, name: str, *, wait: float | None = None, busy: Callable[[], Exception]) -> Iterator[None]:
        """Hold the lock `name` (re-entrant in a thread); with `wait`, raise busy() after that many seconds."""
        con, key = self._con(), lock_key(name)
        if wait is None:
            con.execute("SELECT pg_advisory_lock(%s)", [key])
        else:
            deadline = time.monotonic() + wait
            while not con.execute("SELECT pg_try_advisory_lock(%s)", [key]).fetchone()[0]:  # type: ignore[index]
                if time.monotonic() >= deadline:
                    raise busy()
                time.sleep(0.05)
        try:
            yield
        finally:
            con.execute("SELECT pg_advisory_unlock(%s)", [key])

    def close(self) -> None:
        with self._guard:
            for con in self._all:
                con.close()
            self._all.clear()
