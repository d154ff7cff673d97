"""Every QBO call outcome -> a health dimension, a stable reason code, retryable, and plain-language text."""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = [
    "ACCEPTED",
    "CATALOGUE",
    "DIMENSIONS",
    "OUTCOMES",
    "TRANSPORT_ERRORS",
    "Outcome",
    "Reason",
    "classify",
    "outcome_for",
]

DIMENSIONS = ("authorization", "mapping", "source_data", "provider_rejection", "duplicate_risk", "transport")
OUTCOMES = ("accepted", "rejected", "duplicate", "authorization", "throttled", "transport", "ambiguous")

# What went wrong below HTTP. "connect_*" never reached QBO; the others may have (the request was sent).
TRANSPORT_ERRORS = ("connect_timeout", "connect_failed", "timeout", "reset", "malformed")
_NOT_SENT = ("connect_timeout", "connect_failed")


@dataclass(frozen=True)
class Reason:
    """One catalogue entry: what the Help page shows and what the sync engine does with it."""

    dimension: str
    outcome: str
    retryable: bool
    owner: str
    explanation: str
    fix: str
    codes: tuple[str, ...] = ()


@dataclass(frozen=True)
class Outcome:
    """The classified result of one call (or one batch item)."""

    outcome: str
    dimension: str | None
    reason: str
    retryable: bool
    explanation: str
    fix: str
    owner: str | None = None

    @property
    def accepted(self) -> bool:
        return self.outcome == "accepted"


ACCEPTED = Outcome("accepted", None, "accepted", False, "QuickBooks accepted the request.", "Nothing to do.")

# Per dimension: the usual outcome, whether the sync retries on its own, and the default owner
# (ARCHITECTURE.md "Health dimensions"). An entry states only what differs.
_DEFAULTS: dict[str, tuple[str, bool, str]] = {
    "authorization": ("authorization", False, "admin"),
    "mapping": ("rejected", False, "admin"),
    "source_data": ("rejected", False, "finance"),
    "provider_rejection": ("rejected", False, "finance"),
    "duplicate_risk": ("duplicate", False, "finance"),
    "transport": ("transport", True, "system"),
}


def _entry(
    reason: str,
    explanation: str,
    fix: str,
    *,
    codes: tuple[str, ...] = (),
    outcome: str | None = None,
    retryable: bool | None = None,
    owner: str | None = None,
) -> tuple[str, Reason]:
    dimension = reason.split(".", 1)[0]
    usual_outcome, usual_retry, usual_owner = _DEFAULTS[dimension]
    retry = usual_retry if retryable is None else retryable
    return reason, Reason(dimension, outcome or usual_outcome, retry, owner or usual_owner, explanation, fix, codes)


# The one catalogue (it also feeds the Help page). Keys are stable reason codes, stored in the database
# and shown in the UI and CLI: rename one only with a migration. `codes` are QBO fault codes (ref §3)
# or OAuth error strings (ref §2).
CATALOGUE: dict[str, Reason] = dict(
    [
        # -- authorization: nothing can be sent until an admin acts; the sync pauses the realm
        _entry(
            "authorization.reconnect_needed",
            "QuickBooks no longer accepts this app's connection to the company (it expired, was revoked or "
            "was replaced by a newer sign-in), so nothing is being sent.",
            "An admin reconnects QuickBooks from the Connection page; queued records then sync on their own.",
            codes=("invalid_grant",),
        ),
        _entry(
            "authorization.token_expired",
            "QuickBooks rejected the connection's sign-in even after it was renewed, so nothing was sent.",
            "An admin reconnects QuickBooks from the Connection page.",
            codes=("3200",),
        ),
        _entry(
            "authorization.token_unreadable",
            "The saved QuickBooks connection cannot be unlocked with this installation's secret key, so "
            "nothing is being sent.",
            "An admin restores the original SYNCHEALTH_SECRET_KEY or reconnects QuickBooks.",
        ),
        _entry(
            "authorization.not_connected",
            "No QuickBooks company is connected for this realm, so nothing can be sent.",
            "An admin connects QuickBooks from the Connection page.",
        ),
        _entry(
            "authorization.connect_failed",
            "QuickBooks refused to complete the connection (the sign-in link expired or was already used).",
            "An admin starts Connect again and completes the QuickBooks sign-in within a few minutes.",
            codes=("invalid_request",),
        ),
        _entry(
            "authorization.app_credentials",
            "QuickBooks does not recognise this app's client id and secret, so no connection can be made.",
            "An admin checks SYNCHEALTH_QBO_CLIENT_ID and SYNCHEALTH_QBO_CLIENT_SECRET for this environment.",
            codes=("invalid_client", "unauthorized_client"),
        ),
        _entry(
            "authorization.scope_or_environment",
            "QuickBooks refused access: the connection lacks the accounting permission, or a sandbox company"
            " is being reached on the production address (or the reverse).",
            "An admin checks SYNCHEALTH_QBO_ENV matches the company and reconnects with accounting access.",
            codes=("3100",),
        ),
        _entry(
            "authorization.access_denied",
            "The QuickBooks user who connected the app has no access to this company or its subscription "
            "level, so nothing was sent.",
            "An admin reconnects QuickBooks as a company admin on a subscription that includes the API.",
            codes=("120",),
        ),
        _entry(
            "authorization.company_inactive",
            "The QuickBooks company's subscription is not active, so QuickBooks accepts no changes.",
            "The company owner renews the QuickBooks subscription, then an admin retries the paused records.",
            codes=("6190",),
        ),
        # -- source data: QBO refused because of the record itself (recognised from the fault text)
        _entry(
            "source_data.closed_period",
            "The transaction date falls in a period that is closed in QuickBooks, so it cannot be posted.",
            "Change the date to an open period in AWRA, or ask the controller to reopen the period in QuickBooks.",
        ),
        # -- provider rejection: QBO validation faults; fix the data or the mapping, then retry
        _entry(
            "provider_rejection.required_field_missing",
            "QuickBooks needs a value this record does not supply (the field is named in the detail).",
            "Fill in the missing field on the AWRA record, then retry it.",
            codes=("2020",),
        ),
        _entry(
            "provider_rejection.invalid_reference",
            "The record points at a QuickBooks account, item, party or tax code that does not exist or is inactive.",
            "Check the mapping named in the detail: reactivate the QuickBooks object or map a different one.",
            codes=("2500",),
        ),
        _entry(
            "provider_rejection.object_not_found",
            "QuickBooks cannot find an object this record refers to; it was deleted or made inactive there.",
            "Look the object up in QuickBooks; relink or remap it, then retry the record.",
            codes=("610",),
        ),
        _entry(
            "provider_rejection.invalid_value",
            "A field holds a value QuickBooks does not allow (for example an unknown type or status).",
            "Correct the value named in the detail on the AWRA record or in the mapping, then retry.",
            codes=("2170",),
        ),
        _entry(
            "provider_rejection.stale_object",
            "Someone changed this object in QuickBooks while the sync was updating it.",
            "The sync re-reads the object and tries once more; if it fails again, compare both versions.",
            codes=("5010",),
            retryable=True,
            owner="system",
        ),
        _entry(
            "provider_rejection.business_rule",
            "QuickBooks rejected the record under one of its business rules (often a missing tax code or an "
            "amount that does not add up).",
            "Read the detail, correct the AWRA record or its tax and account mappings, then retry.",
            codes=("6000",),
        ),
        _entry(
            "provider_rejection.deposited_transaction",
            "The payment has already been deposited in QuickBooks, so it can no longer be changed.",
            "Undo the deposit in QuickBooks first, or record the change there by hand and exclude this update.",
            codes=("6540",),
        ),
        _entry(
            "provider_rejection.unsupported_operation",
            "QuickBooks could not read the request (unsupported operation or characters it cannot accept).",
            "An admin checks the record for unusual characters and reports the request id if it persists.",
            codes=("500",),
            owner="admin",
        ),
        _entry(
            "provider_rejection.query_rejected",
            "QuickBooks could not understand a lookup the app sent, usually because of unusual characters in a name.",
            "An admin reports the request id and the name involved; the record is not changed.",
            codes=("4000",),
            owner="admin",
        ),
        _entry(
            "provider_rejection.unknown_fault",
            "QuickBooks rejected the request with an error this app does not know yet.",
            "Read the provider message and detail; an admin adds the code to the catalogue if it recurs.",
            owner="admin",
        ),
        # -- duplicate risk: never resend blindly; look the record up in QuickBooks first
        _entry(
            "duplicate_risk.name_exists",
            "A customer, vendor or employee in QuickBooks already uses this name.",
            "Link this record to the existing QuickBooks entry, or rename it in AWRA, then retry.",
            codes=("6240",),
        ),
        _entry(
            "duplicate_risk.doc_number_exists",
            "QuickBooks already has a transaction with this document number.",
            "Check whether that transaction is this record: link it if so, otherwise allow the duplicate number.",
            codes=("6140", "6210"),
        ),
        _entry(
            "duplicate_risk.outcome_unknown",
            "The request reached QuickBooks but no answer came back, so it may or may not have been recorded.",
            "The sync looks the record up in QuickBooks before doing anything else; it is never sent blindly.",
            outcome="ambiguous",
            owner="system",
        ),
        # -- transport: QBO or the network is unavailable; retried automatically with backoff
        _entry(
            "transport.throttled",
            "QuickBooks asked the app to slow down because too many requests were made in the last minute.",
            "Nothing to do: the sync waits as QuickBooks asks and continues.",
            codes=("3001",),
            outcome="throttled",
        ),
        _entry(
            "transport.timeout",
            "QuickBooks did not answer in time; nothing was changed by this request.",
            "Nothing to do: the sync retries automatically and alerts an admin if it keeps failing.",
        ),
        _entry(
            "transport.connection_failed",
            "The app could not reach QuickBooks, so the request was not sent.",
            "Nothing to do: the sync retries automatically; an admin checks the network if it persists.",
        ),
        _entry(
            "transport.connection_reset",
            "The connection to QuickBooks broke before an answer arrived; this was a read, so nothing changed.",
            "Nothing to do: the sync retries automatically.",
        ),
        _entry(
            "transport.server_error",
            "QuickBooks had an internal error and did not process the request.",
            "Nothing to do: the sync retries automatically; an admin quotes the intuit_tid to Intuit if it persists.",
            codes=("10000",),
        ),
        _entry(
            "transport.service_unavailable",
            "QuickBooks is temporarily unavailable (maintenance or an outage).",
            "Nothing to do: the sync retries automatically once QuickBooks is back.",
        ),
        _entry(
            "transport.malformed_response",
            "QuickBooks sent back an answer the app could not read; this was a read, so nothing changed.",
            "Nothing to do: the sync retries automatically; an admin reports the intuit_tid if it persists.",
        ),
        _entry(
            "transport.not_sent",
            "This request was held back because an earlier part of the same batch failed; nothing was sent.",
            "Nothing to do: the sync sends it again in the next run.",
        ),
    ]
)

# Fault text that moves a code to a more precise reason. Checked before the code table. Closed-period
# faults arrive as 6210 ("Account Period Closed", third-party help pages), and as 5010 in pqb#208;
# neither is in ref §3, so the text decides. The patterns are data, checked in order.
_TEXT_RULES: tuple[tuple[re.Pattern[str], str], ...] = (
    (
        re.compile(r"account\s+period\s+(has\s+)?closed|books\s+are\s+closed|closed\s+period", re.I),
        "source_data.closed_period",
    ),
)

_BY_CODE: dict[str, str] = {code: name for name, r in CATALOGUE.items() for code in r.codes}

# Reads and other requests that change nothing get the plain transport reason; a write that may have
# been committed gets duplicate_risk.outcome_unknown instead (ARCHITECTURE.md "ambiguous").
_TRANSPORT_REASON = {
    "connect_timeout": "transport.timeout",
    "connect_failed": "transport.connection_failed",
    "timeout": "transport.timeout",
    "reset": "transport.connection_reset",
    "malformed": "transport.malformed_response",
}

_BY_STATUS = {
    401: "authorization.token_expired",
    403: "authorization.scope_or_environment",
    404: "provider_rejection.object_not_found",
    429: "transport.throttled",
    503: "transport.service_unavailable",
}


def outcome_for(reason: str) -> Outcome:
    """The Outcome for a catalogue reason code."""
    r = CATALOGUE[reason]
    return Outcome(r.outcome, r.dimension, reason, r.retryable, r.explanation, r.fix, r.owner)


def _normal_code(code: object) -> str | None:
    # Codes are strings in JSON (ref §3) but gateway messages pad them ("errorCode=003200").
    if code is None or str(code).strip() == "":
        return None
    text = str(code).strip()
    return (text.lstrip("0") or "0") if text.isdigit() else text


def classify(
    status: int | None,
    code: object = None,
    fault_type: str | None = None,
    message: str | None = None,
    detail: str | None = None,
    transport_error: str | None = None,
    *,
    write: bool = False,
) -> Outcome:
    """Classify one call or batch item.

    Args:
        status: HTTP status, or None when no response arrived.
        code: QBO fault code (ref §3) or OAuth error ("invalid_grant"), when the body carried one.
        fault_type: the fault's `type` (informational: it is misspelt in the wild, ref §3).
        message, detail: the provider's text; used only to refine a few codes (closed period).
        transport_error: one of TRANSPORT_ERRORS when the exchange broke below HTTP.
        write: the request could have changed QuickBooks (create, update, delete, batch of writes).
    """
    del fault_type  # kept in the signature for callers and logs; the code decides, not the type
    if transport_error is not None:
        if transport_error not in TRANSPORT_ERRORS:
            raise ValueError(f"unknown transport error kind {transport_error!r}")
        if write and transport_error not in _NOT_SENT:
            return outcome_for("duplicate_risk.outcome_unknown")
        return outcome_for(_TRANSPORT_REASON[transport_error])
    norm = _normal_code(code)
    if status is not None and status >= 500 and norm not in ("3001",):
        # A 5xx is QBO's own trouble whatever code rides along (3100 has been seen with 500 in outages,
        # ref §3); "500 resubmit once" (ref §3).
        return outcome_for("transport.service_unavailable" if status == 503 else "transport.server_error")
    if norm is not None:
        text = f"{message or ''} {detail or ''}"
        for pattern, reason in _TEXT_RULES:
            if pattern.search(text):
                return outcome_for(reason)
        if norm in _BY_CODE:
            return outcome_for(_BY_CODE[norm])
    if status is not None and status in _BY_STATUS:
        return outcome_for(_BY_STATUS[status])
    if norm is None and status is not None and 200 <= status < 300:
        return ACCEPTED
    return outcome_for("provider_rejection.unknown_fault")
