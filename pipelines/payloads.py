"""QBO v3 request bodies for the records due to be sent, built as JSON in DuckDB, one query for all."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import lru_cache

import polars as pl

from pipelines.duplicates import QBO_ENTITY
from pipelines.mappings import KINDS
from pipelines.store import Store, current_view
from schemas.awra import SEND_ORDER

__all__ = ["PAYLOAD_COLUMNS", "SEND_ORDER", "build_payloads"]

PAYLOAD_COLUMNS = {
    "entity": pl.String,
    "record_id": pl.String,
    "version": pl.Int32,
    "qbo_entity": pl.String,
    "operation": pl.String,
    "qbo_id": pl.String,
    "sync_token": pl.String,
    "payload": pl.String,
    "problem": pl.String,
}
_LABEL = {e: e.replace("_", " ") for e in SEND_ORDER}


def _text(value: str) -> str:
    """A constant of this module as a SQL string literal (values from data always go in as parameters)."""
    return "'" + value.replace("'", "''") + "'"


# -- JSON ------------------------------------------------------------------------------------------------
def _json(struct_sql: str) -> str:
    """The JSON text of a STRUCT, with every null-valued key left out.

    One to_json over the whole STRUCT: it writes DECIMAL digit for digit (20.50 stays 20.50), whereas
    nesting json_object() values re-parses them as doubles (1234567890123456.78 -> ...56.8). Optional
    fields (ClassRef, DueDate, Id for a create, ...) are NULL in the STRUCT and are dropped afterwards,
    so QBO never sees `"ClassRef":null`. The patterns cannot match inside a string value: to_json is
    compact and escapes every quote inside a string, so `"Key":null` after `{` or `,` is always a key.
    First every `,"Key":null`, then a leading `{"Key":null,` (a global replace does not re-scan its own
    output, so the two passes are needed for runs of nulls).
    """
    text = f"to_json({struct_sql})"
    text = f"""regexp_replace({text}, ',"[A-Za-z]+":null', '', 'g')"""
    return f"""regexp_replace({text}, '[{{]"[A-Za-z]+":null,?', '{{', 'g')"""


def _ref(alias: str) -> str:
    """{"value": Id} from a mapping row, only when it is mapped (a stale or missing one is a problem)."""
    return f"CASE WHEN {alias}.status = 'mapped' THEN {{'value': {alias}.qbo_id}} END"


def _class_ref(alias: str, entity: str) -> str:
    return (
        f"CASE WHEN {alias}.status = 'mapped' AND {alias}.qbo_entity = {_text(entity)} "
        f"THEN {{'value': {alias}.qbo_id}} END"
    )


def _maps(alias: str, kind: str, value_sql: str) -> str:
    return f"LEFT JOIN maps {alias} ON {alias}.kind = {_text(kind)} AND {alias}.awra_value = {value_sql}"


def _map_problem(alias: str, kind: str, value_sql: str, prefix_sql: str = "''") -> str:
    """The sentence for a value in use whose mapping is missing, suggested only, or stale."""
    k = KINDS[kind]
    return (
        f"CASE WHEN {value_sql} IS NOT NULL AND {alias}.status IS DISTINCT FROM 'mapped' THEN "
        f"{prefix_sql} || {_text(k.noun + ' ')} || {value_sql} || CASE WHEN {alias}.status = 'stale' "
        f"THEN {_text(' is mapped to an inactive or deleted QuickBooks ' + k.qbo_noun)} "
        f"ELSE {_text(' has no QuickBooks ' + k.qbo_noun)} END END"
    )


def _party_problem(alias: str, party: str, value_sql: str, entity: str) -> str:
    return (
        f"CASE WHEN {value_sql} IS NULL THEN {_text(f'the {_LABEL[entity]} names no {party}')} "
        f"WHEN {alias}.status = 'stale' THEN {_text(party + ' ')} || {value_sql} "
        f"|| {_text(f' is linked to a QuickBooks {party} that is inactive or deleted')} "
        f"WHEN {alias}.status IS DISTINCT FROM 'mapped' THEN {_text(party + ' ')} || {value_sql} "
        f"|| ' is not in QuickBooks yet' END"
    )


def _linked_problem(alias: str, entity: str, value_sql: str) -> str:
    """A linked document (a payment's invoice, a bill payment's bill) must already be in QBO."""
    label = _LABEL[entity]
    return (
        f"CASE WHEN {value_sql} IS NULL THEN NULL "
        f"WHEN {alias}.qbo_id IS NULL THEN {_text(label + ' ')} || {value_sql} || ' is not in QuickBooks yet' "
        f"WHEN {alias}.deleted THEN {_text(label + ' ')} || {value_sql} || ' was deleted in QuickBooks' END"
    )


# -- lines -----------------------------------------------------------------------------------------------
_LINE_MAPS = {
    "it": ("item", "l.item_sku"),
    "ac": ("account", "l.account_code"),
    "tx": ("tax_code", "l.tax_code"),
    "cl": ("class", "l.category"),
}


_LINE_PREFIX = "'line ' || l.line_no || ': '"
_DEPT_ID = "CASE WHEN cl.status = 'mapped' AND cl.qbo_entity = 'Department' THEN cl.qbo_id END"


def _expense_line() -> tuple[str, str]:
    """Bill and purchase order lines: an item line when there is a SKU, else an account line."""
    detail = f"'ClassRef': {_class_ref('cl', 'Class')}, 'TaxCodeRef': {_ref('tx')}"
    line = f"""{{'LineNum': l.line_no, 'Description': l.description, 'Amount': l.amount,
        'DetailType': CASE WHEN l.item_sku IS NOT NULL THEN 'ItemBasedExpenseLineDetail'
                           ELSE 'AccountBasedExpenseLineDetail' END,
        'ItemBasedExpenseLineDetail': CASE WHEN l.item_sku IS NOT NULL THEN
            {{'ItemRef': {_ref("it")}, 'Qty': l.qty, 'UnitPrice': l.unit_price, {detail}}} END,
        'AccountBasedExpenseLineDetail': CASE WHEN l.item_sku IS NULL THEN
            {{'AccountRef': {_ref("ac")}, {detail}}} END}}"""
    problems = [
        f"CASE WHEN l.item_sku IS NULL AND l.account_code IS NULL THEN {_LINE_PREFIX} || 'no item or account' END",
        _map_problem("it", "item", "l.item_sku", _LINE_PREFIX),
        _map_problem("ac", "account", "CASE WHEN l.item_sku IS NULL THEN l.account_code END", _LINE_PREFIX),
    ]
    return line, ", ".join(problems)


def _sales_line() -> tuple[str, str]:
    line = f"""{{'LineNum': l.line_no, 'Description': l.description, 'Amount': l.amount,
        'DetailType': 'SalesItemLineDetail',
        'SalesItemLineDetail': {{'ItemRef': {_ref("it")}, 'Qty': l.qty, 'UnitPrice': l.unit_price,
                                 'TaxCodeRef': {_ref("tx")}, 'ClassRef': {_class_ref("cl", "Class")}}}}}"""
    problems = [
        f"CASE WHEN l.item_sku IS NULL THEN {_LINE_PREFIX} || 'no item (an invoice line needs one)' END",
        _map_problem("it", "item", "l.item_sku", _LINE_PREFIX),
    ]
    return line, ", ".join(problems)


def _journal_line() -> tuple[str, str]:
    # A journal entry takes a department per line (ref §5), so an entry split across locations keeps them.
    line = f"""{{'LineNum': l.line_no, 'Description': l.description, 'Amount': l.amount,
        'DetailType': 'JournalEntryLineDetail',
        'JournalEntryLineDetail': {{
            'PostingType': CASE l.posting_type WHEN 'debit' THEN 'Debit' WHEN 'credit' THEN 'Credit' END,
            'AccountRef': {_ref("ac")}, 'ClassRef': {_class_ref("cl", "Class")},
            'DepartmentRef': {_class_ref("cl", "Department")}}}}}"""
    problems = [
        f"CASE WHEN l.account_code IS NULL THEN {_LINE_PREFIX} || 'no account' END",
        _map_problem("ac", "account", "l.account_code", _LINE_PREFIX),
    ]
    return line, ", ".join(problems)


def _lines_cte(name: str, entity: str, view: str, id_col: str, shape: tuple[str, str], has_tax: bool) -> str:
    """One row per document: its Line list in line order, the lines' problems, the first department."""
    line, problems = shape
    common = [
        f"CASE WHEN l.amount IS NULL THEN {_LINE_PREFIX} || 'no amount' END",
        _map_problem("cl", "class", "l.category", _LINE_PREFIX),
    ]
    if has_tax:
        common.append(_map_problem("tx", "tax_code", "l.tax_code", _LINE_PREFIX))
    # Journal lines have no item or tax code columns.
    aliases = ("it", "ac", "tx", "cl") if has_tax else ("ac", "cl")
    refs = "\n".join(_maps(a, *_LINE_MAPS[a]) for a in aliases)
    return f"""{name} AS (
      SELECT rid, list(line ORDER BY line_no) AS lines,
             string_agg(problem, '; ' ORDER BY line_no) AS problem,
             -- QBO takes one department per transaction: the first line's (ref §5, DepartmentRef).
             min_by(dept_id, line_no) FILTER (WHERE dept_id IS NOT NULL) AS dept_id
      FROM (
        SELECT l.{id_col} AS rid, l.line_no, {line} AS line,
               nullif(concat_ws('; ', {problems}, {", ".join(common)}), '') AS problem,
               {_DEPT_ID} AS dept_id
        FROM {current_view(view)} l
        {refs}
        WHERE l.realm_id = $realm
          AND l.{id_col} IN (SELECT record_id FROM targets WHERE entity = {_text(entity)})
      ) GROUP BY rid)"""


# -- records ---------------------------------------------------------------------------------------------
_MARKER = "'awra:' || t.entity || ':' || t.record_id || ':v' || t.version"
# An update names the object and its SyncToken and is sparse: a full update wipes fields QBO users added
# (ref §11.11); a create carries none of the three (they are NULL here, so left out of the JSON).
_UPDATE_FIELDS = "'Id': lk.qbo_id, 'SyncToken': lk.sync_token, 'sparse': CASE WHEN lk.qbo_id IS NOT NULL THEN true END"


def _record_select(entity: str, view: str, id_col: str, body: str, problems: list[str], joins: str = "") -> str:
    qbo = QBO_ENTITY[entity]
    own_problems = [
        *problems,
        f"CASE WHEN lk.deleted THEN {_text(f'the QuickBooks {_LABEL[entity]} it is linked to (Id ')} "
        "|| lk.qbo_id || ') was deleted there' END",
    ]
    return f"""SELECT t.entity, t.record_id, t.version, {_text(qbo)} AS qbo_entity,
             CASE WHEN lk.qbo_id IS NULL THEN 'create' ELSE 'update' END AS operation,
             lk.qbo_id, lk.sync_token,
             {_json("{" + _UPDATE_FIELDS + ", " + body + "}")} AS payload,
             nullif(concat_ws('; ', {", ".join(own_problems)}), '') AS problem
      FROM targets t
      JOIN {current_view(view)} h ON h.realm_id = $realm AND h.{id_col} = t.record_id
      LEFT JOIN link lk ON lk.entity = t.entity AND lk.record_id = t.record_id
      {joins}
      WHERE t.entity = {_text(entity)}"""


def _party(entity: str, view: str, id_col: str) -> str:
    body = f"""'DisplayName': h.name, 'Notes': {_MARKER},
               'CurrencyRef': CASE WHEN h.currency IS NOT NULL THEN {{'value': h.currency}} END"""
    return _record_select(
        entity, view, id_col, body, [f"CASE WHEN h.name IS NULL THEN {_text(f'the {entity} has no name')} END"]
    )


def _lined(lines: str) -> tuple[str, str]:
    """The Line list and department of a document from its lines CTE, and the problem of having none."""
    joins = f"LEFT JOIN {lines} ln ON ln.rid = t.record_id"
    return joins, "CASE WHEN ln.lines IS NULL THEN 'it has no lines' END"


def _document(entity: str, view: str, id_col: str, lines: str, party: str, number: str, due: bool) -> str:
    line_joins, no_lines = _lined(lines)
    party_ref = "VendorRef" if party == "vendor" else "CustomerRef"
    body = f"""'{party_ref}': {_ref("pa")}, 'TxnDate': h.txn_date,
               {"'DueDate': h.due_date," if due else ""} 'DocNumber': h.{number}, 'PrivateNote': {_MARKER},
               'DepartmentRef': CASE WHEN ln.dept_id IS NOT NULL THEN {{'value': ln.dept_id}} END,
               'Line': ln.lines"""
    joins = f"{_maps('pa', party, f'h.{party}_id')}\n{line_joins}"
    problems = [_party_problem("pa", party, f"h.{party}_id", entity), no_lines, "ln.problem"]
    return _record_select(entity, view, id_col, body, problems, joins)


def _payment() -> str:
    body = f"""'CustomerRef': {_ref("pa")}, 'TotalAmt': h.amount, 'TxnDate': h.txn_date,
               'PaymentRefNum': h.payment_number, 'PrivateNote': {_MARKER},
               'PaymentMethodRef': {_ref("pm")}, 'DepositToAccountRef': {_ref("da")},
               'Line': CASE WHEN h.invoice_id IS NOT NULL THEN
                   [{{'Amount': h.amount, 'LinkedTxn': [{{'TxnId': doc.qbo_id, 'TxnType': 'Invoice'}}]}}] END"""
    joins = "\n".join(
        [
            _maps("pa", "customer", "h.customer_id"),
            _maps("pm", "payment_method", "h.payment_method"),
            _maps("da", "account", "h.deposit_account_code"),
            "LEFT JOIN link doc ON doc.entity = 'invoice' AND doc.record_id = h.invoice_id",
        ]
    )
    problems = [
        _party_problem("pa", "customer", "h.customer_id", "payment"),
        "CASE WHEN h.amount IS NULL THEN 'it has no amount' END",
        _linked_problem("doc", "invoice", "h.invoice_id"),
        _map_problem("pm", "payment_method", "h.payment_method"),
        _map_problem("da", "account", "h.deposit_account_code", "'deposit '"),
    ]
    return _record_select("payment", "payments", "payment_id", body, problems, joins)


def _bill_payment() -> str:
    # AWRA pays bills by check from a bank account; QBO wants that account on CheckPayment (ref §5).
    body = f"""'VendorRef': {_ref("pa")}, 'PayType': 'Check', 'TotalAmt': h.amount, 'TxnDate': h.txn_date,
               'PrivateNote': {_MARKER}, 'CheckPayment': {{'BankAccountRef': {_ref("ba")}}},
               'Line': [{{'Amount': h.amount, 'LinkedTxn': [{{'TxnId': doc.qbo_id, 'TxnType': 'Bill'}}]}}]"""
    joins = "\n".join(
        [
            _maps("pa", "vendor", "h.vendor_id"),
            _maps("ba", "account", "h.bank_account_code"),
            "LEFT JOIN link doc ON doc.entity = 'bill' AND doc.record_id = h.bill_id",
        ]
    )
    problems = [
        _party_problem("pa", "vendor", "h.vendor_id", "bill_payment"),
        "CASE WHEN h.amount IS NULL THEN 'it has no amount' END",
        "CASE WHEN h.bill_id IS NULL THEN 'it names no bill (QuickBooks applies a bill payment to a bill)' END",
        _linked_problem("doc", "bill", "h.bill_id"),
        "CASE WHEN h.bank_account_code IS NULL THEN 'it names no bank account to pay from' END",
        _map_problem("ba", "account", "h.bank_account_code", "'bank '"),
    ]
    return _record_select("bill_payment", "bill_payments", "bill_payment_id", body, problems, joins)


def _journal_entry() -> str:
    line_joins, no_lines = _lined("je_lines")
    body = f"""'TxnDate': h.txn_date, 'DocNumber': h.je_number, 'PrivateNote': {_MARKER}, 'Line': ln.lines"""
    return _record_select("journal_entry", "journal_entries", "je_id", body, [no_lines, "ln.problem"], line_joins)


def _unsupported() -> str:
    """Requested records of entities the sync never creates (items, accounts): a row that says so."""
    built = ", ".join(_text(e) for e in SEND_ORDER)
    return f"""SELECT t.entity, t.record_id, t.version, NULL AS qbo_entity, NULL AS operation, NULL AS qbo_id,
             NULL AS sync_token, NULL AS payload,
             t.entity || 's are mapped to QuickBooks objects, never created by the sync' AS problem
      FROM targets t WHERE t.entity NOT IN ({built})"""


_COMMON_CTES = (
    """targets AS (
      SELECT r.entity, r.record_id, r.current_version AS version FROM records r
      WHERE r.realm_id = $realm AND r.removed_at IS NULL
        AND (($all AND r.state = 'ready')
             OR EXISTS (SELECT 1 FROM (SELECT unnest($entities::VARCHAR[]) AS entity,
                                              unnest($ids::VARCHAR[]) AS record_id) k
                        WHERE k.entity = r.entity AND k.record_id = r.record_id)))""",
    "maps AS (SELECT kind, awra_value, qbo_entity, qbo_id, status FROM mappings WHERE realm_id = $realm)",
    # The freshest SyncToken known: ours from the last write, or a higher one a pull saw since (a
    # QBO user's edit, or a payment changing a bill's balance); an old one is refused with 5010.
    """link AS (
      SELECT e.entity, e.record_id, e.qbo_id,
             CASE WHEN TRY_CAST(o.sync_token AS BIGINT) > TRY_CAST(e.sync_token AS BIGINT) THEN o.sync_token
                  ELSE coalesce(e.sync_token, o.sync_token) END AS sync_token,
             coalesce(o.deleted, false) AS deleted
      FROM external_refs e
      LEFT JOIN qbo_objects o ON o.realm_id = e.realm_id AND o.entity = e.qbo_entity AND o.qbo_id = e.qbo_id
      WHERE e.realm_id = $realm)""",
)
# entity -> (its lines CTE or None, its SELECT); built lazily, as functions of constants only.
_PARTS: dict[str, tuple[Callable[[], str] | None, Callable[[], str]]] = {
    "vendor": (None, lambda: _party("vendor", "vendors", "vendor_id")),
    "customer": (None, lambda: _party("customer", "customers", "customer_id")),
    "purchase_order": (
        lambda: _lines_cte("po_lines_", "purchase_order", "po_lines", "po_id", _expense_line(), True),
        lambda: _document("purchase_order", "purchase_orders", "po_id", "po_lines_", "vendor", "po_number", False),
    ),
    "bill": (
        lambda: _lines_cte("bill_lines_", "bill", "bill_lines", "bill_id", _expense_line(), True),
        lambda: _document("bill", "bills", "bill_id", "bill_lines_", "vendor", "bill_number", True),
    ),
    "invoice": (
        lambda: _lines_cte("invoice_lines_", "invoice", "invoice_lines", "invoice_id", _sales_line(), True),
        lambda: _document("invoice", "invoices", "invoice_id", "invoice_lines_", "customer", "invoice_number", True),
    ),
    "payment": (None, _payment),
    "bill_payment": (None, _bill_payment),
    "journal_entry": (
        lambda: _lines_cte("je_lines", "journal_entry", "journal_lines", "je_id", _journal_line(), False),
        _journal_entry,
    ),
}


@lru_cache(maxsize=64)
def _sql(entities: frozenset[str]) -> str:
    """The query for the entities asked for only: DuckDB spends most of its time planning, not running."""
    wanted = [e for e in SEND_ORDER if e in entities]
    ctes = [*_COMMON_CTES, *(lines() for e in wanted if (lines := _PARTS[e][0]) is not None)]
    selects = [*(_PARTS[e][1]() for e in wanted), _unsupported()]
    order = " ".join(f"WHEN {_text(e)} THEN {i}" for i, e in enumerate(SEND_ORDER))
    union = "\nUNION ALL\n".join(selects)
    return f"""WITH {", ".join(ctes)}
      SELECT entity, record_id, version::INTEGER AS version, qbo_entity, operation, qbo_id, sync_token,
             -- A body is ready to POST only when nothing is missing; otherwise the problem says what.
             CASE WHEN problem IS NULL THEN payload END AS payload, problem
      FROM ({union})
      ORDER BY CASE entity {order} ELSE {len(SEND_ORDER)} END, entity, record_id"""


def build_payloads(store: Store, realm_id: str, keys: Sequence[tuple[str, str]] | None = None) -> pl.DataFrame:
    """One row per requested live record (all records in state 'ready' when `keys` is None).

    Columns: entity, record_id, version, qbo_entity, operation (create | update), qbo_id and sync_token
    (for an update), payload (the JSON body to POST) and problem (why it cannot be built yet, naming
    the missing mapping or document; then payload is None). Rows come parties first, then documents,
    then payments and journals, so sending them in order satisfies every dependency.
    """
    wanted = list(keys or [])
    if keys is None:
        ready = "SELECT DISTINCT entity FROM records WHERE realm_id = ? AND state = 'ready' AND removed_at IS NULL"
        entities = {row[0] for row in store.rows(ready, [realm_id])}
    else:
        entities = {k[0] for k in wanted}
    frame = store.frame(
        _sql(frozenset(entities)),
        {
            "realm": realm_id,
            "all": keys is None,
            "entities": [k[0] for k in wanted],
            "ids": [k[1] for k in wanted],
        },
    )
    return frame.select([pl.col(c).cast(t) for c, t in PAYLOAD_COLUMNS.items()])
