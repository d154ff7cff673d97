"""Who is acting and what their role allows: the one place every write action checks."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

__all__ = ["ACTIONS", "ROLES", "Identity", "PermissionDeniedError", "load_roles", "require", "resolve"]

ROLES = ("viewer", "finance", "admin")

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
    "sync": ("admin",),
    "connect": ("admin",),
    "pull": ("admin",),
}


class PermissionDeniedError(Exception):
    """The actor's role does not allow the action; the message names the role it needs."""


@dataclass(frozen=True)
class Identity:
    """An actor (email) and the role the roles config gives them."""

    email: str
    role: str

    def can(self, action: str) -> bool:
        return self.role in ACTIONS.get(action, ROLES)


def load_roles(path: Path) -> dict[str, str]:
    """email -> role from the roles config; a missing file means everyone is a viewer."""
    if not path.is_file():
        return {}
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


def require(identity: Identity, action: str) -> None:
    """Refuse, with the role needed, when the identity may not perform the action."""
    if identity.can(action):
        return
    needed = " or ".join(ACTIONS[action])
    raise PermissionDeniedError(f"{action} needs the {needed} role; {identity.email} is a {identity.role}")
