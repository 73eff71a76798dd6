"""shoal.joblib: a joblib backend that runs ``Parallel`` on a shoal.Pool.

``import shoal.joblib`` registers the backend "shoal"; then

    with joblib.parallel_backend("shoal", n_jobs=4, max_private_memory="512 MiB"):
        GridSearchCV(...).fit(X, y)

runs every batch of the Parallel calls inside on a shoal.Pool: workers are
recycled by private memory (and ``max_tasks``, ``max_age``...: any
shoal.Pool limit, given as a backend argument), and a task whose worker
dies runs again (``max_attempts``) instead of failing the call.

This module owns the backend class (ShoalBackend), the pools it runs on
(one per configuration, reused by every Parallel call, shut down at
interpreter exit), the cache of caller arrays copied into shared memory,
and how a task and its result travel:

    caller: BatchedCalls -> _Pickler (cloudpickle; a large ndarray -> a
            shoal array handle: the caller's own memory if it is a view of
            a shoal Array, else a shared copy made once and kept while the
            caller's array lives) -> bytes -> Pool.submit(_run, bytes)
    worker: _run: unpickle (attach each handle: a view of the same pages,
            read-only under mmap_mode "r") -> call -> pickle the result
            (a large ndarray -> a new shoal array named under the
            caller's prefix, held for the caller: a reference of the
            caller's, which its attach takes over and a reap drops if the
            caller dies; what never reaches a live caller is swept by
            name) -> bytes
    caller: results thread: unpickle (attach) -> the job's Future
            -> joblib's callback; the task's arrays are let go

Nothing here runs at ``import shoal``: joblib is imported only with this
module.
"""
from __future__ import annotations

import concurrent.futures
import contextlib
import ctypes
import errno
import itertools
import io
import multiprocessing
import os
import pickle
import queue
import sys
import threading
import warnings
import weakref
from typing import Any, Dict, List, Optional

import joblib
from joblib._parallel_backends import (AutoBatchingMixin, FallbackToBackend,
                                       ParallelBackendBase, SequentialBackend,
                                       ThreadingBackend)
from joblib.disk import memstr_to_bytes
from joblib.externals import cloudpickle

try:
    # joblib's wrapper of a batch in loky's and multiprocessing's workers:
    # a KeyboardInterrupt raised by a task reaches the caller as
    # WorkerInterrupt, not as the caller's own Ctrl-C.
    from joblib._parallel_backends import SafeFunction as _SafeFunction
except ImportError:  # pragma: no cover - joblib without it
    _SafeFunction = None

from . import _lib
from . import array as _array
from . import segment as _segment
from .array import Array, reap
from .pool import Pool, parse_size

__all__ = ["ShoalBackend", "share", "shutdown", "cache_info"]

# The shoal.Pool arguments a backend accepts (parallel_backend("shoal",
# **backend_args)); each configuration gets a pool of its own.
POOL_ARGS = frozenset(("max_tasks", "max_tasks_jitter", "max_private_memory",
                       "hard_memory_limit", "max_age", "max_attempts", "start_method",
                       "grace", "check_interval", "inline_bytes", "prefetch"))
# joblib's memmapping arguments this backend also takes as backend
# arguments (they then win over the Parallel call's).
_OWN_ARGS = frozenset(("max_nbytes", "mmap_mode"))
_MMAP_MODES = ("r", "r+", "w+", "c", None)

_PROTO = pickle.HIGHEST_PROTOCOL
# Arrays are compared in blocks of this size (a non-contiguous one through
# a scratch copy of one block): no temporary the size of the array.
_BLOCK = 16 << 20

_libc = ctypes.CDLL(None, use_errno=True)
_memcmp = _libc.memcmp
_memcmp.restype = ctypes.c_int
_memcmp.argtypes = (ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t)


def _np():
    return sys.modules.get("numpy")


# ---- the caller's side: pools ---------------------------------------------

_pools: Dict[Any, Pool] = {}
_pools_lock = threading.Lock()


def _worker_init(env):
    """In each worker as it starts: it is a shoal worker (a nested
    Parallel on "shoal" runs sequentially) and its native thread pools
    are limited as loky limits them (cpu_count // n_jobs by default). Its
    print() reaches fds 1 and 2 as in loky's: the fork server sees to it
    (_forkserver._std_streams)."""
    global _in_worker, _limits
    _in_worker = True
    os.environ.update(env)
    try:
        import threadpoolctl
    except ImportError:  # pragma: no cover - scikit-learn depends on it
        return
    n = env.get("OMP_NUM_THREADS")
    if n and n.isdigit():
        # Kept: the limits hold while the object lives.
        _limits = threadpoolctl.threadpool_limits(int(n))


_in_worker = False
_limits = None


def _pool_for(n_jobs, args, env):
    """The pool of this configuration, made at its first use; a pool that
    was terminated is replaced. Before a pool is made, what callers that
    died left is freed (_reap_dead_callers)."""
    key = (n_jobs, tuple(sorted(args.items())), tuple(sorted(env.items())))
    with _pools_lock:
        pool = _pools.get(key)
        if pool is not None and not pool._shutdown:
            return pool
    _reap_dead_callers()
    with _pools_lock:
        pool = _pools.get(key)
        if pool is None or pool._shutdown:
            pool = _pools[key] = Pool(n_jobs, initializer=_worker_init, initargs=(env,),
                                      **args)
        return pool


# How many backends (Parallel calls between configure() and terminate())
# use each pool, by id: an abort terminates a pool only when its call is
# the pool's only user.
_users: Dict[int, int] = {}


def shutdown(wait: bool = True) -> None:
    """Shut down every pool of this backend and let go of every cached
    shared copy (those of arrays still alive are made again when next
    passed). Runs at interpreter exit; a later Parallel call starts a new
    pool."""
    with _pools_lock:
        pools = list(_pools.values())
        _pools.clear()
    for p in pools:
        try:
            p.shutdown(wait=wait)
        except BaseException:  # noqa: B902 - interrupted: stop now
            p.terminate()
    with _cache_lock:
        entries = list(_cache.values())
        _cache.clear()
    for e in entries:
        e.finalizer.detach()
    # Every task has ended (or its pool was terminated): what is still
    # held for this process under its prefix reached nobody.
    _sweep(_owner())


def _after_fork_in_child():
    """A forked child (a multiprocessing "fork" Process, say) starts with
    no pool and no cache of its own: the inherited ones are the parent's
    (its pools' threads are not here, the copies' references are the
    parent's), and shutting them down at the child's exit would tear down
    the parent's pool."""
    global _pools, _pools_lock, _cache, _cache_lock, _users, _adopted
    _pools, _pools_lock = {}, threading.Lock()
    _cache, _cache_lock = {}, threading.RLock()
    _users, _adopted = {}, set()
    _owner_cache.clear()


os.register_at_fork(after_in_child=_after_fork_in_child)


# Before shoal.pool's own exit hook (threading's run last registered
# first): the pools finish their tasks, then the cache lets go, so nothing
# is left in /dev/shm. multiprocessing's atexit hook comes later still.
if hasattr(threading, "_register_atexit"):
    threading._register_atexit(shutdown)
else:  # pragma: no cover
    import atexit
    atexit.register(shutdown)


# ---- the caller's side: arrays ----------------------------------------------

class _Entry:
    """A caller array's shared copy: ``arr`` (the shoal Array), ``checked``
    (the Parallel call it was last found equal in), ``finalizer`` (drops
    the entry when the caller's array goes)."""
    __slots__ = ("arr", "checked", "finalizer", "__weakref__")


_cache: Dict[int, _Entry] = {}
# Re-entrant: a finalizer can run at any allocation, one under this lock
# included.
_cache_lock = threading.RLock()
_calls = [0]  # bumped at each Parallel call's start: copies are checked again
_stats = {"copies": 0, "checks": 0, "hits": 0, "zero_copy": 0, "pickled": 0}


def cache_info() -> Dict[str, int]:
    """What the array cache did so far: ``copies`` (shared copies made),
    ``checks`` (copies compared with the caller's array), ``hits`` (a copy
    reused), ``zero_copy`` (views of shoal Arrays sent as they are),
    ``pickled`` (large arrays that could not be shared), ``entries``,
    ``bytes`` (shared copies held)."""
    with _cache_lock:
        out = dict(_stats)
        out["entries"] = len(_cache)
        out["bytes"] = sum(e.arr.nbytes for e in _cache.values())
    return out


def _forget(key, entry):
    with _cache_lock:
        if _cache.get(key) is entry:
            del _cache[key]


def _same(a, shared):
    """Whether caller array @a holds exactly the bytes of its C-ordered
    shared copy @shared: one memcmp (at memory bandwidth, no temporary)
    for a C-contiguous @a, else through a scratch copy of 16 MiB of rows
    at a time."""
    np = _np()
    if a.nbytes != shared.nbytes:
        return False
    if a.size == 0:
        return True
    if a.flags.c_contiguous:
        return _memcmp(a.ctypes.data, shared.ctypes.data, a.nbytes) == 0
    rows = max(1, _BLOCK // max(1, a[0:1].nbytes))
    scratch = None
    for i in range(0, a.shape[0], rows):
        blk = a[i:i + rows]
        if scratch is None or scratch.shape != blk.shape:
            scratch = np.empty(blk.shape, a.dtype)
        np.copyto(scratch, blk)
        if _memcmp(scratch.ctypes.data, shared[i:i + rows].ctypes.data, scratch.nbytes):
            return False
    return True


def _shoal_base(a):
    """(the C handle pointer of a shoal Array mapping, its data address,
    its size, whether @a holds a reference) when ndarray @a is a view of a
    live shoal Array's memory, else None: its base chain reaches the Array
    (np.asarray(arr): held) or the memoryview that Array.numpy() is made
    from (not held: that Array may be released). A view of an array
    already freed (released by every holder, its mapping kept by the view)
    is copied like any other array: its name is gone."""
    b = a
    for _ in range(64):
        b = getattr(b, "base", None) if not isinstance(b, memoryview) else b.obj
        if b is None:
            return None
        if isinstance(b, Array):
            if b.released or b.inherited:
                return None
            return b._map.ptr, b._data, b._nbytes, True
        m = getattr(b, "mapping", None)
        if isinstance(m, _lib.Mapping) and m._closer is _array._close and m.ptr:
            ptr = m.ptr
            if _array._is_freed(ptr):
                return None
            return ptr, _array._data(ptr), _array._nbytes(ptr), False
    return None


def _handle_of(ptr):
    buf = ctypes.create_string_buffer(_array.HANDLE_MAX)
    _array._handle(ptr, buf, _array.HANDLE_MAX)
    return buf.value.decode("ascii", "surrogateescape")


def _shareable(a):
    np = _np()
    dt = a.dtype
    if dt.hasobject or dt.itemsize == 0 or a.ndim == 0 or a.size == 0:
        return False
    if dt.fields is None and not dt.isnative:
        return False  # from_numpy would swap it: the worker must see the same dtype
    if dt.subdtype is not None:
        return False
    try:
        _array._code(dt)
    except (TypeError, ValueError):
        return False
    return np is not None


def _share_copy(a, keep):
    """The shared copy of caller array @a: from the cache when it still
    holds @a's bytes (compared once per Parallel call), else a new one."""
    key = id(a)
    with _cache_lock:
        e = _cache.get(key)
        if e is not None and e.checked == _calls[0]:
            _stats["hits"] += 1
            keep.append(e.arr)
            return e.arr
    if e is not None:
        _stats["checks"] += 1
        if _same(a, e.arr.numpy()):
            with _cache_lock:
                e.checked = _calls[0]
                _stats["hits"] += 1
            keep.append(e.arr)
            return e.arr
    # A new copy, never the old one written over: a task still running
    # reads the old one (its job holds it until done).
    arr = Array.from_numpy(a)
    _stats["copies"] += 1
    with _cache_lock:
        old = _cache.get(key)
        if old is not None:
            old.finalizer.detach()
        ne = _Entry()
        ne.arr = arr
        ne.checked = _calls[0]
        ne.finalizer = weakref.finalize(a, _forget, key, ne)
        ne.finalizer.atexit = False
        _cache[key] = ne
    keep.append(arr)
    return arr


def share(a: Any) -> Any:
    """A numpy array in shared memory holding a copy of @a, for a caller
    that keeps its data there: the backend sends it to workers as it is
    (no copy, no comparison), and its memory is freed when the returned
    array (and every view of it) is gone."""
    np = _np() or __import__("numpy")
    return np.asarray(Array.from_numpy(a))


# ---- the caller's side: result arrays' names -------------------------------
#
# A worker holds each result array it makes for its caller
# (Array.hold_for: a reference on the caller's line of the ledger, given
# by the worker) and the caller's attach takes that reference over
# (_adopt). A caller that dies leaves a dead holder's reference, which a
# reap drops: shoal.reap() or `shoal gc`, and the next pool of this backend
# made anywhere on the machine (_reap_dead_callers). What never reaches a caller that lives on (a terminated pool, a
# worker killed between its hold and its result, a result that failed to
# unpickle) is the caller's own reference, and no reap takes a live
# process's: so each result array is named under its caller's prefix,
# "jl.<pid>.<start time>.", then the call's token and the task's number,
# and the caller frees its own by name (_sweep: open takes the given
# reference over, release drops it).

_owner_cache: Dict[int, str] = {}
# Names of result arrays this process attached (the reference held for it
# is its own struct's now): a sweep leaves them alone.
_adopted: set = set()
_DIR_PREFIX = "shoal."


def _start_time(pid):
    """Process @pid's start time (in clock ticks since boot, as text), or
    None when there is no such process."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses.
    fields = stat.rsplit(b")", 1)[-1].split()
    return fields[19].decode() if len(fields) > 19 else None


def _owner():
    """This process's prefix of result array names."""
    pid = os.getpid()
    o = _owner_cache.get(pid)
    if o is None:
        o = _owner_cache[pid] = f"jl.{pid}.{_start_time(pid) or 0}."
    return o


def _caller():
    """(pid, start time) of this process: whom workers hold results for."""
    pid = os.getpid()
    return pid, int(_owner().split(".")[2])


def _sweep(prefix, names=None):
    """Free every result array named under @prefix that was held for this
    process and not attached here: open it by name (which takes the
    reference held for this process over) and let go. Only when no task of
    @prefix can still hand its result over. Returns how many it looked at."""
    if names is None:
        try:
            names = os.listdir(_segment.directory())
        except OSError:
            return 0
    full = _DIR_PREFIX + prefix
    n = 0
    for f in names:
        if not f.startswith(full):
            continue
        name = f[len(_DIR_PREFIX):]
        if name in _adopted:
            continue
        try:
            arr = Array.open(name)
        except (OSError, ValueError):
            continue  # gone meanwhile (ENOENT), or not an array
        # Nothing held for us (the open added a reference): this release
        # takes back only that.
        arr.release()
        n += 1
    return n


def _reap_dead_callers():
    """Free what callers that died left: a result array held for a caller
    that died before taking it has only that dead holder's reference, which
    a reap drops (and nothing else would: its worker let go of its own).
    One directory listing says whether any caller named there is dead (its
    pid gone, or now with another start time); only then one reap, of
    everything (shoal.reap()). True if it reaped."""
    try:
        names = os.listdir(_segment.directory())
    except OSError:
        return False
    me, owners = _owner(), set()
    for f in names:
        if f.startswith(_DIR_PREFIX + "jl."):
            parts = f.split(".", 4)
            if len(parts) == 5 and parts[2].isdigit():
                owners.add((parts[2], parts[3]))
    for pid, start in owners:
        if f"jl.{pid}.{start}." != me and _start_time(int(pid)) != start:
            reap()
            return True
    return False


class _Pickler(cloudpickle.CloudPickler):
    """cloudpickle, with large ndarrays sent as shoal handles. The arrays a
    task names are kept in @keep until its result is in."""

    def __init__(self, file, backend, keep):
        super().__init__(file, protocol=_PROTO)
        self._backend = backend
        self._keep = keep

    def reducer_override(self, obj):
        np = _np()
        if np is not None and type(obj) is np.ndarray:
            r = self._backend._reduce(obj, self._keep)
            if r is not None:
                return r
        return super().reducer_override(obj)


# ---- the worker's side ------------------------------------------------------

def _attach_view(handle, dtype, shape, strides, offset, mode):
    """In a worker: a view of the shoal array @handle names. The worker
    drops its reference at once (the caller holds one until this task's
    result is in); the view keeps the mapping while the task uses it.
    mode "r": read-only; "r+"/"w+": writable, shared with every task and
    the caller; "c"/None: a private copy."""
    np = _np() or __import__("numpy")
    arr = Array.attach(handle, readonly=mode == "r")
    try:
        raw = _lib.view(arr._map, arr._data, arr._nbytes, arr.readonly)
    finally:
        arr.release()
    v = np.ndarray(shape, dtype, raw, offset, strides)
    if mode in ("c", None):
        v = v.copy()
    return v


def _adopt(handle, dtype):
    """In the caller: a result array a worker put in shared memory and held
    for this process. Attaching takes that reference over: the caller's
    ndarray holds the only reference, and its memory goes with it. Its
    name is in _adopted while it lives, so a sweep leaves it alone."""
    np = _np() or __import__("numpy")
    name = handle[len("shoal:array:"):].rpartition("@")[0]
    _adopted.add(name)
    try:
        arr = Array.attach(handle, dtype=dtype)
    except BaseException:
        _adopted.discard(name)
        raise
    weakref.finalize(arr, _adopted.discard, name).atexit = False
    return np.asarray(arr)


class _ResultPickler(cloudpickle.CloudPickler):
    """In a worker: a large ndarray result goes into a new shoal array
    named under the task's @prefix (its caller's), to be held for the
    caller once the whole result is pickled (_run), so that it outlives
    the worker's reference until the caller attaches it (_adopt). No room
    in shared memory (ENOSPC): it is pickled instead."""

    def __init__(self, file, max_nbytes, made, prefix):
        super().__init__(file, protocol=_PROTO)
        self._max = max_nbytes
        self._made = made
        self._prefix = prefix

    def reducer_override(self, obj):
        np = _np()
        if (np is not None and type(obj) is np.ndarray and self._max is not None
                and obj.nbytes > self._max and _shareable(obj)):
            try:
                arr = Array.from_numpy(obj, name=self._prefix + os.urandom(8).hex())
            except OSError as e:
                if e.errno != errno.ENOSPC:
                    raise
                return super().reducer_override(obj)
            self._made.append(arr)
            return _adopt, (arr.handle, obj.dtype)
        return super().reducer_override(obj)


def _run(payload, max_nbytes, prefix, caller):
    """A task in a worker: unpickle the batch (attaching its arrays), run
    it, pickle its result (large arrays into shared memory, held for
    @caller, its (pid, start time))."""
    global _in_worker
    _in_worker = True
    func = pickle.loads(payload)
    payload = None
    res = func()
    func = None
    made: List[Array] = []
    buf = io.BytesIO()
    try:
        _ResultPickler(buf, max_nbytes, made, prefix).dump(res)
        # Held for the caller once nothing can fail before the hand-over
        # but the hand-over: a failed pickling leaves no reference of the
        # caller's behind. A caller that died meanwhile (or whose pid is
        # now another process's) is ProcessLookupError: nobody waits.
        for arr in made:
            arr.hold_for(*caller)
    finally:
        for arr in made:  # the worker's own references go either way
            arr.release()
    return buf.getvalue()


# ---- the backend ------------------------------------------------------------

class _Job(concurrent.futures.Future):
    """What submit()/apply_async() return: a Future of the batch's result
    list, with multiprocessing's get(timeout) (joblib 1.2)."""

    def get(self, timeout: Optional[float] = None) -> Any:
        try:
            return self.result(timeout)
        except concurrent.futures.TimeoutError:
            raise multiprocessing.TimeoutError(
                f"shoal backend: no result within {timeout} s") from None


class ShoalBackend(AutoBatchingMixin, ParallelBackendBase):
    """joblib's backend "shoal": Parallel on a shoal.Pool.

    Backend arguments (``parallel_backend("shoal", n_jobs, **args)``): any
    shoal.Pool limit (POOL_ARGS: ``max_private_memory``, ``max_tasks``,
    ``hard_memory_limit``, ``max_age``, ``max_attempts``, ...), and
    ``max_nbytes``/``mmap_mode``, which then win over the Parallel call's.
    """

    supports_timeout = True
    supports_inner_max_num_threads = True
    # joblib >= 1.3 reads it: results are handed over in the callback
    # thread (callback(job), then retrieve_result_callback(job)); 1.2 does
    # not (apply_async's callback gets the result list).
    supports_retrieve_callback = True
    supports_return_generator = True

    def __init__(self, nesting_level=None, inner_max_num_threads=None, **backend_args):
        bad = sorted(set(backend_args) - POOL_ARGS - _OWN_ARGS)
        if bad:
            raise TypeError(f"shoal backend: unknown argument(s) {', '.join(bad)} (it takes "
                            f"{', '.join(sorted(POOL_ARGS | _OWN_ARGS))})")
        super().__init__(nesting_level=nesting_level,
                         inner_max_num_threads=inner_max_num_threads)
        self._pool_args = {k: v for k, v in backend_args.items() if k in POOL_ARGS}
        self._own = {k: v for k, v in backend_args.items() if k in _OWN_ARGS}
        self._call_args = dict(self._pool_args)
        if "mmap_mode" in self._own and self._own["mmap_mode"] not in _MMAP_MODES:
            raise ValueError(f"mmap_mode must be one of {_MMAP_MODES}")
        self._pool = None
        self._n_jobs = None
        self.parallel = None
        self._max_nbytes = 1 << 20
        self._mmap_mode = "r"
        self._jobs = set()  # the pool futures of this backend still running
        self._jobs_lock = threading.Lock()
        # Bumped at each abort: a job's callback runs only in its epoch.
        self._epoch = 0
        # This call's part of its result arrays' names, and the tasks' count.
        self._token = os.urandom(4).hex()
        self._tasks = itertools.count()

    # -- the pool this backend uses, counted in _users

    def _use(self, pool):
        with _pools_lock:
            if self._pool is pool:
                return
            self._unuse_locked()
            _users[id(pool)] = _users.get(id(pool), 0) + 1
            self._pool = pool

    def _unuse_locked(self):
        pool, self._pool = self._pool, None
        if pool is not None:
            n = _users.get(id(pool), 0) - 1
            if n > 0:
                _users[id(pool)] = n
            else:
                _users.pop(id(pool), None)

    def _new_pool(self):
        self._use(_pool_for(self._n_jobs, self._call_args,
                            self._prepare_worker_env(self._n_jobs)))

    # -- joblib's questions

    def effective_n_jobs(self, n_jobs):
        if n_jobs == 0:
            raise ValueError("n_jobs == 0 in Parallel has no meaning")
        if n_jobs is None:
            return 1
        if _in_worker:
            # Inside a shoal worker: no pool of pools, as loky in loky.
            if n_jobs != 1:
                warnings.warn("shoal-backed parallel loops cannot be nested in a shoal "
                              "worker, setting n_jobs=1", stacklevel=3)
            return 1
        if n_jobs < 0:
            n_jobs = max(joblib.cpu_count() + 1 + n_jobs, 1)
        return n_jobs

    def configure(self, n_jobs=1, parallel=None, prefer=None, require=None,
                  max_nbytes=None, mmap_mode="r", temp_folder=None, **extra):
        """Pick (or start) the pool for @n_jobs and these limits; note the
        Parallel call's max_nbytes and mmap_mode (temp_folder is not used:
        shared arrays live where shoal keeps its objects). Pool arguments
        among @extra (joblib 1.5 passes Parallel's own keyword arguments
        here) apply to this call; joblib's others (context, verbose...) are
        not used."""
        n = self.effective_n_jobs(n_jobs)
        if n == 1:
            raise FallbackToBackend(SequentialBackend(nesting_level=self.nesting_level))
        self._call_args = dict(self._pool_args)
        self._call_args.update((k, v) for k, v in extra.items() if k in POOL_ARGS)
        mb = self._own.get("max_nbytes", max_nbytes)
        # joblib's units: '1M' is 2**20 bytes.
        self._max_nbytes = None if mb is None else parse_size(
            memstr_to_bytes(mb) if isinstance(mb, str) else mb)
        mode = self._own.get("mmap_mode", mmap_mode)
        if mode not in _MMAP_MODES:
            raise ValueError(f"mmap_mode must be one of {_MMAP_MODES}")
        self._mmap_mode = mode
        self._n_jobs = n
        self.parallel = parallel
        self._token = os.urandom(4).hex()
        self._new_pool()
        return n

    def start_call(self):
        with _cache_lock:
            _calls[0] += 1

    def stop_call(self):
        pass

    def terminate(self):
        """End of a Parallel call: the pool stays for the next one (as
        loky's executor does); arrays still held by jobs go with them. A
        result array still held for this process under this call's names
        (its worker was killed after holding it, and the task ran again) is
        freed."""
        self.reset_batch_stats()
        with _pools_lock:
            used = self._pool is not None
            self._unuse_locked()
        if used and self._max_nbytes is not None:
            _sweep(self._prefix())

    def get_nested_backend(self):
        """Inside a worker: threads at the first level, then sequential,
        as joblib's default (and loky) does."""
        level = (self.nesting_level or 0) + 1
        if level > 1:
            return SequentialBackend(nesting_level=level), None
        return ThreadingBackend(nesting_level=level), None

    # -- tasks

    def _reduce(self, a, keep):
        """How _Pickler sends ndarray @a, or None for plain pickling."""
        if self._max_nbytes is None or a.nbytes <= self._max_nbytes:
            return None
        if not _shareable(a):
            _stats["pickled"] += 1
            return None
        base = _shoal_base(a)
        ref = None
        if base is not None:
            ptr, data, nbytes, held = base
            handle = _handle_of(ptr)
            if not held:
                # The Array @a views may be released here while others
                # hold it: the task holds a reference of its own, or the
                # others' last release would free it under the worker.
                try:
                    ref = Array.attach(handle, readonly=True)
                except FileNotFoundError:
                    base = None  # freed meanwhile: copied below
        if base is not None:
            off = a.ctypes.data - data
            # The view must lie inside the array (numpy made it so; a
            # negative stride starts it past its lowest byte).
            _stats["zero_copy"] += 1
            keep.append(a)
            if ref is not None:
                keep.append(ref)
            return _attach_view, (handle, a.dtype, a.shape, a.strides, off,
                                  self._mmap_mode)
        try:
            arr = _share_copy(a, keep)
        except OSError as e:
            if e.errno != errno.ENOSPC:
                raise
            # No room in shared memory: the bytes travel in the task.
            _stats["pickled"] += 1
            return None
        return _attach_view, (arr.handle, a.dtype, a.shape, None, 0, self._mmap_mode)

    def _prefix(self):
        return f"{_owner()}{self._token}."

    def _dumps(self, func, keep):
        buf = io.BytesIO()
        _Pickler(buf, self, keep).dump(func)
        return buf.getvalue()

    def _start(self, func):
        """Pickle @func and submit it: a _Job that ends with its result
        (arrays attached) or its exception. The job holds the arrays the
        task names until the worker is done with them. A failure to pickle
        (a PicklingError, caused by what failed, as loky's) or submit ends
        the job with it: joblib (1.2 and later) dispatches
        from the results thread, where an exception raised would be logged
        and lost, and Parallel would wait for ever."""
        job = _Job()
        job.set_running_or_notify_cancel()
        keep: List[Any] = []
        prefix = f"{self._prefix()}{next(self._tasks)}."
        try:
            pool = self._pool
            if pool is None:
                raise RuntimeError("shoal backend: configure() was not called")
            if pool._shutdown:  # terminated, or shut down by shutdown()
                self._new_pool()
                pool = self._pool
            if _SafeFunction is not None:
                func = _SafeFunction(func)
            try:
                payload = self._dumps(func, keep)
            except Exception as e:
                # loky's words and type: the cause says what failed.
                raise pickle.PicklingError(
                    "Could not pickle the task to send it to the workers.") from e
            inner = pool.submit(_run, payload, self._max_nbytes, prefix, _caller())
        except BaseException as e:  # noqa: B902 - the job must end
            keep.clear()
            job.set_exception(e)
            return job
        with self._jobs_lock:
            self._jobs.add(inner)

        def done(f, keep=keep):
            with self._jobs_lock:
                self._jobs.discard(f)
            ok, value = False, None
            try:
                if f.cancelled():
                    value = concurrent.futures.CancelledError()
                elif f.exception() is not None:
                    value = f.exception()
                else:
                    # Attaching here, always, not when joblib asks: a
                    # result never taken must still let its arrays go.
                    try:
                        ok, value = True, pickle.loads(f.result())
                    except BaseException:
                        # The result arrays not attached yet are still
                        # held for us: free them (a retried task's too).
                        _sweep(prefix)
                        raise
            except BaseException as e:  # noqa: B902 - the job must end
                ok, value = False, e
            # The task's arrays go before the caller hears of the result:
            # once it has them all, nothing of the call is left.
            keep.clear()
            if ok:
                job.set_result(value)
            else:
                job.set_exception(value)

        inner.add_done_callback(done)
        return job

    def apply_async(self, func, callback=None):
        """joblib < 1.5: run @func. joblib 1.3 and 1.4 (they read
        supports_retrieve_callback): @callback(job) once it ended, either
        way, as submit(). joblib 1.2: @callback(result) once it succeeded
        (a failure reaches it through job.get())."""
        job = self._start(func)
        if callback is not None:
            if _CALLBACK_GETS_JOB:
                job.add_done_callback(self._of_this_call(callback))
            else:
                job.add_done_callback(self._of_this_call(
                    lambda j: None if j.cancelled() or j.exception() is not None
                    else callback(j.result())))
        return job

    def submit(self, func, callback=None):
        """joblib >= 1.5: run @func; @callback(job) once it ended, either
        way (joblib then calls retrieve_result_callback(job))."""
        job = self._start(func)
        if callback is not None:
            job.add_done_callback(self._of_this_call(callback))
        return job

    def _of_this_call(self, callback):
        """@callback, called only if no abort came between the job's start
        and its end. joblib's callback dispatches the next batch of the
        Parallel object, which after an abort may be running its next call
        (a managed Parallel): a late result of the aborted call would be
        dispatched into, and returned by, that next call (loky kills its
        workers at an abort, so no late result reaches joblib). The epoch
        is read, and @callback run, under the Parallel's lock, which
        abort_everything holds to bump it: a callback that read it before
        the abort and then waited for that lock (joblib's takes it to
        dispatch) would dispatch the aborted call's next batches after the
        abort dropped the others (test_joblib.py forces both this and
        the abort's own race: test_abort_while_the_results_thread_dispatches)."""
        epoch = self._epoch
        lock = self._parallel_lock()

        def call(job):
            with lock:
                if self._epoch == epoch:
                    callback(job)
        return call

    def retrieve_result_callback(self, out):
        return out.result()

    def retrieve_result(self, out, timeout=None):
        return out.get(timeout=timeout)

    def _parallel_lock(self):
        """The lock of the Parallel this call runs for: joblib's RLock,
        which its dispatch holds from slicing a batch to apply_async() or
        submit() returning (taken again if this thread holds it); none for
        any other object (the queue is thread-safe)."""
        lock = getattr(self.parallel, "_lock", None)
        if not isinstance(lock, type(threading.RLock())):
            return contextlib.nullcontext()
        return lock

    def _drop_ready_batches(self):
        """joblib 1.2 slices batches ahead of dispatch into its Parallel's
        _ready_batches and leaves them there at an abort: the Parallel's
        next call (a managed one) would run them first and return their
        results with its own (loky too: 39 runs in 40 of such a call get
        extra results). They belong to the aborted call: dropped. Called
        under the Parallel's lock (abort_everything)."""
        ready = getattr(self.parallel, "_ready_batches", None)
        if ready is None or not hasattr(ready, "get_nowait"):
            return
        while True:
            try:
                ready.get_nowait()
            except queue.Empty:
                return

    def abort_everything(self, ensure_ready=True):
        """A task raised (or the caller was interrupted): tasks not started
        are cancelled; if any is still running, the pool is terminated (its
        workers stop now, as loky kills its own) and, with @ensure_ready, a
        new one is started for the next call."""
        # All three under the Parallel's lock, which joblib's results
        # thread holds while it dispatches a batch (past Parallel's
        # _aborting check, pickling it in _start): that batch is then
        # either dispatched before, its job in the list and its callback
        # of the old epoch, or not at all. Taken without it, a batch
        # dispatched meanwhile got the new epoch (a live callback) and was
        # missing from the list (never cancelled): its result dispatched
        # more of the aborted call's input into _ready_batches after they
        # were dropped, and the next call returned them. Lock order as on
        # the dispatch path: the Parallel's, then _jobs_lock. Released
        # before the pool is terminated: that joins the results thread,
        # which may be waiting for it in a callback.
        with self._parallel_lock():
            with self._jobs_lock:
                self._epoch += 1  # no callback of this call from now on
                jobs = list(self._jobs)
            self._drop_ready_batches()
        running = [f for f in jobs if not f.cancel() and not f.done()]
        pool = self._pool
        if running and pool is not None:
            with _pools_lock:
                # Only a pool no other call uses: theirs would fail with
                # CancelledError. Else this call's running tasks end on
                # their own (their results are attached, then dropped).
                alone = _users.get(id(pool), 0) <= 1
                if alone:
                    for k, p in list(_pools.items()):
                        if p is pool:
                            del _pools[k]
                    self._unuse_locked()
            if alone:
                pool.terminate()
                # Its workers are gone and its results thread joined: what
                # they held for us under this call's names reached nobody.
                _sweep(self._prefix())
        if ensure_ready and self._pool is None and self._n_jobs:
            self._new_pool()


# joblib 1.3 and 1.4 call apply_async(batch, callback) and, as the backend
# supports_retrieve_callback, expect callback(job) on success and failure
# (their BatchCompletionCallBack then calls retrieve_result_callback(job));
# 1.2 expects callback(result list) on success. TASK_PENDING came with 1.3.
_CALLBACK_GETS_JOB = hasattr(joblib.parallel, "TASK_PENDING")


def _register():
    joblib.register_parallel_backend("shoal", ShoalBackend)


_register()
