"""Shared fixtures; and the two promises the suite keeps about itself:
no test is skipped under CI, and no test leaves an object in /dev/shm."""
import faulthandler
import itertools
import os
import signal
import sys

import pytest

# run-pytest's last resort (timeout -s USR1) shows where every thread is:
# in the log for a hang outside a test (at exit, say); inside one, whose
# output pytest captures, faulthandler_timeout has shown it already.
faulthandler.register(signal.SIGUSR1, file=sys.__stderr__, all_threads=True)

# The suite starts from a clean signal state, whatever its runner left:
# blocked or ignored signals survive exec and reach every child (a
# forkserver that never hears SIGCHLD leaves its workers unreaped, and the
# exit waits for them for ever; a child that ignores SIGINT cannot be
# interrupted).
signal.pthread_sigmask(signal.SIG_SETMASK, [])
for _sig in (signal.SIGTERM, signal.SIGCHLD, signal.SIGHUP, signal.SIGQUIT):
    if signal.getsignal(_sig) == signal.SIG_IGN:
        signal.signal(_sig, signal.SIG_DFL)
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

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
