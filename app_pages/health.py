"""Health: the close meeting's page. How much is blocked, why, who owns it, better or worse; then the detail."""

import streamlit as st

from pipelines.views.period import ALL, month_name
from ui.charts import (
    DIMENSION_TITLES,
    PRESENT_CSS,
    blocked_trend_chart,
    funnel_chart,
    money,
    plain,
    states_chart,
    table_view,
)
from ui.data import (
    closing_period,
    company_name,
    csv_export,
    get_settings,
    get_store,
    health_view,
    page_now,
    page_period,
)
from ui.firm import company_section
from ui.render import cause_rows, named_entities, queue_link, scope_words, top_rows

settings = get_settings()
store = get_store(str(settings.db_path))
realm = st.session_state.get("realm", settings.realm_id)
present = st.query_params.get("present") == "1"
period = page_period(store, realm)
closing = closing_period(store, realm)
scope = scope_words(period, closing)
name = "all periods" if period == ALL else month_name(period)


def enter_presentation() -> None:
    st.query_params.update(present="1", period=period)


def leave_presentation() -> None:
    st.query_params.clear()
    st.query_params["period"] = period


if present:
    st.html(PRESENT_CSS)
view = health_view(store, realm, period)
st.title(f"Sync health — {name}")
company_section(store, page_now(), closing if period == ALL else period)  # the firm view: with several companies
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
head_left, head_right = st.columns([5, 1.2], vertical_alignment="center")
with head_left:
    st.markdown(f"**{scope[:1].upper()}{scope[1:]}** · {plain(company_name(store, realm))}")
    st.badge(conn["label"], color=tone[0], icon=tone[1])
    st.caption(
        f"Numbers as of {view['now']:%Y-%m-%d %H:%M} UTC (last run {view['as_of']:%Y-%m-%d %H:%M}) · "
        f"{plain(conn['detail'])}"
    )
if not present:
    head_right.button(
        "Present",
        on_click=enter_presentation,
        icon=":material/slideshow:",
        key="health_present",
        help="Full screen for the meeting: no sidebar, large type (the address can be shared)",
    )

# -- how much, and better or worse -------------------------------------------------------------------------------
blocked, flow, close = view["blocked"], view["flow"], view["close"]["summary"]
series = view["series"]
week_ago = series.filter(series["at"] <= flow["since"]).tail(1)
then_dollars = week_ago["dollars"][0] if week_ago.height else 0
change = blocked["dollars"] - then_dollars
records_change = blocked["records"] - flow["week_ago_records"]


def delta(value: object, text: str) -> dict:
    """A change against a week ago: more blocked is worse (orange), less is better (blue); never red or green."""
    if not value:
        return {"delta": f"no change {text}", "delta_color": "off", "delta_arrow": "off"}
    return {"delta": text, "delta_color": "orange" if value > 0 else "blue"}


cols = st.columns(4)
sign = "+" if change >= 0 else "-"
cols[0].metric(
    "Dollars blocked",
    money(blocked["dollars"], compact=True),
    border=True,
    help=f"In {name}: {money(blocked['dollars'])}. Each document's amount once: a payment blocked with its invoice "
    "is counted under the invoice.",
    **delta(change, f"{sign}{money(abs(change), compact=True)} in 7 days"),
)
cols[1].metric("Records blocked", f"{blocked['records']:,}", border=True, help=f"In {name}.",
               **delta(records_change, f"{records_change:+,} in 7 days"))  # fmt: skip
net = flow["new_records"] - flow["freed_records"]
cols[2].metric("New · freed (7 days)", f"{flow['new_records']:,} · {flow['freed_records']:,}", border=True,
               **delta(net, f"{net:+,} net"),
               help=f"Since {flow['since']:%Y-%m-%d %H:%M} UTC: records newly blocked ({money(flow['new_dollars'])}) "
               f"and freed ({money(flow['freed_dollars'])}); blocked a week ago {flow['week_ago_records']:,} + new - "
               f"freed = blocked now {blocked['records']:,}.")  # fmt: skip
done = close["percent_complete"]
cols[3].metric(
    "Settled",
    "—" if done is None else f"{done:.1f}%",
    f"{close['open']:,} of {close['records']:,} open",
    delta_color="off",
    delta_arrow="off",
    border=True,
    help=f"Transactions dated in {name} that are synced or excluded with a reason.",
)
st.caption(
    f"This week: {flow['new_records']:,} records newly blocked ({money(flow['new_dollars'], compact=True)}), "
    f"{flow['freed_records']:,} freed ({money(flow['freed_dollars'], compact=True)}); "
    f"{flow['escalated']:,} items escalated (their due-by passed or their retries ran out)."
)
if blocked["connection_problem"]:
    st.warning("The connection to QuickBooks is down: nothing is sent until an admin reconnects (Connection page).")

# -- why, who owns it, who decides; and the six weeks ----------------------------------------------------------
st.subheader(f"Why: what blocks {blocked['records']:,} records, {money(blocked['dollars'], compact=True)} in {name}")
if view["causes"].is_empty():
    st.success(f"Nothing is blocked in {name}.")
else:
    cause_rows(view["causes"], period, present=present, limit=6 if present else 8)
trend, words = st.columns([3, 1.3], vertical_alignment="center")
with trend:
    st.markdown(f"**Blocked dollars, last six weeks** (records dated in {name})")
    st.altair_chart(blocked_trend_chart(series, big=present), width="stretch")
with words:
    verdict = "worse" if change > 0 else "better" if change < 0 else "unchanged"
    st.markdown(
        f"**{verdict.capitalize()} than a week ago:** {money(blocked['dollars'], compact=True)} blocked now, "
        f"{money(then_dollars, compact=True)} then."
    )
    peak = series.sort("dollars", descending=True).row(0, named=True)
    st.caption(f"Highest in six weeks: {money(peak['dollars'], compact=True)} on {peak['at']:%b %d}.")

# -- top ten: the head of the queue for the same period ---------------------------------------------------------
st.subheader(f"Top ten to fix — the action queue's first ten for {name}")
top = view["top"]
if top.is_empty():
    st.success("Nothing is open.")
else:
    top_rows(top, view["now"], present=present)
if not present:
    queue_link(f"The whole action queue for {name} ({blocked['items']:,} items)", period=period,
               icon=":material/assignment_late:")  # fmt: skip
    st.download_button("Top ten (CSV)", csv_export(top.drop("link")), "top-ten.csv", key="health_csv_top")

# -- by kind of problem (adds up to the total) ------------------------------------------------------------------
kinds = blocked["dimensions"].filter(blocked["dimensions"]["records"] > 0)
if kinds.height and not present:
    with st.expander("By kind of problem (each record once, under its cause: the kinds add up to the total)"):
        for row in kinds.iter_rows(named=True):
            queue_link(
                f"{DIMENSION_TITLES[row['dimension']]}: {row['records']:,} records, {money(row['dollars'])}",
                period=period,
                kind=row["dimension"],
            )

left, right = st.columns(2)
with left:
    st.subheader("Records by state (all periods)")
    st.altair_chart(states_chart(view["states"], big=present), width="stretch")
with right:
    st.subheader("Readiness funnel to synced (all periods)")
    st.altair_chart(funnel_chart(view["funnel"], big=present), width="stretch")

st.subheader(f"{name[:1].upper()}{name[1:]}: {close['synced']:,} synced, {close['excluded']:,} excluded, "
             f"{close['open']:,} open")  # fmt: skip
st.progress((done or 0) / 100, text=f"{done or 0:.1f}% of the {close['records']:,} transactions dated in {name} are "
            f"settled; {money(close['open_dollars'])} still open")  # fmt: skip
if close["undated_open"]:
    st.caption(f"{close['undated_open']:,} open records carry no date, so no month holds them (see Readiness).")

# -- control totals ----------------------------------------------------------------------------------------------
controls = view["controls"]
st.subheader(f"Control totals for {name}: AWRA against QuickBooks")
table_view(
    named_entities(controls["totals"]),
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
        named_entities(controls["reasons"].sort("investigate", descending=True, maintain_order=True)),
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
            table_view(
                named_entities(controls["explain"]),
                labels={
                    "key": "Record",
                    "qbo_entity": "QuickBooks type",
                    "qbo_id": "QuickBooks Id",
                    "doc_number": "Document number",
                    "awra_amount": "AWRA amount",
                    "qbo_amount": "QuickBooks amount",
                    "count_effect": "Count effect",
                    "amount_effect": "Amount effect",
                    "explanation": "Explanation",
                    "detail": "Detail",
                },  # fmt: skip
                money_columns=("awra_amount", "qbo_amount", "amount_effect"),
            )
            st.download_button("CSV", csv_export(controls["explain"]), f"drift-{period}.csv", key="health_csv_drift")
if present:
    st.button("Leave presentation mode", on_click=leave_presentation, type="tertiary", key="health_leave")
