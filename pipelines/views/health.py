"""Read models for the Health page (the close meeting): headline by dimension, states, funnel, period close,
control totals AWRA vs QuickBooks, and the top items to fix. DuckDB aggregates over the store, parametrized."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import polars as pl

from pipelines.catalogue import catalogue, title_of
from pipelines.duplicates import QBO_ENTITY
from pipelines.store import Store
from pipelines.views import read_model
from pipelines.views.metrics import FUNNEL_STAGES, RECORD_FACTS
from pipelines.views.period import ALL, closing_period, period_bounds
from pipelines.views.queue import refresh_queue_model
from pipelines.views.read_model import exceptions, facts, own_params, version
from qbo.faults import CATALOGUE, DIMENSIONS

__all__ = [
    "DIMENSIONS",
    "FUNNEL",
    "RECORD_FACTS",
    "STATES",
    "TRANSACTIONS",
    "as_of",
    "blocked",
    "blocked_intervals",
    "blocked_series",
    "causes",
    "closing_period",
    "connection_badge",
    "control_totals",
    "exceptions",
    "facts",
    "funnel",
    "period_bounds",
    "period_close",
    "prepared",
    "records_by_state",
    "refresh_read_model",
    "top_fixes",
    "version",
    "week_flow",
]

TRANSACTIONS = ("purchase_order", "bill", "invoice", "payment", "bill_payment", "journal_entry")
# Items and accounts are only mapped, never sent: the page counts what the sync moves.
_SENT_ENTITIES = ("vendor", "customer", *TRANSACTIONS)
_NOT_SENT = "('item', 'account')"
STATES = (
    "synced",
    "ready",
    "queued",
    "retry_scheduled",
    "ambiguous",
    "needs_fix",
    "blocked",
    "not_ready",
    "excluded",
)
# The readiness funnel's stages, ending at synced instead of "ready or synced".
FUNNEL = (*FUNNEL_STAGES[:-1], "synced")


def refresh_read_model(store: Store, realm_id: str) -> bool:
    """The read-model tables and the stored open queue at the store's version (the engine calls it after a cycle)."""
    done = read_model.refresh_read_model(store, realm_id)
    return refresh_queue_model(store, realm_id) and done


@contextmanager
def prepared(store: Store, realm_id: str) -> Iterator[None]:
    """The read models of a page, from one state of the store: the read-model tables and the stored queue brought up
    to date first (each a no-op when current), then read_model.prepared's snapshot."""
    if read_model.prepared_realm() is not None:  # already inside a block: its snapshot (or another company's: refused)
        pass
    elif read_model.is_current(store, realm_id):
        refresh_queue_model(store, realm_id)
    else:
        refresh_read_model(store, realm_id)
    with read_model.prepared(store, realm_id):
        yield


def _sql_list(values: tuple[str, ...]) -> str:
    return ", ".join(f"'{v}'" for v in values)


def as_of(store: Store, realm_id: str) -> datetime | None:
    """The engine time of the latest ingest, check or sync run: the moment the page's numbers describe."""
    return store.scalar(
        """SELECT greatest((SELECT max(started_at) FROM check_runs WHERE realm_id = $realm),
                           (SELECT max(started_at) FROM sync_runs WHERE realm_id = $realm),
                           (SELECT max(started_at) FROM ingest_runs WHERE realm_id = $realm))""",
        {"realm": realm_id},
    )


def records_by_state(store: Store, realm_id: str) -> pl.DataFrame:
    """Records the sync moves, per state in the engine's order, with their dollars."""
    order = ", ".join(f"('{s}', {i})" for i, s in enumerate(STATES))
    return store.frame(
        f"""WITH per AS (SELECT state, count(*) AS records, sum(amount) AS dollars FROM {facts()} GROUP BY 1)
            SELECT s.state, coalesce(p.records, 0) AS records, coalesce(p.dollars, 0)::DECIMAL(18,2) AS dollars
            FROM (VALUES {order}) s(state, ord) LEFT JOIN per p USING (state) ORDER BY s.ord""",
        own_params(realm_id),
    )


def connection_badge(store: Store, realm_id: str, now: datetime | None) -> dict:
    """What the connection badge says: a tone (ok, warn, bad, none), a label and one line of detail."""
    conn = store.rows(
        "SELECT status, status_reason, refresh_expires_at, connected_by FROM qbo_connections WHERE realm_id = ?",
        [realm_id],
    )
    run = store.rows(
        """SELECT run_id, started_at, status, sent, accepted FROM sync_runs WHERE realm_id = ?
           ORDER BY run_id DESC LIMIT 1""",
        [realm_id],
    )
    last = (
        f"last sync run {run[0][0]} at {run[0][1]:%Y-%m-%d %H:%M} UTC: {run[0][2]}, {run[0][4]:,} of {run[0][3]:,} "
        "accepted"
        if run
        else "no sync run yet"
    )
    if not conn:
        return {"tone": "none", "status": "not_connected", "label": "QuickBooks not connected", "detail": last}
    status, reason, refresh_expires, by = conn[0]
    if status != "connected":
        why = CATALOGUE[reason].explanation if reason in CATALOGUE else (reason or status)
        return {"tone": "bad", "status": status, "label": "QuickBooks: reconnect needed", "detail": f"{why} {last}"}
    days = (refresh_expires - now).days if refresh_expires and now else None
    tone = "warn" if days is not None and days < 14 else "ok"
    left = f"sign-in valid {days} more days" if days is not None else "sign-in validity unknown"
    return {"tone": tone, "status": status, "label": "QuickBooks connected", "detail": left, "last_run": last}


def funnel(store: Store, realm_id: str) -> pl.DataFrame:
    """Records (and dollars) that pass every stage up to each one, from the source to synced; exclusions left out."""
    last = len(FUNNEL) - 1
    passes = [f"first_fail > {i}" for i in range(last)] + ["first_fail > 98 AND synced"]
    columns = ", ".join(
        f"coalesce(sum(n) FILTER (WHERE {c}), 0) AS r{i}, "
        f"coalesce(sum(amount) FILTER (WHERE {c}), 0)::DECIMAL(18,2) AS d{i}"
        for i, c in enumerate(passes)
    )
    # One pass groups the records by their first failed stage (a dozen groups); the stages add the groups up.
    row = store.frame(
        f"""WITH g AS (
              SELECT r.first_fail, r.state = 'synced' AS synced, count(*) AS n, sum(coalesce(r.amount, 0)) AS amount
              FROM {facts()} r WHERE r.state <> 'excluded' GROUP BY ALL)
            SELECT {columns} FROM g""",
        own_params(realm_id),
    ).row(0, named=True)
    frame = pl.DataFrame(
        {
            "stage_index": list(range(len(FUNNEL))),
            "records": [int(row[f"r{i}"]) for i in range(len(FUNNEL))],
            "dollars": [row[f"d{i}"] for i in range(len(FUNNEL))],
        },
        schema={"stage_index": pl.Int64, "records": pl.Int64(), "dollars": pl.Decimal(18, 2)},
    )
    return frame.with_columns(
        pl.col("stage_index").replace_strict(dict(enumerate(FUNNEL)), return_dtype=pl.String).alias("stage")
    ).select("stage_index", "stage", "records", "dollars")


def _bounds(period: str) -> tuple[date, date]:
    """A month's [first day, next month's first day), or every date for all periods."""
    return (date(1, 1, 1), date(9999, 12, 31)) if period == ALL else period_bounds(period)


def _period_records() -> str:
    """Every transaction dated in [$start, $end) with its amount and whether it is synced, excluded or open."""
    return f"""
    SELECT f.entity, f.record_id, coalesce(f.amount, 0) AS amount,
           CASE f.state WHEN 'synced' THEN 'synced' WHEN 'excluded' THEN 'excluded' ELSE 'open' END AS status
    FROM {facts()} f
    WHERE f.txn_date >= $start AND f.txn_date < $end AND f.entity IN ({_sql_list(TRANSACTIONS)})"""


@contextmanager
def _working(store: Store, name: str, sql: str, params: dict) -> Iterator[str]:
    """A temporary table of this thread's cursor for one read model's several queries; dropped after."""
    store.execute(f"CREATE OR REPLACE TEMP TABLE {name} AS {sql}", params)
    try:
        yield name
    finally:
        store.execute(f"DROP TABLE IF EXISTS temp.{name}")


def period_close(store: Store, realm_id: str, period: str) -> dict:
    """Every transaction dated in the month (or in any period): synced, excluded with a reason, or still open.

    Returns `summary` (counts, dollars, percent complete) and `by_entity`; what holds the open ones, and who owns
    it, is the action queue's (`blocked`, `causes`).
    """
    start, end = _bounds(period)
    by_entity = store.frame(
        f"""WITH recs AS ({_period_records()})
            SELECT entity, count(*) AS records, count(*) FILTER (WHERE status = 'synced') AS synced,
                   count(*) FILTER (WHERE status = 'excluded') AS excluded,
                   count(*) FILTER (WHERE status = 'open') AS open,
                   sum(amount)::DECIMAL(18,2) AS dollars,
                   coalesce(sum(amount) FILTER (WHERE status = 'open'), 0)::DECIMAL(18,2) AS open_dollars
            FROM recs GROUP BY 1 ORDER BY 1""",
        own_params(realm_id, start=start, end=end),
    )
    undated = store.scalar(
        f"""SELECT count(*) FROM {facts()} f
            WHERE f.txn_date IS NULL AND f.entity IN ({_sql_list(TRANSACTIONS)})
              AND f.state NOT IN ('synced', 'excluded')""",
        own_params(realm_id),
    )
    total = int(by_entity["records"].sum()) if by_entity.height else 0
    done = int(by_entity["synced"].sum()) + int(by_entity["excluded"].sum()) if by_entity.height else 0
    summary = {
        "period": period,
        "records": total,
        "synced": int(by_entity["synced"].sum()) if total else 0,
        "excluded": int(by_entity["excluded"].sum()) if total else 0,
        "open": total - done,
        "dollars": by_entity["dollars"].sum() if total else Decimal("0.00"),
        "open_dollars": by_entity["open_dollars"].sum() if total else Decimal("0.00"),
        "percent_complete": round(100.0 * done / total, 1) if total else None,
        "undated_open": int(undated or 0),
    }
    return {"summary": summary, "by_entity": by_entity}


# Drift the queue already holds (records not sent yet, or excluded, or whose QuickBooks object was deleted, voided or
# changed there and that have an owned exception for it); anything else is for someone to investigate.
_QUEUED_DRIFT = {
    "provider_rejection.deleted_in_qbo": "deleted in QuickBooks, in the queue",
    "provider_rejection.voided_in_qbo": "voided in QuickBooks, in the queue",
    "provider_rejection.changed_in_qbo": "changed in QuickBooks, in the queue",
}
_EXPECTED = {
    "excluded by a person",
    *(f"not in QuickBooks yet: {s.replace('_', ' ')}" for s in STATES if s not in ("synced", "excluded")),
    *_QUEUED_DRIFT.values(),
}


def control_totals(store: Store, realm_id: str, period: str, limit: int = 500) -> dict:
    """Per entity for the month: AWRA count and sum against QuickBooks count and sum, and what explains any drift.

    QuickBooks' side is the pulled mirror (`qbo_objects`, not deleted, dated in the month); the pairs come from
    the external references. Every record or object that is on one side only, or whose amounts differ, is an
    explaining row with its effect on the count and on the sum, so the effects add up to the drift exactly.
    Returns `totals` (per entity), `reasons` (effects per entity and kind of explanation) and `explain` (the
    explaining rows, biggest effect first, at most `limit`).
    """
    start, end = _bounds(period)
    ents = ", ".join(f"('{e}', '{QBO_ENTITY[e]}')" for e in TRANSACTIONS)
    queued = ", ".join(f"('{r}', '{words}')" for r, words in _QUEUED_DRIFT.items())
    rows = f"""
      WITH ents(entity, qbo_entity) AS (VALUES {ents}),
      a AS (
        SELECT f.entity, f.record_id, coalesce(f.amount, 0) AS amount, f.txn_date, f.state, f.current_version,
               f.link_entity, f.link_id, f.synced_version, f.excluded_because, f.excluded_by, f.p_reason, f.p_detail
        FROM {facts()} f
        WHERE f.txn_date >= $start AND f.txn_date < $end AND f.entity IN (SELECT entity FROM ents)),
      q AS (
        SELECT o.entity AS qbo_entity, o.qbo_id, coalesce(o.total_amt, 0) AS amount, o.doc_number, o.marker
        FROM qbo_objects o
        WHERE o.realm_id = $realm AND NOT o.deleted AND o.txn_date >= $start AND o.txn_date < $end
          AND o.entity IN (SELECT qbo_entity FROM ents)),
      pairs AS (
        SELECT coalesce(ax.entity, e.entity) AS entity, ax.record_id, ax.amount AS awra_amount, ax.state,
               ax.current_version, ax.synced_version, ax.link_id, q.qbo_id, q.amount AS qbo_amount, q.doc_number,
               q.marker, coalesce(ax.link_entity, q.qbo_entity) AS qbo_entity, ax.excluded_because, ax.excluded_by,
               ax.p_reason, ax.p_detail
        FROM a ax FULL OUTER JOIN q ON q.qbo_entity = ax.link_entity AND q.qbo_id = ax.link_id
        LEFT JOIN ents e ON e.qbo_entity = q.qbo_entity),
      -- what only the one-sided rows need, looked up for those rows alone (the big tables are probed, not built)
      lo AS (
        SELECT o.entity, o.qbo_id, o.deleted, o.txn_date FROM qbo_objects o
        SEMI JOIN (SELECT qbo_entity, link_id FROM pairs WHERE qbo_id IS NULL AND link_id IS NOT NULL) k
          ON k.qbo_entity = o.entity AND k.link_id = o.qbo_id
        WHERE o.realm_id = $realm),
      rx AS (
        SELECT x.entity, x.record_id, x.qbo_entity, x.qbo_id, rr.removed_at
        FROM external_refs x SEMI JOIN (SELECT qbo_entity, qbo_id FROM pairs WHERE record_id IS NULL) k
          ON k.qbo_entity = x.qbo_entity AND k.qbo_id = x.qbo_id
        LEFT JOIN records rr ON rr.realm_id = x.realm_id AND rr.entity = x.entity AND rr.record_id = x.record_id
        WHERE x.realm_id = $realm AND x.entity IN (SELECT entity FROM ents)),
      -- a record whose QuickBooks object was deleted, voided or changed there, with its open exception and owner
      dx AS (
        SELECT e.entity, e.record_id, any_value(e.reason) AS reason, any_value(q.queued) AS queued,
               any_value(coalesce(e.owner, e.owner_role)) AS owner, any_value(e.detail) AS detail
        FROM exceptions e JOIN (VALUES {queued}) q(reason, queued) USING (reason)
        WHERE e.realm_id = $realm AND e.status <> 'resolved' GROUP BY ALL),
      explained AS (
        SELECT pr.*,
               (pr.record_id IS NOT NULL)::INTEGER - (pr.qbo_id IS NOT NULL)::INTEGER AS count_effect,
               coalesce(pr.awra_amount, 0) - coalesce(pr.qbo_amount, 0) AS amount_effect,
               CASE
                 WHEN dx.queued IS NOT NULL THEN dx.queued
                 WHEN pr.record_id IS NOT NULL AND pr.qbo_id IS NOT NULL THEN
                   CASE WHEN pr.current_version > pr.synced_version THEN 'changed in AWRA since the sync'
                        ELSE 'amount differs in QuickBooks' END
                 WHEN pr.record_id IS NOT NULL AND pr.link_id IS NULL THEN
                   CASE pr.state WHEN 'excluded' THEN 'excluded by a person'
                        ELSE 'not in QuickBooks yet: ' || replace(pr.state, '_', ' ') END
                 WHEN pr.record_id IS NOT NULL AND lo.qbo_id IS NULL THEN 'linked object not in the pulled data'
                 WHEN pr.record_id IS NOT NULL AND lo.deleted THEN 'deleted in QuickBooks'
                 WHEN pr.record_id IS NOT NULL THEN 'QuickBooks dates it in another month'
                 WHEN rx.record_id IS NULL AND pr.marker IS NOT NULL THEN 'carries our marker but is not linked'
                 WHEN rx.record_id IS NULL THEN 'only in QuickBooks (no AWRA record)'
                 WHEN rx.removed_at IS NOT NULL THEN 'its AWRA record was removed'
                 ELSE 'AWRA dates it in another month' END AS explanation,
               CASE
                 WHEN dx.queued IS NOT NULL THEN dx.reason || ' (owner ' || dx.owner || '): ' || dx.detail
                 WHEN pr.record_id IS NOT NULL AND pr.qbo_id IS NOT NULL THEN
                   'AWRA v' || pr.current_version || ', QuickBooks has v' || pr.synced_version
                 WHEN pr.record_id IS NOT NULL AND pr.link_id IS NULL THEN
                   coalesce(pr.excluded_because || ': ' || pr.excluded_by, pr.p_reason || ': ' || pr.p_detail,
                            'due in the next sync run')
                 WHEN pr.record_id IS NOT NULL THEN
                   lo.entity || ' ' || pr.link_id || coalesce(' dated ' || lo.txn_date, '')
                 WHEN rx.record_id IS NOT NULL THEN rx.entity || ':' || rx.record_id
                 ELSE coalesce(pr.marker, 'DocNumber ' || pr.doc_number, '') END AS detail,
               coalesce(pr.entity || ':' || pr.record_id, rx.entity || ':' || rx.record_id) AS key
        FROM pairs pr
        LEFT JOIN lo ON lo.entity = pr.qbo_entity AND lo.qbo_id = pr.link_id AND pr.qbo_id IS NULL
        LEFT JOIN rx ON rx.qbo_entity = pr.qbo_entity AND rx.qbo_id = pr.qbo_id AND pr.record_id IS NULL
        LEFT JOIN dx ON dx.entity = pr.entity AND dx.record_id = pr.record_id
        )
      SELECT * FROM explained"""
    with _working(store, "hx_explained", rows, {"realm": realm_id, "start": start, "end": end}) as explained:
        totals = store.frame(
            f"""WITH ents(entity, qbo_entity) AS (VALUES {ents})
                SELECT e.entity, e.qbo_entity,
                       count(x.record_id) AS awra_count, coalesce(sum(x.awra_amount), 0)::DECIMAL(18,2) AS awra_sum,
                       count(x.qbo_id) AS qbo_count, coalesce(sum(x.qbo_amount), 0)::DECIMAL(18,2) AS qbo_sum
                FROM ents e LEFT JOIN {explained} x USING (entity) GROUP BY ALL ORDER BY e.entity"""
        ).with_columns(
            (pl.col("awra_count") - pl.col("qbo_count")).alias("count_drift"),
            (pl.col("awra_sum") - pl.col("qbo_sum")).alias("sum_drift"),
        )
        reasons = store.frame(
            f"""SELECT entity, explanation, count(*) AS rows, sum(count_effect) AS count_effect,
                       sum(amount_effect)::DECIMAL(18,2) AS amount_effect
                FROM {explained} WHERE count_effect <> 0 OR amount_effect <> 0
                GROUP BY ALL ORDER BY entity, abs(sum(amount_effect)) DESC, explanation"""
        )
        explain_rows = store.frame(
            f"""SELECT entity, key, qbo_entity, coalesce(qbo_id, link_id) AS qbo_id, doc_number,
                       awra_amount::DECIMAL(18,2) AS awra_amount, qbo_amount::DECIMAL(18,2) AS qbo_amount,
                       count_effect, amount_effect::DECIMAL(18,2) AS amount_effect, explanation, detail
                FROM {explained} WHERE count_effect <> 0 OR amount_effect <> 0
                ORDER BY abs(amount_effect) DESC, entity, key, qbo_id LIMIT $limit""",
            {"limit": limit},
        )
    explain_rows = explain_rows.with_columns(pl.col("detail").map_elements(_worded, return_dtype=pl.String))
    reasons = reasons.with_columns(
        pl.col("count_effect").cast(pl.Int64),
        pl.col("explanation").is_in(list(_EXPECTED)).not_().alias("investigate"),
    ).with_columns(pl.when("investigate").then(pl.lit("⚠ investigate")).otherwise(pl.lit("in the queue")).alias("kind"))
    odd = reasons.filter("investigate").group_by("entity").agg(pl.col("rows").sum().alias("to_investigate"))
    totals = (
        totals.join(odd, on="entity", how="left")
        .with_columns(pl.col("to_investigate").fill_null(0), pl.col("sum_drift").cast(pl.Decimal(18, 2)))
        .sort("entity")
    )
    return {"totals": totals, "reasons": reasons, "explain": explain_rows}


_CODE_FIRST = re.compile(r"^([a-z_]+\.[a-z_]+)(?= \(owner )")


def _worded(detail: str | None) -> str:
    """A drift's detail in words: the queue item's reason code (first, before its owner) becomes its title."""
    return _CODE_FIRST.sub(lambda found: title_of(found.group(1)), detail or "")


def top_fixes(queue: pl.DataFrame, limit: int = 10) -> pl.DataFrame:
    """The top of the action queue for the same period, in the queue's own order (one ranking)."""
    return queue.head(limit)


def _records(queue: pl.DataFrame) -> pl.DataFrame:
    """The scope's blocked records, once each, with their cause and money (counted once per document chain)."""
    return queue.filter(pl.col("in_scope")).unique(["entity", "record_id"], keep="first", maintain_order=True)


def blocked(queue: pl.DataFrame) -> dict:
    """What is blocked in the queue's scope: records and dollars, in total and per kind of cause (each record in one,
    its cause's, so the kinds add up to the total), and whether the connection itself is down."""
    records = _records(queue)
    dims = (
        pl.DataFrame({"dimension": list(DIMENSIONS)})
        .join(
            records.group_by(pl.col("cause_dimension").alias("dimension")).agg(
                pl.len().alias("records"), pl.col("counted").sum().alias("dollars")
            ),
            on="dimension",
            how="left",
        )
        .with_columns(pl.col("records").fill_null(0), pl.col("dollars").fill_null(0).cast(pl.Decimal(18, 2)))
    )
    connection = queue.filter(pl.col("entity") == "connection")
    return {
        "records": records.height,
        "dollars": records["counted"].sum() if records.height else 0,
        "items": queue.height,
        "dimensions": dims,
        "connection_problem": connection.height > 0,
    }


def causes(queue: pl.DataFrame) -> pl.DataFrame:
    """Why, in business terms: the scope's blocked records grouped by their cause (their own problem, or the one of
    the record they wait on), biggest dollars first, with who owns it and who decides. They add up to `blocked`."""
    records = _records(queue)
    if records.is_empty():
        return pl.DataFrame(
            schema={"cause_reason": pl.String, "cause": pl.String, "dimension": pl.String, "records": pl.UInt32,
                    "dollars": pl.Decimal(18, 2), "owner": pl.String, "owners": pl.UInt32, "decides": pl.String}
        )  # fmt: skip
    decides = catalogue().select(pl.col("reason").alias("cause_reason"), "decides")
    return (
        records.group_by("cause_reason")
        .agg(
            pl.col("cause").first(),
            pl.col("cause_dimension").first().alias("dimension"),
            pl.len().alias("records"),
            pl.col("counted").sum().cast(pl.Decimal(18, 2)).alias("dollars"),
            pl.col("cause_owner").drop_nulls().mode().sort().first().alias("owner"),
            pl.col("cause_owner").n_unique().alias("owners"),
        )
        .join(decides, on="cause_reason", how="left")
        .with_columns(pl.col("decides").fill_null("finance"))
        .sort(["dollars", "records", "cause"], descending=[True, True, False])
    )


def blocked_intervals(store: Store, realm_id: str, period: str) -> pl.DataFrame:
    """Per record of the scope that has ever had an item: when it was first blocked (`since`) and when it stopped
    (`until`, None while blocked), with its amount. A record blocked, freed and blocked again counts as blocked
    throughout (its item reopens; the queue keeps one row per cause)."""
    start, end = _bounds(period)
    return store.frame(
        f"""WITH ex AS (
              SELECT entity, record_id, min(opened_at) AS since,
                     CASE WHEN bool_or(status <> 'resolved') THEN NULL ELSE max(resolved_at) END AS until
              FROM exceptions WHERE realm_id = $realm AND entity NOT IN ('connection', 'snapshot') GROUP BY ALL)
            SELECT ex.entity, ex.record_id, ex.since, ex.until, coalesce(f.amount, 0)::DECIMAL(18,2) AS amount
            FROM ex JOIN {facts()} f USING (entity, record_id)
            WHERE {"TRUE" if period == ALL else "f.txn_date >= $start AND f.txn_date < $end"}""",
        {"realm": realm_id, **({} if period == ALL else {"start": start, "end": end})},
    )


def _money_now(intervals: pl.DataFrame, queue: pl.DataFrame) -> pl.DataFrame:
    """The intervals with each record's money: for a record blocked now, what the queue counts for it (once per
    document chain); for one freed since, its own amount."""
    now = _records(queue).select("entity", "record_id", "counted")
    return (
        intervals.join(now, on=["entity", "record_id"], how="left")
        .with_columns(
            pl.when(pl.col("until").is_null()).then(pl.col("counted")).otherwise(pl.col("amount"))
            .fill_null(pl.col("amount")).cast(pl.Decimal(18, 2)).alias("money"),
        )
        .with_columns(pl.col(c).dt.convert_time_zone("UTC") for c in ("since", "until"))
    )  # fmt: skip


def blocked_series(intervals: pl.DataFrame, queue: pl.DataFrame, end: datetime, days: int = 42) -> pl.DataFrame:
    """Blocked records and dollars at each of the `days` days before `end`, and at `end` itself (the last point is
    the page's headline: the same records, the same money)."""
    end = end.astimezone(UTC)
    data = _money_now(intervals, queue)
    back = lambda col: (pl.lit(end) - pl.col(col)).dt.total_seconds() / 86400  # noqa: E731
    # Point j (0..days) is `end` minus (days - j) days: a record counts from the first point at or after `since`
    # to the last one before `until`; a difference per point, summed up.
    marks = data.with_columns(
        (pl.lit(days) - back("since")).ceil().clip(0, days + 1).cast(pl.Int64).alias("first"),
        pl.when(pl.col("until").is_null())
        .then(pl.lit(days + 1))
        .otherwise((pl.lit(days) - back("until")).ceil().clip(0, days + 1))
        .cast(pl.Int64)
        .alias("after"),
    ).filter(pl.col("first") < pl.col("after"))
    steps = [0] * (days + 2)
    money = [Decimal(0)] * (days + 2)
    for column, sign in (("first", 1), ("after", -1)):
        for j, n, dollars in marks.group_by(column).agg(pl.len(), pl.col("money").sum()).iter_rows():
            steps[j] += sign * n
            money[j] += sign * Decimal(dollars or 0)
    rows, records, dollars = [], 0, Decimal(0)
    for j in range(days + 1):
        records, dollars = records + steps[j], dollars + money[j]
        rows.append({"at": end - timedelta(days=days - j), "records": records, "dollars": dollars})
    now = data.filter(pl.col("until").is_null())  # at `end`: exactly what is blocked now, opened when it may
    rows[-1].update(records=now.height, dollars=Decimal(now["money"].sum() or 0))
    schema: dict[str, pl.DataType] = {
        "at": pl.Datetime("us", "UTC"),
        "records": pl.Int64(),
        "dollars": pl.Decimal(18, 2),
    }
    return pl.DataFrame(rows, schema=schema)


def week_flow(intervals: pl.DataFrame, queue: pl.DataFrame, end: datetime) -> dict:
    """This week against the week before: records newly blocked, records freed, their dollars, and items escalated.
    Blocked now = blocked a week ago + new - freed (in records)."""
    end = end.astimezone(UTC)
    week = end - timedelta(days=7)
    data = _money_now(intervals, queue)
    now_open = pl.col("until").is_null()
    then_open = (pl.col("since") <= pl.lit(week)) & (pl.col("until").is_null() | (pl.col("until") > pl.lit(week)))
    new = data.filter(now_open & ~then_open)
    freed = data.filter(~now_open & then_open)
    escalated = queue.filter(pl.col("escalated_at") > pl.lit(week)) if queue.height else queue
    return {
        "new_records": new.height,
        "new_dollars": new["money"].sum() or 0,
        "freed_records": freed.height,
        "freed_dollars": freed["money"].sum() or 0,
        "week_ago_records": data.filter(then_open).height,
        "escalated": escalated.height,
        "since": week,
    }
