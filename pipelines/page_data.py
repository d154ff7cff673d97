"""Cached read models for the pages: the one place where Streamlit's caches meet the store."""

from __future__ import annotations

import polars as pl
import streamlit as st

from pipelines import metrics
from pipelines.config import Settings, load_settings
from pipelines.identity import Identity, load_roles, resolve
from pipelines.store import Store

__all__ = [
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
