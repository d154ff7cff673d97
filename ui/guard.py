"""A page's unexpected failure, shown as one sentence with an incident id (the trace goes to the log), never a trace."""

from __future__ import annotations

from typing import Any

import streamlit as st

from pipelines.incidents import record_incident

__all__ = ["page_failed", "run_guarded"]


def page_failed(err: Exception, where: str) -> None:
    """Log the trace under a new incident id and say, in one sentence, what a person can do."""
    incident = record_incident(err, where)
    st.error(
        f"{where[:1].upper()}{where[1:]} could not be shown (incident {incident.incident_id}): reload the page, and "
        "if it happens again give an admin the incident id (the details are in the server's log)."
    )


def run_guarded(where: str, part: Any) -> None:
    """Run `part` (a page, or the sidebar); Streamlit's own stop and rerun are not Exceptions and pass through."""
    try:
        part()
    except Exception as err:
        page_failed(err, where)
