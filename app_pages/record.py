"""Record: the whole chain of one AWRA record, from source to QuickBooks, with the actions its state allows."""

import polars as pl
import streamlit as st

from ui.actions import caller_for, commands, run_action, show_result
from ui.data import get_settings, get_store, identity_of, qbo_link, record_chain

settings = get_settings()
store = get_store(str(settings.db_path))
realm = st.session_state.get("realm", settings.realm_id)
identity = identity_of(st.session_state.get("actor"), settings)

st.title("Record")
key = st.text_input(
    "Record key", value=st.query_params.get("key", ""), placeholder="bill:BILL-000123", key="record_key"
)
if not key:
    st.info("Enter a record key such as `bill:BILL-000123`, or open one from the Readiness or Sync runs page.")
    st.stop()
chain = record_chain(store, realm, key)
if chain is None:
    # The key is not echoed: it may come from a link (?key=...), and a warning renders Markdown, not text.
    st.warning("No record with this key in this company. Keys look like `bill:BILL-000123` (entity, colon, AWRA id).")
    st.stop()

cols = st.columns(4)
cols[0].metric("State", chain["state"].replace("_", " "))
cols[1].metric("Version", chain["version"])
cols[2].metric("Attempts", len(chain["attempts"]), help=f"retry count {chain['retry_count']}")
ref = chain["external_ref"]
cols[3].metric("In QuickBooks", f"{ref['qbo_entity']} {ref['qbo_id']}" if ref else "not yet")
if ref:
    st.link_button("Open in QuickBooks", qbo_link(settings, realm, ref["qbo_entity"], ref["qbo_id"]))
if exc := chain["exception"]:
    st.error(
        f"**{exc['reason']}** — {exc['detail']}  \nOwner: {exc['owner'] or exc['owner_role']} · open since "
        f"{exc['opened_at'][:16]} · seen {exc['occurrences']} time(s)  \nNext step: {exc['fix']}"
    )

st.subheader("What needs fixing")
if chain["findings"]:
    st.dataframe(pl.DataFrame(chain["findings"]), hide_index=True)
else:
    st.caption("No open readiness finding.")
if chain["duplicate_candidates"]:
    st.subheader("May already be in QuickBooks")
    st.dataframe(pl.DataFrame(chain["duplicate_candidates"]), hide_index=True)
    if identity.can("link_duplicate"):
        ids = [c["qbo_id"] for c in chain["duplicate_candidates"]]
        pick = st.selectbox("QuickBooks object", ids, key="dup_pick")
        why = st.text_input("Reason (audited)", key="dup_reason")
        left, right = st.columns(2)
        if left.button("Link to it", key="dup_link", disabled=not why):
            show_result(run_action("Link", lambda: commands().link(caller_for(identity), key, pick, reason=why)))
        if right.button("Create new anyway", key="dup_new", disabled=not why):
            show_result(run_action("Create new", lambda: commands().create_new(caller_for(identity), key, reason=why)))

st.subheader("Attempts")
if chain["attempts"]:
    st.dataframe(pl.DataFrame(chain["attempts"]), hide_index=True)
else:
    st.caption("Nothing has been sent for this record.")
if chain["state"] != "synced":
    if identity.can("retry"):
        override = st.text_input("Override reason (only to send although nothing changed)", key="retry_override")
        if st.button("Retry now", type="primary", key="retry_go"):
            answer = run_action(
                "Retry", lambda: commands().retry(caller_for(identity), [key], override_reason=override or None)
            )
            (item,) = answer.items or [None]
            if item is not None:
                (st.success if item.done else st.error if item.status == "failed" else st.warning)(
                    f"{item.item}: {item.message}"
                )
            else:
                show_result(answer)
    else:
        st.caption(f"Retry needs the admin role; you are signed in as a {identity.role}.")

with st.expander("Source record (AWRA)"):
    st.json(chain["source"])
    if chain["lines"]:
        st.dataframe(pl.DataFrame(chain["lines"]), hide_index=True)
