"""What `Sandbox.handle()` returns, and the error the control side raises."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from qbo.sandbox.wire import dumps, loads

__all__ = ["DELIVER", "JSON_TYPE", "RESET", "TIMEOUT", "SandboxError", "SandboxResponse", "json_response"]

DELIVER, TIMEOUT, RESET = "deliver", "timeout", "reset"
JSON_TYPE = "application/json;charset=UTF-8"


@dataclass
class SandboxResponse:
    """What the adapters send: `action` is deliver, or simulate a timeout or a dropped connection."""

    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    action: str = DELIVER

    def json(self) -> Any:
        return loads(self.body)


class SandboxError(ValueError):
    """A control request or load that cannot be done; the control API answers it with 400 or 404."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def json_response(status: int, payload: Any, headers: dict[str, str] | None = None) -> SandboxResponse:
    return SandboxResponse(status, {"content-type": JSON_TYPE, **(headers or {})}, dumps(payload))
