"""Incidents: an unexpected error gets an id a person can quote, and its trace goes to the log under that id."""

from __future__ import annotations

import logging
import secrets
from pathlib import Path

__all__ = ["Incident", "configure_log", "log_path_for", "record_incident"]

log = logging.getLogger("synchealth.incident")


class Incident(Exception):
    """An unexpected failure already logged with its trace; the message is one line with the incident id."""

    def __init__(self, incident_id: str, what: str) -> None:
        super().__init__(f"{what} (incident {incident_id}; the details are in the log)")
        self.incident_id = incident_id
        self.what = what


def _summary(err: BaseException) -> str:
    text = " ".join(str(err).split())  # one line, whatever the error's own text
    return f"{type(err).__name__}: {text[:200]}" if text else type(err).__name__


def record_incident(err: BaseException, where: str) -> Incident:
    """Log the error's trace under a new incident id; return what a person is shown."""
    incident_id = "INC-" + secrets.token_hex(4).upper()
    log.error("incident %s in %s: %s", incident_id, where, _summary(err), exc_info=err)
    return Incident(incident_id, f"{where} failed unexpectedly")


def log_path_for(db_path: Path) -> Path:
    """The log sits beside the store it is about (data/synchealth.log for data/synchealth.duckdb)."""
    return db_path.with_suffix(".log") if str(db_path) != ":memory:" else Path("synchealth.log")


def configure_log(path: Path) -> None:
    """Incidents (with their traces) go to this file; a second call for the same file adds nothing."""
    target = str(path.resolve())
    if any(getattr(h, "baseFilename", None) == target for h in log.handlers):
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handler = logging.FileHandler(target, encoding="utf-8")
    except OSError:
        return  # an unwritable folder: the incident id is still shown; the trace goes to the default handlers
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
