"""Start a real django-q2 `qcluster` against the test database, in its own process group.

Run as a script, it is the cluster itself; with `--die-on-post`, every Sage Pro post
kills the worker process outright (SIGKILL), as an out-of-memory kill would.
"""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def cluster_env(database_url: str, **overrides: str) -> dict[str, str]:
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "portal.settings_test",
        "DATABASE_URL": database_url,
        "Q_WORKERS": "1",
        "Q_TIMEOUT": "3",
        "Q_RETRY": "5",
        "WORK_LEASE_SECONDS": "4",
        "Q_POLL": "0.1",
        "Q_LOG_LEVEL": "WARNING",
        "PYTHONPATH": str(ROOT),
    }
    env.update(overrides)
    return env


def start(
    database_url: str, *, die_on_post: bool = False, **overrides: str
) -> subprocess.Popen:
    args = [sys.executable, __file__] + (["--die-on-post"] if die_on_post else [])
    return subprocess.Popen(
        args,
        cwd=ROOT,
        env=cluster_env(database_url, **overrides),
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def kill(process: subprocess.Popen) -> None:
    """SIGKILL the cluster and every worker it forked: nothing gets to clean up."""
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait(10)


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        kill(process)


def wait_for(predicate, timeout: float, what: str) -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


if __name__ == "__main__":
    import django

    django.setup()
    if "--die-on-post" in sys.argv:
        from integrations.connectors.sagepro import SageProConnector

        def die(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
            os.kill(os.getpid(), signal.SIGKILL)

        SageProConnector.post_cash_receipt = die
        SageProConnector.post_cash_receipts = die  # the batched post
    from django.core.management import call_command

    call_command("qcluster")
