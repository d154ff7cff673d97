"""Audit: who did what and when (people and the system), filterable and exportable; the log is append-only."""

import streamlit as st

from pipelines.views.queue import action_words, audit_words, filter_audit
from ui.data import audit_log, csv_export, get_settings, get_store

settings = get_settings()
store = get_store(str(settings.db_path))
realm = st.session_state.get("realm", settings.realm_id)
log = audit_log(store, realm)

st.title("Audit log (all periods)")
if log.is_empty():
    st.info(
        "Nothing has been done in this company yet. Mappings, retries, duplicate decisions, assignments, "
        "resolutions and exclusions appear here, and so do the system's own (auto-resolve, reopen, escalate)."
    )
    st.stop()

cols = st.columns(4)
actors = cols[0].multiselect("Who", sorted(log["actor"].unique().to_list()), key="audit_actor")
actions = cols[1].multiselect(
    "Action", sorted(log["action"].unique().to_list()), key="audit_action", format_func=action_words
)
target = cols[2].text_input("Record or value contains", key="audit_target")
first, latest = log["acted_at"].min().date(), log["acted_at"].max().date()
period = cols[3].date_input("Between", value=(first, latest), key="audit_period")
since, until = (tuple(period) + (None, None))[:2] if isinstance(period, tuple | list) else (period, None)
shown = filter_audit(log, actors=actors, actions=actions, target_contains=target, since=since, until=until)

st.caption(
    f"{shown.height:,} of {log.height:,} entries, newest first. The database refuses any change or deletion of "
    "these rows: corrections are new entries."
)
st.dataframe(
    audit_words(shown),
    hide_index=True,
    column_config={
        "audit_id": st.column_config.NumberColumn("#", format="%d"),
        "actor": st.column_config.TextColumn("Who", width="medium"),
        "role": "Role",
        "action": "Action",
        "target": st.column_config.TextColumn("Record or value", width="medium"),
        "acted_at": st.column_config.DatetimeColumn("When (UTC)", format="YYYY-MM-DD HH:mm:ss"),
        "reason": st.column_config.TextColumn("Reason", width="large"),
        "before_json": st.column_config.TextColumn("Before", width="medium"),
        "after_json": st.column_config.TextColumn("After", width="medium"),
    },
)
st.download_button(
    "Download these entries (CSV)", csv_export(shown), file_name=f"audit-{realm}.csv", mime="text/csv", key="audit_csv"
)
