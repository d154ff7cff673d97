"""A local fleet for trying fleet mode, for the fleet chaos test and for the fleet bench: a private PostgreSQL cluster,
the local sandbox serving many companies (realms), N `synchealth worker` processes and one app server.

Every process is a child of the one that starts the fleet, with the same environment (the shared store's URL, the
sandbox, one token key); a worker can be killed (SIGKILL) and another started in its place at any moment.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import httpx
from cryptography.fernet import Fernet

from pipelines.clock import system_clock
from pipelines.config import child_environment
from pipelines.fleet.cluster import Cluster, free_port

__all__ = ["COMPANY_NAMES", "FIRST_REALM", "LocalFleet", "Queue", "blank_company", "company_name", "realm_ids"]

FIRST_REALM = 9130000000000001  # the local fleet's companies: FIRST_REALM, FIRST_REALM + 1, ...
_QBO_TRANSACTIONS = ("PurchaseOrder", "Bill", "Invoice", "Payment", "BillPayment", "JournalEntry")
_READY_WAIT = 60.0


def realm_ids(count: int) -> list[str]:
    return [str(FIRST_REALM + i) for i in range(count)]


# The local fleet's companies go by these names, in realm order (then numbered): a firm's company table whose rows all
# read "Acme Field Services Inc." tells nobody which company is which.
COMPANY_NAMES = (
    "Acme Field Services Inc.",
    "Birchline Facilities LLC",
    "Cedar Ridge Mechanical Co.",
    "Dunmore Property Care Ltd.",
    "Elmstead Electrical Inc.",
    "Foxglove Landscaping LLC",
)


def company_name(realm_id: str) -> str:
    """The name the local fleet gives a realm's company (distinct for every realm of `realm_ids`)."""
    index = int(realm_id) - FIRST_REALM if realm_id.isdigit() else -1
    if index < 0:
        return f"{COMPANY_NAMES[0]} ({realm_id})"
    if index < len(COMPANY_NAMES):
        return COMPANY_NAMES[index]
    return f"{COMPANY_NAMES[0].removesuffix(' Inc.')} No. {index + 1}"


def blank_company(company: dict[str, Any], realm_id: str) -> dict[str, Any]:
    """The company file for `realm_id`: its names (accounts, items, parties), none of its transactions and the
    books open, so every clean AWRA record of the snapshot is still to be sent; the company named for its realm."""
    prefs = json.loads(json.dumps(company.get("preferences", {})))
    prefs.get("AccountingInfoPrefs", {}).pop("BookCloseDate", None)
    objects = {k: v for k, v in company["objects"].items() if k not in _QBO_TRANSACTIONS}
    info = {**company.get("company_info", {}), "CompanyName": company_name(realm_id)}
    info["LegalName"] = info["CompanyName"]
    return {**company, "realm_id": realm_id, "objects": objects, "preferences": prefs, "company_info": info}


def _wait_http(url: str, proc: subprocess.Popen[Any], what: str, timeout: float = _READY_WAIT) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the {what} ended at start (exit {proc.returncode}); see its log")
        try:
            if httpx.get(url, timeout=2).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"the {what} did not answer on {url} within {timeout:.0f} s")


@dataclass
class LocalFleet:
    """The fleet's processes in `folder` (logs in `folder/logs`); `start()` then `seed(...)`, `stop()` at the end.

    time_scale: the sandbox's clock and limit windows run that many times faster (the workers are told, so their
    shared limiter counts in the same windows); below 1, QuickBooks' per-realm limits bind sooner.
    """

    folder: Path
    workers: int = 2
    concurrency: int = 1
    time_scale: float = 1.0
    faults: str | None = None
    fault_seed: int = 0
    server: bool = True
    server_port: int = 0
    sandbox_port: int = 0
    retry_schedule: str = "5,10,20,40,80"
    sandbox_options: tuple[str, ...] = ()  # more `synchealth sandbox` options, e.g. ("--retry-after", "1")
    limits: str | None = None  # per-realm limits other than QBO's, for the sandbox and the workers alike (benches)
    extra_env: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.folder = Path(self.folder)
        self.logs = self.folder / "logs"
        self.cluster: Cluster | None = None
        self.url = ""
        self.sandbox_url = ""
        self.server_url = ""
        self.key = Fernet.generate_key().decode()
        self._pg_folder = self.folder / "pg"
        self._sandbox: subprocess.Popen[Any] | None = None
        self._server: subprocess.Popen[Any] | None = None
        self.worker_procs: list[subprocess.Popen[Any]] = []
        self._spawned = 0
        self._deferring = threading.Event()
        self._deferrer: threading.Thread | None = None

    # -- processes ---------------------------------------------------------------------------------------
    @property
    def env(self) -> dict[str, str]:
        """What every process of the fleet is started with."""
        base = {k: v for k, v in child_environment().items() if not k.startswith("SYNCHEALTH_")}
        base.update(
            SYNCHEALTH_DB=self.url,
            SYNCHEALTH_QBO_ENV="local",
            SYNCHEALTH_QBO_BASE_URL=self.sandbox_url,
            SYNCHEALTH_SECRET_KEY=self.key,
            SYNCHEALTH_QBO_TIME_SCALE=f"{self.time_scale:g}",
            SYNCHEALTH_RETRY_SCHEDULE=self.retry_schedule,
            SYNCHEALTH_REALM_ID=str(FIRST_REALM),
            PYTHONUNBUFFERED="1",
        )
        if self.limits:
            base["SYNCHEALTH_QBO_LIMITS"] = self.limits
        base.update(self.extra_env)
        return base

    def _spawn(self, name: str, args: Sequence[str]) -> subprocess.Popen[Any]:
        self.logs.mkdir(parents=True, exist_ok=True)
        log = (self.logs / f"{name}.log").open("ab")
        command = [sys.executable, "-m", "pipelines.cli", *args]
        return subprocess.Popen(command, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

    def start(self) -> LocalFleet:
        """PostgreSQL, the store's schema and the queue's, the sandbox, the app server and the workers."""
        self.folder.mkdir(parents=True, exist_ok=True)
        # Its own temporary folder, open to the `postgres` account the server runs as when this runs as root (a
        # test's folder is private to its owner all the way down).
        self._pg_folder = Path(tempfile.mkdtemp(prefix="synchealth-fleet-pg-"))
        self._pg_folder.chmod(0o755)
        self.cluster = Cluster(self._pg_folder).start()
        self.url = self.cluster.create_database("synchealth")
        from pipelines.fleet.worker import ensure_schema
        from pipelines.store import Store

        Store(self.url).close()  # migrations once, before any worker starts
        ensure_schema(self.url)
        port = self.sandbox_port or free_port()
        self.sandbox_url = f"http://127.0.0.1:{port}"
        sandbox_args = ["sandbox", "--port", str(port), "--time-scale", f"{self.time_scale:g}"]
        if self.faults:
            sandbox_args += ["--faults", self.faults, "--seed", str(self.fault_seed)]
        sandbox_args += list(self.sandbox_options)
        if self.limits:
            sandbox_args += ["--limits", self.limits]
        self._sandbox = self._spawn("sandbox", sandbox_args)
        _wait_http(f"{self.sandbox_url}/_sandbox/", self._sandbox, "sandbox")
        if self.server:
            port = self.server_port or free_port()
            self.server_url = f"http://127.0.0.1:{port}"
            self._server = self._spawn("server", ["serve", "--host", "127.0.0.1", "--port", str(port)])
            _wait_http(f"{self.server_url}/healthz", self._server, "app server")
        for _ in range(self.workers):
            self.start_worker()
        return self

    def start_worker(self) -> subprocess.Popen[Any]:
        self._spawned += 1
        proc = self._spawn(
            f"worker-{self._spawned}", ["worker", "--concurrency", str(self.concurrency), "--no-schedule"]
        )
        self.worker_procs.append(proc)
        return proc

    def kill_worker(self, proc: subprocess.Popen[Any]) -> None:
        """SIGKILL: no handler runs, the job is left `doing` until a stalled-job sweep gives it to another worker."""
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
        if proc in self.worker_procs:
            self.worker_procs.remove(proc)

    def pids(self) -> list[int]:
        """The fleet's processes: workers, app server, sandbox and the PostgreSQL server with its backends."""
        own = [p.pid for p in [*self.worker_procs, self._server, self._sandbox] if p is not None and p.poll() is None]
        postmaster = self._pg_folder / "data" / "postmaster.pid"
        if postmaster.exists():
            root = int(postmaster.read_text().split()[0])
            own.append(root)
            for stat in Path("/proc").glob("[0-9]*/stat"):
                try:
                    fields = stat.read_text().rsplit(")", 1)[1].split()
                except OSError:
                    continue
                if int(fields[1]) == root:  # ppid
                    own.append(int(stat.parent.name))
        return own

    def stop(self) -> None:
        self.stop_deferring()
        for proc in [*self.worker_procs, self._server, self._sandbox]:
            if proc is not None and proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in [*self.worker_procs, self._server, self._sandbox]:
            if proc is None:
                continue
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)
        self.worker_procs.clear()
        if self.cluster is not None:
            self.cluster.stop()
            self.cluster = None
            shutil.rmtree(self._pg_folder, ignore_errors=True)

    def __enter__(self) -> LocalFleet:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- companies ---------------------------------------------------------------------------------------
    def seed(
        self, realms: Sequence[str], *, scale: int | None = 60, as_of: date | None = None, demo_seed: int = 7
    ) -> Path:
        """One demo company (AWRA snapshot and QuickBooks names), loaded into the sandbox and ingested for every realm
        in `realms`, each connected; returns the snapshot folder."""
        from pipelines.demo.company import write_demo
        from pipelines.ingest import ingest_snapshot
        from pipelines.store import Store

        demo = self.folder / "demo"
        now = system_clock()
        if not (demo / "qbo-company.json").exists():
            write_demo(demo, as_of=as_of or now.date(), seed=demo_seed, scale=scale)
        with Store(self.url) as store:
            for realm in realms:
                ingest_snapshot(store, demo / "awra", realm_id=realm, now=now)
            store.execute("ANALYZE")  # the planner's statistics after a bulk load (see worker._analyze_now_and_then)
        self.connect(realms)
        return demo / "awra"

    def connect(self, realms: Sequence[str]) -> None:
        """Each realm's company (names only, books open) loaded into the sandbox and connected in the store."""
        from pipelines.config import load_settings
        from pipelines.store import Store
        from qbo.tokens import TokenSet, TokenStore

        company = json.loads((self.folder / "demo" / "qbo-company.json").read_text())
        now = system_clock()
        with Store(self.url) as store, httpx.Client(base_url=self.sandbox_url, timeout=60) as control:
            tokens = TokenStore(store, load_settings(self.env))
            for realm in realms:
                control.post("/_sandbox/load", json=blank_company(company, realm)).raise_for_status()
                issued = control.post("/_sandbox/tokens", json={"realm": realm}).raise_for_status().json()
                tokens.save_connection(
                    realm, TokenSet.from_response(issued, now), now=now, connected_by="admin@demo.local"
                )

    # -- the cycles' cadence -------------------------------------------------------------------------------
    def defer_cycles(self) -> int:
        """Each connected company's cycle, once (one already waiting is not queued again); stalled jobs of killed
        workers go back to the queue."""
        from pipelines.fleet.worker import defer_all, retry_stalled

        with Queue(self.url) as app:
            retry_stalled(app)
            return defer_all(app, self.url)

    def sweep(self) -> int:
        """Stalled jobs of killed workers back to the queue (what the workers' periodic sweep does each minute)."""
        from pipelines.fleet.worker import retry_stalled

        with Queue(self.url) as app:
            return retry_stalled(app)

    def keep_deferring(self, every: float) -> None:
        """What the periodic task does each minute, every `every` seconds, on a thread of this process."""

        def loop() -> None:
            while not self._deferring.wait(every):
                try:
                    self.defer_cycles()
                except Exception as err:  # the next turn tries again
                    print(f"synchealth fleet: deferring the cycles failed: {err}", file=sys.stderr)

        self._deferring.clear()
        self._deferrer = threading.Thread(target=loop, name="fleet-deferrer", daemon=True)
        self._deferrer.start()

    def stop_deferring(self) -> None:
        self._deferring.set()
        if self._deferrer is not None:
            self._deferrer.join(30)
            self._deferrer = None


class Queue:
    """The queue, opened for a moment (deferring does not need a worker)."""

    def __init__(self, url: str) -> None:
        import procrastinate

        self.app = procrastinate.App(connector=procrastinate.SyncPsycopgConnector(conninfo=url))

    def __enter__(self) -> Any:
        self.app.open()
        return self.app

    def __exit__(self, *exc: object) -> None:
        self.app.close()
