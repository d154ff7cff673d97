"""JSON in and out with money as Decimal: parsed without float, written as exact JSON numbers."""

from __future__ import annotations

import json
from decimal import Decimal, InvalidOperation
from typing import Any

__all__ = ["dumps", "is_digits", "loads", "normalize", "to_decimal"]

_encode_str = json.encoder.encode_basestring_ascii  # type: ignore[attr-defined]


def loads(raw: bytes | str) -> Any:
    """Parse JSON; every number with a fraction becomes a Decimal, never a float."""
    if isinstance(raw, bytes):
        raw = raw.decode("utf-8")
    return json.loads(raw, parse_float=Decimal)


def dumps(value: Any) -> bytes:
    """Serialise to compact JSON; a Decimal is written digit for digit (`200.00` stays `200.00`)."""
    parts: list[str] = []
    _write(value, parts)
    return "".join(parts).encode("utf-8")


def _write(value: Any, out: list[str]) -> None:
    if value is None:
        out.append("null")
    elif value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    elif isinstance(value, str):
        out.append(_encode_str(value))
    elif isinstance(value, Decimal):
        if not value.is_finite():
            raise ValueError(f"cannot write {value} as JSON")
        # 'f' keeps the scale and never uses an exponent, so 1E+2 is written 100.
        out.append(format(value, "f"))
    elif isinstance(value, int):
        out.append(str(value))
    elif isinstance(value, float):
        out.append(json.dumps(value, allow_nan=False))
    elif isinstance(value, dict):
        out.append("{")
        for index, (key, item) in enumerate(value.items()):
            if index:
                out.append(",")
            out.append(_encode_str(str(key)))
            out.append(":")
            _write(item, out)
        out.append("}")
    elif isinstance(value, list | tuple):
        out.append("[")
        for index, item in enumerate(value):
            if index:
                out.append(",")
            _write(item, out)
        out.append("]")
    else:
        raise TypeError(f"cannot write {type(value).__name__} as JSON")


def normalize(value: Any) -> Any:
    """Deep-copy plain JSON data, turning any float into the Decimal of its shortest repr."""
    if isinstance(value, dict):
        return {str(k): normalize(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [normalize(v) for v in value]
    if isinstance(value, float):
        return Decimal(repr(value))
    return value


def to_decimal(value: Any) -> Decimal:
    """A money or quantity value as Decimal; raises ValueError for anything that is not a number."""
    if isinstance(value, bool) or value is None:
        raise ValueError(f"not a number: {value!r}")
    if isinstance(value, Decimal):
        result = value
    elif isinstance(value, int):
        result = Decimal(value)
    elif isinstance(value, float):
        result = Decimal(repr(value))
    elif isinstance(value, str):
        try:
            result = Decimal(value.strip())
        except InvalidOperation:
            raise ValueError(f"not a number: {value!r}") from None
    else:
        raise ValueError(f"not a number: {value!r}")
    if not result.is_finite():
        raise ValueError(f"not a number: {value!r}")
    return result


def is_digits(text: str) -> bool:
    """ASCII digits only: `str.isdigit()` also accepts '¹', which int() refuses."""
    return text.isascii() and text.isdigit()
