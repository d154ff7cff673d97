"""Sync runs: every run with its trigger, actor, duration and outcomes; drill to what QuickBooks said."""

from datetime import UTC

import polars as pl
import streamlit as st

from pipelines.catalogue import title_of
from pipelines.views.queue import key_words
from ui.actions import caller_for, commands, run_action, show_result
from ui.charts import OUTCOME_TITLES, outcomes_chart, table_view
from ui.data import get_settings, get_store, identity_of, quiet_runs, run_attempts, sync_history

settings = get_settings()
store = get_store(str(settings.db_path))
realm = st.session_state.get("realm", settings.realm_id)
identity = identity_of(st.session_state.get("actor"), settings)

st.title("Sync runs (all periods)")
if identity.can("sync") and st.button("Run a cycle now (check, then sync)", key="sync_now"):
    bar = st.progress(0.0, text="checking")
    progress = lambda f, label: bar.progress(min(max(f, 0.0), 1.0), text=label)  # noqa: E731
    show_result(run_action("Sync", lambda: commands().sync(caller_for(identity), progress=progress)))

quiet, last_quiet = quiet_runs(store, realm)
runs_word = "run" if quiet == 1 else "runs"
show_quiet = quiet > 0 and st.toggle(f"Show the {quiet:,} {runs_word} that had nothing to send", key="sync_quiet")
runs = sync_history(store, realm, quiet=show_quiet)
if quiet and not show_quiet:
    last = last_quiet.astimezone(UTC).strftime("%Y-%m-%d %H:%M") if last_quiet else ""
    st.caption(f"{quiet:,} {runs_word} found nothing to send (the last at {last} UTC); left out below.")
if runs.is_empty():
    if quiet:
        st.info("Every run so far found nothing to send: no record was ready. The Readiness page says what holds them.")
    else:
        st.info("No sync has run yet. An admin runs `synchealth sync` (or the button above).")
    st.stop()

st.caption("All periods, newest first. Colours as on Trends: accepted in green, each failure in its kind's.")
st.altair_chart(outcomes_chart(runs), width="stretch")
table_view(
    runs.with_columns(
        pl.col("started_at").dt.convert_time_zone("UTC").dt.strftime("%Y-%m-%d %H:%M"),
        pl.col("actor").fill_null("scheduler"),
        pl.col("error").fill_null(""),
    ),
    labels={
        "run_id": "Run",
        "started_at": "Started (UTC)",
        "trigger": "Trigger",
        "actor": "By",
        "status": "Status",
        "planned": "Planned",
        "accepted": "Accepted",
        "rejected": "Refused",
        "transport": "Unavailable",
        "throttled": "Slowed down",
        "ambiguous": "No answer",
        "duplicate": "Possible duplicate",
        "authorization": "Connection refused",
        "held": "Held",
        "linked": "Linked",
        "seconds": "Seconds",
        "error": "Error",
    },  # fmt: skip
)

run_id = st.selectbox("Attempts of run", runs["run_id"].to_list(), key="sync_run_pick")
attempts = run_attempts(store, run_id)
titles = {reason: title_of(reason) for reason in attempts["reason"].drop_nulls().unique().to_list()}
table_view(
    attempts.with_columns(
        key_words("key"),  # purchase order PO-1: the record type in words, then its AWRA id
        pl.col("reason").replace_strict(titles, default="").alias("why"),
        pl.col("outcome").replace_strict(OUTCOME_TITLES, default=pl.col("outcome")),
        pl.col("http_status").cast(pl.String).fill_null(""),
        pl.col("qbo_code").cast(pl.String).fill_null(""),
        pl.col("message").fill_null(""),
        pl.col("intuit_tid").fill_null(""),
        pl.col("external_id").cast(pl.String).fill_null(""),
    ),
    labels={
        "key": "Record",
        "attempt_no": "Attempt",
        "operation": "Operation",
        "outcome": "Outcome",
        "why": "Why",
        "http_status": "HTTP status",
        "qbo_code": "QuickBooks code",
        "message": "What QuickBooks said",
        "intuit_tid": "QuickBooks request id",
        "external_id": "QuickBooks Id",
        "ms": "Milliseconds",
    },  # fmt: skip
)
st.caption(
    "Open a record on the Record page: search it by its AWRA id (after its type above), document number or party."
)
