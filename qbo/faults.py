"""Every QBO call outcome -> a health dimension, a stable reason code, retryable, and plain-language text."""

from __future__ import annotations

import logging
import re
import threading
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = [
    "ACCEPTED",
    "ALREADY_DELETED",
    "CATALOGUE",
    "MAYBE_SAVED",
    "DIMENSIONS",
    "OUTCOMES",
    "PRECEDENCE",
    "TRANSPORT_ERRORS",
    "WRITE_OPERATIONS",
    "Outcome",
    "Reason",
    "classify",
    "classify_errors",
    "outcome_for",
    "unknown_codes",
]

DIMENSIONS = ("authorization", "mapping", "source_data", "provider_rejection", "duplicate_risk", "transport")
OUTCOMES = ("accepted", "rejected", "duplicate", "authorization", "throttled", "transport", "ambiguous")
WRITE_OPERATIONS = ("create", "update", "delete", "void")

# When one fault carries several errors, the record gets the dimension that decides what happens next, first
# match wins: nothing can be sent without authorization; QBO's own trouble is retried before anyone edits data;
# a record whose data or mapping must change cannot be linked as a duplicate yet (a real item carried a 6140 and
# three missing AccountRefs: "link the existing document" would have hidden the missing accounts).
PRECEDENCE = ("authorization", "transport", "source_data", "mapping", "provider_rejection", "duplicate_risk")

# What went wrong below HTTP. "connect_*" never reached QBO; the others may have (the request was sent).
TRANSPORT_ERRORS = ("connect_timeout", "connect_failed", "timeout", "reset", "malformed")
_NOT_SENT = ("connect_timeout", "connect_failed")

log = logging.getLogger(__name__)


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
    """The classified result of one call (or one batch item).

    `lookup_first`: the write may have been recorded although no success came back, so the record is looked up in
    QuickBooks (by its source marker and DocNumber) before anything is sent again.
    """

    outcome: str
    dimension: str | None
    reason: str
    retryable: bool
    explanation: str
    fix: str
    owner: str | None = None
    lookup_first: bool = False

    @property
    def accepted(self) -> bool:
        return self.outcome == "accepted"


ACCEPTED = Outcome("accepted", None, "accepted", False, "QuickBooks accepted the request.", "Nothing to do.")
# A 610 in answer to a delete: the transaction is gone, which is what the delete asked for.
ALREADY_DELETED = Outcome(
    "accepted",
    None,
    "already_deleted",
    False,
    "QuickBooks no longer has the transaction this delete was for, so the delete is done.",
    "Nothing to do.",
)

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
            # 100 "General Authentication Error" came with 401 for a token of another realm (oauth-jsclient#91)
            codes=("3200", "100"),
        ),
        _entry(
            "authorization.user_not_in_company",
            "The QuickBooks user who connected the app is not a member of this company any more, so its "
            "connection cannot be renewed and nothing is being sent.",
            "An admin reconnects QuickBooks signed in as a user of this company.",
            # invalid_grant with x_error_reason user_not_in_realm (a production capture in finoptimal/fo_qbo)
            codes=("user_not_in_realm",),
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
            # 130 "Accessing Wrong Cluster": a production app on the wrong server (python-quickbooks#369)
            codes=("3100", "130"),
        ),
        _entry(
            "authorization.wrong_address",
            "The address the app sends to is not a QuickBooks API address (the answer was a web server's "
            "not-found page), so nothing was sent.",
            "An admin checks SYNCHEALTH_QBO_ENV and SYNCHEALTH_QBO_BASE_URL; queued records then go on their own.",
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
            "A field holds a value QuickBooks does not allow (an unknown type or status, a text that is too long "
            "or a badly formed number).",
            "Correct the value named in the detail on the AWRA record or in the mapping, then retry.",
            codes=("2170", "2050", "2080"),
        ),
        _entry(
            "provider_rejection.amount_mismatch",
            "A line's amount is not its quantity times its unit price, so QuickBooks refused the record.",
            "Correct the line's amount, quantity or unit price on the AWRA record, then retry.",
            codes=("6070",),
        ),
        _entry(
            "provider_rejection.invalid_request",
            "The app sent QuickBooks a field or an id it does not accept, so nothing was saved.",
            "An admin reports the request id and the provider message; the record itself needs no change.",
            codes=("2010", "2030"),
            owner="admin",
        ),
        _entry(
            "provider_rejection.result_too_large",
            "QuickBooks refused to answer a lookup because its result would be too large.",
            "An admin narrows the lookup (a shorter period or smaller pages) and reports it if it recurs.",
            codes=("10100",),
            owner="admin",
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
            codes=("4000", "4001"),
            owner="admin",
        ),
        _entry(
            "provider_rejection.unknown_fault",
            "QuickBooks refused the request with an error this app does not know yet; a change it may have "
            "saved is looked up before anything is sent again.",
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
            "QuickBooks had an internal error; a change it may have saved anyway is looked up before it is sent again.",
            "Nothing to do: the sync retries automatically; an admin quotes the intuit_tid to Intuit if it persists.",
            codes=("10000",),
        ),
        _entry(
            "transport.service_unavailable",
            "QuickBooks is temporarily unavailable (maintenance or an outage); a change it may have saved is "
            "looked up before it is sent again.",
            "Nothing to do: the sync retries automatically once QuickBooks is back.",
        ),
        _entry(
            "transport.gateway_timeout",
            "QuickBooks' gateway gave up waiting for an answer; a change may have been saved behind it, so it is "
            "looked up before it is sent again.",
            "Nothing to do: the sync retries automatically; an admin quotes the intuit_tid to Intuit if it persists.",
            codes=("6002",),
        ),
        _entry(
            "transport.try_again",
            "QuickBooks answered with a temporary error that asks to try again in a few minutes, and such a "
            "change is often saved anyway, so it is looked up before it is sent again.",
            "Nothing to do: the sync looks the record up and retries on its own; the record needs no fix.",
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


@dataclass(frozen=True)
class _TextRule:
    """Fault text that moves a code to a more precise reason; checked before the code table, in order."""

    pattern: re.Pattern[str]
    reason: str
    codes: frozenset[str] | None = None  # None: whatever the code
    unknown_codes: bool = False  # also for a code the catalogue does not know
    below_5xx: bool = False  # only when QBO did not answer with a 5xx (a 5xx is its own trouble)

    def applies(self, code: str, status: int | None, text: str) -> bool:
        if self.below_5xx and status is not None and status >= 500:
            return False
        known = code in _BY_CODE
        if self.codes is not None and code not in self.codes and not (self.unknown_codes and not known):
            return False
        return bool(self.pattern.search(text))


# Closed-period faults arrive as 6210 ("Account Period Closed", B-toperr) and as 5010 (pqb#208), so the text
# decides whatever the code. A 6000 that asks to try again is QBO's trouble, not the record's: integrations retry
# it and the record is often saved anyway (finoptimal/fo_qbo). "Unexpected Internal Error (-30000)" is the same
# kind (node-quickbooks#48). "Could not find resource for relative" means the URL reached no API resource: a wrong
# address, also seen from a right one during an outage (qbo_api#81), so nothing was created either way.
_TEXT_RULES: tuple[_TextRule, ...] = (
    _TextRule(
        re.compile(r"account\s+period\s+(has\s+)?closed|books\s+are\s+closed|closed\s+period", re.I),
        "source_data.closed_period",
    ),
    _TextRule(
        re.compile(r"user_not_in_realm|not\s+a\s+member\s+of\s+the\s+specified\s+realm", re.I),
        "authorization.user_not_in_company",
        codes=frozenset({"invalid_grant"}),
    ),
    _TextRule(
        re.compile(r"wait\s+a\s+few\s+minutes\s+and\s+try\s+again|please\s+try\s+again\s+later", re.I),
        "transport.try_again",
        codes=frozenset({"6000"}),
        unknown_codes=True,
    ),
    _TextRule(re.compile(r"unexpected\s+internal\s+error", re.I), "transport.server_error", codes=frozenset({"6000"})),
    _TextRule(
        re.compile(r"could\s+not\s+find\s+resource\s+for\s+relative", re.I),
        "authorization.wrong_address",
        codes=frozenset({"500", "10000"}),
        below_5xx=True,
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

# An answer without a readable fault. A bare or HTML 404 is no object's absence (QBO says that with a 610 fault
# in JSON): it is a URL no API answers, e.g. Apache's page for a malformed path (qbo_api cassette).
_BY_STATUS = {
    401: "authorization.token_expired",
    403: "authorization.scope_or_environment",
    404: "authorization.wrong_address",
    429: "transport.throttled",
    503: "transport.service_unavailable",
    504: "transport.gateway_timeout",
}

# A write answered with these may still have been recorded: a 5xx, an unknown fault, or the 6000 that asks to try
# again ("the entity saves anyway"). The engine looks such a record up by its marker before any resend.
MAYBE_SAVED = frozenset(
    {
        "transport.server_error",
        "transport.service_unavailable",
        "transport.gateway_timeout",
        "transport.try_again",
        "provider_rejection.unknown_fault",
    }
)

_unknown_lock = threading.Lock()
_unknown_seen: Counter[str] = Counter()


def unknown_codes() -> dict[str, int]:
    """Codes this process met that the catalogue does not know, with how often (each attempt keeps its code, so a
    new code also shows among Trends' top error codes)."""
    with _unknown_lock:
        return dict(_unknown_seen)


def _count_unknown(code: str) -> None:
    with _unknown_lock:
        _unknown_seen[code] += 1
        first = _unknown_seen[code] == 1
    if first:
        log.warning("QuickBooks answered with code %s, which the fault catalogue does not know", code)


def outcome_for(reason: str, *, lookup_first: bool = False) -> Outcome:
    """The Outcome for a catalogue reason code (an ambiguous one is always looked up first)."""
    r = CATALOGUE[reason]
    lookup = lookup_first or r.outcome == "ambiguous"
    return Outcome(r.outcome, r.dimension, reason, r.retryable, r.explanation, r.fix, r.owner, lookup)


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
    write: bool | None = None,
    operation: str | None = None,
) -> Outcome:
    """Classify one call, batch item or fault error.

    Args:
        status: HTTP status, or None when no response arrived (or the source did not keep it).
        code: QBO fault code (ref §3) or OAuth error ("invalid_grant"), when the body carried one.
        fault_type: the fault's `type` (informational: it is misspelt in the wild, ref §3).
        message, detail: the provider's text; it refines a few codes (closed period, try again, wrong address).
        transport_error: one of TRANSPORT_ERRORS when the exchange broke below HTTP.
        write: the request could have changed QuickBooks; by default, whether `operation` is a write.
        operation: read, query, cdc, create, update, delete, void, batch or a token call, when known.
    """
    del fault_type  # kept in the signature for callers and logs; the code decides, not the type
    is_write = write if write is not None else operation in WRITE_OPERATIONS
    if transport_error is not None:
        if transport_error not in TRANSPORT_ERRORS:
            raise ValueError(f"unknown transport error kind {transport_error!r}")
        if is_write and transport_error not in _NOT_SENT:
            return outcome_for("duplicate_risk.outcome_unknown")
        return outcome_for(_TRANSPORT_REASON[transport_error])
    reason = _reason(status, _normal_code(code), f"{message or ''} {detail or ''}", operation)
    if reason is None:
        return ACCEPTED
    if reason == "already_deleted":
        return ALREADY_DELETED
    return outcome_for(reason, lookup_first=is_write and reason in MAYBE_SAVED)


def _reason(status: int | None, code: str | None, text: str, operation: str | None) -> str | None:
    """The catalogue reason, "already_deleted", or None for a success."""
    if status is not None and status >= 500 and code != "3001":
        # A 5xx is QBO's own trouble whatever code rides along (3100 and 120 have come with 500 in outages,
        # qbo_api#81 and #96); "500 resubmit once" (ref §3), but a write is looked up first.
        if status == 504 or code == "6002":
            return "transport.gateway_timeout"
        return "transport.service_unavailable" if status == 503 else "transport.server_error"
    if code is not None:
        for rule in _TEXT_RULES:
            if rule.applies(code, status, text):
                return rule.reason
        if code == "610" and operation == "delete":
            return "already_deleted"  # "Another user has deleted this transaction": what the delete asked for
        if code in _BY_CODE:
            return _BY_CODE[code]
    if code is None and status is not None and 200 <= status < 300:
        return None
    if code is None and status in _BY_STATUS:
        return _BY_STATUS[status]
    # An unknown code: the status decides what it can (a throttle or a sign-in problem is one whatever the code),
    # the rest is an unknown fault; for a write it is looked up before any resend (see MAYBE_SAVED).
    if code is not None:
        _count_unknown(code)
        if status in (401, 403, 429):
            return _BY_STATUS[status]
    return "provider_rejection.unknown_fault"


def classify_errors(
    status: int | None,
    errors: Sequence[tuple[object, str | None, str | None]],
    fault_type: str | None = None,
    *,
    write: bool | None = None,
    operation: str | None = None,
) -> tuple[int, tuple[Outcome, ...]]:
    """Classify every error of one fault; returns the index of the one that decides the record (PRECEDENCE) and
    every error's outcome. Errors are (code, message, detail). A fault with no error is an unknown fault."""
    if not errors:
        return 0, (classify(status, "", fault_type, write=write, operation=operation),)
    outcomes = tuple(
        classify(status, code, fault_type, message, detail, write=write, operation=operation)
        for code, message, detail in errors
    )
    # A body that carries a fault is never a success, not even one whose error has no code (ref §3).
    outcomes = tuple(o if o.reason != "accepted" else outcome_for("provider_rejection.unknown_fault") for o in outcomes)

    def rank(index: int) -> int:
        dimension = outcomes[index].dimension
        return PRECEDENCE.index(dimension) if dimension in PRECEDENCE else len(PRECEDENCE)

    return min(range(len(outcomes)), key=rank), outcomes
