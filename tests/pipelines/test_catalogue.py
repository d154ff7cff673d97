"""One catalogue behind the Help page and the queue: every reason the app can give has its words, fix and owner."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from fixtures import REALM, T0

from pipelines.catalogue import DIMENSION_GUIDE, catalogue, explain, search
from pipelines.mappings import KINDS
from pipelines.store import Store
from qbo.faults import CATALOGUE, DIMENSIONS
from schemas.readiness import RULES


def test_every_source_reason_is_in_the_catalogue_once_with_its_words() -> None:
    frame = catalogue()
    assert frame["reason"].is_unique
    expected = (
        {r.reason for r in RULES} | set(CATALOGUE) | {f"mapping.{k}_{s}" for k in KINDS for s in ("missing", "stale")}
    )
    assert expected <= set(frame["reason"])
    assert set(frame["dimension"]) == set(DIMENSIONS) == set(DIMENSION_GUIDE)
    for row in frame.iter_rows(named=True):
        assert row["reason"].startswith(row["dimension"] + ".")
        assert row["explanation"] and row["fix"] and row["escalate_to"] and row["evidence"], row["reason"]
        assert row["owner_role"] in ("finance", "admin")
    fault = frame.filter(frame["reason"] == "provider_rejection.business_rule").row(0, named=True)
    assert fault["explanation"] == CATALOGUE["provider_rejection.business_rule"].explanation
    assert fault["qbo_codes"] == "6000" and "intuit_tid" in fault["evidence"]
    assert (
        "readiness check; QuickBooks answer"
        in frame.filter(frame["reason"] == "source_data.closed_period")["found_by"].item()
    )


def test_every_reason_a_demo_company_raises_has_a_catalogue_row(tmp_path: Path) -> None:
    """The demo seeds every kind of problem; none may reach the queue without its words."""
    from pipelines.demo.company import write_demo
    from pipelines.exceptions import refresh_exceptions
    from pipelines.ingest import ingest_snapshot
    from pipelines.pull import load_company_file
    from pipelines.readiness import run_check

    write_demo(tmp_path, scale=600, realm_id=REALM, as_of=T0.date())
    with Store(tmp_path / "demo.duckdb") as store:
        ingest_snapshot(store, tmp_path / "awra", realm_id=REALM, now=T0)
        load_company_file(store, json.loads((tmp_path / "qbo-company.json").read_text()), datetime.now(UTC))
        run_check(store, REALM, now=T0)
        refresh_exceptions(store, REALM, now=T0)
        raised = {r[0] for r in store.rows("SELECT DISTINCT reason FROM exceptions")}
    assert len(raised) >= 15
    assert raised - set(catalogue()["reason"]) == set()


def test_explain_and_search() -> None:
    import polars as pl

    frame = explain(pl.DataFrame({"reason": ["mapping.item_missing", "made.up"]}))
    assert frame["fix"][0].startswith("An admin maps the item SKU") and "no catalogue entry" in frame["fix"][1]
    assert set(search("closed")["reason"]) >= {"source_data.closed_period"}
    assert set(search(None, ["transport"])["dimension"]) == {"transport"}


def test_every_reason_has_a_title_and_a_decider_in_finance_words() -> None:
    """Pages name a reason by its title, never its code; the close meeting reads who decides."""
    import re

    from pipelines.catalogue import title_of

    frame = catalogue()
    code = re.compile(r"[a-z_]+\.[a-z_]+")
    for row in frame.iter_rows(named=True):
        assert row["title"] and not code.search(row["title"]), row["reason"]
        assert row["decides"] and not code.search(row["decides"]), row["reason"]
    assert frame["title"].is_unique
    assert title_of("source_data.closed_period") == "Dated in a closed QuickBooks period"
    assert frame.filter(frame["reason"] == "source_data.closed_period")["decides"].item() == "controller"
    assert not code.search(title_of("source_data.made_up")) and not code.search(title_of(None))


def test_every_command_a_fix_names_is_one_the_cli_accepts_and_reads_in_words() -> None:
    """A fix that names a CLI command (the admin's other way to map) must run as written, and on a page it must not
    read as a snake_case name (tax-code, not tax_code)."""
    import re
    import shlex

    from pipelines.cli import build_parser

    commands = [
        (row["reason"], command)
        for row in catalogue().iter_rows(named=True)
        for command in re.findall(r"`(synchealth [^`]+)`", row["fix"])
    ]
    assert {reason for reason, _ in commands} >= {f"mapping.{kind}_missing" for kind in KINDS}
    for reason, command in commands:
        assert not re.search(r"\b[a-z]+_[a-z_]+\b", command), (reason, command)
        args = build_parser().parse_args(shlex.split(command)[1:])  # argparse exits on anything it refuses
        if args.command == "map":
            assert args.kind.replace("-", "_") in {*KINDS, "vendor", "customer"}, (reason, command)
