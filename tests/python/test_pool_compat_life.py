"""shoal.Pool against the standard pools, on what must never take the
caller down or hang it (issue 16): a dropped pool, leaving ``with`` on an
exception or Ctrl-C (once, twice, three times), shutdown(cancel_futures),
Future.cancel() behind a running task, and interpreter exit with tasks
pending. Each test runs the same script in a subprocess against shoal.Pool
and the standard pool, and compares what the caller sees; and checks that
nothing of the pool is left: no worker alive, nothing in /dev/shm."""
import json
import os
import subprocess
import sys
import textwrap
import time

import pytest

_PRELUDE = textwrap.dedent("""
    import concurrent.futures, faulthandler, json, multiprocessing, os, signal, sys, threading, time
    import shoal
    faulthandler.register(signal.SIGUSR1, all_threads=True)  # _run's dump on a hang
    KIND = sys.argv[1]

    def make(n):
        if KIND == "shoal":
            return shoal.Pool(n)
        if KIND == "thread":
            return concurrent.futures.ThreadPoolExecutor(n)
        if KIND == "mp":
            return multiprocessing.Pool(n)
        return concurrent.futures.ProcessPoolExecutor(n)

    def nap(i):
        time.sleep(0.5)
        return i

    def fail_first(i):
        if i == 0:
            raise ValueError("first")
        time.sleep(0.5)
        return i

    def report(**kw):
        print(json.dumps(kw), flush=True)
""")


def _run(body, kind, timeout=30, args=(), until=None):
    """Run @body (after _PRELUDE) with KIND=@kind in a session of its own:
    its pid, the JSON lines it printed (merged), its exit code (None if it
    hung: then its threads' stacks go to its stderr and its whole process
    group is killed), its wall time and its stderr. Output goes to files: a worker left behind must not hold a
    pipe open. With @until (a key), a script that has reported it is not
    waited for any further: its exit code is None and its session is
    killed (a standard pool that hangs at exit after its caller's report)."""
    import signal
    import tempfile
    t0 = time.monotonic()
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        p = subprocess.Popen([sys.executable, "-c", _PRELUDE + textwrap.dedent(body), kind, *args],
                             stdout=out, stderr=err, text=True, start_new_session=True)
        try:
            if until is None:
                rc = p.wait(timeout=timeout)
            else:
                rc = _wait_for_report(p, out, until, timeout)
        except subprocess.TimeoutExpired:
            rc = None
            _dump_stacks(p)
        if rc is None or kind != "shoal":
            _killpg(p.pid)  # what it left (shoal's: see _settle)
        p.wait()
        wall = time.monotonic() - t0
        out.seek(0)
        err.seek(0)
        text, errs = out.read(), err.read()
    res = {}
    for line in text.splitlines():
        if line.startswith("{"):
            res.update(json.loads(line))
    return p.pid, res, rc, wall, errs


def _wait_for_report(p, out, key, timeout):
    """Wait until @p exits (its exit code) or has printed a report with
    @key to @out (None); subprocess.TimeoutExpired after @timeout."""
    deadline = time.monotonic() + timeout
    fd = out.fileno()
    while True:
        try:
            return p.wait(timeout=0.02)
        except subprocess.TimeoutExpired:
            if time.monotonic() > deadline:
                raise
        # pread: the script writes through the same file offset.
        for line in os.pread(fd, os.fstat(fd).st_size, 0).decode(errors="replace").splitlines():
            try:
                if line.startswith("{") and key in json.loads(line):
                    return None
            except ValueError:
                continue  # a line still being written


def _dump_stacks(p):
    """A hung script's threads' stacks, to its stderr (faulthandler, set
    up by _PRELUDE), and what each process of its session waits in, so a
    hang that happens once in many runs says where."""
    import signal
    try:
        p.send_signal(signal.SIGUSR1)
        time.sleep(1)
    except ProcessLookupError:
        return
    for pid in _alive(p.pid):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ")[:80].decode(errors="replace")
            waits = []
            for t in os.listdir(f"/proc/{pid}/task"):
                with open(f"/proc/{pid}/task/{t}/wchan") as f:
                    waits.append(f.read())
        except OSError:
            continue
        sys.stderr.write(f"hung: pid {pid} {cmd!r} waits in {waits}\n")


def _killpg(pgid):
    import signal
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _shm_of(pid):
    """What a process's pools and arrays left in /dev/shm: boards, spilled
    tasks and results, half-made (.tmp) objects, arrays (a worker killed
    while it held one, and never reaped, leaves it stale)."""
    return [f for f in os.listdir("/dev/shm") if f"pool.{pid}." in f or f"a.{pid:x}." in f]


def _alive(sid):
    """The processes of session @sid (a script and all it started: _run
    gives each its own) still running, zombies aside."""
    left = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == sid and fields[0] != "Z":
            left.append(int(d))
    return left


def _settle(pid, within=5.0):
    """Wait (bounded) until nothing the script @pid started runs and its
    pools' objects are gone from /dev/shm; what is left then."""
    end = time.monotonic() + within
    while True:
        alive, shm = _alive(pid), _shm_of(pid)
        if (not alive and not shm) or time.monotonic() > end:
            _killpg(pid)  # measured: now nothing may outlive the test
            return alive, shm
        time.sleep(0.05)


_DROPPED = """
    import gc
    for rnd in range(int(sys.argv[2])):
        for i in range(8):
            p = make(2)
            if rnd % 2:
                list(p.map(abs, range(10)))    # a map() whose results were read
            else:
                p.submit(abs, 1).result()
            del p
    q = make(2)
    total = sum(q.map(abs, range(100)))
    q.shutdown()
    # ~3 s for the dropped pools to stop (bounded, polled).
    end = time.monotonic() + 3
    while time.monotonic() < end:
        kids = [c for c in multiprocessing.active_children()]
        if not kids:
            break
        time.sleep(0.05)
    report(total=total, kids=len(multiprocessing.active_children()))
"""


def test_dropped_pools_shut_down():
    """8 pools made and dropped without shutdown(), then another used, in
    rounds: the parent never crashes (the C pool's threads once called back
    into a Pool already gone), no worker is alive ~3 s later and no board
    is left, as with ProcessPoolExecutor."""
    _, std, rc, _, err = _run(_DROPPED, "std", args=("1",))
    assert rc == 0, err[-2000:]
    assert std["kids"] == 0
    pid, res, rc, _, err = _run(_DROPPED, "shoal", args=("6",))
    assert rc == 0, f"exit {rc}: {err[-2000:]}"
    assert res["total"] == std["total"] == 4950
    assert res["kids"] == 0
    assert _settle(pid) == ([], [])


_DROPPED_BUSY = """
    p = make(2)
    fs = [p.submit(nap, i) for i in range(6)]
    del p
    report(results=[f.result(timeout=30) for f in fs])
"""


def test_dropped_pool_finishes_its_tasks():
    """A pool dropped with tasks queued runs them, then shuts down: the
    Futures the caller kept get their results (ProcessPoolExecutor's
    behaviour)."""
    _, std, rc, _, err = _run(_DROPPED_BUSY, "std")
    assert rc == 0, err[-2000:]
    pid, res, rc, _, err = _run(_DROPPED_BUSY, "shoal")
    assert rc == 0, err[-2000:]
    assert res["results"] == std["results"] == list(range(6))
    assert _shm_of(pid) == []


_WITH_RAISES = """
    t0 = time.monotonic()
    try:
        with make(2) as p:
            list(p.map(fail_first, range(64)))
    except ValueError:
        report(out=time.monotonic() - t0)
"""


_WITH_RAISES_ASYNC = """
    t0 = time.monotonic()
    try:
        with make(2) as p:
            rs = [p.apply_async(fail_first, (i,)) for i in range(64)]
            rs[0].get(timeout=30)
    except ValueError:
        report(out=time.monotonic() - t0)
"""


def test_with_apply_async_and_an_exception_returns_fast():
    """The same with apply_async() against multiprocessing.Pool, whose
    __exit__ terminates: leaving the block on the first task's exception
    does not wait for the 63 others (ProcessPoolExecutor's would: it
    cancels nothing)."""
    _, std, rc, _, err = _run(_WITH_RAISES_ASYNC, "mp")
    assert rc == 0, err[-2000:]
    pid, res, rc, _, err = _run(_WITH_RAISES_ASYNC, "shoal")
    assert rc == 0, err[-2000:]
    assert "out" in res, err[-2000:]
    assert res["out"] < max(std["out"] + 1.5, 3.0), (res, std)
    assert _settle(pid) == ([], [])


def test_with_and_an_exception_returns_fast():
    """The first task raises, 64 tasks of 0.5 s queued on 2 workers: the
    exception reaches the caller about as soon as with ProcessPoolExecutor
    (the tasks not started, prefetched ones included, are cancelled), not
    after all 64 have run (16 s)."""
    _, std, rc, _, err = _run(_WITH_RAISES, "std")
    assert rc == 0, err[-2000:]
    pid, res, rc, _, err = _run(_WITH_RAISES, "shoal")
    assert rc == 0, err[-2000:]
    assert "out" in res, err[-2000:]
    assert res["out"] < max(std["out"] + 1.5, 3.0), (res, std)
    assert _settle(pid) == ([], [])


_SIGINT = """
    n = int(sys.argv[2])
    def interrupt():
        time.sleep(1.0)
        for _ in range(n):
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.15)
    def hold(a):
        # Attached in the worker: a reference of its own while it runs.
        a.numpy()[0] += 1
        time.sleep(0.5)
    arr = shoal.Array.zeros((1000,), "float64")
    t0 = time.monotonic()
    threading.Thread(target=interrupt, daemon=True).start()
    try:
        try:
            with make(2) as p:
                list(p.map(hold, [arr] * 64))
        finally:
            # Further Ctrl-Cs still on their way land here, not later.
            time.sleep(0.2 * n)
    except KeyboardInterrupt:
        report(out=time.monotonic() - t0)
    arr.release()
"""


@pytest.mark.parametrize("times", [1, 2, 3])
def test_ctrl_c_in_with(times):
    """Ctrl-C once, twice or three times at 1 s, while 64 tasks of 0.5 s
    run on 2 workers in a ``with`` block: the caller gets KeyboardInterrupt
    promptly (as with ProcessPoolExecutor, which hangs at the second), the
    workers are gone and nothing is left in /dev/shm (no board, no spilled
    task, no half-made object, no array the workers held)."""
    # ProcessPoolExecutor may hang on a second Ctrl-C, after its caller
    # reported: its report is all that is compared, so it is not waited for.
    _, std, rc, _, err = _run(_SIGINT, "std", timeout=10, args=(str(times),), until="out")
    pid, res, rc, _, err = _run(_SIGINT, "shoal", args=(str(times),))
    assert rc == 0, err[-2000:]
    assert "out" in res, err[-2000:]
    slack = 0.2 * times
    if "out" in std:
        assert res["out"] < max(std["out"], 2.0) + 1.5, (res, std)
    assert res["out"] < 1.0 + slack + 2.5, res
    assert _settle(pid) == ([], [])


_CANCEL_FUTURES = """
    def short(i):
        time.sleep(0.01)
        return i
    p = make(2)
    fs = [p.submit(short, i) for i in range(400)]
    time.sleep(0.3)
    p.shutdown(wait=True, cancel_futures=True)
    report(cancelled=sum(f.cancelled() for f in fs),
           ran=sum(not f.cancelled() and f.exception() is None for f in fs))
"""


def test_shutdown_cancel_futures_counts():
    """shutdown(cancel_futures=True) with 400 tasks of 0.01 s queued on 2
    workers: the tasks handed to workers ahead of time (128 each) but not
    started count as not started, so about as many are cancelled as with
    ProcessPoolExecutor, and the rest ran."""
    _, std, rc, _, err = _run(_CANCEL_FUTURES, "std")
    assert rc == 0, err[-2000:]
    pid, res, rc, _, err = _run(_CANCEL_FUTURES, "shoal")
    assert rc == 0, err[-2000:]
    assert res["cancelled"] + res["ran"] == 400
    # In 0.3 s two workers run about 60 tasks of 0.01 s (both pools
    # cancel ~345): far more than the backlog's 144 beyond the 2 x 128
    # prefetched, all that was cancelled before. Bounded loosely: the two
    # runs see different loads.
    assert std["cancelled"] >= 250, std
    assert res["cancelled"] >= 250, (res, std)
    assert _shm_of(pid) == []


_CANCEL_BEHIND = """
    p = make(1)
    p.submit(abs, 0).result()  # the worker is up
    first = p.submit(nap, 0)
    time.sleep(0.15)  # running (it lasts 0.5 s)
    second = p.submit(nap, 1)
    time.sleep(0.05)  # shoal hands it to the worker at once (prefetch)
    ok = second.cancel()
    report(cancel=ok, cancelled=second.cancelled(), first=first.result(timeout=30))
    p.shutdown()
"""


def test_future_cancel_behind_a_running_one():
    """Future.cancel() on a task queued behind a running one succeeds, as
    with a ThreadPoolExecutor's queue (shoal had handed it to the worker's
    cells already, and said no)."""
    _, std, rc, _, err = _run(_CANCEL_BEHIND, "thread")
    assert rc == 0, err[-2000:]
    pid, res, rc, _, err = _run(_CANCEL_BEHIND, "shoal")
    assert rc == 0, err[-2000:]
    assert res == std == {"cancel": True, "cancelled": True, "first": 0}


_EXIT_PENDING = """
    d = sys.argv[2]
    def touch(i):
        time.sleep(0.002)
        open(os.path.join(d, str(i)), "w").close()
    p = make(2)
    # More than the 2 x 128 that shoal's workers prefetch.
    for i in range(300):
        p.submit(touch, i)
    # No shutdown, no with: the interpreter exits with tasks pending.
"""


def test_interpreter_exit_runs_pending(tmp_path):
    """The interpreter exits with tasks pending, the pool neither shut down
    nor used in ``with``: they run first, as with ProcessPoolExecutor (shoal
    dropped them silently)."""
    counts = {}
    for kind in ("std", "shoal"):
        d = tmp_path / kind
        d.mkdir()
        pid, res, rc, _, err = _run(_EXIT_PENDING, kind, args=(str(d),))
        assert rc == 0, f"{kind}: {err[-2000:]}"
        counts[kind] = len(os.listdir(d))
        if kind == "shoal":
            assert _settle(pid) == ([], [])
    assert counts["shoal"] == counts["std"] == 300
