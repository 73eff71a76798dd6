"""shoal._pool_wire: the bytes of a Python pool's tasks and results.

Owns the task format (a header, the pickled function, the pickled calls),
its reading in a worker (_function, which keeps the last plain function
for the tasks that carry the same one), and the result format: the
pickled tuple of a task's values, or, with the error code _RAISED, the
pickled exception carrying its remote traceback.

    supervisor (pool.py)                      worker (_pool_worker.py)
    _task_prefix(fn, kind) + pickled calls
        -> shoal_pool_submit_many -> board cell / spill segment ->
                                               _function(data), loads(calls)
                                               run; dumps(values), or
                                               _ExceptionWithTraceback, _RAISED
    _pool_results.py: loads -> values, or the exception
        with RemoteTraceback as its __cause__ (_rebuild_exc)

The bytes cross nothing but libshoal's board; the C pool never reads them.
"""
import multiprocessing.pool
import pickle
import struct
import traceback
import types

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

# The error code a Python worker gives a task that raised: its result bytes
# are then the pickled exception, not the pickled values.
_RAISED = 1


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


# The traceback of an exception raised in a worker (its __cause__):
# multiprocessing.pool's own class, so code that checks for the standard
# pool's type finds it (shoal.pool.RemoteTraceback is the same class).
RemoteTraceback = multiprocessing.pool.RemoteTraceback


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
