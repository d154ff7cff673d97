"""The audit log: the one place a row is written, each row's hash chained to the one before, and its verification.

The table refuses UPDATE and DELETE (triggers); the chain makes a rewrite that got past them visible: each row's
`chain_hash` is SHA-256 of the previous row's hash and the row's own fields, so changing, removing or reordering a
row breaks every hash after it. Someone who can rewrite the file and recompute every hash is not stopped by this;
the newest hash (printed by `synchealth audit verify`) is the anchor to keep elsewhere.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import duckdb

from pipelines.dialect import dialect_of

__all__ = [
    "GENESIS",
    "GUARD_TRIGGERS",
    "AuditCheck",
    "Change",
    "Entry",
    "append",
    "append_selected",
    "chain_hash",
    "rehash_all",
    "verify",
]

GENESIS = "0" * 64  # the hash "before" the first row
GUARD_TRIGGERS = ("audit_no_update", "audit_no_delete")
_FIELDS = ("realm_id", "acted_at", "actor", "role", "action", "target", "reason", "before_json", "after_json")
# How many of the newest rows a store checks each time it opens; `verify(full=True)` walks them all.
TAIL = 1000


@dataclass(frozen=True)
class Change:
    """What an engine step changed, for the command that called it to audit under its caller's name."""

    action: str
    target: str
    reason: str | None = None
    before: dict[str, Any] | None = None
    after: dict[str, Any] | None = None


@dataclass(frozen=True)
class Entry:
    """One audited event: who did what to which target, why, and the state before and after."""

    realm_id: str
    acted_at: datetime
    actor: str
    role: str
    action: str
    target: str
    reason: str | None = None
    before: dict[str, Any] | None = field(default=None)
    after: dict[str, Any] | None = field(default=None)

    def values(self) -> dict[str, Any]:
        # Names as typed (Café, not Caf\u00e9): the audit page shows these texts to people.
        dump = lambda d: None if d is None else json.dumps(d, sort_keys=True, default=str, ensure_ascii=False)  # noqa: E731
        return {
            "realm_id": self.realm_id,
            "acted_at": self.acted_at,
            "actor": self.actor,
            "role": self.role,
            "action": self.action,
            "target": self.target,
            "reason": self.reason,
            "before_json": dump(self.before),
            "after_json": dump(self.after),
        }


def _canonical(audit_id: int, row: dict[str, Any]) -> str:
    values: list[Any] = [audit_id]
    for name in _FIELDS:
        value = row[name]
        if isinstance(value, datetime):
            value = value.astimezone(UTC).isoformat()  # the store reads it back in UTC
        values.append(value)
    return json.dumps(values, ensure_ascii=False, separators=(",", ":"))


def chain_hash(previous: str, audit_id: int, row: dict[str, Any]) -> str:
    return hashlib.sha256(f"{previous}|{_canonical(audit_id, row)}".encode()).hexdigest()


def _last_hash(cur: duckdb.DuckDBPyConnection) -> str:
    found = cur.execute("SELECT chain_hash FROM audit_log ORDER BY audit_id DESC LIMIT 1").fetchall()
    return found[0][0] if found and found[0][0] else GENESIS


def append(cur: duckdb.DuckDBPyConnection, entries: Sequence[Entry]) -> list[int]:
    """Write these entries, in order, inside the caller's transaction; returns their audit ids."""
    return _append_values(cur, [entry.values() for entry in entries])


def append_selected(cur: duckdb.DuckDBPyConnection, sql: str, params: dict[str, Any] | None = None) -> int:
    """Append the rows a query selects (columns named as the log's: realm_id, acted_at, ... after_json), in order.

    Events found in bulk (exceptions that resolved or escalated on their own) are built in SQL; only their hashes
    are computed one after another, since each depends on the one before.
    """
    result = cur.execute(sql, params or {})
    names = [d[0] for d in result.description]
    rows = [dict(zip(names, r, strict=True)) for r in result.fetchall()]
    return len(_append_values(cur, [{n: row.get(n) for n in _FIELDS} for row in rows]))


def _append_values(cur: duckdb.DuckDBPyConnection, values_list: list[dict[str, Any]]) -> list[int]:
    if not values_list:
        return []
    count = len(values_list)
    ids = [int(r[0]) for r in cur.execute("SELECT nextval('audit_seq') FROM range(?)", [count]).fetchall()]
    previous = _last_hash(cur)
    rows = []
    for audit_id, values in zip(ids, values_list, strict=True):
        previous = chain_hash(previous, audit_id, values)
        rows.append([audit_id, *(values[n] for n in _FIELDS), previous])
    cur.executemany(
        f"INSERT INTO audit_log (audit_id, {', '.join(_FIELDS)}, chain_hash) VALUES ({', '.join('?' * 11)})", rows
    )
    return ids


@dataclass(frozen=True)
class AuditCheck:
    """What a verification found: ok, how many rows it read, the newest hash, and the first problem."""

    ok: bool
    rows: int
    newest_hash: str | None
    problem: str | None = None


def _rows(cur: duckdb.DuckDBPyConnection, tail: int | None) -> list[dict[str, Any]]:
    where = "" if tail is None else "WHERE audit_id >= (SELECT coalesce(max(audit_id), 0) FROM audit_log) - ?"
    result = cur.execute(
        f"SELECT audit_id, {', '.join(_FIELDS)}, chain_hash FROM audit_log {where} ORDER BY audit_id",
        [] if tail is None else [tail],
    )
    names = [d[0] for d in result.description]
    return [dict(zip(names, r, strict=True)) for r in result.fetchall()]


def verify(cur: duckdb.DuckDBPyConnection, *, full: bool = True) -> AuditCheck:
    """Walk the chain (all of it, or the newest TAIL rows) and check that the guard triggers are in place."""
    chained = cur.execute(
        "SELECT count(*) FROM information_schema.columns WHERE table_name = 'audit_log' AND column_name = 'chain_hash'"
    ).fetchall()[0][0]
    if not chained:  # a store opened with the migrations before the chain (tests of old files)
        return AuditCheck(True, 0, None)
    present = {r[0] for r in cur.execute(dialect_of(cur).triggers_sql).fetchall()}
    missing = [t for t in GUARD_TRIGGERS if t not in present]
    rows = _rows(cur, None if full else TAIL)
    newest = rows[-1]["chain_hash"] if rows else None
    if missing:
        return AuditCheck(False, len(rows), newest, f"the audit log's guard is gone ({', '.join(missing)} missing)")
    if not rows:
        return AuditCheck(True, 0, None)
    previous = GENESIS
    first = rows[0]["audit_id"]
    if full is False and first > 1:
        earlier = cur.execute(
            "SELECT chain_hash FROM audit_log WHERE audit_id < ? ORDER BY audit_id DESC LIMIT 1", [first]
        ).fetchall()
        previous = earlier[0][0] if earlier else GENESIS
    for row in rows:
        expected = chain_hash(previous, row["audit_id"], row)
        if row["chain_hash"] != expected:
            return AuditCheck(
                False,
                len(rows),
                newest,
                f"audit row {row['audit_id']} ({row['action']} {row['target']} by {row['actor']}) does not match "
                "its hash: the log was changed after it was written",
            )
        previous = expected
    return AuditCheck(True, len(rows), newest)


def rehash_all(cur: duckdb.DuckDBPyConnection) -> int:
    """Give every existing row its chain hash (the migration that introduced the chain; triggers dropped around it)."""
    rows = _rows(cur, None)
    previous = GENESIS
    updates = []
    for row in rows:
        previous = chain_hash(previous, row["audit_id"], row)
        updates.append([previous, row["audit_id"]])
    if updates:
        cur.executemany("UPDATE audit_log SET chain_hash = ? WHERE audit_id = ?", updates)
    return len(updates)
