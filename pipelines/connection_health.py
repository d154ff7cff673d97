"""Connection health per realm, and the reconnect warning an admin gets before the refresh token lapses.

Read model: environment and host, company, scopes, access-token countdown, the refresh token's rolling
(100 days since last use) and hard (5-year cap) expiry, last refresh and last successful call, who
connected it and when, webhook status. Check: `check_reconnect` keeps `connection_warnings` and the
realm's `connection` exceptions in step with what an admin must do while the connection still works.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any

from pipelines.config import DEFAULT_WARN_DAYS
from pipelines.store import Store
from qbo.faults import CATALOGUE

__all__ = [
    "DEFAULT_WARN_DAYS",
    "RECONNECT_SOON",
    "ConnectionHealth",
    "check_reconnect",
    "connection_health",
    "needs_refresh",
    "warning_causes_sql",
]

RECONNECT_SOON = "authorization.reconnect_soon"
RECONNECT_SOON_FIX = "An admin reconnects QuickBooks from the Connection page before the date shown."
# Refresh ahead: a little before the access token ends, and once a day so the 100-day rolling window of the
# refresh token restarts (Intuit rotates the value about daily; ref §2).
_ACCESS_AHEAD = timedelta(minutes=10)
_KEEP_ALIVE = timedelta(hours=24)


@dataclass(frozen=True)
class ConnectionHealth:
    """What the Connection page, /healthz and `status` show about one realm's QuickBooks connection."""

    realm_id: str
    now: datetime
    status: str
    reason: str | None = None
    environment: str | None = None
    host: str | None = None
    company_name: str | None = None
    scopes: tuple[str, ...] = ()
    access_expires_at: datetime | None = None
    refresh_expires_at: datetime | None = None
    refresh_hard_expires_at: datetime | None = None
    last_refresh_at: datetime | None = None
    refresh_count: int = 0
    last_call_at: datetime | None = None
    connected_by: str | None = None
    connected_at: datetime | None = None
    webhook: dict[str, Any] = field(default_factory=dict)
    warnings: list[dict[str, Any]] = field(default_factory=list)

    def _left(self, at: datetime | None) -> float | None:
        return None if at is None else (at - self.now).total_seconds()

    @property
    def access_seconds_left(self) -> float | None:
        return self._left(self.access_expires_at)

    @property
    def lapses_at(self) -> datetime | None:
        """When the refresh token stops working: the earlier of its rolling and its hard expiry."""
        ends = [t for t in (self.refresh_expires_at, self.refresh_hard_expires_at) if t is not None]
        return min(ends) if ends else None

    @property
    def days_to_lapse(self) -> float | None:
        left = self._left(self.lapses_at)
        return None if left is None else left / 86400

    @property
    def explanation(self) -> str | None:
        return CATALOGUE[self.reason].explanation if self.reason in CATALOGUE else None

    def to_dict(self) -> dict[str, Any]:
        out = {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in asdict(self).items()}
        out["scopes"] = list(self.scopes)
        out["access_seconds_left"] = self.access_seconds_left
        out["lapses_at"] = self.lapses_at.isoformat() if self.lapses_at else None
        out["days_to_lapse"] = self.days_to_lapse
        out["explanation"] = self.explanation
        return out


def _webhook_status(store: Store, realm_id: str) -> dict[str, Any]:
    row = store.rows(
        """SELECT count(*) FILTER (WHERE signature = 'valid' AND realm_id = $realm),
                  max(received_at) FILTER (WHERE signature = 'valid' AND realm_id = $realm),
                  count(*) FILTER (WHERE signature <> 'valid'),
                  max(received_at) FILTER (WHERE signature <> 'valid'),
                  count(*) FILTER (WHERE signature = 'valid' AND realm_id = $realm AND processed_at IS NULL)
           FROM webhook_events""",
        {"realm": realm_id},
    )[0]
    last = store.rows(
        """SELECT entities, format FROM webhook_events WHERE signature = 'valid' AND realm_id = ?
           ORDER BY event_id DESC LIMIT 1""",
        [realm_id],
    )
    return {
        "events": int(row[0]),
        "last_event_at": row[1],
        "last_event": json.loads(last[0][0]) if last and last[0][0] else None,
        "last_format": last[0][1] if last else None,
        "signature_failures": int(row[2]),
        "last_failure_at": row[3],
        "unprocessed": int(row[4]),
    }


def connection_health(store: Store, realm_id: str, *, now: datetime, host: str | None = None) -> ConnectionHealth:
    """The realm's connection as stored (no token is decrypted to build it)."""
    rows = store.rows(
        """SELECT c.status, c.status_reason, c.environment, c.scopes, c.access_expires_at, c.refresh_expires_at,
                  c.refresh_hard_expires_at, c.last_refresh_at, c.refresh_count, c.connected_by, c.connected_at,
                  (SELECT company_name FROM qbo_company q WHERE q.realm_id = c.realm_id)
           FROM qbo_connections c WHERE c.realm_id = ?""",
        [realm_id],
    )
    last_call = store.scalar(
        """SELECT greatest((SELECT max(finished_at) FROM qbo_pulls WHERE realm_id = $realm AND status = 'done'),
                           (SELECT max(started_at) FROM sync_attempts WHERE realm_id = $realm
                              AND http_status BETWEEN 200 AND 299))""",
        {"realm": realm_id},
    )
    warnings = [
        {"reason": r[0], "detail": r[1], "lapses_at": r[2], "seen_at": r[3]}
        for r in store.rows(
            "SELECT reason, detail, lapses_at, seen_at FROM connection_warnings WHERE realm_id = ? ORDER BY reason",
            [realm_id],
        )
    ]
    common = {"now": now, "host": host, "last_call_at": last_call, "webhook": _webhook_status(store, realm_id)}
    if not rows:
        return ConnectionHealth(realm_id, status="disconnected", reason="authorization.not_connected", **common)
    (status, reason, env, scopes, acc, ref, hard, last, count, by, at, company) = rows[0]
    return ConnectionHealth(
        realm_id,
        status=status,
        reason=reason,
        environment=env,
        company_name=company,
        scopes=tuple((scopes or "").split()),
        access_expires_at=acc,
        refresh_expires_at=ref,
        refresh_hard_expires_at=hard,
        last_refresh_at=last,
        refresh_count=int(count or 0),
        connected_by=by,
        connected_at=at,
        warnings=warnings,
        **common,
    )


def needs_refresh(health: ConnectionHealth, now: datetime) -> bool:
    """Refresh ahead of expiry: the access token ends within minutes, or the refresh token was not used today."""
    if health.status != "connected":
        return False
    if health.access_expires_at is None or health.access_expires_at - now <= _ACCESS_AHEAD:
        return True
    used = health.last_refresh_at or health.connected_at
    return used is None or now - used >= _KEEP_ALIVE


def _warnings(store: Store, health: ConnectionHealth, now: datetime, warn_days: int) -> list[tuple[str, str, Any]]:
    """(reason, detail, lapses_at) for each thing an admin must do although the connection still works."""
    if health.status != "connected":
        return []  # the sync has paused the realm; pipelines.exceptions opens that exception itself
    out: list[tuple[str, str, Any]] = []
    lapses = health.lapses_at
    if lapses is not None and lapses - now <= timedelta(days=warn_days):
        days = max((lapses - now).total_seconds() / 86400, 0)
        which = "5-year limit" if lapses == health.refresh_hard_expires_at else "100 days since last use"
        out.append(
            (
                RECONNECT_SOON,
                f"the QuickBooks connection lapses in {days:.0f} day(s), on {lapses:%Y-%m-%d} ({which}); "
                "reconnect before then or nothing more is sent",
                lapses,
            )
        )
    # A call QuickBooks refused with 401 (after a refresh) or 403/3100 since the last connect: only a reconnect
    # helps, so the admin hears of it at once rather than at the next failed sync.
    refused = store.rows(
        """SELECT reason, message, qbo_code FROM sync_attempts
           WHERE realm_id = $realm AND started_at >= $since
           ORDER BY attempt_id DESC LIMIT 1""",
        {"realm": health.realm_id, "since": health.connected_at or now},
    )
    if refused and refused[0][0].startswith("authorization."):
        reason, message, code = refused[0]
        text = CATALOGUE[reason].explanation if reason in CATALOGUE else reason
        out.append((reason, f"{text} (QuickBooks said: {message or '-'}, code {code or '-'})", None))
    return out


def warning_causes_sql() -> str:
    """Current warnings as exception causes, in the column order of pipelines.exceptions' `conn` causes.

    For `refresh_exceptions` to union into its causes, so that it keeps these open instead of resolving them.
    """
    return """SELECT 'connection' AS entity, realm_id AS record_id, NULL::INTEGER AS version,
                     'authorization' AS dimension, reason, detail, NULL::DECIMAL(18,2) AS amount,
                     to_json({'source': 'connection_health', 'lapses_at': lapses_at})::VARCHAR AS evidence
              FROM connection_warnings WHERE realm_id = $realm"""


def check_reconnect(
    store: Store, realm_id: str, *, now: datetime, warn_days: int = DEFAULT_WARN_DAYS
) -> list[dict[str, Any]]:
    """Record the realm's warnings (the command that calls this refreshes the exceptions once after).

    pipelines.exceptions.refresh_exceptions reads `connection_warnings` (warning_causes_sql): it opens, routes
    (owner admin) and audits one `connection` exception per warning, and resolves it when the warning is gone.
    """
    health = connection_health(store, realm_id, now=now)
    found = _warnings(store, health, now, warn_days)
    with store.transaction() as tx:
        tx.execute("DELETE FROM connection_warnings WHERE realm_id = ?", [realm_id]).fetchall()
        for reason, detail, lapses in found:
            tx.execute(
                "INSERT INTO connection_warnings VALUES (?, ?, ?, ?, ?)", [realm_id, reason, detail, lapses, now]
            ).fetchall()
    return [{"reason": r, "detail": d, "lapses_at": lapses} for r, d, lapses in found]
