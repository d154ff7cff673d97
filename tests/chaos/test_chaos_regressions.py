"""What the chaos run found, each pinned down by a small deterministic test."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from fixtures import REALM
from world import World, exactly_once

import pipelines.sync
from pipelines.cycle import run_cycle
from pipelines.pull import pull


class _Died(BaseException):
    """The process dies at the crash point (a BaseException: nothing in the engine may catch it)."""


def _die_at(point: str):
    def crash_point(name: str) -> None:
        if name == point:
            raise _Died(name)

    return crash_point


def test_a_retry_killed_after_its_intent_is_sent_again_not_left_queued(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A retry resends the same request id, whose intent was already settled by the failed attempt. The intent
    # was written with INSERT OR IGNORE, so it stayed settled: killed after that point, the record sat in
    # `queued` for good, with no exception and nothing to settle it.
    w = World(tmp_path)
    w.sandbox.set_faults("http_500@write=1.0", seed=1)
    w.cycle()
    assert w.state("vendor:VEN-1") == "retry_scheduled"
    w.sandbox.set_faults(None)
    w.now += timedelta(hours=1)
    with monkeypatch.context() as m:
        m.setattr(pipelines.sync, "crash_point", _die_at("sync.after_intent"))
        with pytest.raises(_Died):
            w.cycle()
    assert w.state("vendor:VEN-1") == "queued"
    assert w.store.scalar("SELECT count(*) FROM sync_intents WHERE settled_at IS NULL") > 0
    w.drain()
    assert w.state("vendor:VEN-1") == "synced"
    exactly_once(w)
    w.store.close()


def test_a_token_refreshed_during_a_pull_is_saved(tmp_path: Path) -> None:
    # The pull held a store transaction across its QBO calls; a 401 on the way refreshed the token, and saving the
    # new one opened a second transaction: the pull crashed, and the rotated refresh token was lost with it.
    w = World(tmp_path)
    with w.client() as client:
        query_all_pages = client.query_all_pages

        def expiring_query_all_pages(*args, **kwargs):
            for page in query_all_pages(*args, **kwargs):
                w.sandbox.expire_tokens(REALM)  # the access token lapses while the pull reads the pages
                yield page

        client.query_all_pages = expiring_query_all_pages
        result = pull(w.store, client, now=w.now)
    assert result.kind == "full" and result.objects > 0
    w.sandbox.expire_tokens(REALM)
    with w.client() as client:  # works only if the pull kept the rotated refresh token
        pull(w.store, client, now=w.now + timedelta(minutes=1))
    assert w.store.scalar("SELECT status FROM qbo_connections WHERE realm_id = ?", [REALM]) == "connected"
    w.store.close()


def test_a_lookup_qbo_does_not_answer_sends_nothing_and_the_next_run_finds_the_record(tmp_path: Path) -> None:
    # A batch committed but its answer was lost (ambiguous). Settling looked each record up by its marker; when
    # the lookup itself failed, the engine took that as "not in QBO" and resent the record alone, under its own
    # request id, which QBO had never seen (the batch went under the batch's id): a second copy, or a duplicate
    # refusal that left a record QBO holds in needs_fix.
    w = World(tmp_path)
    w.sandbox.set_faults("timeout_after_commit@batch=1.0", seed=1)
    w.cycle()
    assert w.state("vendor:VEN-1") == "ambiguous"
    w.sandbox.set_faults("http_500@query=1.0", seed=1)  # every lookup fails; writes would go through
    w.now += timedelta(minutes=10)
    with w.client() as client:
        run_cycle(w.store, client, w.settings, now=w.now, trigger="manual", actor="admin@demo.local")
    assert w.state("vendor:VEN-1") == "ambiguous"
    assert w.store.scalar("SELECT count(*) FROM sync_attempts WHERE operation = 'replay'") == 0
    w.sandbox.set_faults(None)
    w.drain()
    exactly_once(w)
    left = w.store.rows("SELECT entity, record_id, state FROM records WHERE state NOT IN ('synced', 'not_ready')")
    assert left == []
    w.store.close()


def test_a_record_whose_send_is_unsettled_is_not_sent_again_while_its_lookup_goes_unanswered(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Killed after a first batch was sent but before its outcomes were stored, the records sat `queued` with open
    # intents and no sync status, so the next check saw no engine version and set them `ready` again. The lookup
    # failed (the intent kept open, rightly), but the plan then sent them again under member ids QBO had never
    # seen: a refused duplicate DocNumber for an invoice, or a second copy where QBO has no uniqueness rule (found
    # by the quick chaos run, seed 961313641).
    w = World(tmp_path)
    with monkeypatch.context() as m:
        m.setattr(pipelines.sync, "crash_point", _die_at("sync.after_send"))
        with pytest.raises(_Died):
            w.cycle()
    unsettled = w.store.scalar("SELECT count(*) FROM sync_intents WHERE settled_at IS NULL")
    assert unsettled > 0 and w.state("vendor:VEN-1") == "queued"
    w.sandbox.set_faults("http_500@query=1.0", seed=1)  # every lookup fails; writes would go through
    w.now += timedelta(minutes=10)
    with w.client() as client:
        run_cycle(w.store, client, w.settings, now=w.now, trigger="manual", actor="admin@demo.local")
    assert w.store.scalar("SELECT count(*) FROM sync_attempts WHERE entity = 'vendor' AND record_id = 'VEN-1'") == 0
    assert w.in_qbo()["Vendor"]["VEN-1"] == 1  # the one copy the killed run created
    w.sandbox.set_faults(None)
    w.drain()
    exactly_once(w)
    w.store.close()
