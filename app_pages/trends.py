"""Trends: why failures happen, in records and dollars. Brush a range of days; click a bar to open its queue items."""

import streamlit as st

from pipelines.catalogue import DIMENSION_GUIDE
from pipelines.views.period import ALL, month_name
from pipelines.views.trends import OUTCOME_DIMENSION, within
from ui.charts import (
    PRESENT_CSS,
    causes_chart,
    codes_chart,
    flow_chart,
    ftr_chart,
    money,
    offenders_chart,
    picked,
    resolve_chart,
    retry_chart,
    throughput_chart,
    window,
)
from ui.data import closing_period, csv_export, get_settings, get_store, page_period, trends_view
from ui.render import queue_link, scope_words

KINDS = {d: g.title for d, g in DIMENSION_GUIDE.items()}

settings = get_settings()
store = get_store(str(settings.db_path))
realm = st.session_state.get("realm", settings.realm_id)
present = st.query_params.get("present") == "1"
period = page_period(store, realm)
name = "all periods" if period == ALL else month_name(period)
if present:
    st.html(PRESENT_CSS)

st.title(f"Trends — {name}")
scope = scope_words(period, closing_period(store, realm))
st.caption(
    f"{scope[:1].upper()}{scope[1:]}: {'records of every date' if period == ALL else 'records dated in it'} · "
    "change the period in the sidebar"
)
bucket, measure = "day", "dollars"
if not present:
    pick_bucket, pick_measure = st.columns(2)
    bucket = pick_bucket.segmented_control("Group by", ["day", "week"], default="day", key="trends_bucket") or "day"
    measure = (
        pick_measure.segmented_control("Measure", ["dollars", "records"], default="dollars", key="trends_measure")
        or "dollars"
    )
data = trends_view(store, realm, bucket, period)
flow = data["flow"]
if data["queue"].is_empty() and not int(flow["new_records"].sum()):
    st.info("Nothing has been blocked in this period yet: trends start with the first cycle (`synchealth sync`).")
    st.stop()


def chart(title: str, figure, frame, key: str, drill) -> object:
    """One chart: clickable, with a link to the action queue for what was clicked and its data as CSV."""
    st.subheader(title)
    event = st.altair_chart(figure, width="stretch", on_select="rerun", key=key)
    for filters, what in drill(picked(event)):
        queue_link(f"Open the action queue for {what} ({name})", period=period, **filters)
    if not present:
        st.download_button("CSV", csv_export(frame), f"{key}.csv", key=f"{key}_csv", icon=":material/download:")
    return event


def by_kind(field: str = "dimension"):
    return lambda points: [({"kind": p[field]}, KINDS.get(p[field], p[field])) for p in points if p.get(field)]


# -- blocked, new and freed per day or week ---------------------------------------------------------------------
last = flow.tail(1).row(0, named=True)
value = (lambda v: f"{int(v):,}") if measure == "records" else (lambda v: money(v, compact=True))
st.subheader(f"Blocked, newly blocked and freed, per {bucket} ({measure})")
cols = st.columns(3)
cols[0].metric("Blocked now", value(last[f"open_{measure}"]), border=True)
cols[1].metric(f"Newly blocked, last {bucket}", value(last[f"new_{measure}"]), border=True)
cols[2].metric(f"Freed, last {bucket}", value(last[f"freed_{measure}"]), border=True)
event = st.altair_chart(flow_chart(flow, measure, bucket), width="stretch", on_select="rerun", key="trends_flow")
span = window(event, "when")
if span:
    st.caption(f"Brushed: {span[0]:%Y-%m-%d} to {span[1]:%Y-%m-%d}; the sync charts below show that range.")
else:
    st.caption(
        "Bars: records that became blocked (up) and were freed (down) in each "
        f"{bucket}; line: what stays blocked at its end. Drag across the chart to look at a range of days."
    )
if not present:
    st.download_button("CSV", csv_export(flow), "trends-flow.csv", key="trends_flow_csv", icon=":material/download:")

# -- what blocks them now --------------------------------------------------------------------------------------
causes = data["blocked_by_cause"]


def cause_words(reason: str) -> str:
    """A cause as the link names it: its title, records and dollars (what the queue then shows for it)."""
    row = causes.filter(causes["cause_reason"] == reason)
    if row.is_empty():
        return reason
    first = row.row(0, named=True)
    return f"{first['cause']}: {first['records']:,} records, {money(first['dollars'], compact=True)}"


if not causes.is_empty():
    chart(
        f"What blocks them now, by cause ({measure})",
        causes_chart(causes, measure),
        causes.drop("cause_reason"),
        "trends_causes",
        lambda points: [
            ({"cause": p["cause_reason"]}, cause_words(p["cause_reason"])) for p in points if p.get("cause_reason")
        ],
    )
    st.caption("Click a bar: its link opens exactly those records in the action queue, with the same counts.")

# -- the sync itself ---------------------------------------------------------------------------------------------
ftr = within(data["first_time_right"], "period", span)
left, right = st.columns(2)
with left:
    chart(
        "First-time right: accepted at the first attempt",
        ftr_chart(ftr),
        ftr,
        "trends_ftr",
        lambda points: [],
    )
with right:
    retries = within(data["retries"], "period", span)
    chart("Retries, and whether they worked", retry_chart(retries), retries, "trends_retries", by_kind())

left, right = st.columns(2)
resolve = data["resolve"]
with left:
    chart(
        "Days to resolve, by kind of problem",
        resolve_chart(resolve["dimension"], "dimension"),
        resolve["dimension"],
        "trends_resolve_dimension",
        by_kind(),
    )
with right:
    chart(
        "Days to resolve, by owner",
        resolve_chart(resolve["owner"], "owner"),
        resolve["owner"],
        "trends_resolve_owner",
        lambda points: [({"owner": p["owner"]}, p["owner"]) for p in points if p.get("owner")],
    )
st.caption("Bar: the median days from opened to resolved; tick: the 90th percentile (one in ten took longer).")

codes = data["codes"]
if codes.is_empty():
    st.subheader("What QuickBooks answered to failed attempts")
    st.caption("No attempt has failed.")
else:
    chart(
        "What QuickBooks answered to failed attempts",
        codes_chart(codes),
        codes,
        "trends_codes",
        lambda points: [({"cause": p["reason"]}, p["reason"]) for p in points if p.get("reason")],
    )


def offender_drill(points: list[dict]) -> list[tuple[dict, str]]:
    out = []
    for p in points:
        if p.get("kind") in ("vendor", "customer"):
            out.append(({"entity": p["kind"]}, f"{p['kind']} {p.get('value')}"))
        elif p.get("reason"):
            out.append(({"cause": p["reason"]}, f"{p.get('kind', '').replace('_', ' ')} {p.get('value')}"))
    return out


offenders = data["offenders"]
if offenders.is_empty():
    st.subheader("Recurring offenders")
    st.caption("No vendor, customer or reference value is behind repeated failures.")
else:
    chart(
        "Recurring offenders: behind repeated failures (all periods)",
        offenders_chart(offenders),
        offenders,
        "trends_offenders",
        offender_drill,
    )

runs = within(data["throughput"], "started_at", span)
chart(
    "Sync runs: what each sent, by outcome (all periods)",
    throughput_chart(runs),
    runs,
    "trends_throughput",
    lambda points: [
        ({"kind": OUTCOME_DIMENSION[p["outcome"]]}, KINDS[OUTCOME_DIMENSION[p["outcome"]]])
        for p in points
        if p.get("outcome") in OUTCOME_DIMENSION
    ],
)
