"""The period a page covers: a month (YYYY-MM) or all periods; by default the month being closed.

The month being closed is the month after QuickBooks' book close date, until that month is closed too; where no
close date is set, the previous month. It is never later than the current month.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta

from pipelines.store import Store

__all__ = ["ALL", "closing_period", "month_name", "period_bounds", "period_label", "recent_periods"]

ALL = "all"  # every period: no date filter


def period_bounds(period: str) -> tuple[date, date]:
    """'2026-11' -> (2026-11-01, 2026-12-01): the month's first day and the next month's."""
    try:
        start = date.fromisoformat(f"{period}-01")
    except ValueError:
        raise ValueError(f"a period is a month written YYYY-MM, not {period!r}") from None
    end = (start.replace(day=28) + timedelta(days=4)).replace(day=1)
    return start, end


def _month(day: date) -> str:
    return f"{day:%Y-%m}"


def closing_period(store: Store, realm_id: str, today: date | datetime) -> str:
    """The month being closed: the month after QuickBooks' book close date (the previous month where none is set),
    and never a month after the current one."""
    today = today.date() if isinstance(today, datetime) else today
    closed = store.scalar("SELECT book_close_date FROM qbo_company WHERE realm_id = ?", [realm_id])
    first = today.replace(day=1)
    if closed is None:
        return _month(first - timedelta(days=1))
    after = closed + timedelta(days=1)
    return _month(min(after, first))


def month_name(period: str) -> str:
    """'2026-11' -> 'November 2026'; 'all' -> 'all periods'."""
    if period == ALL:
        return "all periods"
    start, _ = period_bounds(period)
    return f"{start:%B %Y}"


def period_label(period: str) -> str:
    """How a headline names its scope: 'in November 2026' or 'in all periods'."""
    return f"in {month_name(period)}"


def recent_periods(today: date | datetime, closing: str, count: int = 12) -> list[str]:
    """The months a person may pick, newest first, the month being closed among them, then all periods."""
    today = today.date() if isinstance(today, datetime) else today
    months, year, month = [], today.year, today.month
    for _ in range(count):
        months.append(f"{year:04d}-{month:02d}")
        year, month = (year, month - 1) if month > 1 else (year - 1, 12)
    if closing not in months:
        months.append(closing)
    return [*months, ALL]
