"""shoal.Pool: the Executor and multiprocessing.Pool interfaces, recycling
by each trigger, worker deaths, and the three start methods."""
import concurrent.futures
import errno
import gc
import multiprocessing
import os
import signal
import sys
import threading
import time
import warnings

import numpy as np
import pytest

import shoal
from shoal._pool_results import _Calls
from shoal.pool import parse_size

MiB = 2**20
# Under ASan (run-pytest preloads it) freed memory sits in the sanitizer's
# quarantine, out of gc's and malloc_trim's reach, and every process starts
# a few hundred MiB bigger: limits are set above a fresh worker's memory.
SANITIZED = "libasan" in os.environ.get("LD_PRELOAD", "")

# ---- task functions (module level, so spawn and forkserver find them) ----

_leak = []
_init_value = None


def sq(x):
    return x * x


def add(a, b=0):
    return a + b


def pid_of(_=None):
    return os.getpid()


def boom(x):
    raise ValueError(f"bad {x}")


def nap(s):
    time.sleep(s)
    return s


def nap_pid(s):
    time.sleep(s)
    return os.getpid()


def leak(mb):
    _leak.append(np.ones(mb * MiB // 8))
    return os.getpid()


def garbage(mb):
    # Cyclic garbage: only gc.collect() frees it (the collector is left off
    # in this worker, as a busy heap can keep it from running), and only
    # malloc_trim() then gives the pages back.
    gc.disable()
    for _ in range(mb * 1024):
        a = [bytearray(900)]
        a.append(a)
    return os.getpid()


def grow(mb):
    for _ in range(mb):
        _leak.append(np.ones(MiB // 8))
        time.sleep(0.002)
    return "grew"


def kill_once(path, value):
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        return value
    os.close(fd)
    os.kill(os.getpid(), signal.SIGKILL)


def crash(_):
    os.abort()


def rt_signal(n):
    os.kill(os.getpid(), signal.SIGRTMIN + n)  # its default action: terminate


def read_segment(name):
    seg = shoal.Segment.open(name, readonly=True)
    v = np.frombuffer(seg.buf, dtype=np.uint8)
    total = int(v[::4096].sum())
    del v
    seg.close()
    return total


def set_init(v):
    global _init_value
    _init_value = v


def get_init(_=None):
    return _init_value


def big(n):
    return b"x" * n


def private_of(pids):
    return sum(shoal.memstat(p).private for p in pids)


@pytest.fixture(scope="module")
def base():
    """A fresh worker's private memory, bytes."""
    with shoal.Pool(1) as p:
        pid = p.submit(pid_of).result(timeout=30)
        return shoal.memstat(pid).private


def wait_for(cond, timeout=10.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.01)
    return cond()


def recycles(pool, reason):
    return sum(s["recycles"][reason] for s in pool.stats())


# ---- the interfaces ----

def test_executor_interface():
    with shoal.Pool(2) as p:
        assert isinstance(p, concurrent.futures.Executor)
        assert p.submit(sq, 9).result(timeout=10) == 81
        assert p.submit(add, 1, b=2).result(timeout=10) == 3
        assert list(p.map(sq, range(100))) == [x * x for x in range(100)]
        assert list(p.map(add, range(50), range(50), chunksize=7)) == [2 * x for x in range(50)]
        assert list(p.imap(sq, range(30), chunksize=4)) == [x * x for x in range(30)]
        assert sorted(p.imap_unordered(sq, range(30), chunksize=3)) == [x * x for x in range(30)]
        assert p.starmap(add, [(1, 2), (3, 4)]) == [3, 7]
        assert p.starmap(add, [(i, i) for i in range(10)], chunksize=3) == [2 * i for i in range(10)]
        # A StopIteration raised by the function is an error, not an end.
        with pytest.raises((StopIteration, RuntimeError)):
            list(p.map(next, [iter([1]), iter([]), iter([3])]))
        # Over one iterable each item is the one argument, tuples too.
        assert list(p.map(len, [(1, 2), (3,), ()])) == [2, 1, 0]
        assert list(p.map(len, [(1, 2), (3,), ()], chunksize=2)) == [2, 1, 0]
        assert p.apply(add, (2, 3)) == 5
        got = []
        r = p.apply_async(sq, (5,), callback=got.append)
        assert r.get(timeout=10) == 25
        r.wait()
        assert r.ready() and r.successful()
        assert wait_for(lambda: got == [25])
        errs = []
        r = p.apply_async(boom, (1,), error_callback=errs.append)
        with pytest.raises(ValueError):
            r.get(timeout=10)
        assert not r.successful()
        assert wait_for(lambda: len(errs) == 1)
        with pytest.raises(multiprocessing.TimeoutError):
            p.apply_async(nap, (1,)).get(timeout=0.01)
        with pytest.raises(ValueError):
            list(p.map(sq, range(3), chunksize=0))
        assert p.info()["lost"] == 0


def test_chunks_cut_right_at_every_length():
    # Chunks are cut by zip(), a short last one on its own: nothing is lost
    # or repeated, over one iterable or several, at any length.
    with shoal.Pool(2) as p:
        for n in (0, 1, 3, 9, 10, 11, 25, 300):
            for cs in (1, 4, 10, 64):
                assert list(p.map(sq, range(n), chunksize=cs)) == [x * x for x in range(n)]
                assert list(p.map(add, range(n), range(n), chunksize=cs)) == [2 * x for x in range(n)]
        # Past the first batch (128 tasks), with a short last chunk.
        assert list(p.map(sq, range(1303), chunksize=3)) == [x * x for x in range(1303)]


def test_batches_grow_to_twice_the_workers_cells():
    # A map()'s last batch is twice what the cells hold, between 8,192
    # and 32,768 tasks, and is pickled in pieces of 8,192: nothing is
    # lost or repeated across the pieces or the batches.
    # Its first batch is a quarter of the cells, at least 128 (imap()'s
    # stays 128).
    with shoal.Pool(2) as p:
        assert (p._first_batch, p._last_batch) == (128, 8192)
    with shoal.Pool(2, prefetch=256) as p:
        assert (p._first_batch, p._last_batch) == (128, 8192)
    with shoal.Pool(20, prefetch=256) as p:
        assert (p._first_batch, p._last_batch) == (1280, 10240)
        n = 1280 + 5120 + 10240 + 10240 + 9001
        assert list(p.map(sq, range(n))) == [x * x for x in range(n)]
        assert list(p.map(add, range(n), range(n), chunksize=2)) == [2 * x for x in range(n)]
    with shoal.Pool(70, prefetch=256) as p:
        assert (p._first_batch, p._last_batch) == (4480, 32768)


def test_exception_comes_back_with_traceback():
    with shoal.Pool(1) as p:
        with pytest.raises(ValueError, match="bad 3") as ei:
            p.submit(boom, 3).result(timeout=10)
        cause = ei.value.__cause__
        assert isinstance(cause, shoal.pool.RemoteTraceback)
        assert "in boom" in str(cause) and "ValueError: bad 3" in str(cause)
        # A chunk with a failing item fails map at that item.
        it = p.map(boom, [1, 2], chunksize=2)
        with pytest.raises(ValueError):
            next(it)
        # The worker is fine afterwards.
        assert p.submit(sq, 4).result(timeout=10) == 16


def test_map_timeout():
    with shoal.Pool(1) as p:
        it = p.map(nap, [0.5, 0.5], timeout=0.05)
        with pytest.raises(concurrent.futures.TimeoutError):
            list(it)


def test_the_caller_wakes_for_its_result_after_later_ones_came():
    # Results 1.. come first, without the one the caller waits for: no
    # wake-up for them; then result 0 must wake it. Ordered and as they
    # come; a lost wake-up leaves the caller asleep (a minute here).
    with shoal.Pool(2) as p:
        naps = [0.3] + [0.0] * 40
        got = {}

        def take():
            got["map"] = list(p.map(nap, naps, timeout=60))
            got["unordered"] = list(p.imap_unordered(nap, [0.3, 0.3]))

        t = threading.Thread(target=take, daemon=True)
        t.start()
        t.join(20)
        assert got == {"map": naps, "unordered": [0.3, 0.3]}


def _refuse(msg, pad):
    raise ValueError(msg)


class Unloadable:
    """Pickles in the worker; unpickling it (in the parent) raises."""

    def __init__(self, size):
        self.pad = b"x" * size

    def __reduce__(self):
        return (_refuse, ("cannot load", self.pad))


def unloadable_over_4(x):
    return x if x < 5 else Unloadable(x)


def test_a_result_that_cannot_be_unpickled_fails_at_its_item():
    # A small result is unpickled by the caller's thread, a large one by
    # the results thread: either way map() raises at that item, and the
    # pool goes on.
    with shoal.Pool(1) as p:
        for size in (10, 100_000):
            it = p.map(unloadable_over_4, [1, size, 3])
            assert next(it) == 1
            with pytest.raises(ValueError, match="cannot load"):
                next(it)
            it = p.imap_unordered(unloadable_over_4, [size])
            with pytest.raises(ValueError, match="cannot load"):
                next(it)
        assert list(p.map(sq, range(3))) == [0, 1, 4]


def lock_over_1(x):
    return x if x < 2 else threading.Lock()


def raise_lock(x):
    raise ValueError(threading.Lock())


def test_a_result_that_cannot_be_pickled_fails_its_task():
    # In the worker: the task fails with the exception pickling raised (as
    # concurrent.futures gives it), the worker goes on. The same for an
    # exception that cannot be pickled.
    with shoal.Pool(1) as p:
        with pytest.raises(TypeError, match="cannot pickle"):
            p.submit(lock_over_1, 5).result(timeout=10)
        it = p.map(lock_over_1, [0, 1, 2, 3], chunksize=2)
        assert [next(it), next(it)] == [0, 1]
        with pytest.raises(TypeError, match="cannot pickle"):
            next(it)
        with pytest.raises(TypeError, match="cannot pickle"):
            p.submit(raise_lock, 1).result(timeout=10)
        assert list(p.map(sq, range(3), chunksize=2)) == [0, 1, 4]
        assert p.info()["lost"] == 0


def test_stop_iteration_in_a_chunk_fails_its_task():
    # map() in the worker would take it for the end of the chunk: the
    # shortfall is seen, and the task fails, as a generator's would.
    with shoal.Pool(1) as p:
        its = [iter([1]), iter([2]), iter([]), iter([4])]
        it = p.map(next, its, chunksize=4)
        with pytest.raises(RuntimeError, match=r"next raised StopIteration \(call 3 of the 4"):
            next(it)
        with pytest.raises(RuntimeError, match=r"next raised StopIteration \(call 2 of the 2"):
            p.starmap(next, [(iter([1]),), (iter([]),)], chunksize=2)
        # Values and a None among them are no shortfall.
        assert list(p.map(next, [iter([None]), iter([0])], chunksize=2)) == [None, 0]


def test_large_arguments_and_results_spill():
    with shoal.Pool(1, inline_bytes=1024) as p:
        assert p.submit(big, 3 * MiB).result(timeout=10) == b"x" * (3 * MiB)
        payload = bytes(range(256)) * 8192
        assert p.submit(len, payload).result(timeout=10) == len(payload)
    assert not [f for f in os.listdir("/dev/shm") if f.startswith(f"shoal.pool.{os.getpid()}.")]


def ends(b):
    return len(b), b[:2], b[-2:]


def test_tasks_read_in_place_and_spilled_in_any_mix():
    # A worker reads a task of at most inline_bytes in its cell, a larger
    # one from its copy; cells are reused: each task must see its own bytes,
    # whatever came before it in that cell, and whichever function it names.
    sizes = [3, 900, 1000, 1023, 1024, 1025, 1100, 5000, 70000, 10]
    args = [bytes([i % 251, (i * 7) % 251]) * (n // 2) + bytes([i % 13]) * (n % 2)
            for i, n in enumerate(sizes * 4)]
    with shoal.Pool(1, inline_bytes=1024, prefetch=4) as p:
        futs = [p.submit(len if i % 3 == 0 else ends, a) for i, a in enumerate(args)]
        got = [f.result(timeout=30) for f in futs]
        assert list(p.map(ends, args)) == [ends(a) for a in args]
    assert got == [len(a) if i % 3 == 0 else ends(a) for i, a in enumerate(args)]


def test_initializer():
    with shoal.Pool(2, initializer=set_init, initargs=(42,)) as p:
        assert set(p.map(get_init, range(8))) == {42}


def test_initializer_that_fails_breaks_loudly():
    with shoal.Pool(1, initializer=boom, initargs=(0,)) as p:
        with pytest.raises(concurrent.futures.process.BrokenProcessPool):
            p.submit(sq, 1).result(timeout=30)
        with pytest.raises(concurrent.futures.process.BrokenProcessPool):
            p.submit(sq, 2)


def test_a_worker_that_cannot_be_started_breaks_the_pool(monkeypatch):
    """Starting a worker fails every time (no processes left, say): the
    pool says so, with the reason, instead of leaving tasks waiting."""
    class NoProcesses:
        def Process(self, **kw):
            raise OSError(errno.EAGAIN, "no processes left")

    monkeypatch.setattr(multiprocessing, "get_context", lambda method: NoProcesses())
    # "spawn": multiprocessing starts its workers ("fork" has a fork server).
    with shoal.Pool(2, start_method="spawn") as p:
        with pytest.raises(concurrent.futures.process.BrokenProcessPool) as ei:
            p.submit(sq, 1).result(timeout=30)
        assert isinstance(ei.value.__cause__, OSError)
        assert "no processes left" in str(ei.value.__cause__)
        assert p.info()["spawn_error"] == os.strerror(errno.EAGAIN)
        with pytest.raises(concurrent.futures.process.BrokenProcessPool):
            p.map(sq, range(3))


def test_a_pool_ended_inside_its_own_hook(monkeypatch):
    """The last reference to a pool can go while its supervisor thread runs
    a hook (starting a worker): the C pool cannot be destroyed from there,
    so another thread does it, and nothing is left behind."""
    real, spawned, ended = shoal.pool._spawn, [], []

    def spawn(ref, *args):
        pid = real(ref, *args)
        spawned.append(pid)
        if len(spawned) == 2:  # the replacement of the first worker
            ended.append(ref().name)
            ref().terminate()
        return pid

    monkeypatch.setattr(shoal.pool, "_spawn", spawn)
    p = shoal.Pool(1, max_tasks=1)
    assert p.submit(sq, 3).result(timeout=10) == 9
    assert wait_for(lambda: ended and p._ptr is None)
    assert wait_for(lambda: not os.path.exists("/dev/shm/shoal." + ended[0]))
    assert wait_for(lambda: not [t for t in threading.enumerate()
                                 if t.name == "shoal-pool-destroy"])
    with pytest.raises(RuntimeError):
        p.submit(sq, 1)


@pytest.mark.parametrize("method", ["fork", "spawn", "forkserver"])
def test_start_methods(method):
    with shoal.Pool(2, start_method=method, max_tasks=5, initializer=set_init,
                    initargs=(method,)) as p:
        assert list(p.map(sq, range(40), chunksize=2)) == [x * x for x in range(40)]
        assert p.submit(get_init).result(timeout=30) == method
        with pytest.raises(ValueError):
            p.submit(boom, 1).result(timeout=30)
        assert wait_for(lambda: recycles(p, "tasks") >= 2)
        assert recycles(p, "died") == 0


def test_bad_arguments():
    with pytest.raises(ValueError):
        shoal.Pool(0)
    with pytest.raises(ValueError):
        shoal.Pool(1, start_method="nope")
    with pytest.raises(ValueError):
        shoal.Pool(1, max_private_memory="lots")
    with pytest.raises(TypeError):
        shoal.Pool(1, initializer=3)
    assert parse_size("512 MiB") == 512 * MiB
    assert parse_size("1.5GiB") == 3 * 2**29
    assert parse_size("100 MB") == 100_000_000
    assert parse_size(4096) == 4096
    assert parse_size(None) == 0
    with pytest.raises(ValueError):
        parse_size(-1)


def test_deep_prefetch_does_not_strand_tasks_behind_a_long_one():
    # 31 tasks, prefetch 32: at first each worker holds half of them. The
    # worker that is not stuck in the long task takes the other's queue.
    with shoal.Pool(2, prefetch=32) as p:
        list(p.map(sq, range(10)))
        pids = list(p.map(nap_pid, [1.0] + [0.001] * 30))
        long_pid = pids[0]
        assert sum(pid == long_pid for pid in pids[1:]) <= 2


def test_many_tiny_tasks_in_order():
    with shoal.Pool(2) as p:
        n = 20000
        assert list(p.map(sq, range(n))) == [x * x for x in range(n)]
        assert sorted(p.imap_unordered(sq, range(n))) == [x * x for x in range(n)]
        fs = [p.submit(add, i, b=1) for i in range(2000)]
        assert [f.result(timeout=30) for f in fs] == [i + 1 for i in range(2000)]


def test_a_target_knows_its_task_ids_before_results_can_reach_it():
    """Results can be waiting before submitting returns: the results thread
    takes the pool's lock and looks up the run of each result's task id,
    which must be registered, with its target's place for it, by then (a
    map's results list is placed by id)."""
    found = []

    with shoal.Pool(2) as p:
        assert p.submit(sq, 2).result(timeout=10) == 4  # ids no longer start at 0
        real = p._run_of

        def run_of(tid):
            run = real(tid)
            ok = run is not None and run.first <= tid < run.end
            if ok and isinstance(run.target, _Calls):
                # Its batch: the place of task f + i is at + i.
                ok = run.out is run.target.out and any(
                    0 <= tid - f < n and run.shift == at - f for f, at, n in run.target.segs)
            found.append(ok)
            return run

        p._run_of = run_of
        assert list(p.map(sq, range(50))) == [x * x for x in range(50)]
        assert list(p.map(add, range(9), range(9), chunksize=4)) == [2 * x for x in range(9)]
        n = 3000  # several batches
        assert list(p.map(sq, range(n))) == [x * x for x in range(n)]
        assert sorted(p.imap_unordered(sq, range(n), chunksize=3)) == [x * x for x in range(n)]
        assert p.submit(sq, 3).result(timeout=10) == 9
    assert len(found) >= 5
    assert all(found)


def _touch(path):
    open(path, "w").close()
    return 0


def test_workers_start_before_a_long_map_is_all_pickled(tmp_path):
    """A map() is submitted in batches: the first tasks run while the
    caller still pickles the rest."""
    mark = tmp_path / "ran"

    def args():
        yield str(mark)
        for i in range(1, 2000):
            if i == 1500:  # past the first batches: task 0 must have run
                end = time.monotonic() + 10
                while not mark.exists() and time.monotonic() < end:
                    time.sleep(0.01)
                assert mark.exists(), "no task ran before the last was pickled"
            yield str(tmp_path / "unused")

    with shoal.Pool(2) as p:
        out = list(p.map(_touch, args()))
    assert len(out) == 2000


def test_a_map_that_fails_to_pickle_midway_leaves_nothing_behind():
    """An argument that cannot be pickled, after batches already went out:
    map() raises, the tasks it submitted are cancelled or finish, and the
    pool goes on."""
    with shoal.Pool(2) as p:
        with pytest.raises(Exception, match="pickle"):
            p.map(sq, [1] * 1000 + [lambda: 0])
        end = time.monotonic() + 10
        while p._pending and time.monotonic() < end:
            time.sleep(0.01)
        assert not p._pending and not p._runs and not p._firsts
        assert list(p.map(sq, range(5))) == [0, 1, 4, 9, 16]


def test_a_failing_results_thread_fails_the_waiters_instead_of_hanging(monkeypatch):
    """A fault in the results thread itself (a bug) must not leave a map()
    or a Future waiting for ever: they fail, and the pool takes no more."""
    seen, seen_put = [], []
    armed = threading.Event()  # set once every task is in
    monkeypatch.setattr(threading, "excepthook", seen.append)
    real = shoal.pool.Pool._run_of

    def run_of(self, tid):
        # Looking up the run of the map's fourth result (each comes alone,
        # 50 ms after the one before, so each is looked up).
        run = real(self, tid)
        if run is not None and isinstance(run.target, _Calls) and \
                tid - run.first == 3 and not seen_put:
            seen_put.append(tid)
            armed.wait(10)
            raise KeyError("injected")
        return run

    monkeypatch.setattr(shoal.pool.Pool, "_run_of", run_of)
    p = shoal.Pool(1, prefetch=1)
    try:
        it = p.map(nap, [0.05] * 10, timeout=20)
        later = p.submit(nap, 0.2)  # runs after them: still waited for
        armed.set()
        with pytest.raises(RuntimeError, match="results thread failed") as info:
            list(it)
        assert isinstance(info.value.__cause__, KeyError)
        with pytest.raises(RuntimeError, match="results thread failed"):
            later.result(timeout=10)
        with pytest.raises(RuntimeError):
            p.submit(sq, 1)
        # It terminates the pool; shutdown() returns once that is done.
        p.shutdown(wait=True)
        assert not os.path.exists("/dev/shm/shoal." + p.name)
        p._collector.join(10)
        assert not p._collector.is_alive() and p._ptr is None
    finally:
        p.terminate()
    assert len(seen) == 1 and seen[0].exc_type is KeyError


# ---- shutting down ----

def test_an_idle_pool_shuts_down_at_once():
    # While nothing is due the results thread waits on the pool's
    # condition, which shutdown() notifies; it used to wait in the C pool
    # and leave only at the end of its 200 ms slice, every shutdown.
    took = []
    for _ in range(3):
        p = shoal.Pool(1)
        assert p.submit(sq, 2).result(timeout=10) == 4
        t = time.monotonic()
        p.shutdown(wait=True)
        took.append(time.monotonic() - t)
    assert min(took) < 0.15, took


def test_shutdown_waits_and_refuses_new_work():
    p = shoal.Pool(2)
    fs = [p.submit(nap, 0.05) for _ in range(6)]
    p.shutdown(wait=True)
    assert all(f.done() and f.result() == 0.05 for f in fs)
    with pytest.raises(RuntimeError):
        p.submit(sq, 1)
    with pytest.raises(RuntimeError, match="shut down"):
        p.info()
    assert p.stats() == [] and p.pids() == []
    p.shutdown()  # twice is fine


def test_shutdown_cancel_futures():
    p = shoal.Pool(1, prefetch=1)
    first = p.submit(nap, 0.3)
    assert wait_for(lambda: p.info()["running"] == 1)
    # "running" counts a task handed to the worker, which cancel_futures
    # now takes back until the worker starts it: give it time to.
    time.sleep(0.1)
    rest = [p.submit(nap, 0.3) for _ in range(20)]
    t0 = time.monotonic()
    p.shutdown(wait=True, cancel_futures=True)
    assert time.monotonic() - t0 < 2.0
    assert first.result() == 0.3
    assert sum(f.cancelled() for f in rest) >= 19


def test_future_cancel_drops_the_task():
    with shoal.Pool(1, prefetch=1) as p:
        a = p.submit(nap, 0.2)
        assert wait_for(lambda: p.info()["running"] == 1)
        b = p.submit(sq, 3)
        assert b.cancel() and b.cancel() and b.cancelled()
        done, _ = concurrent.futures.wait([b], timeout=1)
        assert done == {b}
        assert a.result(timeout=10) == 0.2
        assert p.submit(sq, 2).result(timeout=10) == 4
        assert p.info()["pending"] == 0


def test_an_iterator_closed_while_the_pool_is_locked():
    """Garbage collection can close a half-read map() iterator at any
    allocation, even one made while the thread holds the pool's lock: the
    iterator's cleanup (cancelling what is left) must not wait for it."""
    with shoal.Pool(1, prefetch=1) as p:
        it = p.imap(nap, [0.2] * 5)
        assert next(it) == 0.2
        done = threading.Event()

        def close_under_lock():
            with p._lock:
                it.close()
            done.set()

        threading.Thread(target=close_under_lock, daemon=True).start()
        assert done.wait(10)


def test_cancel_is_refused_once_the_task_runs():
    """As Executor.cancel(): a task a worker has started cannot be
    cancelled; its result comes, and the pool goes on."""
    with shoal.Pool(1, prefetch=1) as p:
        a = p.submit(nap, 0.3)
        assert wait_for(lambda: p.info()["running"] == 1)
        time.sleep(0.1)  # handed to the worker, and now claimed by it
        assert not a.cancel()
        assert not a.cancelled()
        assert a.result(timeout=10) == 0.3
        assert not a.cancel()
        assert p.submit(sq, 2).result(timeout=10) == 4


def test_terminate_with_pending():
    p = shoal.Pool(2)
    fs = [p.submit(nap, 0.2) for _ in range(50)]
    t0 = time.monotonic()
    p.terminate()
    assert time.monotonic() - t0 < 3.0
    assert all(f.done() for f in fs)
    assert any(f.cancelled() or isinstance(f.exception(), concurrent.futures.CancelledError)
               for f in fs)


# ---- recycling ----

def test_max_tasks_recycles_with_jitter():
    with shoal.Pool(2, max_tasks=10, max_tasks_jitter=50) as p:
        pids = set(p.map(pid_of, range(100)))
        assert len(pids) >= 10
        assert wait_for(lambda: recycles(p, "tasks") >= 8)
        assert recycles(p, "died") == 0
        assert p.submit(sq, 3).result(timeout=10) == 9


def test_max_age_recycles():
    with shoal.Pool(1, max_age=0.1) as p:
        first = p.submit(pid_of).result(timeout=10)
        # Its own recycle, not only its predecessor's (a first worker slow
        # to start, on a loaded machine, is past 0.1 s before any task).
        assert wait_for(lambda: recycles(p, "age") >= 1 and first not in p.pids())
        assert p.submit(pid_of).result(timeout=10) != first


def test_soft_limit_trims_before_recycling(base):
    with shoal.Pool(1, max_private_memory=base + 60 * MiB) as p:
        pid = p.submit(garbage, 150).result(timeout=30)
        assert wait_for(lambda: p.stats()[0]["trims"] >= 1)
        if SANITIZED:
            # What a trim gives back depends on the sanitizer's quarantine:
            # only that the trim came first and the pool goes on holds.
            assert p.submit(sq, 3).result(timeout=10) == 9
            assert sum(s["trims"] for s in p.stats()) >= recycles(p, "memory") >= 0
            return
        assert wait_for(lambda: p.stats()[0]["private"] < base + 60 * MiB)
        assert p.submit(pid_of).result(timeout=10) == pid
        assert recycles(p, "memory") == 0


def test_soft_limit_recycles_and_memory_returns(base):
    with shoal.Pool(2, max_private_memory=base + 100 * MiB) as p:
        list(p.map(sq, range(10)))
        assert wait_for(lambda: len(p.pids()) == 2)
        each = {pid: shoal.memstat(pid).private for pid in p.pids()}
        before = sum(each.values())
        assert before > 0
        old = p.submit(leak, 200).result(timeout=30)
        assert wait_for(lambda: recycles(p, "memory") == 1)
        st = [s for s in p.stats() if s["last_reason"] == "memory"][0]
        # Against this worker's own reading: under ASan, workers of one
        # pool and another start tens of MiB apart.
        assert st["trims"] == 1 and st["private_peak"] >= each[old] + 190 * MiB
        with pytest.raises(ProcessLookupError):
            shoal.memstat(old)
        assert wait_for(lambda: len(p.pids()) == 2)
        # The pool's private memory is back where it started.
        assert private_of(p.pids()) < before + 20 * MiB
        assert p.submit(sq, 5).result(timeout=10) == 25


def test_hard_limit_kills_and_gives_up(base):
    with shoal.Pool(1, hard_memory_limit=base + 150 * MiB, max_attempts=2, grace=0.2,
                    check_interval=0.005) as p:
        with pytest.raises(shoal.WorkerLost) as ei:
            p.submit(grow, 400).result(timeout=30)
        assert ei.value.signal == signal.SIGTERM
        assert ei.value.attempts == 2
        assert ei.value.last_private >= base + 150 * MiB
        assert "SIGTERM" in str(ei.value)
        assert recycles(p, "hard") == 2
        assert p.submit(grow, 10).result(timeout=10) == "grew"
        assert p.info()["lost"] == 1


def blocked_signals(_):
    return signal.pthread_sigmask(signal.SIG_BLOCK, [])


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_workers_do_not_inherit_blocked_signals(method):
    """Workers are started from the supervisor's thread, whose signal mask
    is its creator's: blocked there, SIGTERM (the hard limit's) must still
    end a worker."""
    old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGUSR2})
    try:
        with shoal.Pool(1, start_method=method) as p:
            assert p.submit(blocked_signals, 0).result(timeout=30) == set()
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def test_killed_by_a_real_time_signal():
    """A real-time signal has no name: WorkerLost says its number."""
    with shoal.Pool(1, max_attempts=1) as p:
        with pytest.raises(shoal.WorkerLost) as ei:
            p.submit(rt_signal, 3).result(timeout=30)
        assert ei.value.signal == signal.SIGRTMIN + 3
        assert f"signal {signal.SIGRTMIN + 3}" in str(ei.value)
        assert p.submit(sq, 4).result(timeout=10) == 16


def test_config_warning_made_an_error_does_not_stop_the_pool():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with shoal.Pool(1, max_private_memory=4096) as p:
            assert wait_for(lambda: p.info()["config_error"] is not None)
            assert list(p.map(sq, range(20))) == [x * x for x in range(20)]


def test_over_limit_at_start_is_reported_once():
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        with shoal.Pool(2, max_private_memory=4096) as p:
            assert list(p.map(sq, range(20))) == [x * x for x in range(20)]
            assert wait_for(lambda: p.info()["config_error"] is not None)
            assert wait_for(lambda: any("max_private_memory" in str(x.message) for x in w), 2)
            assert recycles(p, "memory") == 0
            assert all(s["trims"] == 0 for s in p.stats())
    assert sum("max_private_memory" in str(x.message) for x in w) == 1


def test_shared_reader_is_never_recycled(name, base):
    with shoal.Segment.create(name, 300 * MiB) as seg:
        np.frombuffer(seg.buf, dtype=np.uint8)[::4096] = 1
        with shoal.Pool(2, max_private_memory=base + 64 * MiB,
                        hard_memory_limit=base + 128 * MiB) as p:
            assert list(p.map(read_segment, [name] * 6)) == [300 * MiB // 4096] * 6
            for s in p.stats():
                assert s["trims"] == 0 and sum(s["recycles"].values()) == 0
                assert s["private_peak"] < base + 64 * MiB
        seg.unlink()


def collect_garbage(_=None):
    gc.collect()
    return os.getpid()


def test_a_worker_collecting_garbage_leaves_what_it_inherited_shared():
    """A forked worker leaves the objects it inherited out of cyclic garbage
    collection: a full collection in the worker writes to none of them, so
    the parent's pages stay shared instead of becoming the worker's own."""
    keep = [[i] for i in range(300_000)]  # ~30 MiB of tracked objects
    with shoal.Pool(1) as p:
        pid = p.submit(os.getpid).result(timeout=30)
        before = shoal.memstat(pid, smaps=True).uss
        assert p.submit(collect_garbage).result(timeout=30) == pid
        after = shoal.memstat(pid, smaps=True).uss
    assert len(keep) == 300_000
    assert after - before < 8 * MiB, (before / MiB, after / MiB)


# ---- deaths ----

def test_sigkill_mid_task_reruns(tmp_path):
    with shoal.Pool(2) as p:
        assert p.submit(kill_once, str(tmp_path / "m"), "right").result(timeout=30) == "right"
        assert recycles(p, "died") == 1
        assert p.info()["lost"] == 0


def test_killed_from_outside_reruns():
    with shoal.Pool(1) as p:
        f = p.submit(nap, 0.5)
        assert wait_for(lambda: p.info()["running"] == 1)
        time.sleep(0.05)
        os.kill(p.pids()[0], signal.SIGKILL)
        assert f.result(timeout=30) == 0.5
        assert recycles(p, "died") == 1


def test_always_crashing_task_is_lost_and_pool_stays_healthy():
    with shoal.Pool(2, max_attempts=3) as p:
        bad = p.submit(crash, 0)
        good = [p.submit(sq, i) for i in range(20)]
        with pytest.raises(shoal.WorkerLost) as ei:
            bad.result(timeout=30)
        assert ei.value.signal == signal.SIGABRT and ei.value.attempts == 3
        assert isinstance(ei.value, OSError)
        assert [f.result(timeout=30) for f in good] == [i * i for i in range(20)]
        assert list(p.map(sq, range(10))) == [i * i for i in range(10)]
        assert p.info()["lost"] == 1


def test_many_recycles_leave_nothing_behind():
    fds = len(os.listdir("/proc/self/fd"))
    with shoal.Pool(2, max_tasks=1) as p:
        assert list(p.map(sq, range(100))) == [x * x for x in range(100)]
        assert wait_for(lambda: recycles(p, "tasks") >= 100)
    gc.collect()
    assert len(os.listdir("/proc/self/fd")) <= fds + 1
    assert not multiprocessing.active_children()


def test_closing_a_long_map_cancels_the_rest_at_once():
    """Closing a map() iterator cancels every task no worker has started
    in one C call per batch (shoal_pool_cancel_range): nothing is left
    pending, prefetched tasks included, and only those started ran."""
    with shoal.Pool(4) as p:
        it = p.map(nap, [0.002] * 20000)
        assert next(it) == 0.002
        it.close()
        info = p.info()
        assert info["pending"] == 0, info
        # Left to finish: the tasks started (and results not collected yet).
        assert wait_for(lambda: p.info()["running"] == 0)
        assert p.info()["completed"] < 10000, p.info()


def _shuts_down(p, within=30):
    done = threading.Event()
    threading.Thread(target=lambda: (p.shutdown(), done.set()), daemon=True).start()
    return done.wait(within)


def test_ctrl_c_as_a_cancel_returns_leaves_nothing_due(monkeypatch):
    """A KeyboardInterrupt raised just as the C cancel returns (a Ctrl-C
    while a dropped map is cancelled) must not leave the cancelled tasks
    counted as due: shutdown() waited for them for ever."""
    import shoal.pool as sp

    real = sp._cancel_range

    def interrupted(*args):
        real(*args)
        raise KeyboardInterrupt

    p = shoal.Pool(2)
    try:
        it = p.map(nap, [0.005] * 400)
        assert next(it) == 0.005
        monkeypatch.setattr(sp, "_cancel_range", interrupted)
        with pytest.raises(KeyboardInterrupt):
            it.close()
        monkeypatch.setattr(sp, "_cancel_range", real)
    finally:
        assert _shuts_down(p)


def test_ctrl_c_as_a_submit_returns_leaves_nothing_behind(monkeypatch):
    """The same as the C submit returns: the tasks it queued are counted
    (and the map's cleanup cancels them), so nothing runs unowned and
    shutdown() returns."""
    import shoal.pool as sp

    real = sp._submit_many

    def interrupted(*args):
        rc = real(*args)
        raise KeyboardInterrupt
        return rc

    p = shoal.Pool(1, prefetch=1)
    try:
        p.submit(nap, 0.3)
        assert wait_for(lambda: p.info()["running"] == 1)
        monkeypatch.setattr(sp, "_submit_many", interrupted)
        with pytest.raises(KeyboardInterrupt):
            p.map(nap, [0.005] * 50)
        monkeypatch.setattr(sp, "_submit_many", real)
        assert p.info()["pending"] == 0  # cancelled by the map's cleanup
    finally:
        assert _shuts_down(p)


def shout(i):
    print(f"task-{i}")
    return i


def test_a_task_prints_to_fd_1_when_sys_stdout_is_another_file(tmp_path, capfd):
    # A pool made while sys.stdout is a file on another fd (pytest's
    # capture, redirect_stdout): the fork server closed that fd, and a
    # task's print() raised OSError (EBADF). Workers write to fds 1 and 2,
    # as ProcessPoolExecutor's spawned workers and loky's do.
    import contextlib
    with open(tmp_path / "out", "w") as f, contextlib.redirect_stdout(f):
        with shoal.Pool(2) as p:
            assert list(p.map(shout, range(4))) == [0, 1, 2, 3]
    assert sorted(capfd.readouterr().out.split()) == [f"task-{i}" for i in range(4)]
    assert (tmp_path / "out").read_text() == ""


def test_a_task_prints_nothing_when_the_callers_stdout_is_none(monkeypatch, capfd):
    # sys.stdout None (fd 1 closed at start): fd 1 may be a file the
    # caller opened since, and a task's print() must not write into it.
    monkeypatch.setattr(sys, "stdout", None)
    with shoal.Pool(2) as p:
        assert list(p.map(shout, range(4))) == [0, 1, 2, 3]
    monkeypatch.undo()
    assert capfd.readouterr().out == ""


def err_is_stdout(i):
    return sys.stdout is sys.stderr


def test_a_stream_on_fd_2_stays_where_the_caller_put_it(monkeypatch):
    # sys.stdout = sys.stderr is the caller's choice: workers keep it.
    monkeypatch.setattr(sys, "stdout", sys.__stderr__)
    monkeypatch.setattr(sys, "stderr", sys.__stderr__)
    with shoal.Pool(1) as p:
        assert list(p.map(err_is_stdout, range(2))) == [True, True]
