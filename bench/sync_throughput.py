"""Benchmark: sync throughput against the sandbox under QBO's real limits, as a fraction of what they allow.

The ceiling comes from the limits the sandbox enforces (`qbo.sandbox.Limits`, ref §4) and the batch size
(`qbo.client.BATCH_MAX_ITEMS`, ref §4): a new record is one item of a batch request, so per sandbox minute

    ceiling = min(batch_per_minute, per_minute[, per_second x 60]) x BATCH_MAX_ITEMS x 60 / window_seconds
            = min(40, 500) x 30 = 1,200 records

(every batch is also a request, so the per-minute request limit bounds batches too; concurrency does not bound a
rate). The records are the demo company's (`write_demo` at about N / 0.8 records): the sandbox holds its names
(accounts, items, vendors, customers, ...) but none of its transactions, so every clean transaction is ready to
be created, and the first N ready records in dependency order are synced in one `sync_run`. Setup (demo, ingest,
pull, check) runs in a child process. The sandbox runs in this process on a clock `--time-scale` times faster than
real time; the client reads that clock and its limiter's waits move it forward instead of sleeping, so a wait
costs no real time and the engine's own work counts at its real duration times the scale.

Printed: records synced per sandbox minute and the ratio to the ceiling (aim: at least 0.9), requests the sandbox
refused as over a limit (aim: 0), and records lost: records sent that do not exist exactly once in QBO, counted by
their source marker through the sandbox's control API (aim: 0).
"""

from __future__ import annotations

import argparse
import inspect
import json
import math
import re
import tempfile
import time
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from bench.common import in_child, peak_gb

__all__ = ["ceiling_per_minute", "main", "setup"]

AS_OF = date(2026, 11, 26)
NOW = datetime(2026, 11, 26, 17, tzinfo=UTC)
_READY_SHARE = 0.8  # about this share of the demo's records is ready when QBO holds none of its transactions
_QBO_TRANSACTIONS = ("PurchaseOrder", "Bill", "Invoice", "Payment", "BillPayment", "JournalEntry")
_MARKER = re.compile(r"awra:([a-z_]+):(\S+):v([0-9]+)")


def _reference(company: dict[str, Any]) -> dict[str, Any]:
    """The company with its names, none of its transactions and no book close date: every clean record can go."""
    prefs = json.loads(json.dumps(company["preferences"]))
    prefs.get("AccountingInfoPrefs", {}).pop("BookCloseDate", None)
    objects = {k: v for k, v in company["objects"].items() if k not in _QBO_TRANSACTIONS}
    return {**company, "objects": objects, "preferences": prefs}


def _settings(folder: Path, realm_id: str, key: str):
    from pipelines.config import Settings

    return Settings(
        db_path=folder / "sync.duckdb",
        realm_id=realm_id,
        qbo_base_url="http://sandbox.local",
        secret_key=key,
        secret_key_file=folder / "secret.key",
    )


# -- setup (in a child process) ------------------------------------------------------------------------------
def setup(n: int, folder: Path, seed: int, key: str) -> dict[str, Any]:
    """Demo company, ingest, a pull from a sandbox holding only its names, the check; the first n ready keys."""
    from pipelines.connection import qbo_client
    from pipelines.demo.company import write_demo
    from pipelines.demo.history import connect_in_process
    from pipelines.ingest import ingest_snapshot
    from pipelines.pull import pull
    from pipelines.readiness import run_check
    from pipelines.store import Store
    from pipelines.sync import TIERS
    from qbo.sandbox import Sandbox, SandboxClock

    clock = time.perf_counter()
    summary = write_demo(folder / "demo", seed=seed, scale=max(200, math.ceil(n / _READY_SHARE)), as_of=AS_OF)
    company = json.loads(summary.company_file.read_text(encoding="utf-8"))
    reference = _reference(company)
    (folder / "reference.json").write_text(json.dumps(reference), encoding="utf-8")
    settings = _settings(folder, company["realm_id"], key)
    sandbox = Sandbox(reference, clock=SandboxClock(start=NOW - timedelta(hours=1)))
    http = httpx.Client(transport=sandbox.transport())
    with Store(settings.db_path) as store:
        ingest_snapshot(store, summary.snapshot_dir, realm_id=settings.realm_id, now=NOW - timedelta(hours=1))
        connect_in_process(settings, store, http, sandbox)
        with qbo_client(settings, store, http=http, sleep=sandbox.clock.advance, clock=sandbox.clock.now) as c:
            pull(store, c, now=NOW - timedelta(hours=1))
        check = run_check(store, settings.realm_id, now=NOW - timedelta(hours=1))
        # Dependency order, so the cut at n never leaves a payment without its invoice or a bill without its vendor.
        order = " ".join(f"WHEN '{e}' THEN {i}" for i, tier in enumerate(TIERS) for e in tier)
        keys = store.rows(
            f"""SELECT entity, record_id FROM records WHERE realm_id = ? AND state = 'ready'
                ORDER BY CASE entity {order} END, entity, record_id LIMIT ?""",
            [settings.realm_id, n],
        )
    http.close()
    return {
        "realm_id": settings.realm_id,
        "demo_records": summary.records,
        "ready": check.ready,
        "keys": [list(k) for k in keys],
        "seconds": time.perf_counter() - clock,
        "peak_gb": peak_gb(),
    }


# -- the measurement -----------------------------------------------------------------------------------------------
def ceiling_per_minute(limits) -> tuple[float, str]:
    """Records per sandbox minute the limits allow with full batches, and the formula with its numbers."""
    from qbo.client import BATCH_MAX_ITEMS

    bounds = {"batch_per_minute": limits.batch_per_minute, "per_minute": limits.per_minute}
    if limits.per_second is not None:
        bounds["per_second x 60"] = limits.per_second * limits.window_seconds
    per_minute = 60.0 / limits.window_seconds
    batches = min(bounds.values())
    formula = f"min({', '.join(f'{k} {v:g}' for k, v in bounds.items())}) x {BATCH_MAX_ITEMS} items per batch" + (
        f" x {per_minute:g}" if per_minute != 1 else ""
    )
    return batches * BATCH_MAX_ITEMS * per_minute, formula


class _LoggingTransport(httpx.BaseTransport):
    """The sandbox's in-process transport; logs each API request's sandbox time and batch size."""

    def __init__(self, inner: httpx.BaseTransport, sandbox_seconds) -> None:
        self.inner, self._seconds = inner, sandbox_seconds
        self.log: list[tuple[float, str, int]] = []  # admitted requests: (sandbox seconds at send, kind, items)
        self.real_seconds = 0.0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        path, at = request.url.path, self._seconds()
        clock = time.perf_counter()
        try:
            response = self.inner.handle_request(request)
        finally:
            self.real_seconds += time.perf_counter() - clock
        if path.startswith("/v3/") and response.status_code != 429:  # a refused request sent nothing
            items = len(json.loads(request.content).get("BatchItemRequest", [])) if path.endswith("/batch") else 0
            self.log.append((at, "batch" if path.endswith("/batch") else "single", items))
        return response


def _in_qbo(http: httpx.Client, realm_id: str, qbo_entities: set[str]) -> Counter:
    """How many live QBO objects carry each record's source marker, read through the sandbox's control API."""
    found: Counter = Counter()
    for entity in sorted(qbo_entities):
        reply = http.get(f"/_sandbox/{realm_id}/entities/{entity}")
        reply.raise_for_status()
        for obj in reply.json():
            if obj.get("status") == "Deleted":
                continue
            match = _MARKER.search(str(obj.get("PrivateNote") or obj.get("Notes") or ""))
            if match:
                found[(match.group(1), match.group(2))] += 1
    return found


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=6_000, help="ready records to sync")
    parser.add_argument("--time-scale", type=float, default=1.0, help="sandbox seconds per real second")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--dir", type=Path, default=None, help="where the demo and DuckDB files go (default: temp)")
    args = parser.parse_args(argv)

    from cryptography.fernet import Fernet

    from pipelines.connection import qbo_client
    from pipelines.demo.history import connect_in_process
    from pipelines.store import Store
    from pipelines.sync import sync_run
    from qbo.client import RateLimiter as ClientLimiter
    from qbo.sandbox import Limits, Sandbox, SandboxClock

    limits = Limits()  # QBO's limits as the sandbox enforces them (ref §4)
    ceiling, formula = ceiling_per_minute(limits)
    client_defaults = {
        name: p.default
        for name, p in inspect.signature(ClientLimiter).parameters.items()
        if name in ("per_minute", "batch_per_minute", "max_in_flight", "window_seconds", "margin_seconds")
    }
    key = Fernet.generate_key().decode()
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        folder = Path(tmp)
        built = in_child(setup, args.records, folder, args.seed, key)
        setup_peak = peak_gb(children=True)
        keys = [tuple(k) for k in built["keys"]]
        print(
            f"demo company {built['demo_records']:,} records, {built['ready']:,} ready; syncing {len(keys):,} "
            f"(asked {args.records:,}); setup {built['seconds']:.1f} s",
            flush=True,
        )
        print(f"ceiling: {formula} = {ceiling:,.0f} records per sandbox minute")
        print(
            "limits: sandbox "
            + ", ".join(f"{k} {v}" for k, v in vars(limits).items())
            + "; client limiter "
            + ", ".join(f"{k} {v}" for k, v in client_defaults.items())
        )

        reference = json.loads((folder / "reference.json").read_text(encoding="utf-8"))
        sandbox = Sandbox(reference, limits=limits, clock=SandboxClock(args.time_scale, start=NOW))
        transport = _LoggingTransport(sandbox.transport(), sandbox.clock.seconds)
        http = httpx.Client(transport=transport, base_url="http://sandbox.local")
        settings = _settings(folder, built["realm_id"], key)
        waited = [0.0]

        def wait(seconds: float) -> None:
            waited[0] += seconds  # a limiter wait: the sandbox clock moves on as if the time had passed
            sandbox.clock.advance(seconds)

        with Store(settings.db_path) as store:
            connect_in_process(settings, store, http, sandbox)  # the child's tokens belong to its own sandbox
            sandbox.clock.advance(limits.window_seconds)  # start with empty rate-limit windows
            before = sandbox.stats()
            transport.log.clear()
            start, real = sandbox.clock.seconds(), time.perf_counter()
            with qbo_client(settings, store, http=http, sleep=wait, clock=sandbox.clock.now) as client:
                result = sync_run(store, client, now=sandbox.clock.now(), trigger="bench", only=keys)
            span, real = sandbox.clock.seconds() - start, time.perf_counter() - real
            after = sandbox.stats()
            sent = store.rows("SELECT DISTINCT entity, record_id FROM sync_attempts WHERE run_id = ?", [result.run_id])
            qbo_entity = dict(
                store.rows("SELECT DISTINCT entity, qbo_entity FROM sync_intents WHERE run_id = ?", [result.run_id])
            )
        found = _in_qbo(http, built["realm_id"], set(qbo_entity.values()))
        http.close()
    peak = peak_gb()

    accepted = result.count("accepted")
    overall = accepted / (span / 60)
    # The windows start empty, so a short run can beat the ceiling (the first minute's burst). Over whole sandbox
    # minutes from the first batch, no 60 s window may hold more than the ceiling, so that ratio is at most 1.
    sends = [(at, n) for at, kind, n in transport.log if kind == "batch"]
    first = sends[0][0] if sends else start
    whole = int((max((at for at, _ in sends), default=first) - first) // 60)
    rate = sum(n for at, n in sends if at < first + 60 * whole) / whole if whole else overall
    ratio = rate / ceiling
    stats = after["realms"].get(built["realm_id"], {})
    over = after["over_limit"] - before["over_limit"]
    lost = sum(1 for k in sent if found[tuple(k)] == 0)
    twice = sum(1 for k in sent if found[tuple(k)] > 1)
    batches = [items for _, kind, items in transport.log if kind == "batch"]
    singles = sum(1 for _, kind, _ in transport.log if kind == "single")
    full = sum(1 for items in batches if items == max(batches, default=0))

    print(
        f"sync_run: {result.planned:,} planned, {dict(result.counts)}, {result.held:,} held, status {result.status}; "
        f"{span:,.1f} sandbox s ({span / 60:.2f} sandbox min) at time scale {args.time_scale:g}, {real:.1f} real s"
    )
    print(
        f"requests: {len(batches):,} batches ({sum(batches):,} items, {sum(batches) / max(len(batches), 1):.1f} per "
        f"batch, {full:,} full), {singles:,} single; most in one window: {stats.get('max_in_window', 0)} requests, "
        f"{stats.get('max_batches_in_window', 0)} batches"
    )
    items: Counter = Counter()
    for at, n in sends:
        items[int((at - first) // 60)] += n
    if items:
        per = ", ".join(f"{m}: {items[m]:,}" for m in sorted(items))
        print(f"records sent in each sandbox minute from the first batch (minute: batch items): {per}")
    own = real - transport.real_seconds
    print(
        f"where the time went: limiter waits {waited[0]:,.1f} sandbox s (no real time); the engine's own work "
        f"{own:.1f} real s and the sandbox's {transport.real_seconds:.1f} real s, x {args.time_scale:g} = "
        f"{real * args.time_scale:,.1f} sandbox s; engine alone: {accepted / real:,.1f} records per real s = "
        f"{accepted / real * 60 / args.time_scale:,.0f} per sandbox minute at this scale"
    )
    bound = "the limits (the limiter waited)" if waited[0] > 0.1 * span else "the engine's own work (not the limits)"
    print(f"bound by: {bound}")
    measured = (
        f"over the {whole} whole sandbox minutes from the first batch"
        if whole
        else ("over the whole run, shorter than a sandbox minute (its windows started empty: not a steady rate)")
    )
    print(f"records per sandbox minute: {overall:,.0f} over the run ({accepted:,} accepted); {rate:,.0f} {measured}")
    print(
        f"ratio: {rate:,.0f} records per sandbox minute / ceiling {ceiling:,.0f} = {ratio:.2f} (aim: at least 0.9) "
        f"-> {'met' if ratio >= 0.9 else 'NOT met'}"
    )
    print(
        f"over the limits: {over} requests refused by the sandbox (throttled {stats.get('throttled', {})}; aim 0); "
        f"records lost: {lost} of {len(sent):,} sent not in QBO, {twice} in QBO more than once (aim 0)"
    )
    print(f"peak RSS: {peak:.2f} GB measuring (sync and in-process sandbox), {setup_peak:.2f} GB setup child")


if __name__ == "__main__":
    main()
