"""The one way in for every write: the CLI, the pages, the server and the scheduler call these and nothing below.

Each command takes the caller (who, for which company, on which clock), checks the role once, holds the company's
lock, audits what a person did in the same transaction as the change, refreshes the exception queue once, and
returns a Result: done, refused (with the reason, and whether the input itself was wrong) or failed (with one line
and, for anything unexpected, an incident id whose trace is in the log). A bulk command answers per item and keeps
what finished before an item failed.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from pipelines import audit
from pipelines.audit import Change
from pipelines.clock import Clock, system_clock
from pipelines.config import Settings
from pipelines.connection import connect as run_connect
from pipelines.connection import qbo_client
from pipelines.connection_health import check_reconnect
from pipelines.cycle import run_cycle
from pipelines.duplicates import QBO_ENTITY, confirm_create_new, link_duplicate
from pipelines.exceptions import (
    RESOLUTION_CODES,
    check_resolvable,
    describe,
    escalate,
    get_exception,
    open_exceptions_of,
    reason_text,
    refresh_exceptions,
)
from pipelines.exceptions import assign as assign_exception
from pipelines.exceptions import exclude as exclude_record
from pipelines.exceptions import mark_synced as mark_record_synced
from pipelines.exceptions import resolve as resolve_exception
from pipelines.identity import SYSTEM, Identity, PermissionDeniedError, load_roles, require
from pipelines.incidents import record_incident
from pipelines.ingest import SnapshotError, ingest_snapshot
from pipelines.keys import RecordKey
from pipelines.locks import RealmBusyError, realm_lock
from pipelines.mappings import now_ready, set_mapping, suggested_target, waiting_on
from pipelines.pull import PULLED_ENTITIES, load_objects, pull, pull_entities
from pipelines.readiness import run_check
from pipelines.routing import load_routing
from pipelines.store import Store, StoreError
from pipelines.sync import requeue, retry_answers, retry_gate, sync_run
from qbo.client import QboCallError, QboClient
from qbo.oauth import OAuthClient, OAuthError
from qbo.tokens import TokenStore

__all__ = [
    "COMMANDS",
    "POSITIONAL",
    "Caller",
    "Commands",
    "ItemResult",
    "Result",
]

Progress = Callable[[float, str], None]
ClientFactory = Callable[[str, Clock], AbstractContextManager[QboClient]]
DONE, REFUSED, FAILED = "done", "refused", "failed"
# Incremental checks between, a full one at least this often: the safety net under the change tracking.
FULL_CHECK_EVERY = timedelta(hours=24)


@dataclass(frozen=True)
class Caller:
    """Who acts, for which company, and the clock their `now` comes from."""

    identity: Identity
    realm_id: str
    clock: Clock = system_clock

    @classmethod
    def system(cls, realm_id: str, clock: Clock = system_clock) -> Caller:
        return cls(SYSTEM, realm_id, clock)


@dataclass
class ItemResult:
    """One item of a bulk command: done, refused (and why) or failed (and its incident)."""

    item: str
    status: str
    message: str
    incident: str | None = None
    data: dict[str, Any] = field(default_factory=dict)
    bad_input: bool = False

    @property
    def done(self) -> bool:
        return self.status == DONE


@dataclass
class Result:
    """What a command did, as one line for a person and the details for a program."""

    command: str
    status: str
    message: str
    data: dict[str, Any] = field(default_factory=dict)
    items: list[ItemResult] = field(default_factory=list)
    incident: str | None = None
    bad_input: bool = False

    @property
    def ok(self) -> bool:
        return self.status == DONE

    def to_json(self) -> dict[str, Any]:
        return json.loads(json.dumps(asdict(self), default=str))

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Result:
        items = [ItemResult(**i) for i in data.get("items") or []]
        return cls(**{**data, "items": items})


class _Refused(Exception):
    """Refuse from inside a command; `bad_input` when the input itself is wrong (the CLI's exit 2)."""

    def __init__(self, message: str, bad_input: bool = False) -> None:
        super().__init__(message)
        self.bad_input = bad_input


def _classify(err: BaseException, where: str, api_base: str) -> tuple[str, str, str | None, bool]:
    """(status, message, incident, bad_input) for an error that stopped a command or an item."""
    if isinstance(err, _Refused):
        return REFUSED, str(err), None, err.bad_input
    if isinstance(err, PermissionDeniedError):
        return REFUSED, str(err), None, False
    if isinstance(err, RealmBusyError):
        return REFUSED, str(err), None, False
    if isinstance(err, SnapshotError):
        return REFUSED, f"snapshot refused, nothing applied: {err}", None, True
    if isinstance(err, (ValueError, LookupError)):
        return REFUSED, str(err).strip("'\""), None, True
    if isinstance(err, (OAuthError, QboCallError)):
        return FAILED, str(err), None, False
    if isinstance(err, httpx.TransportError):
        return FAILED, f"cannot reach QuickBooks at {api_base} ({type(err).__name__}); try again shortly", None, False
    if isinstance(err, StoreError):
        return FAILED, str(err), None, False
    incident = record_incident(err, where)
    return FAILED, str(incident), incident.incident_id, False


def _exception_label(exception_id: Any) -> str:
    return f"#{exception_id}"


def _summary(items: list[ItemResult], noun: str) -> tuple[str, str]:
    counts = {s: sum(1 for i in items if i.status == s) for s in (DONE, REFUSED, FAILED)}
    status = FAILED if counts[FAILED] else REFUSED if counts[REFUSED] else DONE
    parts = [f"{counts[DONE]:,} of {len(items):,} {noun}"]
    parts += [f"{counts[s]:,} {s}" for s in (REFUSED, FAILED) if counts[s]]
    return status, "; ".join(parts)


class Commands:
    """The commands over one store; `client_factory(realm, clock)` opens a QuickBooks client for a realm."""

    def __init__(
        self,
        store: Store,
        settings: Settings,
        *,
        client_factory: ClientFactory | None = None,
        lock_wait: float | None = None,
    ) -> None:
        self.store = store
        self.settings = settings
        self._client_factory = client_factory or (lambda realm, clock: qbo_client(settings, store, realm, clock=clock))
        self.lock_wait = lock_wait  # None: wait for the company's lock; a number: refuse as busy after it

    # -- the frame every command runs in ---------------------------------------------------------------
    def _run(self, command: str, caller: Caller, body: Callable[[datetime], Result]) -> Result:
        try:
            with realm_lock(caller.realm_id, wait=self.lock_wait):
                return body(caller.clock())
        except Exception as err:
            status, message, incident, bad = _classify(err, command, self.settings.api_base_url)
            return Result(command, status, message, incident=incident, bad_input=bad)

    def _each(
        self,
        command: str,
        caller: Caller,
        items: Sequence[Any],
        one: Callable[[Any, datetime], ItemResult],
        label: Callable[[Any], str] = str,
    ) -> list[ItemResult]:
        results = []
        for item in items:
            try:
                results.append(one(item, caller.clock()))
            except Exception as err:
                status, message, incident, bad = _classify(
                    err, f"{command} of {label(item)}", self.settings.api_base_url
                )
                results.append(ItemResult(label(item), status, message, incident, bad_input=bad))
        return results

    def _audit(self, cur: Any, caller: Caller, now: datetime, changes: Sequence[Change]) -> None:
        who = caller.identity
        audit.append(
            cur,
            [
                audit.Entry(caller.realm_id, now, who.email, who.role, c.action, c.target, c.reason, c.before, c.after)
                for c in changes
            ],
        )

    @contextmanager
    def _client(self, caller: Caller) -> Iterator[QboClient]:
        with self._client_factory(caller.realm_id, caller.clock) as client:
            yield client

    def _refresh(self, caller: Caller, now: datetime) -> dict[str, int]:
        routing = load_routing(self.settings.routing_file)
        return refresh_exceptions(self.store, caller.realm_id, now=now, routing=routing)

    def _connected(self, realm_id: str) -> bool:
        status = self.store.scalar("SELECT status FROM qbo_connections WHERE realm_id = ?", [realm_id])
        return status == "connected"

    # -- loading and reading QuickBooks -------------------------------------------------------------------
    def ingest(
        self,
        caller: Caller,
        folder: str | Path,
        *,
        allow_removal: str | None = None,
        progress: Progress | None = None,
    ) -> Result:
        """Validate a snapshot folder and apply it whole, or refuse it whole; the history keeps who asked.

        A snapshot that would remove much of a table is refused unless an admin gives the reason (`allow_removal`);
        the scheduler never gives one, so it never applies such a snapshot on its own.
        """

        def body(now: datetime) -> Result:
            require(caller.identity, "ingest")
            if allow_removal is not None:
                require(caller.identity, "allow_removal")
            path = Path(folder)
            # A refused snapshot changes nothing but the ingest history, which keeps who tried (no audit row).
            done = ingest_snapshot(
                self.store,
                path,
                realm_id=caller.realm_id,
                now=now,
                progress=progress,
                allow_removal=allow_removal,
                actor=caller.identity.email,
                actor_role=caller.identity.role,
            )
            data = {
                "run_id": done.run_id, "status": done.status, "new": done.new, "changed": done.changed,
                "removed": done.removed, "restored": done.restored, "rows": done.rows,
                "seconds": round(done.seconds, 3), "kind": done.kind, "snapshot_id": done.snapshot_id,
            }  # fmt: skip
            self._audit_person(caller, now, Change("ingest", f"snapshot:{path}", None, None, data))
            which = f"{done.kind} snapshot {done.snapshot_id!r}" if done.snapshot_id else "snapshot"
            text = (
                f"{done.status}: {done.note} (run {done.run_id})"
                if done.note
                else f"{done.status}: {done.new:,} new, {done.changed:,} changed, {done.removed:,} removed, "
                f"{done.restored:,} restored records from {sum(done.rows.values()):,} rows of the {which} "
                f"in {done.seconds:.1f}s (run {done.run_id})"
            )
            return Result("ingest", DONE, text, data)

        return self._run("ingest", caller, body)

    def _audit_person(self, caller: Caller, now: datetime, change: Change) -> None:
        """What a person did is audited; the scheduler's own steps are kept in their run histories instead."""
        if caller.identity.role == SYSTEM.role:
            return
        with self.store.transaction() as tx:
            self._audit(tx, caller, now, [change])

    def connect(self, caller: Caller, *, http: httpx.Client | None = None) -> Result:
        """OAuth: against the local sandbox the whole round trip; against QuickBooks the URL an admin opens."""

        def body(now: datetime) -> Result:
            require(caller.identity, "connect")
            done = run_connect(self.settings, self.store, actor=caller.identity.email, http=http, clock=caller.clock)
            if done.status is None:
                message = (
                    "open this URL as a QuickBooks admin to connect; the app's /oauth/callback finishes it:\n"
                    f"{done.authorize_url}"
                )
                return Result("connect", DONE, message, {"authorize_url": done.authorize_url})
            status = done.status.to_dict()
            target = f"connection:{status.get('realm_id')}"
            self._audit_person(caller, now, Change("connect", target, "OAuth connect", None, {"status": "connected"}))
            return Result(
                "connect", DONE, f"connected to QuickBooks company {status.get('realm_id')}", {"connection": status}
            )

        return self._run("connect", caller, body)

    def finish_connect(self, caller: Caller, code: str, realm_id: str, *, http: httpx.Client) -> Result:
        """The OAuth callback: exchange the code for tokens (stored encrypted) for the admin who started it."""

        def body(now: datetime) -> Result:
            require(caller.identity, "connect")
            oauth = OAuthClient(self.settings, TokenStore(self.store, self.settings), http=http, clock=caller.clock)
            oauth.exchange_code(code, realm_id, connected_by=caller.identity.email)
            realm_caller = Caller(caller.identity, realm_id, caller.clock)
            self._audit_person(realm_caller, now, Change("connect", f"connection:{realm_id}", "OAuth connect"))
            return Result("connect", DONE, f"connected to QuickBooks company {realm_id}", {"realm_id": realm_id})

        return self._run("connect", caller, body)

    def pull(self, caller: Caller, *, full: bool = False, progress: Progress | None = None) -> Result:
        """QuickBooks reference data and transactions into the mirror: everything first, then changes only."""

        def body(now: datetime) -> Result:
            require(caller.identity, "pull")
            with self._client(caller) as client:
                done = pull(self.store, client, now=now, full=full, progress=progress)
            data = {
                "pull_id": done.pull_id, "kind": done.kind, "objects": done.objects, "deleted": done.deleted,
                "inactive": done.inactive, "by_entity": done.by_entity,
            }  # fmt: skip
            self._audit_person(caller, now, Change("pull", f"company:{caller.realm_id}", None, None, data))
            text = (
                f"{done.kind} pull {done.pull_id}: {done.objects:,} objects ({done.deleted:,} deleted); "
                f"{done.inactive:,} inactive objects in QuickBooks"
            )
            return Result("pull", DONE, text, data)

        return self._run("pull", caller, body)

    def pull_named(self, caller: Caller, refs: dict[str, list[str]]) -> Result:
        """Re-read exactly the objects a webhook named (the scheduler, after a signed delivery)."""

        def body(now: datetime) -> Result:
            require(caller.identity, "pull")
            wanted = {e: ids for e, ids in refs.items() if e in PULLED_ENTITIES}
            pull_id = None
            if wanted:
                with self._client(caller) as client:
                    pull_id = pull_entities(self.store, client, wanted, now=now).pull_id
            data = {"pull_id": pull_id, "read": wanted, "ignored": sorted(set(refs) - set(wanted))}
            return Result("pull_named", DONE, f"re-read {sum(map(len, wanted.values())):,} named objects", data)

        return self._run("pull_named", caller, body)

    # -- checking and sending ---------------------------------------------------------------------------
    def check(self, caller: Caller, *, full: bool = False) -> Result:
        """Readiness, mapping gaps and duplicate risk for the records whose inputs changed (every record with
        `full`); the queue follows once."""

        def body(now: datetime) -> Result:
            require(caller.identity, "check")
            done = run_check(
                self.store, caller.realm_id, now=now, trigger="check", actor=caller.identity.email, full=full
            )
            queue = self._refresh(caller, now)
            data = {
                "run_id": done.run_id, "records": done.records, "ready": done.ready, "findings": done.findings,
                "by_state": done.by_state, "by_reason": done.by_reason, "exceptions": queue, "kind": done.kind,
                "checked": done.checked,
            }  # fmt: skip
            self._audit_person(caller, now, Change("check", f"company:{caller.realm_id}", None, None,
                                                   {"run_id": done.run_id, "ready": done.ready}))  # fmt: skip
            text = (
                f"{done.kind} check {done.run_id}: {done.checked:,} of {done.records:,} records re-checked, "
                f"{done.ready:,} ready, {done.findings:,} findings in {done.seconds:.1f}s"
            )
            return Result("check", DONE, text, data)

        return self._run("check", caller, body)

    def sync(self, caller: Caller, *, only: Sequence[str] | None = None, progress: Progress | None = None) -> Result:
        """Check, then send every ready record (or only these keys) in dependency order, then the queue."""

        def body(now: datetime) -> Result:
            require(caller.identity, "sync")
            keys = [RecordKey.parse(k) for k in only] if only else None
            with self._client(caller) as client:
                done = run_cycle(
                    self.store, client, self.settings, now=now, trigger="manual" if caller.identity != SYSTEM
                    else "schedule", actor=caller.identity.email, only=keys, progress=progress,
                )  # fmt: skip
            s = done.sync
            data = {
                "run_id": s.run_id, "status": s.status, "planned": s.planned, "outcomes": s.counts, "held": s.held,
                "settled_by_lookup": s.linked, "check_run_id": done.check.run_id, "exceptions": done.exceptions,
            }  # fmt: skip
            self._audit_person(caller, now, Change("sync", f"company:{caller.realm_id}", None, None, data))
            counts = ", ".join(f"{k} {v:,}" for k, v in sorted(s.counts.items())) or "nothing sent"
            text = (
                f"sync run {s.run_id} {s.status}: {s.planned:,} due, {counts}; {s.linked:,} settled by lookup, "
                f"{s.held:,} held (waiting on a party or document) in {s.seconds:.1f}s"
            )
            return Result("sync", DONE if s.status in ("done", "paused") else FAILED, text, data)

        return self._run("sync", caller, body)

    def cycle(self, caller: Caller, *, reconnect_warn_days: int | None = None) -> Result:
        """The scheduler's cycle for one company: connection warnings, check, sync if connected, the queue once."""

        def body(now: datetime) -> Result:
            require(caller.identity, "cycle")
            warn = {} if reconnect_warn_days is None else {"warn_days": reconnect_warn_days}
            full = self._full_check_due(caller.realm_id, now)
            warnings = [w["reason"] for w in check_reconnect(self.store, caller.realm_id, now=now, **warn)]
            data: dict[str, Any] = {"warnings": warnings}
            if self._connected(caller.realm_id):
                with self._client(caller) as client:
                    check = run_check(
                        self.store, caller.realm_id, now=now, trigger="schedule", actor="system", full=full
                    )
                    sent = sync_run(self.store, client, now=now, trigger="schedule", actor="system",
                                    schedule=self.settings.retry_schedule)  # fmt: skip
                data.update(check_run=check.run_id, ready=check.ready, sync_run=sent.run_id, sync=sent.status,
                            sent=sent.counts)  # fmt: skip
            else:
                # Nothing can be read or sent; readiness still runs so the pages and exceptions stay current.
                check = run_check(self.store, caller.realm_id, now=now, trigger="schedule", actor="system", full=full)
                data.update(check_run=check.run_id, ready=check.ready, sync="not connected")
            data["exceptions"] = self._refresh(caller, now)
            return Result("cycle", DONE, f"cycle: check {check.run_id}, {check.ready:,} ready", data)

        return self._run("cycle", caller, body)

    def _full_check_due(self, realm_id: str, now: datetime) -> bool:
        """The scheduler's safety net: a full check when none ran in the last FULL_CHECK_EVERY."""
        last = self.store.scalar(
            "SELECT max(started_at) FROM check_runs WHERE realm_id = ? AND kind = 'full'", [realm_id]
        )
        return last is None or now - last >= FULL_CHECK_EVERY

    def escalate(self, caller: Caller) -> Result:
        """Escalate what passed its due-by or ran out of automatic retries (the scheduler, between cycles)."""

        def body(now: datetime) -> Result:
            require(caller.identity, "cycle")
            count = escalate(self.store, caller.realm_id, now=now)
            return Result("escalate", DONE, f"{count:,} escalated", {"escalated": count})

        return self._run("escalate", caller, body)

    def retry(self, caller: Caller, keys: Sequence[str], *, override_reason: str | None = None) -> Result:
        """Re-check exactly these records and send the ones whose cause changed; answer for each.

        An override sends a record QuickBooks refused although nothing changed (admin, with a reason); a record a
        finding still blocks is never sent.
        """

        def body(now: datetime) -> Result:
            require(caller.identity, "retry")
            if override_reason is not None:
                require(caller.identity, "override")
                if not override_reason.strip():
                    raise _Refused("an override needs a reason (it is kept in the audit log)", bad_input=True)
            items: dict[str, ItemResult] = {}
            parsed: list[RecordKey] = []
            for text in keys:
                try:
                    parsed.append(RecordKey.parse(text))
                except ValueError as err:
                    items[str(text)] = ItemResult(str(text), REFUSED, str(err))
            run_check(self.store, caller.realm_id, now=now, trigger="retry", actor=caller.identity.email)
            answers, allowed = retry_gate(self.store, caller.realm_id, parsed, override=override_reason is not None)
            if allowed:
                action = "override" if override_reason else "retry"
                with self.store.transaction() as tx:
                    requeue(tx, caller.realm_id, allowed)
                    self._audit(tx, caller, now, [Change(action, str(k), override_reason) for k in allowed])
                with self._client(caller) as client:
                    run = sync_run(self.store, client, now=now, trigger="retry", actor=caller.identity.email,
                                   only=allowed, schedule=self.settings.retry_schedule, batch=False)  # fmt: skip
                answers.update(retry_answers(self.store, caller.realm_id, run.run_id, allowed))
            self._refresh(caller, now)
            for key, answer in answers.items():
                status = DONE if answer.sent else REFUSED
                message = answer.message
                items[str(key)] = ItemResult(
                    str(key), status, message, data={"state": answer.state, "sent": answer.sent}
                )
            ordered = [items[str(k)] for k in keys if str(k) in items] or list(items.values())
            status, summary = _summary(ordered, "records sent")
            return Result("retry", status, summary, items=ordered)

        return self._run("retry", caller, body)

    # -- mappings and duplicates ------------------------------------------------------------------------
    def map(self, caller: Caller, kind: str, awra_value: str, qbo_id: str, *, reason: str | None = None) -> Result:
        """Map an AWRA value to a QuickBooks object, re-check every record, say how many it freed."""

        def body(now: datetime) -> Result:
            require(caller.identity, "map")
            waiting = waiting_on(self.store, caller.realm_id, [(kind, awra_value)])
            with self.store.transaction() as tx:
                mapping, change = set_mapping(tx, caller.realm_id, kind, awra_value, qbo_id,
                                              actor=caller.identity.email, reason=reason, now=now)  # fmt: skip
                self._audit(tx, caller, now, [change])
            run_check(self.store, caller.realm_id, now=now, trigger="map", actor=caller.identity.email)
            self._refresh(caller, now)
            freed = now_ready(self.store, caller.realm_id, waiting)
            data = {"mapping": mapping, "records_waiting": len(waiting), "now_ready": freed,
                    "still_blocked": len(waiting) - freed}  # fmt: skip
            text = (
                f"mapped {kind} {awra_value} to QuickBooks {mapping['qbo_entity']} {qbo_id} ({mapping['qbo_name']}): "
                f"{freed:,} of {len(waiting):,} waiting records now ready"
                + (f"; {len(waiting) - freed:,} wait on something else" if len(waiting) - freed else "")
            )
            return Result("map", DONE, text, data)

        return self._run("map", caller, body)

    def accept_suggestions(
        self, caller: Caller, pairs: Sequence[tuple[str, str]], *, reason: str | None = None
    ) -> Result:
        """Accept suggested mappings (kind, AWRA value) as they stand; one re-check for them all."""

        def body(now: datetime) -> Result:
            require(caller.identity, "map")
            waiting = waiting_on(self.store, caller.realm_id, list(pairs))

            def one(pair: tuple[str, str], at: datetime) -> ItemResult:
                kind, value = pair
                target = suggested_target(self.store, caller.realm_id, kind, value)
                with self.store.transaction() as tx:
                    mapping, change = set_mapping(tx, caller.realm_id, kind, value, target,
                                                  actor=caller.identity.email,
                                                  reason=reason or "accepted suggestion", now=at)  # fmt: skip
                    self._audit(tx, caller, at, [change])
                return ItemResult(f"{kind}:{value}", DONE, f"mapped to {mapping['qbo_name']}", data=mapping)

            items = self._each("map", caller, [tuple(p) for p in pairs], one)
            if any(i.done for i in items):
                run_check(self.store, caller.realm_id, now=now, trigger="map", actor=caller.identity.email)
                self._refresh(caller, now)
            freed = now_ready(self.store, caller.realm_id, waiting)
            status, summary = _summary(items, "suggestions accepted")
            data = {"records_waiting": len(waiting), "now_ready": freed, "still_blocked": len(waiting) - freed}
            return Result("accept_suggestions", status, f"{summary}; {freed:,} records now ready", data, items)

        return self._run("accept_suggestions", caller, body)

    def link(self, caller: Caller, key: str, qbo_id: str, *, reason: str) -> Result:
        """A person says this QuickBooks object is the record: link it (never create it); re-check."""

        def body(now: datetime) -> Result:
            require(caller.identity, "link_duplicate")
            record = RecordKey.parse(key)
            with self.store.transaction() as tx:
                change = link_duplicate(tx, caller.realm_id, record, str(qbo_id).strip(),
                                        actor=caller.identity.email, reason=reason, now=now)  # fmt: skip
                self._audit(tx, caller, now, [change])
            run_check(self.store, caller.realm_id, now=now, trigger="check", actor=caller.identity.email)
            self._refresh(caller, now)
            return Result("link", DONE, f"linked {record} to QuickBooks Id {qbo_id}", {"key": str(record)})

        return self._run("link", caller, body)

    def create_new(self, caller: Caller, key: str, *, reason: str) -> Result:
        """A person says none of the possible duplicates is the record: it will be created; re-check."""

        def body(now: datetime) -> Result:
            require(caller.identity, "create_despite_duplicate")
            record = RecordKey.parse(key)
            with self.store.transaction() as tx:
                change = confirm_create_new(tx, caller.realm_id, record, actor=caller.identity.email, reason=reason,
                                            now=now)  # fmt: skip
                self._audit(tx, caller, now, [change])
            run_check(self.store, caller.realm_id, now=now, trigger="check", actor=caller.identity.email)
            self._refresh(caller, now)
            return Result("create_new", DONE, f"{record} will be created in QuickBooks at the next sync",
                          {"key": str(record)})  # fmt: skip

        return self._run("create_new", caller, body)

    # -- the exception queue ----------------------------------------------------------------------------
    def assign(self, caller: Caller, exception_ids: Sequence[int], *, to: str, note: str | None = None) -> Result:
        """Give each exception to a person who may act on it; one answer per exception."""

        def body(now: datetime) -> Result:
            roles = load_roles(self.settings.roles_file)

            def one(exception_id: int, at: datetime) -> ItemResult:
                row = get_exception(self.store, caller.realm_id, int(exception_id))
                require(caller.identity, "assign", row["dimension"])
                with self.store.transaction() as tx:
                    after, change = assign_exception(tx, caller.realm_id, int(exception_id), to=to, now=at,
                                                     note=note, roles=roles)  # fmt: skip
                    self._audit(tx, caller, at, [change])
                return ItemResult(f"#{exception_id}", DONE, describe(after, with_id=False), data=after)

            items = self._each("assign", caller, list(exception_ids), one, _exception_label)
            status, summary = _summary(items, "exceptions assigned")
            return Result("assign", status, summary, items=items)

        return self._run("assign", caller, body)

    def resolve(
        self,
        caller: Caller,
        exception_ids: Sequence[int],
        *,
        code: str,
        reason: str,
        qbo_id: str | None = None,
    ) -> Result:
        """Close each exception with a code and a reason; each code does what it says; one answer each.

        fixed_in_qbo: a record QuickBooks refused goes again. excluded: the record is excluded from sync.
        marked_synced: the record is already in QuickBooks as qbo_id (read from QuickBooks first when connected).
        create_new: none of the possible duplicates is the record.
        """

        def body(now: datetime) -> Result:
            if code not in RESOLUTION_CODES:
                raise _Refused(f"resolution code must be one of {', '.join(RESOLUTION_CODES)}, not {code!r}", True)
            text = reason_text(reason, f"resolving as {RESOLUTION_CODES[code]}")

            def one(exception_id: int, at: datetime) -> ItemResult:
                row = get_exception(self.store, caller.realm_id, int(exception_id))
                require(caller.identity, "resolve", row["dimension"])
                check_resolvable(row, code)
                record = RecordKey(row["entity"], row["record_id"])
                if code == "excluded":
                    return self._exclude_one(caller, record, text, at)
                if code == "marked_synced":
                    return self._mark_synced_one(caller, row, qbo_id, text, at)
                with self.store.transaction() as tx:
                    changes: list[Change] = []
                    if code == "create_new":
                        require(caller.identity, "create_despite_duplicate")
                        changes.append(confirm_create_new(tx, caller.realm_id, record, actor=caller.identity.email,
                                                          reason=text, now=at))  # fmt: skip
                    done, closed = resolve_exception(tx, caller.realm_id, int(exception_id), code=code, reason=text,
                                                     actor=caller.identity.email, now=at)  # fmt: skip
                    self._audit(tx, caller, at, [*changes, *closed])
                return ItemResult(f"#{exception_id}", DONE, describe(done, with_id=False), data=done)

            items = self._each("resolve", caller, list(exception_ids), one, _exception_label)
            if any(i.done for i in items) and code in ("create_new", "marked_synced", "excluded"):
                run_check(self.store, caller.realm_id, now=now, trigger="check", actor=caller.identity.email)
                self._refresh(caller, now)
            status, summary = _summary(items, "exceptions resolved")
            return Result("resolve", status, summary, items=items)

        return self._run("resolve", caller, body)

    def _mark_synced_one(
        self, caller: Caller, row: dict[str, Any], qbo_id: str | None, reason: str, at: datetime
    ) -> ItemResult:
        if not qbo_id or not str(qbo_id).strip():
            raise _Refused("marking a record as synced needs the QuickBooks Id it already has (--qbo-id)", True)
        qbo_entity = QBO_ENTITY.get(row["entity"], "")
        if self._connected(caller.realm_id) and qbo_entity:
            # The Id is read from QuickBooks itself before anything is linked (outside any transaction).
            self._verify_in_qbo(caller, qbo_entity, str(qbo_id).strip(), at)
        with self.store.transaction() as tx:
            done, changes = mark_record_synced(tx, caller.realm_id, int(row["exception_id"]), str(qbo_id),
                                               reason=reason, actor=caller.identity.email, now=at)  # fmt: skip
            self._audit(tx, caller, at, changes)
        return ItemResult(f"#{row['exception_id']}", DONE, describe(done, with_id=False), data=done)

    def _verify_in_qbo(self, caller: Caller, qbo_entity: str, qbo_id: str, now: datetime) -> None:
        label = qbo_entity.lower()
        with self._client(caller) as client:
            try:
                found = client.read(qbo_entity, qbo_id).object
            except QboCallError as err:
                if err.result.status in (400, 404) or err.outcome.reason == "provider_rejection.object_not_found":
                    raise _Refused(f"QuickBooks has no {label} with Id {qbo_id}; nothing was linked") from None
                raise
        if not found or found.get("status") == "Deleted":
            raise _Refused(f"QuickBooks {label} Id {qbo_id} is deleted; a record cannot be linked to it")
        load_objects(self.store, caller.realm_id, qbo_entity, [found], now)

    def exclude(self, caller: Caller, keys: Sequence[str], *, reason: str) -> Result:
        """Exclude each record from sync (never sent) and close its open exceptions; one answer each."""

        def body(now: datetime) -> Result:
            require(caller.identity, "exclude")
            text = reason_text(reason, "excluding a record from sync")
            items = self._each("exclude", caller, list(keys),
                               lambda k, at: self._exclude_one(caller, RecordKey.parse(k), text, at))  # fmt: skip
            status, summary = _summary(items, "records excluded")
            return Result("exclude", status, summary, items=items)

        return self._run("exclude", caller, body)

    def _exclude_one(self, caller: Caller, record: RecordKey, reason: str, at: datetime) -> ItemResult:
        for row in open_exceptions_of(self.store, caller.realm_id, record):
            require(caller.identity, "exclude", row["dimension"])
        with self.store.transaction() as tx:
            closed, changes = exclude_record(tx, caller.realm_id, record, reason=reason, actor=caller.identity.email,
                                             now=at)  # fmt: skip
            self._audit(tx, caller, at, changes)
        ids = ", ".join(f"#{c['exception_id']}" for c in closed) or "none were open"
        return ItemResult(str(record), DONE, f"excluded from sync; exceptions resolved: {ids}",
                          data={"resolved": closed})  # fmt: skip

    # -- one door for programs (the server's local API) --------------------------------------------------
    def dispatch(
        self, name: str, caller: Caller, params: dict[str, Any], *, progress: Progress | None = None
    ) -> Result:
        """Run a command by name with JSON parameters (the CLI, the local API); unknown names and parameters are
        refused. A progress callback reaches the commands that report progress (in-process callers only)."""
        spec = COMMANDS.get(name)
        if spec is None:
            return Result(name, REFUSED, f"there is no command {name!r}", bad_input=True)
        unknown = sorted(set(params) - set(spec))
        if unknown:
            return Result(name, REFUSED, f"{name} takes no parameter {', '.join(unknown)}", bad_input=True)
        for param, kind in spec.items():
            value = params.get(param)
            if value is not None and not _is(value, kind):
                return Result(name, REFUSED, f"{name}: {param} must be {kind}", bad_input=True)
        method = getattr(self, name)
        positional = [params[p] for p in POSITIONAL.get(name, ()) if p in params]
        missing = [p for p in POSITIONAL.get(name, ()) if p not in params]
        if missing:
            return Result(name, REFUSED, f"{name} needs {', '.join(missing)}", bad_input=True)
        options = {k: v for k, v in params.items() if k not in POSITIONAL.get(name, ())}
        if progress is not None and name in _REPORTS_PROGRESS:
            options["progress"] = progress
        return method(caller, *positional, **options)


def _is(value: Any, kind: str) -> bool:
    if kind == "str":
        return isinstance(value, str)
    if kind == "bool":
        return isinstance(value, bool)
    if kind == "list[str]":
        return isinstance(value, list) and all(isinstance(v, str) for v in value)
    if kind == "list[int]":
        return isinstance(value, list) and all(isinstance(v, int) and not isinstance(v, bool) for v in value)
    if kind == "list[pair]":
        return isinstance(value, list) and all(
            isinstance(v, list | tuple) and len(v) == 2 and all(isinstance(x, str) for x in v) for v in value
        )
    return False


# name -> parameter -> JSON type; what the local API accepts (progress callbacks stay in-process).
COMMANDS: dict[str, dict[str, str]] = {
    "ingest": {"folder": "str", "allow_removal": "str"},
    "connect": {},
    "pull": {"full": "bool"},
    "check": {"full": "bool"},
    "sync": {"only": "list[str]"},
    "retry": {"keys": "list[str]", "override_reason": "str"},
    "map": {"kind": "str", "awra_value": "str", "qbo_id": "str", "reason": "str"},
    "accept_suggestions": {"pairs": "list[pair]", "reason": "str"},
    "link": {"key": "str", "qbo_id": "str", "reason": "str"},
    "create_new": {"key": "str", "reason": "str"},
    "assign": {"exception_ids": "list[int]", "to": "str", "note": "str"},
    "resolve": {"exception_ids": "list[int]", "code": "str", "reason": "str", "qbo_id": "str"},
    "exclude": {"keys": "list[str]", "reason": "str"},
}
POSITIONAL: dict[str, tuple[str, ...]] = {
    "ingest": ("folder",),
    "retry": ("keys",),
    "map": ("kind", "awra_value", "qbo_id"),
    "accept_suggestions": ("pairs",),
    "link": ("key", "qbo_id"),
    "create_new": ("key",),
    "assign": ("exception_ids",),
    "resolve": ("exception_ids",),
    "exclude": ("keys",),
}
_REPORTS_PROGRESS = ("ingest", "pull", "sync")
