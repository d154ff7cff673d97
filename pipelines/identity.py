"""Who is acting and what their role allows: the one place every write action checks."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "ACTIONS",
    "EXCEPTION_ACTIONS",
    "FINANCE_DIMENSIONS",
    "ROLES",
    "SYSTEM",
    "SYSTEM_ROLE",
    "Identity",
    "PermissionDeniedError",
    "RolesFileMissing",
    "load_roles",
    "require",
    "resolve",
    "roles_for",
]

ROLES = ("viewer", "finance", "admin")
# The scheduler acts as "system": it may run what a cycle does, and nothing a person decides.
SYSTEM_ROLE = "system"

# action -> the roles that may perform it. Reads need no entry: every role reads everything.
ACTIONS: dict[str, tuple[str, ...]] = {
    "assign": ("finance", "admin"),
    "resolve": ("finance", "admin"),
    "exclude": ("finance", "admin"),
    "link_duplicate": ("finance", "admin"),
    "create_despite_duplicate": ("finance", "admin"),
    "map": ("admin",),
    "retry": ("admin",),
    "override": ("admin",),
    "sync": ("admin", SYSTEM_ROLE),
    "connect": ("admin",),
    "pull": ("admin", SYSTEM_ROLE),
    "ingest": ("admin", SYSTEM_ROLE),
    "allow_removal": ("admin",),
    "check": ("finance", "admin", SYSTEM_ROLE),
    "cycle": (SYSTEM_ROLE,),
}
# Exceptions finance acts on: the business's own data, what QuickBooks refused, possible duplicates. Mapping,
# authorization and transport exceptions need an admin, whatever the action.
FINANCE_DIMENSIONS = ("source_data", "provider_rejection", "duplicate_risk")
EXCEPTION_ACTIONS = ("assign", "resolve", "exclude")


def roles_for(action: str, dimension: str | None = None) -> tuple[str, ...]:
    """The roles that may perform an action; on an exception, the dimension can narrow them to admin."""
    roles = ACTIONS.get(action, ROLES)
    if dimension is not None and action in EXCEPTION_ACTIONS and dimension not in FINANCE_DIMENSIONS:
        roles = tuple(r for r in roles if r == "admin")
    return roles


class RolesFileMissing(Exception):
    """The roles config the settings name is not there; the message says which file and how to fix it."""


class PermissionDeniedError(Exception):
    """The actor's role does not allow the action; the message names the role it needs."""


@dataclass(frozen=True)
class Identity:
    """An actor (email) and the role the roles config gives them."""

    email: str
    role: str

    def can(self, action: str, dimension: str | None = None) -> bool:
        return self.role in roles_for(action, dimension)


SYSTEM = Identity("system", SYSTEM_ROLE)


def load_roles(path: Path) -> dict[str, str]:
    """email -> role from the roles config. A missing file is an error, not "everyone is a viewer": a store opened
    with the wrong settings must not quietly turn its admins into viewers."""
    if not Path(path).is_file():
        raise RolesFileMissing(
            f"the roles file {path} does not exist; create it (see config/roles.toml) or set SYNCHEALTH_ROLES_FILE"
        )
    with path.open("rb") as fh:
        people = tomllib.load(fh).get("people", {})
    bad = {email: role for email, role in people.items() if role not in ROLES}
    if bad:
        raise ValueError(f"{path}: unknown role(s) {bad}; roles are {', '.join(ROLES)}")
    return {email.strip().lower(): role for email, role in people.items()}


def resolve(email: str | None, roles: dict[str, str]) -> Identity:
    """The identity of an actor; unknown or missing actors are viewers."""
    clean = (email or "anonymous").strip().lower()
    return Identity(clean, roles.get(clean, "viewer"))


def require(identity: Identity, action: str, dimension: str | None = None) -> None:
    """Refuse, with the role needed, when the identity may not perform the action (on this dimension)."""
    if identity.can(action, dimension):
        return
    needed = " or ".join(r for r in roles_for(action, dimension) if r != SYSTEM_ROLE)  # people are not "system"
    what = f"{action} of a {dimension.replace('_', ' ')} exception" if dimension else action
    raise PermissionDeniedError(f"{what} needs the {needed} role; {identity.email} is a {identity.role}")
