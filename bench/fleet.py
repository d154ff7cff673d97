"""Benchmark: the fleet's throughput with 1, 2 and 4 worker processes over many companies, where each company's
QuickBooks limits bind, and where the machine becomes the bound.

One local fleet (`pipelines.fleet.local`): a private PostgreSQL cluster and the sandbox in their own processes. The
companies are seeded once (the demo's smallest company, about 430 AWRA records, ingested for each realm) into a
template database; each run starts from a copy of it (`CREATE DATABASE ... TEMPLATE`), with the sandbox reset, every
company loaded again (names only, books open: every clean record is still to send) and connected. Then N `synchealth
worker` processes (concurrency 1) take the companies' cycles (pull, check, sync, queue) for `--seconds`, every
company's cycle deferred every two seconds (one waiting per company at most).

The sandbox runs `--time-scale` times faster with per-realm limits tighter than QuickBooks' (`--limits`; the workers
count against the same limits in their shared limiter), so one company's sync waits on its own limits: one worker can
go no faster than one company's limits allow, and more workers help only by running more companies at once. The CPU
(all cores, from /proc/stat) and the load average are sampled through each run: where the 2 cores are busy, the
machine is the bound, not the limits.

Printed: per worker count, records synced per minute, the ratio to one worker, the machine's CPU busy share and load;
requests over a limit in the sandbox (aim: 0). Run: `python -m bench.fleet` (defaults: 50 companies, 1, 2, 4 and
8 workers, 120 s each).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import psycopg

__all__ = ["main"]


def _cpu() -> tuple[int, int]:
    """(busy, total) jiffies of all cores since boot."""
    fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + fields[4]
    return sum(fields) - idle, sum(fields)


def _cpu_of(pids: list[int]) -> float:
    """CPU seconds (user + system) these processes have used so far (those that ended meanwhile count nothing)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / tick


def _copy_database(admin_url: str, template: str, name: str) -> None:
    with psycopg.connect(admin_url, autocommit=True) as con:
        con.execute(f'DROP DATABASE IF EXISTS "{name}"')
        con.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')


def _synced(url: str) -> int:
    with psycopg.connect(url) as con:
        row = con.execute("SELECT count(*) FROM records WHERE state = 'synced'").fetchone()
        return int(row[0]) if row else 0


def _run(fleet: Any, realms: list[str], workers: int, seconds: float, template_url: str) -> dict[str, Any]:
    from pipelines.fleet.local import Queue
    from pipelines.fleet.worker import defer_all

    assert fleet.cluster is not None
    name = f"run{workers}"
    _copy_database(fleet.cluster.url, "synchealth", name)
    fleet.url = fleet.cluster.database_url(name)
    httpx.post(f"{fleet.sandbox_url}/_sandbox/reset", timeout=60).raise_for_status()
    fleet.connect(realms)
    start_synced = _synced(fleet.url)
    procs = [fleet.start_worker() for _ in range(workers)]
    samples: list[tuple[float, int]] = []
    loads: list[float] = []
    try:
        with Queue(fleet.url) as app:
            busy0, total0 = _cpu()
            pids = fleet.pids()
            own0 = _cpu_of(pids)
            t0 = time.monotonic()
            while time.monotonic() - t0 < seconds:
                defer_all(app, fleet.url)
                samples.append((time.monotonic() - t0, _synced(fleet.url) - start_synced))
                loads.append(os.getloadavg()[0])
                time.sleep(2.0)
            elapsed = time.monotonic() - t0
            busy1, total1 = _cpu()
            own = (_cpu_of(pids + [p for p in fleet.pids() if p not in pids]) - own0) / elapsed / (os.cpu_count() or 1)
            synced = _synced(fleet.url) - start_synced
    finally:
        for proc in procs:
            fleet.kill_worker(proc)
    stats = httpx.get(f"{fleet.sandbox_url}/_sandbox/stats", timeout=60).json()
    throttled = sum(sum(r["throttled"].values()) for r in stats["realms"].values())
    return {
        "workers": workers,
        "synced": synced,
        "per_minute": synced / elapsed * 60,
        "cpu": (busy1 - busy0) / max(total1 - total0, 1),
        "fleet_cpu": own,
        "load": sum(loads) / max(len(loads), 1),
        "over_limit": stats["over_limit"],
        "throttled": throttled,
        "realms_touched": sum(1 for r in stats["realms"].values() if r["requests"]),
        "max_batches_in_window": max((r["max_batches_in_window"] for r in stats["realms"].values()), default=0),
        "samples": samples,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.fleet", description=__doc__.split("\n\n")[0])
    parser.add_argument("--realms", type=int, default=50)
    parser.add_argument("--workers", default="1,2,4,8", help="worker counts, comma-separated")
    parser.add_argument("--seconds", type=float, default=120.0, help="measured seconds per worker count")
    parser.add_argument("--time-scale", type=float, default=6.0)
    parser.add_argument("--limits", default="per_minute=100,batch_per_minute=4,max_concurrent=10")
    parser.add_argument("--dir", help="work folder (default: a temporary one)")
    args = parser.parse_args(argv)

    from pipelines.fleet.local import LocalFleet, realm_ids

    folder = Path(args.dir or tempfile.mkdtemp(prefix="synchealth-bench-fleet-"))
    realms = realm_ids(args.realms)
    counts = [int(n) for n in args.workers.split(",")]
    fleet = LocalFleet(
        folder,
        workers=0,
        server=False,
        time_scale=args.time_scale,
        limits=args.limits,
        retry_schedule=",".join(["1"] * 10),
        sandbox_options=("--retry-after", "1"),
    )
    results = []
    try:
        t = time.monotonic()
        fleet.start()
        fleet.seed(realms, scale=40)
        template = fleet.url
        print(
            f"setup: {args.realms} companies seeded in {time.monotonic() - t:.0f} s; sandbox time scale "
            f"{args.time_scale:g}, per-realm limits {args.limits} (per sandbox minute = "
            f"{60 / args.time_scale:g} real s); {os.cpu_count()} cores; load before: {os.getloadavg()}",
            flush=True,
        )
        with psycopg.connect(fleet.cluster.url if fleet.cluster else template, autocommit=True) as con:
            con.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = 'synchealth'")
        for n in counts:
            result = _run(fleet, realms, n, args.seconds, template)
            results.append(result)
            print(
                f"{n} workers: {result['synced']:,} records in {args.seconds:.0f} s = {result['per_minute']:,.0f} per "
                f"minute; CPU: the fleet's processes {result['fleet_cpu']:.0%} of {os.cpu_count()} cores, the machine "
                f"{result['cpu']:.0%}, load {result['load']:.1f}; "
                f"{result['realms_touched']} companies reached; over limit {result['over_limit']}, throttled "
                f"{result['throttled']}, max batches in a window {result['max_batches_in_window']}",
                flush=True,
            )
    finally:
        fleet.stop()
    base = results[0]["per_minute"] if results and results[0]["per_minute"] else None
    print("\nworkers | records/min | vs 1 worker | fleet CPU | machine CPU | load | over limit")
    for r in results:
        ratio = f"{r['per_minute'] / base:.2f}x" if base else "-"
        print(
            f"{r['workers']:>7} | {r['per_minute']:>11,.0f} | {ratio:>11} | {r['fleet_cpu']:>9.0%} | "
            f"{r['cpu']:>11.0%} | {r['load']:>4.1f} | {r['over_limit']}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
