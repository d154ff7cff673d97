"""Read models for the Trends page (analysts): why failures happen, from check runs, attempts, runs and exceptions.

Every number is a DuckDB aggregate over the store: open problems by dimension at each check run, first-time-right
and retry success from the attempts, time to resolve from the exceptions, QuickBooks error codes, the vendors,
customers and reference values behind repeated failures, and the sync runs' throughput.
"""

from __future__ import annotations

from datetime import datetime

import polars as pl

from pipelines.store import Store
from pipelines.views.read_model import exceptions, offenders
from qbo.faults import DIMENSIONS

__all__ = [
    "BUCKETS",
    "OUTCOME_DIMENSION",
    "failures_over_time",
    "first_time_right",
    "recurring_offenders",
    "retry_success",
    "throughput",
    "time_to_resolve",
    "top_error_codes",
    "within",
]

BUCKETS = ("day", "week")
# The dimension an attempt's outcome belongs to, for a drill from a sync run's bar to the action queue.
OUTCOME_DIMENSION = {
    "rejected": "provider_rejection",
    "duplicate": "duplicate_risk",
    "ambiguous": "duplicate_risk",
    "authorization": "authorization",
    "throttled": "transport",
    "transport": "transport",
}


def _bucket(bucket: str) -> str:
    if bucket not in BUCKETS:
        raise ValueError(f"bucket must be one of {', '.join(BUCKETS)}, not {bucket!r}")
    return bucket  # a literal from the list above, never the caller's text, goes into the SQL


def within(frame: pl.DataFrame, column: str, window: tuple[datetime, datetime] | None) -> pl.DataFrame:
    """The rows whose `column` falls in the window (a brushed time range); all rows without one."""
    if window is None or frame.is_empty():
        return frame
    start, end = (round(moment.timestamp() * 1_000_000) for moment in window)  # any zone: compare instants
    return frame.filter(pl.col(column).dt.epoch("us").is_between(start, end))


def failures_over_time(store: Store, realm_id: str) -> pl.DataFrame:
    """At each check run: records with an open problem per dimension (all six), and their dollars.

    An exception is open at a moment if it was opened by then and not resolved yet. Several check runs at one moment
    (a mapping re-check) count once.
    """
    dims = ", ".join(f"('{d}', {i})" for i, d in enumerate(DIMENSIONS))
    return store.frame(
        f"""WITH runs AS (SELECT DISTINCT started_at AS checked_at FROM check_runs WHERE realm_id = $realm),
            ex AS (
              SELECT e.dimension, e.entity, e.record_id, e.opened_at, e.resolved_at, e.status, e.money AS amount
              FROM {exceptions()} e),
            open_at AS (
              SELECT r.checked_at, x.dimension, x.entity, x.record_id, any_value(x.amount) AS amount
              FROM runs r JOIN ex x ON x.opened_at <= r.checked_at
                   AND (x.resolved_at IS NULL OR x.resolved_at > r.checked_at)
              GROUP BY ALL),
            per AS (SELECT checked_at, dimension, count(*) AS records, sum(amount) AS dollars FROM open_at GROUP BY ALL)
            SELECT r.checked_at, d.dimension, coalesce(p.records, 0) AS records,
                   coalesce(p.dollars, 0)::DECIMAL(18,2) AS dollars
            FROM runs r CROSS JOIN (VALUES {dims}) d(dimension, ord)
            LEFT JOIN per p ON p.checked_at = r.checked_at AND p.dimension = d.dimension
            ORDER BY r.checked_at, d.ord""",
        {"realm": realm_id},
    )


def first_time_right(store: Store, realm_id: str, bucket: str = "day") -> pl.DataFrame:
    """Per period and entity: record versions first sent then, and how many QuickBooks accepted at once.

    The first attempt is a version's first create or update that reached a verdict (an attempt held back while the
    connection was down does not count).
    """
    unit = _bucket(bucket)
    return store.frame(
        f"""WITH firsts AS (
              SELECT entity, record_id, version, arg_min(outcome, attempt_id) AS outcome, min(started_at) AS first_at
              FROM sync_attempts
              WHERE realm_id = $realm AND operation IN ('create', 'update') AND outcome <> 'authorization'
              GROUP BY ALL)
            SELECT date_trunc('{unit}', first_at) AS period, entity, count(*) AS first_attempts,
                   count(*) FILTER (WHERE outcome = 'accepted') AS right_first_time,
                   round(count(*) FILTER (WHERE outcome = 'accepted') / count(*), 4) AS rate
            FROM firsts GROUP BY ALL ORDER BY period, entity""",
        {"realm": realm_id},
    )


def retry_success(store: Store, realm_id: str, bucket: str = "day") -> pl.DataFrame:
    """Per period and dimension of the failure retried: attempts that followed a failed one, and how many worked.

    A look-up that finds the record in QuickBooks after an unknown outcome counts as a successful retry.
    """
    unit = _bucket(bucket)
    return store.frame(
        f"""WITH a AS (
              SELECT started_at, outcome,
                     lag(outcome) OVER w AS prev_outcome, lag(coalesce(dimension, 'transport')) OVER w AS prev_dimension
              FROM sync_attempts WHERE realm_id = $realm AND outcome <> 'authorization'
              WINDOW w AS (PARTITION BY entity, record_id, version ORDER BY attempt_id))
            SELECT date_trunc('{unit}', started_at) AS period, prev_dimension AS dimension, count(*) AS retries,
                   count(*) FILTER (WHERE outcome = 'accepted') AS succeeded,
                   round(count(*) FILTER (WHERE outcome = 'accepted') / count(*), 4) AS rate
            FROM a WHERE prev_outcome IS NOT NULL AND prev_outcome <> 'accepted'
            GROUP BY ALL ORDER BY period, dimension""",
        {"realm": realm_id},
    )


def time_to_resolve(store: Store, realm_id: str) -> dict[str, pl.DataFrame]:
    """Hours from opening to resolution of resolved exceptions, by dimension and by owner (a person or a role)."""

    def by(expr: str, name: str) -> pl.DataFrame:
        return store.frame(
            f"""SELECT {expr} AS {name}, count(*) FILTER (WHERE status = 'resolved') AS resolved,
                       round(median(hours) FILTER (WHERE status = 'resolved'), 1) AS median_hours,
                       round(quantile_cont(hours, 0.9) FILTER (WHERE status = 'resolved'), 1) AS p90_hours,
                       round(avg(hours) FILTER (WHERE status = 'resolved'), 1) AS mean_hours,
                       count(*) FILTER (WHERE status <> 'resolved') AS still_open
                FROM (SELECT *, date_diff('second', opened_at, resolved_at) / 3600.0 AS hours FROM exceptions
                      WHERE realm_id = $realm)
                GROUP BY 1 ORDER BY resolved DESC, 1""",
            {"realm": realm_id},
        )

    return {"dimension": by("dimension", "dimension"), "owner": by("coalesce(owner, owner_role)", "owner")}


def top_error_codes(store: Store, realm_id: str, limit: int = 10) -> pl.DataFrame:
    """The QuickBooks error codes (or HTTP statuses, or transport failures) behind the most failed attempts."""
    return store.frame(
        """SELECT coalesce(qbo_code, CASE WHEN http_status IS NOT NULL THEN 'HTTP ' || http_status END, reason) AS code,
                  any_value(http_status) AS http_status, mode(coalesce(dimension, 'transport')) AS dimension,
                  mode(reason) AS reason, count(*) AS attempts, count(DISTINCT (entity, record_id)) AS records,
                  arg_max(coalesce(message, reason), attempt_id) AS message, arg_max(detail, attempt_id) AS detail,
                  min(started_at) AS first_seen, max(started_at) AS last_seen
           FROM sync_attempts WHERE realm_id = $realm AND outcome <> 'accepted'
           GROUP BY 1 ORDER BY attempts DESC, code LIMIT $limit""",
        {"realm": realm_id, "limit": limit},
    )


def recurring_offenders(store: Store, realm_id: str, min_failures: int = 2, limit: int = 20) -> pl.DataFrame:
    """Vendors, customers and reference values (items, accounts, tax codes, classes, payment methods) behind
    repeated failures: records they held back, in how many check runs, the dollars, and whether it is still open.

    A reference value counts the records its missing or stale mapping blocked across all check runs; a vendor or
    customer counts the exceptions on its own record and on its documents.
    """
    return store.frame(
        f"""WITH names AS (
              SELECT 'vendor' AS kind, vendor_id AS value, name FROM cur_vendors WHERE realm_id = $realm
              UNION ALL SELECT 'customer', customer_id, name FROM cur_customers WHERE realm_id = $realm
              UNION ALL SELECT 'item', item_sku, name FROM cur_items WHERE realm_id = $realm
              UNION ALL SELECT 'account', account_code, name FROM cur_accounts WHERE realm_id = $realm)
            SELECT o.kind, o.value, n.name, o.failures, o.records, o.runs,
                   coalesce(o.dollars, 0)::DECIMAL(18,2) AS dollars, o.last_seen, o.open_now, o.reason
            FROM {offenders()} o
            LEFT JOIN names n USING (kind, value)
            WHERE o.failures >= $min
            ORDER BY o.records DESC, dollars DESC, o.kind, o.value, o.failures DESC, o.reason LIMIT $limit""",
        {"realm": realm_id, "min": min_failures, "limit": limit},
    )


def throughput(store: Store, realm_id: str) -> pl.DataFrame:
    """Per sync run: what was sent and how it ended, how long it took, and records per minute."""
    return store.frame(
        """SELECT run_id, started_at, trigger, status, planned, sent, accepted, rejected, duplicate,
                  "authorization", throttled, transport, ambiguous, held, linked, round(seconds, 2) AS seconds,
                  CASE WHEN seconds > 0 THEN round(sent / seconds * 60, 1) END AS per_minute
           FROM sync_runs WHERE realm_id = ? AND finished_at IS NOT NULL ORDER BY run_id""",
        [realm_id],
    )
