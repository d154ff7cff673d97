"""Cached read models for the pages: the one place where Streamlit's caches meet the store."""

from __future__ import annotations

import polars as pl
import streamlit as st

from pipelines import metrics
from pipelines.config import Settings, load_settings
from pipelines.identity import Identity, load_roles, resolve
from pipelines.store import Store

__all__ = ["get_settings", "get_store", "identity_of", "overview", "people", "realm_choices"]


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
