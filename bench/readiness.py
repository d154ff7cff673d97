"""Benchmark: the readiness check on the demo company at N records, against a Polars floor and a per-record loop.

Measured in one run: the full check (run_check), its source-rules stage (source_findings over the frames of
readiness_frames), (a) the floor: the same source rules hand-written as one Polars expression pass per frame over the
same in-memory frames, and (b) a per-record Python loop over dicts (what a typical integration does) on a sample,
extrapolated to every row. The floor and the loop are checked to find exactly the (record, reason) pairs that
source_findings finds, so the comparison is honest. The demo data is written and loaded in a child process, so the
peak RSS printed for this process is that of the check and the comparisons alone.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pandera.errors
import polars as pl

from bench.common import in_child, peak_gb
from pipelines import duplicates
from pipelines.mappings import refresh_mappings
from pipelines.readiness import (
    dependency_findings,
    mapping_findings,
    readiness_frames,
    run_check,
    source_findings,
)
from pipelines.store import Store
from schemas.readiness import readiness_schema

__all__ = ["floor_pairs", "loop_pairs", "main", "setup"]

AS_OF = date(2026, 11, 26)
NOW = datetime(2026, 11, 26, 12, tzinfo=UTC)
PAIR = ["entity", "record_id", "reason"]

PARTIES = ("vendor", "customer")
LINED = ("purchase_order", "bill", "invoice")
TRANSACTIONS = (*LINED, "payment", "bill_payment", "journal_entry")
WITH_PARTY = ("purchase_order", "bill", "invoice", "payment", "bill_payment")
PAYMENTS = ("payment", "bill_payment")

NOT_APPROVED = "source_data.not_approved"
INCOMPLETE = "source_data.incomplete"
INVALID_NAME = "source_data.invalid_name"
INACTIVE = "source_data.inactive_in_awra"
UNKNOWN_REFERENCE = "source_data.unknown_reference"
LINE_AMOUNT_MISMATCH = "source_data.line_amount_mismatch"
LINES_DO_NOT_SUM = "source_data.lines_do_not_sum"
UNBALANCED = "source_data.unbalanced"
NOT_POSTED = "source_data.not_posted"
VOID = "source_data.void"
CLOSED_PERIOD = "source_data.closed_period"
CURRENCY_MISMATCH = "source_data.currency_mismatch"


def _faster(slow: float, fast: float) -> str:
    """How much faster `fast` is than `slow`, said the right way round."""
    return f"{slow / fast:.1f}x faster" if fast <= slow else f"{fast / slow:.1f}x SLOWER"


def _best(fn: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    """Seconds of the fastest of `repeat` calls, and the last call's result."""
    best, result = float("inf"), None
    for _ in range(repeat):
        clock = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - clock)
    return best, result


# -- setup (in a child process) ------------------------------------------------------------------------------
def setup(n: int, folder: Path, seed: int) -> dict[str, Any]:
    """Write the demo at about n records (parquet), ingest it into folder/bench.duckdb and load the company file."""
    seconds = {}
    clock = time.perf_counter()
    from pipelines.demo.company import write_demo
    from pipelines.ingest import ingest_snapshot
    from pipelines.pull import load_company_file

    summary = write_demo(folder / "demo", seed=seed, scale=n, as_of=AS_OF, fmt="parquet")
    seconds["write_demo"] = time.perf_counter() - clock
    company = json.loads(summary.company_file.read_text(encoding="utf-8"))
    realm_id = company["realm_id"]
    with Store(folder / "bench.duckdb") as store:
        clock = time.perf_counter()
        ingest_snapshot(store, summary.snapshot_dir, realm_id=realm_id, now=NOW)
        seconds["ingest"] = time.perf_counter() - clock
        clock = time.perf_counter()
        load_company_file(store, company, NOW)
        seconds["company file"] = time.perf_counter() - clock
    return {
        "realm_id": realm_id,
        "records": summary.records,
        "lines": sum(summary.counts.values()) - summary.records,
        "seconds": seconds,
        "peak_gb": peak_gb(),
    }


# -- (a) the floor: the source rules hand-written as one Polars expression pass ---------------------------------
def _blank(col: str) -> pl.Expr:
    return pl.col(col).is_null() | (pl.col(col).str.strip_chars() == "")


def _failures(entity: str) -> list[tuple[str, pl.Expr]]:
    """(reason, fails) for every source rule that applies to the entity; null counts as passing."""
    c = pl.col
    out = [(NOT_APPROVED, c("approval_status") != "approved")]
    if entity in PARTIES:
        out += [
            (INCOMPLETE, _blank("name")),
            (INVALID_NAME, c("name").str.contains(r"[:\t\n]")),
            (INACTIVE, c("status") != "active"),
        ]
    if entity in WITH_PARTY:
        out += [(INCOMPLETE, _blank("party_id")), (UNKNOWN_REFERENCE, ~c("party_known") & ~_blank("party_id"))]
    if entity in TRANSACTIONS:
        out.append((INCOMPLETE, c("txn_date").is_null()))
    if entity in (*LINED, *PAYMENTS):
        out.append((INCOMPLETE, c("amount").is_null()))
    if entity == "bill_payment":
        out.append((INCOMPLETE, _blank("document_id") | _blank("account_code")))
    if entity in PAYMENTS:
        out.append((UNKNOWN_REFERENCE, ~c("document_known") & ~_blank("document_id")))
    if entity in (*LINED, "journal_entry"):
        out += [
            (INCOMPLETE, c("line_count") < (2 if entity == "journal_entry" else 1)),
            (INCOMPLETE, c("lines_missing_ref").is_not_null()),
            (INCOMPLETE, c("lines_missing_amount").is_not_null()),
        ]
    if entity in LINED:
        out += [
            (LINE_AMOUNT_MISMATCH, c("lines_amount_mismatch").is_not_null()),
            (LINES_DO_NOT_SUM, c("lines_total") != c("amount")),
        ]
    if entity == "journal_entry":
        out.append((UNBALANCED, c("debits") != c("credits")))
    if entity in TRANSACTIONS:
        out += [
            (NOT_POSTED, c("posting_status") == "unposted"),
            (VOID, c("posting_status") == "void"),
            (CLOSED_PERIOD, c("txn_date") <= c("book_close_date")),
        ]
    out.append(
        (
            CURRENCY_MISMATCH,
            (c("currency") != c("home_currency"))
            & (~c("multicurrency") | (c("party_currency").is_not_null() & (c("party_currency") != c("currency")))),
        )
    )
    return out


def floor_pairs(frames: dict[str, pl.DataFrame]) -> pl.DataFrame:
    """Every failing (entity, record_id, reason): per frame one select, each rule's failing ids as a list."""
    queries = []
    for entity, frame in frames.items():
        if frame.is_empty():
            continue
        failures = _failures(entity)
        ids = [
            pl.col("record_id").filter(f.fill_null(False)).implode().alias(str(i)) for i, (_, f) in enumerate(failures)
        ]
        queries.append(
            frame.lazy()
            .select(ids)
            .unpivot(variable_name="rule", value_name="record_id")
            .explode("record_id")
            .drop_nulls("record_id")
            .select(
                pl.lit(entity).alias("entity"),
                "record_id",
                pl.col("rule").replace_strict({str(i): r for i, (r, _) in enumerate(failures)}).alias("reason"),
            )
        )
    if not queries:
        return pl.DataFrame(schema={"entity": pl.String, "record_id": pl.String, "reason": pl.String})
    return pl.concat(pl.collect_all(queries))


# -- (b) a per-record Python loop over dicts ---------------------------------------------------------------------
def _is_blank(value: str | None) -> bool:
    return value is None or not value.strip()


def _record_reasons(entity: str, r: dict[str, Any]) -> list[str]:
    """The same source rules for one record, in plain Python."""
    out = []
    if r["approval_status"] is not None and r["approval_status"] != "approved":
        out.append(NOT_APPROVED)
    if entity in PARTIES:
        name = r["name"]
        if _is_blank(name):
            out.append(INCOMPLETE)
        if name is not None and (":" in name or "\t" in name or "\n" in name):
            out.append(INVALID_NAME)
        if r["status"] is not None and r["status"] != "active":
            out.append(INACTIVE)
    if entity in WITH_PARTY:
        if _is_blank(r["party_id"]):
            out.append(INCOMPLETE)
        elif r["party_known"] is False:
            out.append(UNKNOWN_REFERENCE)
    if entity in TRANSACTIONS and r["txn_date"] is None:
        out.append(INCOMPLETE)
    if entity in LINED or entity in PAYMENTS:
        if r["amount"] is None:
            out.append(INCOMPLETE)
    if entity == "bill_payment" and (_is_blank(r["document_id"]) or _is_blank(r["account_code"])):
        out.append(INCOMPLETE)
    if entity in PAYMENTS and r["document_known"] is False and not _is_blank(r["document_id"]):
        out.append(UNKNOWN_REFERENCE)
    if entity in LINED or entity == "journal_entry":
        if r["line_count"] is not None and r["line_count"] < (2 if entity == "journal_entry" else 1):
            out.append(INCOMPLETE)
        if r["lines_missing_ref"] is not None:
            out.append(INCOMPLETE)
        if r["lines_missing_amount"] is not None:
            out.append(INCOMPLETE)
    if entity in LINED:
        if r["lines_amount_mismatch"] is not None:
            out.append(LINE_AMOUNT_MISMATCH)
        if r["lines_total"] is not None and r["amount"] is not None and r["lines_total"] != r["amount"]:
            out.append(LINES_DO_NOT_SUM)
    if entity == "journal_entry" and r["debits"] is not None and r["credits"] is not None:
        if r["debits"] != r["credits"]:
            out.append(UNBALANCED)
    if entity in TRANSACTIONS:
        if r["posting_status"] == "unposted":
            out.append(NOT_POSTED)
        elif r["posting_status"] == "void":
            out.append(VOID)
        if r["txn_date"] is not None and r["book_close_date"] is not None and r["txn_date"] <= r["book_close_date"]:
            out.append(CLOSED_PERIOD)
    currency, home, party = r["currency"], r["home_currency"], r["party_currency"]
    if currency is not None and home is not None and currency != home:
        if r["multicurrency"] is False or (party is not None and party != currency):
            out.append(CURRENCY_MISMATCH)
    return out


def loop_pairs(rows: dict[str, list[dict[str, Any]]]) -> list[tuple[str, str, str]]:
    """Every failing (entity, record_id, reason), one record at a time."""
    out = []
    for entity, records in rows.items():
        for r in records:
            for reason in _record_reasons(entity, r):
                out.append((entity, r["record_id"], reason))
    return out


def _sorted_pairs(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.select(PAIR).sort(PAIR)


def _same_pairs(label: str, got: pl.DataFrame, want: pl.DataFrame) -> None:
    got, want = _sorted_pairs(got), _sorted_pairs(want)
    if not got.equals(want):
        extra = got.join(want, on=PAIR, how="anti").head(5).rows()
        missing = want.join(got, on=PAIR, how="anti").head(5).rows()
        raise AssertionError(f"{label}: {got.height} pairs vs {want.height}; extra {extra}, missing {missing}")


# -- the run -------------------------------------------------------------------------------------------------------
def _pandera_only(frames: dict[str, pl.DataFrame]) -> None:
    for entity, frame in frames.items():
        if frame.is_empty():
            continue
        try:
            readiness_schema(entity).validate(frame, lazy=True)
        except pandera.errors.SchemaErrors:
            pass


def _stages(store: Store, realm_id: str, repeat: int) -> dict[str, float]:
    """run_check's stages, called one by one as it calls them; the fastest of `repeat` rounds per stage."""
    seconds: dict[str, float] = {}

    def timed(name: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        clock = time.perf_counter()
        result = fn(*args, **kwargs)
        seconds[name] = min(seconds.get(name, float("inf")), time.perf_counter() - clock)
        return result

    for _ in range(repeat):
        timed("adopt_marked", duplicates.adopt_marked, store, realm_id, now=NOW)
        timed("refresh_mappings", refresh_mappings, store, realm_id, now=NOW)
        run_id = int(store.scalar("SELECT nextval('check_run_seq')"))
        frames = timed("readiness_frames", readiness_frames, store, realm_id)
        candidates = timed("find_candidates", duplicates.find_candidates, store, realm_id, run_id)
        source = timed("source_findings", source_findings, frames)
        mapped = timed("mapping_findings", mapping_findings, store, realm_id)
        dup = timed("duplicate_findings", duplicates.duplicate_findings, candidates)
        found = pl.concat(
            [source, mapped, dup.select([pl.col(c).cast(t) for c, t in source.schema.items()])],
            how="vertical_relaxed",
        )
        timed("dependency_findings", dependency_findings, frames, found, store, realm_id)
    return seconds


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=1_000_000, help="demo company size (header records)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per measurement; the fastest counts")
    parser.add_argument("--sample", type=int, default=20_000, help="rows per entity for the per-record loop")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--dir", type=Path, default=None, help="where the demo and DuckDB files go (default: temp)")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        folder = Path(tmp)
        built = in_child(setup, args.records, folder, args.seed)
        setup_peak = peak_gb(children=True)
        realm_id = built["realm_id"]
        took = ", ".join(f"{k} {v:.1f} s" for k, v in built["seconds"].items())
        print(f"demo company: {built['records']:,} records (+ {built['lines']:,} lines); setup: {took}")

        with Store(folder / "bench.duckdb") as store:
            # 1. The full check: the first run adopts the marked records; later runs find them linked.
            clock = time.perf_counter()
            result = run_check(store, realm_id, now=NOW)
            first = time.perf_counter() - clock
            full, result = _best(lambda: run_check(store, realm_id, now=NOW), args.repeat)
            stages = _stages(store, realm_id, args.repeat)

            # 2. The source-rules stage alone, over frames already in memory.
            frames_s, frames = _best(lambda: readiness_frames(store, realm_id), args.repeat)
        to_send = sum(f.height for f in frames.values())
        source_s, source = _best(lambda: source_findings(frames), args.repeat)
        pandera_s, _ = _best(lambda: _pandera_only(frames), args.repeat)

        # (a) The floor, over the same frames.
        floor_s, floor = _best(lambda: floor_pairs(frames), args.repeat)
        _same_pairs("Polars floor vs source_findings", floor, source)

        # (b) The per-record loop on a sample of each entity, extrapolated to all its rows. Building the dicts is
        # timed apart: the loop alone is the rules' cost, as the floor is.
        sample = {e: f.sample(min(args.sample, f.height), seed=args.seed) for e, f in frames.items()}
        loop_s = dicts_s = 0.0
        rows: dict[str, list[dict[str, Any]]] = {}
        for entity, part in sample.items():
            if part.is_empty():
                continue
            scale = frames[entity].height / part.height
            seconds, rows[entity] = _best(part.to_dicts, args.repeat)
            dicts_s += seconds * scale
            seconds, _ = _best(lambda entity=entity: loop_pairs({entity: rows[entity]}), args.repeat)
            loop_s += seconds * scale
        looped = pl.DataFrame(loop_pairs(rows), schema=PAIR, orient="row")
        _same_pairs("per-record loop vs source_findings (sample)", looped, source_findings(sample))
        sampled = sum(len(r) for r in rows.values())
    peak = peak_gb()

    print(
        f"full check (run_check): first run {first:.2f} s, best of {args.repeat} more: {full:.2f} s; "
        f"{result.records:,} live records, {to_send:,} still to send, {result.findings:,} findings"
    )
    rest = full - sum(stages.values())
    shown = ", ".join(f"{k} {v:.2f}" for k, v in stages.items())
    print(f"  stages (s, best of {args.repeat} each): {shown}; the rest of run_check ~{rest:.2f}")
    print(
        f"source rules (source_findings over frames in memory): {source_s:.3f} s for {source.height:,} findings, "
        f"of which Pandera validate {pandera_s:.3f} s; with readiness_frames ({frames_s:.3f} s): "
        f"{frames_s + source_s:.3f} s"
    )
    print(
        f"Polars floor (the rules hand-written, one select per frame): {floor_s:.3f} s, "
        f"the same {floor.height:,} (record, reason) pairs"
    )
    print(
        f"  -> source rules {source_s:.3f} s, Polars floor {floor_s:.3f} s -> {source_s / floor_s:.1f}x the floor "
        f"(aim: within 2x); full check {full:.2f} s -> {full / floor_s:.0f}x the floor"
    )
    print(
        f"per-record loop over dicts (extrapolated from {sampled:,} sampled rows to {to_send:,}; the same pairs on "
        f"the sample): {loop_s:.3f} s, {loop_s + dicts_s:.3f} s with building the dicts (to_dicts)"
    )
    print(
        f"  -> source rules {source_s:.3f} s vs loop {loop_s:.3f} s: {_faster(loop_s, source_s)} (aim: over 50x "
        f"faster); Polars floor: {_faster(loop_s, floor_s)}; full check: {_faster(loop_s, full)}"
    )
    print(
        f"peak RSS: {peak:.2f} GB this process (the check and comparisons; aim: under 4 GB), {setup_peak:.2f} GB setup"
    )


if __name__ == "__main__":
    main()
