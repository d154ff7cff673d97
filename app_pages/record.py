"""Record: find a record, read it as a document with what holds it, and act on it (assign, resolve, exclude, retry).

Every action goes through the commands (the role is checked there, and audited there); an action the engine would
refuse is shown disabled, with the reason and who can act instead, before anyone clicks it.
"""

from datetime import datetime
from decimal import Decimal, InvalidOperation

import polars as pl
import streamlit as st

from pipelines.catalogue import catalogue
from pipelines.exceptions import RESOLUTION_CODES
from pipelines.identity import FINANCE_DIMENSIONS, roles_for
from ui.actions import caller_for, commands, run_action, show_result
from ui.charts import DIMENSION_TITLES, OUTCOME_TITLES, plain
from ui.data import find_records, get_settings, get_store, identity_of, page_now, people, qbo_link, record_chain
from ui.render import RECORD_PAGE, day, entity_name, escalation_words

# state -> (the state in two words, the sentence that explains it, the badge's colour)
STATES = {
    "synced": ("synced", "In QuickBooks.", "blue"),
    "ready": ("ready", "Ready: it goes in the next sync run.", "gray"),
    "queued": ("queued", "Queued for the sync that is running.", "gray"),
    "retry_scheduled": ("retry scheduled", "QuickBooks did not take it yet: it is retried automatically.", "orange"),
    "ambiguous": ("outcome unknown", "Sent, no answer: it is looked up before anything is sent again.", "orange"),
    "needs_fix": ("needs a fix", "Refused by QuickBooks: the cause must be fixed, then it is retried.", "red"),
    "blocked": ("blocked", "Held back before sending: nothing was sent.", "orange"),
    "not_ready": ("not ready", "Not ready: it waits on AWRA.", "orange"),
    "excluded": ("excluded", "Excluded from sync by a person.", "gray"),
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
OPERATIONS = {"create": "Create", "update": "Update", "lookup": "Look up", "read": "Look up", "delete": "Delete"}
RECORD_FIND = "record_find"

settings = get_settings()
store = get_store(str(settings.db_path))
realm = st.session_state.get("realm", settings.realm_id)
identity = identity_of(st.session_state.get("actor"), settings)
now = page_now()
guide = {r["reason"]: r for r in catalogue().select("reason", "title", "decides", "fix").iter_rows(named=True)}
titles = {reason: row["title"] for reason, row in guide.items()}


def cents(value: object) -> str:
    """A document's money to the cent ($1,234.50); a dash when there is none."""
    if value is None or value == "":
        return "—"
    try:
        amount = Decimal(str(value))
    except InvalidOperation:
        return "—"
    return f"{'-' if amount < 0 else ''}${abs(amount):,.2f}"


def moment(value: object) -> datetime | None:
    """A stored time (the chain's text) as a moment."""
    if not value:
        return None
    return datetime.fromisoformat(str(value))


def _new_search() -> None:
    st.session_state["_record_new_search"] = True


def remember(result: object, note: object = None) -> None:
    """Keep an action's answer (and an earlier step's failure, `note`) and draw the page again, so that everything
    on it shows the record after the action."""
    st.session_state["_record_answer"] = {"key": key, "result": result, "note": note}
    st.rerun()


def show_answer() -> None:
    """The last action's answer on this record, once, above everything it changed."""
    answer = st.session_state.pop("_record_answer", None)
    if not answer or answer["key"] != key:
        return
    if answer.get("note") is not None:
        show_result(answer["note"])
    result = answer["result"]
    (one,) = result.items if len(result.items) == 1 else [None]
    if one is None:
        show_result(result)
    elif one.done:
        st.success(f"{result.command.capitalize()} {one.item}: {one.message}")
    else:
        (st.error if one.status == "failed" else st.warning)(f"{result.command.capitalize()} {one.item}: {one.message}")


# -- find it ------------------------------------------------------------------------------------------------------
st.title("Record")
text = st.text_input(
    "Find a record: document number, vendor or customer name, or AWRA key",
    placeholder="INV-9, 101384, Northgate, bill:BILL-000123",
    key=RECORD_FIND,
    on_change=_new_search,
)
key = st.query_params.get("key", "")
if text.strip() and (st.session_state.pop("_record_new_search", False) or not key):
    found = find_records(store, realm, text)
    if found.height == 1:  # one match: it is the record (a document number usually is)
        key = str(found["key"][0])
        st.query_params["key"] = key
    else:
        st.query_params.pop("key", None)  # the list is what the page shows now, until one is picked
        if found.is_empty():
            st.warning("No record matches. Try part of a document number, a party's name or an AWRA id.")
            st.stop()
        st.caption(
            f"{found.height:,} records match{' (the first 25: add a word to narrow)' if found.height >= 25 else ''}:"
        )
        widths = [1.6, 2.6, 1.1, 1.1, 1.6]
        for col, name in zip(
            st.columns(widths), ["Document", "Type and party", "Date", "Amount", "State"], strict=True
        ):
            col.markdown(f"**{name}**")
        for row in found.iter_rows(named=True):
            cols = st.columns(widths, vertical_alignment="center")
            with cols[0]:
                st.page_link(
                    RECORD_PAGE,
                    label=row["number"] or row["record_id"],
                    query_params={"key": row["key"]},
                    icon=":material/receipt_long:",
                )
            cols[1].markdown(f"{entity_name(row['entity']).capitalize()} · {plain(row['party'] or '—')}")
            cols[2].markdown(day(row["txn_date"]))
            cols[3].markdown(cents(row["amount"]))
            cols[4].markdown(STATES.get(row["state"], (row["state"], "", ""))[0])
        st.stop()
if not key:
    st.info("Type a document number (INV-9 or 101384), a vendor or customer name, or an AWRA key (bill:BILL-000123).")
    st.stop()
chain = record_chain(store, realm, key)
if chain is None:
    # The key is not echoed: it may come from a link (?key=...), and a warning renders Markdown, not text.
    st.warning(
        "No record with this key in this company. Search above by document number, party or AWRA key "
        "(bill:BILL-000123)."
    )
    st.stop()

# -- the record in one line, and what holds it ----------------------------------------------------------------
source = chain["source"] or {}
amount = source.get("total") or source.get("amount")
if not amount and chain["lines"] and chain["entity"] == "journal_entry":
    amount = sum(Decimal(str(line["amount"])) for line in chain["lines"] if line.get("posting_type") == "debit")
party = chain.get("party")
short, sentence, tone = STATES.get(chain["state"], (chain["state"].replace("_", " "), "", "gray"))
items = [{**e, **{k: moment(e.get(k)) for k in ("escalated_at", "due_by", "opened_at")}} for e in chain["exceptions"]]
for item in items:
    item["overdue"] = bool(item["due_by"] and item["due_by"] < now)
lead = items[0] if items else None
st.subheader(
    f"{entity_name(chain['entity']).capitalize()} {chain['number'] or chain['record_id']}"
    + (f" — {party['name'] or party['record_id']}" if party and party["entity"] != chain["entity"] else "")
)
show_answer()
# The facts in a smaller type than a metric's default: a state in words and an owner's email fit at 1280 px.
st.html("<style>[data-testid='stMain'] [data-testid='stMetricValue'] { font-size: 1.55rem; }</style>")
facts = st.columns([1.1, 1, 1.7, 1.2])
facts[0].metric("State", short, help=sentence)
facts[1].metric("At stake", cents(amount) if chain["entity"] not in ("vendor", "customer", "item", "account") else "—")
facts[2].metric(
    "Owner",
    plain(lead["owner"] or lead["owner_role"]) if lead else "nobody",
    help="who acts next on what holds it (the same owner as in the action queue)" if lead else "nothing is open",
)
facts[3].metric("Due by", day(lead["due_by"]) if lead and lead["due_by"] else "—",
                help=escalation_words(lead, now) if lead else None)  # fmt: skip
line = [sentence, f"AWRA key {chain['key']}", f"version {chain['version']}"]
if source.get("txn_date"):
    line.insert(1, f"dated {source['txn_date']}")
st.caption(" · ".join(plain(f) for f in line if f))
ref = chain["external_ref"]
if ref:
    st.link_button(
        f"Open in QuickBooks ({ref['qbo_entity']} {ref['qbo_id']})",
        qbo_link(settings, realm, ref["qbo_entity"], ref["qbo_id"]),
    )

if lead:
    waits = next((i for i in items if i["reason"] == "source_data.dependency_not_ready"), None)
    st.error(
        f"**Why it is held: {plain(lead['title'])}.** {plain(lead['detail'])}  \n"
        f"**Next step:** {plain(lead['fix'])}  \n"
        f"Owner **{plain(lead['owner'] or lead['owner_role'])}** · who decides: {plain(lead['decides'])} · "
        f"{escalation_words(lead, now)}"
    )
    parent = None
    if waits and party and waits["detail"] and party["record_id"] in str(waits["detail"]):
        parent = (f"the {party['entity']} it waits on ({party['name'] or party['record_id']})", party["key"])
    elif waits and source.get("invoice_id"):
        parent = (f"the invoice it waits on ({source['invoice_id']})", f"invoice:{source['invoice_id']}")
    elif waits and source.get("bill_id"):
        parent = (f"the bill it waits on ({source['bill_id']})", f"bill:{source['bill_id']}")
    if parent:
        st.page_link(RECORD_PAGE, label=f"Open {parent[0]}", query_params={"key": parent[1]},
                     icon=":material/arrow_upward:")  # fmt: skip
    if len(items) > 1:
        st.caption("Also open: " + "; ".join(f"{plain(i['title'])} ({plain(i['detail'])})" for i in items[1:]))
elif chain["state"] == "synced":
    st.success("In QuickBooks, nothing open.")

# -- act on it: each action enabled only where the engine would take it, else disabled with the reason ----------
st.subheader("Act on this record")
caller = caller_for(identity)
finding = next(iter(chain["findings"]), None)
allowed_here = [i for i in items if identity.role == "admin" or i["dimension"] in FINANCE_DIMENSIONS]
labels = {i["exception_id"]: f"#{i['exception_id']} {i['title']}" for i in items}  # the id first: never cut off


def refusal_for(action: str) -> str | None:
    """Why the engine would refuse `action` on this record's open items for this person, or None."""
    if not identity.can(action):
        needed = " or ".join(r for r in roles_for(action) if r != "system")
        return f"{action.capitalize()} needs the {needed} role; you are signed in as a {identity.role}."
    if not items:
        return "Nothing is open on this record."
    if not allowed_here:
        kinds = ", ".join(sorted({DIMENSION_TITLES.get(i["dimension"], i["dimension"]).lower() for i in items}))
        return f"Its open items ({kinds}) need an admin: ask an admin to {action} them."
    return None


def reason_box(reason: str | None) -> None:
    if reason:
        st.caption(f":material/block: {reason}")


# Retry first: the admin's way out; then who owns it, then closing it by hand.
first_row, second_row = st.columns(2), st.columns(2)
with first_row[1], st.container(border=True):
    st.markdown("**Assign** — give an open item to a person who can act on it.")
    refused = refusal_for("assign")
    target, person = None, None
    if not refused:
        target = st.selectbox("Item", [i["exception_id"] for i in allowed_here], format_func=labels.get,
                              key="rec_assign_item")  # fmt: skip
        dimension = next(i["dimension"] for i in allowed_here if i["exception_id"] == target)
        roles = roles_for("resolve", dimension)
        choices = [e for e, r in people(settings).items() if r in roles]
        person = st.selectbox("To", choices, key="rec_assign_to", help=f"people with the {' or '.join(roles)} role")
        refused = None if choices else f"Nobody in the roles config has the {' or '.join(roles)} role."
    if st.button("Assign", key="rec_assign", disabled=bool(refused)):
        remember(run_action("Assign", lambda: commands().assign(caller, [target], to=str(person))))
    reason_box(refused)
with second_row[0], st.container(border=True):
    st.markdown("**Resolve** — close an open item once its cause is fixed.")
    refused = refusal_for("resolve")
    closable = [i for i in allowed_here if i["dimension"] != "authorization"]
    if not refused and not closable:
        refused = "A connection problem closes by itself once an admin reconnects QuickBooks (Connection page)."
    target, code, why = None, "fixed_in_qbo", ""
    if not refused:
        target = st.selectbox("Item", [i["exception_id"] for i in closable], format_func=labels.get,
                              key="rec_resolve_item")  # fmt: skip
        dimension = next(i["dimension"] for i in closable if i["exception_id"] == target)
        codes = [c for c in RESOLUTION_CODES if c not in ("excluded", "marked_synced")]
        codes = [c for c in codes if c != "create_new" or dimension == "duplicate_risk"]
        code = st.selectbox("Resolution", codes, format_func=RESOLUTION_CODES.get, key="rec_code")
        why = st.text_input("Reason (required, kept in the audit log)", key="rec_reason")
        if not why.strip():
            refused = "Give the reason first: it is kept in the audit log."
    if st.button("Resolve", key="rec_resolve", disabled=bool(refused)):
        remember(run_action("Resolve", lambda: commands().resolve(caller, [target], code=code, reason=why)))
    reason_box(refused)

with second_row[1], st.container(border=True):
    st.markdown("**Exclude from sync** — never sent; its open items close.")
    refused = {
        "synced": "It is already in QuickBooks; excluding it would not take it out.",
        "excluded": "It is already excluded from sync.",
    }.get(chain["state"])
    if not refused and not identity.can("exclude"):
        refused = f"Excluding needs the finance or admin role; you are signed in as a {identity.role}."
    if not refused and identity.role != "admin" and any(i["dimension"] not in FINANCE_DIMENSIONS for i in items):
        refused = "One of its open items is a mapping, connection or transport problem: an admin excludes it."
    why = ""
    if not refused:
        why = st.text_input("Why (required, kept in the audit log)", key="rec_exclude_reason")
        if not why.strip():
            refused = "Say why first: it is kept in the audit log."
    if st.button("Exclude", key="rec_exclude", disabled=bool(refused)):
        remember(run_action("Exclude", lambda: commands().exclude(caller, [key], reason=why)))
    reason_box(refused)

with first_row[0], st.container(border=True):
    st.markdown("**Retry** — re-check it and send it again now.")
    refused = {
        "synced": "It is already in QuickBooks: nothing to retry.",
        "excluded": "It is excluded from sync: nothing to retry.",
    }.get(chain["state"])
    fixable_in_qbo = False
    if not refused and finding:
        about = guide.get(finding["reason"], {})
        who = about.get("decides") or "its owner"
        if finding["dimension"] == "source_data" and source.get("owner"):
            who = f"{who} ({source['owner']})"
        where = "in AWRA" if finding["dimension"] == "source_data" else "in QuickBooks or on the Mappings page"
        refused = (
            f"Retry is off: “{titles.get(finding['reason'], 'a check')}” holds it ({finding['detail']}). "
            f"Only {who} can fix that, {where}; sending again would be refused."
        )
        fixable_in_qbo = finding["dimension"] != "source_data"
    if not refused and not identity.can("retry"):
        refused = f"Retry needs the admin role; you are signed in as a {identity.role}."
    refused_by_qbo = chain["state"] in ("needs_fix", "blocked")
    if not refused and refused_by_qbo:
        st.caption(
            "QuickBooks is read again first: a fix made there (an item made active again, a name freed) counts. "
            "If nothing changed since QuickBooks refused it, the retry is refused."
        )
    if st.button("Retry now", type="primary", key="retry_go", disabled=bool(refused)):
        pulled = None
        if refused_by_qbo and identity.can("pull"):
            pulled = run_action("Read QuickBooks", lambda: commands().pull(caller))
        # The retry goes on even when QuickBooks could not be read: its own answer says what happened to the record.
        remember(run_action("Retry", lambda: commands().retry(caller, [key])),
                 note=pulled if pulled is not None and not pulled.ok else None)  # fmt: skip
    reason_box(refused)
    if fixable_in_qbo and identity.can("pull") and identity.can("check"):
        st.caption("Fixed it in QuickBooks or mapped it? Read QuickBooks again and re-check this company:")
        if st.button("Read QuickBooks and re-check", key="rec_recheck"):
            pulled = run_action("Read QuickBooks", lambda: commands().pull(caller))
            remember(run_action("Re-check", lambda: commands().check(caller)) if pulled.ok else pulled)

# -- the document ------------------------------------------------------------------------------------------------
st.subheader("The document in AWRA")
if not source:
    st.caption("AWRA no longer sends this record.")
else:
    fields = [
        (name, str(source[f]).capitalize() if f in ("approval_status", "posting_status", "status") else source[f])
        for f, name in HEADER_FIELDS.items()
        if source.get(f) not in (None, "")
    ]
    if party and party["entity"] != chain["entity"]:
        fields.insert(0, (party["entity"].capitalize(), f"{party['name'] or '—'} ({party['record_id']})"))
    cols = st.columns(4)
    for i, (name, value) in enumerate(fields):
        cols[i % 4].markdown(f"**{name}**  \n{plain(value)}")
    if chain["lines"]:
        lines = pl.DataFrame(chain["lines"], infer_schema_length=None)
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
        present = [c for c in names if c in lines.columns]
        shown = lines.select(
            pl.col(c).cast(pl.String).map_elements(cents, return_dtype=pl.String).fill_null("—")
            if c in ("unit_price", "amount")
            else pl.col(c).cast(pl.String).str.replace(r"\.0+$", "").str.replace(r"(\.\d*?)0+$", "$1").fill_null("—")
            if c == "qty"
            else pl.col(c).cast(pl.String).fill_null("—")
            for c in present
        ).rename({c: names[c] for c in present})
        if shown.height <= 30:  # a document's lines, read in full like the paper (and findable as text)
            st.table(shown, hide_index=True)
        else:
            st.dataframe(shown, hide_index=True)
        total = source.get("total") or amount
        summed = sum(
            Decimal(str(line["amount"] or 0))
            for line in chain["lines"]
            if chain["entity"] != "journal_entry" or line.get("posting_type") == "debit"
        )
        differs = total is not None and Decimal(str(total)) != summed
        st.markdown(
            f"**Total {cents(total)}** · {len(chain['lines']):,} line(s) add up to {cents(summed)}"
            + (" (they differ)" if differs else "")
        )
    extra = {k: v for k, v in source.items() if k not in HEADER_FIELDS and v not in (None, "")}
    with st.expander("Every field AWRA sent"):
        st.dataframe(
            pl.DataFrame(
                {
                    "Field": [k.replace("_", " ").capitalize().replace(" id", " ID") for k in extra],
                    "Value": [str(v) for v in extra.values()],
                }
            ),
            hide_index=True,
        )

# -- checks, possible duplicates, attempts -----------------------------------------------------------------------
if chain["findings"]:
    st.subheader("What the last check found")
    st.table(
        pl.DataFrame(chain["findings"]).select(
            pl.col("reason").replace_strict(titles, default="Not yet described").alias("Problem"),
            pl.col("detail").fill_null("—").alias("Detail"),
            pl.col("reason")
            .replace_strict({r: g["decides"] for r, g in guide.items()}, default="—")
            .alias("Who decides"),
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
            pl.col("reasons").fill_null("—").alias("Why"),
        ),
        hide_index=True,
    )
    if identity.can("link_duplicate"):
        ids = [c["qbo_id"] for c in chain["duplicate_candidates"]]
        pick = st.selectbox("QuickBooks object", ids, key="dup_pick")
        why = st.text_input("Reason (audited)", key="dup_reason")
        left, right = st.columns(2)
        if left.button("Link to it", key="dup_link", disabled=not why.strip()):
            remember(run_action("Link", lambda: commands().link(caller, key, pick, reason=why)))
        if right.button("Create new anyway", key="dup_new", disabled=not why.strip()):
            remember(run_action("Create new", lambda: commands().create_new(caller, key, reason=why)))

st.subheader(f"Attempts ({len(chain['attempts'])})")
if chain["attempts"]:
    attempts = pl.DataFrame(chain["attempts"], infer_schema_length=None)
    # A table, not a grid: a handful of rows, read in full (and the text is on the page, for search and screen readers).
    st.table(
        attempts.select(
            pl.col("attempt_no").cast(pl.String).alias("#"),
            pl.col("started_at").cast(pl.String).str.slice(0, 16).alias("When (UTC)"),
            pl.col("operation").replace_strict(OPERATIONS, default=pl.col("operation")).alias("What"),
            pl.col("outcome")
            .replace_strict({k: v[:1].upper() + v[1:] for k, v in OUTCOME_TITLES.items()}, default=pl.col("outcome"))
            .alias("Outcome"),
            pl.when(pl.col("outcome") == "accepted")
            .then(pl.format("in QuickBooks as Id {}", pl.col("external_id").cast(pl.String).fill_null("—")))
            .otherwise(
                pl.concat_str(
                    pl.col("reason").replace_strict(titles, default=None).fill_null("—"),
                    pl.format(" (error {})", pl.col("qbo_code").cast(pl.String)).fill_null(""),
                )
            )
            .alias("QuickBooks's answer"),
            pl.coalesce(pl.col("detail"), pl.col("message"), pl.lit("—")).alias("What QuickBooks said"),
        ),
        hide_index=True,
    )
    tids = [f"#{a['attempt_no']} {a['intuit_tid']}" for a in chain["attempts"] if a.get("intuit_tid")]
    if tids:
        st.caption("For Intuit support (intuit_tid): " + " · ".join(tids))
    st.caption(f"Automatic retries used: {chain['retry_count']}.")
else:
    st.caption("Nothing has been sent for this record.")
