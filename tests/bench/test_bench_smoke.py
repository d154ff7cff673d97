"""The cycle and sync-throughput benches still run end to end at a tiny scale and print their ratio line."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _bench(tmp_path: Path, module: str, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", module, *args, "--dir", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


@pytest.mark.parametrize(
    ("module", "args", "ratio"),
    [
        ("bench.cycle", ("--records", "300"), r"^ratio: cycle after 1% changed / full cycle = \d+\.\d{3} "),
        (
            "bench.sync_throughput",
            ("--records", "90"),
            r"^ratio: [\d,]+ records per sandbox minute / ceiling 1,200 = \d+\.\d\d ",
        ),
    ],
    ids=["cycle", "sync_throughput"],
)
def test_bench_prints_its_ratio(tmp_path: Path, module: str, args: tuple[str, ...], ratio: str) -> None:
    out = _bench(tmp_path, module, *args)
    assert re.search(ratio, out, re.MULTILINE), out
    assert re.search(r"^peak RSS: \d+\.\d\d GB (the engine|measuring)", out, re.MULTILINE), out
    if module == "bench.sync_throughput":
        # Nothing over the limits and nothing lost, even at this size.
        assert re.search(r"^over the limits: 0 requests refused .* records lost: 0 of 90 sent", out, re.MULTILINE), out
