"""Routing: the owner and due-by of a new exception, from ordered rules in config/routing.toml (first match wins)."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl

from pipelines.config import APP_ROOT
from pipelines.identity import FINANCE_DIMENSIONS
from qbo.faults import DIMENSIONS

if TYPE_CHECKING:
    from polars.expr.whenthen import ChainedThen, Then

__all__ = [
    "DEFAULT_DUE_DAYS",
    "DEFAULT_ROUTING",
    "Routing",
    "RoutingRule",
    "load_routing",
    "on_duty",
    "route",
]

# How long each kind of problem may stay open before it is overdue (and escalates), unless a rule says otherwise.
DEFAULT_DUE_DAYS: dict[str, float] = {
    "authorization": 1,
    "mapping": 3,
    "source_data": 5,
    "provider_rejection": 3,
    "duplicate_risk": 2,
    "transport": 1,
}
_OWNER_ROLES = ("finance", "admin")
_RULE_KEYS = {
    "name", "dimension", "reason_prefix", "entity", "amount_at_least", "owner_role", "owner", "awra_owner", "due_days",
}  # fmt: skip
_ENTITIES = (
    "vendor",
    "customer",
    "item",
    "account",
    "purchase_order",
    "bill",
    "invoice",
    "payment",
    "bill_payment",
    "journal_entry",
    "connection",
)


@dataclass(frozen=True)
class RoutingRule:
    """Conditions (all must hold; an empty one matches anything) and what a match sets."""

    name: str
    dimensions: tuple[str, ...] = ()
    reason_prefixes: tuple[str, ...] = ()
    entities: tuple[str, ...] = ()
    amount_at_least: Decimal | None = None
    owner_role: str | None = None
    owner: str | None = None
    due_days: float | None = None
    awra_owner: bool = False  # the record's own owner in AWRA (its owner field), when it has one

    def condition(self) -> pl.Expr:
        parts = [pl.lit(True)]
        if self.dimensions:
            parts.append(pl.col("dimension").is_in(self.dimensions))
        if self.reason_prefixes:
            parts.append(pl.any_horizontal(pl.col("reason").str.starts_with(p) for p in self.reason_prefixes))
        if self.entities:
            parts.append(pl.col("entity").is_in(self.entities))
        if self.amount_at_least is not None:
            parts.append((pl.col("amount") >= pl.lit(self.amount_at_least)).fill_null(False))
        return pl.all_horizontal(parts)


@dataclass(frozen=True)
class Routing:
    """The ordered rules, the default due-by per dimension, what counts as an urgent document, and the person on duty
    for each role: who owns an item no rule gives to a person (a role decides who may act, a person owns)."""

    rules: tuple[RoutingRule, ...] = ()
    due_days: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_DUE_DAYS))
    urgent_within_days: int = 7
    on_duty: dict[str, str] = field(default_factory=dict)


DEFAULT_ROUTING = Routing()


def _strings(rule: str, key: str, value: Any, allowed: tuple[str, ...] | None = None) -> tuple[str, ...]:
    values = (value,) if isinstance(value, str) else tuple(value)
    if not values or not all(isinstance(v, str) and v for v in values):
        raise ValueError(f"routing rule {rule!r}: {key} must be a text or a list of texts")
    if allowed is not None and (bad := [v for v in values if v not in allowed]):
        raise ValueError(f"routing rule {rule!r}: unknown {key} {', '.join(bad)}; one of {', '.join(allowed)}")
    return values


def _positive(where: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise ValueError(f"{where}: due_days must be a number of days above 0, not {value!r}")
    return float(value)


def _rule(number: int, raw: dict[str, Any]) -> RoutingRule:
    name = str(raw.get("name") or f"rule {number}")
    if unknown := sorted(set(raw) - _RULE_KEYS):
        raise ValueError(f"routing rule {name!r}: unknown key(s) {', '.join(unknown)}; keys are {sorted(_RULE_KEYS)}")
    dimensions = _strings(name, "dimension", raw["dimension"], DIMENSIONS) if "dimension" in raw else ()
    prefixes = _strings(name, "reason_prefix", raw["reason_prefix"]) if "reason_prefix" in raw else ()
    entities = _strings(name, "entity", raw["entity"], _ENTITIES) if "entity" in raw else ()
    amount = None
    if "amount_at_least" in raw:
        try:
            amount = Decimal(str(raw["amount_at_least"]))
        except InvalidOperation:
            raise ValueError(f'routing rule {name!r}: amount_at_least must be an amount like "10000.00"') from None
    role, owner, awra_owner = raw.get("owner_role"), raw.get("owner"), raw.get("awra_owner", False)
    if not isinstance(awra_owner, bool):
        raise ValueError(f"routing rule {name!r}: awra_owner must be true or false, not {awra_owner!r}")
    if awra_owner and owner is not None:
        raise ValueError(f"routing rule {name!r} names an owner and awra_owner = true: give it one of them")
    if role is None and owner is None and not awra_owner and "due_days" not in raw:
        raise ValueError(f"routing rule {name!r} sets nothing: give it owner_role, owner, awra_owner or due_days")
    if role is not None and role not in _OWNER_ROLES:
        raise ValueError(f"routing rule {name!r}: owner_role must be finance or admin, not {role!r}")
    if role == "finance" and (not dimensions or set(dimensions) - set(FINANCE_DIMENSIONS)):
        raise ValueError(
            f"routing rule {name!r} gives exceptions to the finance role but can match mapping, authorization or "
            f"transport ones, which only an admin can act on; limit it with dimension = {list(FINANCE_DIMENSIONS)}"
        )
    if owner is not None and (not isinstance(owner, str) or "@" not in owner):
        raise ValueError(f"routing rule {name!r}: owner must be a person's email, not {owner!r}")
    due = _positive(f"routing rule {name!r}", raw["due_days"]) if "due_days" in raw else None
    return RoutingRule(
        name, dimensions, prefixes, entities, amount, role, owner.lower() if owner else None, due, awra_owner
    )


def load_routing(path: Path | None = None) -> Routing:
    """The routing config; a missing file means the defaults (ARCHITECTURE.md owners, DEFAULT_DUE_DAYS)."""
    path = path or APP_ROOT / "config" / "routing.toml"
    if not path.is_file():
        return DEFAULT_ROUTING
    with path.open("rb") as fh:
        raw = tomllib.load(fh)
    if unknown := sorted(set(raw) - {"rule", "defaults", "queue", "on_duty"}):
        sections = "rule, defaults, queue, on_duty"
        raise ValueError(f"{path}: unknown section(s) {', '.join(unknown)}; sections are {sections}")
    people: dict[str, str] = {}
    for role, person in raw.get("on_duty", {}).items():
        if role not in _OWNER_ROLES:
            raise ValueError(f"{path}: [on_duty] names role {role!r}; roles are {', '.join(_OWNER_ROLES)}")
        if not isinstance(person, str) or "@" not in person:
            raise ValueError(f"{path}: [on_duty] {role} must be a person's email, not {person!r}")
        people[role] = person.strip().lower()
    due = dict(DEFAULT_DUE_DAYS)
    for dimension, days in raw.get("defaults", {}).get("due_days", {}).items():
        if dimension not in DIMENSIONS:
            raise ValueError(f"{path}: [defaults.due_days] names unknown dimension {dimension!r}")
        due[dimension] = _positive(f"{path} [defaults.due_days] {dimension}", days)
    urgent = raw.get("queue", {}).get("urgent_within_days", 7)
    if isinstance(urgent, bool) or not isinstance(urgent, int) or urgent < 0:
        raise ValueError(f"{path}: [queue] urgent_within_days must be a whole number of days, not {urgent!r}")
    rules = tuple(_rule(i, r) for i, r in enumerate(raw.get("rule", []), start=1))
    return Routing(rules, due, urgent, people)


def _first_match(rules: tuple[RoutingRule, ...], values: list[Any], default: pl.Expr) -> pl.Expr:
    """The value of the first rule whose condition holds; a matching rule that leaves it unset gives the default."""
    chain: Then | ChainedThen | None = None
    for rule, value in zip(rules, values, strict=True):
        then = default if value is None else value if isinstance(value, pl.Expr) else pl.lit(value)
        chain = pl.when(rule.condition()).then(then) if chain is None else chain.when(rule.condition()).then(then)
    return default if chain is None else chain.otherwise(default)


def on_duty(role: pl.Expr, routing: Routing) -> pl.Expr:
    """The person on duty for each row's role (None where the config names nobody)."""
    if not routing.on_duty:
        return pl.lit(None, pl.String)
    return role.replace_strict(routing.on_duty, default=None, return_dtype=pl.String)


def route(frame: pl.DataFrame, routing: Routing, now: datetime) -> pl.DataFrame:
    """Set owner_role, owner, due_by and routed_by on each row (dimension, reason, entity, amount, owner_role, and
    record_owner: the record's owner in AWRA, when known).

    The incoming owner_role is the default (the catalogue's, else the dimension's); the first matching rule
    replaces what it sets, and a rule naming only a person keeps the default role (the role that may act). The owner
    is always a person where the config allows: the rule's, the record's AWRA owner for an `awra_owner` rule, else
    the person on duty for the role.
    """
    rules = routing.rules
    if "record_owner" not in frame.columns:
        frame = frame.with_columns(pl.lit(None, pl.String).alias("record_owner"))
    default_days = pl.col("dimension").replace_strict(routing.due_days, default=3.0, return_dtype=pl.Float64)
    days = _first_match(rules, [r.due_days for r in rules], default_days)
    frame = frame.with_columns(
        _first_match(rules, [r.owner_role for r in rules], pl.col("owner_role")).alias("owner_role")
    )
    duty = on_duty(pl.col("owner_role"), routing)
    awra = pl.coalesce(pl.col("record_owner").str.strip_chars().str.to_lowercase(), duty)
    owners = [awra if r.awra_owner else r.owner for r in rules]
    return frame.with_columns(
        _first_match(rules, owners, duty).alias("owner"),
        (pl.lit(now) + pl.duration(seconds=(days * 86400).round(0).cast(pl.Int64))).alias("due_by"),
        _first_match(rules, [r.name for r in rules], pl.format("default for {}", pl.col("dimension"))).alias(
            "routed_by"
        ),
    )
