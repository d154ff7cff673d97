"""What differs between the two stores: DuckDB (embedded, the default) and PostgreSQL (fleet mode).

The engine writes one SQL text, in DuckDB's dialect, with `?` or `$name` parameters. On DuckDB it runs as written.
On PostgreSQL the text is parsed once (sqlglot, a SQL parser and transpiler) and written out again for PostgreSQL
from the parse tree, never by editing the text: DuckDB's forms that PostgreSQL lacks are rewritten as tree
transforms here (GROUP BY ALL, INSERT OR REPLACE, CREATE OR REPLACE TABLE, a derived table without an alias), and
DuckDB's functions that PostgreSQL lacks (any_value on 15, error, json_extract_string on text, ...) are created in
the database by `POSTGRES_PRELUDE`, so that the queries keep one text. What cannot be said in one text is here as a
named piece: the audit log's append-only guard, the list of triggers, types.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import sqlglot
from sqlglot import exp
from sqlglot.dialects.duckdb import DuckDB
from sqlglot.dialects.postgres import Postgres
from sqlglot.tokens import TokenType

__all__ = [
    "DUCKDB",
    "POSTGRES",
    "POSTGRES_PRELUDE",
    "Dialect",
    "Translated",
    "dialect_of",
]

# A cursor of the PostgreSQL store says which dialect it speaks; a raw DuckDB cursor does not.
DIALECT_ATTRIBUTE = "sql_dialect"


@dataclass(frozen=True)
class Dialect:
    """The pieces of SQL that cannot be one text for both stores."""

    name: str
    # every trigger of the store by name (the audit log's guard is checked at each open)
    triggers_sql: str
    # the guard that makes a table refuse UPDATE and DELETE (and TRUNCATE where the store has it)
    guard: Callable[[str, str], str]

    def append_only_guard(self, table: str, *, only: str | None = None) -> str:
        """DDL that makes `table` refuse changes: both guards, or `only` the one for UPDATE or DELETE."""
        ops = ("UPDATE", "DELETE") if only is None else (only,)
        return "\n".join(self.guard(table, op) for op in ops)


def _duck_guard(table: str, op: str) -> str:
    # DuckDB's trigger body is a statement: the insert fails through error() (shared/reference/stack-notes.md).
    return (
        f"CREATE TRIGGER {table.removesuffix('_log')}_no_{op.lower()} AFTER {op} ON {table} FOR EACH STATEMENT\n"
        f"  INSERT INTO audit_guard SELECT error('{table} is append-only: {op} refused');"
    )


def _pg_guard(table: str, op: str) -> str:
    # refuse_change() is in the prelude; TRUNCATE is refused with DELETE (it would empty the table without one).
    ops = f"{op} OR TRUNCATE" if op == "DELETE" else op
    return (
        f"CREATE TRIGGER {table.removesuffix('_log')}_no_{op.lower()} BEFORE {ops} ON {table} FOR EACH STATEMENT\n"
        "  EXECUTE FUNCTION refuse_change();"
    )


DUCKDB = Dialect("duckdb", "SELECT trigger_name FROM duckdb_triggers()", _duck_guard)
POSTGRES = Dialect("postgresql", "SELECT tgname FROM pg_trigger WHERE NOT tgisinternal", _pg_guard)


def dialect_of(cursor: object) -> Dialect:
    """The dialect a cursor of either store speaks."""
    return getattr(cursor, DIALECT_ATTRIBUTE, DUCKDB)


# Created in every PostgreSQL store before its migrations (idempotent): DuckDB's names the engine uses, so that its
# queries keep one text. Each one is small and behaves as DuckDB's does for the arguments the engine passes.
POSTGRES_PRELUDE = r"""
CREATE OR REPLACE FUNCTION refuse_change() RETURNS trigger LANGUAGE plpgsql AS $f$
BEGIN
  RAISE EXCEPTION '% is append-only: % refused', TG_TABLE_NAME, TG_OP;
END $f$;
CREATE OR REPLACE FUNCTION error(message text) RETURNS text LANGUAGE plpgsql AS $f$
BEGIN
  RAISE EXCEPTION '%', message;
END $f$;
CREATE OR REPLACE FUNCTION any_value_step(kept anyelement, seen anyelement) RETURNS anyelement
  LANGUAGE sql IMMUTABLE AS $f$ SELECT coalesce(kept, seen) $f$;
CREATE OR REPLACE AGGREGATE any_value(anyelement) (SFUNC = any_value_step, STYPE = anyelement);
CREATE OR REPLACE FUNCTION json_extract_path_text(doc text, VARIADIC path text[]) RETURNS text
  LANGUAGE sql IMMUTABLE AS $f$ SELECT json_extract_path_text(doc::json, VARIADIC path) $f$;
CREATE OR REPLACE FUNCTION json_extract_path(doc text, VARIADIC path text[]) RETURNS json
  LANGUAGE sql IMMUTABLE AS $f$ SELECT json_extract_path(doc::json, VARIADIC path) $f$;
CREATE OR REPLACE FUNCTION regexp_extract(s text, pattern text, grp integer DEFAULT 0) RETURNS text
  LANGUAGE sql IMMUTABLE AS $f$
  SELECT CASE WHEN s IS NULL THEN NULL
              ELSE coalesce(CASE WHEN grp = 0 THEN (regexp_match(s, '(' || pattern || ')'))[1]
                                 ELSE (regexp_match(s, pattern))[grp] END, '') END $f$;
CREATE OR REPLACE FUNCTION try_cast(value text, target anyelement) RETURNS anyelement
  LANGUAGE plpgsql STABLE AS $f$
BEGIN
  IF value IS NULL THEN RETURN NULL; END IF;
  EXECUTE format('SELECT %L::%s', value, pg_typeof(target)) INTO target;
  RETURN target;
EXCEPTION WHEN others THEN
  RETURN NULL;
END $f$;
CREATE OR REPLACE FUNCTION round(value double precision, places integer) RETURNS double precision
  LANGUAGE sql IMMUTABLE AS $f$ SELECT round(value::numeric, places)::double precision $f$;
CREATE OR REPLACE FUNCTION jarowinkler_similarity(s1 text, s2 text) RETURNS double precision
  LANGUAGE plpgsql IMMUTABLE AS $f$
DECLARE  -- DuckDB's jaro_winkler_similarity: Jaro, then 0.1 per common prefix character (up to 4) above 0.7
  a text[] := string_to_array(s1, NULL); b text[] := string_to_array(s2, NULL);
  n1 int := coalesce(array_length(a, 1), 0); n2 int := coalesce(array_length(b, 1), 0);
  win int; m int := 0; t int := 0; k int := 1; p int := 0; sim double precision;
  f1 boolean[]; f2 boolean[];
BEGIN
  IF s1 IS NULL OR s2 IS NULL THEN RETURN NULL; END IF;
  IF n1 = 0 OR n2 = 0 THEN RETURN 0.0; END IF;
  win := greatest(greatest(n1, n2) / 2 - 1, 0);
  f1 := array_fill(false, ARRAY[n1]); f2 := array_fill(false, ARRAY[n2]);
  FOR i IN 1..n1 LOOP
    FOR j IN greatest(1, i - win)..least(n2, i + win) LOOP
      IF NOT f2[j] AND a[i] = b[j] THEN f1[i] := true; f2[j] := true; m := m + 1; EXIT; END IF;
    END LOOP;
  END LOOP;
  IF m = 0 THEN RETURN 0.0; END IF;
  FOR i IN 1..n1 LOOP
    IF f1[i] THEN
      WHILE NOT f2[k] LOOP k := k + 1; END LOOP;
      IF a[i] <> b[k] THEN t := t + 1; END IF;
      k := k + 1;
    END IF;
  END LOOP;
  sim := (m::float8 / n1 + m::float8 / n2 + (m - t / 2)::float8 / m) / 3;
  IF sim > 0.7 THEN
    WHILE p < least(4, n1, n2) AND a[p + 1] = b[p + 1] LOOP p := p + 1; END LOOP;
    sim := sim + p * 0.1 * (1.0 - sim);
  END IF;
  RETURN sim;
END $f$;
CREATE OR REPLACE FUNCTION jaccard(s1 text, s2 text) RETURNS double precision
  LANGUAGE sql IMMUTABLE AS $f$  -- DuckDB's jaccard: shared characters over all characters, each counted once
  SELECT (SELECT count(*) FROM (SELECT unnest(string_to_array(s1, NULL))
                                INTERSECT SELECT unnest(string_to_array(s2, NULL))) i)::float8
       / nullif((SELECT count(*) FROM (SELECT unnest(string_to_array(s1, NULL))
                                       UNION SELECT unnest(string_to_array(s2, NULL))) u), 0) $f$;
CREATE OR REPLACE FUNCTION md5_digest_upper(digest text) RETURNS numeric
  LANGUAGE sql IMMUTABLE AS $f$  -- the first 8 bytes of an md5 hex digest read little-endian, as DuckDB reads them
  SELECT ('x' || substr(digest, 15, 2) || substr(digest, 13, 2) || substr(digest, 11, 2)
              || substr(digest, 9, 2))::bit(32)::bigint::numeric * 4294967296
       + ('x' || substr(digest, 7, 2) || substr(digest, 5, 2) || substr(digest, 3, 2)
              || substr(digest, 1, 2))::bit(32)::bigint $f$;
CREATE OR REPLACE FUNCTION md5_number_upper(value text) RETURNS numeric
  LANGUAGE sql IMMUTABLE AS $f$ SELECT md5_digest_upper(md5(value)) $f$;
CREATE OR REPLACE FUNCTION strlen(value text) RETURNS bigint
  LANGUAGE sql IMMUTABLE AS $f$ SELECT octet_length(value)::bigint $f$;
DO $f$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_type WHERE typname = 'ubigint') THEN
    CREATE DOMAIN ubigint AS numeric(20, 0);
  END IF;
END $f$;
"""


# -- DuckDB text -> PostgreSQL text -----------------------------------------------------------------------------


class _Parser(DuckDB.Parser):  # type: ignore[valid-type,misc]  # sqlglot's dialect classes are made at run time
    """DuckDB's parser, numbering each `?` in the order it is read, so a list of parameters can be named."""

    PLACEHOLDER_PARSERS = {
        **DuckDB.Parser.PLACEHOLDER_PARSERS,
        TokenType.PLACEHOLDER: lambda self: self._numbered_placeholder(),
    }

    def _numbered_placeholder(self) -> exp.Placeholder:
        number = getattr(self, "_numbered", 0)
        self._numbered = number + 1
        return self.expression(exp.Placeholder(this=f"p{number}"))


class _Tokenizer(DuckDB.Tokenizer):
    # `?::TYPE` is a parameter cast in DuckDB, not the try-cast operator another dialect spells `?::`.
    KEYWORDS = {k: v for k, v in DuckDB.Tokenizer.KEYWORDS.items() if k != "?::"}


class _Source(DuckDB):
    Tokenizer = _Tokenizer
    Parser = _Parser


class _Generator(Postgres.Generator):  # type: ignore[valid-type,misc]  # as _Parser
    """PostgreSQL's generator for psycopg's client-side binding: `%` is the driver's escape, so a literal doubles it."""

    _raw_literals = False

    def literal_sql(self, expression: exp.Literal) -> str:
        text = super().literal_sql(expression)
        return "%%".join(text.split("%")) if expression.is_string and not self._raw_literals else text

    def format_time(self, expression: exp.Expr, *args: Any, **kwargs: Any) -> str | None:
        # A strftime pattern is read for its meaning (and becomes TO_CHAR's, which has no %): not escaped first.
        self._raw_literals = True
        try:
            return super().format_time(expression, *args, **kwargs)
        finally:
            self._raw_literals = False

    def mod_sql(self, expression: exp.Mod) -> str:
        return f"{self.sql(expression, 'this')} %% {self.sql(expression, 'expression')}"

    def ignorenulls_sql(self, expression: exp.IgnoreNulls) -> str:
        # sqlglot reads DuckDB's any_value(x) as any_value(x) IGNORE NULLS; the any_value created here skips nulls
        # already (coalesce), so nothing is lost and nothing needs saying (it warned on every statement).
        return self.sql(expression.this)


class _Target(Postgres):
    Generator = _Generator


@dataclass(frozen=True)
class Translated:
    """PostgreSQL statements for one DuckDB text; `?` parameters are named p0, p1, ... in the order they were read."""

    statements: tuple[str, ...]

    def params(self, params: Sequence[Any] | Mapping[str, Any] | None) -> dict[str, Any]:
        if params is None:
            return {}
        if isinstance(params, Mapping):
            return dict(params)
        return {f"p{i}": value for i, value in enumerate(params)}


def _has_aggregate(node: exp.Expr, select: exp.Select) -> bool:
    """Whether an aggregate of this SELECT (not of a subquery inside it) is in the expression."""
    return any(agg.find_ancestor(exp.Select) is select for agg in node.find_all(exp.AggFunc, exp.Window))


def _group_by_all(select: exp.Select) -> None:
    """GROUP BY ALL: every select expression that holds no aggregate, by position."""
    group = select.args.get("group")
    if group is None or not group.args.get("all"):
        return
    positions = [
        exp.Literal.number(i)
        for i, projection in enumerate(select.expressions, start=1)
        if not _has_aggregate(projection, select)
    ]
    select.set("group", exp.Group(expressions=positions) if positions else None)


def _name_derived_tables(tree: exp.Expr) -> None:
    counter = itertools.count()
    for sub in list(tree.find_all(exp.Subquery)):
        parent = sub.parent
        if isinstance(parent, exp.From | exp.Join) and not sub.alias:
            sub.set("alias", exp.TableAlias(this=exp.to_identifier(f"_d{next(counter)}")))


def _upsert(insert: exp.Insert, keys: Mapping[str, tuple[tuple[str, ...], tuple[str, ...]]]) -> None:
    """INSERT OR REPLACE -> INSERT ... ON CONFLICT (primary key) DO UPDATE SET every other named column."""
    if insert.args.get("alternative") != "REPLACE":
        return
    target = insert.this
    table = target.this if isinstance(target, exp.Schema) else target
    name = table.name
    if not keys.get(name, ((), ()))[0]:
        raise ValueError(f"INSERT OR REPLACE into {name}: the table has no primary key to replace on")
    key, every = keys[name]
    columns = [c.name for c in target.expressions] if isinstance(target, exp.Schema) else list(every)
    updates = [exp.EQ(this=exp.column(c), expression=exp.column(c, table="excluded")) for c in columns if c not in key]
    conflict = exp.OnConflict(
        conflict_keys=[exp.to_identifier(k) for k in key],
        action=exp.var("DO UPDATE") if updates else exp.var("DO NOTHING"),
        expressions=updates or None,
    )
    insert.set("alternative", None)
    insert.set("conflict", conflict)


# PostgreSQL's text cannot hold a NUL: where the engine writes chr(0) as "a value no text has" (a NULL inside a
# content hash), PostgreSQL gets two control characters no AWRA value carries.
_NO_TEXT = "\x01\x02"


def _no_nul(tree: exp.Expr) -> None:
    for found in list(tree.find_all(exp.Chr)):
        (code,) = found.expressions
        if isinstance(code, exp.Literal) and not code.is_string and int(code.this) == 0:
            found.replace(exp.Literal.string(_NO_TEXT))


def _try_casts(tree: exp.Expr) -> None:
    """TRY_CAST(x AS T) -> CAST(try_cast(CAST(x AS TEXT), NULL::T) AS T): NULL where the text does not convert."""
    for found in list(tree.find_all(exp.TryCast)):
        to = found.args["to"]
        call = exp.Anonymous(
            this="try_cast",
            expressions=[exp.cast(found.this.copy(), "TEXT"), exp.Cast(this=exp.null(), to=to.copy())],
        )
        found.replace(exp.Cast(this=call, to=to.copy()))


def _qualify(select: exp.Select) -> None:
    """QUALIFY row_number() OVER (PARTITION BY k ORDER BY o) = 1 -> SELECT DISTINCT ON (k) ... ORDER BY k, o.

    The one form of QUALIFY the engine writes (the first row of each group); any other is refused, not guessed.
    """
    qualify = select.args.get("qualify")
    if qualify is None:
        return
    cond = qualify.this
    window = cond.this if isinstance(cond, exp.EQ) else None
    if (
        not isinstance(window, exp.Window)
        or not isinstance(window.this, exp.RowNumber)
        or not (isinstance(cond.expression, exp.Literal) and cond.expression.this == "1")
        or select.args.get("order") is not None
        or select.args.get("distinct") is not None
    ):
        raise ValueError(f"QUALIFY other than row_number() ... = 1 has no PostgreSQL form here: {qualify.sql()}")
    keys = [k.copy() for k in window.args.get("partition_by") or []]
    order = window.args.get("order")
    select.set("qualify", None)
    select.set("distinct", exp.Distinct(on=exp.Tuple(expressions=keys)))
    ordered = [exp.Ordered(this=k.copy()) for k in keys] + [o.copy() for o in (order.expressions if order else [])]
    select.set("order", exp.Order(expressions=ordered))


def _ares_pattern(pattern: str) -> str:
    """A DuckDB (RE2) pattern in PostgreSQL's regular expressions: RE2's `\\x{HHHH}` is `\\uHHHH` or `\\UHHHHHHHH`."""
    out, i = [], 0
    while i < len(pattern):
        if pattern.startswith("\\x{", i) and (end := pattern.find("}", i)) > 0:
            code = int(pattern[i + 3 : end], 16)
            out.append(f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}")
            i = end + 1
        elif pattern[i] == "\\" and i + 1 < len(pattern):
            out.append(pattern[i : i + 2])
            i += 2
        else:
            out.append(pattern[i])
            i += 1
    return "".join(out)


def _patterns(tree: exp.Expr) -> None:
    for found in tree.find_all(exp.RegexpReplace, exp.RegexpExtract, exp.RegexpLike):
        pattern = found.args.get("expression")
        if isinstance(pattern, exp.Literal) and pattern.is_string:
            pattern.set("this", _ares_pattern(pattern.this))


def _pg_format(template: str) -> str:
    """DuckDB's format() template ({} for each argument) as PostgreSQL's (%s for each, %% for a percent sign)."""
    return "%s".join("%%".join(part.split("%")) for part in template.split("{}"))


def _formats_and_series(tree: exp.Expr) -> None:
    for found in list(tree.find_all(exp.Format)):
        template = found.this
        if isinstance(template, exp.Literal) and template.is_string:
            template.set("this", _pg_format(template.this))
    # unnest(range(a, b)) in a select list: PostgreSQL's generate_series is already one row per value there.
    for exploded in list(tree.find_all(exp.Explode)):
        if isinstance(exploded.this, exp.GenerateSeries):
            exploded.replace(exploded.this)


def _modes(tree: exp.Expr) -> None:
    """DuckDB's mode(x) is PostgreSQL's ordered-set aggregate mode() WITHIN GROUP (ORDER BY x)."""
    for found in list(tree.find_all(exp.Mode)):
        if isinstance(found.parent, exp.WithinGroup):
            continue
        order = exp.Order(expressions=[exp.Ordered(this=found.this.copy(), nulls_first=False)])
        found.replace(exp.WithinGroup(this=exp.Mode(), expression=order))


def _arg_extremes(tree: exp.Expr) -> None:
    """arg_max(v, k) / arg_min(v, k): the v of the row with the largest / smallest non-NULL k."""
    for found in list(tree.find_all(exp.ArgMax, exp.ArgMin)):
        direction = "DESC" if isinstance(found, exp.ArgMax) else "ASC"
        outer = found.parent if isinstance(found.parent, exp.Filter) and found.parent.this is found else None
        extra = " AND (c)" if outer is not None else ""
        shape = sqlglot.parse_one(
            f"SELECT (array_agg(v ORDER BY k {direction}) FILTER (WHERE k IS NOT NULL{extra}))[1]", read="postgres"
        ).expressions[0]
        parts = {"v": found.this, "k": found.expression}
        if outer is not None:
            parts["c"] = outer.expression.this
        for column in list(shape.find_all(exp.Column)):
            column.replace(parts[column.name].copy())
        (outer or found).replace(shape)


def _structs_as_json(tree: exp.Expr) -> None:
    """DuckDB's STRUCT literals are built as JSON objects, and to_json() is their compact text without null keys.

    The engine builds QuickBooks payloads as a STRUCT and writes them with to_json(), dropping null-valued keys
    after; PostgreSQL builds the same object with json_build_object (keys in order, decimals digit for digit) and
    drops null keys with json_strip_nulls.
    """
    for found in list(tree.find_all(exp.Struct)):
        args: list[exp.Expr] = []
        for field in found.expressions:
            if not isinstance(field, exp.PropertyEQ):
                raise ValueError(f"a STRUCT without field names has no PostgreSQL form here: {found.sql()}")
            args += [exp.Literal.string(field.this.name), field.expression]
        found.replace(exp.Anonymous(this="json_build_object", expressions=args))
    for call in list(tree.find_all(exp.Anonymous)):
        if call.name.lower() == "to_json":
            stripped = exp.Anonymous(this="json_strip_nulls", expressions=[call.copy()])
            call.replace(exp.cast(stripped, "TEXT"))


def _star_except(select: exp.Select, keys: Mapping[str, tuple[tuple[str, ...], tuple[str, ...]]]) -> None:
    """SELECT * EXCLUDE (a, b) FROM one table -> its other columns, by name, from the catalog."""
    for star in [p for p in select.expressions if isinstance(p, exp.Star) and p.args.get("except_")]:
        source = select.args.get("from_")
        table = source.this if source is not None else None
        if not isinstance(table, exp.Table) or select.args.get("joins") or table.name not in keys:
            raise ValueError(f"SELECT * EXCLUDE has a PostgreSQL form here only over one known table: {select.sql()}")
        dropped = {c.name for c in star.args["except_"]}
        columns = [exp.column(c) for c in keys[table.name][1] if c not in dropped]
        select.set("expressions", [e for p in select.expressions for e in (columns if p is star else [p])])


def _temp_schema(tree: exp.Expr) -> None:
    """DuckDB's schema of temporary tables is `temp`; PostgreSQL's is `pg_temp`."""
    for table in tree.find_all(exp.Table):
        if table.db.lower() == "temp":
            table.set("db", exp.to_identifier("pg_temp"))


def _statements(tree: exp.Expr, keys: Mapping[str, tuple[tuple[str, ...], tuple[str, ...]]]) -> list[exp.Expr]:
    _no_nul(tree)
    _try_casts(tree)
    _patterns(tree)
    _formats_and_series(tree)
    _arg_extremes(tree)
    _modes(tree)
    _structs_as_json(tree)
    _temp_schema(tree)
    for select in list(tree.find_all(exp.Select)):
        _group_by_all(select)
        _qualify(select)
        _star_except(select, keys)
    _name_derived_tables(tree)
    for insert in list(tree.find_all(exp.Insert)):
        _upsert(insert, keys)
    if isinstance(tree, exp.Create) and tree.args.get("replace") and tree.kind == "TABLE":
        tree.set("replace", False)
        return [exp.Drop(tables=[tree.this.copy()], kind="TABLE", exists=True), tree]
    return [tree]


def _parse(text: str) -> list[exp.Expr]:
    trees = [t for t in sqlglot.parse(text, read=_Source) if t is not None]
    for tree in trees:
        if isinstance(tree, exp.Command) and tree.name.upper() not in ("DROP",):
            raise ValueError(f"this SQL could not be read for PostgreSQL: {text.strip()[:200]}")
    return trees


def translate_script(text: str) -> list[str]:
    """A script of several statements (DDL in migrations) as PostgreSQL statements, without parameters."""
    out = []
    for tree in _parse(text):
        for statement in _statements(tree, {}):
            out.append(statement.sql(dialect=Postgres, comments=False))
    return out


@functools.lru_cache(maxsize=4096)
def _translate(text: str, keys: tuple[tuple[str, tuple[tuple[str, ...], tuple[str, ...]]], ...]) -> Translated:
    trees = _parse(text)
    statements: list[str] = []
    for tree in trees:
        for statement in _statements(tree, dict(keys)):
            statements.append(_Target().generate(statement, copy=False, comments=False))
    return Translated(tuple(statements))


def translate(text: str, keys: Mapping[str, tuple[tuple[str, ...], tuple[str, ...]]]) -> Translated:
    """One DuckDB text as PostgreSQL statements (cached by text: the engine's queries are a few hundred texts)."""
    return _translate(text, tuple(sorted(keys.items())))
