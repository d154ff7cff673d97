"""Demo history: the real engine run over simulated weeks, so that a fresh demo already shows trends.

Nothing here invents a number. The demo company (`write_demo`) is released to the engine as AWRA would have
delivered it: a record arrives when it was last updated, people approve or post some held records days later
and an admin maps a few missing values each week. The sandbox injects transport faults (one week is a bad
QuickBooks week), a QuickBooks user deletes a synced bill, and every cycle runs the real ingest, pull, check
and sync with the engine's clock and the sandbox clock moved together.

`write_demo` dates everything relative to its `as_of`, so a later `as_of` with the same seed is not a superset
of an earlier one; the history therefore writes the demo once, at its last day, and releases it over time.

Run it with `python -m pipelines.demo.history --dir data/demo` (settings from the environment as for the CLI).
"""

from __future__ import annotations

import argparse
import difflib
import random
import shutil
import sys
import time as clock
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import polars as pl

from pipelines.clock import Clock, system_clock
from pipelines.commands import Caller, Commands
from pipelines.config import Settings, load_settings
from pipelines.connection import qbo_client
from pipelines.demo.company import NOT_APPROVED, NOT_POSTED, DemoSummary, write_demo
from pipelines.identity import Identity
from pipelines.mappings import KINDS, gap_inventory
from pipelines.store import Store
from pipelines.views.metrics import RECORD_FACTS
from qbo.oauth import OAuthClient, authorize_url, new_state
from qbo.sandbox import Sandbox, SandboxClock
from qbo.sandbox.store import COMPANY_FORMAT
from qbo.sandbox.wire import dumps, loads
from qbo.tokens import TokenStore
from schemas.awra import CONTRACT
from schemas.manifest import MANIFEST_FILE, Manifest, manifest_json

__all__ = [
    "BAD_WEEK_FAULTS",
    "DEFAULT_FAULTS",
    "HistoryPlan",
    "HistoryResult",
    "build_history",
    "connect_in_process",
    "export_company",
    "main",
    "plan_history",
    "write_history_demo",
]

ADMIN = Identity("admin@demo.local", "admin")
FINANCE = Identity("finance@demo.local", "finance")
# Faults on writes only (a pull is never faulted here): a few percent of requests, and one bad week.
# A write answered 5xx is resent once by the client, so a bad week needs high rates to leave failures behind.
DEFAULT_FAULTS = (
    "connection_reset@write=0.05,http_500@write=0.05,timeout_after_commit@write=0.03,throttle_429_xml@write=0.02"
)
BAD_WEEK_FAULTS = "http_503_html@write=0.5,connection_reset@write=0.15,timeout_after_commit@write=0.05"
CYCLE_HOUR = 17  # 09:00 on the US west coast, where the demo company keeps office hours
_FIX_SHARE = 0.6  # of the records held as not approved or not posted, the share a person fixes in the window
_PARTY_TABLES = ("vendors", "customers", "items", "accounts")
Progress = Callable[[str], None]


@dataclass(frozen=True)
class HistoryPlan:
    """What AWRA holds at any moment of the window: each header row with its arrival, and the later fixes."""

    start: datetime
    end: datetime
    cycles: tuple[datetime, ...]
    headers: dict[str, pl.DataFrame]  # table -> rows with `_arrives` (UTC datetime)
    fixes: dict[str, pl.DataFrame]  # table -> fixed rows with `_fixed_at`
    lines: dict[str, pl.DataFrame]
    masters: dict[str, pl.DataFrame]

    def snapshot_at(self, at: datetime, folder: Path, since: datetime | None = None) -> Path:
        """Write the snapshot AWRA would export at `at` (parquet) into `folder`; returns the folder.

        With `since` (the time of the snapshot before) it is a delta, as AWRA sends between full exports: only the
        records that arrived or were fixed after `since`, whole. The demo's masters and records never leave AWRA,
        so a delta here lists no removals."""
        folder.mkdir(parents=True, exist_ok=True)
        if since is None:
            for name, frame in self.masters.items():
                frame.write_parquet(folder / f"{name}.parquet")
        kept: dict[str, pl.Series] = {}
        for name, frame in self.headers.items():
            table = CONTRACT[name]
            rows = frame.filter(pl.col("_arrives") <= at)
            fixed = self.fixes[name].filter(pl.col("_fixed_at") <= at)
            if fixed.height:
                rows = pl.concat(
                    [
                        rows.join(fixed.select(table.record_id), on=table.record_id, how="anti"),
                        fixed.join(rows.select(table.record_id, "_arrives"), on=table.record_id).drop("_fixed_at"),
                    ]
                )
            if since is not None:
                fixed_since = fixed.filter(pl.col("_fixed_at") > since).select(table.record_id)
                rows = pl.concat(
                    [rows.filter(pl.col("_arrives") > since), rows.join(fixed_since, on=table.record_id, how="semi")]
                ).unique(table.record_id, keep="first", maintain_order=True)
            rows.drop("_arrives").write_parquet(folder / f"{name}.parquet")
            kept[name] = rows[table.record_id]
        for name, frame in self.lines.items():
            header = CONTRACT[name].parent
            assert header is not None  # a lines table always names its header table
            parent = CONTRACT[header]
            ids = kept[parent.name].to_frame(parent.record_id)
            frame.join(ids, on=parent.record_id, how="semi").write_parquet(folder / f"{name}.parquet")
        kind = "full" if since is None else "delta"
        base = None if since is None else _snapshot_id(since)
        (folder / MANIFEST_FILE).write_text(manifest_json(Manifest(kind, _snapshot_id(at), base)))
        return folder


def _snapshot_id(at: datetime) -> str:
    """The id AWRA gives the snapshot it exports at `at`."""
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class HistoryResult:
    """What the history did, counted from the engine's own results."""

    start: datetime
    end: datetime
    cycles: int = 0
    ingests: dict[str, int] = field(default_factory=dict)
    sent: dict[str, int] = field(default_factory=dict)
    mappings_fixed: list[str] = field(default_factory=list)
    created_despite_duplicate: list[str] = field(default_factory=list)
    connection_lost_at: datetime | None = None
    deleted_in_qbo: list[str] = field(default_factory=list)
    refused_by_qbo: list[str] = field(default_factory=list)
    seconds: float = 0.0


def _timestamps(frame: pl.DataFrame, column: str) -> pl.Expr:
    return pl.col(column).cast(pl.String).str.to_datetime(time_zone="UTC", time_unit="us")


def _cycle_times(end: datetime, weeks: int, per_week: int) -> tuple[datetime, ...]:
    """Cycles spread over the weeks at whole days, the last one at `end`."""
    days = sorted({round(k * 7 / per_week) for k in range(weeks * per_week + 1)}, reverse=True)
    return tuple(end - timedelta(days=d) for d in days)


def plan_history(summary: DemoSummary, weeks: int, end: datetime, *, per_week: int = 3, seed: int = 7) -> HistoryPlan:
    """Release the written demo over `weeks` ending at `end`: arrivals by `updated_at`, and people's fixes."""
    if weeks < 1 or per_week < 1:
        raise ValueError("weeks and cycles per week must be at least 1")
    start = end - timedelta(days=7 * weeks)
    folder = summary.snapshot_dir
    read = {name: pl.read_parquet(folder / f"{name}.parquet") for name in CONTRACT}
    masters = {name: read[name] for name in _PARTY_TABLES}
    headers, lines, fixes = {}, {}, {}
    rng = random.Random(seed)
    held = {
        key.partition(":")[2]
        for reason in (NOT_APPROVED, NOT_POSTED)
        for key in summary.problems.get(reason, ())
        if rng.random() < _FIX_SHARE
    }
    for name, table in CONTRACT.items():
        if name in _PARTY_TABLES:
            continue
        if table.is_lines:
            lines[name] = read[name]
            continue
        frame = read[name].with_columns(_timestamps(read[name], "updated_at").alias("_arrives"))
        # Everything last changed before the window arrived with the first snapshot.
        frame = frame.with_columns(pl.max_horizontal(pl.col("_arrives"), pl.lit(start)).alias("_arrives"))
        headers[name] = frame
        # A person approves (or posts) the record some days after it arrived; rejected ones stay rejected.
        candidates = frame.filter(
            pl.col(table.record_id).is_in(list(held))
            & (pl.col("approval_status") != "rejected")
            & (pl.col("_arrives") < end - timedelta(days=3))
        )
        delays = [timedelta(days=rng.uniform(2, 12), hours=rng.uniform(0, 8)) for _ in range(candidates.height)]
        fixed = candidates.with_columns(
            pl.Series(
                "_fixed_at",
                [min(a + d, end - timedelta(hours=2)) for a, d in zip(candidates["_arrives"], delays, strict=True)],
                dtype=pl.Datetime("us", "UTC"),
            ),
        )
        fixed = fixed.with_columns(
            pl.lit("approved").alias("approval_status"),
            pl.lit("posted").alias("posting_status"),
            pl.col("_fixed_at").dt.strftime("%Y-%m-%dT%H:%M:%SZ").alias("updated_at"),
        )
        fixes[name] = fixed.drop("_arrives")
        headers[name] = frame
    return HistoryPlan(start, end, _cycle_times(end, weeks, per_week), headers, fixes, lines, masters)


def _arrivals(plan: HistoryPlan) -> dict[tuple[str, str], datetime]:
    out = {}
    for name, frame in plan.headers.items():
        table = CONTRACT[name]
        for record_id, arrives in frame.select(table.record_id, "_arrives").iter_rows():
            out[(table.entity, record_id)] = arrives
    return out


def history_company(company_file: Path, plan: HistoryPlan) -> dict:
    """The QuickBooks company as it was when the window opened: our objects for later records are not there yet."""
    doc = loads(company_file.read_bytes())
    arrivals = _arrivals(plan)
    for entity, rows in doc.get("objects", {}).items():
        keep = []
        for obj in rows:
            note = str(obj.get("PrivateNote") or obj.get("Notes") or "")
            parts = note.split(":")
            if len(parts) >= 4 and parts[0] == "awra":
                arrives = arrivals.get((parts[1], ":".join(parts[2:-1])))
                if arrives is not None and arrives > plan.start:
                    continue
            keep.append(obj)
        doc["objects"][entity] = keep
    return doc


def export_company(sandbox: Sandbox, realm_id: str, path: Path) -> Path:
    """Write the sandbox's realm as a company file, deleted objects included, so a served sandbox goes on from it."""
    realm = sandbox.realm(realm_id)
    objects = {
        entity: realm.every(entity) for entity in sorted(realm.objects) if entity not in ("CompanyInfo", "Preferences")
    }
    doc = {
        "format": COMPANY_FORMAT,
        "realm_id": realm_id,
        "company_info": realm.company_info,
        "preferences": realm.preferences,
        "objects": objects,
    }
    partial = path.with_name(path.name + ".partial")
    partial.write_bytes(dumps(doc))
    partial.replace(path)
    return path


def _names(store: Store, realm_id: str, kind: str) -> dict[str, str]:
    """AWRA's own names for the values of a kind (items and accounts have them), to match QuickBooks names."""
    spec = KINDS[kind].awra_names if kind in KINDS else None
    if spec is None:
        return {}
    view, id_col, name_col = spec
    return dict(store.rows(f"SELECT {id_col}, {name_col} FROM cur_{view} WHERE realm_id = ?", [realm_id]))


def _pick_target(store: Store, realm_id: str, kind: str, value: str, name: str | None) -> str | None:
    """The active QuickBooks object an admin would pick: the one whose name reads most like the value."""
    entities = KINDS[kind].qbo_entities if kind in KINDS else (kind.capitalize(),)
    marks = ", ".join("?" for _ in entities)
    choices = store.rows(
        f"""SELECT qbo_id, name FROM qbo_objects WHERE realm_id = ? AND entity IN ({marks}) AND active AND NOT deleted
            AND name IS NOT NULL ORDER BY name""",
        [realm_id, *entities],
    )
    if not choices:
        return None
    wanted = (name or value).lower()
    best = max(choices, key=lambda c: (difflib.SequenceMatcher(None, wanted, c[1].lower()).ratio(), c[1]))
    return best[0]


def _review_mappings(commands: Commands, store: Store, realm_id: str, now: datetime, how_many: int) -> list[str]:
    """An admin's weekly review: map the gaps that block the most money (a suggestion when there is one)."""
    gaps = gap_inventory(store, realm_id)
    done = []
    for gap in gaps.filter(pl.col("kind").is_in(list(KINDS))).head(how_many).iter_rows(named=True):
        target = gap["suggestion_id"] or _pick_target(
            store, realm_id, gap["kind"], gap["awra_value"], _names(store, realm_id, gap["kind"]).get(gap["awra_value"])
        )
        if target is None:
            continue
        outcome = commands.map(
            Caller(ADMIN, realm_id, lambda: now),
            gap["kind"],
            gap["awra_value"],
            target,
            reason="weekly mapping review (demo history)",
        )
        if outcome.ok:
            done.append(f"{gap['kind']} {gap['awra_value']} -> {target} ({outcome.data['now_ready']} records freed)")
    return done


def _overrule_a_duplicate(commands: Commands, store: Store, realm_id: str, now: datetime) -> str | None:
    """A finance user decides the biggest possible duplicate is new after all (QuickBooks may then refuse it)."""
    row = store.rows(
        """SELECT entity, record_id FROM findings
           WHERE run_id = (SELECT max(run_id) FROM check_runs WHERE realm_id = ?) AND dimension = 'duplicate_risk'
           ORDER BY amount DESC NULLS LAST, entity, record_id LIMIT 1""",
        [realm_id],
    )
    if not row:
        return None
    key = f"{row[0][0]}:{row[0][1]}"
    done = commands.create_new(
        Caller(FINANCE, realm_id, lambda: now), key, reason="looks different to me (demo history)"
    )
    return key if done.ok else None


def _delete_a_synced_bill(store: Store, sandbox: Sandbox, realm_id: str) -> str | None:
    """A QuickBooks user deletes a bill the sync created (the control totals must then show the drift)."""
    row = store.rows(
        """SELECT record_id, qbo_id FROM external_refs WHERE realm_id = ? AND entity = 'bill' AND linked_by = 'sync'
           ORDER BY linked_at DESC, record_id LIMIT 1""",
        [realm_id],
    )
    if not row:
        return None
    sandbox.user_delete(realm_id, "Bill", row[0][1])
    return f"bill:{row[0][0]} (QuickBooks Bill {row[0][1]})"


# The vendor of one bill that the next send will carry, and of nothing else waiting: made inactive by a QuickBooks user,
# QuickBooks refuses that bill alone.
_LONE_READY_BILL = f"""
WITH ready AS (
  SELECT f.entity, f.record_id, f.party_id, f.amount FROM ({RECORD_FACTS}) f
  JOIN records r ON r.realm_id = f.realm_id AND r.entity = f.entity AND r.record_id = f.record_id
  WHERE f.realm_id = $realm AND r.state = 'ready' AND r.removed_at IS NULL
    AND f.entity IN ('purchase_order', 'bill', 'bill_payment')),
lone AS (SELECT party_id FROM ready GROUP BY party_id HAVING count(*) = 1),
vendors AS (
  SELECT record_id AS vendor_id, qbo_id FROM external_refs WHERE realm_id = $realm AND entity = 'vendor'
  UNION SELECT awra_value, qbo_id FROM mappings
  WHERE realm_id = $realm AND kind = 'vendor' AND status = 'active' AND qbo_id IS NOT NULL)
SELECT b.record_id, min(v.qbo_id) FROM ready b
JOIN lone USING (party_id) JOIN vendors v ON v.vendor_id = b.party_id
WHERE b.entity = 'bill'
GROUP BY b.record_id, b.amount ORDER BY b.amount DESC, b.record_id LIMIT 1"""


def _make_a_vendor_inactive_before_a_send(
    commands: Commands, store: Store, sandbox: Sandbox, caller: Caller
) -> str | None:
    """Between the pull and the send, a QuickBooks user makes inactive the vendor of one bill about to go: the send
    carries a reference QuickBooks no longer accepts and QuickBooks refuses that bill (what the admin then fixes)."""
    commands.check(caller)  # what is ready now, as the cycle's own check will find it
    row = store.rows(_LONE_READY_BILL, {"realm": caller.realm_id})
    if not row:
        return None
    bill, vendor = row[0]
    sandbox.user_patch(caller.realm_id, "Vendor", vendor, {"Active": False})
    return f"bill:{bill} (QuickBooks Vendor {vendor} made inactive)"


def _stopped_at(moment: datetime) -> Clock:
    """A clock that always answers `moment`: a cycle's commands all happen at its planned time."""
    return lambda: moment


def connect_in_process(settings: Settings, store: Store, http: httpx.Client, sandbox: Sandbox) -> None:
    """OAuth against the in-process sandbox, stamped with the sandbox's clock (connection.connect uses the wall's)."""
    state = new_state()
    answer = http.get(authorize_url(settings, state), follow_redirects=False)
    callback = parse_qs(urlsplit(answer.headers["location"]).query)
    if callback.get("state", [""])[0] != state:
        raise RuntimeError("the sandbox's OAuth callback carried another state")
    oauth = OAuthClient(settings, TokenStore(store, settings), http=http, clock=sandbox.clock.now)
    oauth.exchange_code(callback["code"][0], callback["realmId"][0], connected_by=ADMIN.email)


def build_history(
    store: Store,
    sandbox: Sandbox,
    weeks: int = 6,
    *,
    plan: HistoryPlan,
    company_file: Path,
    settings: Settings,
    work_dir: Path,
    faults: str = DEFAULT_FAULTS,
    bad_week_faults: str = BAD_WEEK_FAULTS,
    mapping_fixes_per_week: int = 2,
    seed: int = 7,
    progress: Progress | None = None,
) -> HistoryResult:
    """Run the real cycle at every planned moment of the window, clocks together; returns what happened.

    `store` must be empty and `sandbox` in-process (its clock is moved with the engine's). `settings` points the
    client at the sandbox (`qbo_base_url` http://sandbox.local) and holds the key the tokens are encrypted with.
    """
    say = progress or (lambda _message: None)
    started = clock.perf_counter()
    realm_id = settings.realm_id
    if weeks != round((plan.end - plan.start).days / 7):
        raise ValueError(f"the plan covers {(plan.end - plan.start).days} days, not {weeks} weeks")
    sandbox.load_company(history_company(company_file, plan))
    http = httpx.Client(transport=sandbox.transport())

    def sleep(seconds: float) -> None:  # a client's back-off moves the sandbox's clock on instead of waiting
        sandbox.clock.advance(seconds)

    commands = Commands(
        store,
        settings,
        client_factory=lambda realm, _clock: qbo_client(
            settings, store, realm, http=http, sleep=sleep, clock=sandbox.clock.now
        ),
    )
    result = HistoryResult(plan.start, plan.end)
    bad_week = weeks // 2
    outage = max(weeks - 2, 1)  # the week the connection is lost for one cycle (tokens revoked in QuickBooks)
    reconnect_due = False
    try:
        for i, at in enumerate(plan.cycles):
            lag = (at - sandbox.clock.now()).total_seconds()
            if lag > 0:
                sandbox.clock.advance(lag)  # the sandbox's clock follows the engine's
            week = (at - plan.start).days // 7
            new_week = i > 0 and week > (plan.cycles[i - 1] - plan.start).days // 7
            if i == 0 or reconnect_due:
                connect_in_process(
                    settings, store, http, sandbox
                )  # after the outage an admin reconnects at the next cycle
                reconnect_due = False
            if new_week and week == outage and result.connection_lost_at is None:
                sandbox.expire_tokens(realm_id, refresh=True)
                result.connection_lost_at, reconnect_due = at, True
            sandbox.set_faults(bad_week_faults if week == bad_week else faults, seed=seed * 1000 + i)
            # The first export is full; after it AWRA sends what changed since the one before.
            folder = plan.snapshot_at(at, work_dir / "snapshot", since=plan.cycles[i - 1] if i else None)
            system = Caller.system(realm_id, _stopped_at(at))
            ingest = commands.ingest(system, folder)
            if not ingest.ok:
                raise RuntimeError(f"the demo snapshot of {at:%Y-%m-%d} was refused: {ingest.message}")
            for key in ("new", "changed"):
                result.ingests[key] = result.ingests.get(key, 0) + ingest.data[key]
            shutil.rmtree(folder)
            # A pull QuickBooks refuses (the realm needs reconnecting) is that cycle's news: the check runs, the
            # sync pauses, and the page says why.
            commands.pull(system)
            if new_week:
                result.mappings_fixed += _review_mappings(commands, store, realm_id, at, mapping_fixes_per_week)
                overruled = _overrule_a_duplicate(commands, store, realm_id, at)
                result.created_despite_duplicate += [overruled] if overruled else []
            last_cycle = i == len(plan.cycles) - 1
            refusal = _make_a_vendor_inactive_before_a_send(commands, store, sandbox, system) if last_cycle else None
            cycle = commands.cycle(system)
            if not cycle.ok:
                raise RuntimeError(f"the demo cycle of {at:%Y-%m-%d %H:%M} failed: {cycle.message}")
            counts = cycle.data.get("sent") or {}
            for outcome, n in counts.items():
                result.sent[outcome] = result.sent.get(outcome, 0) + n
            result.cycles += 1
            result.refused_by_qbo += [refusal] if refusal else []
            if week == bad_week + 1 and not result.deleted_in_qbo:
                deleted = _delete_a_synced_bill(store, sandbox, realm_id)
                result.deleted_in_qbo += [deleted] if deleted else []
            outcomes = ", ".join(f"{k} {v}" for k, v in counts.items())
            say(
                f"{at:%Y-%m-%d %H:%M} cycle {i + 1}/{len(plan.cycles)}: {ingest.data['new']:,} new, "
                f"{ingest.data['changed']:,} changed; sent {sum(counts.values()):,} ({outcomes})"
            )
    finally:
        sandbox.set_faults(None)
        http.close()
    result.seconds = clock.perf_counter() - started
    return result


def _end_time(as_of: date | None, now: datetime) -> datetime:
    """The last cycle: the as-of day at 09:00 west-coast time, and never in the future of `now`."""
    day = as_of or now.date()
    end = datetime.combine(day, time(CYCLE_HOUR), tzinfo=UTC)
    while end > now:
        end -= timedelta(days=1)
    return end


def write_history_demo(
    out_dir: Path,
    settings: Settings,
    *,
    now: datetime,
    weeks: int = 6,
    seed: int = 7,
    scale: int | None = 6000,
    as_of: date | None = None,
    per_week: int = 3,
    progress: Progress | None = None,
) -> HistoryResult:
    """The demo with history: write the company, run the engine over the weeks into `settings.db_path`, then leave
    out_dir/awra (the last snapshot) and out_dir/qbo-company.json (QuickBooks as the history left it)."""
    say = progress or (lambda _message: None)
    end = _end_time(as_of, now)
    summary = write_demo(out_dir, seed=seed, scale=scale, as_of=end.date(), fmt="parquet")
    plan = plan_history(summary, weeks, end, per_week=per_week, seed=seed)
    say(f"demo written ({summary.records:,} records); {len(plan.cycles)} cycles from {plan.start:%Y-%m-%d}")
    local = replace(settings, qbo_env="local", qbo_base_url="http://sandbox.local")
    sandbox = Sandbox(clock=SandboxClock(start=plan.start - timedelta(hours=1)))
    with Store(local.db_path) as store:
        if store.scalar("SELECT count(*) FROM records"):
            raise ValueError(f"the store {local.db_path} already holds records; the history needs an empty one")
        result = build_history(
            store,
            sandbox,
            weeks,
            plan=plan,
            company_file=summary.company_file,
            settings=local,
            work_dir=out_dir / "history-work",
            seed=seed,
            progress=say,
        )
    shutil.rmtree(out_dir / "history-work", ignore_errors=True)
    shutil.rmtree(summary.snapshot_dir)
    plan.snapshot_at(plan.end, summary.snapshot_dir)
    export_company(sandbox, local.realm_id, summary.company_file)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipelines.demo.history", description=__doc__.splitlines()[0])
    parser.add_argument("--dir", default="data/demo", help="where the snapshot and company file are left")
    parser.add_argument(
        "--db", default=None, help="the store to fill (default: SYNCHEALTH_DB or data/synchealth.duckdb)"
    )
    parser.add_argument("--weeks", type=int, default=6)
    parser.add_argument("--per-week", type=int, default=3, help="cycles per simulated week")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--scale", type=int, default=6000, help="about N records in total")
    parser.add_argument("--as-of", default=None, help="the last simulated day (YYYY-MM-DD); default today")
    args = parser.parse_args(argv)
    settings = load_settings()
    if args.db:
        settings = replace(settings, db_path=Path(args.db))
    if settings.db_path.exists():
        print(f"{settings.db_path} exists; remove it first (the history fills an empty store)", file=sys.stderr)
        return 2
    result = write_history_demo(
        Path(args.dir),
        settings,
        now=system_clock(),
        weeks=args.weeks,
        seed=args.seed,
        scale=args.scale,
        as_of=date.fromisoformat(args.as_of) if args.as_of else None,
        per_week=args.per_week,
        progress=lambda message: print(message, flush=True),
    )
    print(
        f"history {result.start:%Y-%m-%d} to {result.end:%Y-%m-%d}: {result.cycles} cycles in {result.seconds:.0f} s; "
        f"sent {result.sent}; mappings fixed: {len(result.mappings_fixed)}; deleted in QuickBooks: "
        f"{', '.join(result.deleted_in_qbo) or 'none'}; "
        f"refused by QuickBooks: {', '.join(result.refused_by_qbo) or 'none'}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
