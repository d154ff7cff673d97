"""Overview: what is loaded from AWRA (per table and entity) and the ingest history, refusals included."""

import polars as pl
import streamlit as st

from pipelines.page_data import get_settings, get_store, overview

settings = get_settings()
store = get_store(str(settings.db_path))
realm = st.session_state.get("realm", settings.realm_id)
data = overview(store, realm)

st.title("Overview")
st.caption(f"Company {realm} · store `{settings.db_path}`")

if data["history"].is_empty():
    st.info(
        "Nothing is loaded yet for this company. Write the demo data and load it with\n\n"
        "`synchealth demo` then `synchealth ingest data/demo/awra`\n\n"
        "(or run `make run`, which does both and starts this app)."
    )
    st.stop()

last = data["history"].row(0, named=True)
entities = data["entities"]
cols = st.columns(4)
cols[0].metric("Records", f"{entities['records'].sum():,}")
cols[1].metric("Versions stored", f"{entities['versions'].sum():,}")
cols[2].metric("Removed in AWRA", f"{entities['removed'].sum():,}")
when = f"run {last['run_id']} at {last['finished_at']:%Y-%m-%d %H:%M} UTC"
cols[3].metric("Last snapshot", last["status"], help=when)
if last["status"] == "refused":
    st.error(f"The latest snapshot was refused, nothing of it applied: {last['error']}")

st.subheader("Records by entity")
st.dataframe(
    entities,
    hide_index=True,
    column_config={
        "records": st.column_config.NumberColumn("Records", format="localized"),
        "changed_records": st.column_config.NumberColumn("Changed since first seen", format="localized"),
        "last_change": st.column_config.DatetimeColumn("Last change", format="YYYY-MM-DD HH:mm"),
    },
)

st.subheader("Snapshot tables")
st.dataframe(
    data["tables"],
    hide_index=True,
    column_config={
        "current_rows": st.column_config.NumberColumn("Rows (current versions)", format="localized"),
        "stored_rows": st.column_config.NumberColumn("Rows (all versions)", format="localized"),
        "last_snapshot": st.column_config.DatetimeColumn("Last snapshot", format="YYYY-MM-DD HH:mm"),
    },
)

st.subheader("Ingest history")
st.dataframe(
    data["history"].drop("source"),
    hide_index=True,
    column_config={"error": st.column_config.TextColumn("Why refused", width="large")},
)
for run_id, files in data["refused_files"].items():
    with st.expander(f"Refused snapshot, run {run_id}: what to fix"):
        st.dataframe(files.select(pl.exclude("accepted")), hide_index=True)
