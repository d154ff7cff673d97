"""Exceptions: one open row per record and cause, kept in step with findings and sync outcomes; audited."""

from __future__ import annotations

from datetime import datetime

from pipelines.store import Store
from qbo.faults import CATALOGUE

__all__ = ["DEFAULT_OWNER", "open_exceptions_sql", "refresh_exceptions"]

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


def _catalogue_owner_sql() -> str:
    rows = [f"('{reason}', '{r.owner if r.owner != 'system' else 'admin'}')" for reason, r in CATALOGUE.items()]
    return "SELECT * FROM (VALUES " + ", ".join(rows) + ") t(reason, owner_role)"


# Every current cause: findings of the last check, the last sync outcome of records the engine holds, and a
# realm whose connection needs an admin.
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
causes AS (SELECT * FROM found UNION ALL SELECT * FROM engine UNION ALL SELECT * FROM conn)
SELECT c.*, coalesce(o.owner_role, {_OWNER_CASE}) AS owner_role
FROM causes c
LEFT JOIN ({_catalogue_owner_sql()}) o USING (reason)
LEFT JOIN records r ON r.realm_id = $realm AND r.entity = c.entity AND r.record_id = c.record_id
WHERE c.entity = 'connection' OR (r.removed_at IS NULL AND r.state NOT IN ('synced', 'excluded'))
"""


def open_exceptions_sql() -> str:
    return "SELECT * FROM exceptions WHERE realm_id = $realm AND status <> 'resolved'"


def refresh_exceptions(store: Store, realm_id: str, *, now: datetime) -> dict[str, int]:
    """Open, update, reopen and auto-resolve exceptions so that each current cause has exactly one open row."""
    params = {"realm": realm_id, "now": now}
    with store.transaction() as tx:
        tx.execute(f"CREATE OR REPLACE TEMP TABLE _causes AS {_CAUSES}", {"realm": realm_id})
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
        reopened = tx.execute(
            """UPDATE exceptions SET status = 'open', resolved_at = NULL, resolved_by = NULL, resolution = NULL,
                 last_seen_at = $now, occurrences = occurrences + 1, detail = c.detail, version = c.version
               FROM _causes c
               WHERE exceptions.realm_id = $realm AND exceptions.status = 'resolved'
                 AND exceptions.entity = c.entity AND exceptions.record_id = c.record_id
                 AND exceptions.reason = c.reason AND exceptions.resolved_by = 'system'
                 AND exceptions.exception_id = (SELECT max(exception_id) FROM exceptions e2
                      WHERE e2.realm_id = $realm AND e2.entity = c.entity AND e2.record_id = c.record_id
                        AND e2.reason = c.reason)
                 AND NOT EXISTS (SELECT 1 FROM exceptions e3 WHERE e3.realm_id = $realm AND e3.status <> 'resolved'
                                 AND e3.entity = c.entity AND e3.record_id = c.record_id AND e3.reason = c.reason)""",
            params,
        ).fetchall()[0][0]
        opened = tx.execute(
            """INSERT INTO exceptions (exception_id, realm_id, entity, record_id, version, dimension, reason, detail,
                 owner_role, status, opened_at, last_seen_at, amount, evidence)
               SELECT nextval('exception_seq'), $realm, c.entity, c.record_id, c.version, c.dimension, c.reason,
                      c.detail, c.owner_role, 'open', $now, $now, c.amount, c.evidence
               FROM _causes c
               WHERE NOT EXISTS (SELECT 1 FROM exceptions e WHERE e.realm_id = $realm AND e.status <> 'resolved'
                                 AND e.entity = c.entity AND e.record_id = c.record_id AND e.reason = c.reason)""",
            params,
        ).fetchall()[0][0]
        # Causes that are gone resolve on their own; the audit log says what resolved them.
        tx.execute(
            """CREATE OR REPLACE TEMP TABLE _gone AS
               SELECT e.exception_id, e.entity, e.record_id, e.reason, coalesce(r.state, 'removed') AS state
               FROM exceptions e
               LEFT JOIN records r ON r.realm_id = e.realm_id AND r.entity = e.entity AND r.record_id = e.record_id
               WHERE e.realm_id = $realm AND e.status <> 'resolved'
                 AND NOT EXISTS (SELECT 1 FROM _causes c WHERE c.entity = e.entity AND c.record_id = e.record_id
                                 AND c.reason = e.reason)""",
            {"realm": realm_id},
        )
        tx.execute(
            """UPDATE exceptions SET status = 'resolved', resolved_at = $now, resolved_by = 'system',
                 resolution = 'auto: ' || CASE g.state WHEN 'synced' THEN 'the record synced'
                                                       WHEN 'excluded' THEN 'the record was excluded'
                                                       WHEN 'removed' THEN 'the record left AWRA'
                                                       ELSE CASE split_part(g.reason, '.', 1)
                                                         WHEN 'mapping' THEN 'the mapping is now in place'
                                                         WHEN 'source_data' THEN 'the source record was corrected'
                                                         WHEN 'duplicate_risk' THEN 'the duplicate risk was settled'
                                                         WHEN 'authorization' THEN 'QuickBooks is connected again'
                                                         ELSE 'the cause is no longer found' END END
               FROM _gone g WHERE exceptions.exception_id = g.exception_id""",
            {"now": now},
        )
        resolved = tx.execute(
            """INSERT INTO audit_log (realm_id, acted_at, actor, role, action, target, reason, after_json)
               SELECT $realm, $now, 'system', 'system', 'auto_resolve', g.entity || ':' || g.record_id,
                      e.resolution, to_json({'exception_id': g.exception_id, 'cause': g.reason})::VARCHAR
               FROM _gone g JOIN exceptions e USING (exception_id)""",
            params,
        ).fetchall()[0][0]
    return {"opened": int(opened), "seen": int(seen), "reopened": int(reopened), "resolved": int(resolved)}
