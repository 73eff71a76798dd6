"""Loaded by every Python process of the ASan build's test run (run-pytest
puts this directory first on PYTHONPATH there): pytest, its forked and
spawned children, the examples it starts.

GCC 12's AddressSanitizer runtime is not fork-safe: a child forked while
another thread is inside the sanitizer's allocator (a thread starting or
ending, or C code allocating without the GIL) inherits that lock held and
deadlocks on its first allocation of that size (gdb: Mutex::Lock in
SizeClassAllocator64::GetFromAllocator). LLVM 18 takes the locks around
fork (llvm-project#75290). Until then each fork waits, with the GIL held,
until every other thread of the process sleeps. glibc's malloc needs none
of this: the release build runs without it."""
import os
import threading
import time


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
