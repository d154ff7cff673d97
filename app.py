"""Streamlit entry: page config, the shared sidebar (company, period, identity) and navigation."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from pipelines.views.period import month_name, recent_periods
from ui import data as page_data
from ui.data import get_settings, get_store, identity_of, people, realm_choices
from ui.guard import run_guarded

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


def _period_widget(store, realm: str) -> None:
    """The period every page covers; by default the month being closed. A `?period=` in the address (a shared link,
    presentation mode) sets it once; a change here writes it back, so the address always says what is shown."""
    closing = page_data.closing_period(store, realm)
    choices = recent_periods(page_data.page_now(), closing)
    wanted = st.query_params.get("period")
    if wanted in choices and wanted != st.session_state.get("_period_from_url"):
        st.session_state["_period_from_url"] = wanted
        st.session_state["period"] = wanted
    if st.session_state.get("period") not in choices:
        st.session_state["period"] = closing

    def label(period: str) -> str:
        return f"{month_name(period)} (being closed)" if period == closing else month_name(period).capitalize()

    def written_back() -> None:
        st.query_params["period"] = st.session_state["period"]
        st.session_state["_period_from_url"] = st.session_state["period"]

    st.selectbox("Period", choices, format_func=label, key="period", on_change=written_back)


def sidebar() -> None:
    """Company, period and identity: keyed widgets shared by every page through session_state."""
    settings = get_settings()
    store = get_store(str(settings.db_path))
    companies = realm_choices(store, settings)
    wanted = st.query_params.get("company")  # a drill link or a shared address names the company once
    if wanted in companies and wanted != st.session_state.get("_company_from_url"):
        st.session_state["_company_from_url"] = wanted
        st.session_state["realm"] = wanted
    with st.sidebar:
        st.selectbox("Company (QuickBooks realm)", companies, key="realm",
                     format_func=lambda realm: page_data.company_name(store, realm, with_id=False))  # fmt: skip
        _period_widget(store, st.session_state.get("realm") or settings.realm_id)
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
    run_guarded("the sidebar", sidebar)
    run_guarded(f"the {page.title} page", page.run)


run()
