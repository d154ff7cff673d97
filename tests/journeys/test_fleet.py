"""A firm on fleet mode, as its people meet it: `synchealth fleet` (private PostgreSQL, the sandbox with three
companies, two workers, one app server) started as a person starts it; once every company has had a cycle, Health in
Chromium names each company with what blocks its close, a company's queue opens on its own items, every page reads a
fleet company from PostgreSQL in finance words without an error, and Ctrl-C stops every process the fleet started."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
from browser import ROOT, browser_page, free_port, require_chromium
from reading import PAGES, grid_text, main_text, metric, open_page, shot, wording_problems

from pipelines.fleet.cluster import ClusterUnavailableError, find_binaries
from pipelines.fleet.local import company_name, realm_ids
from pipelines.store import Store

pytestmark = pytest.mark.browser
COMPANIES = 3
UP = re.compile(r"fleet up: app (?P<app>http://\S+), sandbox (?P<sandbox>http://\S+),")
STORE = re.compile(r"store: SYNCHEALTH_DB=(?P<url>postgresql://\S+)")


@dataclass(frozen=True)
class Fleet:
    proc: subprocess.Popen[str]
    app: str
    sandbox: str
    store_url: str
    realms: tuple[str, ...]


def _read_until_up(proc: subprocess.Popen[str], seconds: float) -> tuple[str, str, str]:
    """The app's, the sandbox's and the store's addresses from what `synchealth fleet` prints once it is up."""
    assert proc.stdout is not None
    seen: list[str] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            if proc.poll() is not None:
                raise AssertionError(f"synchealth fleet stopped ({proc.returncode}): {''.join(seen)}")
            time.sleep(0.2)
            continue
        seen.append(line)
        if found := STORE.search(line):
            up = UP.search("".join(seen))
            assert up, seen
            return up["app"], up["sandbox"], found["url"]
    raise AssertionError(f"synchealth fleet was not up within {seconds:.0f} s: {''.join(seen)}")


def _every_company_cycled(url: str, realms: tuple[str, ...], seconds: float) -> None:
    """Wait until each company's cycle has finished once on a worker (its sync run closed)."""
    deadline = time.monotonic() + seconds
    done: set[str] = set()
    while time.monotonic() < deadline:
        with Store(url) as store:
            done = {r for (r,) in store.rows("SELECT DISTINCT realm_id FROM sync_runs WHERE finished_at IS NOT NULL")}
        if done >= set(realms):
            return
        time.sleep(2)
    raise AssertionError(f"after {seconds:.0f} s only {sorted(done)} of {realms} had finished a cycle")


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    require_chromium()
    try:
        find_binaries()
    except ClusterUnavailableError as err:
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL is missing: .ci/run should have installed it ({err})")
        pytest.skip(str(err))
    folder = tmp_path_factory.mktemp("fleet")
    env = {k: v for k, v in os.environ.items() if not k.startswith("SYNCHEALTH_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "pipelines.cli", "fleet", "--realms", str(COMPANIES), "--scale", "60",
         "--port", str(free_port()), "--every", "5", "--dir", str(folder / "fleet")],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        app, sandbox, url = _read_until_up(proc, 240)
        realms = tuple(realm_ids(COMPANIES))
        _every_company_cycled(url, realms, 300)
        yield Fleet(proc, app, sandbox, url, realms)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(90)
            except subprocess.TimeoutExpired:
                proc.kill()


def _queue_links(page) -> dict[str, str]:
    """The company table's Queue column as drawn: each company's link to its own queue, by realm."""
    return {m[1]: m[0] for m in re.finditer(r"/action_queue\?company=(\d+)", grid_text(page))}


def test_health_names_every_company_with_what_blocks_its_close(fleet: Fleet) -> None:
    with browser_page(1920, 1080) as page:  # the close meeting's screen: the table's every column in view
        open_page(page, f"{fleet.app}/", "Companies — what blocks the close of")
        shot(page, "fleet-health-companies-1920x1080")
        cells = grid_text(page)
        for realm in fleet.realms:
            assert company_name(realm) in cells, cells[:800]  # each company by its own name, not its realm number
        assert set(_queue_links(page)) == set(fleet.realms), cells[:800]  # each row links to its own queue
        assert "Owner of the biggest item" in cells and re.search(r"\$[\d,]+", cells), cells[:800]
        assert not wording_problems(main_text(page)), wording_problems(main_text(page))


def test_a_company_s_link_opens_the_queue_of_that_company_alone(fleet: Fleet) -> None:
    other = fleet.realms[1]
    with browser_page(1920, 1080) as page:
        open_page(page, f"{fleet.app}/", "Companies — what blocks the close of")
        link = _queue_links(page)[other]  # the second company's "open items", followed as its link holds it
        open_page(page, f"{fleet.app}{link}", "Action queue")
        shot(page, "fleet-queue-second-company-1920x1080")
        text = main_text(page)
        assert page.locator("[data-testid='stException']").count() == 0
        assert company_name(other) in text, text[:600]
        assert company_name(fleet.realms[0]) not in text, text[:600]
        assert re.fullmatch(r"\$[\d,.]+[kMB]?", metric(page, "Dollars blocked")), metric(page, "Dollars blocked")


def test_every_page_reads_a_fleet_company_from_postgresql_in_finance_words(fleet: Fleet) -> None:
    found = {}
    with browser_page(1280, 800) as page:
        for path, title in PAGES.items():
            open_page(page, f"{fleet.app}/{path}", title)
            shot(page, f"fleet-{path or 'health'}-1280x800")
            assert page.locator("[data-testid='stException']").count() == 0, (path, main_text(page)[:1500])
            for where, text in (("page", main_text(page)), ("grid", grid_text(page))):
                if problems := wording_problems(text):
                    found[f"{path or 'health'} {where}"] = sorted(set(problems))
    assert not found, found


def test_ctrl_c_stops_the_fleet_and_every_process_it_started(fleet: Fleet) -> None:
    fleet.proc.send_signal(signal.SIGINT)
    out, _ = fleet.proc.communicate(timeout=120)
    assert fleet.proc.returncode == 0, out[-2000:]
    assert "fleet stopped" in out and "Traceback" not in out, out[-2000:]
    for address in (f"{fleet.app}/healthz", f"{fleet.sandbox}/_sandbox/"):
        with pytest.raises(httpx.TransportError):
            httpx.get(address, timeout=3)
    with pytest.raises(Exception, match="(?i)connect|refused|server"):
        Store(fleet.store_url).close()
