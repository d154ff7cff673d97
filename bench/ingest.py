"""Benchmark: ingest of a 1M-record snapshot (CSV and Parquet); re-ingest unchanged, with 1% changed, and a 1% delta."""

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
from pipelines.ingest import IngestResult, ingest_snapshot
from pipelines.store import Store
from schemas.awra import CONTRACT
from schemas.manifest import MANIFEST_FILE, Manifest, manifest_json

__all__ = ["main"]

REALM = "bench-realm"
DELTAS_IN_A_ROW = 5


def _read(path: Path) -> pl.DataFrame:
    return pl.read_csv(path, infer_schema=False) if path.suffix == ".csv" else pl.read_parquet(path)


def _write(frame: pl.DataFrame, path: Path) -> None:
    frame.write_csv(path) if path.suffix == ".csv" else frame.write_parquet(path)


def _manifest(folder: Path, manifest: Manifest) -> None:
    (folder / MANIFEST_FILE).write_text(manifest_json(manifest))


def _edited(frame: pl.DataFrame, share: float, phase: int, value: str) -> tuple[pl.DataFrame, pl.Series]:
    """`share` of the rows (every n-th, from `phase`) with their owner or name set to `value`, and the pick."""
    every = max(int(1 / share), 1)
    pick = (pl.int_range(frame.height, eager=True) + phase) % every == 0
    column = next(c for c in ("owner", "name") if c in frame.columns)
    return frame.with_columns(pl.when(pick).then(pl.lit(value)).otherwise(pl.col(column)).alias(column)), pick


def _changed_copy(src: Path, dst: Path, fmt: str, share: float) -> int:
    """The same snapshot with `share` of every header table's records edited (their owner field), as a full one."""
    dst.mkdir(parents=True, exist_ok=True)
    changed = 0
    for name, table in CONTRACT.items():
        frame = _read(src / f"{name}.{fmt}")
        if not table.is_lines and frame.height and {"owner", "name"} & set(frame.columns):
            frame, pick = _edited(frame, share, 0, "edited@bench")
            changed += int(pick.sum())
        _write(frame, dst / f"{name}.{fmt}")
    _manifest(dst, Manifest("full", "s1"))
    return changed


def _delta(src: Path, dst: Path, fmt: str, share: float, number: int = 1) -> int:
    """What AWRA sends when another `share` of the records of `src` changed: those records whole, and a manifest.
    Delta `number` (from 1) edits its own share of the records and follows delta number - 1 (the first: s1)."""
    dst.mkdir(parents=True, exist_ok=True)
    sent: dict[str, pl.DataFrame] = {}
    for name, table in CONTRACT.items():
        if table.is_lines:
            continue
        frame = _read(src / f"{name}.{fmt}")
        if frame.height and {"owner", "name"} & set(frame.columns):
            frame, pick = _edited(frame, share, number, f"edited again ({number})@bench")
            sent[name] = frame.filter(pick)
    for name, table in CONTRACT.items():
        if table.is_lines and table.parent in sent:
            ids = sent[table.parent].select(table.record_id)
            sent[name] = _read(src / f"{name}.{fmt}").join(ids, on=table.record_id, how="semi")
    for name, frame in sent.items():
        _write(frame, dst / f"{name}.{fmt}")
    _manifest(dst, Manifest("delta", f"s{number + 1}", f"s{number}"))
    return sum(sent[n].height for n in sent if not CONTRACT[n].is_lines)


def _reset_peak() -> bool:
    """Start a new peak-RSS count for this process (Linux: /proc/self/clear_refs); False where it cannot."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def _peak_mb() -> float:
    """This process's peak RSS since the last reset (VmHWM), or since it started (ru_maxrss)."""
    try:
        status = Path("/proc/self/status").read_text()
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    line = next(x for x in status.splitlines() if x.startswith("VmHWM:"))
    return int(line.split()[1]) / 1024


def _rss_mb() -> float:
    """This process's RSS now (0 where /proc is not there)."""
    try:
        return int(Path("/proc/self/statm").read_text().split()[1]) * resource.getpagesize() / 2**20
    except OSError:
        return 0.0


def _timed(store: Store, folder: Path) -> tuple[float, IngestResult]:
    start = time.perf_counter()
    result = ingest_snapshot(store, folder, realm_id=REALM, now=system_clock())
    return time.perf_counter() - start, result


def run(records: int, fmt: str, work: Path) -> None:
    demo = write_demo(work / f"demo-{fmt}", seed=7, scale=records, as_of=date(2026, 11, 26), fmt=fmt)
    rows = sum(demo.counts.values())
    _manifest(demo.snapshot_dir, Manifest("full", "s0"))
    changed_dir, delta_dir = work / f"changed-{fmt}", work / f"delta-{fmt}"
    changed = _changed_copy(demo.snapshot_dir, changed_dir, fmt, 0.01)
    in_delta = _delta(changed_dir, delta_dir, fmt, 0.01)
    more = [work / f"delta-{fmt}-{n}" for n in range(2, DELTAS_IN_A_ROW + 1)]
    for number, folder in enumerate(more, start=2):
        _delta(changed_dir, folder, fmt, 0.01, number)
    store = Store(work / f"bench-{fmt}.duckdb")
    # The first ingest's own peak: writing the demo and its copies above is the bench's work, not the ingest's.
    own = _reset_peak()
    before = _rss_mb()
    first, r1 = _timed(store, demo.snapshot_dir)
    first_peak = _peak_mb()
    again, r2 = _timed(store, demo.snapshot_dir)
    delta, r3 = _timed(store, changed_dir)
    small, r4 = _timed(store, delta_dir)
    # A commit checkpoints only once the write-ahead log is large, so one delta may leave its checkpoint to a later
    # cycle: the deltas of a day, one after the other, and the checkpoint they leave, give the cost per delta.
    row = [small, *(_timed(store, folder)[0] for folder in more)]
    start = time.perf_counter()
    store.execute("CHECKPOINT")
    left = time.perf_counter() - start
    store.close()
    print(f"{fmt}: {records:,} records, {rows:,} rows")
    print(f"  first ingest       {first:7.2f} s   {rows / first:12,.0f} rows/s   ({r1.new:,} new)")
    print(
        f"  first ingest peak RSS {first_peak:,.0f} MB ({before:,.0f} MB before it)"
        + ("" if own else ", of the whole process so far")
    )
    print(f"  unchanged again    {again:7.2f} s   {again / first:6.1%} of the first  ({r2.status})")
    print(
        f"  1% changed         {delta:7.2f} s   {delta / first:6.1%} of the first  ({r3.changed:,} changed, "
        f"{changed:,} edited)"
    )
    print(
        f"  1% delta snapshot  {small:7.2f} s   {small / first:6.1%} of the first  ({r4.changed:,} changed, "
        f"{in_delta:,} sent)"
    )
    per_delta = (sum(row) + left) / len(row)
    print(
        f"  {len(row)} such deltas in a row, each with its share of the checkpoint they leave ({left:.2f} s): "
        f"{per_delta:.2f} s   {per_delta / first:6.1%} of the first"
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
