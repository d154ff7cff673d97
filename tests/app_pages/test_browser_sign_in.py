"""Sign in with an identity provider, in Chromium against `synchealth serve`: the button leads to the provider.

A small OpenID provider on loopback stands in for the real one: it publishes its discovery document and shows its
sign-in page. Before `streamlit[auth]` was a dependency, pressing "Sign in" raised StreamlitMissingAuthlibError.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from browser import ARTIFACTS, browser_page, free_port, require_chromium, served
from fixtures import REALM, T0, tiny_snapshot, write_snapshot

from pipelines.ingest import ingest_snapshot
from pipelines.store import Store

pytestmark = pytest.mark.browser
ROOT = Path(__file__).resolve().parents[2]


class _Provider(BaseHTTPRequestHandler):
    """Discovery at /.well-known/openid-configuration; /authorize is the page a person signs in on."""

    def do_GET(self) -> None:  # the standard library names it
        base = f"http://{self.headers['Host']}"
        if self.path.startswith("/.well-known/openid-configuration"):
            body = json.dumps(
                {
                    "issuer": base,
                    "authorization_endpoint": f"{base}/authorize",
                    "token_endpoint": f"{base}/token",
                    "jwks_uri": f"{base}/jwks",
                    "userinfo_endpoint": f"{base}/userinfo",
                    "response_types_supported": ["code"],
                    "subject_types_supported": ["public"],
                    "id_token_signing_alg_values_supported": ["RS256"],
                }
            ).encode()
            kind = "application/json"
        elif self.path.startswith("/authorize"):
            body, kind = b"<html><body><h1>Example identity provider: sign in</h1></body></html>", "text/html"
        else:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        return None


@contextmanager
def identity_provider() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Provider)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_sign_in_takes_the_person_to_the_identity_provider(tmp_path: Path) -> None:
    require_chromium()
    db = tmp_path / "app.duckdb"
    with Store(db) as store:
        ingest_snapshot(store, write_snapshot(tmp_path / "awra", tiny_snapshot()), realm_id=REALM, now=T0)
    home = tmp_path / "home"
    (home / ".streamlit").mkdir(parents=True)
    port = free_port()
    with identity_provider() as provider:
        # Streamlit reads the [auth] section from the user's secrets file; the app's own settings stay untouched.
        (home / ".streamlit" / "secrets.toml").write_text(
            "[auth]\n"
            f'redirect_uri = "http://127.0.0.1:{port}/oauth2callback"\n'
            'cookie_secret = "a-cookie-secret-for-the-test-only"\n'
            'client_id = "synchealth-test"\n'
            'client_secret = "not-a-real-secret"\n'
            f'server_metadata_url = "{provider}/.well-known/openid-configuration"\n'
        )
        env = {"HOME": str(home), "SYNCHEALTH_DB": str(db), "SYNCHEALTH_REALM_ID": REALM}
        with served(env, tmp_path / "serve.log", port=port) as url, browser_page() as page:
            page.goto(url)
            page.get_by_text("Sign in", exact=True).wait_for(timeout=60_000)
            assert page.get_by_text("demo sign-in").count() == 0  # with a provider nobody picks a name
            page.get_by_text("Sign in", exact=True).click()
            page.get_by_text("Example identity provider: sign in").wait_for(timeout=30_000)
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "sign-in-provider.png"))
            landed = urlsplit(page.url)
            query = parse_qs(landed.query)
    assert f"{landed.scheme}://{landed.netloc}{landed.path}" == f"{provider}/authorize"
    assert query["client_id"] == ["synchealth-test"] and query["response_type"] == ["code"]
    assert query["redirect_uri"] == [f"http://127.0.0.1:{port}/oauth2callback"] and query["state"][0]
