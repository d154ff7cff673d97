"""Record: find a record, read it as a document with what holds it, and act on it (assign, resolve, exclude, retry)."""

from datetime import datetime
from decimal import Decimal

import polars as pl
import streamlit as st

from pipelines.catalogue import catalogue
from pipelines.exceptions import RESOLUTION_CODES
from pipelines.identity import FINANCE_DIMENSIONS, roles_for
from ui.actions import caller_for, commands, run_action, show_result
from ui.charts import OUTCOME_TITLES, money, plain
from ui.data import find_records, get_settings, get_store, identity_of, page_now, people, qbo_link, record_chain
from ui.render import RECORD_PAGE, day, entity_name, escalation_words

STATES = {
    "synced": ("In QuickBooks", "blue"),
    "ready": ("Ready: goes in the next sync run", "gray"),
    "queued": ("Queued for the running sync", "gray"),
    "retry_scheduled": ("QuickBooks did not take it yet: retried automatically", "orange"),
    "ambiguous": ("Sent, no answer: looked up before anything is sent again", "orange"),
    "needs_fix": ("Refused by QuickBooks: needs a fix", "orange"),
    "blocked": ("Held back: nothing sent", "orange"),
    "not_ready": ("Not ready: waits on AWRA", "orange"),
    "excluded": ("Excluded from sync by a person", "gray"),
}
HEADER_FIELDS = {
    "txn_date": "Date",
    "due_date": "Due",
    "currency": "Currency",
    "approval_status": "Approval",
    "posting_status": "Posting",
    "owner": "Owner in AWRA",
    "payment_method": "Payment method",
    "status": "Status",
    "name": "Name",
}

settings = get_settings()
store = get_store(str(settings.db_path))
realm = st.session_state.get("realm", settings.realm_id)
identity = identity_of(st.session_state.get("actor"), settings)
now = page_now()
titles = dict(catalogue().select("reason", "title").iter_rows())

st.title("Record")
key = st.query_params.get("key", "")
text = st.text_input(
    "Find a record: document number, vendor or customer name, or AWRA id",
    value="" if key else st.session_state.get("record_find", ""),
    placeholder="INV-001384, 101384, Northgate, bill:BILL-000123",
    key="record_find",
)
if text and text.strip() != key:
    found = find_records(store, realm, text)
    exact = found.filter(pl.col("key").str.to_lowercase() == text.strip().lower())
    if exact.height == 1:
        key = exact["key"][0]
    elif found.is_empty():
        st.warning("No record matches. Try part of a document number, a party's name or an AWRA id.")
    else:
        st.caption(f"{found.height:,} record(s) match{' (the first 25)' if found.height == 25 else ''}:")
        for row in found.iter_rows(named=True):
            cols = st.columns([1.6, 2.6, 1.1, 1.1, 2], vertical_alignment="center")
            with cols[0]:
                st.page_link(
                    RECORD_PAGE,
                    label=row["number"] or row["record_id"],
                    query_params={"key": row["key"]},
                    icon=":material/receipt_long:",
                )
            cols[1].markdown(f"{entity_name(row['entity'])} · {plain(row['party'] or '—')}")
            cols[2].markdown(day(row["txn_date"]))
            cols[3].markdown(money(row["amount"]) if row["amount"] is not None else "—")
            cols[4].markdown(STATES.get(row["state"], (row["state"], ""))[0])
        st.stop()
if not key:
    st.info("Type a document number (INV-001384 or 101384), a vendor or customer name, or an AWRA id.")
    st.stop()
chain = record_chain(store, realm, key)
if chain is None:
    # The key is not echoed: it may come from a link (?key=...), and a warning renders Markdown, not text.
    st.warning("No record with this key in this company. Search above by document number, party or AWRA id.")
    st.stop()

# -- the record in one line, and what holds it ----------------------------------------------------------------
source = chain["source"] or {}
amount = source.get("total") or source.get("amount")
if not amount and chain["lines"] and chain["entity"] == "journal_entry":
    amount = sum(Decimal(str(line["amount"])) for line in chain["lines"] if line.get("posting_type") == "debit")
party = chain.get("party")
label, tone = STATES.get(chain["state"], (chain["state"], "gray"))
st.subheader(
    f"{entity_name(chain['entity']).capitalize()} {chain['number'] or chain['record_id']}"
    + (f" — {party['name'] or party['record_id']}" if party and party["entity"] != chain["entity"] else "")
)
st.badge(label, color=tone)
facts = [f"AWRA id {chain['record_id']}", f"version {chain['version']}"]
if amount is not None:
    facts.insert(0, money(amount) if chain["entity"] not in ("vendor", "customer") else "")
if source.get("txn_date"):
    facts.insert(1, f"dated {source['txn_date']}")
st.caption(" · ".join(f for f in facts if f))
ref = chain["external_ref"]
if ref:
    st.link_button(
        f"Open in QuickBooks ({ref['qbo_entity']} {ref['qbo_id']})",
        qbo_link(settings, realm, ref["qbo_entity"], ref["qbo_id"]),
    )


def moment(value: object) -> datetime | None:
    """A stored time (the chain's text) as a moment."""
    if not value:
        return None
    return datetime.fromisoformat(str(value))


items = [{**e, **{k: moment(e.get(k)) for k in ("escalated_at", "due_by", "opened_at")}} for e in chain["exceptions"]]
for item in items:
    item["overdue"] = bool(item["due_by"] and item["due_by"] < now)
if items:
    lead = items[0]
    waits = next((i for i in items if i["reason"] == "source_data.dependency_not_ready"), None)
    st.error(
        f"**Why it is held: {plain(lead['title'])}.** {plain(lead['detail'])}  \n"
        f"**Next step:** {plain(lead['fix'])}  \n"
        f"Owner **{plain(lead['owner'] or lead['owner_role'])}** · who decides: {plain(lead['decides'])} · "
        f"{escalation_words(lead, now)}"
    )
    if waits and party and waits["detail"] and party["record_id"] in str(waits["detail"]):
        st.page_link(
            RECORD_PAGE,
            label=f"Open the {party['entity']} it waits on ({party['name'] or party['record_id']})",
            query_params={"key": party["key"]},
            icon=":material/arrow_upward:",
        )
    elif waits and source.get("invoice_id"):
        st.page_link(
            RECORD_PAGE,
            label=f"Open the invoice it waits on ({source['invoice_id']})",
            query_params={"key": f"invoice:{source['invoice_id']}"},
            icon=":material/arrow_upward:",
        )
    elif waits and source.get("bill_id"):
        st.page_link(
            RECORD_PAGE,
            label=f"Open the bill it waits on ({source['bill_id']})",
            query_params={"key": f"bill:{source['bill_id']}"},
            icon=":material/arrow_upward:",
        )
    if len(items) > 1:
        st.caption("Also open: " + "; ".join(f"{plain(i['title'])} ({plain(i['detail'])})" for i in items[1:]))
elif chain["state"] == "synced":
    st.success("In QuickBooks, nothing open.")

# -- act on it ----------------------------------------------------------------------------------------------------
st.subheader("Act on this record")
caller = caller_for(identity)
finding = next(iter(chain["findings"]), None)
if not identity.can("resolve"):
    st.caption(
        f"Read-only: assigning, resolving and excluding need the finance or admin role, retrying the admin role; "
        f"you are signed in as a {identity.role}."
    )
else:
    act = st.columns(2)
    may = [i for i in items if identity.role == "admin" or i["dimension"] in FINANCE_DIMENSIONS]
    labels = {i["exception_id"]: f"{i['title']} (#{i['exception_id']})" for i in items}
    with act[0], st.container(border=True):
        st.markdown("**Assign**")
        if not items:
            st.caption("Nothing is open on this record, so there is nothing to assign.")
        elif not may:
            st.caption(f"Its open items are {items[0]['dimension'].replace('_', ' ')} problems: an admin acts on them.")
        else:
            target = st.selectbox(
                "Item", [i["exception_id"] for i in may], format_func=labels.get, key="rec_assign_item"
            )
            dimension = next(i["dimension"] for i in may if i["exception_id"] == target)
            allowed = roles_for("resolve", dimension)
            choices = [e for e, r in people(settings).items() if r in allowed]
            person = st.selectbox(
                "To", choices, key="rec_assign_to", help=f"people with the {' or '.join(allowed)} role"
            )
            if st.button("Assign", key="rec_assign", disabled=not choices):
                show_result(run_action("Assign", lambda: commands().assign(caller, [target], to=person)))
    with act[1], st.container(border=True):
        st.markdown("**Resolve**")
        closable = [i for i in may if i["dimension"] != "authorization"]
        if not closable:
            st.caption(
                "Nothing to resolve by hand here: a connection problem closes once an admin reconnects, and items of "
                "other kinds need the role that acts on them."
                if items
                else "Nothing is open on this record."
            )
        else:
            target = st.selectbox(
                "Item", [i["exception_id"] for i in closable], format_func=labels.get, key="rec_resolve_item"
            )
            dimension = next(i["dimension"] for i in closable if i["exception_id"] == target)
            codes = [c for c in RESOLUTION_CODES if c not in ("excluded", "marked_synced")]
            codes = [c for c in codes if c != "create_new" or dimension == "duplicate_risk"]
            code = st.selectbox("Resolution", codes, format_func=RESOLUTION_CODES.get, key="rec_code")
            reason = st.text_input("Reason (required, kept in the audit log)", key="rec_reason")
            if st.button(
                "Resolve",
                key="rec_resolve",
                disabled=not reason.strip(),
                help=None if reason.strip() else "Give the reason first",
            ):
                show_result(
                    run_action("Resolve", lambda: commands().resolve(caller, [target], code=code, reason=reason))
                )
    act = st.columns(2)
    with act[0], st.container(border=True):
        st.markdown("**Exclude from sync** — never sent; its open items close.")
        refused = {
            "synced": "It is already in QuickBooks; excluding would not take it out.",
            "excluded": "It is already excluded.",
        }.get(chain["state"])
        if not refused and any(i["dimension"] not in FINANCE_DIMENSIONS for i in items) and identity.role != "admin":
            refused = "One of its open items is a mapping, connection or transport problem: an admin excludes it."
        if refused:
            st.caption(refused)
        else:
            why = st.text_input("Why (required)", key="rec_exclude_reason")
            if st.button("Exclude", key="rec_exclude", disabled=not why.strip()):
                show_result(run_action("Exclude", lambda: commands().exclude(caller, [key], reason=why)))
    with act[1], st.container(border=True):
        st.markdown("**Retry** — re-check and send it again if its cause changed.")
        refused = {
            "synced": "It is already in QuickBooks: nothing to retry.",
            "excluded": "It is excluded from sync: nothing to retry.",
        }.get(chain["state"])
        if not refused and finding:
            who = next((i["decides"] for i in items if i["reason"] == finding["reason"]), "its owner")
            refused = (
                f"A retry would be refused: it is still held by “{titles.get(finding['reason'], 'a check')}” "
                f"({finding['detail']}). That is fixed where it lives ({who}), not by sending again."
            )
        if not identity.can("retry"):
            refused = refused or f"Retry needs the admin role; you are signed in as a {identity.role}."
        if refused:
            st.caption(refused)
        else:
            if chain["state"] in ("needs_fix", "blocked"):
                st.caption(
                    "QuickBooks refused it: unless a mapping or a QuickBooks object changed since, the retry is "
                    "refused; an override sends it anyway, with a reason."
                )
            override = st.text_input("Override reason (only to send although nothing changed)", key="retry_override")
            if st.button("Retry now", type="primary", key="retry_go"):
                answer = run_action("Retry", lambda: commands().retry(caller, [key], override_reason=override or None))
                (item,) = answer.items or [None]
                if item is not None:
                    (st.success if item.done else st.error if item.status == "failed" else st.warning)(
                        f"{item.item}: {item.message}"
                    )
                else:
                    show_result(answer)

# -- the document ------------------------------------------------------------------------------------------------
st.subheader("The document in AWRA")
if not source:
    st.caption("AWRA no longer sends this record.")
else:
    fields = [(name, source[f]) for f, name in HEADER_FIELDS.items() if source.get(f) not in (None, "")]
    cols = st.columns(4)
    for i, (name, value) in enumerate(fields):
        cols[i % 4].markdown(f"**{name}**  \n{plain(value)}")
    if chain["lines"]:
        lines = pl.DataFrame(chain["lines"]).drop(
            [c for c in ("invoice_id", "bill_id", "po_id", "je_id") if c in pl.DataFrame(chain["lines"]).columns]
        )
        names = {
            "line_no": "Line",
            "item_sku": "Item",
            "account_code": "Account",
            "description": "Description",
            "qty": "Quantity",
            "unit_price": "Unit price",
            "amount": "Amount",
            "tax_code": "Tax code",
            "category": "Category",
            "posting_type": "Debit or credit",
        }
        shown = (
            lines.select([c for c in names if c in lines.columns])
            .with_columns(
                pl.col(c).cast(pl.String).fill_null("—")
                for c in ("item_sku", "account_code", "tax_code", "category")
                if c in lines.columns
            )
            .rename({c: n for c, n in names.items() if c in lines.columns})
        )
        money_cols = [n for n in ("Unit price", "Amount") if n in shown.columns]
        st.dataframe(
            shown.with_columns(pl.col(c).cast(pl.Float64) for c in [*money_cols, "Quantity"] if c in shown.columns),
            hide_index=True,
            column_config={c: st.column_config.NumberColumn(c, format="dollar") for c in money_cols},
        )
        total = source.get("total") or amount
        summed = sum(
            Decimal(str(line["amount"] or 0))
            for line in chain["lines"]
            if chain["entity"] != "journal_entry" or line.get("posting_type") == "debit"
        )
        st.markdown(
            f"**Total {money(total)}** · lines add up to {money(summed)}"
            + ("" if total is None or Decimal(str(total)) == summed else " (they differ)")
        )
    extra = {k: v for k, v in source.items() if k not in HEADER_FIELDS and v not in (None, "")}
    with st.expander("Every field AWRA sent"):
        st.dataframe(pl.DataFrame({"Field": list(extra), "Value": [str(v) for v in extra.values()]}), hide_index=True)

# -- checks, possible duplicates, attempts -----------------------------------------------------------------------
if chain["findings"]:
    st.subheader("What the last check found")
    st.dataframe(
        pl.DataFrame(chain["findings"]).select(
            pl.col("reason").replace_strict(titles, default="Not yet described").alias("Problem"),
            pl.col("detail").fill_null("—").alias("Detail"),
            pl.coalesce(
                pl.format("{} {}", pl.col("mapping_kind").str.replace_all("_", " "), pl.col("mapping_value")),
                pl.lit("—"),
            ).alias("Mapping"),
        ),
        hide_index=True,
    )
if chain["duplicate_candidates"]:
    st.subheader("May already be in QuickBooks")
    st.dataframe(
        pl.DataFrame(chain["duplicate_candidates"]).select(
            pl.col("qbo_entity").alias("QuickBooks type"),
            pl.col("qbo_id").alias("QuickBooks Id"),
            pl.col("rule").str.replace_all("_", " ").alias("Matched on"),
            pl.col("score").alias("Score"),
            pl.col("reasons").alias("Why"),
        ),
        hide_index=True,
    )
    if identity.can("link_duplicate"):
        ids = [c["qbo_id"] for c in chain["duplicate_candidates"]]
        pick = st.selectbox("QuickBooks object", ids, key="dup_pick")
        why = st.text_input("Reason (audited)", key="dup_reason")
        left, right = st.columns(2)
        if left.button("Link to it", key="dup_link", disabled=not why):
            show_result(run_action("Link", lambda: commands().link(caller, key, pick, reason=why)))
        if right.button("Create new anyway", key="dup_new", disabled=not why):
            show_result(run_action("Create new", lambda: commands().create_new(caller, key, reason=why)))

st.subheader(f"Attempts ({len(chain['attempts'])})")
if chain["attempts"]:
    attempts = pl.DataFrame(chain["attempts"])
    st.dataframe(
        attempts.select(
            pl.col("attempt_no").alias("#"),
            pl.col("started_at").str.slice(0, 16).alias("When (UTC)"),
            pl.col("operation").alias("Operation"),
            pl.col("outcome").replace_strict(OUTCOME_TITLES, default=pl.col("outcome")).alias("Outcome"),
            pl.col("http_status").cast(pl.String).fill_null("—").alias("HTTP"),
            pl.col("qbo_code").cast(pl.String).fill_null("—").alias("QuickBooks code"),
            pl.coalesce("message", pl.col("reason").replace_strict(titles, default=None), pl.lit("—")).alias("Message"),
            pl.col("intuit_tid").fill_null("—").alias("intuit_tid"),
            pl.col("external_id").cast(pl.String).fill_null("—").alias("QuickBooks Id"),
        ),
        hide_index=True,
    )
    st.caption(f"Automatic retries used: {chain['retry_count']}.")
else:
    st.caption("Nothing has been sent for this record.")
