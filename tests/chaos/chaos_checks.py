"""The checks after a chaos run, through the sandbox control API and the store; each returns what is wrong."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import polars as pl
from chaos_run import OPEN_STATES, REALM, ChaosRun

from pipelines.duplicates import QBO_ENTITY
from qbo.faults import MAYBE_SAVED

__all__ = ["all_problems", "markers_in_qbo"]

# What the sync sends (items are only mapped), and where each AWRA table keeps its record key.
SENT = {entity: qbo for entity, qbo in QBO_ENTITY.items() if entity != "item"}
SNAPSHOT_KEYS = {
    "vendors": ("vendor", "vendor_id"),
    "customers": ("customer", "customer_id"),
    "items": ("item", "item_sku"),
    "accounts": ("account", "account_code"),
    "purchase_orders": ("purchase_order", "po_id"),
    "bills": ("bill", "bill_id"),
    "invoices": ("invoice", "invoice_id"),
    "payments": ("payment", "payment_id"),
    "bill_payments": ("bill_payment", "bill_payment_id"),
    "journal_entries": ("journal_entry", "je_id"),
}
_SHOWN = 5  # examples per problem: enough to start from, short enough to read


def _examples(items: list) -> str:
    more = f" (+{len(items) - _SHOWN} more)" if len(items) > _SHOWN else ""
    return ", ".join(str(i) for i in items[:_SHOWN]) + more


def markers_in_qbo(run: ChaosRun) -> dict[str, list[tuple[str, str]]]:
    """Per AWRA record key: the live QBO objects (entity, Id) carrying its source marker, by the control API."""
    found: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for qbo_entity in SENT.values():
        for obj in run.api("GET", f"/_sandbox/{REALM}/entities/{qbo_entity}"):
            note = str(obj.get("Notes") or obj.get("PrivateNote") or "").strip()
            if obj.get("status") == "Deleted" or not note.startswith("awra:"):
                continue
            key = note.removeprefix("awra:").rsplit(":v", 1)[0]
            found[key].append((qbo_entity, str(obj["Id"])))
    return dict(found)


def _snapshot_keys(folder: Path) -> set[str]:
    keys = set()
    for table, (entity, column) in SNAPSHOT_KEYS.items():
        ids = pl.read_csv(folder / f"{table}.csv", infer_schema=False)[column].to_list()
        keys |= {f"{entity}:{i}" for i in ids}
    return keys


def no_record_lost(run: ChaosRun) -> list[str]:
    with run.store() as store:
        stored = {f"{e}:{r}" for e, r in store.rows("SELECT entity, record_id FROM records WHERE removed_at IS NULL")}
    source = _snapshot_keys(run.snapshot_dir)
    problems = []
    if source - stored:
        problems.append(f"records in the AWRA snapshot but not in the store: {_examples(sorted(source - stored))}")
    if stored - source:
        problems.append(f"records in the store but not in the AWRA snapshot: {_examples(sorted(stored - source))}")
    return problems


def exactly_once(run: ChaosRun, before: dict[str, list[tuple[str, str]]]) -> list[str]:
    """A synced record is in QBO exactly once, as the object the store links; any other is not in QBO at all."""
    markers = markers_in_qbo(run)
    with run.store() as store:
        states = {f"{e}:{r}": s for e, r, s in store.rows("SELECT entity, record_id, state FROM records")}
        links = {f"{e}:{r}": q for e, r, q in store.rows("SELECT entity, record_id, qbo_id FROM external_refs")}
        # What our attempts account for: an accepted one names the object; one that may have been saved (sent and
        # the answer lost, or a fault QBO answers after saving, such as the 6000 "try again") is settled by finding
        # the object by its marker, through a lookup or a pull, and the link names it.
        created = {
            (QBO_ENTITY[e], str(q)) for e, q in store.rows(
                """SELECT entity, external_id FROM sync_attempts WHERE outcome = 'accepted' AND external_id IS NOT NULL
                   UNION SELECT x.entity, x.qbo_id FROM external_refs x WHERE EXISTS (
                     SELECT 1 FROM sync_attempts a WHERE a.realm_id = x.realm_id AND a.entity = x.entity
                       AND a.record_id = x.record_id
                       AND (a.outcome = 'ambiguous' OR list_contains($maybe, a.reason)))""",
                {"maybe": sorted(MAYBE_SAVED)},
            )
        }  # fmt: skip
    twice = [f"{k} x{len(v)}" for k, v in markers.items() if len(v) > 1]
    missing = [k for k, s in states.items() if s == "synced" and k.split(":")[0] in SENT and k not in markers]
    unknown = [f"{k} ({states.get(k, 'no record')})" for k in markers if states.get(k) != "synced"]
    wrong_link = [
        k for k, v in markers.items() if len(v) == 1 and states.get(k) == "synced" and links.get(k) != v[0][1]
    ]
    old = {o for objs in before.values() for o in objs}
    untold = [f"{k} {o}" for k, objs in markers.items() for o in objs if o not in old and o not in created]
    checks = [
        (twice, "records in QuickBooks more than once"),
        (missing, "records synced in the store but not in QuickBooks"),
        (unknown, "records in QuickBooks the store does not call synced"),
        (wrong_link, "records whose stored QuickBooks Id is not the object carrying their marker"),
        (untold, "objects created in QuickBooks that no stored attempt accounts for"),
    ]
    return [f"{what}: {_examples(sorted(items))}" for items, what in checks if items]


def accounted_for(run: ChaosRun) -> list[str]:
    """Every record is synced, excluded, or has an open exception with a dimension and an owner; none is in flight."""
    with run.store() as store:
        silent = store.rows(
            """SELECT r.entity || ':' || r.record_id || ' (' || r.state || ')' FROM records r
               WHERE r.removed_at IS NULL AND r.state NOT IN ('synced', 'excluded') AND NOT EXISTS (
                 SELECT 1 FROM exceptions e WHERE e.realm_id = r.realm_id AND e.entity = r.entity
                   AND e.record_id = r.record_id AND e.status <> 'resolved'
                   AND coalesce(e.dimension, '') <> '' AND coalesce(e.owner, e.owner_role, '') <> '')
               ORDER BY 1"""
        )
        in_flight = store.rows(
            f"""SELECT entity || ':' || record_id || ' (' || state || ')' FROM records
                WHERE removed_at IS NULL AND state IN {OPEN_STATES} AND entity IN {tuple(SENT)} ORDER BY 1"""
        )
        # With ten automatic retries, running out of them means transport never recovered: a stuck record, not chaos.
        worn_out = store.rows(
            """SELECT s.entity || ':' || s.record_id FROM sync_status s
               JOIN records r USING (realm_id, entity, record_id)
               WHERE r.state = 'needs_fix' AND s.last_outcome IN ('transport', 'throttled') ORDER BY 1"""
        )
    problems = []
    if worn_out:
        problems.append(f"records that used up their automatic retries: {_examples([r[0] for r in worn_out])}")
    if silent:
        problems.append(
            f"records neither synced nor with an open, owned exception: {_examples([r[0] for r in silent])}"
        )
    if in_flight:
        problems.append(f"records still in flight after the run: {_examples([r[0] for r in in_flight])}")
    return problems


def attempts_stored(run: ChaosRun) -> list[str]:
    """Every request id the sandbox saw is an intent in the store, and every intent is settled by a stored attempt.

    Single writes carry the record's own request id (`sh-` + 32 hex; `r` appended for the re-read resend after a
    5010). A batch carries an id derived from its members' ids (`sb-`), which cannot be read back; what a batch
    committed is checked object by object in `exactly_once` (every created object has an accepted attempt).
    """
    with run.store() as store:
        intents = {r[0] for r in store.rows("SELECT request_id FROM sync_intents")}
        unsettled = store.rows("SELECT request_id FROM sync_intents WHERE settled_at IS NULL ORDER BY 1")
        unrecorded = store.rows(
            """SELECT i.request_id FROM sync_intents i WHERE NOT EXISTS (
                 SELECT 1 FROM sync_attempts a WHERE a.realm_id = i.realm_id AND a.request_id = i.request_id)
               ORDER BY 1"""
        )
    singles = {rid[:35] for rid in run.request_ids if rid.startswith("sh-")}
    strangers = sorted(rid for rid in run.request_ids if not rid.startswith(("sh-", "sb-")))
    checks = [
        (sorted(singles - intents), "request ids the sandbox saw with no intent in the store"),
        (strangers, "request ids the sync engine does not make"),
        ([r[0] for r in unsettled], "intents never settled"),
        ([r[0] for r in unrecorded], "intents with no attempt stored"),
    ]
    return [f"{what}: {_examples(items)}" for items, what in checks if items]


def _last_words(err: str) -> str:
    """The line that says why a run stopped: the client's throttle warnings on stderr are not it."""
    lines = [ln for ln in err.strip().splitlines() if ln.strip() and not ln.startswith("QBO throttled")]
    return lines[-1] if lines else "(nothing on stderr)"


def clean_exits(run: ChaosRun) -> list[str]:
    """A run that was not killed ends with exit 0 and no stack trace; the sandbox itself never failed."""
    crashed = [err[err.index("Traceback") :].strip()[-1200:] for _code, err in run.ended if "Traceback" in err]
    failed = [f"exit {code}: {_last_words(err)}" for code, err in run.ended if code != 0 and "Traceback" not in err]
    problems = [f"a run crashed:\n{tb}" for tb in crashed[:2]]
    if failed:
        problems.append(f"runs that failed: {_examples(failed)}")
    if run.sandbox_errors():
        problems.append(f"the sandbox hit internal errors: {_examples(run.sandbox_errors())}")
    return problems


def all_problems(run: ChaosRun, before: dict[str, list[tuple[str, str]]]) -> list[str]:
    return [
        *no_record_lost(run),
        *exactly_once(run, before),
        *accounted_for(run),
        *attempts_stored(run),
        *clean_exits(run),
    ]
