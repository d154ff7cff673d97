"""Pages under AppTest against a synced tiny company on a loopback sandbox: the store and settings the app reads."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fixtures import REALM, tiny_company
from streamlit.testing.v1 import AppTest
from test_sync import World

from pipelines.page_data import get_settings, get_store
from qbo.sandbox import Sandbox
from qbo.sandbox.server import start_in_thread

__all__ = ["ROOT", "open_page", "serve"]

ROOT = Path(__file__).resolve().parents[1]


def serve(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, snap: dict, after: Callable[[World], None] | None = None
) -> Iterator[World]:
    """One cycle of `snap` against the sandbox (then `after`), with the app's settings pointed at the result."""
    with start_in_thread(Sandbox(tiny_company())) as running:
        world = World(tmp_path, snap, base_url=running.base_url, sandbox=running.sandbox)
        world.cycle()
        if after:
            after(world)
        world.store.close()
        for name, value in {
            "SYNCHEALTH_DB": str(world.settings.db_path),
            "SYNCHEALTH_REALM_ID": REALM,
            "SYNCHEALTH_QBO_BASE_URL": running.base_url,
            "SYNCHEALTH_SECRET_KEY": world.settings.secret_key,
            "SYNCHEALTH_ROUTING_FILE": str(ROOT / "config" / "routing.toml"),
        }.items():
            monkeypatch.setenv(name, value)
        monkeypatch.chdir(ROOT)
        get_settings.clear()
        get_store.clear()
        yield world
        get_store.clear()
        get_settings.clear()


def open_page(page: str, actor: str = "viewer@demo.local", **query: str) -> AppTest:
    """The app run as `actor` (with these query parameters), switched to app_pages/`page`."""
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    at.session_state["actor"] = actor
    for k, v in query.items():
        at.query_params[k] = v
    at.run()
    at.switch_page(f"app_pages/{page}").run()
    return at
