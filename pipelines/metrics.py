"""Read models over the store for the pages and `synchealth status`: counts, versions, ingest history."""

from __future__ import annotations

import polars as pl

from pipelines.store import Store, awra_table
from schemas.awra import CONTRACT

__all__ = [
    "ingest_history",
    "ingest_problems",
    "loaded_tables",
    "realms",
    "records_by_entity",
    "status_summary",
    "store_version",
]

_ENTITY_ORDER = [t.entity for t in CONTRACT.values() if not t.is_lines]


def store_version(store: Store) -> tuple:
    """A cheap fingerprint that changes whenever data a page shows changes (the key for page caches)."""
    return tuple(
        store.rows(
            "SELECT (SELECT coalesce(max(run_id), 0) FROM ingest_runs), "
            "(SELECT coalesce(max(audit_id), 0) FROM audit_log), (SELECT count(*) FROM records)"
        )[0]
    )


def realms(store: Store) -> list[str]:
    """Every company (realm) that has data in the store."""
    return [r[0] for r in store.rows("SELECT DISTINCT realm_id FROM ingest_runs ORDER BY 1")]


def records_by_entity(store: Store, realm_id: str) -> pl.DataFrame:
    """Per entity: current records, removed records, versions stored, last change."""
    frame = store.frame(
        """SELECT r.entity,
                  count(*) FILTER (WHERE r.removed_at IS NULL) AS records,
                  count(*) FILTER (WHERE r.removed_at IS NOT NULL) AS removed,
                  sum(r.current_version) AS versions,
                  count(*) FILTER (WHERE r.current_version > 1) AS changed_records,
                  max(r.changed_at) AS last_change
           FROM records r WHERE r.realm_id = ? GROUP BY 1""",
        [realm_id],
    )
    order = pl.DataFrame({"entity": _ENTITY_ORDER, "_o": list(range(len(_ENTITY_ORDER)))})
    return frame.join(order, on="entity", how="left").sort("_o").drop("_o")


def loaded_tables(store: Store, realm_id: str) -> pl.DataFrame:
    """Per snapshot table: rows of current record versions, all versions kept, last snapshot applied."""
    parts = []
    for name, table in CONTRACT.items():
        parts.append(
            f"""SELECT '{name}' AS table_name, '{table.entity}' AS entity,
                count(*) FILTER (WHERE r.record_id IS NOT NULL) AS current_rows, count(*) AS stored_rows
            FROM {awra_table(name)} a
            LEFT JOIN records r ON r.realm_id = a.realm_id AND r.entity = '{table.entity}'
                 AND r.record_id = a.{table.record_id} AND r.current_version = a.version
                 AND r.removed_at IS NULL
            WHERE a.realm_id = $realm"""
        )
    counts = store.frame(" UNION ALL ".join(parts), {"realm": realm_id})
    last = store.frame(
        """SELECT f.table_name, max(r.finished_at) AS last_snapshot, arg_max(f.file, r.finished_at) AS file
           FROM ingest_files f JOIN ingest_runs r USING (run_id)
           WHERE r.realm_id = ? AND r.status <> 'refused' GROUP BY 1""",
        [realm_id],
    )
    return counts.join(last, on="table_name", how="left")


def ingest_history(store: Store, realm_id: str, limit: int = 50) -> pl.DataFrame:
    """The latest ingest runs, refused ones included with their error."""
    return store.frame(
        """SELECT run_id, status, source, started_at, finished_at, rows, accepted, rejected,
                  new_records, changed_records, removed_records, error
           FROM ingest_runs WHERE realm_id = ? ORDER BY run_id DESC LIMIT ?""",
        [realm_id, limit],
    )


def ingest_problems(store: Store, run_id: int) -> pl.DataFrame:
    """Per file of one ingest run: rows, accepted, rejected and the first problems found."""
    return store.frame(
        """SELECT table_name, file, rows, accepted, rejected, error FROM ingest_files
           WHERE run_id = ? ORDER BY rejected DESC, table_name""",
        [run_id],
    )


def status_summary(store: Store, realm_id: str) -> dict:
    """The object behind `synchealth status --json`."""
    by_entity = {
        r[0]: int(r[1])
        for r in store.rows(
            "SELECT entity, count(*) FROM records WHERE realm_id = ? AND removed_at IS NULL GROUP BY 1",
            [realm_id],
        )
    }
    by_state = {
        r[0]: int(r[1])
        for r in store.rows(
            "SELECT state, count(*) FROM records WHERE realm_id = ? AND removed_at IS NULL GROUP BY 1",
            [realm_id],
        )
    }
    versions, removed = store.rows(
        """SELECT coalesce(sum(current_version), 0), count(*) FILTER (WHERE removed_at IS NOT NULL)
           FROM records WHERE realm_id = ?""",
        [realm_id],
    )[0]
    last = store.rows(
        """SELECT run_id, status, finished_at, error FROM ingest_runs WHERE realm_id = ?
           ORDER BY run_id DESC LIMIT 1""",
        [realm_id],
    )
    return {
        "realm_id": realm_id,
        "records": {
            "total": sum(by_entity.values()),
            "by_entity": by_entity,
            "by_state": by_state,
            "versions": int(versions),
            "removed": int(removed),
        },
        "exceptions": {"open": 0, "by_dimension": {}},
        "connection": {"status": "not_connected"},
        "last_ingest": (
            {
                "run_id": last[0][0],
                "status": last[0][1],
                "finished_at": last[0][2].isoformat(),
                "error": last[0][3],
            }
            if last
            else None
        ),
    }
