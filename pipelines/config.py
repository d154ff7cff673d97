"""Settings built once at the edge (environment, .streamlit/secrets.toml, defaults) and passed down."""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path

__all__ = ["DEMO_CLIENT_ID", "DEMO_CLIENT_SECRET", "DEMO_REALM_ID", "Settings", "load_settings"]

DEMO_REALM_ID = "9341453050298461"
DEMO_CLIENT_ID = "ABdemoLocalSandboxClientId0001"
DEMO_CLIENT_SECRET = "demo-local-sandbox-client-secret"
_DEFAULT_RETRY_SCHEDULE = (60, 300, 1800, 7200, 21600)
_QBO_HOSTS = {
    "sandbox": "https://sandbox-quickbooks.api.intuit.com",
    "production": "https://quickbooks.api.intuit.com",
}


@dataclass(frozen=True)
class Settings:
    """Everything configurable, in one typed object."""

    db_path: Path = Path("data/synchealth.duckdb")
    realm_id: str = DEMO_REALM_ID
    roles_file: Path = Path("config/roles.toml")
    qbo_env: str = "local"
    qbo_base_url: str = "http://127.0.0.1:8765"
    qbo_client_id: str = DEMO_CLIENT_ID
    qbo_client_secret: str = field(default=DEMO_CLIENT_SECRET, repr=False)
    qbo_redirect_uri: str = "http://localhost:8501/oauth/callback"
    secret_key: str | None = field(default=None, repr=False)
    secret_key_file: Path = Path("data/secret.key")
    retry_schedule: tuple[int, ...] = _DEFAULT_RETRY_SCHEDULE
    snapshot_dir: Path | None = None

    @property
    def api_base_url(self) -> str:
        """Where the QBO v3 API lives: the local sandbox, or Intuit's sandbox or production host."""
        return self.qbo_base_url if self.qbo_env == "local" else _QBO_HOSTS[self.qbo_env]

    def with_overrides(self, **changes: object) -> Settings:
        return replace(self, **{k: v for k, v in changes.items() if v is not None})


def _secrets(path: Path) -> dict[str, object]:
    if not path.is_file():
        return {}
    with path.open("rb") as fh:
        return tomllib.load(fh)


def load_settings(environ: dict[str, str] | None = None, secrets_file: Path | None = None) -> Settings:
    """Read SYNCHEALTH_* from the environment, falling back to .streamlit/secrets.toml, then defaults."""
    env = dict(os.environ if environ is None else environ)
    secrets = _secrets(secrets_file or Path(".streamlit/secrets.toml"))

    def get(name: str) -> str | None:
        value = env.get(name)
        if value is None and name in secrets:
            value = str(secrets[name])
        return value or None

    qbo_env = (get("SYNCHEALTH_QBO_ENV") or "local").lower()
    if qbo_env not in ("local", "sandbox", "production"):
        raise ValueError(f"SYNCHEALTH_QBO_ENV must be local, sandbox or production, not {qbo_env!r}")
    schedule = get("SYNCHEALTH_RETRY_SCHEDULE")
    retry = tuple(int(float(s)) for s in schedule.split(",") if s.strip()) if schedule else None
    snapshot = get("SYNCHEALTH_SNAPSHOT_DIR")
    base = Settings()
    return base.with_overrides(
        db_path=Path(p) if (p := get("SYNCHEALTH_DB")) else None,
        realm_id=get("SYNCHEALTH_REALM_ID"),
        roles_file=Path(p) if (p := get("SYNCHEALTH_ROLES_FILE")) else None,
        qbo_env=qbo_env,
        qbo_base_url=get("SYNCHEALTH_QBO_BASE_URL"),
        qbo_client_id=get("SYNCHEALTH_QBO_CLIENT_ID") or (None if qbo_env == "local" else ""),
        qbo_client_secret=get("SYNCHEALTH_QBO_CLIENT_SECRET") or (None if qbo_env == "local" else ""),
        qbo_redirect_uri=get("SYNCHEALTH_QBO_REDIRECT_URI"),
        secret_key=get("SYNCHEALTH_SECRET_KEY"),
        retry_schedule=retry,
        snapshot_dir=Path(snapshot) if snapshot else None,
    )
