"""Exceptions: one open row per record and cause, routed, escalated and resolved (by people or on their own); audited.

Lifecycle: open -> assigned -> resolved. A cause that disappears resolves its exception on its own (the audit log says
what resolved it); a cause that comes back reopens the same row. A person's resolution holds until the store sees
something new about the record (a pull, a snapshot, an attempt) and the cause is still there. An exception escalates
when it passes its due-by or its record has used up its automatic retries.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import duckdb

from pipelines.audit import Change, append_selected
from pipelines.catalogue import catalogue
from pipelines.changes import log_exception, log_key, log_selected
from pipelines.connection_health import warning_causes_sql
from pipelines.identity import roles_for
from pipelines.ingest import DELTA_OUT_OF_ORDER, MASS_REMOVAL
from pipelines.keys import RecordKey
from pipelines.routing import Routing, load_routing, route
from pipelines.store import Store
from pipelines.views.metrics import RECORD_FACTS
from pipelines.views.queue import stake_sql

__all__ = [
    "DEFAULT_OWNER",
    "RESOLUTION_CODES",
    "ExceptionNotFoundError",
    "assign",
    "check_resolvable",
    "describe",
    "escalate",
    "exclude",
    "get_exception",
    "mark_synced",
    "open_exceptions_of",
    "open_exceptions_sql",
    "reason_text",
    "refresh_exceptions",
    "resolve",
]

# ARCHITECTURE.md "Health dimensions": who owns each kind of problem unless a routing rule says otherwise.
DEFAULT_OWNER = {
    "authorization": "admin",
    "mapping": "admin",
    "source_data": "finance",
    "provider_rejection": "finance",
    "duplicate_risk": "finance",
    "transport": "admin",
}
_OWNER_CASE = "CASE dimension " + " ".join(f"WHEN '{d}' THEN '{o}'" for d, o in DEFAULT_OWNER.items()) + " END"

# How a person closes an exception (each needs a reason, kept in the audit log).
RESOLUTION_CODES = {
    "fixed_in_qbo": "fixed in QuickBooks",
    "excluded": "excluded from sync",
    "marked_synced": "marked as synced",
    "create_new": "create new despite a possible duplicate",
}


class ExceptionNotFoundError(LookupError):
    """No exception with that id in this company."""


def _catalogue_owner_sql() -> str:
    rows = [f"('{r}', '{o}')" for r, o in catalogue().select("reason", "owner_role").iter_rows()]
    return "SELECT * FROM (VALUES " + ", ".join(rows) + ") t(reason, owner_role)"


# How much the store has seen about a record: pulls and applied snapshots of the company, attempts of the record.
# Every part only grows, so a larger mark means something new was seen since.
_DATA_MARK = """(coalesce((SELECT max(pull_id) FROM qbo_pulls WHERE realm_id = $realm AND status = 'done'), 0)
  + coalesce((SELECT max(run_id) FROM ingest_runs WHERE realm_id = $realm AND status = 'applied'), 0))"""

# Every current cause: findings of the last check, the last sync outcome of records the engine holds, a realm
# whose connection needs an admin, and the connection warnings of pipelines.connection_health.
_CAUSES = f"""
WITH last_run AS (SELECT max(run_id) AS run_id FROM check_runs WHERE realm_id = $realm),
found AS (
  SELECT f.entity, f.record_id, f.version, f.dimension, f.reason, any_value(f.detail) AS detail,
         any_value(f.amount) AS amount, NULL AS evidence
  FROM findings f, last_run WHERE f.run_id = last_run.run_id
  GROUP BY f.entity, f.record_id, f.version, f.dimension, f.reason),
engine AS (
  SELECT s.entity, s.record_id, s.version, a.dimension, s.last_reason AS reason,
         coalesce(a.message || coalesce(': ' || a.detail, ''), a.reason) AS detail, NULL::DECIMAL(18,2) AS amount,
         (SELECT to_json(list({{'attempt': x.attempt_no, 'at': x.started_at, 'http_status': x.http_status,
                                'code': x.qbo_code, 'message': x.message, 'detail': x.detail,
                                'intuit_tid': x.intuit_tid, 'outcome': x.outcome}} ORDER BY x.attempt_id))
          FROM sync_attempts x WHERE x.realm_id = s.realm_id AND x.entity = s.entity
            AND x.record_id = s.record_id)::VARCHAR AS evidence
  FROM sync_status s
  JOIN records r USING (realm_id, entity, record_id)
  JOIN sync_attempts a ON a.attempt_id = (SELECT max(attempt_id) FROM sync_attempts y WHERE y.realm_id = s.realm_id
                                          AND y.entity = s.entity AND y.record_id = s.record_id)
  WHERE s.realm_id = $realm AND r.state IN ('needs_fix', 'retry_scheduled', 'ambiguous', 'blocked')
    AND s.version = r.current_version AND s.last_outcome NOT IN ('accepted', 'authorization')),
conn AS (
  SELECT 'connection' AS entity, realm_id AS record_id, NULL::INTEGER AS version, 'authorization' AS dimension,
         coalesce(status_reason, 'authorization.reconnect_needed') AS reason,
         'QuickBooks needs to be reconnected before anything more is sent' AS detail,
         NULL::DECIMAL(18,2) AS amount, NULL AS evidence
  FROM qbo_connections WHERE realm_id = $realm AND status <> 'connected'),
warned AS ({warning_causes_sql()}),  -- an admin must act while the connection still works (connection_health)
-- The company's AWRA feed is stopped: its latest snapshot (refusals for bad input aside) was refused as a mass removal
-- or as a delta out of order, and no snapshot has landed since. The scheduler never applies one; a person decides.
refused AS (
  SELECT 'snapshot' AS entity, i.realm_id AS record_id, NULL::INTEGER AS version, 'source_data' AS dimension,
         CASE WHEN starts_with(i.error, '{MASS_REMOVAL}') THEN 'source_data.mass_removal'
              ELSE 'source_data.delta_out_of_order' END AS reason,
         i.error AS detail, NULL::DECIMAL(18,2) AS amount, NULL AS evidence
  FROM ingest_runs i
  WHERE i.realm_id = $realm AND i.status = 'refused'
    AND (starts_with(i.error, '{MASS_REMOVAL}') OR starts_with(i.error, '{DELTA_OUT_OF_ORDER}'))
    AND i.run_id = (SELECT max(run_id) FROM ingest_runs WHERE realm_id = $realm
                    AND (status <> 'refused' OR starts_with(error, '{MASS_REMOVAL}')
                         OR starts_with(error, '{DELTA_OUT_OF_ORDER}')))),
causes AS (SELECT * FROM found UNION ALL SELECT * FROM engine UNION ALL SELECT * FROM conn
           UNION ALL SELECT * FROM warned UNION ALL SELECT * FROM refused),
attempted AS (SELECT entity, record_id, max(attempt_id) AS last_attempt FROM sync_attempts
              WHERE realm_id = $realm GROUP BY ALL)
SELECT c.*, coalesce(o.owner_role, {_OWNER_CASE}) AS owner_role,
       {_DATA_MARK} + coalesce(att.last_attempt, 0) AS mark
FROM causes c
LEFT JOIN ({_catalogue_owner_sql()}) o USING (reason)
LEFT JOIN attempted att ON att.entity = c.entity AND att.record_id = c.record_id
LEFT JOIN records r ON r.realm_id = $realm AND r.entity = c.entity AND r.record_id = c.record_id
WHERE c.entity IN ('connection', 'snapshot') OR (r.removed_at IS NULL AND r.state NOT IN ('synced', 'excluded'))
"""

_RECORD_MARK = f"""SELECT {_DATA_MARK} + coalesce((SELECT max(attempt_id) FROM sync_attempts
                   WHERE realm_id = $realm AND entity = $entity AND record_id = $id), 0)"""


def open_exceptions_sql() -> str:
    return "SELECT * FROM exceptions WHERE realm_id = $realm AND status <> 'resolved'"


def refresh_exceptions(store: Store, realm_id: str, *, now: datetime, routing: Routing | None = None) -> dict[str, int]:
    """Open, update, reopen and auto-resolve exceptions so that each current cause has exactly one open row.

    New and reopened exceptions are routed (owner, due-by) by the rules in config/routing.toml; then anything past
    its due-by or its retry limit escalates.
    """
    routing = routing or load_routing()
    params = {"realm": realm_id, "now": now}
    with store.transaction() as tx:
        tx.execute(f"CREATE OR REPLACE TEMP TABLE _causes AS {_CAUSES}", {"realm": realm_id}).fetchall()
        # seen again: what the read model holds of an open exception moves with its detail, version, money and
        # evidence (not with when it was last seen, nor how often)
        log_selected(
            tx,
            """SELECT e.realm_id, e.entity, e.record_id FROM exceptions e JOIN _causes c
                 ON e.entity = c.entity AND e.record_id = c.record_id AND e.reason = c.reason
               WHERE e.realm_id = $realm AND e.status <> 'resolved'
                 AND (e.detail IS DISTINCT FROM c.detail OR e.version IS DISTINCT FROM c.version
                      OR e.amount IS DISTINCT FROM coalesce(c.amount, e.amount)
                      OR e.evidence IS DISTINCT FROM coalesce(c.evidence, e.evidence))""",
            {"realm": realm_id},
        )
        seen = tx.execute(
            """UPDATE exceptions SET last_seen_at = $now, occurrences = occurrences + 1, detail = c.detail,
                 version = c.version, amount = coalesce(c.amount, exceptions.amount),
                 evidence = coalesce(c.evidence, exceptions.evidence)
               FROM _causes c
               WHERE exceptions.realm_id = $realm AND exceptions.status <> 'resolved'
                 AND exceptions.entity = c.entity AND exceptions.record_id = c.record_id
                 AND exceptions.reason = c.reason""",
            params,
        ).fetchall()[0][0]
        # Causes without an open row: new ones, and ones whose latest row is resolved and may reopen (always when
        # it resolved on its own; after a person's resolution only once something new was seen about the record).
        tx.execute(
            """CREATE OR REPLACE TEMP TABLE _todo AS
               SELECT c.*, l.exception_id AS reopen_id
               FROM _causes c
               LEFT JOIN (SELECT entity, record_id, reason, max(exception_id) AS exception_id FROM exceptions
                          WHERE realm_id = $realm GROUP BY ALL) latest USING (entity, record_id, reason)
               LEFT JOIN exceptions l ON l.exception_id = latest.exception_id
               WHERE l.exception_id IS NULL
                  OR (l.status = 'resolved' AND (l.resolved_mark IS NULL OR c.mark > l.resolved_mark))""",
            {"realm": realm_id},
        ).fetchall()
        # To route: those, and open rows no rule has routed yet (opened before routing existed, or by another step).
        todo = tx.sql(
            f"""WITH stake AS ({stake_sql()}),
                owners AS (SELECT entity, record_id, owner AS record_owner FROM ({RECORD_FACTS})
                           WHERE realm_id = $realm AND owner IS NOT NULL)
                SELECT t.entity, t.record_id, t.version, t.dimension, t.reason, t.detail, t.evidence, t.owner_role,
                       t.reopen_id, NULL::BIGINT AS backfill_id, t.amount AS own_amount,
                       coalesce(s.at_stake, t.amount) AS amount, o.record_owner
                FROM _todo t LEFT JOIN stake s USING (entity, record_id)
                LEFT JOIN owners o USING (entity, record_id)
                UNION ALL
                SELECT e.entity, e.record_id, e.version, e.dimension, e.reason, e.detail, e.evidence, e.owner_role,
                       NULL, e.exception_id, e.amount, coalesce(s.at_stake, e.amount), o.record_owner
                FROM exceptions e LEFT JOIN stake s USING (entity, record_id)
                LEFT JOIN owners o USING (entity, record_id)
                WHERE e.realm_id = $realm AND e.status <> 'resolved' AND e.routed_by IS NULL""",
            params={"realm": realm_id},
        ).pl()
        opened = reopened = 0
        if todo.height:
            tx.register("_routed", route(todo, routing, now).to_arrow())
            try:
                # opened, reopened and routed: their records' exceptions change
                log_selected(tx, "SELECT $realm AS realm_id, entity, record_id FROM _routed", {"realm": realm_id})
                reopened = _reopen(tx, params)
                opened = tx.execute(
                    """INSERT INTO exceptions (exception_id, realm_id, entity, record_id, version, dimension, reason,
                         detail, owner_role, owner, status, opened_at, last_seen_at, amount, evidence, due_by,
                         routed_by, last_activity_at)
                       SELECT nextval('exception_seq'), $realm, r.entity, r.record_id, r.version, r.dimension,
                              r.reason, r.detail, r.owner_role, r.owner, 'open', $now, $now, r.own_amount,
                              r.evidence, r.due_by, r.routed_by, $now
                       -- Ids in a fixed order (a parallel scan would number them in any), so which of a record's
                       -- problems leads is the same on every run and on both stores.
                       FROM (SELECT * FROM _routed WHERE reopen_id IS NULL AND backfill_id IS NULL
                             ORDER BY entity, record_id, dimension, reason, detail) r""",
                    params,
                ).fetchall()[0][0]
                tx.execute(
                    """UPDATE exceptions SET owner_role = r.owner_role, owner = coalesce(exceptions.owner, r.owner),
                         due_by = r.due_by, routed_by = r.routed_by,
                         last_activity_at = coalesce(exceptions.last_activity_at, exceptions.opened_at)
                       FROM _routed r WHERE exceptions.exception_id = r.backfill_id""",
                ).fetchall()
            finally:
                tx.unregister("_routed")
        _staff(tx, realm_id, routing)
        resolved = _auto_resolve(tx, realm_id, now)
        escalated = _escalate(tx, realm_id, now, None)
    return {
        "opened": int(opened),
        "seen": int(seen),
        "reopened": int(reopened),
        "resolved": int(resolved),
        "escalated": int(escalated),
    }


def _staff(tx: duckdb.DuckDBPyConnection, realm_id: str, routing: Routing) -> None:
    """Every open item has a person: one routed to a role alone (before a person was on duty) goes to its role's
    person on duty. The role still decides who may act; the person is who answers for it."""
    for role, person in routing.on_duty.items():
        log_selected(
            tx,
            """SELECT realm_id, entity, record_id FROM exceptions
               WHERE realm_id = $realm AND status <> 'resolved' AND owner IS NULL AND owner_role = $role""",
            {"realm": realm_id, "role": role},
        )
        tx.execute(
            """UPDATE exceptions SET owner = $person
               WHERE realm_id = $realm AND status <> 'resolved' AND owner IS NULL AND owner_role = $role""",
            {"realm": realm_id, "role": role, "person": person},
        ).fetchall()


def _reopen(tx: duckdb.DuckDBPyConnection, params: dict) -> int:
    append_selected(
        tx,
        """SELECT $realm AS realm_id, $now AS acted_at, 'system' AS actor, 'system' AS role, 'reopen' AS action,
                  e.entity || ':' || e.record_id AS target, 'the cause is back: ' || e.reason AS reason,
                  to_json({'exception_id': e.exception_id, 'status': e.status, 'resolved_by': e.resolved_by,
                           'resolution_code': e.resolution_code, 'resolution': e.resolution})::VARCHAR AS before_json,
                  to_json({'exception_id': e.exception_id, 'status': 'open', 'owner_role': r.owner_role,
                           'owner': r.owner, 'due_by': r.due_by, 'routed_by': r.routed_by})::VARCHAR AS after_json
           FROM exceptions e JOIN _routed r ON r.reopen_id = e.exception_id ORDER BY e.exception_id""",
        params,
    )
    return tx.execute(
        """UPDATE exceptions SET status = 'open', owner_role = r.owner_role, owner = r.owner, due_by = r.due_by,
             routed_by = r.routed_by, escalated = FALSE, escalated_at = NULL, escalation_reason = NULL,
             resolved_at = NULL, resolved_by = NULL, resolution = NULL, resolution_code = NULL, resolved_mark = NULL,
             last_seen_at = $now, last_activity_at = $now, occurrences = occurrences + 1, detail = r.detail,
             version = r.version, amount = coalesce(r.own_amount, exceptions.amount),
             evidence = coalesce(r.evidence, exceptions.evidence)
           FROM _routed r WHERE exceptions.realm_id = $realm AND exceptions.exception_id = r.reopen_id""",
        params,
    ).fetchall()[0][0]


def _auto_resolve(tx: duckdb.DuckDBPyConnection, realm_id: str, now: datetime) -> int:
    """Causes that are gone resolve on their own; the audit log says what resolved them."""
    tx.execute(
        """CREATE OR REPLACE TEMP TABLE _gone AS
           SELECT e.exception_id, e.entity, e.record_id, e.reason, e.status, e.owner,
                  -- a record still in the registry but missing from the snapshot left AWRA: nothing was corrected
                  CASE WHEN e.entity IN ('connection', 'snapshot') THEN e.entity
                       WHEN r.record_id IS NULL OR r.removed_at IS NOT NULL THEN 'removed'
                       ELSE r.state END AS state
           FROM exceptions e
           LEFT JOIN records r ON r.realm_id = e.realm_id AND r.entity = e.entity AND r.record_id = e.record_id
           WHERE e.realm_id = $realm AND e.status <> 'resolved'
             AND NOT EXISTS (SELECT 1 FROM _causes c WHERE c.entity = e.entity AND c.record_id = e.record_id
                             AND c.reason = e.reason)""",
        {"realm": realm_id},
    ).fetchall()
    log_selected(tx, "SELECT $realm AS realm_id, entity, record_id FROM _gone", {"realm": realm_id})
    tx.execute(
        """UPDATE exceptions SET status = 'resolved', resolved_at = $now, resolved_by = 'system',
             resolution_code = CASE g.state WHEN 'removed' THEN 'left_awra' ELSE 'auto' END,
             last_activity_at = $now,
             resolution = 'auto: ' || CASE WHEN g.state = 'excluded' THEN 'the record was excluded'
                                           WHEN g.state = 'removed'
                                             THEN 'the record left AWRA (it is no longer in the AWRA snapshot)'
                                           WHEN g.state = 'snapshot' THEN 'a later AWRA snapshot was applied'
                                           -- what cured the cause, even when the record synced right after
                                           WHEN split_part(g.reason, '.', 1) = 'mapping'
                                             THEN 'the mapping is now in place'
                                           WHEN split_part(g.reason, '.', 1) = 'source_data'
                                             THEN 'the source record was corrected'
                                           WHEN split_part(g.reason, '.', 1) = 'duplicate_risk'
                                             THEN 'the duplicate risk was settled'
                                           WHEN split_part(g.reason, '.', 1) = 'authorization'
                                             THEN 'QuickBooks is connected again'
                                           WHEN g.state = 'synced' THEN 'the record synced'
                                           ELSE 'the cause is no longer found' END
           FROM _gone g WHERE exceptions.exception_id = g.exception_id""",
        {"now": now},
    ).fetchall()
    return append_selected(
        tx,
        """SELECT $realm AS realm_id, $now AS acted_at, 'system' AS actor, 'system' AS role, 'auto_resolve' AS action,
                  g.entity || ':' || g.record_id AS target, e.resolution AS reason,
                  to_json({'exception_id': g.exception_id, 'cause': g.reason, 'status': g.status,
                           'owner': g.owner})::VARCHAR AS before_json,
                  to_json({'exception_id': g.exception_id, 'cause': g.reason, 'status': 'resolved',
                           'record_state': g.state})::VARCHAR AS after_json
           FROM _gone g JOIN exceptions e USING (exception_id) ORDER BY g.exception_id""",
        {"realm": realm_id, "now": now},
    )


# -- escalation ------------------------------------------------------------------------------------------
def _escalate(tx: duckdb.DuckDBPyConnection, realm_id: str, now: datetime, retry_limit: int | None) -> int:
    """Flag open exceptions past their due-by, or whose record used up its automatic retries; audit each."""
    tx.execute(
        """CREATE OR REPLACE TEMP TABLE _escalate AS
           SELECT e.exception_id, e.entity, e.record_id, e.reason, e.owner, e.owner_role, e.due_by, s.last_attempt_at,
                  CASE WHEN (r.state = 'needs_fix' AND s.last_outcome IN ('transport', 'throttled'))
                            OR s.retry_count >= $limit
                       THEN 'retry limit: ' || s.retry_count || ' automatic retr'
                            || CASE WHEN s.retry_count = 1 THEN 'y' ELSE 'ies' END || ' failed'
                       ELSE 'overdue: due by ' || strftime(e.due_by, '%Y-%m-%d %H:%M UTC') END AS why
           FROM exceptions e
           LEFT JOIN records r ON r.realm_id = e.realm_id AND r.entity = e.entity AND r.record_id = e.record_id
           LEFT JOIN sync_status s ON s.realm_id = e.realm_id AND s.entity = e.entity AND s.record_id = e.record_id
           WHERE e.realm_id = $realm AND e.status <> 'resolved' AND NOT e.escalated
             AND (e.due_by < $now OR (r.state = 'needs_fix' AND s.last_outcome IN ('transport', 'throttled'))
                  OR s.retry_count >= $limit)""",
        {"realm": realm_id, "now": now, "limit": retry_limit if retry_limit is not None else 2**31 - 1},
    ).fetchall()
    log_selected(tx, "SELECT $realm AS realm_id, entity, record_id FROM _escalate", {"realm": realm_id})
    # The escalation is dated when it happened: the moment the due-by passed, or the attempt that used up the
    # retries; not the moment a cycle noticed (a server started after a quiet night would escalate everything "now").
    tx.execute(
        """UPDATE exceptions SET escalated = TRUE, escalation_reason = x.why, last_activity_at = $now,
             escalated_at = least($now, CASE WHEN starts_with(x.why, 'overdue') THEN x.due_by
                                            ELSE coalesce(x.last_attempt_at, $now) END)
           FROM _escalate x WHERE exceptions.exception_id = x.exception_id""",
        {"now": now},
    ).fetchall()
    return append_selected(
        tx,
        """SELECT $realm AS realm_id, $now AS acted_at, 'system' AS actor, 'system' AS role, 'escalate' AS action,
                  x.entity || ':' || x.record_id AS target, x.why AS reason,
                  to_json({'exception_id': x.exception_id, 'escalated': FALSE, 'due_by': x.due_by})::VARCHAR
                      AS before_json,
                  to_json({'exception_id': x.exception_id, 'escalated': TRUE, 'cause': x.reason,
                           'owner': coalesce(x.owner, x.owner_role)})::VARCHAR AS after_json
           FROM _escalate x ORDER BY x.exception_id""",
        {"realm": realm_id, "now": now},
    )


def escalate(store: Store, realm_id: str, *, now: datetime, retry_limit: int | None = None) -> int:
    """Escalate what is past its due-by or out of automatic retries (retry_limit: also at that many retries)."""
    with store.transaction() as tx:
        return int(_escalate(tx, realm_id, now, retry_limit))


# -- a person's actions: the changes; the command that calls them checks the role and audits --------------
_SNAPSHOT = ("status", "owner_role", "owner", "due_by", "escalated", "resolved_by", "resolution_code", "resolution")


def _fetch(cur: duckdb.DuckDBPyConnection, sql: str, params: list) -> list[dict[str, Any]]:
    result = cur.execute(sql, params)
    names = [d[0] for d in result.description]
    return [dict(zip(names, row, strict=True)) for row in result.fetchall()]


def _load(cur: duckdb.DuckDBPyConnection, realm_id: str, exception_id: int) -> dict[str, Any]:
    rows = _fetch(
        cur,
        """SELECT e.*, r.state, r.current_version FROM exceptions e
           LEFT JOIN records r ON r.realm_id = e.realm_id AND r.entity = e.entity AND r.record_id = e.record_id
           WHERE e.realm_id = ? AND e.exception_id = ?""",
        [realm_id, int(exception_id)],
    )
    if not rows:
        raise ExceptionNotFoundError(f"no exception {exception_id} in company {realm_id}")
    return rows[0]


def get_exception(store: Store, realm_id: str, exception_id: int) -> dict[str, Any]:
    """One exception with its record's state."""
    return _load(store.cursor(), realm_id, exception_id)


def open_exceptions_of(store: Store, realm_id: str, key: RecordKey) -> list[dict[str, Any]]:
    """The open exceptions of one record (their dimensions decide who may act on the record)."""
    return _fetch(
        store.cursor(),
        """SELECT e.*, r.state FROM exceptions e JOIN records r USING (realm_id, entity, record_id)
           WHERE e.realm_id = ? AND e.entity = ? AND e.record_id = ? AND e.status <> 'resolved'
           ORDER BY e.exception_id""",
        [realm_id, key.entity, key.record_id],
    )


def _key(row: dict[str, Any]) -> str:
    return f"{row['entity']}:{row['record_id']}"


def _snap(row: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"exception_id": row["exception_id"], "cause": row["reason"], **{k: row.get(k) for k in _SNAPSHOT}, **extra}


def _open(row: dict[str, Any]) -> None:
    if row["status"] == "resolved":
        raise ValueError(
            f"exception {row['exception_id']} ({_key(row)}, {row['reason']}) is already resolved "
            f"({row['resolution_code'] or 'auto'}: {row['resolution']})"
        )


def reason_text(reason: str | None, what: str) -> str:
    """The person's reason, trimmed; refused when empty (every decision keeps its reason in the audit log)."""
    text = (reason or "").strip()
    if not text:
        raise ValueError(f"{what} needs a reason (it is kept in the audit log)")
    return text


def assign(
    cur: duckdb.DuckDBPyConnection,
    realm_id: str,
    exception_id: int,
    *,
    to: str,
    now: datetime,
    note: str | None = None,
    roles: dict[str, str] | None = None,
) -> tuple[dict[str, Any], Change]:
    """Give an open exception to a person (who, with a roles config, must be able to act on it)."""
    person = (to or "").strip().lower()
    if "@" not in person:
        raise ValueError(f"assign to a person's email, not {to!r}")
    row = _load(cur, realm_id, exception_id)
    _open(row)
    if roles is not None:
        role = roles.get(person)
        if role is None:
            raise ValueError(f"{person} is not in the roles config; only a known person can own an exception")
        if role not in roles_for("resolve", row["dimension"]):
            needed = " or ".join(roles_for("resolve", row["dimension"]))
            raise ValueError(
                f"{person} is a {role} and cannot act on a {row['dimension'].replace('_', ' ')} exception; "
                f"assign it to someone with the {needed} role"
            )
    cur.execute(
        "UPDATE exceptions SET owner = ?, status = 'assigned', last_activity_at = ? WHERE exception_id = ?",
        [person, now, row["exception_id"]],
    ).fetchall()
    log_exception(cur, row["exception_id"])
    after = _snap({**row, "owner": person, "status": "assigned"})
    return after, Change("assign", _key(row), (note or "").strip() or None, _snap(row), after)


def _close(
    cur: duckdb.DuckDBPyConnection,
    realm_id: str,
    rows: Sequence[dict[str, Any]],
    code: str,
    reason: str,
    actor: str,
    now: datetime,
    **extra: Any,
) -> tuple[list[dict[str, Any]], list[Change]]:
    """Resolve these exceptions by a person's decision, remembering how much the store had seen then."""
    done, changes = [], []
    for row in rows:
        mark = cur.execute(
            _RECORD_MARK, {"realm": realm_id, "entity": row["entity"], "id": row["record_id"]}
        ).fetchall()[0][0]
        cur.execute(
            """UPDATE exceptions SET status = 'resolved', resolved_at = ?, resolved_by = ?, resolution_code = ?,
                 resolution = ?, resolved_mark = ?, last_activity_at = ? WHERE exception_id = ?""",
            [now, actor, code, reason, mark, now, row["exception_id"]],
        ).fetchall()
        log_exception(cur, row["exception_id"])  # also covers a state the caller moved with it
        after = _snap(
            {**row, "status": "resolved", "resolved_by": actor, "resolution_code": code, "resolution": reason},
            **extra,
        )
        changes.append(Change("resolve", _key(row), f"{RESOLUTION_CODES[code]}: {reason}", _snap(row), after))
        done.append(after)
    return done, changes


def check_resolvable(row: dict[str, Any], code: str) -> None:
    """Refuse, before anything is done, a resolution this exception cannot take."""
    if code not in RESOLUTION_CODES:
        raise ValueError(f"resolution code must be one of {', '.join(RESOLUTION_CODES)}, not {code!r}")
    _open(row)
    if row["dimension"] == "authorization":
        raise ValueError(
            "a connection problem resolves on its own once an admin reconnects QuickBooks (Connection page or "
            "`synchealth connect`); it cannot be closed by hand"
        )
    if code == "create_new" and row["dimension"] != "duplicate_risk":
        raise ValueError("'create new despite a duplicate' closes duplicate-risk exceptions only")


def resolve(
    cur: duckdb.DuckDBPyConnection,
    realm_id: str,
    exception_id: int,
    *,
    code: str,
    reason: str,
    actor: str,
    now: datetime,
) -> tuple[dict[str, Any], list[Change]]:
    """Close an exception as fixed in QuickBooks or create-new (the other codes have their own steps).

    fixed_in_qbo: the cause was fixed in QuickBooks; a record QuickBooks refused goes back to the next cycle.
    """
    row = _load(cur, realm_id, exception_id)
    check_resolvable(row, code)
    requeued = False
    if code == "fixed_in_qbo" and row["state"] == "needs_fix":
        # QuickBooks refused it and nothing here changed: the person's fix is the change; send it once more.
        cur.execute(
            "UPDATE records SET state = 'ready' WHERE realm_id = ? AND entity = ? AND record_id = ? "
            "AND state = 'needs_fix'",
            [realm_id, row["entity"], row["record_id"]],
        ).fetchall()
        requeued = True
    done, changes = _close(cur, realm_id, [row], code, reason, actor, now, requeued=requeued)
    return done[0], changes


def _record_state(cur: duckdb.DuckDBPyConnection, realm_id: str, key: RecordKey) -> str:
    state = cur.execute(
        "SELECT state FROM records WHERE realm_id = ? AND entity = ? AND record_id = ? AND removed_at IS NULL",
        [realm_id, key.entity, key.record_id],
    ).fetchall()
    if not state:
        raise ExceptionNotFoundError(f"no live record {key} in company {realm_id}")
    return state[0][0]


def exclude(
    cur: duckdb.DuckDBPyConnection, realm_id: str, key: RecordKey, *, reason: str, actor: str, now: datetime
) -> tuple[list[dict[str, Any]], list[Change]]:
    """Exclude a record from sync (it is never sent) and close its open exceptions; returns what closed."""
    state = _record_state(cur, realm_id, key)
    if state == "synced":
        raise ValueError(f"{key} is already in QuickBooks; excluding it would not take it out")
    if state == "excluded":
        raise ValueError(f"{key} is already excluded from sync")
    rows = _fetch(
        cur,
        """SELECT e.*, r.state FROM exceptions e JOIN records r USING (realm_id, entity, record_id)
           WHERE e.realm_id = ? AND e.entity = ? AND e.record_id = ? AND e.status <> 'resolved'
           ORDER BY e.exception_id""",
        [realm_id, key.entity, key.record_id],
    )
    cur.execute(
        "INSERT INTO exclusions VALUES (?, ?, ?, ?, ?, ?)", [realm_id, key.entity, key.record_id, actor, reason, now]
    ).fetchall()
    log_key(cur, realm_id, key.entity, key.record_id)
    # What the next check would set (exclusions come first there too); the queue reflects it at once.
    cur.execute(
        "UPDATE records SET state = 'excluded' WHERE realm_id = ? AND entity = ? AND record_id = ?",
        [realm_id, key.entity, key.record_id],
    ).fetchall()
    excluded = Change(
        "exclude",
        str(key),
        reason,
        {"state": state},
        {"state": "excluded", "exceptions": [r["exception_id"] for r in rows]},
    )
    closed, changes = _close(cur, realm_id, rows, "excluded", reason, actor, now)
    return closed, [excluded, *changes]


def mark_synced(
    cur: duckdb.DuckDBPyConnection,
    realm_id: str,
    exception_id: int,
    qbo_id: str,
    *,
    reason: str,
    actor: str,
    now: datetime,
) -> tuple[dict[str, Any], list[Change]]:
    """The record is already in QuickBooks as qbo_id (the caller verified it): link it, close its exceptions."""
    from pipelines.duplicates import QBO_ENTITY, link_duplicate

    row = _load(cur, realm_id, exception_id)
    check_resolvable(row, "marked_synced")
    qbo_entity = QBO_ENTITY.get(row["entity"])
    if qbo_entity is None or row["entity"] in ("item",):
        raise ValueError(f"a {row['entity']} is not sent to QuickBooks, so it cannot be marked as synced")
    key = RecordKey(row["entity"], row["record_id"])
    linked = link_duplicate(cur, realm_id, key, str(qbo_id).strip(), actor=actor, reason=f"marked as synced: {reason}",
                            now=now)  # fmt: skip
    cur.execute(
        "UPDATE records SET state = 'synced' WHERE realm_id = ? AND entity = ? AND record_id = ?",
        [realm_id, row["entity"], row["record_id"]],
    ).fetchall()  # the record is in the change log already: link_duplicate noted it
    row = _load(cur, realm_id, exception_id)
    others = _fetch(
        cur,
        """SELECT e.*, 'synced' AS state FROM exceptions e WHERE e.realm_id = ? AND e.entity = ?
           AND e.record_id = ? AND e.status <> 'resolved' AND e.exception_id <> ?""",
        [realm_id, row["entity"], row["record_id"], row["exception_id"]],
    )
    done, changes = _close(cur, realm_id, [row, *others], "marked_synced", reason, actor, now,
                           qbo_entity=qbo_entity, qbo_id=str(qbo_id).strip())  # fmt: skip
    return done[0], [linked, *changes]


def describe(done: Any, *, with_id: bool = True) -> str:
    """One line for a person: what happened to each exception an action touched."""
    rows = done if isinstance(done, list) else [done]
    parts = []
    for r in rows:
        head = f"#{r['exception_id']} " if with_id else ""
        if r.get("status") == "resolved":
            tail = " (sent again in the next cycle)" if r.get("requeued") else ""
            parts.append(f"{head}resolved: {RESOLUTION_CODES.get(r['resolution_code'], '')}{tail}")
        else:
            parts.append(f"{head}{r.get('status')} to {r.get('owner') or r.get('owner_role')}")
    return "; ".join(parts) or "nothing was open"
