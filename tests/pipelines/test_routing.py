"""Routing: ordered rules (first match wins), amount thresholds, defaults per dimension, the shipped config."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import polars as pl
import pytest
from fixtures import REALM, T0, tiny_snapshot

from pipelines.routing import DEFAULT_DUE_DAYS, DEFAULT_ROUTING, load_routing, route

ROOT = Path(__file__).resolve().parents[2]
NOW = T0


def _frame(*rows: tuple[str, str, str, str | None, str]) -> pl.DataFrame:
    """(dimension, reason, entity, amount, default owner_role) per exception."""
    return pl.DataFrame(
        [
            {"dimension": d, "reason": r, "entity": e, "amount": Decimal(a) if a else None, "owner_role": o}
            for d, r, e, a, o in rows
        ],
        schema={
            "dimension": pl.String,
            "reason": pl.String,
            "entity": pl.String,
            "amount": pl.Decimal(18, 2),
            "owner_role": pl.String,
        },
    )


def _config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "routing.toml"
    path.write_text(text)
    return path


TWO_RULES = """
[[rule]]
name = "tax"
reason_prefix = "mapping.tax_code"
owner = "tax.lead@acme.example"
due_days = 2

[[rule]]
name = "big"
amount_at_least = "10000.00"
owner = "controller@acme.example"
due_days = 1
"""


def test_rules_apply_in_order_and_the_first_match_wins(tmp_path: Path) -> None:
    frame = _frame(("mapping", "mapping.tax_code_missing", "bill", "12000.00", "admin"))
    tax_first = route(frame, load_routing(_config(tmp_path, TWO_RULES)), NOW).row(0, named=True)
    assert (tax_first["owner"], tax_first["routed_by"]) == ("tax.lead@acme.example", "tax")
    assert tax_first["due_by"] == NOW + timedelta(days=2)

    swapped = TWO_RULES.split("[[rule]]")
    big_first = route(frame, load_routing(_config(tmp_path, "[[rule]]".join(["", swapped[2], swapped[1]]))), NOW).row(
        0, named=True
    )
    assert (big_first["owner"], big_first["routed_by"]) == ("controller@acme.example", "big")
    assert big_first["due_by"] == NOW + timedelta(days=1)
    assert big_first["owner_role"] == "admin"  # a rule naming only a person keeps the role that may act


def test_amount_threshold_is_at_or_above_and_a_missing_amount_never_matches(tmp_path: Path) -> None:
    frame = _frame(
        ("source_data", "source_data.not_approved", "bill", "9999.99", "finance"),
        ("source_data", "source_data.not_approved", "bill", "10000.00", "finance"),
        ("source_data", "source_data.not_approved", "bill", "250000.00", "finance"),
        ("source_data", "source_data.not_approved", "vendor", None, "finance"),
    )
    routed = route(frame, load_routing(_config(tmp_path, TWO_RULES)), NOW)
    assert routed["owner"].to_list() == [None, "controller@acme.example", "controller@acme.example", None]
    assert routed["routed_by"].to_list() == ["default for source_data", "big", "big", "default for source_data"]


def test_without_a_matching_rule_the_dimension_defaults_apply() -> None:
    rows = [
        (d, f"{d}.x", "bill", None, "admin" if d in ("mapping", "transport") else "finance") for d in DEFAULT_DUE_DAYS
    ]
    routed = route(_frame(*rows), DEFAULT_ROUTING, NOW)
    for row, dimension in zip(routed.iter_rows(named=True), DEFAULT_DUE_DAYS, strict=True):
        assert row["due_by"] == NOW + timedelta(days=DEFAULT_DUE_DAYS[dimension])
        assert row["owner"] is None and row["routed_by"] == f"default for {dimension}"
    assert routed["owner_role"].to_list() == _frame(*rows)["owner_role"].to_list()


def test_the_shipped_config_routes_the_examples_of_the_issue() -> None:
    routing = load_routing(ROOT / "config" / "routing.toml")
    frame = _frame(
        ("mapping", "mapping.tax_code_missing", "invoice", "120.00", "admin"),  # tax-code gap: the tax lead
        ("source_data", "source_data.not_approved", "vendor", "300.00", "finance"),  # vendor: AP
        ("transport", "transport.timeout", "vendor", None, "admin"),  # transport: the admin on duty
        ("source_data", "source_data.incomplete", "bill", "12500.00", "finance"),  # source data: its AWRA owner
        ("source_data", "source_data.incomplete", "bill", "25.00", "finance"),  # no AWRA owner: finance on duty
        ("source_data", "source_data.closed_period", "invoice", "900.00", "finance"),  # closed period: controller
        ("provider_rejection", "provider_rejection.invalid_value", "bill", "12500.00", "finance"),  # $10,000+
    ).with_columns(
        pl.Series("record_owner", [None, None, None, "AP.Clerk@acme.example ", None, "ar.clerk@acme.example", None])
    )
    routed = route(frame, routing, NOW)
    assert routed.select("owner_role", "owner").rows() == [
        ("admin", "admin@demo.local"),
        ("finance", "finance@demo.local"),
        ("admin", "admin@demo.local"),
        ("finance", "ap.clerk@acme.example"),
        ("finance", "finance@demo.local"),
        ("finance", "controller@acme.example"),
        ("finance", "admin@demo.local"),
    ]
    assert [d - NOW for d in routed["due_by"]] == [timedelta(days=n) for n in (2, 3, 1, 5, 5, 2, 1)]
    assert routed["owner"].null_count() == 0  # one owner model: every item has a person


def test_on_duty_people_own_what_no_rule_gives_a_person_and_must_be_people(tmp_path: Path) -> None:
    config = _config(tmp_path, '[on_duty]\nfinance = "Fin.Lead@acme.example"\n')
    routed = route(_frame(("source_data", "source_data.void", "bill", None, "finance")), load_routing(config), NOW)
    assert routed["owner"].to_list() == ["fin.lead@acme.example"]
    with pytest.raises(ValueError, match="a person's email"):
        load_routing(_config(tmp_path, '[on_duty]\nfinance = "finance"\n'))
    with pytest.raises(ValueError, match="roles are"):
        load_routing(_config(tmp_path, '[on_duty]\nviewer = "v@acme.example"\n'))
    with pytest.raises(ValueError, match="one of them"):
        load_routing(_config(tmp_path, '[[rule]]\nname = "x"\nowner = "a@b.c"\nawra_owner = true\n'))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[[rule]]\nname = "x"\nowner_rol = "admin"\n', "unknown key"),
        ('[[rule]]\nname = "x"\nowner_role = "finance"\n', "only an admin can act on"),
        ('[[rule]]\nname = "x"\ndimension = "mapping"\nowner_role = "finance"\n', "only an admin can act on"),
        ('[[rule]]\nname = "x"\nowner_role = "viewer"\n', "finance or admin"),
        ('[[rule]]\nname = "x"\ndimension = "money"\nowner_role = "admin"\n', "unknown dimension money"),
        ('[[rule]]\nname = "x"\nowner = "controller"\n', "a person's email"),
        ('[[rule]]\nname = "x"\nowner_role = "admin"\ndue_days = 0\n', "above 0"),
        ('[[rule]]\nname = "x"\namount_at_least = "lots"\nowner_role = "admin"\n', "an amount like"),
        ('[[rule]]\nname = "x"\nentity = "bill"\n', "sets nothing"),
        ("[defaults.due_days]\nmoney = 3\n", "unknown dimension"),
    ],
)
def test_a_wrong_config_is_refused_with_what_to_change(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        load_routing(_config(tmp_path, text))


def test_a_missing_config_means_the_defaults(tmp_path: Path) -> None:
    assert load_routing(tmp_path / "none.toml") == DEFAULT_ROUTING


def test_new_exceptions_are_routed_inside_refresh_and_keep_their_person(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from world import ADMIN, World

    config = _config(
        tmp_path,
        """
[[rule]]
name = "bills of $30 or more to AP"
entity = "bill"
dimension = ["source_data", "mapping"]
amount_at_least = "30.00"
owner = "finance@demo.local"
owner_role = "admin"
due_days = 0.5
""",
    )
    snap = tiny_snapshot()
    snap["bill_lines"][0]["item_sku"] = "WID-220"  # BILL-1 ($30.50) waits on a mapping; BILL-2 ($5) is pending
    w = World(tmp_path, snap, routing_file=config)
    w.cycle()
    rows = dict(
        w.store.rows(
            "SELECT record_id || ' ' || reason, [owner, owner_role, routed_by, (due_by - opened_at)::VARCHAR] "
            "FROM exceptions WHERE realm_id = ?",
            [REALM],
        )
    )
    assert rows["BILL-1 mapping.item_missing"] == [
        "finance@demo.local", "admin", "bills of $30 or more to AP", "12:00:00",
    ]  # fmt: skip
    assert rows["BILL-2 source_data.not_approved"] == [None, "finance", "default for source_data", "5 days"]
    # A person's assignment stands while the cause lasts: later cycles do not route it again.
    eid = w.store.scalar("SELECT exception_id FROM exceptions WHERE record_id = 'BILL-1'")
    assert w.commands.assign(w.caller(ADMIN), [eid], to="admin@demo.local").ok
    w.cycle()
    assert w.store.rows("SELECT owner, status FROM exceptions WHERE exception_id = ?", [eid]) == [
        ("admin@demo.local", "assigned")
    ]
    w.store.close()
