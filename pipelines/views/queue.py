"""Read models for the action queue, the owners' digest and the audit log; CSV export that spreadsheets cannot run.

The queue is ordered by priority: a document due soon (or past due) first, then the money at stake, then its own due
date. Money at stake is a document's total; for a vendor or customer, the total of its documents still waiting; for
the connection, everything waiting.
"""

from __future__ import annotations

import hashlib
import html
import io
import json
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import duckdb
import polars as pl

from pipelines.catalogue import catalogue, explain
from pipelines.routing import Routing, load_routing
from pipelines.store import Store, awra_table, current_view
from pipelines.views import read_model
from pipelines.views.period import ALL, period_bounds
from pipelines.views.read_model import facts

__all__ = [
    "COMPANY_WIDE",
    "DEPENDENCY",
    "OPEN_STATUSES",
    "action_queue",
    "chains_sql",
    "audit_frame",
    "action_words",
    "audit_words",
    "key_words",
    "csv_bytes",
    "digest",
    "digest_html",
    "digest_text",
    "filter_audit",
    "filter_queue",
    "neutralize",
    "owner_choices",
    "QUEUE_MODEL",
    "queue_model_current",
    "queue_summary",
    "queue_version",
    "rank",
    "refresh_queue_model",
    "stake_sql",
]

OPEN_STATUSES = ("open", "assigned")


def stake_sql() -> str:
    """entity, record_id, amount (the record's own), at_stake and due_date (the document's own) for a realm ($realm).

    A payment's due date is its invoice's, a bill payment's its bill's.
    """
    v = current_view
    return f"""
    WITH docs AS (
      SELECT realm_id, 'purchase_order' AS entity, po_id AS record_id, 'vendor' AS party_kind, vendor_id AS party_id,
             total AS amount, due_date FROM {v("purchase_orders")}
      UNION ALL SELECT realm_id, 'bill', bill_id, 'vendor', vendor_id, total, due_date FROM {v("bills")}
      UNION ALL SELECT realm_id, 'invoice', invoice_id, 'customer', customer_id, total, due_date FROM {v("invoices")}
      UNION ALL SELECT p.realm_id, 'payment', p.payment_id, 'customer', p.customer_id, p.amount, i.due_date
                FROM {v("payments")} p LEFT JOIN {v("invoices")} i
                  ON i.realm_id = p.realm_id AND i.invoice_id = p.invoice_id
      UNION ALL SELECT b.realm_id, 'bill_payment', b.bill_payment_id, 'vendor', b.vendor_id, b.amount, x.due_date
                FROM {v("bill_payments")} b LEFT JOIN {v("bills")} x
                  ON x.realm_id = b.realm_id AND x.bill_id = b.bill_id
      UNION ALL SELECT j.realm_id, 'journal_entry', j.je_id, NULL, NULL,
                       sum(l.amount) FILTER (WHERE l.posting_type = 'debit'), NULL::DATE
                FROM {v("journal_entries")} j LEFT JOIN {v("journal_lines")} l USING (realm_id, je_id)
                GROUP BY j.realm_id, j.je_id),
    here AS (SELECT * FROM docs WHERE realm_id = $realm),
    waiting AS (
      SELECT d.* FROM here d JOIN records r ON r.realm_id = d.realm_id AND r.entity = d.entity
        AND r.record_id = d.record_id
      WHERE r.removed_at IS NULL AND r.state NOT IN ('synced', 'excluded'))
    SELECT entity, record_id, amount::DECIMAL(18,2) AS amount, amount::DECIMAL(18,2) AS at_stake, due_date FROM here
    UNION ALL SELECT party_kind, party_id, NULL, sum(amount)::DECIMAL(18,2), min(due_date) FROM waiting
              WHERE party_id IS NOT NULL GROUP BY party_kind, party_id
    UNION ALL SELECT 'connection', $realm, NULL, coalesce(sum(amount), 0)::DECIMAL(18,2), min(due_date) FROM waiting
    """


def queue_version(store: Store, realm_id: str) -> tuple:
    """A cheap fingerprint of everything the queue shows (the key for page caches)."""
    return tuple(
        store.rows(
            """SELECT (SELECT coalesce(max(audit_id), 0) FROM audit_log),
                      (SELECT coalesce(max(run_id), 0) FROM check_runs),
                      (SELECT coalesce(max(run_id), 0) FROM ingest_runs),
                      count(*), max(last_seen_at), max(last_activity_at), max(exception_id)
               FROM exceptions WHERE realm_id = ?""",
            [realm_id],
        )[0]
    )


def _url_quoted(expr: pl.Expr) -> pl.Expr:
    for char, code in (("%", "%25"), (" ", "%20"), ("&", "%26"), ("#", "%23"), ("+", "%2B"), ("?", "%3F")):
        expr = expr.str.replace_all(char, code, literal=True)
    return expr


DEPENDENCY = "source_data.dependency_not_ready"
COMPANY_WIDE = ("connection", "snapshot")  # items of the company, not of one record
_PARTY_OF = """CASE WHEN {e} IN ('invoice', 'payment') THEN 'customer'
                   WHEN {e} IN ('purchase_order', 'bill', 'bill_payment') THEN 'vendor' END"""
_DIM_ORDER = """CASE {d} WHEN 'authorization' THEN 0 WHEN 'source_data' THEN 1 WHEN 'mapping' THEN 2 ELSE 3 END"""


def _lead_key(alias: str = "") -> str:
    """The order in which a record's open items explain it: its own problems before waiting on another record, then
    the dimension (as the Record page orders them), then the oldest."""
    a = f"{alias}." if alias else ""
    return f"({a}reason = '{DEPENDENCY}', {_DIM_ORDER.format(d=a + 'dimension')}, {a}exception_id)"


def _scope_sql(scoped: bool, records: str | None = None) -> str:
    """The records a scope holds: every live record (all periods), or the transactions dated in [$start, $end)."""
    where = "WHERE txn_date >= $start AND txn_date < $end" if scoped else ""
    return f"SELECT entity, record_id, state, amount, txn_date, party_id FROM {records or facts()} {where}"


def _awra(name: str, entity: str, key: str, columns: str, records: str = "rec") -> str:
    """The current version's `columns` of the AWRA table's rows for the records in `records` (entity, record_id,
    current_version): probed by those few keys rather than joined with every record."""
    return f"""SELECT r.entity, r.record_id, {columns} FROM {awra_table(name)} a
      JOIN {records} r ON r.entity = '{entity}' AND r.record_id = a.{key} AND r.current_version = a.version
      WHERE a.realm_id = $realm"""


def chains_sql(scoped: bool, records: str | None = None) -> str:
    """Per record with an open item: what it waits on, the record whose own problem holds it (its root) and that
    problem (its cause), its document's due date, and the money counted for it once per document chain in the scope
    (a payment or bill payment whose invoice or bill is blocked too, in the same scope, counts nothing: the document
    carries that money); `in_scope` for the scope's records. Needs $realm (and $start, $end when scoped)."""
    return f"""
    WITH live AS (
      SELECT entity, record_id, reason, dimension, exception_id, owner FROM exceptions
      WHERE realm_id = $realm AND status <> 'resolved' AND entity NOT IN ('connection', 'snapshot')),
    lead AS (
      SELECT entity, record_id, bool_and(reason = '{DEPENDENCY}') AS follows,
             arg_min(reason, {_lead_key()}) AS lead_reason, arg_min(dimension, {_lead_key()}) AS lead_dimension,
             arg_min(owner, {_lead_key()}) AS lead_owner
      FROM live GROUP BY ALL),
    f AS (SELECT entity, record_id, state, amount, txn_date, party_id, current_version FROM {records or facts()}),
    rec AS (SELECT l.*, f.state, f.amount, f.txn_date, f.party_id, f.current_version
            FROM lead l JOIN f USING (entity, record_id)),
    par AS (
      {_awra("payments", "payment", "payment_id", "'invoice' AS parent_entity, a.invoice_id AS parent_id")}
      UNION ALL
      {_awra("bill_payments", "bill_payment", "bill_payment_id", "'bill' AS parent_entity, a.bill_id AS parent_id")}),
    own_due AS (
      {_awra("purchase_orders", "purchase_order", "po_id", "a.due_date")}
      UNION ALL {_awra("bills", "bill", "bill_id", "a.due_date")}
      UNION ALL {_awra("invoices", "invoice", "invoice_id", "a.due_date")}),
    parents AS (SELECT DISTINCT p.parent_entity AS entity, p.parent_id AS record_id, f.current_version
                FROM par p JOIN f ON f.entity = p.parent_entity AND f.record_id = p.parent_id),
    parent_due AS (
      {_awra("bills", "bill", "bill_id", "a.due_date", "parents")}
      UNION ALL {_awra("invoices", "invoice", "invoice_id", "a.due_date", "parents")}),
    sc AS ({_scope_sql(scoped, records)}),
    joined AS (
      SELECT r.*, {_PARTY_OF.format(e="r.entity")} AS party_entity, p.parent_entity, p.parent_id,
             pl.entity IS NOT NULL AS parent_open, coalesce(pl.follows, FALSE) AS parent_follows,
             pl.entity IS NOT NULL AND ps.record_id IS NOT NULL AS parent_counts,
             sc.record_id IS NOT NULL AS in_scope, coalesce(d.due_date, pd.due_date) AS due_date
      FROM rec r LEFT JOIN sc USING (entity, record_id)
      LEFT JOIN par p USING (entity, record_id)
      LEFT JOIN lead pl ON pl.entity = p.parent_entity AND pl.record_id = p.parent_id
      LEFT JOIN sc ps ON ps.entity = p.parent_entity AND ps.record_id = p.parent_id
      LEFT JOIN own_due d ON d.entity = r.entity AND d.record_id = r.record_id
      LEFT JOIN parent_due pd ON pd.entity = p.parent_entity AND pd.record_id = p.parent_id),
    rooted AS (
      SELECT *, CASE WHEN parent_counts THEN 0 ELSE coalesce(amount, 0) END::DECIMAL(18,2) AS counted,
             CASE WHEN NOT follows THEN NULL
                  WHEN parent_open THEN parent_entity || ':' || parent_id
                  WHEN party_id IS NOT NULL THEN party_entity || ':' || party_id END AS waits_on,
             CASE WHEN NOT follows THEN entity WHEN parent_open AND NOT parent_follows THEN parent_entity
                  WHEN party_id IS NOT NULL THEN party_entity ELSE entity END AS root_entity,
             CASE WHEN NOT follows THEN record_id WHEN parent_open AND NOT parent_follows THEN parent_id
                  WHEN party_id IS NOT NULL THEN party_id ELSE record_id END AS root_id
      FROM joined)
    SELECT r.entity, r.record_id, r.state, r.follows, r.amount, r.counted, r.txn_date, r.due_date, r.in_scope,
           r.waits_on, CASE WHEN r.parent_counts THEN r.parent_entity || ':' || r.parent_id END AS carried_by,
           r.root_entity || ':' || r.root_id AS root_key,
           coalesce(c.lead_reason, r.lead_reason) AS cause_reason,
           coalesce(c.lead_dimension, r.lead_dimension) AS cause_dimension,
           coalesce(c.lead_owner, r.lead_owner) AS cause_owner
    FROM rooted r LEFT JOIN lead c ON c.entity = r.root_entity AND c.record_id = r.root_id"""


def _items_sql(scoped: bool, records: str | None = None) -> str:
    """Every exception in $statuses of the scope, with its record's chain, money at stake and document due date."""
    return f"""
    WITH ch AS ({chains_sql(scoped, records)}),
    held AS (  -- what a record's own problem holds back in the scope: itself and the followers rooted at it
      SELECT root_key, sum(counted) AS held, min(due_date) AS due_date, count(*) AS records
      FROM ch WHERE in_scope GROUP BY 1),
    waiting AS (SELECT coalesce(sum(amount), 0)::DECIMAL(18,2) AS amount FROM ({_scope_sql(scoped, records)}) s
                WHERE s.state NOT IN ('synced', 'excluded'))
    SELECT e.exception_id, e.entity || ':' || e.record_id AS key, e.entity, e.record_id, e.dimension, e.reason,
           e.detail, c.amount::DECIMAL(18,2) AS amount,
           CASE WHEN e.entity = 'connection' THEN w.amount
                WHEN e.entity = 'snapshot' OR e.reason = '{DEPENDENCY}' THEN 0
                WHEN e.entity IN ('vendor', 'customer') THEN coalesce(h.held, 0)
                WHEN c.entity IS NOT NULL THEN c.counted
                ELSE coalesce(e.amount, 0) END::DECIMAL(18,2) AS at_stake,
           CASE WHEN e.entity IN ('vendor', 'customer') THEN h.due_date ELSE c.due_date END AS due_date,
           e.owner_role, e.owner, coalesce(e.owner, e.owner_role) AS owned_by, e.status, e.escalated,
           e.escalated_at, e.escalation_reason, e.opened_at, e.due_by,
           coalesce(e.last_activity_at, e.opened_at) AS last_activity_at, e.last_seen_at, e.occurrences, c.state,
           coalesce(ss.retry_count, 0) AS retry_count, coalesce(ss.attempts, 0) AS attempts, e.routed_by,
           e.resolved_at, e.resolved_by, e.resolution_code, e.resolution,
           c.txn_date, coalesce(c.counted, 0)::DECIMAL(18,2) AS counted, coalesce(c.in_scope, FALSE) AS in_scope,
           c.follows, c.waits_on, c.carried_by, c.root_key, coalesce(c.cause_reason, e.reason) AS cause_reason,
           coalesce(c.cause_dimension, e.dimension) AS cause_dimension, coalesce(c.cause_owner, e.owner) AS cause_owner,
           coalesce(h.records, 0) AS holds
    FROM exceptions e
    LEFT JOIN ch c ON c.entity = e.entity AND c.record_id = e.record_id
    LEFT JOIN held h ON h.root_key = e.entity || ':' || e.record_id
    LEFT JOIN sync_status ss ON ss.realm_id = e.realm_id AND ss.entity = e.entity AND ss.record_id = e.record_id
    CROSS JOIN waiting w
    WHERE e.realm_id = $realm AND list_contains($statuses, e.status)"""


def rank(frame: pl.DataFrame, today: date, urgent_within_days: int) -> pl.DataFrame:
    """The one ranking (the queue's order, and the Health page's Top ten is its head): the company-wide items first,
    then documents due within the urgent window (or past due), then the money at stake, then the document's due date,
    then the oldest; numbered from 1."""
    urgent_by = today + timedelta(days=urgent_within_days)
    return (
        frame.with_columns(
            (pl.col("due_date") <= pl.lit(urgent_by)).fill_null(False).alias("urgent"),
            (pl.col("due_date") - pl.lit(today)).dt.total_days().cast(pl.Int32).alias("due_in_days"),
            pl.col("entity").is_in(COMPANY_WIDE).alias("_company"),
        )
        .sort(
            ["_company", "urgent", "at_stake", "due_date", "opened_at", "exception_id"],
            descending=[True, True, True, False, False, False],
            nulls_last=True,
        )
        .drop("_company")
        .drop("priority", strict=False)
        .with_row_index("priority", offset=1)
    )


def _titles() -> dict[str, str]:
    return dict(catalogue().select("reason", "title").iter_rows())


def _explained(frame: pl.DataFrame) -> pl.DataFrame:
    """The catalogue's words for each item (title, explanation, fix, who decides) and its cause's title."""
    return explain(frame, ("title", "explanation", "fix", "decides")).with_columns(
        pl.col("cause_reason")
        .replace_strict(_titles(), default=pl.col("cause_reason"), return_dtype=pl.String)
        .alias("cause")
    )


# The open queue for all periods, rebuilt once per version of its company (as the read-model tables are): a month is
# then a filter over it, and the Health page's Top ten and totals cost a read, not the chains of every record. Each
# company's rows sit beside the others' with a label each, so a fleet's pages of two companies do not rebuild it in
# turn (an older release held one company: its tables are dropped once).
QUEUE_MODEL = "rm_queue"
_QUEUE_STATE = "rm_queue_state"
_LAYOUT = "each company's rows side by side, one label per company"
_SHAPE = hashlib.sha256((_LAYOUT + _items_sql(False, "f") + _items_sql(True, "f")).encode()).hexdigest()[:16]


def _model_key(store: Store, realm_id: str) -> str:
    return json.dumps([_SHAPE, *read_model.version(store, realm_id)], default=str)


def queue_model_current(store: Store, realm_id: str) -> bool:
    """Whether rm_queue holds this company's open queue at its present version."""
    if not store.table_exists(_QUEUE_STATE):
        return False
    held = store.rows(f"SELECT version FROM {_QUEUE_STATE} WHERE realm_id = ?", [realm_id])
    return held == [(_model_key(store, realm_id),)]


def _drop_older(store: Store) -> None:
    """An older release's stored queue (another shape of the rows, or one company for all) dropped, label and all."""
    if store.table_exists(_QUEUE_STATE) and read_model.other_shapes(store, _QUEUE_STATE, _SHAPE):
        store.execute(f"DROP TABLE IF EXISTS {QUEUE_MODEL}")
        store.execute(f"DROP TABLE {_QUEUE_STATE}")


def refresh_queue_model(store: Store, realm_id: str) -> bool:
    """Bring the company's rows of rm_queue up to its version (a no-op when current); False when another writer got
    in the way (the page then reads live). Built from the read-model tables when they are current."""
    if queue_model_current(store, realm_id):
        return True
    records = "(SELECT * FROM rm_records WHERE realm_id = $realm)" if read_model.is_current(store, realm_id) else None
    try:
        with store.transaction() as tx:
            key = _model_key(store, realm_id)
            frame = _explained(
                tx.sql(_items_sql(False, records), params={"realm": realm_id, "statuses": list(OPEN_STATUSES)}).pl()
            )
            _drop_older(store)
            tx.register("_queue_frame", frame.to_arrow())
            try:
                read_model.replace_rows(store, QUEUE_MODEL, "SELECT *, $realm AS realm_id FROM _queue_frame", realm_id)
            finally:
                tx.unregister("_queue_frame")
            label = "SELECT $realm AS realm_id, $version AS version"
            read_model.replace_rows(store, _QUEUE_STATE, label, realm_id, version=key)
    except duckdb.TransactionException:
        return False
    return True


def _model_columns(store: Store) -> list[str]:
    """The stored queue's columns in order, but its company (rm_queue is built at run time, so no catalog of the store
    knows them: the SQL over it names them rather than asking either dialect for `* EXCLUDE` or `* REPLACE`)."""
    return [c for c in store.frame(f"SELECT * FROM {QUEUE_MODEL} LIMIT 0").columns if c != "realm_id"]


def _from_model(scoped: bool, columns: Sequence[str]) -> str:
    """The stored queue for a scope: a month's items with the money their vendors and customers hold back in it."""
    in_scope = "q.in_scope AND q.txn_date >= $start AND q.txn_date < $end" if scoped else "q.in_scope"
    keep = (
        f"WHERE ({in_scope}) OR q.entity IN {COMPANY_WIDE} OR (q.entity IN ('vendor', 'customer') AND h.records > 0)"
        if scoped
        else ""
    )
    scoped_columns = {  # what a scope recomputes; every other column as stored
        "at_stake": f"""(CASE WHEN q.entity = 'connection' THEN w.amount
                   WHEN q.entity IN ('vendor', 'customer') THEN coalesce(h.held, 0)
                   WHEN q.entity = 'snapshot' OR q.reason = '{DEPENDENCY}' THEN 0
                   WHEN r.entity IS NOT NULL THEN r.counted_here
                   ELSE q.at_stake END)::DECIMAL(18,2)""",
        "counted": "coalesce(r.counted_here, q.counted)",
        "carried_by": "CASE WHEN r.entity IS NULL THEN q.carried_by ELSE r.carried_here END",
        "due_date": "CASE WHEN q.entity IN ('vendor', 'customer') THEN h.due_date ELSE q.due_date END",
        "holds": "coalesce(h.records, 0)",
        "in_scope": f"coalesce({in_scope}, FALSE)",
    }
    stored = ", ".join(f'"{c}"' for c in columns)
    shown = ",\n             ".join(
        f'{scoped_columns[c]} AS "{c}"' if c in scoped_columns else f'q."{c}"' for c in columns
    )
    return f"""
    WITH q AS (SELECT {stored} FROM {QUEUE_MODEL} WHERE realm_id = $realm),
    scoped AS (SELECT DISTINCT key FROM q WHERE {in_scope}),
    rec AS (  -- the scope's records: money counted once per chain within the scope
      SELECT DISTINCT q.entity, q.record_id, q.root_key, q.due_date, q.counted, q.amount, q.carried_by,
             CASE WHEN s.key IS NULL THEN coalesce(q.amount, 0) ELSE q.counted END::DECIMAL(18,2) AS counted_here,
             CASE WHEN s.key IS NULL THEN NULL ELSE q.carried_by END AS carried_here
      FROM q LEFT JOIN scoped s ON s.key = q.carried_by WHERE {in_scope}),
    held AS (SELECT root_key, sum(counted_here) AS held, min(due_date) AS due_date, count(*) AS records
             FROM rec GROUP BY 1),
    waiting AS (SELECT coalesce(sum(amount), 0)::DECIMAL(18,2) AS amount FROM ({_scope_sql(scoped)}) s
                WHERE s.state NOT IN ('synced', 'excluded'))
    SELECT {shown}
    FROM q LEFT JOIN held h ON h.root_key = q.key LEFT JOIN rec r USING (entity, record_id)
    CROSS JOIN waiting w {keep}"""


def action_queue(
    store: Store,
    realm_id: str,
    *,
    now: datetime,
    statuses: Sequence[str] = OPEN_STATUSES,
    routing: Routing | None = None,
    period: str = ALL,
) -> pl.DataFrame:
    """Every exception in these statuses for the period (a month YYYY-MM, or all periods), with its cause in finance
    words, the fix, who decides, the money at stake and dates, in the one priority order.

    A month holds the items of the transactions dated in it, the vendors and customers its transactions wait on (their
    money at stake is what they hold back in that month) and the company-wide items (the connection, a held snapshot).
    The open queue is read from rm_queue when it is current, else computed from the store (the same numbers).
    """
    routing = routing or load_routing()
    scoped = period != ALL
    params: dict = {"realm": realm_id}
    if scoped:
        params["start"], params["end"] = period_bounds(period)
    if set(statuses) == set(OPEN_STATUSES) and queue_model_current(store, realm_id):
        frame = store.frame(_from_model(scoped, _model_columns(store)), params)
    else:
        frame = store.frame(_items_sql(scoped), {**params, "statuses": list(statuses)})
        if scoped:
            frame = frame.filter(
                pl.col("in_scope")
                | pl.col("entity").is_in(COMPANY_WIDE)
                | (pl.col("entity").is_in(["vendor", "customer"]) & (pl.col("holds") > 0))
            )
        frame = _explained(frame)
    # One zone name for every timestamp (DuckDB says Etc/UTC, Python UTC), so they compare.
    stamps = [c for c, t in frame.schema.items() if isinstance(t, pl.Datetime)]
    frame = frame.with_columns(pl.col(c).dt.convert_time_zone("UTC") for c in stamps)
    now = now.astimezone(UTC)
    frame = frame.with_columns(
        ((pl.lit(now) - pl.col("opened_at")).dt.total_hours() / 24).floor().clip(0).cast(pl.Int32).alias("age_days"),
        ((pl.col("due_by") < pl.lit(now)) & (pl.col("status") != "resolved")).fill_null(False).alias("overdue"),
        pl.when(pl.col("entity") == "connection")
        .then(pl.lit("/connection"))
        .otherwise(pl.lit("/record?key=") + _url_quoted(pl.col("key")))
        .alias("link"),
    )
    return rank(frame, now.date(), routing.urgent_within_days)


def filter_queue(
    frame: pl.DataFrame,
    *,
    dimensions: Sequence[str] | None = None,
    owners: Sequence[str] | None = None,
    statuses: Sequence[str] | None = None,
    entities: Sequence[str] | None = None,
    min_age_days: int | None = None,
    min_amount: float | None = None,
    key_contains: str | None = None,
    reason_prefix: str | None = None,
    causes: Sequence[str] | None = None,
    cause_dimensions: Sequence[str] | None = None,
    escalated: bool | None = None,
) -> pl.DataFrame:
    """The queue narrowed by the page's (or the CLI's) filters, in the same order (renumbered); an owner matches a
    person or a role. `causes` are reason codes of the record's cause (what holds it: its own problem or the one of
    the record it waits on), `cause_dimensions` the kinds of those causes."""
    conditions = []
    if dimensions:
        conditions.append(pl.col("dimension").is_in(list(dimensions)))
    if owners:
        wanted = [o.strip().lower() for o in owners]
        conditions.append(pl.col("owner").is_in(wanted).fill_null(False) | pl.col("owner_role").is_in(wanted))
    if statuses:
        conditions.append(pl.col("status").is_in(list(statuses)))
    if entities:
        conditions.append(pl.col("entity").is_in(list(entities)))
    if min_age_days:
        conditions.append(pl.col("age_days") >= min_age_days)
    if min_amount:
        conditions.append(pl.col("at_stake").cast(pl.Float64) >= float(min_amount))
    if key_contains and key_contains.strip():
        conditions.append(pl.col("key").str.to_lowercase().str.contains(key_contains.strip().lower(), literal=True))
    if reason_prefix:
        conditions.append(pl.col("reason").str.starts_with(reason_prefix))
    if causes:
        conditions.append(pl.col("cause_reason").is_in(list(causes)))
    if cause_dimensions:
        conditions.append(pl.col("cause_dimension").is_in(list(cause_dimensions)))
    if escalated is not None:
        conditions.append(pl.col("escalated") == escalated)
    if not conditions:
        return frame
    return frame.filter(*conditions).drop("priority").with_row_index("priority", offset=1)


def owner_choices(frame: pl.DataFrame) -> list[str]:
    """The people the queue's items belong to (one owner model: a person each), then any role left without one."""
    people = sorted(p for p in frame["owner"].unique().to_list() if p)
    roles = sorted(r for r in frame.filter(pl.col("owner").is_null())["owner_role"].unique().to_list() if r)
    return [*people, *roles]


def queue_summary(frame: pl.DataFrame, since: datetime | None = None) -> dict[str, object]:
    """Headline numbers: items; the records in scope they hold and their dollars, counted once per record and once per
    document chain (the same as the Health page for the same filters); overdue; escalated (and since `since`)."""
    records = frame.filter(pl.col("in_scope")).unique(["entity", "record_id"])
    recent = frame.filter(pl.col("escalated_at") >= pl.lit(since)) if since is not None and frame.height else None
    return {
        "items": frame.height,
        "records": records.height,
        "dollars": records["counted"].sum() if records.height else 0,
        "overdue": int(frame["overdue"].sum()) if frame.height else 0,
        "escalated": int(frame["escalated"].sum()) if frame.height else 0,
        "escalated_since": recent.height if recent is not None else 0,
    }


# -- the digest ------------------------------------------------------------------------------------------
_ITEM_COLUMNS = (
    "exception_id", "key", "dimension", "reason", "detail", "fix", "at_stake", "due_date", "due_by", "age_days",
    "status", "escalation_reason",
)  # fmt: skip


def _items(frame: pl.DataFrame) -> list[dict]:
    return [
        {k: (str(v) if isinstance(v, datetime | date) or k == "at_stake" else v) for k, v in row.items()}
        for row in frame.select(_ITEM_COLUMNS).iter_rows(named=True)
    ]


def digest(store: Store, realm_id: str, *, now: datetime, since: datetime | None = None) -> dict:
    """Per owner (a person, else a role): items new since `since` (default a day ago), overdue, escalated."""
    since = since or now - timedelta(days=1)
    frame = action_queue(store, realm_id, now=now)
    owners = []
    for (owner,), group in frame.group_by("owned_by", maintain_order=True):
        new = group.filter(pl.col("opened_at") >= since)
        overdue = group.filter(pl.col("overdue") & ~pl.col("escalated"))
        escalated = group.filter(pl.col("escalated"))
        if new.height or overdue.height or escalated.height:
            owners.append(
                {
                    "owner": owner,
                    "open": group.height,
                    "new": _items(new),
                    "overdue": _items(overdue),
                    "escalated": _items(escalated),
                }
            )
    owners.sort(key=lambda o: (-len(o["escalated"]), -len(o["overdue"]), o["owner"]))
    return {"realm_id": realm_id, "generated_at": now.isoformat(), "since": since.isoformat(), "owners": owners}


_SECTIONS = (("escalated", "Escalated"), ("overdue", "Overdue"), ("new", "New"))


def _money(value: object) -> str:
    # at_stake comes as the text of a DECIMAL(18,2) ("None" when unknown): formatted as a Decimal, every cent kept.
    return f"${Decimal(str(value)):,.2f}" if value not in (None, "None") else ""


def digest_text(d: dict) -> str:
    """The digest as plain text, one block per owner."""
    lines = [f"QBO Sync Health: action queue digest for company {d['realm_id']}", f"as of {d['generated_at']}", ""]
    if not d["owners"]:
        lines.append(f"Nothing new, overdue or escalated since {d['since']}.")
    for o in d["owners"]:
        counts = ", ".join(f"{len(o[k])} {label.lower()}" for k, label in _SECTIONS)
        lines.append(f"== {o['owner']}: {counts} ({o['open']} open in all)")
        for k, label in _SECTIONS:
            if not o[k]:
                continue
            lines.append(f"  {label}:")
            for i in o[k]:
                due = f", document due {i['due_date']}" if i["due_date"] else ""
                why = f" [{i['escalation_reason']}]" if k == "escalated" and i["escalation_reason"] else ""
                lines.append(f"    #{i['exception_id']} {i['key']} {i['reason']} {_money(i['at_stake'])}{due}{why}")
                lines.append(f"      {i['detail']}")
                lines.append(f"      Fix: {i['fix']}")
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def digest_html(d: dict) -> str:
    """The digest as a self-contained HTML email body (inline styles; every value escaped)."""
    e = html.escape
    cell = "padding:4px 8px;border-bottom:1px solid #ddd;vertical-align:top;text-align:left"
    out = [
        "<!DOCTYPE html>",
        '<html><head><meta charset="utf-8"><title>Action queue digest</title></head>',
        '<body style="font-family:Arial,Helvetica,sans-serif;font-size:14px;color:#222">',
        f'<h1 style="font-size:20px">Action queue digest: company {e(d["realm_id"])}</h1>',
        f"<p>As of {e(d['generated_at'])}; new means opened since {e(d['since'])}.</p>",
    ]
    if not d["owners"]:
        out.append("<p>Nothing new, overdue or escalated.</p>")
    for o in d["owners"]:
        counts = ", ".join(f"{len(o[k])} {label.lower()}" for k, label in _SECTIONS)
        out.append(f'<h2 style="font-size:17px">{e(o["owner"])}: {e(counts)} ({o["open"]} open in all)</h2>')
        for k, label in _SECTIONS:
            if not o[k]:
                continue
            out.append(f'<h3 style="font-size:15px">{label}</h3>')
            out.append('<table style="border-collapse:collapse">')
            head = ("#", "Record", "Reason", "At stake", "Document due", "What is wrong", "Fix")
            out.append("<tr>" + "".join(f'<th style="{cell}">{h}</th>' for h in head) + "</tr>")
            for i in o[k]:
                why = f" ({i['escalation_reason']})" if k == "escalated" and i["escalation_reason"] else ""
                values = (
                    str(i["exception_id"]),
                    i["key"],
                    i["reason"] + why,
                    _money(i["at_stake"]),
                    i["due_date"] or "",
                    i["detail"] or "",
                    i["fix"] or "",
                )
                out.append("<tr>" + "".join(f'<td style="{cell}">{e(str(v))}</td>' for v in values) + "</tr>")
            out.append("</table>")
    out.append("</body></html>")
    return "\n".join(out) + "\n"


# -- the audit log ---------------------------------------------------------------------------------------
def audit_frame(store: Store, realm_id: str, limit: int = 50_000) -> pl.DataFrame:
    """Who did what, newest first: people's actions and the system's (auto-resolve, reopen, escalate)."""
    return store.frame(
        """SELECT audit_id, acted_at, actor, role, action, target, reason, before_json, after_json
           FROM audit_log WHERE realm_id = ? ORDER BY audit_id DESC LIMIT ?""",
        [realm_id, limit],
    )


def _json_words(column: str) -> pl.Expr:
    """A before/after JSON object as a person reads it: `cause: Mapped account inactive in QuickBooks; status: open`
    (reason codes by their catalogue titles, keys and values without quotes, braces or underscores)."""
    codes = catalogue().select("reason", "title").sort(pl.col("reason").str.len_chars(), descending=True)
    return (
        pl.col(column)
        .fill_null("")
        .str.replace_many(codes["reason"].to_list(), codes["title"].to_list())  # the longest code first
        .str.replace_all(r":\s*null\b", ": —")
        .str.replace_all(r":\s*true\b", ": yes")
        .str.replace_all(r":\s*false\b", ": no")
        .str.replace_all(r",\s*\"", "; ")
        .str.replace_all(r"\"\s*:\s*", ": ")
        .str.replace_all(r"[{}\"]", "")
        .str.replace_all("_", " ")
        .str.replace_all(r"\bqbo\b", "QuickBooks")
        .alias(column)
    )


def action_words(action: str) -> str:
    """An audited action as people say it (`auto_resolve` -> `auto resolve`): the Audit page's words and filter."""
    return action.replace("_", " ")


def key_words(column: str) -> pl.Expr:
    """A record key in words (`purchase_order:PO-1` -> `purchase order PO-1`); any other text as it is."""
    keyed = r"^[a-z_]+:"
    return (
        pl.when(pl.col(column).str.contains(keyed))
        .then(
            pl.concat_str(
                pl.col(column).str.extract(r"^([a-z_]+):", 1).str.replace_all("_", " "),
                pl.col(column).str.replace(keyed, " "),
            )
        )
        .otherwise(pl.col(column))
        .alias(column)
    )


def audit_words(frame: pl.DataFrame) -> pl.DataFrame:
    """The audit frame for reading: actions and record keys in words (`purchase order PO-1`), before and after as
    sentences rather than JSON. The stored rows, and their export, stay exactly as written."""
    actions = {action: action_words(action) for action in frame["action"].unique().to_list()}  # a few names
    return frame.with_columns(
        pl.col("action").replace_strict(actions, return_dtype=pl.String),
        key_words("target"),
        pl.col("reason").fill_null(""),
        _json_words("before_json"),
        _json_words("after_json"),
    )


def filter_audit(
    frame: pl.DataFrame,
    *,
    actors: Sequence[str] | None = None,
    actions: Sequence[str] | None = None,
    target_contains: str | None = None,
    since: date | None = None,
    until: date | None = None,
) -> pl.DataFrame:
    conditions = []
    if actors:
        conditions.append(pl.col("actor").is_in(list(actors)))
    if actions:
        conditions.append(pl.col("action").is_in(list(actions)))
    if target_contains and target_contains.strip():
        needle = target_contains.strip().lower()
        conditions.append(pl.col("target").str.to_lowercase().str.contains(needle, literal=True))
    if since:
        conditions.append(pl.col("acted_at").dt.date() >= since)
    if until:
        conditions.append(pl.col("acted_at").dt.date() <= until)
    return frame.filter(*conditions) if conditions else frame


# -- CSV export ------------------------------------------------------------------------------------------
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def neutralize(frame: pl.DataFrame) -> pl.DataFrame:
    """Text cells a spreadsheet would run as a formula (= + - @, tab, CR first) get a leading ' and open as text."""
    text = [c for c, t in frame.schema.items() if t == pl.String]
    return frame.with_columns(
        pl.when(pl.any_horizontal(pl.col(c).str.starts_with(s) for s in _FORMULA_START))
        .then(pl.lit("'") + pl.col(c))
        .otherwise(pl.col(c))
        .alias(c)
        for c in text
    )


def csv_bytes(frame: pl.DataFrame) -> bytes:
    """CSV for a spreadsheet: formulas neutralized, nested values as text, UTF-8 with a BOM (Excel reads it)."""
    flat = frame.with_columns(
        [pl.col(c).cast(pl.List(pl.String)).list.join(", ") for c, t in frame.schema.items() if isinstance(t, pl.List)]
        + [pl.col(c).struct.json_encode() for c, t in frame.schema.items() if isinstance(t, pl.Struct)]
    )
    buffer = io.BytesIO()
    neutralize(flat).write_csv(buffer)
    return b"\xef\xbb\xbf" + buffer.getvalue()
