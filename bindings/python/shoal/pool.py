"""shoal.Pool: a process pool that recycles workers by private memory.

The ledger, the supervisor and the recycling policy are libshoal's
(lib/pool.c), driven here through ctypes; Python brings only a way to start
worker processes (multiprocessing's fork, spawn or forkserver) and the
pickling of calls and results. Workers are Python processes that take
tasks from the ledger with shoal_pool_worker_step(), a futex wait that
releases the GIL.

A task is a chunk of calls (its bytes are described above _HDR); its
result the pickled tuple of its values, or, with the error code _RAISED,
the pickled exception with the remote traceback attached as ``__cause__``.
Tasks and results larger than the ledger's inline space travel through a
shoal segment.
"""
from __future__ import annotations

import array
import atexit
import bisect
import collections
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
import struct
import threading
import time
import traceback
import types
import warnings
import weakref
from concurrent.futures.process import BrokenProcessPool
from typing import Any, Callable, Dict, Iterable, Iterator, List, Mapping, Optional, Type, Union

from . import _forkserver, _lib
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
                ("attempts", ctypes.c_uint32), ("exit_code", ctypes.c_uint8),
                ("hard_limit", ctypes.c_uint8), ("reserved", ctypes.c_uint8 * 2),
                ("last_private", _u64), ("data", _vp), ("len", ctypes.c_size_t)]


# A batch of struct shoal_pool_result rows read at once, as 64-bit words,
# _WORDS a row: the id, the word holding err and signal (zero when both
# are), and the length, a column each, at these words.
_WORDS = ctypes.sizeof(_Result) // 8
_W_ID, _W_FAILED, _W_LEN = 0, 1, 5
assert (_Result.id.offset, _Result.err.offset, _Result.signal.offset, _Result.len.offset,
        ctypes.sizeof(_Result) % 8) == (8 * _W_ID, 8 * _W_FAILED, 8 * _W_FAILED + 4,
                                        8 * _W_LEN, 0)


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
_submit_many = declare("shoal_pool_submit_many", ctypes.c_int, _vp, ctypes.c_char_p,
                       ctypes.POINTER(ctypes.c_size_t), ctypes.c_size_t, ctypes.POINTER(_u64),
                       check=False)
_wait_into = declare("shoal_pool_wait_into", ctypes.c_int, _vp, ctypes.c_int64,
                     ctypes.POINTER(_Result), ctypes.c_size_t, _vp, ctypes.c_size_t, check=False)
_cancel = declare("shoal_pool_cancel", ctypes.c_int, _vp, _u64, check=False)
_task_state = declare("shoal_pool_task_state", ctypes.c_int, _vp, _u64, check=False)
_TASK_RUNNING, _TASK_DONE = 2, 3  # enum shoal_pool_task_state
_stats = declare("shoal_pool_stats", ctypes.c_int, _vp, ctypes.POINTER(_Stats), ctypes.c_size_t)
_info = declare("shoal_pool_info", ctypes.c_int, _vp, ctypes.POINTER(_Info))
_name = declare("shoal_pool_name", ctypes.c_char_p, _vp, check=False)
_destroy = declare("shoal_pool_destroy", ctypes.c_int, _vp, check=False)
_wopen = declare("shoal_pool_worker_open", ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32, _u64,
                 ctypes.POINTER(_vp))
# Called once per task: without argtypes, its arguments already of their C
# types (c_void_p, int, bytes, an int or c_size_t for the length, c_int64,
# byref(_Task)), as ctypes' conversion of each argument costs more than
# the call.
_wstep = _lib.lib["shoal_pool_worker_step"]
_wstep.restype = ctypes.c_int
_wtrimmed = declare("shoal_pool_worker_trimmed", ctypes.c_int, _vp)
_wclose = declare("shoal_pool_worker_close", None, _vp, check=False)

_TASK, _TRIM = 1, 2
# The error code a Python worker gives a task that raised: its result bytes
# are then the pickled exception, not the pickled values.
_RAISED = 1


def _signal_name(sig):
    try:
        return signal.Signals(sig).name
    except ValueError:  # a real-time signal has no name
        return f"signal {sig}"


class WorkerLost(ShoalError):
    """The worker running a task died every time it ran (``attempts``
    times): killed by a signal (``signal``, 0 if it exited), the OOM killer,
    a crash, or the pool's hard memory limit (``hard_limit``: True if that
    limit killed the last one), or it exited (``exit_code``, its status).
    ``last_private`` is its last private memory reading in bytes."""

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


def parse_size(v: Union[int, float, str, None]) -> int:
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


def _one_of(**names):
    """The value given under one of @names (the standard pools' aliases of
    one argument), or None; two given is a TypeError, as two values for
    one argument are."""
    given = [(k, v) for k, v in names.items() if v is not None]
    if len(given) > 1:
        raise TypeError(f"shoal.Pool: {given[0][0]}= and {given[1][0]}= name the same "
                        f"argument: give one")
    return given[0][1] if given else None


# A task is a header (the pickled function's length, whether workers may
# keep the unpickled function for later tasks, and the kind of calls), the
# pickled function, then the pickled calls. Of kind _ONE (map() and its
# kin over one iterable) they are a list or tuple of arguments, each call
# fn(x); otherwise a ``(calls, kwargs)``: ``calls`` a list or tuple of
# argument tuples, ``kwargs`` None or one dict for every call. map()
# pickles its function once for all its tasks; a worker keeps the last
# plain function it unpickled, for the tasks that carry the same one.
_HDR = struct.Struct("<IBB")
_ONE = 1
_last = [b"", None, 0]  # a worker's last kept function: prefix, itself, kind


def _task_prefix(fn, kind):
    f = pickle.dumps(fn, pickle.HIGHEST_PROTOCOL)
    keep = isinstance(fn, (types.FunctionType, types.BuiltinFunctionType))
    return _HDR.pack(len(f), keep, kind) + f


def _function(data):
    """A task's prefix, function and kind; a plain function is kept for
    later tasks."""
    n, keep, kind = _HDR.unpack_from(data)
    pre = bytes(data[:_HDR.size + n])
    fn = pickle.loads(memoryview(pre)[_HDR.size:])
    if keep:
        _last[:] = pre, fn, kind
    return pre, fn, kind


def _unpicklable(e):
    """The pickled exception of a task whose result could not be pickled:
    the exception pickling raised (a PicklingError, a TypeError, even a
    SystemExit), as concurrent.futures gives it; if that one cannot be
    pickled either, a PicklingError that names it."""
    try:
        return pickle.dumps(_ExceptionWithTraceback(e), pickle.HIGHEST_PROTOCOL)
    except BaseException:  # noqa: B902
        e = pickle.PicklingError(f"result could not be pickled: {e!r}")
        return pickle.dumps(_ExceptionWithTraceback(e), pickle.HIGHEST_PROTOCOL)


def _short(fn, calls, values):
    """The exception of a task whose fn raised StopIteration, which map()
    took for the end of its calls. Its own traceback is gone; like a
    generator (PEP 479), the task fails with a RuntimeError."""
    name = getattr(fn, "__qualname__", None) or repr(fn)
    return RuntimeError(f"{name} raised StopIteration (call {len(values) + 1} of the "
                        f"{len(calls)} in its task)")


def _worker_main(ledger, slot, gen, initializer, initargs, inline):
    """A Python worker: the body of each worker process. A task of at most
    @inline bytes is read in place, in its cell of the ledger."""
    # SIGTERM ends it (the hard limit relies on it), whatever handler or
    # mask it inherited: the mask is the forking thread's, the supervisor's.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_SETMASK, [])
    # What it inherited at fork is left out of cyclic garbage collection:
    # a collection would write to every object it walks, copying the
    # parent's pages into this worker's private memory.
    gc.freeze()
    # Before announcing ready: a worker whose initializer fails dies
    # before it starts, which the supervisor reports instead of looping.
    if initializer is not None:
        initializer(*initargs)
    w = _vp()
    _wopen(ledger.encode(), slot, gen, ctypes.byref(w))
    task = _Task()
    step, string_at, tref = _wstep, ctypes.string_at, ctypes.byref(task)
    size_t, forever = ctypes.c_size_t, ctypes.c_int64(-1)
    loads, dumps, proto = pickle.loads, pickle.dumps, pickle.HIGHEST_PROTOCOL
    starmap = itertools.starmap
    out, err = b"", 0
    # Cell address -> a view of its bytes. The cells stay where they are
    # while the worker lives; a larger task's copy does not (string_at).
    cells, cell_type = {}, ctypes.c_char * inline
    try:
        while True:
            # One call hands back the last result and takes the next task.
            # A length as a plain int (the call has no argtypes: a C int,
            # widened) saves making a c_size_t, when it fits.
            n = len(out)
            rc = step(w, err, out, n if n <= 0x7fffffff else size_t(n), forever, tref)
            if rc == _TASK:
                at, n = task.data, task.len
                if n <= inline:
                    # Sliced from the cell's view each time: a slice of a
                    # slice costs more, in the comparison and in loads().
                    data = cells.get(at)
                    if data is None:
                        data = cells[at] = memoryview(cell_type.from_address(at)).cast("B")
                else:
                    data = memoryview(string_at(at, n))
                try:
                    pre, fn, kind = _last
                    # As bytes: comparing the memoryview itself costs twice.
                    if not (pre and data[:len(pre)].tobytes() == pre):
                        pre, fn, kind = _function(data[:n])
                    calls = loads(data[len(pre):n])
                    # The values go back in a tuple, not a list: in the
                    # parent, the garbage collector stops tracking a tuple
                    # of atoms (numbers, strings) the first time it sees
                    # it, where a list is walked by every collection while
                    # the caller has not taken it yet. map() and starmap()
                    # end quietly at a StopIteration that fn raises: a
                    # result shorter than its calls says so (_short).
                    if kind == _ONE:
                        # One call (chunksize 1) needs no map().
                        if len(calls) == 1:
                            res = (fn(calls[0]),)
                        else:
                            res = tuple(map(fn, calls))
                            if len(res) != len(calls):
                                raise _short(fn, calls, res)
                    else:
                        calls, kwargs = calls
                        if kwargs is None:
                            res = tuple(starmap(fn, calls))
                            if len(res) != len(calls):
                                raise _short(fn, calls, res)
                        else:
                            res = tuple([fn(*a, **kwargs) for a in calls])
                    err = 0
                except BaseException as e:  # noqa: B902 - it all goes back
                    res, err = _ExceptionWithTraceback(e), _RAISED
                try:
                    out = dumps(res, proto)
                except BaseException as e:  # noqa: B902 - SystemExit too: the task's error
                    out, err = _unpicklable(e), _RAISED
                # The task's arguments, values and function go now, not when
                # the next task comes: a large argument would otherwise stay
                # resident (and count against the memory limits) while the
                # worker waits. The kept function (_last) stays.
                data = calls = kwargs = res = fn = pre = None
            elif rc == _TRIM:
                out, err = b"", 0
                gc.collect()
                _wtrimmed(w)
            else:
                break
    finally:
        _wclose(w)


# The pools not yet destroyed. A pool with tasks still due is also held in
# _busy, strongly: like a dropped ProcessPoolExecutor, a Pool dropped
# without shutdown() finishes what it was given, then shuts down (its
# __del__ runs once nothing is due).
_live_pools = weakref.WeakSet()
_busy = {}


def _shutdown_all():
    """At interpreter exit, as concurrent.futures does: each pool runs
    what it was given, then shuts down; interrupted (Ctrl-C), it stops
    now. Registered with threading's exit hooks, which run before the
    atexit ones: multiprocessing's atexit hook terminates daemonic
    processes, the workers included. A forked worker runs these hooks
    too, on its way out: its copies of the parent's pools are not its own."""
    for p in list(_live_pools):
        if p._pid != os.getpid():
            continue
        try:
            p.shutdown(wait=True)
        except BaseException:  # noqa: B902 - stop now, whatever interrupted
            p.terminate()


if hasattr(threading, "_register_atexit"):
    threading._register_atexit(_shutdown_all)
else:  # pragma: no cover - CPython has had it since 3.9
    atexit.register(_shutdown_all)


class _Future(concurrent.futures.Future):
    """A submit()'s Future: cancel() drops its task if no worker has started
    it, and refuses (False) once one has: its result is coming."""

    def __init__(self, pool):
        super().__init__()
        self._pool = weakref.ref(pool)
        self._tid = None  # set by Pool._future(), before anyone sees it

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
            f.set_result(value[0])
        else:
            f.set_exception(value)

    def flush(self):
        pass

    def end(self, first, n, exc):
        """No result will come (the pool is going away, or its results
        thread failed): cancelled if it can be and @exc says so, else it
        fails with @exc."""
        if isinstance(exc, concurrent.futures.CancelledError) and self.f._cancel_here():
            return
        if not self.f.done():
            self.f.set_exception(exc)


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

    __slots__ = ("pool", "segs", "out", "order", "cond", "ready", "src", "k", "window", "error")

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
        src, out = self.src, self.out
        room = self.window - (len(out) - taken)
        if src is None or room <= 0:
            return False
        k = min(self.k, room)
        n, self.error = src(k)
        if n < k or self.error is not None:
            self.src = None  # the input is at its end (or failed)
        self.k = min(4 * self.k, _LAST_BATCH)
        return n > 0

    def _drop(self):
        """Cancel the tasks no worker has started (the caller stopped
        reading)."""
        self.src = None
        out = self.out
        for first, at, n in self.segs:
            for i in range(n):
                if out[at + i] is None:
                    self.pool._cancel(first + i)

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


class AsyncResult:
    """What apply_async() returns, as in multiprocessing.pool."""

    def __init__(self, future, callback=None, error_callback=None):
        self._f = future
        if callback or error_callback:
            def done(f):
                if f.cancelled():
                    return
                e = f.exception()
                if e is None and callback:
                    callback(f.result())
                elif e is not None and error_callback:
                    error_callback(e)
            future.add_done_callback(done)

    def get(self, timeout: Optional[float] = None) -> Any:
        try:
            return self._f.result(timeout)
        except concurrent.futures.TimeoutError:
            raise multiprocessing.TimeoutError from None

    def wait(self, timeout: Optional[float] = None) -> None:
        concurrent.futures.wait([self._f], timeout)

    def ready(self) -> bool:
        return self._f.done()

    def successful(self) -> bool:
        if not self._f.done():
            raise ValueError(f"{self!r} not ready")
        return not self._f.cancelled() and self._f.exception() is None


class Pool(concurrent.futures.Executor):
    """A pool of worker processes that recycles them by private memory.

    ``workers``: how many (default os.cpu_count()). ``initializer(*initargs)``
    runs in each worker when it starts. ``start_method``: "fork" (default:
    forked by the pool's own single-threaded fork server, made at Pool(),
    so workers hold fds 0-2 only and the memory of that moment), "spawn" or
    "forkserver" (multiprocessing's).

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
    (at most 256; 128 by default) are handed to each worker ahead of time,
    which makes tiny tasks fast; a worker left with nothing takes back the
    tasks others have not started, so none wait behind a long one.
    ``chunksize`` in map() puts several calls in one task, as with
    multiprocessing.

    The standard pools' names are accepted too: ``max_workers`` and
    ``processes`` for ``workers``, ``maxtasksperchild`` for ``max_tasks``,
    ``mp_context`` (a multiprocessing context, whose start method is used)
    for ``start_method``; giving both names of one is a TypeError.
    """

    def __init__(self, workers: Optional[int] = None, *,
                 initializer: Optional[Callable[..., Any]] = None,
                 initargs: Iterable[Any] = (), max_tasks: Optional[int] = None,
                 max_tasks_jitter: int = 10,
                 max_private_memory: Union[int, float, str, None] = None,
                 hard_memory_limit: Union[int, float, str, None] = None,
                 max_age: Optional[float] = None, max_attempts: int = 3,
                 start_method: Optional[str] = None, grace: float = 1.0,
                 check_interval: float = 0.02, inline_bytes: int = 8192, prefetch: int = 128,
                 max_workers: Optional[int] = None, processes: Optional[int] = None,
                 maxtasksperchild: Optional[int] = None,
                 mp_context: Optional[multiprocessing.context.BaseContext] = None) -> None:
        workers = _one_of(workers=workers, max_workers=max_workers, processes=processes)
        max_tasks = _one_of(max_tasks=max_tasks, maxtasksperchild=maxtasksperchild)
        if mp_context is not None:
            _one_of(start_method=start_method, mp_context=mp_context)
            start_method = mp_context.get_start_method()
        if start_method is None:
            start_method = "fork"
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
        self._ctx = mp_context or multiprocessing.get_context(start_method)
        self._pid = os.getpid()  # a forked worker's copy is not its own
        self._start_method = start_method
        self._initializer = initializer
        self._initargs = tuple(initargs)
        self._workers = workers
        self._procs = {}
        self._procs_lock = threading.Lock()
        # The runs of tasks with a result still due (first id -> _Run),
        # their first ids in ascending order, and how many tasks that is;
        # _idle is told when it reaches 0.
        self._runs = {}
        self._firsts = []
        self._pending = 0
        # Re-entrant: garbage collection can close a half-read map()
        # iterator at any allocation, one made under this lock included,
        # and its cleanup (cancelling what is left) takes it too.
        self._lock = threading.RLock()
        self._idle = threading.Condition(self._lock)
        self._shutdown = False
        self._config_warned = False
        self._spawn_exc = None  # the last exception of starting a worker
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
        self._inline = inline_bytes  # the C pool rounds it up, never down
        cfg.depth = prefetch
        self._prefetch = prefetch  # imap()'s window is a multiple of it
        # The hooks are the module's (they outlive every pool: the C pool
        # calls them until shoal_pool_destroy() returns) and find the pool
        # by its key, through a weak reference: the pool stays collectable.
        ref = weakref.ref(self)
        self._hook_key = next(_hook_keys)
        _hooked[self._hook_key] = ref
        cfg.spawn = _spawn_hook
        cfg.reap = _reap_hook
        cfg.hook_arg = self._hook_key
        # "fork": workers come from a fork server, forked here, before
        # libshoal starts the pool's threads (see _forkserver.py).
        self._server = None
        out = _vp()
        try:
            if start_method == "fork":
                initializer, initargs, inline = self._initializer, self._initargs, self._inline
                self._server = _forkserver.ForkServer(
                    lambda ledger, slot, gen: _worker_main(ledger, slot, gen, initializer,
                                                           initargs, inline))
            _create(ctypes.byref(cfg), ctypes.byref(out))
        except BaseException:
            _hooked.pop(self._hook_key, None)
            if self._server:
                self._server.close()
            raise
        self._ptr = out.value
        self.name = _name(self._ptr).decode()
        _live_pools.add(self)
        # Set before the C pool is destroyed: the results thread must not
        # call into it again (see _destroy).
        self._stopping = threading.Event()
        self._gone = threading.Event()  # set once the C pool is destroyed
        self._collector = threading.Thread(target=_collect,
                                           args=(ref, self._ptr, self._stopping),
                                           name="shoal-pool-results", daemon=True)
        self._collector.start()

    # ---- submitting ----

    def _submit(self, fn, kind, blobs, target):
        """Queue one task per pickled calls of @kind in @blobs, all in one
        C call; the results thread hands each result to @target, told of
        their ids (``add``) before the results thread can see them. Returns
        the first id."""
        pre = _task_prefix(fn, kind)
        data = pre.join(itertools.chain((b"",), blobs))
        lens = array.array("Q", map(len(pre).__add__, map(len, blobs)))
        first = _u64()
        with self._lock:
            if self._shutdown:
                raise RuntimeError("cannot schedule new futures after shutdown")
            rc = _submit_many(self._ptr, data, (ctypes.c_size_t * len(lens)).from_buffer(lens),
                              len(lens), ctypes.byref(first))
            if rc < 0:
                raise _failure(rc, 0, 0, 0, self)
            # Under the lock: the results thread finds the run only with
            # its target told (results may already be waiting).
            run = _Run(first.value, len(lens), target)
            self._runs[run.first] = run
            self._firsts.append(run.first)
            self._pending += len(lens)
            _busy[id(self)] = self
        return first.value

    def _run_of(self, tid):
        """The run of task @tid, or None if no result is due for it (under
        the lock)."""
        firsts = self._firsts
        k = bisect.bisect_right(firsts, tid)
        if k:
            run = self._runs[firsts[k - 1]]
            if tid < run.end:
                return run
        return None

    def _settled(self, run, k):
        """@k more of @run's tasks need nothing more: their results were
        handed over, or they were cancelled (under the lock)."""
        if self._runs.get(run.first) is not run:
            return  # ended wholesale (_end_waiting)
        run.left -= k
        if not run.left:
            del self._runs[run.first]
            self._firsts.remove(run.first)
        self._pending -= k
        if not self._pending:
            self._idle.notify_all()
            _busy.pop(id(self), None)  # never the last reference: the caller has one

    def _cancel(self, tid):
        """Drop task @tid if no worker has started it: True if dropped."""
        with self._lock:
            if not self._ptr or _cancel(self._ptr, tid) != 0:
                return False
            run = self._run_of(tid)
            if run is not None:
                self._settled(run, 1)
            return True

    def _task_state(self, tid):
        """Where task @tid is (enum shoal_pool_task_state), -ENOENT, or
        None once the pool is gone."""
        with self._lock:  # _destroy() takes the pointer under it
            if not self._ptr:
                return None
            return _task_state(self._ptr, tid)

    def _future(self, fn, args, kwargs):
        f = _Future(self)
        f._tid = self._submit(fn, 0, [pickle.dumps(([args], kwargs or None),
                                                   pickle.HIGHEST_PROTOCOL)], _One(f))
        return f

    def submit(self, fn: Callable[..., Any], /, *args: Any,
               **kwargs: Any) -> concurrent.futures.Future[Any]:
        """Run fn(*args, **kwargs) in a worker; a Future of its result."""
        return self._future(fn, args, kwargs)

    def _calls(self, fn, iterables, chunksize, star=False, unordered=False, lazy=False):
        """Submit fn(*args) for the argument tuples zip(*@iterables) gives
        (or, with @star, the one iterable's items), ``chunksize`` calls per
        task: a _Calls that holds their results. Over one iterable, the
        tasks carry the bare arguments (kind _ONE). All at once (as
        Executor.map, and Pool.map, which take the whole input first), or,
        if @lazy (imap), the first batch now and the rest as results are
        taken, a window of tasks in flight."""
        if chunksize < 1:
            raise ValueError("chunksize must be >= 1")
        if len(iterables) == 1 and not star:
            kind, it = _ONE, iter(iterables[0])
        else:
            kind = 0
            it = map(tuple, iterables[0]) if star else zip(*iterables)

        def batch(k, items=None):
            """The next @k tasks (or those of @items), pickled (fewer at the
            end; none past it): no Python code runs per call or per task."""
            if items is None:
                items = list(itertools.islice(it, k * chunksize))
            # Chunks are tuples cut by zip() from one iterator (a tuple
            # pickles and unpickles a little faster than a list, and zip
            # cuts them faster than slices: 0.32 against 0.44 us per chunk
            # of ten, pickled); a short last chunk is cut on its own.
            full = len(items) - len(items) % chunksize
            chunks = zip(*[itertools.islice(items, full)] * chunksize)
            if full < len(items):
                chunks = itertools.chain(chunks, (tuple(items[full:]),))
            if kind != _ONE:
                chunks = zip(chunks, itertools.repeat(None))  # (calls, kwargs)
            return list(map(pickle.dumps, chunks, itertools.repeat(pickle.HIGHEST_PROTOCOL)))

        # Submitted in batches growing from a small one, so that workers
        # start while the caller still pickles the rest.
        calls, k = _Calls(self, unordered), _FIRST_BATCH
        if lazy:
            def src(k):
                """Submit the next @k tasks: how many, and the input's
                error, if it raised (the items before it still go, as
                multiprocessing.Pool.imap gives their results first)."""
                items, err = [], None
                try:
                    items.extend(itertools.islice(it, k * chunksize))
                except Exception as e:  # noqa: B902 - raised in its place
                    err = e
                blobs = batch(k, items)
                if blobs:
                    self._submit(fn, kind, blobs, calls)
                return len(blobs), err

            # The window holds two of the largest batches, and the
            # workers' prefetch four times over: a map() of a list's
            # worth of tasks runs as fast through imap().
            calls.src, calls.k = src, k
            calls.window = max(2 * _LAST_BATCH, 4 * self._workers * self._prefetch)
            try:
                calls._more(0)
            except BaseException:
                calls._drop()
                raise
            return calls
        try:
            while True:
                blobs = batch(k)
                if not blobs:
                    return calls
                self._submit(fn, kind, blobs, calls)
                k = min(4 * k, _LAST_BATCH)
        except BaseException:
            calls._drop()
            raise

    def map(self, fn: Callable[..., Any], *iterables: Iterable[Any],
            timeout: Optional[float] = None, chunksize: int = 1) -> Iterator[Any]:
        """As Executor.map: results in order; ``chunksize`` items per task.
        Returns a one-shot iterator, as Executor.map does (list() it to
        keep the results; a second pass finds it empty). The input is read
        whole first, and an error it raises comes out of map() itself,
        before any result; ``timeout`` counts from this call. Closing the
        iterator, or dropping it, cancels the tasks not started."""
        end = None if timeout is None else time.monotonic() + timeout
        return self._calls(fn, iterables, chunksize).ordered(end)

    def imap(self, func: Callable[[Any], Any], iterable: Iterable[Any],
             chunksize: int = 1) -> Iterator[Any]:
        """As multiprocessing.Pool.imap: an iterator of results in order.
        The input is read as results are taken, a bounded number of tasks
        in flight, so an endless generator works; an error the input
        raises comes after the results of the items before it."""
        return self._calls(func, (iterable,), chunksize, lazy=True).lazy()

    def imap_unordered(self, func: Callable[[Any], Any], iterable: Iterable[Any],
                       chunksize: int = 1) -> Iterator[Any]:
        """As multiprocessing.Pool.imap_unordered: results as they come,
        the input read as imap() reads it; its error comes after the
        results of the items before it."""
        return self._calls(func, (iterable,), chunksize, unordered=True, lazy=True).unordered()

    def starmap(self, func: Callable[..., Any], iterable: Iterable[Iterable[Any]],
                chunksize: int = 1) -> List[Any]:
        """As multiprocessing.Pool.starmap: a list."""
        return list(self._calls(func, (iterable,), chunksize, star=True).ordered(None))

    def apply_async(self, func: Callable[..., Any], args: Iterable[Any] = (),
                    kwds: Optional[Mapping[str, Any]] = None,
                    callback: Optional[Callable[[Any], Any]] = None,
                    error_callback: Optional[Callable[[BaseException], Any]] = None
                    ) -> "AsyncResult":
        """As multiprocessing.Pool.apply_async: an AsyncResult."""
        return AsyncResult(self._future(func, tuple(args), dict(kwds or {})), callback,
                           error_callback)

    def apply(self, func: Callable[..., Any], args: Iterable[Any] = (),
              kwds: Optional[Mapping[str, Any]] = None) -> Any:
        return self.apply_async(func, args, kwds).get()

    # ---- looking ----

    def stats(self) -> List[Dict[str, Any]]:
        """Per worker position: pid, tasks (current worker), tasks_total,
        private and private_peak (bytes), recycles by reason, last_reason,
        trims."""
        arr = (_Stats * self._workers)()
        with self._lock:  # _destroy() takes the pointer under it
            if not self._ptr:
                return []
            _stats(self._ptr, arr, self._workers)
        return [dict(pid=s.pid, tasks=s.tasks, tasks_total=s.tasks_total, private=s.private_now,
                     private_peak=s.private_peak,
                     recycles={REASONS[i]: s.recycles[i] for i in range(len(REASONS))},
                     last_reason=REASONS[s.last_reason] if s.last_reason >= 0 else None,
                     trims=s.trims) for s in arr]

    def info(self) -> Dict[str, Any]:
        """Pool counters: pending, running, completed, lost (WorkerLost
        tasks), config_error (a message, or None), spawn_error (why the last
        worker could not be started, or None), recycle_ms_median (decision
        to replacement ready, over the last 64 replacements)."""
        i = _Info()
        with self._lock:  # _destroy() takes the pointer under it
            if not self._ptr:
                raise RuntimeError("the pool is shut down")
            _info(self._ptr, ctypes.byref(i))
        return dict(pending=i.pending, running=i.running, completed=i.completed, lost=i.lost,
                    config_error=self._config_message(i),
                    spawn_error=os.strerror(-i.spawn_error) if i.spawn_error else None,
                    recycle_ms_median=i.recycle_ns_median / 1e6)

    def pids(self) -> List[int]:
        """The pids of the current workers (for MemoryMonitor(pids=pool.pids))."""
        return [s["pid"] for s in self.stats() if s["pid"] > 0]

    def _config_message(self, i):
        if not i.config_error:
            return None
        which = ("max_private_memory", "hard_memory_limit")[i.config_error - 2]
        return (f"{which} is below a fresh worker's private memory ({_fmt(i.config_private)}): "
                f"it is not applied to workers that start over it")

    def _check_config(self):
        """In the results thread: warn once of a configuration error the
        supervisor found (info() reports it too)."""
        ptr = self._ptr  # _destroy() clears it, then waits for this thread
        if self._config_warned or not ptr:
            return
        i = _Info()
        _info(ptr, ctypes.byref(i))
        msg = self._config_message(i)
        if msg:
            self._config_warned = True
            try:
                warnings.warn(msg, RuntimeWarning, stacklevel=3)
            except RuntimeWarning:
                pass  # warnings made errors: there is no caller here to raise to

    # ---- stopping ----

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """As Executor.shutdown. With ``cancel_futures``, tasks no worker
        has started are cancelled, those handed to a worker ahead of time
        (prefetched) included. With ``wait``, returns when every task
        has finished and every worker has left."""
        with self._lock:
            self._shutdown = True
            pending = list(self._runs.values())
        if cancel_futures:
            exc = concurrent.futures.CancelledError()
            for run in pending:
                for tid in range(run.first, run.end):
                    if self._cancel(tid):
                        run.target.end(tid, 1, exc)
        if wait:
            self._drain()
            self._destroy()
        else:
            threading.Thread(target=lambda: (self._drain(), self._destroy(wait=False)),
                             daemon=True).start()

    close = shutdown

    def _results_failed(self, exc):
        """The results thread failed with @exc: every task still waited for
        fails with a RuntimeError, so no caller hangs, and the pool is
        terminated (its queued tasks would run for nothing)."""
        err = RuntimeError(f"shoal.Pool: the results thread failed: {exc!r}")
        err.__cause__ = exc
        with self._lock:
            self._shutdown = True
        self._end_waiting(err)
        self.terminate()

    def _end_waiting(self, exc):
        """No result will come for the tasks still waited for: each one's
        target.end() gets @exc (a task whose result was taken from the pool
        but not handed over is among them)."""
        with self._lock:
            left = list(self._runs.values())
            self._runs, self._firsts, self._pending = {}, [], 0
            self._idle.notify_all()
            _busy.pop(id(self), None)
        for run in left:
            try:
                run.target.end(run.first, run.end - run.first, exc)
            except Exception:  # noqa: S112 - the others must still be told
                continue

    def _drain(self):
        """Wait until every task has its result."""
        with self._lock:
            while self._pending:
                self._idle.wait()

    def terminate(self) -> None:
        """Stop now: unfinished tasks are cancelled, workers leave or are
        killed after the grace time. Interrupted (Ctrl-C), the pool is still
        destroyed, by its own thread, before the interpreter exits."""
        with self._lock:
            self._shutdown = True
        self._destroy()

    def join(self) -> None:
        self.shutdown(wait=True)

    def _destroy(self, wait=True):
        """Destroy the C pool in a thread of its own (not a daemon: the
        interpreter waits for it at exit), so nothing interrupts it halfway
        (a second Ctrl-C, an exception in the caller) and no worker, ledger
        or spilled task is left behind. With @wait, returns once it is done
        (the workers have left), unless this thread is one it waits for:
        the results thread, or a hook on the C pool's own threads."""
        with self._lock:
            ptr, self._ptr = self._ptr, None
        if ptr:
            # The results thread leaves within one wait slice (200 ms), so
            # it is never inside, or about to enter, shoal_pool_wait() on a
            # freed pool: it is joined first, unless the last reference
            # went in that thread itself (it then sees the event before it
            # would wait again).
            self._stopping.set()
            # Until destroyed, the hooks find the pool even once it is
            # otherwise gone (collected in a cycle): they reap its workers.
            _hooked[self._hook_key] = lambda: self
            threading.Thread(target=self._destroy_now, args=(ptr, threading.current_thread()),
                             name="shoal-pool-destroy").start()
        if wait and threading.current_thread() is not self._collector and \
                not getattr(_in_hook, "on", False):
            self._gone.wait()

    def _destroy_now(self, ptr, caller):
        try:
            if caller is not self._collector:
                self._collector.join()
            _destroy(ptr)
        finally:
            # The reap hook asks the server until the C pool's reaper has
            # stopped: it ends only now.
            if self._server is not None:
                self._server.close()
            _hooked.pop(self._hook_key, None)
            self._end_waiting(concurrent.futures.CancelledError("the pool was terminated"))
            self._gone.set()
            _live_pools.discard(self)

    def __exit__(self, exc_type: Optional[Type[BaseException]],
                 exc: Optional[BaseException], tb: Optional[types.TracebackType]) -> bool:
        """As Executor's, the tasks given run, and the workers leave. An
        exception leaving the block (KeyboardInterrupt included) cancels
        what no worker has started, prefetched tasks included, as
        multiprocessing.Pool's terminate() would, and returns once the
        running ones end; interrupted again, it stops now (terminate())."""
        try:
            self.shutdown(wait=True, cancel_futures=exc_type is not None)
        except BaseException:
            self.terminate()
            raise
        return False

    def __del__(self):
        # Nothing is due (_busy holds a pool that has tasks): no wait here,
        # in whatever thread dropped the last reference.
        if getattr(self, "_ptr", None) and self._pid == os.getpid():
            self._shutdown = True
            self._destroy(wait=False)

    def __repr__(self):
        state = "shut down" if self._shutdown else f"workers={self._workers}"
        return f"<shoal.Pool {self.name if self._ptr else ''} {state}>"


# The hooks run in libshoal's supervisor and reaper threads (ctypes takes
# the GIL); they must never raise into C.

_hooked = {}  # a pool's hook key -> a callable that gives the pool, or None
_hook_keys = itertools.count(1)
_in_hook = threading.local()


def _no_pool():
    return None


def _hook(fn):
    """A hook: finds its pool by key (the hook_arg), marks its thread as
    inside a hook (a pool dropped there is not waited for: that would be
    the pool waiting for itself)."""
    def call(key, *args):
        _in_hook.on = True
        try:
            return fn(_hooked.get(key, _no_pool), *args)
        finally:
            _in_hook.on = False
    return call


def _spawn(ref, ledger, slot, gen):
    pool = ref()
    if pool is None:
        return -errno.ESHUTDOWN
    if pool._server is not None:
        pid = pool._server.spawn(ledger, slot, gen)
        pool._spawn_exc = None if pid > 0 else OSError(-pid, os.strerror(-pid))
        return pid
    try:
        proc = pool._ctx.Process(target=_worker_main, daemon=True,
                                 args=(ledger.decode(), slot, gen, pool._initializer,
                                       pool._initargs, pool._inline),
                                 name=f"shoal-worker-{slot}")
        proc.start()
        with pool._procs_lock:
            pool._procs[proc.pid] = proc
        pool._spawn_exc = None
        return proc.pid
    except BaseException as e:  # noqa: B902
        # The cause of a BrokenProcessPool, should it come to that; its
        # traceback would hold this frame, and the pool, in a cycle.
        pool._spawn_exc = e.with_traceback(None)
        return -(getattr(e, "errno", None) or errno.EAGAIN)


def _reap(ref, pid):
    pool = ref()
    if pool is None:
        return -errno.ECHILD
    if pool._server is not None:
        return pool._server.reap(pid)
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


# One pair for every pool, alive as long as the module.
_spawn_hook = _SPAWN(_hook(lambda ref, ledger, slot, gen: _spawn(ref, ledger, slot, gen)))
_reap_hook = _REAP(_hook(lambda ref, pid: _reap(ref, pid)))


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
        return concurrent.futures.CancelledError("the pool was terminated")
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
    while not stopping.is_set():
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
        # from (0.14 against 0.25 us a result, micro-measured, against a
        # struct row and a memoryview slice each). A result goes straight
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
                # to be freed there (0.8 us per result of ten values here,
                # against 0.4 with this copy; the caller barely notices).
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
