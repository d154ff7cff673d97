"""A person never sees a traceback: a failure inside any command is one line with an incident id, the trace in the log.

Each test breaks one step deep inside an action path (the step raises, as a bug or an outage would) and checks what
the person reads: on the CLI one line on stderr with the incident id and exit 1; on a page one sentence in st.error
with the incident id, the rest of the page still there; in a bulk action the items before the failure keep their
answers. The log beside the store holds the trace under the same id.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from fixtures import PERIOD, T0, tiny_snapshot, write_snapshot
from served import open_page, serve
from world import ADMIN, World, caller_at, commands_on

from pipelines.cli import main
from pipelines.incidents import log_path_for
from pipelines.store import Store

ROOT = Path(__file__).resolve().parents[2]
INCIDENT = re.compile(r"incident (INC-[0-9A-F]{8})")


def _boom(*_args, **_kwargs):
    raise RuntimeError("a step broke in a way nobody planned for")


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    snap = tiny_snapshot()
    snap["bill_lines"][0]["item_sku"] = "WID-220"  # BILL-1 waits on a mapping: the queue has open items
    w = World(tmp_path, snap)
    w.cycle()
    w.close()
    yield w


def _exception_id(w: World, reason: str) -> str:
    with Store(w.settings.db_path) as store:
        return str(store.scalar("SELECT exception_id FROM exceptions WHERE reason = ? LIMIT 1", [reason]))


# (where the failure is injected, the command line)
CLI_PATHS = {
    "ingest": ("pipelines.commands.ingest_snapshot", ["ingest", "{snapshot}"]),
    "pull": ("pipelines.commands.pull", ["pull"]),
    "check": ("pipelines.commands.run_check", ["check"]),
    "sync": ("pipelines.commands.run_cycle", ["sync"]),
    "retry": ("pipelines.commands.retry_gate", ["retry", "bill:BILL-1"]),
    "map": ("pipelines.commands.set_mapping", ["map", "item", "WID-220", "1", "--reason", "same part"]),
    "assign": ("pipelines.commands.assign_exception", ["assign", "{source}", "--to", "finance@demo.local"]),
    "resolve": ("pipelines.commands.resolve_exception", ["resolve", "{source}", "--reason", "approved"]),
    "exclude": ("pipelines.commands.exclude_record", ["exclude", "bill:BILL-2", "--reason", "a test bill"]),
    "status": ("pipelines.views.metrics.status_summary", ["status"]),
    "record": ("pipelines.views.metrics.record_chain", ["record", "bill:BILL-1"]),
    "queue": ("pipelines.views.api.action_queue", ["queue"]),
    "digest": ("pipelines.views.api.digest", ["digest"]),
    "audit": ("pipelines.audit.verify", ["audit", "verify"]),
}


@pytest.mark.parametrize("path", sorted(CLI_PATHS))
def test_every_cli_command_that_breaks_says_one_line_with_an_incident_and_logs_the_trace(
    world: World, path: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    target, argv = CLI_PATHS[path]
    snapshot = world.tmp / "again"
    write_snapshot(snapshot, tiny_snapshot())
    fill = {"snapshot": str(snapshot), "source": _exception_id(world, "source_data.not_approved")}
    args = [a.format(**fill) for a in argv]
    monkeypatch.setattr(target, _boom)
    capsys.readouterr()
    code = main(["--actor", "admin@demo.local", *args], settings_loader=lambda: world.settings)
    out, err = capsys.readouterr()
    assert code == 1, (out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err and "RuntimeError" not in err, err
    assert "failed unexpectedly" in lines[0] and (found := INCIDENT.search(lines[0])), err
    log = log_path_for(world.settings.db_path).read_text()
    assert found.group(1) in log and "Traceback" in log and "a step broke in a way nobody planned for" in log


def test_a_bulk_action_keeps_what_finished_before_an_item_failed(world: World, monkeypatch: pytest.MonkeyPatch):
    from pipelines import commands

    real = commands.exclude_record
    calls = {"n": 0}

    def second_breaks(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("the second item broke")
        return real(*args, **kwargs)

    monkeypatch.setattr(commands, "exclude_record", second_breaks)

    with Store(world.settings.db_path) as store:
        keys = ["bill:BILL-2", "bill:BILL-1", "journal_entry:JE-1"]
        answer = commands_on(store).exclude(caller_at(ADMIN, T0), keys, reason="cleanup")
        states = dict(store.rows("SELECT record_id, state FROM records WHERE record_id IN ('BILL-2', 'JE-1')"))
    first, second, third = answer.items
    assert first.status == "done" and third.status == "refused" and "already in QuickBooks" in third.message
    assert second.status == "failed" and INCIDENT.search(second.message) and second.incident
    assert answer.status == "failed" and states["BILL-2"] == "excluded"  # what finished before stays finished


# -- pages ----------------------------------------------------------------------------------------------------
@pytest.fixture
def served(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    snap = tiny_snapshot()
    snap["bill_lines"][0]["item_sku"] = "WID-220"
    yield from serve(tmp_path, monkeypatch, snap)


def test_a_page_action_that_breaks_shows_one_sentence_with_the_incident_and_the_page_goes_on(
    served: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("pipelines.commands.run_check", _boom)  # the re-check after reading QuickBooks breaks
    at = open_page("record.py", actor="admin@demo.local", key="bill:BILL-1")
    at.button(key="rec_recheck").click().run()
    assert not at.exception  # no trace on the page
    (error,) = [e.value for e in at.error if "incident" in e.value]
    assert INCIDENT.search(error) and "Traceback" not in error and "RuntimeError" not in error
    assert any(s.value.startswith("Attempts") for s in at.subheader)  # the rest of the page still renders
    assert INCIDENT.search(error).group(1) in log_path_for(served.settings.db_path).read_text()


def test_a_bulk_page_action_reports_each_item_and_keeps_the_ones_before_a_failure(
    served: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pipelines import commands

    monkeypatch.setattr("ui.actions.CHUNK", 1)  # one item per command: the second chunk is the one that breaks
    real = commands.exclude_record
    calls = {"n": 0}

    def second_breaks(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("the second record broke")
        return real(*args, **kwargs)

    monkeypatch.setattr(commands, "exclude_record", second_breaks)
    at = open_page("action_queue.py", actor="admin@demo.local", period=PERIOD)  # the month of the tiny company
    at.checkbox(key="q_all").check().run()
    at.text_input(key="q_exclude_reason").set_value("cleanup").run()
    at.button(key="q_exclude").click().run()
    assert not at.exception
    results = at.dataframe[0].value
    assert "failed" in set(results["Result"]) and "done" in set(results["Result"])
    failed = results[results["Result"] == "failed"].iloc[0]
    assert failed["Incident"].startswith("INC-") and "failed unexpectedly" in failed["What happened"]
    assert any("failed" in e.value for e in at.error)  # the count line says so in red
