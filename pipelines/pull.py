"""QBO reference data and transactions into the store: a full pull first, CDC afterwards (ref §6, §7)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, Protocol

import polars as pl

from pipelines.clock import elapsed_from
from pipelines.store import Store
from qbo.client import NAME_LISTS
from qbo.ids import OBJECT_ID

__all__ = [
    "CDC_ENTITIES",
    "PULLED_ENTITIES",
    "PullResult",
    "load_company_file",
    "load_objects",
    "pull",
    "pull_entities",
]

# The client knows which entities are name lists (they carry Active); the pull reads them all, in a stable order.
NAME_LIST_ENTITIES = tuple(sorted(NAME_LISTS))
TRANSACTION_ENTITIES = ("PurchaseOrder", "Bill", "Invoice", "Payment", "BillPayment", "JournalEntry")
PULLED_ENTITIES = NAME_LIST_ENTITIES + TRANSACTION_ENTITIES
# TaxCode and TaxRate are not in CDC (ref §7): they are small, so each pull re-reads them whole.
CDC_ENTITIES = tuple(e for e in PULLED_ENTITIES if e not in ("TaxCode", "TaxRate"))
# Stay inside CDC's 30-day look-back with a day to spare; older than that needs a full pull (ref §7).
_CDC_SAFE_LOOKBACK = timedelta(days=29)
# Our source marker (ARCHITECTURE.md "Source marker"); the id may itself hold colons.
_MARKER = r"awra:[a-z_]+:\S+:v[0-9]+"
Progress = Callable[[float, str], None]
# QBO objects stored at a time by a full pull: a few tens of MB of JSON held, and a few dozen loads at 1M objects.
FLUSH_OBJECTS = 20_000


class PullClient(Protocol):
    """What the pull needs of qbo.client.QboClient (a protocol, so tests can hand in the real one only)."""

    realm_id: str

    def query_all_pages(
        self, entity: str, where: Any = None, include_inactive: bool = False
    ) -> Iterable[list[dict]]: ...
    def cdc(self, entities: Any, since: datetime, until: datetime | None = None) -> dict[str, list]: ...
    def read(self, entity: str, id: str) -> Any: ...
    def company_info(self) -> Any: ...
    def preferences(self) -> Any: ...


@dataclass(frozen=True)
class PullResult:
    """What one pull brought in."""

    pull_id: int
    kind: str
    objects: int
    deleted: int
    inactive: int
    by_entity: dict[str, int] = field(default_factory=dict)


def _json(obj: Mapping[str, Any]) -> str:
    # Decimals stay exact as strings; DuckDB casts either form to DECIMAL(18,2).
    return json.dumps(obj, default=lambda v: str(v) if isinstance(v, Decimal) else repr(v), sort_keys=True)


_MIRROR_COLUMNS = (
    "realm_id, entity, qbo_id, sync_token, active, deleted, name, acct_num, sku, doc_number, party_id, total_amt, "
    "txn_date, currency, note, marker, last_updated, payload, pulled_at, changed_at"
)


def load_objects(
    store: Store, realm_id: str, entity: str, objects: Iterable[Mapping[str, Any]], pulled_at: datetime
) -> tuple[int, int]:
    """Upsert QBO objects of one entity; objects with status Deleted keep their last known fields.

    Returns (objects loaded, of which deleted).
    """
    frame = pl.DataFrame({"payload": [_json(o) for o in objects]}, schema={"payload": pl.String})
    if frame.is_empty():
        return 0, 0
    cur = store.cursor()
    cur.register("_pulled", frame.to_arrow())
    try:
        cur.execute(
            f"""CREATE OR REPLACE TEMP TABLE _pulled_rows AS
            SELECT ? AS realm_id, ? AS entity,
                   json_extract_string(payload, '$.Id') AS qbo_id,
                   json_extract_string(payload, '$.SyncToken') AS sync_token,
                   coalesce(TRY_CAST(json_extract_string(payload, '$.Active') AS BOOLEAN), TRUE) AS active,
                   coalesce(json_extract_string(payload, '$.status') = 'Deleted', FALSE) AS deleted,
                   coalesce(json_extract_string(payload, '$.DisplayName'),
                            json_extract_string(payload, '$.Name')) AS name,
                   json_extract_string(payload, '$.AcctNum') AS acct_num,
                   json_extract_string(payload, '$.Sku') AS sku,
                   json_extract_string(payload, '$.DocNumber') AS doc_number,
                   coalesce(json_extract_string(payload, '$.VendorRef.value'),
                            json_extract_string(payload, '$.CustomerRef.value'),
                            json_extract_string(payload, '$.EntityRef.value')) AS party_id,
                   TRY_CAST(json_extract_string(payload, '$.TotalAmt') AS DECIMAL(18,2)) AS total_amt,
                   TRY_CAST(json_extract_string(payload, '$.TxnDate') AS DATE) AS txn_date,
                   json_extract_string(payload, '$.CurrencyRef.value') AS currency,
                   coalesce(json_extract_string(payload, '$.PrivateNote'),
                            json_extract_string(payload, '$.Notes')) AS note,
                   nullif(regexp_extract(coalesce(json_extract_string(payload, '$.PrivateNote'),
                                                  json_extract_string(payload, '$.Notes'), ''),
                                         '{_MARKER}'), '') AS marker,
                   TRY_CAST(json_extract_string(payload, '$.MetaData.LastUpdatedTime') AS TIMESTAMPTZ)
                       AS last_updated,
                   payload, ?::TIMESTAMPTZ AS pulled_at
            FROM _pulled""",
            [realm_id, entity, pulled_at],
        )
    finally:
        cur.unregister("_pulled")
    # The content changed when the object is new to the mirror or its SyncToken, Active or deleted flag moved.
    store.execute(
        """CREATE OR REPLACE TEMP TABLE _pulled_changed AS
            SELECT p.*, CASE WHEN o.qbo_id IS NULL OR o.sync_token IS DISTINCT FROM p.sync_token
                             OR o.active <> p.active OR o.deleted <> p.deleted
                        THEN p.pulled_at ELSE o.changed_at END AS changed_at
            FROM _pulled_rows p
            LEFT JOIN qbo_objects o ON o.realm_id = p.realm_id AND o.entity = p.entity AND o.qbo_id = p.qbo_id
            QUALIFY row_number() OVER (PARTITION BY p.qbo_id ORDER BY p.last_updated DESC NULLS LAST) = 1"""
    )
    store.execute(
        f"INSERT OR REPLACE INTO qbo_objects ({_MIRROR_COLUMNS}) "
        f"SELECT {_MIRROR_COLUMNS} FROM _pulled_changed WHERE NOT deleted"
    )
    # A deleted object arrives as {Id, status, MetaData} only: keep what we knew of it, mark it deleted.
    store.execute(
        f"""INSERT INTO qbo_objects ({_MIRROR_COLUMNS}) SELECT {_MIRROR_COLUMNS} FROM _pulled_changed WHERE deleted
           ON CONFLICT (realm_id, entity, qbo_id) DO UPDATE SET deleted = TRUE,
             last_updated = excluded.last_updated, pulled_at = excluded.pulled_at, changed_at = excluded.changed_at"""
    )
    deleted = store.scalar("SELECT count(*) FROM _pulled_rows WHERE deleted")
    return frame.height, int(deleted)


def _store_pages(
    store: Store,
    realm_id: str,
    entity: str,
    pages: Iterable[list[dict[str, Any]]],
    pulled_at: datetime,
    counts: dict[str, tuple[int, int]],
) -> None:
    """Load an entity as its pages arrive, adding to its (objects, deleted) count; an entity with no rows counts zero.

    Pages are stored FLUSH_OBJECTS at a time: each load joins the entity's mirror once, so a load per page of 1000
    would cost the square of a large entity, and holding the entity whole would cost its size in memory.
    """
    loaded, deleted = counts.get(entity, (0, 0))
    held: list[dict[str, Any]] = []

    def flush() -> None:
        nonlocal loaded, deleted
        with store.transaction():
            n, d = load_objects(store, realm_id, entity, held, pulled_at)
        loaded, deleted = loaded + n, deleted + d
        held.clear()

    for page in pages:
        held.extend(page)
        if len(held) >= FLUSH_OBJECTS:
            flush()
    if held:
        flush()
    counts[entity] = (loaded, deleted)


def _pref_value(prefs: Mapping[str, Any], name: str) -> str | None:
    pairs = (prefs.get("OtherPrefs") or {}).get("NameValue") or []
    return next((str(p.get("Value")) for p in pairs if p.get("Name") == name), None)


def _load_company(
    store: Store, realm_id: str, info: Mapping[str, Any], prefs: Mapping[str, Any], pulled_at: datetime
) -> None:
    acct = prefs.get("AccountingInfoPrefs") or {}
    cur = prefs.get("CurrencyPrefs") or {}
    # Where QBO keeps the duplicate DocNumber check is unconfirmed (ref §10); ours is an OtherPrefs pair.
    dup = _pref_value(prefs, "DuplicateDocNumberCheck")
    store.execute(
        "INSERT OR REPLACE INTO qbo_company VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            realm_id,
            info.get("CompanyName"),
            info.get("Country"),
            (cur.get("HomeCurrency") or {}).get("value"),
            bool(cur.get("MultiCurrencyEnabled", False)),
            acct.get("BookCloseDate"),
            None if dup is None else dup.lower() == "true",
            (prefs.get("SalesFormsPrefs") or {}).get("CustomTxnNumbers"),
            acct.get("ClassTrackingPerTxnLine"),
            acct.get("TrackDepartments"),
            _json(info),
            _json(prefs),
            pulled_at,
        ],
    )


def _last_pull_start(store: Store, realm_id: str) -> datetime | None:
    return store.scalar("SELECT max(started_at) FROM qbo_pulls WHERE realm_id = ? AND status = 'done'", [realm_id])


def _begin(store: Store, realm_id: str, kind: str, started: datetime, since: datetime | None) -> int:
    pull_id = int(store.scalar("SELECT nextval('qbo_pull_seq')"))
    store.execute(
        "INSERT INTO qbo_pulls (pull_id, realm_id, kind, started_at, changed_since, status) "
        "VALUES (?, ?, ?, ?, ?, 'running')",
        [pull_id, realm_id, kind, started, since],
    )
    return pull_id


def _finish(
    store: Store, pull_id: int, counts: dict[str, tuple[int, int]], error: str | None, finished_at: datetime
) -> None:
    store.execute(
        """UPDATE qbo_pulls SET finished_at = ?, objects = ?, deleted = ?, status = ?, error = ?,
             inactive = (SELECT count(*) FROM qbo_objects o
                         WHERE o.realm_id = qbo_pulls.realm_id AND NOT o.active AND NOT o.deleted)
           WHERE pull_id = ?""",
        [
            finished_at,
            sum(c[0] for c in counts.values()),
            sum(c[1] for c in counts.values()),
            "failed" if error else "done",
            error,
            pull_id,
        ],
    )


def pull(
    store: Store,
    client: PullClient,
    *,
    now: datetime,
    full: bool = False,
    progress: Progress | None = None,
) -> PullResult:
    """Bring the store's QBO mirror up to date: everything the first time, then only what changed."""
    realm_id = client.realm_id
    started, perf = now, time.perf_counter()
    say = progress or (lambda _f, _l: None)
    since = None if full else _last_pull_start(store, realm_id)
    kind = "cdc" if since is not None and started - since < _CDC_SAFE_LOOKBACK else "full"
    pull_id = _begin(store, realm_id, kind, started, since if kind == "cdc" else None)
    counts: dict[str, tuple[int, int]] = {}
    try:
        say(0.05, "company and preferences")
        _load_company(store, realm_id, client.company_info().object or {}, client.preferences().object or {}, started)
        # Pages are stored in short transactions as they arrive (FLUSH_OBJECTS at a time), so no entity is ever
        # held whole (a large company's full pull would not fit in memory). A transaction open across the calls
        # would also hold the write lock over the network, and a token refresh on the way (a 401) could not save
        # the new token. A pull that fails half way leaves newer objects than before, never wrong ones: the upsert
        # keeps the newest, and the next pull starts from the last one that finished.
        if kind == "full":
            for i, entity in enumerate(PULLED_ENTITIES):
                say(0.1 + 0.85 * i / len(PULLED_ENTITIES), f"{entity}")
                pages = client.query_all_pages(entity, include_inactive=entity in NAME_LIST_ENTITIES)
                _store_pages(store, realm_id, entity, pages, started, counts)
        else:
            assert since is not None  # a "cdc" pull is chosen only when there is a last pull to start from
            say(0.2, "changes since the last pull")
            changed = client.cdc(CDC_ENTITIES, since)  # what changed: its size grows with change, not history
            say(0.8, "storing")
            for entity, rows in changed.items():
                _store_pages(store, realm_id, entity, [rows], started, counts)
            for entity in ("TaxCode", "TaxRate"):
                pages = client.query_all_pages(entity, include_inactive=True)
                _store_pages(store, realm_id, entity, pages, started, counts)
    except Exception as err:
        _finish(store, pull_id, counts, f"{type(err).__name__}: {err}", elapsed_from(started, perf))
        raise
    _finish(store, pull_id, counts, None, elapsed_from(started, perf))
    say(1.0, "done")
    row = store.rows("SELECT objects, deleted, inactive FROM qbo_pulls WHERE pull_id = ?", [pull_id])[0]
    return PullResult(pull_id, kind, int(row[0]), int(row[1]), int(row[2]), {e: c[0] for e, c in counts.items()})


def load_company_file(store: Store, company: Mapping[str, Any], pulled_at: datetime) -> None:
    """Load a company file (`synchealth demo`'s qbo-company.json) into the mirror without a network."""
    realm_id = company["realm_id"]
    with store.transaction():
        for entity, objects in company["objects"].items():
            load_objects(store, realm_id, entity, objects, pulled_at)
        _load_company(store, realm_id, company["company_info"], company["preferences"], pulled_at)


# Ids per query when re-reading what a webhook named: one call per entity and chunk, not one read per object.
NAMED_IDS_PER_QUERY = 100


def pull_entities(store: Store, client: PullClient, refs: Mapping[str, Iterable[str]], *, now: datetime) -> PullResult:
    """Re-read exactly the objects a webhook named, with one query per entity (`Id IN (...)`, inactive name-list rows
    included); one the query no longer returns is deleted in QuickBooks and marked so."""
    started, perf = now, time.perf_counter()
    pull_id = _begin(store, client.realm_id, "entities", started, None)
    counts: dict[str, tuple[int, int]] = {}
    for entity, named in refs.items():
        # Only what could be a QuickBooks id (the webhook's sender is outside): anything else names no object.
        ids = list(dict.fromkeys(str(i) for i in named if OBJECT_ID.match(str(i))))
        found: dict[str, dict] = {}
        for at in range(0, len(ids), NAMED_IDS_PER_QUERY):
            chunk = ids[at : at + NAMED_IDS_PER_QUERY]
            asked = set(chunk)
            for page in client.query_all_pages(entity, [("Id", "IN", chunk)], include_inactive=entity in NAME_LISTS):
                found.update((str(obj.get("Id")), obj) for obj in page if str(obj.get("Id")) in asked)
        gone = [{"Id": qbo_id, "status": "Deleted"} for qbo_id in ids if qbo_id not in found]
        counts[entity] = load_objects(store, client.realm_id, entity, [*found.values(), *gone], started)
    _finish(store, pull_id, counts, None, elapsed_from(started, perf))
    return PullResult(
        pull_id,
        "entities",
        sum(c[0] for c in counts.values()),
        sum(c[1] for c in counts.values()),
        0,
        {e: c[0] for e, c in counts.items()},
    )
