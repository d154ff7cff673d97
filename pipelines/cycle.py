"""One cycle: check every record, sync what is due, keep exceptions in step. Shared by the CLI and the server."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from pipelines.changes import trim_unread
from pipelines.config import Settings
from pipelines.exceptions import refresh_exceptions
from pipelines.readiness import CheckResult, run_check
from pipelines.routing import load_routing
from pipelines.store import Store
from pipelines.sync import SyncResult, sync_run
from qbo.client import QboClient

__all__ = ["CycleResult", "run_cycle"]


@dataclass(frozen=True)
class CycleResult:
    check: CheckResult
    sync: SyncResult
    exceptions: dict[str, int]


def run_cycle(
    store: Store,
    client: QboClient,
    settings: Settings,
    *,
    now: datetime,
    trigger: str,
    actor: str | None,
    only: Sequence[tuple[str, str]] | None = None,
    progress: Callable[[float, str], None] | None = None,
) -> CycleResult:
    """Readiness first (so nothing unready is sent), then the sync, then the exception queue."""
    check = run_check(store, client.realm_id, now=now, trigger=trigger, actor=actor)
    sync = sync_run(
        store,
        client,
        now=now,
        trigger=trigger,
        actor=actor,
        only=only,
        schedule=settings.retry_schedule,
        progress=progress,
    )
    routing = load_routing(settings.routing_file)
    exceptions = refresh_exceptions(store, client.realm_id, now=now, routing=routing)
    trim_unread(store)  # the change log stays bounded where no page refreshes the read model
    return CycleResult(check, sync, exceptions)
