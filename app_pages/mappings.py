"""Mappings: the gaps ranked by what they block, stale first; admins map values and accept suggestions.

A QuickBooks target is proposed only with a score behind it (the same SKU or account number, the same name, or a
similar one); otherwise the page asks for a choice. Every mapping takes a reason, recorded by the command's audit.
"""

import polars as pl
import streamlit as st

from pipelines.catalogue import catalogue
from pipelines.mappings import KINDS
from pipelines.views.suggest import SUGGEST_AT, suggestion, target_scores
from ui.actions import caller_for, commands, run_action, show_result
from ui.charts import plain
from ui.data import get_settings, get_store, identity_of, mapping_gaps

STATUS_WORDS = {"stale": "mapped to an inactive object", "suggested": "suggestion waiting", None: "not mapped"}

settings = get_settings()
store = get_store(str(settings.db_path))
realm = st.session_state.get("realm", settings.realm_id)
identity = identity_of(st.session_state.get("actor"), settings)
gaps = mapping_gaps(store, realm)
titles = dict(catalogue().select("reason", "title").iter_rows())


def kind_words(kind: str) -> str:
    return KINDS[kind].noun if kind in KINDS else kind.replace("_", " ")


st.title("Mappings")
answer = st.session_state.pop("_map_answer", None)  # the last mapping's answer, above the gaps it changed
if answer is not None:
    show_result(answer)
if gaps.is_empty():
    st.success(
        "No mapping gaps: every account, tax code, item, payment method and category in use is mapped. "
        "After a new snapshot or pull, run `synchealth check` to look again."
    )
    st.stop()

top = gaps.row(0, named=True)
n = top["records"]
st.markdown(
    f"**Fix first:** map {kind_words(top['kind'])} **{plain(top['awra_value'])}** — unblocks "
    f"{n:,} record{'s' * (n != 1)}, ${top['dollars']:,.2f}."
)
st.dataframe(
    gaps.select(
        pl.col("kind").map_elements(kind_words, return_dtype=pl.String).alias("Kind"),
        pl.col("awra_value").alias("AWRA value"),
        pl.col("reason").replace_strict(titles, default="Not yet described").alias("Problem"),
        pl.col("records").alias("Records blocked"),
        pl.col("dollars").cast(pl.Float64).alias("Dollars blocked"),
        pl.col("suggestion").fill_null("—").alias("Suggested"),
        pl.col("stale_target").fill_null("—").alias("Mapped to (inactive in QuickBooks)"),
        pl.col("oldest_blocked").cast(pl.String).fill_null("—").alias("Oldest blocked"),
        pl.col("entities").str.replace_all("_", " ").fill_null("—").alias("Record types"),
    ),
    hide_index=True,
    column_config={
        "Dollars blocked": st.column_config.NumberColumn(format="dollar"),
        "Records blocked": st.column_config.NumberColumn(format="localized"),
    },
)

suggested = gaps.filter(pl.col("status") == "suggested")
if not suggested.is_empty():
    st.subheader("Suggestions to accept")
    picked_rows = st.dataframe(
        suggested.select(
            pl.col("kind").map_elements(kind_words, return_dtype=pl.String).alias("Kind"),
            pl.col("awra_value").alias("AWRA value"),
            pl.col("suggestion").alias("QuickBooks object"),
            pl.col("records").alias("Records blocked"),
            pl.col("dollars").cast(pl.Float64).alias("Dollars blocked"),
        ),
        hide_index=True,
        on_select="rerun" if identity.can("map") else "ignore",
        selection_mode="multi-row",
        key="suggestion_table",
        column_config={"Dollars blocked": st.column_config.NumberColumn(format="dollar")},
    )
    rows = picked_rows.selection.rows if identity.can("map") else []
    if identity.can("map"):
        accept_why = st.text_input("Reason for accepting (required, kept in the audit log)", key="accept_reason")
        if st.button(f"Accept {len(rows)} selected", disabled=not rows or not accept_why.strip(), key="accept_go"):
            pairs = [(suggested["kind"][i], suggested["awra_value"][i]) for i in rows]
            done = run_action(
                "Accept suggestions",
                lambda: commands().accept_suggestions(caller_for(identity), pairs, reason=accept_why),
            )
            if done.ok:
                st.session_state["_map_answer"] = done
                st.rerun()
            show_result(done)

st.subheader("Map a value")
if not identity.can("map"):
    st.caption(f"Read-only: mapping needs the admin role; you are signed in as a {identity.role}.")
    st.stop()
left, right = st.columns(2)
kind = left.selectbox("Kind", sorted(gaps["kind"].unique().to_list()), format_func=kind_words, key="map_kind")
values = gaps.filter(pl.col("kind") == kind)
value = right.selectbox("AWRA value", values["awra_value"].to_list(), key="map_value")
row = values.filter(pl.col("awra_value") == value).row(0, named=True)
st.caption(
    f"{plain(titles.get(row['reason'], 'Not mapped'))}: blocks {row['records']:,} record(s), ${row['dollars']:,.2f}."
)
scores = target_scores(store, realm, kind, str(value))
proposal = suggestion(scores)
if row["suggestion_id"] is not None:  # the engine's own suggestion (a rule matched it) comes first when it is there
    engine = scores.filter(pl.col("qbo_id") == str(row["suggestion_id"]))
    proposal = engine.row(0, named=True) if engine.height else proposal
ids = scores["qbo_id"].to_list()
labels = [
    f"{r['name']} ({r['qbo_entity']} {r['qbo_id']}) — {r['score']:.0%}, {r['basis']}"
    + ("" if r["active"] else " · inactive in QuickBooks")
    for r in scores.iter_rows(named=True)
]
picked = st.selectbox(
    "QuickBooks object (best match first)",
    range(len(ids)),
    index=ids.index(proposal["qbo_id"]) if proposal else None,
    format_func=labels.__getitem__,
    placeholder="Choose the QuickBooks object",
    key=f"map_target_{kind}_{value}",
    disabled=not ids,
)
if not ids:
    st.caption(f"QuickBooks has no {KINDS[kind].qbo_noun if kind in KINDS else kind} yet: create it there, then pull.")
elif proposal:
    st.caption(
        f"Suggested: **{plain(proposal['name'])}**, {proposal['score']:.0%} match ({proposal['basis']}). "
        "Check it before you map."
    )
else:
    st.caption(
        f"No suggestion: no QuickBooks object is named closely enough ({SUGGEST_AT:.0%} or more) to propose one. "
        "Choose the one it means."
    )
reason = st.text_input("Reason (required, kept in the audit log)", key="map_reason")
why_not = (
    "Choose the QuickBooks object first."
    if picked is None
    else "Give the reason first: it is kept in the audit log."
    if not reason.strip()
    else None
)
if st.button("Map and re-check", type="primary", disabled=bool(why_not), key="map_go"):
    target = ids[picked] if picked is not None else ""
    with st.spinner("Re-checking every record..."):
        done = run_action("Map", lambda: commands().map(caller_for(identity), kind, value, target, reason=reason))
    if done.ok:  # drawn again: the gaps without the one just mapped, the answer on top, the reason box empty
        st.session_state["_map_answer"] = done
        st.session_state.pop("map_reason", None)
        st.rerun()
    show_result(done)
if why_not and ids:
    st.caption(f":material/block: {why_not}")
