"""Rate limits (ref §4): 500 a minute, 10 at once, 40 batches a minute, in sandbox time; 429 with 3001."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from qbo.sandbox import Limits, Sandbox, SandboxClock

from .sandbox_helpers import REALM, START, Qbo, authorized_client, make_sandbox


class _FakeMonotonic:
    """Real time that only moves when a test says so."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _fill(qbo: Qbo, count: int) -> list[int]:
    return [qbo.read("Vendor", "1").status_code for _ in range(count)]


def test_500_requests_a_minute_then_429_until_the_window_moves(sandbox: Sandbox, qbo: Qbo) -> None:
    assert set(_fill(qbo, 500)) == {200}
    throttled = qbo.read("Vendor", "1")
    assert throttled.status_code == 429
    assert throttled.headers["content-type"] == "application/xml"  # as every real throttle answered
    assert b'<Fault type="SERVICE"><Error code="3001">' in throttled.content
    assert b"<Message>message=ThrottleExceeded; errorCode=003001; statusCode=429</Message>" in throttled.content
    assert "retry-after" not in throttled.headers
    sandbox.clock.advance(60)
    assert qbo.read("Vendor", "1").status_code == 200
    stats = sandbox.stats()
    realm = stats["realms"][REALM]
    assert realm["max_in_window"] == 500 and realm["throttled"] == {"per_minute": 1}
    assert stats["over_limit"] == 1


def test_a_time_scale_shrinks_the_window() -> None:
    real = _FakeMonotonic()
    sandbox = make_sandbox(clock=SandboxClock(60, START, monotonic=real), limits=Limits(per_minute=5))
    with authorized_client(sandbox) as http:
        qbo = Qbo(http)
        assert _fill(qbo, 6) == [200] * 5 + [429]
        real.now += 0.5  # 30 sandbox seconds: still inside the window
        assert qbo.read("Vendor", "1").status_code == 429
        real.now += 0.5  # one real second is a sandbox minute at scale 60
        assert _fill(qbo, 5) == [200] * 5


def test_40_batches_a_minute(sandbox: Sandbox, qbo: Qbo) -> None:
    items = [{"bId": "q", "Query": "select * from Term"}]
    assert {qbo.batch(items).status_code for _ in range(40)} == {200}
    assert qbo.batch(items).status_code == 429
    assert qbo.read("Vendor", "1").status_code == 200  # other calls still fit in the minute
    assert sandbox.stats()["realms"][REALM]["throttled"] == {"batch_per_minute": 1}


@pytest.mark.parametrize(("fmt", "retry_after"), [("xml", None), ("json", 60)])
def test_throttle_format_and_retry_after_are_options(fmt: str, retry_after: int | None) -> None:
    sandbox = make_sandbox(limits=Limits(per_minute=1), throttle_format=fmt, retry_after_seconds=retry_after)
    assert make_sandbox().throttle_format == "xml"  # the default is what QBO sends
    with authorized_client(sandbox) as http:
        qbo = Qbo(http)
        _fill(qbo, 1)
        reply = qbo.read("Vendor", "1")
    assert reply.status_code == 429
    if fmt == "xml":
        assert reply.headers["content-type"] == "application/xml"
        assert b'<Fault type="SERVICE"><Error code="3001">' in reply.content
        assert "retry-after" not in reply.headers
    else:
        assert reply.headers["retry-after"] == "60"


def test_more_than_ten_at_once_is_refused() -> None:
    sandbox = make_sandbox(latency_seconds=0.5)  # far longer than the 15 threads take to arrive
    start = threading.Barrier(15)

    def call(http: httpx.Client) -> int:
        start.wait()
        return Qbo(http).read("Vendor", "1").status_code

    with authorized_client(sandbox) as http, ThreadPoolExecutor(15) as pool:
        statuses = list(pool.map(call, [http] * 15))
    assert statuses.count(200) == 10 and statuses.count(429) == 5
    stats = sandbox.stats()
    assert stats["max_concurrent"] == 10
    assert stats["realms"][REALM]["throttled"] == {"concurrent": 5}
    assert stats["realms"][REALM]["in_flight"] == 0


def test_refused_requests_and_the_control_api_do_not_count(sandbox: Sandbox, control: httpx.Client) -> None:
    with httpx.Client(transport=sandbox.transport(), base_url="http://sandbox.local") as anonymous:
        assert anonymous.get(f"/v3/company/{REALM}/vendor/1").status_code == 401
    for _ in range(3):
        control.get("/_sandbox/stats")
    assert sandbox.stats()["realms"] == {}


def test_an_optional_per_second_limit() -> None:
    sandbox = make_sandbox(limits=Limits(per_second=10))
    with authorized_client(sandbox) as http:
        statuses = _fill(Qbo(http), 11)
    assert statuses[-1] == 429 and statuses[:10] == [200] * 10


def test_a_403_throttle_as_qbo_answered_in_2016_is_an_option() -> None:
    sandbox = make_sandbox(limits=Limits(per_minute=1), throttle_status=403)
    with authorized_client(sandbox) as http:
        qbo = Qbo(http)
        _fill(qbo, 1)
        reply = qbo.read("Vendor", "1")
    assert reply.status_code == 403 and reply.headers["content-type"] == "application/xml"
    assert b"<Message>message=ThrottleExceeded; errorCode=003001; statusCode=403</Message>" in reply.content
    with pytest.raises(ValueError, match="429 or 403"):
        make_sandbox(throttle_status=500)
