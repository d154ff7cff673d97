"""Cached read models for the pages: the one place where Streamlit's caches meet the store."""

from __future__ import annotations

import polars as pl
import streamlit as st

from pipelines import metrics
from pipelines.config import Settings, load_settings
from pipelines.identity import Identity, load_roles, resolve
from pipelines.store import Store

__all__ = [
    "decide_duplicate",
    "run_sync_now",
    "retry_records",
    "qbo_link",
    "record_chain",
    "run_attempts",
    "sync_history",
    "get_settings",
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
    return load_settings()


@st.cache_resource
def get_store(db_path: str) -> Store:
    """The app's one Store (one DuckDB connection; pages get a cursor per thread through it)."""
    return Store(db_path)


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
def _sync_history(_store: Store, realm_id: str, version: tuple) -> pl.DataFrame:
    return metrics.sync_runs(_store, realm_id)


def sync_history(store: Store, realm_id: str) -> pl.DataFrame:
    return _sync_history(store, realm_id, metrics.store_version(store))


def run_attempts(store: Store, run_id: int) -> pl.DataFrame:
    return metrics.run_attempts(store, run_id)


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


# -- actions from the pages: each goes through the engine, which checks the role and audits -----------------
def retry_records(store: Store, settings: Settings, keys: list[str], identity: Identity, override: str | None = None):
    from datetime import UTC, datetime

    from pipelines.connection import qbo_client
    from pipelines.sync import retry

    with qbo_client(settings, store) as client:
        return retry(
            store,
            client,
            keys,
            identity=identity,
            now=datetime.now(UTC),
            override_reason=override,
            schedule=settings.retry_schedule,
        )


def run_sync_now(store: Store, settings: Settings, identity: Identity, progress=None):
    from datetime import UTC, datetime

    from pipelines.connection import qbo_client
    from pipelines.cycle import run_cycle
    from pipelines.identity import require

    require(identity, "sync")
    with qbo_client(settings, store) as client:
        return run_cycle(
            store, client, settings, now=datetime.now(UTC), trigger="manual", actor=identity.email, progress=progress
        )


def decide_duplicate(store: Store, realm_id: str, key: str, qbo_id: str | None, identity: Identity, reason: str):
    """Link the record to a QBO object (qbo_id) or confirm it is new (qbo_id None); then re-check."""
    from datetime import UTC, datetime

    from pipelines.duplicates import confirm_create_new, link_duplicate
    from pipelines.readiness import run_check

    entity, _, record_id = key.partition(":")
    now = datetime.now(UTC)
    if qbo_id:
        link_duplicate(store, realm_id, entity, record_id, qbo_id, identity=identity, reason=reason, now=now)
    else:
        confirm_create_new(store, realm_id, entity, record_id, identity=identity, reason=reason, now=now)
    run_check(store, realm_id, now=now, trigger="check", actor=identity.email)
