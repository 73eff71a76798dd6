"""shoal.joblib: the joblib backend "shoal" under joblib's Parallel (the
1.2 apply_async path) and driven as joblib 1.5 drives it (submit and the
retrieve callbacks); arrays as handles, the cache and its checks, worker
deaths, aborts, timeouts, Ctrl-C, nesting, scikit-learn against loky."""
import multiprocessing
import os
import pickle
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

import joblib
import numpy as np
import pytest
from joblib import Parallel, delayed, parallel_backend
from joblib.parallel import BatchedCalls

import shoal
import shoal.joblib as sj

MiB = 2**20


@pytest.fixture(autouse=True, scope="module")
def _pools_shut_down():
    """The backend's pools (and loky's workers, started for the
    comparison) do not outlive this module: later tests count children
    and pool objects."""
    yield
    sj.shutdown()
    from joblib.externals.loky import reusable_executor
    if reusable_executor._executor is not None:
        reusable_executor._executor.shutdown(wait=True)
    assert not sj._pools and sj.cache_info()["entries"] == 0


@pytest.fixture(autouse=True)
def _no_arrays_left():
    """No shared array the test made is left once its arrays are gone
    (the pools' boards stay: they are reused)."""
    def arrays():
        return _arrays()
    before = arrays()
    yield
    import gc
    # Collected until gone, for up to 5 s: a finalizer run by one
    # collection (a copy's, when its caller array was in a cycle) leaves
    # its entry for the next, and the pool's results thread may still hold
    # a finished batch (its arguments) for a moment after the test has its
    # results (seen under ASan, about one run in four).
    end = time.monotonic() + 5
    while True:
        gc.collect()
        left = arrays() - before
        if not left or time.monotonic() > end:
            break
        time.sleep(0.05)
    assert not left, f"left {left}"


def _arrays():
    """The shared arrays in the directory: anonymous ones and result arrays."""
    return {f for f in os.listdir(shoal.directory())
            if f.startswith("shoal.a.") or f.startswith("shoal.jl.")}


# ---- task functions (module level: workers import them) --------------------

def row_sum(x, i):
    return float(x[i].sum())


def flags_of(x):
    return (x.flags.writeable, x.flags.c_contiguous, x.shape, float(x.sum()))


def try_write(x):
    x.flat[0] = -1.0
    return float(x.flat[0])


def ident(x):
    return x


def make(n, v):
    return np.full(n, v, dtype=np.float64)


def pid(_=None):
    return os.getpid()


def threads(_=None):
    import threadpoolctl
    return (os.environ.get("OMP_NUM_THREADS"),
            {i["num_threads"] for i in threadpoolctl.threadpool_info()})


def boom(i):
    if i == 3:
        raise ValueError(f"boom {i}")
    time.sleep(0.05)
    return i


def nap(s):
    time.sleep(s)
    return s


def boom_later(s):
    time.sleep(s)
    raise ValueError("boom later")


class SlowPickle:
    """Pickled in a worker, it takes 30 s: the worker is stuck between
    making a result array and handing its result over. With @stuck (a
    directory), it says so there first, by a file named for its pid."""

    def __init__(self, stuck=None):
        self.stuck = stuck

    def __reduce__(self):
        if self.stuck:
            open(os.path.join(self.stuck, str(os.getpid())), "w").close()
        time.sleep(30)
        return (int, (0,))


def made_then_stuck(n, stuck=None):
    return [np.full(n, 1.0), SlowPickle(stuck)]


def _wait_stuck(stuck, n):
    """Until @n workers are stuck in SlowPickle(@stuck) (at most 60 s)."""
    end = time.monotonic() + 60
    while len(os.listdir(stuck)) < n and time.monotonic() < end:
        time.sleep(0.01)


def boom_when_stuck(stuck):
    _wait_stuck(stuck, 1)
    raise ValueError("boom later")


def _fail_in_caller():
    if os.getpid() == _parent:
        raise RuntimeError("cannot unpickle here")
    return 0


class FailsInCaller:
    def __reduce__(self):
        return (_fail_in_caller, ())


def half_unpicklable(n):
    return [np.full(n, 1.0), FailsInCaller(), np.full(n, 2.0)]


def die_once(flag, i):
    if i == 2 and not os.path.exists(flag):
        open(flag, "w").close()
        os.kill(os.getpid(), signal.SIGKILL)
    return i * i


def nested(i):
    inner = Parallel(n_jobs=2)(delayed(pow)(i, k) for k in range(3))
    backend = joblib.parallel.get_active_backend()[0]
    return inner, type(backend).__name__


def nested_shoal(i):
    return Parallel(n_jobs=2, backend="shoal")(delayed(pid)() for _ in range(2))


def run(fn, args, n_jobs=2, **kw):
    with parallel_backend("shoal", n_jobs=n_jobs):
        return Parallel(**kw)(delayed(fn)(*a) for a in args)


# ---- registration, pools ---------------------------------------------------

def test_import_shoal_does_not_import_joblib():
    code = "import shoal, sys; print('joblib' in sys.modules, 'shoal.joblib' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.split() == ["False", "False"]


def test_registered_and_pool_reused():
    assert joblib.parallel.BACKENDS["shoal"] is sj.ShoalBackend
    a = run(pid, [()] * 8)
    pools = dict(sj._pools)
    b = run(pid, [()] * 8)
    assert dict(sj._pools) == pools  # the same pool, not a new one
    assert len(set(a + b)) <= 2 and os.getpid() not in a + b
    # A forked child starts with no pool of its own, and leaves the
    # parent's alone when it exits.
    p = multiprocessing.get_context("fork").Process(target=abs, args=(1,))
    p.start()
    p.join(30)
    assert p.exitcode == 0
    assert run(pid, [()] * 4) and dict(sj._pools) == pools


def test_n_jobs():
    b = sj.ShoalBackend(nesting_level=0)
    assert b.effective_n_jobs(-1) == joblib.cpu_count()
    assert b.effective_n_jobs(None) == 1
    with pytest.raises(ValueError):
        b.effective_n_jobs(0)
    # n_jobs=1 runs in the caller, as loky does.
    with parallel_backend("shoal", n_jobs=1):
        assert Parallel()(delayed(pid)() for _ in range(2)) == [os.getpid()] * 2
    with parallel_backend("shoal", n_jobs=-1):
        assert sorted(Parallel()(delayed(abs)(-i) for i in range(5))) == list(range(5))
    # Native thread pools in workers are limited, as loky limits them.
    with parallel_backend("shoal", n_jobs=2, inner_max_num_threads=1):
        env, counts = Parallel()(delayed(threads)() for _ in range(2))[0]
    assert env == "1" and counts <= {1}  # every native pool threadpoolctl finds


def test_backend_args():
    with pytest.raises(TypeError, match="unknown argument"):
        sj.ShoalBackend(max_privat_memory="1 GiB")
    with pytest.raises(ValueError, match="mmap_mode"):
        sj.ShoalBackend(mmap_mode="x")
    # max_tasks=1: a worker per task, through backend_args.
    with parallel_backend("shoal", n_jobs=2, max_tasks=1):
        pids = Parallel(batch_size=1)(delayed(pid)() for _ in range(6))
    assert len(set(pids)) >= 5
    # A pool per configuration: the limits reach shoal.Pool.
    with parallel_backend("shoal", n_jobs=2, max_private_memory="2 GiB"):
        Parallel()(delayed(pid)() for _ in range(2))
    assert any(("max_private_memory", "2 GiB") in key[1] for key in sj._pools)


# ---- arrays ----------------------------------------------------------------

def test_array_shared_once_and_mutation_seen():
    x = np.random.rand(300, 1000)
    before = sj.cache_info()
    assert run(row_sum, [(x, i) for i in range(40)]) == [float(x[i].sum()) for i in range(40)]
    assert run(row_sum, [(x, i) for i in range(40)]) == [float(x[i].sum()) for i in range(40)]
    info = sj.cache_info()
    assert info["copies"] - before["copies"] == 1  # once, for 80 tasks and two calls
    x[7] = 1.0  # in place, between two calls
    assert run(row_sum, [(x, 7)])[0] == 1000.0
    assert sj.cache_info()["copies"] - before["copies"] == 2
    # The copy goes with the caller's array.
    del x
    assert sj.cache_info()["entries"] == before["entries"]


def test_views_noncontiguous_and_readonly():
    x = np.arange(600 * 1000, dtype=np.float64).reshape(600, 1000)
    cases = [x, x[100:400], x[:, ::3], x.T, x[::-2]]
    for v in cases:
        w, c, shape, s = run(flags_of, [(v,)])[0]
        # Read-only, as joblib's memmaps (mmap_mode="r"); a C-ordered copy
        # when the caller's is not contiguous; the same values.
        assert (w, c, shape, s) == (False, True, v.shape, float(v.sum()))
    with pytest.raises(ValueError, match="read-only"):
        run(try_write, [(x,)])
    # "c": the worker's own copy, writable; the caller's is untouched.
    assert Parallel(n_jobs=2, backend="shoal", mmap_mode="c")(
        delayed(try_write)(x) for _ in range(2)) == [-1.0, -1.0]
    assert x[0, 0] == 0.0


def test_small_object_and_disabled_are_pickled():
    small = np.ones(100)
    objs = np.array([{"a": i} for i in range(200000)], dtype=object)
    before = sj.cache_info()
    assert run(ident, [(small,)])[0].tolist() == small.tolist()
    out = run(ident, [(objs,)])[0]
    assert out.dtype == object and out[5] == {"a": 5}
    info = sj.cache_info()
    assert info["copies"] == before["copies"] and info["pickled"] == before["pickled"] + 1
    big = np.ones(300000)
    assert Parallel(n_jobs=2, backend="shoal", max_nbytes=None)(
        delayed(flags_of)(big) for _ in range(2))[0][0] is True  # a pickled copy
    assert sj.cache_info()["copies"] == before["copies"]


def test_shoal_arrays_travel_without_copy():
    x = sj.share(np.arange(400000, dtype=np.float64))
    before = sj.cache_info()
    part = x[1000:300000]
    assert run(flags_of, [(x,), (part,), (x[::-2],)]) == [
        (False, True, x.shape, float(x.sum())), (False, True, part.shape, float(part.sum())),
        (False, False, x[::-2].shape, float(x[::-2].sum()))]
    info = sj.cache_info()
    assert info["zero_copy"] - before["zero_copy"] == 3 and info["copies"] == before["copies"]
    # The caller's own memory: a change is seen with no check at all.
    x[:] = 2.0
    assert run(flags_of, [(x,)])[0][3] == 2.0 * x.size
    a = shoal.Array.zeros((300000,))
    v = a.numpy()
    assert run(flags_of, [(v,)])[0][3] == 0.0
    # Released by its only holder: its name is gone, so it is copied.
    a.release()
    copies = sj.cache_info()["copies"]
    assert run(flags_of, [(v,)])[0][3] == 0.0
    assert sj.cache_info()["copies"] == copies + 1


def test_result_arrays_come_back_shared():
    out = run(make, [(300000, float(i)) for i in range(4)])
    for i, o in enumerate(out):
        assert isinstance(o.base, shoal.Array) and o.flags.writeable
        assert o.shape == (300000,) and o[0] == i
        assert o.base.refcount == 1  # the caller's alone: the worker's is gone
    small = run(make, [(10, 1.0)])[0]
    assert not isinstance(small.base, shoal.Array)


# ---- errors, deaths, aborts ---------------------------------------------------

def test_exception_aborts_and_pool_stays_usable():
    t = time.monotonic()
    with pytest.raises(ValueError, match="boom 3"):
        run(boom, [(i,) for i in range(200)], batch_size=1)
    assert time.monotonic() - t < 5  # the rest was cancelled
    assert run(boom, [(i,) for i in (0, 1, 2)]) == [0, 1, 2]
    # A task still running when another fails: the pool is rebuilt.
    with pytest.raises(ValueError):
        with parallel_backend("shoal", n_jobs=2):
            Parallel(batch_size=1)(delayed(f)(a) for f, a in [(boom, 3), (nap, 30)])
    assert time.monotonic() - t < 10
    assert run(boom, [(i,) for i in (0, 1)]) == [0, 1]


class FinickyError(Exception):
    """An exception whose __init__ takes four arguments (joblib's test)."""

    def __init__(self, a, b, c, d):
        pass


def interrupted(i):
    if i == 1:
        raise KeyboardInterrupt
    return i


def finicky(i):
    if i == 7:
        raise FinickyError("a", "b", "c", "d")
    return i


class Unpicklable:
    def __reduce__(self):
        raise RuntimeError("123")


def test_errors_reach_the_caller_as_with_loky():
    # What joblib's test_error_capture checks, but for its pool restart: a
    # KeyboardInterrupt in a task is the worker's, not the caller's own
    # Ctrl-C (joblib's WorkerInterrupt, as loky); a task that cannot be
    # pickled is loky's PicklingError, caused by what failed; an exception
    # with a finicky __init__ arrives as itself; a managed Parallel goes on.
    from joblib.my_exceptions import WorkerInterrupt
    got = None
    try:  # a KeyboardInterrupt here would stop pytest itself: caught
        run(interrupted, [(0,), (1,)])
    except BaseException as e:  # noqa: B902
        got = e
    assert isinstance(got, WorkerInterrupt), repr(got)
    assert "KeyboardInterrupt" in str(got.__cause__)  # the worker's traceback
    with pytest.raises(pickle.PicklingError, match="the task to send") as ei:
        run(id, [(Unpicklable(),)] * 10)
    assert isinstance(ei.value.__cause__, RuntimeError)
    with pytest.raises(FinickyError):
        run(finicky, [(i,) for i in range(30)])
    with parallel_backend("shoal", n_jobs=2):
        with Parallel() as p:
            for f in (interrupted, finicky):
                with pytest.raises((WorkerInterrupt, FinickyError)):
                    p(delayed(f)(i) for i in range(10))
                assert p(delayed(pow)(i, 2) for i in range(10)) == [i * i for i in range(10)]


def says(i):
    print("task", i, flush=True)
    print("task", i, file=sys.stderr, flush=True)
    return i


def test_print_in_a_task_when_the_callers_stdout_is_another_file(tmp_path):
    # A pool made while sys.stdout and sys.stderr are files on other fds
    # (pytest's capture; here redirect_stdout/redirect_stderr): its
    # workers' copies of them name fds the fork server closed, and print()
    # raised OSError (EBADF). Workers write to fds 1 and 2, as loky's.
    import contextlib
    with open(tmp_path / "out", "w") as out, contextlib.redirect_stdout(out), \
            contextlib.redirect_stderr(out):
        # max_age: a pool of its own, made here.
        with parallel_backend("shoal", n_jobs=2, max_age=3600):
            assert Parallel()(delayed(says)(i) for i in range(4)) == [0, 1, 2, 3]


def fails_at_1(i):
    if i == 1:
        raise ValueError(i)
    return i


def test_managed_parallel_after_an_error_returns_its_own_results():
    # joblib 1.2 leaves batches it sliced ahead of an aborted call in its
    # Parallel, and a result arriving after the abort dispatches more:
    # the next call of a managed Parallel returned them with its own
    # (loky: 16 rounds in 20 here; shoal before the backend dropped them:
    # 10 in 20). Every round must give exactly its own results.
    with parallel_backend("shoal", n_jobs=2):
        with Parallel() as p:
            for _ in range(20):
                with pytest.raises(ValueError):
                    p(delayed(fails_at_1)(i) for i in range(10))
                assert p(delayed(pow)(i, 2) for i in range(10)) == [i * i for i in range(10)]


def fails_at_0(i, flag):
    if i == 0:
        raise ValueError(i)
    if i == 1:
        # Ends once the caller has the failure: its callback dispatches
        # the next batch then.
        end = time.monotonic() + 30
        while not os.path.exists(flag) and time.monotonic() < end:
            time.sleep(0.01)
    if i == 2:
        time.sleep(0.2)  # still to come when the abort has returned
    return ("old", i)


@pytest.mark.parametrize("stall", ["_dumps", "batch_completed"])
def test_abort_while_the_results_thread_dispatches(monkeypatch, tmp_path, stall):
    # The results thread is about to dispatch a batch of a call while the
    # caller aborts that call: past Parallel's _aborting check, pickling
    # the batch in _start ("_dumps"); or in joblib's callback, past the
    # backend's epoch check, before it takes the Parallel's lock to
    # dispatch ("batch_completed"). The abort took its list of jobs and
    # bumped its epoch without that lock: the batch being pickled, missing
    # from the list, was never cancelled and its callback was of the new
    # epoch; the callback went on. Either dispatched more of the aborted
    # call's input into _ready_batches after the abort dropped what was
    # there, and the managed Parallel's next call returned it first.
    # Forced here: task 1 ends once the caller has task 0's failure, the
    # caller raises it only once the results thread is at @stall, and that
    # goes on 0.2 s after the abort began (each failed every run before
    # the abort and the epoch check took the Parallel's lock).
    flag = str(tmp_path / "failed")
    stalled, aborting = threading.Event(), threading.Event()
    armed, ended, jobs = [True], threading.Semaphore(0), []
    get, abort = sj._Job.get, sj.ShoalBackend.abort_everything
    orig = getattr(sj.ShoalBackend, stall)

    def slow(self, *args):
        if armed and threading.current_thread() is not threading.main_thread():
            armed.clear()
            stalled.set()
            aborting.wait(10)
            time.sleep(0.2)
        return orig(self, *args)

    def late_get(self, timeout=None):
        try:
            return get(self, timeout)
        except ValueError:
            open(flag, "w").close()
            stalled.wait(10)
            raise

    def signalled_abort(self, ensure_ready=True):
        aborting.set()
        return abort(self, ensure_ready)

    def counted(dispatch):
        # Each job's end, after joblib's callback (added before this one).
        def wrapper(self, func, callback=None):
            job = dispatch(self, func, callback)
            jobs.append(job)
            job.add_done_callback(lambda j: ended.release())
            return job
        return wrapper
    monkeypatch.setattr(sj.ShoalBackend, stall, slow)
    monkeypatch.setattr(sj._Job, "get", late_get)
    monkeypatch.setattr(sj.ShoalBackend, "abort_everything", signalled_abort)
    monkeypatch.setattr(sj.ShoalBackend, "apply_async", counted(sj.ShoalBackend.apply_async))
    monkeypatch.setattr(sj.ShoalBackend, "submit", counted(sj.ShoalBackend.submit))
    with parallel_backend("shoal", n_jobs=2):
        with Parallel(batch_size=1, pre_dispatch=2) as p:
            with pytest.raises(ValueError):
                p(delayed(fails_at_0)(i, flag) for i in range(10))
            assert not armed  # the results thread did stall
            for _ in range(len(jobs)):  # every job of that call has ended
                assert ended.acquire(timeout=30)
            assert p(delayed(pow)(i, 2) for i in range(10)) == [i * i for i in range(10)]


def _float_arrays(n):
    for i in range(n):
        yield np.ones(10, dtype=np.float32) * i


def test_arrays_from_a_generator_as_joblib():
    # joblib's test_auto_memmap_on_arrays_from_generator without its
    # np.memmap check: arrays made by the generator die during dispatch and
    # their ids are reused by the next ones; each task must still get its
    # own array's values, not a cached copy of a dead array's.
    for n_jobs in (2, 4):
        with parallel_backend("shoal", n_jobs=n_jobs):
            out = Parallel(max_nbytes=1)(delayed(ident)(a) for a in _float_arrays(100))
        for got, want in zip(out, _float_arrays(100)):
            np.testing.assert_array_equal(got, want)
        assert len(out) == 100


def test_dead_worker_task_runs_again(tmp_path):
    flag = str(tmp_path / "flag")
    assert run(die_once, [(flag, i) for i in range(5)], batch_size=1) == [0, 1, 4, 9, 16]
    assert os.path.exists(flag)


def test_timeout():
    t = time.monotonic()
    with pytest.raises(Exception) as ei:
        run(nap, [(30,), (0.01,)], timeout=0.5, batch_size=1)
    assert isinstance(ei.value, TimeoutError) or "Timeout" in type(ei.value).__name__
    assert time.monotonic() - t < 8
    assert run(nap, [(0.01,)]) == [0.01]


def test_keyboard_interrupt():
    main = threading.main_thread().ident
    threading.Timer(0.5, signal.pthread_kill, (main, signal.SIGINT)).start()
    t = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        run(nap, [(30,)] * 4, batch_size=1)
    assert time.monotonic() - t < 8
    assert run(nap, [(0.01,)]) == [0.01]


def _in_thread(fn, limit=30):
    """fn() in a thread: its result or exception, or a failure when it is
    still running after @limit seconds (it hung)."""
    out = {}

    def body():
        try:
            out["r"] = fn()
        except BaseException as e:  # noqa: B902
            out["e"] = e
    t = threading.Thread(target=body, daemon=True)
    t.start()
    t.join(limit)
    assert not t.is_alive(), "hung"
    return out


def test_failed_dispatch_in_results_thread_raises():
    # Past pre_dispatch, joblib dispatches from the pool's results thread:
    # an argument that cannot be pickled there fails the call, no hang.
    calls = [(nap, 0.05)] * 6 + [(ident, threading.Lock())]

    def call():
        with parallel_backend("shoal", n_jobs=2):
            return Parallel(batch_size=1, pre_dispatch=2)(delayed(f)(a) for f, a in calls)
    out = _in_thread(call)
    # loky's error: a PicklingError caused by what failed.
    e = out.get("e")
    assert isinstance(e, pickle.PicklingError) and isinstance(e.__cause__, TypeError), out
    assert run(nap, [(0.01,)]) == [0.01]


def test_no_room_for_a_shared_copy_pickles(monkeypatch):
    import errno

    def full(a, keep):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(sj, "_share_copy", full)
    x = np.random.rand(300, 1000)
    before = sj.cache_info()
    assert run(row_sum, [(x, i) for i in range(4)]) == [float(x[i].sum()) for i in range(4)]
    info = sj.cache_info()
    assert info["pickled"] == before["pickled"] + 4 and info["copies"] == before["copies"]


def test_results_made_but_not_handed_over_are_freed(tmp_path):
    before = _arrays()
    # The stuck workers are killed by the terminations below after the
    # grace time: theirs is short, as nothing they could finish is lost.
    # One task per worker at a time: the two of a call run side by side.
    quick = {"n_jobs": 2, "grace": 0.05, "prefetch": 1}
    stuck = [tmp_path / s for s in ("abort", "timeout", "ctrl-c")]
    for d in stuck:
        d.mkdir()
    # Abort: a worker made an 8 MB result and is stuck before handing it
    # over; another task fails once it is, the pool is terminated.
    t = time.monotonic()
    with pytest.raises(ValueError, match="boom later"):
        with parallel_backend("shoal", **quick):
            Parallel(batch_size=1)([delayed(boom_when_stuck)(str(stuck[0])),
                                    delayed(made_then_stuck)(MiB, str(stuck[0]))])
    assert os.listdir(stuck[0])
    assert _arrays() - before == set()
    # Timeout: the same, the call ends by joblib's timeout.
    with pytest.raises(Exception) as ei:
        with parallel_backend("shoal", **quick):
            Parallel(batch_size=1, timeout=1)(delayed(made_then_stuck)(MiB, str(stuck[1]))
                                              for _ in range(2))
    assert isinstance(ei.value, TimeoutError) or "Timeout" in type(ei.value).__name__
    assert _arrays() - before == set()
    # Ctrl-C, likewise, once both are stuck.
    main = threading.main_thread().ident
    threading.Thread(target=lambda: (_wait_stuck(str(stuck[2]), 2),
                                     signal.pthread_kill(main, signal.SIGINT)),
                     daemon=True).start()
    with pytest.raises(KeyboardInterrupt):
        with parallel_backend("shoal", **quick):
            Parallel(batch_size=1)(delayed(made_then_stuck)(MiB, str(stuck[2]))
                                   for _ in range(2))
    assert len(os.listdir(stuck[2])) == 2
    assert _arrays() - before == set()
    # A result that fails to unpickle after its first array was attached:
    # the second array, held for this process, goes too.
    with pytest.raises(RuntimeError, match="cannot unpickle here"):
        run(half_unpicklable, [(MiB,)])
    import gc
    gc.collect()
    assert _arrays() - before == set()
    assert time.monotonic() - t < 12


@pytest.mark.parametrize("how", ["reap", "next pool"])
def test_dead_callers_result_is_reaped(how):
    # The caller is SIGKILLed when its result's array arrives, before it
    # attaches it: the worker made it and held it for the caller. A reap
    # frees it (a pin would have kept it), and so does the next pool of
    # the backend that any process makes.
    code = """if 1:
        import os, signal, sys, numpy as np, joblib, shoal.joblib as sj
        def f(n): return np.full(n, 3.0)
        def adopt(handle, dtype):
            print(handle, flush=True)
            os.kill(os.getpid(), signal.SIGKILL)
        sj._adopt = adopt
        with joblib.parallel_backend("shoal", n_jobs=2):
            joblib.Parallel()(joblib.delayed(f)(n) for n in [2**18])
        """
    before = _arrays()
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == -signal.SIGKILL, out.stderr
    name = "shoal." + out.stdout.strip()[len("shoal:array:"):].rpartition("@")[0]
    assert name.startswith("shoal.jl.")
    # Held for the dead caller alone (attaching it here would free it too:
    # the last live holder's release drops the dead holders' lines).
    assert name in _arrays()
    if how == "reap":
        assert shoal.reap() >= 1
    else:
        nxt = subprocess.run([sys.executable, "-c", """if 1:
            import joblib, shoal.joblib
            with joblib.parallel_backend("shoal", n_jobs=2):
                assert joblib.Parallel()(joblib.delayed(abs)(-i) for i in range(3)) == [0, 1, 2]
            """], capture_output=True, text=True, timeout=120)
        assert nxt.returncode == 0, nxt.stderr
    assert _arrays() - before == set()


def test_abort_leaves_other_calls_on_the_pool_alone():
    # Two threads on one pool (one configuration): one call fails while
    # one of its tasks runs; the other call goes on.
    def long_call():
        with parallel_backend("shoal", n_jobs=3):
            return Parallel(batch_size=1)(delayed(nap)(0.3) for _ in range(10))

    def failing_call():
        time.sleep(0.1)
        with parallel_backend("shoal", n_jobs=3):
            return Parallel(batch_size=1)(delayed(f)(a) for f, a in
                                          [(boom_later, 0.2), (nap, 1.5)])
    run(pid, [()] * 3, n_jobs=3)  # the pool is up
    out = {}
    t = threading.Thread(target=lambda: out.update(_in_thread(failing_call)))
    t.start()
    res = _in_thread(long_call)
    t.join(30)
    assert res.get("r") == [0.3] * 10, res
    assert isinstance(out.get("e"), ValueError), out
    assert run(pid, [()] * 3, n_jobs=3)


def test_view_of_an_array_released_here_is_held_by_the_task():
    a = shoal.Array.zeros((300000,))
    other = shoal.Array.attach(a.handle)  # another holder
    v = a.numpy()
    a.release()
    # The third task waits for a worker; meanwhile the other holder lets
    # go: the task's own reference keeps the array.
    timer = threading.Timer(0.2, other.release)
    timer.start()
    res = Parallel(n_jobs=2, backend="shoal", batch_size=1)(
        delayed(f)(x) for f, x in [(nap, 0.6), (nap, 0.6), (flags_of, v)])
    timer.join()
    assert res[2][3] == 0.0 and other.released


def test_nested():
    out = run(nested, [(i,) for i in range(3)])
    assert out == [([1, i, i * i], "ThreadingBackend") for i in range(3)]
    # "shoal" inside a shoal worker runs in that worker, sequentially.
    res = run(nested_shoal, [(0,), (1,)])
    assert all(len(set(r)) == 1 for r in res)


# ---- joblib >= 1.5's protocol, driven as its Parallel drives it -----------------

class _FakeParallel:
    n_jobs = 2
    _id = "fake"


def _tracker(b, results, done):
    """Task k's completion callback as joblib 1.3+ gives it: the job, on
    success and on failure; it records ("ok", result) or ("err", exc) from
    backend @b's retrieve_result_callback in @results[k], then releases
    @done."""
    def tracker(k):
        def cb(out):
            try:
                results[k] = ("ok", b.retrieve_result_callback(out))
            except BaseException as e:  # noqa: B902
                results[k] = ("err", e)
            done.release()
        return cb
    return tracker


def test_submit_protocol_of_joblib_1_5():
    b = sj.ShoalBackend(nesting_level=0)
    assert b.supports_retrieve_callback and b.supports_timeout
    assert b.configure(n_jobs=2, parallel=_FakeParallel(), max_nbytes=MiB, mmap_mode="r") == 2
    b.start_call()
    x = np.random.rand(200, 1000)
    done, results = threading.Semaphore(0), {}
    tracker = _tracker(b, results, done)

    nb = b.get_nested_backend()
    jobs = []
    for k in range(4):
        batch = BatchedCalls([(row_sum, (x, i), {}) for i in range(k * 5, k * 5 + 5)], nb)
        jobs.append(b.submit(batch, callback=tracker(k)))
    bad = BatchedCalls([(boom, (3,), {})], nb)
    jobs.append(b.submit(bad, callback=tracker(4)))
    for _ in range(5):
        assert done.acquire(timeout=30)
    for k in range(4):
        assert results[k] == ("ok", [float(x[i].sum()) for i in range(k * 5, k * 5 + 5)])
    assert results[4][0] == "err" and isinstance(results[4][1], ValueError)
    # supports_retrieve_callback=False's path: retrieve_result in the caller.
    assert b.retrieve_result(jobs[0], timeout=5) == results[0][1]
    with pytest.raises(ValueError):
        b.retrieve_result(jobs[4])
    slow = b.submit(BatchedCalls([(nap, (30,), {})], nb))
    with pytest.raises(Exception, match="no result within"):
        b.retrieve_result(slow, timeout=0.2)
    b.abort_everything(ensure_ready=True)
    assert b.submit(BatchedCalls([(pid, (), {})], nb)).result(30)[0] != os.getpid()
    b.stop_call()
    b.terminate()


def test_apply_async_protocol_of_joblib_1_3_and_1_4(monkeypatch):
    # joblib 1.2 (installed): callback(result list), on success only.
    assert sj._CALLBACK_GETS_JOB is hasattr(joblib.parallel, "TASK_PENDING")
    b = sj.ShoalBackend(nesting_level=0)
    b.configure(n_jobs=2, parallel=_FakeParallel(), max_nbytes=MiB, mmap_mode="r")
    b.start_call()
    nb = b.get_nested_backend()
    got = threading.Semaphore(0)
    seen = []
    monkeypatch.setattr(sj, "_CALLBACK_GETS_JOB", False)
    b.apply_async(BatchedCalls([(abs, (-2,), {})], nb),
                  callback=lambda out: (seen.append(out), got.release()))
    bad = b.apply_async(BatchedCalls([(boom, (3,), {})], nb), callback=seen.append)
    assert got.acquire(timeout=30) and seen == [[2]]
    # Not raised here: its traceback would hold this frame (and x below)
    # in a cycle, past the fixture's check.
    assert isinstance(bad.exception(30), ValueError)
    assert seen == [[2]]
    # joblib 1.3/1.4 (they read supports_retrieve_callback): apply_async,
    # then their BatchCompletionCallBack gets the job, on success and on
    # failure, and calls retrieve_result_callback(job) in that thread.
    monkeypatch.setattr(sj, "_CALLBACK_GETS_JOB", True)
    results = {}
    tracker = _tracker(b, results, got)
    x = np.random.rand(200, 1000)
    jobs = [b.apply_async(BatchedCalls([(row_sum, (x, i), {}) for i in range(3)], nb),
                          callback=tracker(0)),
            b.apply_async(BatchedCalls([(boom, (3,), {})], nb), callback=tracker(1)),
            # A batch that cannot be pickled: the callback still comes.
            b.apply_async(BatchedCalls([(ident, (threading.Lock(),), {})], nb),
                          callback=tracker(2))]
    for _ in jobs:
        assert got.acquire(timeout=30)
    assert results[0] == ("ok", [float(x[i].sum()) for i in range(3)])
    assert results[1][0] == "err" and isinstance(results[1][1], ValueError)
    assert results[2][0] == "err" and isinstance(results[2][1], pickle.PicklingError)
    assert isinstance(results[2][1].__cause__, TypeError)
    b.stop_call()
    b.terminate()


# ---- scikit-learn, beside loky ------------------------------------------------

def _sk():
    """A Ridge whose first fit in a worker kills that worker, once (a flag
    file says it happened)."""
    from sklearn.base import BaseEstimator, RegressorMixin
    from sklearn.linear_model import Ridge

    class DieOnceRidge(BaseEstimator, RegressorMixin):
        def __init__(self, alpha=1.0, flag=None):
            self.alpha = alpha
            self.flag = flag

        def fit(self, X, y):
            if self.flag and not os.path.exists(self.flag) and os.getpid() != _parent:
                open(self.flag, "w").close()
                os.kill(os.getpid(), signal.SIGKILL)
            self.model_ = Ridge(alpha=self.alpha).fit(X, y)
            return self

        def predict(self, X):
            return self.model_.predict(X)

    return DieOnceRidge


_parent = os.getpid()


def test_sklearn_gridsearch_200mb_same_as_loky(tmp_path):
    from sklearn.model_selection import GridSearchCV, cross_val_score
    rng = np.random.default_rng(0)
    X = rng.random((1_000_000, 25))  # 200 MB
    y = X[:, :5] @ np.arange(1.0, 6.0) + rng.normal(0, 0.1, X.shape[0])
    grid = {"alpha": [0.1, 10.0]}
    out = {}
    for backend in ("loky", "shoal"):
        est = _sk()(flag=str(tmp_path / "flag") if backend == "shoal" else None)
        with parallel_backend(backend, n_jobs=2):
            g = GridSearchCV(est, grid, cv=2).fit(X[:, :5], y)  # a 40 MB copy
            s = cross_val_score(est, X, y, cv=2)
        out[backend] = (list(g.cv_results_["mean_test_score"]), g.best_params_, list(s))
    # The first shoal fit killed its worker: the search did not notice.
    assert os.path.exists(tmp_path / "flag")
    assert out["shoal"][1] == out["loky"][1]
    np.testing.assert_allclose(out["shoal"][0], out["loky"][0], rtol=1e-12)
    np.testing.assert_allclose(out["shoal"][2], out["loky"][2], rtol=1e-12)


# ---- exit -----------------------------------------------------------------------

def test_nothing_left_at_exit(tmp_path):
    code = """if 1:
        import os, numpy as np, joblib, shoal.joblib
        def f(x, i): return np.full(300000, float(x[i].sum()))
        X = np.random.rand(500, 1000)
        with joblib.parallel_backend("shoal", n_jobs=2):
            keep = joblib.Parallel()(joblib.delayed(f)(X, i) for i in range(6))
        print(len(os.listdir(shoal.directory())))
        """
    # A directory of its own (on /dev/shm's tmpfs): what other tests make
    # meanwhile (make -j check runs the C tests beside this one) is not
    # counted as the child's.
    d = tempfile.mkdtemp(prefix="test-joblib-exit.", dir="/dev/shm")
    try:
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             timeout=120, env=dict(os.environ, SHOAL_DIR=d))
        assert out.returncode == 0, out.stderr
        assert int(out.stdout) > 0  # it had made objects
        assert os.listdir(d) == []
    finally:
        shutil.rmtree(d)
