"""Streamlit entry: page config, the shared sidebar (company, period, identity) and navigation."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import streamlit as st

from ui import data as page_data
from ui.data import get_settings, get_store, identity_of, people, realm_choices

# Not "pages/": Streamlit treats that folder as the old automatic navigation and, on a first visit to a
# page URL, ran the page without the router (no sidebar).
PAGES = Path(__file__).parent / "app_pages"


HOME = "health.py"
# Sections and pages in the order the close meeting reads them. A page file not present is left out, so the
# router never points at a missing page.
NAVIGATION = {
    "Close": [
        ("health.py", "Health", ":material/monitor_heart:"),
        ("action_queue.py", "Action queue", ":material/assignment_late:"),
        ("trends.py", "Trends", ":material/insights:"),
    ],
    "Before sync": [
        ("readiness.py", "Readiness", ":material/fact_check:"),
        ("mappings.py", "Mappings", ":material/link:"),
    ],
    "Sync": [
        ("sync_runs.py", "Sync runs", ":material/sync:"),
        ("record.py", "Record", ":material/receipt_long:"),
        ("connection.py", "Connection", ":material/key:"),
    ],
    "Data": [
        ("overview.py", "Overview", ":material/database:"),
        ("audit.py", "Audit", ":material/history:"),
        ("help.py", "Help", ":material/help:"),
    ],
}


def _months(today: date, count: int = 12) -> list[str]:
    months, year, month = [], today.year, today.month
    for _ in range(count):
        months.append(f"{year:04d}-{month:02d}")
        year, month = (year, month - 1) if month > 1 else (year - 1, 12)
    return months


def sidebar() -> None:
    """Company, period and identity: keyed widgets shared by every page through session_state."""
    settings = get_settings()
    store = get_store(str(settings.db_path))
    with st.sidebar:
        st.selectbox("Company (QuickBooks realm)", realm_choices(store, settings), key="realm")
        st.selectbox("Period", _months(page_data.page_now().date()), key="period")
        st.divider()
        if _identity_provider():
            _signed_in(settings)
            return
        st.caption(":orange-badge[DEMO] Identity — **demo sign-in** (no identity provider configured)")
        choices = ["viewer@demo.local", *[p for p in people(settings) if p != "viewer@demo.local"]]
        email = st.selectbox("Acting as", choices, key="actor")
        st.caption(f"Role: **{identity_of(email, settings).role}**")


def _identity_provider() -> bool:
    """An OIDC provider is set up (`[auth]` in .streamlit/secrets.toml): people sign in, nobody picks a name."""
    return st.secrets.load_if_toml_exists() and "auth" in st.secrets


def _signed_in(settings) -> None:
    """st.login / st.user: the email the provider vouches for is the actor; its role comes from the roles config."""
    if st.user.get("is_logged_in"):
        email = str(st.user.get("email") or "")
        st.session_state["actor"] = email
        st.caption(f"Signed in as **{email}** · role **{identity_of(email, settings).role}**")
        st.button("Sign out", on_click=st.logout, key="sign_out")
    else:
        st.session_state["actor"] = None  # a viewer: reads everything, no write action without an identity
        st.caption("Not signed in: you can read every page; sign in to act.")
        st.button("Sign in", on_click=st.login, key="sign_in", type="primary")


def run() -> None:
    # A function, so that an end-to-end test can drive the router (as Streamlit's own hello app does).
    st.set_page_config(page_title="QBO Sync Health", page_icon=":material/sync:", layout="wide")
    sections = {
        section: [st.Page(PAGES / f, title=t, icon=i, default=(f == HOME)) for f, t, i in pages if (PAGES / f).exists()]
        for section, pages in NAVIGATION.items()
    }
    page = st.navigation({section: pages for section, pages in sections.items() if pages})
    # Shared widgets after st.navigation and before page.run(): created before navigation, a keyed
    # widget loses its new value on the rerun its own change triggers (seen in Streamlit 1.67).
    sidebar()
    page.run()


run()
