"""What the bench scripts share: a setup run in a fresh child process, and peak memory."""

from __future__ import annotations

import resource
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from typing import Any

__all__ = ["in_child", "peak_gb"]


def in_child(fn: Callable[..., Any], *args: Any) -> Any:
    """fn(*args) in a fresh (spawned) process: its memory is its own, and the measuring process starts clean."""
    with ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn")) as pool:
        return pool.submit(fn, *args).result()


def peak_gb(children: bool = False) -> float:
    """Peak RSS in GB of this process, or of its largest finished child (ru_maxrss is in KiB on Linux)."""
    who = resource.RUSAGE_CHILDREN if children else resource.RUSAGE_SELF
    return resource.getrusage(who).ru_maxrss / 1024 / 1024
