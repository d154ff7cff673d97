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

__all__ = ["COLUMNS", "DIMENSION_GUIDE", "Guide", "catalogue", "explain", "search", "title_of"]

COLUMNS = {
    "reason": pl.String,
    "title": pl.String,
    "decides": pl.String,
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


# Each reason's name in a finance person's words: what the pages show where a code would otherwise appear. Mapping
# reasons are named from their kind (see _rows); a test checks that every reason has one.
_TITLES = {
    "authorization.access_denied": "QuickBooks user has no access to the company",
    "authorization.app_credentials": "App not recognised by QuickBooks",
    "authorization.company_inactive": "QuickBooks subscription inactive",
    "authorization.connect_failed": "QuickBooks connection could not be completed",
    "authorization.not_connected": "QuickBooks not connected",
    "authorization.reconnect_needed": "QuickBooks must be reconnected",
    "authorization.reconnect_soon": "QuickBooks connection lapses soon",
    "authorization.scope_or_environment": "QuickBooks permission or environment wrong",
    "authorization.token_expired": "QuickBooks sign-in refused",
    "authorization.token_unreadable": "Saved QuickBooks connection unreadable",
    "authorization.user_not_in_company": "Connecting user left the QuickBooks company",
    "authorization.wrong_address": "Not a QuickBooks address",
    "source_data.closed_period": "Dated in a closed QuickBooks period",
    "source_data.currency_mismatch": "Currency differs from the books",
    "source_data.dependency_not_ready": "Waits on another record",
    "source_data.inactive_in_awra": "Inactive in AWRA",
    "source_data.incomplete": "Required field empty in AWRA",
    "source_data.invalid_name": "Name QuickBooks cannot take",
    "source_data.line_amount_mismatch": "Line amount is not quantity times price",
    "source_data.lines_do_not_sum": "Lines do not add up to the total",
    "source_data.mass_removal": "AWRA snapshot held back: mass removal",
    "source_data.delta_out_of_order": "AWRA delta held back: out of order",
    "source_data.not_approved": "Not approved in AWRA",
    "source_data.not_posted": "Not posted in AWRA",
    "source_data.text_too_long": "Text too long for QuickBooks",
    "source_data.unbalanced": "Journal entry does not balance",
    "source_data.unknown_reference": "Refers to a record AWRA did not send",
    "source_data.void": "Void in AWRA",
    "provider_rejection.amount_mismatch": "QuickBooks refused: line amount",
    "provider_rejection.business_rule": "QuickBooks refused: business rule",
    "provider_rejection.changed_in_qbo": "Changed in QuickBooks after the sync",
    "provider_rejection.deleted_in_qbo": "Deleted in QuickBooks after the sync",
    "provider_rejection.deposited_transaction": "Already deposited in QuickBooks",
    "provider_rejection.invalid_reference": "QuickBooks refused: unknown account, item or party",
    "provider_rejection.invalid_request": "QuickBooks refused the request",
    "provider_rejection.invalid_value": "QuickBooks refused a value",
    "provider_rejection.object_not_found": "QuickBooks cannot find a linked object",
    "provider_rejection.query_rejected": "QuickBooks refused a lookup",
    "provider_rejection.required_field_missing": "QuickBooks needs a missing field",
    "provider_rejection.result_too_large": "QuickBooks lookup too large",
    "provider_rejection.stale_object": "Changed in QuickBooks during the update",
    "provider_rejection.unknown_fault": "QuickBooks refused with an unknown error",
    "provider_rejection.unsupported_operation": "QuickBooks could not read the request",
    "provider_rejection.voided_in_qbo": "Voided in QuickBooks after the sync",
    "duplicate_risk.doc_number_exists": "Document number already in QuickBooks",
    "duplicate_risk.name_exists": "Name already in QuickBooks",
    "duplicate_risk.outcome_unknown": "Sent, no answer: looked up before resending",
    "duplicate_risk.similar_transaction": "Similar transaction already in QuickBooks",
    "transport.connection_failed": "QuickBooks unreachable",
    "transport.connection_reset": "Connection to QuickBooks broke",
    "transport.gateway_timeout": "QuickBooks gateway timed out",
    "transport.malformed_response": "Unreadable answer from QuickBooks",
    "transport.not_sent": "Held back with a failed batch",
    "transport.server_error": "QuickBooks internal error",
    "transport.service_unavailable": "QuickBooks temporarily unavailable",
    "transport.throttled": "QuickBooks asked to slow down",
    "transport.timeout": "QuickBooks did not answer in time",
    "transport.try_again": "QuickBooks asked to try again later",
}
# Who decides what happens to a record held back for this reason (the person the owner goes to), in the words of a
# close meeting; a reason not listed takes its dimension's.
_DECIDES_BY_DIMENSION = {
    "authorization": "QuickBooks admin",
    "mapping": "admin (mappings)",
    "source_data": "record owner in AWRA",
    "provider_rejection": "finance",
    "duplicate_risk": "finance lead",
    "transport": "system, then admin",
}
_DECIDES = {
    "source_data.closed_period": "controller",
    "source_data.not_approved": "approver in AWRA",
    "source_data.mass_removal": "admin",
    "source_data.delta_out_of_order": "admin",
    "source_data.dependency_not_ready": "owner of the record it waits on",
    "provider_rejection.changed_in_qbo": "controller",
    "provider_rejection.deleted_in_qbo": "controller",
    "provider_rejection.voided_in_qbo": "controller",
    "provider_rejection.invalid_request": "admin",
    "provider_rejection.query_rejected": "admin",
    "provider_rejection.result_too_large": "admin",
    "provider_rejection.unknown_fault": "admin",
    "provider_rejection.unsupported_operation": "admin",
    "provider_rejection.stale_object": "system, then admin",
    "duplicate_risk.outcome_unknown": "system, then admin",
}


def title_of(reason: str | None) -> str:
    """A reason's title for a person (the catalogue's), or plain words for a reason it lacks; never the code."""
    if not reason:
        return "Waiting for the next sync run"
    found = catalogue().filter(pl.col("reason") == reason)
    if found.height:
        return str(found["title"][0])
    dimension = reason.split(".", 1)[0]
    guide = DIMENSION_GUIDE.get(dimension)
    return f"{guide.title}: not yet described" if guide else "Not yet described"


def _owner_label(owner: str) -> str:
    return "system, then admin" if owner == "system" else owner


def _rows() -> list[dict[str, str]]:
    rows: dict[str, dict[str, str]] = {}

    def add(
        reason: str, found_by: str, explanation: str, fix: str, owner: str, codes: str = "", title: str = ""
    ) -> None:
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
            "title": title or _TITLES.get(reason, ""),
            "decides": _DECIDES.get(reason, _DECIDES_BY_DIMENSION[dimension]),
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
            f"An admin maps the {noun} on the Mappings page (or `synchealth map {kind.kind.replace('_', '-')} VALUE "
            "QBO_ID --reason TEXT`); every record waiting on it is re-checked at once.",
            "admin",
            title=f"{noun[:1].upper()}{noun[1:]} not mapped to QuickBooks",
        )
        add(
            f"mapping.{kind.kind}_stale",
            "mapping check",
            f"The AWRA {noun} is mapped to a QuickBooks {qbo_noun} that is inactive or deleted there.",
            f"Reactivate the {qbo_noun} in QuickBooks, or an admin maps the {noun} to an active one on the Mappings "
            "page.",
            "admin",
            title=f"{noun[:1].upper()}{noun[1:]} mapped to an inactive QuickBooks {qbo_noun}",
        )
    for party in _PARTY_KINDS:
        add(
            f"mapping.{party}_stale",
            "mapping check",
            f"The record's {party} is linked to a QuickBooks {party} that is inactive or deleted there.",
            f"Reactivate the {party} in QuickBooks, or an admin maps it to an active one "
            f"(`synchealth map {party} AWRA_ID QBO_ID --reason TEXT`).",
            "admin",
            title=f"{party.capitalize()} inactive in QuickBooks",
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
