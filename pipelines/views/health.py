"""Read models for the Health page (the close meeting): headline by dimension, states, funnel, period close,
control totals AWRA vs QuickBooks, and the top items to fix. DuckDB aggregates over the store, parametrized."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal

import polars as pl

from pipelines.catalogue import explain
from pipelines.duplicates import QBO_ENTITY
from pipelines.store import Store
from pipelines.views.metrics import FUNNEL_STAGES, RECORD_FACTS
from pipelines.views.read_model import (
    exceptions,
    facts,
    own_params,
    prepared,
    primary,
    refresh_read_model,
    stake,
    version,
)
from qbo.faults import CATALOGUE, DIMENSIONS

__all__ = [
    "DIMENSIONS",
    "FUNNEL",
    "RECORD_FACTS",
    "STATES",
    "TRANSACTIONS",
    "as_of",
    "connection_badge",
    "control_totals",
    "funnel",
    "exceptions",
    "facts",
    "headline",
    "period_bounds",
    "period_close",
    "prepared",
    "refresh_read_model",
    "primary",
    "records_by_state",
    "reference_time",
    "top_fixes",
    "version",
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


def reference_time(store: Store, realm_id: str, basis: str, now: datetime) -> tuple[datetime, str]:
    """When "change since" starts: a week before `now`, or the last close (QuickBooks' book close date)."""
    if basis == "week":
        return now - timedelta(days=7), "since last week"
    if basis != "close":
        raise ValueError(f"basis must be 'week' or 'close', not {basis!r}")
    closed = store.scalar("SELECT book_close_date FROM qbo_company WHERE realm_id = ?", [realm_id])
    if closed is None:  # no close date in QuickBooks: the start of the month
        start = datetime.combine(now.date().replace(day=1), time(), tzinfo=UTC)
        return start, f"since {start:%Y-%m-%d}"
    return datetime.combine(closed + timedelta(days=1), time(), tzinfo=UTC), f"since the close of {closed:%Y-%m-%d}"


def headline(store: Store, realm_id: str, since: datetime) -> pl.DataFrame:
    """Per dimension (all six, in order) and in total: records and dollars blocked now and at `since`.

    A record counts once per dimension (and once in the total) however many exceptions it has; its dollars are its
    AWRA amount. The connection itself is an item of the authorization dimension without records.
    """
    dims = ", ".join(f"('{d}', {i})" for i, d in enumerate(DIMENSIONS))
    return store.frame(
        f"""WITH ex AS (
              SELECT e.dimension, e.entity, e.record_id, any_value(e.money) AS amount,
                     bool_or(e.status <> 'resolved') AS open_now,
                     bool_or(e.opened_at <= $since AND (e.resolved_at IS NULL OR e.resolved_at > $since)) AS open_then
              FROM {exceptions()} e GROUP BY ALL),
            per_dim AS (
              SELECT dimension,
                     count(*) FILTER (WHERE open_now AND entity <> 'connection') AS records,
                     coalesce(sum(amount) FILTER (WHERE open_now), 0) AS dollars,
                     count(*) FILTER (WHERE open_now AND entity = 'connection') AS connection,
                     count(*) FILTER (WHERE open_then AND entity <> 'connection') AS records_then,
                     coalesce(sum(amount) FILTER (WHERE open_then), 0) AS dollars_then
              FROM ex GROUP BY 1),
            per_record AS (
              SELECT entity, record_id, any_value(amount) AS amount, bool_or(open_now) AS open_now,
                     bool_or(open_then) AS open_then
              FROM ex WHERE entity <> 'connection' GROUP BY ALL),
            total AS (
              SELECT 'all' AS dimension, 99 AS ord, count(*) FILTER (WHERE open_now) AS records,
                     coalesce(sum(amount) FILTER (WHERE open_now), 0) AS dollars,
                     (SELECT count(*) FROM per_dim WHERE connection > 0) AS connection,
                     count(*) FILTER (WHERE open_then) AS records_then,
                     coalesce(sum(amount) FILTER (WHERE open_then), 0) AS dollars_then
              FROM per_record)
            SELECT dimension, records, dollars::DECIMAL(18,2) AS dollars, connection > 0 AS connection_problem,
                   records - records_then AS records_change, (dollars - dollars_then)::DECIMAL(18,2) AS dollars_change,
                   records_then, dollars_then::DECIMAL(18,2) AS dollars_then
            FROM (SELECT d.dimension, d.ord, coalesce(p.records, 0) AS records, coalesce(p.dollars, 0) AS dollars,
                         coalesce(p.connection, 0) AS connection, coalesce(p.records_then, 0) AS records_then,
                         coalesce(p.dollars_then, 0) AS dollars_then
                  FROM (VALUES {dims}) d(dimension, ord) LEFT JOIN per_dim p USING (dimension)
                  UNION ALL SELECT * FROM total)
            ORDER BY ord""",
        {"realm": realm_id, "since": since},
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
    return {"tone": tone, "status": status, "label": "QuickBooks connected", "detail": f"{left} (by {by}); {last}"}


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
        schema={"stage_index": pl.Int64, "records": pl.Int64, "dollars": pl.Decimal(18, 2)},
    )
    return frame.with_columns(
        pl.col("stage_index").replace_strict(dict(enumerate(FUNNEL)), return_dtype=pl.String).alias("stage")
    ).select("stage_index", "stage", "records", "dollars")


def period_bounds(period: str) -> tuple[date, date]:
    """'2026-11' -> (2026-11-01, 2026-12-01): the month's first day and the next month's."""
    try:
        start = date.fromisoformat(f"{period}-01")
    except ValueError:
        raise ValueError(f"a period is a month written YYYY-MM, not {period!r}") from None
    end = (start.replace(day=28) + timedelta(days=4)).replace(day=1)
    return start, end


def _period_records() -> str:
    """Every transaction dated in [$start, $end): its status, and for an open one the leading exception and owner."""
    return f"""
    SELECT f.entity, f.record_id, f.number, coalesce(f.amount, 0) AS amount, f.txn_date, f.state,
           CASE f.state WHEN 'synced' THEN 'synced' WHEN 'excluded' THEN 'excluded' ELSE 'open' END AS status,
           f.excluded_because, f.excluded_by, f.p_dimension AS dimension, f.p_reason AS reason,
           f.p_detail AS detail, f.p_opened_at AS opened_at,
           CASE WHEN f.state IN ('synced', 'excluded') THEN NULL
                WHEN f.p_reason IS NULL THEN 'system' ELSE f.p_owner END AS owner
    FROM {facts()} f
    WHERE f.txn_date >= $start AND f.txn_date < $end"""


@contextmanager
def _working(store: Store, name: str, sql: str, params: dict) -> Iterator[str]:
    """A temporary table of this thread's cursor for one read model's several queries; dropped after."""
    store.execute(f"CREATE OR REPLACE TEMP TABLE {name} AS {sql}", params)
    try:
        yield name
    finally:
        store.execute(f"DROP TABLE IF EXISTS temp.{name}")


def period_close(store: Store, realm_id: str, period: str, now: datetime | None, limit: int = 200) -> dict:
    """Every transaction dated in the month: synced, excluded with a reason, or open with an owner.

    Returns `summary` (counts, dollars, percent complete), `by_entity`, `blockers` (what stands between the month
    and 100%: open records per dimension, reason and owner) and `open` (the open records, biggest first, at most
    `limit`).
    """
    start, end = period_bounds(period)
    with _working(store, "hx_period", _period_records(), own_params(realm_id, start=start, end=end)) as recs:
        by_entity = store.frame(
            f"""SELECT entity, count(*) AS records, count(*) FILTER (WHERE status = 'synced') AS synced,
                       count(*) FILTER (WHERE status = 'excluded') AS excluded,
                       count(*) FILTER (WHERE status = 'open') AS open,
                       sum(amount)::DECIMAL(18,2) AS dollars,
                       coalesce(sum(amount) FILTER (WHERE status = 'open'), 0)::DECIMAL(18,2) AS open_dollars
                FROM {recs} GROUP BY 1 ORDER BY 1"""
        )
        blockers = store.frame(
            f"""SELECT coalesce(dimension, 'waiting') AS dimension,
                       coalesce(reason, 'sync.waiting_for_next_run') AS reason, owner, count(*) AS records,
                       sum(amount)::DECIMAL(18,2) AS dollars, min(opened_at)::DATE AS open_since,
                       arg_max(entity || ':' || record_id, amount) AS biggest
                FROM {recs} WHERE status = 'open' GROUP BY ALL ORDER BY dollars DESC, records DESC, reason"""
        )
        open_records = store.frame(
            f"""SELECT entity || ':' || record_id AS key, entity, number, txn_date, amount::DECIMAL(18,2) AS amount,
                       state, dimension, reason, owner, detail,
                       CASE WHEN opened_at IS NULL THEN NULL
                            ELSE round(date_diff('minute', opened_at, $now) / 1440.0, 1) END AS age_days
                FROM {recs} WHERE status = 'open' ORDER BY amount DESC, key LIMIT $limit""",
            {"now": now, "limit": limit},
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
    return {"summary": summary, "by_entity": by_entity, "blockers": blockers, "open": open_records}


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
    start, end = period_bounds(period)
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


def top_fixes(store: Store, realm_id: str, now: datetime | None, limit: int = 10) -> pl.DataFrame:
    """The open items that unblock the most money, with owner, age and the fix.

    Money at stake is the action queue's (`pipelines.views.queue.stake_sql`): a document's total, a vendor's or
    customer's documents still waiting, everything waiting for a broken connection; one item per record (its leading
    exception).
    """
    frame = store.frame(
        f"""WITH p AS (
              SELECT entity, record_id, exception_id, dimension, reason, detail, owner_role, owner, opened_at,
                     escalated, amount, record_amount, record_owner
              FROM {primary()}
              UNION ALL
              SELECT e.entity, e.record_id, e.exception_id, e.dimension, e.reason, e.detail, e.owner_role, e.owner,
                     e.opened_at, e.escalated, e.amount, NULL, NULL
              FROM exceptions e WHERE e.realm_id = $realm AND e.entity = 'connection' AND e.status <> 'resolved')
            SELECT CASE WHEN p.entity = 'connection' THEN 'connection' ELSE p.entity || ':' || p.record_id END AS key,
                   p.entity, p.record_id, p.dimension, p.reason,
                   coalesce(p.owner, CASE WHEN p.owner_role = 'finance' THEN p.record_owner END, p.owner_role) AS owner,
                   coalesce(p.record_amount, s.at_stake, p.amount, 0)::DECIMAL(18,2) AS at_stake, p.escalated,
                   round(date_diff('minute', p.opened_at, $now) / 1440.0, 1) AS age_days, p.detail, p.exception_id
            FROM p LEFT JOIN {stake()} s ON s.entity = p.entity AND s.record_id = p.record_id
            ORDER BY p.entity = 'connection' DESC, at_stake DESC, p.opened_at, key LIMIT $limit""",
        {"realm": realm_id, "now": now, "limit": limit},
    )
    return explain(frame, ("fix",)).with_columns(
        pl.int_range(1, frame.height + 1).alias("rank"),
        pl.when(pl.col("entity") == "connection")
        .then(pl.lit("connection.py"))
        .otherwise(pl.lit("record.py"))
        .alias("page"),
    )
