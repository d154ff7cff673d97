"""What one QBO call did (QboResult), the error a failed call raises, and a fault turned into result fields."""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from typing import Any

from qbo.faults import Outcome, classify, classify_errors
from qbo.tokens import Secret
from qbo.wire import Fault, FaultError

__all__ = ["QboCallError", "QboResult", "error_line", "fault_result", "malformed", "redact", "redact_fault"]


# Results
@dataclass(frozen=True)
class QboResult:
    """What one call (or one batch item) did: everything an attempt record needs, and never token text."""

    operation: str
    entity: str | None
    outcome: Outcome
    status: int | None = None
    code: str | None = None
    message: str | None = None
    detail: str | None = None
    element: str | None = None
    fault_type: str | None = None
    intuit_tid: str | None = None
    duration: float = 0.0
    request_id: str | None = None
    bid: str | None = None
    retry_after: float | None = None
    attempts: int = 1  # HTTP sends for this call, throttled ones included
    throttle_waits: int = 0  # throttles waited out along the way (not failures)
    data: Any = field(default=None, repr=False)
    errors: tuple[FaultError, ...] = ()  # every error of the fault; code/message/detail are the deciding one's
    error_outcomes: tuple[Outcome, ...] = ()  # each error's own classification, in the same order

    @property
    def ok(self) -> bool:
        return self.outcome.accepted

    @property
    def object(self) -> dict[str, Any] | None:
        """The entity QBO returned (create, update, read, batch item)."""
        return self.data if isinstance(self.data, dict) else None

    def describe(self) -> str:
        parts = [f"{self.operation} {self.entity or ''}".strip() + f": {self.outcome.reason}"]
        facts = [
            f"HTTP {self.status}" if self.status is not None else "no response",
            f"QBO code {self.code}" if self.code else None,
            f"element {self.element}" if self.element else None,
            f"intuit_tid {self.intuit_tid}" if self.intuit_tid else None,
            f"request id {self.request_id}" if self.request_id else None,
            f"bId {self.bid}" if self.bid else None,
        ]
        parts.append("(" + ", ".join(f for f in facts if f) + ")")
        text = " ".join(p for p in (self.message, self.detail) if p)
        return " ".join(parts) + (f": {text}" if text else "")

    def describe_errors(self) -> list[str]:
        """One line per error of the fault with its own reason, for the record's chain."""
        return [f"{error_line(e)} ({o.reason})" for e, o in zip(self.errors, self.error_outcomes, strict=True)]


class QboCallError(Exception):
    """A call ended in anything but `accepted`; `.result` has the facts, the message is safe to log."""

    def __init__(self, result: QboResult) -> None:
        self.result = result
        super().__init__(result.describe())

    @property
    def outcome(self) -> Outcome:
        return self.result.outcome


_BEARER = re.compile(r"(?i)bearer\s+[A-Za-z0-9._~+/=-]+")


def redact_fault(fault: Fault, token: Secret) -> Fault:
    errors = tuple(replace(e, message=redact(e.message, token), detail=redact(e.detail, token)) for e in fault.errors)
    return replace(fault, errors=errors)


def redact(text: str | None, *secrets: Secret | None) -> str | None:
    # Provider text is echoed into logs and the UI; make sure no token ever rides along.
    if text is None:
        return None
    for secret in secrets:
        if secret is not None:
            text = text.replace(secret.reveal(), "[redacted]")
    return _BEARER.sub("Bearer [redacted]", text)


def error_line(e: FaultError) -> str:
    return f"{e.code or '-'}" + (f" {e.element}" if e.element else "") + f": {e.detail or e.message or ''}"


def fault_result(status: int, fault: Fault, write: bool, operation: str | None) -> dict[str, Any]:
    """The classified fault as QboResult fields: every error is classified and kept; the one PRECEDENCE puts first
    decides the outcome and fills code, message and element, and the detail also names the others, so a record's
    chain shows all of them (a 6140 beside three missing AccountRefs must not hide them)."""
    triples = [(e.code, e.message, e.detail) for e in fault.errors]
    index, outcomes = classify_errors(status, triples, fault.type, write=write, operation=operation)
    deciding = fault.errors[index] if fault.errors else FaultError(None)
    others = [e for i, e in enumerate(fault.errors) if i != index]
    detail = deciding.detail
    if others:
        also = "; ".join(error_line(e) for e in others)
        detail = f"{detail or deciding.message or ''} (also {also})"
    return {
        "outcome": outcomes[index],
        "code": deciding.code,
        "message": deciding.message,
        "detail": detail,
        "element": deciding.element,
        "fault_type": fault.type,
        "errors": fault.errors,
        "error_outcomes": outcomes if fault.errors else (),
    }


def malformed(result: QboResult, write: bool) -> QboResult:
    """A 2xx whose JSON is not the shape QBO documents: unreadable, and for a write, outcome unknown."""
    return replace(result, outcome=classify(result.status, transport_error="malformed", write=write), data=None)
