"""Action queue: every open item of the period with its money at stake, owner and due-by first; people act on them."""

from datetime import timedelta

import polars as pl
import streamlit as st

from pipelines.catalogue import DIMENSION_GUIDE, catalogue
from pipelines.exceptions import RESOLUTION_CODES
from pipelines.identity import FINANCE_DIMENSIONS
from pipelines.views.period import ALL, month_name
from pipelines.views.queue import filter_queue, owner_choices, queue_summary
from ui.actions import caller_for, commands, run_bulk, show_results_table
from ui.charts import money, plain
from ui.data import (
    action_queue,
    closing_period,
    company_name,
    csv_export,
    get_settings,
    get_store,
    identity_of,
    page_now,
    page_period,
    people,
    with_documents,
)
from ui.firm import queue_company
from ui.render import RECORD_PAGE, entity_name, escalation_words, scope_words

KINDS = {d: g.title for d, g in DIMENSION_GUIDE.items()}
# Drill links (Health, Trends, a shared address) arrive as ?reason=...&owner=...&entity=...&dimension=... with ?period=
# and ?company= (which the sidebar reads); each becomes the filter it names, shown above the table like any other.
DRILLS = {"reason": "q_cause", "cause": "q_cause", "dimension": "q_kind", "kind": "q_kind", "owner": "q_owner",
          "entity": "q_entity"}  # fmt: skip
FILTER_KEYS = ("q_cause", "q_kind", "q_owner", "q_status", "q_entity", "q_age", "q_amount", "q_key", "q_escalated")
settings = get_settings()
store = get_store(str(settings.db_path))
realm = queue_company(st.session_state.get("realm", settings.realm_id))  # ?company= from the firm table
identity = identity_of(st.session_state.get("actor"), settings)
period = page_period(store, realm)
queue = with_documents(store, realm, action_queue(store, realm, period))
last = st.session_state.get("queue_last")
now = page_now()

st.title("Action queue")
st.caption(f"{scope_words(period, closing_period(store, realm))} · change the period in the sidebar")
if last is not None:
    show_results_table(last["label"], last["results"])
    if st.button("Dismiss these results", key="q_dismiss"):
        del st.session_state["queue_last"]
        st.rerun()

drill = {k: st.query_params[k] for k in DRILLS if st.query_params.get(k)}
if drill != st.session_state.get("_q_drill"):  # a new drill: its filters replace the ones set
    st.session_state["_q_drill"] = drill
    if drill:
        for key in FILTER_KEYS:
            st.session_state.pop(key, None)
        for param, value in drill.items():
            st.session_state[DRILLS[param]] = [value.strip().lower() if param == "owner" else value]


def clear_filters() -> None:
    for key in FILTER_KEYS:
        st.session_state.pop(key, None)
    for param in DRILLS:
        st.query_params.pop(param, None)
    st.session_state["_q_drill"] = {}


def offered(choices: list[str], key: str) -> list[str]:
    """The choices of a filter, plus any value a drill link set that this period does not have (so the filter holds
    and shows, and matches nothing, rather than being dropped)."""
    return [*choices, *(v for v in st.session_state.get(key) or [] if v not in choices)]


if queue.is_empty():
    st.success(
        f"Nothing waits on anyone in {scope_words(period)}: no open item. New ones appear after the next check or "
        "sync (`synchealth check`, `synchealth sync`)."
    )
    st.stop()

titles = {**dict(catalogue().select("reason", "title").iter_rows()),
          **dict(zip(queue["cause_reason"], queue["cause"], strict=True))}  # fmt: skip
with st.container(border=True):
    top = st.columns([2.2, 1.6, 1.8])
    in_queue = sorted(set(queue["cause_reason"]), key=lambda r: titles.get(r, r))
    causes = top[0].multiselect(
        "Cause", offered(in_queue, "q_cause"), format_func=lambda r: titles.get(r, "unknown cause"), key="q_cause"
    )
    kinds = top[1].multiselect(
        "Kind of problem",
        offered([d for d in KINDS if d in set(queue["cause_dimension"])], "q_kind"),
        format_func=lambda d: KINDS.get(d, "unknown kind"),
        key="q_kind",
    )
    owners = top[2].multiselect("Owner", offered(owner_choices(queue), "q_owner"), key="q_owner")
    bottom = st.columns([1.3, 1.5, 1, 1, 1.2, 1.3])
    statuses = bottom[0].multiselect("Status", ["open", "assigned"], key="q_status")
    entities = bottom[1].multiselect(
        "Record type", offered(sorted(queue["entity"].unique().to_list()), "q_entity"), format_func=entity_name,
        key="q_entity",
    )  # fmt: skip
    min_age = bottom[2].number_input("Open ≥ days", min_value=0, step=1, key="q_age")
    min_amount = bottom[3].number_input("At stake ≥ $", min_value=0, step=1000, key="q_amount")
    key_text = bottom[4].text_input("Record contains", key="q_key")
    escalated_only = bottom[5].toggle("Escalated only", key="q_escalated")
shown = filter_queue(
    queue,
    causes=causes,
    cause_dimensions=kinds,
    owners=owners,
    statuses=statuses,
    entities=entities,
    min_age_days=int(min_age),
    min_amount=float(min_amount),
    key_contains=key_text,
    escalated=True if escalated_only else None,
)
active = [
    *(f"cause: {titles.get(c, c)}" for c in causes),
    *(f"kind: {KINDS.get(k, k)}" for k in kinds),
    *(f"owner: {o}" for o in owners),
    *(f"status: {s}" for s in statuses),
    *(f"record type: {entity_name(e)}" for e in entities),
    *([f"open at least {min_age} days"] if min_age else []),
    *([f"at stake at least {money(min_amount)}"] if min_amount else []),
    *([f"record contains “{key_text}”"] if key_text else []),
    *(["escalated only"] if escalated_only else []),
]
summary = queue_summary(shown, since=now - timedelta(days=7))
cols = st.columns(4)
cols[0].metric("Dollars blocked", money(summary["dollars"], compact=True),
               help=f"{money(summary['dollars'])}: each record once, and once per document chain (a payment blocked "
               "with its invoice is counted under the invoice), as on the Health page")  # fmt: skip
cols[1].metric("Records blocked", f"{summary['records']:,}", help=f"{summary['items']:,} open items on them")
cols[2].metric("Overdue", f"{summary['overdue']:,}", help="past the due-by its routing rule set when it opened")
cols[3].metric("Escalated", f"{summary['escalated']:,}", f"{summary['escalated_since']:,} in the last 7 days",
               delta_color="off",
               delta_arrow="off", help="overdue, or out of automatic retries; each dated when it happened")  # fmt: skip

where = " · ".join(active) if active else "no filter"
left, right = st.columns([5, 1], vertical_alignment="center")
left.markdown(
    f"**{shown.height:,} of {queue.height:,} items** of {plain(company_name(store, realm))} in "
    f"{month_name(period) if period != ALL else 'all periods'} — filters: {plain(where)}"
)
if active:
    right.button("Clear filters", on_click=clear_filters, key="q_clear", type="tertiary")
st.caption(
    "By priority (the Health page's Top ten is the head of this list): documents due within a week (or past due) "
    "first, then the money at stake, then the document's own due date."
)

# A selection is row positions: it holds only for the rows it was made on (a filter or an action changes them).
ids = tuple(shown["exception_id"].to_list())
if st.session_state.get("queue_shown") != ids:
    st.session_state.pop("queue_table", None)
    st.session_state["queue_shown"] = ids

table = shown.with_columns(
    pl.struct("escalated", "escalation_reason", "escalated_at", "due_by", "overdue")
    .map_elements(lambda r: escalation_words(r, now), return_dtype=pl.String)
    .alias("when"),
    pl.col("entity").map_elements(entity_name, return_dtype=pl.String).alias("type"),
    pl.coalesce("owner", "owner_role").alias("owner_shown"),
    pl.col("detail").fill_null("—"),
    pl.col("at_stake").cast(pl.Float64),
    pl.col("due_date").cast(pl.String).fill_null("—"),
    # Its own problem in words; where another record or another of its problems holds it first, that too.
    pl.when(pl.col("waits_on").is_not_null())
    .then(pl.format("{} (waits on {})", pl.col("cause"), pl.col("waits_on")))
    .when(pl.col("cause_reason") != pl.col("reason"))
    .then(pl.format("{} (held first by: {})", pl.col("title"), pl.col("cause")))
    .otherwise(pl.col("cause"))
    .alias("why"),
)
# At stake, Owner and Due-by first: at 1280 px they are what shows without scrolling sideways.
columns = ["at_stake", "owner_shown", "when", "document", "why", "fix", "type", "detail", "record_id", "due_date",
           "status", "age_days", "priority"]  # fmt: skip
event = st.dataframe(
    table.select(columns),
    key="queue_table",
    on_select="rerun",
    selection_mode="multi-row",
    hide_index=True,
    column_config={
        "priority": st.column_config.NumberColumn("Rank", width="small", help="place in the queue's order"),
        "at_stake": st.column_config.NumberColumn("At stake", format="dollar", width=95),
        "owner_shown": st.column_config.TextColumn("Owner", width=160),
        "when": st.column_config.TextColumn("Due-by", width=195, help="due-by, or when and why it escalated"),
        "document": st.column_config.TextColumn("Document", width=175, help="its number and vendor or customer"),
        "record_id": st.column_config.TextColumn("AWRA id", width=100),
        "type": st.column_config.TextColumn("Type", width="small"),
        "why": st.column_config.TextColumn("Why", width="medium"),
        "detail": st.column_config.TextColumn("What is wrong", width="large"),
        "fix": st.column_config.TextColumn("Next step", width="large"),
        "due_date": st.column_config.TextColumn("Document due", width="small"),
        "status": st.column_config.TextColumn("Status", width="small"),
        "age_days": st.column_config.NumberColumn("Age (days)", width="small"),
    },
)
st.download_button(
    "Download these items (CSV)",
    csv_export(shown.drop("link")),
    file_name=f"action-queue-{period}.csv",
    mime="text/csv",
    key="q_csv",
)

select_all = st.checkbox(f"Select all {shown.height:,} items shown", key="q_all")
rows = list(range(shown.height)) if select_all else list(event.selection.rows)
picked = shown[rows]
full_text = {r["key"]: r for r in table[rows[:200]].select("key", "document", "why", "fix").iter_rows(named=True)}
picked_ids = picked["exception_id"].to_list()
picked_keys = list(dict.fromkeys(picked["key"].to_list()))
records = [k for k in picked_keys if not k.startswith(("connection:", "snapshot:"))]
if records:  # page links: the record opens in this tab, as the person signed in here (a grid's links open a new one)
    opens = st.columns(3)
    for col, record in zip(opens, records[:3], strict=False):
        with col:
            st.page_link(RECORD_PAGE, label=f"Open {record}", query_params={"key": record},
                         icon=":material/receipt_long:", help="its whole chain, and the actions on it")  # fmt: skip
            if item := full_text.get(record):  # the grid cuts long cells: the selected item's words in full
                st.caption(plain(f"{item['document']}: {item['why'].rstrip('.')}. Next step: {item['fix']}"))
    if len(records) > 3:
        st.caption(f"and {len(records) - 3:,} more selected record(s): select one to open it")
elif not picked_ids:
    st.caption("Select an item to open its record here, or several to act on them together.")

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
        f"{admin_only:,} selected item(s) are mapping, connection or transport problems: acting on them needs "
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
    if st.button("Exclude selected records", key="q_exclude", disabled=not records or not why.strip()):
        bulk("Exclude from sync", records, lambda chunk: commands().exclude(caller, chunk, reason=why))

with st.container(border=True):
    st.markdown("**Retry** — re-check the selected records and resend the ones whose cause changed.")
    if identity.can("retry"):
        override = st.text_input("Override reason (only to resend although nothing changed)", key="q_override")
        if st.button(f"Retry {len(records):,} record(s)", key="q_retry", disabled=not records):
            bulk("Retry", records, lambda chunk: commands().retry(caller, chunk, override_reason=override or None))
    else:
        st.caption(f"Retry needs the admin role; you are signed in as a {identity.role}.")
