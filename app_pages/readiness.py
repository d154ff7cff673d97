"""Readiness: the funnel from source to ready per entity, the reasons records are held back, and the records."""

import altair as alt
import polars as pl
import streamlit as st

from pipelines.catalogue import title_of
from pipelines.views.metrics import FUNNEL_STAGES
from ui.charts import DIMENSION_TITLES, OKABE_ITO, table_view
from ui.data import get_settings, get_store, readiness, reason_records
from ui.render import entity_name, named_entities

settings = get_settings()
store = get_store(str(settings.db_path))
realm = st.session_state.get("realm", settings.realm_id)
data = readiness(store, realm)

st.title("Readiness (all periods)")
if data["run"] is None:
    st.info("No readiness check has run yet for this company. Run `synchealth pull` then `synchealth check`.")
    st.stop()
st.caption(f"Check run {data['run']}: complete, approved, posted, eligible, mapped and free of duplicate risk.")

funnel = data["funnel"]
entities = sorted(funnel["entity"].unique().to_list())
chosen = st.multiselect("Record types", entities, default=entities, format_func=entity_name, key="readiness_entities")
shown = (
    funnel.filter(pl.col("entity").is_in(chosen))
    .group_by("stage_index", "stage")
    .agg(pl.col("records").sum(), pl.col("dollars").sum().cast(pl.Float64))
    .sort("stage_index")
)
chart = (
    alt.Chart(shown)
    .mark_bar(color=OKABE_ITO["blue"])
    .encode(
        x=alt.X("stage:N", sort=list(FUNNEL_STAGES), title=None, axis=alt.Axis(labelAngle=0)),
        y=alt.Y("records:Q", title="Records still in", axis=alt.Axis(format=",d")),
        tooltip=["stage", alt.Tooltip("records:Q", format=","), alt.Tooltip("dollars:Q", format="$,.2f")],
    )
)
st.altair_chart(chart, width="stretch")

st.subheader("Why records are held back")
reasons = data["reasons"].filter(pl.col("entities").str.contains("|".join(chosen) or "^$"))
titles = {reason: title_of(reason) for reason in reasons["reason"].to_list()}
table_view(
    reasons.with_columns(
        pl.col("reason").replace_strict(titles, default="").alias("cause"),
        pl.col("dimension").replace_strict(DIMENSION_TITLES, default="").alias("kind"),
        pl.col("entities").map_elements(
            lambda names: ", ".join(entity_name(n) for n in names.split(", ")), return_dtype=pl.String
        ),
        pl.col("oldest").cast(pl.String).fill_null("—"),
        pl.col("example").fill_null(""),
    ),
    labels={
        "cause": "Cause",
        "kind": "Kind of problem",
        "records": "Records",
        "dollars": "Dollars",
        "oldest": "Oldest",
        "entities": "Record types",
        "example": "Example",
    },  # fmt: skip
    money_columns=("dollars",),
)
if not reasons.is_empty():
    reason = st.selectbox(
        "Show the records held back by", reasons["reason"].to_list(), format_func=titles.get, key="readiness_reason"
    )
    table_view(
        named_entities(reason_records(store, realm, reason).filter(pl.col("entity").is_in(chosen))).with_columns(
            pl.col("txn_date").cast(pl.String).fill_null("—"), pl.col("detail").fill_null("")
        ),
        labels={
            "record_id": "Record",
            "entity": "Type",
            "txn_date": "Date",
            "amount": "Amount",
            "detail": "What to fix",
            "version": "Version",
        },  # fmt: skip
        money_columns=("amount",),
    )
