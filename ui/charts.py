"""Altair charts and small render helpers shared by the Health and Trends pages.

Colours are the Okabe-Ito palette, which colour-blind viewers can tell apart; no chart relies on red against
green, and every bar also carries its number or name as text. Selections are named so that a page can turn a
click (`pick`) or a brushed time range (`when`) into a drill to the action queue.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from urllib.parse import urlencode

import altair as alt
import polars as pl

from pipelines.catalogue import DIMENSION_GUIDE
from qbo.faults import DIMENSIONS

__all__ = [
    "DIMENSION_COLORS",
    "DIMENSION_TITLES",
    "OKABE_ITO",
    "PRESENT_CSS",
    "STATE_COLORS",
    "codes_chart",
    "drill_link",
    "drill_url",
    "failures_chart",
    "ftr_chart",
    "funnel_chart",
    "money",
    "offenders_chart",
    "picked",
    "plain",
    "queue_page_path",
    "resolve_chart",
    "retry_chart",
    "states_chart",
    "table_view",
    "throughput_chart",
    "window",
]

OKABE_ITO = {
    "black": "#000000",
    "orange": "#E69F00",
    "sky_blue": "#56B4E9",
    "bluish_green": "#009E73",
    "yellow": "#F0E442",
    "blue": "#0072B2",
    "vermillion": "#D55E00",
    "reddish_purple": "#CC79A7",
    "grey": "#999999",
}
DIMENSION_COLORS = {
    "authorization": OKABE_ITO["black"],
    "mapping": OKABE_ITO["orange"],
    "source_data": OKABE_ITO["sky_blue"],
    "provider_rejection": OKABE_ITO["vermillion"],
    "duplicate_risk": OKABE_ITO["reddish_purple"],
    "transport": OKABE_ITO["blue"],
}
DIMENSION_TITLES = {d: DIMENSION_GUIDE[d].title for d in DIMENSIONS}
STATE_COLORS = {
    "synced": OKABE_ITO["bluish_green"],
    "ready": OKABE_ITO["sky_blue"],
    "queued": OKABE_ITO["blue"],
    "retry_scheduled": OKABE_ITO["yellow"],
    "ambiguous": OKABE_ITO["reddish_purple"],
    "needs_fix": OKABE_ITO["vermillion"],
    "blocked": OKABE_ITO["orange"],
    "not_ready": OKABE_ITO["black"],
    "excluded": OKABE_ITO["grey"],
}
_OUTCOME_COLORS = {
    "accepted": OKABE_ITO["bluish_green"],
    "transport": OKABE_ITO["blue"],
    "throttled": OKABE_ITO["sky_blue"],
    "ambiguous": OKABE_ITO["reddish_purple"],
    "duplicate": OKABE_ITO["yellow"],
    "rejected": OKABE_ITO["vermillion"],
    "authorization": OKABE_ITO["black"],
}
_ENTITY_COLORS = {
    "vendor": OKABE_ITO["black"],
    "customer": OKABE_ITO["grey"],
    "purchase_order": OKABE_ITO["yellow"],
    "bill": OKABE_ITO["orange"],
    "invoice": OKABE_ITO["blue"],
    "payment": OKABE_ITO["sky_blue"],
    "bill_payment": OKABE_ITO["reddish_purple"],
    "journal_entry": OKABE_ITO["vermillion"],
}
_KIND_COLORS = {
    "vendor": OKABE_ITO["black"],
    "customer": OKABE_ITO["grey"],
    "item": OKABE_ITO["orange"],
    "account": OKABE_ITO["blue"],
    "tax_code": OKABE_ITO["vermillion"],
    "class": OKABE_ITO["sky_blue"],
    "payment_method": OKABE_ITO["reddish_purple"],
}

# Presentation mode: no sidebar or toolbar, large type, wide content; readable when shared at 1920x1080.
PRESENT_CSS = """<style>
[data-testid="stSidebar"], [data-testid="stSidebarCollapsedControl"], [data-testid="stExpandSidebarButton"],
[data-testid="stHeader"], [data-testid="stToolbar"], [data-testid="stDecoration"] {display: none !important;}
[data-testid="stMainBlockContainer"], .block-container {max-width: 100% !important; padding: 1.2rem 2.4rem !important;}
[data-testid="stMain"] p, [data-testid="stMain"] li, [data-testid="stMain"] a {font-size: 1.3rem !important;}
[data-testid="stMain"] [data-testid="stMetricLabel"] p {font-size: 1.35rem !important;}
[data-testid="stMain"] [data-testid="stMetricValue"] p {font-size: 3.4rem !important; line-height: 1.15;}
[data-testid="stMain"] [data-testid="stMetricDelta"] p {font-size: 1.25rem !important;}
[data-testid="stMain"] [data-testid="stCaptionContainer"] p {font-size: 1.1rem !important;}
[data-testid="stTable"] td, [data-testid="stTable"] th {font-size: 1.2rem !important;}
h1 {font-size: 2.6rem !important;} h2, h3 {font-size: 1.9rem !important;}
</style>"""


def money(value: object, compact: bool = False) -> str:
    """$1,234 (whole dollars), or $1.2M / $34k when compact; a sign for changes is the caller's."""
    amount = Decimal(str(value or 0))
    sign = "-" if amount < 0 else ""
    amount = abs(amount)
    if compact and amount >= 1_000_000:
        return f"{sign}${amount / 1_000_000:.2f}M"
    if compact and amount >= 10_000:
        return f"{sign}${amount / 1_000:.0f}k"
    return f"{sign}${amount:,.0f}"


def drill_url(**filters: str) -> str:
    """The action queue's address with its filters (the page reads dimension, owner, entity, reason)."""
    return "/action_queue?" + urlencode({k: v for k, v in filters.items() if v})


def picked(event: object, name: str = "pick") -> list[dict]:
    """The points a click selected in a chart (`st.altair_chart(..., on_select="rerun")`'s answer)."""
    selection = _selection(event)
    value = selection.get(name) if isinstance(selection, dict) else None
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def window(event: object, field: str, name: str = "when") -> tuple[datetime, datetime] | None:
    """The brushed time range of a chart, as UTC datetimes; None when nothing is brushed."""
    selection = _selection(event)
    value = selection.get(name) if isinstance(selection, dict) else None
    bounds = value.get(field) if isinstance(value, dict) else None
    if not isinstance(bounds, list | tuple) or len(bounds) != 2:
        return None
    start, end = (_instant(b) for b in bounds)
    return (start, end) if start and end else None


def _selection(event: object) -> dict:
    if event is None:
        return {}
    selection = event.get("selection") if isinstance(event, dict) else getattr(event, "selection", None)
    return dict(selection) if selection else {}


def _instant(value: object) -> datetime | None:
    if isinstance(value, int | float):
        return datetime.fromtimestamp(value / 1000, tz=UTC)
    if isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
        return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    return None


def _scale(colors: dict[str, str], present: list[str] | None = None) -> alt.Scale:
    domain = [k for k in colors if present is None or k in present]
    return alt.Scale(domain=domain, range=[colors[k] for k in domain])


def _big(chart: alt.Chart, big: bool) -> alt.Chart:
    size = 18 if big else 12
    return chart.configure_axis(labelFontSize=size, titleFontSize=size).configure_legend(
        labelFontSize=size, titleFontSize=size
    )


def _room(frame: pl.DataFrame, factor: float = 1.6) -> alt.Scale:
    """An x scale with room to the right of the longest bar for its label."""
    top = int(frame["records"].max() or 0) if frame.height else 0
    return alt.Scale(domain=[0, max(top * factor, 1)], nice=False)


def _labels() -> alt.Axis:
    """A category axis that shows every label, long ones up to 280 pixels."""
    return alt.Axis(labelOverlap=False, labelLimit=280)


def _labelled(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.with_columns(
        pl.col("dollars").cast(pl.Float64).alias("dollars_value"),
        pl.format(
            "{} · {}",
            pl.col("records").map_elements(lambda n: f"{n:,}", return_dtype=pl.String),
            pl.col("dollars").map_elements(lambda d: money(d, compact=True), return_dtype=pl.String),
        ).alias("label"),
    ).drop("dollars")


def states_chart(frame: pl.DataFrame, big: bool = False) -> alt.Chart:
    """Records per state, one bar each in the engine's order, with the count and dollars written on it."""
    data = _labelled(frame.filter(pl.col("records") > 0)).with_columns(
        pl.col("state").str.replace_all("_", " ").alias("state_label")
    )
    order = data["state_label"].to_list()
    base = alt.Chart(data).encode(
        y=alt.Y("state_label:N", sort=order, title=None, axis=alt.Axis(labelOverlap=False, labelLimit=320)),
        x=alt.X("records:Q", title="Records", axis=alt.Axis(format=",d", tickMinStep=1), scale=_room(data)),
        tooltip=["state", alt.Tooltip("records:Q", format=","), alt.Tooltip("dollars_value:Q", format="$,.2f")],
    )
    bars = base.mark_bar().encode(
        color=alt.Color("state:N", scale=_scale(STATE_COLORS), legend=None),
    )
    text = base.mark_text(align="left", dx=4, fontSize=18 if big else 12).encode(text="label:N")
    return _big((bars + text).properties(height=(44 if big else 30) * max(len(order), 1) + 70), big)


def funnel_chart(frame: pl.DataFrame, big: bool = False) -> alt.Chart:
    """The readiness funnel to synced: records left at each stage, with the share of the source and dollars."""
    total = int(frame["records"][0]) if frame.height else 0
    data = _labelled(frame).with_columns(
        pl.format(
            "{} ({}%)",
            pl.col("label"),
            (pl.col("records") * 100 / max(total, 1)).round(1),
        ).alias("label")
    )
    order = data["stage"].to_list()
    base = alt.Chart(data).encode(
        y=alt.Y("stage:N", sort=order, title=None, axis=alt.Axis(labelOverlap=False, labelLimit=320)),
        x=alt.X(
            "records:Q", title="Records still in", axis=alt.Axis(format=",d", tickMinStep=1), scale=_room(data, 2.0)
        ),
        tooltip=["stage", alt.Tooltip("records:Q", format=","), alt.Tooltip("dollars_value:Q", format="$,.2f")],
    )
    bars = base.mark_bar(color=OKABE_ITO["blue"])
    text = base.mark_text(align="left", dx=4, fontSize=18 if big else 12).encode(text="label:N")
    return _big((bars + text).properties(height=(44 if big else 30) * len(order) + 70), big)


def failures_chart(frame: pl.DataFrame) -> alt.Chart:
    """Open problems per dimension at each check run: stacked areas, a brush on time, a click on a dimension."""
    data = frame.with_columns(
        pl.col("dollars").cast(pl.Float64),
        pl.col("dimension").replace_strict(DIMENSION_TITLES, default=pl.col("dimension")).alias("title"),
    )
    when = alt.selection_interval(name="when", encodings=["x"])
    pick = alt.selection_point(name="pick", fields=["dimension"], bind="legend", on="click")
    return (
        alt.Chart(data)
        .mark_area(opacity=0.9, interpolate="step-after")
        .encode(
            x=alt.X("checked_at:T", title="Check run"),
            y=alt.Y("records:Q", stack=True, title="Records with an open problem"),
            color=alt.Color("dimension:N", scale=_scale(DIMENSION_COLORS), title="Dimension"),
            opacity=alt.condition(pick, alt.value(0.9), alt.value(0.2)),
            tooltip=[
                alt.Tooltip("checked_at:T", title="checked", format="%Y-%m-%d %H:%M"),
                alt.Tooltip("title:N", title="dimension"),
                alt.Tooltip("records:Q", format=","),
                alt.Tooltip("dollars:Q", format="$,.0f"),
            ],
        )
        .add_params(when, pick)
        .properties(height=300)
    )


def ftr_chart(frame: pl.DataFrame) -> alt.Chart:
    """First attempts per period by entity (bars) and the first-time-right rate of all of them (line)."""
    rate = (
        frame.group_by("period")
        .agg(pl.col("first_attempts").sum(), pl.col("right_first_time").sum())
        .with_columns((pl.col("right_first_time") / pl.col("first_attempts")).alias("rate"))
    )
    pick = alt.selection_point(name="pick", fields=["entity"], on="click")
    frame = frame.with_columns(pl.col("period").dt.strftime("%Y-%m-%d").alias("day"))
    rate = rate.with_columns(pl.col("period").dt.strftime("%Y-%m-%d").alias("day"))
    bars = (
        alt.Chart(frame)
        .mark_bar()
        .encode(
            x=alt.X("day:O", title="First sent"),
            y=alt.Y("first_attempts:Q", title="Records first sent"),
            color=alt.Color(
                "entity:N", scale=_scale(_ENTITY_COLORS), title="Entity", legend=alt.Legend(orient="bottom", columns=4)
            ),
            opacity=alt.condition(pick, alt.value(0.95), alt.value(0.3)),
            tooltip=["period:T", "entity", "first_attempts", "right_first_time", alt.Tooltip("rate:Q", format=".1%")],
        )
        .add_params(pick)
    )
    line = (
        alt.Chart(rate)
        .mark_line(point=True, color=OKABE_ITO["black"], strokeDash=[6, 3])
        .encode(
            x="day:O",
            y=alt.Y(
                "rate:Q", title="First-time right (line)", axis=alt.Axis(format="%"), scale=alt.Scale(domain=[0, 1])
            ),
            tooltip=["period:T", alt.Tooltip("rate:Q", format=".1%", title="first-time right")],
        )
    )
    return alt.layer(bars, line).resolve_scale(y="independent").properties(height=340)


def retry_chart(frame: pl.DataFrame) -> alt.Chart:
    """Retries per period by the dimension of the failure retried, and how many of them worked (text)."""
    pick = alt.selection_point(name="pick", fields=["dimension"], on="click")
    data = frame.with_columns(
        (pl.col("retries") - pl.col("succeeded")).alias("failed_again"),
        pl.col("period").dt.strftime("%Y-%m-%d").alias("day"),
    )
    base = alt.Chart(data).encode(x=alt.X("day:O", title="Retried"))
    bars = base.mark_bar().encode(
        y=alt.Y("retries:Q", title="Retries"),
        color=alt.Color(
            "dimension:N",
            scale=_scale(DIMENSION_COLORS),
            title="Failure retried",
            legend=alt.Legend(orient="bottom", columns=4),
        ),  # fmt: skip
        opacity=alt.condition(pick, alt.value(0.95), alt.value(0.3)),
        tooltip=["period:T", "dimension", "retries", "succeeded", "failed_again", alt.Tooltip("rate:Q", format=".0%")],
    )
    per_day = (
        data.group_by("day")
        .agg(pl.col("retries").sum(), pl.col("succeeded").sum())
        .with_columns(pl.format("{}% ok", (pl.col("succeeded") * 100 / pl.col("retries")).round(0)).alias("ok"))
    )
    text = (
        alt.Chart(per_day)
        .mark_text(dy=-8, fontSize=12)
        .encode(x="day:O", y=alt.Y("retries:Q"), text="ok:N", tooltip=["day", "retries", "succeeded"])
    )
    return alt.layer(bars.add_params(pick), text).properties(height=340)


def resolve_chart(frame: pl.DataFrame, field: str) -> alt.Chart:
    """Median hours to resolve (bar) and the 90th percentile (tick) per dimension or owner."""
    data = frame.filter(pl.col("resolved") > 0)
    pick = alt.selection_point(name="pick", fields=[field], on="click")
    color = (
        alt.Color(f"{field}:N", scale=_scale(DIMENSION_COLORS), legend=None)
        if field == "dimension"
        else alt.value(OKABE_ITO["blue"])
    )
    base = alt.Chart(data).encode(y=alt.Y(f"{field}:N", sort="-x", title=None, axis=_labels()))
    bars = base.mark_bar().encode(
        x=alt.X("median_hours:Q", title="Hours to resolve (bar: median, tick: 90th percentile)"),
        color=color,
        opacity=alt.condition(pick, alt.value(0.95), alt.value(0.3)),
        tooltip=[field, "resolved", "median_hours", "p90_hours", "mean_hours", "still_open"],
    )
    ticks = base.mark_tick(color=OKABE_ITO["black"], thickness=3, size=18).encode(x="p90_hours:Q")
    return alt.layer(bars.add_params(pick), ticks).properties(height=34 * max(data.height, 1) + 70)


def codes_chart(frame: pl.DataFrame) -> alt.Chart:
    """The error codes behind the most failed attempts, with QuickBooks' message in the tooltip and as text."""
    pick = alt.selection_point(name="pick", fields=["reason"], on="click")
    top = int(frame["attempts"].max() or 1)
    base = alt.Chart(frame).encode(y=alt.Y("code:N", sort="-x", title="Code", axis=_labels()))
    bars = base.mark_bar().encode(
        x=alt.X("attempts:Q", title="Failed attempts", scale=alt.Scale(domain=[0, top * 2.2], nice=False)),
        color=alt.Color(
            "dimension:N",
            scale=_scale(DIMENSION_COLORS),
            title="Dimension",
            legend=alt.Legend(orient="bottom", columns=4),
        ),  # fmt: skip
        opacity=alt.condition(pick, alt.value(0.95), alt.value(0.3)),
        tooltip=["code", "reason", "message", "detail", "attempts", "records", "last_seen:T"],
    )
    text = base.mark_text(align="left", dx=4).encode(x="attempts:Q", text="message:N")
    return alt.layer(bars.add_params(pick), text).properties(height=40 * max(frame.height, 1) + 140)


def offenders_chart(frame: pl.DataFrame) -> alt.Chart:
    """Vendors, customers and reference values behind repeated failures, by records held back."""
    data = frame.with_columns(
        pl.format("{}: {}", pl.col("kind"), pl.coalesce(pl.col("name"), pl.col("value"))).alias("who"),
        pl.col("dollars").cast(pl.Float64),
    )
    pick = alt.selection_point(name="pick", fields=["kind", "value", "reason"], on="click")
    return (
        alt.Chart(data)
        .mark_bar()
        .encode(
            y=alt.Y("who:N", sort="-x", title=None, axis=_labels()),
            x=alt.X("records:Q", title="Records held back (all check runs)"),
            color=alt.Color("kind:N", scale=_scale(_KIND_COLORS), title="Kind"),
            opacity=alt.condition(pick, alt.value(0.95), alt.value(0.3)),
            tooltip=[
                "kind",
                "value",
                "name",
                "failures",
                "records",
                "runs",
                alt.Tooltip("dollars:Q", format="$,.0f"),
                "open_now",
                "reason",
            ],  # fmt: skip
        )
        .add_params(pick)
        .properties(height=26 * max(data.height, 1) + 70)
    )


def throughput_chart(frame: pl.DataFrame) -> alt.Chart:
    """Per sync run: records sent by outcome (stacked), with duration and speed in the tooltip."""
    outcomes = [o for o in _OUTCOME_COLORS if o in frame.columns]
    long = frame.unpivot(
        index=["run_id", "started_at", "trigger", "status", "seconds", "per_minute"],
        on=outcomes,
        variable_name="outcome",
        value_name="records",
    ).filter(pl.col("records") > 0)
    pick = alt.selection_point(name="pick", fields=["outcome"], on="click")
    return (
        alt.Chart(long)
        .mark_bar()
        .encode(
            x=alt.X("run_id:O", title="Sync run"),
            y=alt.Y("records:Q", title="Records sent"),
            color=alt.Color("outcome:N", scale=_scale(_OUTCOME_COLORS), title="Outcome"),
            opacity=alt.condition(pick, alt.value(0.95), alt.value(0.3)),
            tooltip=["run_id", "started_at:T", "trigger", "status", "outcome", "records", "seconds", "per_minute"],
        )
        .add_params(pick)
        .properties(height=300)
    )


def queue_page_path() -> str | None:
    """The Action queue page's file when another engineer's page is there (app_pages/action_queue.py)."""
    path = Path(__file__).resolve().parents[1] / "app_pages" / "action_queue.py"
    return "app_pages/action_queue.py" if path.exists() else None


_MARKDOWN = str.maketrans({c: "\\" + c for c in "\\`*_{}[]()<>#+-.!|~$:"})


def plain(text: object) -> str:
    """Text (from AWRA, QuickBooks or a person) for st.markdown, shown as it is: Markdown's characters escaped, so
    it cannot become a link, an image or formatting, and an email's @ wrapped in zero-width spaces."""
    return str(text or "—").translate(_MARKDOWN).replace("@", "\u200b@\u200b")


_ROW_STYLE = {
    "investigate": "background-color: #FBE3B0; font-weight: 700",  # Okabe-Ito orange, lightened
    "open": "background-color: #DCEBF7",  # Okabe-Ito blue, lightened
    "matches": "",
}


def table_view(
    frame: pl.DataFrame,
    *,
    labels: dict[str, str] | None = None,
    money_columns: tuple[str, ...] = (),
    drift: bool = False,
    present: bool = False,
    link_queue: bool = False,
) -> None:
    """A table of a Health page section: an HTML table in presentation mode (it grows with the type), else a grid.

    `drift` says per row, in words and with a background (never colour alone), whether the totals match, differ
    only by records still open in the queue, or differ for a reason someone must investigate; `link_queue` adds a
    link per row to the action queue filtered to its dimension, reason and owner. `labels` renames and picks the
    columns shown, in its order.
    """
    import streamlit as st
    from pandas.api.types import is_string_dtype

    data = frame.with_columns(pl.col(c).cast(pl.Float64) for c in money_columns if c in frame.columns)
    data = data.with_columns(pl.col(c).cast(pl.String) for c, t in data.schema.items() if t == pl.Date)
    if drift:
        differs = (pl.col("count_drift") != 0) | (pl.col("sum_drift") != 0)
        data = data.with_columns(
            pl.when(pl.col("to_investigate") > 0)
            .then(pl.format("⚠ {} to investigate", pl.col("to_investigate")))
            .when(differs)
            .then(pl.lit("open items only"))
            .otherwise(pl.lit("✓ matches"))
            .alias("check"),
            pl.when(pl.col("to_investigate") > 0)
            .then(pl.lit("investigate"))
            .when(differs)
            .then(pl.lit("open"))
            .otherwise(pl.lit("matches"))
            .alias("_row"),
        )
    if link_queue and not present:
        data = data.with_columns(
            pl.struct("dimension", "reason", "owner")
            .map_elements(
                lambda r: drill_url(dimension=r["dimension"], reason=r["reason"], owner=r["owner"]),
                return_dtype=pl.String,
            )
            .alias("queue")
        )
    names = dict(labels or {c: c for c in data.columns if not c.startswith("_")})
    first = {"queue": "Action queue"} if "queue" in data.columns else {}
    if drift:  # the verdict next to the entity, where a narrow screen still shows it
        key = next(iter(names))
        names = {key: names.pop(key), "check": "Check", **names}
    names = {**first, **names}
    rows = data["_row"].to_list() if drift else None
    shown = data.select(list(names)).rename(names).to_pandas()
    money_names = [names[c] for c in money_columns if c in names]
    text = [c for c in shown.columns if is_string_dtype(shown[c]) and c not in money_names] if present else []
    # one format call: a second one would reset the columns the first formatted
    styled = shown.style.format({**{c: money for c in money_names}, **{c: plain for c in text}}, na_rep="—")
    if rows is not None:
        styled = styled.apply(lambda row: [_ROW_STYLE[rows[row.name]]] * len(row), axis=1)
    if present:  # an HTML table, which grows with the type (text made `plain`: markdown would link each email)
        st.table(styled.hide(axis="index"))
        return
    config = {c: st.column_config.NumberColumn(c, format="dollar") for c in money_names}
    if "Action queue" in shown.columns:
        config["Action queue"] = st.column_config.LinkColumn("Action queue", display_text="open")
    st.dataframe(styled, hide_index=True, column_config=config)


def drill_link(filters: dict[str, str], what: str) -> None:
    """A link to the action queue filtered to what was clicked (a plain link while that page is not there)."""
    import streamlit as st

    label = f"Action queue for {what}: " + ", ".join(f"{k} = {v}" for k, v in filters.items())
    page = queue_page_path()
    if page:
        st.page_link(page, label=label, query_params=filters, icon=":material/filter_alt:")
    else:
        st.markdown(f":material/filter_alt: [{label}]({drill_url(**filters)})")
