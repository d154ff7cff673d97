"""Roles resolve in one place and refusals name the role needed; settings come from env, then secrets."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipelines.config import DEMO_REALM_ID, load_settings
from pipelines.identity import PermissionDeniedError, load_roles, require, resolve

ROLES = Path(__file__).resolve().parents[2] / "config" / "roles.toml"


def test_the_demo_config_names_one_person_per_role() -> None:
    assert sorted(load_roles(ROLES).values()) == ["admin", "finance", "viewer"]


@pytest.mark.parametrize(
    ("email", "action", "allowed"),
    [
        ("viewer@demo.local", "retry", False),
        ("finance@demo.local", "map", False),
        ("finance@demo.local", "resolve", True),
        ("admin@demo.local", "map", True),
        ("admin@demo.local", "override", True),
        ("stranger@example.com", "resolve", False),
        (None, "exclude", False),
    ],
)
def test_role_boundaries(email: str | None, action: str, allowed: bool) -> None:
    who = resolve(email, load_roles(ROLES))
    if allowed:
        require(who, action)
    else:
        with pytest.raises(PermissionDeniedError, match=rf"{action} needs the .*role; .* is a {who.role}"):
            require(who, action)


def test_unknown_actors_are_viewers_and_emails_are_case_blind() -> None:
    roles = load_roles(ROLES)
    assert resolve("nobody@else.org", roles).role == "viewer"
    assert resolve("  Admin@Demo.Local ", roles).role == "admin"


def test_a_roles_file_with_an_unknown_role_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "roles.toml"
    bad.write_text('[people]\n"x@y.z" = "superuser"\n')
    with pytest.raises(ValueError, match="unknown role"):
        load_roles(bad)


def test_settings_read_env_then_secrets_then_defaults(tmp_path: Path) -> None:
    secrets = tmp_path / "secrets.toml"
    secrets.write_text('SYNCHEALTH_DB = "from-secrets.duckdb"\nSYNCHEALTH_RETRY_SCHEDULE = "1,2,3"\n')
    s = load_settings({"SYNCHEALTH_DB": "from-env.duckdb"}, secrets)
    assert s.db_path == Path("from-env.duckdb")
    assert s.retry_schedule == (1, 2, 3)
    assert s.realm_id == DEMO_REALM_ID and s.qbo_env == "local"
    assert s.api_base_url == "http://127.0.0.1:8765"
    assert "demo-local-sandbox-client-secret" not in repr(s)  # secrets never printed with settings


def test_real_qbo_hosts_and_no_demo_credentials_outside_local() -> None:
    s = load_settings({"SYNCHEALTH_QBO_ENV": "production"}, Path("/nonexistent"))
    assert s.api_base_url == "https://quickbooks.api.intuit.com"
    assert s.qbo_client_id == "" and s.qbo_client_secret == ""
    with pytest.raises(ValueError, match="SYNCHEALTH_QBO_ENV"):
        load_settings({"SYNCHEALTH_QBO_ENV": "prod"}, Path("/nonexistent"))
