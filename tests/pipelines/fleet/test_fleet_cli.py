"""`synchealth worker` and `synchealth fleet` refuse bad input with one line on stderr and exit 2, before starting
anything (no cluster, no process); the sandbox refuses limits it does not know the same way."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SYNCHEALTH_")}
    return subprocess.run(
        [sys.executable, "-m", "pipelines.cli", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("worker",), "SYNCHEALTH_DB=postgresql://"),
        (("--db", "postgresql://nobody@127.0.0.1:1/none", "worker", "--concurrency", "0"), "--concurrency"),
        (("fleet", "--workers", "0"), "--workers must be between 1 and 32"),
        (("fleet", "--concurrency", "65"), "--concurrency must be between 1 and 64"),
        (("fleet", "--realms", "501"), "--realms must be between 1 and 500"),
        (("fleet", "--every", "0"), "--every must be a positive number"),
        (("fleet", "--time-scale", "-1"), "--time-scale must be positive"),
        (("fleet", "--port", "70000"), "--port must be between 0 and 65535"),
        (("sandbox", "--limits", "per_hour=5"), "unknown limit 'per_hour'"),
        (("sandbox", "--limits", "per_minute=0"), "per_minute must be a whole number of at least 1"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(args: tuple[str, ...], says: str) -> None:
    done = _run(*args)
    assert done.returncode == 2, (done.returncode, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and says in lines[0], done.stderr
    assert "Traceback" not in done.stderr


def test_the_workers_read_the_sandbox_s_time_scale_and_limits_from_the_environment() -> None:
    from pipelines.config import load_settings

    env = {"SYNCHEALTH_QBO_TIME_SCALE": "6", "SYNCHEALTH_QBO_LIMITS": "per_minute=60,batch_per_minute=4"}
    settings = load_settings(env, secrets_file=ROOT / "no-such-secrets.toml")
    assert settings.qbo_time_scale == 6 and settings.qbo_limits == (60, 4, 10)
    # Against real QuickBooks neither applies: its own minute and limits hold.
    real = load_settings({**env, "SYNCHEALTH_QBO_ENV": "sandbox"}, secrets_file=ROOT / "no-such-secrets.toml")
    assert real.qbo_time_scale == 1 and real.qbo_limits == (500, 40, 10)
    with pytest.raises(ValueError, match="SYNCHEALTH_QBO_LIMITS"):
        load_settings({"SYNCHEALTH_QBO_LIMITS": "per_minute=x"}, secrets_file=ROOT / "no-such-secrets.toml")
