"""Shared pytest fixtures: a clean environment and a fresh store (test data lives in fixtures.py)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from fixtures import tiny_snapshot, write_snapshot

from pipelines.store import Store


@pytest.fixture(autouse=True)
def _clean_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests never read the developer's SYNCHEALTH_* settings."""
    for key in list(os.environ):
        if key.startswith("SYNCHEALTH_"):
            monkeypatch.delenv(key, raising=False)


@pytest.fixture
def store(tmp_path: Path):
    s = Store(tmp_path / "store.duckdb")
    yield s
    s.close()


@pytest.fixture
def snapshot_dir(tmp_path: Path) -> Path:
    return write_snapshot(tmp_path / "awra", tiny_snapshot())
