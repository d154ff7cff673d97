"""Every reason code in one frame: QBO faults, readiness rules and mapping kinds, for the Help page and the queue.

Nothing here is written twice: explanations and fixes come from `qbo.faults.CATALOGUE`, `schemas.readiness.RULES`
and `pipelines.mappings.KINDS`, so the guide cannot say something the app does not. Only the reasons the pipelines
produce without an entry in either source are worded here (`_PIPELINE_REASONS`), and a test checks that every
reason an exception can carry has a row.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import polars as pl

from pipelines.connection_health import RECONNECT_SOON, RECONNECT_SOON_FIX
from pipelines.duplicates import RULES as DUPLICATE_RULES
from pipelines.mappings import KINDS
from qbo.faults import CATALOGUE, DIMENSIONS
from schemas.readiness import RULES

__all__ = ["COLUMNS", "DIMENSION_GUIDE", "Guide", "catalogue", "explain", "search"]

COLUMNS = {
    "reason": pl.String,
    "dimension": pl.String,
    "found_by": pl.String,
    "explanation": pl.String,
    "fix": pl.String,
    "owner": pl.String,
    "owner_role": pl.String,
    "retry": pl.String,
    "qbo_codes": pl.String,
    "escalate_to": pl.String,
    "evidence": pl.String,
}


@dataclass(frozen=True)
class Guide:
    """Per dimension: what the sync does on its own, who to escalate to, and the evidence to attach."""

    title: str
    retry: str
    escalate_to: str
    evidence: str


# ARCHITECTURE.md "Health dimensions", in the words the Help page uses.
DIMENSION_GUIDE: dict[str, Guide] = {
    "authorization": Guide(
        "Connection to QuickBooks",
        "Never: the company is paused until an admin reconnects; then everything queued goes on its own.",
        "The QuickBooks company admin (reconnect, renew the subscription), then Intuit developer support.",
        "Realm id; connection status and reason; when it last refreshed and who connected it; the intuit_tid of "
        "the refused call.",
    ),
    "mapping": Guide(
        "Mappings",
        "After the mapping changes: every record waiting on it is re-checked and sent in the next cycle.",
        "An admin who maps values (Mappings page), or whoever keeps the QuickBooks chart of accounts and lists.",
        "The AWRA value and its kind; the QuickBooks object it should map to (name or Id); the records and "
        "dollars it blocks (Mappings page).",
    ),
    "source_data": Guide(
        "Source data in AWRA",
        "After the record changes in AWRA: the next snapshot brings it and it is checked again.",
        "The record's owner in AWRA (its owner field), then the finance lead.",
        "The record key; the field the detail names and its value in AWRA; the snapshot it arrived in.",
    ),
    "provider_rejection": Guide(
        "Refused by QuickBooks",
        "After the data or the mapping changes (a stale object is re-read and tried once more on its own).",
        "An admin, then Intuit developer support, quoting the intuit_tid.",
        "The provider message and detail; the QBO error code; the intuit_tid and request id of each attempt; the "
        "number of attempts (Record page, Attempts).",
    ),
    "duplicate_risk": Guide(
        "Possible duplicate",
        "Never blindly: the record is looked up in QuickBooks first, and a person links it or confirms it is new.",
        "The finance lead, who decides: link to the QuickBooks object, or create new with a reason.",
        "The record key; the QuickBooks candidate Id(s) and why they match; the request id and intuit_tid of an "
        "attempt whose outcome is unknown.",
    ),
    "transport": Guide(
        "QuickBooks or the network unavailable",
        "Automatic, with backoff and jitter; after the last scheduled retry it escalates to an admin.",
        "An admin, then Intuit developer support if QuickBooks itself is down.",
        "The intuit_tid, HTTP status and time of each attempt; the retry count; the next retry time.",
    ),
}

# Reasons the pipelines produce that neither source words (readiness dependencies, the duplicate check's own rule).
_PIPELINE_REASONS: dict[str, tuple[str, str, str]] = {
    "source_data.dependency_not_ready": (
        "readiness check",
        "The record refers to another record (its vendor, customer, invoice or bill) that is not ready or not in "
        "QuickBooks yet, so it waits for it.",
        "Fix the record the detail names; this one follows on its own in the next cycle.",
    ),
    RECONNECT_SOON: (
        "connection check",
        "The QuickBooks connection still works but will lapse soon (its sign-in expires unless renewed before "
        "the date shown), and then nothing more is sent.",
        RECONNECT_SOON_FIX,
    ),
    "duplicate_risk.similar_transaction": (
        "duplicate check",
        "QuickBooks already has a transaction for the same party with the same amount on a nearby date.",
        "Open the QuickBooks transaction the detail names: link it if it is this record, otherwise confirm "
        "'create new' with a reason.",
    ),
    "source_data.mass_removal": (
        "ingest",
        "AWRA snapshot refused as a mass removal: it would have removed a large part of a table, or emptied one, "
        "which is what a broken or partial export looks like. Nothing of it was applied, and no new AWRA data "
        "arrives until someone decides.",
        "Check the export the detail names. If it was broken, fix it: the next snapshot goes in on its own. If "
        'those records really left AWRA, an admin ingests the snapshot again with --allow-removal "reason" '
        "(`synchealth ingest DIR --allow-removal ...`); the reason is kept in the audit log.",
    ),
    "source_data.delta_out_of_order": (
        "ingest",
        "AWRA delta snapshot refused: it follows a snapshot that is not the last one applied, so applying it could "
        "lose changes or bring back removed records. Nothing of it was applied, and no new AWRA data arrives until "
        "the gap is filled.",
        "Ask whoever runs the AWRA export for the deltas between the two snapshots the detail names and drop them in "
        "order, or for a full snapshot, which always applies; the next one that fits goes in on its own.",
    ),
    "provider_rejection.deleted_in_qbo": (
        "QuickBooks check (after each pull)",
        "Deleted in QuickBooks: the record was synced, then someone deleted its transaction in QuickBooks, so the "
        "books no longer hold what AWRA does. Nothing more is sent for it until a person decides.",
        "Find out in QuickBooks (Audit log) who deleted it and why. If it was deleted on purpose, exclude the record "
        "from sync with that reason. If it was a mistake, re-enter it in QuickBooks and ask an admin to link the "
        "record to the new transaction.",
    ),
    "provider_rejection.voided_in_qbo": (
        "QuickBooks check (after each pull)",
        "Voided in QuickBooks: the synced transaction was voided there (its amounts are now zero) while AWRA still "
        "has it posted with money on it, so the books and AWRA disagree.",
        "If the void is right, void the record in AWRA too (or exclude it from sync with the reason); the exception "
        "closes on its own. If it is not, ask whoever voided it in QuickBooks to re-enter the transaction.",
    ),
    "provider_rejection.changed_in_qbo": (
        "QuickBooks check (after each pull)",
        "Changed in QuickBooks: someone changed the synced transaction's total in QuickBooks, so it no longer "
        "matches the AWRA record it came from. Nothing more is sent for it, so their change is not overwritten "
        "without a decision.",
        "Compare the two totals in the detail. If QuickBooks is wrong, correct it there; if AWRA is wrong, correct "
        "the record in AWRA. Either way the exception closes on its own at the next check; exclude the record if it "
        "should no longer be synced.",
    ),
}
# Who owns a pipeline reason when it is not its dimension's default: letting a mass removal in is an admin's call.
_PIPELINE_OWNERS = {"source_data.mass_removal": "admin", "source_data.delta_out_of_order": "admin"}
_PARTY_KINDS = ("vendor", "customer")
# ARCHITECTURE.md "Health dimensions", default owner column (transport: "system, then admin").
DIMENSION_OWNER = {
    "authorization": "admin",
    "mapping": "admin",
    "source_data": "finance",
    "provider_rejection": "finance",
    "duplicate_risk": "finance",
    "transport": "system",
}


def _owner_label(owner: str) -> str:
    return "system, then admin" if owner == "system" else owner


def _rows() -> list[dict[str, str]]:
    rows: dict[str, dict[str, str]] = {}

    def add(reason: str, found_by: str, explanation: str, fix: str, owner: str, codes: str = "") -> None:
        if reason in rows:  # one reason, two places that find it: keep the first wording, name both finders
            row = rows[reason]
            if found_by not in row["found_by"]:
                row["found_by"] += f"; {found_by}"
            row["qbo_codes"] = row["qbo_codes"] or codes
            return
        dimension = reason.split(".", 1)[0]
        guide = DIMENSION_GUIDE[dimension]
        rows[reason] = {
            "reason": reason,
            "dimension": dimension,
            "found_by": found_by,
            "explanation": explanation,
            "fix": fix,
            "owner": _owner_label(owner),
            "owner_role": "admin" if owner == "system" else owner,
            "retry": guide.retry,
            "qbo_codes": codes,
            "escalate_to": guide.escalate_to,
            "evidence": guide.evidence,
        }

    # Readiness rules: several rules share a reason (incomplete); their fixes differ by what is missing.
    by_reason: dict[str, list] = {}
    for rule in RULES:
        by_reason.setdefault(rule.reason, []).append(rule)
    for reason, rules in by_reason.items():
        fixes = " ".join(dict.fromkeys(r.fix for r in rules))
        add(reason, "readiness check", rules[0].explanation, fixes, rules[0].owner)
    for reason, r in CATALOGUE.items():
        add(reason, "QuickBooks answer", r.explanation, r.fix, r.owner, ", ".join(r.codes))
    for kind in KINDS.values():
        noun, qbo_noun = kind.noun, kind.qbo_noun
        add(
            f"mapping.{kind.kind}_missing",
            "mapping check",
            f"The record uses an AWRA {noun} that has no QuickBooks {qbo_noun} mapped (or only a suggestion nobody "
            "has confirmed), so it cannot be built.",
            f"An admin maps the {noun} on the Mappings page (or `synchealth map {kind.kind} VALUE QBO_ID`); every "
            "record waiting on it is re-checked at once.",
            "admin",
        )
        add(
            f"mapping.{kind.kind}_stale",
            "mapping check",
            f"The AWRA {noun} is mapped to a QuickBooks {qbo_noun} that is inactive or deleted there.",
            f"Reactivate the {qbo_noun} in QuickBooks, or an admin maps the {noun} to an active one on the Mappings "
            "page.",
            "admin",
        )
    for party in _PARTY_KINDS:
        add(
            f"mapping.{party}_stale",
            "mapping check",
            f"The record's {party} is linked to a QuickBooks {party} that is inactive or deleted there.",
            f"Reactivate the {party} in QuickBooks, or an admin maps it to an active one "
            f"(`synchealth map {party} AWRA_ID QBO_ID`).",
            "admin",
        )
    for duplicate_rule in DUPLICATE_RULES:
        reason = f"duplicate_risk.{duplicate_rule}"
        if reason in rows:
            add(reason, "duplicate check", "", "", "finance")
    for reason, (found_by, explanation, fix) in _PIPELINE_REASONS.items():
        owner = _PIPELINE_OWNERS.get(reason, DIMENSION_OWNER[reason.split(".", 1)[0]])
        add(reason, found_by, explanation, fix, owner)
    return list(rows.values())


@cache
def catalogue() -> pl.DataFrame:
    """One row per reason code, ordered by dimension (the ARCHITECTURE.md order), then reason."""
    order = {d: i for i, d in enumerate(DIMENSIONS)}
    return (
        pl.DataFrame(_rows(), schema=COLUMNS)
        .with_columns(pl.col("dimension").replace_strict(order, return_dtype=pl.Int32).alias("_order"))
        .sort("_order", "reason")
        .drop("_order")
    )


def explain(frame: pl.DataFrame, columns: tuple[str, ...] = ("explanation", "fix")) -> pl.DataFrame:
    """Join the catalogue's words onto a frame with a `reason` column (a reason it lacks says so, never blank)."""
    words = catalogue().select("reason", *columns)
    joined = frame.join(words, on="reason", how="left", maintain_order="left")
    return joined.with_columns(
        pl.col(c).fill_null("This reason has no catalogue entry yet; read the detail.") for c in columns
    )


def search(text: str | None = None, dimensions: list[str] | None = None) -> pl.DataFrame:
    """The catalogue rows whose code or words contain the text, in the chosen dimensions."""
    frame = catalogue()
    if dimensions:
        frame = frame.filter(pl.col("dimension").is_in(dimensions))
    if text and text.strip():
        needle = text.strip().lower()
        frame = frame.filter(
            pl.any_horizontal(
                pl.col(c).str.to_lowercase().str.contains(needle, literal=True)
                for c in ("reason", "explanation", "fix", "qbo_codes")
            )
        )
    return frame
