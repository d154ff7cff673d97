"""The AWRA snapshot contract (v1): every table, column, kind and allowed value, and its Pandera schemas."""

from __future__ import annotations

from dataclasses import dataclass, field

import pandera.polars as pa
import polars as pl

__all__ = [
    "APPROVAL_STATUSES",
    "CONTRACT",
    "ENTITY_TABLES",
    "SEND_ORDER",
    "SEND_TIERS",
    "KINDS",
    "POSTING_STATUSES",
    "POSTING_TYPES",
    "RECORD_STATUSES",
    "Column",
    "Table",
    "contract_markdown",
    "contract_schema",
    "table_for_entity",
]

RECORD_STATUSES = ("active", "inactive")
APPROVAL_STATUSES = ("draft", "pending", "approved", "rejected")
POSTING_STATUSES = ("unposted", "posted", "void")
POSTING_TYPES = ("debit", "credit")
ITEM_TYPES = ("service", "non_inventory", "inventory")

# Text patterns, checked on the raw text before any cast: a cast would hide a bad value
# (Polars turns "3.005" into 3.00 without a word; see shared/reference/stack-notes.md).
# Digits are [0-9], never \d: the regex engine's \d matches every Unicode decimal digit (Arabic-Indic ١٢٣, full-width
# １２３, ...), which the store's casts refuse after the contract has passed them. Every value a pattern accepts must
# convert (tests/test_fuzz_snapshot.py, the Unicode test).
_MONEY = r"^-?[0-9]{1,16}(\.[0-9]{1,2})?$"
_MONEY_NONNEG = r"^[0-9]{1,16}(\.[0-9]{1,2})?$"
_QUANTITY = r"^-?[0-9]{1,14}(\.[0-9]{1,4})?$"
_DATE = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$"
_TIMESTAMP = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}([T ][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?(Z|[+-][0-9]{2}:?[0-9]{2})?)?$"
_CURRENCY = r"^[A-Z]{3}$"
_INT = r"^[1-9][0-9]{0,8}$"
_KEY = r"^[^\x00-\x1f\x7f]{1,64}$"


@dataclass(frozen=True)
class Kind:
    """How a column's text is checked, what it is stored as, and how it is described in the README."""

    sql_type: str
    pattern: str | None
    describe: str


KINDS: dict[str, Kind] = {
    "id": Kind("VARCHAR", _KEY, "identifier text, 1-64 characters, no control characters"),
    "text": Kind("VARCHAR", None, "free text"),
    "money": Kind("DECIMAL(18,2)", _MONEY, "decimal with at most 2 places, e.g. 1250.00 or -12.5"),
    "money_nonneg": Kind("DECIMAL(18,2)", _MONEY_NONNEG, "decimal >= 0 with at most 2 places"),
    "quantity": Kind("DECIMAL(18,4)", _QUANTITY, "decimal with at most 4 places"),
    "date": Kind("DATE", _DATE, "ISO date YYYY-MM-DD"),
    "timestamp": Kind(
        "TIMESTAMPTZ", _TIMESTAMP, "ISO timestamp YYYY-MM-DDTHH:MM:SS, Z or +HH:MM (else UTC), or a date"
    ),
    "currency": Kind("VARCHAR", _CURRENCY, "ISO 4217 code, 3 capital letters"),
    "int": Kind("INTEGER", _INT, "whole number >= 1"),
    "enum": Kind("VARCHAR", None, "one of the listed values"),
}


@dataclass(frozen=True)
class Column:
    """One contract column: name, kind, whether a value is required, and allowed values for enums."""

    name: str
    kind: str
    required: bool = False
    values: tuple[str, ...] = ()

    @property
    def sql_type(self) -> str:
        return KINDS[self.kind].sql_type


@dataclass(frozen=True)
class Table:
    """One snapshot file: its columns, key, and the record entity it holds (or its parent's, for lines)."""

    name: str
    columns: tuple[Column, ...]
    key: tuple[str, ...]
    entity: str
    parent: str | None = None  # for line tables: the header table they belong to
    one_of: tuple[str, ...] = field(default=())  # at least one of these columns must be in the file

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]

    @property
    def is_lines(self) -> bool:
        return self.parent is not None

    @property
    def record_id(self) -> str:
        """The column that identifies the record (the header's id for a line table)."""
        return self.key[0]


def _c(name: str, kind: str, required: bool = False, values: tuple[str, ...] = ()) -> Column:
    return Column(name, "enum" if values else kind, required, values)


def _txn_tail() -> tuple[Column, ...]:
    return (
        _c("txn_date", "date"),
        _c("due_date", "date"),
        _c("currency", "currency"),
        _c("total", "money_nonneg"),
        _c("approval_status", "enum", True, APPROVAL_STATUSES),
        _c("posting_status", "enum", True, POSTING_STATUSES),
        _c("owner", "text"),
        _c("updated_at", "timestamp"),
    )


def _line_columns(parent_id: str) -> tuple[Column, ...]:
    return (
        _c(parent_id, "id", True),
        _c("line_no", "int", True),
        _c("item_sku", "text"),
        _c("account_code", "text"),
        _c("description", "text"),
        _c("qty", "quantity"),
        _c("unit_price", "quantity"),
        _c("amount", "money"),
        _c("tax_code", "text"),
        _c("category", "text"),
    )


def _party(id_col: str) -> tuple[Column, ...]:
    return (
        _c(id_col, "id", True),
        _c("name", "text"),
        _c("currency", "currency"),
        _c("status", "enum", True, RECORD_STATUSES),
        _c("approval_status", "enum", True, APPROVAL_STATUSES),
        _c("updated_at", "timestamp"),
    )


_TABLES = (
    Table("vendors", _party("vendor_id"), ("vendor_id",), "vendor"),
    Table("customers", _party("customer_id"), ("customer_id",), "customer"),
    Table(
        "items",
        (
            _c("item_sku", "id", True),
            _c("name", "text"),
            _c("type", "enum", True, ITEM_TYPES),
            _c("status", "enum", True, RECORD_STATUSES),
            _c("updated_at", "timestamp"),
            _c("income_account_code", "text"),
            _c("expense_account_code", "text"),
        ),
        ("item_sku",),
        "item",
    ),
    Table(
        "accounts",
        (
            _c("account_code", "id", True),
            _c("name", "text"),
            _c("type", "text"),
            _c("status", "enum", True, RECORD_STATUSES),
        ),
        ("account_code",),
        "account",
    ),
    Table(
        "purchase_orders",
        (_c("po_id", "id", True), _c("po_number", "text"), _c("vendor_id", "text"), *_txn_tail()),
        ("po_id",),
        "purchase_order",
    ),
    Table(
        "bills",
        (
            _c("bill_id", "id", True),
            _c("bill_number", "text"),
            _c("vendor_id", "text"),
            _c("po_id", "text"),
            *_txn_tail(),
        ),
        ("bill_id",),
        "bill",
    ),
    Table(
        "invoices",
        (
            _c("invoice_id", "id", True),
            _c("invoice_number", "text"),
            _c("customer_id", "text"),
            *_txn_tail(),
        ),
        ("invoice_id",),
        "invoice",
    ),
    Table(
        "po_lines",
        _line_columns("po_id"),
        ("po_id", "line_no"),
        "purchase_order",
        "purchase_orders",
        ("item_sku", "account_code"),
    ),
    Table(
        "bill_lines",
        _line_columns("bill_id"),
        ("bill_id", "line_no"),
        "bill",
        "bills",
        ("item_sku", "account_code"),
    ),
    Table(
        "invoice_lines",
        _line_columns("invoice_id"),
        ("invoice_id", "line_no"),
        "invoice",
        "invoices",
        ("item_sku", "account_code"),
    ),
    Table(
        "payments",
        (
            _c("payment_id", "id", True),
            _c("payment_number", "text"),
            _c("customer_id", "text"),
            _c("invoice_id", "text"),
            _c("txn_date", "date"),
            _c("amount", "money_nonneg"),
            _c("payment_method", "text"),
            _c("deposit_account_code", "text"),
            _c("currency", "currency"),
            _c("approval_status", "enum", True, APPROVAL_STATUSES),
            _c("posting_status", "enum", True, POSTING_STATUSES),
            _c("owner", "text"),
            _c("updated_at", "timestamp"),
        ),
        ("payment_id",),
        "payment",
    ),
    Table(
        "bill_payments",
        (
            _c("bill_payment_id", "id", True),
            _c("vendor_id", "text"),
            _c("bill_id", "text"),
            _c("txn_date", "date"),
            _c("amount", "money_nonneg"),
            _c("payment_method", "text"),
            _c("bank_account_code", "text"),
            _c("currency", "currency"),
            _c("approval_status", "enum", True, APPROVAL_STATUSES),
            _c("posting_status", "enum", True, POSTING_STATUSES),
            _c("owner", "text"),
            _c("updated_at", "timestamp"),
        ),
        ("bill_payment_id",),
        "bill_payment",
    ),
    Table(
        "journal_entries",
        (
            _c("je_id", "id", True),
            _c("je_number", "text"),
            _c("txn_date", "date"),
            _c("currency", "currency"),
            _c("approval_status", "enum", True, APPROVAL_STATUSES),
            _c("posting_status", "enum", True, POSTING_STATUSES),
            _c("owner", "text"),
            _c("updated_at", "timestamp"),
        ),
        ("je_id",),
        "journal_entry",
    ),
    Table(
        "journal_lines",
        (
            _c("je_id", "id", True),
            _c("line_no", "int", True),
            _c("account_code", "text"),
            _c("posting_type", "enum", True, POSTING_TYPES),
            _c("amount", "money_nonneg"),
            _c("description", "text"),
            _c("category", "text"),
        ),
        ("je_id", "line_no"),
        "journal_entry",
        "journal_entries",
    ),
)

CONTRACT: dict[str, Table] = {t.name: t for t in _TABLES}

# The header table of each record entity.
ENTITY_TABLES: dict[str, str] = {t.entity: t.name for t in _TABLES if not t.is_lines}
# The entities a sync sends, in dependency tiers: parties before the documents that name them, documents before
# what pays them. Items and accounts are only mapped, never sent.
SEND_TIERS: tuple[tuple[str, ...], ...] = (
    ("vendor", "customer"),
    ("purchase_order", "bill", "invoice"),
    ("payment", "bill_payment", "journal_entry"),
)
SEND_ORDER: tuple[str, ...] = tuple(entity for tier in SEND_TIERS for entity in tier)


def table_for_entity(entity: str) -> Table:
    """The header table of a record entity (`bill` -> bills)."""
    return CONTRACT[ENTITY_TABLES[entity]]


def _column_schema(col: Column) -> pa.Column:
    checks: list[pa.Check] = []
    if col.values:
        checks.append(pa.Check.isin(list(col.values), error=f"must be one of {', '.join(col.values)}"))
    pattern = KINDS[col.kind].pattern
    if pattern:
        checks.append(pa.Check.str_matches(pattern, error=f"must be {KINDS[col.kind].describe}"))
    if col.kind == "date":
        checks.append(_valid_calendar_date())
    if col.kind == "timestamp":
        checks.append(_valid_timestamp())
    return pa.Column(str, checks=checks, nullable=not col.required, required=True)


def _valid_calendar_date() -> pa.Check:
    # The pattern accepts 2026-02-30; a strict parse does not. Years outside 1900-2199 are typos.
    def check(data: pa.PolarsData) -> pl.LazyFrame:
        col = pl.col(data.key)
        parsed = col.str.to_date("%Y-%m-%d", strict=False)
        ok = col.is_null() | (parsed.is_not_null() & parsed.dt.year().is_between(1900, 2199))
        return data.lazyframe.select(ok)

    return pa.Check(check, error="must be a real calendar date YYYY-MM-DD between 1900 and 2199")


def _valid_timestamp() -> pa.Check:
    # The pattern accepts 2026-02-30T99:99:99+99:99, which the store's cast refuses after the checks
    # have passed; every field must be real (the date part by the same rule as a date column).
    def check(data: pa.PolarsData) -> pl.LazyFrame:
        col = pl.col(data.key)
        day = col.str.slice(0, 10).str.to_date("%Y-%m-%d", strict=False)
        clock = col.str.extract_groups(r"^.{10}[T ]([0-9]{2}):([0-9]{2}):([0-9]{2})")
        offset = col.str.extract_groups(r"[+-]([0-9]{2}):?([0-9]{2})$")
        ok = (
            day.is_not_null()
            & day.dt.year().is_between(1900, 2199)
            & (clock.struct[0].cast(pl.Int32, strict=False).fill_null(0) <= 23)
            & (clock.struct[1].cast(pl.Int32, strict=False).fill_null(0) <= 59)
            & (clock.struct[2].cast(pl.Int32, strict=False).fill_null(0) <= 59)
            & (offset.struct[0].cast(pl.Int32, strict=False).fill_null(0) <= 23)
            & (offset.struct[1].cast(pl.Int32, strict=False).fill_null(0) <= 59)
        )
        return data.lazyframe.select(col.is_null() | ok)

    return pa.Check(check, error="must be a real date and time between 1900 and 2199 (hours to 23, offsets to 23:59)")


def contract_schema(table: Table) -> pa.DataFrameSchema:
    """The Pandera schema of one snapshot table, over its raw text columns."""
    return pa.DataFrameSchema(
        {c.name: _column_schema(c) for c in table.columns},
        unique=list(table.key),
        strict=False,
        name=table.name,
    )


def contract_markdown() -> str:
    """The contract as Markdown tables, one per file: the README embeds exactly this text."""
    out = []
    for table in CONTRACT.values():
        key = " + ".join(table.key)
        head = f"**{table.name}** (`{table.name}.csv|.parquet|.jsonl`; key `{key}`; entity `{table.entity}`"
        head += f"; lines of `{table.parent}`)" if table.parent else ")"
        if table.one_of:
            head += f" — at least one of {' / '.join(f'`{c}`' for c in table.one_of)} in the header"
        out += [head, "", "| column | type | required | allowed values |", "|---|---|---|---|"]
        for c in table.columns:
            allowed = ", ".join(f"`{v}`" for v in c.values) if c.values else KINDS[c.kind].describe
            out.append(f"| `{c.name}` | {c.sql_type} | {'yes' if c.required else ''} | {allowed} |")
        out.append("")
    return "\n".join(out).rstrip() + "\n"
