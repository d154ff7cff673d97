"""Help: the troubleshooting path, and every reason code with its meaning, fix, owner and how to escalate.

Generated from the one catalogue (QBO faults, readiness rules, mapping kinds): the guide says what the app says.
"""

import streamlit as st

from pipelines.catalogue import DIMENSION_GUIDE, catalogue, search

st.title("Help: what went wrong, who fixes it, how to escalate")
st.markdown(
    """
**The path, for finance and support**

1. **Find it.** Open the *Action queue*: every blocked record is there once per cause, with its owner and due-by.
   Filter by owner to see yours. The *Record* page (the `open` link) shows the whole chain: source, checks,
   mappings, possible duplicates and every attempt with what QuickBooks said.
2. **Read the reason.** Each item has a reason code; below is what it means and the fix, in the same words the
   queue uses.
3. **Fix it where it lives.** Source data in AWRA; mappings on the *Mappings* page (admin); objects, periods and
   subscriptions in QuickBooks. Most items then close on their own at the next check or sync, and the audit log
   says what closed them.
4. **Close it by hand only with a reason:** fixed in QuickBooks, excluded from sync, marked as synced (with the
   QuickBooks Id, which is checked), or create new despite a possible duplicate. Finance acts on source data,
   QuickBooks refusals and duplicates; mappings, the connection and transport need an admin.
5. **Escalate** when it is overdue, out of automatic retries, or not yours to fix: to whom, and the evidence to
   attach, is listed for each kind of problem below. Nothing needs to be asked twice.
"""
)

left, right = st.columns([2, 1])
text = left.text_input("Search a reason code, a QuickBooks error code or a word", key="help_search")
labels = {d: g.title for d, g in DIMENSION_GUIDE.items()}
dimensions = right.multiselect("Kind of problem", list(DIMENSION_GUIDE), format_func=labels.get, key="help_dims")
found = search(text, dimensions)
st.caption(f"{found.height} of {catalogue().height} reason codes")
if found.is_empty():
    st.info("No reason code matches. Try a QuickBooks error code such as 6000, or a word such as 'closed'.")

for dimension, guide in DIMENSION_GUIDE.items():
    rows = found.filter(found["dimension"] == dimension)
    if rows.is_empty():
        continue
    st.subheader(guide.title)
    st.markdown(
        f"**Retried by the sync?** {guide.retry}  \n**Escalate to:** {guide.escalate_to}  \n"
        f"**Evidence to attach:** {guide.evidence}"
    )
    st.dataframe(
        rows.select("title", "explanation", "fix", "owner", "qbo_codes", "found_by", "reason"),
        hide_index=True,
        key=f"help_{dimension}",
        column_config={
            "title": st.column_config.TextColumn("Cause"),
            "reason": st.column_config.TextColumn("Code (for support)"),
            "explanation": st.column_config.TextColumn("What it means", width="large"),
            "fix": st.column_config.TextColumn("The fix", width="large"),
            "owner": st.column_config.TextColumn("Owner"),
            "qbo_codes": st.column_config.TextColumn("QuickBooks codes"),
            "found_by": st.column_config.TextColumn("Found by"),
        },
    )
