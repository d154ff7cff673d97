"""Over loopback HTTP: round trip, timeout, dropped connection, concurrency, and the command line."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from qbo.sandbox import Sandbox
from qbo.sandbox.server import RunningSandbox, main, start_in_thread

from .sandbox_helpers import REALM, Qbo, body, make_sandbox


@pytest.fixture
def served() -> Iterator[RunningSandbox]:
    sandbox = make_sandbox(timeout_hold_seconds=2)
    with start_in_thread(sandbox) as running:
        yield running
    sandbox.close()
    assert sandbox.errors == []


def _client(running: RunningSandbox, timeout: float = 5.0) -> httpx.Client:
    tokens = running.sandbox.issue_tokens(REALM)
    return httpx.Client(
        base_url=running.base_url,
        timeout=timeout,
        headers={"authorization": f"Bearer {tokens['access_token']}"},
    )


def test_a_round_trip_over_loopback(served: RunningSandbox) -> None:
    assert served.base_url.startswith("http://127.0.0.1:") and served.port > 0
    with _client(served) as http:
        reply = Qbo(http).create("Vendor", {"DisplayName": "Wire Co"}, requestid="w-1")
        assert reply.status_code == 200 and reply.headers["intuit_tid"]
        assert body(reply)["Vendor"]["DisplayName"] == "Wire Co"
        assert http.get("/_sandbox/stats").status_code == 200


def test_timeout_after_commit_fires_the_read_timeout_and_the_write_is_kept(served: RunningSandbox) -> None:
    served.sandbox.set_faults("timeout_after_commit=1")
    with _client(served, timeout=1.0) as http, pytest.raises(httpx.ReadTimeout):
        Qbo(http).create("Vendor", {"DisplayName": "Slow Co"}, requestid="slow-1")
    served.sandbox.set_faults(None)
    with _client(served) as http:
        retry = Qbo(http).create("Vendor", {"DisplayName": "Slow Co"}, requestid="slow-1")
    assert retry.status_code == 200
    names = [v["DisplayName"] for v in served.sandbox.entities(REALM, "Vendor")]
    assert names.count("Slow Co") == 1


def test_connection_reset_drops_the_connection_without_a_response(served: RunningSandbox) -> None:
    served.sandbox.set_faults("connection_reset=1")
    with _client(served) as http:
        with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
            Qbo(http).read("Vendor", "1")
        served.sandbox.set_faults(None)
        assert Qbo(http).read("Vendor", "1").status_code == 200  # the client reconnects


def test_the_concurrency_limit_holds_under_real_threads(served: RunningSandbox) -> None:
    # Each admitted request takes 0.6 s, far longer than it takes the 14 threads to arrive.
    served.sandbox.latency_seconds = 0.6
    start = threading.Barrier(14)

    def call(http: httpx.Client) -> int:
        start.wait()
        return Qbo(http).read("Vendor", "1").status_code

    with _client(served) as http, ThreadPoolExecutor(14) as pool:
        statuses = list(pool.map(call, [http] * 14))
    assert statuses.count(429) == 4 and statuses.count(200) == 10
    assert served.sandbox.stats()["max_concurrent"] == 10


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--faults", "boom=1"], "unknown fault kind"),
        (["--time-scale", "0"], "--time-scale must be positive"),
        (["--company", "/nonexistent/qbo-company.json"], "No such file"),
        (["--port", "http"], "invalid int value"),
        (["--unknown"], "unrecognized arguments"),
    ],
)
def test_bad_command_line_exits_2_with_one_line(
    capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err and err.startswith("synchealth sandbox: ")


def test_help_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    assert "--time-scale" in capsys.readouterr().out


def test_main_serves_until_stopped(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    seen: dict[str, object] = {}

    def fake_serve(sandbox: Sandbox, host: str, port: int) -> None:
        seen.update(sandbox=sandbox, host=host, port=port)

    monkeypatch.setattr("qbo.sandbox.server.serve", fake_serve)
    assert main(["--port", "9999", "--faults", "http_500=0.5", "--seed", "4", "--time-scale", "60"]) == 0
    sandbox = seen["sandbox"]
    assert isinstance(sandbox, Sandbox)
    assert (seen["host"], seen["port"]) == ("127.0.0.1", 9999)
    assert sandbox.clock.time_scale == 60 and sandbox.faults.describe()["seed"] == 4
    assert "QBO sandbox on http://127.0.0.1:9999" in capsys.readouterr().out
