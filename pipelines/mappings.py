"""Mappings from AWRA values to QBO objects: auto-match, suggestions, staleness, people's fixes, gaps."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import duckdb
import polars as pl

from pipelines.audit import Change
from pipelines.duplicates import normalize_name_sql
from pipelines.store import Store, awra_table, current_view

__all__ = [
    "KINDS",
    "MappingKind",
    "gap_inventory",
    "now_ready",
    "all_mapping_usage_sql",
    "current_rows",
    "mapping_usage_sql",
    "refresh_mappings",
    "set_mapping",
    "suggested_target",
    "waiting_on",
]


@dataclass(frozen=True)
class MappingKind:
    """One kind of mapping: where AWRA uses the value, and which QBO entity it maps to."""

    kind: str
    qbo_entities: tuple[str, ...]
    # (view, value column, line_no column or None, how to say it) for every place AWRA uses the value
    uses: tuple[tuple[str, str, str | None], ...]
    noun: str  # "item SKU", "account", ... for the finding's sentence
    qbo_noun: str
    key_column: str | None = None  # qbo_objects column matched exactly on the value (acct_num, sku)
    awra_names: tuple[str, str, str] | None = None  # (view, id column, name column) naming the value


_LINES = ("po_lines", "bill_lines", "invoice_lines")
KINDS: dict[str, MappingKind] = {
    "account": MappingKind(
        "account",
        ("Account",),
        (
            *((t, "account_code", "line_no") for t in _LINES),
            ("journal_lines", "account_code", "line_no"),
            ("payments", "deposit_account_code", None),
            ("bill_payments", "bank_account_code", None),
        ),
        "account",
        "account",
        key_column="acct_num",
        awra_names=("accounts", "account_code", "name"),
    ),
    "tax_code": MappingKind(
        "tax_code", ("TaxCode",), tuple((t, "tax_code", "line_no") for t in _LINES), "tax code", "tax code"
    ),
    "item": MappingKind(
        "item",
        ("Item",),
        tuple((t, "item_sku", "line_no") for t in _LINES),
        "item SKU",
        "item",
        key_column="sku",
        awra_names=("items", "item_sku", "name"),
    ),
    "payment_method": MappingKind(
        "payment_method",
        ("PaymentMethod",),
        (("payments", "payment_method", None), ("bill_payments", "payment_method", None)),
        "payment method",
        "payment method",
    ),
    # AWRA categories go to QBO Classes by default; a company tracking locations maps them to Departments.
    "class": MappingKind(
        "class",
        ("Class", "Department"),
        (*((t, "category", "line_no") for t in _LINES), ("journal_lines", "category", "line_no")),
        "category",
        "class or department",
    ),
}
# What each line/header table's records are called in the store (the entity a finding is about).
_TABLE_ENTITY = {
    "po_lines": ("purchase_order", "po_id"),
    "bill_lines": ("bill", "bill_id"),
    "invoice_lines": ("invoice", "invoice_id"),
    "journal_lines": ("journal_entry", "je_id"),
    "payments": ("payment", "payment_id"),
    "bill_payments": ("bill_payment", "bill_payment_id"),
}


def current_rows(view: str, entity: str, id_col: str, alias: str, only: str | None = None) -> str:
    """An AWRA table's current rows, named `alias`, for a FROM clause; with `only` (a table of entity, record_id,
    current_version), just those records' rows, joined from it on the version so no other record's rows are read."""
    if only is None:
        return f"{current_view(view)} {alias}"
    return f"""{awra_table(view)} {alias} JOIN {only} t ON t.entity = '{entity}' AND t.record_id = {alias}.{id_col}
                 AND t.current_version = {alias}.version"""


def mapping_usage_sql(kind: MappingKind, only: str | None = None) -> str:
    """SELECT realm_id, kind, entity, record_id, line_no, value for every use of a kind's values in live records.

    With `only` (a table of entity, record_id, current_version), just those records' uses are read: each AWRA
    table is joined to it on the record's current version, so no other record's rows are looked up.
    """
    parts = []
    for view, column, line_col in kind.uses:
        entity, id_col = _TABLE_ENTITY[view]
        line = f"a.{line_col}" if line_col else "NULL::INTEGER"
        source = current_rows(view, entity, id_col, "a", only)
        parts.append(
            f"SELECT a.realm_id, '{kind.kind}' AS kind, '{entity}' AS entity, a.{id_col} AS record_id, "
            f"{line} AS line_no, "
            f"a.{column} AS value FROM {source} WHERE a.{column} IS NOT NULL"
        )
    return " UNION ALL ".join(parts)


def all_mapping_usage_sql(only: str | None = None) -> str:
    """mapping_usage_sql over every kind: each use of a mapped value, tagged with its kind."""
    return " UNION ALL ".join(mapping_usage_sql(kind, only) for kind in KINDS.values())


def _values_sql(kind: MappingKind, only: str | None = None) -> str:
    """Distinct values of a kind in use, plus (for items and accounts) every AWRA master row; with `only` (a table of
    entity, record_id, current_version, as mapping_usage_sql takes), just those records' values."""
    sql = f"SELECT DISTINCT value FROM ({mapping_usage_sql(kind, only)}) WHERE realm_id = $realm"
    if kind.awra_names:
        view, id_col, _ = kind.awra_names
        masters = current_rows(view, kind.kind, id_col, "a", only)
        sql += f" UNION SELECT a.{id_col} FROM {masters} WHERE a.realm_id = $realm"
    return sql


def _matches_sql(kind: MappingKind, values: str) -> str:
    """Every (value -> QBO object) match a rule finds, with the rule's confidence; the best wins later.

    values names a table holding the kind's values (_values_sql), which every rule reads.
    """
    entities = ", ".join(f"'{e}'" for e in kind.qbo_entities)
    name = "v.value"
    join_names = ""
    if kind.awra_names:
        view, id_col, name_col = kind.awra_names
        join_names = f"LEFT JOIN {current_view(view)} n ON n.realm_id = $realm AND n.{id_col} = v.value"
        name = f"coalesce(n.{name_col}, v.value)"
    rules = []
    if kind.key_column:
        rules.append((f"o.{kind.key_column} = v.value", "account_number" if kind.kind == "account" else "sku", 1.0))
    rules.append((f"o.name = {name}", "exact_name", 1.0))
    if kind.awra_names:
        rules.append(("o.name = v.value", "exact_name", 0.95))
    rules.append((f"{normalize_name_sql('o.name')} = {normalize_name_sql(name)}", "normalized_name", 0.8))
    selects = [
        f"""SELECT v.value, o.entity AS qbo_entity, o.qbo_id, o.name AS qbo_name, o.active, '{rule}' AS rule,
                   {conf} AS confidence, {rank} AS rank
            FROM {values} v {join_names}
            JOIN qbo_objects o ON o.realm_id = $realm AND o.entity IN ({entities}) AND NOT o.deleted
             AND {cond}"""
        for rank, (cond, rule, conf) in enumerate(rules)
    ]
    # Among equal confidence the stronger rule wins (an account number beats a name), then an active
    # object beats an inactive one, then the lowest Id (stable).
    return f"""SELECT * FROM ({" UNION ALL ".join(selects)})
               QUALIFY row_number() OVER (PARTITION BY value
                   ORDER BY confidence DESC, rank, active DESC, qbo_entity, TRY_CAST(qbo_id AS BIGINT), qbo_id) = 1"""


def refresh_mappings(store: Store, realm_id: str, *, now: datetime, since: datetime | None = None) -> dict[str, int]:
    """Auto-map exact matches, suggest close ones, mark stale the ones whose QBO object went inactive.

    People's mappings are never replaced; a mapping made by a person or the sync only changes status
    (stale when its object is inactive or deleted in QBO, mapped again when it comes back).

    With `since` (the last refresh's moment), a kind none of whose QBO objects changed since is matched again only
    for the values of the AWRA records that changed since: a match reads the value, its AWRA name and the QBO
    objects, so every other value would match as it did then, and the upsert would leave its row as it is.
    """
    params = {"realm": realm_id, "now": now}
    with store.transaction() as cur:
        moved: set[str] = set()
        if since is not None:
            cur.execute(
                """CREATE OR REPLACE TEMP TABLE _changed AS SELECT entity, record_id, current_version FROM records
                   WHERE realm_id = $realm AND removed_at IS NULL
                     AND (first_seen_at >= $since OR changed_at >= $since)""",
                {"realm": realm_id, "since": since},
            ).fetchall()
            moved = {
                str(row[0])
                for row in cur.execute(
                    "SELECT DISTINCT entity FROM qbo_objects WHERE realm_id = $realm AND changed_at >= $since",
                    {"realm": realm_id, "since": since},
                ).fetchall()
            }
        for kind in KINDS.values():
            only = "_changed" if since is not None and not moved.intersection(kind.qbo_entities) else None
            # The values in use, found once: every match rule and the insert below read them.
            cur.execute(
                f"CREATE OR REPLACE TEMP TABLE _values AS {_values_sql(kind, only)}", {"realm": realm_id}
            ).fetchall()
            cur.execute(
                f"CREATE OR REPLACE TEMP TABLE _match AS {_matches_sql(kind, '_values')}", {"realm": realm_id}
            ).fetchall()
            cur.execute(
                f"""INSERT INTO mappings
                SELECT $realm, '{kind.kind}', v.value, m.qbo_entity, m.qbo_id, m.qbo_name, 'auto',
                       CASE WHEN m.qbo_id IS NULL THEN 'missing'
                            WHEN m.confidence < 0.9 THEN 'suggested'
                            WHEN NOT m.active THEN 'stale' ELSE 'mapped' END,
                       m.confidence, m.rule, NULL, $now
                FROM _values v LEFT JOIN _match m ON m.value = v.value
                ON CONFLICT (realm_id, kind, awra_value) DO UPDATE SET
                  qbo_entity = excluded.qbo_entity, qbo_id = excluded.qbo_id, qbo_name = excluded.qbo_name,
                  status = excluded.status, confidence = excluded.confidence, match_rule = excluded.match_rule,
                  set_at = excluded.set_at
                WHERE mappings.source = 'auto' AND mappings.status IN ('missing', 'suggested')
                  AND excluded.status <> mappings.status""",
                params,
            )
        # Staleness follows the QBO object for every mapped or stale row, whoever set it.
        cur.execute(
            """UPDATE mappings SET status = CASE WHEN o.qbo_id IS NULL OR o.deleted OR NOT o.active
                                              THEN 'stale' ELSE 'mapped' END, set_at = $now
               FROM (SELECT m.kind, m.awra_value, o.qbo_id, o.deleted, o.active FROM mappings m
                     LEFT JOIN qbo_objects o ON o.realm_id = m.realm_id AND o.entity = m.qbo_entity
                      AND o.qbo_id = m.qbo_id
                     WHERE m.realm_id = $realm AND m.status IN ('mapped', 'stale')) o
               WHERE mappings.realm_id = $realm AND mappings.kind = o.kind
                 AND mappings.awra_value = o.awra_value
                 AND mappings.status <> CASE WHEN o.qbo_id IS NULL OR o.deleted OR NOT o.active
                                             THEN 'stale' ELSE 'mapped' END""",
            params,
        )
        counts = cur.execute(
            "SELECT status, count(*) FROM mappings WHERE realm_id = ? GROUP BY 1", [realm_id]
        ).fetchall()
    return dict(counts)


def set_mapping(
    cur: duckdb.DuckDBPyConnection,
    realm_id: str,
    kind: str,
    awra_value: str,
    qbo_id: str,
    *,
    actor: str,
    reason: str | None,
    now: datetime,
    source: str = "manual",
) -> tuple[dict, Change]:
    """Map a value to a QuickBooks object, which must exist, be active and be of the kind; returns it and the change."""
    if kind not in KINDS and kind not in ("vendor", "customer"):
        raise ValueError(f"unknown mapping kind {kind!r}; kinds are {', '.join([*KINDS, 'vendor', 'customer'])}")
    entities = KINDS[kind].qbo_entities if kind in KINDS else (kind.capitalize(),)
    found = cur.execute(
        f"""SELECT entity, qbo_id, name, active, deleted FROM qbo_objects
            WHERE realm_id = ? AND qbo_id = ? AND entity IN ({", ".join("?" for _ in entities)})""",
        [realm_id, qbo_id, *entities],
    ).fetchall()
    if not found:
        raise ValueError(f"QuickBooks has no {' or '.join(entities)} with Id {qbo_id} (pull first if it is new)")
    entity, _, name, active, deleted = found[0]
    if deleted or not active:
        raise ValueError(f"QuickBooks {entity} {qbo_id} ({name}) is {'deleted' if deleted else 'inactive'}")
    before = cur.execute(
        "SELECT qbo_id, qbo_name, status, source FROM mappings WHERE realm_id = ? AND kind = ? AND awra_value = ?",
        [realm_id, kind, awra_value],
    ).fetchall()
    after = {"qbo_entity": entity, "qbo_id": qbo_id, "qbo_name": name, "status": "mapped", "source": source}
    cur.execute(
        """INSERT OR REPLACE INTO mappings VALUES (?, ?, ?, ?, ?, ?, ?, 'mapped', 1.0, 'person', ?, ?)""",
        [realm_id, kind, awra_value, entity, qbo_id, name, source, actor, now],
    ).fetchall()
    was = dict(zip(("qbo_id", "qbo_name", "status", "source"), before[0], strict=True)) if before else None
    return after, Change("map", f"{kind}:{awra_value}", reason, was, after)


def suggested_target(store: Store, realm_id: str, kind: str, value: str) -> str:
    """The QuickBooks Id a suggestion proposes for (kind, value); ValueError when there is no such suggestion."""
    row = store.rows(
        "SELECT qbo_id FROM mappings WHERE realm_id = ? AND kind = ? AND awra_value = ? AND status = 'suggested'",
        [realm_id, kind, value],
    )
    if not row:
        raise ValueError(f"there is no suggestion for {kind} {value} to accept")
    return str(row[0][0])


def waiting_on(store: Store, realm_id: str, pairs: list[tuple[str, str]]) -> set[tuple[str, str]]:
    """The records the last check found waiting on any of these (kind, value) mappings."""
    last = store.scalar("SELECT max(run_id) FROM check_runs WHERE realm_id = ?", [realm_id])
    found: set[tuple[str, str]] = set()
    for kind, value in pairs:
        found |= set(
            store.rows(
                "SELECT DISTINCT entity, record_id FROM findings "
                "WHERE run_id = ? AND mapping_kind = ? AND mapping_value = ?",
                [last, kind, value],
            )
        )
    return found


def now_ready(store: Store, realm_id: str, records: set[tuple[str, str]]) -> int:
    """How many of these records are ready to send now."""
    ready = set(store.rows("SELECT entity, record_id FROM records WHERE realm_id = ? AND state = 'ready'", [realm_id]))
    return len(records & ready)


def gap_inventory(store: Store, realm_id: str, run_id: int | None = None) -> pl.DataFrame:
    """Each missing, stale or unaccepted value with the records and dollars it blocks, biggest first."""
    run = run_id or store.scalar("SELECT max(run_id) FROM check_runs WHERE realm_id = ?", [realm_id])
    return store.frame(
        """WITH blocked AS (
             SELECT mapping_kind AS kind, mapping_value AS awra_value, entity, record_id,
                    any_value(amount) AS amount, min(txn_date) AS txn_date, any_value(reason) AS reason
             FROM findings WHERE run_id = $run AND dimension = 'mapping' AND mapping_kind IS NOT NULL
             GROUP BY ALL)
           SELECT b.kind, b.awra_value, any_value(m.status) AS status, any_value(b.reason) AS reason,
                  count(*) AS records, coalesce(sum(b.amount), 0)::DECIMAL(18,2) AS dollars,
                  min(b.txn_date) AS oldest_blocked, string_agg(DISTINCT b.entity, ', ') AS entities,
                  any_value(CASE WHEN m.status = 'suggested' THEN m.qbo_name END) AS suggestion,
                  any_value(CASE WHEN m.status = 'suggested' THEN m.qbo_id END) AS suggestion_id,
                  any_value(CASE WHEN m.status = 'stale' THEN m.qbo_name END) AS stale_target
           FROM blocked b LEFT JOIN mappings m ON m.realm_id = $realm AND m.kind = b.kind
                AND m.awra_value = b.awra_value
           GROUP BY b.kind, b.awra_value
           ORDER BY (any_value(m.status) = 'stale') DESC, dollars DESC, records DESC, b.kind, b.awra_value""",
        {"run": run, "realm": realm_id},
    )
