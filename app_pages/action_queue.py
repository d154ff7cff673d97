"""Action queue: every open exception with its owner, due-by, money at stake and the fix; people act on them here."""

import polars as pl
import streamlit as st

from pipelines.exceptions import RESOLUTION_CODES
from pipelines.identity import FINANCE_DIMENSIONS
from pipelines.views.queue import filter_queue, owner_choices, queue_summary
from ui.actions import caller_for, commands, run_bulk, show_results_table
from ui.data import action_queue, csv_export, get_settings, get_store, identity_of, people
from ui.firm import queue_company

COLUMNS = [
    "priority", "link", "key", "reason", "fix", "detail", "at_stake", "due_date", "owned_by", "status", "escalated",
    "escalation_reason", "age_days", "due_by", "dimension", "occurrences", "exception_id",
]  # fmt: skip

settings = get_settings()
store = get_store(str(settings.db_path))
realm = queue_company(st.session_state.get("realm", settings.realm_id))  # ?company= from the firm table
identity = identity_of(st.session_state.get("actor"), settings)
queue = action_queue(store, realm)
last = st.session_state.get("queue_last")

st.title("Action queue")
if last is not None:
    show_results_table(last["label"], last["results"])
    if st.button("Dismiss these results", key="q_dismiss"):
        del st.session_state["queue_last"]
        st.rerun()
# Drill links from the Health and Trends charts arrive as ?dimension=...&owner=...&entity=...&reason=...
for param, key in (("dimension", "q_dim"), ("owner", "q_owner"), ("entity", "q_entity")):
    if param in st.query_params and key not in st.session_state:
        st.session_state[key] = [st.query_params[param]]
if "reason" in st.query_params:
    queue = queue.filter(pl.col("reason") == st.query_params["reason"])
if queue.is_empty():
    st.success(
        "Nothing waits on anyone: no open exception in this company. New ones appear after the next check or sync "
        "(`synchealth check`, `synchealth sync`)."
    )
    st.stop()

summary = queue_summary(queue)
cols = st.columns(4)
cols[0].metric("Open items", f"{summary['items']:,}", help=f"on {summary['records']:,} records")
cols[1].metric(
    "Dollars held back",
    f"${summary['dollars']:,.0f}",
    help=f"${summary['dollars']:,.2f}: each record's own amount, counted once",
)
cols[2].metric("Overdue", f"{summary['overdue']:,}", help="past the due-by its routing rule set")
cols[3].metric("Escalated", f"{summary['escalated']:,}", help="overdue, or out of automatic retries")

with st.container(border=True):
    top = st.columns(3)
    dimensions = top[0].multiselect("Dimension", sorted(queue["dimension"].unique().to_list()), key="q_dim")
    owners = top[1].multiselect("Owner (person or role)", owner_choices(queue), key="q_owner")
    statuses = top[2].multiselect("Status", ["open", "assigned"], key="q_status")
    bottom = st.columns(4)
    entities = bottom[0].multiselect("Entity", sorted(queue["entity"].unique().to_list()), key="q_entity")
    min_age = bottom[1].number_input("Open at least (days)", min_value=0, step=1, key="q_age")
    min_amount = bottom[2].number_input("At stake at least ($)", min_value=0.0, step=1000.0, key="q_amount")
    key_text = bottom[3].text_input("Record key contains", key="q_key")
shown = filter_queue(
    queue,
    dimensions=dimensions,
    owners=owners,
    statuses=statuses,
    entities=entities,
    min_age_days=int(min_age),
    min_amount=min_amount,
    key_contains=key_text,
)
# A selection is row positions: it holds only for the rows it was made on (a filter or an action changes them).
ids = tuple(shown["exception_id"].to_list())
if st.session_state.get("queue_shown") != ids:
    st.session_state.pop("queue_table", None)
    st.session_state["queue_shown"] = ids

st.caption(
    f"{shown.height:,} of {queue.height:,} items, by priority: documents due within a week (or past due) first, "
    "then the money at stake, then the document's own due date."
)
event = st.dataframe(
    shown.select(COLUMNS),
    key="queue_table",
    on_select="rerun",
    selection_mode="multi-row",
    hide_index=True,
    column_config={
        "priority": st.column_config.NumberColumn("#", width="small"),
        "link": st.column_config.LinkColumn("Record page", display_text="open"),
        "key": st.column_config.TextColumn("Record"),
        "reason": st.column_config.TextColumn("Reason"),
        "status": st.column_config.TextColumn("Status"),
        "escalated": st.column_config.CheckboxColumn("Escalated"),
        "dimension": st.column_config.TextColumn("Dimension"),
        "occurrences": st.column_config.NumberColumn("Seen (times)"),
        "fix": st.column_config.TextColumn("Fix", width="large"),
        "detail": st.column_config.TextColumn("What is wrong", width="large"),
        "at_stake": st.column_config.NumberColumn("At stake", format="dollar"),
        "due_date": st.column_config.DateColumn("Document due"),
        "owned_by": st.column_config.TextColumn("Owner"),
        "escalation_reason": st.column_config.TextColumn("Why escalated"),
        "age_days": st.column_config.NumberColumn("Age (days)"),
        "due_by": st.column_config.DatetimeColumn("Due by", format="YYYY-MM-DD HH:mm"),
        "exception_id": st.column_config.NumberColumn("Exception", format="%d"),
    },
)
st.download_button(
    "Download these items (CSV)",
    csv_export(shown.drop("link")),
    file_name=f"action-queue-{realm}.csv",
    mime="text/csv",
    key="q_csv",
)

select_all = st.checkbox(f"Select all {shown.height:,} items shown", key="q_all")
picked = shown[list(range(shown.height)) if select_all else list(event.selection.rows)]
picked_ids = picked["exception_id"].to_list()
picked_keys = list(dict.fromkeys(picked["key"].to_list()))

st.subheader("Act on the selected items")
if not identity.can("resolve"):
    st.caption(
        f"Read-only: assigning, resolving and excluding need the finance or admin role, retrying needs the admin "
        f"role; you are signed in as a {identity.role}."
    )
    st.stop()
st.caption(f"{len(picked_ids):,} item(s) selected on {len(picked_keys):,} record(s). Every action is audited.")
admin_only = picked.filter(~pl.col("dimension").is_in(FINANCE_DIMENSIONS)).height
if admin_only and identity.role != "admin":
    st.info(
        f"{admin_only:,} selected item(s) are mapping, authorization or transport exceptions: acting on them needs "
        "the admin role, so they will be refused and listed as such."
    )


def bulk(label: str, items: list, act) -> None:
    """Run a command over the items in chunks, then show every item's answer after a rerun."""
    st.session_state["queue_last"] = {"label": label, "results": run_bulk(label, items, act)}
    st.rerun()


caller = caller_for(identity)
left, right = st.columns(2)
with left, st.container(border=True):
    st.markdown("**Assign**")
    choices = [email for email, role in people(settings).items() if role != "viewer"]  # a viewer cannot act
    person = st.selectbox("To", choices, key="q_assign_to")
    note = st.text_input("Note (optional)", key="q_assign_note")
    if st.button("Assign selected", key="q_assign", disabled=not picked_ids):
        bulk(
            f"Assign to {person}",
            picked_ids,
            lambda chunk: commands().assign(caller, chunk, to=person, note=note or None),
        )
with right, st.container(border=True):
    st.markdown("**Resolve**")
    codes = [c for c in RESOLUTION_CODES if c != "excluded"]
    code = st.selectbox("Resolution", codes, format_func=RESOLUTION_CODES.get, key="q_code")
    qbo_id = None
    if code == "marked_synced":
        qbo_id = st.text_input("QuickBooks Id the record already has (checked in QuickBooks)", key="q_qbo_id")
        if len(picked_keys) > 1:
            st.caption("Marking as synced takes one record at a time: it links that record to one QuickBooks Id.")
    reason = st.text_input("Reason (required)", key="q_reason")
    one_record = code != "marked_synced" or (len(picked_keys) == 1 and bool(qbo_id))
    blocked = not picked_ids or not reason.strip() or not one_record
    if st.button("Resolve selected", key="q_resolve", disabled=blocked):
        bulk(
            f"Resolve as {RESOLUTION_CODES[code]}",
            picked_ids,
            lambda chunk: commands().resolve(caller, chunk, code=code, reason=reason, qbo_id=qbo_id or None),
        )

with st.container(border=True):
    st.markdown("**Exclude from sync** — the records are never sent; their open items close.")
    why = st.text_input("Why (required)", key="q_exclude_reason")
    if st.button("Exclude selected records", key="q_exclude", disabled=not picked_keys or not why.strip()):
        bulk("Exclude from sync", picked_keys, lambda chunk: commands().exclude(caller, chunk, reason=why))

with st.container(border=True):
    st.markdown("**Retry** — re-check the selected records and resend the ones whose cause changed.")
    if identity.can("retry"):
        override = st.text_input("Override reason (only to resend although nothing changed)", key="q_override")
        if st.button(f"Retry {len(picked_keys):,} record(s)", key="q_retry", disabled=not picked_keys):
            bulk("Retry", picked_keys, lambda chunk: commands().retry(caller, chunk, override_reason=override or None))
    else:
        st.caption(f"Retry needs the admin role; you are signed in as a {identity.role}.")
