"""shoal._pool_worker: the body of a Python pool's worker process.

Owns _worker_main, which runs in every worker, however it was started
(forked by _forkserver.py, or a multiprocessing Process), and nothing the
supervisor runs.

    shoal_pool_worker_open(board, seat, gen)
    loop: shoal_pool_worker_step(last result) -> TASK: the task's bytes
              (in place in its board cell, or a copy of a spilled one)
              -> _pool_wire._function / loads -> fn(...) -> dumps -> out
          -> TRIM: gc.collect(), shoal_pool_worker_trimmed()
          -> anything else: the pool is going away; leave
    shoal_pool_worker_close()

A worker that dies anywhere in the loop loses only its task, which the
supervisor runs again or fails with WorkerLost; it holds nothing else.
"""
import ctypes
import gc
import itertools
import pickle
import signal

from ._pool_abi import _TASK, _TRIM, _Task, _vp, _wclose, _wopen, _wstep, _wtrimmed
from ._pool_wire import _ONE, _RAISED, _ExceptionWithTraceback, _function, _last, _unpicklable


def _short(fn, calls, values):
    """The exception of a task whose fn raised StopIteration, which map()
    took for the end of its calls. Its own traceback is gone; like a
    generator (PEP 479), the task fails with a RuntimeError."""
    name = getattr(fn, "__qualname__", None) or repr(fn)
    return RuntimeError(f"{name} raised StopIteration (call {len(values) + 1} of the "
                        f"{len(calls)} in its task)")


def _worker_main(board, seat, gen, initializer, initargs, inline):
    """A Python worker: the body of each worker process. A task of at most
    @inline bytes is read in place, in its cell of the board."""
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
    _wopen(board.encode(), seat, gen, ctypes.byref(w))
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
