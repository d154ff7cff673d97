"""The read model the Health and Trends pages scan: per-record and per-party tables, each company's rows side by side,
kept at that company's version."""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import duckdb

from pipelines.store import Store
from pipelines.views.metrics import RECORD_FACTS, STAGE_OF_CHECK, fingerprint, store_version

__all__ = [
    "exceptions",
    "facts",
    "is_current",
    "labelled_realms",
    "other_shapes",
    "offenders",
    "own_params",
    "prepared",
    "prepared_realm",
    "primary",
    "SHAPE",
    "refresh_read_model",
    "replace_rows",
    "stake",
    "version",
]

_STAGE_CASE = " ".join(f"WHEN '{k}' THEN {v}" for k, v in STAGE_OF_CHECK.items())
_DIM_ORDER = "CASE e.dimension WHEN 'authorization' THEN 0 WHEN 'source_data' THEN 1 WHEN 'mapping' THEN 2 ELSE 3 END"
# The records an incremental update re-inserts (rm_dirty: those whose inputs changed), as a condition on a row.
_DIRTY = "(entity, record_id) IN (SELECT entity, record_id FROM rm_dirty)"
_E_DIRTY = "(e.entity, e.record_id) IN (SELECT entity, record_id FROM rm_dirty)"


def _primary(only: str = "") -> str:
    """The one open exception that explains a record (the same order the Record page uses); `only` narrows the
    exceptions (a condition starting with AND)."""
    return f"""
  SELECT e.entity, e.record_id, e.exception_id, e.dimension, e.reason, e.detail, e.owner_role, e.owner,
         e.opened_at, e.escalated, e.amount
  FROM exceptions e
  WHERE e.realm_id = $realm AND e.status <> 'resolved' AND e.entity <> 'connection'{only}
  QUALIFY row_number() OVER (PARTITION BY e.entity, e.record_id ORDER BY {_DIM_ORDER}, e.exception_id) = 1"""


_PRIMARY = _primary()
# A leading exception's owner: a person it was assigned to, else the record's AWRA owner when finance owns the step,
# else the owning role.
OWNER = "coalesce(p.owner, CASE WHEN p.owner_role = 'finance' THEN f.owner END, p.owner_role)"


# The facts a record's row takes from its current version (which never changes), and the rows of rm_records whose
# version is still current among the records re-inserted (rm_kept): their facts are taken from there, not from AWRA.
_FACT_COLUMNS = "realm_id, entity, record_id, number, party_id, amount, txn_date, owner"
_KEPT = "(entity, record_id) IN (SELECT entity, record_id FROM rm_kept WHERE kept)"
# Each live record re-inserted as records holds it, with its row's facts when the row holds its current version
# (kept): the one read of records an update makes.
_KEEP = """
  SELECT r.realm_id, r.entity, r.record_id, r.state, r.current_version, r.removed_at, o.number, o.party_id, o.amount,
         o.txn_date, o.owner, o.record_id IS NOT NULL AS kept
  FROM records r LEFT JOIN rm_records o
    ON o.realm_id = r.realm_id AND o.entity = r.entity AND o.record_id = r.record_id
   AND o.current_version = r.current_version
  WHERE r.realm_id = $realm AND r.removed_at IS NULL AND r.entity NOT IN ('item', 'account')
    AND (r.entity, r.record_id) IN (SELECT entity, record_id FROM rm_dirty)"""


def _live_rows(dirty: bool, new_versions: bool = True) -> str:
    """Each live record the sync moves, with what the pages ask of it, joined once: first_fail is the funnel stage of
    its earliest failed check in the latest check run (99: none failed); link_* its QuickBooks object; excluded_* the
    person's exclusion; p_* its leading open exception and that one's owner. With `dirty`, only the records named in
    rm_dirty, each input narrowed to them before it is joined (the joins then stay the size of the change), the
    facts of those in rm_kept taken from it and, with `new_versions`, the others' from AWRA."""
    records, facts, refs = "records", f"({RECORD_FACTS})", "external_refs"
    first_only, primary = "", _PRIMARY
    if dirty:
        records, refs = "rm_kept", f"(SELECT * FROM external_refs WHERE {_DIRTY})"
        facts, first_only = f"(SELECT {_FACT_COLUMNS} FROM rm_kept", f"{_DIRTY} AND "
        if new_versions:
            facts += (
                f" WHERE kept UNION ALL SELECT {_FACT_COLUMNS} FROM ({RECORD_FACTS}) f0 WHERE {_DIRTY} AND NOT {_KEPT}"
            )
        else:
            facts += " WHERE kept"
        facts += ")"
        primary = _primary(f" AND {_DIRTY}")
    return f"""
  SELECT r.entity, r.record_id, r.state, r.current_version, f.number, f.party_id, f.amount, f.txn_date, f.owner,
         coalesce(ff.first_fail, 99) AS first_fail,
         x.qbo_entity AS link_entity, x.qbo_id AS link_id, x.synced_version,
         xc.reason AS excluded_because, xc.actor AS excluded_by,
         p.exception_id AS p_exception_id, p.dimension AS p_dimension, p.reason AS p_reason, p.detail AS p_detail,
         p.opened_at AS p_opened_at, {OWNER} AS p_owner
  FROM {records} r LEFT JOIN {facts} f
    ON f.realm_id = r.realm_id AND f.entity = r.entity AND f.record_id = r.record_id
  LEFT JOIN (
    SELECT entity, record_id, min(CASE check_name {_STAGE_CASE} END) AS first_fail FROM findings
    WHERE {first_only}run_id = (SELECT max(run_id) FROM check_runs WHERE realm_id = $realm) GROUP BY ALL) ff
    ON ff.entity = r.entity AND ff.record_id = r.record_id
  LEFT JOIN {refs} x ON x.realm_id = r.realm_id AND x.entity = r.entity AND x.record_id = r.record_id
  LEFT JOIN exclusions xc ON xc.realm_id = r.realm_id AND xc.entity = r.entity AND xc.record_id = r.record_id
  LEFT JOIN ({primary}) p ON p.entity = r.entity AND p.record_id = r.record_id
  WHERE r.realm_id = $realm AND r.removed_at IS NULL AND r.entity NOT IN ('item', 'account')"""


_LIVE = _live_rows(dirty=False)
_LIVE_DIRTY = _live_rows(dirty=True)
_LIVE_KEPT = _live_rows(dirty=True, new_versions=False)


# What rm_exceptions holds of each exception: all but when it was last seen and how often (every cycle moves those
# for every open exception, and no page reads them from here), so that a row changes only with a write the change
# log notes.
_EXCEPTION_COLUMNS = (
    "exception_id", "realm_id", "entity", "record_id", "version", "dimension", "reason", "detail", "owner_role",
    "owner", "status", "escalated", "opened_at", "amount", "evidence", "resolved_at", "resolved_by", "resolution",
    "due_by", "routed_by", "last_activity_at", "escalated_at", "escalation_reason", "resolution_code", "resolved_mark",
)  # fmt: skip


def _exceptions(records: str, only: str = "") -> str:
    """Every exception of the company with the money it stands for: its record's AWRA amount, else its own; `only`
    narrows the exceptions (a condition starting with AND)."""
    columns = ", ".join(f"e.{c}" for c in _EXCEPTION_COLUMNS)
    return f"""
  SELECT {columns}, coalesce(f.amount, e.amount, 0) AS money
  FROM exceptions e LEFT JOIN {records} f ON f.entity = e.entity AND f.record_id = e.record_id
  WHERE e.realm_id = $realm{only}"""


def _leading(records: str, only: str = "") -> str:
    """Each record's leading open exception (items, accounts and removed records too) with the record's money;
    `only` narrows the exceptions (a condition starting with AND)."""
    return f"""
  SELECT p.*, f.amount AS record_amount, f.owner AS record_owner
  FROM ({_primary(only)}) p LEFT JOIN {records} f ON f.entity = p.entity AND f.record_id = p.record_id"""


def _stake(records: str) -> str:
    """Money waiting per vendor and customer (their documents not synced or excluded), and for the connection."""
    return f"""
  WITH waiting AS (
    SELECT entity, party_id, amount FROM {records}
    WHERE state NOT IN ('synced', 'excluded') AND amount IS NOT NULL)
  SELECT CASE WHEN entity IN ('invoice', 'payment') THEN 'customer' ELSE 'vendor' END AS entity,
         party_id AS record_id, sum(amount) AS at_stake
  FROM waiting WHERE party_id IS NOT NULL GROUP BY ALL
  UNION ALL SELECT 'connection', $realm, sum(amount) FROM waiting"""


# Per reference value and record, its mapping failures over every check run as the checks fold them in
# (pipelines/readiness.py): a refresh reads what they hold, not every run's findings.
_REFS = """
  SELECT kind, value, entity, record_id, amount, runs, last_seen, last_run, reason
  FROM finding_history WHERE realm_id = $realm"""


def _offenders(records: str) -> str:
    """Per reference value and per vendor or customer: the failures behind them, over every check run."""
    return f"""
  WITH refs AS ({_REFS}),
  ref_rows AS (
    SELECT kind, value, count(*) AS failures, count(*) AS records, max(runs) AS runs,
           sum(amount) AS dollars, max(last_seen) AS last_seen,
           bool_or(last_run = (SELECT max(run_id) FROM check_runs WHERE realm_id = $realm)) AS open_now,
           min(reason) AS reason
    FROM refs GROUP BY ALL),
  party_of AS (
    SELECT CASE WHEN entity IN ('invoice', 'payment') THEN 'customer' ELSE 'vendor' END AS kind,
           party_id AS value, entity, record_id, amount
    FROM {records} WHERE party_id IS NOT NULL
    UNION ALL SELECT entity, record_id, entity, record_id, NULL FROM records
    WHERE realm_id = $realm AND entity IN ('vendor', 'customer') AND removed_at IS NULL),
  party_rows AS (
    SELECT p.kind, p.value, count(*) AS failures, count(DISTINCT (p.entity, p.record_id)) AS records,
           NULL::BIGINT AS runs, sum(p.amount) FILTER (WHERE e.rn = 1) AS dollars,
           max(e.last_seen_at) AS last_seen, bool_or(e.status <> 'resolved') AS open_now,
           min(e.reason) AS reason
    FROM party_of p
    JOIN (SELECT *, row_number() OVER (PARTITION BY entity, record_id ORDER BY exception_id) AS rn
          FROM exceptions WHERE realm_id = $realm) e ON e.entity = p.entity AND e.record_id = p.record_id
    GROUP BY ALL)
  SELECT * FROM ref_rows UNION ALL SELECT * FROM party_rows"""


# Each table of the read model and how it is built from the records table (named in the call: the company's rows of
# rm_records, _OWN_RECORDS). Every table has realm_id: each company's rows sit beside the others'.
_TABLES = {
    # In date order (a company's whole build appends its rows after the others'): a month's records then sit in a few
    # row groups, and DuckDB's min/max per group skips the rest.
    "rm_records": lambda records: f"SELECT *, $realm AS realm_id FROM ({_LIVE}) ORDER BY txn_date, entity, record_id",
    "rm_leading": lambda records: f"SELECT *, $realm AS realm_id FROM ({_leading(records)})",
    "rm_exceptions": _exceptions,
    "rm_stake": lambda records: f"SELECT *, $realm AS realm_id FROM ({_stake(records)})",
    "rm_offenders": lambda records: f"SELECT *, $realm AS realm_id FROM ({_offenders(records)})",
}
_OWN_RECORDS = "(SELECT * FROM rm_records WHERE realm_id = $realm)"
# The label of each company's rows: the version they were built at, the rows re-inserted since its last whole build,
# how far its change log has been read (NULL: not read, compare every input). One row per company.
_STATE = "rm_state"
_STATE_COLUMNS = ["realm_id", "version", "reinserted", "change_mark"]
# What each rm_records row is made of, as it is now in the store and as the row holds it: (entity, record_id, then
# the inputs, named alike on both sides, one row per record on each). A record whose inputs differ, or that is on one
# side only, is re-inserted; its facts (number, party, money, date, owner) follow from its current version, which is
# an AWRA row that never changes.
_INPUTS = {
    "record": (
        ("state", "current_version"),
        """SELECT entity, record_id, state, current_version FROM records
           WHERE realm_id = $realm AND removed_at IS NULL AND entity NOT IN ('item', 'account')""",
        "SELECT entity, record_id, state, current_version FROM rm_records WHERE realm_id = $realm",
    ),
    "link": (
        ("link_entity", "link_id", "synced_version"),
        """SELECT entity, record_id, qbo_entity AS link_entity, qbo_id AS link_id, synced_version FROM external_refs
           WHERE realm_id = $realm AND entity NOT IN ('item', 'account')""",
        """SELECT entity, record_id, link_entity, link_id, synced_version FROM rm_records
           WHERE realm_id = $realm AND link_id IS NOT NULL""",
    ),
    "exclusion": (
        ("excluded_because", "excluded_by"),
        """SELECT entity, record_id, reason AS excluded_because, actor AS excluded_by FROM exclusions
           WHERE realm_id = $realm""",
        """SELECT entity, record_id, excluded_because, excluded_by FROM rm_records
           WHERE realm_id = $realm AND excluded_by IS NOT NULL""",
    ),
    "first_fail": (
        ("first_fail",),
        f"""SELECT * FROM (
              SELECT entity, record_id, coalesce(min(CASE check_name {_STAGE_CASE} END), 99) AS first_fail
              FROM findings WHERE run_id = (SELECT max(run_id) FROM check_runs WHERE realm_id = $realm)
              GROUP BY ALL) f
            WHERE first_fail <> 99""",
        "SELECT entity, record_id, first_fail FROM rm_records WHERE realm_id = $realm AND first_fail <> 99",
    ),
    # rm_leading holds every record's leading exception of the company as of its last build: the whole of it is
    # compared, since its rows are updated in place too (their record's money and owner follow from the record's own
    # row).
    "leading": (
        ("exception_id", "dimension", "reason", "detail", "owner_role", "owner", "opened_at", "escalated", "amount"),
        f"""SELECT entity, record_id, exception_id, dimension, reason, detail, owner_role, owner, opened_at,
                   escalated, amount
            FROM ({_PRIMARY}) p""",
        """SELECT entity, record_id, exception_id, dimension, reason, detail, owner_role, owner, opened_at,
                  escalated, amount
           FROM rm_leading WHERE realm_id = $realm""",
    ),
}


def _differ(columns: tuple[str, ...], now: str, then: str) -> str:
    """The records on one side only, or whose columns differ (one join on the key: NULLs compare as equal)."""
    differs = " OR ".join(f"n.{c} IS DISTINCT FROM t.{c}" for c in ("seen", *columns))
    return f"""SELECT entity, record_id FROM (SELECT *, 1 AS seen FROM ({now}) n0) n
               FULL JOIN (SELECT *, 1 AS seen FROM ({then}) t0) t USING (entity, record_id) WHERE {differs}"""


_CHANGED = " UNION ".join(_differ(*parts) for parts in _INPUTS.values())
# The same records as the writers noted them in the change log (the rows this refresh consumes).
_LOGGED = "SELECT DISTINCT entity, record_id FROM rm_consumed WHERE realm_id = $realm"
# The tables an update changes row by row; the others (aggregates, and every exception with its money) are rebuilt.
_IN_PLACE = ("rm_records", "rm_leading", "rm_exceptions")
# Those the comparison of inputs (the fallback without the log) can update.
_COMPARED = ("rm_records", "rm_leading")
# Above this share of the rows changed, rebuilding the table whole is cheaper than deleting and re-inserting them.
FULL_SHARE = 0.25

# The queries' own text takes part in the version, and so does the layout of the tables (each company's rows beside
# the others', one label each; an older release held one company and replaced every table for another): tables an
# older release built are never current, and are dropped before any company's rows are written (their columns may
# differ too).
_LAYOUT = "each company's rows side by side, one label per company"
SHAPE = hashlib.sha256((_LAYOUT + "".join(build("f") for build in _TABLES.values())).encode()).hexdigest()[:16]
_LABEL = (
    "SELECT $realm AS realm_id, $version AS version, $reinserted::BIGINT AS reinserted, $mark::BIGINT AS change_mark"
)
_local = threading.local()


def _live(name: str) -> str:
    """A read-model table by name when prepared, or the query that builds it (it needs $realm)."""
    if getattr(_local, "realm", None) is not None:
        return f"(SELECT * FROM {name} WHERE realm_id = $realm)"
    return f"({_TABLES[name](facts())})"


def facts() -> str:
    """Every live record the sync moves (not items or accounts) with its state and, for a transaction, its number,
    party, money, date and AWRA owner: the company's rows of the read-model table when prepared, or the query itself
    (either needs $realm)."""
    if getattr(_local, "realm", None) is not None:
        return _OWN_RECORDS
    return f"({_LIVE})"


def own_params(realm_id: str, **params: object) -> dict:
    """The parameters of a query whose only $realm is in `facts()` (the read-model table needs it too: it holds every
    company)."""
    return {**params, "realm": realm_id}


def exceptions() -> str:
    """The company's exceptions with their money (needs $realm)."""
    return _live("rm_exceptions")


def primary() -> str:
    """Each record's leading open exception with its record's amount and owner (needs $realm)."""
    return _live("rm_leading")


def stake() -> str:
    """Money waiting per vendor, customer and the connection (needs $realm)."""
    return _live("rm_stake")


def offenders() -> str:
    """Failures per reference value and per party over every check run (needs $realm)."""
    return _live("rm_offenders")


# What a sync run changes, counted besides the store's fingerprint.
_SYNC_FINGERPRINT = (
    "coalesce(max(attempt_id), 0) FROM sync_attempts",
    "count(*) FILTER (WHERE finished_at IS NOT NULL) FROM sync_runs",
    "count(*) FROM exceptions",
    "count(*) FILTER (WHERE status = 'resolved') FROM exceptions",
    "max(last_seen_at) FROM exceptions",
    "max(last_activity_at) FROM exceptions",
    "count(*) FROM exclusions",
    "max(status_changed_at) FROM qbo_connections",
)


def version(store: Store, realm_id: str | None = None) -> tuple:
    """The page-cache key: the store's fingerprint plus what a sync run changes (attempts, runs, exceptions); with
    `realm_id`, that company's alone (its read-model label: another company's writes leave it current)."""
    params = {"realm": realm_id} if realm_id is not None else None
    extra = store.rows(fingerprint(_SYNC_FINGERPRINT, realm_id), params)[0]
    return (*store_version(store, realm_id), *extra)


def _version_key(store: Store, realm_id: str) -> str:
    return json.dumps([SHAPE, *version(store, realm_id)], default=str)


def is_current(store: Store, realm_id: str) -> bool:
    """Whether the read-model tables hold this company at its present version."""
    if not store.table_exists(_STATE):
        return False
    held = store.rows(f"SELECT version FROM {_STATE} WHERE realm_id = ?", [realm_id])
    return held == [(_version_key(store, realm_id),)]


def labelled_realms(store: Store) -> list[str]:
    """The companies whose rows the tables hold, current or not (refreshing one is an update, not a first build)."""
    if not store.table_exists(_STATE):
        return []
    return [realm for (realm,) in store.rows(f"SELECT realm_id FROM {_STATE} ORDER BY 1")]


def _ours(store: Store) -> bool:
    """Whether the tables are this release's: every one of them there, with a label per company of this shape."""
    names = (_STATE, *_TABLES)
    there = store.scalar(
        "SELECT count(DISTINCT table_name) FROM information_schema.tables WHERE table_name IN "
        f"({', '.join('?' for _ in names)})",
        list(names),
    )
    if there != len(names) or store.frame(f"SELECT * FROM {_STATE} LIMIT 0").columns != _STATE_COLUMNS:
        return False
    return not other_shapes(store, _STATE, SHAPE)


def other_shapes(store: Store, labels: str, shape: str) -> bool:
    """Whether a label table holds a label of rows built by other queries than `shape` names (an older release's):
    each label's version starts with the shape of the queries that built its rows."""
    return bool(store.scalar(f"SELECT count(*) FROM {labels} WHERE version NOT LIKE ?", [f'["{shape}"%']))


def _drop(store: Store) -> None:
    """Every table of the read model gone, labels too: each company's next refresh builds its rows whole."""
    for name in (*_TABLES, _STATE):
        store.execute(f"DROP TABLE IF EXISTS {name}")


def _label(store: Store, realm_id: str) -> tuple | None:
    """The company's label (version, reinserted, change_mark), None when the tables hold no rows of it."""
    rows = store.rows(f"SELECT version, reinserted, change_mark FROM {_STATE} WHERE realm_id = ?", [realm_id])
    return rows[0] if rows else None


def replace_rows(store: Store, name: str, select: str, realm_id: str, **params: object) -> None:
    """The company's rows of a table replaced by the query's (needs $realm), the others' left as they are; the table
    made of them when there is none yet."""
    params = {**params, "realm": realm_id}
    if store.table_exists(name):
        store.execute(f"DELETE FROM {name} WHERE realm_id = $realm", {"realm": realm_id})
        store.execute(f"INSERT INTO {name} {select}", params)
    else:
        store.execute(f"CREATE TABLE {name} AS {select}", params)


def _reinsert(store: Store, realm_id: str, logged: bool) -> None:
    """The company's rows of the records in rm_dirty deleted and inserted again as they are now (rm_exceptions' too
    when the records came from the log)."""
    params = {"realm": realm_id}
    store.execute(f"CREATE OR REPLACE TABLE rm_kept AS {_KEEP}", params)
    live = _LIVE_DIRTY if store.scalar("SELECT count(*) FROM rm_kept WHERE NOT kept") else _LIVE_KEPT
    store.execute(f"DELETE FROM rm_records WHERE realm_id = $realm AND {_DIRTY}", params)
    store.execute(f"INSERT INTO rm_records SELECT *, $realm AS realm_id FROM ({live})", params)
    store.execute("DROP TABLE rm_kept")
    store.execute(f"DELETE FROM rm_leading WHERE realm_id = $realm AND {_DIRTY}", params)
    leading = _leading(_OWN_RECORDS, f" AND {_DIRTY}")
    store.execute(f"INSERT INTO rm_leading SELECT *, $realm AS realm_id FROM ({leading})", params)
    if logged:
        store.execute(f"DELETE FROM rm_exceptions WHERE realm_id = $realm AND {_DIRTY}", params)
        store.execute(f"INSERT INTO rm_exceptions {_exceptions(_OWN_RECORDS, f' AND {_E_DIRTY}')}", params)


def _update_records(store: Store, realm_id: str) -> tuple[int, tuple[str, ...]] | None:
    """Re-insert only the company's rows of the records whose inputs changed since its rows were built; returns how
    many rows were re-inserted since its last whole build and the tables so updated, or None when its rows must be
    rebuilt whole (none yet, an older release's tables, or too many changes, now or added up since that build).

    The records changed are those the writers noted in the company's change log (rm_consumed: its rows as this
    refresh found them) when its rows were last built with the log; their rm_records, rm_leading and rm_exceptions
    rows are re-inserted. Else (its log emptied unread, or its rows built by a release before the log) every input of
    rm_records and rm_leading is compared with what its rows hold, which finds the same records exactly, only slower
    (rm_exceptions, whose rows hold more than that comparison sees, is then rebuilt)."""
    if not store.table_exists(_STATE):
        return None  # none yet (the refresh has dropped an older release's tables before it gets here)
    built = _label(store, realm_id)
    if built is None:
        return None
    logged = built[2] is not None
    params = {"realm": realm_id}
    # On PostgreSQL replacing rm_dirty waits for a concurrent refresh to commit; the label is read again after it.
    store.execute(f"CREATE OR REPLACE TABLE rm_dirty AS {_LOGGED if logged else _CHANGED}", params)
    changed, rows = store.rows(
        "SELECT (SELECT count(*) FROM rm_dirty), (SELECT count(*) FROM rm_records WHERE realm_id = $realm)", params
    )[0]
    # Re-inserted rows go to the end of rm_records, out of its date order (which lets a month's scan skip the rest):
    # once they add up to the threshold share of the company's rows since its last whole build, the next refresh
    # rebuilds them in order.
    reinserted = int(built[1] or 0) + int(changed)
    same = _label(store, realm_id) == built and reinserted <= FULL_SHARE * max(rows, 1)
    if same and changed:
        _reinsert(store, realm_id, logged)
    store.execute("DROP TABLE rm_dirty")
    return (reinserted, _IN_PLACE if logged else _COMPARED) if same else None


def _mark(store: Store, realm_id: str) -> int:
    """How far the company's change log had been read when its rows were last built (0: never, or not read); called
    once the tables are this release's or gone."""
    label = _label(store, realm_id) if store.table_exists(_STATE) else None
    return int(label[2] or 0) if label is not None else 0


def refresh_read_model(store: Store, realm_id: str) -> bool:
    """Bring the company's rows of the read-model tables up to its version (a no-op when current).

    Each company's rows sit beside the others' and only its own are replaced or updated, so pages of several
    companies (one PostgreSQL store in fleet mode) do not rebuild the tables in turn. The engine calls this after
    each cycle, so that the first page shown after a change does not pay for it; a page calls it too. Returns False
    when another process was writing them at the same moment (the page then reads live).

    The company's change log is consumed in the same transaction: its rows found at the start are deleted at the
    end, and the highest of them is kept in its label as the mark its log has been read to. A row a writer commits
    meanwhile, and every other company's, stays for the next refresh of that company.
    """
    if is_current(store, realm_id):
        return True
    params = {"realm": realm_id}
    try:
        with store.transaction():
            # The label's version is read first: on PostgreSQL each statement reads the latest commits, so a change
            # committed after this read is in the rows or in the log, and in no label (the next refresh sees it).
            key = _version_key(store, realm_id)
            # On PostgreSQL replacing rm_consumed waits for a concurrent refresh to commit (and consume its rows).
            store.execute(
                "CREATE OR REPLACE TABLE rm_consumed AS SELECT seq, realm_id, entity, record_id FROM record_changes "
                "WHERE realm_id = $realm",
                params,
            )
            if not _ours(store):
                _drop(store)  # an older release's (or partly missing) tables: no company's rows there are trusted
            updated = _update_records(store, realm_id)
            reinserted, in_place = updated if updated is not None else (0, ())
            for name, build in _TABLES.items():  # rm_records first: the others are built from it
                if name not in in_place:
                    replace_rows(store, name, build(_OWN_RECORDS), realm_id)
            store.execute("DELETE FROM record_changes WHERE seq IN (SELECT seq FROM rm_consumed)")
            mark = max(int(store.scalar("SELECT coalesce(max(seq), 0) FROM rm_consumed")), _mark(store, realm_id))
            store.execute("DROP TABLE rm_consumed")
            # labelled inside the transaction, with the version read before any of the data the rows were built from
            replace_rows(store, _STATE, _LABEL, realm_id, version=key, reinserted=reinserted, mark=mark)
    except duckdb.TransactionException:
        return False
    return True


def prepared_realm() -> str | None:
    """The company whose read models this thread has prepared (inside `prepared`), else None."""
    return getattr(_local, "realm", None)


@contextmanager
def prepared(store: Store, realm_id: str) -> Iterator[None]:
    """Read models called inside read one state of the store, from the read-model tables when they are current.

    Every query of this thread's cursor inside sees the same snapshot, so the numbers of one page agree with each
    other even while the engine writes; the numbers are the same without the read model, only slower.
    """
    if getattr(_local, "realm", None) == realm_id:
        yield
        return
    if getattr(_local, "realm", None) is not None:
        raise RuntimeError("read models are already prepared for another company on this thread")
    refresh_read_model(store, realm_id)
    with store.snapshot():
        _local.realm = realm_id if is_current(store, realm_id) else None
        try:
            yield
        finally:
            _local.realm = None
