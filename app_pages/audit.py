"""Audit: who did what and when (people and the system), filterable and exportable; the log is append-only."""

import polars as pl
import streamlit as st

from pipelines.views.queue import filter_audit
from ui.data import audit_log, csv_export, get_settings, get_store

# A key (purchase_order:PO-1, company:9341) reads as words: "purchase order PO-1"; any other target as it is.
_KEYED = r"^[a-z_]+:"
_TARGET_WORDS = (
    pl.when(pl.col("target").str.contains(_KEYED))
    .then(
        pl.concat_str(
            pl.col("target").str.extract(r"^([a-z_]+):", 1).str.replace_all("_", " "),
            pl.col("target").str.replace(_KEYED, " "),
        )
    )
    .otherwise(pl.col("target"))
)


def _action_words(action: str) -> str:
    return action.replace("_", " ")


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
    "Action", sorted(log["action"].unique().to_list()), key="audit_action", format_func=_action_words
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
    shown.with_columns(
        *(pl.col(c).fill_null("") for c in ("reason", "before_json", "after_json")),
        pl.col("action").str.replace_all("_", " "),
        _TARGET_WORDS,
    ),
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
