"""Loaded by every Python process of `make test-later` (PYTHONPATH): time.sleep that works under faketime 0.9.10.

That run leaves the monotonic clock real (FAKETIME_DONT_FAKE_MONOTONIC=1), since faketime moves it but not the
deadline of a timed wait (sem_clockwait), and every wait with a timeout would never return. With it real, faketime
still shifts the absolute monotonic deadline Python's time.sleep passes to clock_nanosleep, which then fails with
EINVAL; this sleep waits the same time with select's relative timeout instead. Outside that run it does nothing.
"""

import os
import select
import time

if os.environ.get("FAKETIME") and os.environ.get("FAKETIME_DONT_FAKE_MONOTONIC") == "1":

    def _sleep(seconds: float) -> None:
        if seconds < 0:
            raise ValueError("sleep length must be non-negative")
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            select.select([], [], [], left)

    time.sleep = _sleep
