"""Money as Decimal on the wire, QBO's time formats, and the sandbox clock."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from qbo.sandbox.clock import (
    SandboxClock,
    format_cloudevent_time,
    format_meta_time,
    format_qbo_time,
    format_webhook_time,
    parse_qbo_time,
)
from qbo.sandbox.wire import dumps, loads, to_decimal

MOMENT = datetime(2025, 6, 15, 17, 4, 5, 123456, tzinfo=UTC)


@given(st.decimals(allow_nan=False, allow_infinity=False, places=2, min_value=-(10**12), max_value=10**12))
def test_money_round_trips_exactly(amount: Decimal) -> None:
    assert loads(dumps({"Amount": amount}))["Amount"] == amount


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (Decimal("200.00"), b"200.00"),
        (Decimal("0.1") + Decimal("0.2"), b"0.3"),
        (Decimal("1E+2"), b"100"),
        (7, b"7"),
        (True, b"true"),
        (None, b"null"),
        ("caf\u00e9 'x'", b"\"caf\\u00e9 'x'\""),
    ],
)
def test_values_are_written_as_exact_json(value: object, text: bytes) -> None:
    assert dumps(value) == text


def test_parsed_fractions_are_decimal_never_float() -> None:
    parsed = loads(b'{"a": 0.1, "b": 2, "c": [1.50]}')
    assert parsed == {"a": Decimal("0.1"), "b": 2, "c": [Decimal("1.50")]}
    assert isinstance(parsed["a"], Decimal)


@pytest.mark.parametrize("bad", [None, True, "abc", "NaN", [1]])
def test_to_decimal_refuses_non_numbers(bad: object) -> None:
    with pytest.raises(ValueError):
        to_decimal(bad)


def test_time_formats_follow_the_reference() -> None:
    assert format_qbo_time(MOMENT) == "2025-06-15T10:04:05.123-07:00"
    assert format_meta_time(MOMENT) == "2025-06-15T10:04:05-07:00"
    assert format_webhook_time(MOMENT) == "2025-06-15T10:04:05-0700"
    assert format_cloudevent_time(MOMENT) == "2025-06-15T17:04:05.123456Z"
    assert parse_qbo_time("2025-06-15T10:04:05-07:00") == MOMENT.replace(microsecond=0)
    assert parse_qbo_time("2025-06-15T17:04:05Z") == MOMENT.replace(microsecond=0)
    assert parse_qbo_time("2025-06-15").isoformat() == "2025-06-15T00:00:00-07:00"


def test_the_clock_scales_and_advances() -> None:
    real = [100.0]
    clock = SandboxClock(60, MOMENT, monotonic=lambda: real[0])
    assert clock.now() == MOMENT
    real[0] += 2
    assert clock.seconds() == 120
    clock.advance(30)
    assert (clock.now() - MOMENT).total_seconds() == 150
    assert clock.real_seconds(60) == 1
    with pytest.raises(ValueError):
        clock.advance(-1)
    with pytest.raises(ValueError):
        SandboxClock(0)
