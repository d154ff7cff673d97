"""Identifiers that go into QBO URLs and requests: object ids, realm ids and request ids (ref §1)."""

from __future__ import annotations

import re

__all__ = ["OBJECT_ID", "REQUEST_ID_MAX", "VISIBLE_ASCII", "check_object_id", "check_request_id"]

REQUEST_ID_MAX = 50  # ref §1
OBJECT_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")  # an id becomes part of a URL path: nothing that could change it
VISIBLE_ASCII = re.compile(r"^[\x21-\x7e]+$")


def check_request_id(request_id: str, limit: int = REQUEST_ID_MAX) -> str:
    if not isinstance(request_id, str) or not VISIBLE_ASCII.match(request_id) or len(request_id) > limit:
        raise ValueError(f"requestid must be 1-{limit} visible ASCII characters (ref §1)")
    return request_id


def check_object_id(value: str) -> str:
    if not OBJECT_ID.match(str(value)):
        raise ValueError(f"not a QBO object id: {value!r}")
    return str(value)
