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

__all__ = ["log_exception", "log_ingested", "log_key", "log_keys", "log_selected"]

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
