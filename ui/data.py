"""Cached read models for the pages: the one place where Streamlit's caches meet the store."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import polars as pl
import streamlit as st

from pipelines.clock import system_clock
from pipelines.config import Settings, load_settings
from pipelines.identity import Identity, load_roles, resolve
from pipelines.incidents import configure_log, log_path_for
from pipelines.store import Store
from pipelines.views import metrics

__all__ = [
    "action_queue",
    "closing_period",
    "company_name",
    "page_period",
    "health_view",
    "trends_view",
    "audit_log",
    "csv_export",
    "find_records",
    "connect_link",
    "connection_view",
    "qbo_link",
    "record_chain",
    "run_attempts",
    "quiet_runs",
    "sync_history",
    "get_settings",
    "page_now",
    "get_store",
    "identity_of",
    "mapping_gaps",
    "overview",
    "people",
    "qbo_choices",
    "qbo_summary",
    "readiness",
    "realm_choices",
    "reason_records",
]


@st.cache_resource
def get_settings() -> Settings:
    from pipelines.serve.state import current

    served = current()  # under `synchealth serve`: the settings the lifespan opened the store with
    settings = served.settings if served else load_settings()
    configure_log(log_path_for(settings.db_path))  # a page's incidents go to the log beside the store
    return settings


@st.cache_resource
def get_store(db_path: str) -> Store:
    """The app's one Store (one DuckDB connection; pages get a cursor per thread through it).

    Under `synchealth serve` it is the lifespan's Store: one connection for the pages and the scheduler.
    """
    from pipelines.serve.state import current

    served = current()
    if served is not None and (served.settings.database_url or Path(db_path).resolve() == served.store.path.resolve()):
        return served.store  # fleet mode: the lifespan's store is the fleet's PostgreSQL database
    fleet = get_settings().database_url
    return Store(fleet or db_path)


def page_now() -> datetime:
    """The pages' clock: the server's under `synchealth serve`, else the system clock."""
    from pipelines.serve.state import current

    served = current()
    return served.now() if served else system_clock()


def people(settings: Settings) -> dict[str, str]:
    """email -> role from the roles config."""
    return load_roles(settings.roles_file)


def identity_of(email: str | None, settings: Settings) -> Identity:
    return resolve(email, people(settings))


def realm_choices(store: Store, settings: Settings) -> list[str]:
    known = metrics.realms(store)
    return known if settings.realm_id in known else [settings.realm_id, *known]


@st.cache_data(max_entries=32)
def _overview(_store: Store, realm_id: str, version: tuple) -> dict[str, pl.DataFrame]:
    history = metrics.ingest_history(_store, realm_id)
    refused = history.filter(pl.col("status") == "refused")
    return {
        "tables": metrics.loaded_tables(_store, realm_id),
        "entities": metrics.records_by_entity(_store, realm_id),
        "history": history,
        "refused_files": {
            int(run): metrics.ingest_problems(_store, int(run)).filter(pl.col("rejected") > 0)
            for run in refused["run_id"].head(5)
        },
    }


def overview(store: Store, realm_id: str) -> dict[str, pl.DataFrame]:
    """What is loaded per table and entity, and the ingest history; recomputed when the store changed."""
    return _overview(store, realm_id, metrics.store_version(store))


@st.cache_data(max_entries=32)
def _readiness(_store: Store, realm_id: str, version: tuple) -> dict:
    return {
        "funnel": metrics.readiness_funnel(_store, realm_id),
        "reasons": metrics.blocked_reasons(_store, realm_id),
        "run": metrics.last_check_run(_store, realm_id),
    }


def readiness(store: Store, realm_id: str) -> dict:
    """The readiness funnel and the ranked reasons of the last check run."""
    return _readiness(store, realm_id, metrics.store_version(store))


@st.cache_data(max_entries=64)
def _reason_records(_store: Store, realm_id: str, reason: str, version: tuple) -> pl.DataFrame:
    return metrics.records_for_reason(_store, realm_id, reason)


def reason_records(store: Store, realm_id: str, reason: str) -> pl.DataFrame:
    return _reason_records(store, realm_id, reason, metrics.store_version(store))


@st.cache_data(max_entries=32)
def _mapping_gaps(_store: Store, realm_id: str, version: tuple) -> pl.DataFrame:
    from pipelines.mappings import gap_inventory

    return gap_inventory(_store, realm_id)


def mapping_gaps(store: Store, realm_id: str) -> pl.DataFrame:
    """Missing, stale and unaccepted mappings ranked by what they block."""
    return _mapping_gaps(store, realm_id, metrics.store_version(store))


def qbo_choices(store: Store, realm_id: str, kind: str) -> pl.DataFrame:
    from pipelines.mappings import KINDS

    entities = KINDS[kind].qbo_entities if kind in KINDS else (kind.capitalize(),)
    return metrics.qbo_choices(store, realm_id, entities)


def qbo_summary(store: Store, realm_id: str) -> dict:
    return metrics.qbo_summary(store, realm_id)


@st.cache_data(max_entries=32)
def _sync_history(_store: Store, realm_id: str, version: tuple, quiet: bool) -> pl.DataFrame:
    return metrics.sync_runs(_store, realm_id, quiet=quiet)


def sync_history(store: Store, realm_id: str, *, quiet: bool = False) -> pl.DataFrame:
    """The runs, newest first; with `quiet`, the runs that had nothing to send too."""
    return _sync_history(store, realm_id, metrics.store_version(store), quiet)


def quiet_runs(store: Store, realm_id: str) -> tuple[int, datetime | None]:
    return metrics.quiet_runs(store, realm_id)


def run_attempts(store: Store, run_id: int) -> pl.DataFrame:
    return metrics.run_attempts(store, run_id)


@st.cache_data(max_entries=4)
def _searchable(_store: Store, realm_id: str, version: tuple) -> pl.DataFrame:
    from pipelines.views.search import searchable

    return searchable(_store, realm_id)


def _search_frame(store: Store, realm_id: str) -> pl.DataFrame:
    synced = store.scalar("SELECT coalesce(max(run_id), 0) FROM sync_runs")  # a sync changes states, not the version
    return _searchable(store, realm_id, (*metrics.store_version(store), synced))


def with_documents(store: Store, realm_id: str, frame: pl.DataFrame) -> pl.DataFrame:
    """`frame` (with a `key` column) with each record's document number and party name, as a person knows it:
    `document` reads "INV-9 · Acme Supplies" (a vendor or customer itself: its name)."""
    known = _search_frame(store, realm_id).select(
        "key",
        pl.concat_str([pl.col("number"), pl.col("party")], separator=" · ", ignore_nulls=True).alias("document"),
    )
    joined = frame.join(known, on="key", how="left", maintain_order="left")
    return joined.with_columns(pl.col("document").fill_null("—"))


def find_records(store: Store, realm_id: str, text: str) -> pl.DataFrame:
    """Records found by key, document number or party name (the Record page's search): at most 25, closest first.
    The records are read once per store version; each search is a filter over them."""
    from pipelines.views.search import find, parse_query

    query = parse_query(text)
    if query.empty:
        return find(pl.DataFrame(), query)  # the empty answer, with its columns
    return find(_search_frame(store, realm_id), query)


def record_chain(store: Store, realm_id: str, key: str) -> dict | None:
    """The record's whole chain, or None when there is no such record."""
    try:
        return metrics.record_chain(store, realm_id, key)
    except (LookupError, ValueError):
        return None


def qbo_link(settings: Settings, realm_id: str, qbo_entity: str, qbo_id: str) -> str:
    """Where a person sees the object: QuickBooks itself, or the local sandbox's control API."""
    if settings.qbo_env == "local":
        return f"{settings.qbo_base_url}/_sandbox/{realm_id}/entities/{qbo_entity}"
    host = "app.sandbox.qbo.intuit.com" if settings.qbo_env == "sandbox" else "app.qbo.intuit.com"
    return f"https://{host}/app/{qbo_entity.lower()}?txnId={qbo_id}"


# -- the Connection page ---------------------------------------------------------------------------------------
def connection_view(store: Store, settings: Settings, realm_id: str) -> dict:
    """The realm's connection health, and its history newest first (no token is decrypted for it)."""
    from pipelines.connection_health import connection_health

    health = connection_health(store, realm_id, now=page_now(), host=settings.api_base_url)
    events = store.frame(
        "SELECT occurred_at, event, reason, actor, intuit_tid, rotated FROM qbo_connection_events "
        "WHERE realm_id = ? ORDER BY event_id DESC LIMIT 50",
        [realm_id],
    )
    return {"health": health, "events": events}


def connect_link(identity: Identity) -> str | None:
    """Where Connect / Reconnect sends an admin's browser: a one-time /oauth/connect link of the server.

    None when the identity may not connect, or when the pages run without the server (`streamlit run`).
    """
    from pipelines.serve.state import current

    served = current()
    if served is None or not identity.can("connect"):
        return None
    return f"/oauth/connect?ticket={served.connect_ticket(identity.email)}"


# -- the period every page covers ---------------------------------------------------------------------------
@st.cache_data(max_entries=32)
def _closing_period(_store: Store, realm_id: str, day: str, version: tuple) -> str:
    from pipelines.views.period import closing_period

    return closing_period(_store, realm_id, datetime.fromisoformat(day))


def closing_period(store: Store, realm_id: str) -> str:
    """The month being closed: the default period of every page (and of presentation mode)."""
    return _closing_period(store, realm_id, page_now().date().isoformat(), metrics.store_version(store))


def page_period(store: Store, realm_id: str) -> str:
    """The period the page covers: the sidebar's (which a `?period=` in the address sets), else the address's, else
    the month being closed. A month YYYY-MM or "all"; anything else is the month being closed."""
    from pipelines.views.period import ALL, period_bounds

    for value in (st.session_state.get("period"), st.query_params.get("period")):
        if value == ALL:
            return ALL
        try:
            period_bounds(str(value))
            return str(value)
        except ValueError:
            continue
    return closing_period(store, realm_id)


@st.cache_data(max_entries=32, ttl=600)
def _company_name(_store: Store, realm_id: str) -> str | None:
    return _store.scalar("SELECT company_name FROM qbo_company WHERE realm_id = ?", [realm_id])


def company_name(store: Store, realm_id: str, with_id: bool = True) -> str:
    """A company by its QuickBooks name, with its realm id (`with_id`) or alone where room is short (the sidebar);
    by its realm id only where QuickBooks has not told its name yet."""
    name = _company_name(store, str(realm_id))
    if not name:
        return f"QuickBooks company {realm_id}"
    return f"{name} ({realm_id})" if with_id else str(name)


# -- the Action queue, Audit and Help pages ---------------------------------------------------------------------
@st.cache_data(max_entries=16)
def _action_queue(_store: Store, realm_id: str, period: str, version: tuple, minute: str) -> pl.DataFrame:
    from pipelines.views import health
    from pipelines.views.queue import action_queue as queue

    with health.prepared(_store, realm_id):
        return queue(_store, realm_id, now=datetime.fromisoformat(minute), period=period)


def action_queue(store: Store, realm_id: str, period: str = "all") -> pl.DataFrame:
    """Open and assigned exceptions of the period, in the one priority order; recomputed when an exception changes,
    and each minute (ages)."""
    from pipelines.views.queue import queue_version

    minute = page_now().replace(second=0, microsecond=0).isoformat()
    return _action_queue(store, realm_id, period, queue_version(store, realm_id), minute)


@st.cache_data(max_entries=16)
def _audit_log(_store: Store, realm_id: str, version: int) -> pl.DataFrame:
    from pipelines.views.queue import audit_frame

    return audit_frame(_store, realm_id)


def audit_log(store: Store, realm_id: str) -> pl.DataFrame:
    """The audit log, newest first; recomputed when a row is added (it is append-only)."""
    return _audit_log(store, realm_id, int(store.scalar("SELECT coalesce(max(audit_id), 0) FROM audit_log")))


def csv_export(frame: pl.DataFrame) -> bytes:
    """A CSV download that a spreadsheet opens as text, never as formulas."""
    from pipelines.views.queue import csv_bytes

    return csv_bytes(frame)


# -- the Health and Trends pages --------------------------------------------------------------------------------
@st.cache_data(max_entries=16)
def _health_view(_store: Store, realm_id: str, period: str, version: tuple, minute: str) -> dict:
    from pipelines.views import health
    from pipelines.views.queue import action_queue as queue

    now = datetime.fromisoformat(minute)
    with health.prepared(_store, realm_id):  # the facts and the stored queue, current, read from one state
        scoped = queue(_store, realm_id, now=now, period=period)
        intervals = health.blocked_intervals(_store, realm_id, period)
        return {
            "as_of": health.as_of(_store, realm_id),
            "now": now,
            "blocked": health.blocked(scoped),
            "causes": health.causes(scoped),
            "series": health.blocked_series(intervals, scoped, now),
            "flow": health.week_flow(intervals, scoped, now),
            "states": health.records_by_state(_store, realm_id),
            "connection": health.connection_badge(_store, realm_id, now),
            "funnel": health.funnel(_store, realm_id),
            "close": health.period_close(_store, realm_id, period),
            "controls": health.control_totals(_store, realm_id, period),
            "top": health.top_fixes(scoped),
        }


def health_view(store: Store, realm_id: str, period: str) -> dict:
    """Every read model of the Health page for a period; recomputed when the store changed, and each minute."""
    from pipelines.views.health import version

    minute = page_now().replace(second=0, microsecond=0).isoformat()
    return _health_view(store, realm_id, period, version(store), minute)


@st.cache_data(max_entries=16)
def _trends_view(_store: Store, realm_id: str, bucket: str, period: str, version: tuple, minute: str) -> dict:
    from pipelines.views import health, trends
    from pipelines.views.queue import action_queue as queue

    now = datetime.fromisoformat(minute)
    with health.prepared(_store, realm_id):
        scoped = queue(_store, realm_id, now=now, period=period)
        intervals = health.blocked_intervals(_store, realm_id, period)
        return {
            "queue": scoped,
            "flow": trends.flow(intervals, scoped, now, bucket),
            "blocked_by_cause": trends.blocked_by_cause(scoped),
            "first_time_right": trends.first_time_right(_store, realm_id, bucket, period),
            "retries": trends.retry_success(_store, realm_id, bucket, period),
            "resolve": trends.time_to_resolve(_store, realm_id, period),
            "codes": trends.top_error_codes(_store, realm_id, period),
            "offenders": trends.recurring_offenders(_store, realm_id),
            "throughput": trends.throughput(_store, realm_id),
        }


def trends_view(store: Store, realm_id: str, bucket: str = "day", period: str = "all") -> dict:
    """Every read model of the Trends page for a period; recomputed when the store changed, and each minute."""
    from pipelines.views.health import version

    minute = page_now().replace(second=0, microsecond=0).isoformat()
    return _trends_view(store, realm_id, bucket, period, version(store), minute)
