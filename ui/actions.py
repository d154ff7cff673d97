"""Page actions: every button calls a command for the company picked in the sidebar, and shows the answer.

A failure is one sentence with its incident id in st.error (the trace goes to the log); a bulk action runs in
chunks with a progress bar, reports each item (done, refused, failed) and keeps what finished before a failure.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import polars as pl
import streamlit as st

from pipelines.commands import Caller, Commands, ItemResult, Result
from pipelines.identity import Identity
from pipelines.incidents import record_incident
from ui.data import get_settings, get_store, page_now

__all__ = ["caller_for", "commands", "run_action", "run_bulk", "show_result", "show_results_table"]

CHUNK = 25  # items per command in bulk work: the progress bar moves after each


def commands() -> Commands:
    """The server's commands under `synchealth serve` (one store, one lock per company), else the page's own."""
    from pipelines.serve.state import PAGE_LOCK_WAIT, current

    served = current()
    if served is not None and served.commands is not None:
        return served.commands
    settings = get_settings()
    return Commands(get_store(str(settings.db_path)), settings, lock_wait=PAGE_LOCK_WAIT)


def caller_for(identity: Identity) -> Caller:
    """The person acting, on the company picked in the sidebar, on the pages' clock."""
    realm = st.session_state.get("realm") or get_settings().realm_id
    return Caller(identity, str(realm), page_now)


def run_action(label: str, act: Callable[[], Result]) -> Result:
    """Run one command; anything it did not catch becomes a failed answer with an incident id, never a trace."""
    try:
        return act()
    except Exception as err:
        incident = record_incident(err, label)
        return Result(label, "failed", str(incident), incident=incident.incident_id)


def show_result(result: Result) -> None:
    """One sentence: success, a refusal with its reason, or a failure with its incident id."""
    if result.status == "done":
        st.success(result.message)
    elif result.status == "refused":
        st.warning(result.message)
    else:
        st.error(result.message)


def run_bulk(label: str, items: Sequence[Any], act: Callable[[list[Any]], Result]) -> list[ItemResult]:
    """Run `act` on the items in chunks with a progress bar; a chunk that fails marks its items, the rest go on."""
    bar = st.progress(0.0, text=f"{label}: 0 of {len(items):,}")
    results: list[ItemResult] = []
    for start in range(0, len(items), CHUNK):
        chunk = list(items[start : start + CHUNK])
        answer = run_action(label, lambda chunk=chunk: act(chunk))
        if answer.items:
            results.extend(answer.items)
        else:  # refused or failed as a whole (no role, busy, an incident): each of its items says so
            results.extend(ItemResult(str(i), answer.status, answer.message, answer.incident) for i in chunk)
        done = start + len(chunk)
        bar.progress(done / len(items), text=f"{label}: {done:,} of {len(items):,}")
    return results


def show_results_table(label: str, results: Sequence[ItemResult]) -> None:
    """Every item's answer, worst first, with a one-line count above."""
    if not results:
        return
    st.progress(1.0, text=f"{label}: {len(results):,} of {len(results):,} processed")
    counts = {s: sum(1 for r in results if r.status == s) for s in ("done", "refused", "failed")}
    line = f"{label}: {counts['done']:,} of {len(results):,} done" + "".join(
        f", {counts[s]:,} {s}" for s in ("refused", "failed") if counts[s]
    )
    (st.error if counts["failed"] else st.warning if counts["refused"] else st.success)(line)
    order = {"failed": 0, "refused": 1, "done": 2}
    frame = pl.DataFrame(
        [
            {"Item": r.item, "Result": r.status, "What happened": r.message, "Incident": r.incident or ""}
            for r in sorted(results, key=lambda r: order.get(r.status, 3))
        ],
        schema={"Item": pl.String, "Result": pl.String, "What happened": pl.String, "Incident": pl.String},
    )
    st.dataframe(frame, hide_index=True, width="stretch")
