"""The sync engine: plan ready records, write the intent, send idempotently, classify, record, schedule retries."""

from __future__ import annotations

import hashlib
import json
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import duckdb
import polars as pl

from pipelines import changes
from pipelines.keys import RecordKey
from pipelines.locks import realm_lock
from pipelines.payloads import build_payloads
from pipelines.pull import load_objects
from pipelines.store import Store, crash_point
from qbo.client import BatchItem, QboCallError, QboClient, QboResult, select
from qbo.faults import ACCEPTED
from schemas.awra import SEND_TIERS

__all__ = [
    "TIERS",
    "RetryAnswer",
    "SyncResult",
    "request_id_for",
    "requeue",
    "retry_answers",
    "retry_gate",
    "settle_open_intents",
    "sync_run",
]

TIERS = SEND_TIERS  # dependency order, from the contract
_TIER_OF = {e: i for i, tier in enumerate(TIERS) for e in tier}
_BATCH = 30  # items per QBO batch (ref §8); the client splits longer lists the same way
PLAN_SLICE = 5_000  # due records whose bodies are built and sent at a time: bounds memory at any company size
MIRROR_FLUSH = 1_000  # accepted objects held for one load into the QBO mirror
_PARTIES = ("vendor", "customer")
Progress = Callable[[float, str], None]


@dataclass
class SyncResult:
    """What one sync run did."""

    run_id: int
    status: str = "done"
    planned: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    held: int = 0
    linked: int = 0
    seconds: float = 0.0
    error: str | None = None

    def count(self, outcome: str) -> int:
        return self.counts.get(outcome, 0)


def request_id_for(realm_id: str, entity: str, record_id: str, version: int, generation: int) -> str:
    """Deterministic per (realm, record, version, generation): a resend of one attempt replays, never creates."""
    digest = hashlib.sha256(f"{realm_id}|{entity}:{record_id}|v{version}|g{generation}".encode()).hexdigest()
    return f"sh-{digest[:32]}"  # 35 characters: inside QBO's 50 (and 36 for batches) (ref §1)


def _body(payload: str) -> dict[str, Any]:
    return json.loads(payload, parse_float=Decimal)


# -- plan ------------------------------------------------------------------------------------------------
def _due(store: Store, realm_id: str, now: datetime, only: Sequence[tuple[str, str]] | None) -> pl.DataFrame:
    """Records to send now: ready ones, and scheduled retries whose time has come."""
    frame = store.frame(
        """SELECT r.entity, r.record_id, r.current_version AS version, coalesce(s.generation, 0) AS generation,
                  coalesce(s.retry_count, 0) AS retry_count, coalesce(s.attempts, 0) AS attempts,
                  s.version AS status_version,
                  -- the last send may have been saved although QBO answered with a transient fault: look first
                  EXISTS (SELECT 1 FROM sync_intents i WHERE i.realm_id = r.realm_id AND i.entity = r.entity
                          AND i.record_id = r.record_id AND i.outcome = 'ambiguous') AS lookup_first
           FROM records r LEFT JOIN sync_status s USING (realm_id, entity, record_id)
           WHERE r.realm_id = $realm AND r.removed_at IS NULL
             AND (r.state = 'ready' OR (r.state = 'retry_scheduled' AND s.next_retry_at <= $now))
             AND r.entity NOT IN ('item', 'account')
             -- a send whose outcome is unknown (a crash before it was recorded, a lookup QBO did not answer) is
             -- settled by looking it up first: sending the record again could create it twice
             AND NOT EXISTS (SELECT 1 FROM sync_intents i WHERE i.realm_id = r.realm_id AND i.entity = r.entity
                             AND i.record_id = r.record_id AND i.settled_at IS NULL)""",
        {"realm": realm_id, "now": now},
    )
    if only is not None:
        keys = pl.DataFrame(
            {"entity": [k[0] for k in only], "record_id": [k[1] for k in only]},
            schema={"entity": pl.String, "record_id": pl.String},
        )
        frame = frame.join(keys, on=["entity", "record_id"])
    # A new version starts its own generations: the old version's rejections do not carry over.
    return frame.with_columns(
        pl.when(pl.col("status_version") == pl.col("version"))
        .then(pl.col("generation"))
        .otherwise(0)
        .alias("generation"),
        pl.col("entity").replace_strict(_TIER_OF, return_dtype=pl.Int32).alias("tier"),
    )


# -- record outcomes -------------------------------------------------------------------------------------
# A chunk's answers as one frame, one row per record; the store writes below read it as `_sync_outcomes`.
_OUTCOME_SCHEMA: dict[str, Any] = {
    "ordinal": pl.Int64,
    "entity": pl.String,
    "record_id": pl.String,
    "version": pl.Int64,
    "generation": pl.Int64,
    "retry_count": pl.Int64,
    "attempts": pl.Int64,
    "request_id": pl.String,
    "qbo_entity": pl.String,
    "operation": pl.String,
    "duration_ms": pl.Float64,
    "http_status": pl.Int64,
    "qbo_code": pl.String,
    "message": pl.String,
    "detail": pl.String,
    "element": pl.String,
    "intuit_tid": pl.String,
    "outcome": pl.String,
    "dimension": pl.String,
    "reason": pl.String,
    "lookup_first": pl.Boolean,
    "external_id": pl.String,
    "sync_token": pl.String,
    "display_name": pl.String,
}
_OBJECT_FIELDS = (("external_id", "Id"), ("sync_token", "SyncToken"), ("display_name", "DisplayName"))
_RETRYING = ("transport", "throttled")
# Every outcome but a refusal; a refusal (rejected, duplicate) starts a new generation.
_NOT_REFUSED = ("accepted", "ambiguous", *_RETRYING, "authorization")

# Each statement reads the chunk's frame. Attempt ids are drawn in the frame's order, so they follow the answers.
_INSERT_ATTEMPTS = """
    INSERT INTO sync_attempts
    SELECT nextval('sync_attempt_seq'), $run, $realm, o.entity, o.record_id, o.version, o.attempts + 1, o.generation,
           o.request_id, o.operation, $now, o.duration_ms, o.http_status, o.qbo_code, o.message, o.detail, o.element,
           o.intuit_tid, o.outcome, o.dimension, o.reason, o.external_id, o.sync_token
    FROM (SELECT * FROM _sync_outcomes ORDER BY ordinal) o"""
_SETTLE_INTENTS = """
    UPDATE sync_intents SET settled_at = $now, outcome = o.intent_outcome
    FROM _sync_outcomes o WHERE sync_intents.realm_id = $realm AND sync_intents.request_id = o.request_id"""
_SET_STATUS = """
    INSERT OR REPLACE INTO sync_status
    SELECT $realm, entity, record_id, version, new_generation, new_retry_count, new_attempts, next_retry_at, outcome,
           reason, $now
    FROM _sync_outcomes"""
_SET_STATES = """
    UPDATE records SET state = o.state FROM _sync_outcomes o
    WHERE records.realm_id = $realm AND records.entity = o.entity AND records.record_id = o.record_id
      AND records.current_version = o.version"""
_LINK = """
    INSERT OR REPLACE INTO external_refs
    SELECT $realm, entity, record_id, qbo_entity, external_id, sync_token, version, 'sync', $now, NULL
    FROM _sync_outcomes WHERE external_id <> '' AND outcome = 'accepted'"""
_MAP_PARTIES = """
    INSERT INTO mappings
    SELECT $realm, entity, record_id, qbo_entity, external_id, display_name, 'created_by_sync', 'mapped', 1.0,
           'marker', NULL, $now
    FROM _sync_outcomes
    WHERE external_id <> '' AND outcome = 'accepted' AND list_contains($parties, entity)
    ON CONFLICT (realm_id, kind, awra_value) DO UPDATE SET qbo_entity = excluded.qbo_entity,
      qbo_id = excluded.qbo_id, qbo_name = excluded.qbo_name, status = 'mapped', set_at = excluded.set_at
    WHERE mappings.source <> 'manual'"""
# (statement, the parameters it takes): DuckDB refuses a named parameter its statement does not use
_OUTCOME_WRITES = (
    (_INSERT_ATTEMPTS, ("run", "realm", "now")),
    (_SETTLE_INTENTS, ("realm", "now")),
    (_SET_STATUS, ("realm", "now")),
    (_SET_STATES, ("realm",)),
    (_LINK, ("realm", "now")),
    (_MAP_PARTIES, ("realm", "now", "parties")),
)


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def _answers_frame(recorded: Sequence[tuple[dict, QboResult, str]]) -> pl.DataFrame:
    """One row per (row, answer, operation): what each attempt row and its record's bookkeeping need."""
    rows = [r for r, _, _ in recorded]
    answers = [a for _, a, _ in recorded]
    objects = [a.object or {} for a in answers]
    columns = {
        "ordinal": list(range(len(recorded))),
        **{name: [r[name] for r in rows] for name in ("entity", "record_id", "version", "generation")},
        **{name: [r[name] for r in rows] for name in ("retry_count", "attempts", "request_id", "qbo_entity")},
        "operation": [op for _, _, op in recorded],
        "duration_ms": [round(a.duration * 1000, 1) for a in answers],
        "http_status": [a.status for a in answers],
        "qbo_code": [a.code for a in answers],
        "message": [a.message for a in answers],
        "detail": [a.detail for a in answers],
        "element": [a.element for a in answers],
        "intuit_tid": [a.intuit_tid for a in answers],
        "outcome": [a.outcome.outcome for a in answers],
        "dimension": [a.outcome.dimension for a in answers],
        "reason": [a.outcome.reason for a in answers],
        "lookup_first": [a.outcome.lookup_first for a in answers],
        # as text, as the VARCHAR columns would have cast them
        **{name: [_text(o.get(key)) for o in objects] for name, key in _OBJECT_FIELDS},
    }
    return pl.DataFrame(columns, schema=_OUTCOME_SCHEMA)


def _schedule(retry_count: int, schedule: Sequence[int], now: datetime, rng: random.Random) -> datetime | None:
    """Exponential backoff from configuration with +/-20% jitter; None once the schedule is used up."""
    if retry_count > len(schedule):
        return None
    return now + timedelta(seconds=schedule[retry_count - 1] * rng.uniform(0.8, 1.2))


def _classify(frame: pl.DataFrame, now: datetime, schedule: Sequence[int], rng: random.Random) -> pl.DataFrame:
    """What each answer means for its record: new state, generation, retry count, attempts, next retry, intent outcome.

    A transport failure counts a retry; a throttle waits without counting one. Either is scheduled by exponential
    backoff from configuration with +/-20% jitter, and once the schedule is used up the record needs a fix. A refusal
    (rejected, duplicate) moves to a new generation: the next try must not replay the rejected request id.
    """
    outcome = pl.col("outcome")
    frame = frame.with_columns(
        (pl.col("retry_count") + (outcome == "transport").cast(pl.Int64)).alias("new_retry_count"),
        (pl.col("generation") + (~outcome.is_in(_NOT_REFUSED)).cast(pl.Int64)).alias("new_generation"),
        (pl.col("attempts") + (outcome != "authorization").cast(pl.Int64)).alias("new_attempts"),
    )
    # The jitter is drawn in the answers' order, one draw per scheduled retry, so a seeded run repeats exactly.
    steps = frame.select(pl.when(outcome.is_in(_RETRYING)).then(pl.max_horizontal("new_retry_count", 1))).to_series()
    next_at = [None if step is None else _schedule(step, schedule, now, rng) for step in steps]
    frame = frame.with_columns(pl.Series("next_retry_at", next_at, dtype=pl.Datetime("us", "UTC")))
    return frame.with_columns(
        pl.when(outcome == "accepted")
        .then(pl.lit("synced"))
        # sent, outcome unknown: settled by looking it up, never by sending blindly
        .when(outcome == "ambiguous")
        .then(pl.lit("ambiguous"))
        .when(outcome.is_in(_RETRYING) & pl.col("next_retry_at").is_not_null())
        .then(pl.lit("retry_scheduled"))
        .when(outcome.is_in(_RETRYING))
        .then(pl.lit("needs_fix"))
        # nothing burned: it goes as soon as the realm is reconnected
        .when(outcome == "authorization")
        .then(pl.lit("ready"))
        # rejected or duplicate: nothing more is sent until the cause changes (a duplicate refused by QBO too: only
        # a person's link or rename moves it)
        .otherwise(pl.lit("needs_fix"))
        .alias("state"),
        # A write the client says may have been saved (lookup_first) is marked so: whenever the record is sent again
        # (its scheduled retry, a person's retry), it is looked up first.
        pl.when(pl.col("lookup_first")).then(pl.lit("ambiguous")).otherwise(outcome).alias("intent_outcome"),
    )


def _record_many(
    tx: Any,
    run_id: int,
    realm_id: str,
    recorded: Sequence[tuple[dict, QboResult, str]],
    now: datetime,
    schedule: Sequence[int],
    rng: random.Random,
) -> list[tuple[str, dict]]:
    """Store a chunk's attempts and what they mean for their records, in the caller's transaction, with one
    set-based statement per table (a statement per record per table cost more than the sends); returns the accepted
    objects, (QBO entity, object), for the caller to load into the QBO mirror.

    Every answer is kept as an attempt, its intent settled, its record's status and state set, and an accepted
    object linked (a vendor or customer also mapped) in the same transaction as its attempt.
    """
    if not recorded:
        return []
    frame = _classify(_answers_frame(recorded), now, schedule, rng)
    params = {"run": run_id, "realm": realm_id, "now": now, "parties": list(_PARTIES)}
    # A chunk that created no vendor or customer skips the mappings statement (a few ms each, even with no rows).
    parties = frame.select((pl.col("outcome") == "accepted") & pl.col("entity").is_in(_PARTIES)).to_series().any()
    writes = _OUTCOME_WRITES if parties else tuple(w for w in _OUTCOME_WRITES if w[0] is not _MAP_PARTIES)
    tx.register("_sync_outcomes", frame.to_arrow())
    try:
        for statement, names in writes:
            tx.execute(statement, {name: params[name] for name in names}).fetchall()
        # every answered record: its state, link or exceptions may have moved
        changes.log_selected(tx, "SELECT ? AS realm_id, entity, record_id FROM _sync_outcomes", [params["realm"]])
    finally:
        tx.unregister("_sync_outcomes")
    return [(row["qbo_entity"], a.object) for row, a, _ in recorded if a.outcome.outcome == "accepted" and a.object]


def _record(
    store: Store,
    run_id: int,
    realm_id: str,
    row: dict,
    result: QboResult,
    now: datetime,
    schedule: Sequence[int],
    rng: random.Random,
    operation: str,
) -> None:
    """Store one attempt (a settle's lookup or replay) in its own transaction, and load what QBO accepted."""
    with store.transaction() as tx:
        accepted = _record_many(tx, run_id, realm_id, [(row, result, operation)], now, schedule, rng)
    for qbo_entity, obj in accepted:
        load_objects(store, realm_id, qbo_entity, [obj], now)


# -- send ------------------------------------------------------------------------------------------------
_INTENT_SCHEMA: dict[str, Any] = {
    "entity": pl.String,
    "record_id": pl.String,
    "version": pl.Int64,
    "generation": pl.Int64,
    "request_id": pl.String,
    "qbo_entity": pl.String,
    "operation": pl.String,
    "payload": pl.String,
}
_OPEN_INTENTS = """
    INSERT INTO sync_intents
    SELECT $realm, entity, record_id, version, generation, request_id, qbo_entity, operation, payload, $run, $now,
           NULL::TIMESTAMPTZ, NULL::VARCHAR
    FROM _sync_intents
    ON CONFLICT (realm_id, request_id) DO UPDATE SET payload = excluded.payload, run_id = excluded.run_id,
      created_at = excluded.created_at, settled_at = NULL, outcome = NULL"""
_QUEUE_RECORDS = """
    UPDATE records SET state = 'queued' FROM _sync_intents i
    WHERE records.realm_id = $realm AND records.entity = i.entity AND records.record_id = i.record_id"""


def _write_intents(store: Store, realm_id: str, run_id: int, rows: list[dict], now: datetime) -> None:
    """The intent is durable before the request leaves: a crash after it is settled by lookup on restart.

    A retry after a transport failure resends the same request id, whose intent is already settled: it is opened
    again, or a crash after this point would leave the record `queued` with nothing to settle it. The chunk's intents
    go in one statement from a frame (a statement per record cost about as much as the send).
    """
    frame = pl.DataFrame({name: [r[name] for r in rows] for name in _INTENT_SCHEMA}, schema=_INTENT_SCHEMA)
    with store.transaction() as tx:
        tx.register("_sync_intents", frame.to_arrow())
        try:
            tx.execute(_OPEN_INTENTS, {"realm": realm_id, "run": run_id, "now": now}).fetchall()
            tx.execute(_QUEUE_RECORDS, {"realm": realm_id}).fetchall()
            changes.log_selected(tx, "SELECT ? AS realm_id, entity, record_id FROM _sync_intents", [realm_id])
        finally:
            tx.unregister("_sync_intents")


def _call(send: Callable[[], QboResult]) -> QboResult:
    try:
        return send()
    except QboCallError as err:
        return err.result


def _send_single(client: QboClient, row: dict) -> QboResult:
    body = _body(row["payload"])
    if row["operation"] != "update":
        allow = bool(row.get("allow_dup"))
        return _call(
            lambda: client.create(row["qbo_entity"], body, request_id=row["request_id"], allow_duplicate_docnum=allow)
        )
    result = _call(lambda: client.update(row["qbo_entity"], body, request_id=row["request_id"]))
    if result.outcome.reason != "provider_rejection.stale_object":
        return result
    # 5010: someone changed it in QBO since we last saw it. Re-read for the current SyncToken, try once more
    # (ref §11.4); a sparse update touches only our fields, so their edit stays.
    current = _call(lambda: client.read(row["qbo_entity"], body["Id"]))
    if not current.ok or not current.object:
        return result
    fresh = {**body, "SyncToken": current.object["SyncToken"]}
    return _call(lambda: client.update(row["qbo_entity"], fresh, request_id=row["request_id"] + "r"))


# A 5xx to a write: "resubmit once" (ref §3), but it may have been saved all the same, so the record is looked up
# first and sent again (same request id) only if it is not there. A fault that asks to wait a few minutes waits
# for its scheduled retry, which looks it up the same way (_look_up_first).
_RESUBMIT_ONCE = ("transport.server_error", "transport.service_unavailable", "transport.gateway_timeout")
_UNSETTLED = QboResult("lookup", None, ACCEPTED)  # marks a row whose lookup QBO did not answer: nothing is sent


def _resubmit_once(client: QboClient, row: dict, answer: QboResult) -> QboResult:
    if not answer.outcome.lookup_first or answer.outcome.reason not in _RESUBMIT_ONCE:
        return answer
    found = _look_up_first(client, row)
    if found is _UNSETTLED:
        return answer  # not settled: the record is looked up again before anything is sent
    return found if found is not None else _send_single(client, row)


def _look_up_first(client: QboClient, row: dict) -> QboResult | None:
    """The object a send that may have been saved created, adopted; None when QBO holds none; _UNSETTLED when QBO did
    not answer the lookup (the intent stays open, and the next run's settle looks again)."""
    try:
        found = _lookup(client, row)
    except QboCallError:
        return _UNSETTLED
    if found is None:
        return None
    return QboResult("lookup", row["qbo_entity"], ACCEPTED, data=found, request_id=row["request_id"])


def _send_batch(client: QboClient, rows: list[dict]) -> list[QboResult]:
    items = [
        BatchItem(
            bid=f"b{i}",
            operation=r["operation"],
            entity=r["qbo_entity"],
            body=_body(r["payload"]),
            options_data="allowduplicatedocnum" if r.get("allow_dup") else None,
        )
        for i, r in enumerate(rows)
    ]
    # The batch's request id is derived from its members' ids, so the same batch resent replays.
    batch_id = "sb-" + hashlib.sha256("|".join(r["request_id"] for r in rows).encode()).hexdigest()[:32]
    results = client.batch(items, request_id=batch_id)
    return [results[f"b{i}"] for i in range(len(rows))]


def _sendable(store: Store, realm_id: str, due: pl.DataFrame) -> tuple[list[dict], int]:
    payloads = build_payloads(store, realm_id, list(zip(due["entity"], due["record_id"], strict=True)))
    joined = due.join(payloads.drop("version"), on=["entity", "record_id"])
    held = joined.filter(pl.col("problem").is_not_null()).height
    # A person confirmed "create new" for this version: QBO's duplicate DocNumber check must not refuse it (ref §10).
    decided = store.frame(
        "SELECT entity, record_id, version, TRUE AS allow_dup FROM duplicate_decisions "
        "WHERE realm_id = ? AND decision = 'create_new'",
        [realm_id],
    )
    joined = joined.join(decided, on=["entity", "record_id", "version"], how="left")
    rows = joined.filter(pl.col("problem").is_null()).to_dicts()
    for r in rows:
        r["request_id"] = request_id_for(realm_id, r["entity"], r["record_id"], r["version"], r["generation"])
    return rows, held


def _connected(store: Store, realm_id: str) -> bool:
    status = store.scalar("SELECT status FROM qbo_connections WHERE realm_id = ?", [realm_id])
    return status == "connected"


def sync_run(
    store: Store,
    client: QboClient,
    *,
    now: datetime,
    trigger: str = "manual",
    actor: str | None = None,
    only: Sequence[tuple[str, str]] | None = None,
    schedule: Sequence[int] = (60, 300, 1800, 7200, 21600),
    batch: bool = True,
    seed: int | None = None,
    progress: Progress | None = None,
) -> SyncResult:
    """Send every due record once, in dependency order; one run per realm at a time."""
    realm_id = client.realm_id
    clock = time.perf_counter()
    say = progress or (lambda _f, _l: None)
    rng = random.Random(seed)
    with realm_lock(realm_id, store=store):
        run_id = int(store.scalar("SELECT nextval('sync_run_seq')"))
        store.execute(
            "INSERT INTO sync_runs (run_id, realm_id, trigger, actor, started_at, status) VALUES (?, ?, ?, ?, ?, ?)",
            [run_id, realm_id, trigger, actor, now, "running"],
        )
        result = SyncResult(run_id)
        try:
            result.linked = settle_open_intents(store, client, now=now, run_id=run_id, schedule=schedule, rng=rng)
            due = _due(store, realm_id, now, only)
            result.planned = due.height
            for tier_no, _tier in enumerate(TIERS):
                if not _connected(store, realm_id):
                    result.status = "paused"  # authorization: stop at once, burn no attempts
                    break
                tier_due = due.filter(pl.col("tier") == tier_no)
                if tier_due.is_empty():
                    continue
                say(tier_no / len(TIERS), f"tier {tier_no + 1} of {len(TIERS)}: {tier_due.height:,} records")
                # Bodies are built a slice at a time, so memory holds one slice's bodies, not a tier's; the records
                # of one tier do not depend on each other, so slicing keeps the dependency order.
                for part in tier_due.iter_slices(PLAN_SLICE):
                    if result.status == "paused":
                        break
                    rows, held = _sendable(store, realm_id, part)
                    result.held += held
                    _send_rows(store, client, realm_id, run_id, rows, now, schedule, rng, batch, result)
        except Exception as err:
            result.status, result.error = "failed", f"{type(err).__name__}: {err}"
            raise
        finally:
            result.seconds = time.perf_counter() - clock
            _finish_run(store, result, now + timedelta(seconds=result.seconds))
    say(1.0, "done")
    return result


def _send_rows(
    store: Store,
    client: QboClient,
    realm_id: str,
    run_id: int,
    rows: list[dict],
    now: datetime,
    schedule: Sequence[int],
    rng: random.Random,
    batch: bool,
    result: SyncResult,
) -> None:
    # The links are stored with each attempt; the mirror only caches the objects until the next pull, so the accepted
    # objects are loaded MIRROR_FLUSH at a time (a load per chunk joined the mirror once per 30 records; holding a
    # whole slice cost a quarter GB more peak memory). The rest are loaded before the next slice's bodies are built,
    # so those see the mirror as before.
    mirror: list[tuple[str, dict]] = []
    for start in range(0, len(rows), _BATCH):
        chunk = rows[start : start + _BATCH]
        if not _connected(store, realm_id):
            result.status = "paused"
            break
        _write_intents(store, realm_id, run_id, chunk, now)
        crash_point("sync.after_intent")
        # A record whose last send may have been saved is looked up before it is sent again.
        answers = [_look_up_first(client, r) if r.get("lookup_first") else None for r in chunk]
        # Creates share a batch (its id derived from theirs); updates go alone, so a 5010 can be re-read.
        creates = [i for i, r in enumerate(chunk) if r["operation"] == "create" and answers[i] is None]
        if batch and len(creates) > 1:
            for i, sent in zip(creates, _send_batch(client, [chunk[i] for i in creates]), strict=True):
                answers[i] = sent
        for i, row in enumerate(chunk):
            answer = answers[i]
            if answer is None:
                answer = _resubmit_once(client, row, _send_single(client, row))
            elif answer.operation != "lookup":  # a batch member's answer
                answer = _resubmit_once(client, row, answer)
            answers[i] = answer
        crash_point("sync.after_send")
        recorded = []
        for row, answer in zip(chunk, answers, strict=True):
            assert answer is not None
            if answer is _UNSETTLED:
                continue  # its intent stays open: the next run's settle looks it up
            recorded.append((row, answer, "lookup" if answer.operation == "lookup" else row["operation"]))
        # One commit per chunk, not per record: a crash before it leaves the chunk's intents open, and the next run
        # settles them by lookup, exactly as after a crash between two records.
        with store.transaction() as tx:
            mirror += _record_many(tx, run_id, realm_id, recorded, now, schedule, rng)
        for _row, answer, _op in recorded:
            key = answer.outcome.outcome
            result.counts[key] = result.counts.get(key, 0) + 1
        if len(mirror) >= MIRROR_FLUSH:
            _load_mirror(store, realm_id, mirror, now)
    _load_mirror(store, realm_id, mirror, now)


def _load_mirror(store: Store, realm_id: str, mirror: list[tuple[str, dict]], now: datetime) -> None:
    """Load the accepted objects held so far into the QBO mirror, one load per QBO entity, and let them go."""
    with store.transaction():
        for qbo_entity in dict.fromkeys(e for e, _ in mirror):
            load_objects(store, realm_id, qbo_entity, [o for e, o in mirror if e == qbo_entity], now)
    mirror.clear()


def _finish_run(store: Store, result: SyncResult, finished_at: datetime) -> None:
    c = result.counts
    store.execute(
        """UPDATE sync_runs SET finished_at = ?, status = ?, planned = ?, sent = ?, accepted = ?, rejected = ?,
             duplicate = ?, "authorization" = ?, throttled = ?, transport = ?, ambiguous = ?, held = ?, linked = ?,
             seconds = ?, error = ? WHERE run_id = ?""",
        [
            finished_at,
            result.status,
            result.planned,
            sum(c.values()),
            c.get("accepted", 0),
            c.get("rejected", 0),
            c.get("duplicate", 0),
            c.get("authorization", 0),
            c.get("throttled", 0),
            c.get("transport", 0),
            c.get("ambiguous", 0),
            result.held,
            result.linked,
            result.seconds,
            result.error,
            result.run_id,
        ],
    )


# -- settle: intents with no outcome, and ambiguous attempts -----------------------------------------------
def _marker_prefix(entity: str, record_id: str) -> str:
    return f"awra:{entity}:{record_id}:v"


def _lookup(client: QboClient, row: dict) -> dict | None:
    """Find the object this intent may have created, by its source marker (never by guessing).

    None only when QBO answered and holds no such object; a lookup QBO did not answer raises QboCallError.
    """
    body = _body(row["payload"])
    entity = row["qbo_entity"]
    if entity in ("Vendor", "Customer"):
        query = select(entity).where("DisplayName", "=", body.get("DisplayName", "")).include_inactive()
        note_key = "Notes"
    elif body.get("DocNumber"):
        query = select(entity).where("DocNumber", "=", body["DocNumber"])
        note_key = "PrivateNote"
    else:
        query = select(entity).where("TxnDate", "=", body.get("TxnDate", ""))
        note_key = "PrivateNote"
    marker = f"{_marker_prefix(row['entity'], row['record_id'])}{row['version']}"
    found = client.query(query)
    return next((o for o in found if str(o.get(note_key, "")).strip().endswith(marker)), None)


def settle_open_intents(
    store: Store, client: QboClient, *, now: datetime, run_id: int, schedule: Sequence[int], rng: random.Random
) -> int:
    """Intents sent but never settled (a crash) and ambiguous attempts: adopt what QBO has, else replay."""
    realm_id = client.realm_id
    open_rows = store.frame(
        """SELECT i.entity, i.record_id, i.version, i.generation, i.request_id, i.qbo_entity, i.operation, i.payload,
                  coalesce(s.retry_count, 0) AS retry_count, coalesce(s.attempts, 0) AS attempts
           FROM sync_intents i
           JOIN records r ON r.realm_id = i.realm_id AND r.entity = i.entity AND r.record_id = i.record_id
           LEFT JOIN sync_status s ON s.realm_id = i.realm_id AND s.entity = i.entity AND s.record_id = i.record_id
           WHERE i.realm_id = $realm AND (i.settled_at IS NULL OR (i.outcome = 'ambiguous' AND r.state = 'ambiguous'))
           ORDER BY i.created_at""",
        {"realm": realm_id},
    ).to_dicts()
    linked = 0
    for row in open_rows:
        if not _connected(store, realm_id):
            break
        try:
            found = _lookup(client, row)
        except QboCallError:
            # No answer is not "not there": a resend now could create it twice (a batch member's own request id
            # was never sent, so QBO has nothing to replay). The intent stays open and the next run looks again.
            continue
        if found is not None:
            adopted = QboResult("lookup", row["qbo_entity"], ACCEPTED, data=found, request_id=row["request_id"])
            _record(store, run_id, realm_id, row, adopted, now, schedule, rng, "lookup")
            linked += 1
            continue
        # Not in QBO: resend with the same request id; if it did land after all, QBO replays the original.
        _record(store, run_id, realm_id, row, _send_single(client, row), now, schedule, rng, "replay")
    return linked


# -- targeted retry --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RetryAnswer:
    """Per record: sent (and what happened) or refused (and why)."""

    key: str
    sent: bool
    message: str
    state: str


# A name QuickBooks refused as taken (6240) may be held by any vendor, customer or employee; a document number
# (6140) by another document of the same kind.
_NAME_HOLDERS = ("Vendor", "Customer", "Employee")


def _changed_since_attempt(store: Store, realm_id: str, entity: str, record_id: str) -> str | None:
    """What changed after the record's last attempt that could cure a refusal: a mapping it uses, a QuickBooks object
    one of its mappings points to, or (after a name or number conflict) an object that could hold that name or number.
    """
    from pipelines.duplicates import QBO_ENTITY, party_of_sql
    from pipelines.mappings import all_mapping_usage_sql

    params = {"realm": realm_id, "entity": entity, "id": record_id}
    # Its lines' and accounts' mappings, and its own vendor's or customer's (a party made inactive is cured there).
    mapped = f"""SELECT m.kind, m.awra_value, m.qbo_entity, m.qbo_id, m.set_at FROM ({all_mapping_usage_sql()}) u
                 JOIN mappings m ON m.realm_id = u.realm_id AND m.kind = u.kind AND m.awra_value = u.value
                 WHERE u.realm_id = $realm AND u.entity = $entity AND u.record_id = $id
                 UNION SELECT m.kind, m.awra_value, m.qbo_entity, m.qbo_id, m.set_at FROM ({party_of_sql()}) p
                 JOIN mappings m ON m.realm_id = $realm AND m.kind = p.kind AND m.awra_value = p.value"""
    last = (
        "SELECT last_attempt_at, last_reason FROM sync_status WHERE realm_id = $realm AND entity = $entity "
        "AND record_id = $id"
    )
    row = store.rows(
        f"""SELECT m.kind, m.awra_value FROM ({mapped}) m, ({last}) s WHERE m.set_at > s.last_attempt_at LIMIT 1""",
        params,
    )
    if row:
        return f"the {row[0][0].replace('_', ' ')} mapping of {row[0][1]} changed"
    holders = list(_NAME_HOLDERS) if entity in ("vendor", "customer") else [QBO_ENTITY.get(entity, "")]
    row = store.rows(
        f"""SELECT o.entity, o.qbo_id, o.name FROM qbo_objects o, ({last}) s
            WHERE o.realm_id = $realm AND o.changed_at > s.last_attempt_at
              AND ((o.entity, o.qbo_id) IN (SELECT qbo_entity, qbo_id FROM ({mapped}))
                   OR (s.last_reason LIKE 'duplicate_risk.%' AND list_contains($holders, o.entity)))
            ORDER BY o.changed_at LIMIT 1""",
        {**params, "holders": holders},
    )
    if row:
        qbo_entity, qbo_id, name = row[0]
        return f"QuickBooks {qbo_entity.lower()} {name or ''} (Id {qbo_id}) changed".replace("  ", " ")
    return None


def _held_reason(store: Store, realm_id: str, entity: str, record_id: str) -> str:
    if not _connected(store, realm_id):
        return "QuickBooks is not connected (an admin reconnects on the Connection page); nothing was sent"
    problem = build_payloads(store, realm_id, [(entity, record_id)])["problem"].to_list()
    return problem[0] if problem and problem[0] else "nothing was due (another run may have sent it)"


def retry_gate(
    store: Store, realm_id: str, keys: Sequence[RecordKey], *, override: bool
) -> tuple[dict[RecordKey, RetryAnswer], list[RecordKey]]:
    """After a fresh check: the records that may go again, and for the others why not (with `override`, a person
    sends a refused record although nothing changed; a finding that still blocks it is never overridden)."""
    answers: dict[RecordKey, RetryAnswer] = {}
    allowed: list[RecordKey] = []
    for key in dict.fromkeys(keys):
        entity, record_id = key
        found = store.rows(
            "SELECT state, current_version FROM records WHERE realm_id = ? AND entity = ? AND record_id = ? "
            "AND removed_at IS NULL",
            [realm_id, entity, record_id],
        )
        if not found:
            answers[key] = RetryAnswer(str(key), False, "no such record in AWRA", "unknown")
            continue
        state = found[0][0]
        detail = store.scalar(
            "SELECT detail FROM findings WHERE run_id = (SELECT max(run_id) FROM check_runs WHERE realm_id = ?) "
            "AND entity = ? AND record_id = ? ORDER BY dimension, reason LIMIT 1",
            [realm_id, entity, record_id],
        )
        if state == "synced":
            answers[key] = RetryAnswer(str(key), False, "already in QuickBooks: nothing to retry", state)
        elif state == "excluded":
            answers[key] = RetryAnswer(str(key), False, "excluded from sync by a person: nothing to retry", state)
        elif detail is not None:
            answers[key] = RetryAnswer(str(key), False, f"still {detail}", state)
        elif (
            state in ("needs_fix", "blocked")
            and not override
            and not _changed_since_attempt(store, realm_id, entity, record_id)
        ):
            last = store.rows(
                "SELECT message FROM sync_attempts WHERE realm_id = ? AND entity = ? AND record_id = ? "
                "ORDER BY attempt_id DESC LIMIT 1",
                [realm_id, entity, record_id],
            )
            why = f" ({last[0][0]})" if last and last[0][0] else ""
            answers[key] = RetryAnswer(
                str(key), False, f"QuickBooks refused it{why} and nothing has changed since; fix the cause first", state
            )
        else:
            allowed.append(key)
    return answers, allowed


def requeue(cur: duckdb.DuckDBPyConnection, realm_id: str, keys: Sequence[RecordKey]) -> None:
    """Make these records due now (a person asked for them to go again)."""
    cur.executemany(
        "UPDATE records SET state = 'ready' WHERE realm_id = ? AND entity = ? AND record_id = ? "
        "AND state IN ('needs_fix', 'blocked', 'retry_scheduled', 'ambiguous', 'ready')",
        [[realm_id, k.entity, k.record_id] for k in keys],
    )
    changes.log_keys(cur, realm_id, [(k.entity, k.record_id) for k in keys])


def retry_answers(store: Store, realm_id: str, run_id: int, keys: Sequence[RecordKey]) -> dict[RecordKey, RetryAnswer]:
    """What the retry run did with each record it was allowed to send."""
    answers = {}
    for key in keys:
        entity, record_id = key
        state = store.scalar(
            "SELECT state FROM records WHERE realm_id = ? AND entity = ? AND record_id = ?",
            [realm_id, entity, record_id],
        )
        ref = store.scalar(
            "SELECT qbo_id FROM external_refs WHERE realm_id = ? AND entity = ? AND record_id = ?",
            [realm_id, entity, record_id],
        )
        sent = store.scalar(
            "SELECT count(*) FROM sync_attempts WHERE run_id = ? AND entity = ? AND record_id = ?",
            [run_id, entity, record_id],
        )
        if not sent:
            answers[key] = RetryAnswer(str(key), False, f"not sent: {_held_reason(store, realm_id, entity, record_id)}",
                                       state)  # fmt: skip
            continue
        message = f"sent: in QuickBooks as Id {ref}" if state == "synced" else f"sent: now {state}"
        answers[key] = RetryAnswer(str(key), True, message, state)
    return answers
