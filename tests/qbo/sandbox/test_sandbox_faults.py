"""Injected faults (deterministic by seed) and requestid replay, which makes a retry after a timeout safe."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from qbo.sandbox import FAULT_KINDS, FaultPlan, Sandbox

from .sandbox_helpers import REALM, Qbo, authorized_client, body, fault, make_sandbox

VENDOR = {"DisplayName": "Replay Co"}


def _vendors(sandbox: Sandbox) -> list[str]:
    return [v["DisplayName"] for v in sandbox.entities(REALM, "Vendor")]


def test_a_repeated_requestid_returns_the_original_response_and_does_nothing_else(sandbox: Sandbox, qbo: Qbo) -> None:
    first = qbo.create("Vendor", VENDOR, requestid="rid-1")
    again = qbo.create("Vendor", {"DisplayName": "Something Else"}, requestid="rid-1")
    assert first.status_code == again.status_code == 200
    assert first.content == again.content
    assert first.headers["intuit_tid"] != again.headers["intuit_tid"]
    assert _vendors(sandbox).count("Replay Co") == 1 and "Something Else" not in _vendors(sandbox)


def test_a_replayed_fault_is_the_original_fault(qbo: Qbo) -> None:
    first = qbo.create("Vendor", {"DisplayName": "Globex"}, requestid="dup-name")
    assert fault(first)["code"] == "6240"
    assert qbo.create("Vendor", {"DisplayName": "Fresh Name"}, requestid="dup-name").content == first.content


def test_requestids_are_per_realm(sandbox: Sandbox, qbo: Qbo) -> None:
    other_realm = "5550000000000002"
    with authorized_client(sandbox, other_realm) as http:
        other = Qbo(http, other_realm)
        qbo.create("Vendor", VENDOR, requestid="shared")
        assert other.create("Vendor", VENDOR, requestid="shared").status_code == 200
    assert [v["DisplayName"] for v in sandbox.entities(other_realm, "Vendor")] == ["Replay Co"]


@pytest.mark.parametrize(("operation", "limit"), [("vendor", 50), ("batch", 36)])
def test_requestid_length_is_limited(qbo: Qbo, operation: str, limit: int) -> None:
    payload: dict[str, Any] = (
        VENDOR if operation == "vendor" else {"BatchItemRequest": [{"bId": "1", "Query": "select * from Term"}]}
    )
    assert qbo.send("POST", operation, payload, requestid="r" * limit).status_code == 200
    too_long = qbo.send("POST", operation, payload, requestid="x" * (limit + 1))
    assert too_long.status_code == 400 and fault(too_long)["element"] == "requestid"


def test_timeout_after_commit_commits_and_a_retry_with_the_same_requestid_gets_the_result() -> None:
    sandbox = make_sandbox(faults="timeout_after_commit@create=1")
    with authorized_client(sandbox) as http:
        qbo = Qbo(http)
        with pytest.raises(httpx.ReadTimeout):
            qbo.create("Vendor", VENDOR, requestid="amb-1")
        assert _vendors(sandbox).count("Replay Co") == 1
        sandbox.set_faults(None)
        retry = qbo.create("Vendor", VENDOR, requestid="amb-1")
        assert retry.status_code == 200 and body(retry)["Vendor"]["DisplayName"] == "Replay Co"
        assert _vendors(sandbox).count("Replay Co") == 1
        # Without the requestid the retry would have created a duplicate: here, 6240.
        assert fault(qbo.create("Vendor", VENDOR))["code"] == "6240"
    assert sandbox.errors == []


@pytest.mark.parametrize(
    "kind",
    [
        "timeout_before_commit",
        "connection_reset",
        "http_500",
        "http_503_html",
        "throttle_429_xml",
        "auth_401",
    ],
)
def test_pre_commit_faults_store_nothing(kind: str) -> None:
    sandbox = make_sandbox(faults=f"{kind}=1")
    with authorized_client(sandbox) as http:
        try:
            Qbo(http).create("Vendor", VENDOR, requestid="pre-1")
        except httpx.TransportError:
            pass
        sandbox.set_faults(None)
        assert "Replay Co" not in _vendors(sandbox)
        assert Qbo(http).create("Vendor", VENDOR, requestid="pre-1").status_code == 200
    assert _vendors(sandbox).count("Replay Co") == 1


@pytest.mark.parametrize(
    ("kind", "status", "content_type", "check"),
    [
        ("http_500", 500, "application/json", lambda r: body(r)["Fault"]["type"] == "SystemFault"),
        ("http_503_html", 503, "text/html", lambda r: b"503 Service Temporarily Unavailable" in r.content),
        ("throttle_429_xml", 429, "application/xml", lambda r: b'<Error code="3001">' in r.content),
        ("auth_401", 401, "application/json", lambda r: body(r)["fault"]["error"][0]["code"] == "3200"),
    ],
)
def test_each_fault_kind_has_qbos_shape(kind: str, status: int, content_type: str, check: Any) -> None:
    sandbox = make_sandbox(faults=f"{kind}=1")
    with authorized_client(sandbox) as http:
        reply = Qbo(http).read("Vendor", "1")
    assert reply.status_code == status
    assert reply.headers["content-type"].startswith(content_type)
    assert reply.headers["intuit_tid"]
    assert check(reply)


@pytest.mark.parametrize(
    ("kind", "error"),
    [
        ("timeout_before_commit", httpx.ReadTimeout),
        ("timeout_after_commit", httpx.ReadTimeout),
        ("connection_reset", httpx.RemoteProtocolError),
    ],
)
def test_transport_faults_raise_what_httpx_raises(kind: str, error: type[Exception]) -> None:
    sandbox = make_sandbox(faults=f"{kind}=1")
    with authorized_client(sandbox) as http, pytest.raises(error):
        Qbo(http).read("Vendor", "1")


def _outcomes(seed: int, count: int = 60) -> list[str]:
    sandbox = make_sandbox(faults="http_500=0.2,http_503_html=0.1,auth_401=0.1,connection_reset=0.1", seed=seed)
    outcomes = []
    with authorized_client(sandbox) as http:
        for _ in range(count):
            try:
                outcomes.append(str(Qbo(http).read("Vendor", "1").status_code))
            except httpx.TransportError as exc:
                outcomes.append(type(exc).__name__)
    return outcomes


def test_faults_are_deterministic_by_seed() -> None:
    first, again, other = _outcomes(7), _outcomes(7), _outcomes(8)
    assert first == again
    assert first != other
    assert {"200", "500", "503", "401", "RemoteProtocolError"} <= set(first)


def test_faults_can_target_an_operation(sandbox: Sandbox, qbo: Qbo) -> None:
    sandbox.set_faults("http_500@create+batch=1")
    assert qbo.read("Vendor", "1").status_code == 200
    assert qbo.query("select * from Vendor").status_code == 200
    assert qbo.create("Vendor", VENDOR).status_code == 500
    assert qbo.update("Vendor", {"Id": "1", "SyncToken": "0", "sparse": True, "Notes": "n"}).status_code == 200


def test_the_control_api_and_oauth_are_never_faulted(sandbox: Sandbox, control: httpx.Client) -> None:
    sandbox.set_faults("connection_reset=1")
    assert control.get("/_sandbox/stats").status_code == 200
    assert control.get(f"/_sandbox/{REALM}/entities/Vendor").status_code == 200
    token = control.post(
        "/oauth2/v1/tokens/bearer",
        data={"grant_type": "refresh_token", "refresh_token": "x"},
        auth=("ABdemoLocalSandboxClientId0001", "demo-local-sandbox-client-secret"),
    )
    assert token.status_code == 400


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("boom=0.1", "unknown fault kind"),
        ("http_500", "needs a rate"),
        ("http_500=abc", "not a number"),
        ("http_500=1.5", "between 0 and 1"),
        ("http_500=0.6,auth_401=0.6", "more than 1"),
        ("http_500@fly=0.1", "unknown operation"),
    ],
)
def test_bad_fault_specs_are_refused_with_a_reason(spec: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        FaultPlan.parse(spec)


def test_the_spec_round_trips_and_lists_every_kind() -> None:
    spec = ",".join(f"{kind}=0.1" for kind in FAULT_KINDS)
    assert FaultPlan.parse(spec).spec == spec
    assert FaultPlan.parse("http_500@read+create=0.25").spec == "http_500@create+read=0.25"
