"""Sandbox fixtures: a sandbox with the tiny company on a fixed clock, an authorized API client, control."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from qbo.sandbox import Sandbox

from .sandbox_helpers import Qbo, authorized_client, make_sandbox


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    sb = make_sandbox()
    yield sb
    sb.close()
    assert sb.errors == [], "the sandbox hit an internal error"


@pytest.fixture
def qbo(sandbox: Sandbox) -> Iterator[Qbo]:
    with authorized_client(sandbox) as http:
        yield Qbo(http)


@pytest.fixture
def control(sandbox: Sandbox) -> Iterator[httpx.Client]:
    """A client for the /_sandbox/ control API (no auth)."""
    with httpx.Client(transport=sandbox.transport(), base_url="http://sandbox.local") as http:
        yield http
