"""A retry always ends in an answer: for every (state, cause) the demo history leaves, on the CLI, the Record page and
in bulk, the answer is "sent" with its outcome or "refused" with the reason, never a failure or a trace.

The store is built the way `make run` builds it (the real engine over simulated weeks with faults, an outage, people's
fixes and a deletion in QuickBooks), smaller; the combinations are read from that store, so a new state or cause is
covered the day the engine produces it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from datetime import timedelta

import httpx
import pytest
from cryptography.fernet import Fernet
from fixtures import T0
from served import ROOT, open_page, point_app_at

from pipelines.cli import main
from pipelines.commands import Caller, Commands
from pipelines.config import Settings
from pipelines.connection import qbo_client
from pipelines.demo import history as demo_history
from pipelines.demo.company import write_demo
from pipelines.identity import Identity
from pipelines.store import Store
from qbo.sandbox import Sandbox, SandboxClock
from qbo.sandbox.server import start_in_thread

REALM = "9341453050298461"
PYTHON_ERROR = re.compile(r"\b[A-Z]\w*(Error|Exception)\b:")
ADMIN = Identity("admin@demo.local", "admin")
DIMENSIONS = ("mapping", "source_data", "provider_rejection", "duplicate_risk", "authorization", "transport")
# The leading open exception of each live record (the one the queue shows first), or "none".
COMBINATIONS = """
    WITH lead_exc AS (
        SELECT entity, record_id, reason, dimension,
               row_number() OVER (PARTITION BY entity, record_id ORDER BY exception_id) AS n
        FROM exceptions WHERE realm_id = ? AND status <> 'resolved')
    SELECT r.state, coalesce(l.reason, 'none') AS cause, coalesce(l.dimension, 'none') AS dimension,
           min(r.entity || ':' || r.record_id) AS key
    FROM records r LEFT JOIN lead_exc l ON l.entity = r.entity AND l.record_id = r.record_id AND l.n = 1
    WHERE r.realm_id = ? AND r.removed_at IS NULL AND r.entity NOT IN ('item', 'account')
    GROUP BY ALL ORDER BY ALL
"""


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    tmp = tmp_path_factory.mktemp("everything")
    end = (T0 - timedelta(days=2)).replace(hour=17)
    summary = write_demo(tmp / "demo", seed=7, scale=900, as_of=end.date(), fmt="parquet")
    weeks = 3
    plan = demo_history.plan_history(summary, weeks, end, per_week=2, seed=7)
    settings = Settings(
        db_path=tmp / "built.duckdb",
        qbo_base_url="http://sandbox.local",
        secret_key=Fernet.generate_key().decode(),
        secret_key_file=tmp / "secret.key",
        retry_schedule=(60, 120),
    )
    sandbox = Sandbox(clock=SandboxClock(start=plan.start))
    with Store(settings.db_path) as store:
        # Heavier faults than the demo's, so the history ends with sends still in flight (scheduled retries,
        # outcomes unknown) beside what people and QuickBooks left; then the sign-in is revoked in QuickBooks.
        demo_history.build_history(
            store, sandbox, weeks, plan=plan, company_file=summary.company_file, settings=settings,
            work_dir=tmp / "work", faults="http_500@write=0.2,timeout_after_commit@write=0.15,connection_reset=0.1",
        )  # fmt: skip
        sandbox.expire_tokens(REALM, refresh=True)
        cycle = Commands(
            store,
            settings,
            client_factory=lambda realm, _clock: qbo_client(
                settings, store, realm, http=httpx.Client(transport=sandbox.transport()), clock=sandbox.clock.now
            ),
        )
        cycle.pull(Caller.system(REALM, lambda: end))  # refused: the realm now needs reconnecting
        cycle.cycle(Caller.system(REALM, lambda: end))
        combos = [dict(zip(("state", "cause", "dimension", "key"), r, strict=True))
                  for r in store.rows(COMBINATIONS, [REALM, REALM])]  # fmt: skip
        # A record that left AWRA (or, when the history removed none, one AWRA never had) is answered too.
        removed = store.scalar("SELECT entity || ':' || record_id FROM records WHERE removed_at IS NOT NULL LIMIT 1")
        removed = removed or "bill:BILL-NEVER-IN-AWRA"
    # The same QuickBooks the history wrote to, now over loopback, for the CLI and the pages.
    with start_in_thread(sandbox) as running:
        yield {"settings": settings, "combos": combos, "removed": removed, "base_url": running.base_url, "tmp": tmp}


def _copy(history: dict, name: str) -> Settings:
    settings: Settings = history["settings"]
    db = history["tmp"] / f"{name}.duckdb"
    shutil.copyfile(settings.db_path, db)
    return settings.with_overrides(db_path=db, qbo_base_url=history["base_url"])


def _is_an_answer(status: str, message: str) -> None:
    assert status in ("done", "refused"), (status, message)
    # A person's answer, not a program's: no trace, no exception class (BinderException: ..., KeyError: ...).
    assert message.strip() and "Traceback" not in message and not PYTHON_ERROR.search(message), message
    if status == "done":
        assert message.startswith("sent: "), message  # sent, and what happened to it


def test_the_store_holds_every_kind_of_cause(history: dict) -> None:
    """The enumeration is worth something only if the history produces the causes a finance team meets."""
    dimensions = {c["dimension"] for c in history["combos"]}
    states = {c["state"] for c in history["combos"]}
    assert {"mapping", "source_data", "duplicate_risk", "none"} <= dimensions, dimensions
    assert {"synced", "blocked", "not_ready"} <= states, states
    assert len(history["combos"]) >= 10
    print(
        f"{len(history['combos'])} (state, cause) combinations:",
        sorted((c["state"], c["cause"]) for c in history["combos"]),
    )


def test_every_combination_retried_on_the_cli_gets_an_answer(history: dict, capsys: pytest.CaptureFixture) -> None:
    settings = _copy(history, "cli")
    for combo in history["combos"]:
        for extra in ([], ["--override-reason", "checked with the vendor"]):
            capsys.readouterr()
            code = main(["--actor", ADMIN.email, "retry", combo["key"], *extra], settings_loader=lambda: settings)
            out, err = capsys.readouterr()
            assert code in (0, 1), (combo, out, err)
            assert "Traceback" not in out + err and "incident" not in out + err, (combo, out, err)
            text = (out or err).strip()
            assert text and combo["key"] in text, (combo, text)
    capsys.readouterr()
    assert main(["--actor", ADMIN.email, "retry", history["removed"]], settings_loader=lambda: settings) == 1
    assert "no such record in AWRA" in capsys.readouterr().err


def test_a_bulk_retry_of_every_combination_answers_each_one(history: dict) -> None:
    settings = _copy(history, "bulk")
    keys = [c["key"] for c in history["combos"]] + [history["removed"]]
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("SYNCHEALTH_")},
        "SYNCHEALTH_DB": str(settings.db_path),
        "SYNCHEALTH_QBO_BASE_URL": history["base_url"],
        "SYNCHEALTH_SECRET_KEY": settings.secret_key or "",
        "SYNCHEALTH_RETRY_SCHEDULE": "60,120",
    }
    proc = subprocess.run(
        [sys.executable, "-m", "pipelines.cli", "--actor", ADMIN.email, "--json", "retry", *keys],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert "Traceback" not in proc.stderr, proc.stderr
    answer = json.loads(proc.stdout)
    assert [i["item"] for i in answer["items"]] == keys
    for item in answer["items"]:
        _is_an_answer(item["status"], item["message"])


def test_every_combination_retried_on_the_record_page_gets_an_answer(
    history: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = _copy(history, "page")
    env = {"SYNCHEALTH_QBO_BASE_URL": history["base_url"], "SYNCHEALTH_SECRET_KEY": settings.secret_key or ""}
    for _db in point_app_at(monkeypatch, settings.db_path, **env):
        for combo in history["combos"]:
            at = open_page("record.py", actor=ADMIN.email, key=combo["key"])
            assert not at.exception, combo
            retry = at.button(key="retry_go")
            if retry.disabled:  # the engine would refuse it (synced, excluded, or a cause still there): says why
                reasons = [c.value for c in at.caption if c.value.startswith(":material/block:")]
                assert reasons and "None" not in reasons[0], combo
                assert combo["state"] != "synced" or "already in QuickBooks" in " ".join(reasons), combo
                continue
            retry.click().run()
            assert not at.exception, combo
            said = [m.value for m in [*at.success, *at.warning, *at.error] if combo["key"] in m.value]
            assert said and "incident" not in said[0] and "Traceback" not in said[0], (combo, said)


def test_the_commands_answer_an_override_for_every_refused_record(history: dict) -> None:
    settings = _copy(history, "override")
    from pipelines.commands import Commands

    with Store(settings.db_path) as store:
        commands = Commands(store, settings)
        keys = [c["key"] for c in history["combos"] if c["state"] in ("needs_fix", "blocked", "retry_scheduled")]
        answer = commands.retry(Caller(ADMIN, REALM), keys, override_reason="a person checked the cause")
        for item in answer.items:
            _is_an_answer(item.status, item.message)
        overrides = store.scalar("SELECT count(*) FROM audit_log WHERE action = 'override'")
        assert overrides >= sum(1 for i in answer.items if i.data.get("sent"))  # every overriding send: audited
        # The sign-in was revoked at the end of the history: whatever an override let through says why it waits.
        waiting = [i for i in answer.items if not i.data.get("sent") and i.message.startswith("not sent")]
        assert all("not connected" in i.message for i in waiting), [i.message for i in waiting]
