"""shoal.Pool's results, errors and memory against the standard pools:
each test runs the same script on shoal.Pool and on the pool it stands in
for (multiprocessing.Pool for imap() and apply_async(), Executor for
submit() and map()) and compares what they give."""
import concurrent.futures
import gc
import math
import multiprocessing
import os
import pickle
import signal
import sys
import threading
import time
import weakref

import numpy as np
import pytest

import shoal

MiB = 2**20
SANITIZED = "libasan" in os.environ.get("LD_PRELOAD", "")
_leak = []

# ---- task functions (module level, so spawn finds them) ----


def sq(x):
    return x * x


def pid_of(_=None):
    return os.getpid()


class Obj:
    """A result that a weak reference can follow."""

    def __init__(self, i):
        self.i = i


def make(i):
    return Obj(i)


class Marker:
    """An argument that leaves a file behind when a worker frees it."""

    def __init__(self, path):
        self.path = path
        self.parent = os.getpid()

    def __del__(self):
        if os.getpid() != self.parent:
            with open(self.path, "w"):
                pass


def take(m):
    return type(m).__name__


class Unpicklable:
    """A result whose pickling raises PicklingError."""

    def __reduce__(self):
        raise pickle.PicklingError("no pickling this")


class Exits:
    """A result whose pickling calls sys.exit()."""

    def __reduce__(self):
        sys.exit(3)


def counted(path, what):
    """Count the run in @path, then return or raise @what."""
    with open(path, "a") as f:
        f.write("run\n")
    if what == "lock":
        return threading.Lock()
    if what == "reduce":
        return Unpicklable()
    if what == "exit-pickling":
        return Exits()
    if what == "exit":
        sys.exit(4)
    return what


def hold(started, release):
    """Say it started, then run until @release exists (30 s at most)."""
    with open(started, "w"):
        pass
    end = time.monotonic() + 30
    while not os.path.exists(release) and time.monotonic() < end:
        time.sleep(0.01)
    return "held"


def exit_with(code):
    os._exit(code)


def grow(mb):
    for _ in range(mb):
        _leak.append(np.ones(MiB // 8))
        time.sleep(0.002)
    return "grew"


def wait_for(cond, timeout=10.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.01)
    return cond()


class Counting:
    """An input as good as endless that counts the items taken from it. It
    ends after @cap items, so that a pool that reads it whole fails the
    test rather than fill the machine's memory."""

    def __init__(self, cap=3_000_000):
        self.n, self.cap = 0, cap

    def __iter__(self):
        return self

    def __next__(self):
        if self.n >= self.cap:
            raise StopIteration
        self.n += 1
        return self.n - 1


def failing(n=10, at=4):
    for i in range(n):
        if i == at:
            raise ValueError(f"input failed at {i}")
        yield i


def mp_pool(n=2):
    return multiprocessing.get_context("fork").Pool(n)


def ppe(n=2):
    return concurrent.futures.ProcessPoolExecutor(n, mp_context=multiprocessing.get_context("fork"))


def drain(it):
    """The values @it gives, and the repr of the exception it ends with."""
    got = []
    try:
        for v in it:
            got.append(v)
    except Exception as e:  # noqa: B902
        return got, repr(e)
    return got, None


# ---- the input: read lazily, its error in its place ----

@pytest.mark.parametrize("method", ["imap", "imap_unordered"])
def test_imap_over_an_endless_generator(method):
    for make_pool in (lambda: shoal.Pool(2), mp_pool):
        src = Counting()
        with make_pool() as p:
            it = getattr(p, method)(sq, src)
            first = next(it)
            if method == "imap":
                assert first == 0
            else:
                # Completion order: any item already taken may finish
                # first (shoal's second batch starts at item 128).
                assert math.isqrt(first) ** 2 == first
                assert math.isqrt(first) < src.n
            if isinstance(p, shoal.Pool):
                # In flight: the window (two of the largest batches), not
                # the whole input.
                window = max(2 * 8192, 4 * 2 * 128)
                assert src.n <= window
                got = [next(it) for _ in range(30000)]
                assert len(got) == 30000
                assert src.n - 30001 <= window
                if method == "imap":
                    assert got[-1] == 30000 ** 2
                it.close()


def test_imap_input_error_comes_after_the_results_before_it():
    with shoal.Pool(2) as p:
        ours = drain(p.imap(sq, failing()))
        ours_chunked = drain(p.imap(sq, failing(), chunksize=2))
        ours_un = drain(p.imap_unordered(sq, failing()))
        assert list(p.map(sq, range(3))) == [0, 1, 4]  # the pool goes on
    with mp_pool() as p:
        theirs = drain(p.imap(sq, failing()))
        theirs_chunked = drain(p.imap(sq, failing(), chunksize=2))
        theirs_un = drain(p.imap_unordered(sq, failing()))
    assert ours == theirs == ([0, 1, 4, 9], "ValueError('input failed at 4')")
    assert ours_chunked == theirs_chunked
    # Unordered: multiprocessing may raise before the results come; shoal
    # gives them all first.
    assert sorted(ours_un[0]) == [0, 1, 4, 9] and ours_un[1] == theirs_un[1]
    assert set(theirs_un[0]) <= {0, 1, 4, 9}


def test_map_input_error_is_raised_by_map_itself():
    # Executor.map and Pool.map and starmap read the whole input first:
    # the error comes from the call, before any result.
    for pool in (shoal.Pool(2), ppe()):
        with pool as p:
            with pytest.raises(ValueError, match="input failed at 4"):
                p.map(sq, failing())
    for pool in (shoal.Pool(2), mp_pool()):
        with pool as p:
            with pytest.raises(ValueError, match="input failed at 4"):
                p.starmap(pow, ((x, 2) for x in failing()))


# ---- results handed over are the caller's alone ----

def _alive(refs):
    gc.collect()
    return sum(r() is not None for r in refs)


def _dropped(p, how):
    refs = []
    if how == "submit":
        fs = [p.submit(make, i) for i in range(10)]
        refs = [weakref.ref(f.result(timeout=30)) for f in fs]
        del fs
    elif how == "map":
        refs = [weakref.ref(r) for r in p.map(make, range(10))]
    elif how == "imap":
        refs = [weakref.ref(r) for r in p.imap(make, range(10))]
    elif how == "apply_async":
        ars = [p.apply_async(make, (i,)) for i in range(10)]
        refs = [weakref.ref(a.get(timeout=30)) for a in ars]
        del ars
    return refs


@pytest.mark.parametrize("how", ["submit", "map", "imap", "apply_async"])
def test_dropped_results_are_freed(how):
    peer = ppe if how in ("submit", "map") else mp_pool
    for make_pool in (lambda: shoal.Pool(2), peer):
        with make_pool() as p:
            refs = _dropped(p, how)
            # The results thread lets go of its last batch right after
            # handing it over: bounded, never timed.
            assert wait_for(lambda: _alive(refs) == 0), f"{p}: {_alive(refs)} of 10 alive"


# ---- a worker keeps nothing of a finished task ----

@pytest.mark.parametrize("how", ["submit", "map"])
def test_worker_frees_a_tasks_argument_when_it_ends(tmp_path, how):
    peer = ppe if how == "submit" else mp_pool
    for k, make_pool in enumerate((lambda: shoal.Pool(1), lambda: peer(1))):
        path = str(tmp_path / f"freed.{k}")
        with make_pool() as p:
            m = Marker(path)
            if how == "submit":
                assert p.submit(take, m).result(timeout=30) == "Marker"
            else:
                assert list(p.map(take, [m])) == ["Marker"]
            # No next task comes: the worker frees it all the same.
            assert wait_for(lambda: os.path.exists(path)), f"{p} kept its argument"


def test_worker_private_memory_goes_back_after_a_large_argument():
    # Its copy and its unpickled bytes, 128 MiB, were kept until the next
    # task came. Under ASan freed memory stays in the sanitizer's
    # quarantine, out of the system's reach: there only the task's own
    # result is checked (the Marker tests above see the freeing itself).
    big = b"x" * (64 * MiB)
    with shoal.Pool(1) as p:
        pid = p.submit(pid_of).result(timeout=30)
        before = shoal.memstat(pid).private
        assert p.submit(len, big).result(timeout=60) == len(big)
        assert SANITIZED or wait_for(lambda: shoal.memstat(pid).private < before + 32 * MiB), \
            (before, shoal.memstat(pid).private)


# ---- an error pickling a result is the task's, once ----

@pytest.mark.parametrize("what,exc", [("lock", TypeError), ("reduce", pickle.PicklingError),
                                      ("exit-pickling", SystemExit), ("exit", SystemExit)])
def test_pickling_errors_fail_the_task_once(tmp_path, what, exc):
    got = []
    for k, make_pool in enumerate((lambda: shoal.Pool(1), lambda: ppe(1))):
        path = str(tmp_path / f"runs.{k}")
        with make_pool() as p:
            f = p.submit(counted, path, what)
            with pytest.raises(BaseException) as ei:
                f.result(timeout=30)
            got.append(type(ei.value))
            with open(path) as fh:
                assert fh.read().count("run") == 1  # never run again
            assert p.submit(sq, 3).result(timeout=30) == 9  # the worker goes on
            if isinstance(p, shoal.Pool):
                assert p.info()["lost"] == 0
    assert got == [exc, exc]


# ---- WorkerLost says how the worker ended ----

def test_worker_lost_names_the_exit_code():
    with shoal.Pool(1, max_attempts=2) as p:
        with pytest.raises(shoal.WorkerLost) as ei:
            p.submit(exit_with, 7).result(timeout=30)
    e = ei.value
    assert (e.signal, e.exit_code, e.attempts, e.hard_limit) == (0, 7, 2, False)
    assert "exited with code 7" in str(e) and "2 attempt(s)" in str(e)
    assert "hard" not in str(e)
    again = pickle.loads(pickle.dumps(e))
    assert (again.signal, again.exit_code, again.attempts, again.hard_limit, str(again)) == \
        (e.signal, e.exit_code, e.attempts, e.hard_limit, str(e))


def test_worker_lost_names_the_hard_memory_limit():
    with shoal.Pool(1) as p:
        pid = p.submit(pid_of).result(timeout=30)
        base = shoal.memstat(pid).private
    with shoal.Pool(1, hard_memory_limit=base + 100 * MiB, max_attempts=1, grace=0.2,
                    check_interval=0.005) as p:
        with pytest.raises(shoal.WorkerLost) as ei:
            p.submit(grow, 400).result(timeout=60)
    e = ei.value
    assert e.hard_limit and e.signal in (signal.SIGTERM, signal.SIGKILL)
    assert "hard memory limit" in str(e) and "SIG" in str(e)
    assert pickle.loads(pickle.dumps(e)).hard_limit


# ---- Future.running() ----

def test_future_running_while_a_worker_runs_it(tmp_path):
    for k, make_pool in enumerate((lambda: shoal.Pool(1), lambda: ppe(1))):
        started, release = str(tmp_path / f"started.{k}"), str(tmp_path / f"release.{k}")
        with make_pool() as p:
            f = p.submit(hold, started, release)
            behind = p.submit(sq, 2)
            assert wait_for(lambda: os.path.exists(started), 30)
            assert f.running() and not f.done()
            if isinstance(p, shoal.Pool):
                # Not started: a worker has not taken it up (the peer
                # says True once it is queued for a worker).
                assert not behind.running()
            with open(release, "w"):
                pass
            assert f.result(timeout=30) == "held" and behind.result(timeout=30) == 4
            assert not f.running() and not behind.running()


def test_future_running_false_once_the_pool_is_gone(tmp_path):
    started, release = str(tmp_path / "started"), str(tmp_path / "release")
    p = shoal.Pool(1)
    f = p.submit(hold, started, release)
    assert wait_for(lambda: os.path.exists(started), 30)
    assert f.running()
    with open(release, "w"):
        pass
    p.shutdown()
    assert f.done() and not f.running()
    assert p._task_state(f._tid) is None  # nothing left to ask


# ---- map() is one-shot; the standard keyword names ----

def test_map_is_a_one_shot_iterator():
    for make_pool in (lambda: shoal.Pool(2), ppe):
        with make_pool() as p:
            it = p.map(sq, range(5))
            assert iter(it) is it
            assert list(it) == [0, 1, 4, 9, 16]
            assert list(it) == []
    assert "one-shot" in shoal.Pool.map.__doc__


def test_standard_keyword_names():
    fork = multiprocessing.get_context("fork")
    for cls, kw in ((shoal.Pool, {"processes": 2, "maxtasksperchild": 1}),
                    (multiprocessing.Pool, {"processes": 2, "maxtasksperchild": 1}),
                    (shoal.Pool, {"max_workers": 2, "mp_context": fork}),
                    (shoal.Pool, {"max_workers": 2, "max_tasks_per_child": 1}),
                    (concurrent.futures.ProcessPoolExecutor, {"max_workers": 2,
                                                              "mp_context": fork})):
        with cls(**kw) as p:
            assert sorted(p.map(sq, range(20))) == [x * x for x in range(20)]
            if cls is shoal.Pool:
                assert p._workers == 2
                if "maxtasksperchild" in kw or "max_tasks_per_child" in kw:
                    # One task per worker: 20 tasks, at least 18 recycles.
                    assert wait_for(lambda: sum(s["recycles"]["tasks"]
                                                for s in p.stats()) >= 18, 30)


def test_mp_context_gives_the_start_method():
    with shoal.Pool(1, mp_context=multiprocessing.get_context("spawn")) as p:
        assert p._start_method == "spawn"
        pid = p.submit(pid_of).result(timeout=60)
        assert pid != os.getpid()


@pytest.mark.parametrize("kw", [{"workers": 2, "processes": 2}, {"workers": 2, "max_workers": 2},
                                {"max_workers": 2, "processes": 2},
                                {"max_tasks": 2, "maxtasksperchild": 2},
                                {"maxtasksperchild": 2, "max_tasks_per_child": 2},
                                {"start_method": "fork",
                                 "mp_context": multiprocessing.get_context("fork")}])
def test_two_names_for_one_argument_is_a_type_error(kw):
    with pytest.raises(TypeError, match="name the same argument"):
        shoal.Pool(**kw)


# ---- close() and join(), as multiprocessing.Pool's ----

def test_close_returns_at_once_and_imap_runs_its_whole_input():
    # multiprocessing.Pool's pattern: close() returns at once (join()
    # waits), and an imap() given before close() runs its whole input,
    # its results read before or after join(). close() used to be
    # shutdown(): it waited, and the imap's input left unread then raised
    # RuntimeError at the next batch.
    for cls in (shoal.Pool, multiprocessing.Pool):
        p = cls(2)
        slow = p.apply_async(time.sleep, (0.3,))
        ordered = p.imap(sq, range(3000))
        unordered = p.imap_unordered(sq, range(3000), chunksize=7)
        t = time.monotonic()
        p.close()
        assert time.monotonic() - t < 0.2, cls
        assert next(ordered) == 0
        with pytest.raises(ValueError):
            p.apply_async(sq, (1,))
        p.join()
        assert slow.ready()
        assert sum(1 for _ in ordered) == 2999
        assert sorted(unordered) == [x * x for x in range(3000)]
