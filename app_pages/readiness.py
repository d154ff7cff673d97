"""Readiness: the funnel from source to ready per entity, the reasons records are held back, and the records."""

import altair as alt
import polars as pl
import streamlit as st

from pipelines.views.metrics import FUNNEL_STAGES
from ui.data import get_settings, get_store, readiness, reason_records

settings = get_settings()
store = get_store(str(settings.db_path))
realm = st.session_state.get("realm", settings.realm_id)
data = readiness(store, realm)

st.title("Readiness")
if data["run"] is None:
    st.info("No readiness check has run yet for this company. Run `synchealth pull` then `synchealth check`.")
    st.stop()
st.caption(f"Check run {data['run']}: complete, approved, posted, eligible, mapped and free of duplicate risk.")

funnel = data["funnel"]
entities = sorted(funnel["entity"].unique().to_list())
chosen = st.multiselect("Entities", entities, default=entities, key="readiness_entities")
shown = (
    funnel.filter(pl.col("entity").is_in(chosen))
    .group_by("stage_index", "stage")
    .agg(pl.col("records").sum(), pl.col("dollars").sum().cast(pl.Float64))
    .sort("stage_index")
)
chart = (
    alt.Chart(shown)
    .mark_bar(color="#1f77b4")
    .encode(
        x=alt.X("stage:N", sort=list(FUNNEL_STAGES), title=None, axis=alt.Axis(labelAngle=0)),
        y=alt.Y("records:Q", title="Records still in"),
        tooltip=["stage", alt.Tooltip("records:Q", format=","), alt.Tooltip("dollars:Q", format="$,.2f")],
    )
)
st.altair_chart(chart, width="stretch")

st.subheader("Why records are held back")
reasons = data["reasons"].filter(pl.col("entities").str.contains("|".join(chosen) or "^$"))
st.dataframe(
    reasons,
    hide_index=True,
    column_config={
        "dollars": st.column_config.NumberColumn("Dollars", format="dollar"),
        "records": st.column_config.NumberColumn("Records", format="localized"),
        "example": st.column_config.TextColumn("Example", width="large"),
    },
)
if not reasons.is_empty():
    reason = st.selectbox("Show the records held back by", reasons["reason"].to_list(), key="readiness_reason")
    st.dataframe(
        reason_records(store, realm, reason).filter(pl.col("entity").is_in(chosen)),
        hide_index=True,
        column_config={
            "amount": st.column_config.NumberColumn("Amount", format="dollar"),
            "detail": st.column_config.TextColumn("What to fix", width="large"),
        },
    )
