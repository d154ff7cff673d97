"""Benchmark: a cycle (ingest, pull, check, plan, checkpoint) after 1% of records changed, as a fraction of a full one.

The demo company at N records (`write_demo`, as `synchealth demo --scale N` writes it) and the delta snapshot AWRA
sends an hour later, 1% of every header table's records changed (`bench.ingest`'s helper), are written in a child
process. This process then runs, on an empty store, the full cycle: ingest the snapshot, a full pull from the
sandbox serving the demo's QBO company, the readiness check (`run_check`), and the plan (`build_payloads`: the body
of every record that is ready, which is what the sync builds before it sends; nothing is sent). An hour later
(sandbox and engine clocks) it runs the same cycle on the delta: the ingest applies the changed records, the pull is
a CDC, the check (incremental) and the plan run again. Each cycle ends with a checkpoint of what it left in DuckDB's
log, so neither pays for the other's writes. Aim: the second cycle costs at most 5% of the first.

The sandbox stands in for QBO's servers and the network; it runs in its own process, served over loopback HTTP as
QBO would be, so the measuring process's peak RSS is the engine's alone. The time spent waiting on it is measured
and left out of the pull's figure (and shown apart), because real QBO's time is not ours to cut. Nothing is sent
between the cycles, so the second plan covers the records ready before (not sent) plus the changed ones.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import httpx

from bench.common import in_child, peak_gb

__all__ = ["main", "run_cycle_stages", "setup"]

AS_OF = date(2026, 11, 26)
NOW = datetime(2026, 11, 26, 17, tzinfo=UTC)
STAGES = ("ingest", "pull", "check", "plan", "checkpoint")
_SHARE = 0.01


# -- setup (in a child process) ------------------------------------------------------------------------------
def setup(n: int, folder: Path, seed: int, fmt: str) -> dict[str, Any]:
    """Write the demo at about n records and the 1% delta snapshot that follows it; nothing is ingested here."""
    from bench.ingest import _delta, _manifest
    from pipelines.demo.company import DEMO_REALM_ID, write_demo
    from schemas.manifest import Manifest

    clock = time.perf_counter()
    summary = write_demo(folder / "demo", seed=seed, scale=n, as_of=AS_OF, fmt=fmt)
    written = time.perf_counter() - clock
    clock = time.perf_counter()
    # AWRA sends the first export whole and, an hour later, a delta: the 1% of records that changed since.
    _manifest(summary.snapshot_dir, Manifest("full", "s1"))
    edited = _delta(summary.snapshot_dir, folder / "changed", fmt, _SHARE)
    return {
        "snapshot": str(summary.snapshot_dir),
        "changed": str(folder / "changed"),
        "company_file": str(summary.company_file),
        "realm_id": DEMO_REALM_ID,
        "records": summary.records,
        "lines": sum(summary.counts.values()) - summary.records,
        "edited": edited,
        "seconds": {"write_demo": written, "1% delta": time.perf_counter() - clock},
        "peak_gb": peak_gb(),
    }


# -- the sandbox, in its own process ------------------------------------------------------------------------------
def _serve_sandbox(company_file: str, ports: Any, stop: Any) -> None:
    """Child process: serve the demo's QBO company on a loopback port until told to stop."""
    from qbo.sandbox import Sandbox, SandboxClock
    from qbo.sandbox.server import start_in_thread

    sandbox = Sandbox(company_file, clock=SandboxClock(start=NOW))
    with start_in_thread(sandbox) as running:
        ports.put(running.port)
        stop.wait()


class _RemoteSandbox:
    """The sandbox process as the engine sees it: a base URL, a clock kept in step, and its peak memory."""

    def __init__(self, company_file: Path) -> None:
        from qbo.sandbox import SandboxClock

        context = get_context("spawn")
        ports, self._stop = context.Queue(), context.Event()
        self._process = context.Process(target=_serve_sandbox, args=(str(company_file), ports, self._stop))
        self._process.start()
        self.base_url = f"http://127.0.0.1:{ports.get(timeout=1800)}"
        self._control = httpx.Client(base_url=self.base_url, timeout=60)
        answer = self._control.get("/_sandbox/clock").json()
        # The engine's view of the sandbox clock: started from the sandbox's own reading, moved by the same advances.
        self.clock = SandboxClock(start=datetime.fromisoformat(answer["now"]))

    def advance(self, seconds: float) -> None:
        self._control.post("/_sandbox/clock/advance", json={"seconds": seconds}).raise_for_status()
        self.clock.advance(seconds)

    def peak_gb(self) -> float:
        """The sandbox process's peak RSS so far (Linux VmHWM)."""
        try:
            status = Path(f"/proc/{self._process.pid}/status").read_text()
        except OSError:
            return float("nan")
        kib = next((int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM:")), 0)
        return kib / 1024**2

    def close(self) -> None:
        self._control.close()
        self._stop.set()
        self._process.join(timeout=30)
        if self._process.is_alive():
            self._process.kill()


# -- the cycle ---------------------------------------------------------------------------------------------------
class _TimedTransport(httpx.BaseTransport):
    """An HTTP transport adding up the seconds spent waiting on the sandbox (QBO's servers and the network)."""

    def __init__(self, inner: httpx.BaseTransport) -> None:
        self.inner = inner
        self.seconds = 0.0
        self.requests = 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        clock = time.perf_counter()
        try:
            return self.inner.handle_request(request)
        finally:
            self.seconds += time.perf_counter() - clock
            self.requests += 1


def run_cycle_stages(store, settings, http, transport: _TimedTransport, sandbox, folder: Path, now: datetime):
    """One cycle, each stage timed: (seconds per stage, sandbox seconds inside the pull, what each stage did)."""
    from pipelines.connection import qbo_client
    from pipelines.ingest import ingest_snapshot
    from pipelines.payloads import build_payloads
    from pipelines.pull import pull
    from pipelines.readiness import run_check

    realm_id = settings.realm_id
    seconds: dict[str, float] = {}
    facts: dict[str, str] = {}
    start = time.perf_counter()

    def at() -> datetime:
        # Each stage reads the engine's clock as a server's stages do: the cycle's start plus the time gone by. One
        # moment for the whole cycle would stamp the first check's start equal to every record the first ingest
        # stored, and the next check takes a change stamped at its predecessor's start again (at, not after).
        return now + timedelta(seconds=time.perf_counter() - start)

    clock = time.perf_counter()
    ingested = ingest_snapshot(store, folder, realm_id=realm_id, now=at())
    seconds["ingest"] = time.perf_counter() - clock
    facts["ingest"] = f"{ingested.status}: {ingested.new:,} new, {ingested.changed:,} changed"

    inside, requests = transport.seconds, transport.requests
    # Limiter waits move the sandbox clock instead of sleeping: the pull's requests per minute stay within QBO's
    # limits and the bench does not idle.
    with qbo_client(settings, store, http=http, sleep=sandbox.advance, clock=sandbox.clock.now) as client:
        clock = time.perf_counter()
        pulled = pull(store, client, now=at())
        seconds["pull"] = time.perf_counter() - clock
    emulator = transport.seconds - inside
    facts["pull"] = f"{pulled.kind}, {pulled.objects:,} objects, {transport.requests - requests:,} requests"

    clock = time.perf_counter()
    checked = run_check(store, realm_id, now=at())
    seconds["check"] = time.perf_counter() - clock
    facts["check"] = f"{checked.records:,} records, {checked.ready:,} ready, {checked.findings:,} findings"

    clock = time.perf_counter()
    plan = build_payloads(store, realm_id)
    seconds["plan"] = time.perf_counter() - clock
    sendable = plan.filter(plan["problem"].is_null())
    updates = sendable.filter(sendable["operation"] == "update").height
    facts["plan"] = f"{sendable.height:,} bodies ({updates:,} updates), {plan.height - sendable.height:,} held"

    # DuckDB checkpoints once its log is large (pipelines/store.py), so a cycle may leave its writes to a later
    # cycle's commit: each cycle here pays its own, and the second does not pay the first's.
    clock = time.perf_counter()
    store.execute("CHECKPOINT")
    seconds["checkpoint"] = time.perf_counter() - clock
    facts["checkpoint"] = "what the cycle left in the log written to the store file"
    return seconds, emulator, facts


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=100_000, help="demo company size (header records)")
    parser.add_argument("--format", default="parquet", choices=["csv", "parquet", "jsonl"], help="snapshot files")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--dir", type=Path, default=None, help="where the demo and DuckDB files go (default: temp)")
    args = parser.parse_args(argv)

    from cryptography.fernet import Fernet

    from pipelines.config import Settings
    from pipelines.demo.history import connect_in_process
    from pipelines.store import Store

    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        folder = Path(tmp)
        built = in_child(setup, args.records, folder, args.seed, args.format)
        setup_peak = peak_gb(children=True)
        took = ", ".join(f"{k} {v:.1f} s" for k, v in built["seconds"].items())
        print(
            f"demo company: {built['records']:,} records (+ {built['lines']:,} lines), {args.format}; "
            f"{built['edited']:,} records changed in the delta snapshot; setup: {took}",
            flush=True,
        )

        sandbox = _RemoteSandbox(Path(built["company_file"]))
        transport = _TimedTransport(httpx.HTTPTransport())
        http = httpx.Client(transport=transport, base_url=sandbox.base_url, timeout=300)
        settings = Settings(
            db_path=folder / "cycle.duckdb",
            realm_id=built["realm_id"],
            qbo_base_url=sandbox.base_url,
            secret_key=Fernet.generate_key().decode(),
            secret_key_file=folder / "secret.key",
        )
        runs = {}
        with Store(settings.db_path) as store:
            connect_in_process(settings, store, http, sandbox)  # OAuth once, as an admin would: not a cycle stage
            runs["full"] = run_cycle_stages(store, settings, http, transport, sandbox, Path(built["snapshot"]), NOW)
            sandbox.advance(3600)  # the next scheduled cycle, an hour later on both clocks
            runs["1% changed"] = run_cycle_stages(
                store, settings, http, transport, sandbox, Path(built["changed"]), NOW + timedelta(hours=1)
            )
        http.close()
        sandbox_gb = sandbox.peak_gb()
        sandbox.close()
    peak = peak_gb()

    (full, full_emu, full_facts), (inc, inc_emu, inc_facts) = runs["full"], runs["1% changed"]
    # The pull's own cost: its seconds minus those spent inside the sandbox (QBO's servers and the network).
    full["pull"] -= full_emu
    inc["pull"] -= inc_emu
    print(f"\n{'stage':<8}{'full (s)':>10}{'1% changed (s)':>16}{'ratio':>8}   full / 1% changed")
    for stage in STAGES:
        print(
            f"{stage:<8}{full[stage]:>10.2f}{inc[stage]:>16.2f}{inc[stage] / full[stage]:>8.1%}   "
            f"{full_facts[stage]} / {inc_facts[stage]}"
        )
    total_full, total_inc = sum(full.values()), sum(inc.values())
    print(f"{'cycle':<8}{total_full:>10.2f}{total_inc:>16.2f}{total_inc / total_full:>8.1%}")
    print(
        f"(time inside the sandbox, left out of the pull above: {full_emu:.2f} s full, {inc_emu:.2f} s 1% changed; "
        f"with it the cycles take {total_full + full_emu:.2f} s and {total_inc + inc_emu:.2f} s, "
        f"{(total_inc + inc_emu) / (total_full + full_emu):.1%})"
    )
    ratio = total_inc / total_full
    print(
        f"ratio: cycle after 1% changed / full cycle = {ratio:.3f} (aim: at most 0.05) -> "
        f"{'met' if ratio <= 0.05 else 'NOT met'}; largest share: "
        f"{max(STAGES, key=lambda s: inc[s])} {max(inc.values()):.2f} s of {total_inc:.2f} s"
    )
    print(
        f"peak RSS: {peak:.2f} GB the engine (aim: under 4 GB at 1M), {sandbox_gb:.2f} GB the sandbox process "
        f"holding the QBO company, {setup_peak:.2f} GB the setup child"
    )


if __name__ == "__main__":
    main()
