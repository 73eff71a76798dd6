"""shoal.Pool: a process pool that recycles workers by private memory.

The task board, the supervisor and the recycling policy are libshoal's
(lib/pool*.c), driven here through ctypes; Python brings only a way to
start worker processes (its own fork server, or multiprocessing's spawn or
forkserver) and the pickling of calls and results. This module owns Pool
itself, the hooks by which the C pool starts and joins Python workers,
and shutting pools down at exit. The flow of a task:

|======= supervisor process (Python + libshoal's threads) =======|= shm =|= workers =|

 submit() / map()                                  task board        _pool_worker:
   | _pool_wire: the function and calls pickled    (cells; a spill   take a task,
   | Pool._submit: shoal_pool_submit_many  -----> segment if  ----> run it, pickle
   | and a _Run(first, n, target) per batch       large)            the result
   v                                                                  |
 _Future / _Calls  <--  results thread  <--  shoal_pool_wait_into  <--+ (through the board)
 (_pool_results)        (_collect_loop, a batch of rows at a time)

 libshoal's supervisor thread (policy, recycling) --spawn hook--> _spawn
     -> _forkserver.ForkServer.spawn, or a multiprocessing Process
 libshoal's exit watcher thread (the workers' pidfds) --join hook--> _join
     -> the worker's exit status

- _pool_abi.py: the ctypes structs, the declared calls, the hook types and
  the constants copied from include/shoal.h.
- _pool_wire.py: the bytes of a task and of a result.
- _pool_worker.py: the worker loop (_worker_main).
- _pool_results.py: the results thread, Futures, map()'s results,
  AsyncResult, WorkerLost.
- _forkserver.py: the single-threaded process that forks "fork" workers.
- _MemoryBook (here): with record_memory=True, the workers the hooks
  started and joined, and each position's recycles, so the pool's
  MemoryMonitor (pool.memory) follows its changing workers and marks
  every replacement with its reason and time.

Workers are Python processes that take tasks from the board with
shoal_pool_worker_step(), a futex wait that releases the GIL. A task is a
chunk of calls; its result the pickled tuple of its values, or the pickled
exception with the remote traceback attached as ``__cause__``. Tasks and
results larger than the board's inline space travel through a shoal
segment.
"""
from __future__ import annotations

import array
import atexit
import bisect
import concurrent.futures
import ctypes
import errno
import functools
import itertools
import multiprocessing
import operator
import os
import pickle
import re
import threading
import time
import types
import warnings
import weakref
from concurrent.futures.process import BrokenProcessPool  # noqa: F401 - shoal.pool's name
from typing import Any, Callable, Dict, Iterable, Iterator, List, Mapping, Optional, Type, Union

from . import _constants as C, _forkserver
from ._lib import ShoalError, declare  # noqa: F401 - shoal.pool's names
# shoal.pool's public names, defined where their idea lives: REASONS,
# SHOAL_EWORKERLOST, AsyncResult, WorkerLost, RemoteTraceback.
from ._pool_abi import (_JOIN, _SPAWN, REASONS, SHOAL_EWORKERLOST,  # noqa: F401
                        _cancel_range, _Config, _create, _destroy, _hooks_hold,
                        _hooks_release, _Info, _info,
                        _name, _stats, _Stats, _submit_many, _task_state, _u64, _vp)
from ._pool_results import (AsyncResult, WorkerLost,  # noqa: F401
                            _FIRST_BATCH, _LAST_BATCH, _call_back, _Calls, _collect,
                            _failure, _fmt, _Future, _One, _PoolCancelled, _Run, _Waitable)
from ._pool_wire import RemoteTraceback, _ONE, _task_prefix  # noqa: F401
from ._pool_worker import _worker_main
from .memstat import MemoryMonitor

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


def _one_of(**names):
    """The value given under one of @names (the standard pools' aliases of
    one argument), or None; two given is a TypeError, as two values for
    one argument are."""
    given = [(k, v) for k, v in names.items() if v is not None]
    if len(given) > 1:
        raise TypeError(f"shoal.Pool: {given[0][0]}= and {given[1][0]}= name the same "
                        f"argument: give one")
    return given[0][1] if given else None


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
    pool: its task runs again, up to ``max_attempts`` times in all (3 by
    default), then fails with WorkerLost.

    Pickled tasks and results up to ``inline_bytes`` (8 KiB by default)
    travel inside the shared task board, larger ones through a shoal
    segment. ``prefetch`` tasks (at most 256; 128 by default) are handed to
    each worker ahead of time,
    which makes tiny tasks fast; a worker left with nothing takes back the
    tasks others have not started, so none wait behind a long one.
    ``chunksize`` in map() puts several calls in one task, as with
    multiprocessing.

    The standard pools' names are accepted too: ``max_workers`` and
    ``processes`` for ``workers``, ``maxtasksperchild`` and
    ``max_tasks_per_child`` for ``max_tasks``, ``mp_context`` (a
    multiprocessing context, whose start method is used) for
    ``start_method``; giving both names of one is a TypeError.

    ``record_memory=True`` records the pool's memory timeline in
    ``pool.memory``, a MemoryMonitor started once the first workers are
    (its first sample has them all) and stopped with the pool: the parent
    ("parent") and every worker ("worker <position>"), retiring ones
    included until they leave, every ``memory_interval`` seconds (0.1 by
    default), with PSS if ``memory_smaps`` (True: at every sample; a
    number: at most every that many seconds, as MemoryMonitor's ``smaps``);
    each replacement is an event
    "recycle" with the old worker's pid, the reason (shoal.pool.REASONS:
    "tasks", "memory", "hard", "age", "died") and the time it left. Then
    ``pool.memory.to_csv(path)`` and ``pool.memory.plot(path)``. Without
    it, ``pool.memory`` is None.
    """

    def __init__(self, workers: Optional[int] = None, *,
                 initializer: Optional[Callable[..., Any]] = None,
                 initargs: Iterable[Any] = (), max_tasks: Optional[int] = None,
                 max_tasks_jitter: int = 10,
                 max_private_memory: Union[int, float, str, None] = None,
                 hard_memory_limit: Union[int, float, str, None] = None,
                 max_age: Optional[float] = None, max_attempts: Optional[int] = None,
                 start_method: Optional[str] = None, grace: Optional[float] = None,
                 check_interval: Optional[float] = None, inline_bytes: Optional[int] = None,
                 prefetch: Optional[int] = None,
                 max_workers: Optional[int] = None, processes: Optional[int] = None,
                 maxtasksperchild: Optional[int] = None,
                 max_tasks_per_child: Optional[int] = None,
                 mp_context: Optional[multiprocessing.context.BaseContext] = None,
                 record_memory: bool = False, memory_interval: float = 0.1,
                 memory_smaps: Union[bool, float] = False) -> None:
        workers = _one_of(workers=workers, max_workers=max_workers, processes=processes)
        # The message names the argument as given, as each standard pool's does.
        wname = ("max_workers" if max_workers is not None else
                 "processes" if processes is not None else "workers")
        max_tasks = _one_of(max_tasks=max_tasks, maxtasksperchild=maxtasksperchild,
                            max_tasks_per_child=max_tasks_per_child)
        if mp_context is not None:
            _one_of(start_method=start_method, mp_context=mp_context)
            start_method = mp_context.get_start_method()
        if start_method is None:
            start_method = "fork"
        if workers is None:
            workers = os.cpu_count() or 1
        if workers < 1:
            raise ValueError(f"{wname} must be greater than 0")
        if workers > C.SHOAL_POOL_WORKERS_MAX:
            raise ValueError(f"{wname} must be between 1 and {C.SHOAL_POOL_WORKERS_MAX}")
        if start_method not in multiprocessing.get_all_start_methods():
            raise ValueError(f"unknown start method {start_method!r}")
        if initializer is not None and not callable(initializer):
            raise TypeError("initializer must be callable")
        # A ValueError for any but a positive integer, as multiprocessing.
        # Pool's maxtasksperchild (0.5 and "12" included); an integer-like
        # (numpy.int64: operator.index) is taken.
        if max_tasks is not None:
            try:
                max_tasks = operator.index(max_tasks)
            except TypeError:
                max_tasks = 0
            if max_tasks < 1:
                raise ValueError("max_tasks must be a positive int or None")
        if max_attempts is not None and max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if record_memory and not memory_interval > 0:
            raise ValueError("memory_interval must be positive")
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
        # Told when tasks come to an idle pool, and when it is destroyed:
        # the results thread waits on it while nothing is due.
        self._work = threading.Condition(self._lock)
        self._shutdown = False
        # The imap() calls whose input may not be all submitted yet:
        # join() submits the rest (_Calls.finish), and
        # shutdown(cancel_futures=True) stops them (_Calls.stop).
        self._open_inputs = weakref.WeakSet()
        self._config_warned = False
        self._spawn_exc = None  # the last exception of starting a worker
        self._ptr = None
        # Before the C pool: its hooks may start and join workers at once.
        self.memory = None
        self._book = _MemoryBook() if record_memory else None
        cfg = _Config()
        cfg.workers = workers
        cfg.max_tasks = max_tasks or 0
        cfg.max_tasks_jitter = max_tasks_jitter
        cfg.max_private = parse_size(max_private_memory)
        cfg.hard_private = parse_size(hard_memory_limit)
        cfg.max_age_ns = int((max_age or 0) * 1e9)
        # None: the C pool's default (shoal.h, SHOAL_POOL_*_DEFAULT); the
        # hosted ones apply, as this pool starts its workers through hooks.
        cfg.max_attempts = max_attempts or 0
        cfg.grace_ns = int(grace * 1e9) if grace is not None else 0
        cfg.check_ns = int(check_interval * 1e9) if check_interval is not None else 0
        cfg.inline_bytes = inline_bytes or 0
        cfg.prefetch = prefetch or 0
        # The worker reads tasks up to the cell size in place: the size the
        # C pool chose (it rounds up to 64, never down).
        self._inline = inline_bytes or C.SHOAL_POOL_HOSTED_INLINE_BYTES_DEFAULT
        prefetch = prefetch or C.SHOAL_POOL_HOSTED_PREFETCH_DEFAULT
        self._prefetch = prefetch  # imap()'s window is a multiple of it
        # A map()'s batches grow to twice what the workers' cells hold (at
        # least _LAST_BATCH, at most four times it): a batch the cells hold
        # whole is handed out thinly, a few tasks to every worker, and each
        # worker then sleeps and wakes once per batch. With 128 workers on 2
        # cores, 8,192-task batches were 64 tasks per wake-up, and a
        # wake-up of a worker whose caches the other 127 have emptied costs
        # as much as tens of tiny tasks.
        self._last_batch = min(max(_LAST_BATCH, 2 * self._workers * prefetch),
                               4 * _LAST_BATCH)
        # Its first batch is a quarter of the cells (at least _FIRST_BATCH):
        # 128 tasks over 128 workers woke each of them for one task.
        self._first_batch = min(max(_FIRST_BATCH, self._workers * prefetch // 4),
                                self._last_batch)
        # The hooks are the module's (they outlive every pool: the C pool
        # calls them until shoal_pool_destroy() returns) and find the pool
        # by its key, through a weak reference: the pool stays collectable.
        ref = weakref.ref(self)
        self._hook_key = next(_hook_keys)
        _hooked[self._hook_key] = ref
        cfg.spawn = _spawn_hook
        cfg.join = _join_hook
        cfg.hook_arg = self._hook_key
        # "fork": workers come from a fork server, forked here, before
        # libshoal starts the pool's threads (see _forkserver.py).
        self._server = None
        out = _vp()
        try:
            if start_method == "fork":
                initializer, initargs, inline = self._initializer, self._initargs, self._inline
                self._server = _forkserver.ForkServer(
                    lambda board, seat, gen: _worker_main(board, seat, gen, initializer,
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
        self._destroyer = None  # the thread destroying it (_destroy)
        self._collector = threading.Thread(target=_collect,
                                           args=(ref, self._ptr, self._stopping),
                                           name="shoal-pool-results", daemon=True)
        self._collector.start()
        if record_memory:
            # The first sample has every first worker: their spawn hooks
            # have returned (a few ms; bounded, should one never come).
            self._book.wait_started(workers, 10.0)
            self.memory = MemoryMonitor(pids=lambda: _follow(ref), interval=memory_interval,
                                        smaps=memory_smaps)
            self.memory.start()

    # ---- submitting ----

    def _submit(self, fn, kind, blobs, target, feeding=False, pre=None):
        """Queue one task per pickled calls of @kind in @blobs, all in one
        C call; the results thread hands each result to @target, told of
        their ids (``add``) before the results thread can see them. Returns
        the first id. @feeding: the rest of an imap() given before close(),
        which a closed pool still takes until it is destroyed. @pre: the
        tasks' prefix (_task_prefix(@fn, @kind)), if made already."""
        if pre is None:
            pre = _task_prefix(fn, kind)
        data = pre.join(itertools.chain((b"",), blobs))
        lens = array.array("Q", map(len(pre).__add__, map(len, blobs)))
        first = _u64()  # ids start at 1: 0 until the C call has queued them
        rc = 0
        with self._lock:
            if (self._shutdown and not feeding) or not self._ptr:
                raise RuntimeError("cannot schedule new futures after shutdown")
            # A Ctrl-C raised as the call returns (or anywhere before the
            # tasks are counted) must not leave tasks queued in C that no
            # run counts: the pool's drain would wait for them for ever.
            # So they are counted in a finally, on the C call's own word.
            try:
                rc = _submit_many(self._ptr, data,
                                  (ctypes.c_size_t * len(lens)).from_buffer(lens), len(lens),
                                  ctypes.byref(first))
            finally:
                if first.value:
                    # Under the lock: the results thread finds the run only
                    # with its target told (results may already be waiting).
                    run = _Run(first.value, len(lens), target)
                    self._runs[run.first] = run
                    self._firsts.append(run.first)
                    self._pending += len(lens)
                    if self._pending == len(lens):
                        self._work.notify()  # the results thread waits for work
                    _busy[id(self)] = self
            if rc < 0:
                raise _failure(rc, 0, 0, 0, self)
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
        return self._cancel_run(tid, 1) == 1

    def _cancel_run(self, first, n, which=None):
        """Drop every task of ids first .. first + n - 1 (all of one run)
        that no worker has started, in one C call: how many. @which: None,
        or a bytearray of @n, where the call marks the ones it dropped.
        Task by task, a map of a million tasks took seconds to cancel, and
        a second Ctrl-C in the middle left the rest to run."""
        if which is None:
            which = bytearray(n)
        with self._lock:
            if not self._ptr:
                return 0
            # Counted from the marks, in a finally: a Ctrl-C raised as the
            # call returns must not leave cancelled tasks counted as due
            # (the pool's drain would wait for them for ever).
            try:
                _cancel_range(self._ptr, first, n, (ctypes.c_char * n).from_buffer(which))
            finally:
                k = which.count(1)
                if k:
                    run = self._run_of(first)
                    if run is not None:
                        self._settled(run, k)
            return k

    def _task_state(self, tid):
        """Where task @tid is (enum shoal_pool_task_state), -ENOENT, or
        None once the pool is gone."""
        with self._lock:  # _destroy() takes the pointer under it
            if not self._ptr:
                return None
            return _task_state(self._ptr, tid)

    def _future(self, fn, args, kwargs, before=None):
        """A Future of fn(*args, **kwargs); @before: a _Future's _before."""
        try:
            pre = _task_prefix(fn, 0)
            blob = pickle.dumps(([args], kwargs or None), pickle.HIGHEST_PROTOCOL)
        except Exception as e:  # noqa: B902 - the task's error, as below
            # A function or arguments that cannot be pickled fail the
            # task, not the call:
            # both standard pools pickle in a thread of their own and give
            # the error through the Future (or AsyncResult.get() and
            # error_callback). A pool shut down still refuses first.
            with self._lock:
                if self._shutdown:
                    raise RuntimeError("cannot schedule new futures after shutdown") from None
            if before is not None:
                before(False, e)
            f = concurrent.futures.Future()
            f.set_exception(e)
            return f
        f = _Future(self, before)
        f._tid = self._submit(fn, 0, [blob], _One(f), pre=pre)
        return f

    def _check_running(self):
        """multiprocessing.Pool's methods on a pool closed or terminated
        raise ValueError, as its own do (the Executor's, RuntimeError)."""
        if self._shutdown:
            raise ValueError("Pool not running")

    def submit(self, fn: Callable[..., Any], /, *args: Any,
               **kwargs: Any) -> concurrent.futures.Future[Any]:
        """Run fn(*args, **kwargs) in a worker; a Future of its result."""
        return self._future(fn, args, kwargs)

    def _calls(self, fn, iterables, chunksize, star=False, unordered=False, lazy=False,
               done=None):
        """Submit fn(*args) for the argument tuples zip(*@iterables) gives
        (or, with @star, the one iterable's items), ``chunksize`` calls per
        task: a _Calls that holds their results. Over one iterable, the
        tasks carry the bare arguments (kind _ONE). All at once (as
        Executor.map, and Pool.map, which take the whole input first), or,
        if @lazy (imap), the first batch now and the rest as results are
        taken, a window of tasks in flight. @done: the _Calls' done
        (map_async()), told once every task has its result."""
        if chunksize is None:  # multiprocessing.Pool's default: batching is the pool's
            chunksize = 1
        if chunksize < 1:
            raise ValueError("chunksize must be >= 1")
        if len(iterables) == 1 and not star:
            kind, it = _ONE, iter(iterables[0])
        else:
            kind = 0
            it = map(tuple, iterables[0]) if star else zip(*iterables)

        def chunks_of(items):
            # Chunks are tuples cut by zip() from one iterator (a tuple
            # pickles and unpickles a little faster than a list, and zip
            # cuts them faster than slices); a short last chunk is cut on
            # its own.
            full = len(items) - len(items) % chunksize
            chunks = zip(*[itertools.islice(items, full)] * chunksize)
            if full < len(items):
                chunks = itertools.chain(chunks, (tuple(items[full:]),))
            if kind != _ONE:
                chunks = zip(chunks, itertools.repeat(None))  # (calls, kwargs)
            return chunks

        def batch(k, items=None):
            """The next @k tasks (or those of @items), pickled (fewer at the
            end; none past it): no Python code runs per call or per task."""
            if items is None:
                items = list(itertools.islice(it, k * chunksize))
            chunks = chunks_of(items)
            # Pickled _LAST_BATCH at a time: one call holds the GIL
            # throughout, and the results thread waits for it.
            blobs, proto = [], itertools.repeat(pickle.HIGHEST_PROTOCOL)
            while True:
                got = list(map(pickle.dumps, itertools.islice(chunks, _LAST_BATCH), proto))
                if not got:
                    return blobs
                blobs += got

        # Submitted in batches growing from a small one, so that workers
        # start while the caller still pickles the rest.
        calls, k = _Calls(self, unordered), _FIRST_BATCH
        calls.done = done  # before the first result can come
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
                    # The items of a chunk the error cut short are not
                    # run: multiprocessing.Pool.imap raises at the start
                    # of that chunk's results.
                    del items[len(items) - len(items) % chunksize:]
                try:
                    blobs = batch(k, items)
                except Exception:  # noqa: B902 - found again below, in its place
                    # A task that cannot be pickled ends the input there,
                    # as the input's own error does: the tasks before it
                    # still go.
                    blobs = []
                    for chunk in chunks_of(items):
                        try:
                            blobs.append(pickle.dumps(chunk, pickle.HIGHEST_PROTOCOL))
                        except Exception as e:  # noqa: B902
                            err = e
                            break
                if blobs:
                    self._submit(fn, kind, blobs, calls, feeding=True)
                return len(blobs), err

            # The window holds two of the largest batches, and the
            # workers' prefetch four times over: a map() of a list's
            # worth of tasks runs as fast through imap().
            calls.src, calls.k = src, k
            calls.window = max(2 * _LAST_BATCH, 4 * self._workers * self._prefetch)
            with self._lock:  # join() and terminate() copy the set under it
                self._open_inputs.add(calls)
            try:
                calls._more(0)
            except BaseException:
                calls._drop()
                raise
            return calls
        k = self._first_batch
        try:
            while True:
                blobs = batch(k)
                if not blobs:
                    break
                self._submit(fn, kind, blobs, calls)
                k = min(4 * k, self._last_batch)
        except BaseException:
            calls.done = None  # the call raises: it has no result to give
            calls._drop()
            raise
        calls.seal()
        return calls

    def map(self, fn: Callable[..., Any], *iterables: Iterable[Any],
            timeout: Optional[float] = None, chunksize: int = 1) -> Iterator[Any]:
        """As Executor.map: results in order; ``chunksize`` items per task.
        Returns a one-shot iterator, as Executor.map does (list() it to
        keep the results; a second pass finds it empty). The input is read
        whole first, and an error it raises comes out of map() itself,
        before any result; ``timeout`` counts from this call. Closing the
        iterator, or dropping it, cancels the tasks not started."""
        if len(iterables) == 2 and isinstance(iterables[1], int):
            # multiprocessing.Pool.map(func, iterable, chunksize): an int
            # is never an iterable to zip, so it is the chunk size.
            chunksize, iterables = iterables[1], iterables[:1]
        end = None if timeout is None else time.monotonic() + timeout
        return self._calls(fn, iterables, chunksize).ordered(end)

    def imap(self, func: Callable[[Any], Any], iterable: Iterable[Any],
             chunksize: int = 1) -> Iterator[Any]:
        """As multiprocessing.Pool.imap: an iterator of results in order.
        The input is read as results are taken, a bounded number of tasks
        in flight, so an endless generator works; an error the input
        raises comes after the results of the items before it."""
        self._check_running()
        return self._calls(func, (iterable,), chunksize, lazy=True).lazy()

    def imap_unordered(self, func: Callable[[Any], Any], iterable: Iterable[Any],
                       chunksize: int = 1) -> Iterator[Any]:
        """As multiprocessing.Pool.imap_unordered: results as they come,
        the input read as imap() reads it; its error comes after the
        results of the items before it."""
        self._check_running()
        return self._calls(func, (iterable,), chunksize, unordered=True, lazy=True).unordered()

    def starmap(self, func: Callable[..., Any], iterable: Iterable[Iterable[Any]],
                chunksize: int = 1) -> List[Any]:
        """As multiprocessing.Pool.starmap: a list."""
        self._check_running()
        return list(self._calls(func, (iterable,), chunksize, star=True).ordered(None))

    def _list_async(self, func, iterable, chunksize, star, callback, error_callback):
        """map_async() and starmap_async(): the tasks are submitted now (the
        input read whole, its error raised here, as map() does). No thread
        of its own: the thread that hands over the last result (the
        results thread) makes the list, runs the callback (or, with the
        call's error, error_callback: _Calls.values()), then makes it
        ready, so get(), wait(), ready(), the callbacks and join() behave
        as multiprocessing.Pool's. An empty input is ready at once, with
        no callback, as there."""
        self._check_running()
        if chunksize is not None and chunksize < 1:
            raise ValueError("chunksize must be >= 1")
        # Read whole first, as multiprocessing.Pool.map_async reads it: its
        # error is raised here, and any error after it is one of pickling.
        items = iterable if isinstance(iterable, (list, tuple)) else list(iterable)
        f = _Waitable(self)
        f.set_running_or_notify_cancel()
        if not items:
            # As multiprocessing.Pool's: ready at once, with no callback.
            f.set_result([])
            return AsyncResult(f)

        def done(calls):
            # The result is given whatever happens here (a Ctrl-C when this
            # runs in the caller's thread, from seal() or
            # shutdown(cancel_futures=True); a callback's BaseException):
            # get(), wait() and join() would otherwise wait for ever, as
            # calls.done is None already and nothing calls this again.
            values = exc = None
            try:
                values, exc = calls.values()
                _call_back(callback, error_callback, exc is None,
                           values if exc is None else exc)
            except BaseException as e:  # noqa: B902 - given as the call's error, and raised
                if values is None:
                    exc = e  # interrupted before its list was made
                raise
            finally:
                if exc is None:
                    f.set_result(values)
                else:
                    f.set_exception(exc)

        try:
            self._calls(func, (items,), chunksize, star=star, done=done)
        except Exception as e:  # noqa: B902 - the call's error, for get()
            with self._lock:
                if self._shutdown:
                    raise  # closed meanwhile: refused, as at the call
            # A function or an item that cannot be pickled fails the
            # call, not map_async(): multiprocessing.Pool pickles in a
            # thread of its own and gives it to error_callback and get().
            _call_back(callback, error_callback, False, e)
            f.set_exception(e)
        return AsyncResult(f)

    def map_async(self, func: Callable[[Any], Any], iterable: Iterable[Any],
                  chunksize: Optional[int] = None,
                  callback: Optional[Callable[[Any], Any]] = None,
                  error_callback: Optional[Callable[[BaseException], Any]] = None
                  ) -> "AsyncResult":
        """As multiprocessing.Pool.map_async: an AsyncResult of the list."""
        return self._list_async(func, iterable, chunksize, False, callback, error_callback)

    def starmap_async(self, func: Callable[..., Any], iterable: Iterable[Iterable[Any]],
                      chunksize: Optional[int] = None,
                      callback: Optional[Callable[[Any], Any]] = None,
                      error_callback: Optional[Callable[[BaseException], Any]] = None
                      ) -> "AsyncResult":
        """As multiprocessing.Pool.starmap_async: an AsyncResult of the list."""
        return self._list_async(func, iterable, chunksize, True, callback, error_callback)

    def apply_async(self, func: Callable[..., Any], args: Iterable[Any] = (),
                    kwds: Optional[Mapping[str, Any]] = None,
                    callback: Optional[Callable[[Any], Any]] = None,
                    error_callback: Optional[Callable[[BaseException], Any]] = None
                    ) -> "AsyncResult":
        """As multiprocessing.Pool.apply_async: an AsyncResult."""
        self._check_running()
        out = AsyncResult(None, callback, error_callback)
        # Its callbacks are the Future's _before: run before it is resolved.
        out._f = self._future(func, tuple(args), dict(kwds or {}),
                              out._before if callback or error_callback else None)
        return out

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
        reason = i.config_reason
        if reason < 0:
            return None
        which = ("max_private_memory", "hard_memory_limit")[reason - REASONS.index("memory")]
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
        has finished and every worker has left. Not with ``wait`` in a
        callback of apply_async() or map_async() (RuntimeError): it runs
        on the pool's results thread, which would wait for itself."""
        if wait:
            self._check_not_results_thread("shutdown(wait=True)")
        with self._lock:
            self._shutdown = True
            pending = list(self._runs.values())
        if cancel_futures:
            self._stop_inputs(wait=True)
            exc = _PoolCancelled()
            for run in pending:
                which = bytearray(run.end - run.first)
                if self._cancel_run(run.first, len(which), which):
                    for k in itertools.compress(range(len(which)), which):
                        run.target.end(run.first + k, 1, exc)
        if wait:
            self._drain()
            self._destroy()
        else:
            threading.Thread(target=lambda: (self._drain(), self._destroy(wait=False)),
                             daemon=True).start()

    def _on_own_thread(self):
        """Whether the caller is the pool's results thread (where callbacks
        run) or the thread destroying it: the threads that hand over what
        a wait there would wait for."""
        me = threading.current_thread()
        return me is getattr(self, "_collector", None) or me is getattr(self, "_destroyer", None)

    def _check_not_results_thread(self, what):
        """Waiting for the pool's tasks on its results thread (a callback
        runs there) would wait for ever: the thread would wait for itself
        to hand over the results. A RuntimeError instead, as
        multiprocessing.Pool's join() raises there ("cannot join current
        thread")."""
        if self._on_own_thread():
            raise RuntimeError(
                f"shoal.Pool.{what} called on the pool's results thread (in a callback "
                f"of apply_async() or map_async()): it would wait for itself; call "
                f"close() or shutdown(wait=False) there, and join() elsewhere")

    def close(self) -> None:
        """As multiprocessing.Pool.close: no new tasks (ValueError for
        its methods, RuntimeError for submit()); what was given runs, an
        imap()'s whole input included. Returns at once; join() waits."""
        with self._lock:
            self._shutdown = True

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
        """Stop now: unfinished tasks are cancelled, an open imap()
        input is read no further, workers leave or are killed after the
        grace time. Interrupted (Ctrl-C), the pool is still destroyed, by
        its own thread, before the interpreter exits."""
        with self._lock:
            self._shutdown = True
        self._stop_inputs()
        self._destroy()

    def _stop_inputs(self, wait=False):
        """Submit nothing more from any open imap() input (_Calls.stop)."""
        with self._lock:  # a WeakSet is not safe to copy while another thread adds
            inputs = list(self._open_inputs)
        for calls in inputs:
            calls.stop(wait)

    def join(self) -> None:
        """As multiprocessing.Pool.join, after close() or terminate():
        returns once every task given has run (the rest of an open
        imap()'s input is submitted first) and the workers have left.
        Without close() first it closes the pool too. (shutdown(), as
        Executor's, waits only for the tasks submitted: an endless imap()
        input still open does not hold it.) Not in a callback of
        apply_async() or map_async() (RuntimeError): see shutdown()."""
        self._check_not_results_thread("join()")
        with self._lock:
            self._shutdown = True
            inputs = list(self._open_inputs)
        try:
            for calls in inputs:
                calls.finish()
        finally:
            # Whatever finishing an input raised (a Ctrl-C), the pool shuts down.
            self.shutdown(wait=True)

    def _destroy(self, wait=True):
        """Destroy the C pool in a thread of its own (not a daemon: the
        interpreter waits for it at exit), so nothing interrupts it halfway
        (a second Ctrl-C, an exception in the caller) and no worker, board
        or spilled task is left behind. With @wait, returns once it is done
        (the workers have left), unless this thread is one it waits for:
        the results thread, or a hook on the C pool's own threads."""
        if self.memory is not None:
            # Its last sample while the pool and its workers still are.
            self.memory.stop()
        with self._lock:
            ptr, self._ptr = self._ptr, None
        if ptr:
            # The results thread leaves at once if it waits for work (the
            # notify below), else within one wait slice (200 ms), so it is
            # never inside, or about to enter, shoal_pool_wait() on a freed
            # pool: the destroying thread joins it first, even when the
            # last reference went in the results thread itself (it sees
            # the event before it would wait again, and leaves).
            with self._lock:
                self._stopping.set()
                self._work.notify()
            # Until destroyed, the hooks find the pool even once it is
            # otherwise gone (collected in a cycle): they join its workers.
            _hooked[self._hook_key] = lambda: self
            t = threading.Thread(target=self._destroy_now, args=(ptr,),
                                 name="shoal-pool-destroy")
            # Recorded before it starts: terminate() there (in anything
            # it calls) must not wait for itself.
            self._destroyer = t
            t.start()
        me = threading.current_thread()
        if wait and me is not self._collector and me is not self._destroyer and \
                not getattr(_in_hook, "on", False):
            self._gone.wait()

    def _destroy_now(self, ptr):
        try:
            # Always: a thread of its own, never the results thread. Not
            # joined when the pool was dropped in the results thread, a
            # garbage collection there at any allocation (the call into
            # shoal_pool_wait_into() included) could free the C pool under it.
            self._collector.join()
            _destroy(ptr)
        finally:
            # The join hook asks the server until the C pool's exit
            # watcher has stopped: it ends only now.
            if self._server is not None:
                self._server.close()
            _hooked.pop(self._hook_key, None)
            self._stop_inputs()
            self._end_waiting(_PoolCancelled("the pool was terminated"))
            self._gone.set()
            _live_pools.discard(self)

    def __enter__(self) -> "Pool":
        # As multiprocessing.Pool's (bpo-35477): a pool shut down is not
        # entered again.
        self._check_running()
        return self

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


# The hooks run in libshoal's supervisor and exit watcher threads (ctypes takes
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


def _spawn(ref, board, seat, gen):
    pool = ref()
    if pool is None:
        return -errno.ESHUTDOWN
    if pool._server is not None:
        pid = pool._server.spawn(board, seat, gen)
        pool._spawn_exc = None if pid > 0 else OSError(-pid, os.strerror(-pid))
        if pool._book is not None:
            pool._book.started(pid)
        return pid
    pid = _spawn_process(pool, board, seat, gen)
    if pool._book is not None:
        pool._book.started(pid)
    return pid


def _spawn_process(pool, board, seat, gen):
    try:
        proc = pool._ctx.Process(target=_worker_main, daemon=True,
                                 args=(board.decode(), seat, gen, pool._initializer,
                                       pool._initargs, pool._inline),
                                 name=f"shoal-worker-{seat}")
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


def _join(ref, pid):
    pool = ref()
    if pool is None:
        return -errno.ECHILD
    st = _join_process(pool, pid)
    if pool._book is not None:
        pool._book.left(pid)
    return st


def _join_process(pool, pid):
    if pool._server is not None:
        return pool._server.join(pid)
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


class _MemoryBook:
    """What pool.memory follows (record_memory=True): the workers started
    and not yet joined, as the hooks saw them (so a retiring worker is
    still read after its replacement has taken its position in stats()),
    the position each was last seen at, and each position's recycle
    counts, whose growth is a replacement to mark.

    The C pool counts a replacement when the old worker has been joined
    (settle_exit() in lib/pool_supervise.c), so its join is already here
    when a sample sees the count grow: the event takes that worker's pid
    and the time the join hook returned."""

    def __init__(self):
        self.lock = threading.Lock()
        self.started_cv = threading.Condition(self.lock)
        self.spawns = 0     # spawn hook calls, failed ones included
        self.alive = {}     # pid -> None, in start order
        self.gone = []      # (pid, time.monotonic()) joined, not yet marked
        self.pos_of = {}    # pid -> its position, once stats() showed it
        self.recycles = {}  # position -> its recycles by reason

    def started(self, pid):
        with self.lock:
            self.spawns += 1
            if pid > 0:
                self.alive[pid] = None
            self.started_cv.notify_all()

    def left(self, pid):
        now = time.monotonic()
        with self.lock:
            if pid in self.alive:
                del self.alive[pid]
                self.gone.append((pid, now))

    def wait_started(self, n, timeout):
        with self.lock:
            self.started_cv.wait_for(lambda: self.spawns >= n, timeout)

    def _attribute(self, pos, now):
        """The joined worker a recycle at @pos was: the first one seen at
        @pos, else one never seen at any (it died starting); and when it
        left. (None, @now) if the join is not here."""
        for mine in (lambda pid: self.pos_of.get(pid) == pos,
                     lambda pid: pid not in self.pos_of):
            for i, (pid, when) in enumerate(self.gone):
                if mine(pid):
                    del self.gone[i]
                    self.pos_of.pop(pid, None)
                    return pid, when
        return None, now

    def follow(self, pool):
        """The pids to read now with their labels; marks the recycles
        stats() shows since the last call on pool.memory."""
        st = pool.stats()
        now = time.monotonic()
        marks = []
        out = {pool._pid: "parent"}
        with self.lock:
            for pos, s in enumerate(st):
                if s["pid"] > 0 and s["pid"] in self.alive:
                    self.pos_of[s["pid"]] = pos
                cur, prev = s["recycles"], self.recycles.get(pos)
                self.recycles[pos] = cur
                if prev is None:
                    continue
                for reason in REASONS:
                    for _ in range(cur[reason] - prev[reason]):
                        marks.append((reason, pos) + self._attribute(pos, now))
            for pid in self.alive:
                pos = self.pos_of.get(pid)
                # Not ready yet: a replacement takes its position then.
                out[pid] = "worker, not ready" if pos is None else f"worker {pos}"
        mem = pool.memory
        if mem is not None:
            # Labelled by position: the worker may have come and gone
            # between two samples, or its join may not be here yet.
            for reason, pos, pid, when in sorted(marks, key=lambda m: m[3]):
                mem.mark("recycle", pid, reason, when, label=f"worker {pos}")
        return out


def _follow(ref):
    """pool.memory's pids: the pool's processes, or none once it is gone."""
    pool = ref()
    return {} if pool is None else pool._book.follow(pool)


# One pair for every pool, alive as long as the module.
_spawn_hook = _SPAWN(_hook(lambda ref, board, seat, gen: _spawn(ref, board, seat, gen)))
_join_hook = _JOIN(_hook(lambda ref, pid: _join(ref, pid)))

# A fork in this process (a new pool's fork server, multiprocessing's
# "fork", os.fork()) waits for the hook calls under way and holds back the
# next ones until it is done: a pool thread entering a hook makes its
# Python thread state under the interpreter's lock, and a child forked
# meanwhile would wait for that lock forever (shoal_pool_hooks_hold()).
# The wait lets the GIL go, which a hook under way may need. The handlers
# are the C calls themselves: no Python frame between them where a Ctrl-C
# could leave the hold taken and never released. A hook that forks is
# refused the hold (it would wait for itself), and no fork waits more than
# 2 s (a hook waiting for a lock that a fork handler registered after this
# one took first); either forks as if no hook could be under way, the
# chance the gate exists to remove. The child starts with the gate anew.
_HOLD_NS = 2_000_000_000
os.register_at_fork(before=functools.partial(_hooks_hold, _HOLD_NS),
                    after_in_parent=_hooks_release)
