"""Benchmark: find_candidates at N/10 and N AWRA bills against as many QBO bills; near-linear means ~10x."""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import polars as pl

from pipelines.duplicates import DEFAULT_WINDOW_DAYS, find_candidates
from pipelines.store import Store, awra_table

__all__ = ["build", "main", "measure"]

REALM = "bench-realm"
NOW = datetime(2026, 11, 26, 12, tzinfo=UTC)
_DAY0 = 20_000  # days since 1970-01-01 (2024-10-04): bills spread over the year after it
_DUPLICATE_SHARE = 0.01  # QBO bills keyed by hand that look like an AWRA bill


def _money(cents: np.ndarray) -> pl.Series:
    """Whole cents as DECIMAL(18,2), through exact text (never a float)."""
    c = pl.Series(cents, dtype=pl.Int64)
    return (
        pl.select(pl.format("{}.{}", c // 100, (c % 100).cast(pl.String).str.zfill(2)))
        .to_series()
        .cast(pl.Decimal(18, 2))
    )


def _insert(store: Store, table: str, frame: pl.DataFrame) -> None:
    cur = store.cursor()
    cur.register("_bench", frame.to_arrow())
    try:
        cur.execute(f"INSERT INTO {table} BY NAME SELECT * FROM _bench").fetchall()
    finally:
        cur.unregister("_bench")


def build(store: Store, n: int, seed: int = 7) -> dict[str, int]:
    """N AWRA bills (half already linked by marker) and N QBO bills, with some vendors unmapped.

    Amounts repeat within a vendor (a few recurring charges each) so (vendor, amount) groups are not
    all singletons: the case a join that is not a band join would turn quadratic on.
    """
    rng = np.random.default_rng(seed)
    vendors = max(100, n // 200)
    vendor_ids = pl.Series([f"VEN-{i:07d}" for i in range(vendors)])
    mapped = rng.random(vendors) < 0.95  # the rest are matched by normalized name
    recurring = rng.random(n) < 0.3
    cents = np.where(recurring, (rng.integers(0, 8, n) + 1) * 25_000, rng.integers(1_000, 2_000_000, n))
    vendor = rng.integers(0, vendors, n)
    day = _DAY0 + rng.integers(0, 365, n)
    linked = rng.random(n) < 0.5
    bill_ids = pl.Series([f"BILL-{i:08d}" for i in range(n)])

    _insert(
        store,
        "records",
        pl.concat(
            [
                pl.DataFrame({"record_id": vendor_ids, "entity": "vendor"}),
                pl.DataFrame({"record_id": bill_ids, "entity": "bill"}),
            ]
        ).with_columns(
            realm_id=pl.lit(REALM),
            current_version=pl.lit(1, pl.Int32),
            content_hash=pl.lit("x"),
            first_seen_at=pl.lit(NOW),
            changed_at=pl.lit(NOW),
        ),
    )
    names = pl.Series([f"Vendor {i} Supply" for i in range(vendors)])
    _insert(
        store,
        awra_table("vendors"),
        pl.DataFrame({"vendor_id": vendor_ids, "name": names + " Inc."}).with_columns(
            realm_id=pl.lit(REALM), version=pl.lit(1, pl.Int32), ingest_run_id=pl.lit(1, pl.Int64)
        ),
    )
    _insert(
        store,
        awra_table("bills"),
        pl.DataFrame(
            {
                "bill_id": bill_ids,
                "bill_number": pl.Series([f"N{i}" for i in range(n)]),
                "vendor_id": vendor_ids.gather(vendor),
                "txn_date": pl.Series(day, dtype=pl.Int32).cast(pl.Date),
                "total": _money(cents),
            }
        ).with_columns(realm_id=pl.lit(REALM), version=pl.lit(1, pl.Int32), ingest_run_id=pl.lit(1, pl.Int64)),
    )
    _insert(
        store,
        "mappings",
        pl.DataFrame({"awra_value": vendor_ids, "qbo_id": pl.Series(np.arange(vendors) + 1).cast(pl.String)})
        .filter(pl.Series(mapped))
        .with_columns(
            realm_id=pl.lit(REALM),
            kind=pl.lit("vendor"),
            qbo_entity=pl.lit("Vendor"),
            source=pl.lit("auto"),
            status=pl.lit("mapped"),
            set_at=pl.lit(NOW),
        ),
    )
    # Every vendor is linked; only bills already in QuickBooks have an external ref.
    _insert(
        store,
        "external_refs",
        pl.concat(
            [
                pl.DataFrame({"record_id": vendor_ids, "entity": "vendor", "qbo_entity": "Vendor",
                              "qbo_id": pl.Series(np.arange(vendors) + 1).cast(pl.String)}),
                pl.DataFrame({"record_id": bill_ids, "entity": "bill", "qbo_entity": "Bill",
                              "qbo_id": pl.Series(np.arange(n) + 1).cast(pl.String)}).filter(pl.Series(linked)),
            ]
        ).with_columns(realm_id=pl.lit(REALM), linked_by=pl.lit("marker"), linked_at=pl.lit(NOW)),
    )  # fmt: skip

    # QBO: the vendors; the linked bills (our marker); hand-keyed bills, a share of them look-alikes.
    lookalike = ~linked & (rng.random(n) < _DUPLICATE_SHARE / 0.5)
    by_hand_vendor = np.where(lookalike, vendor, rng.integers(0, vendors, n))
    by_hand_day = np.where(lookalike, day + rng.integers(-3, 4, n), _DAY0 + rng.integers(0, 365, n))
    by_hand_cents = np.where(
        lookalike | (rng.random(n) < 0.3), np.where(lookalike, cents, (rng.integers(0, 8, n) + 1) * 25_000),
        rng.integers(1_000, 2_000_000, n),
    )  # fmt: skip
    qbo_vendor = np.where(linked, vendor, by_hand_vendor)
    qbo_bills = pl.DataFrame(
        {
            "qbo_id": pl.Series(np.arange(n) + 1).cast(pl.String),
            "doc_number": pl.Series([f"N{i}" for i in range(n)]),
            "party_id": pl.Series(qbo_vendor + 1).cast(pl.String),
            "total_amt": _money(np.where(linked, cents, by_hand_cents)),
            "txn_date": pl.Series(np.where(linked, day, by_hand_day), dtype=pl.Int32).cast(pl.Date),
            "marker": pl.select(pl.when(pl.Series(linked)).then("awra:bill:" + bill_ids + ":v1")).to_series(),
        }
    ).with_columns(
        # Hand-keyed bills carry their own numbers, but half the look-alikes carry the AWRA bill's number.
        doc_number=pl.when(pl.col("marker").is_null() & ~pl.Series(lookalike & (rng.random(n) < 0.5)))
        .then("H" + pl.col("doc_number"))
        .otherwise("doc_number"),
        entity=pl.lit("Bill"),
    )
    qbo_vendors = pl.DataFrame(
        {"qbo_id": pl.Series(np.arange(vendors) + 1).cast(pl.String), "name": names + ", LLC", "entity": "Vendor"}
    )
    _insert(
        store,
        "qbo_objects",
        pl.concat([qbo_vendors, qbo_bills], how="diagonal").with_columns(
            realm_id=pl.lit(REALM), payload=pl.lit("{}"), pulled_at=pl.lit(NOW)
        ),
    )
    return {"vendors": vendors, "awra_bills": n, "qbo_bills": n, "open_bills": int((~linked).sum())}


def measure(n: int, folder: Path, window_days: int, repeat: int) -> tuple[float, int, dict[str, int]]:
    """Seconds of the fastest find_candidates run over a fresh store of n bills each side, and its rows."""
    with Store(folder / f"bench-{n}.duckdb") as store:
        sizes = build(store, n)
        best, rows = float("inf"), 0
        for run in range(repeat):
            clock = time.perf_counter()
            rows = find_candidates(store, REALM, run_id=run + 1, window_days=window_days).height
            best = min(best, time.perf_counter() - clock)
    return best, rows, sizes


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=1_000_000, help="AWRA bills and QBO bills at full size")
    parser.add_argument("--window-days", type=int, default=DEFAULT_WINDOW_DAYS)
    parser.add_argument("--repeat", type=int, default=2, help="runs per size; the fastest counts")
    parser.add_argument("--dir", type=Path, default=None, help="where the DuckDB files go (default: a temp dir)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        small, small_rows, _ = measure(args.n // 10, Path(tmp), args.window_days, args.repeat)
        print(f"N/10 = {args.n // 10:>9,} bills each side: find_candidates {small:7.2f} s, {small_rows:,} candidates")
        full, full_rows, sizes = measure(args.n, Path(tmp), args.window_days, args.repeat)
        print(f"N    = {args.n:>9,} bills each side: find_candidates {full:7.2f} s, {full_rows:,} candidates")
        print(f"       ({sizes['vendors']:,} vendors, {sizes['open_bills']:,} bills not yet in QuickBooks)")
        print(f"ratio N / (N/10) = {full / small:.1f}x (near-linear is about 10x)")
    # One process builds and measures both sizes (no setup child): its peak is the N store's build plus the join.
    print(f"peak RSS: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 / 1024:.2f} GB")


if __name__ == "__main__":
    main()
