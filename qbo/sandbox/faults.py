"""Injected faults (`--faults kind[@operation]=rate,...`): which API request fails and how, by seed."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

__all__ = ["FAULT_KINDS", "OPERATIONS", "POST_COMMIT", "PRE_COMMIT", "FaultPlan", "FaultRule"]

FAULT_KINDS = (
    "timeout_before_commit",
    "timeout_after_commit",
    "http_500",
    "http_503_html",
    "throttle_429_xml",
    "throttle_403_xml",
    "auth_401",
    "connection_reset",
    "try_again_6000",
)
# Answered after the request ran: a timeout (no answer) or the 6000 that asks to try again although the write was
# saved ("the entity saves anyway", as real QBO does). Every other kind answers before anything is stored; a reset
# drops the connection before the request runs.
POST_COMMIT = frozenset({"timeout_after_commit", "try_again_6000"})
PRE_COMMIT = frozenset(FAULT_KINDS) - POST_COMMIT
OPERATIONS = ("read", "query", "cdc", "batch", "create", "update", "delete", "void")
_GROUPS = {"write": frozenset({"create", "update", "delete", "void", "batch"})}


@dataclass(frozen=True)
class FaultRule:
    kind: str
    rate: float
    operations: frozenset[str] | None = None  # None: every operation

    def applies(self, operation: str) -> bool:
        return self.operations is None or operation in self.operations

    def __str__(self) -> str:
        target = "" if self.operations is None else "@" + "+".join(sorted(self.operations))
        return f"{self.kind}{target}={self.rate:g}"


class FaultPlan:
    """Draws one number per API request, in arrival order, from `random.Random(seed)`.

    The number u in [0, 1) is compared with the rates of the rules that apply to the request's
    operation, added up in the order the spec lists them: the first rule whose running sum exceeds u
    fires. So a request gets at most one fault, the same seed and request sequence give the same
    faults, and a retry is a new request with a new draw (it can succeed).
    """

    def __init__(self, rules: tuple[FaultRule, ...] = (), seed: int = 0) -> None:
        self.rules = tuple(rules)
        self.seed = seed
        self._rng = random.Random(seed)
        self.injected: dict[str, int] = {}
        self.draws = 0
        for operation in OPERATIONS:
            total = sum(rule.rate for rule in self.rules if rule.applies(operation))
            if total > 1.0 + 1e-9:
                raise ValueError(f"fault rates for {operation} add up to {total:g}, more than 1")

    @classmethod
    def parse(cls, spec: str | None, seed: int = 0) -> FaultPlan:
        """Parse `kind=rate[,kind@op=rate...]`; raises ValueError with a one-line reason."""
        rules = []
        for part in (spec or "").split(","):
            part = part.strip()
            if not part:
                continue
            name, sep, rate_text = part.partition("=")
            if not sep:
                raise ValueError(f"fault {part!r} needs a rate: kind=rate")
            kind, _, op_text = name.strip().partition("@")
            if kind not in FAULT_KINDS:
                raise ValueError(f"unknown fault kind {kind!r}; kinds: {', '.join(FAULT_KINDS)}")
            try:
                rate = float(rate_text)
            except ValueError:
                raise ValueError(f"fault rate {rate_text!r} is not a number") from None
            if not 0.0 <= rate <= 1.0:
                raise ValueError(f"fault rate {rate_text!r} must be between 0 and 1")
            operations = None
            if op_text:
                chosen: set[str] = set()
                for op in op_text.split("+"):
                    if op in _GROUPS:
                        chosen |= _GROUPS[op]
                    elif op in OPERATIONS:
                        chosen.add(op)
                    else:
                        raise ValueError(f"unknown operation {op!r}; use one of {', '.join(OPERATIONS)}, write")
                operations = frozenset(chosen)
            rules.append(FaultRule(kind, rate, operations))
        return cls(tuple(rules), seed)

    @property
    def spec(self) -> str:
        return ",".join(str(rule) for rule in self.rules)

    def draw(self, operation: str) -> str | None:
        """The fault for the next API request, or None."""
        value = self._rng.random()
        self.draws += 1
        running = 0.0
        for rule in self.rules:
            if not rule.applies(operation):
                continue
            running += rule.rate
            if value < running:
                self.injected[rule.kind] = self.injected.get(rule.kind, 0) + 1
                return rule.kind
        return None

    def describe(self) -> dict[str, Any]:
        return {"spec": self.spec, "seed": self.seed, "draws": self.draws, "injected": dict(self.injected)}
