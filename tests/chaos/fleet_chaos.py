"""The fleet chaos run: many companies in one faulted sandbox, worker processes SIGKILLed mid-cycle at seeded points, a
person retrying records through the commands while the workers sync; then idle, and the checks.

Everything is read back the way an operator would: the store (records, exceptions, `fleet_job_log`, procrastinate's
jobs) and the sandbox's control API (objects carrying our source marker, request counts against the limits).
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from pipelines.commands import Caller, Commands
from pipelines.config import load_settings
from pipelines.duplicates import QBO_ENTITY
from pipelines.fleet.local import LocalFleet, realm_ids
from pipelines.identity import Identity
from pipelines.serve.state import PAGE_LOCK_WAIT
from pipelines.store import Store

__all__ = ["FleetChaosPlan", "FleetChaosRun"]

SENT = {entity: qbo for entity, qbo in QBO_ENTITY.items() if entity != "item"}
OPEN_STATES = ("ready", "queued", "retry_scheduled", "ambiguous")
ADMIN = Identity("admin@demo.local", "admin")
# Faults that answer at once (no 30-second held timeouts): the quick form's; the long form adds a timeout after commit.
QUICK_FAULTS = "http_500=0.04,http_503_html=0.03,throttle_429_xml=0.03,connection_reset=0.03,try_again_6000=0.03"
LONG_FAULTS = QUICK_FAULTS + ",timeout_after_commit=0.01"


@dataclass(frozen=True)
class FleetChaosPlan:
    realms: int = 3
    workers: int = 3
    kills: int = 3
    scale: int = 40  # the demo's smallest company: about 430 AWRA records
    min_retries: int = 5  # the person goes on retrying at least this often, kills done or not
    faults: str = QUICK_FAULTS
    every: float = 2.0  # seconds between deferrals of every company's cycle
    kill_delay: tuple[float, float] = (0.5, 12.0)  # a kill lands this long (seeded) after a cycle started
    retry_every: float = 1.0  # a person's retry of a few records, this often, while the workers sync
    settle_timeout: float = 600.0


@dataclass
class Figures:
    seed: int
    records: int = 0
    kills: int = 0
    killed_jobs: list[int] = field(default_factory=list)
    retries: Counter = field(default_factory=Counter)
    jobs: Counter = field(default_factory=Counter)
    seconds: float = 0.0
    states: dict[str, int] = field(default_factory=dict)

    def summary(self) -> str:
        return (
            f"fleet chaos seed {self.seed}: {self.records:,} records, {self.kills} workers killed mid-cycle "
            f"(jobs {self.killed_jobs}), retries {dict(self.retries)}, jobs {dict(self.jobs)}, states {self.states}, "
            f"{self.seconds:.0f} s"
        )


class FleetChaosRun:
    def __init__(self, tmp: Path, plan: FleetChaosPlan, seed: int) -> None:
        self.tmp, self.plan, self.seed = tmp, plan, seed
        self.rng = random.Random(seed)
        self.figures = Figures(seed)
        self.realms = realm_ids(plan.realms)
        self.fleet = LocalFleet(
            tmp / "fleet",
            workers=plan.workers,
            faults=plan.faults,
            fault_seed=seed,
            retry_schedule=",".join(["1"] * 10),
            # A throttle is waited out in a second, not QBO's default minute; a held timeout outlasts the client's.
            sandbox_options=("--retry-after", "1", "--timeout-hold", "31"),
        )
        self.killed_at: dict[str, float] = {}  # "host:pid" of a killed worker -> when (epoch seconds, database clock)
        self._stop_retrying = threading.Event()

    def __enter__(self) -> FleetChaosRun:
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop_retrying.set()
        self.fleet.stop()

    # -- the run -------------------------------------------------------------------------------------------
    def run(self) -> Figures:
        started = time.monotonic()
        self.fleet.start()
        self.fleet.seed(self.realms, scale=self.plan.scale)
        with self.store() as store:
            self.figures.records = int(store.scalar("SELECT count(*) FROM records WHERE removed_at IS NULL"))
        self.fleet.defer_cycles()
        self.fleet.keep_deferring(self.plan.every)
        person = threading.Thread(target=self._retrying, name="a-person-retrying", daemon=True)
        person.start()
        try:
            self._kill_mid_cycle()
            deadline = time.monotonic() + 120
            while sum(self.figures.retries.values()) < self.plan.min_retries and time.monotonic() < deadline:
                time.sleep(0.5)
        finally:
            self._stop_retrying.set()
            person.join(60)
        self._settle()
        self.fleet.stop_deferring()
        self.figures.seconds = time.monotonic() - started
        with self.store() as store:
            self.figures.states = dict(store.rows("SELECT state, count(*) FROM records GROUP BY 1 ORDER BY 1"))
            self.figures.jobs = Counter(
                dict(store.rows("SELECT status::text, count(*) FROM procrastinate_jobs GROUP BY 1"))
            )
        return self.figures

    def store(self) -> Store:
        return Store(self.fleet.url)

    def _running_cycles(self, store: Store) -> list[tuple[int, str, str, float]]:
        rows = store.rows(
            "SELECT job_id, realm_id, worker, extract(epoch FROM started_at) FROM fleet_job_log "
            "WHERE finished_at IS NULL AND task = 'synchealth.realm_cycle' ORDER BY started_at"
        )
        return [(int(j), r, w, float(t)) for j, r, w, t in rows if w not in self.killed_at]

    def _kill_mid_cycle(self) -> None:
        """Each kill: wait for a cycle under way, let it run a seeded while, SIGKILL its worker, start another."""
        deadline = time.monotonic() + self.plan.settle_timeout
        with self.store() as store:
            while self.figures.kills < self.plan.kills and time.monotonic() < deadline:
                running = self._running_cycles(store)
                if not running:
                    time.sleep(0.1)
                    continue
                job_id, _realm, worker, _t = self.rng.choice(running)
                time.sleep(self.rng.uniform(*self.plan.kill_delay))
                still = store.scalar(
                    "SELECT count(*) FROM fleet_job_log WHERE job_id = ? AND worker = ? AND finished_at IS NULL",
                    [job_id, worker],
                )
                if not still:
                    continue  # the cycle ended first: not a mid-cycle kill; draw again
                pid = int(worker.rsplit(":", 1)[1])
                proc = next((p for p in self.fleet.worker_procs if p.pid == pid), None)
                if proc is None:
                    continue
                # On the database's clock, as the job log's times are: the two may differ (a test run's moved clock).
                self.killed_at[worker] = float(store.scalar("SELECT extract(epoch FROM clock_timestamp())"))
                self.fleet.kill_worker(proc)
                self.figures.kills += 1
                self.figures.killed_jobs.append(job_id)
                self.fleet.start_worker()

    def _retrying(self) -> None:
        """A person on a page: retries a few records of one company through the commands (the realm's lock)."""
        rng = random.Random(self.seed + 1)
        settings = load_settings(self.fleet.env)
        with self.store() as store:
            commands = Commands(store, settings, lock_wait=PAGE_LOCK_WAIT)
            while not self._stop_retrying.wait(self.plan.retry_every):
                realm = rng.choice(self.realms)
                keys = [
                    f"{e}:{r}"
                    for e, r in store.rows(
                        "SELECT entity, record_id FROM records WHERE realm_id = ? AND state IN "
                        "('retry_scheduled', 'needs_fix', 'blocked', 'ready') ORDER BY entity, record_id LIMIT 3",
                        [realm],
                    )
                ]
                if not keys:
                    continue
                try:
                    done = commands.retry(Caller(ADMIN, realm, lambda: datetime.now(UTC)), keys)
                except Exception as err:  # a command never raises; if one does, the check names it
                    self.figures.retries[f"raised {type(err).__name__}: {err}"] += 1
                    continue
                self.figures.retries["busy" if "busy" in done.message else done.status] += 1

    def _records_idle(self, store: Store) -> bool:
        return not store.scalar(f"SELECT count(*) FROM records WHERE removed_at IS NULL AND state IN {OPEN_STATES}")

    def _jobs_left(self, store: Store) -> int:
        return int(store.scalar("SELECT count(*) FROM procrastinate_jobs WHERE status IN ('todo', 'doing')"))

    def _settle(self) -> None:
        """Cycles go on until no record is owed anything (twice in a row, a deferral apart); then no more are queued,
        and the jobs already queued or running (webhook pulls among them) run out."""
        deadline = time.monotonic() + self.plan.settle_timeout
        quiet = 0
        with self.store() as store:
            while time.monotonic() < deadline and quiet < 2:
                self.fleet.defer_cycles()  # also gives stalled jobs back, at once
                time.sleep(self.plan.every)
                quiet = quiet + 1 if self._records_idle(store) else 0
            self.fleet.stop_deferring()
            while time.monotonic() < deadline and self._jobs_left(store):
                if self._records_idle(store):
                    self.fleet.sweep()  # a job cut short by the last kill still goes back to the queue
                else:
                    self.fleet.defer_cycles()
                time.sleep(1.0)

    # -- the checks ----------------------------------------------------------------------------------------
    def control(self, path: str) -> Any:
        return httpx.get(f"{self.fleet.sandbox_url}{path}", timeout=60).raise_for_status().json()

    def problems(self) -> list[str]:
        raised = [k for k in self.figures.retries if k.startswith("raised")]
        return [
            *([f"a person's retry raised: {raised}"] if raised else []),
            *self.accounted_for(),
            *self.no_duplicates(),
            *self.within_limits(),
            *self.one_worker_per_realm(),
            *self.killed_jobs_picked_up(),
        ]

    def accounted_for(self) -> list[str]:
        with self.store() as store:
            silent = store.rows(
                """SELECT r.realm_id || ' ' || r.entity || ':' || r.record_id || ' (' || r.state || ')' FROM records r
                   WHERE r.removed_at IS NULL AND r.state NOT IN ('synced', 'excluded') AND NOT EXISTS (
                     SELECT 1 FROM exceptions e WHERE e.realm_id = r.realm_id AND e.entity = r.entity
                       AND e.record_id = r.record_id AND e.status <> 'resolved'
                       AND coalesce(e.dimension, '') <> '' AND coalesce(e.owner, e.owner_role, '') <> '')
                   ORDER BY 1"""
            )
            in_flight = store.rows(
                f"SELECT realm_id || ' ' || entity || ':' || record_id FROM records WHERE removed_at IS NULL "
                f"AND state IN {OPEN_STATES} ORDER BY 1"
            )
            synced = dict(store.rows("SELECT realm_id, count(*) FROM records WHERE state = 'synced' GROUP BY 1"))
        problems = []
        if silent:
            problems.append(f"records neither synced nor owned by an exception: {[r[0] for r in silent[:5]]}")
        if in_flight:
            problems.append(f"records still in flight at idle: {[r[0] for r in in_flight[:5]]}")
        if set(synced) != set(self.realms):
            problems.append(f"companies with nothing synced: {sorted(set(self.realms) - set(synced))}")
        return problems

    def no_duplicates(self) -> list[str]:
        twice = []
        for realm in self.realms:
            found: dict[str, int] = defaultdict(int)
            for qbo_entity in SENT.values():
                for obj in self.control(f"/_sandbox/{realm}/entities/{qbo_entity}"):
                    note = str(obj.get("Notes") or obj.get("PrivateNote") or "").strip()
                    if obj.get("status") != "Deleted" and note.startswith("awra:"):
                        found[note.removeprefix("awra:").rsplit(":v", 1)[0]] += 1
            twice += [f"{realm} {key} x{n}" for key, n in found.items() if n > 1]
        return [f"records in QuickBooks more than once: {twice[:5]}"] if twice else []

    def within_limits(self) -> list[str]:
        stats = self.control("/_sandbox/stats")
        limits = stats["limits"]
        over = [
            realm
            for realm, c in stats["realms"].items()
            if c["max_in_window"] > limits["per_minute"]
            or c["max_batches_in_window"] > limits["batch_per_minute"]
            or c["max_concurrent"] > limits["max_concurrent"]
        ]
        problems = []
        if stats["over_limit"]:
            problems.append(f"the sandbox counted {stats['over_limit']} requests over a limit")
        if over:
            problems.append(f"companies past a limit: {over}")
        return problems

    def _intervals(self) -> dict[str, list[tuple[float, float, str, int]]]:
        """Per company: each job's (start, end, worker, job); a killed worker's job ends when the worker was killed."""
        with self.store() as store:
            rows = store.rows(
                "SELECT realm_id, worker, job_id, extract(epoch FROM started_at), extract(epoch FROM finished_at) "
                "FROM fleet_job_log ORDER BY started_at"
            )
        out: dict[str, list[tuple[float, float, str, int]]] = defaultdict(list)
        for realm, worker, job_id, start, end in rows:
            stop = float(end) if end is not None else self.killed_at.get(worker, float("inf"))
            out[realm].append((float(start), stop, worker, int(job_id)))
        return out

    def one_worker_per_realm(self) -> list[str]:
        overlaps = []
        for realm, spans in self._intervals().items():
            spans.sort()
            for (_s1, e1, w1, j1), (s2, _e2, w2, j2) in zip(spans, spans[1:], strict=False):
                if s2 < e1:
                    overlaps.append(f"{realm}: job {j1} on {w1} and job {j2} on {w2}")
        return [f"companies run by two workers at once: {overlaps[:5]}"] if overlaps else []

    def killed_jobs_picked_up(self) -> list[str]:
        # A killed job goes back to the queue. If a second cycle of the same company was cut short too, only one can
        # wait under the company's queueing lock, so the sweep may cancel the first one that was waiting again: its
        # work is then done by the later cycle, which must have finished after the kill, by a worker not killed first.
        with self.store() as store:
            log = store.rows(
                "SELECT job_id, worker, realm_id, extract(epoch FROM started_at), extract(epoch FROM finished_at) "
                "FROM fleet_job_log"
            )
            statuses = dict(store.rows("SELECT id, status::text FROM procrastinate_jobs"))
        never = float("inf")
        # A run counts as finished when its worker finished it before being killed, if it was: a worker killed
        # later, in another job, did finish this one.
        done = {int(j) for j, w, _r, _s, f in log if f is not None and float(f) <= self.killed_at.get(w, never)}
        realm_of = {int(j): r for j, _w, r, _s, _f in log}
        killed_at: dict[int, float] = {}  # a job -> when its last cut-short run's worker was killed
        for j, w, _r, _s, f in log:
            if f is None and w in self.killed_at:
                killed_at[int(j)] = max(killed_at.get(int(j), 0.0), self.killed_at[w])

        def superseded(job: int) -> bool:
            return statuses.get(job) == "cancelled" and any(
                r == realm_of.get(job) and f is not None and killed_at.get(job, never) < float(f)
                and float(f) <= self.killed_at.get(w, never) and statuses.get(int(j)) == "succeeded"
                for j, w, r, _s, f in log
            )  # fmt: skip

        lost = [j for j in self.figures.killed_jobs
                if not superseded(j) and not (j in done and statuses.get(j) == "succeeded")]  # fmt: skip
        if not lost:
            return []
        # What happened to their companies, to read the failure by: each job of the realm, where, when, how it ended.
        seen = [
            (int(j), w in self.killed_at, float(st), None if f is None else float(f), statuses.get(int(j)))
            for j, w, r, st, f in log
            if r in {realm_of.get(k) for k in lost}
        ]
        killed = {k: killed_at.get(k) for k in lost}
        return [f"killed jobs never finished by another worker: {lost} (killed at {killed}; their companies' jobs "
                f"as (job, on a killed worker, started, finished, status): {sorted(seen)})"]  # fmt: skip
