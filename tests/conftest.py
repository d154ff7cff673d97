"""Shared pytest fixtures: a clean environment and a fresh store (test data lives in fixtures.py)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from fixtures import tiny_snapshot, write_snapshot
from hypothesis import settings as hypothesis_settings

from pipelines.store import Store

# The suite draws the same Hypothesis examples on every run: a red build is the code's doing, never the draw's. The
# regressions found by exploring are kept as @example; explore afresh with `pytest --hypothesis-profile=explore`.
hypothesis_settings.register_profile("ci", derandomize=True, print_blob=True)
hypothesis_settings.register_profile("explore", derandomize=False, print_blob=True)
hypothesis_settings.load_profile("ci")


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
