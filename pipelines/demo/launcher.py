"""`make run`: the local QBO sandbox with the demo company, a first connect, pull and sync, then the one server.

The server (`synchealth serve`: the pages, OAuth, webhooks and the scheduler) then runs the cycles itself:
it re-ingests the demo snapshot folder when a file in it changes, and re-reads what the sandbox's webhooks name.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import httpx

from pipelines.config import Settings, child_environment, load_settings

__all__ = ["main"]


def _wait_for(url: str, proc: subprocess.Popen, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the sandbox stopped at start (exit {proc.returncode}); see the lines above")
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.TransportError:
            time.sleep(0.3)
    raise SystemExit(f"the sandbox did not answer on {url} within {seconds:.0f} s")


def _synchealth(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "pipelines.cli", *args], check=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipelines.demo.launcher", description=__doc__.splitlines()[0])
    parser.add_argument("demo_dir", nargs="?", default="data/demo")
    parser.add_argument("--port", type=int, default=8501, help="where the app listens (default 8501)")
    args = parser.parse_args(argv)
    demo_dir, port = Path(args.demo_dir), args.port
    settings = load_settings()
    # An OAuth redirect set for a real deployment is kept; the demo's own points at this port.
    redirect = None if settings.qbo_redirect_uri == Settings().qbo_redirect_uri else settings.qbo_redirect_uri
    sandbox_port = settings.qbo_base_url.rsplit(":", 1)[-1].strip("/")
    # Time scale 10: QBO's real limits still hold, on a clock ten times faster, so the first sync of the demo
    # (about 1,500 records) takes seconds instead of a minute or more.
    company = str(demo_dir / "qbo-company.json")
    sandbox = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pipelines.cli",
            "sandbox",
            "--port",
            sandbox_port,
            "--time-scale",
            "10",
            "--company",
            company,
        ]
    )
    try:
        _wait_for(f"{settings.qbo_base_url}/_sandbox/clock", sandbox)
        _synchealth("--actor", "admin@demo.local", "connect")
        _synchealth("--actor", "admin@demo.local", "pull")
        _synchealth("--actor", "admin@demo.local", "sync")
        app_port = str(port)
        env = child_environment(
            SYNCHEALTH_SNAPSHOT_DIR=str(demo_dir / "awra"),
            SYNCHEALTH_SERVER_URL=f"http://127.0.0.1:{app_port}",
            SYNCHEALTH_QBO_REDIRECT_URI=redirect or f"http://localhost:{app_port}/oauth/callback",
        )
        print(f"QBO Sync Health on http://localhost:{app_port} (Ctrl+C stops the server and the sandbox)", flush=True)
        return subprocess.call(
            [sys.executable, "-m", "pipelines.cli", "serve", "--host", "127.0.0.1", "--port", app_port], env=env
        )
    except KeyboardInterrupt:
        return 0
    finally:
        sandbox.terminate()
        try:
            sandbox.wait(timeout=10)
        except subprocess.TimeoutExpired:
            sandbox.kill()


if __name__ == "__main__":
    raise SystemExit(main())
