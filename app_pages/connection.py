"""Connection: the QuickBooks connection per company, its token lifetimes and webhooks; Connect for admins."""

from datetime import datetime

import streamlit as st

from pipelines.catalogue import title_of
from ui import data as page_data
from ui.data import connect_link, connection_view, get_settings, get_store, identity_of


def _left(at: datetime | None) -> str:
    if at is None:
        return "—"
    seconds = (at - page_data.page_now()).total_seconds()
    if seconds <= 0:
        return "expired"
    if seconds < 3 * 3600:
        return f"{seconds / 60:.0f} min"
    if seconds >= 2 * 365 * 86400:
        return f"{seconds / (365 * 86400):.1f} years"
    return f"{seconds / 86400:.0f} days" if seconds >= 2 * 86400 else f"{seconds / 3600:.0f} h"


def _when(at: datetime | None) -> str:
    return f"{at:%Y-%m-%d %H:%M} UTC" if at else "—"


def _refreshes(at: datetime | None, count: int) -> str:
    if at is None:
        return "not yet refreshed since connecting"
    return f"{_when(at)} ({count:,} refresh{'' if count == 1 else 'es'} in all)"


def _changed(entities: dict | None) -> str:
    """A webhook's payload as words: which QuickBooks objects it said changed."""
    if not entities:
        return ""
    named = [f"{name} {', '.join(map(str, ids[:3]))}{' …' if len(ids) > 3 else ''}" for name, ids in entities.items()]
    return "— changed: " + "; ".join(named)


_EVENT_WORDS = {"connected": "Connected", "refreshed": "Tokens refreshed", "reconnect_needed": "Reconnect needed",
                "disconnected": "Disconnected"}  # fmt: skip


settings = get_settings()
store = get_store(str(settings.db_path))
realm = st.session_state.get("realm", settings.realm_id)
identity = identity_of(st.session_state.get("actor"), settings)

st.title("Connection")
# Only a realm id (digits) is echoed: the parameter comes from a link, and st.success renders Markdown.
if (connected := st.query_params.get("connected", "")).isdigit():
    st.success(f"QuickBooks company {connected} is connected.")


@st.fragment(run_every="30s")  # the countdowns move without a rerun of the whole page
def health_panel() -> None:
    view = connection_view(store, settings, realm)
    h = view["health"]
    badge = {"connected": ":green[connected]", "reconnect_needed": ":red[reconnect needed]"}
    st.markdown(f"**{h.company_name or realm}** — {badge.get(h.status, ':orange[' + h.status.replace('_', ' ') + ']')}")
    if h.status != "connected":
        st.error(f"{h.explanation or title_of(h.reason)}  \nFix: an admin connects QuickBooks with the button below.")
    for w in h.warnings:
        st.warning(f"**{title_of(w['reason'])}** — {w['detail']}")
    cols = st.columns(4)
    cols[0].metric("Access token expires in", _left(h.access_expires_at), help=_when(h.access_expires_at))
    rolling = f"{_when(h.refresh_expires_at)}: 100 days after its last use; every refresh restarts it"
    cols[1].metric("Refresh token lapses in", _left(h.refresh_expires_at), help=rolling)
    hard = f"{_when(h.refresh_hard_expires_at)}: Intuit's 5-year cap; only a reconnect moves it"
    cols[2].metric("Hard expiry (5-year cap) in", _left(h.refresh_hard_expires_at), help=hard)
    unsigned = "Webhook calls whose signature did not verify: refused unread (every company on this server)"
    cols[3].metric("Webhook signature failures", f"{h.webhook['signature_failures']:,}", help=unsigned)
    st.table(  # a table, not a grid: eleven short rows, read (and searched) as text, nothing cut off
        {
            "Setting": [
                "Environment",
                "API host",
                "Realm",
                "Scopes",
                "Connected by",
                "Connected at",
                "Last refresh",
                "Last successful call",
                "Last webhook event",
                "Webhook events",
                "Last signature failure",
            ],
            "Value": [
                h.environment or settings.qbo_env,
                h.host or "—",
                realm,
                " ".join(h.scopes) or "—",
                h.connected_by or "—",
                _when(h.connected_at),
                _refreshes(h.last_refresh_at, h.refresh_count),
                _when(h.last_call_at),
                f"{_when(h.webhook['last_event_at'])} {_changed(h.webhook['last_event'])}".strip(),
                str(h.webhook["events"]),
                _when(h.webhook["last_failure_at"]),
            ],
        },
        hide_index=True,
    )
    with st.expander("History"):
        events = view["events"]
        if events.is_empty():
            st.caption("No connection events yet: they start when an admin connects QuickBooks.")
        else:
            st.dataframe(
                {
                    "When": [_when(at) for at in events["occurred_at"]],
                    "What happened": [_EVENT_WORDS.get(e, e.replace("_", " ")) for e in events["event"]],
                    "Why": [title_of(r) if r else "" for r in events["reason"]],
                    "By": [a or "" for a in events["actor"]],
                    "Intuit request id": [t or "" for t in events["intuit_tid"]],
                    "Refresh token replaced": ["yes" if r else "" for r in events["rotated"]],
                },
                hide_index=True,
            )


health_panel()

st.subheader("Connect")
link = connect_link(identity)
if not identity.can("connect"):
    st.caption(f"Connecting QuickBooks needs the admin role; you are signed in as a {identity.role}.")
elif link is None:
    st.info("Connect runs through the server: start it with `synchealth serve` (or `make run`).")
else:
    ever = connection_view(store, settings, realm)["health"].connected_at is not None
    st.link_button("Reconnect QuickBooks" if ever else "Connect QuickBooks", link, type="primary")
    st.caption("Opens QuickBooks' sign-in in a new tab; it lands back on this page once the company is connected.")
