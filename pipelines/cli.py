"""The `synchealth` console script: one clear line on failure, exit 0 done, 1 failed, 2 bad input or usage."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import httpx

from pipelines.clock import Clock, system_clock
from pipelines.config import Settings, load_settings
from pipelines.identity import Identity, PermissionDeniedError, load_roles, require, resolve
from pipelines.store import Store, StoreBusyError, StoreError
from qbo.client import QboCallError
from qbo.oauth import OAuthError

__all__ = ["main"]

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT = 0, 1, 2


class UsageError(Exception):
    """Bad input or usage: exit 2 with the message."""


@dataclass(frozen=True)
class Context:
    """What every command gets: settings built once, the acting identity, output mode."""

    settings: Settings
    identity: Identity
    as_json: bool
    clock: Clock = system_clock

    def now(self):
        return self.clock()

    def open_store(self) -> Store:
        from pipelines.serve.state import borrow_store

        # Run by the server for a CLI beside it (`/api/cli`): the server's own store, left open after.
        return borrow_store(self.settings.db_path) or Store(self.settings.db_path)  # type: ignore[return-value]

    def require(self, action: str) -> None:
        require(self.identity, action)


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


def _emit(ctx: Context, payload: dict, text: str) -> None:
    print(json.dumps(payload, indent=2, default=str) if ctx.as_json else text)


# -- commands --------------------------------------------------------------------------------------------
def cmd_demo(ctx: Context, args: argparse.Namespace) -> int:
    from pipelines.demo.company import write_demo

    as_of = date.fromisoformat(args.as_of) if args.as_of else ctx.now().date()
    summary = write_demo(Path(args.dir), seed=args.seed, scale=args.scale, as_of=as_of, fmt=args.format)
    total = sum(summary.counts.values())
    _emit(
        ctx,
        {"dir": args.dir, "counts": summary.counts},
        f"wrote {total:,} rows to {args.dir}/awra and the QuickBooks company to {args.dir}/qbo-company.json",
    )
    return EXIT_OK


def cmd_ingest(ctx: Context, args: argparse.Namespace) -> int:
    from pipelines.ingest import SnapshotError, ingest_snapshot

    with ctx.open_store() as store:
        try:
            result = ingest_snapshot(
                store,
                Path(args.dir),
                realm_id=ctx.settings.realm_id,
                progress=_Progress(sys.stderr.isatty()),
                now=ctx.now(),
            )
        except SnapshotError as err:
            raise UsageError(f"snapshot refused, nothing applied: {err}") from None
    text = (
        f"{result.status}: {result.new:,} new, {result.changed:,} changed, {result.removed:,} removed, "
        f"{result.restored:,} restored records from {sum(result.rows.values()):,} rows "
        f"in {result.seconds:.1f}s (run {result.run_id})"
    )
    _emit(
        ctx,
        {
            "run_id": result.run_id,
            "status": result.status,
            "new": result.new,
            "changed": result.changed,
            "removed": result.removed,
            "restored": result.restored,
            "rows": result.rows,
            "seconds": round(result.seconds, 3),
        },
        text,
    )
    return EXIT_OK


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
    return "\n".join(lines)


def cmd_status(ctx: Context, args: argparse.Namespace) -> int:
    from pipelines.views.metrics import status_summary

    with ctx.open_store() as store:
        summary = status_summary(store, ctx.settings.realm_id)
    _emit(ctx, summary, _status_text(summary))
    return EXIT_OK


def cmd_connect(ctx: Context, args: argparse.Namespace) -> int:
    from pipelines.connection import connect

    ctx.require("connect")
    with ctx.open_store() as store:
        result = connect(ctx.settings, store, actor=ctx.identity.email)
    if result.status is None:
        _emit(
            ctx,
            {"authorize_url": result.authorize_url},
            f"open this URL as a QuickBooks admin to connect; the app's /oauth/callback finishes it:\n"
            f"{result.authorize_url}",
        )
        return EXIT_OK
    status = result.status.to_dict()
    _emit(ctx, {"connection": status}, f"connected to QuickBooks company {status.get('realm_id')}")
    return EXIT_OK


def cmd_pull(ctx: Context, args: argparse.Namespace) -> int:
    from pipelines.connection import qbo_client
    from pipelines.pull import pull

    ctx.require("pull")
    with ctx.open_store() as store, qbo_client(ctx.settings, store) as client:
        result = pull(store, client, full=args.full, progress=_Progress(sys.stderr.isatty()), now=ctx.now())
    text = (
        f"{result.kind} pull {result.pull_id}: {result.objects:,} objects "
        f"({result.deleted:,} deleted); {result.inactive:,} inactive objects in QuickBooks"
    )
    _emit(
        ctx,
        {
            "pull_id": result.pull_id,
            "kind": result.kind,
            "objects": result.objects,
            "deleted": result.deleted,
            "by_entity": result.by_entity,
        },
        text,
    )
    return EXIT_OK


def cmd_check(ctx: Context, args: argparse.Namespace) -> int:
    from pipelines.readiness import run_check

    with ctx.open_store() as store:
        result = run_check(store, ctx.settings.realm_id, now=ctx.now(), actor=ctx.identity.email)
    lines = [
        f"check {result.run_id}: {result.records:,} records, {result.ready:,} ready, "
        f"{result.findings:,} findings in {result.seconds:.1f}s",
        "by state: " + ", ".join(f"{k} {v:,}" for k, v in sorted(result.by_state.items())),
    ]
    lines += [f"  {reason:<44}{n:>8,}" for reason, n in sorted(result.by_reason.items(), key=lambda kv: -kv[1])]
    _emit(
        ctx,
        {
            "run_id": result.run_id,
            "records": result.records,
            "ready": result.ready,
            "findings": result.findings,
            "by_state": result.by_state,
            "by_reason": result.by_reason,
        },
        "\n".join(lines),
    )
    return EXIT_OK


def cmd_map(ctx: Context, args: argparse.Namespace) -> int:
    from pipelines.mappings import map_and_recheck

    with ctx.open_store() as store:
        try:
            done = map_and_recheck(
                store,
                ctx.settings.realm_id,
                args.kind,
                args.awra_value,
                args.qbo_id,
                identity=ctx.identity,
                reason=args.reason,
                now=ctx.now(),
            )
        except ValueError as err:
            raise UsageError(str(err)) from None
    m = done.mapping
    text = (
        f"mapped {args.kind} {args.awra_value} -> QuickBooks {m['qbo_entity']} {args.qbo_id} ({m['qbo_name']}): "
        f"{done.waiting:,} records were waiting on it, {done.now_ready:,} are now ready"
        + (f", {done.still_blocked:,} still blocked" if done.still_blocked else "")
    )
    _emit(
        ctx,
        {
            "mapping": m,
            "records_waiting": done.waiting,
            "now_ready": done.now_ready,
            "still_blocked": done.still_blocked,
        },
        text,
    )
    return EXIT_OK


def cmd_sync(ctx: Context, args: argparse.Namespace) -> int:
    from pipelines.connection import qbo_client
    from pipelines.cycle import run_cycle

    ctx.require("sync")
    only = [_key(k) for k in args.only] if args.only else None
    with ctx.open_store() as store, qbo_client(ctx.settings, store) as client:
        result = run_cycle(
            store,
            client,
            ctx.settings,
            now=ctx.now(),
            trigger="manual",
            actor=ctx.identity.email,
            only=only,
            progress=_Progress(sys.stderr.isatty()),
        )
    s = result.sync
    counts = ", ".join(f"{k} {v:,}" for k, v in sorted(s.counts.items())) or "nothing sent"
    text = (
        f"sync run {s.run_id} {s.status}: {s.planned:,} due, {counts}; {s.linked:,} settled by lookup, "
        f"{s.held:,} held (waiting on a party or document) in {s.seconds:.1f}s"
    )
    _emit(
        ctx,
        {
            "run_id": s.run_id,
            "status": s.status,
            "planned": s.planned,
            "outcomes": s.counts,
            "held": s.held,
            "settled_by_lookup": s.linked,
            "check_run_id": result.check.run_id,
        },
        text,
    )
    return EXIT_OK if s.status in ("done", "paused") else EXIT_FAILED


def cmd_retry(ctx: Context, args: argparse.Namespace) -> int:
    from pipelines.connection import qbo_client
    from pipelines.sync import retry

    keys = [":".join(_key(k)) for k in args.keys]
    with ctx.open_store() as store, qbo_client(ctx.settings, store) as client:
        answers = retry(
            store,
            client,
            keys,
            identity=ctx.identity,
            now=ctx.now(),
            override_reason=args.override_reason,
            schedule=ctx.settings.retry_schedule,
        )
    _emit(
        ctx,
        {"results": [a.__dict__ for a in answers]},
        "\n".join(f"{a.key}: {'sent' if a.sent else 'refused'}: {a.message.removeprefix('sent: ')}" for a in answers),
    )
    return EXIT_OK if all(a.sent for a in answers) else EXIT_FAILED


def _key(text: str) -> tuple[str, str]:
    entity, sep, record_id = text.partition(":")
    if not sep or not record_id:
        raise UsageError(f"record key {text!r} must be <entity>:<awra id>, e.g. bill:BILL-000123")
    return entity, record_id


def cmd_record(ctx: Context, args: argparse.Namespace) -> int:
    from pipelines.views.metrics import record_chain

    with ctx.open_store() as store:
        try:
            chain = record_chain(store, ctx.settings.realm_id, args.key)
        except LookupError as err:
            raise UsageError(str(err)) from None
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

    return serve(ctx.settings, host=args.host, port=args.port, interval=args.interval)


# -- the action queue -------------------------------------------------------------------------------------
def _realm_connected(store: Store, realm_id: str) -> bool:
    return store.scalar("SELECT status FROM qbo_connections WHERE realm_id = ?", [realm_id]) == "connected"


def _refused_input(err: Exception) -> UsageError:
    return UsageError(str(err).strip("'\""))


def cmd_resolve(ctx: Context, args: argparse.Namespace) -> int:
    from pipelines.exceptions import RESOLUTION_CODES, resolve

    realm = ctx.settings.realm_id
    with ctx.open_store() as store:
        try:
            if args.code == "marked_synced" and _realm_connected(store, realm):
                from pipelines.connection import qbo_client

                # The Id is read from QuickBooks itself before anything is linked.
                with qbo_client(ctx.settings, store) as client:
                    done = resolve(store, realm, args.exception_id, code=args.code, reason=args.reason,
                                   identity=ctx.identity, now=ctx.now(), qbo_id=args.qbo_id, client=client)  # fmt: skip
            else:
                done = resolve(store, realm, args.exception_id, code=args.code, reason=args.reason,
                               identity=ctx.identity, now=ctx.now(), qbo_id=args.qbo_id)  # fmt: skip
        except (LookupError, ValueError) as err:
            raise _refused_input(err) from None
    tail = "; the record goes again in the next cycle" if done.get("requeued") else ""
    _emit(
        ctx,
        {"resolved": done},
        f"resolved #{done['exception_id']} ({done['cause']}) as {RESOLUTION_CODES[args.code]}{tail}",
    )
    return EXIT_OK


def cmd_assign(ctx: Context, args: argparse.Namespace) -> int:
    from pipelines.exceptions import assign

    with ctx.open_store() as store:
        try:
            done = assign(store, ctx.settings.realm_id, args.exception_id, to=args.to, identity=ctx.identity,
                          now=ctx.now(), note=args.reason, roles=load_roles(ctx.settings.roles_file))  # fmt: skip
        except (LookupError, ValueError) as err:
            raise _refused_input(err) from None
    _emit(ctx, {"assigned": done}, f"assigned #{done['exception_id']} ({done['cause']}) to {done['owner']}")
    return EXIT_OK


def cmd_exclude(ctx: Context, args: argparse.Namespace) -> int:
    from pipelines.exceptions import exclude

    key = ":".join(_key(args.key))
    with ctx.open_store() as store:
        try:
            closed = exclude(
                store, ctx.settings.realm_id, key, reason=args.reason, identity=ctx.identity, now=ctx.now()
            )
        except (LookupError, ValueError) as err:
            raise _refused_input(err) from None
    ids = ", ".join(f"#{c['exception_id']}" for c in closed) or "none were open"
    _emit(ctx, {"excluded": key, "resolved": closed}, f"excluded {key} from sync; exceptions resolved: {ids}")
    return EXIT_OK


def _queue_line(row: dict) -> str:
    due = str(row["due_date"]) if row["due_date"] else "-"
    flag = " ESCALATED" if row["escalated"] else (" OVERDUE" if row["overdue"] else "")
    return (
        f"{row['priority']:>5} #{row['exception_id']:<7}{row['key']:<30}{row['reason']:<38}"
        f"{'$' + format(row['at_stake'], ',.2f'):>16}  due {due:<11}{row['owned_by']:<24}{row['status']}{flag}\n"
        f"{'':>13}{row['detail']}\n{'':>13}fix: {row['fix']}"
    )


def cmd_queue(ctx: Context, args: argparse.Namespace) -> int:
    from pipelines.views.queue import OPEN_STATUSES, action_queue, filter_queue, queue_summary

    with ctx.open_store() as store:
        frame = action_queue(store, ctx.settings.realm_id, now=ctx.now(), statuses=args.status or OPEN_STATUSES)
    frame = filter_queue(frame, owners=[args.owner] if args.owner else None, dimensions=args.dimension)
    summary = queue_summary(frame)
    limit = args.limit if args.limit is not None else (0 if ctx.as_json else 50)
    shown = frame.head(limit) if limit else frame
    if ctx.as_json:
        from pipelines.views.metrics import _dicts

        columns = [c for c in shown.columns if c != "link"]
        _emit(ctx, {"count": frame.height, "summary": summary, "items": _dicts(shown.select(columns))}, "")
        return EXIT_OK
    who = f" for {args.owner}" if args.owner else ""
    lines = [
        f"{summary['items']:,} open item(s){who} on {summary['records']:,} record(s), ${summary['dollars']:,.2f}; "
        f"{summary['overdue']:,} overdue, {summary['escalated']:,} escalated"
    ]
    lines += [_queue_line(row) for row in shown.iter_rows(named=True)]
    if shown.height < frame.height:
        lines.append(f"... {frame.height - shown.height:,} more (--limit 0 shows all)")
    print("\n".join(lines))
    return EXIT_OK


def cmd_digest(ctx: Context, args: argparse.Namespace) -> int:
    from datetime import timedelta

    from pipelines.views.queue import digest, digest_html, digest_text

    now = ctx.now()
    with ctx.open_store() as store:
        d = digest(store, ctx.settings.realm_id, now=now, since=now - timedelta(hours=args.since_hours))
    if args.html:
        sys.stdout.write(digest_html(d))
    else:
        _emit(ctx, d, digest_text(d).rstrip("\n"))
    return EXIT_OK


# -- parser ----------------------------------------------------------------------------------------------
def _parser() -> argparse.ArgumentParser:
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

    ingest = sub.add_parser("ingest", help="validate and load an AWRA snapshot folder")
    ingest.add_argument("dir")
    ingest.set_defaults(func=cmd_ingest)

    status = sub.add_parser("status", help="records, versions, exceptions and connection at a glance")
    status.set_defaults(func=cmd_status)

    connect = sub.add_parser("connect", help="connect a QuickBooks company (OAuth)")
    connect.set_defaults(func=cmd_connect)

    pull = sub.add_parser("pull", help="bring QuickBooks reference data and transactions into the store")
    pull.add_argument("--full", action="store_true", help="re-read everything instead of changes only")
    pull.set_defaults(func=cmd_pull)

    check = sub.add_parser("check", help="readiness, mapping gaps and duplicate risk for every record")
    check.set_defaults(func=cmd_check)

    mapc = sub.add_parser("map", help="map an AWRA value to a QuickBooks object (admin), then re-check")
    mapc.add_argument("kind", choices=("account", "tax_code", "vendor", "customer", "item", "payment_method", "class"))
    mapc.add_argument("awra_value")
    mapc.add_argument("qbo_id")
    mapc.add_argument("--reason", default=None)
    mapc.set_defaults(func=cmd_map)

    sync = sub.add_parser("sync", help="check, then send every ready record to QuickBooks (admin)")
    sync.add_argument("--only", nargs="+", metavar="KEY", help="only these records, e.g. bill:BILL-000123")
    sync.set_defaults(func=cmd_sync)

    retryc = sub.add_parser("retry", help="re-check and resend these records if their cause changed (admin)")
    retryc.add_argument("keys", nargs="+", metavar="KEY")
    retryc.add_argument("--override-reason", default=None, help="send even though nothing changed (audited)")
    retryc.set_defaults(func=cmd_retry)

    record = sub.add_parser("record", help="the whole chain of one record, e.g. bill:BILL-000123")
    record.add_argument("key")
    record.set_defaults(func=cmd_record)

    serve = sub.add_parser("serve", help="the one server: app, OAuth, webhooks, scheduler (uvicorn, st.App)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8501)
    serve.add_argument("--interval", type=float, default=None, help="seconds between cycles (default 300)")
    serve.set_defaults(func=cmd_serve)

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
    args = _parser().parse_args(raw)
    try:
        settings = settings_loader().with_overrides(db_path=Path(args.db) if args.db else None)
        identity = resolve(args.actor, load_roles(settings.roles_file))
        ctx = Context(settings, identity, args.json, clock)
        return args.func(ctx, args)
    except UsageError as err:
        print(f"synchealth: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except PermissionDeniedError as err:
        print(f"synchealth: refused: {err}", file=sys.stderr)
        return EXIT_FAILED
    except StoreBusyError as err:  # the server holds the file: through its local API, or one line
        from pipelines.serve.state import beside_server

        return beside_server(raw, args.command, getattr(args, "dir", None), settings.db_path, err)
    except (StoreError, ValueError, LookupError, OAuthError, QboCallError) as err:
        print(f"synchealth: {err}", file=sys.stderr)
        return EXIT_FAILED
    except httpx.TransportError as err:
        where = settings.api_base_url if "settings" in locals() else "QuickBooks"
        print(
            f"synchealth: cannot reach {where} ({type(err).__name__}); is `synchealth sandbox` running?",
            file=sys.stderr,
        )
        return EXIT_FAILED
    except KeyboardInterrupt:
        print("synchealth: interrupted; the store is unchanged by the unfinished step", file=sys.stderr)
        return EXIT_FAILED


if __name__ == "__main__":
    raise SystemExit(main())
