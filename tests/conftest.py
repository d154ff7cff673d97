"""Shared pytest fixtures: a clean environment and a fresh store (test data lives in fixtures.py)."""

from __future__ import annotations

import os
from collections.abc import Iterator
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


@pytest.fixture(autouse=True)
def _no_page_failed_unseen(monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> Iterator[None]:
    """A page that failed shows one sentence instead of a trace (ui/guard.py), so a test that drives pages in this
    process no longer sees the failure as an exception: each one is collected here and fails the test, unless the
    test is marked page_failure (it provokes one on purpose)."""
    import ui.guard

    failures: list[str] = []
    shown = ui.guard.page_failed

    def seen(err: Exception, where: str) -> None:
        failures.append(f"{where}: {err!r}")
        shown(err, where)

    monkeypatch.setattr(ui.guard, "page_failed", seen)
    yield
    if request.node.get_closest_marker("page_failure") is None:
        assert not failures, failures


@pytest.fixture
def store(tmp_path: Path):
    s = Store(tmp_path / "store.duckdb")
    yield s
    s.close()


@pytest.fixture
def snapshot_dir(tmp_path: Path) -> Path:
    return write_snapshot(tmp_path / "awra", tiny_snapshot())


# -- both backends -------------------------------------------------------------------------------------------------
# The embedded store (DuckDB) and the fleet's (PostgreSQL). PostgreSQL is a private cluster this session starts in a
# temporary folder (Debian's server binaries; .ci/run installs them where they are missing); without them locally,
# the PostgreSQL half of each parametrized test is skipped with the reason.
BACKENDS = ("duckdb", "postgresql")


@pytest.fixture(scope="session")
def pg_cluster():
    import shutil
    import tempfile

    from pipelines.fleet.cluster import Cluster, ClusterUnavailableError

    try:
        folder = Path(tempfile.mkdtemp(prefix="synchealth-pg-"))
        cluster = Cluster(folder)
    except ClusterUnavailableError as exc:
        pytest.skip(f"PostgreSQL tests skipped: {exc}")
    folder.chmod(0o755)
    cluster.start()
    yield cluster
    cluster.stop()
    shutil.rmtree(folder, ignore_errors=True)


_databases = iter(range(1, 1_000_000))


@pytest.fixture
def pg_url(pg_cluster) -> str:
    """A new, empty PostgreSQL database for one test."""
    return pg_cluster.create_database(f"t{next(_databases)}")


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def store_target(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> str | Path:
    """Where a store of the test's backend lives: a DuckDB file, or a fresh PostgreSQL database."""
    if backend == "duckdb":
        return tmp_path / "store.duckdb"
    return request.getfixturevalue("pg_url")


@pytest.fixture
def any_store(store_target):
    s = Store(store_target)
    yield s
    s.close()
