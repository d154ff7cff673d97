"""The `synchealth` console script: one clear line on failure, exit 0 done, 1 failed or refused, 2 bad input or usage.

Writes go through the commands (pipelines.commands); reads through the named views (pipelines.views.api). Both run
on the store itself, or, while a server holds it, through the server's local API, JSON in and JSON out.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import date
from pathlib import Path
from typing import Any

from pipelines.clock import Clock, system_clock
from pipelines.commands import Caller, Commands, Result
from pipelines.config import Settings, load_server_config, load_settings
from pipelines.identity import Identity, RolesFileMissing, load_roles, resolve
from pipelines.incidents import configure_log, log_path_for, record_incident
from pipelines.keys import RecordKey
from pipelines.serve.remote import ServerUnavailable, call_server, read_server_file
from pipelines.store import Store, StoreBusyError, StoreError, is_database_url

__all__ = ["build_parser", "main"]

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT = 0, 1, 2


class UsageError(Exception):
    """Bad input or usage: exit 2 with the message."""


@dataclass(frozen=True)
class Context:
    """What every command gets: settings built once, the acting identity, output mode, the clock."""

    settings: Settings
    identity: Identity
    as_json: bool
    clock: Clock = system_clock

    def now(self):
        return self.clock()

    @property
    def caller(self) -> Caller:
        return Caller(self.identity, self.settings.realm_id, self.clock)

    def command(self, name: str, params: dict[str, Any], progress: Any = None) -> Result:
        """Run a command on the store, or through the server that holds it."""
        try:
            store = Store(self.settings.store_target)
        except StoreBusyError:
            return self._remote_command(name, params)
        with store:
            _warn_if_audit_broken(store)
            return Commands(store, self.settings).dispatch(name, self.caller, params, progress=progress)

    def _remote_command(self, name: str, params: dict[str, Any]) -> Result:
        payload = {"command": name, "actor": self.identity.email, "realm": self.settings.realm_id, "params": params}
        try:
            return Result.from_json(call_server(self.settings.db_path, "/api/command", payload))
        except ServerUnavailable as err:
            raise StoreError(str(err)) from None

    def view(self, name: str, params: dict[str, Any]) -> dict[str, Any]:
        """A named read on the store, or through the server that holds it (it never waits for a cycle)."""
        from pipelines.views.api import read_view

        try:
            store = Store(self.settings.store_target)
        except StoreBusyError:
            return self._remote_view(name, params)
        with store:
            _warn_if_audit_broken(store)
            try:
                return read_view(store, name, self.settings.realm_id, self.now(), params)
            except (LookupError, ValueError) as err:
                raise UsageError(str(err).strip("'\"")) from None

    def _remote_view(self, name: str, params: dict[str, Any]) -> dict[str, Any]:
        payload = {"view": name, "realm": self.settings.realm_id, "params": params}
        try:
            answer = call_server(self.settings.db_path, "/api/view", payload)
        except ServerUnavailable as err:
            raise StoreError(str(err)) from None
        if "error" in answer:
            raise UsageError(answer["error"]) if answer.get("bad_input") else StoreError(answer["error"])
        return answer["data"]


def _warn_if_audit_broken(store: Store) -> None:
    check = store.audit_check
    if not check.ok:
        print(f"synchealth: WARNING: {check.problem} (run `synchealth audit verify`)", file=sys.stderr)


class _Progress:
    """A one-line progress bar on stderr, only when stderr is a terminal."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled

    def __call__(self, fraction: float, label: str) -> None:
        if not self.enabled:
            return
        filled = int(fraction * 30)
        sys.stderr.write(f"\r[{'#' * filled}{' ' * (30 - filled)}] {fraction:4.0%} {label:<30}")
        if fraction >= 1:
            sys.stderr.write("\n")
        sys.stderr.flush()


def _progress() -> _Progress:
    return _Progress(sys.stderr.isatty())


def _emit(ctx: Context, payload: dict, text: str) -> None:
    print(json.dumps(payload, indent=2, default=str) if ctx.as_json else text)


def _finish(ctx: Context, result: Result, text: Callable[[Result], str] | None = None) -> int:
    """Print a command's answer and turn it into the exit code: what was done on stdout, each refusal or failure
    as one line on stderr; 0 all done, 2 only bad input, 1 otherwise."""
    done = [i for i in result.items if i.done]
    not_done = [i for i in result.items if not i.done]
    bad_input = result.bad_input or (bool(not_done) and all(i.bad_input for i in not_done) and not done)
    code = EXIT_OK if result.status == "done" else EXIT_BAD_INPUT if bad_input else EXIT_FAILED
    if ctx.as_json:
        payload = {"status": result.status, "message": result.message, **result.data,
                   "items": [i.__dict__ for i in result.items], "incident": result.incident}  # fmt: skip
        _emit(ctx, payload, "")
        return code
    if result.status == "done" or done:
        print("\n".join([text(result) if text else result.message, *(f"{i.item}: {i.message}" for i in done)]))
    for item in not_done:
        tail = f" (incident {item.incident})" if item.incident and item.incident not in item.message else ""
        print(f"synchealth: {item.item}: {item.status}: {item.message}{tail}", file=sys.stderr)
    if result.status != "done" and not result.items:
        refused = result.status == "refused" and not result.bad_input
        print(f"synchealth: {'refused: ' if refused else ''}{result.message}", file=sys.stderr)
    return code


# -- commands --------------------------------------------------------------------------------------------
def cmd_demo(ctx: Context, args: argparse.Namespace) -> int:
    from pipelines.demo.company import write_demo

    as_of = _date(args.as_of, "--as-of") if args.as_of else ctx.now().date()
    try:
        summary = write_demo(Path(args.dir), seed=args.seed, scale=args.scale, as_of=as_of, fmt=args.format)
    except ValueError as err:
        raise UsageError(str(err)) from None
    total = sum(summary.counts.values())
    _emit(
        ctx,
        {"dir": args.dir, "counts": summary.counts},
        f"wrote {total:,} rows to {args.dir}/awra and the QuickBooks company to {args.dir}/qbo-company.json",
    )
    return EXIT_OK


def _date(text: str, option: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise UsageError(f"{option} takes a date as YYYY-MM-DD, not {text!r}") from None


def cmd_ingest(ctx: Context, args: argparse.Namespace) -> int:
    params = {"folder": str(Path(args.dir).resolve())}
    if args.allow_removal is not None:
        params["allow_removal"] = args.allow_removal
    return _finish(ctx, ctx.command("ingest", params, _progress()))


def _status_text(summary: dict) -> str:
    rec = summary["records"]
    lines = [
        f"company {summary['realm_id']}: {rec['total']:,} records, {rec['versions']:,} versions, "
        f"{rec['removed']:,} removed"
    ]
    lines += [f"  {entity:<16}{n:>10,}" for entity, n in rec["by_entity"].items()]
    if rec["by_state"]:
        lines.append("by state: " + ", ".join(f"{s} {n:,}" for s, n in sorted(rec["by_state"].items())))
    last = summary["last_ingest"]
    if last:
        tail = f": {last['error']}" if last["error"] else ""
        lines.append(f"last ingest: run {last['run_id']} {last['status']} at {last['finished_at']}{tail}")
    else:
        lines.append("nothing loaded yet: run `synchealth demo` then `synchealth ingest data/demo/awra`")
    if not summary.get("audit", {}).get("ok", True):
        lines.append(f"AUDIT LOG: {summary['audit']['problem']}")
    return "\n".join(lines)


def cmd_status(ctx: Context, args: argparse.Namespace) -> int:
    summary = ctx.view("status", {})
    _emit(ctx, summary, _status_text(summary))
    return EXIT_OK


def cmd_connect(ctx: Context, args: argparse.Namespace) -> int:
    return _finish(ctx, ctx.command("connect", {}))


def cmd_pull(ctx: Context, args: argparse.Namespace) -> int:
    return _finish(ctx, ctx.command("pull", {"full": bool(args.full)}, _progress()))


def _check_text(result: Result) -> str:
    data = result.data
    lines = [result.message, "by state: " + ", ".join(f"{k} {v:,}" for k, v in sorted(data["by_state"].items()))]
    lines += [f"  {reason:<44}{n:>8,}" for reason, n in sorted(data["by_reason"].items(), key=lambda kv: -kv[1])]
    return "\n".join(lines)


def cmd_check(ctx: Context, args: argparse.Namespace) -> int:
    return _finish(ctx, ctx.command("check", {"full": bool(args.full)}), _check_text)


def cmd_map(ctx: Context, args: argparse.Namespace) -> int:
    if not args.reason.strip():  # as on the Mappings page: a person's mapping says why, for the audit log
        raise UsageError("map needs --reason: why this is the right QuickBooks object (kept in the audit log)")
    params = {
        "kind": args.kind.replace("-", "_"),
        "awra_value": args.awra_value,
        "qbo_id": args.qbo_id,
        "reason": args.reason,
    }
    return _finish(ctx, ctx.command("map", params))


def cmd_sync(ctx: Context, args: argparse.Namespace) -> int:
    params = {"only": [str(_key(k)) for k in args.only]} if args.only else {}
    return _finish(ctx, ctx.command("sync", params, _progress()))


def cmd_retry(ctx: Context, args: argparse.Namespace) -> int:
    params: dict[str, Any] = {"keys": [str(_key(k)) for k in args.keys]}
    if args.override_reason is not None:
        params["override_reason"] = args.override_reason
    return _finish(ctx, ctx.command("retry", params))


def _key(text: str) -> RecordKey:
    try:
        return RecordKey.parse(text)
    except ValueError as err:
        raise UsageError(str(err)) from None


def _found_text(found: dict[str, Any], text: str) -> str:
    many = f"the first {found['count']:,} of the records" if found["more"] else f"{found['count']:,} records"
    lines = [f"{many} matching {text!r}, the closest first; name one by its key:"]
    lines += [
        f"  {m['key']:<28}{m['number'] or '':<14}{(m['party'] or '')[:30]:<32}{m['txn_date'] or '':<12}"
        f"{m['amount'] or '':>14}  {m['state']}"
        for m in found["matches"]
    ]
    return "\n".join(lines)


def cmd_record(ctx: Context, args: argparse.Namespace) -> int:
    try:
        key = RecordKey.parse(args.key)
    except ValueError:  # not a key: a document number or a vendor's or customer's name, as on the Record page
        found = ctx.view("find", {"text": args.key})
        if not found["count"]:
            raise UsageError(
                f"no record matches {args.key!r}: name it by its key (bill:BILL-000123), its document number or "
                "its vendor's or customer's name"
            ) from None
        if found["count"] > 1:
            _emit(ctx, found, _found_text(found, args.key))
            return EXIT_OK
        key = RecordKey.parse(found["matches"][0]["key"])
    chain = ctx.view("record", {"key": str(key)})
    lines = [f"{chain['key']} v{chain['version']}: {chain['state']}"]
    lines += [f"  {f['dimension']:<16}{f['reason']:<40}{f['detail']}" for f in chain["findings"]]
    lines += [
        f"  candidate QBO {c['qbo_entity']} {c['qbo_id']} ({c['rule']}, {c['score']}): {c['reasons']}"
        for c in chain["duplicate_candidates"]
    ]
    if chain["external_id"]:
        lines.append(f"  in QuickBooks as {chain['external_ref']['qbo_entity']} {chain['external_id']}")
    _emit(ctx, chain, "\n".join(lines))
    return EXIT_OK


def cmd_serve(ctx: Context, args: argparse.Namespace) -> int:
    from pipelines.serve.state import serve

    shown = "127.0.0.1" if args.host in ("0.0.0.0", "::") else args.host
    config = load_server_config(ctx.settings, default_url=f"http://{shown}:{args.port}")
    if args.interval is not None:
        config = replace(config, interval=args.interval)
    try:
        return serve(ctx.settings, config, host=args.host, port=args.port)
    except StoreBusyError:
        info = read_server_file(ctx.settings.db_path)
        if info is None:
            raise
        raise StoreError(f"a server already holds {ctx.settings.db_path} on {info['url']}; stop it first") from None


# -- the action queue -------------------------------------------------------------------------------------
def cmd_worker(ctx: Context, args: argparse.Namespace) -> int:
    """Fleet mode: run realm cycles (and webhook pulls) from the shared queue until interrupted."""
    from pipelines.fleet.worker import run_worker

    if not ctx.settings.database_url:
        raise UsageError("a worker needs the fleet's store: SYNCHEALTH_DB=postgresql://... (or --db URL)")
    if args.concurrency < 1:
        raise UsageError("--concurrency must be at least 1")
    run_worker(ctx.settings, concurrency=args.concurrency, cycle_cron=None if args.no_schedule else "* * * * *")
    return EXIT_OK


def cmd_fleet(ctx: Context, args: argparse.Namespace) -> int:
    """A local fleet to try fleet mode: private PostgreSQL, the sandbox with N companies, workers, one app server."""
    import signal
    import tempfile
    import threading

    from pipelines.fleet.cluster import ClusterUnavailableError, find_binaries
    from pipelines.fleet.local import LocalFleet, realm_ids

    for option, value, low, high in (
        ("--workers", args.workers, 1, 32),
        ("--concurrency", args.concurrency, 1, 64),
        ("--realms", args.realms, 1, 500),
    ):
        if not low <= value <= high:
            raise UsageError(f"{option} must be between {low} and {high}, not {value}")
    if not args.every > 0:
        raise UsageError(f"--every must be a positive number of seconds, not {args.every:g}")
    if not args.time_scale > 0:
        raise UsageError(f"--time-scale must be positive, not {args.time_scale:g}")
    if not 0 <= args.port <= 65535:
        raise UsageError(f"--port must be between 0 and 65535, not {args.port}")
    try:
        find_binaries()
    except ClusterUnavailableError as err:
        raise StoreError(str(err)) from None
    folder = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="synchealth-fleet-"))
    fleet = LocalFleet(
        folder, workers=args.workers, concurrency=args.concurrency, time_scale=args.time_scale, server_port=args.port
    )
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        print(f"starting a local fleet in {folder} (logs in {folder / 'logs'}) ...", flush=True)
        fleet.start()
        fleet.seed(realm_ids(args.realms), scale=args.scale)
        fleet.defer_cycles()
        fleet.keep_deferring(args.every)
        print(
            f"fleet up: app {fleet.server_url}, sandbox {fleet.sandbox_url}, {args.realms} companies, "
            f"{args.workers} workers x {args.concurrency}\n"
            f"  store: SYNCHEALTH_DB={fleet.url}\n"
            f"  cycles queued every {args.every:g} s; Ctrl-C stops every process",
            flush=True,
        )
        while not stop.wait(1.0):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        fleet.stop()
    print("fleet stopped", file=sys.stderr)
    return EXIT_OK


def cmd_resolve(ctx: Context, args: argparse.Namespace) -> int:
    params: dict[str, Any] = {"exception_ids": [args.exception_id], "code": args.code, "reason": args.reason}
    if args.qbo_id is not None:
        params["qbo_id"] = args.qbo_id
    return _finish(ctx, ctx.command("resolve", params))


def cmd_assign(ctx: Context, args: argparse.Namespace) -> int:
    params: dict[str, Any] = {"exception_ids": [args.exception_id], "to": args.to}
    if args.reason is not None:
        params["note"] = args.reason
    return _finish(ctx, ctx.command("assign", params))


def cmd_exclude(ctx: Context, args: argparse.Namespace) -> int:
    return _finish(ctx, ctx.command("exclude", {"keys": [str(_key(args.key))], "reason": args.reason}))


def _queue_line(row: dict) -> str:
    due = str(row["due_date"]) if row["due_date"] else "-"
    flag = " ESCALATED" if row["escalated"] else (" OVERDUE" if row["overdue"] else "")
    stake = "$" + format(float(row["at_stake"] or 0), ",.2f")
    return (
        f"{row['priority']:>5} #{row['exception_id']:<7}{row['key']:<30}{row['reason']:<38}"
        f"{stake:>16}  due {due:<11}{row['owned_by']:<24}{row['status']}{flag}\n"
        f"{'':>13}{row['detail']}\n{'':>13}fix: {row['fix']}"
    )


def cmd_queue(ctx: Context, args: argparse.Namespace) -> int:
    limit = args.limit if args.limit is not None else (0 if ctx.as_json else 50)
    params: dict[str, Any] = {"status": args.status, "owner": args.owner, "dimension": args.dimension, "limit": limit}
    answer = ctx.view("queue", params)
    if ctx.as_json:
        _emit(ctx, answer, "")
        return EXIT_OK
    summary, shown = answer["summary"], answer["items"]
    who = f" for {args.owner}" if args.owner else ""
    lines = [
        f"{summary['items']:,} open item(s){who} on {summary['records']:,} record(s), "
        f"${float(summary['dollars']):,.2f}; {summary['overdue']:,} overdue, {summary['escalated']:,} escalated"
    ]
    lines += [_queue_line(row) for row in shown]
    if len(shown) < answer["count"]:
        lines.append(f"... {answer['count'] - len(shown):,} more (--limit 0 shows all)")
    print("\n".join(lines))
    return EXIT_OK


def cmd_digest(ctx: Context, args: argparse.Namespace) -> int:
    from pipelines.views.queue import digest_html, digest_text

    d = ctx.view("digest", {"since_hours": args.since_hours})
    if args.html:
        sys.stdout.write(digest_html(d))
    else:
        _emit(ctx, d, digest_text(d).rstrip("\n"))
    return EXIT_OK


def cmd_audit(ctx: Context, args: argparse.Namespace) -> int:
    check = ctx.view("audit_verify", {})
    if check["ok"]:
        _emit(ctx, check, f"audit log intact: {check['rows']:,} rows, newest hash {check['newest_hash'] or '-'}")
        return EXIT_OK
    if ctx.as_json:
        _emit(ctx, check, "")
    print(f"synchealth: audit log broken: {check['problem']}", file=sys.stderr)
    return EXIT_FAILED


# -- parser ----------------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="synchealth", description="QBO Sync Health: AWRA -> QuickBooks Online")
    p.add_argument("--db", help="the DuckDB store (default data/synchealth.duckdb or SYNCHEALTH_DB)")
    p.add_argument("--actor", help="who is acting (email); roles come from config/roles.toml")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = sub.add_parser("demo", help="write the demo AWRA snapshot and QuickBooks company")
    demo.add_argument("--dir", default="data/demo")
    demo.add_argument("--seed", type=int, default=7)
    demo.add_argument("--scale", type=int, default=None, help="about N records in total")
    demo.add_argument("--as-of", default=None, help="the demo's today (YYYY-MM-DD); default today")
    demo.add_argument("--format", choices=("csv", "parquet", "jsonl"), default="csv")
    demo.set_defaults(func=cmd_demo)

    ingest = sub.add_parser("ingest", help="validate and load an AWRA snapshot folder (admin)")
    ingest.add_argument("dir")
    ingest.add_argument(
        "--allow-removal",
        default=None,
        metavar="REASON",
        help="apply a snapshot that removes much of a table (admin; the reason is audited)",
    )
    ingest.set_defaults(func=cmd_ingest)

    status = sub.add_parser("status", help="records, versions, exceptions and connection at a glance")
    status.set_defaults(func=cmd_status)

    connect = sub.add_parser("connect", help="connect a QuickBooks company (OAuth)")
    connect.set_defaults(func=cmd_connect)

    pull = sub.add_parser("pull", help="bring QuickBooks reference data and transactions into the store")
    pull.add_argument("--full", action="store_true", help="re-read everything instead of changes only")
    pull.set_defaults(func=cmd_pull)

    check = sub.add_parser("check", help="readiness, mapping gaps and duplicate risk (what changed; --full: all)")
    check.add_argument("--full", action="store_true", help="re-check every record, not only what changed")
    check.set_defaults(func=cmd_check)

    mapc = sub.add_parser("map", help="map an AWRA value to a QuickBooks object (admin), then re-check")
    kinds = ("account", "tax-code", "vendor", "customer", "item", "payment-method", "class")
    mapc.add_argument(
        "kind",
        type=lambda text: text.replace("_", "-"),  # tax_code (the store's spelling) is accepted as tax-code
        choices=kinds,
    )
    mapc.add_argument("awra_value")
    mapc.add_argument("qbo_id")
    mapc.add_argument("--reason", required=True, help="why this is the right QuickBooks object (kept in the audit log)")
    mapc.set_defaults(func=cmd_map)

    sync = sub.add_parser("sync", help="check, then send every ready record to QuickBooks (admin)")
    sync.add_argument("--only", nargs="+", metavar="KEY", help="only these records, e.g. bill:BILL-000123")
    sync.set_defaults(func=cmd_sync)

    retryc = sub.add_parser("retry", help="re-check and resend these records if their cause changed (admin)")
    retryc.add_argument("keys", nargs="+", metavar="KEY")
    retryc.add_argument("--override-reason", default=None, help="send even though nothing changed (audited)")
    retryc.set_defaults(func=cmd_retry)

    record = sub.add_parser(
        "record", help="the whole chain of one record: its key (bill:BILL-000123), document number or party's name"
    )
    record.add_argument("key", metavar="KEY_OR_TEXT")
    record.set_defaults(func=cmd_record)

    serve = sub.add_parser("serve", help="the one server: app, OAuth, webhooks, scheduler (uvicorn, st.App)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8501)
    serve.add_argument("--interval", type=float, default=None, help="seconds between cycles (default 300)")
    serve.set_defaults(func=cmd_serve)

    workerc = sub.add_parser("worker", help="fleet mode: run realm cycles from the shared PostgreSQL queue")
    workerc.add_argument("--concurrency", type=int, default=1, help="jobs at once, each on another company")
    workerc.add_argument("--no-schedule", action="store_true", help="do not defer the periodic cycles")
    workerc.set_defaults(func=cmd_worker)
    fleetc = sub.add_parser("fleet", help="start a local fleet: PostgreSQL, the sandbox, N workers, one app server")
    fleetc.add_argument("--workers", type=int, default=2, help="worker processes (default 2)")
    fleetc.add_argument("--concurrency", type=int, default=1, help="jobs at once per worker (default 1)")
    fleetc.add_argument("--realms", type=int, default=3, help="QuickBooks companies in the sandbox (default 3)")
    fleetc.add_argument("--scale", type=int, default=60, help="about this many AWRA records per company")
    fleetc.add_argument("--port", type=int, default=8501, help="the app server's port (default 8501)")
    fleetc.add_argument("--every", type=float, default=30.0, help="seconds between queued cycles (default 30)")
    fleetc.add_argument("--time-scale", type=float, default=1.0, help="the sandbox's clock speed (default 1)")
    fleetc.add_argument("--dir", help="the fleet's folder (default: a new temporary one)")
    fleetc.set_defaults(func=cmd_fleet)

    resolvec = sub.add_parser("resolve", help="close an exception with a reason code and text (audited)")
    resolvec.add_argument("exception_id", type=int, metavar="EXCEPTION_ID")
    resolvec.add_argument("--reason", required=True, help="why (kept in the audit log)")
    resolvec.add_argument(
        "--code",
        choices=("fixed_in_qbo", "excluded", "marked_synced", "create_new"),
        default="fixed_in_qbo",
        help="fixed in QuickBooks (default), excluded from sync, marked as synced (with --qbo-id), create new "
        "despite a possible duplicate",
    )
    resolvec.add_argument("--qbo-id", default=None, help="for marked_synced: the QuickBooks Id the record has")
    resolvec.set_defaults(func=cmd_resolve)

    assignc = sub.add_parser("assign", help="give an exception to a person (audited)")
    assignc.add_argument("exception_id", type=int, metavar="EXCEPTION_ID")
    assignc.add_argument("--to", required=True, metavar="EMAIL")
    assignc.add_argument("--reason", default=None, help="a note for the audit log")
    assignc.set_defaults(func=cmd_assign)

    excludec = sub.add_parser("exclude", help="exclude a record from sync and close its exceptions (audited)")
    excludec.add_argument("key", metavar="KEY")
    excludec.add_argument("--reason", required=True)
    excludec.set_defaults(func=cmd_exclude)

    queuec = sub.add_parser("queue", help="the action queue: open exceptions by priority, with the fix")
    queuec.add_argument("--owner", default=None, help="a person (email) or a role (finance, admin)")
    queuec.add_argument("--dimension", nargs="+", default=None)
    queuec.add_argument("--status", nargs="+", choices=("open", "assigned", "resolved"), default=None)
    queuec.add_argument("--limit", type=int, default=None, help="items to list (default 50; 0: all)")
    queuec.set_defaults(func=cmd_queue)

    digestc = sub.add_parser("digest", help="per owner: new, overdue and escalated items (text, or --html)")
    digestc.add_argument("--html", action="store_true", help="an HTML email body instead of plain text")
    digestc.add_argument("--since-hours", type=float, default=24.0, help="what counts as new (default 24)")
    digestc.set_defaults(func=cmd_digest)

    auditc = sub.add_parser("audit", help="check the audit log: every row's hash chain and the guard triggers")
    auditc.add_argument("action", choices=("verify",))
    auditc.set_defaults(func=cmd_audit)

    # Listed for --help only: main() hands `sandbox ...` to qbo.sandbox.server before parsing.
    sub.add_parser("sandbox", help="run the local QuickBooks Online sandbox (see `synchealth sandbox -h`)")
    return p


def _split_global(argv: list[str]) -> list[str]:
    """Let the global options (--db, --actor, --json) stand after the command too."""
    front: list[str] = []
    rest: list[str] = []
    it = iter(argv)
    for tok in it:
        if tok == "--json":
            front.append(tok)
        elif tok in ("--db", "--actor"):
            front += [tok, next(it, "")]
        elif tok.startswith(("--db=", "--actor=")):
            front.append(tok)
        else:
            rest.append(tok)
    return front + rest


def _global_values(argv: list[str]) -> set[str]:
    return {argv[i + 1] for i, t in enumerate(argv[:-1]) if t in ("--db", "--actor")}


def main(
    argv: Sequence[str] | None = None,
    *,
    settings_loader: Callable[[], Settings] = load_settings,
    clock: Clock = system_clock,
) -> int:
    raw = _split_global(list(sys.argv[1:] if argv is None else argv))
    command = next((t for t in raw if not t.startswith("-") and t not in _global_values(raw)), None)
    if command == "sandbox":  # its options are its own: hand them over unparsed
        from qbo.sandbox.server import main as sandbox_main

        return sandbox_main(raw[raw.index("sandbox") + 1 :])
    args = build_parser().parse_args(raw)
    try:
        db = args.db or None
        fleet = db if db and is_database_url(db) else None
        settings = settings_loader().with_overrides(db_path=Path(db) if db and not fleet else None, database_url=fleet)
        configure_log(log_path_for(settings.db_path))
        identity = resolve(args.actor, load_roles(settings.roles_file))
        return args.func(Context(settings, identity, args.json, clock), args)
    except UsageError as err:
        print(f"synchealth: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except (StoreError, RolesFileMissing) as err:
        print(f"synchealth: {err}", file=sys.stderr)
        return EXIT_FAILED
    except BrokenPipeError:
        # `synchealth ... | head`: the reader left; say nothing more (and nothing to a closed pipe).
        sys.stderr.close()
        return EXIT_OK
    except KeyboardInterrupt:
        print("synchealth: interrupted; the store is unchanged by the unfinished step", file=sys.stderr)
        return EXIT_FAILED
    except Exception as err:  # anything unexpected: one line for the person, the trace in the log
        incident = record_incident(err, f"synchealth {args.command}")
        print(f"synchealth: {incident}", file=sys.stderr)
        return EXIT_FAILED


if __name__ == "__main__":
    raise SystemExit(main())
