"""Readiness rules per entity as Pandera checks: complete, approved, posted and eligible, with fixes."""

from __future__ import annotations

from dataclasses import dataclass

import pandera.polars as pa
import polars as pl

__all__ = ["QBO_TEXT_LIMITS", "RULES", "Rule", "readiness_schema", "rules_for"]

PARTIES = ("vendor", "customer")
LINED = ("purchase_order", "bill", "invoice")
TRANSACTIONS = (*LINED, "payment", "bill_payment", "journal_entry")
WITH_PARTY = ("purchase_order", "bill", "invoice", "payment", "bill_payment")


# The most characters QuickBooks takes in each text field the sync fills from AWRA (shared/reference/qbo-api.md §5,
# "Field lengths"); a longer value is refused by QuickBooks, so readiness finds it before anything is sent.
QBO_TEXT_LIMITS = {
    "DisplayName": 500,  # vendor and customer names
    "DocNumber": 21,  # purchase order, bill, invoice and journal entry numbers
    "PaymentRefNum": 21,  # a payment's number
    "Description": 4000,  # a line's description
}


@dataclass(frozen=True)
class Rule:
    """One readiness rule: passes is True for a ready row; detail says what to fix on a failing one."""

    reason: str
    check: str  # complete | approved | posted | eligible
    entities: tuple[str, ...]
    passes: pl.Expr
    detail: pl.Expr
    explanation: str
    fix: str
    owner: str = "finance"

    @property
    def dimension(self) -> str:
        return self.reason.split(".", 1)[0]


c = pl.col
_party = pl.when(c("entity").is_in(["invoice", "payment"])).then(pl.lit("customer")).otherwise(pl.lit("vendor"))


def _blank(col: str) -> pl.Expr:
    return c(col).is_null() | (c(col).str.strip_chars() == "")


RULES: tuple[Rule, ...] = (
    Rule(
        "source_data.not_approved",
        "approved",
        (*PARTIES, *TRANSACTIONS),
        c("approval_status") == "approved",
        pl.format("approval status is {} in AWRA", c("approval_status")),
        "The record is not approved in AWRA, so it must not reach the books.",
        "Approve it in AWRA (or reject it for good); the next snapshot brings it here.",
    ),
    Rule(
        "source_data.incomplete",
        "complete",
        PARTIES,
        ~_blank("name"),
        pl.lit("the name is empty; QuickBooks needs a display name"),
        "A required field is empty, so QuickBooks would refuse the record.",
        "Fill in the missing field in AWRA.",
    ),
    Rule(
        "source_data.invalid_name",
        "complete",
        PARTIES,
        ~c("name").str.contains(r"[:\t\n]").fill_null(False),
        pl.format("the name '{}' contains ':' or a tab or line break, which QuickBooks refuses", c("name")),
        "QuickBooks display names cannot contain a colon, tab or line break.",
        "Rename it in AWRA without those characters.",
    ),
    Rule(
        "source_data.text_too_long",
        "complete",
        (*PARTIES, *TRANSACTIONS),
        c("too_long").is_null(),
        c("too_long"),
        "A text is longer than QuickBooks takes in its field (a name 500 characters, a document number 21, a line "
        "description 4,000), so QuickBooks would refuse the record.",
        "Shorten the text the detail names in AWRA; the next snapshot brings it here.",
    ),
    Rule(
        "source_data.inactive_in_awra",
        "eligible",
        PARTIES,
        c("status") == "active",
        pl.lit("the record is inactive in AWRA"),
        "Inactive parties are not created in QuickBooks.",
        "Reactivate it in AWRA if it is still in use, or exclude the records that use it.",
    ),
    Rule(
        "source_data.incomplete",
        "complete",
        WITH_PARTY,
        ~_blank("party_id"),
        pl.format("no {} on the record", _party),
        "A required field is empty, so QuickBooks would refuse the record.",
        "Fill in the missing field in AWRA.",
    ),
    Rule(
        "source_data.incomplete",
        "complete",
        TRANSACTIONS,
        c("txn_date").is_not_null(),
        pl.lit("the transaction date is empty"),
        "A required field is empty, so QuickBooks would refuse the record.",
        "Fill in the missing field in AWRA.",
    ),
    Rule(
        "source_data.incomplete",
        "complete",
        (*LINED, "payment", "bill_payment"),
        c("amount").is_not_null(),
        pl.lit("the total is empty"),
        "A required field is empty, so QuickBooks would refuse the record.",
        "Fill in the missing field in AWRA.",
    ),
    Rule(
        "source_data.incomplete",
        "complete",
        ("bill_payment",),
        ~_blank("document_id") & ~_blank("account_code"),
        pl.lit("a bill payment needs the bill it pays and the bank account it is paid from"),
        "A required field is empty, so QuickBooks would refuse the record.",
        "Fill in the missing field in AWRA.",
    ),
    Rule(
        "source_data.unknown_reference",
        "complete",
        WITH_PARTY,
        c("party_known") | _blank("party_id"),
        pl.format("{} {} does not exist in the AWRA snapshot", _party, c("party_id")),
        "The record points at a party or document that the AWRA snapshot does not contain.",
        "Correct the reference in AWRA, or add the missing record to the export.",
    ),
    Rule(
        "source_data.unknown_reference",
        "complete",
        ("payment", "bill_payment"),
        c("document_known") | _blank("document_id"),
        pl.format(
            "{} {} does not exist in the AWRA snapshot",
            pl.when(c("entity") == "payment").then(pl.lit("invoice")).otherwise(pl.lit("bill")),
            c("document_id"),
        ),
        "The record points at a party or document that the AWRA snapshot does not contain.",
        "Correct the reference in AWRA, or add the missing record to the export.",
    ),
    Rule(
        "source_data.incomplete",
        "complete",
        (*LINED, "journal_entry"),
        c("line_count") >= pl.when(c("entity") == "journal_entry").then(2).otherwise(1),
        pl.format("the record has {} lines", c("line_count")),
        "A required field is empty, so QuickBooks would refuse the record.",
        "Add the lines in AWRA.",
    ),
    Rule(
        "source_data.incomplete",
        "complete",
        (*LINED, "journal_entry"),
        c("lines_missing_ref").is_null(),
        pl.format("{} has no item SKU or account", c("lines_missing_ref")),
        "A required field is empty, so QuickBooks would refuse the record.",
        "Give every line an item (invoices) or an account in AWRA.",
    ),
    Rule(
        "source_data.incomplete",
        "complete",
        (*LINED, "journal_entry"),
        c("lines_missing_amount").is_null(),
        pl.format("{} has no amount", c("lines_missing_amount")),
        "A required field is empty, so QuickBooks would refuse the record.",
        "Fill in the line amounts in AWRA.",
    ),
    Rule(
        "source_data.line_amount_mismatch",
        "complete",
        LINED,
        c("lines_amount_mismatch").is_null(),
        c("lines_amount_mismatch"),
        "A line's amount is not its quantity times its unit price, so QuickBooks would refuse it.",
        "Correct the quantity, unit price or amount of the line in AWRA.",
    ),
    Rule(
        "source_data.lines_do_not_sum",
        "complete",
        LINED,
        (c("lines_total") == c("amount")).fill_null(True),
        pl.format("lines add up to {} but the total is {}", c("lines_total"), c("amount")),
        "The lines do not add up to the total (to the cent).",
        "Correct the lines or the total in AWRA.",
    ),
    Rule(
        "source_data.unbalanced",
        "complete",
        ("journal_entry",),
        (c("debits") == c("credits")).fill_null(True),
        pl.format(
            "debits {} and credits {} differ by {}",
            c("debits"),
            c("credits"),
            (c("debits") - c("credits")).abs(),
        ),
        "The journal entry does not balance: debits must equal credits.",
        "Correct the journal lines in AWRA.",
    ),
    Rule(
        "source_data.not_posted",
        "posted",
        TRANSACTIONS,
        c("posting_status") != "unposted",
        pl.lit("the transaction is not posted in AWRA"),
        "Only posted transactions go to QuickBooks.",
        "Post it in AWRA; the next snapshot brings it here.",
    ),
    Rule(
        "source_data.void",
        "posted",
        TRANSACTIONS,
        c("posting_status") != "void",
        pl.lit("the transaction is void in AWRA"),
        "A void transaction is not created in QuickBooks.",
        "Nothing to send; exclude it from sync if it should not show as open.",
    ),
    Rule(
        "source_data.closed_period",
        "eligible",
        TRANSACTIONS,
        (c("txn_date") > c("book_close_date")).fill_null(True),
        pl.format("dated {}, on or before the QuickBooks closing date {}", c("txn_date"), c("book_close_date")),
        "The transaction is dated in a period that is closed in QuickBooks.",
        "Change the date in AWRA to an open period, or ask the controller to reopen the period.",
    ),
    Rule(
        "source_data.currency_mismatch",
        "eligible",
        (*PARTIES, *TRANSACTIONS),
        (
            c("currency").is_null()
            | c("home_currency").is_null()
            | (c("currency") == c("home_currency"))
            | (c("multicurrency") & (c("currency") == c("party_currency").fill_null(c("currency"))))
        ).fill_null(True),
        pl.format(
            "in {} while QuickBooks keeps {}{}",
            c("currency"),
            c("home_currency"),
            pl.when(c("multicurrency"))
            .then(pl.format(" and the party uses {}", c("party_currency")))
            .otherwise(pl.lit(" and multicurrency is off")),
        ),
        "The currency is not the company's home currency (or the party's, with multicurrency on).",
        "Correct the currency in AWRA, or turn on multicurrency in QuickBooks first.",
    ),
)


def rules_for(entity: str) -> list[Rule]:
    return [r for r in RULES if entity in r.entities]


def _as_check(rule: Rule, index: int) -> pa.Check:
    def check(data: pa.PolarsData) -> pl.LazyFrame:
        # The rule reads the whole row (data.lazyframe), not only the column the check is attached to.
        return data.lazyframe.select(rule.passes.fill_null(True))

    # The name carries the rule's position: several rules share a reason code (e.g. incomplete).
    # No `error=`: Pandera would then report the text instead of the name in failure_cases.check.
    return pa.Check(check, name=f"{index}:{rule.reason}")


def readiness_schema(entity: str) -> pa.DataFrameSchema:
    """The Pandera schema of one entity's readiness frame: every rule that applies to it, as a check.

    The checks hang on the record_id column, not on the frame: for a failing frame-level check Pandera turns
    every failing row, all its columns, into Python dicts for its report, while a column-level check reports
    only the record_id (and the row index, which is what source_findings reads). Each check still evaluates
    its rule over the whole row. nullable=True: the schema adds no check of its own.
    """
    return pa.DataFrameSchema(
        {
            "record_id": pa.Column(
                checks=[_as_check(r, i) for i, r in enumerate(RULES) if entity in r.entities], nullable=True
            )
        },
        name=f"readiness:{entity}",
    )
