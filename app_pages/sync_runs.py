"""Sync runs: every run with its trigger, actor, duration and outcomes; drill to what QuickBooks said."""

import altair as alt
import polars as pl
import streamlit as st

from ui.actions import caller_for, commands, run_action, show_result
from ui.data import get_settings, get_store, identity_of, run_attempts, sync_history

settings = get_settings()
store = get_store(str(settings.db_path))
realm = st.session_state.get("realm", settings.realm_id)
identity = identity_of(st.session_state.get("actor"), settings)

st.title("Sync runs")
if identity.can("sync") and st.button("Run a cycle now (check, then sync)", key="sync_now"):
    bar = st.progress(0.0, text="checking")
    progress = lambda f, label: bar.progress(min(max(f, 0.0), 1.0), text=label)  # noqa: E731
    show_result(run_action("Sync", lambda: commands().sync(caller_for(identity), progress=progress)))

runs = sync_history(store, realm)
if runs.is_empty():
    st.info("No sync has run yet. An admin runs `synchealth sync` (or the button above).")
    st.stop()

outcomes = ["accepted", "rejected", "duplicate", "authorization", "throttled", "transport", "ambiguous"]
long = runs.select("run_id", *outcomes).unpivot(index="run_id", variable_name="outcome", value_name="records")
colors = alt.Scale(domain=outcomes, range=["#0072B2", "#D55E00", "#CC79A7", "#000000", "#F0E442", "#E69F00", "#56B4E9"])
chart = (
    alt.Chart(long.filter(pl.col("records") > 0))
    .mark_bar()
    .encode(
        x=alt.X("run_id:O", title="Run"),
        y=alt.Y("records:Q", title="Records sent"),
        color=alt.Color("outcome:N", scale=colors),
        tooltip=["run_id", "outcome", "records"],
    )
)
st.altair_chart(chart, width="stretch")
st.dataframe(runs, hide_index=True, column_config={"error": st.column_config.TextColumn(width="large")})

run_id = st.selectbox("Attempts of run", runs["run_id"].to_list(), key="sync_run_pick")
attempts = run_attempts(store, run_id).with_columns(("/record?key=" + pl.col("key")).alias("open"))
st.dataframe(
    attempts,
    hide_index=True,
    column_config={
        "open": st.column_config.LinkColumn("Record page", display_text="open"),
        "message": st.column_config.TextColumn("What QuickBooks said", width="large"),
    },
)
