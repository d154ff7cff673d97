"""A private PostgreSQL cluster in a folder, for `synchealth fleet` and the tests: Debian's server binaries,
`initdb` and `pg_ctl`, run as an unprivileged user (the `postgres` account when this runs as root)."""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path

import psycopg

__all__ = ["Cluster", "ClusterUnavailableError", "find_binaries", "free_port"]


class ClusterUnavailableError(Exception):
    """PostgreSQL's server binaries are not on this machine (the message says how to get them)."""


def find_binaries() -> Path:
    """The folder holding initdb and pg_ctl: Debian's newest /usr/lib/postgresql/N/bin, else the PATH."""
    debian = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parent.parent.name))
    if debian:
        return debian[-1].parent
    found = shutil.which("initdb")
    if found:
        return Path(found).parent
    raise ClusterUnavailableError(
        "PostgreSQL's server is not installed (no initdb): `apt-get install postgresql` installs it"
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Cluster:
    """One private cluster: `start()` creates it in `folder` (about a second), `stop()` ends it."""

    folder: Path
    port: int = 0

    def __post_init__(self) -> None:
        self.folder = Path(self.folder)
        self.port = self.port or free_port()
        self._bin = find_binaries()
        self._user = "postgres" if os.geteuid() == 0 else None

    @property
    def url(self) -> str:
        return self.database_url("postgres")

    def database_url(self, name: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{name}"

    def _run(self, *args: str) -> None:
        command = [str(self._bin / args[0]), *args[1:]]
        if self._user:
            command = ["runuser", "-u", self._user, "--", *command]
        done = subprocess.run(command, capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            raise RuntimeError(f"{args[0]} failed: {(done.stderr or done.stdout).strip()[-500:]}")

    def start(self) -> Cluster:
        self.folder.mkdir(parents=True, exist_ok=True)
        data = self.folder / "data"
        if self._user:
            entry = pwd.getpwnam(self._user)
            os.chown(self.folder, entry.pw_uid, entry.pw_gid)
        if not (data / "PG_VERSION").exists():
            self._run("initdb", "-D", str(data), "-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8")
        options = (
            f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200 "
            "-c autovacuum_naptime=10"  # fresh planner statistics soon after the bulk inserts of a test or a bench
        )
        self._run("pg_ctl", "-D", str(data), "-o", options, "-l", str(self.folder / "log"), "-w", "start")
        return self

    def stop(self) -> None:
        data = self.folder / "data"
        if (data / "postmaster.pid").exists():
            self._run("pg_ctl", "-D", str(data), "-m", "immediate", "-w", "stop")

    def create_database(self, name: str) -> str:
        """A new empty database in the cluster; returns its URL."""
        with psycopg.connect(self.url, autocommit=True) as con:
            con.execute(f'DROP DATABASE IF EXISTS "{name}"')
            con.execute(f'CREATE DATABASE "{name}"')
        return self.database_url(name)
