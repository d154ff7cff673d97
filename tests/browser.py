"""Helpers for browser tests: a served app on a free loopback port and Debian's Chromium via Playwright."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from pipelines.serve.remote import read_server_file

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = "/usr/bin/chromium"
# Flags from shared/reference/stack-notes.md: without the background-networking ones Chromium keeps
# trying hosts this machine cannot reach.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]


def require_chromium() -> None:
    """In CI the browser must be there (.ci/run installs it); on a developer machine, say what is missing."""
    if Path(CHROMIUM).exists():
        return
    if os.environ.get("CI"):
        pytest.fail(f"{CHROMIUM} is missing: .ci/run should have installed Debian's chromium")
    pytest.skip(f"{CHROMIUM} not installed (apt-get install chromium)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def served_app(env: dict[str, str]) -> Iterator[str]:
    """`streamlit run app.py` on 127.0.0.1 until the block ends; yields the base URL."""
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "streamlit",
            "run",
            "app.py",
            "--server.port",
            str(port),
            "--server.address",
            "127.0.0.1",
            "--server.headless",
            "true",
            "--browser.gatherUsageStats",
            "false",
        ],
        cwd=ROOT,
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{url}/_stcore/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if proc.poll() is not None:
                raise RuntimeError(proc.stdout.read().decode(errors="replace"))
            time.sleep(0.3)
        else:
            raise RuntimeError("the app did not answer on /_stcore/health within 60 s")
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()


@contextmanager
def browser_page(width: int = 1280, height: int = 800):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        # Under `make test-later` the browser keeps faketime's own monotonic clock: the real one that run gives
        # Python (see tests/faketime) leaves Chromium's renderer drawing half a page.
        env = {k: v for k, v in os.environ.items() if k != "FAKETIME_DONT_FAKE_MONOTONIC"}
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, env=env)
        try:
            page = browser.new_page(viewport={"width": width, "height": height})
            yield page
        finally:
            browser.close()


def screenshot(page, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def choose_actor(page, email: str) -> None:
    """Pick the demo identity in the sidebar; a click that lands while the page still draws opens nothing."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    actor = page.locator("[data-testid='stSelectbox']").filter(has_text="Acting as").locator("input")
    option = page.get_by_role("option", name=email)
    for _ in range(5):
        actor.click()
        try:
            option.wait_for(timeout=5_000)
            break
        except PlaywrightTimeout:
            page.keyboard.press("Escape")
    option.click()


@contextmanager
def served(env: dict[str, str], log: Path, port: int | None = None) -> Iterator[str]:
    """`synchealth serve` (uvicorn, st.App, the scheduler) on a loopback port (a free one by default) until the end."""
    port = port or free_port()
    url = f"http://127.0.0.1:{port}"
    full = {**{k: v for k, v in os.environ.items() if not k.startswith("SYNCHEALTH_")}, **env,
            "SYNCHEALTH_SERVER_URL": url, "SYNCHEALTH_QBO_REDIRECT_URI": f"{url}/oauth/callback",
            "SYNCHEALTH_CYCLE_SECONDS": "3600"}  # fmt: skip
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "pipelines.cli", "serve", "--host", "127.0.0.1", "--port", str(port)],
            cwd=ROOT,
            env=full,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"synchealth serve stopped: {log.read_text()[-3000:]}")
            try:
                if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.3)
        else:
            raise RuntimeError("synchealth serve did not answer /healthz within 60 s")
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()


def first_cycle_done(url: str, db: Path, seconds: float = 180) -> None:
    """Wait until the server's first cycle has finished (its scheduler reports it through /healthz)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        info = read_server_file(db)
        if info:
            body = httpx.get(f"{url}/healthz", headers={"authorization": f"Bearer {info['token']}"}, timeout=10).json()
            scheduler = body.get("scheduler", {})
            if scheduler.get("cycles", 0) + scheduler.get("failed_cycles", 0) >= 1 and not scheduler.get("current"):
                return
        time.sleep(0.5)
    raise AssertionError(f"the server's first cycle did not finish within {seconds:.0f} s")
