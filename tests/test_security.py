"""Security: no plaintext token anywhere, webhook replays ignored, roles on every write, hostile text stays text."""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest
from fixtures import PERIOD, REALM, tiny_snapshot
from hypothesis import given, settings
from hypothesis import strategies as st
from served import open_page, serve
from starlette.applications import Starlette
from starlette.routing import Route
from streamlit.testing.v1 import AppTest
from world import ADMIN, FINANCE, VIEWER, World, caller_at, commands_on

from pipelines.catalogue import search
from pipelines.cli import main
from pipelines.clock import system_clock
from pipelines.exceptions import RESOLUTION_CODES
from pipelines.serve import state as serving
from pipelines.serve.webhooks import (
    REPLAY_WINDOW,
    WebhookInbox,
    handle_delivery,
    persist_deliveries,
    sign,
)
from pipelines.store import Store
from pipelines.views.queue import action_queue, audit_frame, filter_audit, filter_queue
from qbo.tokens import TokenStore
from ui.charts import plain
from ui.data import csv_export

ROOT = Path(__file__).resolve().parents[1]
PAGES = sorted(p.name for p in (ROOT / "app_pages").glob("*.py"))
VERIFIER = "security-test-verifier"

# SQL, LIKE, regex, placeholder, quoting, Markdown and formula look-alikes; none may act as anything but text.
HOSTILE_ID = "Robert'); DELETE FROM audit_log;--"  # an AWRA bill id (identifier text allows it)
HOSTILE_SKU = "'; DROP TABLE records; --"  # an AWRA item SKU no mapping knows yet
HOSTILE = [
    HOSTILE_ID,
    HOSTILE_SKU,
    "%' OR '1'='1",
    "' OR 1=1; UPDATE audit_log SET reason = 'x'; --",
    "$1",
    "?",
    "$realm",
    "_%",
    ".*",
    "[a-z]+(",
    "back\\slash \\' \\\" \\\\ end",
    "\"double\" 'single' `tick`",
    "Ünïcödé — 日本語 🚀 zero\u200bwidth",
    "**bold** [link](https://evil.example) <b>x</b> :red[x]",
    '=HYPERLINK("https://evil.example","x")',
]


@pytest.fixture
def served(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    """The tiny company with a hostile bill id (BILL-2, finance's) and a hostile SKU on BILL-1 (admin's)."""
    snap = tiny_snapshot()
    for table in ("bills", "bill_lines"):
        for row in snap[table]:
            if row["bill_id"] == "BILL-2":
                row["bill_id"] = HOSTILE_ID
    snap["bill_lines"][0]["item_sku"] = HOSTILE_SKU
    yield from serve(tmp_path, monkeypatch, snap)


def _table_counts(store: Store) -> dict[str, int]:
    """Rows per table: a statement smuggled in through text would change one of them."""
    tables = store.rows("SELECT table_name FROM information_schema.tables WHERE table_type = 'BASE TABLE'")
    return {t: int(store.scalar(f'SELECT count(*) FROM "{t}"')) for (t,) in tables}


def _counts(db: Path) -> dict[str, int]:
    with Store(db) as store:
        return _table_counts(store)


def _cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _page(page: str, actor: str = "viewer@demo.local", **query: str) -> AppTest:
    """The page as `actor`, for the month the tiny company's documents are in (the queue lists them there)."""
    at = open_page(page, actor, **{"period": PERIOD, **query})
    assert not at.exception, (page, at.exception)
    return at


def _rendered(at: AppTest) -> bytes:
    """Every element and block the run produced, serialized as the browser would receive it."""
    out: list[bytes] = []

    def walk(node: object) -> None:
        proto = getattr(node, "proto", None)
        if proto is not None and hasattr(proto, "SerializeToString"):
            out.append(proto.SerializeToString())
        children = getattr(node, "children", None) or {}
        for child in children.values():
            walk(child)

    walk(at._tree)
    return b"".join(out)


# -- tokens -------------------------------------------------------------------------------------------------
def test_no_plaintext_token_in_the_store_file_the_logs_or_any_rendered_page(
    served: World, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    db = served.settings.db_path
    with Store(db) as store:
        conn = TokenStore(store, served.settings).load(REALM)
        tokens = [conn.access_token.reveal(), conn.refresh_token.reveal()]
    assert all(len(t) >= 16 for t in tokens)
    # After a connect, a pull and a sync against the sandbox (the fixture), and the WAL folded in.
    content = db.read_bytes() + (
        db.with_name(db.name + ".wal").read_bytes() if db.with_name(db.name + ".wal").exists() else b""
    )
    for token in tokens:
        assert token.encode() not in content

    seen = b""
    for page in PAGES:
        at = _page(page, actor="admin@demo.local", **({"key": "bill:BILL-1"} if page == "record.py" else {}))
        seen += _rendered(at)
    assert b"Tiny Co" in seen and b"bill:BILL-1" in seen  # the grep does see what the pages show
    for token in tokens:
        assert token.encode() not in seen
        assert token not in caplog.text


# -- webhooks -----------------------------------------------------------------------------------------------
def _legacy(updated: datetime, obj_id: str = "1") -> bytes:
    change = {"name": "Class", "id": obj_id, "operation": "Update",
              "lastUpdated": updated.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S%z")}  # fmt: skip
    return json.dumps({"eventNotifications": [{"realmId": REALM, "dataChangeEvent": {"entities": [change]}}]}).encode()


def _cloudevents(at: datetime) -> bytes:
    return json.dumps([{"specversion": "1.0", "id": "e-1", "source": "intuit.test", "type": "qbo.account.updated.v1",
                        "time": at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"), "intuitentityid": "3",
                        "intuitaccountid": REALM, "data": {}}]).encode()  # fmt: skip


def _deliver(inbox: WebhookInbox, body: bytes, now: datetime, key: str = VERIFIER) -> tuple[int, dict]:
    return handle_delivery(inbox, VERIFIER, body, sign(key, body), now)


def test_the_same_signed_delivery_twice_is_acknowledged_and_ignored_the_second_time() -> None:
    now = datetime.now(UTC)
    inbox = WebhookInbox()
    body = _legacy(now)
    assert _deliver(inbox, body, now) == (200, {"accepted": 1, "format": "legacy"})
    assert inbox.take(REALM) == {"Class": ["1"]}
    # 200, not an error: QBO retries anything else and holds later deliveries back until this one is answered.
    assert _deliver(inbox, body, now + timedelta(seconds=10)) == (
        200, {"accepted": 0, "format": "legacy", "ignored": "replay"})  # fmt: skip
    assert not inbox.has_pending()
    # A different change to the same object is a different delivery, and it is read.
    assert _deliver(inbox, _legacy(now + timedelta(seconds=1)), now)[1]["accepted"] == 1
    snap = inbox.snapshot()
    assert snap["ignored"] == {"replay": 1, "stale": 0} and snap["received"]["valid"] == 2


def test_a_stale_delivery_is_ignored_in_either_format() -> None:
    now = datetime.now(UTC)
    inbox = WebhookInbox()
    old = now - REPLAY_WINDOW - timedelta(minutes=1)
    for body, fmt in ((_legacy(old), "legacy"), (_cloudevents(old), "cloudevents")):
        assert _deliver(inbox, body, now) == (200, {"accepted": 0, "format": fmt, "ignored": "stale"})
    assert not inbox.has_pending()
    assert _deliver(inbox, _cloudevents(now - timedelta(hours=1)), now)[1] == {"accepted": 1, "format": "cloudevents"}


def test_bad_missing_and_tampered_signatures_are_refused_and_queue_nothing() -> None:
    now = datetime.now(UTC)
    inbox = WebhookInbox()
    body = _legacy(now)
    assert _deliver(inbox, body, now, key="not-the-verifier") == (401, {"error": "signature invalid"})
    tampered = body.replace(b'"1"', b'"2"')
    assert handle_delivery(inbox, VERIFIER, tampered, sign(VERIFIER, body), now)[0] == 401
    assert handle_delivery(inbox, VERIFIER, body, None, now) == (401, {"error": "signature missing"})
    assert handle_delivery(inbox, None, body, sign(VERIFIER, body), now)[0] == 401  # no verifier: nothing passes
    assert not inbox.has_pending()
    assert inbox.snapshot()["signature_failures"] == 4
    # A refused copy did not spend the delivery: the genuine one is still read once.
    assert _deliver(inbox, body, now)[1]["accepted"] == 1


def test_a_replay_after_a_restart_is_still_ignored(tmp_path: Path) -> None:
    now = datetime.now(UTC)
    body = _legacy(now)
    first = WebhookInbox()
    _deliver(first, body, now)
    _deliver(first, body, now)
    with Store(tmp_path / "hooks.duckdb") as store:
        persist_deliveries(store, first.unsaved())
        rows = store.rows("SELECT realm_id, processed_at IS NOT NULL, error, digest FROM webhook_events ORDER BY 1")
        assert [r[:3] for r in rows] == [(REALM, False, None), (None, True, "ignored: replay")]
        assert rows[0][3] == rows[1][3] and len(rows[0][3]) == 64
        restarted = WebhookInbox()
        assert restarted.recall(store, now + timedelta(minutes=5)) == 1
    assert _deliver(restarted, body, now + timedelta(minutes=5))[1]["ignored"] == "replay"


def test_the_server_route_answers_a_replay_with_200_and_reads_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(ROOT))  # server.py is the ASGI entry at the top level, not a package module
    import server

    woken: list[int] = []
    inbox = WebhookInbox()
    state = SimpleNamespace(config=SimpleNamespace(webhook_verifier=VERIFIER), inbox=inbox, now=system_clock,
                            scheduler=SimpleNamespace(wake=lambda: woken.append(1)))  # fmt: skip
    app = Starlette(routes=[Route("/webhooks/qbo", server.qbo_webhook, methods=["POST"])])
    body = _legacy(system_clock())

    async def post_twice() -> list[httpx.Response]:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
            headers = {"intuit-signature": sign(VERIFIER, body)}
            return [await client.post("/webhooks/qbo", content=body, headers=headers) for _ in range(2)]

    serving.install(state)  # type: ignore[arg-type]
    try:
        first, second = asyncio.run(post_twice())
    finally:
        serving.uninstall(state)  # type: ignore[arg-type]
    assert (first.status_code, first.json()) == (200, {"accepted": 1, "format": "legacy"})
    assert (second.status_code, second.json()["ignored"]) == (200, "replay")
    assert inbox.take(REALM) == {"Class": ["1"]} and len(woken) == 2


# -- roles --------------------------------------------------------------------------------------------------
def test_every_write_command_is_refused_to_a_role_without_it_and_changes_nothing(
    served: World, capsys: pytest.CaptureFixture[str]
) -> None:
    with Store(served.settings.db_path) as store:
        eids = dict(store.rows("SELECT reason, exception_id FROM exceptions WHERE status = 'open'"))
    mapping, source = str(eids["mapping.item_missing"]), str(eids["source_data.not_approved"])
    bill = f"bill:{HOSTILE_ID}"
    refused = [
        ("viewer", ["connect"], "connect needs the admin role"),
        ("finance", ["connect"], "connect needs the admin role"),
        ("viewer", ["pull"], "pull needs the admin role"),
        ("finance", ["pull"], "pull needs the admin role"),
        ("viewer", ["sync"], "sync needs the admin role"),
        ("finance", ["sync", "--only", "bill:BILL-1"], "sync needs the admin role"),
        ("viewer", ["map", "item", HOSTILE_SKU, "1", "--reason", "x"], "map needs the admin role"),
        ("finance", ["map", "item", HOSTILE_SKU, "1", "--reason", "x"], "map needs the admin role"),
        ("viewer", ["retry", "bill:BILL-1"], "retry needs the admin role"),
        ("finance", ["retry", "bill:BILL-1", "--override-reason", "x"], "retry needs the admin role"),
        ("viewer", ["resolve", source, "--reason", "x"], "needs the finance or admin role"),
        ("finance", ["resolve", mapping, "--reason", "x"], "resolve of a mapping exception needs the admin role"),
        ("viewer", ["assign", source, "--to", "finance@demo.local"], "needs the finance or admin role"),
        ("finance", ["assign", mapping, "--to", "admin@demo.local"], "assign of a mapping exception needs the admin"),
        ("viewer", ["exclude", bill, "--reason", "x"], "exclude needs the finance or admin role"),
        ("nobody@else.example", ["exclude", bill, "--reason", "x"], "nobody@else.example is a viewer"),
    ]
    before = _counts(served.settings.db_path)
    for role, argv, message in refused:
        actor = role if "@" in role else f"{role}@demo.local"
        code, out, err = _cli(capsys, "--actor", actor, *argv)
        assert (code, out) == (1, ""), (role, argv, err)
        assert message in err and len(err.strip().splitlines()) == 1, (role, argv, err)
    assert _counts(served.settings.db_path) == before
    # The same commands pass for a role that has them, so the refusals above are about the role.
    assert _cli(capsys, "--actor", "finance@demo.local", "exclude", bill, "--reason", "test bill")[0] == 0
    assert _cli(capsys, "--actor", "admin@demo.local", "pull")[0] == 0


def test_every_write_button_is_absent_or_disabled_for_a_role_without_it_and_the_engine_refuses_it_anyway(
    served: World,
) -> None:
    """A write a role may not make is never offered as a button it can press: absent, or (the Record page, which says
    why and who can) disabled."""
    admin_only = {"q_retry", "map_go", "accept_go", "sync_now", "retry_go", "rec_recheck"}
    finance = {"q_assign", "q_resolve", "q_exclude", "dup_link", "dup_new", "rec_assign", "rec_resolve", "rec_exclude"}
    shown: dict[str, set[str]] = {}
    enabled: dict[str, set[str]] = {}
    for actor in ("viewer@demo.local", "finance@demo.local", "admin@demo.local"):
        keys: set[str] = set()
        live: set[str] = set()
        for page in ("action_queue.py", "mappings.py", "sync_runs.py", "record.py", "connection.py"):
            at = _page(page, actor=actor, **({"key": "bill:BILL-1"} if page == "record.py" else {}))
            if page == "action_queue.py":
                at.checkbox(key="q_all").check().run()
            links = {b.proto.label for b in at.get("link_button")}
            keys |= {b.key for b in at.button} | links
            live |= {b.key for b in at.button if not b.disabled} | links
        shown[actor], enabled[actor] = keys, live
    assert not enabled["viewer@demo.local"] & (admin_only | finance)
    assert not enabled["finance@demo.local"] & admin_only
    assert shown["finance@demo.local"] >= {"q_assign", "q_resolve", "q_exclude", "rec_assign"}
    assert "q_assign" in enabled["finance@demo.local"]
    assert shown["admin@demo.local"] >= {"q_retry", "map_go", "sync_now", "retry_go"}
    assert "rec_recheck" in enabled["admin@demo.local"]  # BILL-1 waits on a mapping: an admin can re-check it

    # A forged click reaches the commands, which check the role again and change nothing.
    with Store(served.settings.db_path) as store:
        commands = commands_on(store)
        before = _table_counts(store)
        now = system_clock()
        for act in (
            lambda: commands.sync(caller_at(FINANCE, now)),
            lambda: commands.retry(caller_at(FINANCE, now), ["bill:BILL-1"], override_reason="x"),
            lambda: commands.map(caller_at(FINANCE, now), "item", HOSTILE_SKU, "1", reason="x"),
            lambda: commands.accept_suggestions(caller_at(FINANCE, now), [("item", HOSTILE_SKU)]),
            lambda: commands.link(caller_at(VIEWER, now), "bill:BILL-1", "1", reason="x"),
            lambda: commands.create_new(caller_at(VIEWER, now), "bill:BILL-1", reason="x"),
        ):
            answer = act()
            assert answer.status == "refused" and "needs the" in answer.message, answer.message
        assert _table_counts(store) == before


# -- hostile text -------------------------------------------------------------------------------------------
def test_sql_looking_text_in_every_filter_matches_literally_and_changes_nothing(
    served: World, capsys: pytest.CaptureFixture[str]
) -> None:
    db = served.settings.db_path
    before = _counts(db)
    now = datetime.now(UTC)
    with Store(db) as store:
        queue = action_queue(store, REALM, now=now)
        assert queue.height == 4
        for text in HOSTILE:
            assert action_queue(store, REALM, now=now, statuses=[text]).height == 0
            for narrowed in (
                filter_queue(queue, owners=[text]),
                filter_queue(queue, dimensions=[text]),
                filter_queue(queue, statuses=[text]),
                filter_queue(queue, entities=[text]),
                filter_queue(queue, reason_prefix=text),
            ):
                assert narrowed.height == 0, text
            wanted = {k for k in queue["key"] if text.lower() in k.lower()}
            assert set(filter_queue(queue, key_contains=text)["key"]) == wanted, text
            log = audit_frame(store, REALM)
            assert set(filter_audit(log, target_contains=text)["target"]) == {
                t for t in log["target"] if text.lower() in t.lower()}  # fmt: skip
            assert search(text).height == 0, text
        assert set(filter_queue(queue, key_contains="'); DELETE")["key"]) == {f"bill:{HOSTILE_ID}"}

    for text in HOSTILE:
        code, out, err = _cli(capsys, "--json", "queue", "--owner", text, "--dimension", text)
        assert code == 0 and json.loads(out)["count"] == 0, (text, err)
        with pytest.raises(SystemExit) as usage:  # --status takes only its choices: a usage error, exit 2
            main(["queue", "--status", text])
        assert usage.value.code == 2 and "invalid choice" in capsys.readouterr().err
        for key in (f"bill:{text}", text):
            code, out, err = _cli(capsys, "record", key)
            if text == HOSTILE_ID:  # by its key, or found by its id as the Record page's search finds it
                assert code == 0 and out.startswith(f"bill:{HOSTILE_ID} v1: "), err
            else:
                assert code in (1, 2) and out == "" and len(err.strip().splitlines()) == 1, (key, err)
    assert _counts(db) == before


def test_sql_looking_mapping_values_and_reasons_are_stored_byte_for_byte(
    served: World, capsys: pytest.CaptureFixture[str]
) -> None:
    db = served.settings.db_path
    before = _counts(db)
    with Store(db) as store:
        eids = dict(store.rows("SELECT reason, exception_id FROM exceptions WHERE status = 'open'"))
    source = eids["source_data.not_approved"]
    reasons = {
        "assign": 'Robert\'); DELETE FROM exceptions;-- \\ "q" ✓',
        "resolve": "%' OR '1'='1 $1 ? 日本語",
        "map": "'; UPDATE audit_log SET actor = 'x'; -- `t`",
        "exclude": "**not bold** [x](https://evil.example) =1+1",
    }
    admin, fin = ("--actor", "admin@demo.local"), ("--actor", "finance@demo.local")
    assert (
        _cli(capsys, *fin, "assign", str(source), "--to", "finance@demo.local", "--reason", reasons["assign"])[0] == 0
    )
    code, out, _ = _cli(capsys, *fin, "--json", "resolve", str(source), "--reason", reasons["resolve"])
    assert code == 0 and json.loads(out)["items"][0]["data"]["resolution"] == reasons["resolve"]
    code, _, err = _cli(capsys, *admin, "map", "item", HOSTILE_SKU, "1", "--reason", "  ")  # a reason is required
    assert code == 2 and "map needs --reason" in err and len(err.strip().splitlines()) == 1
    code, out, err = _cli(capsys, *admin, "map", "item", HOSTILE_SKU, "1", "--reason", reasons["map"])
    assert code == 0 and out.startswith(f"mapped item {HOSTILE_SKU} to QuickBooks Item 1 (Widget): 1 of 1"), err
    code, out, _ = _cli(capsys, *fin, "exclude", f"bill:{HOSTILE_ID}", "--reason", reasons["exclude"])
    assert code == 0 and f"bill:{HOSTILE_ID}: excluded from sync" in out

    with Store(db) as store:
        manual = "SELECT awra_value FROM mappings WHERE kind = 'item' AND qbo_id = '1' AND source = 'manual'"
        assert store.rows(manual) == [(HOSTILE_SKU,)]
        assert store.scalar("SELECT state FROM records WHERE record_id = 'BILL-1'") == "ready"
        assert store.scalar("SELECT resolution FROM exceptions WHERE exception_id = ?", [source]) == reasons["resolve"]
        audit = set(store.rows("SELECT action, target, reason FROM audit_log WHERE actor <> 'system'"))
        target = f"bill:{HOSTILE_ID}"
        assert ("assign", target, reasons["assign"]) in audit
        assert ("resolve", target, f"{RESOLUTION_CODES['fixed_in_qbo']}: {reasons['resolve']}") in audit
        assert ("map", f"item:{HOSTILE_SKU}", reasons["map"]) in audit
        assert ("exclude", target, reasons["exclude"]) in audit

        # Every hostile value as a mapping of its own: stored as given, and nothing else touched.
        counted = _table_counts(store)
        for i, text in enumerate(HOSTILE):
            assert commands_on(store).map(caller_at(ADMIN, system_clock()), "class", text, "1", reason=text).ok
            assert store.rows("SELECT awra_value FROM mappings WHERE kind = 'class' AND awra_value = ?", [text]) == [
                (text,)
            ]
            assert store.rows("SELECT target, reason FROM audit_log ORDER BY audit_id DESC LIMIT 1") == [
                (f"class:{text}", text)
            ]
            after = _table_counts(store)
            # the map re-checks every record; the re-check notes the records it looked at in the change log
            rechecked = {t: after[t] for t in ("check_runs", "findings", "record_changes")}
            assert {**after, **{t: counted[t] for t in rechecked}} == {
                **counted,
                "mappings": counted["mappings"] + i + 1,
                "audit_log": counted["audit_log"] + i + 1,
            }
        # And an exported audit log opens in a spreadsheet as text, never as a formula.
        exported = csv_export(audit_frame(store, REALM)).decode("utf-8-sig")
        assert "'=HYPERLINK(" in exported and ",=HYPERLINK(" not in exported and "\n=HYPERLINK(" not in exported
    assert before["records"] == _counts(db)["records"]


def test_hostile_text_on_the_pages_is_shown_as_text(served: World, capsys: pytest.CaptureFixture[str]) -> None:
    reason = "Robert'); DELETE FROM audit_log;-- **x** [y](https://evil.example) \\ 日本語"
    assert _cli(capsys, "--actor", "finance@demo.local", "exclude", f"bill:{HOSTILE_ID}", "--reason", reason)[0] == 0

    queue = _page("action_queue.py")
    queue.text_input(key="q_key").set_value("'); DELETE").run()
    assert not queue.exception
    assert set(queue.dataframe[0].value["record_id"]) <= {HOSTILE_ID}  # excluded: only if statuses show it
    queue.text_input(key="q_key").set_value("%' OR '1'='1").run()
    assert not queue.exception and all(len(d.value) == 0 for d in queue.dataframe[:1])

    audit = _page("audit.py")
    table = audit.dataframe[0].value
    assert reason in set(table["reason"]) and f"bill {HOSTILE_ID}" in set(table["target"])  # the key, in words
    audit.text_input(key="audit_target").set_value(HOSTILE_ID).run()
    assert set(audit.dataframe[0].value["target"]) == {f"bill {HOSTILE_ID}"}
    audit.text_input(key="audit_target").set_value("%' OR '1'='1").run()
    assert not audit.exception and len(audit.dataframe[0].value) == 0

    record = _page("record.py", key=f"bill:{HOSTILE_ID}")
    assert record.metric[0].value == "excluded"
    record.text_input(key="record_find").set_value("bill:**x** [y](https://evil.example) %' OR '1'='1").run()
    assert not record.exception
    (warning,) = record.warning
    assert "evil.example" not in warning.value and "**x**" not in warning.value  # never echoed as Markdown

    mappings = _page("mappings.py", actor="admin@demo.local")
    assert HOSTILE_SKU in mappings.selectbox(key="map_value").options

    connection = _page("connection.py", connected="[Reconnect here](https://evil.example)")
    assert not any("evil.example" in s.value for s in connection.success)
    helped = _page("help.py")
    helped.text_input(key="help_search").set_value("%' OR '1'='1").run()
    assert not helped.exception


@settings(max_examples=300, deadline=None)
@given(st.text() | st.sampled_from(["a\u200b@\u200bb", "\\[x](y)", "", "@@"]))
def test_text_shown_through_markdown_is_escaped_and_reads_back_exactly(text: str) -> None:
    """Whatever AWRA, QuickBooks or a person wrote: no link, image or formatting; unescaped, it is the same text."""
    shown = plain(text)
    assert re.sub(r"\\(.)", r"\1", shown.replace("\u200b@\u200b", "@"), flags=re.S) == (text or "—")
    bare = re.sub(r"\\.", "", shown, flags=re.S)  # what is left once every escaped character is taken out
    assert not set(bare) & set("[]()<>`*_!#|~$\\")
