"""Shared fixtures; and the two promises the suite keeps about itself:
no test is skipped under CI, and no test leaves an object in /dev/shm."""
import faulthandler
import itertools
import os
import signal
import sys
import threading
import time

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


# GCC 12's AddressSanitizer runtime (the ASan build preloads it) is not
# fork-safe: a child forked while another thread is inside the sanitizer's
# allocator (a thread starting or ending, or a malloc without the GIL) inherits
# that lock held and deadlocks on its first allocation of that size
# (SizeClassAllocator64::GetFromAllocator in gdb). LLVM 18 took the locks
# around fork (llvm-project#75290); until then the suite's forks wait, with
# the GIL held, until every other thread sleeps. glibc's malloc needs none of
# this, so the release build runs without it.
def _quiesce_before_fork():
    me = str(threading.get_native_id())
    calm, deadline = 0, time.monotonic() + 2.0
    while calm < 2 and time.monotonic() < deadline:
        calm += 1
        for tid in os.listdir("/proc/self/task"):
            if tid == me:
                continue
            try:
                with open(f"/proc/self/task/{tid}/stat", "rb") as f:
                    state = f.read().rsplit(b")", 1)[1].split()[0]
            except (OSError, IndexError):
                continue              # gone
            if state not in (b"S", b"Z", b"X"):
                calm = 0
                os.sched_yield()      # keeps the GIL: no thread starts meanwhile
                break


if "libasan" in os.environ.get("LD_PRELOAD", ""):
    os.register_at_fork(before=_quiesce_before_fork)

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
