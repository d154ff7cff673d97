"""Overview: what is loaded from AWRA (per table and entity) and the ingest history, refusals included."""

import polars as pl
import streamlit as st

from ui.charts import plain
from ui.data import company_name, get_settings, get_store, overview, qbo_summary
from ui.render import named_entities

settings = get_settings()
store = get_store(str(settings.db_path))
realm = st.session_state.get("realm", settings.realm_id)
data = overview(store, realm)

st.title("Overview (all periods)")
st.caption(f"{plain(company_name(store, realm))} · what AWRA sent and what QuickBooks holds, every date")

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
    st.error(f"The latest snapshot was refused, nothing of it applied: {plain(last['error'])}")

st.subheader("Records by type")
st.dataframe(
    named_entities(entities),
    hide_index=True,
    column_config={
        "entity": st.column_config.TextColumn("Type"),
        "removed": st.column_config.NumberColumn("Removed in AWRA", format="localized"),
        "versions": st.column_config.NumberColumn("Versions", format="localized"),
        "records": st.column_config.NumberColumn("Records", format="localized"),
        "changed_records": st.column_config.NumberColumn("Changed since first seen", format="localized"),
        "last_change": st.column_config.DatetimeColumn("Last change", format="YYYY-MM-DD HH:mm"),
    },
)

st.subheader("QuickBooks")
qbo = qbo_summary(store, realm)
conn, pulled, company = qbo["connection"], qbo["last_pull"], qbo["company"]
target = settings.api_base_url if settings.qbo_env == "local" else f"Intuit {settings.qbo_env}"
if conn is None:
    st.warning(f"Not connected to QuickBooks ({target}). An admin runs `synchealth connect`, then `synchealth pull`.")
else:
    cols = st.columns(4)
    cols[0].metric("Connection", conn["status"].replace("_", " "), help=f"{target}; by {conn['connected_by']}")
    cols[1].metric("Last pull", f"{pulled['kind']} · {pulled['status']}" if pulled else "never")
    closed = (company or {}).get("book_close_date")
    cols[2].metric(
        "Book close date",
        str(closed) if closed else "none set" if company else "unknown",
        help="QuickBooks has no closing date: every period is open to new transactions"
        if company and not closed
        else None,
    )
    cols[3].metric(
        "Home currency",
        (company or {}).get("home_currency") or "unknown",
        help="multicurrency on" if company and company["multicurrency"] else "multicurrency off",
    )
    if pulled and pulled["error"]:
        st.error(f"The last pull failed: {plain(pulled['error'])}")
    if company:
        st.caption(
            f"{company['company_name']} · duplicate document number check "
            f"{'on' if company['duplicate_docnum_check'] else 'off'} · pulled {company['pulled_at']:%Y-%m-%d %H:%M} UTC"
        )
    st.dataframe(
        qbo["objects"],
        hide_index=True,
        column_config={
            "entity": "QuickBooks type",
            "active": "Active",
            "inactive": "Inactive",
            "deleted": "Deleted",
            "ours": "Created or linked by the sync",
        },  # fmt: skip
    )

st.subheader("Snapshot tables")
st.dataframe(
    named_entities(data["tables"]).with_columns(  # the table in words; its file keeps the contract's name
        pl.col("table_name").str.replace_all("_", " ").str.replace(r"^po ", "PO ")
    ),
    hide_index=True,
    column_config={
        "table_name": "AWRA table",
        "file": "File",
        "entity": "Type",
        "current_rows": st.column_config.NumberColumn("Rows (current versions)", format="localized"),
        "stored_rows": st.column_config.NumberColumn("Rows (all versions)", format="localized"),
        "last_snapshot": st.column_config.DatetimeColumn("Last snapshot", format="YYYY-MM-DD HH:mm"),
    },
)

st.subheader("Ingest history")
st.dataframe(
    data["history"].drop("source").with_columns(pl.col("error").fill_null("")),
    hide_index=True,
    column_config={
        "run_id": "Run",
        "status": "Status",
        "started_at": st.column_config.DatetimeColumn("Started", format="YYYY-MM-DD HH:mm"),
        "finished_at": st.column_config.DatetimeColumn("Finished", format="YYYY-MM-DD HH:mm"),
        "rows": "Rows",
        "accepted": "Accepted",
        "rejected": "Rejected",
        "new_records": "New records",
        "changed_records": "Changed",
        "removed_records": "Removed",
        "error": st.column_config.TextColumn("Why refused", width="large"),
    },
)
for run_id, files in data["refused_files"].items():
    with st.expander(f"Refused snapshot, run {run_id}: what to fix"):
        st.dataframe(files.select(pl.exclude("accepted")), hide_index=True)
