"""Golden shapes: a JSON sample marks what QBO answers, and every real answer and every sandbox answer must fit it."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from decimal import Decimal
from pathlib import Path
from typing import Any

__all__ = ["ANY_OF", "GOLDEN", "OPEN", "OPTIONAL", "WILDCARD", "assert_conforms", "golden", "xml_shape"]

GOLDEN = Path(__file__).parent / "golden"
OPEN = "__open__"  # an object marked open may carry more keys than the sample shows
OPTIONAL = "__optional__"  # keys a real answer may leave out (e.g. element, time, error_description)
ANY_OF = "__any_of__"  # {"__any_of__": [a, b]}: the value fits one of them (e.g. a detail that may be null)
WILDCARD = "*"  # the key QBO names after the entity ("Bill", "Vendor"): every key the sample does not name
_MARKS = (OPEN, OPTIONAL)


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float | Decimal):
        return "number"
    return type(value).__name__


def assert_conforms(actual: Any, shape: Any, path: str = "$") -> None:
    """`actual` has the golden sample's structure: same keys (unless open or optional), same JSON types."""
    if isinstance(shape, dict) and ANY_OF in shape:
        problems = []
        for option in shape[ANY_OF]:
            try:
                assert_conforms(actual, option, path)
                return
            except AssertionError as exc:
                problems.append(str(exc))
        raise AssertionError(f"{path}: fits none of the shapes: {'; '.join(problems)}")
    if isinstance(shape, dict):
        assert isinstance(actual, dict), f"{path}: expected an object, got {_kind(actual)}"
        named = {k for k in shape if k not in _MARKS and k != WILDCARD}
        optional = set(shape.get(OPTIONAL, ()))
        missing = named - optional - set(actual)
        assert not missing, f"{path}: missing keys {sorted(missing)}"
        others = set(actual) - named
        if WILDCARD in shape:
            assert others, f"{path}: no entity key"
            for key in others:
                assert_conforms(actual[key], shape[WILDCARD], f"{path}.{key}")
        elif not shape.get(OPEN):
            assert not others, f"{path}: unexpected keys {sorted(others)}"
        for key in named & set(actual):
            assert_conforms(actual[key], shape[key], f"{path}.{key}")
    elif isinstance(shape, list):
        assert isinstance(actual, list), f"{path}: expected a list, got {_kind(actual)}"
        if len(shape) == 1:
            for index, item in enumerate(actual):
                assert_conforms(item, shape[0], f"{path}[{index}]")
        elif shape:
            assert len(actual) == len(shape), f"{path}: expected {len(shape)} items"
            for index, (item, sample) in enumerate(zip(actual, shape, strict=True)):
                assert_conforms(item, sample, f"{path}[{index}]")
    else:
        assert _kind(actual) == _kind(shape), f"{path}: expected {_kind(shape)}, got {_kind(actual)}"


def golden(name: str) -> Any:
    return json.loads((GOLDEN / f"{name}.json").read_text())


def xml_shape(content: bytes) -> Any:
    """An XML answer's structure without its text: each element's local name, attribute names and children."""

    def shape(el: ET.Element) -> Any:
        return (el.tag.rsplit("}", 1)[-1], tuple(sorted(el.attrib)), tuple(shape(c) for c in el))

    return shape(ET.fromstring(content))
