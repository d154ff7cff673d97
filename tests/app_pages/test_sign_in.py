"""Sign-in in the sidebar: st.login/st.user with an OIDC provider configured, else the marked demo picker."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from served import point_app_at
from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parents[2]
AUTH = {
    "redirect_uri": "http://localhost:8501/oauth2callback",
    "cookie_secret": "a-test-cookie-secret",
    "client_id": "test-client",
    "client_secret": "test-secret",
    "server_metadata_url": "https://idp.example/.well-known/openid-configuration",
}


@pytest.fixture(autouse=True)
def app_db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    yield from point_app_at(monkeypatch, tmp_path / "app.duckdb")


def _app(user: dict | None = None, auth: bool = True) -> AppTest:
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)
    if auth:
        at.secrets["auth"] = AUTH
    if user is not None:
        at.user = user
    return at.run()


def test_without_a_provider_the_demo_picker_is_marked_demo() -> None:
    at = _app(auth=False)
    assert not at.exception
    assert "DEMO" in at.sidebar.caption[0].value and at.sidebar.selectbox(key="actor").value == "viewer@demo.local"


def test_with_a_provider_someone_not_signed_in_is_a_viewer_and_is_offered_sign_in() -> None:
    at = _app({"is_logged_in": False})
    assert not at.exception
    assert [b.label for b in at.sidebar.button] == ["Sign in"]
    assert at.session_state["actor"] is None
    assert not any("DEMO" in c.value for c in at.sidebar.caption)


def test_a_signed_in_person_acts_as_their_email_with_the_role_from_the_roles_config() -> None:
    at = _app({"is_logged_in": True, "email": "admin@demo.local", "name": "Ada Admin"})
    assert not at.exception
    assert at.session_state["actor"] == "admin@demo.local"
    assert any("role **admin**" in c.value for c in at.sidebar.caption)
    assert [b.label for b in at.sidebar.button] == ["Sign out"]
    at.switch_page("app_pages/connection.py").run()
    assert not at.exception
    assert any("Connect runs through the server" in i.value for i in at.info)  # an admin, but no server here
