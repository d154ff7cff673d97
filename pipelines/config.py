"""Settings built once at the edge (environment, .streamlit/secrets.toml, defaults) and passed down.

This is the one module that reads the environment. Files are found where the settings say, or beside the
application (its config/ and data/ folders), never relative to the directory a command happens to run in.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

__all__ = [
    "APP_ROOT",
    "DEMO_CLIENT_ID",
    "DEMO_CLIENT_SECRET",
    "DEMO_REALM_ID",
    "DEFAULT_WARN_DAYS",
    "DEMO_WEBHOOK_VERIFIER",
    "ServerConfig",
    "Settings",
    "child_environment",
    "crash_point_requested",
    "load_server_config",
    "load_settings",
]

# The application's own folder (the one holding config/ and data/): defaults are found from here.
APP_ROOT = Path(__file__).resolve().parents[1]

DEMO_REALM_ID = "9341453050298461"
DEMO_CLIENT_ID = "ABdemoLocalSandboxClientId0001"
DEMO_CLIENT_SECRET = "demo-local-sandbox-client-secret"
DEMO_WEBHOOK_VERIFIER = "demo-local-webhook-verifier"
DEFAULT_WARN_DAYS = 14  # warn this many days before a refresh token lapses
_DEFAULT_RETRY_SCHEDULE = (60, 300, 1800, 7200, 21600)
_QBO_HOSTS = {
    "sandbox": "https://sandbox-quickbooks.api.intuit.com",
    "production": "https://quickbooks.api.intuit.com",
}


@dataclass(frozen=True)
class Settings:
    """Everything configurable, in one typed object."""

    db_path: Path = APP_ROOT / "data" / "synchealth.duckdb"
    realm_id: str = DEMO_REALM_ID
    roles_file: Path = APP_ROOT / "config" / "roles.toml"
    routing_file: Path = APP_ROOT / "config" / "routing.toml"
    qbo_env: str = "local"
    qbo_base_url: str = "http://127.0.0.1:8765"
    qbo_client_id: str = DEMO_CLIENT_ID
    qbo_client_secret: str = field(default=DEMO_CLIENT_SECRET, repr=False)
    qbo_redirect_uri: str = "http://localhost:8501/oauth/callback"
    secret_key: str | None = field(default=None, repr=False)
    secret_key_file: Path | None = None  # default: secret.key beside the store
    retry_schedule: tuple[int, ...] = _DEFAULT_RETRY_SCHEDULE
    snapshot_dir: Path | None = None

    def __post_init__(self) -> None:
        if self.secret_key_file is None:
            object.__setattr__(self, "secret_key_file", Path(self.db_path).parent / "secret.key")

    @property
    def api_base_url(self) -> str:
        """Where the QBO v3 API lives: the local sandbox, or Intuit's sandbox or production host."""
        return self.qbo_base_url if self.qbo_env == "local" else _QBO_HOSTS[self.qbo_env]

    def with_overrides(self, **changes: object) -> Settings:
        # Each value is the caller's for that field (None: keep it); replace rejects unknown names, not wrong types.
        given: dict[str, Any] = {k: v for k, v in changes.items() if v is not None}
        # A key file that followed the store (the default) follows it to its new place too.
        if "db_path" in given and "secret_key_file" not in given:
            if self.secret_key_file == Path(self.db_path).parent / "secret.key":
                given["secret_key_file"] = None
        return replace(self, **given)


def _secrets(path: Path) -> dict[str, object]:
    if not path.is_file():
        return {}
    with path.open("rb") as fh:
        return tomllib.load(fh)


def load_settings(environ: dict[str, str] | None = None, secrets_file: Path | None = None) -> Settings:
    """Read SYNCHEALTH_* from the environment, falling back to .streamlit/secrets.toml, then defaults."""
    env = dict(os.environ if environ is None else environ)
    secrets = _secrets(secrets_file or APP_ROOT / ".streamlit" / "secrets.toml")

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
        routing_file=Path(p) if (p := get("SYNCHEALTH_ROUTING_FILE")) else None,
        qbo_env=qbo_env,
        qbo_base_url=get("SYNCHEALTH_QBO_BASE_URL"),
        qbo_client_id=get("SYNCHEALTH_QBO_CLIENT_ID") or (None if qbo_env == "local" else ""),
        qbo_client_secret=get("SYNCHEALTH_QBO_CLIENT_SECRET") or (None if qbo_env == "local" else ""),
        qbo_redirect_uri=get("SYNCHEALTH_QBO_REDIRECT_URI"),
        secret_key=get("SYNCHEALTH_SECRET_KEY"),
        retry_schedule=retry,
        snapshot_dir=Path(snapshot) if snapshot else None,
    )


@dataclass(frozen=True)
class ServerConfig:
    """The server's own settings (Settings holds what the CLI shares with it)."""

    url: str
    interval: float = 300.0
    webhook_verifier: str | None = field(default=None, repr=False)
    reconnect_warn_days: int = DEFAULT_WARN_DAYS


def load_server_config(
    settings: Settings,
    environ: dict[str, str] | None = None,
    secrets_file: Path | None = None,
    *,
    default_url: str | None = None,
) -> ServerConfig:
    """SYNCHEALTH_SERVER_URL, _CYCLE_SECONDS, _QBO_WEBHOOK_VERIFIER, _RECONNECT_WARN_DAYS (env, then secrets).

    Without SYNCHEALTH_SERVER_URL the address is `default_url` (where `synchealth serve` listens), else the origin
    of the OAuth redirect URI.
    """
    env = dict(os.environ if environ is None else environ)
    secrets = _secrets(secrets_file or APP_ROOT / ".streamlit" / "secrets.toml")

    def get(name: str) -> str | None:
        value = env.get(name)
        if value is None and name in secrets:
            value = str(secrets[name])
        return value or None

    redirect = urlsplit(settings.qbo_redirect_uri)
    url = get("SYNCHEALTH_SERVER_URL") or default_url or f"{redirect.scheme}://{redirect.netloc}"
    verifier = get("SYNCHEALTH_QBO_WEBHOOK_VERIFIER")
    if verifier is None and settings.qbo_env == "local":
        verifier = DEMO_WEBHOOK_VERIFIER
    return ServerConfig(
        url=url.rstrip("/"),
        interval=float(get("SYNCHEALTH_CYCLE_SECONDS") or 300),
        webhook_verifier=verifier,
        reconnect_warn_days=int(get("SYNCHEALTH_RECONNECT_WARN_DAYS") or DEFAULT_WARN_DAYS),
    )


def crash_point_requested() -> str | None:
    """The crash point a crash test asked for (SYNCHEALTH_CRASH_AT), read when it is reached."""
    return os.environ.get("SYNCHEALTH_CRASH_AT") or None


def child_environment(**overrides: str) -> dict[str, str]:
    """This process's environment with these variables set, for a process it starts (the demo launcher)."""
    return {**os.environ, **overrides}
