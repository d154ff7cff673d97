"""Fuzzed QBO and token-endpoint responses through the whole client: every call ends classified, never a crash."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import httpx
import pytest
from conftest import connect
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from scripted import REALM, SandboxTime, Scripted

from pipelines.config import Settings
from qbo.client import BatchItem, QboCallError, QboClient, QboResult
from qbo.faults import ACCEPTED, ALREADY_DELETED, CATALOGUE, OUTCOMES, Outcome
from qbo.oauth import OAuthClient
from qbo.sandbox import shapes
from qbo.tokens import TokenStore

# One client per test function, reused by every example (a store per example would cost seconds);
# fixtures are function-scoped, hence the suppressed health check.
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

TIME = "2017-09-29T09:17:31.892-07:00"
_CODES = sorted({c for r in CATALOGUE.values() for c in r.codes} | {"3001", "10000", "98765", "003200", "", "x"})
_KEYS = [
    "Fault", "fault", "Error", "error", "error_description", "type", "code", "Message", "message", "Detail",
    "detail", "element", "time", "QueryResponse", "BatchItemResponse", "CDCResponse", "totalCount", "bId",
    "Vendor", "vendor", "Bill", "Id", "SyncToken", "MetaData", "LastUpdatedTime", "status", "access_token",
    "refresh_token", "expires_in", "x_refresh_token_expires_in",
]  # fmt: skip

# -- response strategies -----------------------------------------------------------------------------------
scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats()  # NaN and infinities too: Python's json writes and reads them
    | st.text(max_size=12)
    | st.sampled_from(_CODES)
)
json_values = st.recursive(
    scalars,
    lambda kids: (
        st.lists(kids, max_size=4) | st.dictionaries(st.sampled_from(_KEYS) | st.text(max_size=6), kids, max_size=5)
    ),
    max_leaves=25,
)


def _dump(value: Any) -> bytes:
    return json.dumps(value).encode()


@st.composite
def golden_faults(draw: st.DrawFn) -> tuple[int, bytes]:
    """The shapes of ref §3 as the sandbox writes them, with any code and text."""
    code = draw(st.sampled_from(_CODES))
    text = draw(st.text(max_size=30))
    kind = draw(st.sampled_from(["standard", "gateway", "xml", "html", "oauth", "batch_item"]))
    status = draw(st.sampled_from([200, 400, 401, 403, 404, 429, 500, 503]))
    if kind == "standard":
        fault = shapes.QboFault(code, text, text, draw(st.text(max_size=10)), fault_type=draw(st.text(max_size=10)))
        return status, _dump(shapes.standard_fault(fault, TIME))
    if kind == "gateway":
        number = draw(st.integers(min_value=0, max_value=999999))
        return status, _dump(shapes.gateway_fault(status, str(number), text, text, "AUTHENTICATION", 1633520295688))
    if kind == "xml":
        return status, shapes.xml_fault(code, text, text, draw(st.sampled_from(["SERVICE", "AuthorizatonFault"])), TIME)
    if kind == "html":
        return status, shapes.html_503()
    if kind == "oauth":
        return status, _dump({"error": draw(st.sampled_from(_CODES)), "error_description": text})
    fault = shapes.QboFault(code, text, text).fault()
    return status, _dump({"BatchItemResponse": [{"bId": "b1", "Fault": fault}, {"bId": "b2", "Vendor": {"Id": "1"}}]})


def _successes() -> list[bytes]:
    vendor = {"Id": "58", "SyncToken": "0", "DisplayName": "Acme", "MetaData": {"LastUpdatedTime": TIME}}
    return [
        _dump({"Vendor": vendor, "time": TIME}),
        _dump({"Bill": {"Id": "7", "SyncToken": "1", "TotalAmt": 200.0}, "time": TIME}),
        _dump({"QueryResponse": {"Vendor": [vendor], "startPosition": 1, "maxResults": 1}, "time": TIME}),
        _dump({"QueryResponse": {"totalCount": 3}}),
        _dump({"QueryResponse": {}}),
        _dump({"CDCResponse": [{"QueryResponse": [{"Vendor": [vendor]}, {}]}], "time": TIME}),
        _dump({"BatchItemResponse": [{"bId": "b1", "Vendor": vendor}, {"bId": "b2", "QueryResponse": {}}]}),
        _dump({"CompanyInfo": {"Id": "1", "CompanyName": "Tiny Co"}}),
    ]


SUCCESSES = _successes()
HUGE = [
    b"[" * 200_000,  # deeper than any parser's recursion limit
    b'{"a":' * 100_000,
    b"<a>" * 400_000,  # XML over the 1 MB parse limit
    b"<a>" * 100_000,  # unclosed XML under it
    _dump({"Vendor": {"Id": "1", "DisplayName": "x" * 3_000_000}}),
    b"\x00" * 1_000_000,
]


@st.composite
def bodies(draw: st.DrawFn) -> tuple[int | None, bytes]:
    """A body, and a status when the shape implies one (None: drawn separately)."""
    kind = draw(st.sampled_from(["golden", "success", "json", "truncated", "bytes", "empty", "huge", "text"]))
    if kind == "golden":
        return draw(golden_faults())
    if kind == "success":
        return None, draw(st.sampled_from(SUCCESSES))
    if kind == "json":
        return None, _dump(draw(json_values))
    if kind == "truncated":
        whole = draw(st.sampled_from(SUCCESSES) | golden_faults().map(lambda p: p[1]))
        return None, whole[: draw(st.integers(min_value=0, max_value=max(len(whole) - 1, 0)))]
    if kind == "bytes":
        return None, draw(st.binary(max_size=64))
    if kind == "empty":
        return None, draw(st.sampled_from([b"", b" ", b"\r\n", b"\xef\xbb\xbf", b"null", b"[]", b"{}"]))
    if kind == "huge":
        return None, draw(st.sampled_from(HUGE))
    return None, draw(st.text(max_size=40)).encode("utf-8", "surrogatepass")


CONTENT_TYPES = [
    None, "application/json", "application/json;charset=UTF-8", "application/xml", "text/xml", "text/html",
    "text/plain", "application/octet-stream", "", "garbage/???;;", "application/json; charset=latin-1",
]  # fmt: skip
RETRY_AFTER = [
    None, "0", "5", "-1", "1e400", "nan", "9" * 40, "Wed, 21 Oct 2015 07:28:00 GMT", "Wed, 21 Oct 2015 07:28:00",
    "soon", "\xb2", "\xbd", "1.5",
]  # fmt: skip
TRANSPORT_ERRORS: list[type[Exception]] = [
    httpx.ConnectError, httpx.ConnectTimeout, httpx.ReadTimeout, httpx.RemoteProtocolError, httpx.ReadError,
    httpx.DecodingError, httpx.PoolTimeout,
]  # fmt: skip


Reply = tuple[int, list[tuple[bytes, bytes]], bytes] | type[Exception]


@st.composite
def replies(draw: st.DrawFn) -> Reply:
    """One HTTP answer (status, raw headers, body) or a transport exception to raise instead."""
    if draw(st.integers(min_value=0, max_value=9)) == 0:
        return draw(st.sampled_from(TRANSPORT_ERRORS))
    implied, body = draw(bodies())
    status = implied or draw(
        st.sampled_from([200, 201, 204, 400, 401, 403, 404, 429, 500, 502, 503]) | st.integers(100, 599)
    )
    headers: list[tuple[bytes, bytes]] = []
    if (ctype := draw(st.sampled_from(CONTENT_TYPES))) is not None:
        headers.append((b"content-type", ctype.encode()))
    if (wait := draw(st.sampled_from(RETRY_AFTER))) is not None:
        headers.append((b"Retry-After", wait.encode("latin-1")))  # latin-1: '\xb2' is '²', a "digit"
    if (encoding := draw(st.sampled_from([None] * 6 + ["gzip", "deflate", "br", "x-unknown"]))) is not None:
        headers.append((b"content-encoding", encoding.encode()))  # over a body that is not so encoded
    if draw(st.booleans()):
        tid = draw(st.binary(min_size=1, max_size=12)).replace(b"\r", b"").replace(b"\n", b"")
        headers.append((b"intuit_tid", tid))
    return status, headers, body


class Wire:
    """The transport: API calls get the fuzzed script; token calls a fuzzed token answer when one is set, else
    the sandbox's token endpoint (the sandbox itself answers no call here: every answer under test is fuzzed)."""

    def __init__(self, qbo: Scripted) -> None:
        self.qbo = qbo
        self.script: list[Reply] = []
        self.token_script: list[Reply] = []
        self.api_calls = 0

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.url.path.startswith("/v3/"):
            self.api_calls += 1
            return _answer(request, self.script, self.api_calls)
        if request.url.path == "/oauth2/v1/tokens/bearer" and self.token_script:
            return _answer(request, self.token_script, 1)
        return self.qbo.handle_request(request)


def _answer(request: httpx.Request, script: list[Reply], n: int) -> httpx.Response:
    reply = script[min(n, len(script)) - 1]  # the last reply repeats for every retry after it
    if isinstance(reply, type):
        raise reply("fuzzed transport failure", request=request)
    status, headers, body = reply
    return httpx.Response(status, headers=headers, content=body)


# -- the calls -----------------------------------------------------------------------------------------------
def _batch(client: QboClient) -> dict[str, QboResult]:
    items = [
        BatchItem("b1", "create", "Vendor", {"DisplayName": "Acme"}),
        BatchItem("b2", query="SELECT * FROM Bill"),
        BatchItem("b3", "update", "Vendor", {"Id": "58", "SyncToken": "0", "sparse": True}),
    ]
    return client.batch(items, request_id="run-1:batch")


CALLS: dict[str, Callable[[QboClient, SandboxTime], Any]] = {
    "read": lambda c, _: c.read("Vendor", "58"),
    "company_info": lambda c, _: c.company_info(),
    "create": lambda c, _: c.create("Bill", {"VendorRef": {"value": "56"}, "Line": []}, request_id="bill:B1:v1"),
    "update": lambda c, _: c.update("Vendor", {"Id": "58", "SyncToken": "0"}, request_id="vendor:V1:v2"),
    "delete": lambda c, _: c.delete("Bill", "7", "1", "bill:B7:del"),
    "query": lambda c, _: c.query("SELECT * FROM Vendor"),
    "query_all": lambda c, _: c.query_all("Vendor", {"DisplayName": "O'Brien \\ Sons"}, include_inactive=True),
    "count": lambda c, _: c.count("Vendor"),
    "cdc": lambda c, clock: c.cdc(["Vendor", "Bill"], since=clock() - timedelta(days=1)),
    "batch": lambda c, _: _batch(c),
}
WRITES = {"create", "update"}


def _assert_classified(outcome: Outcome) -> None:
    assert outcome in (ACCEPTED, ALREADY_DELETED) or outcome.reason in CATALOGUE, outcome
    assert outcome.outcome in OUTCOMES and (outcome.outcome == "accepted") == outcome.accepted


def _assert_result(op: str, result: QboResult) -> None:
    _assert_classified(result.outcome)
    if result.ok and op in WRITES:
        # "accepted" is what marks a record synced: QBO must have named the object it holds.
        assert result.object is not None and result.object.get("Id"), result


def _check(op: str, returned: Any) -> None:
    """What each call may return when it does not raise QboCallError."""
    if op == "batch":
        assert set(returned) == {"b1", "b2", "b3"}
        for bid, item in returned.items():
            _assert_result("create" if bid != "b2" else "query", item)
    elif op == "count":
        assert isinstance(returned, int) and returned >= 0
    elif op == "cdc":
        assert all(isinstance(o, dict) for objs in returned.values() for o in objs)
    elif op in ("query", "query_all"):
        assert isinstance(returned, list) and all(isinstance(r, dict) for r in returned)
    else:
        assert isinstance(returned, QboResult) and returned.ok
        if returned.outcome is ALREADY_DELETED:  # a 610 to a delete: done, and no object to show
            assert op == "delete" and returned.object is None
        else:
            assert isinstance(returned.object, dict)
        _assert_result(op, returned)


def _run(op: str, client: QboClient, clock: SandboxTime) -> None:
    try:
        returned = CALLS[op](client, clock)
    except QboCallError as err:  # the one exception a call raises; it carries a classified result
        _assert_classified(err.outcome)
        assert not err.result.ok and str(err)
        return
    _check(op, returned)


@pytest.fixture
def wire(qbo: Scripted) -> Wire:
    return Wire(qbo)


@pytest.fixture
def fuzz_client(settings: Settings, connected: TokenStore, wire: Wire, clock: SandboxTime) -> QboClient:
    http = httpx.Client(transport=httpx.MockTransport(wire))
    return QboClient(settings, connected, REALM, http=http, clock=clock, sleep=clock.sleep)


def _headers(content_type: str = "application/json") -> list[tuple[bytes, bytes]]:
    return [(b"content-type", content_type.encode())]


@FUZZ
@given(op=st.sampled_from(sorted(CALLS)), script=st.lists(replies(), min_size=1, max_size=3))
# Regressions: each crashed the client before it was fixed.
@example(op="query", script=[(200, _headers(), b"[" * 200_000)])  # RecursionError from json
@example(op="read", script=[(429, [(b"Retry-After", b"\xb2")], b"")])  # '²'.isdigit(), float('²') fails
@example(op="query", script=[(200, _headers(), b'{"QueryResponse": "none"}')])  # AttributeError
@example(op="query", script=[(200, _headers(), b'{"QueryResponse": {"Vendor": [1, "x", null]}}')])
@example(op="count", script=[(200, _headers(), b'{"QueryResponse": {"totalCount": "many"}}')])  # ValueError
@example(op="count", script=[(200, _headers(), b'{"QueryResponse": {"totalCount": NaN}}')])
@example(op="count", script=[(200, _headers(), b'{"QueryResponse": {"totalCount": -4}}')])
@example(op="cdc", script=[(200, _headers(), b'{"CDCResponse": [1, {"QueryResponse": "x"}]}')])
@example(op="cdc", script=[(200, _headers(), b'{"CDCResponse": 5}')])
@example(op="batch", script=[(200, _headers(), b'{"BatchItemResponse": 5}')])  # TypeError: not iterable
@example(op="batch", script=[(200, _headers(), b'{"BatchItemResponse": [{"bId": "b1"}, {"bId": "b3", "x": 1}]}')])
@example(op="create", script=[(200, _headers(), b'{"time": "2017-09-29T09:17:31.892-07:00"}')])  # no object
@example(op="create", script=[(200, _headers(), b'{"Bill": {"SyncToken": "0"}}')])  # an object without Id
@example(op="read", script=[(200, _headers(), b'{"Vendor": "58"}')])
@example(op="cdc", script=[(200, [], b'{"Fault": {"Error": [{"code": ""}], "type": ""}}')])  # a 200 fault, no code
def test_every_fuzzed_response_ends_in_a_classified_outcome(
    fuzz_client: QboClient, wire: Wire, clock: SandboxTime, op: str, script: list[Reply]
) -> None:
    wire.script, wire.api_calls = script, 0
    _run(op, fuzz_client, clock)
    assert wire.api_calls <= 12  # retries are bounded: 5 throttle waits, a refresh, two read retries


def _tokens(**fields: Any) -> bytes:
    return _dump({"access_token": "AT1-x", "refresh_token": "RT1-y", **fields})


@st.composite
def token_answers(draw: st.DrawFn) -> Reply:
    """What the token endpoint might say to a refresh: tokens of every type, OAuth errors, junk."""
    number = st.integers(min_value=-(2**70), max_value=2**70) | st.floats() | st.text(max_size=8) | st.none()
    kind = draw(st.sampled_from(["tokens", "error", "any"]))
    if kind == "tokens":
        payload: Any = {
            "access_token": draw(st.text(min_size=1, max_size=12) | st.integers() | st.none()),
            "refresh_token": draw(st.text(min_size=1, max_size=12) | st.lists(st.integers(), max_size=2)),
            "expires_in": draw(number | st.lists(number, max_size=2)),
            "x_refresh_token_expires_in": draw(number | st.dictionaries(st.text(max_size=3), number, max_size=2)),
            "x_refresh_token_hard_expires_in": draw(number),
            "scope": draw(st.text(max_size=20) | st.lists(st.text(max_size=5), max_size=3)),
        }
        status = draw(st.sampled_from([200, 200, 201, 400]))
        return status, _headers(), _dump(payload)
    if kind == "error":
        error = draw(st.sampled_from(["invalid_grant", "invalid_client", "invalid_request", "unauthorized_client"]))
        status = draw(st.sampled_from([400, 401, 403, 500, 503]))
        return status, _headers(), _dump({"error": error, "error_description": draw(st.text(max_size=20))})
    return draw(replies())


@FUZZ
@given(answer=token_answers(), op=st.sampled_from(["read", "create", "query", "batch"]))
# Regressions: a token answer with a list, huge, NaN or negative lifetime, or a token no header can carry.
@example(answer=(200, _headers(), _tokens(expires_in=[60])), op="read")
@example(answer=(200, _headers(), _tokens(expires_in=1e300)), op="read")
@example(answer=(200, _headers(), _tokens(expires_in=float("nan"))), op="read")
@example(answer=(200, _headers(), _tokens(x_refresh_token_expires_in=-1e20)), op="read")
@example(answer=(200, _headers(), _tokens(access_token="caf\u00e9\n")), op="read")
@example(answer=(200, _headers(), b"[" * 200_000), op="read")
@example(answer=httpx.DecodingError, op="read")  # a body its Content-Encoding cannot undo
def test_every_fuzzed_token_answer_ends_in_a_classified_outcome(
    fuzz_client: QboClient,
    wire: Wire,
    clock: SandboxTime,
    oauth: OAuthClient,
    settings: Settings,
    http: httpx.Client,
    answer: Reply,
    op: str,
) -> None:
    wire.token_script = []
    connect(settings, oauth, http)  # connected again, whatever the last example did to it
    clock.advance(2 * 3600)  # the access token has expired: the call must refresh first
    wire.script, wire.api_calls = [(200, _headers(), SUCCESSES[0])], 0
    wire.token_script = [answer]
    _run(op, fuzz_client, clock)
