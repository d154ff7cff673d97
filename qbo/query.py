"""The QBO query language (ref §6): entity names, escaped literals, SELECT builder and paging clauses."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime
from decimal import Decimal
from typing import Any

__all__ = [
    "KNOWN_ENTITIES",
    "NAME_LISTS",
    "PAGE_SIZE",
    "Select",
    "entity_name",
    "escape_literal",
    "has_paging",
    "is_count_query",
    "quote_literal",
    "select",
    "select_count",
]

PAGE_SIZE = 1000  # MAXRESULTS maximum (ref §6)

KNOWN_ENTITIES = (
    "Account",
    "Attachable",
    "Bill",
    "BillPayment",
    "Class",
    "CompanyInfo",
    "CreditMemo",
    "Customer",
    "Department",
    "Deposit",
    "Employee",
    "Estimate",
    "Invoice",
    "Item",
    "JournalCode",
    "JournalEntry",
    "Payment",
    "PaymentMethod",
    "Preferences",
    "Purchase",
    "PurchaseOrder",
    "RefundReceipt",
    "SalesReceipt",
    "TaxAgency",
    "TaxCode",
    "TaxRate",
    "Term",
    "TimeActivity",
    "Transfer",
    "Vendor",
    "VendorCredit",
)
# Name lists carry `Active`; their inactive rows appear only with `Active IN (true, false)` (ref §6).
NAME_LISTS = frozenset(
    {
        "Account",
        "Class",
        "Customer",
        "Department",
        "Employee",
        "Item",
        "PaymentMethod",
        "TaxCode",
        "TaxRate",
        "Term",
        "Vendor",
    }
)
_BY_LOWER = {name.lower(): name for name in KNOWN_ENTITIES}
_IDENT = re.compile(r"^[A-Za-z][A-Za-z0-9]*(\.[A-Za-z][A-Za-z0-9]*)*$")


# Query builder (ref §6)
def escape_literal(value: str) -> str:
    """Escape text for the inside of a QBO query literal: `'` becomes `\\'` (ref §6).

    No escape for a backslash itself is documented, and parsers in the wild disagree on `\\\\`; one
    before the closing quote escapes the quote and lets the rest of the query be read as syntax (ref §6,
    quickbooks-ruby#345). So a value with a backslash is refused here, and `Select.where` matches such
    values another way.
    """
    if "\\" in value:
        raise ValueError("a QBO query literal cannot hold a backslash (ref §6); use Select.where(field, '=', v)")
    return value.replace("'", "\\'")


def quote_literal(value: str) -> str:
    return f"'{escape_literal(value)}'"


def _render(value: Any) -> str:
    if isinstance(value, bool):  # before int: bool is an int
        return "true" if value else "false"
    if isinstance(value, int | Decimal):
        if isinstance(value, Decimal) and not value.is_finite():
            raise ValueError("a query value must be a finite number")
        return str(value)
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError("query times need a time zone (QBO compares instants)")
        return quote_literal(value.isoformat(timespec="seconds"))
    if isinstance(value, date):
        return quote_literal(value.isoformat())
    if isinstance(value, str):
        return quote_literal(value)
    raise TypeError(f"cannot put a {type(value).__name__} in a QBO query (use str, int, Decimal, bool, date)")


def _check_field(name: str) -> str:
    if not _IDENT.match(name):
        raise ValueError(f"not a QBO property name: {name!r}")
    return name


@dataclass(frozen=True)
class Select:
    """`SELECT * | count(*) FROM Entity [WHERE a AND b] [ORDERBY f]`; values are always escaped."""

    entity: str
    conditions: tuple[str, ...] = ()
    order: str | None = None
    count_only: bool = False
    exact: tuple[tuple[str, str, str], ...] = ()  # checked locally on the rows (see where)

    def where(self, field_name: str, op: str, value: Any) -> Select:
        field_name, op = _check_field(field_name), op.strip().upper()
        if op not in ("=", "<", ">", "<=", ">=", "IN", "LIKE"):
            raise ValueError(f"QBO queries know = < > <= >= IN LIKE, not {op!r} (ref §6)")
        if isinstance(value, str) and "\\" in value:
            return self._where_backslash(field_name, op, value)
        if op == "IN":
            if isinstance(value, str | bytes) or not isinstance(value, Sequence | set | frozenset) or not value:
                raise ValueError("IN needs a non-empty list of values")
            rendered = "(" + ", ".join(_render(v) for v in value) + ")"
        else:
            rendered = _render(value)
        return replace(self, conditions=(*self.conditions, f"{field_name} {op} {rendered}"))

    def _where_backslash(self, field_name: str, op: str, value: str) -> Select:
        # No literal can carry a backslash (see escape_literal), so QBO gets a LIKE with `%` where the
        # backslashes were (LIKE's only wildcard, ref §6) and the exact test runs here on the rows.
        if op not in ("=", "LIKE"):
            raise ValueError("a value with a backslash can only be matched with = or LIKE")
        pattern = "%".join(re.split(r"\\+", value))
        return replace(
            self,
            conditions=(*self.conditions, f"{field_name} LIKE {quote_literal(pattern)}"),
            exact=(*self.exact, (field_name, op, value)),
        )

    def keeps(self, row: Mapping[str, Any]) -> bool:
        """Whether a returned row passes the checks that had to run locally (values with backslashes)."""
        return all(_matches_exactly(_property(row, f), op, v) for f, op, v in self.exact)

    def order_by(self, field_name: str, *, descending: bool = False) -> Select:
        return replace(self, order=f"{_check_field(field_name)} {'DESC' if descending else 'ASC'}")

    def include_inactive(self) -> Select:
        """Name lists hide inactive rows unless asked (ref §6)."""
        return self.where("Active", "IN", [True, False])

    def sql(self) -> str:
        head = "SELECT count(*)" if self.count_only else "SELECT *"
        text = f"{head} FROM {entity_name(self.entity)}"
        if self.conditions:
            text += " WHERE " + " AND ".join(self.conditions)
        if self.order and not self.count_only:
            text += f" ORDERBY {self.order}"
        return text

    __str__ = sql


def select(entity: str) -> Select:
    return Select(entity_name(entity))


def _property(row: Mapping[str, Any], path: str) -> Any:
    value: Any = row
    for part in path.split("."):
        value = value.get(part) if isinstance(value, Mapping) else None
    return value.get("value") if isinstance(value, Mapping) else value  # a Ref compares on its value


def _matches_exactly(actual: Any, op: str, value: str) -> bool:
    # Text comparisons in QBO queries ignore case (as the server would have done for a plain literal).
    if actual is None or isinstance(actual, Mapping | list):
        return False
    text = str(actual).casefold()
    if op == "=":
        return text == value.casefold()
    regex = ".*".join(re.escape(part) for part in value.casefold().split("%"))
    return re.fullmatch(regex, text, flags=re.DOTALL) is not None


def select_count(entity: str) -> Select:
    return Select(entity_name(entity), count_only=True)


def entity_name(entity: str) -> str:
    """The capitalised QBO name ("journalentry" -> "JournalEntry"); unknown names must be identifiers."""
    known = _BY_LOWER.get(entity.lower())
    if known:
        return known
    if not _IDENT.match(entity) or "." in entity:
        raise ValueError(f"not a QBO entity name: {entity!r}")
    return entity


# Paging clauses outside string literals (a name may well contain the word MAXRESULTS).
_LITERALS = re.compile(r"'(?:\\.|[^'\\])*'")
_PAGING = re.compile(r"\b(STARTPOSITION|MAXRESULTS)\b", re.I)
_COUNT = re.compile(r"^\s*select\s+count\s*\(", re.I)


def is_count_query(sql: str) -> bool:
    return bool(_COUNT.match(sql))


def has_paging(sql: str) -> bool:
    return bool(_PAGING.search(_LITERALS.sub("''", sql)))
