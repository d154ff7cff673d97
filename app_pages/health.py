"""Health: the close meeting's page. What synced, what did not, why, what it costs, who owns the next step."""

from datetime import datetime
from textwrap import shorten

import streamlit as st

from ui import data as page_data
from ui.charts import (
    DIMENSION_TITLES,
    PRESENT_CSS,
    funnel_chart,
    money,
    plain,
    queue_page_path,
    states_chart,
    table_view,
)
from ui.data import csv_export, get_settings, get_store, health_view
from ui.firm import company_section

settings = get_settings()
store = get_store(str(settings.db_path))
realm = st.session_state.get("realm", settings.realm_id)
params = st.query_params
present = params.get("present") == "1"
period = params.get("period") or st.session_state.get("period") or f"{page_data.page_now():%Y-%m}"
basis = params.get("since") if params.get("since") in ("close", "week") else "close"
try:
    month = datetime.strptime(period, "%Y-%m").strftime("%B %Y")
except ValueError:
    period, month = f"{page_data.page_now():%Y-%m}", f"{page_data.page_now():%B %Y}"


def enter_presentation() -> None:
    st.query_params.update(present="1", period=period, since=st.session_state.get("health_since") or basis)


def leave_presentation() -> None:
    st.query_params.clear()


if present:
    st.html(PRESENT_CSS)
st.title(f"Sync health — close of {month}")
top_left, top_right = st.columns([5, 4], vertical_alignment="center")
if not present:
    labels = {"close": "the last close", "week": "last week"}
    pick, go = top_right.columns([3, 1.4], vertical_alignment="bottom")
    chosen = pick.segmented_control(
        "Change since", list(labels), format_func=labels.get, default=basis, key="health_since"
    )
    basis = chosen or basis
    go.button("Present", on_click=enter_presentation, icon=":material/slideshow:", key="health_present",
              help="Full screen for the meeting: no sidebar, large type (the address can be shared)")  # fmt: skip

company_section(store, page_data.page_now(), period)  # the firm view: only with more than one company
view = health_view(store, realm, period, basis)
if view["as_of"] is None:
    st.info(
        "Nothing has been checked or synced for this company yet. Load a snapshot and run a cycle "
        "(`synchealth ingest DIR`, then `synchealth sync`), or build the demo with its history "
        "(`python -m pipelines.demo.history`)."
    )
    st.stop()
conn = view["connection"]
tone = {"ok": ("blue", ":material/check_circle:"), "warn": ("orange", ":material/schedule:"),
        "bad": ("orange", ":material/error:"), "none": ("gray", ":material/link_off:")}[conn["tone"]]  # fmt: skip
with top_left:
    st.badge(conn["label"], color=tone[0], icon=tone[1])
    st.caption(f"Company {realm} · numbers as of {view['as_of']:%Y-%m-%d %H:%M} UTC · {plain(conn['detail'])}")

# -- headline: blocked by dimension, with the change since the reference time ---------------------------------------
head = {row["dimension"]: row for row in view["headline"].iter_rows(named=True)}
total, close = head["all"], view["close"]["summary"]


def change(records: int, dollars: object) -> dict:
    """The delta, its colour and arrow: more blocked is worse (orange), less is better (blue); never red/green."""
    if not records and not dollars:
        return {"delta": "no change", "delta_color": "off", "delta_arrow": "off"}
    text = f"{records:+,} · {'+' if dollars >= 0 else '-'}{money(abs(dollars), compact=True)}"
    return {"delta": text, "delta_color": "orange" if records > 0 or dollars > 0 else "blue"}


st.caption(f"Blocked now, and the change {view['since_label']} (records · dollars).")
cols = st.columns(3)
delta = change(total["records_change"], total["dollars_change"])
cols[0].metric("Dollars blocked", money(total["dollars"], compact=True), **delta, border=True)
cols[1].metric("Records blocked", f"{total['records']:,}", **delta, border=True)
done = close["percent_complete"]
cols[2].metric(
    f"{month} complete",
    "—" if done is None else f"{done:.1f}%",
    f"{close['open']:,} of {close['records']:,} still open",
    delta_color="off",
    delta_arrow="off",
    border=True,
)
for row_of_tiles in (list(DIMENSION_TITLES)[:3], list(DIMENSION_TITLES)[3:]):
    for tile, dimension in zip(st.columns(3), row_of_tiles, strict=True):
        row = head[dimension]
        value = f"{row['records']:,} · {money(row['dollars'], compact=True)}"
        if row["connection_problem"]:
            value = "connection lost"
        tile.metric(DIMENSION_TITLES[dimension], value, **change(row["records_change"], row["dollars_change"]),
                    border=True, help=f"`{dimension}`: records with an open problem · their dollars")  # fmt: skip

left, right = st.columns(2)
with left:
    st.subheader("Records by state")
    st.altair_chart(states_chart(view["states"], big=present), width="stretch")
with right:
    st.subheader("Readiness funnel to synced")
    st.altair_chart(funnel_chart(view["funnel"], big=present), width="stretch")

# -- the month: synced, excluded with a reason, or open with an owner --------------------------------------------------
st.subheader(f"Close of {month}: {close['synced']:,} synced, {close['excluded']:,} excluded, {close['open']:,} open")
st.progress((done or 0) / 100, text=f"{done or 0:.1f}% of the {close['records']:,} records dated in {month} are "
            f"settled; {money(close['open_dollars'])} still open")  # fmt: skip
if close["undated_open"]:
    st.caption(f"{close['undated_open']:,} open records carry no date, so no month holds them (see Readiness).")
blockers = view["close"]["blockers"]
if blockers.is_empty():
    st.success(f"Nothing blocks 100% for {month}.")
else:
    st.markdown("**What blocks 100%** — open records by cause and owner, biggest first")
    table_view(
        blockers.head(6) if present else blockers,
        labels={
            "dimension": "Dimension",
            "reason": "Reason",
            "owner": "Owner",
            "records": "Records",
            "dollars": "Dollars",
            "open_since": "Open since",
        },  # fmt: skip
        money_columns=("dollars",),
        present=present,
        link_queue=True,
    )
if not present:
    with st.expander(f"Open records of {month} ({view['close']['open'].height:,} shown, biggest first)"):
        st.dataframe(view["close"]["open"], hide_index=True)
        st.download_button("CSV", csv_export(view["close"]["open"]), f"open-{period}.csv", key="health_csv_open")

# -- control totals ----------------------------------------------------------------------------------------------
controls = view["controls"]
st.subheader(f"Control totals for {month}: AWRA against QuickBooks")
table_view(
    controls["totals"],
    labels={
        "entity": "Entity",
        "awra_count": "AWRA records",
        "awra_sum": "AWRA total",
        "qbo_count": "QuickBooks records",
        "qbo_sum": "QuickBooks total",
        "count_drift": "Count drift",
        "sum_drift": "Drift",
    },  # fmt: skip
    money_columns=("awra_sum", "qbo_sum", "sum_drift"),
    drift=True,
    present=present,
)
if not controls["reasons"].is_empty():
    st.markdown("**What explains the drift** — the effects add up to the drift exactly")
    table_view(
        controls["reasons"].sort("investigate", descending=True, maintain_order=True),
        labels={
            "entity": "Entity",
            "explanation": "Explanation",
            "rows": "Rows",
            "count_effect": "Count effect",
            "amount_effect": "Amount effect",
            "kind": "Who acts",
        },  # fmt: skip
        money_columns=("amount_effect",),
        present=present,
    )
    if not present:
        with st.expander(f"The records and QuickBooks objects behind it ({controls['explain'].height:,} shown)"):
            st.dataframe(controls["explain"], hide_index=True)
            st.download_button("CSV", csv_export(controls["explain"]), f"drift-{period}.csv", key="health_csv_drift")

# -- top ten -----------------------------------------------------------------------------------------------------
st.subheader("Top ten to fix")
top = view["top"]
if top.is_empty():
    st.success("Nothing is open.")
widths = [0.3, 1.6, 0.9, 0.5, 1.7, 3.6]
if top.height:
    heads = ["#", "Record", "At stake", "Age", "Owner", "Why, and the next step"]
    for col, name in zip(st.columns(widths), heads, strict=True):
        col.markdown(f"**{name}**")
for item in top.iter_rows(named=True):
    cols = st.columns(widths, vertical_alignment="top")
    cols[0].markdown(f"**{item['rank']}**")
    if item["entity"] == "connection":
        cols[1].page_link(f"app_pages/{item['page']}", label="Connection", icon=":material/key:")
    else:
        cols[1].page_link("app_pages/record.py", label=item["record_id"], query_params={"key": item["key"]},
                          icon=":material/open_in_new:", help=f"Open {item['key']}")  # fmt: skip
        cols[1].caption(item["entity"].replace("_", " "))
    cols[2].markdown(money(item["at_stake"]))
    cols[3].markdown("—" if item["age_days"] is None else f"{item['age_days']:.0f} d")
    cols[4].markdown(plain(item["owner"]))
    title = DIMENSION_TITLES.get(item["dimension"], item["dimension"])
    cols[5].markdown(f"**{title}:** {item['fix']}")
    cols[5].caption(f"`{item['reason']}` · {plain(shorten(item['detail'] or '', 160, placeholder=' …'))}")
if not present:
    st.download_button("CSV", csv_export(top), "top-ten.csv", key="health_csv_top")
    if queue_page_path():
        st.page_link(queue_page_path(), label="Everything open: the action queue", icon=":material/assignment_late:")
else:
    st.button("Leave presentation mode", on_click=leave_presentation, type="tertiary", key="health_leave")
