"""shoal.Pool: a process pool that recycles workers by private memory.

The ledger, the supervisor and the recycling policy are libshoal's
(lib/pool.c), driven here through ctypes; Python brings only a way to start
worker processes (multiprocessing's fork, spawn or forkserver) and the
pickling of calls and results. Workers are Python processes that take
tasks from the ledger with shoal_pool_worker_next(), a futex wait that
releases the GIL.

Each task is a pickled ``(function, [(args, kwargs), ...])`` (a chunk of
calls); its result a pickled ``(True, [values])`` or ``(False, exception)``
with the remote traceback attached as ``__cause__``. Tasks and results
larger than the ledger's inline space travel through a shoal segment.
"""
import atexit
import concurrent.futures
import ctypes
import errno
import gc
import itertools
import multiprocessing
import os
import pickle
import re
import signal
import threading
import time
import traceback
import warnings
import weakref
from concurrent.futures.process import BrokenProcessPool

from . import _lib
from ._lib import ShoalError, declare

_vp = ctypes.c_void_p
_u64 = ctypes.c_uint64

SHOAL_EWORKERLOST = _lib.SHOAL_ERRBASE + 1
REASONS = ("tasks", "memory", "hard", "age", "died")

_FN = ctypes.CFUNCTYPE(ctypes.c_int, _vp, _vp, ctypes.c_size_t, ctypes.POINTER(_vp),
                       ctypes.POINTER(ctypes.c_size_t))
_SPAWN = ctypes.CFUNCTYPE(ctypes.c_int, _vp, ctypes.c_char_p, ctypes.c_uint32, _u64)
_REAP = ctypes.CFUNCTYPE(ctypes.c_int, _vp, ctypes.c_int)


class _Config(ctypes.Structure):
    _fields_ = [("name", ctypes.c_char_p), ("workers", ctypes.c_uint), ("max_tasks", _u64),
                ("max_tasks_jitter", ctypes.c_uint), ("max_private", _u64),
                ("hard_private", _u64), ("max_age_ns", _u64), ("max_attempts", ctypes.c_uint),
                ("grace_ns", _u64), ("check_ns", _u64), ("inline_bytes", ctypes.c_size_t),
                ("depth", ctypes.c_uint), ("fn", _FN), ("fn_arg", _vp), ("spawn", _SPAWN),
                ("reap", _REAP), ("hook_arg", _vp)]


class _Result(ctypes.Structure):
    _fields_ = [("id", _u64), ("err", ctypes.c_int), ("signal", ctypes.c_int),
                ("attempts", ctypes.c_uint32), ("last_private", _u64), ("data", _vp),
                ("len", ctypes.c_size_t)]


class _Stats(ctypes.Structure):
    _fields_ = [("pid", ctypes.c_int), ("tasks", _u64), ("tasks_total", _u64),
                ("private_now", _u64), ("private_peak", _u64), ("recycles", _u64 * len(REASONS)),
                ("last_reason", ctypes.c_int), ("trims", _u64)]


class _Info(ctypes.Structure):
    _fields_ = [("pending", _u64), ("running", _u64), ("completed", _u64), ("lost", _u64),
                ("config_error", ctypes.c_int), ("config_private", _u64),
                ("spawn_error", ctypes.c_int), ("recycle_ns_median", _u64)]


class _Task(ctypes.Structure):
    _fields_ = [("id", _u64), ("attempt", ctypes.c_uint32), ("data", _vp),
                ("len", ctypes.c_size_t)]


_create = declare("shoal_pool_create", ctypes.c_int, ctypes.POINTER(_Config), ctypes.POINTER(_vp))
_submit = declare("shoal_pool_submit", ctypes.c_int, _vp, ctypes.c_char_p, ctypes.c_size_t,
                  ctypes.POINTER(_u64))
_submit_many = declare("shoal_pool_submit_many", ctypes.c_int, _vp, ctypes.c_char_p,
                       ctypes.POINTER(ctypes.c_size_t), ctypes.c_size_t, ctypes.POINTER(_u64))
_wait = declare("shoal_pool_wait", ctypes.c_int, _vp, ctypes.c_int64, ctypes.POINTER(_Result),
                ctypes.c_size_t, check=False)
_result_free = declare("shoal_pool_result_free", None, ctypes.POINTER(_Result), check=False)
_cancel = declare("shoal_pool_cancel", ctypes.c_int, _vp, _u64, check=False)
_stats = declare("shoal_pool_stats", ctypes.c_int, _vp, ctypes.POINTER(_Stats), ctypes.c_size_t)
_info = declare("shoal_pool_info", ctypes.c_int, _vp, ctypes.POINTER(_Info))
_name = declare("shoal_pool_name", ctypes.c_char_p, _vp, check=False)
_destroy = declare("shoal_pool_destroy", ctypes.c_int, _vp)
_wopen = declare("shoal_pool_worker_open", ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32, _u64,
                 ctypes.POINTER(_vp))
_wnext = declare("shoal_pool_worker_next", ctypes.c_int, _vp, ctypes.c_int64,
                 ctypes.POINTER(_Task), check=False)
_wdone = declare("shoal_pool_worker_done", ctypes.c_int, _vp, ctypes.c_int, ctypes.c_char_p,
                 ctypes.c_size_t, check=False)
_wtrimmed = declare("shoal_pool_worker_trimmed", ctypes.c_int, _vp)
_wclose = declare("shoal_pool_worker_close", None, _vp, check=False)

_TASK, _TRIM = 1, 2


class WorkerLost(ShoalError):
    """The worker running a task died every time it ran (``attempts``
    times): killed by a signal (``signal``, 0 if it exited), the OOM killer,
    a crash, or the pool's hard memory limit. ``last_private`` is its last
    private memory reading in bytes."""

    def __init__(self, signal_=0, attempts=0, last_private=0):
        self.signal = signal_
        self.attempts = attempts
        self.last_private = last_private
        how = (f"killed by {signal.Signals(signal_).name}" if signal_ else "exited")
        super().__init__(SHOAL_EWORKERLOST,
                         f"worker lost: the process running the task {how}, "
                         f"{attempts} attempt(s); last private memory {_fmt(last_private)}")

    def __reduce__(self):
        return (WorkerLost, (self.signal, self.attempts, self.last_private))


class RemoteTraceback(Exception):
    """The traceback of an exception raised in a worker (its __cause__)."""

    def __init__(self, tb):
        super().__init__(tb)
        self.tb = tb

    def __str__(self):
        return self.tb


def _rebuild_exc(exc, tb):
    exc.__cause__ = RemoteTraceback(tb)
    return exc


class _ExceptionWithTraceback:
    def __init__(self, exc):
        tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        self.exc = exc
        self.tb = f'\n"""\n{tb}"""'

    def __reduce__(self):
        return _rebuild_exc, (self.exc, self.tb)


_UNITS = {"": 1, "b": 1, "k": 1000, "kb": 1000, "m": 1000**2, "mb": 1000**2, "g": 1000**3,
          "gb": 1000**3, "t": 1000**4, "tb": 1000**4, "kib": 1024, "mib": 1024**2,
          "gib": 1024**3, "tib": 1024**4}


def parse_size(v):
    """Bytes from an int or a string such as "512 MiB", "1.5GiB", "100 MB"."""
    if v is None:
        return 0
    if isinstance(v, (int, float)):
        if v < 0:
            raise ValueError("a size must not be negative")
        return int(v)
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([A-Za-z]*)\s*", str(v))
    if not m or m.group(2).lower() not in _UNITS:
        raise ValueError(f"not a size: {v!r} (try '512 MiB')")
    return int(float(m.group(1)) * _UNITS[m.group(2).lower()])


def _fmt(n):
    return f"{n / 2**20:.1f} MiB"


def _run_chunk(data):
    try:
        fn, calls = pickle.loads(data)
        return (True, [fn(*a, **k) for a, k in calls])
    except BaseException as e:  # noqa: B902 - everything goes back to the caller
        return (False, _ExceptionWithTraceback(e))


def _dumps(out):
    try:
        return pickle.dumps(out, pickle.HIGHEST_PROTOCOL)
    except Exception as e:
        return pickle.dumps((False, _ExceptionWithTraceback(
            RuntimeError(f"result could not be pickled: {e!r}"))), pickle.HIGHEST_PROTOCOL)


def _worker_main(ledger, slot, gen, initializer, initargs):
    """A Python worker: the body of each worker process."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # Before announcing ready: a worker whose initializer fails dies
    # before it starts, which the supervisor reports instead of looping.
    if initializer is not None:
        initializer(*initargs)
    w = _vp()
    _wopen(ledger.encode(), slot, gen, ctypes.byref(w))
    task = _Task()
    try:
        while True:
            rc = _wnext(w, -1, ctypes.byref(task))
            if rc == _TRIM:
                gc.collect()
                _wtrimmed(w)
                continue
            if rc != _TASK:
                break
            out = _dumps(_run_chunk(ctypes.string_at(task.data, task.len)))
            _wdone(w, 0, out, len(out))
    finally:
        _wclose(w)


_live_pools = weakref.WeakSet()


@atexit.register
def _shutdown_all():
    for p in list(_live_pools):
        p.terminate()


class AsyncResult:
    """What apply_async() returns, as in multiprocessing.pool."""

    def __init__(self, future, callback=None, error_callback=None, single=True):
        self._f = future
        self._single = single
        if callback or error_callback:
            def done(f):
                if f.cancelled():
                    return
                e = f.exception()
                if e is None and callback:
                    callback(f.result()[0] if single else f.result())
                elif e is not None and error_callback:
                    error_callback(e)
            future.add_done_callback(done)

    def get(self, timeout=None):
        try:
            v = self._f.result(timeout)
        except concurrent.futures.TimeoutError:
            raise multiprocessing.TimeoutError from None
        return v[0] if self._single else v

    def wait(self, timeout=None):
        concurrent.futures.wait([self._f], timeout)

    def ready(self):
        return self._f.done()

    def successful(self):
        if not self._f.done():
            raise ValueError(f"{self!r} not ready")
        return not self._f.cancelled() and self._f.exception() is None


class Pool(concurrent.futures.Executor):
    """A pool of worker processes that recycles them by private memory.

    ``workers``: how many (default os.cpu_count()). ``initializer(*initargs)``
    runs in each worker when it starts. ``start_method``: "fork" (default),
    "spawn" or "forkserver".

    Recycling (each optional): ``max_tasks`` tasks per worker (each worker's
    limit drawn ``max_tasks_jitter`` percent below it, so they do not all
    restart at once); ``max_private_memory`` ("512 MiB"), a soft limit on a
    worker's private memory (anonymous RSS + swap, never RSS, so shared
    arrays do not count), checked between tasks: the worker first runs
    gc.collect() and malloc_trim(), and is replaced only if still over;
    ``hard_memory_limit``, checked while tasks run: SIGTERM, then SIGKILL
    after ``grace`` seconds, and the task runs again; ``max_age`` seconds.
    A replacement starts before the worker it replaces retires.

    A worker that dies (SIGKILL, OOM, a crash) never hangs or breaks the
    pool: its task runs again, up to ``max_attempts`` times in all, then
    fails with WorkerLost.

    Pickled tasks and results up to ``inline_bytes`` travel inside the
    shared ledger, larger ones through a shoal segment. ``prefetch`` tasks
    are handed to each worker ahead of time: more is faster for tiny tasks,
    fewer balances long ones better. Use ``chunksize`` in map() for tiny
    tasks, as with multiprocessing.
    """

    def __init__(self, workers=None, *, initializer=None, initargs=(), max_tasks=None,
                 max_tasks_jitter=10, max_private_memory=None, hard_memory_limit=None,
                 max_age=None, max_attempts=3, start_method="fork", grace=1.0,
                 check_interval=0.02, inline_bytes=16384, prefetch=4):
        if workers is None:
            workers = os.cpu_count() or 1
        if not 1 <= workers <= 256:
            raise ValueError("workers must be between 1 and 256")
        if start_method not in multiprocessing.get_all_start_methods():
            raise ValueError(f"unknown start method {start_method!r}")
        if initializer is not None and not callable(initializer):
            raise TypeError("initializer must be callable")
        if max_tasks is not None and max_tasks < 1:
            raise ValueError("max_tasks must be at least 1")
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        self._ctx = multiprocessing.get_context(start_method)
        self._start_method = start_method
        self._initializer = initializer
        self._initargs = tuple(initargs)
        self._workers = workers
        self._procs = {}
        self._procs_lock = threading.Lock()
        self._futures = {}
        self._lock = threading.Lock()
        self._shutdown = False
        self._config_warned = False
        self._ptr = None
        cfg = _Config()
        cfg.workers = workers
        cfg.max_tasks = max_tasks or 0
        cfg.max_tasks_jitter = max_tasks_jitter
        cfg.max_private = parse_size(max_private_memory)
        cfg.hard_private = parse_size(hard_memory_limit)
        cfg.max_age_ns = int((max_age or 0) * 1e9)
        cfg.max_attempts = max_attempts
        cfg.grace_ns = int(grace * 1e9)
        cfg.check_ns = int(check_interval * 1e9)
        cfg.inline_bytes = inline_bytes
        cfg.depth = prefetch
        # The hooks hold only a weak reference: the pool stays collectable.
        ref = weakref.ref(self)
        self._spawn_cb = _SPAWN(lambda _a, ledger, slot, gen: _spawn(ref, ledger, slot, gen))
        self._reap_cb = _REAP(lambda _a, pid: _reap(ref, pid))
        cfg.spawn = self._spawn_cb
        cfg.reap = self._reap_cb
        out = _vp()
        _create(ctypes.byref(cfg), ctypes.byref(out))
        self._ptr = out.value
        self.name = _name(self._ptr).decode()
        _live_pools.add(self)
        # Set before the C pool is destroyed: the results thread must not
        # call into it again (see _destroy).
        self._stopping = threading.Event()
        self._collector = threading.Thread(target=_collect,
                                           args=(ref, self._ptr, self._stopping),
                                           name="shoal-pool-results", daemon=True)
        self._collector.start()

    # ---- submitting ----

    def _submit_chunk(self, fn, calls):
        data = pickle.dumps((fn, calls), pickle.HIGHEST_PROTOCOL)
        f = concurrent.futures.Future()
        with self._lock:
            if self._shutdown:
                raise RuntimeError("cannot schedule new futures after shutdown")
            tid = _u64()
            _submit(self._ptr, data, len(data), ctypes.byref(tid))
            self._futures[tid.value] = f
        f.add_done_callback(lambda f, tid=tid.value: self._on_cancel(f, tid))
        return f

    def _on_cancel(self, f, tid):
        if f.cancelled():
            with self._lock:
                self._futures.pop(tid, None)
                if self._ptr:
                    _cancel(self._ptr, tid)
            # No result will come to do it: tell waiters (wait(),
            # as_completed()) that it is cancelled.
            f.set_running_or_notify_cancel()

    def submit(self, fn, /, *args, **kwargs):
        """Run fn(*args, **kwargs) in a worker; a Future of its result."""
        inner = self._submit_chunk(fn, [(args, kwargs)])
        outer = concurrent.futures.Future()

        def relay(f):
            if f.cancelled():
                outer.cancel()
            elif f.exception() is not None:
                if outer.set_running_or_notify_cancel():
                    outer.set_exception(f.exception())
            elif outer.set_running_or_notify_cancel():
                outer.set_result(f.result()[0])

        def back(o):
            if o.cancelled():
                inner.cancel()
        inner.add_done_callback(relay)
        outer.add_done_callback(back)
        return outer

    def _chunks(self, fn, iterables, chunksize, star=False):
        """Submit the calls in chunks, all in one go (one C call, one wake
        of the supervisor): a list of (task id, Future of the chunk)."""
        if chunksize < 1:
            raise ValueError("chunksize must be >= 1")
        it = iter(zip(*iterables)) if not star else iter(iterables[0])
        datas = []
        while True:
            chunk = list(itertools.islice(it, chunksize))
            if not chunk:
                break
            datas.append(pickle.dumps((fn, [(tuple(a), {}) for a in chunk]),
                                      pickle.HIGHEST_PROTOCOL))
        if not datas:
            return []
        lens = (ctypes.c_size_t * len(datas))(*map(len, datas))
        fs = [concurrent.futures.Future() for _ in datas]
        with self._lock:
            if self._shutdown:
                raise RuntimeError("cannot schedule new futures after shutdown")
            first = _u64()
            _submit_many(self._ptr, b"".join(datas), lens, len(datas), ctypes.byref(first))
            ids = range(first.value, first.value + len(datas))
            self._futures.update(zip(ids, fs))
        return list(zip(ids, fs))

    def _drop(self, pairs):
        """Cancel what no worker has started of (id, Future) pairs."""
        for tid, f in pairs:
            if not f.done() and f.cancel():
                self._on_cancel(f, tid)

    def map(self, fn, *iterables, timeout=None, chunksize=1):
        """As Executor.map: results in order; ``chunksize`` items per task."""
        end = None if timeout is None else time.monotonic() + timeout
        pairs = self._chunks(fn, iterables, chunksize)

        def gen():
            try:
                for _, f in pairs:
                    if end is None:
                        yield from f.result()
                    else:
                        yield from f.result(end - time.monotonic())
            finally:
                self._drop(pairs)
        return gen()

    def imap(self, func, iterable, chunksize=1):
        """As multiprocessing.Pool.imap: an iterator of results in order."""
        pairs = self._chunks(func, [iterable], chunksize)
        try:
            for _, f in pairs:
                yield from f.result()
        finally:
            self._drop(pairs)

    def imap_unordered(self, func, iterable, chunksize=1):
        """As multiprocessing.Pool.imap_unordered: results as they come."""
        pairs = self._chunks(func, [iterable], chunksize)
        try:
            for f in concurrent.futures.as_completed([f for _, f in pairs]):
                yield from f.result()
        finally:
            self._drop(pairs)

    def starmap(self, func, iterable, chunksize=1):
        """As multiprocessing.Pool.starmap: a list."""
        pairs = self._chunks(func, [iterable], chunksize, star=True)
        try:
            return [v for _, f in pairs for v in f.result()]
        finally:
            self._drop(pairs)

    def apply_async(self, func, args=(), kwds=None, callback=None, error_callback=None):
        """As multiprocessing.Pool.apply_async: an AsyncResult."""
        f = self._submit_chunk(func, [(tuple(args), dict(kwds or {}))])
        return AsyncResult(f, callback, error_callback)

    def apply(self, func, args=(), kwds=None):
        return self.apply_async(func, args, kwds).get()

    # ---- looking ----

    def stats(self):
        """Per worker position: pid, tasks (current worker), tasks_total,
        private and private_peak (bytes), recycles by reason, last_reason,
        trims."""
        if not self._ptr:
            return []
        arr = (_Stats * self._workers)()
        _stats(self._ptr, arr, self._workers)
        return [dict(pid=s.pid, tasks=s.tasks, tasks_total=s.tasks_total, private=s.private_now,
                     private_peak=s.private_peak,
                     recycles={REASONS[i]: s.recycles[i] for i in range(len(REASONS))},
                     last_reason=REASONS[s.last_reason] if s.last_reason >= 0 else None,
                     trims=s.trims) for s in arr]

    def info(self):
        """Pool counters: pending, running, completed, lost (WorkerLost
        tasks), config_error (a message, or None), recycle_ms_median (decision
        to replacement ready, over the last 64 replacements)."""
        i = _Info()
        _info(self._ptr, ctypes.byref(i))
        return dict(pending=i.pending, running=i.running, completed=i.completed, lost=i.lost,
                    config_error=self._config_message(i),
                    recycle_ms_median=i.recycle_ns_median / 1e6)

    def pids(self):
        """The pids of the current workers (for MemoryMonitor(pids=pool.pids))."""
        return [s["pid"] for s in self.stats() if s["pid"] > 0]

    def _config_message(self, i):
        if not i.config_error:
            return None
        which = ("max_private_memory", "hard_memory_limit")[i.config_error - 2]
        return (f"{which} is below a fresh worker's private memory ({_fmt(i.config_private)}): "
                f"it is not applied to workers that start over it")

    def _check_config(self):
        if self._config_warned or not self._ptr:
            return
        i = _Info()
        _info(self._ptr, ctypes.byref(i))
        msg = self._config_message(i)
        if msg:
            self._config_warned = True
            warnings.warn(msg, RuntimeWarning, stacklevel=3)

    # ---- stopping ----

    def shutdown(self, wait=True, *, cancel_futures=False):
        """As Executor.shutdown. With ``cancel_futures``, tasks no worker
        has started are cancelled. With ``wait``, returns when every task
        has finished and every worker has left."""
        with self._lock:
            self._shutdown = True
            pending = list(self._futures.items())
        if cancel_futures:
            for tid, f in pending:
                if self._ptr and _cancel(self._ptr, tid) == 0:
                    f.cancel()
        if wait:
            concurrent.futures.wait([f for _, f in pending])
            self._destroy()
        else:
            threading.Thread(target=lambda: (concurrent.futures.wait([f for _, f in pending]),
                                             self._destroy()), daemon=True).start()

    close = shutdown

    def terminate(self):
        """Stop now: unfinished tasks are cancelled, workers leave or are
        killed after the grace time."""
        with self._lock:
            self._shutdown = True
        self._destroy()

    def join(self):
        self.shutdown(wait=True)

    def _destroy(self):
        with self._lock:
            ptr, self._ptr = self._ptr, None
        if not ptr:
            return
        # The results thread leaves within one wait slice (200 ms), so it is
        # never inside, or about to enter, shoal_pool_wait() on a freed
        # pool. The last reference may drop in that thread itself: it is
        # then not waiting, and sees the event before it would again.
        self._stopping.set()
        if threading.current_thread() is not self._collector:
            self._collector.join()
        _destroy(ptr)
        with self._lock:
            left, self._futures = list(self._futures.values()), {}
        for f in left:
            if not f.cancel() and not f.done():
                f.set_exception(concurrent.futures.CancelledError("the pool was terminated"))
        _live_pools.discard(self)

    def __exit__(self, *exc):
        self.shutdown(wait=True)
        return False

    def __del__(self):
        if getattr(self, "_ptr", None):
            self.terminate()

    def __repr__(self):
        state = "shut down" if self._shutdown else f"workers={self._workers}"
        return f"<shoal.Pool {self.name if self._ptr else ''} {state}>"


# The hooks run in libshoal's supervisor and reaper threads (ctypes takes
# the GIL); they must never raise into C.

def _spawn(ref, ledger, slot, gen):
    pool = ref()
    if pool is None:
        return -errno.ESHUTDOWN
    try:
        proc = pool._ctx.Process(target=_worker_main, daemon=True,
                                 args=(ledger.decode(), slot, gen, pool._initializer,
                                       pool._initargs), name=f"shoal-worker-{slot}")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            proc.start()
        with pool._procs_lock:
            pool._procs[proc.pid] = proc
        return proc.pid
    except BaseException as e:  # noqa: B902
        return -(getattr(e, "errno", None) or errno.EAGAIN)


def _reap(ref, pid):
    pool = ref()
    if pool is None:
        return -errno.ECHILD
    try:
        with pool._procs_lock:
            proc = pool._procs.pop(pid, None)
        if proc is None:
            return -errno.ECHILD
        proc.join(5)
        code = proc.exitcode
        if code is None:
            return -errno.ECHILD
        return (-code) & 0x7f if code < 0 else (code & 0xff) << 8
    except BaseException:  # noqa: B902
        return -errno.ECHILD


def _collect(ref, ptr, stopping):
    """The results thread: takes finished tasks and completes futures."""
    results = (_Result * 64)()
    while not stopping.is_set():
        n = _wait(ptr, 200_000_000, results, 64)
        if n == -errno.EPIPE:
            return
        pool = ref()
        if pool is None:
            return
        if n == -errno.ETIMEDOUT:
            pool._check_config()
            del pool
            continue
        done = []
        for r in results[:n]:
            data = ctypes.string_at(r.data, r.len) if r.len else b""
            _result_free(ctypes.byref(r))
            done.append((r.id, r.err, r.signal, r.attempts, r.last_private, data))
        with pool._lock:
            fs = [(pool._futures.pop(d[0], None), d) for d in done]
        for f, (tid, err, sig, attempts, last_private, data) in fs:
            if f is None or not f.set_running_or_notify_cancel():
                continue
            if err == -SHOAL_EWORKERLOST:
                f.set_exception(WorkerLost(sig, attempts, last_private))
            elif err == -errno.ECHILD:
                f.set_exception(BrokenProcessPool(
                    "workers die before they start (does the initializer fail, or an "
                    "import in a spawned worker?)"))
            elif err == -errno.ECANCELED:
                f.set_exception(concurrent.futures.CancelledError("the pool was terminated"))
            elif err:
                f.set_exception(_lib.error(err))
            else:
                try:
                    ok, value = pickle.loads(data)
                except BaseException as e:  # noqa: B902
                    f.set_exception(e)
                    continue
                if ok:
                    f.set_result(value)
                else:
                    f.set_exception(value)
        pool._check_config()
        del pool, fs
