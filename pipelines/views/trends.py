"""Read models for the Trends page (analysts): why failures happen, from the queue, attempts, runs and exceptions.

Records and dollars blocked per day or week (open, newly blocked, freed), what blocks them now by cause, first-time
right and retry success from the attempts, time to resolve from the exceptions, QuickBooks' answers, the vendors,
customers and reference values behind repeated failures, and the sync runs' throughput. A period (a month) narrows
each to the records dated in it.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import polars as pl

from pipelines.catalogue import DIMENSION_GUIDE, catalogue
from pipelines.store import Store
from pipelines.views.health import blocked_series, causes
from pipelines.views.period import ALL, period_bounds
from pipelines.views.read_model import facts, offenders

__all__ = [
    "BUCKETS",
    "OUTCOME_DIMENSION",
    "blocked_by_cause",
    "first_time_right",
    "flow",
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


def _in_period(period: str, alias: str) -> tuple[str, dict]:
    """A join that keeps the rows of records dated in the period (none for all periods), and its parameters."""
    if period == ALL:
        return "", {}
    start, end = period_bounds(period)
    join = f"""JOIN {facts()} pf ON pf.entity = {alias}.entity AND pf.record_id = {alias}.record_id
               AND pf.txn_date >= $start AND pf.txn_date < $end"""
    return join, {"start": start, "end": end}


def flow(
    intervals: pl.DataFrame, queue: pl.DataFrame, now: datetime, bucket: str = "day", weeks: int = 6
) -> pl.DataFrame:
    """Per day or week of the last `weeks` weeks: records (and dollars) newly blocked in it, freed in it, and blocked
    at its end (`health.blocked_intervals`; the last bucket ends now, on the queue's numbers)."""
    _bucket(bucket)
    now = now.astimezone(UTC)
    step = 1 if bucket == "day" else 7
    count = weeks * 7 // step
    series = blocked_series(intervals, queue, now, days=weeks * 7)
    open_at = {row["at"]: row for row in series.iter_rows(named=True)}
    data = intervals.with_columns(pl.col(c).dt.convert_time_zone("UTC") for c in ("since", "until"))
    rows = []
    for i in range(count):
        end = now - timedelta(days=step * (count - 1 - i))
        start = end - timedelta(days=step)
        new = data.filter((pl.col("since") > pl.lit(start)) & (pl.col("since") <= pl.lit(end)))
        freed = data.filter((pl.col("until") > pl.lit(start)) & (pl.col("until") <= pl.lit(end)))
        point = open_at.get(end, {"records": 0, "dollars": Decimal(0)})
        rows.append(
            {
                "period": start,
                "end": end,
                "open_records": point["records"],
                "open_dollars": point["dollars"],
                "new_records": new.height,
                "new_dollars": new["amount"].sum() or Decimal(0),
                "freed_records": freed.height,
                "freed_dollars": freed["amount"].sum() or Decimal(0),
            }
        )
    schema: dict[str, pl.DataType] = {
        "period": pl.Datetime("us", "UTC"), "end": pl.Datetime("us", "UTC"), "open_records": pl.Int64(),
        "open_dollars": pl.Decimal(18, 2), "new_records": pl.Int64(), "new_dollars": pl.Decimal(18, 2),
        "freed_records": pl.Int64(), "freed_dollars": pl.Decimal(18, 2),
    }  # fmt: skip
    return pl.DataFrame(rows, schema=schema)


def blocked_by_cause(queue: pl.DataFrame) -> pl.DataFrame:
    """What blocks the scope's records now, by cause (the Health page's causes), with the kind of cause's title."""
    titles = {d: g.title for d, g in DIMENSION_GUIDE.items()}
    return causes(queue).with_columns(
        pl.col("dimension").replace_strict(titles, default=pl.col("dimension")).alias("kind")
    )


def within(frame: pl.DataFrame, column: str, window: tuple[datetime, datetime] | None) -> pl.DataFrame:
    """The rows whose `column` falls in the window (a brushed time range); all rows without one."""
    if window is None or frame.is_empty():
        return frame
    start, end = (round(moment.timestamp() * 1_000_000) for moment in window)  # any zone: compare instants
    return frame.filter(pl.col(column).dt.epoch("us").is_between(start, end))


def first_time_right(store: Store, realm_id: str, bucket: str = "day", period: str = ALL) -> pl.DataFrame:
    """Per period and entity: record versions first sent then, and how many QuickBooks accepted at once.

    The first attempt is a version's first create or update that reached a verdict (an attempt held back while the
    connection was down does not count).
    """
    unit = _bucket(bucket)
    join, params = _in_period(period, "a")
    return store.frame(
        f"""WITH firsts AS (
              SELECT a.entity, a.record_id, a.version, arg_min(a.outcome, a.attempt_id) AS outcome,
                     min(a.started_at) AS first_at
              FROM sync_attempts a {join}
              WHERE a.realm_id = $realm AND a.operation IN ('create', 'update') AND a.outcome <> 'authorization'
              GROUP BY ALL)
            SELECT date_trunc('{unit}', first_at) AS period, entity, count(*) AS first_attempts,
                   count(*) FILTER (WHERE outcome = 'accepted') AS right_first_time,
                   round(count(*) FILTER (WHERE outcome = 'accepted') / count(*), 4) AS rate
            FROM firsts GROUP BY ALL ORDER BY period, entity""",
        {"realm": realm_id, **params},
    )


def retry_success(store: Store, realm_id: str, bucket: str = "day", period: str = ALL) -> pl.DataFrame:
    """Per period and dimension of the failure retried: attempts that followed a failed one, and how many worked.

    A look-up that finds the record in QuickBooks after an unknown outcome counts as a successful retry.
    """
    unit = _bucket(bucket)
    join, params = _in_period(period, "x")
    return store.frame(
        f"""WITH a AS (
              SELECT x.started_at, x.outcome, lag(x.outcome) OVER w AS prev_outcome,
                     lag(coalesce(x.dimension, 'transport')) OVER w AS prev_dimension
              FROM sync_attempts x {join} WHERE x.realm_id = $realm AND x.outcome <> 'authorization'
              WINDOW w AS (PARTITION BY x.entity, x.record_id, x.version ORDER BY x.attempt_id))
            SELECT date_trunc('{unit}', started_at) AS period, prev_dimension AS dimension, count(*) AS retries,
                   count(*) FILTER (WHERE outcome = 'accepted') AS succeeded,
                   round(count(*) FILTER (WHERE outcome = 'accepted') / count(*), 4) AS rate
            FROM a WHERE prev_outcome IS NOT NULL AND prev_outcome <> 'accepted'
            GROUP BY ALL ORDER BY period, dimension""",
        {"realm": realm_id, **params},
    )


def time_to_resolve(store: Store, realm_id: str, period: str = ALL) -> dict[str, pl.DataFrame]:
    """Days from opening to resolution of resolved exceptions, by kind of problem and by owner (a person), slowest
    median first; with how many are still open."""
    join, params = _in_period(period, "e")

    def by(expr: str, name: str) -> pl.DataFrame:
        return store.frame(
            f"""SELECT {expr} AS {name}, count(*) FILTER (WHERE status = 'resolved') AS resolved,
                       round(median(days) FILTER (WHERE status = 'resolved'), 1) AS median_days,
                       round(quantile_cont(days, 0.9) FILTER (WHERE status = 'resolved'), 1) AS p90_days,
                       round(avg(days) FILTER (WHERE status = 'resolved'), 1) AS mean_days,
                       count(*) FILTER (WHERE status <> 'resolved') AS still_open
                FROM (SELECT e.*, date_diff('second', e.opened_at, e.resolved_at) / 86400.0 AS days
                      FROM exceptions e {join} WHERE e.realm_id = $realm AND e.entity NOT IN ('connection', 'snapshot'))
                GROUP BY 1 ORDER BY median_days DESC NULLS LAST, resolved DESC, 1""",
            {"realm": realm_id, **params},
        )

    titles = {d: g.title for d, g in DIMENSION_GUIDE.items()}
    dimension = by("dimension", "dimension").with_columns(
        pl.col("dimension").replace_strict(titles, default=pl.col("dimension")).alias("kind")
    )
    return {"dimension": dimension, "owner": by("coalesce(owner, owner_role)", "owner")}


def top_error_codes(store: Store, realm_id: str, period: str = ALL, limit: int = 10) -> pl.DataFrame:
    """What QuickBooks answered to the failed attempts: its error code, else the HTTP status, else no answer at all
    (`source` says which), most attempts first; with the reason's title and QuickBooks' last message."""
    join, params = _in_period(period, "a")
    frame = store.frame(
        f"""SELECT CASE WHEN a.qbo_code IS NOT NULL THEN 'QuickBooks code ' || a.qbo_code
                        WHEN a.http_status IS NOT NULL THEN 'HTTP ' || a.http_status
                        ELSE 'no answer' END AS code,
                   CASE WHEN a.qbo_code IS NOT NULL THEN 'QuickBooks error code'
                        WHEN a.http_status IS NOT NULL THEN 'HTTP status' ELSE 'no answer' END AS source,
                   any_value(a.http_status) AS http_status, mode(coalesce(a.dimension, 'transport')) AS dimension,
                   mode(a.reason) AS reason, count(*) AS attempts, count(DISTINCT (a.entity, a.record_id)) AS records,
                   arg_max(a.message, a.attempt_id) AS message,
                   arg_max(a.detail, a.attempt_id) AS detail, min(a.started_at) AS first_seen,
                   max(a.started_at) AS last_seen
            FROM sync_attempts a {join} WHERE a.realm_id = $realm AND a.outcome <> 'accepted'
            GROUP BY 1, 2 ORDER BY attempts DESC, code LIMIT $limit""",
        {"realm": realm_id, "limit": limit, **params},
    )
    words = catalogue().select("reason", "title")
    return frame.join(words, on="reason", how="left", maintain_order="left").with_columns(
        pl.when(pl.col("source") == "no answer")
        .then(pl.col("title").fill_null("QuickBooks did not answer"))
        .otherwise(pl.col("code"))
        .alias("code"),
        pl.col("title").fill_null("Not yet described"),
        pl.coalesce("message", "title", pl.lit("no answer")).alias("message"),
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
