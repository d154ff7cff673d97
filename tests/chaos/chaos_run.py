"""The chaos run: a demo company through a faulted loopback sandbox, the sync process killed at random, to idle."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from cryptography.fernet import Fernet

from pipelines.clock import system_clock
from pipelines.config import DEMO_REALM_ID, Settings
from pipelines.connection import connect, qbo_client
from pipelines.demo.company import write_demo
from pipelines.ingest import ingest_snapshot
from pipelines.pull import pull
from pipelines.store import Store
from qbo.sandbox import Sandbox
from qbo.sandbox.faults import FAULT_KINDS
from qbo.sandbox.server import RunningSandbox, start_in_thread

__all__ = ["ADMIN", "REALM", "ChaosPlan", "ChaosRun", "Figures", "fault_spec"]

ROOT = Path(__file__).resolve().parents[2]
DRIVER = Path(__file__).with_name("chaos_driver.py")
ADMIN = "admin@demo.local"
REALM = DEMO_REALM_ID
SYNC = f"--actor {ADMIN} sync"
PULL = f"--actor {ADMIN} pull"
# The points where the engine can be told to die at once (pipelines/store.py crash_point), beside the SIGKILLs.
CRASH_POINTS = ("sync.after_intent", "sync.after_send")
# States the engine still owes work on: the queue is idle when no record is in one of them.
OPEN_STATES = ("ready", "queued", "retry_scheduled", "ambiguous")


# QBO transactions the demo company already holds with our marker ("synced by an earlier run"); the chaos run drops
# them and opens the books, so that the company's whole history goes through the faulted sync, not the few recent
# records (the rest would be linked by their marker or refused as dated in a closed period, with nothing sent).
_TRANSACTIONS = ("PurchaseOrder", "Bill", "Invoice", "Payment", "BillPayment", "JournalEntry")


def first_sync_company(path: Path, share: float, rng: random.Random) -> Path:
    """The demo company file, books open, without `share` of our earlier transactions (all else stays)."""
    doc = json.loads(path.read_text())
    doc["preferences"]["AccountingInfoPrefs"].pop("BookCloseDate", None)
    for entity in _TRANSACTIONS:
        objects = doc["objects"].get(entity, [])
        ours = [o for o in objects if str(o.get("PrivateNote") or "").startswith("awra:")]
        gone = {id(o) for o in rng.sample(ours, round(len(ours) * share))}
        doc["objects"][entity] = [o for o in objects if id(o) not in gone]
    out = path.with_name("qbo-company-first-sync.json")
    out.write_text(json.dumps(doc))
    return out


def fault_spec(rate: float) -> str:
    """Every kind the sandbox injects, sharing `rate` equally, on every operation (reads and queries too)."""
    share = rate / len(FAULT_KINDS)
    return ",".join(f"{kind}={share:.6f}" for kind in FAULT_KINDS)


@dataclass(frozen=True)
class ChaosPlan:
    """How hard to shake: the company's size, the kills, the faults and the clocks."""

    records: int
    kills: int  # kills tried for
    # Kills that must land: the queue can go idle before all have (a crash point is only reached while something is
    # sent, and a run that only settles open intents by lookup never reaches it), and nothing is left to interrupt.
    min_kills: int = 0
    fault_rate: float = 0.30
    resend_share: float = 1.0  # of the transactions the demo company already holds: dropped, so the sync sends them
    token_expiries: int = 2
    crash_point_share: float = 0.25  # of the kills: by SYNCHEALTH_CRASH_AT instead of SIGKILL
    pull_share: float = 0.3  # rounds that pull QuickBooks changes before the sync, as a scheduler cycle does
    max_requests_before_kill: int = 40
    max_seconds_before_kill: float = 8.0  # counted from the run's first API request
    read_timeout: float = 1.0  # the driver's HTTP read timeout; the sandbox holds a timeout fault longer
    retry_schedule: tuple[int, ...] = (1,) * 10  # seconds: due by the next run; ten, so no record runs out
    max_settle_rounds: int = 40
    round_timeout: float = 900.0


@dataclass
class Figures:
    """What the run did, for the report and for the failure message."""

    seed: int
    records: int = 0
    rounds: int = 0
    kills: int = 0
    crash_points: int = 0
    token_expiries: int = 0
    reconnects: int = 0
    settle_rounds: int = 0
    seconds: float = 0.0
    faults: dict[str, int] = field(default_factory=dict)
    api_requests: int = 0
    attempts: dict[str, int] = field(default_factory=dict)
    states: dict[str, int] = field(default_factory=dict)
    open_exceptions: dict[str, int] = field(default_factory=dict)
    exits: Counter = field(default_factory=Counter)
    timeline: list[str] = field(default_factory=list)  # per run: how it ended, its seconds and API requests

    def summary(self) -> str:
        return (
            f"chaos seed {self.seed} (replay: SYNCHEALTH_CHAOS_SEED={self.seed}): {self.records:,} records, "
            f"{self.rounds} runs, {self.kills} kills ({self.crash_points} at crash points), "
            f"{self.token_expiries} token expiries, {self.reconnects} reconnects, {self.settle_rounds} runs to idle, "
            f"{self.seconds:.0f} s; {self.api_requests:,} API requests, faults {self.faults}; "
            f"attempts {self.attempts}; states {self.states}; open exceptions {self.open_exceptions}; "
            f"exits {dict(self.exits)}; runs (exit/seconds/requests) {' '.join(self.timeline)}"
        )


class ChaosRun:
    """One seeded run: set up, shake, settle; the sandbox stays up for the checks until the context ends."""

    def __init__(self, tmp: Path, plan: ChaosPlan, seed: int) -> None:
        self.tmp, self.plan, self.seed = tmp, plan, seed
        self.rng = random.Random(seed)
        self.figures = Figures(seed)
        self.snapshot_dir = tmp / "demo" / "awra"
        self.request_ids: set[str] = set()  # every requestid the sandbox saw, harvested after each run
        self.ended: list[tuple[int, str]] = []  # exit code and stderr of each run that ended on its own
        self.running: RunningSandbox | None = None
        self.control: httpx.Client | None = None
        self.settings: Settings | None = None

    # -- the sandbox and the store ------------------------------------------------------------------------
    def __enter__(self) -> ChaosRun:
        write_demo(self.tmp / "demo", seed=self.seed, scale=self.plan.records, as_of=system_clock().date())
        sandbox = Sandbox(
            first_sync_company(self.tmp / "demo" / "qbo-company.json", self.plan.resend_share, self.rng),
            retry_after_seconds=1,  # a throttle is waited out in a second, not QBO's default minute
            timeout_hold_seconds=self.plan.read_timeout + 1.0,
        )
        self.running = start_in_thread(sandbox)
        self.control = httpx.Client(base_url=self.running.base_url, timeout=30.0)
        self.settings = Settings(
            db_path=self.tmp / "chaos.duckdb",
            qbo_base_url=self.running.base_url,
            secret_key=Fernet.generate_key().decode(),
            secret_key_file=self.tmp / "secret.key",
            retry_schedule=self.plan.retry_schedule,
        )
        with Store(self.settings.db_path) as store:
            ingest_snapshot(store, self.snapshot_dir, realm_id=REALM, now=system_clock())
            connect(self.settings, store, actor=ADMIN)
            with qbo_client(self.settings, store) as client:
                pull(
                    store, client, now=system_clock()
                )  # what QuickBooks already holds, before anything is sent (as `make run`)
            self.figures.records = store.scalar("SELECT count(*) FROM records WHERE removed_at IS NULL")
        return self

    def __exit__(self, *exc: object) -> None:
        if self.control is not None:
            self.control.close()
        if self.running is not None:
            self.running.stop()
            self.running.sandbox.close()

    def sandbox_errors(self) -> list[str]:
        assert self.running is not None
        return list(self.running.sandbox.errors)

    def store(self) -> Store:
        assert self.settings is not None
        return Store(self.settings.db_path)

    def api(self, method: str, path: str, **kwargs: Any) -> Any:
        """The sandbox control API (never faulted)."""
        assert self.control is not None
        answer = self.control.request(method, path, **kwargs)
        answer.raise_for_status()
        return answer.json()

    def _env(self, crash_at: str | None) -> dict[str, str]:
        assert self.settings is not None
        env = {k: v for k, v in os.environ.items() if not k.startswith("SYNCHEALTH_")}
        env.update(
            SYNCHEALTH_DB=str(self.settings.db_path),
            SYNCHEALTH_QBO_BASE_URL=self.settings.qbo_base_url,
            SYNCHEALTH_SECRET_KEY=self.settings.secret_key or "",
            SYNCHEALTH_REALM_ID=REALM,
            SYNCHEALTH_RETRY_SCHEDULE=",".join(str(s) for s in self.plan.retry_schedule),
        )
        if crash_at:
            env["SYNCHEALTH_CRASH_AT"] = crash_at
        return env

    # -- one run of the process ---------------------------------------------------------------------------
    def _draws(self) -> int:
        return int(self.api("GET", "/_sandbox/faults")["draws"])

    def _expire_tokens(self) -> None:
        self.api("POST", f"/_sandbox/{REALM}/tokens/expire")
        self.figures.token_expiries += 1

    def _round(
        self,
        commands: list[str],
        *,
        crash_at: str | None = None,
        kill_after_requests: int | None = None,
        kill_after_seconds: float | None = None,
        expire_after_requests: int | None = None,
    ) -> tuple[int, str]:
        """Run the driver once; kill it at the point given. Returns (exit code, stderr); -9 when killed."""
        self.figures.rounds += 1
        log = self.tmp / f"round-{self.figures.rounds}.err"
        argv = [sys.executable, str(DRIVER), str(self.plan.read_timeout), *commands]
        started, draws = time.monotonic(), self._draws()
        with log.open("w") as err:
            proc = subprocess.Popen(argv, cwd=ROOT, env=self._env(crash_at), stdout=subprocess.DEVNULL, stderr=err)
            try:
                self._watch(proc, kill_after_requests, kill_after_seconds, expire_after_requests)
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
        requests = self._draws() - draws
        self._harvest_request_ids(requests)
        where = f"@{crash_at}" if crash_at else ""
        self.figures.timeline.append(f"{proc.returncode}/{time.monotonic() - started:.0f}s/{requests}r{where}")
        return proc.returncode, log.read_text()

    def _watch(
        self, proc: subprocess.Popen, after_requests: int | None, after_seconds: float | None, expire_at: int | None
    ) -> None:
        """Kill after so many API requests, or so many seconds after the first one: mid-work, not mid-import."""
        start, t0, first, expired = self._draws(), time.monotonic(), None, False
        while proc.poll() is None:
            seen = self._draws() - start
            if seen and first is None:
                first = time.monotonic()
            if expire_at is not None and not expired and seen >= expire_at:
                self._expire_tokens()  # mid-run: the running process finds its access token refused
                expired = True
            late = after_seconds is not None and first is not None and time.monotonic() - first >= after_seconds
            if (after_requests is not None and seen >= after_requests) or late:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait()
                return
            if time.monotonic() - t0 > self.plan.round_timeout:
                raise AssertionError(f"a run did not finish in {self.plan.round_timeout:.0f} s (seed {self.seed})")
            time.sleep(0.02)

    def _harvest_request_ids(self, requests: int) -> None:
        # The sandbox keeps its last 5,000 requests; each run makes far fewer, and ids are collected as a set.
        assert requests < 4000, f"a run made {requests} API requests: the sandbox log may have dropped some"
        log = self.api("GET", "/_sandbox/log", params={"limit": 5000})
        self.request_ids |= {e["requestid"] for e in log if e.get("requestid")}

    def _after_round(self) -> None:
        """An admin's one duty in the run: reconnect a realm QuickBooks stopped accepting (the product asks it)."""
        assert self.settings is not None
        with self.store() as store:
            status = store.scalar("SELECT status FROM qbo_connections WHERE realm_id = ?", [REALM])
            if status != "connected":
                connect(self.settings, store, actor=ADMIN)
                self.figures.reconnects += 1

    # -- the phases ---------------------------------------------------------------------------------------
    def shake(self) -> None:
        """Faults on, then run the sync and kill it at random points until the planned kills are done."""
        self.api("POST", "/_sandbox/faults", json={"spec": fault_spec(self.plan.fault_rate), "seed": self.seed})
        expiring = set(self.rng.sample(range(self.plan.kills), min(self.plan.token_expiries, self.plan.kills)))
        attempts = 0
        while self.figures.kills < self.plan.kills and attempts < self.plan.kills * 3 + 10:
            if self.idle():
                return  # nothing left to interrupt: the test reports the kills that landed
            attempts += 1
            commands = [PULL, SYNC] if self.rng.random() < self.plan.pull_share else [SYNC]
            expire = 1 if self.figures.kills in expiring else None  # at its first request, before any kill
            if self.rng.random() < self.plan.crash_point_share:
                code, err = self._round(commands, crash_at=self.rng.choice(CRASH_POINTS), expire_after_requests=expire)
            elif self.rng.random() < 0.5:
                n = self.rng.randint(1, self.plan.max_requests_before_kill)
                code, err = self._round(commands, kill_after_requests=n, expire_after_requests=expire)
            else:
                t = self.rng.uniform(0.0, self.plan.max_seconds_before_kill)
                code, err = self._round(commands, kill_after_seconds=t, expire_after_requests=expire)
            self._count_exit(code, err)
            self._after_round()

    def settle(self) -> None:
        """Faults still on: run the sync to the end, again and again, until nothing is left in the queue."""
        for _ in range(self.plan.max_settle_rounds):
            if self.idle():
                return
            self.figures.settle_rounds += 1
            commands = [PULL, SYNC] if self.rng.random() < self.plan.pull_share else [SYNC]
            # Kills may have landed before an expiry did: the token then expires in a run that goes to the end.
            expire = 1 if self.figures.token_expiries < self.plan.token_expiries else None
            code, err = self._round(commands, expire_after_requests=expire)
            self._count_exit(code, err)
            self._after_round()

    def _count_exit(self, code: int, err: str) -> None:
        if code == -signal.SIGKILL:
            self.figures.kills += 1
        elif code == 70:
            self.figures.kills += 1
            self.figures.crash_points += 1
        else:
            self.ended.append((code, err))
        self.figures.exits[code] += 1

    def idle(self) -> bool:
        with self.store() as store:
            left = store.scalar(
                f"SELECT count(*) FROM records WHERE realm_id = ? AND removed_at IS NULL AND state IN {OPEN_STATES} "
                "AND entity NOT IN ('item', 'account')",  # items and accounts are mapped, never sent
                [REALM],
            )
            open_intents = store.scalar("SELECT count(*) FROM sync_intents WHERE settled_at IS NULL")
            finished = store.scalar("SELECT count(*) FROM sync_runs WHERE status = 'done'")
        return left == 0 and open_intents == 0 and finished > 0  # before a first check, every record is not_ready

    def run(self) -> Figures:
        clock = time.monotonic()
        self.shake()
        self.settle()
        self.figures.seconds = time.monotonic() - clock
        self._tally()
        return self.figures

    def _tally(self) -> None:
        faults = self.api("GET", "/_sandbox/faults")
        self.figures.faults = dict(sorted(faults["injected"].items()))
        self.figures.api_requests = int(faults["draws"])
        with self.store() as store:
            self.figures.attempts = dict(
                store.rows("SELECT outcome, count(*) FROM sync_attempts GROUP BY 1 ORDER BY 1")
            )
            self.figures.states = dict(store.rows("SELECT state, count(*) FROM records GROUP BY 1 ORDER BY 1"))
            self.figures.open_exceptions = dict(
                store.rows(
                    "SELECT dimension, count(*) FROM exceptions WHERE status <> 'resolved' GROUP BY 1 ORDER BY 1"
                )
            )
