"""Health and Trends pages through AppTest: every widget path, on a store the engine filled against the sandbox."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import parse_qs

import pytest
from fixtures import PERIOD, PERIOD_NAME, REALM, last_day, tiny_snapshot
from served import point_app_at
from streamlit.testing.v1 import AppTest
from world import World

from pipelines.store import Store
from pipelines.views import health
from pipelines.views.period import closing_period, month_name
from pipelines.views.queue import action_queue
from ui.charts import money
from ui.data import get_settings, get_store

ROOT = Path(__file__).resolve().parents[2]
SECTIONS = (
    "Why: what blocks",
    "Top ten to fix",
    "Records by state",
    "Readiness funnel to synced",
    f"{PERIOD_NAME}: ",
    f"Control totals for {PERIOD_NAME}",
)
CHARTS = (
    "Blocked, newly blocked and freed",
    "What blocks them now, by cause",
    "First-time right",
    "Retries, and whether they worked",
    "Days to resolve, by kind of problem",
    "Days to resolve, by owner",
    "What QuickBooks answered to failed attempts",
    "Recurring offenders",
    "Sync runs: what each sent",
)


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Three cycles: a bill blocked on an item, then sends into connection resets, then the retries get through;
    one bill is left blocked on an item in the period."""
    tmp = tmp_path_factory.mktemp("pages_health")
    snap = tiny_snapshot()
    snap["bill_lines"][0]["item_sku"] = "WID-220"
    snap["bills"][1]["txn_date"] = last_day().isoformat()
    world = World(tmp, snap)
    world.cycle()
    assert world.map("item", "WID-220", "1", reason="same widget").ok
    world.sandbox.set_faults("connection_reset@write=1", seed=3)
    world.now += timedelta(hours=1)
    world.cycle()
    world.sandbox.set_faults(None)
    world.drain()
    snap["invoice_lines"][0]["item_sku"] = "WID-404"  # a new invoice version waits on an item nobody mapped
    world.ingest(snap)
    world.cycle()
    world.store.close()
    yield world.settings.db_path


@pytest.fixture
def app_env(db: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    yield from point_app_at(monkeypatch, db)


def _page(page: str, **query: str) -> AppTest:
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)
    for k, v in {"period": PERIOD, **query}.items():
        at.query_params[k] = v
    at.run()
    at.switch_page(f"app_pages/{page}").run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def _texts(at: AppTest) -> str:
    return "\n".join(e.value for kind in ("markdown", "caption", "subheader", "title") for e in getattr(at, kind))


def _queue(db: Path, period: str = PERIOD):
    with Store(db) as store, health.prepared(store, REALM):
        return action_queue(store, REALM, now=datetime.now(UTC), period=period)


def test_health_renders_every_section_with_the_queues_numbers(app_env: Path) -> None:
    queue = _queue(app_env)
    blocked = health.blocked(queue)
    get_store.clear()
    at = _page("health.py")
    assert at.title[0].value == f"Sync health — {PERIOD_NAME}"
    subheaders = [s.value for s in at.subheader]
    for section in SECTIONS:
        assert any(s.startswith(section) for s in subheaders), (section, subheaders)
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Records blocked"] == f"{blocked['records']:,}"
    assert metrics["Dollars blocked"] == money(blocked["dollars"], compact=True)
    links = [p.proto for p in at.get("page_link")]
    records = [parse_qs(p.query_string)["key"][0] for p in links if p.page == "record"]
    assert records == [k for k in health.top_fixes(queue)["key"] if k.split(":")[0] not in ("connection", "snapshot")]
    causes = [p for p in links if p.page == "action_queue" and "cause" in parse_qs(p.query_string)]
    assert causes and all(parse_qs(p.query_string)["period"] == [PERIOD] for p in causes)
    assert not any("." in p.label and "_" in p.label for p in causes)  # titles, never reason codes
    assert any("QuickBooks connected" in m.value for m in at.markdown)  # the connection badge
    assert len(at.get("download_button")) >= 2
    assert "Leave presentation mode" not in [b.label for b in at.button]


def test_better_or_worse_is_on_the_page(app_env: Path) -> None:
    text = _texts(_page("health.py"))
    assert "Blocked dollars, last six weeks" in text
    assert any(w in text for w in ("Worse than a week ago", "Better than a week ago", "Unchanged than a week ago"))
    assert "This week: " in text


def test_present_button_enters_presentation_mode_and_leaving_restores_the_widgets(app_env: Path) -> None:
    at = _page("health.py")
    at.button(key="health_present").click().run()
    assert at.query_params["present"] == "1" and at.query_params["period"] == PERIOD
    assert not at.exception
    assert not at.get("download_button")  # nothing to distract the room
    assert any("display: none" in h.proto.body for h in at.get("html"))  # the sidebar is hidden
    at.button(key="health_leave").click().run()
    assert "present" not in at.query_params
    assert at.get("download_button") and not at.exception


def test_a_shared_presentation_address_opens_in_presentation_mode(app_env: Path) -> None:
    at = _page("health.py", present="1")
    assert at.title[0].value == f"Sync health — {PERIOD_NAME}"
    assert [b.key for b in at.button] == ["health_leave"]
    assert at.get("table")  # tables as HTML, so that the large type reaches them


def test_a_bad_period_falls_back_to_the_month_being_closed(app_env: Path) -> None:
    with Store(app_env) as store:
        closing = closing_period(store, REALM, datetime.now(UTC))
    at = _page("health.py", period="November")
    assert at.title[0].value == f"Sync health — {month_name(closing)}"


def test_trends_render_every_chart_with_its_csv(app_env: Path) -> None:
    at = _page("trends.py")
    subheaders = [s.value for s in at.subheader]
    for title in CHARTS:
        assert any(s.startswith(title) for s in subheaders), (title, subheaders)
    charts = at.get("vega_lite_chart")
    assert len(charts) == len(CHARTS)
    assert all("pick" in c.proto.selection_mode for c in charts[1:])
    assert "when" in charts[0].proto.selection_mode  # the brush on time
    assert len(at.get("download_button")) == len(CHARTS)


def test_trends_group_by_week_and_count_records(app_env: Path) -> None:
    at = _page("trends.py")
    at.button_group(key="trends_bucket").set_value("week").run()
    at.button_group(key="trends_measure").set_value("records").run()
    assert not at.exception and len(at.get("vega_lite_chart")) == len(CHARTS)
    assert any(s.value.startswith("Blocked, newly blocked and freed, per week (records)") for s in at.subheader)


@pytest.mark.parametrize(
    ("key", "point", "param"),
    [
        ("trends_causes", {"cause_reason": "mapping.item_missing", "cause": "x"}, ("cause", "mapping.item_missing")),
        ("trends_retries", {"dimension": "duplicate_risk"}, ("kind", "duplicate_risk")),
        ("trends_resolve_dimension", {"dimension": "transport"}, ("kind", "transport")),
        ("trends_resolve_owner", {"owner": "admin@demo.local"}, ("owner", "admin@demo.local")),
        ("trends_codes", {"reason": "transport.connection_reset"}, ("cause", "transport.connection_reset")),
        (
            "trends_offenders",
            {"kind": "item", "value": "WID-220", "reason": "mapping.item_missing"},
            ("cause", "mapping.item_missing"),
        ),  # fmt: skip
        ("trends_offenders", {"kind": "vendor", "value": "VEN-1", "reason": "x"}, ("entity", "vendor")),
        ("trends_throughput", {"outcome": "ambiguous"}, ("kind", "duplicate_risk")),
    ],
)
def test_a_click_on_a_chart_drills_to_the_action_queue_with_the_period(
    app_env: Path, key: str, point: dict, param: tuple[str, str]
) -> None:
    at = _page("trends.py")
    at.session_state[key] = {"selection": {"pick": [point]}}
    at.run()
    assert not at.exception
    drills = [parse_qs(p.proto.query_string) for p in at.get("page_link") if p.proto.page == "action_queue"]
    assert any(q.get(param[0]) == [param[1]] and q.get("period") == [PERIOD] for q in drills), drills


def test_a_brushed_time_range_narrows_the_charts_below(app_env: Path) -> None:
    at = _page("trends.py")
    at.session_state["trends_flow"] = {"selection": {"when": {"when": [0, 1000]}}}  # 1970: nothing
    at.run()
    assert not at.exception
    assert any(c.value.startswith("Brushed: 1970-01-01") for c in at.caption)


def test_empty_store_says_how_to_start(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SYNCHEALTH_DB", str(tmp_path / "empty.duckdb"))
    monkeypatch.chdir(ROOT)
    get_settings.clear()
    get_store.clear()
    try:
        assert "pipelines.demo.history" in _page("health.py").info[0].value
        assert "first cycle" in _page("trends.py").info[0].value
    finally:
        get_store.clear()
        get_settings.clear()
