"""The process the chaos suite kills: `synchealth` commands in a row, with a short read timeout.

Run as `python chaos_driver.py READ_TIMEOUT COMMAND [COMMAND ...]`, each COMMAND one `synchealth` command line
(e.g. "pull", "--actor admin@demo.local sync"). Like a scheduler cycle, a failed step does not stop the next.
The exit code is the last command's.

The only change from `synchealth` itself is the HTTP read timeout: the product waits 30 s for QuickBooks, and a
sandbox timeout fault holds its answer longer than that, so every injected timeout would cost half a minute.
A shorter timeout keeps the run short and leaves the behaviour the same: httpx raises the same ReadTimeout.
"""

from __future__ import annotations

import shlex
import sys

import httpx

import pipelines.connection
from pipelines.cli import main


def run(argv: list[str]) -> int:
    read_timeout = float(argv[0])
    pipelines.connection._TIMEOUT = httpx.Timeout(read_timeout, connect=10.0)
    code = 0
    for command in argv[1:]:
        code = main(shlex.split(command))
    return code


if __name__ == "__main__":
    raise SystemExit(run(sys.argv[1:]))
