"""Shared fixtures; and the two promises the suite keeps about itself:
no test is skipped under CI, and no test leaves an object in /dev/shm."""
import faulthandler
import itertools
import os
import signal

import pytest

# run-pytest's last resort (timeout -s USR1) shows where every thread is.
faulthandler.register(signal.SIGUSR1, all_threads=True)

_counter = itertools.count()


@pytest.fixture
def name():
    """A name no other test or run uses."""
    return f"py.{os.getpid()}.{next(_counter)}"


@pytest.fixture(autouse=True)
def _no_leftovers(request):
    prefix = f"shoal.py.{os.getpid()}."
    yield
    left = [f for f in os.listdir("/dev/shm") if f.startswith(prefix)]
    for f in left:
        os.unlink(os.path.join("/dev/shm", f))
    assert not left, f"{request.node.name} left {left} in /dev/shm"


def pytest_sessionfinish(session, exitstatus):
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = len(reporter.stats.get("skipped", [])) if reporter else 0
    if os.environ.get("CI") and skipped:
        reporter.write_line(f"FAIL: {skipped} test(s) skipped under CI")
        session.exitstatus = 1
