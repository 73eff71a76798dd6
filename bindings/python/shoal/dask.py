"""shoal.dask: a Dask distributed plugin; workers on one host pass numpy
arrays as shoal handles.

This module owns everything shoal does inside Dask (docs/dask.md):

- the same-host token (uid, boot id, the shoal directory's device and inode,
  the IPC and pid namespaces) that every comm whose process deserializes
  adds to Dask's handshake (``Comm.handshake_info``);
- the numpy serializer and deserializer: a read-only array of at least the
  threshold (``shoal.dask.threshold``, 1 MiB) that lives in a shoal Array
  travels as its handle when both ends of the comm carry this host's
  token, read-only at the receiver; anything else (another host, a small
  array, a writable one, spilling, which serializes with ``context=None``)
  goes through Dask's own numpy serializer untouched;
- the worker's ``get_data`` handler, wrapped: before a same-host peer is
  sent a key whose value is a private numpy array of at least the
  threshold (or a writable view of a shoal Array), the value is copied once
  into a shoal Array and the worker's stored value becomes a read-only view
  of it (so the private copy is freed and every later send is a handle);
- the spill buffer's eviction skips shared views: spilling one would write
  the whole array to disk and free no private memory;
- ``dask.sizeof`` of a view of shared pages: the view's object, not the
  pages, which are not this worker's memory;
- the memory manager: the worker's spill/pause decisions and the nanny's
  terminate decision read private memory (``shoal.memstat``: anonymous RSS
  + swap) instead of RSS, which counts every shared page touched;
- lifetime: references are held by the stored values; a closing worker
  releases what it holds, and workers reap what dead workers held
  (``shoal.reap``) when they start, periodically and when they close.

Loaded with ``--preload shoal.dask`` (dask-worker, dask-scheduler),
``--preload-nanny shoal.dask``, ``LocalCluster(preload=["shoal.dask"],
preload_nanny=["shoal.dask"])`` or ``shoal.dask.install(client)``.
``import shoal`` never imports this module (nor dask).
"""
from __future__ import annotations

import errno
import itertools
import logging
import os
import secrets
import sys
from functools import partial
from typing import Any, Dict, Optional, Tuple

import dask
import dask.config
import numpy as np
from dask.sizeof import sizeof
from dask.utils import parse_bytes, parse_timedelta
from distributed.comm.core import Comm
from distributed.diagnostics.plugin import NannyPlugin, WorkerPlugin
from distributed.protocol import numpy as _dask_numpy  # registers Dask's numpy handlers first
from distributed.protocol import pickle as _dask_pickle
from distributed.protocol.serialize import dask_deserialize, dask_serialize

from .memstat import memstat as _memstat
from .array import Array, reap
from .segment import directory

__all__ = ["ShoalNannyPlugin", "ShoalWorkerPlugin", "dask_setup", "install", "same_host_token",
           "shared_base", "stats", "threshold"]

logger = logging.getLogger("shoal.dask")

# The header key that marks a handle; Dask's numpy header never has it.
_KEY = "shoal"
_DEFAULTS = {"threshold": "1 MiB", "prefix": "dask", "reap-interval": "10s"}
dask.config.update_defaults({"shoal": {"dask": dict(_DEFAULTS)}})

_serialize_numpy = _dask_numpy.serialize_numpy_ndarray
_deserialize_numpy = _dask_numpy.deserialize_numpy_ndarray
_sizeof_numpy = None  # dask's own, found at the first call (it is registered lazily)
_names = itertools.count()
_tag = secrets.token_hex(4)  # a restarted worker may reuse a dead one's pid
# What this process did (stats()): arrays copied into shared memory, sent
# and received as handles, and sent as bytes to a peer whose token differs.
_stats = {"shared": 0, "sent_handles": 0, "received_handles": 0, "sent_other_host": 0}


def stats() -> Dict[str, int]:
    """Counts for this process: ``shared`` (values moved into shoal
    Arrays), ``sent_handles``, ``received_handles``, ``sent_other_host``
    (arrays of at least the threshold sent as bytes to a peer that runs
    shoal.dask on another host)."""
    return dict(_stats)


def threshold() -> int:
    """Bytes from which an array travels as a handle (config
    ``shoal.dask.threshold``; a number or a string such as "1 MiB")."""
    t = dask.config.get("shoal.dask.threshold", _DEFAULTS["threshold"])
    return parse_bytes(t) if isinstance(t, str) else int(t)


# ---- the same-host token

_token: Optional[str] = None


def _read(path: str) -> str:
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return "?"


def _ns(kind: str) -> str:
    try:
        return os.readlink(f"/proc/self/ns/{kind}")
    except OSError:
        return "?"


def same_host_token() -> str:
    """What two processes must share to map each other's shoal arrays:
    the user (arrays are 0600), the boot (a machine), the directory the
    objects live in (its device and inode: two mounts of a tmpfs on
    /dev/shm, say in two containers, are two devices), the IPC namespace,
    and the pid namespace (the reaper judges holders by pid: a holder in
    another pid namespace would look dead). Never an address: containers
    and network namespaces share them or hide them."""
    global _token
    if _token is None:
        st = os.stat(directory())
        _token = ":".join([str(os.getuid()), _read("/proc/sys/kernel/random/boot_id"),
                           f"{st.st_dev}.{st.st_ino}", _ns("ipc"), _ns("pid")])
    return _token


# Dask's own (the staticmethod's function), also if this module is loaded again.
_handshake_info = getattr(Comm.handshake_info, "_dask", Comm.handshake_info)


def _shoal_handshake_info(comm: Any = None) -> Dict[str, Any]:
    """Dask's handshake plus this host's token, for comms whose process
    deserializes what it reads. A scheduler does not (its comms keep frames
    serialized and pass them on, perhaps to a client on another host), so
    it is never sent a handle."""
    info = _handshake_info()
    if comm is None or getattr(comm, "deserialize", True):
        info[_KEY] = same_host_token()
    return info


# A plain function, so comm.handshake_info() passes the comm; Comm.handshake_info()
# (no instance) still works.
_shoal_handshake_info._dask = _handshake_info  # type: ignore[attr-defined]
Comm.handshake_info = _shoal_handshake_info  # type: ignore[assignment]


def _same_host(context: Optional[Dict[str, Any]]) -> bool:
    if not context:
        return False  # spilling, and anything else that has no peer
    tok = same_host_token()
    sender, recipient = context.get("sender"), context.get("recipient")
    return (isinstance(sender, dict) and isinstance(recipient, dict)
            and sender.get(_KEY) == tok and recipient.get(_KEY) == tok)


def _comm_same_host(comm: Any) -> bool:
    return _same_host({"sender": getattr(comm, "local_info", None),
                       "recipient": getattr(comm, "remote_info", None)})


# ---- arrays in shared memory

def shared_base(x: Any) -> Optional[Tuple[Array, int]]:
    """(the shoal Array, byte offset of x's first element in it) if numpy
    array ``x`` is a view of a shoal Array made by numpy from the Array
    (``np.asarray(a)`` and views of it), else None."""
    b = x
    while isinstance(b, np.ndarray):
        b = b.base
    if not isinstance(b, Array) or b.released:
        return None
    start = b.__array_interface__["data"][0]
    off = x.__array_interface__["data"][0] - start
    if not 0 <= off <= b.nbytes:
        return None
    return b, off


def _shareable(x: Any) -> bool:
    """A plain ndarray worth sharing: Dask's numpy serializer would send its
    bytes. Subclasses (masked arrays, matrices) keep Dask's path; so do
    object dtypes (pointers), and broadcast arrays, whose bytes are few."""
    return (type(x) is np.ndarray and x.ndim > 0 and not x.dtype.hasobject
            and 0 not in x.strides and x.nbytes >= threshold())


def _to_shared(x: np.ndarray) -> np.ndarray:
    """A read-only view of a new shoal Array holding a copy of ``x``."""
    prefix = dask.config.get("shoal.dask.prefix", _DEFAULTS["prefix"])
    a = Array.empty((x.nbytes,), "u1", name=f"{prefix}.{os.getpid()}.{_tag}.{next(_names)}")
    try:
        v = np.asarray(a).view(x.dtype).reshape(x.shape)
        np.copyto(v, x, casting="no")
    except BaseException:
        a.release()
        raise
    v.flags.writeable = False
    return v


def _named(a: Array) -> bool:
    """Whether the object is still in the directory, so a receiver can
    attach it. Someone may have removed it (``shoal rm``) under a live
    holder, who still reads its mapping: that holder sends bytes, and a
    receiver whose attach failed (Dask then asks the holder again) gets
    them on the next try rather than failing for ever."""
    return os.path.exists(os.path.join(directory(), "shoal." + a.name))


def _dtype_header(dt: np.dtype, context: Any) -> Tuple[int, Any]:
    # Dask's rule (distributed.protocol.numpy): str() for simple dtypes,
    # pickled for records and other void dtypes.
    if dt.kind == "V":
        return (1, _dask_pickle.dumps(dt, protocol=(context or {}).get("pickle-protocol")))
    return (0, dt.str)


def _serialize(x: np.ndarray, context: Optional[Dict[str, Any]] = None):
    """Dask's numpy serializer, but a read-only shared array of at least the
    threshold sent to this host is its handle, with where x lies in it. A
    writable one goes as bytes: the sender could write the pages under the
    receiver (the get_data wrapper copies such a value first)."""
    if (_same_host(context) and type(x) is np.ndarray and not x.flags.writeable
            and x.nbytes >= threshold()):
        share = shared_base(x)
        if share is not None and _named(share[0]):
            a, off = share
            header = {_KEY: a.handle, "offset": off, "dtype": _dtype_header(x.dtype, context),
                      "shape": list(x.shape), "strides": list(x.strides)}
            _stats["sent_handles"] += 1
            return header, []
    elif (context and isinstance(context.get("recipient"), dict)
          and context["recipient"].get(_KEY) not in (None, same_host_token())
          and getattr(x, "nbytes", 0) >= threshold()):
        _stats["sent_other_host"] += 1
    return _serialize_numpy(x, context=context)


def _deserialize(header: Dict[str, Any], frames: list):
    handle = header.get(_KEY)
    if handle is None:
        return _deserialize_numpy(header, frames)
    try:
        a = Array.attach(handle, readonly=True)
    except FileNotFoundError as e:
        # An OSError: Dask's gather treats it as the sender lost, and the
        # key is fetched elsewhere or recomputed.
        raise FileNotFoundError(errno.ENOENT, f"shoal.dask: the shared array {handle} is gone "
                                "(its holders died)") from e
    custom, dt = header["dtype"]
    dt = _dask_pickle.loads(dt) if custom else np.dtype(dt)
    base = np.asarray(a)  # read-only; its base is the Array, which holds the reference
    x = np.ndarray(tuple(header["shape"]), dtype=dt, buffer=base, offset=header["offset"],
                   strides=tuple(header["strides"]))
    x.flags.writeable = False
    _stats["received_handles"] += 1
    return x


dask_serialize.register(np.ndarray)(_serialize)
dask_deserialize.register(np.ndarray)(_deserialize)


def _sizeof(x: np.ndarray) -> int:
    """The view's object alone for shared pages: they are not this worker's
    memory (the memory manager counts private memory); Dask's sizeof
    otherwise."""
    if shared_base(x) is not None:
        return sys.getsizeof(x)
    return _sizeof_numpy(x)


def _register_sizeof() -> None:
    global _sizeof_numpy
    if _sizeof_numpy is None:
        _sizeof_numpy = sizeof.dispatch(np.ndarray)  # runs dask's lazy numpy registration
        sizeof.register(np.ndarray)(_sizeof)


_register_sizeof()


# ---- the worker

def _private_memory() -> int:
    """This process's private memory: what spilling or pausing can change."""
    return _memstat().private


def _share_keys(worker: Any, keys: Any) -> None:
    """Move the values of ``keys`` that are private numpy arrays of at
    least the threshold into shoal Arrays, and store read-only views in
    their place: the private copy goes, and the send that follows is a
    handle. A writable view of a shoal Array (a task returned
    ``np.asarray(array)``) is copied the same way: a later write through
    it, or through any other view of that Array, must not reach the
    receivers. Values held by the spill buffer's disk stay there."""
    data = worker.data
    fast = getattr(data, "fast", data)
    for k in keys:
        try:
            v = fast[k]
        except (KeyError, TypeError):
            continue
        if _shareable(v) and (v.flags.writeable or shared_base(v) is None):
            try:
                shared = _to_shared(v)
            except OSError as e:
                # /dev/shm full, say: this value stays private and goes as
                # Dask's bytes; failing here would fail the task that waits.
                logger.warning("shoal.dask: %r stays private: %s", k, e)
                continue
            data[k] = shared
            _stats["shared"] += 1


def _is_shared_view(v: Any) -> bool:
    return isinstance(v, np.ndarray) and shared_base(v) is not None


def _keep_shared_in_memory(data: Any) -> Optional[Tuple[Any, Any]]:
    """Keep shared views out of the spill buffer's eviction; return what to
    put back (the buffer's evict, its LRU's evict), or None if ``data`` is
    not a zict spill buffer. Evicting a shared view would write the whole
    array to disk (spilling serializes with context=None), free no private
    memory (the pages are the host's, still mapped by the other holders)
    and bring it back as a private copy. Both ways to evict go through the
    LRU's evict: the memory manager's (``data.evict()``) and the buffer's
    own when its total weight passes its target (``LRU.__setitem__``)."""
    lru = getattr(data, "fast", None)
    if not (callable(getattr(data, "evict", None)) and hasattr(lru, "heap")
            and hasattr(lru, "d") and callable(getattr(lru, "evict", None))):
        return None
    buffer_evict, lru_evict = data.evict, lru.evict

    def evict_private() -> Any:
        # The least recently used value that is not a shared view: the
        # shared ones ahead of it are set aside and put back in their
        # places, so their order is kept.
        heap, skipped = lru.heap, []
        try:
            while heap:
                k, prio = heap.popitem()
                skipped.append((k, prio))
                if not _is_shared_view(lru.d[k]):
                    heap[k] = skipped.pop()[1]
                    return lru_evict()
        finally:
            for k, prio in skipped:
                heap[k] = prio
        # Only shared views: the buffer's weight passed its target on views
        # of ~100 bytes each (a target of a few KiB). Dask's behaviour then.
        return lru_evict()

    def evict() -> int:
        # ManualEvictProto: -1 when nothing can be evicted; the memory
        # manager stops spilling.
        if not any(not _is_shared_view(v) for v in lru.d.values()):
            return -1
        return buffer_evict()

    lru.evict = evict_private
    data.evict = evict
    return buffer_evict, lru_evict


def _restore_evict(data: Any, saved: Optional[Tuple[Any, Any]]) -> None:
    if saved is not None:
        data.evict, data.fast.evict = saved


def _release_all(worker: Any) -> None:
    """A closing worker lets go of every shoal Array its values hold (views
    stay readable: the mapping outlives the reference)."""
    data = worker.data
    fast = getattr(data, "fast", data)
    seen = set()
    for v in list(fast.values()):
        for x in (v if isinstance(v, (tuple, list)) else (v,)):
            if isinstance(x, np.ndarray):
                share = shared_base(x)
                if share is not None and id(share[0]) not in seen:
                    seen.add(id(share[0]))
                    share[0].release()


def _reap() -> None:
    try:
        reap()
    except OSError as e:  # a reap that cannot walk now walks next time
        logger.warning("shoal.reap() failed: %s", e)


class ShoalWorkerPlugin(WorkerPlugin):
    """The worker's half of shoal.dask (the module's docstring): same-host
    arrays as handles, private memory for the memory manager, and reaping."""

    name = "shoal"

    def setup(self, worker: Any) -> None:
        if getattr(worker, "_shoal_dask", None) is not None:
            return  # installed already (a preload and register_worker_plugin)
        orig = worker.handlers["get_data"]

        # serializers named: the server passes it only to a handler whose
        # signature has it (distributed.core.Server._handle_comm).
        async def get_data(comm: Any = None, keys: Any = None, serializers: Any = None,
                           **kwargs: Any) -> Any:
            if comm is not None and keys and _comm_same_host(comm):
                _share_keys(worker, keys)
            return await orig(comm, keys=keys, serializers=serializers, **kwargs)

        orig_mem = worker.monitor.get_process_memory
        worker.handlers["get_data"] = get_data
        worker.monitor.get_process_memory = _private_memory
        pc = None
        interval = parse_timedelta(dask.config.get("shoal.dask.reap-interval",
                                                   _DEFAULTS["reap-interval"]), default="s")
        if interval:
            from tornado.ioloop import PeriodicCallback
            pc = PeriodicCallback(_reap, interval * 1000)
            worker.periodic_callbacks["shoal-reap"] = pc
            pc.start()
        evicts = _keep_shared_in_memory(worker.data)
        worker._shoal_dask = (self, orig, orig_mem, evicts)
        _reap()  # what a worker this one replaces held

    def teardown(self, worker: Any) -> None:
        state = getattr(worker, "_shoal_dask", None)
        if state is None or state[0] is not self:
            return
        from distributed.core import Status
        if worker.status in (Status.closing, Status.closing_gracefully, Status.closed,
                             Status.failed):
            _release_all(worker)
        else:
            # Removed from a running worker: the values keep their arrays.
            worker.handlers["get_data"] = state[1]
            worker.monitor.get_process_memory = state[2]
            _restore_evict(worker.data, state[3])
        pc = worker.periodic_callbacks.pop("shoal-reap", None)
        if pc is not None:
            pc.stop()
        worker._shoal_dask = None
        _reap()


# ---- the nanny

def _nanny_memory_monitor(mm: Any, nanny: Any) -> None:
    """distributed's NannyMemoryManager.memory_monitor, reading the
    worker's private memory instead of its RSS (which counts the shared
    arrays it maps): the terminate threshold is about what restarting it
    would give back."""
    from distributed.core import Status
    proc = getattr(nanny.process, "process", None) if nanny.process else None
    if nanny.status != Status.running or proc is None or proc.pid is None:
        return
    try:
        memory = _memstat(proc.pid).private
    except (ProcessLookupError, PermissionError):
        return
    if memory / mm.memory_limit <= mm.memory_terminate_fraction:
        return
    if mm._last_terminated_pid != proc.pid:
        mm.logger.warning("Worker %s (pid=%d) exceeded %.0f%% memory budget (private "
                          "memory). Restarting...", nanny.worker_address, proc.pid,
                          mm.memory_terminate_fraction * 100)
        mm._last_terminated_pid = proc.pid
        proc.terminate()
    else:
        mm.logger.warning("Worker %s (pid=%d) is slow to accept SIGTERM; sending SIGKILL",
                          nanny.worker_address, proc.pid)
        proc.kill()


class ShoalNannyPlugin(NannyPlugin):
    """The nanny's half: its terminate threshold reads private memory, and
    it reaps when it closes (after its worker is gone)."""

    name = "shoal-nanny"
    restart = False

    def setup(self, nanny: Any) -> None:
        pc = nanny.periodic_callbacks.get("memory_monitor")
        if pc is not None:
            self._orig = pc.callback
            pc.callback = partial(_nanny_memory_monitor, nanny.memory_manager, nanny)

    def teardown(self, nanny: Any) -> None:
        pc = nanny.periodic_callbacks.get("memory_monitor")
        orig = getattr(self, "_orig", None)
        if pc is not None and orig is not None:
            pc.callback = orig
        _reap()


# ---- loading

async def dask_setup(service: Any) -> None:
    """The preload hook: ``--preload shoal.dask`` (workers, schedulers),
    ``--preload-nanny shoal.dask``. A scheduler needs nothing more than the
    import (its comms never carry the token)."""
    from distributed import Nanny, Worker
    if isinstance(service, Worker):
        await service.plugin_add(ShoalWorkerPlugin(), name=ShoalWorkerPlugin.name)
    elif isinstance(service, Nanny):
        await service.plugin_add(ShoalNannyPlugin(), name=ShoalNannyPlugin.name)


def install(client: Any) -> None:
    """Load shoal.dask into every current and future worker and nanny of
    ``client``'s cluster. Comms opened before it keep Dask's path."""
    client.register_worker_plugin(ShoalWorkerPlugin(), name=ShoalWorkerPlugin.name)
    client.register_worker_plugin(ShoalNannyPlugin(), name=ShoalNannyPlugin.name, nanny=True)
