"""Mappings: the gaps ranked by what they block, stale first; admins map values and accept suggestions."""

import polars as pl
import streamlit as st

from ui.actions import caller_for, commands, run_action, show_result
from ui.data import get_settings, get_store, identity_of, mapping_gaps, qbo_choices

settings = get_settings()
store = get_store(str(settings.db_path))
realm = st.session_state.get("realm", settings.realm_id)
identity = identity_of(st.session_state.get("actor"), settings)
gaps = mapping_gaps(store, realm)

st.title("Mappings")
if gaps.is_empty():
    st.success(
        "No mapping gaps: every account, tax code, item, payment method and category in use is mapped. "
        "After a new snapshot or pull, run `synchealth check` to look again."
    )
    st.stop()

top = gaps.row(0, named=True)
n = top["records"]
st.markdown(
    f"**Fix first:** map {top['kind'].replace('_', ' ')} **{top['awra_value']}** — unblocks "
    f"{n:,} record{'s' * (n != 1)}, ${top['dollars']:,.2f}."
)
st.dataframe(
    gaps.drop("suggestion_id"),
    hide_index=True,
    column_config={
        "dollars": st.column_config.NumberColumn("Dollars blocked", format="dollar"),
        "records": st.column_config.NumberColumn("Records blocked", format="localized"),
        "stale_target": st.column_config.TextColumn("Mapped to (inactive in QuickBooks)"),
    },
)

suggested = gaps.filter(pl.col("status") == "suggested")
if not suggested.is_empty():
    st.subheader("Suggestions to accept")
    picked_rows = st.dataframe(
        suggested.select("kind", "awra_value", "suggestion", "records", "dollars"),
        hide_index=True,
        on_select="rerun" if identity.can("map") else "ignore",
        selection_mode="multi-row",
        key="suggestion_table",
        column_config={"dollars": st.column_config.NumberColumn("Dollars blocked", format="dollar")},
    )
    rows = picked_rows.selection.rows if identity.can("map") else []
    if identity.can("map") and st.button(f"Accept {len(rows)} selected", disabled=not rows, key="accept_go"):
        pairs = [(suggested["kind"][i], suggested["awra_value"][i]) for i in rows]
        done = run_action("Accept suggestions", lambda: commands().accept_suggestions(caller_for(identity), pairs))
        show_result(done)

st.subheader("Map a value")
if not identity.can("map"):
    st.caption(f"Read-only: mapping needs the admin role; you are signed in as a {identity.role}.")
    st.stop()
kind = st.selectbox("Kind", sorted(gaps["kind"].unique().to_list()), key="map_kind")
values = gaps.filter(pl.col("kind") == kind)
value = st.selectbox("AWRA value", values["awra_value"].to_list(), key="map_value")
row = values.filter(pl.col("awra_value") == value).row(0, named=True)
choices = qbo_choices(store, realm, kind)
labels = [f"{r['name']} ({r['entity']} {r['qbo_id']})" for r in choices.iter_rows(named=True)]
ids = choices["qbo_id"].to_list()
default = ids.index(row["suggestion_id"]) if row["suggestion_id"] in ids else 0
picked = st.selectbox(
    "QuickBooks object",
    range(len(ids)),
    index=default,
    format_func=labels.__getitem__,
    key="map_target",
    disabled=not ids,
)
reason = st.text_input("Reason (kept in the audit log)", key="map_reason")
if st.button("Map and re-check", type="primary", disabled=not ids, key="map_go"):
    with st.spinner("Re-checking every record..."):
        done = run_action(
            "Map", lambda: commands().map(caller_for(identity), kind, value, ids[picked], reason=reason or None)
        )
    show_result(done)
