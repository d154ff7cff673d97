"""The demo company: deterministic bytes, the contract, and every seeded problem re-derived from the files."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from pipelines.config import DEMO_REALM_ID
from pipelines.demo import company as demo
from pipelines.demo.company import DEFAULT_SIZES, PROBLEMS, DemoSummary, book_close_date, write_demo
from schemas.awra import CONTRACT, contract_schema

AS_OF = date(2026, 5, 15)
SCALE = 2000
CUTOFF = demo.presync_cutoff(AS_OF).isoformat()
CLOSE = book_close_date(AS_OF).isoformat()

# header table -> (party column, other required reference columns)
REQUIRED = {
    "purchase_orders": ("vendor_id", ()),
    "bills": ("vendor_id", ()),
    "invoices": ("customer_id", ()),
    "payments": ("customer_id", ("invoice_id",)),
    "bill_payments": ("vendor_id", ("bill_id",)),
    "journal_entries": (None, ()),
}
LINES = {
    "purchase_orders": "po_lines",
    "bills": "bill_lines",
    "invoices": "invoice_lines",
    "journal_entries": "journal_lines",
}
QBO_ENTITY = {
    "vendors": "Vendor",
    "customers": "Customer",
    "purchase_orders": "PurchaseOrder",
    "bills": "Bill",
    "invoices": "Invoice",
    "payments": "Payment",
    "bill_payments": "BillPayment",
    "journal_entries": "JournalEntry",
}


@dataclass(frozen=True)
class Written:
    """One write_demo run read back: the summary, every table as text, the company file."""

    summary: DemoSummary
    frames: dict[str, pl.DataFrame]
    company: dict
    company_text: str

    def problem(self, name: str) -> set[str]:
        return set(self.summary.problems[name])

    @property
    def any_problem(self) -> set[str]:
        return {key for keys in self.summary.problems.values() for key in keys}

    def objects(self, entity: str) -> list[dict]:
        return self.company["objects"][entity]


def read_tables(folder: Path, fmt: str) -> dict[str, pl.DataFrame]:
    """Every table as text columns, whatever the format."""
    out = {}
    for name, table in CONTRACT.items():
        path = folder / f"{name}.{fmt}"
        if fmt == "csv":
            out[name] = pl.read_csv(path, infer_schema=False)
        elif fmt == "parquet":
            out[name] = pl.read_parquet(path)
        else:
            out[name] = pl.read_ndjson(path, schema={c: pl.String for c in table.column_names})
    return out


def run(folder: Path, fmt: str = "csv", **options) -> Written:
    summary = write_demo(folder, as_of=AS_OF, fmt=fmt, **{"seed": 7, "scale": SCALE, **options})
    text = summary.company_file.read_text(encoding="utf-8")
    return Written(summary, read_tables(summary.snapshot_dir, fmt), json.loads(text, parse_float=Decimal), text)


def file_hashes(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def keys(entity: str, frame: pl.DataFrame, id_column: str) -> set[str]:
    return {f"{entity}:{v}" for v in frame[id_column].to_list()}


def header_tables():
    for name, table in CONTRACT.items():
        if not table.is_lines and name not in ("accounts", "items"):
            yield name, table


def cents(column: str) -> pl.Expr:
    """ "12.34" -> 1234 (every amount is written with exactly two places; a test below checks it)."""
    return pl.col(column).str.replace(".", "", literal=True).cast(pl.Int64)


def marker_ids(written: Written, entity_name: str, entity: str) -> dict[str, dict]:
    """AWRA id -> the QuickBooks object carrying our marker for it."""
    field = "Notes" if entity_name in ("Vendor", "Customer") else "PrivateNote"
    pattern = re.compile(rf"^awra:{entity}:(.+):v1$")
    found = {}
    for obj in written.objects(entity_name):
        match = pattern.match(obj.get(field) or "")
        if match:
            found[match.group(1)] = obj
    return found


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Written:
    return run(tmp_path_factory.mktemp("small"))


# -- determinism and files ----------------------------------------------------------------------------------
@pytest.mark.parametrize("fmt", demo.FORMATS)
def test_same_seed_and_date_write_identical_bytes(tmp_path: Path, fmt: str) -> None:
    first = write_demo(tmp_path / "a", seed=7, scale=SCALE, as_of=AS_OF, fmt=fmt)
    second = write_demo(tmp_path / "b", seed=7, scale=SCALE, as_of=AS_OF, fmt=fmt)
    assert file_hashes(tmp_path / "a") == file_hashes(tmp_path / "b")
    assert len(file_hashes(tmp_path / "a")) == len(CONTRACT) + 1
    assert first.problems == second.problems


def test_another_seed_or_date_writes_another_company(tmp_path: Path, small: Written) -> None:
    baseline = file_hashes(small.summary.out_dir)
    other_seed = write_demo(tmp_path / "seed", seed=8, scale=SCALE, as_of=AS_OF)
    other_day = write_demo(tmp_path / "day", seed=7, scale=SCALE, as_of=AS_OF + timedelta(days=1))
    for summary in (other_seed, other_day):
        differing = {k for k, v in file_hashes(summary.out_dir).items() if baseline.get(k) != v}
        assert "qbo-company.json" in differing and "awra/bills.csv" in differing
    assert other_seed.problems != small.summary.problems


def test_every_contract_table_is_written_with_exactly_its_header(small: Written) -> None:
    assert [p.name for p in small.summary.paths] == [f"{n}.csv" for n in CONTRACT] + ["qbo-company.json"]
    for name, table in CONTRACT.items():
        header = (small.summary.snapshot_dir / f"{name}.csv").read_text().splitlines()[0]
        assert header == ",".join(table.column_names), name
        assert small.frames[name].height == small.summary.counts[name] > 0


def test_every_table_passes_the_contract_schema(small: Written) -> None:
    for name, table in CONTRACT.items():
        contract_schema(table).validate(small.frames[name], lazy=True)


def test_amounts_dates_and_timestamps_have_one_text_form(small: Written) -> None:
    money = re.compile(r"^\d+\.\d{2}$")
    for name, table in CONTRACT.items():
        frame = small.frames[name]
        for column in table.columns:
            values = frame[column.name].drop_nulls()
            if column.kind in ("money", "money_nonneg", "quantity"):
                assert values.str.contains(money.pattern).all(), (name, column.name)
            if column.kind == "date":
                assert values.str.contains(r"^\d{4}-\d{2}-\d{2}$").all(), (name, column.name)
            if column.kind == "timestamp":
                assert values.str.contains(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$").all(), (
                    name,
                    column.name,
                )


@pytest.mark.parametrize("fmt", ["parquet", "jsonl"])
def test_every_format_holds_the_same_text(tmp_path: Path, small: Written, fmt: str) -> None:
    other = run(tmp_path, fmt)
    for name in CONTRACT:
        assert_frame_equal(other.frames[name], small.frames[name])
    assert other.company_text == small.company_text


def test_a_new_format_replaces_the_old_files(tmp_path: Path) -> None:
    write_demo(tmp_path, seed=7, scale=SCALE, as_of=AS_OF, fmt="csv")
    write_demo(tmp_path, seed=7, scale=SCALE, as_of=AS_OF, fmt="jsonl")
    assert sorted(p.suffix for p in (tmp_path / "awra").iterdir()) == [".jsonl"] * len(CONTRACT)


def test_bad_arguments_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="format"):
        write_demo(tmp_path, fmt="xlsx", as_of=AS_OF)
    with pytest.raises(ValueError, match="seed"):
        write_demo(tmp_path, seed=-1, as_of=AS_OF)
    with pytest.raises(ValueError, match="scale"):
        write_demo(tmp_path, scale=0, as_of=AS_OF)


# -- sizes ------------------------------------------------------------------------------------------------
def test_scale_sets_the_number_of_header_records(small: Written) -> None:
    assert abs(small.summary.records - SCALE) <= 0.05 * SCALE
    assert small.summary.records == sum(small.frames[n].height for n, t in CONTRACT.items() if not t.is_lines)
    sizes = demo.demo_sizes(1_000_000)
    assert abs(sum(sizes.values()) - 1_000_000) < 100
    assert sizes["accounts"] == DEFAULT_SIZES["accounts"]


def test_default_company_is_the_mid_size_one(tmp_path: Path) -> None:
    summary = write_demo(tmp_path, as_of=AS_OF)
    assert {n: c for n, c in summary.counts.items() if n in DEFAULT_SIZES} == DEFAULT_SIZES
    for name, lines in LINES.items():
        per_record = summary.counts[lines] / summary.counts[name]
        assert (2.5 if name == "journal_entries" else 2.7) < per_record < 3.3
    assert all(n > 0 for n in summary.problem_counts.values())
    problem_records = sum(summary.problem_counts.values())
    assert 0.08 * summary.records < problem_records < 0.25 * summary.records


def test_book_close_date_is_the_end_of_the_month_two_months_back() -> None:
    assert book_close_date(date(2026, 5, 15)) == date(2026, 3, 31)
    assert book_close_date(date(2026, 1, 1)) == date(2025, 11, 30)
    assert book_close_date(date(2026, 3, 31)) == date(2026, 1, 31)


# -- seeded problems: each re-derived from the written files ----------------------------------------------
def test_every_problem_is_seeded_in_a_small_share_and_once_per_record(small: Written) -> None:
    assert set(small.summary.problems) == set(PROBLEMS)
    seen: list[str] = [key for keys in small.summary.problems.values() for key in keys]
    assert len(seen) == len(set(seen)), "a record carries two seeded problems"
    sizes = {t.entity: small.frames[n].height for n, t in CONTRACT.items() if not t.is_lines}
    for name, found in small.summary.problems.items():
        assert found, name
        by_entity: dict[str, int] = {}
        for key in found:
            by_entity[key.split(":")[0]] = by_entity.get(key.split(":")[0], 0) + 1
        for entity, n in by_entity.items():
            assert n <= max(2, 0.06 * sizes[entity]), (name, entity, n)


def test_approval_and_posting_problems(small: Written) -> None:
    unapproved, unposted = set(), set()
    for name, table in header_tables():
        frame = small.frames[name]
        unapproved |= keys(table.entity, frame.filter(pl.col("approval_status") != "approved"), table.record_id)
        if "posting_status" in frame.columns:
            unposted |= keys(table.entity, frame.filter(pl.col("posting_status") != "posted"), table.record_id)
    assert unapproved == small.problem(demo.NOT_APPROVED)
    assert unposted == small.problem(demo.NOT_POSTED)
    assert small.frames["bills"]["posting_status"].unique().sort().to_list() == ["posted", "unposted"]


def test_incomplete_records(small: Written) -> None:
    found = set()
    for name in ("vendors", "customers"):
        table = CONTRACT[name]
        found |= keys(table.entity, small.frames[name].filter(pl.col("name").is_null()), table.record_id)
    for name, (party, others) in REQUIRED.items():
        table = CONTRACT[name]
        required = [c for c in (party, *others, "txn_date") if c]
        missing = small.frames[name].filter(pl.any_horizontal(pl.col(required).is_null()))
        found |= keys(table.entity, missing, table.record_id)
    for name, lines in LINES.items():
        table = CONTRACT[name]
        refs = [c for c in ("item_sku", "account_code") if c in small.frames[lines].columns]
        neither = small.frames[lines].filter(pl.all_horizontal(pl.col(refs).is_null()))
        found |= keys(table.entity, neither, table.record_id)
    assert found == small.problem(demo.INCOMPLETE)


def test_lines_that_do_not_sum_to_the_total(small: Written) -> None:
    found = set()
    for name in ("purchase_orders", "bills", "invoices"):
        table, lines = CONTRACT[name], small.frames[LINES[name]]
        sums = lines.group_by(table.record_id).agg(lines=cents("amount").sum())
        joined = small.frames[name].join(sums, on=table.record_id)
        assert joined.height == small.frames[name].height, "every document has lines"
        found |= keys(table.entity, joined.filter(cents("total") != pl.col("lines")), table.record_id)
    assert found == small.problem(demo.LINES_DO_NOT_SUM)


def test_line_amounts_that_are_not_qty_times_unit_price(small: Written) -> None:
    found = set()
    for name in ("purchase_orders", "bills", "invoices"):
        table = CONTRACT[name]
        for row in small.frames[LINES[name]].iter_rows(named=True):
            product = (Decimal(row["qty"]) * Decimal(row["unit_price"])).quantize(Decimal("0.01"), ROUND_HALF_UP)
            if product != Decimal(row["amount"]):
                found.add(f"{table.entity}:{row[table.record_id]}")
    assert found == small.problem(demo.LINE_AMOUNT_MISMATCH)


def test_journal_entries_that_do_not_balance(small: Written) -> None:
    lines = small.frames["journal_lines"]
    sides = lines.group_by("je_id").agg(
        debit=cents("amount").filter(pl.col("posting_type") == "debit").sum(),
        credit=cents("amount").filter(pl.col("posting_type") == "credit").sum(),
        size=pl.len(),
    )
    assert sides["size"].is_between(2, 4).all()
    assert keys("journal_entry", sides.filter(pl.col("debit") != pl.col("credit")), "je_id") == small.problem(
        demo.UNBALANCED
    )


def test_records_dated_in_the_closed_period_are_synced_or_seeded(small: Written) -> None:
    assert small.company["preferences"]["AccountingInfoPrefs"]["BookCloseDate"] == CLOSE
    found = set()
    for name, table in header_tables():
        if "txn_date" in table.column_names:
            closed = small.frames[name].filter(pl.col("txn_date") <= CLOSE)
            synced = marker_ids(small, QBO_ENTITY[name], table.entity)
            found |= keys(table.entity, closed.filter(~pl.col(table.record_id).is_in(list(synced))), table.record_id)
    assert found == small.problem(demo.CLOSED_PERIOD)


def test_currency_mismatches(small: Written) -> None:
    found = set()
    for name, table in header_tables():
        foreign = small.frames[name].filter(pl.col("currency") != "USD")
        assert name not in ("vendors", "customers") or foreign.is_empty()
        found |= keys(table.entity, foreign, table.record_id)
    assert small.company["preferences"]["CurrencyPrefs"]["MultiCurrencyEnabled"] is False
    assert found == small.problem(demo.CURRENCY_MISMATCH)


def _used_by(small: Written, column: str, values: set[str]) -> set[str]:
    """Keys of the records with a line (or, for payments, a header) whose `column` is in `values`."""
    found = set()
    for name, lines in LINES.items():
        if column in small.frames[lines].columns:
            table = CONTRACT[name]
            hit = small.frames[lines].filter(pl.col(column).is_in(list(values)))
            found |= keys(table.entity, hit, table.record_id)
    for name in ("payments", "bill_payments"):
        table = CONTRACT[name]
        if column in small.frames[name].columns:
            found |= keys(table.entity, small.frames[name].filter(pl.col(column).is_in(list(values))), table.record_id)
    return found


def test_mapping_gaps_and_inactive_matches(small: Written) -> None:
    accounts = {a["AcctNum"]: a for a in small.objects("Account") if "AcctNum" in a}
    items = {i["Sku"]: i for i in small.objects("Item") if "Sku" in i}
    awra_accounts = set(small.frames["accounts"]["account_code"].to_list())
    awra_items = set(small.frames["items"]["item_sku"].to_list())
    missing_accounts = awra_accounts - set(accounts)
    inactive_accounts = {c for c in awra_accounts & set(accounts) if not accounts[c]["Active"]}
    missing_items = awra_items - set(items)
    inactive_items = {s for s in awra_items & set(items) if not items[s]["Active"]}
    assert set(small.summary.reference_gaps["account"]) == missing_accounts
    assert set(small.summary.inactive_in_qbo["item"]) == inactive_items

    def item_keys(skus: set[str]) -> set[str]:
        return {f"item:{s}" for s in skus}

    assert _used_by(small, "account_code", missing_accounts) == small.problem(demo.ACCOUNT_MISSING)
    assert _used_by(small, "account_code", inactive_accounts) == small.problem(demo.ACCOUNT_INACTIVE)
    assert _used_by(small, "item_sku", missing_items) | item_keys(missing_items) == small.problem(demo.ITEM_MISSING)
    assert _used_by(small, "item_sku", inactive_items) | item_keys(inactive_items) == small.problem(demo.ITEM_INACTIVE)


def test_tax_code_category_and_payment_method_gaps(small: Written) -> None:
    def names(entity: str) -> set[str]:
        return {o["Name"] for o in small.objects(entity) if o["Active"]}

    def used(column: str) -> set[str]:
        tables = [*LINES.values(), "payments", "bill_payments"]
        return {v for t in tables if column in small.frames[t].columns for v in small.frames[t][column].drop_nulls()}

    tax_gaps = used("tax_code") - names("TaxCode")
    category_gaps = used("category") - names("Class") - names("Department")
    method_gaps = used("payment_method") - names("PaymentMethod")
    assert tax_gaps and category_gaps and method_gaps
    assert _used_by(small, "tax_code", tax_gaps) == small.problem(demo.TAX_CODE_MISSING)
    assert _used_by(small, "category", category_gaps) == small.problem(demo.CATEGORY_MISSING)
    assert _used_by(small, "payment_method", method_gaps) == small.problem(demo.PAYMENT_METHOD_MISSING)


def test_matched_reference_data_has_the_same_names_in_quickbooks(small: Written) -> None:
    accounts = {a["AcctNum"]: a["Name"] for a in small.objects("Account") if "AcctNum" in a}
    items = {i["Sku"]: i["Name"] for i in small.objects("Item") if "Sku" in i}
    for code, name in small.frames["accounts"].select("account_code", "name").iter_rows():
        assert accounts.get(code, name) == name
    for sku, name in small.frames["items"].select("item_sku", "name").iter_rows():
        assert items.get(sku, name) == name
        assert re.match(r"^[A-Z]{3}-\d{3,4}$", sku)
    for column in ("income_account_code", "expense_account_code"):
        assert set(small.frames["items"][column].to_list()) <= set(accounts)
    banks = set(small.frames["payments"]["deposit_account_code"]) | set(
        small.frames["bill_payments"]["bank_account_code"]
    )
    assert banks <= set(accounts)


def test_vendors_named_like_a_quickbooks_customer(small: Written) -> None:
    customers = {c["DisplayName"] for c in small.objects("Customer")}
    clash = small.frames["vendors"].filter(pl.col("name").is_in(list(customers)))
    assert keys("vendor", clash, "vendor_id") == small.problem(demo.NAME_EXISTS)
    ours = {o["DisplayName"] for e in ("Vendor", "Customer") for o in small.objects(e) if o.get("Notes")}
    theirs = {o["DisplayName"] for e in ("Vendor", "Customer", "Employee") for o in small.objects(e)
              if not o.get("Notes")}  # fmt: skip
    awra = (
        small.frames["vendors"]["name"].drop_nulls().to_list()
        + small.frames["customers"]["name"].drop_nulls().to_list()
    )
    assert len(awra) == len(set(awra)), "AWRA names are distinct"
    clean = set(awra) - set(clash["name"].to_list())
    assert not clean & theirs, "no clean party collides with a name QuickBooks already has"
    assert ours <= set(awra)


def _documents_against_quickbooks(small: Written, name: str) -> pl.DataFrame:
    """AWRA documents beside the QuickBooks objects of the same party that do not carry our marker."""
    table, entity = CONTRACT[name], QBO_ENTITY[name]
    party = "customer_id" if name == "invoices" else "vendor_id"
    parties = marker_ids(small, "Customer" if name == "invoices" else "Vendor", party.split("_")[0])
    party_ids = pl.DataFrame(
        {party: list(parties), "qbo_party": [o["Id"] for o in parties.values()]},
        schema={party: pl.String, "qbo_party": pl.String},
    )
    ref = "CustomerRef" if name == "invoices" else "VendorRef"
    theirs = pl.DataFrame(
        [
            {"qbo_party": o[ref]["value"], "doc": o["DocNumber"], "qbo_total": int(o["TotalAmt"] * 100),
             "qbo_date": o["TxnDate"]}
            for o in small.objects(entity)
            if not (o.get("PrivateNote") or "").startswith("awra:")
        ]
    )  # fmt: skip
    return (
        small.frames[name]
        .join(party_ids, on=party)
        .join(theirs, on="qbo_party")
        .with_columns(
            total_cents=cents("total"),
            days_apart=(pl.col("qbo_date").str.to_date() - pl.col("txn_date").str.to_date()).dt.total_days().abs(),
            number=pl.col(table.column_names[1]),
            record=pl.col(table.record_id),
        )
    )


def test_document_numbers_that_quickbooks_already_has_for_the_party(small: Written) -> None:
    found = set()
    for name in ("bills", "invoices"):
        pairs = _documents_against_quickbooks(small, name)
        found |= keys(CONTRACT[name].entity, pairs.filter(pl.col("number") == pl.col("doc")), "record")
    assert found == small.problem(demo.DOC_NUMBER_EXISTS)


def test_near_duplicates_of_objects_keyed_into_quickbooks(small: Written) -> None:
    found = set()
    for name in ("bills", "invoices"):
        pairs = _documents_against_quickbooks(small, name)
        near = pairs.filter((pl.col("total_cents") == pl.col("qbo_total")) & (pl.col("days_apart") <= 3))
        found |= keys(CONTRACT[name].entity, near, "record")
    assert found == small.problem(demo.NEAR_DUPLICATE)


# -- links between records --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("payments", "documents", "party", "doc_id"),
    [
        ("payments", "invoices", "customer_id", "invoice_id"),
        ("bill_payments", "bills", "vendor_id", "bill_id"),
    ],
)
def test_payments_apply_to_a_document_of_the_same_party(
    small: Written, payments: str, documents: str, party: str, doc_id: str
) -> None:
    docs = small.frames[documents].select(doc_id, pl.col(party).alias("doc_party"), "total", "txn_date")
    paid = small.frames[payments].filter(pl.col(doc_id).is_not_null()).join(docs, on=doc_id, suffix="_doc")
    assert paid.height == small.frames[payments][doc_id].drop_nulls().len(), "every reference resolves"
    with_party = paid.filter(pl.col(party).is_not_null())
    assert (with_party[party] == with_party["doc_party"]).all()
    dated = paid.filter(pl.col("txn_date").is_not_null())
    assert (dated["txn_date"] >= dated["txn_date_doc"]).all()
    totals = paid.group_by(doc_id).agg(paid=cents("amount").sum(), total=cents("total").first())
    assert (totals["paid"] <= totals["total"]).all()
    problem_docs = {k.split(":", 1)[1] for k in small.any_problem if k.startswith(CONTRACT[documents].entity + ":")}
    assert not set(paid[doc_id].to_list()) & problem_docs, "payments apply to clean documents only"


def test_bills_from_purchase_orders_keep_the_vendor(small: Written) -> None:
    orders = small.frames["purchase_orders"].select("po_id", pl.col("vendor_id").alias("po_vendor"))
    linked = small.frames["bills"].filter(pl.col("po_id").is_not_null()).join(orders, on="po_id")
    assert linked.height > 0.2 * small.frames["bills"].height
    assert (
        (linked.filter(pl.col("vendor_id").is_not_null()).select(pl.col("vendor_id") == pl.col("po_vendor")))
        .to_series()
        .all()
    )


# -- the QuickBooks company file --------------------------------------------------------------------------
def test_company_file_head(small: Written) -> None:
    company = small.company
    assert company["format"] == demo.COMPANY_FORMAT
    assert company["realm_id"] == DEMO_REALM_ID
    assert company["company_info"]["CompanyName"] == "Acme Field Services Inc."
    prefs = company["preferences"]
    assert prefs["CurrencyPrefs"]["HomeCurrency"] == {"value": "USD"}
    assert {"Name": "DuplicateDocNumberCheck", "Value": "true"} in prefs["OtherPrefs"]["NameValue"]
    assert list(company["objects"]) == [
        "Account", "TaxCode", "TaxRate", "PaymentMethod", "Class", "Department", "Term", "Vendor", "Customer",
        "Employee", "Item", "PurchaseOrder", "Bill", "Invoice", "Payment", "BillPayment", "JournalEntry",
    ]  # fmt: skip


def test_company_objects_have_ids_tokens_and_metadata(small: Written) -> None:
    stamp = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}-08:00$")
    for entity, objects in small.company["objects"].items():
        ids = [o["Id"] for o in objects]
        assert len(ids) == len(set(ids)) and all(i.isdigit() for i in ids), entity
        for obj in objects:
            assert obj["SyncToken"] == "0"
            assert stamp.match(obj["MetaData"]["CreateTime"]), entity
            assert None not in obj.values(), entity


def test_company_amounts_are_plain_numbers_with_two_places(small: Written) -> None:
    text = small.company_text
    numbers = re.findall(r'"(?:Amount|TotalAmt|Balance|UnitPrice|Qty|UnappliedAmt)":([^,}\]]+)', text)
    assert numbers and all(re.fullmatch(r"\d+\.\d{2}", n) for n in numbers)
    assert '"Amount":"' not in text and ":null" not in text


def test_records_older_than_three_weeks_are_in_quickbooks_with_our_marker(small: Written) -> None:
    problems = small.any_problem
    for name, table in header_tables():
        frame = small.frames[name]
        when = "txn_date" if "txn_date" in frame.columns else "updated_at"
        older = keys(table.entity, frame.filter(pl.col(when) < CUTOFF), table.record_id)
        synced = marker_ids(small, QBO_ENTITY[name], table.entity)
        assert {f"{table.entity}:{i}" for i in synced} == older - problems, name
        assert len(synced) == small.summary.presynced[table.entity] > 0.7 * len(older), name


@pytest.mark.parametrize("name", ["purchase_orders", "bills", "invoices"])
def test_synced_documents_match_their_source(small: Written, name: str) -> None:
    table = CONTRACT[name]
    synced = marker_ids(small, QBO_ENTITY[name], table.entity)
    lines = small.frames[LINES[name]].group_by(table.record_id).agg(n=pl.len())
    source = small.frames[name].join(lines, on=table.record_id).filter(pl.col(table.record_id).is_in(list(synced)))
    for row in source.iter_rows(named=True):
        obj = synced[row[table.record_id]]
        assert obj["DocNumber"] == row[table.column_names[1]]
        assert obj["TxnDate"] == row["txn_date"]
        assert obj["TotalAmt"] == Decimal(row["total"]) == sum(line["Amount"] for line in obj["Line"])
        assert len(obj["Line"]) == row["n"]


def test_quickbooks_balances_subtract_synced_payments(small: Written) -> None:
    invoices = {i["Id"]: i for i in small.objects("Invoice")}
    paid: dict[str, Decimal] = {}
    for payment in small.objects("Payment"):
        target = payment["Line"][0]["LinkedTxn"][0]["TxnId"]
        assert invoices[target]["CustomerRef"]["value"] == payment["CustomerRef"]["value"]
        paid[target] = paid.get(target, Decimal(0)) + payment["TotalAmt"]
    for qbo_id, invoice in invoices.items():
        assert invoice["Balance"] == invoice["TotalAmt"] - paid.get(qbo_id, Decimal(0)) >= 0
