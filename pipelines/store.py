"""The one owner of the database: schema migrations, a cursor per thread, parametrized SQL.

The embedded store is a DuckDB file (the default); fleet mode's is PostgreSQL (`SYNCHEALTH_DB=postgresql://...`),
behind the same interface, the same migrations and the same SQL text (pipelines/dialect.py says what differs).
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import polars as pl
import psycopg

from pipelines.audit import AuditCheck, rehash_all, verify
from pipelines.clock import system_clock
from pipelines.config import crash_point_requested
from pipelines.dialect import DUCKDB, POSTGRES, POSTGRES_PRELUDE, Dialect
from pipelines.postgres import AdvisoryLocks, PgCursor
from pipelines.postgres import connect as pg_connect
from qbo.tokens import TOKENS_DDL
from schemas.awra import CONTRACT, Table

__all__ = [
    "MIGRATIONS",
    "Migration",
    "Store",
    "StoreBusyError",
    "StoreError",
    "StoreTooNewError",
    "awra_table",
    "current_view",
    "crash_point",
    "is_database_url",
]

# Serializes migrations between the processes of a fleet that open one PostgreSQL store at the same moment.
_MIGRATION_LOCK = 7_405_117_001


def is_database_url(target: str | Path) -> bool:
    """Whether a store target names a PostgreSQL database rather than a DuckDB file."""
    return str(target).startswith(("postgresql://", "postgres://"))


class StoreError(Exception):
    """The store cannot be opened or used; the message is one line a person can act on."""


class StoreBusyError(StoreError):
    """Another process holds the DuckDB file (DuckDB allows one read-write process per file)."""


class StoreTooNewError(StoreError):
    """The file was written by a newer version of this app; opening it could damage it."""


@dataclass(frozen=True)
class Migration:
    """One schema step; applied in its own transaction, recorded in schema_version.

    `then` runs after the SQL in the same transaction, for a step SQL cannot express (a hash chain over rows);
    `native` after that, for the store's own DDL that has no common text (the audit log's guard triggers).
    """

    version: int
    description: str
    sql: str
    then: Callable[[Any], object] | None = None
    native: Callable[[Dialect], str] | None = None


def awra_table(name: str) -> str:
    """The store table that holds every version of one AWRA snapshot table."""
    return f"awra_{name}"


def _awra_ddl(table: Table) -> str:
    cols = ",\n  ".join(f"{c.name} {c.sql_type}" for c in table.columns)
    # Every version of a record is kept; `version` is the record's version (lines carry their header's).
    return (
        f"CREATE TABLE {awra_table(table.name)} (\n  realm_id VARCHAR NOT NULL,\n  {cols},\n"
        "  version INTEGER NOT NULL,\n  extra VARCHAR,\n  ingest_run_id BIGINT NOT NULL\n);"
    )


_V1 = "\n".join(
    [
        *(_awra_ddl(t) for t in CONTRACT.values()),
        """
CREATE TABLE records (
  realm_id VARCHAR NOT NULL,
  entity VARCHAR NOT NULL,
  record_id VARCHAR NOT NULL,
  current_version INTEGER NOT NULL,
  content_hash VARCHAR NOT NULL,
  first_seen_at TIMESTAMPTZ NOT NULL,
  changed_at TIMESTAMPTZ NOT NULL,
  removed_at TIMESTAMPTZ,
  state VARCHAR NOT NULL DEFAULT 'not_ready',
  PRIMARY KEY (realm_id, entity, record_id)
);
CREATE TABLE record_versions (
  realm_id VARCHAR NOT NULL,
  entity VARCHAR NOT NULL,
  record_id VARCHAR NOT NULL,
  version INTEGER NOT NULL,
  content_hash VARCHAR NOT NULL,
  ingest_run_id BIGINT NOT NULL,
  seen_at TIMESTAMPTZ NOT NULL
);
CREATE SEQUENCE ingest_run_seq START 1;
CREATE TABLE ingest_runs (
  run_id BIGINT PRIMARY KEY,
  realm_id VARCHAR NOT NULL,
  source VARCHAR NOT NULL,
  started_at TIMESTAMPTZ NOT NULL,
  finished_at TIMESTAMPTZ,
  status VARCHAR NOT NULL,          -- applied | unchanged | refused
  rows BIGINT NOT NULL DEFAULT 0,
  accepted BIGINT NOT NULL DEFAULT 0,
  rejected BIGINT NOT NULL DEFAULT 0,
  new_records BIGINT NOT NULL DEFAULT 0,
  changed_records BIGINT NOT NULL DEFAULT 0,
  removed_records BIGINT NOT NULL DEFAULT 0,
  error VARCHAR
);
CREATE TABLE ingest_files (
  run_id BIGINT NOT NULL,
  realm_id VARCHAR NOT NULL,
  table_name VARCHAR NOT NULL,
  file VARCHAR,
  rows BIGINT NOT NULL DEFAULT 0,
  accepted BIGINT NOT NULL DEFAULT 0,
  rejected BIGINT NOT NULL DEFAULT 0,
  error VARCHAR
);
CREATE SEQUENCE audit_seq START 1;
CREATE TABLE audit_log (
  audit_id BIGINT NOT NULL DEFAULT nextval('audit_seq'),
  realm_id VARCHAR NOT NULL,
  acted_at TIMESTAMPTZ NOT NULL,
  actor VARCHAR NOT NULL,
  role VARCHAR NOT NULL,
  action VARCHAR NOT NULL,
  target VARCHAR NOT NULL,
  reason VARCHAR,
  before_json VARCHAR,
  after_json VARCHAR
);
-- Append-only in the database itself: any UPDATE or DELETE fails (the guard triggers: Dialect.append_only_guard).
CREATE TABLE audit_guard (never INTEGER);
""",
    ]
)

# The QBO mirror: reference data and transactions as pulled (query, CDC, webhook reads), with the
# columns readiness, mapping and duplicate checks join on pulled out of the JSON once, at load.
_V3 = """
CREATE TABLE qbo_objects (
  realm_id VARCHAR NOT NULL,
  entity VARCHAR NOT NULL,
  qbo_id VARCHAR NOT NULL,
  sync_token VARCHAR,
  active BOOLEAN NOT NULL DEFAULT TRUE,
  deleted BOOLEAN NOT NULL DEFAULT FALSE,
  name VARCHAR,                -- DisplayName, or Name
  acct_num VARCHAR,
  sku VARCHAR,
  doc_number VARCHAR,
  party_id VARCHAR,            -- VendorRef / CustomerRef value
  total_amt DECIMAL(18,2),
  txn_date DATE,
  currency VARCHAR,
  note VARCHAR,                -- PrivateNote, or Notes on Vendor/Customer
  marker VARCHAR,              -- awra:<entity>:<id>:v<version> found in the note: the object is ours
  last_updated TIMESTAMPTZ,
  payload VARCHAR NOT NULL,
  pulled_at TIMESTAMPTZ NOT NULL,
  PRIMARY KEY (realm_id, entity, qbo_id)
);
CREATE TABLE qbo_company (
  realm_id VARCHAR PRIMARY KEY,
  company_name VARCHAR,
  country VARCHAR,
  home_currency VARCHAR,
  multicurrency BOOLEAN,
  book_close_date DATE,
  duplicate_docnum_check BOOLEAN,
  custom_txn_numbers BOOLEAN,
  class_tracking BOOLEAN,
  department_tracking BOOLEAN,
  company_info VARCHAR,
  preferences VARCHAR,
  pulled_at TIMESTAMPTZ NOT NULL
);
CREATE SEQUENCE qbo_pull_seq START 1;
CREATE TABLE qbo_pulls (
  pull_id BIGINT PRIMARY KEY,
  realm_id VARCHAR NOT NULL,
  kind VARCHAR NOT NULL,       -- full | cdc | entities
  started_at TIMESTAMPTZ NOT NULL,
  finished_at TIMESTAMPTZ,
  changed_since TIMESTAMPTZ,
  objects BIGINT NOT NULL DEFAULT 0,
  deleted BIGINT NOT NULL DEFAULT 0,
  inactive BIGINT NOT NULL DEFAULT 0,
  status VARCHAR NOT NULL,     -- running | done | failed
  error VARCHAR
);
"""

# Readiness, mappings, duplicate candidates and the links between AWRA records and QBO objects.
_V4 = """
CREATE TABLE mappings (
  realm_id VARCHAR NOT NULL,
  kind VARCHAR NOT NULL,       -- account | tax_code | vendor | customer | item | payment_method | class
  awra_value VARCHAR NOT NULL,
  qbo_entity VARCHAR,          -- Account, TaxCode, Vendor, Customer, Item, PaymentMethod, Class, Department
  qbo_id VARCHAR,
  qbo_name VARCHAR,
  source VARCHAR NOT NULL,     -- auto | manual | created_by_sync
  status VARCHAR NOT NULL,     -- mapped | missing | stale | suggested
  confidence DOUBLE,
  match_rule VARCHAR,          -- marker | account_number | sku | exact_name | normalized_name | person
  set_by VARCHAR,
  set_at TIMESTAMPTZ NOT NULL,
  PRIMARY KEY (realm_id, kind, awra_value)
);
CREATE TABLE external_refs (
  realm_id VARCHAR NOT NULL,
  entity VARCHAR NOT NULL,
  record_id VARCHAR NOT NULL,
  qbo_entity VARCHAR NOT NULL,
  qbo_id VARCHAR NOT NULL,
  sync_token VARCHAR,
  synced_version INTEGER,      -- the AWRA version QBO holds; below current_version means an update is due
  linked_by VARCHAR NOT NULL,  -- sync | marker | person
  linked_at TIMESTAMPTZ NOT NULL,
  actor VARCHAR,
  PRIMARY KEY (realm_id, entity, record_id)
);
CREATE TABLE exclusions (
  realm_id VARCHAR NOT NULL,
  entity VARCHAR NOT NULL,
  record_id VARCHAR NOT NULL,
  actor VARCHAR NOT NULL,
  reason VARCHAR NOT NULL,
  excluded_at TIMESTAMPTZ NOT NULL,
  PRIMARY KEY (realm_id, entity, record_id)
);
CREATE SEQUENCE check_run_seq START 1;
CREATE TABLE check_runs (
  run_id BIGINT PRIMARY KEY,
  realm_id VARCHAR NOT NULL,
  started_at TIMESTAMPTZ NOT NULL,
  finished_at TIMESTAMPTZ,
  trigger VARCHAR NOT NULL,    -- check | map | retry | schedule
  actor VARCHAR,
  records BIGINT NOT NULL DEFAULT 0,
  ready BIGINT NOT NULL DEFAULT 0,
  findings BIGINT NOT NULL DEFAULT 0,
  seconds DOUBLE
);
CREATE TABLE findings (
  run_id BIGINT NOT NULL,
  realm_id VARCHAR NOT NULL,
  entity VARCHAR NOT NULL,
  record_id VARCHAR NOT NULL,
  version INTEGER NOT NULL,
  check_name VARCHAR NOT NULL, -- complete | approved | posted | eligible | mapped | no_duplicate
  dimension VARCHAR NOT NULL,  -- source_data | mapping | duplicate_risk
  reason VARCHAR NOT NULL,     -- stable code, e.g. mapping.item_missing
  detail VARCHAR NOT NULL,     -- what a person can act on: "line 3: item SKU WID-220 has no QuickBooks item"
  mapping_kind VARCHAR,        -- for mapping findings: the kind and AWRA value to map
  mapping_value VARCHAR,
  amount DECIMAL(18,2),
  txn_date DATE
);
CREATE TABLE duplicate_candidates (
  run_id BIGINT NOT NULL,
  realm_id VARCHAR NOT NULL,
  entity VARCHAR NOT NULL,
  record_id VARCHAR NOT NULL,
  version INTEGER NOT NULL,
  qbo_entity VARCHAR NOT NULL,
  qbo_id VARCHAR NOT NULL,
  rule VARCHAR NOT NULL,       -- name_exists | doc_number_exists | similar_transaction
  score DOUBLE NOT NULL,
  reasons VARCHAR NOT NULL
);
CREATE TABLE duplicate_decisions (
  realm_id VARCHAR NOT NULL,
  entity VARCHAR NOT NULL,
  record_id VARCHAR NOT NULL,
  version INTEGER NOT NULL,
  decision VARCHAR NOT NULL,   -- link | create_new
  qbo_entity VARCHAR,
  qbo_id VARCHAR,
  actor VARCHAR NOT NULL,
  reason VARCHAR NOT NULL,
  decided_at TIMESTAMPTZ NOT NULL,
  PRIMARY KEY (realm_id, entity, record_id)
);
"""

# The sync engine: runs, intents written before a request and settled after, every attempt, per-record retry
# bookkeeping, and the one current exception per record and cause.
_V5 = """
CREATE SEQUENCE sync_run_seq START 1;
CREATE TABLE sync_runs (
  run_id BIGINT PRIMARY KEY,
  realm_id VARCHAR NOT NULL,
  trigger VARCHAR NOT NULL,      -- schedule | manual | retry
  actor VARCHAR,
  started_at TIMESTAMPTZ NOT NULL,
  finished_at TIMESTAMPTZ,
  status VARCHAR NOT NULL,       -- running | done | paused | failed
  planned BIGINT NOT NULL DEFAULT 0,
  sent BIGINT NOT NULL DEFAULT 0,
  accepted BIGINT NOT NULL DEFAULT 0,
  rejected BIGINT NOT NULL DEFAULT 0,
  duplicate BIGINT NOT NULL DEFAULT 0,
  "authorization" BIGINT NOT NULL DEFAULT 0,
  throttled BIGINT NOT NULL DEFAULT 0,
  transport BIGINT NOT NULL DEFAULT 0,
  ambiguous BIGINT NOT NULL DEFAULT 0,
  held BIGINT NOT NULL DEFAULT 0,
  linked BIGINT NOT NULL DEFAULT 0,
  seconds DOUBLE,
  error VARCHAR
);
CREATE TABLE sync_intents (
  realm_id VARCHAR NOT NULL,
  entity VARCHAR NOT NULL,
  record_id VARCHAR NOT NULL,
  version INTEGER NOT NULL,
  generation INTEGER NOT NULL,
  request_id VARCHAR NOT NULL,
  qbo_entity VARCHAR NOT NULL,
  operation VARCHAR NOT NULL,    -- create | update
  payload VARCHAR NOT NULL,
  run_id BIGINT NOT NULL,
  created_at TIMESTAMPTZ NOT NULL,
  settled_at TIMESTAMPTZ,
  outcome VARCHAR,
  PRIMARY KEY (realm_id, request_id)
);
CREATE SEQUENCE sync_attempt_seq START 1;
CREATE TABLE sync_attempts (
  attempt_id BIGINT PRIMARY KEY,
  run_id BIGINT NOT NULL,
  realm_id VARCHAR NOT NULL,
  entity VARCHAR NOT NULL,
  record_id VARCHAR NOT NULL,
  version INTEGER NOT NULL,
  attempt_no INTEGER NOT NULL,
  generation INTEGER NOT NULL,
  request_id VARCHAR NOT NULL,
  operation VARCHAR NOT NULL,    -- create | update | replay | lookup
  started_at TIMESTAMPTZ NOT NULL,
  duration_ms DOUBLE,
  http_status INTEGER,
  qbo_code VARCHAR,
  message VARCHAR,
  detail VARCHAR,
  element VARCHAR,
  intuit_tid VARCHAR,
  outcome VARCHAR NOT NULL,      -- accepted | rejected | duplicate | authorization | throttled | transport | ambiguous
  dimension VARCHAR,
  reason VARCHAR NOT NULL,
  external_id VARCHAR,
  sync_token VARCHAR
);
CREATE TABLE sync_status (
  realm_id VARCHAR NOT NULL,
  entity VARCHAR NOT NULL,
  record_id VARCHAR NOT NULL,
  version INTEGER NOT NULL,      -- the version the last attempt was about
  generation INTEGER NOT NULL DEFAULT 0,
  retry_count INTEGER NOT NULL DEFAULT 0,
  attempts INTEGER NOT NULL DEFAULT 0,
  next_retry_at TIMESTAMPTZ,
  last_outcome VARCHAR,
  last_reason VARCHAR,
  last_attempt_at TIMESTAMPTZ,
  PRIMARY KEY (realm_id, entity, record_id)
);
CREATE SEQUENCE exception_seq START 1;
CREATE TABLE exceptions (
  exception_id BIGINT PRIMARY KEY,
  realm_id VARCHAR NOT NULL,
  entity VARCHAR NOT NULL,       -- 'connection' for a realm's authorization problem
  record_id VARCHAR NOT NULL,
  version INTEGER,
  dimension VARCHAR NOT NULL,
  reason VARCHAR NOT NULL,
  detail VARCHAR,
  owner_role VARCHAR NOT NULL,
  owner VARCHAR,
  status VARCHAR NOT NULL,       -- open | assigned | resolved
  escalated BOOLEAN NOT NULL DEFAULT FALSE,
  opened_at TIMESTAMPTZ NOT NULL,
  last_seen_at TIMESTAMPTZ NOT NULL,
  occurrences INTEGER NOT NULL DEFAULT 1,
  amount DECIMAL(18,2),
  evidence VARCHAR,              -- JSON: attempts with provider message, code and intuit_tid
  resolved_at TIMESTAMPTZ,
  resolved_by VARCHAR,
  resolution VARCHAR
);
"""


# The action queue: who owns an exception and by when, why it escalated, how a person resolved it. Explanation,
# fix and the document's own due date are not stored: they are joined from the catalogue and AWRA when read.
_V6 = """
ALTER TABLE exceptions ADD COLUMN due_by TIMESTAMPTZ;          -- from the routing rule, at opening or reopening
ALTER TABLE exceptions ADD COLUMN routed_by VARCHAR;           -- the rule that set owner and due-by
ALTER TABLE exceptions ADD COLUMN last_activity_at TIMESTAMPTZ; -- opened, assigned, escalated, resolved, reopened
ALTER TABLE exceptions ADD COLUMN escalated_at TIMESTAMPTZ;
ALTER TABLE exceptions ADD COLUMN escalation_reason VARCHAR;   -- why: overdue, or the retry limit
ALTER TABLE exceptions ADD COLUMN resolution_code VARCHAR;     -- auto, or a person's: see actions.RESOLUTION_CODES
ALTER TABLE exceptions ADD COLUMN resolved_mark BIGINT;        -- what the store had seen when a person resolved it
UPDATE exceptions SET last_activity_at = coalesce(resolved_at, opened_at),
                      resolution_code = CASE WHEN resolved_by = 'system' THEN 'auto' END;
"""


# The server (server.py): webhook deliveries as received and processed, scheduler cycles, and the connection
# warnings an admin must act on before the refresh token lapses (pipelines/connection_health.py).
_V7 = """
CREATE SEQUENCE webhook_event_seq START 1;
CREATE TABLE webhook_events (
  event_id BIGINT PRIMARY KEY,
  received_at TIMESTAMPTZ NOT NULL,
  signature VARCHAR NOT NULL,    -- valid | invalid | missing
  format VARCHAR,                -- legacy | cloudevents (valid deliveries only)
  realm_id VARCHAR,              -- one row per realm a valid delivery named
  entities VARCHAR,              -- JSON {"Account": ["2"]}: the objects named, re-read after the answer
  processed_at TIMESTAMPTZ,
  cycle_id BIGINT,
  error VARCHAR
);
CREATE SEQUENCE server_cycle_seq START 1;
CREATE TABLE server_cycles (
  cycle_id BIGINT NOT NULL,
  realm_id VARCHAR NOT NULL,     -- one row per company the cycle went through
  trigger VARCHAR NOT NULL,      -- schedule | webhook | manual
  started_at TIMESTAMPTZ NOT NULL,
  finished_at TIMESTAMPTZ,
  status VARCHAR NOT NULL,       -- running | done | failed | stopped
  steps VARCHAR,                 -- JSON: per step, what it did or the error
  error VARCHAR,
  PRIMARY KEY (cycle_id, realm_id)
);
CREATE TABLE connection_warnings (
  realm_id VARCHAR NOT NULL,
  reason VARCHAR NOT NULL,       -- authorization.reconnect_soon, or the reason of a refused call
  detail VARCHAR NOT NULL,
  lapses_at TIMESTAMPTZ,
  seen_at TIMESTAMPTZ NOT NULL,
  PRIMARY KEY (realm_id, reason)
);
"""

# The change log: one row per record a write changed (a record written twice has two rows until a refresh consumes
# them). No key: appends stay cheap, and the refresh reads it whole.
_V16 = """
CREATE SEQUENCE record_change_seq START 1;
CREATE TABLE record_changes (
  seq BIGINT NOT NULL DEFAULT nextval('record_change_seq'),
  realm_id VARCHAR NOT NULL,
  entity VARCHAR NOT NULL,
  record_id VARCHAR NOT NULL
);
"""

# Each reference value's failures per record over every check run, folded run by run as each check stores its
# findings (the most money, in how many runs, when last seen, the last run, the first reason): the Trends page's
# recurring offenders read it, so a check run's findings need not be kept once newer runs stand in for them.
_V18 = """
CREATE TABLE finding_history (
  realm_id VARCHAR NOT NULL,
  kind VARCHAR NOT NULL,
  value VARCHAR,
  entity VARCHAR NOT NULL,
  record_id VARCHAR NOT NULL,
  amount DECIMAL(18,2),
  runs BIGINT NOT NULL,
  last_seen TIMESTAMPTZ NOT NULL,
  last_run BIGINT NOT NULL,
  reason VARCHAR NOT NULL
);
INSERT INTO finding_history
SELECT f.realm_id, f.mapping_kind, f.mapping_value, f.entity, f.record_id, max(f.amount), count(DISTINCT f.run_id),
       max(c.started_at), max(f.run_id), min(f.reason)
FROM findings f JOIN check_runs c ON c.run_id = f.run_id
WHERE f.mapping_kind IS NOT NULL
GROUP BY f.realm_id, f.mapping_kind, f.mapping_value, f.entity, f.record_id;
"""


def current_view(name: str) -> str:
    """The view over one AWRA table holding only live records' current versions (lines: their header's)."""
    return f"cur_{name}"


def _current_views() -> str:
    views = []
    for table in CONTRACT.values():
        views.append(
            f"""CREATE VIEW {current_view(table.name)} AS SELECT a.* FROM {awra_table(table.name)} a
            JOIN records r ON r.realm_id = a.realm_id AND r.entity = '{table.entity}'
             AND r.record_id = a.{table.record_id} AND r.current_version = a.version AND r.removed_at IS NULL;"""
        )
    return "\n".join(views)


def _chain_existing_audit_rows(tx: Any) -> None:
    rehash_all(tx)


MIGRATIONS: list[Migration] = [
    Migration(
        1,
        "AWRA records and versions, ingest runs, append-only audit log",
        _V1,
        native=lambda d: d.append_only_guard("audit_log"),
    ),
    Migration(2, "QBO connections (encrypted tokens, status) and their events", TOKENS_DDL),
    Migration(3, "QBO mirror: objects, company preferences, pull history", _V3),
    Migration(4, "Readiness findings, mappings, duplicate candidates, links to QBO objects", _V4 + _current_views()),
    Migration(5, "Sync engine: runs, intents, attempts, retry bookkeeping, exceptions", _V5),
    Migration(6, "Action queue: due-by, routing, escalation and resolution codes on exceptions", _V6),
    Migration(7, "Server: webhook events, scheduler cycles, connection warnings", _V7),
    # Each file's SHA-256, so a re-ingest skips every entity whose files are byte-for-byte the last ones.
    Migration(8, "Ingest: a content fingerprint per snapshot file", "ALTER TABLE ingest_files ADD sha256 VARCHAR;"),
    # Each signed webhook delivery's SHA-256, so a replayed delivery is ignored, also after a restart.
    Migration(9, "Webhooks: a digest per delivery", "ALTER TABLE webhook_events ADD digest VARCHAR;"),
    # A hash of each record's raw text (header row and lines): a re-ingest validates and stages only the records
    # whose text changed, so 1% changed costs about 1% of the work past reading the files.
    Migration(10, "Ingest: a hash of each record's raw text", "ALTER TABLE records ADD raw_hash UBIGINT;"),
    # When the mirror first saw an object's current content (new, or a new SyncToken, deleted or made inactive), on
    # our clock: a retry asks whether QuickBooks changed since the last attempt, and a re-pull of the same content
    # must not look like a change.
    Migration(
        11,
        "QBO mirror: when each object's content last changed",
        "ALTER TABLE qbo_objects ADD changed_at TIMESTAMPTZ; UPDATE qbo_objects SET changed_at = pulled_at;",
    ),
    # Each audit row's hash chained to the one before: a rewrite that gets past the triggers is still seen. The
    # guard is lifted for the one UPDATE that gives the existing rows their hashes, and put back in the same step.
    Migration(
        12,
        "Audit log: a hash chain over its rows",
        "DROP TRIGGER audit_no_update ON audit_log; ALTER TABLE audit_log ADD chain_hash VARCHAR;",
        then=_chain_existing_audit_rows,
        native=lambda d: d.append_only_guard("audit_log", only="UPDATE"),
    ),
    # Ingest is a person's (or the scheduler's) act like every write: the history says who asked for each run.
    Migration(13, "Ingest: who asked for each run", "ALTER TABLE ingest_runs ADD actor VARCHAR;"),
    # An incremental check re-checks what changed since the last one; a change to the rules or the company's
    # settings (their fingerprints) makes the next one full.
    Migration(
        14,
        "Checks: full or incremental, what they re-checked, and what they were computed by",
        "ALTER TABLE check_runs ADD kind VARCHAR DEFAULT 'full'; ALTER TABLE check_runs ADD records_checked BIGINT; "
        "ALTER TABLE check_runs ADD rules_fingerprint VARCHAR; ALTER TABLE check_runs ADD company_fingerprint VARCHAR;",
    ),
    # Contract v1.1: a delta snapshot names the snapshot it follows, so the history keeps each run's id and kind.
    Migration(
        15,
        "Ingest: the snapshot's id and kind (full or delta) and the base a delta follows",
        "ALTER TABLE ingest_runs ADD snapshot_id VARCHAR; ALTER TABLE ingest_runs ADD kind VARCHAR DEFAULT 'full'; "
        "ALTER TABLE ingest_runs ADD base VARCHAR;",
    ),
    # Each write that changes what a record's read-model row is made of notes the record here, in its own
    # transaction; the read-model refresh re-reads only those records and deletes the rows it consumed
    # (pipelines/changes.py, pipelines/views/read_model.py).
    Migration(16, "Read model: the records each write changed", _V16),
    # The content hash as a number (the first 8 bytes of the same md5, as md5_number_upper gives them): a delta that
    # changes 1% of the records rewrites a small number column in every row group it touches, not 32 characters of
    # text (the checkpoint after a 1% delta at 1M: 0.22 s of text against 0.02 s of a number). Converted from the
    # stored digests, so no record looks changed by the upgrade.
    Migration(
        17,
        "Ingest: each record's content hash as a number",
        "",
        native=lambda d: "\n".join(
            f"ALTER TABLE {t} ALTER content_hash TYPE UBIGINT USING {_digest_upper(d, 'content_hash')};"
            for t in ("records", "record_versions")
        ),
    ),
    Migration(18, "Checks: each reference value's failures per record over every run, folded as runs are stored", _V18),
]


# How much write-ahead log DuckDB lets build up before a commit checkpoints (see _open_duckdb).
CHECKPOINT_AFTER = "128MB"


def _size(text: str) -> str:
    """A memory size as DuckDB writes one ("1GB", "953.6 MiB"): checked, since a SET takes no parameter."""
    if not re.fullmatch(r"\d+(\.\d+)?\s?[KMGT]i?B", text):
        raise ValueError(f"not a memory size: {text!r}")
    return text


def _digest_upper(dialect: Dialect, column: str) -> str:
    """The number md5_number_upper gives, from an md5 hex digest stored as text (its first 8 bytes, little-endian)."""
    if dialect.name != "duckdb":
        return f"md5_digest_upper({column})"  # in the PostgreSQL prelude
    pairs = " || ".join(f"substr({column}, {i}, 2)" for i in range(15, 0, -2))
    return f"('0x' || {pairs})::UBIGINT"


def crash_point(name: str) -> None:
    """Die here, at once and without cleanup, when SYNCHEALTH_CRASH_AT names this point (crash tests)."""
    if crash_point_requested() == name:
        os._exit(70)


class Store:
    """The database: one connection per process (DuckDB) or per thread (PostgreSQL), migrations on open.

    `Store(path)` opens a DuckDB file; `Store("postgresql://...")` a PostgreSQL database (fleet mode). Callers see
    the same methods, and cursors that take the same calls (pipelines/postgres.py).
    """

    def __init__(self, path: str | Path, *, migrations: Sequence[Migration] = MIGRATIONS) -> None:
        self.url: str | None = str(path) if is_database_url(path) else None
        self.dialect: Dialect = POSTGRES if self.url else DUCKDB
        # The errors a statement raises on this store (a refused UPDATE of the audit log, a broken constraint).
        self.sql_error: type[Exception] = psycopg.Error if self.url else duckdb.Error
        self.path = Path("postgresql") if self.url else Path(path)
        self._migrations = list(migrations)
        self._local = threading.local()
        self._write_lock = threading.RLock()
        # Work inside memory_bounded, in any thread: DuckDB's memory limit is the database's.
        self._bound_lock = threading.Lock()
        self._bound_by = 0
        # per table: its primary key and every column, in order (what INSERT OR REPLACE becomes on PostgreSQL)
        self._keys: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {}
        self._domains: dict[int, Any] = {}
        self._pg_connections: list[psycopg.Connection] = []
        self._pg_guard = threading.Lock()
        self._advisory = AdvisoryLocks(self.url) if self.url else None
        if self.url:
            self._open_postgres()
        else:
            self._open_duckdb()
        self._migrate()
        if self.url:
            self._load_catalog()
        # The audit log's guard and its newest rows are checked at every open; a broken chain is reported (the
        # CLI on stderr, /healthz, the Health page), never repaired.
        self.audit_check: AuditCheck = verify(self.cursor(), full=False)

    def _open_duckdb(self) -> None:
        if str(self.path) != ":memory:":
            self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._con = duckdb.connect(str(self.path))
        except duckdb.IOException as exc:
            if "lock" in str(exc).lower():
                raise StoreBusyError(
                    f"the store {self.path} is open in another process (is `synchealth serve` or the app "
                    "running?); stop it or run this through the server"
                ) from None
            raise StoreError(f"cannot open the store {self.path}: {exc}") from None
        # Timestamps are stored and shown in UTC whatever the machine's zone (hashes depend on their text).
        self._con.execute("SET TimeZone = 'UTC'")
        # A checkpoint rewrites every row group a commit touched, most of them partly filled (the last one of each
        # table appended to). DuckDB decides on an estimate of the commit's log that runs far above the log it
        # writes (a 1% delta at 1M: a 6 MB log, estimated over 32 MB), so at its 16 MB default every cycle's ingest
        # paid a checkpoint (0.3-0.4 s at 1M). With more room the log holds several cycles and one checkpoint
        # rewrites those row groups once; a restart after a crash replays at most this much.
        self._con.execute(f"SET checkpoint_threshold = '{CHECKPOINT_AFTER}'")

    def _open_postgres(self) -> None:
        self.cursor()  # the first connection: a store that cannot be reached says so now, in one line

    def _load_catalog(self) -> None:
        """Primary keys (INSERT OR REPLACE replaces on them) and the types DuckDB has and PostgreSQL makes."""
        keys: dict[str, list[str]] = {}
        for table, column in self.rows(
            """SELECT tc.table_name, kcu.column_name FROM information_schema.table_constraints tc
               JOIN information_schema.key_column_usage kcu
                 ON kcu.constraint_name = tc.constraint_name AND kcu.table_schema = tc.table_schema
               WHERE tc.constraint_type = 'PRIMARY KEY' AND tc.table_schema = current_schema()
               ORDER BY tc.table_name, kcu.ordinal_position"""
        ):
            keys.setdefault(table, []).append(column)
        columns: dict[str, list[str]] = {}
        for table, column in self.rows(
            """SELECT table_name, column_name FROM information_schema.columns
               WHERE table_schema = current_schema() ORDER BY table_name, ordinal_position"""
        ):
            columns.setdefault(table, []).append(column)
        self._keys.update({t: (tuple(keys.get(t, ())), tuple(c)) for t, c in columns.items()})
        for (oid,) in self.rows("SELECT oid::BIGINT FROM pg_type WHERE typname = 'ubigint'"):
            self._domains[int(oid)] = pl.UInt64

    # -- connection -----------------------------------------------------------------------------------
    def cursor(self) -> Any:
        """This thread's cursor (a DuckDB connection is not thread-safe; its cursors are; PostgreSQL: a connection
        per thread)."""
        cur = getattr(self._local, "cursor", None)
        if cur is None:
            if self.url:
                try:
                    con = pg_connect(self.url)
                except ConnectionError as exc:
                    raise StoreError(str(exc)) from None
                with self._pg_guard:
                    self._pg_connections.append(con)
                cur = PgCursor(con, self._keys, self._domains)
            else:
                cur = self._con.cursor()
            self._local.cursor = cur
        return cur

    def advisory_lock(
        self, name: str, *, wait: float | None = None, busy: Callable[[], Exception] = TimeoutError
    ) -> AbstractContextManager[None]:
        """A lock named `name` across every process on this store: a PostgreSQL advisory lock in fleet mode; nothing
        on DuckDB, where one process owns the file and its in-process locks already exclude each other."""
        if self._advisory is None:
            return nullcontext()
        return self._advisory.hold(name, wait=wait, busy=busy)

    def close(self) -> None:
        if self._advisory is not None:
            self._advisory.close()
        if self.url:
            with self._pg_guard:
                for con in self._pg_connections:
                    con.close()
                self._pg_connections.clear()
            self._local = threading.local()
        else:
            self._con.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- SQL ------------------------------------------------------------------------------------------
    def execute(self, sql: str, params: Sequence[Any] | dict[str, Any] | None = None) -> None:
        """Run a statement whose result is not needed (DDL, INSERT, UPDATE)."""
        self.cursor().execute(sql, params).fetchall()

    def frame(self, sql: str, params: Sequence[Any] | dict[str, Any] | None = None) -> pl.DataFrame:
        """Run a query and return the result as a Polars frame."""
        # A relation, not execute(): DuckDB 2 copies a DB-API result once more to make Arrow of it.
        return self.cursor().sql(sql, params=params).pl()

    def rows(self, sql: str, params: Sequence[Any] | dict[str, Any] | None = None) -> list[tuple]:
        return self.cursor().execute(sql, params).fetchall()

    def scalar(self, sql: str, params: Sequence[Any] | dict[str, Any] | None = None) -> Any:
        # fetchall, not fetchone: DuckDB 2 refuses the next statement on a cursor whose result was
        # not read to the end ("unfinished result from execute()").
        rows = self.cursor().execute(sql, params).fetchall()
        return rows[0][0] if rows else None

    def native(self, sql: str) -> None:
        """Run the store's own DDL as written (a dialect piece: triggers, functions)."""
        cur = self.cursor()
        if self.url:
            cur.native(sql)
        else:
            cur.execute(sql)

    @contextmanager
    def transaction(self) -> Iterator[Any]:
        """One transaction on this thread's cursor; writers in this process take turns.

        Nested, it joins the transaction already open on this thread: a command opens one around the engine steps
        it calls and its audit entry, so the change and its record commit together or not at all.
        """
        with self._write_lock:
            cur = self.cursor()
            if getattr(self._local, "depth", 0):
                self._local.depth += 1
                try:
                    yield cur
                finally:
                    self._local.depth -= 1
                return
            cur.execute("BEGIN TRANSACTION")
            self._local.depth = 1
            try:
                yield cur
            except BaseException:
                self._local.depth = 0
                cur.execute("ROLLBACK")
                raise
            self._local.depth = 0
            cur.execute("COMMIT")

    @contextmanager
    def memory_bounded(self, limit: str) -> Iterator[None]:
        """DuckDB keeps what it works on within `limit` inside (spilling to a temp folder beside the store), and its
        default limit again after (the store sets no other): for work whose size is the company's (a first ingest
        stages every row). PostgreSQL bounds each statement's memory itself (work_mem), so there it changes nothing.
        The limit is the database's, not a thread's: the first of several at once sets it and the last lifts it."""
        if self.url:
            yield
            return
        checked = _size(limit)
        with self._bound_lock:
            if not self._bound_by:
                self.cursor().execute(f"SET memory_limit = '{checked}'")
            self._bound_by += 1
        try:
            yield
        finally:
            with self._bound_lock:
                self._bound_by -= 1
                if not self._bound_by:
                    self.cursor().execute("RESET memory_limit")

    @contextmanager
    def snapshot(self) -> Iterator[Any]:
        """Reads on this thread's cursor that all see one state of the store (a read-only transaction)."""
        cur = self.cursor()
        if self.url:
            cur.native("BEGIN ISOLATION LEVEL REPEATABLE READ")
        else:
            cur.execute("BEGIN TRANSACTION")
        try:
            yield cur
        finally:
            cur.execute("ROLLBACK")

    # -- schema ---------------------------------------------------------------------------------------
    @property
    def schema_version(self) -> int:
        return int(self.scalar("SELECT coalesce(max(version), 0) FROM schema_version"))

    @property
    def latest_version(self) -> int:
        return max(m.version for m in self._migrations)

    def _migrate(self) -> None:
        cur = self.cursor()
        if self.url:
            # One process of the fleet migrates; the others wait here and then find nothing left to do.
            cur.native(f"SELECT pg_advisory_lock({_MIGRATION_LOCK})")
        try:
            self._migrate_locked(cur)
        finally:
            if self.url:
                cur.native(f"SELECT pg_advisory_unlock({_MIGRATION_LOCK})")

    def _migrate_locked(self, cur: Any) -> None:
        if self.url:
            cur.native(POSTGRES_PRELUDE)
        cur.execute(
            "CREATE TABLE IF NOT EXISTS schema_version ("
            "version INTEGER PRIMARY KEY, description VARCHAR NOT NULL, applied_at TIMESTAMPTZ NOT NULL)"
        )
        current = self.schema_version
        if current > self.latest_version:
            where = "database" if self.url else f"store {self.path}"
            raise StoreTooNewError(
                f"the {where} has schema version {current}, newer than this app knows "
                f"({self.latest_version}); upgrade the app, do not open this file with an older one"
            )
        for migration in self._migrations:
            if migration.version <= current:
                continue
            with self.transaction() as tx:
                if migration.sql and self.url:
                    tx.script(migration.sql)
                elif migration.sql:  # a step all in the store's own DDL (native) has none
                    tx.execute(migration.sql)
                if migration.then is not None:
                    migration.then(tx)
                if migration.native is not None:
                    self.native(migration.native(self.dialect))
                tx.execute(
                    "INSERT INTO schema_version VALUES (?, ?, ?)",
                    [migration.version, migration.description, system_clock()],
                )

    def table_exists(self, name: str) -> bool:
        return bool(
            self.scalar(
                "SELECT count(*) FROM information_schema.tables WHERE table_name = ?",
                [name],
            )
        )
