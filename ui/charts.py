"""Altair charts and small render helpers shared by the pages.

Colours are the Okabe-Ito palette (the theme's, `.streamlit/config.toml`), which colour-blind viewers can tell apart,
and one colour means one thing on every page: each kind of problem has its colour, and a record state, a sync
outcome or a reference value with a problem takes the colour of its kind; success is bluish green, waiting and
excluded are greys; entities are never coloured. No chart relies on red against green, and every bar also carries its
number or name as text. Selections are named so that a page can turn a click (`pick`) or a brushed time range
(`when`) into a drill to the action queue. Category axes get their order as a list (Vega drops a "sort by x" on
layered charts).
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
    "OUTCOME_COLORS",
    "OUTCOME_TITLES",
    "PRESENT_CSS",
    "STATE_COLORS",
    "SUCCESS",
    "blocked_trend_chart",
    "causes_chart",
    "codes_chart",
    "drill_link",
    "drill_url",
    "flow_chart",
    "ftr_chart",
    "funnel_chart",
    "money",
    "offenders_chart",
    "picked",
    "plain",
    "queue_page_path",
    "resolve_chart",
    "retry_chart",
    "outcomes_chart",
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
SUCCESS = OKABE_ITO["bluish_green"]
WAITING = "#BBBBBB"  # ready, queued: nothing wrong, the next run sends them
# A state takes the colour of the kind of problem that puts a record in it.
STATE_COLORS = {
    "synced": SUCCESS,
    "ready": WAITING,
    "queued": "#888888",
    "retry_scheduled": DIMENSION_COLORS["transport"],
    "ambiguous": DIMENSION_COLORS["duplicate_risk"],
    "needs_fix": DIMENSION_COLORS["provider_rejection"],
    "blocked": DIMENSION_COLORS["mapping"],
    "not_ready": DIMENSION_COLORS["source_data"],
    "excluded": OKABE_ITO["grey"],
}
# An attempt's outcome: accepted is success; a failure takes its kind of problem's colour.
OUTCOME_COLORS = {
    "accepted": SUCCESS,
    "transport": DIMENSION_COLORS["transport"],
    "throttled": "#7FB8DF",  # transport, lightened: QuickBooks asked to slow down
    "ambiguous": DIMENSION_COLORS["duplicate_risk"],
    "duplicate": "#E0A8C8",  # duplicate risk, lightened
    "rejected": DIMENSION_COLORS["provider_rejection"],
    "authorization": DIMENSION_COLORS["authorization"],
}
OUTCOME_TITLES = {
    "accepted": "accepted",
    "transport": "QuickBooks or network unavailable",
    "throttled": "slowed down by QuickBooks",
    "ambiguous": "no answer (looked up)",
    "duplicate": "possible duplicate",
    "rejected": "refused by QuickBooks",
    "authorization": "connection refused",
}
# A reference value or party behind repeated failures: the colour of the kind of problem it causes.
_KIND_DIMENSION = {"vendor": "source_data", "customer": "source_data"}


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


def _kinds(data: pl.DataFrame, title: str, columns: int) -> alt.Color:
    """Colour by kind of problem, the same colour for a kind on every chart; the legend lists only the kinds the chart
    shows, in `columns` columns (a legend in one row is cut off at 1280 px)."""
    present = data["dimension"].unique().to_list() if data.height else []
    return alt.Color(
        "dimension:N",
        scale=_scale(DIMENSION_COLORS, present),
        legend=alt.Legend(title=title, orient="bottom", columns=columns, labelLimit=300, labelExpr=_title_expr()),
    )


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
        tooltip=[
            alt.Tooltip("state_label:N", title="state"),
            alt.Tooltip("records:Q", format=","),
            alt.Tooltip("dollars_value:Q", title="dollars", format="$,.2f"),
        ],
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
        tooltip=[
            "stage",
            alt.Tooltip("records:Q", format=","),
            alt.Tooltip("dollars_value:Q", title="dollars", format="$,.2f"),
        ],
    )
    bars = base.mark_bar(color=OKABE_ITO["blue"])
    text = base.mark_text(align="left", dx=4, fontSize=18 if big else 12).encode(text="label:N")
    return _big((bars + text).properties(height=(44 if big else 30) * len(order) + 70), big)


def blocked_trend_chart(series: pl.DataFrame, big: bool = False) -> alt.Chart:
    """Blocked dollars each day of the last weeks (the last point is now), with the records in the tooltip."""
    data = series.with_columns(pl.col("dollars").cast(pl.Float64).alias("dollars_value"))
    base = alt.Chart(data).encode(
        x=alt.X("at:T", title=None, axis=alt.Axis(format="%b %d", labelAngle=0, tickCount=6)),
        y=alt.Y("dollars_value:Q", title="Dollars blocked", axis=alt.Axis(format="$.2~s")),
        tooltip=[
            alt.Tooltip("at:T", title="day", format="%Y-%m-%d"),
            alt.Tooltip("dollars_value:Q", title="dollars blocked", format="$,.0f"),
            alt.Tooltip("records:Q", title="records blocked", format=","),
        ],
    )
    area = base.mark_area(color=OKABE_ITO["blue"], opacity=0.18, interpolate="step-after")
    line = base.mark_line(color=OKABE_ITO["blue"], strokeWidth=3 if big else 2, interpolate="step-after")
    last = (
        alt.Chart(data.tail(1))
        .mark_point(color=OKABE_ITO["blue"], filled=True, size=120 if big else 60)
        .encode(x="at:T", y="dollars_value:Q")
    )
    return _big(alt.layer(area, line, last).properties(height=300 if big else 230), big)


def flow_chart(frame: pl.DataFrame, measure: str = "dollars", bucket: str = "day") -> alt.Chart:
    """Per day or week: newly blocked (up) and freed (down) as bars, and what stays blocked at the end (line, right
    axis); records or dollars. Brush a range of days (`when`); new and freed are greys, so no colour here claims a
    kind of problem."""
    value = "records" if measure == "records" else "dollars"
    fmt = ",d" if value == "records" else "$.2~s"
    label = "%b %d"
    data = frame.with_columns(
        pl.col(f"new_{value}").cast(pl.Float64).alias("new"),
        (-pl.col(f"freed_{value}").cast(pl.Float64)).alias("freed"),
        pl.col(f"open_{value}").cast(pl.Float64).alias("open"),
        pl.col("end").alias("when"),
    )
    long = data.unpivot(index=["when"], on=["new", "freed"], variable_name="change", value_name="amount")
    when = alt.selection_interval(name="when", encodings=["x"])
    width = 8 if bucket == "day" else 40
    bars = (
        alt.Chart(long)
        .mark_bar(size=width)
        .encode(
            x=alt.X("when:T", title="Day" if bucket == "day" else "Week ending", axis=alt.Axis(format=label)),
            y=alt.Y("amount:Q", title=f"Newly blocked (up) and freed (down), {value}", axis=alt.Axis(format=fmt)),
            color=alt.Color(
                "change:N",
                scale=alt.Scale(domain=["new", "freed"], range=["#555555", "#BBBBBB"]),
                legend=alt.Legend(
                    title=None, orient="top", labelExpr="datum.label == 'new' ? 'newly blocked' : 'freed'"
                ),
            ),
            tooltip=[
                alt.Tooltip("when:T", title="to", format="%Y-%m-%d"),
                alt.Tooltip("change:N", title="change"),
                alt.Tooltip("amount:Q", title=value, format=fmt.replace(".2~s", ",.0f")),
            ],
        )
        .add_params(when)
    )
    line = (
        alt.Chart(data)
        .mark_line(color=OKABE_ITO["blue"], strokeWidth=2.5, point=True)
        .encode(
            x="when:T",
            y=alt.Y(
                "open:Q",
                title=f"Blocked at the end ({value}, line)",
                axis=alt.Axis(format=fmt, titleColor=OKABE_ITO["blue"]),
            ),
            tooltip=[
                alt.Tooltip("when:T", title="at", format="%Y-%m-%d %H:%M"),
                alt.Tooltip("open:Q", title=f"blocked ({value})", format=fmt.replace(".2~s", ",.0f")),
            ],
        )
    )
    return alt.layer(bars, line).resolve_scale(y="independent").properties(height=320)


def causes_chart(frame: pl.DataFrame, measure: str = "dollars") -> alt.Chart:
    """What blocks the records now, by cause, biggest first, coloured by kind of problem; a click picks a cause."""
    value = "records" if measure == "records" else "dollars"
    data = frame.with_columns(
        pl.col("dollars").cast(pl.Float64).alias("dollars_value"),
        pl.col("records").cast(pl.Int64),
        pl.format(
            "{} · {}",
            pl.col("records").map_elements(lambda n: f"{n:,}", return_dtype=pl.String),
            pl.col("dollars").map_elements(lambda d: money(d, compact=True), return_dtype=pl.String),
        ).alias("label"),
    ).sort("dollars_value" if value == "dollars" else "records", descending=True)
    field = "dollars_value" if value == "dollars" else "records"
    order = data["cause"].to_list()
    top = float(data[field].max() or 1) if data.height else 1.0
    pick = alt.selection_point(name="pick", fields=["cause_reason", "cause"], on="click")
    base = alt.Chart(data).encode(
        y=alt.Y("cause:N", sort=order, title=None, axis=_labels()),
        x=alt.X(
            f"{field}:Q",
            title=f"Blocked now ({value})",
            scale=alt.Scale(domain=[0, top * 1.45], nice=False),
            axis=alt.Axis(format="$.2~s" if value == "dollars" else ",d"),
        ),  # fmt: skip
        tooltip=[
            "cause",
            alt.Tooltip("kind:N", title="kind of problem"),
            alt.Tooltip("records:Q", format=","),
            alt.Tooltip("dollars_value:Q", title="dollars", format="$,.2f"),
            alt.Tooltip("owner:N"),
            alt.Tooltip("decides:N", title="who decides"),
        ],
    )
    bars = base.mark_bar().encode(
        color=_kinds(data, "Kind of problem", 3),
        opacity=alt.condition(pick, alt.value(0.95), alt.value(0.3)),
    )
    text = base.mark_text(align="left", dx=4).encode(text="label:N")
    return alt.layer(bars.add_params(pick), text).properties(height=30 * max(data.height, 1) + 110)


def _title_expr() -> str:
    """A Vega expression that shows a dimension's title for its code (legends)."""
    cases = " : ".join(f"datum.label == '{d}' ? '{t}'" for d, t in DIMENSION_TITLES.items())
    return f"{cases} : datum.label"


def ftr_chart(frame: pl.DataFrame) -> alt.Chart:
    """Records first sent per period (bars, one neutral colour: entities carry no colour) and the share QuickBooks
    accepted at once (line, right axis)."""
    per = (
        frame.group_by("period")
        .agg(pl.col("first_attempts").sum(), pl.col("right_first_time").sum())
        .with_columns((pl.col("right_first_time") / pl.col("first_attempts")).alias("rate"))
        .sort("period")
    )
    pick = alt.selection_point(name="pick", fields=["period"], on="click")
    bars = (
        alt.Chart(per)
        .mark_bar(color="#888888")
        .encode(
            x=alt.X("period:T", title="First sent", axis=alt.Axis(format="%b %d")),
            y=alt.Y("first_attempts:Q", title="Records first sent (bars)"),
            opacity=alt.condition(pick, alt.value(0.95), alt.value(0.4)),
            tooltip=[
                alt.Tooltip("period:T", title="first sent", format="%Y-%m-%d"),
                alt.Tooltip("first_attempts:Q", title="first sent"),
                alt.Tooltip("right_first_time:Q", title="accepted at once"),
                alt.Tooltip("rate:Q", title="first-time right", format=".1%"),
            ],
        )
        .add_params(pick)
    )
    line = (
        alt.Chart(per)
        .mark_line(point=True, color=SUCCESS, strokeWidth=2.5)
        .encode(
            x="period:T",
            y=alt.Y(
                "rate:Q",
                title="First-time right (line)",
                axis=alt.Axis(format="%", titleColor=SUCCESS),
                scale=alt.Scale(domain=[0, 1]),
            ),  # fmt: skip
            tooltip=[
                alt.Tooltip("period:T", title="first sent", format="%Y-%m-%d"),
                alt.Tooltip("rate:Q", format=".1%", title="first-time right"),
            ],
        )
    )
    return alt.layer(bars, line).resolve_scale(y="independent").properties(height=320)


def retry_chart(frame: pl.DataFrame) -> alt.Chart:
    """Retries per period by the kind of failure retried, and how many of them worked (text)."""
    pick = alt.selection_point(name="pick", fields=["dimension"], on="click")
    data = frame.with_columns(
        (pl.col("retries") - pl.col("succeeded")).alias("failed_again"),
        pl.col("dimension").replace_strict(DIMENSION_TITLES, default=pl.col("dimension")).alias("kind"),
    )
    base = alt.Chart(data).encode(x=alt.X("period:T", title="Retried", axis=alt.Axis(format="%b %d")))
    bars = base.mark_bar(size=14).encode(
        y=alt.Y("retries:Q", title="Retries"),
        color=_kinds(data, "Failure retried", 1),
        opacity=alt.condition(pick, alt.value(0.95), alt.value(0.3)),
        tooltip=[
            alt.Tooltip("period:T", format="%Y-%m-%d"),
            alt.Tooltip("kind:N", title="failure retried"),
            "retries",
            "succeeded",
            alt.Tooltip("failed_again:Q", title="failed again"),
            alt.Tooltip("rate:Q", format=".0%", title="worked"),
        ],
    )
    per_day = (
        data.group_by("period")
        .agg(pl.col("retries").sum(), pl.col("succeeded").sum())
        .with_columns(pl.format("{}% ok", (pl.col("succeeded") * 100 / pl.col("retries")).round(0)).alias("ok"))
    )
    text = (
        alt.Chart(per_day)
        .mark_text(dy=-8, fontSize=12)
        .encode(x="period:T", y=alt.Y("retries:Q"), text="ok:N", tooltip=["retries", "succeeded"])
    )
    return alt.layer(bars.add_params(pick), text).properties(height=340)


def resolve_chart(frame: pl.DataFrame, field: str) -> alt.Chart:
    """Median days to resolve (bar) and the 90th percentile (tick) per kind of problem or owner, slowest first."""
    label = "kind" if field == "dimension" else field
    data = frame.filter(pl.col("resolved") > 0).sort(["median_days", label], descending=[True, False])
    order = data[label].to_list()
    pick = alt.selection_point(name="pick", fields=[field], on="click")
    color = (
        alt.Color(f"{field}:N", scale=_scale(DIMENSION_COLORS), legend=None)
        if field == "dimension"
        else alt.value(OKABE_ITO["grey"])  # people are not a kind of problem: no kind's colour
    )
    base = alt.Chart(data).encode(y=alt.Y(f"{label}:N", sort=order, title=None, axis=_labels()))
    bars = base.mark_bar().encode(
        x=alt.X("median_days:Q", title="Days to resolve"),
        color=color,
        opacity=alt.condition(pick, alt.value(0.95), alt.value(0.3)),
        tooltip=[
            alt.Tooltip(f"{label}:N", title="kind of problem" if field == "dimension" else "owner"),
            "resolved",
            alt.Tooltip("median_days:Q", title="median days"),
            alt.Tooltip("p90_days:Q", title="90th percentile days"),
            alt.Tooltip("mean_days:Q", title="mean days"),
            alt.Tooltip("still_open:Q", title="still open"),
        ],
    )
    ticks = base.mark_tick(color=OKABE_ITO["black"], thickness=3, size=18).encode(x="p90_days:Q")
    return alt.layer(bars.add_params(pick), ticks).properties(height=34 * max(data.height, 1) + 70)


def codes_chart(frame: pl.DataFrame) -> alt.Chart:
    """What QuickBooks answered to the most failed attempts (its code, an HTTP status, or no answer), most first,
    coloured by kind of problem, with QuickBooks' message as text."""
    data = frame.sort(["attempts", "code"], descending=[True, False])
    order = data["code"].to_list()
    pick = alt.selection_point(name="pick", fields=["reason"], on="click")
    top = int(data["attempts"].max() or 1)
    base = alt.Chart(data).encode(y=alt.Y("code:N", sort=order, title=None, axis=_labels()))
    bars = base.mark_bar().encode(
        x=alt.X("attempts:Q", title="Failed attempts", scale=alt.Scale(domain=[0, top * 2.2], nice=False)),
        color=_kinds(data, "Kind of problem", 3),
        opacity=alt.condition(pick, alt.value(0.95), alt.value(0.3)),
        tooltip=[
            alt.Tooltip("code:N", title="answer"),
            alt.Tooltip("title:N", title="what it means"),
            alt.Tooltip("message:N", title="QuickBooks said"),
            "attempts",
            "records",
            alt.Tooltip("last_seen:T", title="last seen", format="%Y-%m-%d %H:%M"),
        ],
    )
    text = base.mark_text(align="left", dx=4).encode(x="attempts:Q", text="message:N")
    return alt.layer(bars.add_params(pick), text).properties(height=40 * max(data.height, 1) + 140)


def offenders_chart(frame: pl.DataFrame) -> alt.Chart:
    """Vendors, customers and reference values behind repeated failures, by records held back, coloured by the kind
    of problem they cause."""
    data = frame.with_columns(
        pl.format(
            "{}: {}", pl.col("kind").str.replace_all("_", " "), pl.coalesce(pl.col("name"), pl.col("value"))
        ).alias("who"),
        pl.col("dollars").cast(pl.Float64),
        pl.coalesce(
            pl.col("kind").replace_strict(_KIND_DIMENSION, default=None, return_dtype=pl.String),
            pl.col("reason").str.split(".").list.first(),
        ).alias("dimension"),
    ).sort(["records", "dollars", "who"], descending=[True, True, False])
    order = data["who"].to_list()
    pick = alt.selection_point(name="pick", fields=["kind", "value", "reason"], on="click")
    return (
        alt.Chart(data)
        .mark_bar()
        .encode(
            y=alt.Y("who:N", sort=order, title=None, axis=_labels()),
            x=alt.X("records:Q", title="Records held back (all check runs)", axis=alt.Axis(format=",d", tickMinStep=1)),
            color=_kinds(data, "Kind of problem", 3),
            opacity=alt.condition(pick, alt.value(0.95), alt.value(0.3)),
            tooltip=[
                alt.Tooltip("who:N", title="who or what"),
                "failures",
                "records",
                alt.Tooltip("runs:Q", title="check runs"),
                alt.Tooltip("dollars:Q", format="$,.0f"),
                alt.Tooltip("open_now:N", title="still blocking"),
            ],  # fmt: skip
        )
        .add_params(pick)
        .properties(height=26 * max(data.height, 1) + 90)
    )


def outcomes_chart(frame: pl.DataFrame, run_field: str = "run_id") -> alt.Chart:
    """Per sync run: records sent by outcome (stacked), success in bluish green and each failure in its kind's
    colour, the same on Trends and Sync runs."""
    outcomes = [o for o in OUTCOME_COLORS if o in frame.columns]
    long = (
        frame.select(run_field, *outcomes)
        .unpivot(index=[run_field], on=outcomes, variable_name="outcome", value_name="records")
        .filter(pl.col("records") > 0)
        .with_columns(pl.col("outcome").replace_strict(OUTCOME_TITLES, default=pl.col("outcome")).alias("what"))
    )
    labels = " : ".join(f"datum.label == '{o}' ? '{t}'" for o, t in OUTCOME_TITLES.items()) + " : datum.label"
    pick = alt.selection_point(name="pick", fields=["outcome"], on="click")
    return (
        alt.Chart(long)
        .mark_bar()
        .encode(
            x=alt.X(f"{run_field}:O", title="Sync run"),
            y=alt.Y("records:Q", title="Records sent"),
            color=alt.Color(
                "outcome:N",
                scale=_scale(OUTCOME_COLORS),
                legend=alt.Legend(title="Outcome", labelExpr=labels, labelLimit=320),
            ),  # fmt: skip
            opacity=alt.condition(pick, alt.value(0.95), alt.value(0.3)),
            tooltip=[alt.Tooltip(f"{run_field}:O", title="run"), alt.Tooltip("what:N", title="outcome"), "records"],
        )
        .add_params(pick)
        .properties(height=300)
    )


def throughput_chart(frame: pl.DataFrame) -> alt.Chart:
    """Per sync run: records sent by outcome (stacked), the one outcome chart of every page."""
    return outcomes_chart(frame)


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
    config: dict = {c: st.column_config.NumberColumn(c, format="dollar") for c in money_names}
    for c in shown.columns:  # counts take little room, so that the money columns stay in view at 1280 pixels
        if c not in config and shown[c].dtype.kind in "iu":
            config[c] = st.column_config.NumberColumn(c, width="small", format="localized")
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
