"""The change log: which records a write changed, noted in the write's own transaction.

Every write that changes what a record's read-model row is made of (its state or version, its removal, its
QuickBooks link, its exclusion, its first failed check, any of its exceptions) notes the record in `record_changes`
in the same transaction, with one set-based statement. The read-model refresh (pipelines/views/read_model.py) then
re-reads only those records, and deletes the rows it consumed in its own transaction; so a change committed while it
ran is left for the next one, in whatever order writers commit. Noting a record that did not change costs a re-read
of its row, nothing more; a change not noted would leave a page wrong, so when in doubt a writer notes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import polars as pl

__all__ = ["log_exception", "log_ingested", "log_key", "log_keys", "log_selected", "trim_unread"]

_INSERT = "INSERT INTO record_changes (realm_id, entity, record_id) "


def log_selected(cur: Any, keys: str, params: Any = None) -> None:
    """Note the records `keys` selects (a query giving realm_id, entity, record_id), each once; run it before an
    UPDATE whose condition the update itself makes false (a state that differs, an owner not yet set)."""
    cur.execute(
        f"{_INSERT}SELECT DISTINCT realm_id, entity, record_id FROM ({keys}) AS changed",
        params,
    ).fetchall()


def log_key(cur: Any, realm_id: str, entity: str, record_id: str) -> None:
    """Note one record (a person's act on it)."""
    cur.execute(f"{_INSERT}VALUES (?, ?, ?)", [realm_id, entity, record_id]).fetchall()


def log_keys(cur: Any, realm_id: str, keys: Sequence[tuple[str, str]]) -> None:
    """Note these records (entity, record_id), in one statement."""
    frame = pl.DataFrame(
        {"entity": [k[0] for k in keys], "record_id": [k[1] for k in keys]},
        schema={"entity": pl.String, "record_id": pl.String},
    )
    cur.register("_changed_keys", frame.to_arrow())
    try:
        log_selected(cur, "SELECT ? AS realm_id, entity, record_id FROM _changed_keys", [realm_id])
    finally:
        cur.unregister("_changed_keys")


def log_exception(cur: Any, exception_id: int) -> None:
    """Note the record of one exception (a person's act on it)."""
    cur.execute(
        f"{_INSERT}SELECT realm_id, entity, record_id FROM exceptions WHERE exception_id = ?", [exception_id]
    ).fetchall()


def log_ingested(cur: Any, realm_id: str, changed_at: Any) -> None:
    """Note the records an ingest run changed: new, new versions, removed and restored ones all carry the run's
    time in `changed_at` (records an earlier run stamped with the same time are noted again, which is harmless)."""
    log_selected(
        cur,
        "SELECT realm_id, entity, record_id FROM records WHERE realm_id = ? AND changed_at = ?",
        [realm_id, changed_at],
    )


def trim_unread(store: Any, limit: int | None = None) -> bool:
    """Empty a log no refresh has read for long (a fleet whose pages nobody opens): past `limit` rows (default:
    twice the records, plus 100,000), drop every row, every company's, and every company's mark in the read model, so
    each company's next refresh compares every input instead (exact, whatever the log held). Returns whether it did.

    It takes the refresh's own working table first, so on PostgreSQL it waits for a refresh running meanwhile and a
    refresh started meanwhile waits for it."""
    if limit is None:
        limit = 2 * int(store.scalar("SELECT count(*) FROM records")) + 100_000
    if int(store.scalar("SELECT count(*) FROM record_changes")) <= limit:
        return False
    with store.transaction():
        store.execute("CREATE OR REPLACE TABLE rm_consumed AS SELECT * FROM record_changes WHERE false")
        marked = store.scalar(
            "SELECT count(*) FROM information_schema.columns WHERE table_name = 'rm_state' AND column_name = ?",
            ["change_mark"],
        )
        if marked:
            store.execute("UPDATE rm_state SET change_mark = NULL")
        store.execute("DELETE FROM record_changes")
        store.execute("DROP TABLE rm_consumed")
    return True
