"""Fault classification: every QBO code and transport failure lands in one health dimension with a reason."""

from __future__ import annotations

import pytest

from qbo.faults import ACCEPTED, CATALOGUE, DIMENSIONS, OUTCOMES, classify, outcome_for


@pytest.mark.parametrize(
    ("status", "code", "reason", "dimension", "outcome", "retryable"),
    [
        (401, "120", "authorization.access_denied", "authorization", "authorization", False),
        (400, "500", "provider_rejection.unsupported_operation", "provider_rejection", "rejected", False),
        (400, "610", "provider_rejection.object_not_found", "provider_rejection", "rejected", False),
        (400, "2020", "provider_rejection.required_field_missing", "provider_rejection", "rejected", False),
        (400, "2170", "provider_rejection.invalid_value", "provider_rejection", "rejected", False),
        (400, "2500", "provider_rejection.invalid_reference", "provider_rejection", "rejected", False),
        (429, "3001", "transport.throttled", "transport", "throttled", True),
        (403, "3001", "transport.throttled", "transport", "throttled", True),  # the 2016 variant (ref §4)
        (403, "3100", "authorization.scope_or_environment", "authorization", "authorization", False),
        (401, "3200", "authorization.token_expired", "authorization", "authorization", False),
        (400, "4000", "provider_rejection.query_rejected", "provider_rejection", "rejected", False),
        (400, "5010", "provider_rejection.stale_object", "provider_rejection", "rejected", True),
        (400, "6000", "provider_rejection.business_rule", "provider_rejection", "rejected", False),
        (400, "6140", "duplicate_risk.doc_number_exists", "duplicate_risk", "duplicate", False),
        (400, "6210", "duplicate_risk.doc_number_exists", "duplicate_risk", "duplicate", False),
        (400, "6190", "authorization.company_inactive", "authorization", "authorization", False),
        (400, "6240", "duplicate_risk.name_exists", "duplicate_risk", "duplicate", False),
        (400, "6540", "provider_rejection.deposited_transaction", "provider_rejection", "rejected", False),
        (500, "10000", "transport.server_error", "transport", "transport", True),
        (400, "invalid_grant", "authorization.reconnect_needed", "authorization", "authorization", False),
        (401, "invalid_client", "authorization.app_credentials", "authorization", "authorization", False),
        (400, "98765", "provider_rejection.unknown_fault", "provider_rejection", "rejected", False),
    ],
)
def test_every_documented_code_has_its_dimension_and_retry_rule(
    status: int, code: str, reason: str, dimension: str, outcome: str, retryable: bool
) -> None:
    result = classify(status, code, "ValidationFault", "message", "detail")
    assert (result.reason, result.dimension, result.outcome, result.retryable) == (
        reason,
        dimension,
        outcome,
        retryable,
    )


def test_a_200_carrying_a_fault_is_not_accepted() -> None:
    assert classify(200, "6240").reason == "duplicate_risk.name_exists"
    assert classify(200, None) is ACCEPTED


def test_gateway_codes_are_read_with_their_zero_padding() -> None:
    assert classify(401, "003200").reason == "authorization.token_expired"


@pytest.mark.parametrize(
    ("status", "reason"),
    [
        (401, "authorization.token_expired"),
        (403, "authorization.scope_or_environment"),
        (404, "authorization.wrong_address"),
        (429, "transport.throttled"),
        (500, "transport.server_error"),
        (502, "transport.server_error"),
        (503, "transport.service_unavailable"),
        (400, "provider_rejection.unknown_fault"),
    ],
)
def test_a_status_without_a_readable_fault_still_gets_a_reason(status: int, reason: str) -> None:
    assert classify(status).reason == reason


def test_a_5xx_is_transport_whatever_code_rides_along() -> None:
    # 3100 has been seen with HTTP 500 during outages (ref §3): that is no reason to pause the realm.
    assert classify(500, "3100").dimension == "transport"
    assert classify(503, "3100").reason == "transport.service_unavailable"


def test_a_timeout_on_a_write_is_ambiguous_and_never_retried_blindly() -> None:
    outcome = classify(None, transport_error="timeout", write=True)
    assert (outcome.outcome, outcome.dimension, outcome.reason) == (
        "ambiguous",
        "duplicate_risk",
        "duplicate_risk.outcome_unknown",
    )
    assert outcome.retryable is False
    for kind in ("reset", "malformed"):
        assert classify(None, transport_error=kind, write=True).outcome == "ambiguous"


def test_a_write_that_never_left_is_plain_transport() -> None:
    assert classify(None, transport_error="connect_failed", write=True).reason == "transport.connection_failed"
    assert classify(None, transport_error="connect_timeout", write=True).reason == "transport.timeout"


@pytest.mark.parametrize(
    ("kind", "reason"),
    [
        ("timeout", "transport.timeout"),
        ("reset", "transport.connection_reset"),
        ("malformed", "transport.malformed_response"),
        ("connect_failed", "transport.connection_failed"),
    ],
)
def test_transport_failures_on_reads_are_retryable(kind: str, reason: str) -> None:
    outcome = classify(None, transport_error=kind)
    assert (outcome.reason, outcome.retryable, outcome.dimension) == (reason, True, "transport")


def test_an_unknown_transport_kind_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="unknown transport error kind"):
        classify(None, transport_error="gremlins")


@pytest.mark.parametrize(
    ("code", "message", "detail"),
    [
        ("6210", "Account Period Closed, Cannot Update Through Services API", ""),
        ("5010", "Account Period Closed", "The account period has closed. {1}"),  # pqb#208
        (
            "6000",
            "A business validation error has occurred",
            "The account period has closed and the account books cannot be updated through the QBO Services API.",
        ),
    ],
)
def test_a_closed_period_is_the_source_records_problem_whatever_the_code(code: str, message: str, detail: str) -> None:
    outcome = classify(400, code, "ValidationFault", message, detail)
    assert (outcome.dimension, outcome.reason, outcome.owner) == (
        "source_data",
        "source_data.closed_period",
        "finance",
    )


def test_the_catalogue_is_complete_and_speaks_one_sentence_each() -> None:
    for reason, entry in CATALOGUE.items():
        assert reason.split(".", 1)[0] == entry.dimension
        assert entry.dimension in DIMENSIONS and entry.outcome in OUTCOMES
        assert entry.owner in ("admin", "finance", "system")
        for text in (entry.explanation, entry.fix):
            assert text.endswith(".") and "\n" not in text and text[0].isupper()
            assert text.count(". ") == 0, f"{reason}: one sentence, not several: {text!r}"
    codes = [c for entry in CATALOGUE.values() for c in entry.codes]
    assert len(codes) == len(set(codes)), "a code must map to exactly one reason"
    issue_codes = {
        "120",
        "500",
        "610",
        "2020",
        "2170",
        "2500",
        "3001",
        "3100",
        "3200",
        "4000",
        "5010",
        "6000",
        "6140",
        "6210",
        "6190",
        "6240",
        "6540",
        "10000",
        "invalid_grant",
    }
    assert issue_codes <= set(codes)


def test_the_duplicate_name_text_tells_finance_what_to_do() -> None:
    entry = outcome_for("duplicate_risk.name_exists")
    assert "already uses this name" in entry.explanation
    assert "Link" in entry.fix and "rename" in entry.fix


def test_only_transport_and_the_stale_object_retry_on_their_own() -> None:
    retrying = {reason for reason, entry in CATALOGUE.items() if entry.retryable}
    assert retrying == {r for r in CATALOGUE if r.startswith("transport.")} | {"provider_rejection.stale_object"}
