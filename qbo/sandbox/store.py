"""One realm's state: objects by entity, Id sequences, tombstones, the CDC change log and preferences."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

from qbo.sandbox.clock import format_meta_time, parse_qbo_time
from qbo.sandbox.entities import ACTIVE_FLAG, canonical
from qbo.sandbox.wire import is_digits, loads, normalize

__all__ = ["COMPANY_FORMAT", "RealmStore", "empty_store", "read_company", "store_from_company"]

COMPANY_FORMAT = "synchealth-qbo-company/1"


@dataclass
class RealmStore:
    """Everything one QBO company holds; the engine serialises access to it with its lock."""

    realm_id: str
    objects: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    deleted: dict[tuple[str, str], datetime] = field(default_factory=dict)
    # (entity, Id) -> (time of the latest change, sequence number): CDC returns each object once, at its
    # latest state, ordered by when it last changed.
    changes: dict[tuple[str, str], tuple[datetime, int]] = field(default_factory=dict)
    replies: dict[str, Any] = field(default_factory=dict)  # requestid -> the original response (ref §1)
    # Objects created earlier in the running batch, which later items cannot see yet (ref §8).
    hidden: set[tuple[str, str]] = field(default_factory=set)
    # entity -> (query without its page, version): the rows it selected, so the next page of a paged read is a slice
    selected: dict[str, tuple[Any, list[dict[str, Any]]]] = field(default_factory=dict)
    _seq: int = 0
    _next_id: dict[str, int] = field(default_factory=dict)

    def get(self, entity: str, obj_id: str) -> dict[str, Any] | None:
        """The stored object, deleted or not (check `is_deleted`)."""
        return self.objects.get(entity, {}).get(str(obj_id))

    def is_deleted(self, entity: str, obj_id: str) -> bool:
        return (entity, str(obj_id)) in self.deleted

    def live(self, entity: str) -> list[dict[str, Any]]:
        """Objects that are not deleted, in Id order."""
        rows = self.objects.get(entity, {})
        return [rows[i] for i in _id_order(rows) if (entity, i) not in self.deleted]

    def every(self, entity: str) -> list[dict[str, Any]]:
        """Every object, inactive and deleted included; a deleted one carries `status: Deleted`."""
        rows = self.objects.get(entity, {})
        out = []
        for obj_id in _id_order(rows):
            obj = copy.deepcopy(rows[obj_id])
            if (entity, obj_id) in self.deleted:
                obj["status"] = "Deleted"
            out.append(obj)
        return out

    @property
    def version(self) -> int:
        """Moves on every save and delete: what was selected from the company before is no longer current."""
        return self._seq

    def new_id(self, entity: str) -> str:
        next_id = self._next_id.get(entity, 1)
        self._next_id[entity] = next_id + 1
        return str(next_id)

    def save(self, entity: str, obj: dict[str, Any], at: datetime) -> None:
        """Store an object as its latest state and log the change for CDC."""
        obj_id = str(obj["Id"])
        self.objects.setdefault(entity, {})[obj_id] = obj
        self._bump_sequence(entity, obj_id)
        self._log(entity, obj_id, at)

    def delete(self, entity: str, obj_id: str, at: datetime) -> None:
        self.deleted[(entity, obj_id)] = at
        self._log(entity, obj_id, at)

    def changed_since(self, entities: list[str], since: datetime) -> list[tuple[datetime, int, str, str]]:
        """(time, seq, entity, Id) of each object in `entities` whose latest change is at or after `since`."""
        wanted = set(entities)
        found = [
            (at, seq, entity, obj_id)
            for (entity, obj_id), (at, seq) in self.changes.items()
            if entity in wanted and at >= since
        ]
        found.sort(key=lambda row: (row[0], row[1]))
        return found

    def _log(self, entity: str, obj_id: str, at: datetime) -> None:
        self._seq += 1
        self.changes[(entity, obj_id)] = (at, self._seq)

    def _bump_sequence(self, entity: str, obj_id: str) -> None:
        if is_digits(obj_id):
            self._next_id[entity] = max(self._next_id.get(entity, 1), int(obj_id) + 1)

    @property
    def preferences(self) -> dict[str, Any]:
        return self.objects.get("Preferences", {}).get("1", {})

    @property
    def company_info(self) -> dict[str, Any]:
        return self.objects.get("CompanyInfo", {}).get("1", {})

    def book_close_date(self) -> date | None:
        text = (self.preferences.get("AccountingInfoPrefs") or {}).get("BookCloseDate")
        return date.fromisoformat(str(text)[:10]) if text else None

    def duplicate_docnumber_check(self) -> bool:
        # Ref §10 leaves unconfirmed which Preferences field turns the check on. Our convention, written by
        # `synchealth demo`: OtherPrefs.NameValue entry DuplicateDocNumberCheck = "true".
        pairs = (self.preferences.get("OtherPrefs") or {}).get("NameValue") or []
        for pair in pairs:
            if pair.get("Name") == "DuplicateDocNumberCheck":
                return str(pair.get("Value")).strip().lower() == "true"
        return False

    def home_currency(self) -> str:
        prefs = self.preferences.get("CurrencyPrefs") or {}
        return str((prefs.get("HomeCurrency") or {}).get("value") or "USD")

    def multicurrency(self) -> bool:
        return bool((self.preferences.get("CurrencyPrefs") or {}).get("MultiCurrencyEnabled"))


def _id_order(rows: dict[str, Any]) -> list[str]:
    return sorted(rows, key=lambda i: (not is_digits(i), int(i) if is_digits(i) else 0, i))


def _default_company_info(realm_id: str) -> dict[str, Any]:
    return {
        "Id": "1",
        "CompanyName": f"Sandbox Company {realm_id}",
        "LegalName": f"Sandbox Company {realm_id}",
        "Country": "US",
    }


def _default_preferences() -> dict[str, Any]:
    return {
        "Id": "1",
        "AccountingInfoPrefs": {},
        "CurrencyPrefs": {"HomeCurrency": {"value": "USD"}, "MultiCurrencyEnabled": False},
        "SalesFormsPrefs": {"CustomTxnNumbers": True},
        "OtherPrefs": {"NameValue": [{"Name": "DuplicateDocNumberCheck", "Value": "true"}]},
    }


def empty_store(realm_id: str, now: datetime) -> RealmStore:
    """A company with only CompanyInfo and Preferences, for a realm nobody loaded."""
    return store_from_company({"format": COMPANY_FORMAT, "realm_id": realm_id, "objects": {}}, now)


def read_company(source: str | Path | dict[str, Any]) -> dict[str, Any]:
    """A company document from a file path or a dict (a dict is deep-copied, floats become Decimal)."""
    if isinstance(source, dict):
        return normalize(source)
    return loads(Path(source).read_bytes())


def store_from_company(doc: dict[str, Any], now: datetime) -> RealmStore:
    """Build a realm from a company document (format `synchealth-qbo-company/1`); raises ValueError."""
    if doc.get("format") != COMPANY_FORMAT:
        raise ValueError(f"not a company file: format must be {COMPANY_FORMAT!r}, got {doc.get('format')!r}")
    realm_id = str(doc.get("realm_id") or "").strip()
    if not realm_id:
        raise ValueError("the company file has no realm_id")
    store = RealmStore(realm_id=realm_id)
    singletons = {
        "CompanyInfo": doc.get("company_info") or _default_company_info(realm_id),
        "Preferences": doc.get("preferences") or _default_preferences(),
    }
    for entity, obj in singletons.items():
        _load_object(store, entity, {"Id": "1", **obj}, now)
    objects = doc.get("objects") or {}
    if not isinstance(objects, dict):
        raise ValueError("the company file's objects must map entity names to lists")
    for name, rows in objects.items():
        entity = canonical(name)
        if entity is None or entity in singletons:
            raise ValueError(f"the company file names an unknown entity {name!r}")
        if not isinstance(rows, list):
            raise ValueError(f"the company file's {name} must be a list")
        for row in rows:
            if not isinstance(row, dict):
                raise ValueError(f"a {name} in the company file is not an object")
            _load_object(store, entity, row, now)
    return store


def _load_object(store: RealmStore, entity: str, row: dict[str, Any], now: datetime) -> None:
    obj = copy.deepcopy(row)
    obj["Id"] = str(obj.get("Id") or store.new_id(entity))
    obj["SyncToken"] = str(obj.get("SyncToken", "0"))
    deleted = obj.pop("status", None) == "Deleted"
    meta = obj.setdefault("MetaData", {})
    meta.setdefault("CreateTime", format_meta_time(now))
    meta.setdefault("LastUpdatedTime", meta["CreateTime"])
    obj.setdefault("domain", "QBO")
    obj.setdefault("sparse", False)
    if entity in ACTIVE_FLAG:
        obj.setdefault("Active", True)
    if store.get(entity, obj["Id"]) is not None:
        raise ValueError(f"the company file has two {entity} objects with Id {obj['Id']}")
    changed = parse_qbo_time(str(meta["LastUpdatedTime"]))
    store.save(entity, obj, changed)
    if deleted:
        store.delete(entity, obj["Id"], changed)
