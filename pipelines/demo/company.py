"""Deterministic demo company: an AWRA snapshot with seeded problems and the QuickBooks company behind it."""

from __future__ import annotations

import json
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Literal, TextIO, TypedDict

import numpy as np
import polars as pl

from pipelines.config import DEMO_REALM_ID
from schemas.awra import APPROVAL_STATUSES, CONTRACT, POSTING_STATUSES

__all__ = [
    "ACCOUNT_INACTIVE",
    "ACCOUNT_MISSING",
    "CATEGORY_MISSING",
    "CLOSED_PERIOD",
    "COMPANY_FORMAT",
    "CURRENCY_MISMATCH",
    "DEFAULT_SIZES",
    "DOC_NUMBER_EXISTS",
    "FORMATS",
    "HOME_CURRENCY",
    "INCOMPLETE",
    "ITEM_INACTIVE",
    "ITEM_MISSING",
    "LINES_DO_NOT_SUM",
    "LINE_AMOUNT_MISMATCH",
    "NAME_EXISTS",
    "NEAR_DUPLICATE",
    "NOT_APPROVED",
    "NOT_POSTED",
    "PAYMENT_METHOD_MISSING",
    "PRESYNC_AGE_DAYS",
    "PROBLEMS",
    "TAX_CODE_MISSING",
    "UNBALANCED",
    "DemoSummary",
    "book_close_date",
    "demo_sizes",
    "presync_cutoff",
    "write_demo",
]

COMPANY_FORMAT = "synchealth-qbo-company/1"
FORMATS = ("csv", "parquet", "jsonl")
HOME_CURRENCY = "USD"
PRESYNC_AGE_DAYS = 21  # records dated before as_of minus this many days were synced by an earlier run
HISTORY_DAYS = 182  # transactions cover the six months before as_of

# Header records per table at the default size; `scale` multiplies all but the chart of accounts.
DEFAULT_SIZES: dict[str, int] = {
    "vendors": 300,
    "customers": 800,
    "items": 150,
    "accounts": 60,
    "purchase_orders": 2000,
    "bills": 6000,
    "invoices": 8000,
    "payments": 6000,
    "bill_payments": 3000,
    "journal_entries": 500,
}
# Below these a table cannot hold one clean pool plus one record of each of its seeded problems.
_MIN_SIZES = {
    "vendors": 30,
    "customers": 30,
    "items": 30,
    "purchase_orders": 40,
    "bills": 60,
    "invoices": 60,
    "payments": 40,
    "bill_payments": 40,
    "journal_entries": 40,
}

# Seeded problems, named as the readiness engine's reason codes.
NOT_APPROVED = "source_data.not_approved"
NOT_POSTED = "source_data.not_posted"
INCOMPLETE = "source_data.incomplete"
LINES_DO_NOT_SUM = "source_data.lines_do_not_sum"
LINE_AMOUNT_MISMATCH = "source_data.line_amount_mismatch"
UNBALANCED = "source_data.unbalanced"
CLOSED_PERIOD = "source_data.closed_period"
CURRENCY_MISMATCH = "source_data.currency_mismatch"
ACCOUNT_MISSING = "mapping.account_missing"
ACCOUNT_INACTIVE = "mapping.account_stale"
ITEM_MISSING = "mapping.item_missing"
ITEM_INACTIVE = "mapping.item_stale"
TAX_CODE_MISSING = "mapping.tax_code_missing"
CATEGORY_MISSING = "mapping.class_missing"
PAYMENT_METHOD_MISSING = "mapping.payment_method_missing"
NAME_EXISTS = "duplicate_risk.name_exists"
DOC_NUMBER_EXISTS = "duplicate_risk.doc_number_exists"
NEAR_DUPLICATE = "duplicate_risk.similar_transaction"

# Share of each table's records given each problem (at least one record each). A record gets at most one.
_DOC_RATES = {
    NOT_APPROVED: 0.03,
    NOT_POSTED: 0.02,
    INCOMPLETE: 0.015,
    LINES_DO_NOT_SUM: 0.015,
    LINE_AMOUNT_MISMATCH: 0.015,
    CLOSED_PERIOD: 0.015,
    CURRENCY_MISMATCH: 0.01,
    ITEM_MISSING: 0.015,
    ITEM_INACTIVE: 0.01,
    TAX_CODE_MISSING: 0.01,
    CATEGORY_MISSING: 0.01,
}
_EXPENSE_DOC_RATES = {**_DOC_RATES, ACCOUNT_MISSING: 0.015, ACCOUNT_INACTIVE: 0.01}
_RATES: dict[str, dict[str, float]] = {
    "vendors": {NOT_APPROVED: 0.03, INCOMPLETE: 0.015, NAME_EXISTS: 0.02},
    "customers": {NOT_APPROVED: 0.02, INCOMPLETE: 0.01},
    "items": {ITEM_MISSING: 0.03, ITEM_INACTIVE: 0.03},
    "purchase_orders": _EXPENSE_DOC_RATES,
    "bills": {**_EXPENSE_DOC_RATES, DOC_NUMBER_EXISTS: 0.015, NEAR_DUPLICATE: 0.015},
    "invoices": {**_DOC_RATES, DOC_NUMBER_EXISTS: 0.015, NEAR_DUPLICATE: 0.015},
    "payments": {
        NOT_APPROVED: 0.03,
        NOT_POSTED: 0.02,
        INCOMPLETE: 0.015,
        CLOSED_PERIOD: 0.015,
        CURRENCY_MISMATCH: 0.01,
        PAYMENT_METHOD_MISSING: 0.02,
    },
    "bill_payments": {
        NOT_APPROVED: 0.03,
        NOT_POSTED: 0.02,
        INCOMPLETE: 0.015,
        CLOSED_PERIOD: 0.015,
        CURRENCY_MISMATCH: 0.01,
    },
    "journal_entries": {
        NOT_APPROVED: 0.03,
        NOT_POSTED: 0.02,
        INCOMPLETE: 0.015,
        UNBALANCED: 0.04,
        CLOSED_PERIOD: 0.015,
        CURRENCY_MISMATCH: 0.01,
        ACCOUNT_MISSING: 0.015,
        ACCOUNT_INACTIVE: 0.01,
        CATEGORY_MISSING: 0.01,
    },
}
PROBLEMS: tuple[str, ...] = tuple(dict.fromkeys(p for rates in _RATES.values() for p in rates))

# -- reference data: the AWRA values and which of them QuickBooks knows ----------------------------------
_CLASSIFICATION = {
    "Bank": "Asset",
    "Accounts Receivable": "Asset",
    "Other Current Asset": "Asset",
    "Fixed Asset": "Asset",
    "Accounts Payable": "Liability",
    "Credit Card": "Liability",
    "Other Current Liability": "Liability",
    "Long Term Liability": "Liability",
    "Equity": "Equity",
    "Income": "Revenue",
    "Other Income": "Revenue",
    "Cost of Goods Sold": "Expense",
    "Expense": "Expense",
    "Other Expense": "Expense",
}
_ACCOUNTS: tuple[tuple[str, str, str], ...] = (
    ("1000", "Checking", "Bank"),
    ("1010", "Savings", "Bank"),
    ("1200", "Accounts Receivable", "Accounts Receivable"),
    ("1300", "Inventory Asset", "Other Current Asset"),
    ("1310", "Prepaid Expenses", "Other Current Asset"),
    ("1320", "Employee Advances", "Other Current Asset"),
    ("1500", "Vehicles", "Fixed Asset"),
    ("1510", "Field Equipment", "Fixed Asset"),
    ("1520", "Computer Equipment", "Fixed Asset"),
    ("1590", "Accumulated Depreciation", "Fixed Asset"),
    ("2000", "Accounts Payable", "Accounts Payable"),
    ("2100", "Company Credit Card", "Credit Card"),
    ("2200", "Accrued Liabilities", "Other Current Liability"),
    ("2210", "Accrued Payroll", "Other Current Liability"),
    ("2300", "Sales Tax Payable", "Other Current Liability"),
    ("2400", "Customer Deposits", "Other Current Liability"),
    ("2700", "Equipment Loan", "Long Term Liability"),
    ("3000", "Owner's Equity", "Equity"),
    ("3100", "Retained Earnings", "Equity"),
    ("4000", "Service Revenue", "Income"),
    ("4010", "Maintenance Contracts", "Income"),
    ("4020", "Installation Revenue", "Income"),
    ("4100", "Product Sales", "Income"),
    ("4200", "Freight Income", "Income"),
    ("5000", "Cost of Goods Sold", "Cost of Goods Sold"),
    ("5010", "Materials", "Cost of Goods Sold"),
    ("5020", "Subcontractors", "Cost of Goods Sold"),
    ("5030", "Freight In", "Cost of Goods Sold"),
    ("5040", "Direct Labor", "Cost of Goods Sold"),
    ("6000", "Advertising", "Expense"),
    ("6010", "Marketing Events", "Expense"),
    ("6100", "Office Supplies", "Expense"),
    ("6110", "Postage and Delivery", "Expense"),
    ("6120", "Printing and Reproduction", "Expense"),
    ("6150", "Field Tablet Leases", "Expense"),
    ("6200", "Travel", "Expense"),
    ("6210", "Travel - Meals", "Expense"),
    ("6220", "Travel - Lodging", "Expense"),
    ("6230", "Travel - Airfare", "Expense"),
    ("6240", "Travel - Mileage", "Expense"),
    ("6300", "Vehicle Fuel", "Expense"),
    ("6310", "Vehicle Repairs", "Expense"),
    ("6400", "Rent", "Expense"),
    ("6410", "Utilities", "Expense"),
    ("6420", "Telephone and Internet", "Expense"),
    ("6500", "Insurance", "Expense"),
    ("6510", "Workers' Compensation", "Expense"),
    ("6600", "Professional Fees", "Expense"),
    ("6610", "Legal Fees", "Expense"),
    ("6700", "Software Subscriptions", "Expense"),
    ("6800", "Tools and Small Equipment", "Expense"),
    ("6810", "Equipment Rental", "Expense"),
    ("6820", "Repairs and Maintenance", "Expense"),
    ("6900", "Bank Service Charges", "Expense"),
    ("6910", "Licenses and Permits", "Expense"),
    ("6920", "Training", "Expense"),
    ("6940", "Drone Survey Costs", "Expense"),
    ("7000", "Depreciation Expense", "Expense"),
    ("7100", "Interest Expense", "Other Expense"),
    ("7250", "Intercompany Charges - EU", "Other Expense"),
)
_GAP_ACCOUNTS = ("6150", "6940", "7250")  # in AWRA, nowhere in QuickBooks
_INACTIVE_ACCOUNTS = ("6120", "6240")  # in QuickBooks, but made inactive there
_NOT_FOR_JOURNALS = ("1200", "2000")  # A/R and A/P lines in a journal need a customer or vendor in QBO
_BANK_ACCOUNTS = ("1000", "1010")
_QBO_ONLY_ACCOUNTS = (
    ("Undeposited Funds", "Other Current Asset"),
    ("Opening Balance Equity", "Equity"),
    ("Uncategorized Expense", "Expense"),
    ("Uncategorized Income", "Income"),
)

# prefix, name, AWRA item type, price range in cents, how it is counted, income account
_ITEM_FAMILIES: tuple[tuple[str, str, str, int, int, str, str], ...] = (
    ("WID", "Widget", "inventory", 1_500, 9_000, "units", "4100"),
    ("VLV", "Valve", "inventory", 4_000, 45_000, "units", "4100"),
    ("PMP", "Pump", "inventory", 35_000, 250_000, "few", "4100"),
    ("SEN", "Sensor", "inventory", 6_000, 60_000, "units", "4100"),
    ("FLT", "Filter", "non_inventory", 800, 6_000, "units", "4100"),
    ("GSK", "Gasket", "non_inventory", 200, 2_500, "units", "4100"),
    ("BRK", "Bracket", "non_inventory", 300, 4_000, "units", "4100"),
    ("CBL", "Cable", "non_inventory", 500, 8_000, "units", "4100"),
    ("SVC", "Field Service", "service", 9_500, 17_500, "hours", "4000"),
    ("LAB", "Labor", "service", 6_500, 12_000, "hours", "4020"),
    ("INS", "Inspection", "service", 15_000, 45_000, "few", "4000"),
    ("MNT", "Maintenance Plan", "service", 50_000, 300_000, "few", "4010"),
)
_QTY_KINDS = ("units", "hours", "few")
_GOODS_GRADES = ("Steel", "Brass", "Stainless", "Heavy Duty", "Compact", "Standard")
_SERVICE_GRADES = ("Standard", "After Hours", "Weekend", "Emergency", "Senior Tech")
_EXPENSE_ACCOUNT_BY_TYPE = {"inventory": "5000", "non_inventory": "5010", "service": "5040"}
_QBO_ITEM_TYPE = {"inventory": "Inventory", "non_inventory": "NonInventory", "service": "Service"}
_QBO_ONLY_ITEMS = (("Hours", "Service"), ("Services", "Service"), ("Shipping", "NonInventory"))

_TAX_CODES = ("TAX", "NON", "GST", "VAT20")  # the last two exist in AWRA only
_GAP_TAX_CODES = (2, 3)
_CLASSES = ("Marketing", "Operations", "Field Services", "Administration")
_DEPARTMENTS = ("East", "West", "Central")
_CATEGORIES = (*_CLASSES, *_DEPARTMENTS, "Northwest", "R&D Lab")  # the last two exist in AWRA only
_CLEAN_CATEGORIES = len(_CLASSES) + len(_DEPARTMENTS)
_GAP_CATEGORIES = (_CLEAN_CATEGORIES, _CLEAN_CATEGORIES + 1)
_PAYMENT_METHODS = ("Check", "ACH", "Wire", "Credit Card", "Venmo", "Crypto")  # last two: AWRA only
_CUSTOMER_METHODS = (0, 1, 2, 3)
_VENDOR_METHODS = (0, 1, 2)
_GAP_PAYMENT_METHODS = (4, 5)
_QBO_PAYMENT_METHODS = (
    ("Cash", "NON_CREDIT_CARD"),
    ("Check", "NON_CREDIT_CARD"),
    ("ACH", "NON_CREDIT_CARD"),
    ("Wire", "NON_CREDIT_CARD"),
    ("Credit Card", "CREDIT_CARD"),
)
_TERMS = (("Due on receipt", 0), ("Net 15", 15), ("Net 30", 30), ("Net 45", 45), ("Net 60", 60))
_CURRENCIES = (HOME_CURRENCY, "EUR", "CAD")
_UNAPPROVED = (0, 1, 3)  # positions of draft, pending, rejected in APPROVAL_STATUSES
_APPROVED = APPROVAL_STATUSES.index("approved")
_POSTED = POSTING_STATUSES.index("posted")
_UNPOSTED = POSTING_STATUSES.index("unposted")

_AP_OWNERS = ("ap.clerk@acme.example", "ap.lead@acme.example", "purchasing@acme.example")
_AR_OWNERS = ("ar.lead@acme.example", "ar.clerk@acme.example", "billing@acme.example")
_GL_OWNERS = ("gl.accountant@acme.example", "controller@acme.example")
_EXPENSE_MEMOS = (
    "Monthly service",
    "Field crew supplies",
    "Site visit",
    "Quarterly renewal",
    "Emergency repair",
    "Replacement parts",
    "Crew lunch",
    "Job site rental",
)
_JOURNAL_MEMOS = (
    "Monthly depreciation",
    "Accrued payroll",
    "Prepaid insurance amortization",
    "Reclass to correct class",
    "Accrued utilities",
    "Month-end accrual",
)
_EMPLOYEES = (("Dana", "Whitaker"), ("Luis", "Ortega"), ("Priya", "Raman"), ("Sam", "Kowalski"))

_NAME_FIRST = (
    "Summit", "Harbor", "Granite", "Cedar", "Maple", "Pioneer", "Liberty", "Northstar", "Blue Ridge",
    "Silverline", "Redwood", "Atlas", "Beacon", "Crescent", "Evergreen", "Falcon", "Frontier", "Goldleaf",
    "Highland", "Ironwood", "Juniper", "Keystone", "Lakeside", "Meridian", "Oakridge", "Pinnacle",
    "Prairie", "Quarry", "Riverbend", "Sierra", "Stonegate", "Sunrise", "Timberline", "Trident", "Valley",
    "Westfield", "Willow", "Copperline", "Anchor", "Bridgeport", "Canyon", "Delta", "Eastgate", "Foxhill",
    "Glacier", "Horizon", "Ironbridge", "Jetstream", "Kingsley", "Lighthouse", "Mesa", "Northgate",
    "Orchard", "Parkside", "Ridgeway", "Sandstone", "Tidewater", "Union", "Vanguard", "Whitestone",
)  # fmt: skip
_NAME_TRADE = (
    "Industrial", "Mechanical", "Electric", "Supply", "Logistics", "Fabrication", "Engineering",
    "Controls", "Hydraulics", "Equipment", "Tooling", "Packaging", "Building", "Facilities", "Energy",
    "Safety", "Water", "Air Systems", "Fleet", "Instruments", "Plumbing", "Roofing", "Metals", "Pipe",
    "Welding", "Coatings", "Electrical", "HVAC", "Lighting", "Pumps", "Compressors", "Rentals", "Staffing",
    "Freight", "Office", "Uniform", "Landscaping", "Concrete", "Paving", "Glass", "Signs", "Printing",
    "Software", "Telecom", "Security",
)  # fmt: skip
_NAME_REGION = (
    "", "Midwest", "Pacific", "Northeast", "Southwest", "Gulf", "Mountain", "Texas", "Ohio", "Carolina",
    "Atlantic", "Great Lakes",
)  # fmt: skip
_NAME_SUFFIX = (
    "Co.", "Inc.", "LLC", "Group", "Partners", "Corp.", "Ltd.", "& Sons", "Services", "Solutions",
    "Systems", "Works",
)  # fmt: skip

# Fields written as JSON numbers in the company file; they are built as decimal text, never as floats.
_NUMERIC_FIELDS = (
    "Amount",
    "TotalAmt",
    "Balance",
    "UnitPrice",
    "Qty",
    "UnappliedAmt",
    "RateValue",
    "PurchaseCost",
    "QtyOnHand",
)
_NUMBER_PATTERN = r'"(' + "|".join(_NUMERIC_FIELDS) + r')":"(-?\d+(?:\.\d+)?)"'
_NULL_FIELD_PATTERN = r',"[A-Za-z]+":null'
_QBO_TIME = "%Y-%m-%dT%H:%M:%S-08:00"
_QBO_OFFSET_SECONDS = 8 * 3600
_SYNC_DELAY_SECONDS = 1800  # the earlier sync ran half an hour after the record was last changed
_EPOCH = date(1970, 1, 1)


class _KeepOrder(TypedDict):
    how: Literal["left"]
    maintain_order: Literal["left"]


# Left joins keep the left frame's row order: the files' bytes depend on it.
_KEEP_ORDER: _KeepOrder = {"how": "left", "maintain_order": "left"}
_DAY = 86_400


@dataclass(frozen=True)
class DemoSummary:
    """What write_demo wrote: rows per table, the seeded problems by reason code, and the file paths.

    `problems` maps a reason code to the keys (`<entity>:<id>`) of the records that carry it; a record
    carries at most one. Records that use a reference value QuickBooks lacks (or has inactive) are listed
    under that mapping problem, and so are the item records themselves. `presynced` counts, per entity,
    the records already in the QuickBooks company with our source marker.
    """

    out_dir: Path
    snapshot_dir: Path
    company_file: Path
    paths: tuple[Path, ...]
    seed: int
    scale: int | None
    as_of: date
    book_close_date: date
    counts: dict[str, int]
    problems: dict[str, tuple[str, ...]]
    presynced: dict[str, int]
    reference_gaps: dict[str, tuple[str, ...]]
    inactive_in_qbo: dict[str, tuple[str, ...]]

    @property
    def problem_counts(self) -> dict[str, int]:
        return {name: len(keys) for name, keys in self.problems.items()}

    @property
    def records(self) -> int:
        """Header records written (line rows not counted): the number `scale` aims at."""
        return sum(n for name, n in self.counts.items() if not CONTRACT[name].is_lines)


def demo_sizes(scale: int | None = None) -> dict[str, int]:
    """Header records per table: the default company, or about `scale` records in total (lines excluded)."""
    if scale is None:
        return dict(DEFAULT_SIZES)
    if scale < 1:
        raise ValueError(f"scale must be a positive number of records, not {scale}")
    fixed = DEFAULT_SIZES["accounts"]  # a chart of accounts does not grow with volume
    factor = max(scale - fixed, 0) / (sum(DEFAULT_SIZES.values()) - fixed)
    return {
        name: n if name == "accounts" else max(_MIN_SIZES[name], round(n * factor)) for name, n in DEFAULT_SIZES.items()
    }


def book_close_date(as_of: date) -> date:
    """The QuickBooks book close date: the last day of the month two months before as_of."""
    last_month_end = as_of.replace(day=1) - timedelta(days=1)
    return last_month_end.replace(day=1) - timedelta(days=1)


def presync_cutoff(as_of: date) -> date:
    """Clean records dated before this day are already in QuickBooks with our marker."""
    return as_of - timedelta(days=PRESYNC_AGE_DAYS)


def write_demo(
    out_dir: Path,
    *,
    as_of: date,
    seed: int = 7,
    scale: int | None = None,
    fmt: str = "csv",
    realm_id: str = DEMO_REALM_ID,
    progress: Callable[[str], None] | None = None,
) -> DemoSummary:
    """Write out_dir/awra/<table>.<fmt> and out_dir/qbo-company.json; equal arguments give equal bytes."""
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}, not {fmt!r}")
    if seed < 0:
        raise ValueError(f"seed must be a whole number >= 0, not {seed}")
    say = progress or (lambda _message: None)
    out_dir = Path(out_dir)
    demo = _generate(seed, demo_sizes(scale), as_of, say)
    frames = _awra_frames(demo)
    snapshot_dir = out_dir / "awra"
    paths = _write_snapshot(snapshot_dir, frames, fmt, say)
    company_file = out_dir / "qbo-company.json"
    _write_company(company_file, demo, realm_id, say)
    counts = {name: frame.height for name, frame in frames.items()}
    return _summary(demo, out_dir, snapshot_dir, company_file, (*paths, company_file), counts, seed, scale)


# -- calendar, random streams, small helpers ---------------------------------------------------------------
@dataclass(frozen=True)
class _Calendar:
    """The demo's dates as days since 1970-01-01, so whole columns compare as integers."""

    as_of: int
    close: int
    cutoff: int

    @classmethod
    def of(cls, as_of: date) -> _Calendar:
        return cls(_days(as_of), _days(book_close_date(as_of)), _days(presync_cutoff(as_of)))


def _days(day: date) -> int:
    return (day - _EPOCH).days


def _stream(seed: int, name: str) -> np.random.Generator:
    # One independent stream per table, so a change to one table's recipe leaves the others' bytes alone.
    return np.random.default_rng([seed, zlib.crc32(name.encode())])


def _pick(values: Sequence[str] | pl.Series, idx: np.ndarray) -> pl.Series:
    """values[idx] as a Series, null where idx is -1 (no value)."""
    source = values if isinstance(values, pl.Series) else pl.Series(list(values), dtype=pl.String)
    index = pl.Series(idx, dtype=pl.Int64)
    return source.gather(pl.select(pl.when(index >= 0).then(index)).to_series())


def _id_text(qbo: np.ndarray | pl.Series) -> pl.Series:
    """QuickBooks Ids as text, null where the record has none (-1)."""
    ids = pl.Series(qbo, dtype=pl.Int64)
    return pl.select(pl.when(ids >= 0).then(ids.cast(pl.String))).to_series()


def _null_where(values: pl.Series, mask: np.ndarray) -> pl.Series:
    return pl.select(pl.when(pl.Series(mask)).then(None).otherwise(values)).to_series().alias(values.name)


def _ids(prefix: str, n: int, width: int) -> pl.Series:
    """PREFIX-000001 ... for n records, zero-padded so ids sort in creation order."""
    digits = pl.int_range(1, n + 1, eager=True).cast(pl.String).str.zfill(max(width, len(str(n))))
    return (prefix + "-" + digits).alias("id")


def _serials(prefix: str, first: int, n: int) -> pl.Series:
    return (prefix + pl.int_range(first, first + n, eager=True).cast(pl.String)).alias("number")


def _label(values: Sequence[str], column: str) -> pl.Expr:
    """The label at each position held in an integer column; null for -1."""
    return pl.col(column).replace_strict(dict(enumerate(values)), default=None, return_dtype=pl.String)


def _segment_starts(counts: np.ndarray) -> np.ndarray:
    return np.cumsum(counts) - counts


def _line_numbers(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(parent index, 1-based line number) of every line, for headers with `counts` lines each."""
    parent = np.repeat(np.arange(len(counts)), counts)
    return parent, np.arange(len(parent)) - _segment_starts(counts)[parent] + 1


def _skewed_cents(rng: np.random.Generator, n: int, low: int, high: int) -> np.ndarray:
    # The product of two uniform draws favours small amounts, as real spend does; integers only.
    return low + (high - low) * rng.integers(0, 1000, n) * rng.integers(0, 1000, n) // 1_000_000


def _split_cents(rng: np.random.Generator, totals: np.ndarray, parts: np.ndarray) -> np.ndarray:
    """Split each total into `parts` positive whole-cent amounts that add up to it exactly."""
    group = np.repeat(np.arange(len(totals)), parts)
    weights = rng.integers(1, 100, len(group))
    starts = _segment_starts(parts)
    running = np.cumsum(weights)
    within = running - (running[starts] - weights[starts])[group]
    upto = totals[group] * within // within[starts + parts - 1][group]
    before = np.roll(upto, 1)
    before[starts] = 0
    return upto - before


def _office_seconds(rng: np.random.Generator, days: np.ndarray) -> np.ndarray:
    """A time on each day (UTC) that falls in office hours on the US west coast, 07:00-16:00."""
    return days * _DAY + rng.integers(15 * 3600, 24 * 3600, len(days))


def _days_back(rng: np.random.Generator, n: int, cal: _Calendar, newest: int, oldest: int) -> np.ndarray:
    return cal.as_of - rng.integers(newest, oldest + 1, n)


def _assign_problems(
    rng: np.random.Generator, rates: dict[str, float], default: np.ndarray, closed: np.ndarray | None = None
) -> np.ndarray:
    """A problem per record as its position in PROBLEMS (-1: clean): a share of the eligible records each."""
    n = len(default)
    problem = np.full(n, -1)
    for name, rate in rates.items():
        if name != CLOSED_PERIOD:
            eligible = default
        elif closed is None:
            raise ValueError("a closed-period rate needs to know which records are dated in a closed month")
        else:
            eligible = closed
        pool = np.flatnonzero(eligible & (problem < 0))
        chosen = rng.choice(pool, min(len(pool), max(1, round(rate * n))), replace=False)
        problem[chosen] = PROBLEMS.index(name)
    return problem


def _where(problem: np.ndarray, name: str) -> np.ndarray:
    return np.flatnonzero(problem == PROBLEMS.index(name))


def _clean(problem: np.ndarray) -> np.ndarray:
    return problem < 0


def _problem_names(problem: np.ndarray) -> pl.Series:
    names = dict(enumerate(PROBLEMS))
    return pl.Series("problem", problem).replace_strict(names, default=None, return_dtype=pl.String)


def _qbo_ids(presync: np.ndarray) -> np.ndarray:
    """QuickBooks Ids 1..k for the records already synced, in record order; -1 for the others."""
    return np.where(presync, np.cumsum(presync), -1)


# -- reference data ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Reference:
    """Accounts and items (typed frames, row = index) and the index pools lines draw from."""

    accounts: pl.DataFrame
    items: pl.DataFrame
    expense_accounts: np.ndarray
    journal_accounts: np.ndarray
    bank_accounts: np.ndarray
    gap_accounts: np.ndarray
    inactive_accounts: np.ndarray
    clean_items: np.ndarray
    gap_items: np.ndarray
    inactive_items: np.ndarray

    def account(self, code: str) -> int:
        return self.accounts["code"].to_list().index(code)


def _reference(seed: int, n_items: int, cal: _Calendar) -> _Reference:
    accounts = _accounts()
    items = _items(_stream(seed, "items"), n_items, cal)
    role, kind = accounts["role"].to_numpy(), accounts["type"].to_numpy()
    mapped = role == "mapped"
    codes = accounts["code"].to_numpy()
    item_role = items["role"].to_numpy()
    return _Reference(
        accounts=accounts,
        items=items,
        expense_accounts=np.flatnonzero(
            mapped & np.isin(kind, ("Expense", "Cost of Goods Sold")) & ~np.isin(codes, ("5000", "5040"))
        ),
        journal_accounts=np.flatnonzero(mapped & ~np.isin(codes, _NOT_FOR_JOURNALS)),
        bank_accounts=np.flatnonzero(np.isin(codes, _BANK_ACCOUNTS)),
        gap_accounts=np.flatnonzero(role == "missing"),
        inactive_accounts=np.flatnonzero(role == "inactive"),
        clean_items=np.flatnonzero(item_role == "mapped"),
        gap_items=np.flatnonzero(item_role == "missing"),
        inactive_items=np.flatnonzero(item_role == "inactive"),
    )


def _accounts() -> pl.DataFrame:
    frame = pl.DataFrame(_ACCOUNTS, schema=["code", "name", "type"], orient="row")
    role = (
        pl.when(pl.col("code").is_in(_GAP_ACCOUNTS)).then(pl.lit("missing"))
        .when(pl.col("code").is_in(_INACTIVE_ACCOUNTS)).then(pl.lit("inactive"))
        .otherwise(pl.lit("mapped"))
    )  # fmt: skip
    frame = frame.with_columns(classification=pl.col("type").replace_strict(_CLASSIFICATION), role=role)
    return frame.with_columns(qbo=pl.Series(_qbo_ids(frame["role"].to_numpy() != "missing")))


def _items(rng: np.random.Generator, n: int, cal: _Calendar) -> pl.DataFrame:
    columns = ["prefix", "label", "type", "low", "high", "qty_kind", "income_code"]
    families = pl.DataFrame(_ITEM_FAMILIES, schema=columns, orient="row").with_row_index("family")
    span, first = (900, 100) if n * 4 <= len(families) * 900 else (9000, 1000)  # WID-220, or WID-2204
    chosen = np.sort(rng.choice(len(families) * span, n, replace=False))
    family = chosen // span
    low, high = families["low"].to_numpy()[family], families["high"].to_numpy()[family]
    price = rng.integers(low // 5, high // 5) * 5
    grade = rng.integers(0, len(_GOODS_GRADES) * len(_SERVICE_GRADES), n)
    problem = _assign_problems(rng, _RATES["items"], np.ones(n, dtype=bool))
    frame = pl.DataFrame(
        {
            "family": family.astype(np.uint32),
            "number": first + chosen % span,
            "price": price,
            "cost": price * rng.integers(55, 80, n) // 100,
            "grade": grade,
            "updated": _office_seconds(rng, _days_back(rng, n, cal, 200, 730)),
            "problem": _problem_names(problem),
        }
    ).join(families, on="family", **_KEEP_ORDER)
    service = pl.col("type") == "service"
    grade_name = (
        pl.when(service).then(_label(_SERVICE_GRADES, "service_grade")).otherwise(_label(_GOODS_GRADES, "goods_grade"))
    )
    role = (
        pl.when(pl.col("problem") == ITEM_MISSING).then(pl.lit("missing"))
        .when(pl.col("problem") == ITEM_INACTIVE).then(pl.lit("inactive"))
        .otherwise(pl.lit("mapped"))
    )  # fmt: skip
    frame = frame.with_columns(
        service_grade=pl.col("grade") % len(_SERVICE_GRADES), goods_grade=pl.col("grade") % len(_GOODS_GRADES)
    ).with_columns(
        sku=pl.format("{}-{}", "prefix", "number"),
        name=pl.format("{} {} - {}", "label", "number", grade_name),
        expense_code=pl.col("type").replace_strict(_EXPENSE_ACCOUNT_BY_TYPE),
        qty_kind=pl.col("qty_kind").replace_strict(_QTY_KINDS, range(len(_QTY_KINDS)), return_dtype=pl.Int64),
        role=role,
    )
    return frame.with_columns(qbo=pl.Series(_qbo_ids(frame["role"].to_numpy() != "missing"))).select(
        "sku", "name", "type", "income_code", "expense_code", "price", "cost", "qty_kind", "updated", "role",
        "problem", "qbo",
    )  # fmt: skip


# -- vendors and customers --------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Parties:
    """Vendors or customers: the typed frame and the index pools transactions draw their party from."""

    table: str
    entity: str
    frame: pl.DataFrame
    clean: np.ndarray  # usable by a transaction of the last three weeks
    synced: np.ndarray  # already in QuickBooks: usable by any transaction
    synced_mask: np.ndarray
    qbo_only: pl.Series  # names of objects that exist only in QuickBooks (entered there by hand)


def _company_names(rng: np.random.Generator, n: int) -> pl.Series:
    """n distinct company names like "Summit Hydraulics LLC" (a region is added only when needed)."""
    base = len(_NAME_FIRST) * len(_NAME_TRADE) * len(_NAME_SUFFIX)
    regions = min(len(_NAME_REGION), -(-4 * n // base))
    if n > base * len(_NAME_REGION):
        raise ValueError(f"the demo has names for at most {base * len(_NAME_REGION):,} vendors and customers")
    chosen = rng.choice(base * regions, n, replace=False)
    parts = pl.DataFrame(
        {
            "first": chosen % len(_NAME_FIRST),
            "trade": chosen // len(_NAME_FIRST) % len(_NAME_TRADE),
            "suffix": chosen // (len(_NAME_FIRST) * len(_NAME_TRADE)) % len(_NAME_SUFFIX),
            "region": chosen // base,
        }
    )
    region = _label(_NAME_REGION, "region")
    return parts.select(
        pl.concat_str(
            _label(_NAME_FIRST, "first"),
            _label(_NAME_TRADE, "trade"),
            pl.when(pl.col("region") > 0).then(region),
            _label(_NAME_SUFFIX, "suffix"),
            separator=" ",
            ignore_nulls=True,
        ).alias("name")
    ).to_series()


def _parties(
    seed: int, table: str, entity: str, prefix: str, names: pl.Series, qbo_only: pl.Series, cal: _Calendar
) -> _Parties:
    rng = _stream(seed, table)
    n = len(names)
    new = rng.random(n) < 0.05  # added in the last three weeks: not in QuickBooks yet
    updated = np.where(
        new,
        _office_seconds(rng, _days_back(rng, n, cal, 1, PRESYNC_AGE_DAYS - 1)),
        _office_seconds(rng, _days_back(rng, n, cal, 200, 720)),
    )
    problem = _assign_problems(rng, _RATES[table], np.ones(n, dtype=bool))
    approval = np.full(n, _APPROVED)
    unapproved = _where(problem, NOT_APPROVED)
    approval[unapproved] = rng.choice(_UNAPPROVED, len(unapproved))
    synced = _clean(problem) & ~new
    frame = pl.DataFrame(
        {
            "id": _ids(prefix, n, 5),
            "name": _null_where(names.alias("name"), problem == PROBLEMS.index(INCOMPLETE)),
            "approval": approval,
            "updated": updated,
            "problem": _problem_names(problem),
            "presync": synced,
            "qbo": _qbo_ids(synced),
        }
    )
    clean = np.flatnonzero(_clean(problem))
    return _Parties(table, entity, frame, clean, np.flatnonzero(synced), synced, qbo_only)


def _party_names(seed: int, sizes: dict[str, int]) -> dict[str, pl.Series]:
    """Names for AWRA vendors and customers and for QuickBooks-only ones, all distinct."""
    extra_vendors, extra_customers = max(2, sizes["vendors"] // 50), max(2, sizes["customers"] // 50)
    counts = {"vendors": sizes["vendors"], "customers": sizes["customers"],
              "qbo_vendors": extra_vendors, "qbo_customers": extra_customers}  # fmt: skip
    names = _company_names(_stream(seed, "names"), sum(counts.values()))
    out, start = {}, 0
    for key, n in counts.items():
        out[key] = names.slice(start, n)
        start += n
    return out


def _vendor_name_clashes(vendors: _Parties) -> pl.Series:
    """Names of vendors that QuickBooks already has as a Customer's DisplayName (6240 on create)."""
    return vendors.frame.filter(pl.col("problem") == NAME_EXISTS)["name"]


# -- transactions: shared pieces --------------------------------------------------------------------------
@dataclass(frozen=True)
class _Kind:
    """What distinguishes one transaction table from another."""

    table: str
    entity: str
    prefix: str
    owners: tuple[str, ...]
    incomplete: tuple[str, ...]  # the ways a record of this table can be incomplete
    sales: bool = False


_PURCHASE_ORDER = _Kind("purchase_orders", "purchase_order", "PO", _AP_OWNERS, ("party", "date", "line"))
_BILL = _Kind("bills", "bill", "BILL", _AP_OWNERS, ("party", "date", "line"))
_INVOICE = _Kind("invoices", "invoice", "INV", _AR_OWNERS, ("party", "date", "line"), sales=True)
_PAYMENT = _Kind("payments", "payment", "PAY", _AR_OWNERS, ("party", "date"))
_BILL_PAYMENT = _Kind("bill_payments", "bill_payment", "BP", _AP_OWNERS, ("party", "link"))
_JOURNAL = _Kind("journal_entries", "journal_entry", "JE", _GL_OWNERS, ("date", "line"))


@dataclass(frozen=True)
class _Records:
    """One generated transaction table: typed header and line frames, and QuickBooks-only look-alikes."""

    kind: _Kind
    head: pl.DataFrame
    lines: pl.DataFrame | None = None
    lookalikes: pl.DataFrame | None = None


def _header(rng: np.random.Generator, day: np.ndarray, owners: tuple[str, ...]) -> dict[str, np.ndarray]:
    """Header columns of clean, approved and posted records dated `day`."""
    n = len(day)
    return {
        "day": day,
        "day_missing": np.zeros(n, dtype=bool),
        "due": day + np.array([15, 30, 45, 60])[rng.integers(0, 4, n)],
        "currency": np.zeros(n, dtype=np.int64),
        "approval": np.full(n, _APPROVED),
        "posting": np.full(n, _POSTED),
        "owner": rng.integers(0, len(owners), n),
        "updated": _office_seconds(rng, day),
    }


def _parties_for(rng: np.random.Generator, day: np.ndarray, parties: _Parties, cal: _Calendar) -> np.ndarray:
    # Older records use parties already in QuickBooks; recent ones may use a party added since.
    n = len(day)
    recent = parties.clean[rng.integers(0, len(parties.clean), n)]
    synced = parties.synced[rng.integers(0, len(parties.synced), n)]
    return np.where(day >= cal.cutoff, recent, synced)


def _problems_for(
    rng: np.random.Generator, table: str, day: np.ndarray, synced_party: np.ndarray, cal: _Calendar
) -> np.ndarray:
    # A problem record has exactly one problem: only closed-period records are dated on or before the
    # close date, and every problem record's party is already in QuickBooks.
    open_period = day > cal.close
    return _assign_problems(rng, _RATES[table], open_period & synced_party, ~open_period & synced_party)


def _seed_header_problems(
    rng: np.random.Generator, problem: np.ndarray, head: dict[str, np.ndarray], cal: _Calendar
) -> None:
    unapproved = _where(problem, NOT_APPROVED)
    head["approval"][unapproved] = rng.choice(_UNAPPROVED, len(unapproved))
    head["posting"][_where(problem, NOT_POSTED)] = _UNPOSTED
    foreign = _where(problem, CURRENCY_MISMATCH)
    head["currency"][foreign] = rng.integers(1, len(_CURRENCIES), len(foreign))
    late = _where(problem, CLOSED_PERIOD)  # keyed in the last three weeks, dated in a closed month
    head["updated"][late] = _office_seconds(rng, _days_back(rng, len(late), cal, 1, PRESYNC_AGE_DAYS - 1))


def _seed_incomplete(
    rng: np.random.Generator,
    problem: np.ndarray,
    head: dict[str, np.ndarray],
    lines: dict[str, np.ndarray] | None,
    ways: tuple[str, ...],
) -> None:
    records = _where(problem, INCOMPLETE)
    way = rng.integers(0, len(ways), len(records))
    for i, what in enumerate(ways):
        chosen = records[way == i]
        if what == "date":
            head["day_missing"][chosen] = True
        elif what == "line" and lines is not None:  # a line with neither an item nor an account
            first = lines["start"][chosen]
            lines["item"][first] = -1
            lines["account"][first] = -1
        else:
            head[what][chosen] = -1


def _seed_line_problems(
    rng: np.random.Generator, problem: np.ndarray, lines: dict[str, np.ndarray], ref: _Reference
) -> None:
    """Each problem is put on the record's first line; qty x unit price stays equal to the amount."""
    first = lines["start"]
    for name in (LINE_AMOUNT_MISMATCH, UNBALANCED):
        at = first[_where(problem, name)]
        lines["amount"][at] += rng.integers(100, 5000, len(at))
    swaps = (
        (ITEM_MISSING, ref.gap_items, "item", "account"),
        (ITEM_INACTIVE, ref.inactive_items, "item", "account"),
        (ACCOUNT_MISSING, ref.gap_accounts, "account", "item"),
        (ACCOUNT_INACTIVE, ref.inactive_accounts, "account", "item"),
        (TAX_CODE_MISSING, np.array(_GAP_TAX_CODES), "tax", None),
        (CATEGORY_MISSING, np.array(_GAP_CATEGORIES), "category", None),
    )
    for name, pool, field, cleared in swaps:
        at = first[_where(problem, name)]
        if len(at):
            lines[field][at] = rng.choice(pool, len(at))
            if cleared:
                lines[cleared][at] = -1


def _frame(columns: dict[str, np.ndarray | pl.Series], problem: np.ndarray, presync: np.ndarray) -> pl.DataFrame:
    """A typed header frame: the columns, the problem's name (null when clean) and the QuickBooks Id."""
    extra = {"problem": _problem_names(problem), "presync": presync, "qbo": _qbo_ids(presync)}
    return pl.DataFrame({**columns, **extra})


def _lines_frame(lines: dict[str, np.ndarray]) -> pl.DataFrame:
    return pl.DataFrame({k: v for k, v in lines.items() if k != "start"})


# -- purchase orders, bills, invoices ---------------------------------------------------------------------
def _document_lines(
    rng: np.random.Generator, counts: np.ndarray, ref: _Reference, sales: bool
) -> dict[str, np.ndarray]:
    parent, line_no = _line_numbers(counts)
    m = len(parent)
    is_item = np.ones(m, dtype=bool) if sales else rng.random(m) < 0.55
    item = np.where(is_item, ref.clean_items[rng.integers(0, len(ref.clean_items), m)], -1)
    account = np.where(is_item, -1, ref.expense_accounts[rng.integers(0, len(ref.expense_accounts), m)])
    known = np.maximum(item, 0)
    counted = np.where(is_item, ref.items["qty_kind"].to_numpy()[known], -1)
    qty = np.select(
        [counted == _QTY_KINDS.index(kind) for kind in ("units", "hours", "few")],
        [rng.integers(1, 25, m) * 100, rng.integers(1, 33, m) * 25, rng.integers(1, 4, m) * 100],
        100,
    )  # in hundredths: quarter hours for services, whole units for goods, 1.00 on account lines
    item_price = ref.items["price" if sales else "cost"].to_numpy()[known]
    price = np.where(is_item, item_price, _skewed_cents(rng, m, 1_500, 400_000))
    return {
        "start": _segment_starts(counts),
        "parent": parent,
        "line_no": line_no,
        "item": item,
        "account": account,
        "qty": qty,
        "price": price,
        "amount": (qty * price + 50) // 100,  # whole cents, half up
        "tax": np.where(rng.random(m) < 0.7, 0, 1) if sales else np.ones(m, dtype=np.int64),
        "category": rng.integers(0, _CLEAN_CATEGORIES, m),
        "memo": rng.integers(0, len(_EXPENSE_MEMOS), m),
    }


def _link_bills_to_orders(
    rng: np.random.Generator, day: np.ndarray, party: np.ndarray, orders: _Records, cal: _Calendar
) -> np.ndarray:
    """About 30% of bills come from a clean purchase order: same vendor, dated on or after it."""
    clean = np.flatnonzero(orders.head["problem"].is_null().to_numpy())
    linked = min(len(clean), round(0.3 * len(day)))
    chosen = rng.choice(clean, linked, replace=False)
    after_order = orders.head["day"].to_numpy()[chosen] + rng.integers(0, 30, linked)
    day[:linked] = np.minimum(after_order, cal.as_of - 1)
    party[:linked] = orders.head["party"].to_numpy()[chosen]
    link = np.full(len(day), -1)
    link[:linked] = chosen
    return link


def _document_numbers(rng: np.random.Generator, kind: _Kind, n: int) -> pl.Series:
    if kind is _INVOICE:
        return _serials("", 100_001, n)
    if kind is _PURCHASE_ORDER:
        return _serials("", 45_000_001, n)
    # A vendor's own invoice number: distinct across all bills, in a few vendor styles.
    numbers = rng.choice(max(90_000, 4 * n), n, replace=False) + 10_000
    styles = pl.Series(["INV-", "", "SI-", "A"]).gather(rng.integers(0, 4, n))
    return (styles + pl.Series(numbers).cast(pl.String)).alias("number")


def _documents(
    seed: int, kind: _Kind, n: int, cal: _Calendar, parties: _Parties, ref: _Reference,
    orders: _Records | None = None,
) -> _Records:  # fmt: skip
    rng = _stream(seed, kind.table)
    day = _days_back(rng, n, cal, 1, HISTORY_DAYS)
    party = _parties_for(rng, day, parties, cal)
    link = _link_bills_to_orders(rng, day, party, orders, cal) if orders is not None else np.full(n, -1)
    order = np.argsort(day, kind="stable")
    day, party, link = day[order], party[order], link[order]
    lines = _document_lines(rng, rng.integers(1, 6, n), ref, kind.sales)
    head = {**_header(rng, day, kind.owners), "party": party, "link": link}
    synced_party = parties.synced_mask[party]
    problem = _problems_for(rng, kind.table, day, synced_party, cal)
    _seed_header_problems(rng, problem, head, cal)
    _seed_incomplete(rng, problem, head, lines, kind.incomplete)
    _seed_line_problems(rng, problem, lines, ref)
    head["total"] = np.add.reduceat(lines["amount"], lines["start"])
    _seed_unsummed_totals(rng, problem, head["total"])
    presync = _clean(problem) & (day < cal.cutoff) & synced_party
    columns: dict[str, np.ndarray | pl.Series] = {
        "id": _ids(kind.prefix, n, 6),
        "number": _document_numbers(rng, kind, n),
        **head,
    }
    frame = _frame(columns, problem, presync)
    lookalikes = None if kind is _PURCHASE_ORDER else _lookalikes(rng, frame, cal.as_of - 1)
    return _Records(kind, frame, _lines_frame(lines), lookalikes)


def _seed_unsummed_totals(rng: np.random.Generator, problem: np.ndarray, total: np.ndarray) -> None:
    at = _where(problem, LINES_DO_NOT_SUM)
    delta = rng.integers(100, 5000, len(at))
    down = (rng.random(len(at)) < 0.5) & (total[at] > delta)
    total[at] += np.where(down, -delta, delta)


def _lookalikes(rng: np.random.Generator, head: pl.DataFrame, last_day: int) -> pl.DataFrame:
    """QuickBooks objects without our marker that a new record may duplicate.

    doc_number_exists: same party and number, another amount and date (keyed by hand months ago);
    near_duplicate: same party and amount, a date within three days, another number.
    """
    same_number = head.filter(pl.col("problem") == DOC_NUMBER_EXISTS)
    same_amount = head.filter(pl.col("problem") == NEAR_DUPLICATE)
    k, j = len(same_number), len(same_amount)
    return pl.concat(
        [
            same_number.select(
                "party", "number",
                day=pl.col("day") - pl.Series(rng.integers(20, 90, k)),
                total=pl.col("total") + pl.Series(rng.integers(500, 50_000, k)),
            ),
            same_amount.select(
                "party",
                number="M-" + pl.col("number"),
                day=pl.min_horizontal(pl.col("day") + pl.Series(rng.integers(-3, 4, j)), last_day),
                total="total",
            ),
        ]
    )  # fmt: skip


# -- payments and bill payments ---------------------------------------------------------------------------
def _payments(
    seed: int, kind: _Kind, n: int, cal: _Calendar, parties: _Parties, ref: _Reference, documents: _Records
) -> _Records:
    """Payments of clean invoices (or bills): same party, on or after the document, never above its total."""
    rng = _stream(seed, kind.table)
    docs = documents.head
    clean = np.flatnonzero(docs["problem"].is_null().to_numpy())
    link = clean[rng.integers(0, len(clean), n)]
    total = docs["total"].to_numpy()[link]
    payments_per_doc = np.bincount(link, minlength=len(docs))[link]
    partial = (payments_per_doc == 1) & (rng.random(n) < 0.15)
    amount = np.where(partial, total * rng.integers(30, 90, n) // 100, total // payments_per_doc)
    day = np.minimum(docs["day"].to_numpy()[link] + rng.integers(0, 46, n), cal.as_of - 1)
    order = np.argsort(day, kind="stable")
    day, link, amount = day[order], link[order], amount[order]
    party = docs["party"].to_numpy()[link]
    methods = np.array(_CUSTOMER_METHODS if kind is _PAYMENT else _VENDOR_METHODS)
    head = {
        **_header(rng, day, kind.owners),
        "party": party,
        "link": link,
        "amount": amount,
        "method": methods[rng.integers(0, len(methods), n)],
        "account": ref.bank_accounts[rng.integers(0, len(ref.bank_accounts) if kind is _PAYMENT else 1, n)],
    }
    synced_party = parties.synced_mask[party]
    synced_document = docs["presync"].to_numpy()[link]  # before an incomplete record loses its link
    problem = _problems_for(rng, kind.table, day, synced_party, cal)
    _seed_header_problems(rng, problem, head, cal)
    _seed_incomplete(rng, problem, head, None, kind.incomplete)
    unmapped = _where(problem, PAYMENT_METHOD_MISSING)
    head["method"][unmapped] = rng.choice(_GAP_PAYMENT_METHODS, len(unmapped))
    presync = _clean(problem) & (day < cal.cutoff) & synced_party & synced_document
    no_numbers = pl.repeat(None, n, dtype=pl.String, eager=True).alias("number")
    number = _serials("PMT-", 100_001, n) if kind is _PAYMENT else no_numbers
    return _Records(kind, _frame({"id": _ids(kind.prefix, n, 6), "number": number, **head}, problem, presync))


# -- journal entries --------------------------------------------------------------------------------------
def _journal_lines(rng: np.random.Generator, size: np.ndarray, ref: _Reference) -> dict[str, np.ndarray]:
    """2-4 lines per entry, debits first, debits equal to credits."""
    n = len(size)
    debits = 1 + rng.integers(0, size - 1)
    credits = size - debits
    total = _skewed_cents(rng, n, 10_000, 5_000_000)
    parent = np.concatenate([np.repeat(np.arange(n), debits), np.repeat(np.arange(n), credits)])
    amount = np.concatenate([_split_cents(rng, total, debits), _split_cents(rng, total, credits)])
    debit = np.arange(len(parent)) < debits.sum()
    order = np.argsort(parent, kind="stable")
    _, line_no = _line_numbers(size)
    m = len(parent)
    return {
        "start": _segment_starts(size),
        "parent": parent[order],
        "line_no": line_no,
        "debit": debit[order],
        "amount": amount[order],
        "item": np.full(m, -1),
        "account": ref.journal_accounts[rng.integers(0, len(ref.journal_accounts), m)],
        "category": rng.integers(0, _CLEAN_CATEGORIES, m),
        "memo": np.repeat(rng.integers(0, len(_JOURNAL_MEMOS), n), size),
    }


def _journals(seed: int, n: int, cal: _Calendar, ref: _Reference) -> _Records:
    rng = _stream(seed, _JOURNAL.table)
    day = np.sort(_days_back(rng, n, cal, 1, HISTORY_DAYS))
    lines = _journal_lines(rng, rng.integers(2, 5, n), ref)
    head = _header(rng, day, _JOURNAL.owners)
    everyone = np.ones(n, dtype=bool)
    problem = _problems_for(rng, _JOURNAL.table, day, everyone, cal)
    _seed_header_problems(rng, problem, head, cal)
    _seed_incomplete(rng, problem, head, lines, _JOURNAL.incomplete)
    _seed_line_problems(rng, problem, lines, ref)
    presync = _clean(problem) & (day < cal.cutoff)
    columns: dict[str, np.ndarray | pl.Series] = {
        "id": _ids(_JOURNAL.prefix, n, 6),
        "number": _serials("GJ-", 10_001, n),
        **head,
    }
    return _Records(_JOURNAL, _frame(columns, problem, presync), _lines_frame(lines))


# -- the whole company ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Demo:
    """The generated company, typed, before it is written as AWRA text and QuickBooks JSON."""

    as_of: date
    cal: _Calendar
    ref: _Reference
    vendors: _Parties
    customers: _Parties
    purchase_orders: _Records
    bills: _Records
    invoices: _Records
    payments: _Records
    bill_payments: _Records
    journal_entries: _Records

    @property
    def transactions(self) -> tuple[_Records, ...]:
        return (self.purchase_orders, self.bills, self.invoices, self.payments, self.bill_payments,
                self.journal_entries)  # fmt: skip


def _generate(seed: int, sizes: dict[str, int], as_of: date, say: Callable[[str], None]) -> _Demo:
    cal = _Calendar.of(as_of)
    ref = _reference(seed, sizes["items"], cal)
    names = _party_names(seed, sizes)
    vendors = _parties(seed, "vendors", "vendor", "VEN", names["vendors"], names["qbo_vendors"], cal)
    clashes = _vendor_name_clashes(vendors)
    by_hand = pl.concat([clashes, names["qbo_customers"]])
    customers = _parties(seed, "customers", "customer", "CUS", names["customers"], by_hand, cal)
    say(f"reference data, {sizes['vendors']:,} vendors and {sizes['customers']:,} customers")
    orders = _documents(seed, _PURCHASE_ORDER, sizes["purchase_orders"], cal, vendors, ref)
    bills = _documents(seed, _BILL, sizes["bills"], cal, vendors, ref, orders)
    invoices = _documents(seed, _INVOICE, sizes["invoices"], cal, customers, ref)
    say("purchase orders, bills and invoices")
    return _Demo(
        as_of=as_of,
        cal=cal,
        ref=ref,
        vendors=vendors,
        customers=customers,
        purchase_orders=orders,
        bills=bills,
        invoices=invoices,
        payments=_payments(seed, _PAYMENT, sizes["payments"], cal, customers, ref, invoices),
        bill_payments=_payments(seed, _BILL_PAYMENT, sizes["bill_payments"], cal, vendors, ref, bills),
        journal_entries=_journals(seed, sizes["journal_entries"], cal, ref),
    )


# -- the AWRA snapshot (contract text) --------------------------------------------------------------------
def _cents_text(column: str | pl.Expr) -> pl.Expr:
    """Whole cents (or hundredths) as a decimal string with two places: 1210 -> "12.10"."""
    cents = pl.col(column) if isinstance(column, str) else column
    whole = cents.abs()
    sign = pl.when(cents < 0).then(pl.lit("-")).otherwise(pl.lit(""))
    return pl.format("{}{}.{}", sign, whole // 100, (whole % 100).cast(pl.String).str.zfill(2))


def _date_text(column: str, missing: str | None = None) -> pl.Expr:
    text = pl.col(column).cast(pl.Int32).cast(pl.Date).cast(pl.String)
    return pl.when(pl.col(missing)).then(None).otherwise(text) if missing else text


def _timestamp_text(column: str) -> pl.Expr:
    return pl.from_epoch(pl.col(column), time_unit="s").dt.strftime("%Y-%m-%dT%H:%M:%SZ")


def _status_text(owners: tuple[str, ...]) -> list[pl.Expr]:
    return [
        _label(APPROVAL_STATUSES, "approval").alias("approval_status"),
        _label(POSTING_STATUSES, "posting").alias("posting_status"),
        _label(owners, "owner").alias("owner"),
        _timestamp_text("updated").alias("updated_at"),
    ]


def _party_text(parties: _Parties) -> pl.DataFrame:
    return parties.frame.select(
        pl.col("id").alias(CONTRACT[parties.table].record_id),
        "name",
        currency=pl.lit(HOME_CURRENCY),
        status=pl.lit("active"),
        approval_status=_label(APPROVAL_STATUSES, "approval"),
        updated_at=_timestamp_text("updated"),
    )


def _item_text(items: pl.DataFrame) -> pl.DataFrame:
    return items.select(
        item_sku="sku",
        name="name",
        type="type",
        status=pl.lit("active"),
        updated_at=_timestamp_text("updated"),
        income_account_code="income_code",
        expense_account_code="expense_code",
    )


def _account_text(accounts: pl.DataFrame) -> pl.DataFrame:
    return accounts.select(account_code="code", name="name", type="type", status=pl.lit("active"))


def _with_refs(records: _Records, party: _Parties, linked: _Records | None) -> pl.DataFrame:
    head = records.head
    refs = {"party_id": _pick(party.frame["id"], head["party"].to_numpy())}
    if linked is not None:
        refs["link_id"] = _pick(linked.head["id"], head["link"].to_numpy())
    return head.with_columns(**refs)


def _document_text(records: _Records, party: _Parties, orders: _Records | None = None) -> pl.DataFrame:
    record_id, number, party_id = CONTRACT[records.kind.table].column_names[:3]
    po_id = [pl.col("link_id").alias("po_id")] if orders is not None else []
    return _with_refs(records, party, orders).select(
        pl.col("id").alias(record_id),
        pl.col("number").alias(number),
        pl.col("party_id").alias(party_id),
        *po_id,
        _date_text("day", "day_missing").alias("txn_date"),
        _date_text("due").alias("due_date"),
        _label(_CURRENCIES, "currency").alias("currency"),
        _cents_text("total").alias("total"),
        *_status_text(records.kind.owners),
    )


def _payment_text(records: _Records, party: _Parties, documents: _Records, ref: _Reference) -> pl.DataFrame:
    table = CONTRACT[records.kind.table]
    party_id, document_id, account_code = (
        ("customer_id", "invoice_id", "deposit_account_code") if records.kind is _PAYMENT
        else ("vendor_id", "bill_id", "bank_account_code")
    )  # fmt: skip
    head = _with_refs(records, party, documents).with_columns(
        account_code=_pick(ref.accounts["code"], records.head["account"].to_numpy())
    )
    return head.select(
        pl.col("id").alias(table.record_id),
        pl.col("number").alias("payment_number"),
        pl.col("party_id").alias(party_id),
        pl.col("link_id").alias(document_id),
        _date_text("day", "day_missing").alias("txn_date"),
        _cents_text("amount").alias("amount"),
        _label(_PAYMENT_METHODS, "method").alias("payment_method"),
        pl.col("account_code").alias(account_code),
        _label(_CURRENCIES, "currency").alias("currency"),
        *_status_text(records.kind.owners),
    ).select(table.column_names)


def _journal_text(records: _Records) -> pl.DataFrame:
    return records.head.select(
        je_id="id",
        je_number="number",
        txn_date=_date_text("day", "day_missing"),
        currency=_label(_CURRENCIES, "currency"),
        approval_status=_label(APPROVAL_STATUSES, "approval"),
        posting_status=_label(POSTING_STATUSES, "posting"),
        owner=_label(_GL_OWNERS, "owner"),
        updated_at=_timestamp_text("updated"),
    )


def _line_refs(records: _Records, ref: _Reference) -> pl.DataFrame:
    lines = records.lines
    assert lines is not None
    item = lines["item"].to_numpy()
    return lines.with_columns(
        parent_id=records.head["id"].gather(lines["parent"]),
        sku=_pick(ref.items["sku"], item),
        item_name=_pick(ref.items["name"], item),
        account_code=_pick(ref.accounts["code"], lines["account"].to_numpy()),
    )


def _document_line_text(records: _Records, ref: _Reference) -> pl.DataFrame:
    return _line_refs(records, ref).select(
        pl.col("parent_id").alias(CONTRACT[records.kind.table].record_id),
        line_no=pl.col("line_no").cast(pl.String),
        item_sku="sku",
        account_code="account_code",
        description=pl.coalesce("item_name", _label(_EXPENSE_MEMOS, "memo")),
        qty=_cents_text("qty"),
        unit_price=_cents_text("price"),
        amount=_cents_text("amount"),
        tax_code=_label(_TAX_CODES, "tax"),
        category=_label(_CATEGORIES, "category"),
    )


def _journal_line_text(records: _Records, ref: _Reference) -> pl.DataFrame:
    return _line_refs(records, ref).select(
        je_id="parent_id",
        line_no=pl.col("line_no").cast(pl.String),
        account_code="account_code",
        posting_type=pl.when("debit").then(pl.lit("debit")).otherwise(pl.lit("credit")),
        amount=_cents_text("amount"),
        description=_label(_JOURNAL_MEMOS, "memo"),
        category=_label(_CATEGORIES, "category"),
    )


def _awra_frames(demo: _Demo) -> dict[str, pl.DataFrame]:
    """Every contract table as text columns, in contract order."""
    ref = demo.ref
    frames = {
        "vendors": _party_text(demo.vendors),
        "customers": _party_text(demo.customers),
        "items": _item_text(ref.items),
        "accounts": _account_text(ref.accounts),
        "purchase_orders": _document_text(demo.purchase_orders, demo.vendors),
        "bills": _document_text(demo.bills, demo.vendors, demo.purchase_orders),
        "invoices": _document_text(demo.invoices, demo.customers),
        "po_lines": _document_line_text(demo.purchase_orders, ref),
        "bill_lines": _document_line_text(demo.bills, ref),
        "invoice_lines": _document_line_text(demo.invoices, ref),
        "payments": _payment_text(demo.payments, demo.customers, demo.invoices, ref),
        "bill_payments": _payment_text(demo.bill_payments, demo.vendors, demo.bills, ref),
        "journal_entries": _journal_text(demo.journal_entries),
        "journal_lines": _journal_line_text(demo.journal_entries, ref),
    }
    return {name: frames[name].select(table.column_names) for name, table in CONTRACT.items()}


def _write_snapshot(
    folder: Path, frames: dict[str, pl.DataFrame], fmt: str, say: Callable[[str], None]
) -> tuple[Path, ...]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, frame in frames.items():
        path = folder / f"{name}.{fmt}"
        partial = path.with_name(path.name + ".partial")
        if fmt == "csv":
            frame.write_csv(partial, line_terminator="\n")
        elif fmt == "parquet":
            frame.write_parquet(partial)
        else:
            frame.write_ndjson(partial)
        partial.replace(path)
        for other in FORMATS:  # a file left in another format would make the folder ambiguous
            if other != fmt:
                (folder / f"{name}.{other}").unlink(missing_ok=True)
        paths.append(path)
    say(f"wrote {len(paths)} AWRA tables to {folder}")
    return tuple(paths)


# -- the QuickBooks company file --------------------------------------------------------------------------
_COMPANY_INFO = {
    "Id": "1",
    "CompanyName": "Acme Field Services Inc.",
    "LegalName": "Acme Field Services Incorporated",
    "Country": "US",
    "FiscalYearStartMonth": "January",
    "SyncToken": "0",
}
_QBO_TAX_IDS = ("1", "2")  # TAX, NON
_QBO_METHOD_IDS = ("2", "3", "4", "5")  # Check, ACH, Wire, Credit Card in _QBO_PAYMENT_METHODS order
_REFERENCE_AGE_DAYS = 1000  # the QuickBooks lists were set up long before the demo's history starts
_USD = {"value": HOME_CURRENCY}


def _preferences(close: date) -> dict[str, object]:
    return {
        "Id": "1",
        "SyncToken": "0",
        "AccountingInfoPrefs": {
            "BookCloseDate": close.isoformat(),
            "ClassTrackingPerTxnLine": True,
            "TrackDepartments": True,
            "DepartmentTerminology": "Location",
        },
        "CurrencyPrefs": {"HomeCurrency": {"value": HOME_CURRENCY}, "MultiCurrencyEnabled": False},
        "SalesFormsPrefs": {"CustomTxnNumbers": True},
        "OtherPrefs": {"NameValue": [{"Name": "DuplicateDocNumberCheck", "Value": "true"}]},
    }


def _as_json_numbers(texts: pl.Expr) -> pl.Expr:
    # Amounts are built as exact decimal text ("12.10") and unquoted here, so no float ever touches them.
    return texts.str.replace_all(_NUMBER_PATTERN, r'"${1}":${2}').str.replace_all(_NULL_FIELD_PATTERN, "")


def _encode(frame: pl.DataFrame, obj: pl.Expr) -> pl.Series:
    """One compact JSON object per row; null fields are left out, as QuickBooks leaves them out."""
    return frame.select(_as_json_numbers(obj.struct.json_encode()).alias("json")).to_series()


def _encode_dicts(rows: Iterable[dict[str, object]]) -> pl.Series:
    texts = pl.Series("json", [json.dumps(row, separators=(",", ":")) for row in rows], dtype=pl.String)
    return pl.select(_as_json_numbers(pl.lit(texts))).to_series()


def _ref(value: str | pl.Expr, name: str | pl.Expr) -> pl.Expr:
    value = pl.col(value) if isinstance(value, str) else value
    name = pl.col(name) if isinstance(name, str) else name
    return pl.struct(value=value, name=name)


def _struct(fields: Mapping[str, pl.Expr | str]) -> pl.Expr:
    """pl.struct(**fields) for fields gathered in a dict, in its order (a str names a column), without spreading
    the dict into pl.struct's keywords, where it could reach `schema` or `eager`."""
    return pl.struct([(pl.col(v) if isinstance(v, str) else v).alias(k) for k, v in fields.items()])


def _currency_ref() -> pl.Expr:
    return pl.struct(value=pl.lit(HOME_CURRENCY), name=pl.lit("United States Dollar"))


def _meta(seconds: pl.Expr) -> pl.Expr:
    at = pl.from_epoch(seconds - _QBO_OFFSET_SECONDS, time_unit="s").dt.strftime(_QBO_TIME)
    return pl.struct(CreateTime=at, LastUpdatedTime=at)


def _synced_meta() -> pl.Expr:
    return _meta(pl.col("updated") + _SYNC_DELAY_SECONDS)


def _marker(entity: str) -> pl.Expr:
    return pl.concat_str(pl.lit(f"awra:{entity}:"), pl.col("id"), pl.lit(":v1"))


def _reference_meta(cal: _Calendar) -> dict[str, str]:
    at = (_EPOCH + timedelta(days=cal.as_of - _REFERENCE_AGE_DAYS)).isoformat() + "T09:00:00-08:00"
    return {"CreateTime": at, "LastUpdatedTime": at}


def _reference_seconds(cal: _Calendar) -> int:
    return (cal.as_of - _REFERENCE_AGE_DAYS) * _DAY + 17 * 3600


def _named(rows: Iterable[dict[str, object]], cal: _Calendar, first: int = 1) -> list[dict[str, object]]:
    """Give small reference rows Ids first.., a SyncToken and MetaData, in that order."""
    meta = _reference_meta(cal)
    return [{"Id": str(i), "SyncToken": "0", "MetaData": meta, **row} for i, row in enumerate(rows, first)]


def _qbo_accounts(accounts: pl.DataFrame, cal: _Calendar) -> pl.Series:
    known = accounts.filter(pl.col("role") != "missing").iter_rows(named=True)
    rows = [
        {"Name": a["name"], "AcctNum": a["code"], "FullyQualifiedName": a["name"], "AccountType": a["type"],
         "Classification": a["classification"], "Active": a["role"] == "mapped", "CurrencyRef": _USD}
        for a in known
    ] + [
        {"Name": name, "FullyQualifiedName": name, "AccountType": kind,
         "Classification": _CLASSIFICATION[kind], "Active": True, "CurrencyRef": _USD}
        for name, kind in _QBO_ONLY_ACCOUNTS
    ]  # fmt: skip
    return _encode_dicts(_named(rows, cal))


def _qbo_lists(cal: _Calendar) -> dict[str, pl.Series]:
    """The small QuickBooks lists: tax codes and rates, payment methods, classes, locations, terms, people."""
    lists: dict[str, list[dict[str, object]]] = {
        "TaxCode": [
            {"Name": "TAX", "Description": "Taxable", "Active": True, "Taxable": True},
            {"Name": "NON", "Description": "Non-taxable", "Active": True, "Taxable": False},
        ],
        "TaxRate": [
            {"Name": "State Sales Tax", "RateValue": "6.25", "Active": True},
            {"Name": "County Sales Tax", "RateValue": "1.00", "Active": True},
        ],
        "PaymentMethod": [{"Name": n, "Type": kind, "Active": True} for n, kind in _QBO_PAYMENT_METHODS],
        "Class": [
            {"Name": name, "FullyQualifiedName": name, "SubClass": False, "Active": name in _CLASSES}
            for name in (*_CLASSES, "Legacy Projects")
        ],
        "Department": [
            {"Name": name, "FullyQualifiedName": name, "SubDepartment": False, "Active": True}
            for name in _DEPARTMENTS
        ],
        "Term": [{"Name": n, "DueDays": days, "Type": "STANDARD", "Active": True} for n, days in _TERMS],
        "Employee": [
            {"DisplayName": f"{first} {last}", "GivenName": first, "FamilyName": last, "Active": True,
             "PrimaryEmailAddr": {"Address": f"{first}.{last}@acme.example".lower()}}
            for first, last in _EMPLOYEES
        ],
    }  # fmt: skip
    return {entity: _encode_dicts(_named(rows, cal)) for entity, rows in lists.items()}


def _qbo_parties(parties: _Parties, cal: _Calendar) -> pl.Series:
    """Parties synced before (our marker in Notes), then the ones entered in QuickBooks by hand."""
    synced = parties.frame.filter("presync").select(
        "qbo", "name", created=pl.col("updated") + _SYNC_DELAY_SECONDS, note=_marker(parties.entity)
    )
    first = len(synced) + 1
    by_hand = pl.DataFrame({"name": parties.qbo_only}).select(
        qbo=pl.int_range(first, first + len(parties.qbo_only), dtype=pl.Int64),
        name="name",
        created=pl.lit(_reference_seconds(cal), dtype=pl.Int64),
        note=pl.lit(None, dtype=pl.String),
    )
    obj = pl.struct(
        Id=pl.col("qbo").cast(pl.String),
        SyncToken=pl.lit("0"),
        MetaData=_meta(pl.col("created")),
        DisplayName="name",
        CompanyName="name",
        Active=pl.lit(True),
        CurrencyRef=_currency_ref(),
        Notes="note",
    )
    return _encode(pl.concat([synced, by_hand]), obj)


def _account_lookup(ref: _Reference, column: str, prefix: str) -> pl.DataFrame:
    return ref.accounts.select(
        pl.col("code").alias(column),
        pl.col("qbo").cast(pl.String).alias(f"{prefix}_id"),
        pl.col("name").alias(f"{prefix}_name"),
    )


def _qbo_items(ref: _Reference, cal: _Calendar) -> pl.Series:
    items = (
        ref.items.filter(pl.col("role") != "missing")
        .join(_account_lookup(ref, "income_code", "income"), on="income_code", **_KEEP_ORDER)
        .join(_account_lookup(ref, "expense_code", "expense"), on="expense_code", **_KEEP_ORDER)
    )
    inventory = pl.col("type") == "inventory"
    asset = ref.accounts.row(ref.account("1300"), named=True)
    obj = pl.struct(
        Id=pl.col("qbo").cast(pl.String),
        SyncToken=pl.lit("0"),
        MetaData=_meta(pl.lit(_reference_seconds(cal))),
        Name="name",
        Sku="sku",
        Type=pl.col("type").replace_strict(_QBO_ITEM_TYPE),
        Active=pl.col("role") == "mapped",
        UnitPrice=_cents_text("price"),
        PurchaseCost=_cents_text("cost"),
        IncomeAccountRef=_ref("income_id", "income_name"),
        ExpenseAccountRef=_ref("expense_id", "expense_name"),
        TrackQtyOnHand=pl.when(inventory).then(pl.lit(True)),
        QtyOnHand=pl.when(inventory).then(pl.lit("100")),
        InvStartDate=pl.when(inventory).then(pl.lit(_reference_meta(cal)["CreateTime"][:10])),
        AssetAccountRef=pl.when(inventory).then(_ref(pl.lit(str(asset["qbo"])), pl.lit(asset["name"]))),
    )
    income = ref.accounts.row(ref.account("4000"), named=True)
    by_hand = _named(
        (
            {"Name": name, "Type": kind, "Active": True,
             "IncomeAccountRef": {"value": str(income["qbo"]), "name": income["name"]}}
            for name, kind in _QBO_ONLY_ITEMS
        ),
        cal,
        first=len(items) + 1,
    )  # fmt: skip
    return pl.concat([_encode(items, obj), _encode_dicts(by_hand)])


def _qbo_only_item_id(ref: _Reference, name: str) -> str:
    known = int((ref.items["role"] != "missing").sum())
    return str(known + 1 + [n for n, _ in _QBO_ONLY_ITEMS].index(name))


def _category_refs(column: str) -> tuple[pl.Expr, pl.Expr]:
    """(ClassRef, DepartmentRef) of a category: classes and locations are separate QuickBooks lists."""
    category = pl.col(column)
    name = _label(_CATEGORIES, column)
    klass = pl.when(category.is_between(0, len(_CLASSES) - 1)).then(
        pl.struct(value=(category + 1).cast(pl.String), name=name)
    )
    location = pl.when(category.is_between(len(_CLASSES), _CLEAN_CATEGORIES - 1)).then(
        pl.struct(value=(category - len(_CLASSES) + 1).cast(pl.String), name=name)
    )
    return klass, location


def _synced_lines(records: _Records, ref: _Reference) -> pl.DataFrame:
    """Lines of the records already in QuickBooks, with the QuickBooks ids of what they refer to."""
    lines = _line_refs(records, ref)
    lines = lines.filter(pl.Series(records.head["presync"].to_numpy()[lines["parent"].to_numpy()]))
    item, account = lines["item"].to_numpy(), lines["account"].to_numpy()
    memos = _JOURNAL_MEMOS if records.kind is _JOURNAL else _EXPENSE_MEMOS
    return lines.with_columns(
        item_id=_pick(_id_text(ref.items["qbo"]), item),
        account_id=_pick(_id_text(ref.accounts["qbo"]), account),
        account_name=_pick(ref.accounts["name"], account),
        description=pl.coalesce("item_name", _label(memos, "memo")),
    )


def _document_line_json(sales: bool) -> pl.Expr:
    klass, _ = _category_refs("category")
    tax = pl.struct(value=_label(_QBO_TAX_IDS, "tax"))
    qty = {"Qty": _cents_text("qty"), "UnitPrice": _cents_text("price")}
    common: dict[str, pl.Expr | str] = {"Id": pl.col("line_no").cast(pl.String), "LineNum": "line_no",
              "Description": "description", "Amount": _cents_text("amount")}  # fmt: skip
    if sales:
        detail = _struct({"ItemRef": _ref("item_id", "item_name"), **qty, "TaxCodeRef": tax, "ClassRef": klass})
        return _struct({**common, "DetailType": pl.lit("SalesItemLineDetail"), "SalesItemLineDetail": detail})
    is_item = pl.col("item") >= 0
    tail = {"TaxCodeRef": tax, "ClassRef": klass, "BillableStatus": pl.lit("NotBillable")}
    return _struct({
        **common,
        "DetailType": pl.when(is_item).then(pl.lit("ItemBasedExpenseLineDetail"))
        .otherwise(pl.lit("AccountBasedExpenseLineDetail")),
        "ItemBasedExpenseLineDetail": pl.when(is_item).then(
            _struct({"ItemRef": _ref("item_id", "item_name"), **qty, **tail})
        ),
        "AccountBasedExpenseLineDetail": pl.when(~is_item).then(
            _struct({"AccountRef": _ref("account_id", "account_name"), **tail})
        ),
    })  # fmt: skip


def _with_party(head: pl.DataFrame, parties: _Parties) -> pl.DataFrame:
    party = head["party"].to_numpy()
    return head.with_columns(
        party_qbo=_pick(_id_text(parties.frame["qbo"]), party), party_name=_pick(parties.frame["name"], party)
    )


def _paid(payments: _Records | None) -> pl.DataFrame:
    """Amounts already paid in QuickBooks per document row, by payments synced before."""
    if payments is None:
        return pl.DataFrame({"row": [], "paid": []}, schema={"row": pl.Int64, "paid": pl.Int64})
    synced = payments.head.filter("presync")
    return synced.group_by(pl.col("link").alias("row")).agg(paid=pl.col("amount").sum()).sort("row")


def _document_json(kind: _Kind, ref: _Reference) -> pl.Expr:
    """A Bill, Invoice or PurchaseOrder from columns qbo, created, number, day, due, note, party_qbo,
    party_name, first_category, total, balance and Line."""
    ap = ref.accounts.row(ref.account("2000"), named=True)
    fields: dict[str, pl.Expr | str] = {
        "Id": pl.col("qbo").cast(pl.String),
        "SyncToken": pl.lit("0"),
        "MetaData": _meta(pl.col("created")),
        "DocNumber": "number",
        "TxnDate": _date_text("day"),
        "DueDate": _date_text("due"),
        "PrivateNote": "note",
        "CustomerRef" if kind.sales else "VendorRef": _ref("party_qbo", "party_name"),
    }
    if not kind.sales:
        fields["APAccountRef"] = _ref(pl.lit(str(ap["qbo"])), pl.lit(ap["name"]))
    if kind is _PURCHASE_ORDER:
        fields["POStatus"] = pl.lit("Open")
    fields |= {
        "CurrencyRef": _currency_ref(),
        "DepartmentRef": _category_refs("first_category")[1],
        "TotalAmt": _cents_text("total"),
    }
    if kind is not _PURCHASE_ORDER:
        fields["Balance"] = _cents_text("balance")
    return _struct({**fields, "Line": pl.col("Line")})


def _qbo_documents(records: _Records, parties: _Parties, ref: _Reference, payments: _Records | None) -> pl.Series:
    """Documents synced before (our marker, lines as in AWRA), then look-alikes keyed into QuickBooks."""
    kind = records.kind
    lines = (
        _synced_lines(records, ref)
        .group_by("parent", maintain_order=True)
        .agg(Line=_document_line_json(kind.sales), first_category=pl.col("category").first())
    )
    head = (
        _with_party(records.head.with_row_index("row").with_columns(pl.col("row").cast(pl.Int64)), parties)
        .filter("presync")
        .join(lines, left_on="row", right_on="parent", **_KEEP_ORDER)
        .join(_paid(payments), on="row", **_KEEP_ORDER)
        .with_columns(
            created=pl.col("updated") + _SYNC_DELAY_SECONDS,
            note=_marker(kind.entity),
            balance=pl.col("total") - pl.col("paid").fill_null(0),
        )
    )
    synced = _encode(head, _document_json(kind, ref))
    if records.lookalikes is None:
        return synced
    lookalikes = _lookalike_frame(records, parties, ref, first_id=len(head) + 1)
    return pl.concat([synced, _encode(lookalikes, _document_json(kind, ref))])


def _lookalike_frame(records: _Records, parties: _Parties, ref: _Reference, first_id: int) -> pl.DataFrame:
    assert records.lookalikes is not None
    found = records.lookalikes
    amount = {"Id": pl.lit("1"), "LineNum": pl.lit(1), "Description": pl.lit("Entered in QuickBooks"),
              "Amount": _cents_text("total")}  # fmt: skip
    if records.kind.sales:
        item = pl.struct(value=pl.lit(_qbo_only_item_id(ref, "Services")), name=pl.lit("Services"))
        detail = pl.struct(ItemRef=item, Qty=pl.lit("1.00"), UnitPrice=_cents_text("total"))
        line = _struct({**amount, "DetailType": pl.lit("SalesItemLineDetail"), "SalesItemLineDetail": detail})
    else:
        account = ref.accounts.row(ref.account("6820"), named=True)
        account_ref = _ref(pl.lit(str(account["qbo"])), pl.lit(account["name"]))
        detail = pl.struct(AccountRef=account_ref, BillableStatus=pl.lit("NotBillable"))
        line = _struct(
            {**amount, "DetailType": pl.lit("AccountBasedExpenseLineDetail"), "AccountBasedExpenseLineDetail": detail}
        )
    return _with_party(found, parties).with_columns(
        qbo=pl.int_range(first_id, first_id + len(found), dtype=pl.Int64),
        created=pl.col("day") * _DAY + 18 * 3600,
        due=pl.col("day") + 30,
        note=pl.lit(None, dtype=pl.String),
        first_category=pl.lit(-1, dtype=pl.Int64),
        balance=pl.col("total"),
        Line=pl.concat_list(line),
    )


def _qbo_payments(records: _Records, parties: _Parties, documents: _Records, ref: _Reference) -> pl.Series:
    """Customer payments (or bill payments) synced before, each applied to its invoice (or bill)."""
    payment = records.kind is _PAYMENT
    head = (
        _with_party(records.head, parties)
        .with_columns(
            doc_qbo=_pick(_id_text(documents.head["qbo"]), records.head["link"].to_numpy()),
            account_id=_pick(_id_text(ref.accounts["qbo"]), records.head["account"].to_numpy()),
            account_name=_pick(ref.accounts["name"], records.head["account"].to_numpy()),
        )
        .filter("presync")
    )
    linked = pl.struct(TxnId="doc_qbo", TxnType=pl.lit("Invoice" if payment else "Bill"))
    applied = pl.concat_list(pl.struct(Amount=_cents_text("amount"), LinkedTxn=pl.concat_list(linked)))
    start = {"Id": pl.col("qbo").cast(pl.String), "SyncToken": pl.lit("0"), "MetaData": _synced_meta()}
    account = _ref("account_id", "account_name")
    if payment:
        fields = {
            **start,
            "DocNumber": pl.col("number"),
            "PaymentRefNum": pl.col("number"),
            "TxnDate": _date_text("day"),
            "CustomerRef": _ref("party_qbo", "party_name"),
            "PaymentMethodRef": _ref(_label(_QBO_METHOD_IDS, "method"), _label(_PAYMENT_METHODS, "method")),
            "DepositToAccountRef": account,
            "CurrencyRef": _currency_ref(),
            "TotalAmt": _cents_text("amount"),
            "UnappliedAmt": pl.lit("0.00"),
        }
    else:
        fields = {
            **start,
            "TxnDate": _date_text("day"),
            "VendorRef": _ref("party_qbo", "party_name"),
            "PayType": pl.lit("Check"),
            "CheckPayment": pl.struct(BankAccountRef=account, PrintStatus=pl.lit("NotSet")),
            "CurrencyRef": _currency_ref(),
            "TotalAmt": _cents_text("amount"),
        }
    return _encode(head, _struct({**fields, "PrivateNote": _marker(records.kind.entity), "Line": applied}))


def _qbo_journals(records: _Records, ref: _Reference) -> pl.Series:
    klass, location = _category_refs("category")
    detail = pl.struct(
        PostingType=pl.when("debit").then(pl.lit("Debit")).otherwise(pl.lit("Credit")),
        AccountRef=_ref("account_id", "account_name"),
        ClassRef=klass,
        DepartmentRef=location,
    )
    line = pl.struct(
        Id=pl.col("line_no").cast(pl.String),
        Description="description",
        Amount=_cents_text("amount"),
        DetailType=pl.lit("JournalEntryLineDetail"),
        JournalEntryLineDetail=detail,
    )
    lines = (
        _synced_lines(records, ref)
        .group_by("parent", maintain_order=True)
        .agg(Line=line, debits=pl.col("amount").filter("debit").sum())
    )
    head = (
        records.head.with_row_index("row")
        .with_columns(pl.col("row").cast(pl.Int64))
        .filter("presync")
        .join(lines, left_on="row", right_on="parent", **_KEEP_ORDER)
    )
    obj = pl.struct(
        Id=pl.col("qbo").cast(pl.String),
        SyncToken=pl.lit("0"),
        MetaData=_synced_meta(),
        DocNumber="number",
        TxnDate=_date_text("day"),
        PrivateNote=_marker(records.kind.entity),
        CurrencyRef=_currency_ref(),
        TotalAmt=_cents_text("debits"),
        Line="Line",
    )
    return _encode(head, obj)


def _qbo_objects(demo: _Demo) -> Iterator[tuple[str, pl.Series]]:
    """Each QuickBooks entity's objects as JSON texts, built one entity at a time to bound memory."""
    ref, cal = demo.ref, demo.cal
    lists = _qbo_lists(cal)
    yield "Account", _qbo_accounts(ref.accounts, cal)
    for entity in ("TaxCode", "TaxRate", "PaymentMethod", "Class", "Department", "Term"):
        yield entity, lists[entity]
    yield "Vendor", _qbo_parties(demo.vendors, cal)
    yield "Customer", _qbo_parties(demo.customers, cal)
    yield "Employee", lists["Employee"]
    yield "Item", _qbo_items(ref, cal)
    yield "PurchaseOrder", _qbo_documents(demo.purchase_orders, demo.vendors, ref, None)
    yield "Bill", _qbo_documents(demo.bills, demo.vendors, ref, demo.bill_payments)
    yield "Invoice", _qbo_documents(demo.invoices, demo.customers, ref, demo.payments)
    yield "Payment", _qbo_payments(demo.payments, demo.customers, demo.invoices, ref)
    yield "BillPayment", _qbo_payments(demo.bill_payments, demo.vendors, demo.bills, ref)
    yield "JournalEntry", _qbo_journals(demo.journal_entries, ref)


def _write_company(path: Path, demo: _Demo, realm_id: str, say: Callable[[str], None]) -> None:
    """Stream the company file: the head through json, then each entity's objects a chunk at a time."""
    head = {
        "format": COMPANY_FORMAT,
        "realm_id": realm_id,
        "company_info": _COMPANY_INFO,
        "preferences": _preferences(book_close_date(demo.as_of)),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    written = 0
    with partial.open("w", encoding="utf-8", newline="\n") as out:
        out.write(json.dumps(head, separators=(",", ":"))[:-1] + ',"objects":{')
        for i, (entity, rows) in enumerate(_qbo_objects(demo)):
            out.write(f'{"," if i else ""}\n"{entity}":[')
            _write_rows(out, rows)
            out.write("]")
            written += len(rows)
        out.write("}}\n")
    partial.replace(path)
    say(f"wrote the QuickBooks company ({written:,} objects) to {path}")


def _write_rows(out: TextIO, rows: pl.Series, chunk: int = 50_000) -> None:
    for start in range(0, len(rows), chunk):
        out.write(("," if start else "") + "\n" + rows.slice(start, chunk).str.join(",\n").item())


# -- the summary --------------------------------------------------------------------------------------------
def _problem_keys(entity: str, frame: pl.DataFrame) -> pl.DataFrame:
    return frame.filter(pl.col("problem").is_not_null()).select(
        key=pl.concat_str(pl.lit(f"{entity}:"), pl.col("id")), problem="problem"
    )


def _summary(
    demo: _Demo, out_dir: Path, snapshot_dir: Path, company_file: Path, paths: tuple[Path, ...],
    counts: dict[str, int], seed: int, scale: int | None,
) -> DemoSummary:  # fmt: skip
    ref = demo.ref
    found = pl.concat(
        [
            _problem_keys(demo.vendors.entity, demo.vendors.frame),
            _problem_keys(demo.customers.entity, demo.customers.frame),
            _problem_keys("item", ref.items.rename({"sku": "id"})),
            *(_problem_keys(r.kind.entity, r.head) for r in demo.transactions),
        ]
    )
    presynced = {p.entity: int(p.frame["presync"].sum()) for p in (demo.vendors, demo.customers)}
    presynced |= {r.kind.entity: int(r.head["presync"].sum()) for r in demo.transactions}

    def values(frame: pl.DataFrame, column: str, role: str) -> tuple[str, ...]:
        return tuple(frame.filter(pl.col("role") == role)[column].to_list())

    return DemoSummary(
        out_dir=out_dir,
        snapshot_dir=snapshot_dir,
        company_file=company_file,
        paths=paths,
        seed=seed,
        scale=scale,
        as_of=demo.as_of,
        book_close_date=book_close_date(demo.as_of),
        counts=counts,
        problems={name: tuple(found.filter(pl.col("problem") == name)["key"].to_list()) for name in PROBLEMS},
        presynced=presynced,
        reference_gaps={
            "account": values(ref.accounts, "code", "missing"),
            "item": values(ref.items, "sku", "missing"),
            "tax_code": tuple(_TAX_CODES[i] for i in _GAP_TAX_CODES),
            "category": tuple(_CATEGORIES[i] for i in _GAP_CATEGORIES),
            "payment_method": tuple(_PAYMENT_METHODS[i] for i in _GAP_PAYMENT_METHODS),
        },
        inactive_in_qbo={
            "account": values(ref.accounts, "code", "inactive"),
            "item": values(ref.items, "sku", "inactive"),
        },
    )
