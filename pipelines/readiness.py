"""The readiness check: source rules, mapping gaps, duplicate risk and dependencies -> findings and states."""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from datetime import datetime

import pandera.errors
import polars as pl

from pipelines import changes, duplicates
from pipelines.clock import elapsed_from
from pipelines.mappings import KINDS, all_mapping_usage_sql, current_rows, mapping_usage_sql, refresh_mappings
from pipelines.store import Store, awra_table, current_view
from schemas.awra import SEND_ORDER
from schemas.readiness import QBO_TEXT_LIMITS, RULES, TRANSACTIONS, readiness_schema

__all__ = [
    "CheckResult",
    "DRIFT_REASONS",
    "FINDING_COLUMNS",
    "qbo_drift_findings",
    "readiness_frames",
    "rules_fingerprint",
    "run_check",
    "source_findings",
]

FINDING_COLUMNS = {
    "entity": pl.String,
    "record_id": pl.String,
    "version": pl.Int32,
    "check_name": pl.String,
    "dimension": pl.String,
    "reason": pl.String,
    "detail": pl.String,
    "mapping_kind": pl.String,
    "mapping_value": pl.String,
}
# The records a sync creates or updates, and the reference records that are only ever mapped.
SYNCED_ENTITIES = SEND_ORDER
MAPPED_ENTITIES = {"item": "item", "account": "account"}


@dataclass(frozen=True)
class CheckResult:
    """What one check run found."""

    run_id: int
    records: int
    ready: int
    findings: int
    by_state: dict[str, int]
    by_reason: dict[str, int]
    seconds: float
    kind: str = "full"  # full | incremental
    checked: int = 0  # the records this run re-checked


# -- readiness frames ------------------------------------------------------------------------------------
# Lines are aggregated only for the headers still to send (`todo`, see _frame_sql): the AWRA line table is joined
# to them on the header's current version, as its current view joins records. A mismatch is formatted only on the
# lines that mismatch: string_agg's FILTER alone still formats every line, then drops the text.
_MISMATCH = """qty IS NOT NULL AND unit_price IS NOT NULL AND amount IS NOT NULL
              AND round(qty * unit_price, 2) <> amount"""

_LINE_AGG = """
  SELECT {pid} AS rid, count(*) AS line_count, sum(amount) AS lines_total,
    string_agg('line ' || line_no, ', ' ORDER BY line_no) FILTER (WHERE {missing_ref}) AS lines_missing_ref,
    string_agg('line ' || line_no, ', ' ORDER BY line_no) FILTER (WHERE amount IS NULL) AS lines_missing_amount,
    string_agg(CASE WHEN {mismatch} THEN format('line {{}}: {{}} x {{}} = {{}}, not {{}}', line_no,
                      regexp_replace(qty::VARCHAR, '\\.?0+$', ''), regexp_replace(unit_price::VARCHAR, '\\.?0+$', ''),
                      round(qty * unit_price, 2)::DECIMAL(18,2)::VARCHAR, amount::VARCHAR) END,
               '; ' ORDER BY line_no) FILTER (WHERE {mismatch}) AS lines_amount_mismatch,
    NULL::DECIMAL(18,2) AS debits, NULL::DECIMAL(18,2) AS credits, {too_long} AS lines_too_long
  FROM {lines} a JOIN todo t ON t.rid = a.{pid} AND t.version = a.version WHERE a.realm_id = $realm GROUP BY 1"""

_JE_LINE_AGG = """
  SELECT je_id AS rid, count(*) AS line_count, NULL::DECIMAL(18,2) AS lines_total,
    string_agg('line ' || line_no, ', ' ORDER BY line_no) FILTER (WHERE account_code IS NULL) AS lines_missing_ref,
    string_agg('line ' || line_no, ', ' ORDER BY line_no) FILTER (WHERE amount IS NULL) AS lines_missing_amount,
    NULL::VARCHAR AS lines_amount_mismatch,
    coalesce(sum(amount) FILTER (WHERE posting_type = 'debit'), 0)::DECIMAL(18,2) AS debits,
    coalesce(sum(amount) FILTER (WHERE posting_type = 'credit'), 0)::DECIMAL(18,2) AS credits,
    {too_long} AS lines_too_long
  FROM {lines} a JOIN todo t ON t.rid = a.je_id AND t.version = a.version WHERE a.realm_id = $realm GROUP BY 1"""

_NO_LINES = """SELECT NULL::VARCHAR AS rid, 0::BIGINT AS line_count, NULL::DECIMAL(18,2) AS lines_total,
  NULL::VARCHAR AS lines_missing_ref, NULL::VARCHAR AS lines_missing_amount, NULL::VARCHAR AS lines_amount_mismatch,
  NULL::DECIMAL(18,2) AS debits, NULL::DECIMAL(18,2) AS credits, NULL::VARCHAR AS lines_too_long WHERE FALSE"""

# The text each entity's record sends in a field QuickBooks limits: (SQL of the value, what it is, the QBO field).
_TEXT_FIELDS = {
    "vendor": ("h.name", "the name", "DisplayName"),
    "customer": ("h.name", "the name", "DisplayName"),
    "purchase_order": ("h.po_number", "the PO number", "DocNumber"),
    "bill": ("h.bill_number", "the bill number", "DocNumber"),
    "invoice": ("h.invoice_number", "the invoice number", "DocNumber"),
    "payment": ("h.payment_number", "the payment number", "PaymentRefNum"),
    "journal_entry": ("h.je_number", "the journal entry number", "DocNumber"),
}


def _too_long(value: str, what: str, field: str) -> str:
    """SQL: a sentence when the value is longer than QuickBooks takes in the field, else NULL."""
    limit = QBO_TEXT_LIMITS[field]
    return (
        f"CASE WHEN length({value}) > {limit} THEN '{what} has ' || length({value}) "
        f"|| ' characters; QuickBooks takes at most {limit} in {field}' END"
    )


_LINES_TOO_LONG = (
    "string_agg('line ' || line_no || ': ' || "
    + _too_long("description", "the description", "Description")
    + ", '; ' ORDER BY line_no)"
)

# entity: (header view, id column, party (view, id column) or None, document (view, id column) or None,
#          select list for name/status/party/document/account/date/amount/number)
_SHAPES = {
    "vendor": (
        "vendors",
        "vendor_id",
        None,
        None,
        "h.name, h.status, NULL AS party_id, h.currency AS party_currency, NULL AS document_id, "
        "NULL AS account_code, NULL::DATE AS txn_date, NULL::DECIMAL(18,2) AS amount, NULL AS posting_status",
    ),
    "customer": (
        "customers",
        "customer_id",
        None,
        None,
        "h.name, h.status, NULL AS party_id, h.currency AS party_currency, NULL AS document_id, "
        "NULL AS account_code, NULL::DATE AS txn_date, NULL::DECIMAL(18,2) AS amount, "
        "NULL AS posting_status",
    ),
    "purchase_order": (
        "purchase_orders",
        "po_id",
        ("vendors", "vendor_id"),
        None,
        "NULL AS name, NULL AS status, h.vendor_id AS party_id, p.currency AS party_currency, "
        "NULL AS document_id, NULL AS account_code, h.txn_date, h.total AS amount, h.posting_status",
    ),
    "bill": (
        "bills",
        "bill_id",
        ("vendors", "vendor_id"),
        None,
        "NULL AS name, NULL AS status, h.vendor_id AS party_id, p.currency AS party_currency, "
        "NULL AS document_id, NULL AS account_code, h.txn_date, h.total AS amount, h.posting_status",
    ),
    "invoice": (
        "invoices",
        "invoice_id",
        ("customers", "customer_id"),
        None,
        "NULL AS name, NULL AS status, h.customer_id AS party_id, p.currency AS party_currency, "
        "NULL AS document_id, NULL AS account_code, h.txn_date, h.total AS amount, h.posting_status",
    ),
    "payment": (
        "payments",
        "payment_id",
        ("customers", "customer_id"),
        ("invoices", "invoice_id"),
        "NULL AS name, NULL AS status, h.customer_id AS party_id, p.currency AS party_currency, "
        "h.invoice_id AS document_id, h.deposit_account_code AS account_code, h.txn_date, "
        "h.amount, h.posting_status",
    ),
    "bill_payment": (
        "bill_payments",
        "bill_payment_id",
        ("vendors", "vendor_id"),
        ("bills", "bill_id"),
        "NULL AS name, NULL AS status, h.vendor_id AS party_id, p.currency AS party_currency, "
        "h.bill_id AS document_id, h.bank_account_code AS account_code, h.txn_date, h.amount, "
        "h.posting_status",
    ),
    "journal_entry": (
        "journal_entries",
        "je_id",
        None,
        None,
        "NULL AS name, NULL AS status, NULL AS party_id, NULL AS party_currency, "
        "NULL AS document_id, NULL AS account_code, h.txn_date, NULL::DECIMAL(18,2) AS amount, "
        "h.posting_status",
    ),
}
_LINES_OF = {"purchase_order": "po_lines", "bill": "bill_lines", "invoice": "invoice_lines"}


def _lines_sql(entity: str, id_col: str) -> str:
    if entity == "journal_entry":
        return _JE_LINE_AGG.format(lines=awra_table("journal_lines"), too_long=_LINES_TOO_LONG)
    if entity in _LINES_OF:
        # Invoice lines become SalesItemLineDetail, which needs an item; other lines take an account.
        missing = "item_sku IS NULL" if entity == "invoice" else "item_sku IS NULL AND account_code IS NULL"
        return _LINE_AGG.format(
            pid=id_col,
            lines=awra_table(_LINES_OF[entity]),
            missing_ref=missing,
            mismatch=_MISMATCH,
            too_long=_LINES_TOO_LONG,
        )
    return _NO_LINES


def _frame_sql(entity: str, dirty: bool = False) -> str:
    """One entity's readiness frame; with `dirty`, only the records in the temp table _dirty (an incremental check)."""
    view, id_col, party, document, cols = _SHAPES[entity]
    party_join = (
        f"LEFT JOIN {current_view(party[0])} p ON p.realm_id = h.realm_id AND p.{party[1]} = h.{party[1]}"
        if party
        else "LEFT JOIN (SELECT NULL AS x) p ON FALSE"
    )
    doc_join = (
        f"LEFT JOIN {current_view(document[0])} d ON d.realm_id = h.realm_id AND d.{document[1]} = h.{document[1]}"
        if document
        else "LEFT JOIN (SELECT NULL AS x) d ON FALSE"
    )
    own_too_long = _too_long(*_TEXT_FIELDS[entity]) if entity in _TEXT_FIELDS else "NULL"
    headers = _dirty_headers(entity, view, id_col) if dirty else current_view(view)
    party_known = f"p.{party[1]} IS NOT NULL" if party else "FALSE"
    doc_known = f"d.{document[1]} IS NOT NULL" if document else "FALSE"
    # The records still to send: not excluded, and never synced or changed since. Only their lines are read.
    to_send = f"""LEFT JOIN exclusions x ON x.realm_id = h.realm_id AND x.entity = '{entity}'
         AND x.record_id = h.{id_col}
        LEFT JOIN external_refs e ON e.realm_id = h.realm_id AND e.entity = '{entity}'
         AND e.record_id = h.{id_col}
        WHERE h.realm_id = $realm AND x.record_id IS NULL
          AND (e.record_id IS NULL OR e.synced_version < h.version)"""
    todo = (
        f"todo AS MATERIALIZED (SELECT h.{id_col} AS rid, h.version FROM {headers} h {to_send}),"
        if entity in _LINES_OF or entity == "journal_entry"
        else ""
    )
    return f"""WITH {todo} l AS ({_lines_sql(entity, id_col)})
        SELECT '{entity}' AS entity, h.{id_col} AS record_id, h.version, h.approval_status, h.currency,
               {cols}, {party_known} AS party_known, {doc_known} AS document_known,
               coalesce(l.line_count, 0) AS line_count, l.lines_total, l.lines_missing_ref, l.lines_missing_amount,
               l.lines_amount_mismatch, l.debits, l.credits,
               nullif(concat_ws('; ', {own_too_long}, l.lines_too_long), '') AS too_long,
               co.book_close_date, co.home_currency, co.multicurrency
        FROM {headers} h
        {party_join}
        {doc_join}
        LEFT JOIN l ON l.rid = h.{id_col}
        LEFT JOIN qbo_company co ON co.realm_id = h.realm_id
        {to_send}"""


def _dirty_headers(entity: str, view: str, id_col: str) -> str:
    """The dirty records' current header rows, found from _dirty first. Through the current view, DuckDB joined
    every header row to records before it looked at _dirty, so an incremental check cost as much as a full one."""
    return f"""(SELECT a.* FROM {awra_table(view)} a
        SEMI JOIN _dirty d ON d.entity = '{entity}' AND d.record_id = a.{id_col}
        SEMI JOIN records r ON r.realm_id = a.realm_id AND r.entity = '{entity}' AND r.record_id = a.{id_col}
         AND r.current_version = a.version AND r.removed_at IS NULL)"""


def readiness_frames(store: Store, realm_id: str, dirty: bool = False) -> dict[str, pl.DataFrame]:
    """Per entity, one row per record still to send (only the dirty ones, with `dirty`): what the rules look at."""
    return {entity: store.frame(_frame_sql(entity, dirty), {"realm": realm_id}) for entity in _SHAPES}


# -- source rules (Pandera) ------------------------------------------------------------------------------
def _empty_findings() -> pl.DataFrame:
    return pl.DataFrame(schema=FINDING_COLUMNS)


def source_findings(frames: dict[str, pl.DataFrame]) -> pl.DataFrame:
    """Run each entity's Pandera schema; every failed check on a row becomes one finding."""
    out = [_empty_findings()]
    for entity, frame in frames.items():
        if frame.is_empty():
            continue
        try:
            readiness_schema(entity).validate(frame, lazy=True)
            continue
        except pandera.errors.SchemaErrors as err:
            cases = err.failure_cases.filter(pl.col("index").is_not_null())
        for (check_name,), failed in cases.group_by("check", maintain_order=True):
            rule = RULES[int(str(check_name).split(":", 1)[0])]
            out.append(
                frame[failed["index"]].select(
                    pl.col("entity"),
                    pl.col("record_id"),
                    pl.col("version").cast(pl.Int32),
                    pl.lit(rule.check).alias("check_name"),
                    pl.lit(rule.dimension).alias("dimension"),
                    pl.lit(rule.reason).alias("reason"),
                    rule.detail.cast(pl.String).alias("detail"),
                    pl.lit(None, pl.String).alias("mapping_kind"),
                    pl.lit(None, pl.String).alias("mapping_value"),
                )
            )
    return pl.concat(out)


# -- mapping gaps ----------------------------------------------------------------------------------------
def _mapping_findings_sql(dirty: bool = False) -> str:
    parts = []
    for kind in KINDS.values():
        parts.append(
            f"""SELECT u.entity, u.record_id, '{kind.kind}' AS kind, u.value, min(u.line_no) AS line_no,
                       any_value(m.status) AS status, any_value(m.qbo_name) AS qbo_name,
                       any_value(m.confidence) AS confidence, '{kind.noun}' AS noun, '{kind.qbo_noun}' AS qbo_noun
                FROM ({mapping_usage_sql(kind, only="todo")}) u
                LEFT JOIN mappings m ON m.realm_id = u.realm_id AND m.kind = '{kind.kind}' AND m.awra_value = u.value
                WHERE u.realm_id = $realm AND (m.status IS NULL OR m.status <> 'mapped')
                GROUP BY u.entity, u.record_id, u.value"""
        )
        if kind.kind in MAPPED_ENTITIES.values():
            assert kind.awra_names is not None  # the mapped master lists (items, accounts) name their AWRA rows
            view, id_col, _ = kind.awra_names
            parts.append(
                f"""SELECT '{kind.kind}' AS entity, h.{id_col} AS record_id, '{kind.kind}', h.{id_col}, NULL,
                           m.status, m.qbo_name, m.confidence, '{kind.noun}', '{kind.qbo_noun}'
                    FROM {current_rows(view, kind.kind, id_col, "h", "todo" if dirty else None)}
                    LEFT JOIN mappings m ON m.realm_id = h.realm_id AND m.kind = '{kind.kind}'
                     AND m.awra_value = h.{id_col}
                    WHERE h.realm_id = $realm AND (m.status IS NULL OR m.status <> 'mapped')"""
            )
    # A party mapped to a QBO vendor or customer that has since gone inactive blocks its documents too.
    for entity, party, col in (
        ("purchase_order", "vendor", "vendor_id"),
        ("bill", "vendor", "vendor_id"),
        ("bill_payment", "vendor", "vendor_id"),
        ("invoice", "customer", "customer_id"),
        ("payment", "customer", "customer_id"),
    ):
        view = _SHAPES[entity][0]
        parts.append(
            f"""SELECT '{entity}', h.{_SHAPES[entity][1]}, '{party}', h.{col}, NULL, m.status, m.qbo_name,
                       m.confidence, '{party}', '{party}'
                FROM {current_rows(view, entity, _SHAPES[entity][1], "h", "todo" if dirty else None)}
                JOIN mappings m ON m.realm_id = h.realm_id AND m.kind = '{party}'
                 AND m.awra_value = h.{col} AND m.status = 'stale'
                WHERE h.realm_id = $realm"""
        )
    union = " UNION ALL ".join(parts)
    # todo: the records still to send, with their version. The item and account masters are never sent: every
    # one not excluded counts. An incremental check starts from _dirty, and each AWRA table is read for todo's
    # records only: the late filter it had joined every record first.
    mapped = ", ".join(f"'{e}'" for e in MAPPED_ENTITIES)
    records = (
        "records r SEMI JOIN _dirty d ON d.entity = r.entity AND d.record_id = r.record_id" if dirty else "records r"
    )
    return f"""WITH todo AS MATERIALIZED (
                 SELECT r.entity, r.record_id, r.current_version FROM {records}
                 LEFT JOIN external_refs e ON e.realm_id = r.realm_id AND e.entity = r.entity
                  AND e.record_id = r.record_id
                 LEFT JOIN exclusions x ON x.realm_id = r.realm_id AND x.entity = r.entity
                  AND x.record_id = r.record_id
                 WHERE r.realm_id = $realm AND r.removed_at IS NULL AND x.record_id IS NULL
                   AND (r.entity IN ({mapped}) OR e.record_id IS NULL OR e.synced_version < r.current_version))
               SELECT g.entity, g.record_id, t.current_version::INTEGER AS version, 'mapped' AS check_name,
                      'mapping' AS dimension,
                      'mapping.' || g.kind || CASE WHEN g.status = 'stale' THEN '_stale' ELSE '_missing' END AS reason,
                      CASE WHEN g.line_no IS NULL THEN '' ELSE 'line ' || g.line_no || ': ' END || g.noun || ' '
                        || g.value || CASE
                          WHEN g.status = 'stale' THEN ' is mapped to QuickBooks ' || g.qbo_noun || ' '''
                               || g.qbo_name || ''', which is inactive or deleted there'
                          WHEN g.status = 'suggested' THEN ' has no confirmed QuickBooks ' || g.qbo_noun
                               || '; suggested: ''' || g.qbo_name || ''' (confidence '
                               || round(g.confidence * 100)::INTEGER || '%)'
                          ELSE ' has no QuickBooks ' || g.qbo_noun END AS detail,
                      g.kind AS mapping_kind, g.value AS mapping_value
               FROM ({union}) g
               JOIN todo t ON t.entity = g.entity AND t.record_id = g.record_id"""


def mapping_findings(store: Store, realm_id: str, dirty: bool = False) -> pl.DataFrame:
    frame = store.frame(_mapping_findings_sql(dirty), {"realm": realm_id})
    return frame.select([pl.col(c).cast(t) for c, t in FINDING_COLUMNS.items()])


# -- QuickBooks changed after the sync ---------------------------------------------------------------------
# A synced record whose QuickBooks object someone deleted, voided or changed there: the books and AWRA disagree, and
# sending it again (an update of a deleted object, or one that overwrites their change) is not the app's to decide.
DRIFT_CHECK = "in_quickbooks"
DRIFT_REASONS = (
    "provider_rejection.deleted_in_qbo",
    "provider_rejection.voided_in_qbo",
    "provider_rejection.changed_in_qbo",
)
# Each transaction's money at every stored version: what was sent (the synced version) and what AWRA says now.
_VERSION_AMOUNTS = {
    "purchase_order": ("purchase_orders", "po_id", "total"),
    "bill": ("bills", "bill_id", "total"),
    "invoice": ("invoices", "invoice_id", "total"),
    "payment": ("payments", "payment_id", "amount"),
    "bill_payment": ("bill_payments", "bill_payment_id", "amount"),
}


def _version_amounts_sql() -> str:
    parts = [
        f"""SELECT '{entity}' AS entity, a.{id_col} AS record_id, a.version, a.{amount} AS amount, a.posting_status
            FROM {awra_table(table)} a SEMI JOIN linked k
              ON k.entity = '{entity}' AND k.record_id = a.{id_col}
             AND a.version IN (k.synced_version, k.current_version)
            WHERE a.realm_id = $realm"""
        for entity, (table, id_col, amount) in _VERSION_AMOUNTS.items()
    ]
    # A journal entry's money is its debit side, as QuickBooks totals it.
    parts.append(
        f"""SELECT 'journal_entry', j.je_id, j.version,
                   sum(l.amount) FILTER (WHERE l.posting_type = 'debit'), any_value(j.posting_status)
            FROM {awra_table("journal_entries")} j SEMI JOIN linked k
              ON k.entity = 'journal_entry' AND k.record_id = j.je_id
             AND j.version IN (k.synced_version, k.current_version)
            LEFT JOIN {awra_table("journal_lines")} l
              ON l.realm_id = j.realm_id AND l.je_id = j.je_id AND l.version = j.version
            WHERE j.realm_id = $realm GROUP BY j.je_id, j.version"""
    )
    return " UNION ALL ".join(parts)


# deleted: the mirror says so (a pull or a webhook read found it gone). voided: QuickBooks zeroes a voided
# transaction's amounts and starts its PrivateNote with "Voided" (ref §5), while AWRA still has money on it and has not
# voided it. changed: its SyncToken moved past the one our last write or link saw (someone saved it since) and its
# total matches neither the AWRA version it was synced from nor the current one. A SyncToken alone is not enough:
# QuickBooks moves a bill's or an invoice's when a payment is applied to it, which changes nothing that was sent.
def _drift_sql(dirty: bool = False) -> str:
    # An incremental check starts from the dirty records' links, found first (materialized: as a join, or a late
    # filter, DuckDB joined every link to records and the mirror before it looked at _dirty).
    links = "external_refs x"
    first = ""
    if dirty:
        first = """dirty_links AS MATERIALIZED (SELECT x.* FROM external_refs x
          SEMI JOIN _dirty d ON d.entity = x.entity AND d.record_id = x.record_id WHERE x.realm_id = $realm),"""
        links = "dirty_links x"
    return f"""WITH {first} linked AS MATERIALIZED (
      SELECT x.entity, x.record_id, x.qbo_entity, x.qbo_id, x.sync_token AS our_token, x.synced_version,
             r.current_version, o.deleted, o.total_amt, o.note, o.sync_token AS qbo_token, o.changed_at
      FROM {links}
      JOIN records r ON r.realm_id = x.realm_id AND r.entity = x.entity AND r.record_id = x.record_id
       AND r.removed_at IS NULL
      JOIN qbo_objects o ON o.realm_id = x.realm_id AND o.entity = x.qbo_entity AND o.qbo_id = x.qbo_id
      ANTI JOIN exclusions e ON e.realm_id = x.realm_id AND e.entity = x.entity AND e.record_id = x.record_id
      WHERE x.realm_id = $realm AND list_contains($entities, x.entity)),
    amounts AS ({_version_amounts_sql()}),
    judged AS (
      SELECT k.*, sent.amount AS sent_amount, now_.amount AS now_amount, now_.posting_status,
             CASE WHEN k.deleted THEN 'provider_rejection.deleted_in_qbo'
                  WHEN starts_with(coalesce(k.note, ''), 'Voided') AND coalesce(k.total_amt, 0) = 0
                       AND coalesce(now_.amount, 0) <> 0 AND now_.posting_status IS DISTINCT FROM 'void'
                    THEN 'provider_rejection.voided_in_qbo'
                  WHEN k.qbo_token IS DISTINCT FROM k.our_token AND k.total_amt IS NOT NULL AND sent.amount IS NOT NULL
                       AND k.total_amt <> sent.amount AND k.total_amt IS DISTINCT FROM now_.amount
                    THEN 'provider_rejection.changed_in_qbo' END AS reason
      FROM linked k
      LEFT JOIN amounts sent ON sent.entity = k.entity AND sent.record_id = k.record_id
       AND sent.version = k.synced_version
      LEFT JOIN amounts now_ ON now_.entity = k.entity AND now_.record_id = k.record_id
       AND now_.version = k.current_version)
    SELECT entity, record_id, current_version::INTEGER AS version, '{DRIFT_CHECK}' AS check_name,
           'provider_rejection' AS dimension, reason,
           'QuickBooks ' || replace(entity, '_', ' ') || ' Id ' || qbo_id || CASE reason
             WHEN 'provider_rejection.deleted_in_qbo' THEN ' was deleted there (seen '
                  || strftime(changed_at, '%Y-%m-%d %H:%M') || ' UTC); AWRA still has it'
             WHEN 'provider_rejection.voided_in_qbo' THEN ' was voided there (its total is now 0.00); AWRA still has '
                  || now_amount::VARCHAR || ' on it, ' || coalesce(posting_status, 'not voided')
             ELSE ' now totals ' || total_amt::VARCHAR || '; the AWRA version it was synced from (v' || synced_version
                  || ') totals ' || sent_amount::VARCHAR
                  || CASE WHEN current_version > synced_version
                          THEN ', the current one (v' || current_version || ') '
                               || coalesce(now_amount::VARCHAR, 'none')
                          ELSE '' END
             END AS detail,
           NULL::VARCHAR AS mapping_kind, NULL::VARCHAR AS mapping_value
    FROM judged WHERE reason IS NOT NULL"""


def qbo_drift_findings(store: Store, realm_id: str, dirty: bool = False) -> pl.DataFrame:
    """Synced records whose QuickBooks object was deleted, voided or changed there since (one finding each)."""
    frame = store.frame(_drift_sql(dirty), {"realm": realm_id, "entities": list(TRANSACTIONS)})
    return frame.select([pl.col(c).cast(t) for c, t in FINDING_COLUMNS.items()])


# -- dependencies ----------------------------------------------------------------------------------------
def dependency_findings(
    frames: dict[str, pl.DataFrame], found: pl.DataFrame, store: Store, realm_id: str
) -> pl.DataFrame:
    """A document waits for its party (unless mapped) and a payment for its invoice (unless synced)."""
    first = found.sort("dimension", "reason").group_by("entity", "record_id").agg(pl.col("detail").first().alias("why"))
    linked = store.frame(
        """SELECT kind AS dep_entity, awra_value AS dep_id FROM mappings
           WHERE realm_id = $realm AND kind IN ('vendor', 'customer') AND status = 'mapped'
           UNION SELECT entity, record_id FROM external_refs
           WHERE realm_id = $realm AND entity IN ('invoice', 'bill', 'vendor', 'customer')""",
        {"realm": realm_id},
    )
    # A document linked to a QuickBooks object that was deleted there is not in QuickBooks any more: what pays it waits.
    gone = found.filter(pl.col("reason") == "provider_rejection.deleted_in_qbo").select(
        pl.col("entity").alias("dep_entity"), pl.col("record_id").alias("dep_id")
    )
    linked = linked.join(gone, on=["dep_entity", "dep_id"], how="anti")
    out = [_empty_findings()]
    deps = {
        "purchase_order": [("vendor", "party_id")],
        "bill": [("vendor", "party_id")],
        "invoice": [("customer", "party_id")],
        "payment": [("customer", "party_id"), ("invoice", "document_id")],
        "bill_payment": [("vendor", "party_id"), ("bill", "document_id")],
    }
    for entity, needs in deps.items():
        frame = frames.get(entity)
        if frame is None or frame.is_empty():
            continue
        for dep_entity, column in needs:
            waiting = (
                frame.filter(pl.col(column).is_not_null())
                .select("entity", "record_id", "version", pl.col(column).alias("dep_id"))
                .join(linked.filter(pl.col("dep_entity") == dep_entity), on="dep_id", how="anti")
                .join(
                    first.filter(pl.col("entity") == dep_entity).select(pl.col("record_id").alias("dep_id"), "why"),
                    on="dep_id",
                )
            )
            out.append(
                waiting.select(
                    "entity",
                    "record_id",
                    pl.col("version").cast(pl.Int32),
                    pl.lit("eligible").alias("check_name"),
                    pl.lit("source_data").alias("dimension"),
                    pl.lit("source_data.dependency_not_ready").alias("reason"),
                    pl.format("{} {} is not ready: {}", pl.lit(dep_entity.replace("_", " ")), "dep_id", "why").alias(
                        "detail"
                    ),
                    pl.lit(None, pl.String).alias("mapping_kind"),
                    pl.lit(None, pl.String).alias("mapping_value"),
                )
            )
    return pl.concat(out)


# -- the run ---------------------------------------------------------------------------------------------
def _amounts(frames: dict[str, pl.DataFrame]) -> pl.DataFrame:
    parts = [
        f.select("entity", "record_id", pl.col("amount").cast(pl.Decimal(18, 2)), "txn_date")
        for f in frames.values()
        if not f.is_empty()
    ]
    return (
        pl.concat(parts)
        if parts
        else pl.DataFrame(
            schema={
                "entity": pl.String,
                "record_id": pl.String,
                "amount": pl.Decimal(18, 2),
                "txn_date": pl.Date,
            }
        )
    )


# -- what changed since the last check -------------------------------------------------------------------------
# Everything a record's findings depend on, and where a change to it is seen. A record is re-checked when any of
# them moved at or after the last check started (at, not after: a change stamped with the same moment as that check
# is taken again, which costs a little and never misses one):
#   its own version (ingest: first_seen_at, changed_at, removed_at); a mapping it uses, or its own (set_at; a person
#   or the automatic matching, including a mapped object going stale); an exclusion or a duplicate decision about
#   it; its link to QuickBooks (linked_at: a send, a lookup, a person's link); the QuickBooks object it is linked to
#   (changed_at, from the pull); then, one and two steps down, what depends on a changed record (a party's
#   documents and payments, a document's payments), and records whose duplicate candidates changed (those are
#   found afresh every run: a new QuickBooks object may match any record not yet sent).
# The rules, the queries and the company's settings (closing date, currencies) are fingerprinted: a change to any of
# them makes the next check a full one, as does a check on demand (`synchealth check --full`) and the daily full
# check the scheduler runs as a safety net.
# Except: what the last check wrote itself before it looked (its automatic mappings and the links it adopted by
# marker, stamped with its own start) it has seen. Only a check writes those, and checks of a company run one at a
# time, so a row of that kind stamped with the last check's start is its own, unless this check starts at that same
# moment and wrote it now (a clock that did not move: then it is taken, as before). Taken again, the first
# incremental check after a company's first check would re-check every record that check linked or mapped.
_OWN_MAPPING = "(m.set_at = $since AND m.source = 'auto' AND $now > $since)"
_OWN_LINK = "(x.linked_at = $since AND x.linked_by = 'marker' AND $now > $since)"


def _dirty_sql() -> str:
    return f"""
CREATE OR REPLACE TEMP TABLE _dirty AS
SELECT entity, record_id FROM records
WHERE realm_id = $realm AND (first_seen_at >= $since OR changed_at >= $since OR removed_at >= $since)
UNION SELECT u.entity, u.record_id FROM ({all_mapping_usage_sql()}) u
  JOIN mappings m ON m.realm_id = u.realm_id AND m.kind = u.kind AND m.awra_value = u.value
  WHERE u.realm_id = $realm AND m.set_at >= $since AND NOT {_OWN_MAPPING}
UNION SELECT kind, awra_value FROM mappings m WHERE realm_id = $realm AND set_at >= $since AND NOT {_OWN_MAPPING}
UNION SELECT entity, record_id FROM exclusions WHERE realm_id = $realm AND excluded_at >= $since
UNION SELECT entity, record_id FROM duplicate_decisions WHERE realm_id = $realm AND decided_at >= $since
UNION SELECT entity, record_id FROM external_refs x WHERE realm_id = $realm AND linked_at >= $since AND NOT {_OWN_LINK}
UNION SELECT x.entity, x.record_id FROM external_refs x
  JOIN qbo_objects o ON o.realm_id = x.realm_id AND o.entity = x.qbo_entity AND o.qbo_id = x.qbo_id
  WHERE x.realm_id = $realm AND o.changed_at >= $since
"""


# (child entity, its view, its id column, the column naming the parent, the parent's entity)
_DEPENDENTS = (
    ("purchase_order", "purchase_orders", "po_id", "vendor_id", "vendor"),
    ("bill", "bills", "bill_id", "vendor_id", "vendor"),
    ("bill_payment", "bill_payments", "bill_payment_id", "vendor_id", "vendor"),
    ("invoice", "invoices", "invoice_id", "customer_id", "customer"),
    ("payment", "payments", "payment_id", "customer_id", "customer"),
    ("payment", "payments", "payment_id", "invoice_id", "invoice"),
    ("bill_payment", "bill_payments", "bill_payment_id", "bill_id", "bill"),
)


def _expand_dependents(cur, realm_id: str) -> None:
    """Add what depends on a dirty record: a party's documents and payments, then a document's payments."""
    # From the AWRA rows naming a dirty parent to the records whose current version they are, not through the
    # current view: DuckDB joined every row of the view's table to records before it looked at _dirty.
    for _step in range(2):
        cur.execute(
            "INSERT INTO _dirty "
            + " UNION ".join(
                f"""SELECT '{child}', c.{id_col} FROM {awra_table(view)} c
                    SEMI JOIN _dirty d ON d.entity = '{parent}' AND d.record_id = c.{parent_col}
                    SEMI JOIN records r ON r.realm_id = c.realm_id AND r.entity = '{child}'
                     AND r.record_id = c.{id_col} AND r.current_version = c.version AND r.removed_at IS NULL
                    WHERE c.realm_id = $realm"""
                for child, view, id_col, parent_col, parent in _DEPENDENTS
            )
            + " EXCEPT SELECT entity, record_id FROM _dirty",
            {"realm": realm_id},
        ).fetchall()


def rules_fingerprint() -> str:
    """What the findings are computed by: the rules, the text limits and every query's own text."""
    parts = [
        repr([(r.check, r.dimension, r.reason, str(r.detail)) for r in RULES]),
        repr(sorted(QBO_TEXT_LIMITS.items())),
    ]
    parts += [_frame_sql(entity) for entity in _SHAPES]
    parts += [_mapping_findings_sql(), _drift_sql(), duplicates.rules_text()]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def _company_fingerprint(store: Store, realm_id: str) -> str:
    """The company settings the rules read (closing date, currencies): a change means a full check."""
    row = store.rows(
        "SELECT book_close_date, home_currency, multicurrency FROM qbo_company WHERE realm_id = ?", [realm_id]
    )
    return hashlib.sha256(repr(row).encode()).hexdigest()


def _last_run(store: Store, realm_id: str) -> tuple[int, datetime, str | None, str | None] | None:
    rows = store.rows(
        "SELECT run_id, started_at, rules_fingerprint, company_fingerprint FROM check_runs WHERE realm_id = ? "
        "ORDER BY run_id DESC LIMIT 1",
        [realm_id],
    )
    return rows[0] if rows else None


def run_check(
    store: Store,
    realm_id: str,
    *,
    now: datetime,
    trigger: str = "check",
    actor: str | None = None,
    window_days: int = 5,
    full: bool = False,
) -> CheckResult:
    """Check the records whose inputs changed since the last check (every live record with `full`, on the first
    check, or when the rules or the company's settings changed): link ours, refresh mappings, find problems, store
    them, set states. An incremental check gives the findings and states a full one would (a property test holds
    it to that); the findings of the records it did not re-check are carried forward from the last run."""
    clock = time.perf_counter()
    rules, company = rules_fingerprint(), _company_fingerprint(store, realm_id)
    last = _last_run(store, realm_id)
    incremental = not full and last is not None and (last[2], last[3]) == (rules, company)
    duplicates.adopt_marked(store, realm_id, now=now)
    # An incremental check matches again only what may match otherwise since the last one (refresh_mappings).
    refresh_mappings(store, realm_id, now=now, since=last[1] if incremental and last else None)
    run_id = int(store.scalar("SELECT nextval('check_run_seq')"))
    candidates = duplicates.find_candidates(store, realm_id, run_id, window_days=window_days)
    dup = duplicates.duplicate_findings(candidates).select([pl.col(c).cast(t) for c, t in FINDING_COLUMNS.items()])
    cur = store.cursor()
    if incremental:
        assert last is not None
        cur.execute(_dirty_sql(), {"realm": realm_id, "since": last[1], "now": now}).fetchall()
        _mark_duplicate_changes(cur, dup, last[0])
        _expand_dependents(cur, realm_id)
        checked = int(cur.execute("SELECT count(*) FROM _dirty").fetchall()[0][0])
    frames = readiness_frames(store, realm_id, dirty=incremental)
    fresh = pl.concat(
        [
            source_findings(frames),
            mapping_findings(store, realm_id, dirty=incremental),
            qbo_drift_findings(store, realm_id, dirty=incremental),
        ],
        how="vertical_relaxed",
    )
    carried = _carried(store, realm_id, last[0], frames) if incremental and last else _empty_findings()
    found = pl.concat([fresh, dup, carried], how="vertical_relaxed")
    deps = dependency_findings(frames, found, store, realm_id)
    found = pl.concat([fresh, dup, deps], how="vertical_relaxed")
    amounts = pl.concat([_amounts(frames), candidates.select("entity", "record_id",
                         pl.col("amount").cast(pl.Decimal(18, 2)), "txn_date")], how="vertical_relaxed").unique(
        ["entity", "record_id"], keep="first", maintain_order=True)  # fmt: skip
    findings = found.join(amounts, on=["entity", "record_id"], how="left").unique(
        ["entity", "record_id", "reason", "detail"], keep="first", maintain_order=True
    )
    if not incremental:
        checked = int(
            store.scalar("SELECT count(*) FROM records WHERE realm_id = ? AND removed_at IS NULL", [realm_id])
        )
    cur.register("_findings", findings.to_arrow())
    try:
        with store.transaction() as tx:
            tx.execute(
                """INSERT INTO findings
                   SELECT $run, $realm, entity, record_id, version, check_name, dimension, reason, detail,
                          mapping_kind, mapping_value, amount, txn_date FROM _findings""",
                {"run": run_id, "realm": realm_id},
            )
            if incremental and last:
                # What was not re-checked keeps the findings the last run gave it (duplicates are found afresh).
                tx.execute(
                    f"""INSERT INTO findings
                        SELECT $run, realm_id, entity, record_id, version, check_name, dimension, reason, detail,
                               mapping_kind, mapping_value, amount, txn_date
                        FROM findings f WHERE f.run_id = $last AND f.check_name <> '{duplicates.CHECK_NAME}'
                          AND (f.entity, f.record_id) NOT IN (SELECT entity, record_id FROM _dirty)""",
                    {"run": run_id, "last": last[0]},
                )
            _log_first_failures(tx, realm_id, run_id, last[0] if last else None)
            _set_states(tx, realm_id, run_id, only_dirty=incremental)
            by_state = dict(
                tx.execute(
                    "SELECT state, count(*) FROM records WHERE realm_id = ? AND removed_at IS NULL GROUP BY 1",
                    [realm_id],
                ).fetchall()
            )
            total_findings = int(
                tx.execute("SELECT count(*) FROM findings WHERE run_id = ?", [run_id]).fetchall()[0][0]
            )
            tx.execute(
                """INSERT INTO check_runs (run_id, realm_id, started_at, finished_at, trigger, actor, records, ready,
                     findings, seconds, kind, records_checked, rules_fingerprint, company_fingerprint)
                   VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
                [
                    run_id,
                    realm_id,
                    now,
                    elapsed_from(now, clock),
                    trigger,
                    actor,
                    sum(by_state.values()),
                    by_state.get("ready", 0),
                    total_findings,
                    time.perf_counter() - clock,
                    "incremental" if incremental else "full",
                    checked,
                    rules,
                    company,
                ],
            )
            by_reason = dict(
                tx.execute("SELECT reason, count(*) FROM findings WHERE run_id = ? GROUP BY 1", [run_id]).fetchall()
            )
            _fold_into_history(tx, realm_id, run_id)
            _drop_old_runs(tx, realm_id)
    finally:
        cur.unregister("_findings")
        cur.execute("DROP TABLE IF EXISTS _dirty").fetchall()
    return CheckResult(
        run_id,
        sum(by_state.values()),
        by_state.get("ready", 0),
        total_findings,
        by_state,
        by_reason,
        time.perf_counter() - clock,
        "incremental" if incremental else "full",
        checked,
    )


# A reference value's failures per record, as this run's findings add to what the runs before gave (max, sum, max,
# max, min fold over runs: finding_history holds every run's without keeping every run's findings).
_HISTORY_KEY = "realm_id, kind, value, entity, record_id"
_HISTORY_COLUMNS = f"{_HISTORY_KEY}, amount, runs, last_seen, last_run, reason"
_RUN_FAILURES = """
  SELECT f.realm_id, f.mapping_kind AS kind, f.mapping_value AS value, f.entity, f.record_id, max(f.amount) AS amount,
         1 AS runs, any_value(c.started_at) AS last_seen, f.run_id AS last_run, min(f.reason) AS reason
  FROM findings f JOIN check_runs c ON c.run_id = f.run_id
  WHERE f.run_id = $run AND f.mapping_kind IS NOT NULL
  GROUP BY f.realm_id, f.mapping_kind, f.mapping_value, f.entity, f.record_id, f.run_id"""
# The check runs whose findings and duplicate candidates are kept: the pages and the next check read the last run's,
# a check compares it with the one before; the history of each reference value is in finding_history. Without a bound
# every cycle would add every open finding again (each run carries the findings of what it did not re-check) and every
# candidate found afresh, for as long as it runs.
KEEP_RUNS = 10


def _fold_into_history(tx, realm_id: str, run_id: int) -> None:
    """This run's failures per reference value and record added to finding_history."""
    tx.execute(f"CREATE OR REPLACE TEMP TABLE _run_failures AS {_RUN_FAILURES}", {"run": run_id}).fetchall()
    met = f"realm_id = $realm AND ({_HISTORY_KEY}) IN (SELECT {_HISTORY_KEY} FROM _run_failures)"
    tx.execute(
        f"""CREATE OR REPLACE TEMP TABLE _history_now AS
            SELECT {_HISTORY_KEY}, max(amount) AS amount, sum(runs) AS runs, max(last_seen) AS last_seen,
                   max(last_run) AS last_run, min(reason) AS reason
            FROM (SELECT {_HISTORY_COLUMNS} FROM finding_history WHERE {met}
                  UNION ALL SELECT {_HISTORY_COLUMNS} FROM _run_failures) h
            GROUP BY ALL""",
        {"realm": realm_id},
    ).fetchall()
    tx.execute(f"DELETE FROM finding_history WHERE {met}", {"realm": realm_id}).fetchall()
    tx.execute(f"INSERT INTO finding_history SELECT {_HISTORY_COLUMNS} FROM _history_now").fetchall()
    tx.execute("DROP TABLE _run_failures").fetchall()
    tx.execute("DROP TABLE _history_now").fetchall()


def _drop_old_runs(tx, realm_id: str) -> None:
    """The findings and duplicate candidates of the company's check runs before its last KEEP_RUNS deleted (their
    counts stay in check_runs)."""
    for table in ("findings", "duplicate_candidates"):
        tx.execute(
            f"""DELETE FROM {table} WHERE realm_id = $realm AND run_id < (
                  SELECT min(run_id) FROM (SELECT run_id FROM check_runs WHERE realm_id = $realm
                                           ORDER BY run_id DESC LIMIT $keep) k)""",
            {"realm": realm_id, "keep": KEEP_RUNS},
        ).fetchall()


def _mark_duplicate_changes(cur, dup: pl.DataFrame, last_run: int) -> None:
    """Records whose duplicate findings differ from the last run's are dirty: their state and dependents follow."""
    cur.register("_dup_now", dup.select("entity", "record_id", "reason", "detail").to_arrow())
    try:
        cur.execute(
            f"""INSERT INTO _dirty
                SELECT entity, record_id FROM (
                  (SELECT entity, record_id, reason, detail FROM _dup_now
                   EXCEPT SELECT entity, record_id, reason, detail FROM findings
                   WHERE run_id = $last AND check_name = '{duplicates.CHECK_NAME}')
                  UNION
                  (SELECT entity, record_id, reason, detail FROM findings
                   WHERE run_id = $last AND check_name = '{duplicates.CHECK_NAME}'
                   EXCEPT SELECT entity, record_id, reason, detail FROM _dup_now))
                EXCEPT SELECT entity, record_id FROM _dirty""",
            {"last": last_run},
        ).fetchall()
    finally:
        cur.unregister("_dup_now")


def _carried(store: Store, realm_id: str, last_run: int, frames: dict[str, pl.DataFrame]) -> pl.DataFrame:
    """The last run's findings of the parties and documents the re-checked records depend on (not re-checked)."""
    ids = sorted(
        {i for f in frames.values() for col in ("party_id", "document_id") for i in f[col].drop_nulls().to_list()}
    )
    if not ids:
        return _empty_findings()
    frame = store.frame(
        f"""SELECT entity, record_id, version, check_name, dimension, reason, detail, mapping_kind, mapping_value
            FROM findings WHERE run_id = $last AND entity IN ('vendor', 'customer', 'invoice', 'bill')
              AND list_contains($ids, record_id) AND check_name <> '{duplicates.CHECK_NAME}'
              AND (entity, record_id) NOT IN (SELECT entity, record_id FROM _dirty)""",
        {"last": last_run, "ids": ids},
    )
    return frame.select([pl.col(c).cast(t) for c, t in FINDING_COLUMNS.items()])


# States the sync engine owns: a check leaves them alone unless the record changed since.
_ENGINE_STATES = "('queued', 'retry_scheduled', 'needs_fix', 'ambiguous')"


def _log_first_failures(tx, realm_id: str, run_id: int, last_run: int | None) -> None:
    """Note the records whose failed checks differ between this run and the company's latest before it, `last_run`
    (so may their first failed stage)."""
    changes.log_selected(
        tx,
        """SELECT $realm AS realm_id, entity, record_id FROM (
             (SELECT DISTINCT entity, record_id, check_name FROM findings WHERE run_id = $run
              EXCEPT SELECT entity, record_id, check_name FROM findings WHERE run_id = $last)
             UNION ALL
             (SELECT DISTINCT entity, record_id, check_name FROM findings WHERE run_id = $last
              EXCEPT SELECT entity, record_id, check_name FROM findings WHERE run_id = $run)) d""",
        {"realm": realm_id, "run": run_id, "last": last_run},
    )


def _set_states(tx, realm_id: str, run_id: int, only_dirty: bool = False) -> None:
    dirty = "AND (r.entity, r.record_id) IN (SELECT entity, record_id FROM _dirty)" if only_dirty else ""
    # The records whose state moves, then the change log, then the move (its condition is false after it).
    tx.execute(
        f"""CREATE OR REPLACE TEMP TABLE _new_states AS SELECT records.realm_id, s.entity, s.record_id, s.state FROM (
              SELECT r.entity, r.record_id,
                CASE WHEN x.record_id IS NOT NULL THEN 'excluded'
                     -- in QuickBooks no more, or no longer as sent: held for a person, never silently
                     WHEN f.in_qbo > 0 THEN 'blocked'
                     WHEN e.record_id IS NOT NULL AND e.synced_version >= r.current_version THEN 'synced'
                     WHEN f.source_data > 0 THEN 'not_ready'
                     WHEN f.other > 0 THEN 'blocked'
                     WHEN r.entity IN ('item', 'account') THEN 'synced'
                     ELSE 'ready' END AS state,
                ss.version AS engine_version
              FROM records r
              LEFT JOIN exclusions x USING (realm_id, entity, record_id)
              LEFT JOIN external_refs e USING (realm_id, entity, record_id)
              LEFT JOIN sync_status ss USING (realm_id, entity, record_id)
              LEFT JOIN (SELECT entity, record_id, count(*) FILTER (WHERE dimension = 'source_data') AS source_data,
                                count(*) FILTER (WHERE dimension <> 'source_data') AS other,
                                count(*) FILTER (WHERE check_name = '{DRIFT_CHECK}') AS in_qbo
                         FROM findings WHERE run_id = $run GROUP BY ALL) f USING (entity, record_id)
              WHERE r.realm_id = $realm AND r.removed_at IS NULL {dirty}) s
            JOIN records ON records.realm_id = $realm AND records.entity = s.entity AND records.record_id = s.record_id
            WHERE records.state <> s.state
              AND (records.state NOT IN {_ENGINE_STATES} OR s.state IN ('synced', 'excluded')
                   OR s.engine_version IS DISTINCT FROM records.current_version)""",
        {"run": run_id, "realm": realm_id},
    ).fetchall()
    changes.log_selected(tx, "SELECT realm_id, entity, record_id FROM _new_states")
    tx.execute(
        """UPDATE records SET state = n.state FROM _new_states n
           WHERE records.realm_id = n.realm_id AND records.entity = n.entity AND records.record_id = n.record_id"""
    ).fetchall()
    tx.execute("DROP TABLE _new_states").fetchall()
