"""Client-side limits: wait out throttles (never hammer), 500 a minute, 40 batches a minute, 10 in flight."""

from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta

import httpx
import pytest
from real_corpus import CORPUS
from scripted import REALM, SandboxTime, Scripted

from pipelines.config import Settings
from qbo.client import BatchItem, QboCallError, QboClient, RateLimiter
from qbo.tokens import TokenStore

# A real throttle (PHP-SDK#54): XML, no Retry-After, although the client asked for JSON (ref §3).
THROTTLE = (CORPUS / "throttle_429_xml_phpsdk54.xml").read_bytes()


def xml_throttle(content_type: str = "application/xml", retry_after: str | None = None) -> httpx.Response:
    headers = {"content-type": content_type} | ({"retry-after": retry_after} if retry_after else {})
    return httpx.Response(429, content=THROTTLE, headers=headers)


def _most_in_any_minute(stamps: list[datetime]) -> int:
    stamps = sorted(stamps)
    most, lo = 0, 0
    for hi, stamp in enumerate(stamps):
        while stamp - stamps[lo] >= timedelta(seconds=60):
            lo += 1
        most = max(most, hi - lo + 1)
    return most


def test_a_throttle_in_xml_waits_a_minute_and_resends_the_same_request(
    client: QboClient, qbo: Scripted, clock: SandboxTime
) -> None:
    qbo.script(xml_throttle(content_type="application/json"))  # XML although JSON was asked (ref §3)
    created = client.create("Vendor", {"DisplayName": "Acme"}, request_id="vendor:V1:v1")
    assert created.ok and (created.attempts, created.throttle_waits) == (2, 1)
    assert clock.slept == [60.0]  # no Retry-After: wait 60 s (ref §4)
    assert [r.url.params["requestid"] for r in qbo.api_requests] == ["vendor:V1:v1"] * 2
    assert [v["DisplayName"] for v in qbo.entities("Vendor")].count("Acme") == 1


def test_retry_after_is_honoured_when_present(client: QboClient, qbo: Scripted, clock: SandboxTime) -> None:
    qbo.script(xml_throttle(retry_after="7"))
    client.company_info()
    assert clock.slept == [7.0]


def test_a_throttle_holds_every_caller_of_the_realm(clock: SandboxTime) -> None:
    limiter = RateLimiter(clock=clock, sleep=clock.sleep)
    with limiter.slot():
        pass
    limiter.hold(60)  # one call was throttled ...
    with limiter.slot():  # ... so the next one, whoever makes it, waits first
        pass
    assert clock.slept == [60.0]


def test_endless_throttling_ends_in_a_retryable_error_not_a_loop(
    client: QboClient, qbo: Scripted, clock: SandboxTime
) -> None:
    qbo.script(*[xml_throttle() for _ in range(6)])
    with pytest.raises(QboCallError) as caught:
        client.company_info()
    assert (caught.value.outcome.reason, caught.value.outcome.retryable) == ("transport.throttled", True)
    assert clock.slept == [60.0] * 5 and len(qbo.api_requests) == 6


def test_never_more_than_500_requests_in_any_minute(client: QboClient, qbo: Scripted, clock: SandboxTime) -> None:
    stamps: list[datetime] = []
    qbo.on_api = lambda _request: stamps.append(clock())
    for _ in range(1200):
        client.company_info()
    assert len(stamps) == 1200
    assert _most_in_any_minute(stamps) == 500
    assert stamps[-1] - stamps[0] >= timedelta(seconds=120)  # it waited instead of hammering


def test_never_more_than_40_batches_in_any_minute(client: QboClient, qbo: Scripted, clock: SandboxTime) -> None:
    stamps: list[datetime] = []
    qbo.on_api = lambda _request: stamps.append(clock())
    for n in range(100):
        client.batch([BatchItem("q", query="SELECT * FROM Vendor")], request_id=f"batch-{n}")
    assert _most_in_any_minute(stamps) == 40


def test_never_more_than_10_requests_in_flight(
    settings: Settings, connected: TokenStore, qbo: Scripted, clock: SandboxTime
) -> None:
    lock, in_flight, peak = threading.Lock(), [0], [0]

    def slow(request: httpx.Request) -> httpx.Response:
        with lock:
            in_flight[0] += 1
            peak[0] = max(peak[0], in_flight[0])
        time.sleep(0.05)
        with lock:
            in_flight[0] -= 1
        return qbo.handle_request(request)

    with httpx.Client(transport=httpx.MockTransport(slow)) as http_slow:
        # Real sleep here: the semaphore is what is under test.
        client = QboClient(settings, connected, REALM, http=http_slow, clock=clock)
        threads = [threading.Thread(target=client.company_info) for _ in range(30)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert peak[0] == 10
    assert len(qbo.api_requests) == 30  # the sandbox, which throttles an eleventh at once, never had to
