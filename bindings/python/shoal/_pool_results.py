"""shoal._pool_results: where a Python pool's results go.

Owns the results thread (_collect, _collect_loop), the targets it hands
results to (a submit()'s _Future through _One; a map()-like call's _Calls,
which also submits imap()'s tasks as its results are taken), the
iterators map() and imap() return (_Results), AsyncResult, and the
exceptions a task can end with (WorkerLost, _failure).

    Pool._submit -> shoal_pool_submit_many; _Run(first, n, target) under
        the pool's lock, so a result never comes before its target is known
    results thread: shoal_pool_wait_into (a batch of rows + their bytes)
        -> per row: pool._run_of(id) -> its _Run
           -> _Calls: out[id + shift] = pickled bytes or (ok, value);
              order.append (unordered); flush() wakes the caller when what
              it waits for has come (_Calls._wait)
           -> _One: its _Future's set_result / set_exception
        -> pool._settled(run, k): the pool's pending count; idle at 0
    caller: _Results iterates _Calls, unpickling small results itself

It knows the pool only by the methods above and its lock: nothing here
imports pool.py.
"""
import collections
import concurrent.futures
import ctypes
import errno
import itertools
import multiprocessing
import pickle
import signal
import threading
import time
import weakref
from concurrent.futures.process import BrokenProcessPool
from typing import Any, Optional

from . import _lib
from ._lib import ShoalError
from ._pool_abi import (_TASK_DONE, _TASK_RUNNING, _W_FAILED, _W_ID, _W_LEN, _WORDS,
                        SHOAL_EWORKERLOST, _Result, _wait_into)
from ._pool_wire import _RAISED

def _signal_name(sig):
    try:
        return signal.Signals(sig).name
    except ValueError:  # a real-time signal has no name
        return f"signal {sig}"



class WorkerLost(ShoalError, BrokenProcessPool):
    """The worker running a task died every time it ran (``attempts``
    times): killed by a signal (``signal``, 0 if it exited), the OOM killer,
    a crash, or the pool's hard memory limit (``hard_limit``: True if that
    limit killed the last one), or it exited (``exit_code``, its status).
    ``last_private`` is its last private memory reading in bytes.

    A BrokenProcessPool too, the error ProcessPoolExecutor gives a task
    whose process "terminated abruptly", so code written for it catches
    this; only the task fails, the pool goes on."""

    signal: int
    attempts: int
    last_private: int
    exit_code: int
    hard_limit: bool

    def __init__(self, signal_: int = 0, attempts: int = 0, last_private: int = 0,
                 exit_code: int = 0, hard_limit: bool = False) -> None:
        self.signal = signal_
        self.attempts = attempts
        self.last_private = last_private
        self.exit_code = exit_code
        self.hard_limit = bool(hard_limit)
        how = (f"killed by {_signal_name(signal_)}" if signal_
               else f"exited with code {exit_code}")
        why = "; the pool's hard memory limit (hard_memory_limit) killed it" if hard_limit else ""
        super().__init__(SHOAL_EWORKERLOST,
                         f"worker lost: the process running the task {how}, "
                         f"{attempts} attempt(s); last private memory {_fmt(last_private)}{why}")

    def __reduce__(self):
        return (WorkerLost, (self.signal, self.attempts, self.last_private, self.exit_code,
                             self.hard_limit))


# Public names since shoal.pool defined them: named there in tracebacks,
# reprs and pickles.
WorkerLost.__module__ = "shoal.pool"



def _fmt(n):
    return f"{n / 2**20:.1f} MiB"


class _PoolCancelled(concurrent.futures.CancelledError):
    """A task the pool cancelled (terminate(), shutdown(cancel_futures=True)),
    told apart from a CancelledError a task raised itself (a .result() on a
    cancelled Future): only the pool's own makes a call run no callback."""


def _check_wait(pool, what):
    """Waiting for @pool's results on its results thread (a callback of
    apply_async() or map_async() runs there), or on the thread destroying
    it, would wait for ever: that thread is the one to hand them over. A
    RuntimeError instead, as join() raises there."""
    if pool is not None and pool._on_own_thread():
        raise RuntimeError(
            f"shoal.Pool: {what} on the pool's results thread: a callback runs on the "
            f"pool's results thread and cannot wait for the pool's results (take them "
            f"in another thread, or chain a call with a callback of its own)")


class _Waitable(concurrent.futures.Future):
    """The Future of a call on a pool (submit(), apply_async(),
    map_async()): result() and exception() raise RuntimeError rather than
    wait on the pool's results thread (_check_wait); a result already
    there is returned as ever."""

    def __init__(self, pool):
        super().__init__()
        self._pool = weakref.ref(pool)

    def _check_wait(self, timeout, what="waiting for a result"):
        if not self.done() and (timeout is None or timeout > 0):
            _check_wait(self._pool(), what)

    def result(self, timeout=None):
        self._check_wait(timeout)
        return super().result(timeout)

    def exception(self, timeout=None):
        self._check_wait(timeout)
        return super().exception(timeout)


class _Future(_Waitable):
    """A submit()'s Future: cancel() drops its task if no worker has started
    it, and refuses (False) once one has: its result is coming."""

    def __init__(self, pool, before=None):
        super().__init__(pool)
        self._tid = None  # set by Pool._future(), before anyone sees it
        # apply_async()'s callbacks: run with (ok, result or exception)
        # before the Future is resolved, so that get() and wait() return
        # only once they have run, as multiprocessing.Pool's do.
        self._before = before

    def cancel(self):
        pool = self._pool()
        if pool is not None and not pool._cancel(self._tid):
            return self.cancelled()  # started, finished, or cancelled already
        return self._cancel_here()

    def running(self):
        """True from the moment a worker starts the task until the Future
        is done (asked of the pool, only when called)."""
        with self._condition:
            if self._state != concurrent.futures._base.PENDING:
                return self._state == concurrent.futures._base.RUNNING
        pool = self._pool()
        if pool is None or self._tid is None:
            return False
        st = pool._task_state(self._tid)
        if st in (_TASK_RUNNING, _TASK_DONE):
            return True
        # Not in the pool any more: its result is on its way to this
        # Future (done() is about to say True), or the task was cancelled.
        return st == -errno.ENOENT and not self.done()

    def _cancel_here(self):
        """Cancel with no task left to drop, and tell the waiters (wait(),
        as_completed()), as a result would have."""
        if not super().cancel():
            return False
        with self._condition:
            if self._state == concurrent.futures._base.CANCELLED:  # not yet told
                self.set_running_or_notify_cancel()
        return True


class _One:
    """The target of one submit() or apply_async(): its Future."""

    __slots__ = ("f",)

    def __init__(self, f):
        self.f = f

    def add(self, first, n):
        """Its task was submitted: a Future is told its result by put()."""
        return None, 0, None

    def put(self, tid, res):
        ok, value = res
        f = self.f
        if not f.set_running_or_notify_cancel():
            return  # cancelled: nobody wants it
        if ok:
            value = value[0]
        self._resolve(ok, value)

    def _resolve(self, ok, value):
        f = self.f
        before, f._before = f._before, None  # it holds the Future: no cycle left
        if before is not None:
            before(ok, value)
        if ok:
            f.set_result(value)
        else:
            f.set_exception(value)

    def flush(self):
        pass

    def end(self, first, n, exc):
        """No result will come (the pool is going away, or its results
        thread failed): cancelled if it can be and @exc says so, else it
        fails with @exc."""
        if isinstance(exc, concurrent.futures.CancelledError) and self.f._cancel_here():
            self.f._before = None
            return
        if not self.f.done():
            self._resolve(False, exc)


_GONE = (True, ())  # a result already handed to the caller


def _value(res):
    """The values of a result (ok, value), or its exception raised."""
    ok, value = res
    if not ok:
        raise value
    return value


# After a batch of fewer results than _SMALL_BATCH, with more still due,
# the results thread naps _NAP seconds before it takes the next: results
# that trickle in (two workers finish one every few microseconds) are then
# taken a batch at a time, not two or three per wake-up, where each batch's
# own cost (the call, the locks, waking the caller) would be paid again
# and again. A result may come that much later, never when it is the only
# one due.
_SMALL_BATCH, _NAP = 16, 0.0001
# A map's results up to this size are unpickled by its caller (a copy of
# their bytes costs less than it saves); larger ones by the results thread.
_PICKLED_MAX = 4096
# Tasks in a map()'s first submission; each next is 4x, up to the last.
# Pickling a batch holds the GIL throughout (no Python code runs in it):
# the results thread waits that long, a few milliseconds at most.
_FIRST_BATCH, _LAST_BATCH = 128, 8192


class _Calls:
    """The tasks of one map()-like call, submitted in batches. The results
    thread puts each result in ``out`` itself (and its index in ``order``,
    for a caller that takes them as they come), and wakes the caller only
    once the result it waits for has come."""

    __slots__ = ("pool", "segs", "out", "order", "cond", "ready", "src", "k", "window", "error",
                 "feeding", "done", "sealed", "scan", "__weakref__")

    def __init__(self, pool, unordered=False):
        self.pool = pool
        self.segs = []           # (first id, its index in out, count) per batch
        self.out = []
        self.order = collections.deque() if unordered else None
        self.cond = threading.Condition(threading.Lock())
        self.ready = None        # what the caller waits for, while it waits
        # imap()'s: the tasks not yet submitted (_more), as a function
        # that pickles the next ones, or None once there are none; the
        # next batch's size, the most tasks in flight, and the input's
        # error, raised in its place once the results before it are out.
        self.src, self.k, self.window, self.error = None, 0, 0, None
        # Held while tasks are submitted from src: by the caller as it
        # reads, or by join() finishing the input (finish()).
        self.feeding = threading.Lock()
        # map_async()'s: called once with this _Calls when every task has
        # its result (or its error), by the thread that put the last one
        # (the results thread, unless all came before the last batch was
        # submitted: then by seal()); sealed once the input is all
        # submitted; results before index scan are all in.
        self.done, self.sealed, self.scan = None, False, 0

    def add(self, first, n):
        """Tasks first .. first + n - 1 were submitted (Pool._submit, under
        the pool's lock: before the results thread can look for them). Where
        the results thread puts their results: task id + shift in out."""
        at = len(self.out)
        self.out += itertools.repeat(None, n)
        self.segs.append((first, at, n))
        return self.out, at - first, self.order

    def flush(self):
        """Results were put: wake the caller if what it waits for came.
        Results come out of order (two workers finish at their own
        pace), and a wake-up for the wrong one costs it two context
        switches for nothing."""
        ready = self.ready
        if ready is not None and ready():
            with self.cond:
                self.cond.notify_all()
        if self.done is not None:
            self._finish_if_done()

    def seal(self):
        """Every task of the call is submitted: the call is done once
        each has its result (map_async())."""
        with self.cond:
            self.sealed = True
        self._finish_if_done()

    def _finish_if_done(self):
        out = self.out
        with self.cond:
            if self.done is None or not self.sealed:
                return
            # Results come nearly in order: scan moves on from where it
            # stopped, so a call's checks cost its length in all.
            i, n = self.scan, len(out)
            while i < n and out[i] is not None:
                i += 1
            self.scan = i
            if i < n:
                return
            done, self.done = self.done, None
        done(self)

    def values(self):
        """Every task's values in one list, and the call's error (None if
        none): once done. The error is the first in task order, whatever
        a task raised (a worker sends a task's SystemExit back as its
        error: it must fail the call, not escape into the results thread),
        unless the pool cancelled a task (it terminated, or
        shutdown(cancel_futures=True)): then that _PoolCancelled, whatever
        failed before it, so that the call runs neither callback. A
        Ctrl-C while a result is unpickled here is no task's error: it
        propagates."""
        values, loads, exc = [], pickle.loads, None
        for res in self.out:
            if type(res) is bytes:
                if exc is None:
                    try:
                        values += loads(res)
                    except Exception as e:  # noqa: B902 - the call's error, for get()
                        exc = e
            elif not res[0]:
                if isinstance(res[1], _PoolCancelled):
                    return values, res[1]
                if exc is None:
                    exc = res[1]
            elif exc is None:
                values += res[1]
        return values, exc

    def end(self, first, n, exc):
        """No result will come for tasks first .. first + n - 1 (of one
        batch): each fails with @exc, unless its result came after all."""
        out, order = self.out, self.order
        at = next(a + first - f for f, a, k in self.segs if 0 <= first - f < k)
        for i in range(at, at + n):
            if out[i] is None:
                out[i] = (False, exc)
                if order is not None:
                    order.append(i)
        self.flush()

    def _wait(self, ready, end):
        # Announced, then checked, under the lock: the results thread puts
        # a result, then looks at self.ready (flush), so either the check
        # here sees the result or flush() sees the announcement and wakes
        # this wait.
        if not ready():
            _check_wait(self.pool, "iterating a map()'s or imap()'s results")
        with self.cond:
            self.ready = ready
            try:
                while not ready():
                    left = None if end is None else end - time.monotonic()
                    if left is not None and left <= 0:
                        raise concurrent.futures.TimeoutError()
                    self.cond.wait(left)
            finally:
                self.ready = None

    def _more(self, taken):
        """imap()'s refill: submit the next batch if fewer than the window
        are in flight (submitted, not yet @taken by the caller). True if
        it submitted any."""
        with self.feeding:
            src, out = self.src, self.out
            room = self.window - (len(out) - taken)
            if src is None or room <= 0:
                return False
            k = min(self.k, room)
            try:
                n, self.error = src(k)
            except Exception as e:  # noqa: B902 - raised in its place
                # Not the input's own error (src catches that): an item
                # that cannot be pickled, or the pool gone. The input ends
                # there, its error in its place, as multiprocessing.Pool's
                # imap raises at that item: never out of join(), nor a
                # batch silently left out.
                self.src, self.error = None, e
                return False
            if n < k or self.error is not None:
                self.src = None  # the input is at its end (or failed)
            self.k = min(4 * self.k, _LAST_BATCH)
            return n > 0

    def finish(self):
        """Submit the rest of the input, whatever the window (join():
        multiprocessing.Pool runs an imap()'s whole input after close(),
        and its results stay to be read after join()). Returns at once
        once the pool is being destroyed (terminate()): nothing more runs."""
        while self.src is not None and self.pool._ptr:
            self._more(len(self.out))

    def stop(self, wait=True):
        """Submit nothing more (shutdown(cancel_futures=True)). Without
        @wait (terminate()), not even a batch being read now is waited
        for: its submission fails on the pool destroyed."""
        if not wait:
            self.src = None
            return
        with self.feeding:
            self.src = None

    def _drop(self):
        """Cancel the tasks no worker has started (the caller stopped
        reading)."""
        self.src = None
        # One C call per batch, whatever it holds (those done or started
        # stay as they are): looking for what is left in Python first
        # cost more than the calls.
        for first, _, n in self.segs:
            self.pool._cancel_run(first, n)

    def ordered(self, end):
        """The results in order, each task's values one by one."""
        return _Results(self._in_order(end))

    # A result in out is (ok, value), or, if small, its values still
    # pickled: the caller's thread unpickles them (_collect_loop says why).

    def _in_order(self, end):
        out, loads = self.out, pickle.loads
        try:
            for i in range(len(out)):
                if out[i] is None:
                    self._wait(lambda: out[i] is not None, end)
                res, out[i] = out[i], _GONE
                yield loads(res) if type(res) is bytes else _value(res)
        finally:
            self._drop()

    def lazy(self):
        """imap()'s results in order: more tasks are submitted as results
        are taken (_more), so that at most ``window`` are in flight; the
        input's error is raised in its place."""
        return _Results(self._in_order_lazy())

    def _in_order_lazy(self):
        out, loads, half = self.out, pickle.loads, self.window // 2
        i = 0
        try:
            while True:
                if self.src is not None and len(out) - i <= half:
                    self._more(i)
                if i == len(out):
                    if self.src is None:
                        break
                    continue
                if out[i] is None:
                    # Waiting: the caller pickles more meanwhile, if it may.
                    while out[i] is None and self._more(i):
                        pass
                    if out[i] is None:
                        self._wait(lambda: out[i] is not None, None)
                res, out[i] = out[i], _GONE
                i += 1
                yield loads(res) if type(res) is bytes else _value(res)
            if self.error is not None:
                raise self.error
        finally:
            self.error = None
            self._drop()

    def unordered(self):
        """The results as they come."""
        if self.window:
            return _Results(self._as_they_come_lazy())
        return _Results(self._as_they_come())

    def _as_they_come_lazy(self):
        out, order, loads, half = self.out, self.order, pickle.loads, self.window // 2
        taken = 0
        try:
            while True:
                if self.src is not None and len(out) - taken <= half:
                    self._more(taken)
                if taken == len(out):
                    if self.src is None:
                        break
                    continue
                if not order:
                    while not order and self._more(taken):
                        pass
                    if not order:
                        self._wait(lambda: order, None)
                i = order.popleft()
                res, out[i] = out[i], _GONE
                taken += 1
                yield loads(res) if type(res) is bytes else _value(res)
            if self.error is not None:
                raise self.error
        finally:
            self.error = None
            self._drop()

    def _as_they_come(self):
        out, order, loads = self.out, self.order, pickle.loads
        try:
            for _ in range(len(out)):
                if not order:
                    self._wait(lambda: order, None)
                i = order.popleft()
                res, out[i] = out[i], _GONE
                yield loads(res) if type(res) is bytes else _value(res)
        finally:
            self._drop()


class _Results(itertools.chain):
    """What map() and imap() return: an iterator over each task's values
    in turn, without a Python frame per value. close() cancels
    the tasks no worker has started, as closing a generator would."""

    __slots__ = ("_tasks",)

    def __new__(cls, tasks):
        self = cls.from_iterable(tasks)
        self._tasks = tasks
        return self

    def close(self):
        self._tasks.close()


class _Run:
    """Tasks first .. end - 1, submitted together, and where their results
    go: a _Calls' ``out`` at task id + shift (and ``order``), written by the
    results thread itself; or, if ``out`` is None, target.put()."""

    __slots__ = ("first", "end", "target", "out", "shift", "order", "left")

    def __init__(self, first, n, target):
        self.first, self.end, self.target, self.left = first, first + n, target, n
        self.out, self.shift, self.order = target.add(first, n)


def _call_back(callback, error_callback, ok, value):
    """Run apply_async()'s or map_async()'s @callback with its result
    @value, or @error_callback with its exception, before the result is
    ready, as multiprocessing.Pool does. None for a task cancelled (the
    pool terminated): multiprocessing.Pool calls neither then. A callback's
    own exception is logged, as a Future's done-callback's is."""
    if ok:
        fn = callback
    else:
        fn = None if isinstance(value, _PoolCancelled) else error_callback
    if fn is None:
        return
    try:
        fn(value)
    except Exception:  # noqa: B902 - the result must still be given
        concurrent.futures._base.LOGGER.exception("exception calling callback %r", fn)


class AsyncResult:
    """What apply_async() returns, as in multiprocessing.pool. The pool
    makes it with no Future, runs its callbacks (_before) before it
    resolves the Future, and then sets _f; given a Future with callbacks,
    they are its done-callbacks."""

    def __init__(self, future=None, callback=None, error_callback=None):
        self._f = future
        self._callback, self._error_callback = callback, error_callback
        if future is not None and (callback or error_callback):
            def done(f):
                if f.cancelled():
                    return
                e = f.exception()
                if e is None and callback:
                    callback(f.result())
                elif e is not None and error_callback:
                    error_callback(e)
            future.add_done_callback(done)

    def _before(self, ok, value):
        _call_back(self._callback, self._error_callback, ok, value)

    def get(self, timeout: Optional[float] = None) -> Any:
        try:
            return self._f.result(timeout)
        except concurrent.futures.TimeoutError:
            raise multiprocessing.TimeoutError from None

    def wait(self, timeout: Optional[float] = None) -> None:
        if isinstance(self._f, _Waitable):
            self._f._check_wait(timeout, "AsyncResult.wait()")
        concurrent.futures.wait([self._f], timeout)

    def ready(self) -> bool:
        return self._f.done()

    def successful(self) -> bool:
        if not self._f.done():
            raise ValueError(f"{self!r} not ready")
        return not self._f.cancelled() and self._f.exception() is None


AsyncResult.__module__ = "shoal.pool"



def _failure(err, sig, attempts, last_private, pool, exit_code=0, hard_limit=False):
    """The exception of a task of @pool that ended with error @err."""
    if err == -SHOAL_EWORKERLOST:
        return WorkerLost(sig, attempts, last_private, exit_code, hard_limit)
    if err == -errno.ECHILD:
        e = BrokenProcessPool(
            "no worker could start: starting one failed, or they die before they are "
            "ready (does the initializer fail, or an import in a spawned worker?)")
        e.__cause__ = pool._spawn_exc  # why starting one failed, if it did
        return e
    if err == -errno.ECANCELED:
        return _PoolCancelled("the pool was terminated")
    return _lib.error(err)


def _collect(ref, ptr, stopping):
    """The results thread: takes finished tasks in batches and hands each
    to its target (a Future, or a map()'s results). Should it fail (a
    bug), every task still waited for fails, rather than wait for ever."""
    try:
        _collect_loop(ref, ptr, stopping)
    except BaseException as e:  # noqa: B902 - nothing may end it silently
        pool = ref()
        if pool is not None:
            pool._results_failed(e)
        raise


def _collect_loop(ref, ptr, stopping):
    results = (_Result * 256)()
    rows = memoryview(results).cast("B")
    buf = ctypes.create_string_buffer(1 << 20)
    loads = pickle.loads

    def asleep():
        pool = ref()
        return pool is not None and not pool._pending and not stopping.is_set()

    while not stopping.is_set():
        pool = ref()
        if pool is None:
            return
        if not pool._pending:
            # Nothing due: wait on the pool's condition, not in the C
            # pool, so that shutdown() wakes this thread at once (a
            # submit or _destroy() notifies it) instead of waiting out a
            # wait slice: every pool's shutdown took 200 ms more. Only
            # the condition is held while waiting, not the pool.
            work, pool = pool._work, None
            with work:
                if work.wait_for(lambda: not asleep(), 0.2):
                    continue
            pool = ref()
            if pool is not None:
                pool._check_config()  # as after a wait slice with no results
            pool = None
            continue
        pool = None
        # That may have been the last reference (another thread cancelled
        # or dropped what was due meanwhile): the pool's __del__ then ran
        # here, and its C pool may be freed already. Looked at again, so
        # that this thread never waits on it.
        if stopping.is_set():
            return
        n = _wait_into(ptr, 200_000_000, results, len(results), buf, len(buf))
        if n == -errno.EPIPE:
            return
        if n == -errno.ENOBUFS:
            buf = ctypes.create_string_buffer(results[0].len)
            continue
        pool = ref()
        if pool is None:
            return
        if n == -errno.ETIMEDOUT:
            pool._check_config()
            del pool
            continue
        # The rows, and the bytes they point to one after another in buf,
        # read without a call per result: their columns as lists, the bytes
        # of a batch of small results as one bytes object that each is cut
        # from, which costs less than a struct row and a memoryview slice
        # each. A result goes straight
        # into its map()'s list. A run is settled only once its results
        # are all handed over: should this fail midway, _end_waiting()
        # still sees the rest.
        words = rows[:n * _WORDS * 8].cast("Q")
        ids, lens = words[_W_ID::_WORDS].tolist(), words[_W_LEN::_WORDS].tolist()
        data, off, lock, handed = memoryview(buf).cast("B"), 0, pool._lock, {}
        small = max(lens, default=0) <= _PICKLED_MAX
        src = data[:sum(lens)].tobytes() if small else data
        run, lo, hi, k = None, 0, 0, 0
        for tid, failed, ln in zip(ids, words[_W_FAILED::_WORDS].tolist(), lens):
            end = off + ln
            if not lo <= tid < hi:
                if run is not None:
                    handed[run] = handed.get(run, 0) + k
                with lock:
                    run = pool._run_of(tid)
                if run is None:  # none due: the pool ended its runs (_end_waiting)
                    lo = hi = 0
                    off = end
                    continue
                lo, hi, out, shift, order, k = run.first, run.end, run.out, run.shift, run.order, 0
            k += 1
            if not failed and out is not None and ln <= _PICKLED_MAX:
                # Left pickled for the caller: the objects are then made
                # on its core, where they are used at once, not made here
                # to be freed there: this copy costs the results thread
                # less than unpickling would, and the caller barely notices.
                res = src[off:end] if small else bytes(data[off:end])
            else:
                # Rare (an error, a large result, a Future's): the row whole.
                r = results[ids.index(tid)]
                if r.err and r.err != _RAISED:
                    res = (False, _failure(r.err, r.signal, r.attempts, r.last_private, pool,
                                           r.exit_code, r.hard_limit))
                else:
                    # The worker's values, or with _RAISED its exception.
                    try:
                        res = (not r.err, loads(data[off:end]))
                    except BaseException as e:  # noqa: B902
                        res = (False, e)
            if out is None:
                run.target.put(tid, res)
            else:
                out[tid + shift] = res
                if order is not None:
                    order.append(tid + shift)
            off = end
        if run is not None:
            handed[run] = handed.get(run, 0) + k
        for t in {r.target for r in handed}:
            t.flush()
        t = None  # the last target (a map()'s) holds the pool
        with lock:
            for run, k in handed.items():
                pool._settled(run, k)
        if len(buf) > 1 << 20:
            buf = ctypes.create_string_buffer(1 << 20)  # a huge result's was
        pool._check_config()
        more = n < _SMALL_BATCH and pool._pending > 0
        # Nothing handed over stays referenced here while this thread
        # waits for the next batch: not the last result, nor its target
        # (a Future, which holds its result).
        pool = run = handed = res = t = None
        if more:
            time.sleep(_NAP)
