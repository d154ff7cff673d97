"""Read models for the action queue, the owners' digest and the audit log; CSV export that spreadsheets cannot run.

The queue is ordered by priority: a document due soon (or past due) first, then the money at stake, then its own due
date. Money at stake is a document's total; for a vendor or customer, the total of its documents still waiting; for
the connection, everything waiting.
"""

from __future__ import annotations

import html
import io
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import polars as pl

from pipelines.catalogue import explain
from pipelines.routing import Routing, load_routing
from pipelines.store import Store, current_view

__all__ = [
    "OPEN_STATUSES",
    "action_queue",
    "audit_frame",
    "csv_bytes",
    "digest",
    "digest_html",
    "digest_text",
    "filter_audit",
    "filter_queue",
    "neutralize",
    "owner_choices",
    "queue_summary",
    "queue_version",
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


def action_queue(
    store: Store,
    realm_id: str,
    *,
    now: datetime,
    statuses: Sequence[str] = OPEN_STATUSES,
    routing: Routing | None = None,
) -> pl.DataFrame:
    """Every exception in these statuses with its explanation, fix, money at stake and dates, in priority order."""
    routing = routing or load_routing()
    frame = store.frame(
        f"""SELECT e.exception_id, e.entity || ':' || e.record_id AS key, e.entity, e.record_id, e.dimension, e.reason,
                   e.detail, coalesce(s.amount, e.amount)::DECIMAL(18,2) AS amount,
                   coalesce(s.at_stake, e.amount, 0)::DECIMAL(18,2) AS at_stake, s.due_date, e.owner_role, e.owner,
                   coalesce(e.owner, e.owner_role) AS owned_by, e.status, e.escalated, e.escalation_reason,
                   e.opened_at, e.due_by, coalesce(e.last_activity_at, e.opened_at) AS last_activity_at,
                   e.last_seen_at, e.occurrences, r.state, coalesce(ss.retry_count, 0) AS retry_count,
                   coalesce(ss.attempts, 0) AS attempts, e.routed_by, e.resolved_at, e.resolved_by,
                   e.resolution_code, e.resolution
            FROM exceptions e
            LEFT JOIN ({stake_sql()}) s ON s.entity = e.entity AND s.record_id = e.record_id
            LEFT JOIN records r ON r.realm_id = e.realm_id AND r.entity = e.entity AND r.record_id = e.record_id
            LEFT JOIN sync_status ss ON ss.realm_id = e.realm_id AND ss.entity = e.entity
                 AND ss.record_id = e.record_id
            WHERE e.realm_id = $realm AND list_contains($statuses, e.status)""",
        {"realm": realm_id, "statuses": list(statuses)},
    )
    today = now.date()
    urgent_by = today + timedelta(days=routing.urgent_within_days)
    # One zone name for every timestamp (DuckDB says Etc/UTC, Python UTC), so they compare.
    stamps = [c for c, t in frame.schema.items() if isinstance(t, pl.Datetime)]
    frame = frame.with_columns(pl.col(c).dt.convert_time_zone("UTC") for c in stamps)
    now = now.astimezone(UTC)
    frame = explain(frame).with_columns(
        ((pl.lit(now) - pl.col("opened_at")).dt.total_hours() / 24).floor().clip(0).cast(pl.Int32).alias("age_days"),
        ((pl.col("due_by") < pl.lit(now)) & (pl.col("status") != "resolved")).fill_null(False).alias("overdue"),
        (pl.col("due_date") - pl.lit(today)).dt.total_days().cast(pl.Int32).alias("due_in_days"),
        (pl.col("due_date") <= pl.lit(urgent_by)).fill_null(False).alias("urgent"),
        pl.when(pl.col("entity") == "connection")
        .then(pl.lit("/connection"))
        .otherwise(pl.lit("/record?key=") + _url_quoted(pl.col("key")))
        .alias("link"),
    )
    return frame.sort(
        ["urgent", "at_stake", "due_date", "opened_at", "exception_id"],
        descending=[True, True, False, False, False],
        nulls_last=True,
    ).with_row_index("priority", offset=1)


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
) -> pl.DataFrame:
    """The queue narrowed by the page's (or the CLI's) filters; an owner matches a person or a role."""
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
    return frame.filter(*conditions) if conditions else frame


def owner_choices(frame: pl.DataFrame) -> list[str]:
    """People the queue is routed or assigned to, then the roles."""
    people = sorted(p for p in frame["owner"].unique().to_list() if p)
    roles = sorted(r for r in frame["owner_role"].unique().to_list() if r)
    return [*people, *roles]


def queue_summary(frame: pl.DataFrame) -> dict[str, object]:
    """Headline numbers: items, dollars (each record counted once), overdue, escalated."""
    records = frame.unique(["entity", "record_id"])
    return {
        "items": frame.height,
        "records": records.height,
        "dollars": records["amount"].drop_nulls().sum() if frame.height else 0,
        "overdue": int(frame["overdue"].sum()) if frame.height else 0,
        "escalated": int(frame["escalated"].sum()) if frame.height else 0,
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
