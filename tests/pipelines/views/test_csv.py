"""CSV export: a cell a spreadsheet would run as a formula opens as text; everything else is unchanged."""

from __future__ import annotations

import csv
import io
from datetime import date
from decimal import Decimal
from pathlib import Path

import polars as pl
import pytest

from pipelines.views.queue import csv_bytes, neutralize

DANGEROUS = ["=1+1", "+SUM(A1:A9)", "-2+3", "@SUM(A1)", "\t=cmd", "\r=cmd", '=HYPERLINK("http://x","click")']


def _read_back(tmp_path: Path, data: bytes) -> list[dict[str, str]]:
    """Write the bytes to a file and read it as a spreadsheet import would (UTF-8 with its BOM)."""
    path = tmp_path / "export.csv"
    path.write_bytes(data)
    with path.open(newline="", encoding="utf-8-sig") as fh:
        return list(csv.DictReader(fh))


@pytest.mark.parametrize("value", DANGEROUS)
def test_a_value_starting_with_a_formula_character_opens_as_text(tmp_path: Path, value: str) -> None:
    rows = _read_back(tmp_path, csv_bytes(pl.DataFrame({"detail": [value]})))
    assert rows[0]["detail"] == "'" + value  # the apostrophe tells the spreadsheet: text, do not evaluate


def test_safe_values_numbers_and_dates_are_written_as_they_are(tmp_path: Path) -> None:
    frame = pl.DataFrame(
        {
            "key": ["bill:BILL-1", "vendor:A=B", None],
            "amount": [Decimal("-5.00"), Decimal("1234.56"), None],
            "retries": [-1, 0, 3],
            "due_date": [date(2026, 12, 3), None, date(2027, 1, 1)],
            "tags": [["a", "b"], [], None],
        },
        schema_overrides={"amount": pl.Decimal(18, 2)},
    )
    rows = _read_back(tmp_path, csv_bytes(frame))
    assert [r["key"] for r in rows] == ["bill:BILL-1", "vendor:A=B", ""]  # '=' inside a value is harmless
    assert [r["amount"] for r in rows] == ["-5.00", "1234.56", ""]  # numbers stay numbers, minus included
    assert [r["retries"] for r in rows] == ["-1", "0", "3"]
    assert [r["due_date"] for r in rows] == ["2026-12-03", "", "2027-01-01"]
    assert [r["tags"] for r in rows] == ["a, b", "", ""]


def test_neutralize_touches_only_text_columns_that_need_it() -> None:
    frame = pl.DataFrame({"a": ["=x", "ok", None], "n": [-1, 2, 3]})
    out = neutralize(frame)
    assert out["a"].to_list() == ["'=x", "ok", None] and out["n"].to_list() == [-1, 2, 3]


def test_the_file_starts_with_a_bom_so_a_spreadsheet_reads_utf8() -> None:
    data = csv_bytes(pl.DataFrame({"name": ["Café Ünïcode"]}))
    assert data.startswith(b"\xef\xbb\xbf")
    assert list(csv.reader(io.StringIO(data.decode("utf-8-sig"))))[1] == ["Café Ünïcode"]
