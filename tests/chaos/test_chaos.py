"""Chaos: a company through a sandbox that faults 30% of requests, with the token expiring and the sync killed.

Quick form in `make test`, on fixed seeds so CI is deterministic; the long form (5,000 records, 20+ kills) with
SYNCHEALTH_SLOW=1 draws a new seed each run and prints it. Set SYNCHEALTH_CHAOS_SEED=N to replay a run.
"""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest
from chaos_checks import all_problems, markers_in_qbo
from chaos_run import REALM, ChaosPlan, ChaosRun

from qbo.sandbox.faults import FAULT_KINDS

# Read at import: the suite's autouse fixture clears SYNCHEALTH_* from the environment before each test.
_SEED = os.environ.get("SYNCHEALTH_CHAOS_SEED")
_SLOW = os.environ.get("SYNCHEALTH_SLOW") == "1"


# The sandbox draws one number per request from its seed, so the first faults are known before the run: with these
# seeds every one of the nine kinds is injected within the first 16 requests, whatever the timing of the kills (a run
# makes dozens to hundreds). Found by replaying FaultPlan(fault_spec(0.30), seed) over seeds 1-20000.
QUICK_SEEDS = (9482, 12173)


def _random_seed() -> int:
    return int(_SEED) if _SEED else random.SystemRandom().randrange(2**31)


def _run_and_check(tmp_path: Path, plan: ChaosPlan, fault_kinds: int, seed: int) -> None:
    print(f"chaos seed {seed}: replay with SYNCHEALTH_CHAOS_SEED={seed}")  # pytest shows it on failure
    with ChaosRun(tmp_path, plan, seed) as run:
        before = markers_in_qbo(run)  # what the company already held, with our marker, before the run
        figures = run.run()
        print(figures.summary())
        problems = all_problems(run, before)
    assert not problems, "\n".join([figures.summary(), *problems])
    assert figures.kills >= plan.min_kills, f"only {figures.kills} of {plan.kills} kills landed; {figures.summary()}"
    assert figures.token_expiries >= 1, figures.summary()
    assert len(figures.faults) >= fault_kinds, f"too few fault kinds were injected; {figures.summary()}"


@pytest.mark.parametrize("seed", QUICK_SEEDS)
def test_quick_chaos_loses_nothing_duplicates_nothing_and_leaves_nothing_silent(tmp_path: Path, seed: int) -> None:
    # The smallest demo company (about 450 records), 15% of its history still to send: about a minute here.
    # Enough to send (about 170 records, six batches) that the kills find a run still sending; half the kills at
    # crash points, which are reached for certain whenever a chunk is sent (a kill after N requests can be too late).
    plan = ChaosPlan(
        records=300,
        kills=4,
        min_kills=2,
        resend_share=0.5,
        crash_point_share=0.5,
        max_requests_before_kill=2,
        max_seconds_before_kill=1.0,
    )
    _run_and_check(tmp_path, plan, fault_kinds=len(FAULT_KINDS), seed=int(_SEED) if _SEED else seed)


@pytest.mark.slow
@pytest.mark.skipif(not _SLOW, reason="long form: set SYNCHEALTH_SLOW=1")
def test_long_chaos_5000_records_20_kills(tmp_path: Path) -> None:
    plan = ChaosPlan(records=5000, kills=24, min_kills=20, token_expiries=4)
    _run_and_check(tmp_path, plan, fault_kinds=len(FAULT_KINDS), seed=_random_seed())


def test_the_checks_catch_a_duplicate_a_lost_record_a_silent_record_and_a_stranger(tmp_path: Path) -> None:
    # The checks must be able to fail: after a calm run, each kind of damage is done by hand and must be named.
    plan = ChaosPlan(records=300, kills=0, resend_share=0.05, fault_rate=0.0, token_expiries=0)
    with ChaosRun(tmp_path, plan, seed=7) as run:
        before = markers_in_qbo(run)
        run.run()
        assert all_problems(run, before) == []
        with run.store() as store:
            bill = store.scalar("SELECT record_id FROM records WHERE entity = 'bill' AND state = 'synced' LIMIT 1")
            store.execute("UPDATE exceptions SET status = 'resolved' WHERE status <> 'resolved'")
        run.api("POST", f"/_sandbox/{REALM}/entities/Bill", json={"PrivateNote": f"awra:bill:{bill}:v1"})
        with (run.snapshot_dir / "vendors.csv").open("a") as f:
            f.write("VEN-LOST,Lost Vendor Co,USD,active,approved,2026-01-01\n")
        run.request_ids.add("sh-" + "0" * 32)
        run.ended.append((1, "Traceback (most recent call last):\n  boom"))
        problems = "\n".join(all_problems(run, before))
    for expected in (
        f"records in QuickBooks more than once: bill:{bill} x2",
        "objects created in QuickBooks that no stored attempt accounts for",
        "records in the AWRA snapshot but not in the store: vendor:VEN-LOST",
        "records neither synced nor with an open, owned exception",
        "request ids the sandbox saw with no intent in the store",
        "a run crashed",
    ):
        assert expected in problems, problems
