"""A page that fails unexpectedly shows one sentence with an incident id, never a traceback; the trace goes to the
log under the same id, and the rest of the app (the sidebar, the other pages) keeps working."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from fixtures import tiny_snapshot
from served import open_page, serve
from world import World

import ui.data

SENTENCE = re.compile(
    r"The Health page could not be shown \(incident (INC-[0-9A-F]{8})\): reload the page, and if it happens again "
    r"give an admin the incident id \(the details are in the server's log\)\."
)


@pytest.fixture
def served(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    yield from serve(tmp_path, monkeypatch, tiny_snapshot())


@pytest.mark.page_failure
def test_a_failing_page_is_one_sentence_with_an_incident_id_and_its_trace_is_logged(
    served: World, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(*_args: object, **_kwargs: object) -> None:
        raise RuntimeError("relation rm_secret does not exist at /srv/app/pipelines/views/health.py")

    working = ui.data.health_view
    monkeypatch.setattr(ui.data, "health_view", broken)
    with caplog.at_level(logging.ERROR, logger="synchealth.incident"):
        at = open_page("health.py")
    assert not at.exception  # no traceback element
    errors = [e.value for e in at.error]
    assert len(errors) == 1 and (found := SENTENCE.fullmatch(errors[0])), errors
    assert "rm_secret" not in errors[0] and "/srv/" not in errors[0]  # nothing of the cause reaches the screen
    logged = [r for r in caplog.records if found[1] in r.getMessage()]
    assert logged and logged[0].exc_info is not None  # the trace, under the same id, in the log
    assert at.selectbox(key="realm").value  # the sidebar still drew: the person can pick another company or page
    monkeypatch.setattr(ui.data, "health_view", working)
    at.switch_page("app_pages/action_queue.py").run()
    assert not at.exception and not at.error  # the next page works


def test_a_page_that_works_shows_no_incident(served: World) -> None:
    at = open_page("health.py")
    assert not at.exception and not [e for e in at.error if "could not be shown" in e.value]
