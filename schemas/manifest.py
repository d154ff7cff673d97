"""The snapshot manifest of contract v1.1: full or delta, the snapshot's id, the base a delta follows, removals."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

from schemas.awra import CONTRACT, KINDS

__all__ = [
    "CONTRACT_VERSION",
    "FULL",
    "MANIFEST_FILE",
    "Manifest",
    "ManifestError",
    "manifest_json",
    "parse_manifest",
]

MANIFEST_FILE = "manifest.json"
CONTRACT_VERSION = "1.1"
# A snapshot without a manifest is a v1.0 full snapshot; a manifest may name any 1.x up to the version read here.
_READABLE = ("1.0", "1.1")
_KINDS = ("full", "delta")
_ID = re.compile(KINDS["id"].pattern or "")
_SNAPSHOT_ID = re.compile(r"^[^\x00-\x1f\x7f]{1,128}$")
_HEADER_TABLES = tuple(name for name, table in CONTRACT.items() if not table.is_lines)


class ManifestError(ValueError):
    """The manifest breaks the contract; `field` names where (a key, or `removed.bills[3]`)."""

    def __init__(self, field: str | None, message: str) -> None:
        self.field = field
        super().__init__(message)


@dataclass(frozen=True)
class Manifest:
    """What a snapshot says about itself. A delta carries changed records whole and lists what left AWRA."""

    kind: str  # full | delta
    snapshot_id: str | None  # None: a v1.0 snapshot without a manifest
    base: str | None = None  # a delta: the snapshot_id of the snapshot it follows
    removed: dict[str, tuple[str, ...]] = field(default_factory=dict)  # header table -> record ids

    @property
    def is_delta(self) -> bool:
        return self.kind == "delta"


FULL = Manifest("full", None)


class _RepeatedKey(Exception):
    pass


def _unique(pairs: list[tuple[str, object]]) -> dict[str, object]:
    seen: dict[str, object] = {}
    for key, value in pairs:
        if key in seen:
            raise _RepeatedKey(key)
        seen[key] = value
    return seen


def _text(doc: dict[str, object], key: str, pattern: re.Pattern[str], describe: str) -> str:
    value = doc.get(key)
    if not isinstance(value, str) or not pattern.match(value):
        raise ManifestError(key, f"must be {describe}, not {_shown(value)}")
    return value


def _shown(value: object) -> str:
    text = json.dumps(value, ensure_ascii=True) if value is not None else "missing"
    return text[:60] + ("..." if len(text) > 60 else "")


def _removed(value: object, max_ids: int) -> dict[str, tuple[str, ...]]:
    if not isinstance(value, dict):
        raise ManifestError("removed", f"must be an object of table name to a list of record ids, not {_shown(value)}")
    out = {}
    for table, ids in value.items():
        if table not in _HEADER_TABLES:
            known = ", ".join(_HEADER_TABLES)
            raise ManifestError(f"removed.{_shown(table)}", f"is not a table whose records can be removed ({known})")
        if not isinstance(ids, list):
            raise ManifestError(f"removed.{table}", f"must be a list of record ids, not {_shown(ids)}")
        if len(ids) > max_ids:
            raise ManifestError(
                f"removed.{table}", f"lists {len(ids):,} ids; a snapshot may remove at most {max_ids:,}"
            )
        for i, rid in enumerate(ids):
            if not isinstance(rid, str) or not _ID.match(rid):
                raise ManifestError(f"removed.{table}[{i}]", f"must be {KINDS['id'].describe}, not {_shown(rid)}")
        out[table] = tuple(dict.fromkeys(ids))  # a repeated id removes its record once
    return out


def parse_manifest(text: str, max_ids: int = 10_000_000) -> Manifest:
    """The manifest in `text`, or ManifestError naming the key that breaks the contract.

    Unknown keys are ignored, so a later 1.x may add some; a contract version newer than this app reads is refused.
    """
    try:
        doc = json.loads(text, object_pairs_hook=_unique)
    except _RepeatedKey as err:
        raise ManifestError(str(err.args[0]), "key appears more than once") from None
    except (json.JSONDecodeError, RecursionError) as err:
        where = f" (line {err.lineno}, column {err.colno})" if isinstance(err, json.JSONDecodeError) else ""
        raise ManifestError(None, f"is not valid JSON{where}") from None
    if not isinstance(doc, dict):
        raise ManifestError(None, "must be one JSON object")
    version = doc.get("contract")
    if version not in _READABLE:
        readable = " or ".join(_READABLE)
        raise ManifestError("contract", f"must be {readable} (the versions this app reads), not {_shown(version)}")
    kind = doc.get("kind")
    if kind not in _KINDS:
        raise ManifestError("kind", f'must be "full" or "delta", not {_shown(kind)}')
    snapshot_id = _text(doc, "snapshot_id", _SNAPSHOT_ID, "the snapshot's id, 1-128 characters, no control characters")
    if kind == "full":
        for key in ("base", "removed"):
            if key in doc:
                raise ManifestError(key, "belongs to a delta; a full snapshot removes a record by leaving it out")
        return Manifest("full", snapshot_id)
    base = _text(doc, "base", _SNAPSHOT_ID, "the snapshot_id of the snapshot this delta follows")
    if base == snapshot_id:
        raise ManifestError("base", "is this delta's own snapshot_id; a delta follows an earlier snapshot")
    removed = _removed(doc.get("removed", {}), max_ids)
    return Manifest("delta", snapshot_id, base, removed)


def manifest_json(manifest: Manifest) -> str:
    """The manifest.json text AWRA writes for `manifest` (what parse_manifest reads back)."""
    if manifest.snapshot_id is None:
        raise ValueError("a manifest names its snapshot_id")
    doc: dict[str, object] = {"contract": CONTRACT_VERSION, "kind": manifest.kind, "snapshot_id": manifest.snapshot_id}
    if manifest.is_delta:
        doc["base"] = manifest.base
        doc["removed"] = {name: list(ids) for name, ids in manifest.removed.items()}
    return json.dumps(doc, indent=2) + "\n"
