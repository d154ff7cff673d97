"""Trends: why failures happen. Brush a time range on the first chart, click a bar or area to open the queue."""

import streamlit as st

from pipelines.views.trends import OUTCOME_DIMENSION, within
from ui.charts import (
    PRESENT_CSS,
    codes_chart,
    drill_link,
    failures_chart,
    ftr_chart,
    offenders_chart,
    picked,
    resolve_chart,
    retry_chart,
    throughput_chart,
    window,
)
from ui.data import csv_export, get_settings, get_store, trends_view

settings = get_settings()
store = get_store(str(settings.db_path))
realm = st.session_state.get("realm", settings.realm_id)
present = st.query_params.get("present") == "1"
if present:
    st.html(PRESENT_CSS)

st.title("Trends")
bucket = "day"
if not present:
    bucket = st.segmented_control("Group by", ["day", "week"], default="day", key="trends_bucket") or "day"
data = trends_view(store, realm, bucket)
if data["failures"].is_empty():
    st.info("No check has run for this company yet: trends start with the first cycle (`synchealth sync`).")
    st.stop()


def chart(title: str, figure, frame, key: str, drill) -> object:
    """One chart: clickable, with a link to the action queue for what was clicked and its data as CSV."""
    st.subheader(title)
    event = st.altair_chart(figure, width="stretch", on_select="rerun", key=key)
    for filters, what in drill(picked(event)):
        drill_link(filters, what)
    if not present:
        st.download_button("CSV", csv_export(frame), f"{key}.csv", key=f"{key}_csv", icon=":material/download:")
    return event


def by(field: str, target: str | None = None):
    return lambda points: [({target or field: p[field]}, p[field]) for p in points if p.get(field)]


event = chart(
    "Open problems by dimension at each check run",
    failures_chart(data["failures"]),
    data["failures"],
    "trends_failures",
    by("dimension"),
)
span = window(event, "checked_at")
if span:
    st.caption(f"Brushed: {span[0]:%Y-%m-%d %H:%M} to {span[1]:%Y-%m-%d %H:%M} UTC; the charts below show that range.")
else:
    st.caption("Drag across the chart to look at a time range; click a dimension in the legend to open its queue.")

ftr = within(data["first_time_right"], "period", span)
left, right = st.columns(2)
with left:
    chart("First-time right: synced on the first attempt", ftr_chart(ftr), ftr, "trends_ftr", by("entity"))
with right:
    retries = within(data["retries"], "period", span)
    chart("Retry success by the failure retried", retry_chart(retries), retries, "trends_retries", by("dimension"))

left, right = st.columns(2)
resolve = data["resolve"]
with left:
    chart(
        "Time to resolve by dimension",
        resolve_chart(resolve["dimension"], "dimension"),
        resolve["dimension"],
        "trends_resolve_dimension",
        by("dimension"),
    )
with right:
    chart(
        "Time to resolve by owner",
        resolve_chart(resolve["owner"], "owner"),
        resolve["owner"],
        "trends_resolve_owner",
        by("owner"),
    )

codes = data["codes"]
if codes.is_empty():
    st.subheader("QuickBooks error codes")
    st.caption("No attempt has failed.")
else:
    chart("Top QuickBooks error codes, with their messages", codes_chart(codes), codes, "trends_codes", by("reason"))


def offender_drill(points: list[dict]) -> list[tuple[dict, str]]:
    out = []
    for p in points:
        if p.get("kind") in ("vendor", "customer"):
            out.append(({"entity": p["kind"]}, f"{p['kind']} {p.get('value')}"))
        elif p.get("reason"):
            out.append(({"reason": p["reason"]}, f"{p.get('kind')} {p.get('value')}"))
    return out


offenders = data["offenders"]
if offenders.is_empty():
    st.subheader("Recurring offenders")
    st.caption("No vendor, customer or reference value is behind repeated failures.")
else:
    chart(
        "Recurring offenders: behind repeated failures",
        offenders_chart(offenders),
        offenders,
        "trends_offenders",
        offender_drill,
    )

runs = within(data["throughput"], "started_at", span)
chart(
    "Sync throughput per run",
    throughput_chart(runs),
    runs,
    "trends_throughput",
    lambda points: [
        ({"dimension": OUTCOME_DIMENSION[p["outcome"]]}, p["outcome"])
        for p in points
        if p.get("outcome") in OUTCOME_DIMENSION
    ],
)
