"""QBO's query language (ref §6): parse the SQL subset and run it over a list of objects."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from qbo.sandbox.clock import parse_qbo_time
from qbo.sandbox.wire import is_digits, to_decimal

__all__ = ["Condition", "Query", "QueryError", "escape_value", "matching", "page_of", "parse_query", "run_query"]

DEFAULT_MAX_RESULTS = 100
MAX_RESULTS_CAP = 1000  # ref §6; a larger MAXRESULTS is served as 1000 (see run_query)

_KEYWORDS = {
    "select",
    "from",
    "where",
    "and",
    "orderby",
    "asc",
    "desc",
    "startposition",
    "maxresults",
    "in",
    "like",
    "count",
    "true",
    "false",
}
_OPERATORS = ("<=", ">=", "=", "<", ">")


class QueryError(ValueError):
    """The query does not parse; becomes a 400 with code 4000 QueryParserError."""

    def __init__(self, message: str, column: int) -> None:
        super().__init__(message)
        self.column = column


@dataclass(frozen=True)
class Condition:
    prop: tuple[str, ...]
    op: str  # one of = < > <= >= IN LIKE
    values: tuple[Any, ...]


@dataclass(frozen=True)
class Query:
    entity: str
    count: bool
    where: tuple[Condition, ...] = ()
    order_by: tuple[str, ...] | None = None
    descending: bool = False
    start_position: int = 1
    max_results: int | None = None


@dataclass(frozen=True)
class _Token:
    kind: str  # word, string, number, symbol, end
    text: str
    value: Any
    column: int


def escape_value(text: str) -> str:
    """Quote-escape a value for a query literal: `'` becomes `\\'` (ref §6, PQB `utils.py`).

    Backslashes are left alone, as PQB does; the parser reads a backslash as an escape only before a
    quote, so every value round-trips except one ending in a backslash, which breaks parsing in real
    QBO too (quickbooks-ruby#345).
    """
    return text.replace("'", "\\'")


def _tokenize(text: str) -> list[_Token]:
    tokens: list[_Token] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        column = i + 1
        if ch.isspace():
            i += 1
        elif ch == "'":
            chars: list[str] = []
            i += 1
            while True:
                if i >= n:
                    raise QueryError("Lexical error: unterminated string literal", column)
                if text[i] == "\\" and i + 1 < n and text[i + 1] == "'":
                    chars.append("'")
                    i += 2
                elif text[i] == "'":
                    i += 1
                    break
                else:
                    chars.append(text[i])
                    i += 1
            tokens.append(_Token("string", "'", "".join(chars), column))
        elif is_digits(ch) or (ch == "-" and i + 1 < n and is_digits(text[i + 1])):
            match = re.compile(r"-?[0-9]+(\.[0-9]+)?").match(text, i)
            assert match is not None
            tokens.append(_Token("number", match.group(), Decimal(match.group()), column))
            i = match.end()
        elif ch.isascii() and (ch.isalpha() or ch == "_"):
            match = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*").match(text, i)
            assert match is not None
            tokens.append(_Token("word", match.group(), match.group(), column))
            i = match.end()
        else:
            for symbol in (*_OPERATORS, "*", "(", ")", ","):
                if text.startswith(symbol, i):
                    tokens.append(_Token("symbol", symbol, symbol, column))
                    i += len(symbol)
                    break
            else:
                raise QueryError(f'Lexical error: encountered "{ch}"', column)
    tokens.append(_Token("end", "<EOF>", None, n + 1))
    return tokens


class _Parser:
    def __init__(self, text: str) -> None:
        self.tokens = _tokenize(text)
        self.pos = 0

    def peek(self) -> _Token:
        return self.tokens[self.pos]

    def take(self) -> _Token:
        token = self.tokens[self.pos]
        self.pos += 1
        return token

    def fail(self, token: _Token | None = None) -> QueryError:
        token = token or self.peek()
        return QueryError(f'Encountered " "{token.text}" at line 1, column {token.column}.', token.column)

    def is_word(self, *words: str) -> bool:
        token = self.peek()
        return token.kind == "word" and token.text.lower() in words

    def expect_word(self, word: str) -> None:
        if not self.is_word(word):
            raise self.fail()
        self.take()

    def expect_symbol(self, symbol: str) -> None:
        token = self.peek()
        if token.kind != "symbol" or token.text != symbol:
            raise self.fail()
        self.take()

    def integer(self) -> int:
        token = self.take()
        if token.kind != "number" or not is_digits(token.text):
            raise self.fail(token)
        return int(token.text)

    def identifier(self) -> str:
        token = self.take()
        if token.kind != "word" or token.text.lower() in _KEYWORDS:
            raise self.fail(token)
        return token.text

    def literal(self) -> Any:
        token = self.take()
        if token.kind in ("string", "number"):
            return token.value
        if token.kind == "word" and token.text.lower() in ("true", "false"):
            return token.text.lower() == "true"
        raise self.fail(token)

    def parse(self) -> Query:
        self.expect_word("select")
        count = False
        if self.is_word("count"):
            self.take()
            self.expect_symbol("(")
            self.expect_symbol("*")
            self.expect_symbol(")")
            count = True
        else:
            # Ref §6 grammar: SELECT * | count(*) only.
            self.expect_symbol("*")
        self.expect_word("from")
        entity = self.identifier()
        if "." in entity:
            raise self.fail(self.tokens[self.pos - 1])
        where: list[Condition] = []
        if self.is_word("where"):
            self.take()
            where.append(self.condition())
            while self.is_word("and"):
                self.take()
                where.append(self.condition())
        order_by, descending = None, False
        if self.is_word("orderby"):
            self.take()
            order_by = tuple(self.identifier().split("."))
            if self.is_word("asc", "desc"):
                descending = self.take().text.lower() == "desc"
        start, max_results = 1, None
        seen: set[str] = set()
        while self.is_word("startposition", "maxresults") and self.peek().text.lower() not in seen:
            word = self.take().text.lower()
            seen.add(word)
            value = self.integer()
            if value < 1:
                raise self.fail(self.tokens[self.pos - 1])
            if word == "startposition":
                start = value
            else:
                max_results = value
        if self.peek().kind != "end":
            raise self.fail()
        return Query(entity, count, tuple(where), order_by, descending, start, max_results)

    def condition(self) -> Condition:
        prop = tuple(self.identifier().split("."))
        token = self.peek()
        if token.kind == "symbol" and token.text in _OPERATORS:
            self.take()
            return Condition(prop, token.text, (self.literal(),))
        if self.is_word("like"):
            self.take()
            value = self.literal()
            if not isinstance(value, str):
                raise self.fail(self.tokens[self.pos - 1])
            return Condition(prop, "LIKE", (value,))
        if self.is_word("in"):
            self.take()
            self.expect_symbol("(")
            values = [self.literal()]
            while self.peek().kind == "symbol" and self.peek().text == ",":
                self.take()
                values.append(self.literal())
            self.expect_symbol(")")
            return Condition(prop, "IN", tuple(values))
        raise self.fail()


def parse_query(text: str) -> Query:
    """Parse `SELECT * | count(*) FROM E [WHERE ..] [ORDERBY ..] [STARTPOSITION n] [MAXRESULTS n]`."""
    return _Parser(text).parse()


def _lookup(obj: dict[str, Any], prop: tuple[str, ...]) -> Any:
    value: Any = obj
    for part in prop:
        if not isinstance(value, dict):
            return None
        if part in value:
            value = value[part]
        else:
            # Property names are matched without regard to case when the exact spelling is absent.
            lowered = {k.lower(): k for k in value}
            key = lowered.get(part.lower())
            if key is None:
                return None
            value = value[key]
    if isinstance(value, dict):
        value = value.get("value")  # a reference compares on its value (VendorRef = '56')
    return value


def _as_datetime(text: str) -> datetime | None:
    if len(text) < 10 or text[4:5] != "-":
        return None
    try:
        return parse_qbo_time(text)
    except ValueError:
        return None


def _key(value: Any) -> tuple[int, Any]:
    """A sortable, comparable form: numbers, then date-times, then text (case-insensitive)."""
    if isinstance(value, bool):
        return (0, int(value))
    if isinstance(value, int | Decimal):
        return (1, Decimal(value))
    text = str(value)
    if is_digits(text):
        return (1, Decimal(text))
    moment = _as_datetime(text)
    if moment is not None:
        return (2, moment)
    return (3, text.casefold())


def _compare(actual: Any, literal: Any) -> int | None:
    """-1, 0 or 1 comparing an object's value with a literal; None when there is nothing to compare."""
    if actual is None or isinstance(actual, dict | list):
        return None
    if isinstance(actual, bool) or isinstance(literal, bool):
        a = actual if isinstance(actual, bool) else str(actual).lower() == "true"
        b = literal if isinstance(literal, bool) else str(literal).lower() == "true"
        return (a > b) - (a < b)
    if isinstance(actual, int | Decimal) or isinstance(literal, Decimal):
        try:
            x, y = to_decimal(actual), to_decimal(literal)
        except ValueError:
            pass
        else:
            return (x > y) - (x < y)
    a_text, b_text = str(actual), str(literal)
    if is_digits(a_text) and is_digits(b_text):
        # Ids order as numbers, yet '001' is not '1' (DocNumbers are text).
        if a_text == b_text:
            return 0
        x_int, y_int = int(a_text), int(b_text)
        return ((x_int > y_int) - (x_int < y_int)) or ((a_text > b_text) - (a_text < b_text))
    a_time, b_time = _as_datetime(a_text), _as_datetime(b_text)
    if a_time is not None and b_time is not None:
        return (a_time > b_time) - (a_time < b_time)
    a_fold, b_fold = a_text.casefold(), b_text.casefold()
    return (a_fold > b_fold) - (a_fold < b_fold)


def _like(actual: Any, pattern: str) -> bool:
    if actual is None or isinstance(actual, dict | list):
        return False
    regex = ".*".join(re.escape(part) for part in pattern.casefold().split("%"))
    return re.fullmatch(regex, str(actual).casefold(), flags=re.DOTALL) is not None


def _matches(obj: dict[str, Any], cond: Condition) -> bool:
    actual = _lookup(obj, cond.prop)
    if cond.op == "LIKE":
        return _like(actual, cond.values[0])
    if cond.op == "IN":
        return any(_compare(actual, value) == 0 for value in cond.values)
    result = _compare(actual, cond.values[0])
    if result is None:
        return False
    return {"=": result == 0, "<": result < 0, ">": result > 0, "<=": result <= 0, ">=": result >= 0}[cond.op]


def run_query(query: Query, entity: str, rows: Iterable[dict[str, Any]], *, has_active: bool) -> dict[str, Any]:
    """The `QueryResponse` object for `query` over `rows` (already the live objects of `entity`).

    Inactive rows of a name list are left out unless the query filters on Active itself, e.g.
    `Active IN (true,false)` (ref §6; that they are hidden by default is unconfirmed, we hide them).
    Text comparisons ignore case. MAXRESULTS over 1000 is served as 1000, silently.
    """
    found = matching(query, rows, has_active=has_active)
    if query.count:
        return {"totalCount": len(found)}
    return page_of(query, entity, found)


def matching(query: Query, rows: Iterable[dict[str, Any]], *, has_active: bool) -> list[dict[str, Any]]:
    """Every row `query` selects, in its order, before STARTPOSITION and MAXRESULTS cut a page from them."""
    conditions = list(query.where)
    if has_active and not any(c.prop[-1].lower() == "active" and len(c.prop) == 1 for c in conditions):
        conditions.append(Condition(("Active",), "=", (True,)))
    found = [row for row in rows if all(_matches(row, c) for c in conditions)]
    if query.order_by is not None:
        prop = query.order_by
        present = [r for r in found if _lookup(r, prop) is not None]
        absent = [r for r in found if _lookup(r, prop) is None]
        present.sort(key=lambda r: _key(_lookup(r, prop)), reverse=query.descending)
        found = present + absent
    return found


def page_of(query: Query, entity: str, found: list[dict[str, Any]]) -> dict[str, Any]:
    """The `QueryResponse` page STARTPOSITION and MAXRESULTS cut from the rows a query selected."""
    limit = min(query.max_results or DEFAULT_MAX_RESULTS, MAX_RESULTS_CAP)
    page = found[query.start_position - 1 : query.start_position - 1 + limit]
    if not page:
        return {}  # no entity key when nothing matched (ref §6)
    return {entity: page, "startPosition": query.start_position, "maxResults": len(page)}
