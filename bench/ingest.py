"""Benchmark: ingest of a 1M-record snapshot (CSV and Parquet); re-ingest unchanged and with 1% changed."""

from __future__ import annotations

import argparse
import resource
import shutil
import tempfile
import time
from datetime import date
from pathlib import Path

import polars as pl

from pipelines.clock import system_clock
from pipelines.demo.company import write_demo
from pipelines.ingest import ingest_snapshot
from pipelines.store import Store
from schemas.awra import CONTRACT

__all__ = ["main"]

REALM = "bench-realm"


def _changed_copy(src: Path, dst: Path, fmt: str, share: float) -> int:
    """The same snapshot with `share` of every header table's records edited (their owner field)."""
    dst.mkdir(parents=True, exist_ok=True)
    changed = 0
    for name, table in CONTRACT.items():
        path = src / f"{name}.{fmt}"
        frame = pl.read_csv(path, infer_schema=False) if fmt == "csv" else pl.read_parquet(path)
        column = next((c for c in ("owner", "name") if c in frame.columns), None)
        if column and not table.is_lines and frame.height:
            every = max(int(1 / share), 1)
            pick = pl.int_range(pl.len()) % every == 0
            frame = frame.with_columns(
                pl.when(pick).then(pl.lit("edited@bench")).otherwise(pl.col(column)).alias(column)
            )
            changed += frame.height // every + (1 if frame.height % every else 0)
        target = dst / f"{name}.{fmt}"
        frame.write_csv(target) if fmt == "csv" else frame.write_parquet(target)
    return changed


def _timed(store: Store, folder: Path) -> tuple[float, object]:
    start = time.perf_counter()
    result = ingest_snapshot(store, folder, realm_id=REALM, now=system_clock())
    return time.perf_counter() - start, result


def run(records: int, fmt: str, work: Path) -> None:
    demo = write_demo(work / f"demo-{fmt}", seed=7, scale=records, as_of=date(2026, 11, 26), fmt=fmt)
    rows = sum(demo.counts.values())
    changed_dir = work / f"changed-{fmt}"
    changed = _changed_copy(demo.snapshot_dir, changed_dir, fmt, 0.01)
    store = Store(work / f"bench-{fmt}.duckdb")
    first, r1 = _timed(store, demo.snapshot_dir)
    again, r2 = _timed(store, demo.snapshot_dir)
    delta, r3 = _timed(store, changed_dir)
    store.close()
    print(f"{fmt}: {records:,} records, {rows:,} rows")
    print(f"  first ingest       {first:7.2f} s   {rows / first:12,.0f} rows/s   ({r1.new:,} new)")
    print(f"  unchanged again    {again:7.2f} s   {again / first:6.1%} of the first  ({r2.status})")
    print(
        f"  1% changed         {delta:7.2f} s   {delta / first:6.1%} of the first  ({r3.changed:,} changed, "
        f"{changed:,} edited)"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--formats", nargs="+", default=["csv", "parquet"], choices=["csv", "parquet", "jsonl"])
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="bench-ingest-"))
    try:
        for fmt in args.formats:
            run(args.records, fmt, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:,.0f} MB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
