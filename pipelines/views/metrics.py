"""Read models over the store for the pages and `synchealth status`: counts, versions, ingest history."""

from __future__ import annotations

from datetime import datetime

import polars as pl

from pipelines.store import Store, awra_table, current_view
from schemas.awra import CONTRACT

__all__ = [
    "RECORD_AMOUNTS",
    "RECORD_FACTS",
    "STAGE_OF_CHECK",
    "exceptions_by_dimension",
    "fingerprint",
    "records_by_state",
    "run_attempts",
    "sync_runs",
    "quiet_runs",
    "qbo_choices",
    "FUNNEL_STAGES",
    "last_check_run",
    "records_for_reason",
    "blocked_reasons",
    "readiness_funnel",
    "qbo_summary",
    "ingest_history",
    "ingest_problems",
    "loaded_tables",
    "realms",
    "record_chain",
    "records_by_entity",
    "status_summary",
    "store_version",
]

_ENTITY_ORDER = [t.entity for t in CONTRACT.values() if not t.is_lines]


# What the store's fingerprint counts: each part a table's value, store-wide or narrowed to one company.
_FINGERPRINT = (
    "coalesce(max(run_id), 0) FROM ingest_runs",
    "coalesce(max(audit_id), 0) FROM audit_log",
    "count(*) FROM records",
    "coalesce(max(run_id), 0) FROM check_runs",
    "coalesce(max(pull_id), 0) FROM qbo_pulls",
)


def fingerprint(parts: tuple[str, ...], realm_id: str | None) -> str:
    """One row of the parts (each "what FROM table"), every table narrowed to the company when `realm_id` is given
    (the query then needs $realm)."""
    where = " WHERE realm_id = $realm" if realm_id is not None else ""
    return "SELECT " + ", ".join(f"(SELECT {part}{where})" for part in parts)


def store_version(store: Store, realm_id: str | None = None) -> tuple:
    """A cheap fingerprint that changes whenever data a page shows changes (the key for page caches); with
    `realm_id`, whenever that company's data changes (another company's writes leave it as it was)."""
    params = {"realm": realm_id} if realm_id is not None else None
    return tuple(store.rows(fingerprint(_FINGERPRINT, realm_id), params)[0])


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


def _connection(store: Store, realm_id: str) -> dict:
    rows = store.rows(
        "SELECT status, status_reason, environment, access_expires_at, refresh_expires_at, last_refresh_at "
        "FROM qbo_connections WHERE realm_id = ?",
        [realm_id],
    )
    if not rows:
        return {"status": "not_connected"}
    keys = ("status", "reason", "environment", "access_expires_at", "refresh_expires_at", "last_refresh_at")
    return {k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in zip(keys, rows[0], strict=True)}


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
    dims = exceptions_by_dimension(store, realm_id)
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
        "exceptions": {
            "open": sum(v["count"] for v in dims.values()),
            "by_dimension": dims,
        },
        "connection": _connection(store, realm_id),
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


def _parse_key(key: str) -> tuple[str, str]:
    entity, sep, record_id = key.partition(":")
    if not sep or entity not in _ENTITY_ORDER or not record_id:
        raise ValueError(f"record key must be <entity>:<awra id> with entity one of {', '.join(_ENTITY_ORDER)}")
    return entity, record_id


def _dicts(frame: pl.DataFrame) -> list[dict]:
    return [
        {k: (str(v) if v is not None and not isinstance(v, int | float | str | bool) else v) for k, v in row.items()}
        for row in frame.iter_rows(named=True)
    ]


def record_chain(store: Store, realm_id: str, key: str) -> dict:
    """Everything known about one record: source, findings, mappings, candidates, link, state."""
    entity, record_id = _parse_key(key)
    table = next(t for t in CONTRACT.values() if t.entity == entity and not t.is_lines)
    rec = store.rows(
        "SELECT current_version, state, removed_at, first_seen_at, changed_at FROM records "
        "WHERE realm_id = ? AND entity = ? AND record_id = ?",
        [realm_id, entity, record_id],
    )
    if not rec:
        raise LookupError(f"no record {key} in company {realm_id}")
    version, state, removed_at, first_seen, changed = rec[0]
    source = store.frame(
        f"SELECT * EXCLUDE (realm_id, extra, ingest_run_id) FROM {awra_table(table.name)} "
        f"WHERE realm_id = ? AND {table.record_id} = ? AND version = ?",
        [realm_id, record_id, version],
    )
    lines = [
        _dicts(
            store.frame(
                f"SELECT * EXCLUDE (realm_id, extra, ingest_run_id, version) FROM {awra_table(t.name)} "
                f"WHERE realm_id = ? AND {t.record_id} = ? AND version = ? ORDER BY line_no",
                [realm_id, record_id, version],
            )
        )
        for t in CONTRACT.values()
        if t.parent == table.name
    ]
    last_run = store.scalar("SELECT max(run_id) FROM check_runs WHERE realm_id = ?", [realm_id])
    findings = store.frame(
        """SELECT check_name AS "check", dimension, reason, detail, mapping_kind, mapping_value
           FROM findings WHERE run_id = ? AND entity = ? AND record_id = ? ORDER BY dimension, reason""",
        [last_run, entity, record_id],
    )
    mappings = store.frame(
        """SELECT m.kind, m.awra_value, m.qbo_entity, m.qbo_id, m.qbo_name, m.status, m.source, m.confidence
           FROM mappings m WHERE m.realm_id = $realm AND (m.kind, m.awra_value) IN (
             SELECT mapping_kind, mapping_value FROM findings WHERE run_id = $run AND entity = $entity
               AND record_id = $id AND mapping_kind IS NOT NULL)
           ORDER BY m.kind, m.awra_value""",
        {"realm": realm_id, "run": last_run, "entity": entity, "id": record_id},
    )
    candidates = store.frame(
        """SELECT qbo_entity, qbo_id, rule, score, reasons FROM duplicate_candidates
           WHERE run_id = ? AND entity = ? AND record_id = ? ORDER BY score DESC""",
        [last_run, entity, record_id],
    )
    ref = store.rows(
        "SELECT qbo_entity, qbo_id, sync_token, synced_version, linked_by, linked_at FROM external_refs "
        "WHERE realm_id = ? AND entity = ? AND record_id = ?",
        [realm_id, entity, record_id],
    )
    attempts = store.frame(
        """SELECT attempt_no, run_id, version, operation, request_id, started_at, duration_ms, http_status, qbo_code,
                  message, detail, element, intuit_tid, outcome, dimension, reason, external_id, sync_token
           FROM sync_attempts WHERE realm_id = ? AND entity = ? AND record_id = ? ORDER BY attempt_id""",
        [realm_id, entity, record_id],
    )
    status = store.rows(
        "SELECT retry_count, next_retry_at, generation FROM sync_status WHERE realm_id = ? AND entity = ? "
        "AND record_id = ?",
        [realm_id, entity, record_id],
    )
    exception = store.frame(
        """SELECT exception_id, dimension, reason, detail, owner_role, owner, status, escalated, opened_at,
                  last_seen_at, occurrences, amount, due_by, escalation_reason, escalated_at FROM exceptions
           WHERE realm_id = ? AND entity = ? AND record_id = ? AND status <> 'resolved'
           ORDER BY CASE dimension WHEN 'authorization' THEN 0 WHEN 'source_data' THEN 1 WHEN 'mapping' THEN 2
                    ELSE 3 END, exception_id""",
        [realm_id, entity, record_id],
    )
    from pipelines.catalogue import explain

    exception = explain(exception, ("title", "fix", "decides"))  # the next step, in the words of the Help page
    party = _party_of(store, realm_id, entity, source)
    return {
        "number": _number_of(table.name, source),
        "party": party,
        "key": key,
        "realm_id": realm_id,
        "entity": entity,
        "record_id": record_id,
        "version": version,
        "state": state,
        "removed_at": removed_at.isoformat() if removed_at else None,
        "first_seen_at": first_seen.isoformat(),
        "changed_at": changed.isoformat(),
        "source": _dicts(source)[0] if source.height else None,
        "lines": lines[0] if lines else [],
        "findings": _dicts(findings),
        "mappings": _dicts(mappings),
        "duplicate_candidates": _dicts(candidates),
        "attempts": _dicts(attempts),
        "retry_count": status[0][0] if status else 0,
        "next_retry_at": status[0][1].isoformat() if status and status[0][1] else None,
        "external_id": ref[0][1] if ref else None,
        "external_ref": (
            dict(
                zip(
                    ("qbo_entity", "qbo_id", "sync_token", "synced_version", "linked_by", "linked_at"),
                    [str(v) if hasattr(v, "isoformat") else v for v in ref[0]],
                    strict=True,
                )
            )
            if ref
            else None
        ),
        "exception": _dicts(exception)[0] if exception.height else None,
        "exceptions": _dicts(exception),
    }


_NUMBERS = {"purchase_orders": "po_number", "bills": "bill_number", "invoices": "invoice_number",
            "payments": "payment_number", "journal_entries": "je_number"}  # fmt: skip
_PARTIES = {"vendor_id": ("vendor", "vendors", "vendor_id"), "customer_id": ("customer", "customers", "customer_id")}


def _number_of(table: str, source: pl.DataFrame) -> str | None:
    column = _NUMBERS.get(table)
    return str(source[column][0]) if column and source.height and source[column][0] is not None else None


def _party_of(store: Store, realm_id: str, entity: str, source: pl.DataFrame) -> dict | None:
    """The vendor or customer a document belongs to (or the party itself), with its name from AWRA."""
    for column, (kind, table, key) in _PARTIES.items():
        if column in source.columns and source.height and source[column][0] is not None:
            party_id = str(source[column][0])
            name = store.scalar(
                f"SELECT name FROM {current_view(table)} WHERE realm_id = ? AND {key} = ?", [realm_id, party_id]
            )
            return {"entity": kind, "record_id": party_id, "key": f"{kind}:{party_id}", "name": name}
    return None


# -- QuickBooks side -------------------------------------------------------------------------------------
def qbo_summary(store: Store, realm_id: str) -> dict:
    """Connection target and status, the last pull, object counts and the preferences readiness uses."""
    conn = store.rows(
        "SELECT environment, status, status_reason, connected_by, connected_at, access_expires_at, scopes "
        "FROM qbo_connections WHERE realm_id = ?",
        [realm_id],
    )
    pull = store.rows(
        "SELECT pull_id, kind, started_at, finished_at, objects, deleted, status, error FROM qbo_pulls "
        "WHERE realm_id = ? ORDER BY pull_id DESC LIMIT 1",
        [realm_id],
    )
    company = store.frame(
        "SELECT company_name, country, home_currency, multicurrency, book_close_date, duplicate_docnum_check, "
        "class_tracking, department_tracking, pulled_at FROM qbo_company WHERE realm_id = ?",
        [realm_id],
    )
    counts = store.frame(
        """SELECT entity, count(*) FILTER (WHERE active AND NOT deleted) AS active,
                  count(*) FILTER (WHERE NOT active AND NOT deleted) AS inactive,
                  count(*) FILTER (WHERE deleted) AS deleted, count(marker) AS ours
           FROM qbo_objects WHERE realm_id = ? GROUP BY 1 ORDER BY 1""",
        [realm_id],
    )
    keys = ("environment", "status", "status_reason", "connected_by", "connected_at", "access_expires_at", "scopes")
    pull_keys = ("pull_id", "kind", "started_at", "finished_at", "objects", "deleted", "status", "error")
    return {
        "connection": dict(zip(keys, conn[0], strict=True)) if conn else None,
        "last_pull": dict(zip(pull_keys, pull[0], strict=True)) if pull else None,
        "company": company.row(0, named=True) if company.height else None,
        "objects": counts,
    }


# -- readiness -------------------------------------------------------------------------------------------
FUNNEL_STAGES = (
    "source",
    "complete",
    "approved",
    "posted",
    "eligible",
    "mapped",
    "no duplicate risk",
    "ready or synced",
)
STAGE_OF_CHECK = {"complete": 1, "approved": 2, "posted": 3, "eligible": 4, "mapped": 5, "no_duplicate": 6}
# One row per live transaction: its number, party, money, date and AWRA owner (a journal entry's money is its
# debits). Parties have no money or date of their own. The Health page and the readiness funnel both read it.
RECORD_FACTS = """
  SELECT realm_id, 'purchase_order' AS entity, po_id AS record_id, po_number AS number, vendor_id AS party_id,
         total AS amount, txn_date, owner FROM cur_purchase_orders
  UNION ALL SELECT realm_id, 'bill', bill_id, bill_number, vendor_id, total, txn_date, owner FROM cur_bills
  UNION ALL SELECT realm_id, 'invoice', invoice_id, invoice_number, customer_id, total, txn_date, owner
            FROM cur_invoices
  UNION ALL SELECT realm_id, 'payment', payment_id, payment_number, customer_id, amount, txn_date, owner
            FROM cur_payments
  UNION ALL SELECT realm_id, 'bill_payment', bill_payment_id, NULL, vendor_id, amount, txn_date, owner
            FROM cur_bill_payments
  UNION ALL SELECT j.realm_id, 'journal_entry', j.je_id, any_value(j.je_number), NULL,
                   sum(l.amount) FILTER (WHERE l.posting_type = 'debit'), any_value(j.txn_date), any_value(j.owner)
            FROM cur_journal_entries j LEFT JOIN cur_journal_lines l USING (realm_id, je_id) GROUP BY 1, 2, 3"""
RECORD_AMOUNTS = f"SELECT realm_id, entity, record_id, amount, txn_date FROM ({RECORD_FACTS})"


def last_check_run(store: Store, realm_id: str) -> int | None:
    return store.scalar("SELECT max(run_id) FROM check_runs WHERE realm_id = ?", [realm_id])


def readiness_funnel(store: Store, realm_id: str) -> pl.DataFrame:
    """Per entity and stage: how many records (and dollars) pass every check up to that stage."""
    run = last_check_run(store, realm_id) or -1
    stage_case = " ".join(f"WHEN '{k}' THEN {v}" for k, v in STAGE_OF_CHECK.items())
    frame = store.frame(
        f"""WITH firsts AS (
              SELECT entity, record_id, min(CASE check_name {stage_case} END) AS first_fail
              FROM findings WHERE run_id = $run GROUP BY ALL),
            recs AS (
              SELECT r.entity, r.record_id, coalesce(f.first_fail, 99) AS first_fail, coalesce(a.amount, 0) AS amount
              FROM records r
              LEFT JOIN firsts f USING (entity, record_id)
              LEFT JOIN ({RECORD_AMOUNTS}) a ON a.realm_id = r.realm_id AND a.entity = r.entity
                   AND a.record_id = r.record_id
              WHERE r.realm_id = $realm AND r.removed_at IS NULL AND r.state <> 'excluded'
                AND r.entity NOT IN ('item', 'account'))
            SELECT entity, stage.idx AS stage_index, count(*) FILTER (WHERE first_fail > stage.idx) AS records,
                   coalesce(sum(amount) FILTER (WHERE first_fail > stage.idx), 0)::DECIMAL(18,2) AS dollars
            FROM recs, (SELECT unnest(range(0, 8)) AS idx) stage
            GROUP BY ALL ORDER BY entity, stage_index""",
        {"run": run, "realm": realm_id},
    )
    return frame.with_columns(
        pl.col("stage_index").replace_strict(dict(enumerate(FUNNEL_STAGES)), return_dtype=pl.String).alias("stage")
    )


def blocked_reasons(store: Store, realm_id: str) -> pl.DataFrame:
    """Every reason records are held back, ranked by the dollars, then the records, it holds."""
    run = last_check_run(store, realm_id) or -1
    return store.frame(
        """WITH per_record AS (
             SELECT dimension, reason, entity, record_id, any_value(amount) AS amount, min(txn_date) AS txn_date,
                    any_value(detail) AS detail
             FROM findings WHERE run_id = ? GROUP BY ALL)
           SELECT dimension, reason, count(*) AS records, coalesce(sum(amount), 0)::DECIMAL(18,2) AS dollars,
                  min(txn_date) AS oldest, string_agg(DISTINCT entity, ', ' ORDER BY entity) AS entities,
                  any_value(detail) AS example
           FROM per_record GROUP BY 1, 2 ORDER BY dollars DESC, records DESC, reason""",
        [run],
    )


def qbo_choices(store: Store, realm_id: str, entities: tuple[str, ...]) -> pl.DataFrame:
    """Active QuickBooks objects a value may be mapped to, for a person picking one."""
    marks = ", ".join("?" for _ in entities)
    return store.frame(
        f"""SELECT entity, qbo_id, name, coalesce(acct_num, sku) AS number FROM qbo_objects
            WHERE realm_id = ? AND entity IN ({marks}) AND active AND NOT deleted ORDER BY name""",
        [realm_id, *entities],
    )


def records_for_reason(store: Store, realm_id: str, reason: str, limit: int = 500) -> pl.DataFrame:
    """The records held back by one reason, biggest first, with what to fix on each."""
    run = last_check_run(store, realm_id) or -1
    return store.frame(
        """SELECT entity || ':' || record_id AS key, entity, record_id, version, detail, amount, txn_date
           FROM findings WHERE run_id = ? AND reason = ?
           ORDER BY amount DESC NULLS LAST, txn_date LIMIT ?""",
        [run, reason, limit],
    )


# -- sync ------------------------------------------------------------------------------------------------
# A run that found nothing to send and ended without a word: what a scheduled cycle does most of the day.
_QUIET = "(planned = 0 AND status = 'done' AND error IS NULL)"


def sync_runs(store: Store, realm_id: str, limit: int = 200, *, quiet: bool = False) -> pl.DataFrame:
    """Sync run history, newest first: trigger, actor, duration and outcome counts. Without `quiet`, only the runs
    that had something to send or ended otherwise than done (so that the last `limit` of them are not crowded out by
    a scheduler's empty cycles)."""
    only = "" if quiet else f"AND NOT {_QUIET}"
    return store.frame(
        f"""SELECT run_id, trigger, actor, started_at, round(seconds, 2) AS seconds, status, planned, accepted,
                  rejected, duplicate, "authorization", throttled, transport, ambiguous, held, linked, error
           FROM sync_runs WHERE realm_id = ? {only} ORDER BY run_id DESC LIMIT ?""",
        [realm_id, limit],
    )


def quiet_runs(store: Store, realm_id: str) -> tuple[int, datetime | None]:
    """How many runs found nothing to send, and when the last of them started."""
    count, last = store.rows(
        f"SELECT count(*), max(started_at) FROM sync_runs WHERE realm_id = ? AND {_QUIET}", [realm_id]
    )[0]
    return int(count), last


def run_attempts(store: Store, run_id: int) -> pl.DataFrame:
    """Every attempt of one run, with what QuickBooks said."""
    return store.frame(
        """SELECT entity || ':' || record_id AS key, attempt_no, operation, outcome, reason, http_status, qbo_code,
                  message, detail, intuit_tid, external_id, round(duration_ms) AS ms
           FROM sync_attempts WHERE run_id = ? ORDER BY attempt_id""",
        [run_id],
    )


def records_by_state(store: Store, realm_id: str) -> dict[str, int]:
    return dict(
        store.rows(
            "SELECT state, count(*) FROM records WHERE realm_id = ? AND removed_at IS NULL GROUP BY 1", [realm_id]
        )
    )


def exceptions_by_dimension(store: Store, realm_id: str) -> dict[str, dict]:
    """Open exceptions per dimension: how many, and the dollars at stake."""
    rows = store.rows(
        """SELECT dimension, count(*), coalesce(sum(amount), 0) FROM exceptions
           WHERE realm_id = ? AND status <> 'resolved' GROUP BY 1 ORDER BY 1""",
        [realm_id],
    )
    return {d: {"count": int(n), "amount": str(a)} for d, n, a in rows}
