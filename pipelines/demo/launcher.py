"""`make run`: the local QBO sandbox with the demo company, a first connect, pull and sync, then the one server.

The server (`synchealth serve`: the pages, OAuth, webhooks and the scheduler) then runs the cycles itself:
it re-ingests the demo snapshot folder when a file in it changes, and re-reads what the sandbox's webhooks name.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx

from pipelines.config import load_settings

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
    demo_dir = Path((argv or sys.argv[1:] or ["data/demo"])[0])
    settings = load_settings()
    port = settings.qbo_base_url.rsplit(":", 1)[-1].strip("/")
    # Time scale 10: QBO's real limits still hold, on a clock ten times faster, so the first sync of the demo
    # (about 1,500 records) takes seconds instead of a minute or more.
    company = str(demo_dir / "qbo-company.json")
    sandbox = subprocess.Popen(
        [sys.executable, "-m", "pipelines.cli", "sandbox", "--port", port, "--time-scale", "10", "--company", company]
    )
    try:
        _wait_for(f"{settings.qbo_base_url}/_sandbox/clock", sandbox)
        _synchealth("--actor", "admin@demo.local", "connect")
        _synchealth("--actor", "admin@demo.local", "pull")
        _synchealth("--actor", "admin@demo.local", "sync")
        app_port = os.environ.get("PORT", "8501")
        env = {
            **os.environ,
            "SYNCHEALTH_SNAPSHOT_DIR": str(demo_dir / "awra"),
            "SYNCHEALTH_SERVER_URL": f"http://127.0.0.1:{app_port}",
            "SYNCHEALTH_QBO_REDIRECT_URI": os.environ.get(
                "SYNCHEALTH_QBO_REDIRECT_URI", f"http://localhost:{app_port}/oauth/callback"
            ),
        }
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
