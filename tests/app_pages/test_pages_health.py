"""Health and Trends pages through AppTest: every widget path, on a store the engine filled against the sandbox."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from urllib.parse import parse_qs

import pytest
from fixtures import PERIOD, PERIOD_NAME, REALM, last_day, tiny_snapshot
from served import point_app_at
from streamlit.testing.v1 import AppTest
from world import World

from pipelines.store import Store
from pipelines.views import health
from ui.data import get_settings, get_store

ROOT = Path(__file__).resolve().parents[2]
SECTIONS = (
    "Records by state",
    "Readiness funnel to synced",
    f"Close of {PERIOD_NAME}",
    f"Control totals for {PERIOD_NAME}",
    "Top ten to fix",
)
CHARTS = (
    "Open problems by dimension",
    "First-time right",
    "Retry success",
    "Time to resolve by dimension",
    "Time to resolve by owner",
    "Top QuickBooks error codes",
    "Recurring offenders",
    "Sync throughput",
)


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Three cycles: a bill blocked on an item, then sends into connection resets, then the retries get through."""
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


def _expected(db: Path) -> dict:
    with Store(db) as store:
        since, label = health.reference_time(store, REALM, "close", health.as_of(store, REALM))
        return {
            "head": {r["dimension"]: r for r in health.headline(store, REALM, since).iter_rows(named=True)},
            "top": health.top_fixes(store, REALM, health.as_of(store, REALM)),
            "close": health.period_close(store, REALM, PERIOD, health.as_of(store, REALM))["summary"],
        }


def test_health_renders_every_section_with_the_read_models_numbers(app_env: Path) -> None:
    expected = _expected(app_env)
    get_store.clear()
    at = _page("health.py")
    subheaders = [s.value for s in at.subheader]
    for section in SECTIONS:
        assert any(s.startswith(section) for s in subheaders), section
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Records blocked"] == f"{expected['head']['all']['records']:,}"
    assert metrics[f"{PERIOD_NAME} complete"] == f"{expected['close']['percent_complete']:.1f}%"
    assert metrics["Mappings"].startswith(f"{expected['head']['mapping']['records']:,} · ")
    links = [p.proto for p in at.get("page_link")]
    records = [p for p in links if p.page == "record"]
    assert [parse_qs(p.query_string)["key"][0] for p in records] == [
        k for k in expected["top"]["key"] if k != "connection"
    ]
    assert any("QuickBooks connected" in m.value for m in at.markdown)  # the connection badge
    assert len(at.get("download_button")) >= 3
    assert "Leave presentation mode" not in [b.label for b in at.button]


def test_change_since_last_week_reworks_the_deltas(app_env: Path) -> None:
    at = _page("health.py")
    assert "since the close of" in _texts(at)
    at.button_group(key="health_since").set_value("week").run()
    assert not at.exception
    assert "since last week" in _texts(at)


def test_present_button_enters_presentation_mode_and_leaving_restores_the_widgets(app_env: Path) -> None:
    at = _page("health.py")
    at.button(key="health_present").click().run()
    assert at.query_params["present"] == "1" and at.query_params["period"] == PERIOD
    assert not at.exception
    assert not at.get("button_group") and not at.get("download_button")  # nothing to distract the room
    assert any("display: none" in h.proto.body for h in at.get("html"))  # the sidebar is hidden
    at.button(key="health_leave").click().run()
    assert "present" not in at.query_params
    assert at.get("button_group") and not at.exception


def test_a_shared_presentation_address_opens_in_presentation_mode(app_env: Path) -> None:
    at = _page("health.py", present="1", since="week")
    assert "since last week" in _texts(at)
    assert [b.key for b in at.button] == ["health_leave"]
    assert at.get("table")  # tables as HTML, so that the large type reaches them


def test_a_bad_period_falls_back_to_this_month(app_env: Path) -> None:
    at = _page("health.py", period="November")
    assert at.title[0].value.startswith("Sync health — close of ")


def test_trends_render_every_chart_with_its_csv(app_env: Path) -> None:
    at = _page("trends.py")
    subheaders = [s.value for s in at.subheader]
    for title in CHARTS:
        assert any(s.startswith(title) for s in subheaders), title
    charts = at.get("vega_lite_chart")
    assert len(charts) == len(CHARTS)
    assert all("pick" in c.proto.selection_mode for c in charts)
    assert "when" in charts[0].proto.selection_mode  # the brush on time
    assert len(at.get("download_button")) == len(CHARTS)


def test_trends_group_by_week(app_env: Path) -> None:
    at = _page("trends.py")
    at.button_group(key="trends_bucket").set_value("week").run()
    assert not at.exception and len(at.get("vega_lite_chart")) == len(CHARTS)


@pytest.mark.parametrize(
    ("key", "point", "filters"),
    [
        ("trends_failures", {"dimension": "mapping"}, "dimension = mapping"),
        ("trends_ftr", {"entity": "bill"}, "entity = bill"),
        ("trends_retries", {"dimension": "duplicate_risk"}, "dimension = duplicate_risk"),
        ("trends_resolve_dimension", {"dimension": "transport"}, "dimension = transport"),
        ("trends_resolve_owner", {"owner": "admin"}, "owner = admin"),
        ("trends_codes", {"reason": "transport.connection_reset"}, "reason = transport.connection_reset"),
        (
            "trends_offenders",
            {"kind": "item", "value": "WID-220", "reason": "mapping.item_missing"},
            "reason = mapping.item_missing",
        ),  # fmt: skip
        ("trends_offenders", {"kind": "vendor", "value": "VEN-1", "reason": "x"}, "entity = vendor"),
        ("trends_throughput", {"outcome": "ambiguous"}, "dimension = duplicate_risk"),
    ],
)
def test_a_click_on_a_chart_drills_to_the_action_queue(app_env: Path, key: str, point: dict, filters: str) -> None:
    at = _page("trends.py")
    at.session_state[key] = {"selection": {"pick": [point]}}
    at.run()
    assert not at.exception
    links = [p.proto for p in at.get("page_link")]
    assert any(p.label.endswith(filters) and p.page == "action_queue" for p in links), [p.label for p in links]


def test_a_brushed_time_range_narrows_the_charts_below(app_env: Path) -> None:
    at = _page("trends.py")
    at.session_state["trends_failures"] = {"selection": {"when": {"checked_at": [0, 1000]}}}  # 1970: nothing
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
