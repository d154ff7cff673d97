"""QBO OAuth tokens encrypted at rest (Fernet), one connection row per realm, with its status and history."""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import os
import re
import threading
import weakref
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeGuard

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from qbo.faults import CATALOGUE

if TYPE_CHECKING:
    from contextlib import AbstractContextManager

__all__ = [
    "CONNECTION_STATUSES",
    "TOKENS_DDL",
    "Connection",
    "ConnectionStatus",
    "Secret",
    "TokenKeyError",
    "TokenSet",
    "Database",
    "TokenStore",
    "TokenUnreadableError",
]

log = logging.getLogger(__name__)

CONNECTION_STATUSES = ("connected", "reconnect_needed", "disconnected")

# Migration 2 (pipelines/store.py). Token columns hold Fernet ciphertext only; everything else is plain
# so the Connection page and `status` can show it without the key.
TOKENS_DDL = """
CREATE TABLE qbo_connections (
  realm_id VARCHAR PRIMARY KEY,
  environment VARCHAR NOT NULL,
  status VARCHAR NOT NULL CHECK (status IN ('connected', 'reconnect_needed', 'disconnected')),
  status_reason VARCHAR,                 -- a qbo.faults reason code, e.g. authorization.reconnect_needed
  status_changed_at TIMESTAMPTZ NOT NULL,
  scopes VARCHAR NOT NULL DEFAULT '',
  access_token_enc VARCHAR,              -- Fernet ciphertext
  refresh_token_enc VARCHAR,             -- Fernet ciphertext
  access_expires_at TIMESTAMPTZ,
  refresh_expires_at TIMESTAMPTZ,        -- rolling (about 100 days, extended on use)
  refresh_hard_expires_at TIMESTAMPTZ,   -- the 5-year cap, x_refresh_token_hard_expires_in
  connected_by VARCHAR,
  connected_at TIMESTAMPTZ,
  last_refresh_at TIMESTAMPTZ,
  refresh_count BIGINT NOT NULL DEFAULT 0,
  key_fingerprint VARCHAR                -- which key encrypted the tokens (never the key itself)
);
CREATE SEQUENCE qbo_connection_event_seq START 1;
CREATE TABLE qbo_connection_events (
  event_id BIGINT NOT NULL DEFAULT nextval('qbo_connection_event_seq'),
  realm_id VARCHAR NOT NULL,
  occurred_at TIMESTAMPTZ NOT NULL,
  event VARCHAR NOT NULL,                -- connected | refreshed | reconnect_needed | disconnected
  reason VARCHAR,
  actor VARCHAR,
  intuit_tid VARCHAR,
  rotated BOOLEAN                        -- for refreshed: did the refresh token value change
);
"""

# A passphrase in SYNCHEALTH_SECRET_KEY (instead of a Fernet key) is stretched with scrypt. The salt is
# fixed because there is one key per installation and it must come out the same on every start.
_KDF_SALT = b"synchealth/qbo-tokens/v1"
_KEY_FILE_MODE = 0o600


class TokenKeyError(Exception):
    """The encryption key cannot be loaded; the message says what to do and never shows the key."""


class TokenUnreadableError(Exception):
    """The stored tokens were encrypted with another key (SYNCHEALTH_SECRET_KEY changed or was lost)."""


class Secret:
    """A token value that never shows itself in repr, str, f-strings or logs; `.reveal()` to use it."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        if not isinstance(value, str) or not value:
            raise ValueError("a secret must be a non-empty string")
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('********')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Secret):
            return NotImplemented
        return hmac.compare_digest(self._value.encode(), other._value.encode())

    def __hash__(self) -> int:
        return hash(("Secret", hashlib.sha256(self._value.encode()).digest()))

    def __reduce__(self) -> Any:
        raise TypeError("secrets are not pickled")


_TOKEN_TEXT = re.compile(r"^[\x21-\x7e]+$")  # visible ASCII, as OAuth 2.0 tokens are (RFC 6749 A.12)


def _is_token(value: object) -> TypeGuard[str]:
    return isinstance(value, str) and _TOKEN_TEXT.match(value) is not None


@dataclass(frozen=True)
class TokenSet:
    """One answer of the token endpoint, with lifetimes turned into absolute times (ref §2)."""

    access_token: Secret
    refresh_token: Secret
    access_expires_at: datetime
    refresh_expires_at: datetime | None = None
    refresh_hard_expires_at: datetime | None = None
    scopes: tuple[str, ...] = ()

    @classmethod
    def from_response(cls, payload: Mapping[str, Any], now: datetime) -> TokenSet:
        """Parse `{"access_token", "refresh_token", "expires_in", "x_refresh_token_expires_in", ...}`."""

        def after(key: str) -> datetime | None:
            seconds = payload.get(key)
            if seconds in (None, ""):
                return None
            try:  # a list, "soon", NaN or 1e300 seconds is no lifetime: the answer is malformed
                return now + timedelta(seconds=float(seconds))
            except (TypeError, ValueError, OverflowError):
                raise ValueError(f"the token endpoint answered a {key} that is no number of seconds") from None

        access, refresh = payload.get("access_token"), payload.get("refresh_token")
        if not _is_token(access) or not _is_token(refresh):
            # A token with other characters could not even be sent in an Authorization header.
            raise ValueError("the token endpoint answered without a usable access and refresh token")
        return cls(
            access_token=Secret(access),
            refresh_token=Secret(refresh),
            # Access tokens live one hour (ref §2); trust the answer, fall back to that.
            access_expires_at=after("expires_in") or now + timedelta(hours=1),
            refresh_expires_at=after("x_refresh_token_expires_in"),
            refresh_hard_expires_at=after("x_refresh_token_hard_expires_in"),
            scopes=tuple(str(payload.get("scope", "")).split()),
        )


@dataclass(frozen=True)
class ConnectionStatus:
    """What the UI, the CLI and logs may show about a connection: no token text, ever."""

    realm_id: str
    status: str
    reason: str | None
    status_changed_at: datetime | None
    environment: str | None = None
    scopes: tuple[str, ...] = ()
    access_expires_at: datetime | None = None
    refresh_expires_at: datetime | None = None
    refresh_hard_expires_at: datetime | None = None
    connected_by: str | None = None
    connected_at: datetime | None = None
    last_refresh_at: datetime | None = None
    refresh_count: int = 0

    @property
    def explanation(self) -> str | None:
        return CATALOGUE[self.reason].explanation if self.reason in CATALOGUE else None

    @property
    def fix(self) -> str | None:
        return CATALOGUE[self.reason].fix if self.reason in CATALOGUE else None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (for `status --json` and the Connection page)."""
        out: dict[str, Any] = {}
        for name in self.__dataclass_fields__:
            value = getattr(self, name)
            out[name] = value.isoformat() if isinstance(value, datetime) else value
        out["scopes"] = list(self.scopes)
        out["explanation"], out["fix"] = self.explanation, self.fix
        return out


@dataclass(frozen=True)
class Connection:
    """A stored connection with its tokens decrypted (as Secrets) for the OAuth layer."""

    status: ConnectionStatus
    access_token: Secret | None = field(default=None, repr=False)
    refresh_token: Secret | None = field(default=None, repr=False)

    @property
    def realm_id(self) -> str:
        return self.status.realm_id

    def access_valid(self, now: datetime, skew: timedelta = timedelta(seconds=60)) -> bool:
        """The access token exists and will not expire within `skew` (so it cannot lapse in flight)."""
        expires = self.status.access_expires_at
        return self.access_token is not None and expires is not None and now + skew < expires

    def refresh_lapsed(self, now: datetime) -> bool:
        """The refresh token is past its rolling or its hard expiry: only a reconnect helps (ref §2)."""
        ends = [t for t in (self.status.refresh_expires_at, self.status.refresh_hard_expires_at) if t]
        return self.refresh_token is None or any(now >= t for t in ends)


class _KeySettings(Protocol):
    """Where the token key comes from: the key itself, else a key file (read-only, as on a frozen dataclass)."""

    @property
    def secret_key(self) -> str | None: ...
    @property
    def secret_key_file(self) -> Path | None: ...


def _key_bytes(text: str) -> bytes:
    """The 32-byte key: a Fernet key as given, or a passphrase stretched with scrypt."""
    try:
        raw = base64.urlsafe_b64decode(text.encode())
    except ValueError:
        raw = b""
    if len(raw) == 32:
        return raw
    return Scrypt(salt=_KDF_SALT, length=32, n=2**14, r=8, p=1).derive(text.encode())


def _read_key_file(path: Path) -> str:
    if os.name == "posix" and path.stat().st_mode & 0o077:
        raise TokenKeyError(
            f"the token key file {path} can be read by other users; run `chmod 600 {path}` and start again"
        )
    return path.read_text().strip()


def _create_key_file(path: Path) -> str:
    """Write a fresh key readable by the owner only (the demo path); another process may win the race."""
    path.parent.mkdir(parents=True, exist_ok=True)
    key = Fernet.generate_key()
    try:
        # O_EXCL: never overwrite a key that encrypts existing tokens. The mode applies at creation, so
        # the key is never readable by others, not even for a moment.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, _KEY_FILE_MODE)
    except FileExistsError:
        return _read_key_file(path)
    with os.fdopen(fd, "wb") as fh:
        fh.write(key + b"\n")
    log.info("created a new token encryption key file %s (mode 0600)", path)
    return key.decode()


def _load_fernet(settings: _KeySettings) -> tuple[Fernet, str]:
    """The Fernet for this installation and a fingerprint naming the key (safe to store and show)."""
    if settings.secret_key:
        text = settings.secret_key
    elif settings.secret_key_file is None:
        raise TokenKeyError("no token encryption key; set SYNCHEALTH_SECRET_KEY or name a key file")
    else:
        path = Path(settings.secret_key_file)
        text = _read_key_file(path) if path.exists() else _create_key_file(path)
    if not text:
        raise TokenKeyError("the token encryption key is empty; set SYNCHEALTH_SECRET_KEY or delete the key file")
    key = _key_bytes(text)
    # Keyed with the key itself: the fingerprint tells keys apart and gives nothing away about them.
    fingerprint = hmac.new(key, b"synchealth-key-id", hashlib.sha256).hexdigest()[:16]
    return Fernet(base64.urlsafe_b64encode(key)), fingerprint


# One lock per (store, realm) for the whole process, so every TokenStore and client on the same file
# refreshes one at a time per realm (ref §11.2: concurrent refreshes invalidate each other).
_LOCKS: weakref.WeakKeyDictionary[Any, dict[str, threading.Lock]] = weakref.WeakKeyDictionary()
_LOCKS_GUARD = threading.Lock()

_STATUS_COLUMNS = (
    "realm_id, status, status_reason, status_changed_at, environment, scopes, access_expires_at, "
    "refresh_expires_at, refresh_hard_expires_at, connected_by, connected_at, last_refresh_at, refresh_count"
)


def _status_from_row(row: tuple) -> ConnectionStatus:
    (realm, status, reason, changed, env, scopes, acc, ref, hard, by, at, last, count) = row
    return ConnectionStatus(
        realm_id=realm,
        status=status,
        reason=reason,
        status_changed_at=changed,
        environment=env,
        scopes=tuple((scopes or "").split()),
        access_expires_at=acc,
        refresh_expires_at=ref,
        refresh_hard_expires_at=hard,
        connected_by=by,
        connected_at=at,
        last_refresh_at=last,
        refresh_count=int(count or 0),
    )


class Database(Protocol):
    """What the token store needs of the app's store: read rows, write in a transaction, its path for the lock."""

    path: Path

    def rows(self, sql: str, params: Any = None) -> list[tuple[Any, ...]]: ...

    def transaction(self) -> AbstractContextManager[Any]: ...


class TokenStore:
    """Encrypted token persistence on the app's Store; the OAuth layer (qbo.oauth) decides when to refresh."""

    def __init__(self, store: Database, settings: _KeySettings) -> None:
        self._store = store
        self._environment = str(getattr(settings, "qbo_env", "local"))
        self._fernet, self._fingerprint = _load_fernet(settings)

    def __repr__(self) -> str:
        return f"TokenStore(store={self._store.path!s}, environment={self._environment!r})"

    # locking
    def refresh_lock(self, realm_id: str) -> threading.Lock:
        """The one lock a refresher of this realm must hold."""
        with _LOCKS_GUARD:
            per_store = _LOCKS.setdefault(self._store, {})
            return per_store.setdefault(realm_id, threading.Lock())

    # crypto
    def _seal(self, secret: Secret) -> str:
        return self._fernet.encrypt(secret.reveal().encode()).decode()

    def _open(self, sealed: str | None) -> Secret | None:
        if sealed is None:
            return None
        try:
            return Secret(self._fernet.decrypt(sealed.encode()).decode())
        except InvalidToken:
            raise TokenUnreadableError(
                "the stored QuickBooks tokens cannot be decrypted with this installation's key "
                "(was SYNCHEALTH_SECRET_KEY changed?); restore the key or reconnect QuickBooks"
            ) from None

    # reads
    def status(self, realm_id: str) -> ConnectionStatus:
        """The connection's public status; `disconnected` with authorization.not_connected when none."""
        row = self._store.rows(
            f"SELECT {_STATUS_COLUMNS}, key_fingerprint FROM qbo_connections WHERE realm_id = ?", [realm_id]
        )
        if not row:
            return ConnectionStatus(realm_id, "disconnected", "authorization.not_connected", None)
        *columns, fingerprint = row[0]
        status = _status_from_row(tuple(columns))
        if status.status == "connected" and fingerprint != self._fingerprint:
            # Shown, not stored: restoring the original key brings the connection straight back.
            return replace(status, status="reconnect_needed", reason="authorization.token_unreadable")
        return status

    def statuses(self) -> list[ConnectionStatus]:
        realms = self._store.rows("SELECT realm_id FROM qbo_connections ORDER BY realm_id")
        return [self.status(r[0]) for r in realms]

    def load(self, realm_id: str) -> Connection:
        """The connection with decrypted tokens; TokenUnreadableError when the key does not fit."""
        row = self._store.rows(
            f"SELECT {_STATUS_COLUMNS}, access_token_enc, refresh_token_enc FROM qbo_connections WHERE realm_id = ?",
            [realm_id],
        )
        if not row:
            return Connection(ConnectionStatus(realm_id, "disconnected", "authorization.not_connected", None))
        *columns, access_enc, refresh_enc = row[0]
        return Connection(_status_from_row(tuple(columns)), self._open(access_enc), self._open(refresh_enc))

    def events(self, realm_id: str) -> list[dict[str, Any]]:
        """The connection's history, newest first (for the token-lifetime panel)."""
        names = ("occurred_at", "event", "reason", "actor", "intuit_tid", "rotated")
        rows = self._store.rows(
            f"SELECT {', '.join(names)} FROM qbo_connection_events WHERE realm_id = ? ORDER BY event_id DESC",
            [realm_id],
        )
        return [dict(zip(names, r, strict=True)) for r in rows]

    # writes
    def save_connection(
        self,
        realm_id: str,
        tokens: TokenSet,
        *,
        now: datetime,
        connected_by: str | None = None,
        intuit_tid: str | None = None,
    ) -> None:
        """Store a fresh connection (code exchange); replaces whatever the realm had."""
        with self._store.transaction() as tx:
            tx.execute(
                """
                INSERT INTO qbo_connections (realm_id, environment, status, status_reason, status_changed_at,
                  scopes, access_token_enc, refresh_token_enc, access_expires_at, refresh_expires_at,
                  refresh_hard_expires_at, connected_by, connected_at, last_refresh_at, refresh_count,
                  key_fingerprint)
                VALUES (?, ?, 'connected', NULL, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, 0, ?)
                ON CONFLICT (realm_id) DO UPDATE SET environment = excluded.environment,
                  status = excluded.status, status_reason = NULL,
                  status_changed_at = excluded.status_changed_at, scopes = excluded.scopes,
                  access_token_enc = excluded.access_token_enc,
                  refresh_token_enc = excluded.refresh_token_enc,
                  access_expires_at = excluded.access_expires_at,
                  refresh_expires_at = excluded.refresh_expires_at,
                  refresh_hard_expires_at = excluded.refresh_hard_expires_at,
                  connected_by = excluded.connected_by, connected_at = excluded.connected_at,
                  last_refresh_at = NULL, refresh_count = 0, key_fingerprint = excluded.key_fingerprint
                """,
                [
                    realm_id,
                    self._environment,
                    now,
                    " ".join(tokens.scopes),
                    self._seal(tokens.access_token),
                    self._seal(tokens.refresh_token),
                    tokens.access_expires_at,
                    tokens.refresh_expires_at,
                    tokens.refresh_hard_expires_at,
                    connected_by,
                    now,
                    self._fingerprint,
                ],
            ).fetchall()
            self._event(tx, realm_id, now, "connected", actor=connected_by, intuit_tid=intuit_tid)
        log.info("QuickBooks connected for realm %s by %s", realm_id, connected_by or "unknown")

    def save_refresh(
        self, realm_id: str, tokens: TokenSet, *, now: datetime, rotated: bool, intuit_tid: str | None = None
    ) -> None:
        """Store a refresh answer: the newest refresh token first of all (ref §11.1)."""
        with self._store.transaction() as tx:
            tx.execute(
                """
                UPDATE qbo_connections SET access_token_enc = ?, refresh_token_enc = ?,
                  access_expires_at = ?, refresh_expires_at = coalesce(?, refresh_expires_at),
                  refresh_hard_expires_at = coalesce(?, refresh_hard_expires_at),
                  scopes = CASE WHEN ? = '' THEN scopes ELSE ? END,
                  last_refresh_at = ?, refresh_count = refresh_count + 1, key_fingerprint = ?,
                  status = 'connected', status_reason = NULL
                WHERE realm_id = ?
                """,
                [
                    self._seal(tokens.access_token),
                    self._seal(tokens.refresh_token),
                    tokens.access_expires_at,
                    tokens.refresh_expires_at,
                    tokens.refresh_hard_expires_at,
                    " ".join(tokens.scopes),
                    " ".join(tokens.scopes),
                    now,
                    self._fingerprint,
                    realm_id,
                ],
            ).fetchall()
            self._event(tx, realm_id, now, "refreshed", intuit_tid=intuit_tid, rotated=rotated)
        log.info("QuickBooks tokens refreshed for realm %s (refresh token rotated: %s)", realm_id, rotated)

    def mark_reconnect_needed(
        self, realm_id: str, reason: str, *, now: datetime, intuit_tid: str | None = None
    ) -> None:
        """Park the realm until an admin reconnects; the tokens are wiped, they are of no further use."""
        self._set_status(realm_id, "reconnect_needed", reason, now=now, intuit_tid=intuit_tid)
        log.warning("QuickBooks realm %s needs a reconnect (%s)", realm_id, reason)

    def mark_disconnected(self, realm_id: str, reason: str, *, now: datetime, actor: str | None = None) -> None:
        """The connection was ended on purpose (revoke); tokens are wiped."""
        self._set_status(realm_id, "disconnected", reason, now=now, actor=actor)
        log.info("QuickBooks realm %s disconnected (%s)", realm_id, reason)

    def _set_status(
        self,
        realm_id: str,
        status: str,
        reason: str,
        *,
        now: datetime,
        actor: str | None = None,
        intuit_tid: str | None = None,
    ) -> None:
        with self._store.transaction() as tx:
            tx.execute(
                "UPDATE qbo_connections SET status = ?, status_reason = ?, status_changed_at = ?, "
                "access_token_enc = NULL, refresh_token_enc = NULL WHERE realm_id = ?",
                [status, reason, now, realm_id],
            ).fetchall()
            self._event(tx, realm_id, now, status, reason=reason, actor=actor, intuit_tid=intuit_tid)

    @staticmethod
    def _event(
        tx: Any,
        realm_id: str,
        now: datetime,
        event: str,
        *,
        reason: str | None = None,
        actor: str | None = None,
        intuit_tid: str | None = None,
        rotated: bool | None = None,
    ) -> None:
        tx.execute(
            "INSERT INTO qbo_connection_events "
            "(realm_id, occurred_at, event, reason, actor, intuit_tid, rotated) VALUES (?, ?, ?, ?, ?, ?, ?)",
            [realm_id, now, event, reason, actor, intuit_tid, rotated],
        ).fetchall()
