"""Pages under AppTest against a synced tiny company on a loopback sandbox: the store and settings the app reads."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fixtures import REALM, tiny_company
from streamlit.testing.v1 import AppTest
from world import World

from qbo.sandbox import Sandbox
from qbo.sandbox.server import start_in_thread
from ui.data import get_settings, get_store

__all__ = ["ROOT", "open_page", "point_app_at", "serve"]

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
        yield from point_app_at(
            monkeypatch,
            world.settings.db_path,
            SYNCHEALTH_QBO_BASE_URL=running.base_url,
            SYNCHEALTH_SECRET_KEY=world.settings.secret_key,
            SYNCHEALTH_ROUTING_FILE=str(ROOT / "config" / "routing.toml"),
            result=world,
        )


def point_app_at(monkeypatch: pytest.MonkeyPatch, db: Path, result: object = None, **env: str) -> Iterator:
    """The app's settings (the company's store, more SYNCHEALTH_* from env) for one test; yields result (else db).

    The cached store and settings are cleared on the way in and out, so no test sees another's store."""
    for name, value in {"SYNCHEALTH_DB": str(db), "SYNCHEALTH_REALM_ID": REALM, **env}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(ROOT)
    get_settings.clear()
    get_store.clear()
    yield db if result is None else result
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
