"""The CLI's way to a running server: while it holds the store, commands and reads go through its local API.

The server writes a 0600 file beside the store with its address and the local API's token; holding that token
means acting as any actor on that store, the same trust as being able to open the store file (README, Security).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import httpx

__all__ = [
    "ServerUnavailable",
    "call_server",
    "read_server_file",
    "remove_server_file",
    "server_file",
    "write_server_file",
]

# A command waits at most this long for the company's lock inside the server (then it is refused as busy); the
# connection itself gets a little longer than that plus the command's own work.
COMMAND_TIMEOUT = httpx.Timeout(600.0, connect=5.0)
VIEW_TIMEOUT = httpx.Timeout(60.0, connect=5.0)


class ServerUnavailable(Exception):
    """No server holds this store, or it did not answer; the message is one line."""


def server_file(db_path: str | Path) -> Path:
    return Path(f"{db_path}.server.json")


def write_server_file(db_path: str | Path, url: str, token: str) -> Path:
    """Readable by this user only: it holds the local API's token."""
    path = server_file(db_path)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump({"url": url, "token": token, "pid": os.getpid()}, fh)
    os.replace(tmp, path)
    return path


def read_server_file(db_path: str | Path) -> dict[str, Any] | None:
    try:
        info = json.loads(server_file(db_path).read_text())
    except (OSError, ValueError):
        return None
    return info if isinstance(info, dict) and info.get("url") and info.get("token") else None


def remove_server_file(db_path: str | Path) -> None:
    server_file(db_path).unlink(missing_ok=True)


def call_server(db_path: str | Path, route: str, payload: dict[str, Any]) -> dict[str, Any]:
    """POST a JSON request to the server holding this store; its JSON answer, or ServerUnavailable."""
    info = read_server_file(db_path)
    if info is None:
        raise ServerUnavailable(
            f"the store {db_path} is open in another process and no server answers for it; stop that process "
            "or start `synchealth serve`"
        )
    timeout = COMMAND_TIMEOUT if route.endswith("command") else VIEW_TIMEOUT
    try:
        answer = httpx.post(
            f"{info['url']}{route}",
            json=payload,
            headers={"authorization": f"Bearer {info['token']}"},
            timeout=timeout,
        )
    except httpx.TimeoutException:
        raise ServerUnavailable(f"the server on {info['url']} did not answer in time; see the app") from None
    except httpx.TransportError:
        raise ServerUnavailable(
            f"{db_path} is held by another process and the server on {info['url']} does not answer; stop that "
            "process or start `synchealth serve` again"
        ) from None
    if answer.status_code != 200:
        detail = ""
        try:
            detail = f": {answer.json().get('error')}"
        except ValueError:
            pass
        raise ServerUnavailable(
            f"the server on {info['url']} holds {db_path} and refused the request (HTTP {answer.status_code}{detail})"
        )
    return answer.json()
