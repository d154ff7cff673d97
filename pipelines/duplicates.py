"""Duplicate risk: what in QuickBooks may already be an AWRA record, found before the sync creates it."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

import duckdb
import polars as pl

from pipelines import changes
from pipelines.audit import Change
from pipelines.keys import RecordKey
from pipelines.store import Store, current_view
from schemas.awra import table_for_entity

__all__ = [
    "CHECK_NAME",
    "rules_text",
    "DEFAULT_WINDOW_DAYS",
    "QBO_ENTITY",
    "RULES",
    "adopt_marked",
    "confirm_create_new",
    "duplicate_findings",
    "find_candidates",
    "link_duplicate",
    "normalize_name",
    "normalize_name_sql",
    "party_of_sql",
]

# The QuickBooks entity an AWRA record becomes (ARCHITECTURE.md "Source marker": same entity, same id).
QBO_ENTITY: dict[str, str] = {
    "vendor": "Vendor",
    "customer": "Customer",
    "item": "Item",
    "purchase_order": "PurchaseOrder",
    "bill": "Bill",
    "invoice": "Invoice",
    "payment": "Payment",
    "bill_payment": "BillPayment",
    "journal_entry": "JournalEntry",
}
_PARTIES = ("vendor", "customer")
# DisplayName is unique across these three lists (qbo-api.md §10), inactive objects included.
_NAME_LISTS = ("Vendor", "Customer", "Employee")
RULES = ("name_exists", "doc_number_exists", "similar_transaction")
DEFAULT_WINDOW_DAYS = 5
CHECK_NAME = "no_duplicate"  # the check a duplicate finding carries
_DIMENSION = "duplicate_risk"
_LABEL = {
    "Vendor": "vendor",
    "Customer": "customer",
    "Employee": "employee",
    "Item": "item",
    "PurchaseOrder": "purchase order",
    "Bill": "bill",
    "Invoice": "invoice",
    "Payment": "payment",
    "BillPayment": "bill payment",
    "JournalEntry": "journal entry",
}


@dataclass(frozen=True)
class _Txn:
    """Where one transaction entity keeps what the duplicate rules compare."""

    entity: str
    number: str | None  # the AWRA number QuickBooks holds as DocNumber (None: no doc-number rule)
    party: str  # the party id column
    party_kind: str  # vendor | customer
    amount: str

    @property
    def table(self) -> str:
        return table_for_entity(self.entity).name

    @property
    def record_id(self) -> str:
        return table_for_entity(self.entity).record_id


_TXNS = (
    _Txn("purchase_order", "po_number", "vendor_id", "vendor", "total"),
    _Txn("bill", "bill_number", "vendor_id", "vendor", "total"),
    _Txn("invoice", "invoice_number", "customer_id", "customer", "total"),
    _Txn("payment", None, "customer_id", "customer", "amount"),
    _Txn("bill_payment", None, "vendor_id", "vendor", "amount"),
)
_PARTY_OF = {QBO_ENTITY[t.entity]: QBO_ENTITY[t.party_kind] for t in _TXNS}


def party_of_sql() -> str:
    """SELECT kind, value: the vendor or customer the record ($realm, $entity, $id) names, as a mapping use of the
    party's own kind (parties are mapped apart from the mapping kinds of lines and accounts)."""
    return " UNION ALL ".join(
        f"SELECT '{t.party_kind}' AS kind, {t.party} AS value FROM {current_view(t.table)} "
        f"WHERE realm_id = $realm AND $entity = '{t.entity}' AND {t.record_id} = $id AND {t.party} IS NOT NULL"
        for t in _TXNS
    )


# -- name normalization: one definition, written twice (Python and DuckDB SQL) --------------------------
def _fold_table() -> tuple[str, str]:
    """(capitals, their lower case) for Latin, Greek and Cyrillic letters with a one-letter lower case.

    A table, not lower(): Python and DuckDB lower-case some letters differently (Python turns 'İ' into two
    characters), and both sides must agree on every text.
    """
    upper, lower = [], []
    for block in ((0x41, 0x5A), (0xC0, 0x24F), (0x370, 0x3FF), (0x400, 0x52F)):
        for code in range(block[0], block[1] + 1):
            c = chr(code)
            if len(c.lower()) == 1 and c.lower() != c:
                upper.append(c)
                lower.append(c.lower())
    return "".join(upper), "".join(lower)


_FOLD_FROM, _FOLD_TO = _fold_table()
# Unicode spaces, dashes and quotes count as punctuation, as ASCII ones do.
_TO_SPACE = "\u00a0\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a\u200b\u202f\u3000" + (
    "\u2010\u2011\u2012\u2013\u2014\u2015\u201c\u201d\u201e\u201f\u00ab\u00bb\u2026\u00b7\u2022"
)
# Apostrophes and periods vanish rather than split a word: "O'Brien" = "OBrien", "L.L.C." = "LLC".
_DELETE = "'.`\u2018\u2019\u201a\u201b\u00b4\u2032"
_ASCII_DELETE = "".join(c for c in _DELETE if c.isascii())
_TRANSLATE_FROM = _FOLD_FROM + _TO_SPACE + _DELETE
_TRANSLATE_TO = _FOLD_TO + " " * len(_TO_SPACE)
_TRANSLATE = (
    {ord(a): b for a, b in zip(_FOLD_FROM, _FOLD_TO, strict=True)}
    | {ord(c): " " for c in _TO_SPACE}
    | {ord(c): None for c in _DELETE}
)
_SUFFIXES = "inc|incorporated|llc|ltd|limited|co|corp|corporation|company|and co"
# After folding only a-z, 0-9 and non-ASCII characters are word characters; any other run is one space.
_PY_PUNCT = re.compile(r"[^a-z0-9\x80-\U0010ffff]+")
_PY_SUFFIX = re.compile(rf"( (?:{_SUFFIXES}))+\Z")
_SQL_PUNCT = r"[^a-z0-9\x{80}-\x{10FFFF}]+"
_SQL_SUFFIX = rf"( ({_SUFFIXES}))+$"


def _sql_text(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def normalize_name(name: str) -> str:
    """A name as duplicates are compared: lower case, '&' as 'and', no punctuation or legal suffix."""
    text = name.translate(_TRANSLATE).replace("&", " and ")
    return _PY_SUFFIX.sub("", _PY_PUNCT.sub(" ", text).strip(" "))


def normalize_name_sql(expr: str) -> str:
    """The DuckDB expression computing normalize_name(expr); expr is SQL text (a column), not a value."""
    # DuckDB's translate() costs time in proportion to its table on every row, so the common all-ASCII
    # name (as many bytes as characters) takes lower() and drops three characters; only others pay the table.
    folded = (
        f"CASE WHEN strlen({expr}) = length({expr}) THEN translate(lower({expr}), {_sql_text(_ASCII_DELETE)}, '') "
        f"ELSE translate({expr}, {_sql_text(_TRANSLATE_FROM)}, {_sql_text(_TRANSLATE_TO)}) END"
    )
    spaced = f"trim(regexp_replace(replace({folded}, '&', ' and '), '{_SQL_PUNCT}', ' ', 'g'), ' ')"
    return f"regexp_replace({spaced}, '{_SQL_SUFFIX}', '')"


# -- marker adoption -------------------------------------------------------------------------------------
def _entity_values() -> str:
    return ", ".join(f"({_sql_text(e)}, {_sql_text(q)})" for e, q in QBO_ENTITY.items())


def _label_sql(column: str) -> str:
    cases = " ".join(f"WHEN {_sql_text(q)} THEN {_sql_text(label)}" for q, label in _LABEL.items())
    return f"(CASE {column} {cases} ELSE lower({column}) END)"


_MARKER_PARTS = r"^awra:([a-z_]+):(.+):v([0-9]+)$"


def adopt_marked(store: Store, realm_id: str, *, now: datetime) -> int:
    """Link every unlinked live record whose QBO object carries its marker; returns how many were linked."""
    cur = store.cursor()
    # Only a live record without an external ref can be adopted, so those are found first. A marker is
    # awra:<entity>:<id>:v<version> and the id may itself hold colons, so only the full pattern parses it (the
    # version is taken from the end). It runs once per marker, and only on markers that may name such a
    # record: their second and third ':'-separated parts are its entity and the part of its id before any
    # colon. That cheap test keeps every marker the pattern would match to an unlinked record.
    cur.execute(
        f"""CREATE OR REPLACE TEMP TABLE _adopt AS
        WITH entities(entity, qbo_entity) AS (VALUES {_entity_values()}),
        open AS MATERIALIZED (
          SELECT r.entity, r.record_id FROM records r
          ANTI JOIN external_refs x ON x.realm_id = r.realm_id AND x.entity = r.entity AND x.record_id = r.record_id
          WHERE r.realm_id = $realm AND r.removed_at IS NULL
        ),
        marked AS MATERIALIZED (
          SELECT o.entity AS qbo_entity, o.qbo_id, o.sync_token, o.active, o.name, o.last_updated,
                 regexp_extract(o.marker, '{_MARKER_PARTS}', 1) AS part_entity,
                 regexp_extract(o.marker, '{_MARKER_PARTS}', 2) AS part_record_id,
                 regexp_extract(o.marker, '{_MARKER_PARTS}', 3) AS part_version
          FROM qbo_objects o
          SEMI JOIN (SELECT DISTINCT entity, split_part(record_id, ':', 1) AS head FROM open) k
            ON k.entity = split_part(o.marker, ':', 2) AND k.head = split_part(o.marker, ':', 3)
          WHERE o.realm_id = $realm AND o.marker IS NOT NULL AND NOT o.deleted
        ),
        parsed AS (
          SELECT qbo_entity, qbo_id, sync_token, active, name, last_updated, part_entity AS entity,
                 part_record_id AS record_id, TRY_CAST(part_version AS INTEGER) AS version
          FROM marked
        )
        SELECT r.entity, r.record_id, m.qbo_entity, m.qbo_id, m.sync_token, m.version, m.active, m.name
        FROM parsed m
        JOIN entities e ON e.entity = m.entity AND e.qbo_entity = m.qbo_entity
        JOIN open r ON r.entity = m.entity AND r.record_id = m.record_id
        WHERE m.version IS NOT NULL
        -- Two objects with one record's marker (a create repeated after a timeout): adopt the newest.
        QUALIFY row_number() OVER (PARTITION BY r.entity, r.record_id
                                   ORDER BY m.version DESC, m.last_updated DESC NULLS LAST, m.qbo_id) = 1""",
        {"realm": realm_id},
    ).fetchall()
    with store.transaction() as tx:
        tx.execute(
            """INSERT INTO external_refs (realm_id, entity, record_id, qbo_entity, qbo_id, sync_token,
                                          synced_version, linked_by, linked_at, actor)
            SELECT $realm, entity, record_id, qbo_entity, qbo_id, sync_token, version, 'marker', $now, NULL
            FROM _adopt""",
            {"realm": realm_id, "now": now},
        ).fetchall()
        changes.log_selected(tx, "SELECT $realm AS realm_id, entity, record_id FROM _adopt", {"realm": realm_id})
        tx.execute(
            """INSERT INTO mappings (realm_id, kind, awra_value, qbo_entity, qbo_id, qbo_name, source, status,
                                     confidence, match_rule, set_by, set_at)
            SELECT $realm, entity, record_id, qbo_entity, qbo_id, name, 'auto',
                   CASE WHEN active THEN 'mapped' ELSE 'stale' END, 1.0, 'marker', NULL, $now
            FROM _adopt WHERE entity IN ('vendor', 'customer')
            ON CONFLICT (realm_id, kind, awra_value) DO UPDATE SET
              qbo_entity = excluded.qbo_entity, qbo_id = excluded.qbo_id, qbo_name = excluded.qbo_name,
              source = excluded.source, status = excluded.status, confidence = excluded.confidence,
              match_rule = excluded.match_rule, set_by = excluded.set_by, set_at = excluded.set_at
            -- A person's mapping is theirs to change (as in mappings.refresh_mappings); one the sync made
            -- when it created the object already points here.
            WHERE mappings.source = 'auto'""",
            {"realm": realm_id, "now": now},
        ).fetchall()
        linked = tx.execute("SELECT count(*) FROM _adopt").fetchall()[0][0]
    cur.execute("DROP TABLE IF EXISTS _adopt").fetchall()
    return int(linked)


# -- candidates ------------------------------------------------------------------------------------------
def _awra_transactions() -> str:
    parts = []
    for t in _TXNS:
        number = f"upper(trim({t.number}))" if t.number else "NULL"
        parts.append(
            f"""SELECT '{t.entity}' AS entity, {t.record_id} AS record_id, '{t.party_kind}' AS party_kind,
                   {t.party} AS party, {number} AS doc, {t.amount} AS amount, txn_date
            FROM {current_view(t.table)} WHERE realm_id = $realm"""
        )
    return "\nUNION ALL\n".join(parts)


def _party_of_sql(column: str) -> str:
    cases = " ".join(f"WHEN {_sql_text(t)} THEN {_sql_text(p)}" for t, p in _PARTY_OF.items())
    return f"(CASE {column} {cases} END)"


def _days_text(diff: str) -> str:
    return f"""(CASE WHEN {diff} = 0 THEN 'on the same day'
                  WHEN {diff} = 1 THEN '1 day later' WHEN {diff} = -1 THEN '1 day earlier'
                  WHEN {diff} > 1 THEN {diff} || ' days later' ELSE (-{diff}) || ' days earlier' END)"""


def _candidates_sql(window_days: int) -> str:
    # Similar transactions are a band join (|date difference| <= window). Each QBO object falls in one
    # date bucket of 2w+1 days and each record looks in the at most two buckets its window touches, so
    # the join stays an equi-join on (entity, party, amount, bucket): near-linear even for a party with
    # thousands of equal amounts, where a plain (party, amount) join would pair every one with every one.
    width = 2 * window_days + 1
    day = "datediff('day', DATE '1970-01-01', {})"
    closeness = f"({window_days} - abs(q.txn_date - t.txn_date)) / {window_days}" if window_days else "1"
    score = f"round(0.6 + 0.3 * {closeness}, 3)"
    return f"""CREATE OR REPLACE TEMP TABLE _dup_candidates AS
WITH
-- Records that may still be created: live, not linked, no create-new decision for this version.
pending AS (
  SELECT r.entity, r.record_id, r.current_version AS version
  FROM records r
  ANTI JOIN external_refs x ON x.realm_id = r.realm_id AND x.entity = r.entity AND x.record_id = r.record_id
  ANTI JOIN duplicate_decisions d ON d.realm_id = r.realm_id AND d.entity = r.entity
       AND d.record_id = r.record_id AND d.decision = 'create_new' AND d.version = r.current_version
  WHERE r.realm_id = $realm AND r.removed_at IS NULL
),
awra_parties AS (
  SELECT 'vendor' AS kind, vendor_id AS party, name, {normalize_name_sql("name")} AS norm
  FROM {current_view("vendors")} WHERE realm_id = $realm
  UNION ALL
  SELECT 'customer', customer_id, name, {normalize_name_sql("name")}
  FROM {current_view("customers")} WHERE realm_id = $realm
),
qbo_names AS (
  SELECT entity AS qbo_entity, qbo_id, name, active, marker, {normalize_name_sql("name")} AS norm
  FROM qbo_objects
  WHERE realm_id = $realm AND entity IN ('Vendor', 'Customer', 'Employee') AND NOT deleted
    AND name IS NOT NULL
),
-- QuickBooks refuses a second party with a taken DisplayName whoever owns it, so an exact clash with an
-- object our sync created for another record counts too; a merely similar name there is another AWRA
-- record's, which is mapping's business, not a duplicate in QuickBooks.
name_hits AS (
  SELECT o.entity, o.record_id, o.version, q.qbo_entity, q.qbo_id, 'name_exists' AS rule,
         CASE WHEN lower(trim(p.name)) = lower(trim(q.name)) THEN 1.0 ELSE 0.9 END AS score,
         format('QuickBooks {{}} ''{{}}'' (Id {{}}{{}}) {{}}',
                {_label_sql("q.qbo_entity")}, q.name, q.qbo_id,
                CASE WHEN q.active THEN '' ELSE ', inactive' END ||
                coalesce(', created by this sync for AWRA ' ||
                         regexp_replace(q.marker, '{_MARKER_PARTS}', '\\1 \\2'), ''),
                CASE WHEN lower(trim(p.name)) = lower(trim(q.name))
                     THEN format('has this name; QuickBooks refuses a second {{}} with it (6240)', o.entity)
                     ELSE format('has the same name once case, punctuation and legal suffixes are ignored '
                                 '(''{{}}''); it may be the same business', p.norm) END) AS reasons,
         NULL::DECIMAL(18,2) AS amount, NULL::DATE AS txn_date
  FROM pending o
  JOIN awra_parties p ON p.kind = o.entity AND p.party = o.record_id
  JOIN qbo_names q ON q.norm = p.norm
  WHERE p.norm <> ''
    AND (q.marker IS NULL OR lower(trim(p.name)) = lower(trim(q.name)))
    AND NOT starts_with(coalesce(q.marker, ''), 'awra:' || o.entity || ':' || o.record_id || ':v')
),
awra_txns AS ({_awra_transactions()}),
-- A mapped party is matched by its QuickBooks Id; an unmapped one by its normalized name.
txns AS (
  SELECT t.*, o.version, e.qbo_entity,
         CASE WHEN m.qbo_id IS NOT NULL THEN 'id:' || m.qbo_id
              WHEN p.norm <> '' THEN 'name:' || p.norm END AS party_key,
         coalesce(m.qbo_name, p.name, t.party) AS party_name
  FROM awra_txns t
  JOIN pending o ON o.entity = t.entity AND o.record_id = t.record_id
  JOIN (VALUES {_entity_values()}) e(entity, qbo_entity) ON e.entity = t.entity
  LEFT JOIN mappings m ON m.realm_id = $realm AND m.kind = t.party_kind AND m.awra_value = t.party
       AND m.status IN ('mapped', 'stale') AND m.qbo_id IS NOT NULL
  LEFT JOIN awra_parties p ON p.kind = t.party_kind AND p.party = t.party
),
-- QuickBooks transactions that may be one of ours: not deleted, not created by this sync for another
-- record (our marker), not already linked to another record.
qbo_txns AS (
  SELECT o.entity AS qbo_entity, o.qbo_id, upper(trim(o.doc_number)) AS doc, o.doc_number, o.total_amt,
         o.txn_date, o.party_id, n.name AS party_name, n.norm AS party_norm
  FROM qbo_objects o
  LEFT JOIN qbo_names n ON n.qbo_entity = {_party_of_sql("o.entity")} AND n.qbo_id = o.party_id
  ANTI JOIN external_refs x ON x.realm_id = o.realm_id AND x.qbo_entity = o.entity AND x.qbo_id = o.qbo_id
  WHERE o.realm_id = $realm AND o.entity IN ({", ".join(_sql_text(e) for e in _PARTY_OF)})
    AND NOT o.deleted AND o.marker IS NULL
),
qbo_keys AS (
  SELECT *, 'id:' || party_id AS party_key FROM qbo_txns WHERE party_id IS NOT NULL
  UNION ALL
  SELECT *, 'name:' || party_norm FROM qbo_txns WHERE party_norm <> ''
),
doc_hits AS (
  SELECT t.entity, t.record_id, t.version, q.qbo_entity, q.qbo_id, 'doc_number_exists' AS rule, 1.0 AS score,
         format('QuickBooks {{}} Id {{}} has number {{}} for the same {{}} ({{}}), dated {{}}, amount {{}}',
                {_label_sql("q.qbo_entity")}, q.qbo_id, q.doc_number, t.party_kind,
                coalesce(q.party_name, t.party_name), coalesce(q.txn_date::VARCHAR, 'unknown'),
                coalesce(q.total_amt::VARCHAR, 'unknown')) AS reasons,
         t.amount, t.txn_date
  FROM txns t
  JOIN qbo_keys q ON q.qbo_entity = t.qbo_entity AND q.party_key = t.party_key AND q.doc = t.doc
  WHERE t.doc <> ''
),
txn_buckets AS (
  SELECT t.*, unnest(range(({day.format("t.txn_date")} - {window_days}) // {width},
                           ({day.format("t.txn_date")} + {window_days}) // {width} + 1)) AS bucket
  FROM txns t WHERE t.amount IS NOT NULL AND t.txn_date IS NOT NULL AND t.party_key IS NOT NULL
),
similar_hits AS (
  SELECT t.entity, t.record_id, t.version, q.qbo_entity, q.qbo_id, 'similar_transaction' AS rule,
         {score} AS score,
         format('QuickBooks {{}} Id {{}} for the same {{}} ({{}}) has the same amount {{}}, dated {{}} ({{}})',
                {_label_sql("q.qbo_entity")}, q.qbo_id, t.party_kind, coalesce(q.party_name, t.party_name),
                t.amount::VARCHAR, q.txn_date::VARCHAR, {_days_text("(q.txn_date - t.txn_date)")}) AS reasons,
         t.amount, t.txn_date
  FROM txn_buckets t
  JOIN qbo_keys q ON q.qbo_entity = t.qbo_entity AND q.party_key = t.party_key AND q.total_amt = t.amount
       AND {day.format("q.txn_date")} // {width} = t.bucket
  WHERE abs(q.txn_date - t.txn_date) <= {window_days}
),
hits AS (SELECT * FROM name_hits UNION ALL SELECT * FROM doc_hits UNION ALL SELECT * FROM similar_hits)
-- One row per record and QuickBooks object: the strongest rule, with every rule's reason.
SELECT $run::BIGINT AS run_id, $realm AS realm_id, entity, record_id, version, qbo_entity, qbo_id,
       arg_max(rule, score) AS rule, max(score)::DOUBLE AS score,
       string_agg(reasons, '; ' ORDER BY score DESC, rule) AS reasons,
       any_value(amount) AS amount, any_value(txn_date) AS txn_date
FROM hits
GROUP BY entity, record_id, version, qbo_entity, qbo_id"""


_CANDIDATE_COLUMNS = (
    "run_id", "realm_id", "entity", "record_id", "version", "qbo_entity", "qbo_id", "rule", "score", "reasons",
)  # fmt: skip


def rules_text() -> str:
    """The duplicate rules as they run (for the check's fingerprint: a change to them means a full check)."""
    return _candidates_sql(DEFAULT_WINDOW_DAYS)


def find_candidates(
    store: Store, realm_id: str, run_id: int, *, window_days: int = DEFAULT_WINDOW_DAYS
) -> pl.DataFrame:
    """Write and return the duplicate candidates of every record that may still be created.

    The frame has the duplicate_candidates columns plus the record's `amount` and `txn_date`
    (null for vendors and customers), which duplicate_findings carries into the findings.
    """
    if not isinstance(window_days, int) or window_days < 0:
        raise ValueError(f"window_days must be a whole number of days >= 0, not {window_days!r}")
    cur = store.cursor()
    cur.execute(_candidates_sql(window_days), {"realm": realm_id, "run": run_id}).fetchall()
    columns = ", ".join(_CANDIDATE_COLUMNS)
    with store.transaction() as tx:
        # Writing a run twice replaces it rather than doubling it.
        tx.execute("DELETE FROM duplicate_candidates WHERE run_id = ? AND realm_id = ?", [run_id, realm_id]).fetchall()
        tx.execute(f"INSERT INTO duplicate_candidates ({columns}) SELECT {columns} FROM _dup_candidates").fetchall()
    found = store.frame(
        f"SELECT {columns}, amount, txn_date FROM _dup_candidates ORDER BY entity, record_id, score DESC, qbo_id"
    )
    cur.execute("DROP TABLE IF EXISTS _dup_candidates").fetchall()
    return found


# -- findings --------------------------------------------------------------------------------------------
_RULE_ORDER = {rule: i for i, rule in enumerate(("doc_number_exists", "name_exists", "similar_transaction"))}


def _next_step() -> pl.Expr:
    """What a person does about the best candidate: link or create new, or rename on a name clash."""
    qbo = pl.col("qbo_entity").replace_strict(_LABEL, default=pl.col("qbo_entity").str.to_lowercase())
    ours = pl.col("entity").str.replace_all("_", " ")
    same_kind = pl.col("qbo_entity") == pl.col("entity").replace_strict(QBO_ENTITY, default="")
    return (
        pl.when(same_kind)
        .then(
            pl.format(
                "Open QuickBooks {} Id {}: if it is this record, link it; if it is not, confirm 'create new' "
                "with a reason.",
                qbo,
                pl.col("qbo_id"),
            )
        )
        # A vendor cannot be linked to a customer or employee; an exact name QuickBooks refuses outright.
        .when(pl.col("score") >= 1.0)
        .then(
            pl.format(
                "A {} cannot be linked to a QuickBooks {}, and QuickBooks refuses the name while Id {} has it: "
                "give this {} another name in AWRA.",
                ours,
                qbo,
                pl.col("qbo_id"),
                ours,
            )
        )
        .otherwise(
            pl.format(
                "A {} cannot be linked to a QuickBooks {}: if Id {} is another business, confirm 'create new' "
                "with a reason; if it is the same one, give it one name in both places.",
                ours,
                qbo,
                pl.col("qbo_id"),
            )
        )
    )


def duplicate_findings(candidates: pl.DataFrame) -> pl.DataFrame:
    """One `no_duplicate` finding per record: its best candidate, and what a person does about it."""
    frame = candidates
    for column, dtype in (("amount", pl.Decimal(18, 2)), ("txn_date", pl.Date)):
        if column not in frame.columns:
            frame = frame.with_columns(pl.lit(None, dtype=dtype).alias(column))
    keys = ["entity", "record_id", "version"]
    return (
        frame.with_columns(rank=pl.col("rule").replace_strict(_RULE_ORDER, default=len(_RULE_ORDER)))
        .sort([*keys, "score", "rank", "qbo_id"], descending=[False, False, False, True, False, False])
        .group_by(keys, maintain_order=True)
        .agg(pl.all().first(), others=pl.len() - 1)
        .select(
            *keys,
            check_name=pl.lit(CHECK_NAME),
            dimension=pl.lit(_DIMENSION),
            reason=pl.lit(_DIMENSION + ".") + pl.col("rule"),
            detail=pl.format(
                "{}. {}{}",
                pl.col("reasons"),
                _next_step(),
                pl.when(pl.col("others") == 1)
                .then(pl.lit(" 1 more possible match."))
                .when(pl.col("others") > 1)
                .then(pl.format(" {} more possible matches.", pl.col("others")))
                .otherwise(pl.lit("")),
            ),
            # The findings table's columns: a duplicate finding names no mapping to make.
            mapping_kind=pl.lit(None, dtype=pl.String),
            mapping_value=pl.lit(None, dtype=pl.String),
            amount=pl.col("amount").cast(pl.Decimal(18, 2)),
            txn_date=pl.col("txn_date").cast(pl.Date),
        )
    )


# -- decisions -------------------------------------------------------------------------------------------
def _live_version(cur: duckdb.DuckDBPyConnection, realm_id: str, entity: str, record_id: str) -> int:
    if entity not in QBO_ENTITY:
        raise ValueError(f"unknown entity {entity!r}; entities are {', '.join(QBO_ENTITY)}")
    rows = cur.execute(
        "SELECT current_version FROM records WHERE realm_id = ? AND entity = ? AND record_id = ? "
        "AND removed_at IS NULL",
        [realm_id, entity, record_id],
    ).fetchall()
    if not rows:
        raise ValueError(f"{entity}:{record_id} is not a live AWRA record in company {realm_id}")
    return int(rows[0][0])


def _row(cur: duckdb.DuckDBPyConnection, sql: str, params: list) -> dict | None:
    result = cur.execute(sql, params)
    names = [d[0] for d in result.description]
    rows = result.fetchall()
    if not rows:
        return None
    return {k: v.isoformat() if isinstance(v, datetime) else v for k, v in zip(names, rows[0], strict=True)}


def _state(cur: duckdb.DuckDBPyConnection, realm_id: str, entity: str, record_id: str) -> dict:
    key = [realm_id, entity, record_id]
    where = "WHERE realm_id = ? AND entity = ? AND record_id = ?"
    state = {
        "decision": _row(cur, f"SELECT version, decision, qbo_entity, qbo_id, actor, reason "
                              f"FROM duplicate_decisions {where}", key),
        "external_ref": _row(cur, f"SELECT qbo_entity, qbo_id, sync_token, synced_version, linked_by "
                                  f"FROM external_refs {where}", key),
    }  # fmt: skip
    if entity in _PARTIES:
        state["mapping"] = _row(
            cur,
            "SELECT qbo_entity, qbo_id, qbo_name, source, status, match_rule, set_by FROM mappings "
            "WHERE realm_id = ? AND kind = ? AND awra_value = ?",
            key,
        )
    return state


def _decide(
    cur: duckdb.DuckDBPyConnection, realm_id: str, entity: str, record_id: str, version: int, decision: str,
    qbo: tuple[str, str] | None, actor: str, reason: str, now: datetime,
) -> None:  # fmt: skip
    # One decision per record (the table's key): the latest replaces the earlier one, the audit log keeps both.
    cur.execute(
        """INSERT INTO duplicate_decisions VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
        ON CONFLICT (realm_id, entity, record_id) DO UPDATE SET version = excluded.version,
          decision = excluded.decision, qbo_entity = excluded.qbo_entity, qbo_id = excluded.qbo_id,
          actor = excluded.actor, reason = excluded.reason, decided_at = excluded.decided_at""",
        [realm_id, entity, record_id, version, decision, *(qbo or (None, None)), actor, reason, now],
    ).fetchall()


def link_duplicate(
    cur: duckdb.DuckDBPyConnection,
    realm_id: str,
    key: RecordKey,
    qbo_id: str,
    *,
    actor: str,
    reason: str,
    now: datetime,
) -> Change:
    """A person says the QBO object is this record: link it (never create it); returns the change to audit."""
    entity, record_id = key
    reason = (reason or "").strip()
    qbo_entity = QBO_ENTITY.get(entity, "")
    label = _LABEL.get(qbo_entity, entity)
    version = _live_version(cur, realm_id, entity, record_id)
    found = _row(
        cur,
        "SELECT name, sync_token, active, deleted, marker FROM qbo_objects "
        "WHERE realm_id = ? AND entity = ? AND qbo_id = ?",
        [realm_id, qbo_entity, qbo_id],
    )
    if found is None:
        other = cur.execute(
            "SELECT entity FROM qbo_objects WHERE realm_id = ? AND qbo_id = ? AND entity IN (?, ?, ?) "
            "ORDER BY entity LIMIT 1",
            [realm_id, qbo_id, *_NAME_LISTS],
        ).fetchall()
        hint = (
            f" (Id {qbo_id} is a QuickBooks {_LABEL[other[0][0]]}; a {label} links only to a {label})"
            if other and entity in _PARTIES
            else "; pull from QuickBooks again if it was added since, or check the Id"
        )
        raise ValueError(f"QuickBooks has no {label} with Id {qbo_id}{hint}")
    if found["deleted"]:
        raise ValueError(f"QuickBooks {label} Id {qbo_id} is deleted; a record cannot be linked to it")
    own = f"awra:{entity}:{record_id}:v"
    if entity not in _PARTIES:
        # A transaction is one QuickBooks object: one already another record's cannot be this one too.
        if found["marker"] and not found["marker"].startswith(own):
            raise ValueError(
                f"QuickBooks {label} Id {qbo_id} was created by this sync for another record "
                f"({found['marker']}); it cannot also be {entity}:{record_id}"
            )
        taken = cur.execute(
            "SELECT entity, record_id FROM external_refs WHERE realm_id = ? AND qbo_entity = ? "
            "AND qbo_id = ? AND NOT (entity = ? AND record_id = ?)",
            [realm_id, qbo_entity, qbo_id, entity, record_id],
        ).fetchall()
        if taken:
            raise ValueError(f"QuickBooks {label} Id {qbo_id} is already linked to {taken[0][0]}:{taken[0][1]}")
    before = _state(cur, realm_id, entity, record_id)
    linked = before["external_ref"]
    if linked and linked["qbo_id"] != qbo_id:
        raise ValueError(f"{entity}:{record_id} is already linked to QuickBooks {label} Id {linked['qbo_id']}")
    _decide(cur, realm_id, entity, record_id, version, "link", (qbo_entity, qbo_id), actor, reason, now)
    cur.execute(
        """INSERT INTO external_refs VALUES (?, ?, ?, ?, ?, ?, ?, 'person', ?, ?)
        ON CONFLICT (realm_id, entity, record_id) DO UPDATE SET sync_token = excluded.sync_token,
          synced_version = excluded.synced_version, linked_by = excluded.linked_by,
          linked_at = excluded.linked_at, actor = excluded.actor""",
        [realm_id, entity, record_id, qbo_entity, qbo_id, found["sync_token"], version, now, actor],
    ).fetchall()  # fmt: skip
    changes.log_key(cur, realm_id, entity, record_id)
    if entity in _PARTIES:
        cur.execute(
            """INSERT INTO mappings VALUES (?, ?, ?, ?, ?, ?, 'manual', 'mapped', 1.0, 'person', ?, ?)
            ON CONFLICT (realm_id, kind, awra_value) DO UPDATE SET qbo_entity = excluded.qbo_entity,
              qbo_id = excluded.qbo_id, qbo_name = excluded.qbo_name, source = excluded.source,
              status = excluded.status, confidence = excluded.confidence,
              match_rule = excluded.match_rule, set_by = excluded.set_by, set_at = excluded.set_at""",
            [realm_id, entity, record_id, qbo_entity, qbo_id, found["name"], actor, now],
        ).fetchall()
    after = _state(cur, realm_id, entity, record_id)
    return Change("link_duplicate", str(key), reason, before, after)


def confirm_create_new(
    cur: duckdb.DuckDBPyConnection,
    realm_id: str,
    key: RecordKey,
    *,
    actor: str,
    reason: str,
    now: datetime,
) -> Change:
    """A person says none of the candidates is this record: create it, for this version only."""
    entity, record_id = key
    reason = (reason or "").strip()
    if not reason:
        raise ValueError("confirming 'create new' despite a possible duplicate needs a reason")
    version = _live_version(cur, realm_id, entity, record_id)
    before = _state(cur, realm_id, entity, record_id)
    linked = before["external_ref"]
    if linked:
        raise ValueError(
            f"{key} is already linked to QuickBooks "
            f"{_LABEL.get(linked['qbo_entity'], linked['qbo_entity'])} Id {linked['qbo_id']}; "
            "there is nothing to create"
        )
    _decide(cur, realm_id, entity, record_id, version, "create_new", None, actor, reason, now)
    after = _state(cur, realm_id, entity, record_id)
    return Change("create_despite_duplicate", str(key), reason, before, after)
