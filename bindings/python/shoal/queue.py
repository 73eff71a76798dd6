"""shoal.Queue: a multi-producer, multi-consumer queue of byte strings in
shared memory, that keeps working when any process using it is killed.

Objects (put_obj, get_obj, claim_obj) are pickled here and carried as
bytes; the arrays inside them travel as handles with a reference the queue
holds, which is _queue_arrays.py's part."""
from __future__ import annotations

import array
import ctypes
import errno
import io
import itertools
import operator
import pickle
import queue as _queue
import struct
import sys
import sysconfig
import threading
import time
from typing import Any, Dict, Iterable, List, Optional

from . import _constants as C, _lib, _queue_arrays
from ._lib import declare, layout
from .segment import PREFAULT, _mode, _name, _Opts

_vp = ctypes.c_void_p
# Blocking calls go to C in slices this long, so Python runs signal handlers
# (Ctrl-C) in between even if the system call is restarted.
_SLICE_NS = 100_000_000


@layout("shoal_queue_stats")
class _Stats(ctypes.Structure):
    _fields_ = [(f, ctypes.c_uint64) for f in (
        "depth", "capacity", "max_msg", "pushes", "pops", "sleeps", "recoveries", "dropped",
        "redelivered", "participants")]


_create = declare("shoal_queue_create", ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32,
                  ctypes.c_uint32, ctypes.POINTER(_Opts), ctypes.POINTER(_vp), name_arg=0)
_open = declare("shoal_queue_open", ctypes.c_int, ctypes.c_char_p, ctypes.c_uint,
                ctypes.POINTER(_vp), name_arg=0)
_detach = declare("shoal_queue_detach", ctypes.c_int, _vp)
_unlink = declare("shoal_queue_unlink", ctypes.c_int, ctypes.c_char_p, name_arg=0)
# The data calls return codes the loops below interpret themselves.
_push = declare("shoal_queue_push", ctypes.c_int, _vp, ctypes.c_char_p, ctypes.c_size_t,
                ctypes.c_int64, check=False)
_pop = declare("shoal_queue_pop", ctypes.c_int, _vp, _vp, ctypes.c_size_t, _vp,
               ctypes.c_int64, check=False)
_push_many = declare("shoal_queue_push_many", ctypes.c_ssize_t, _vp, ctypes.c_char_p, _vp,
                     ctypes.c_size_t, ctypes.c_int64, check=False)
_pop_many = declare("shoal_queue_pop_many", ctypes.c_ssize_t, _vp, _vp, ctypes.c_size_t, _vp,
                    ctypes.c_size_t, ctypes.c_int64, check=False)
# Ports (lib/queue_port.c): the queue, a buffer and length cells bound once,
# so the hot calls take a port number (a plain int) and at most the message.
# Those calls are tries (the ports' timeout is 0) and keep the GIL
# (declare(gil=True)): a call that would wait goes on to the calls above,
# which release it.
_port_open = declare("shoal_queue_port_open", ctypes.c_int, _vp, _vp, ctypes.c_size_t, _vp,
                     ctypes.c_size_t, ctypes.c_int64)
# close and unbind keep the GIL too (they never wait): a port call runs
# whole under the GIL, so another thread's close or detach cannot free or
# unbind a port in the middle of one.
_port_close = declare("shoal_queue_port_close", ctypes.c_int, hot=True, gil=True)
_port_pop = declare("shoal_queue_port_pop", ctypes.c_ssize_t, hot=True, gil=True)
_port_send = declare("shoal_queue_port_send", ctypes.c_int, hot=True, gil=True)
_port_send_many = declare("shoal_queue_port_send_many", ctypes.c_ssize_t, hot=True, gil=True)
# get(): one call pops into the port's buffer and makes the bytes object
# with Python's own constructor, under the GIL, so no Python code runs
# between the pop and the copy and one port serves every thread. When it
# pops nothing it raises OSError through PyErr_SetFromErrno (the port's
# fail function), which the slow path catches; ctypes lets an exception
# set by a PYFUNCTYPE call through before it looks at the result.
_port_deliver = declare("shoal_queue_port_deliver", ctypes.c_int, ctypes.c_int, _vp, _vp, _vp)
_port_unbind = declare("shoal_queue_port_unbind", ctypes.c_int, hot=True, gil=True)
_port_take = declare("shoal_queue_port_take", ctypes.py_object, hot=True, gil=True)
_port_error = declare("shoal_queue_port_error", ctypes.c_int, ctypes.c_int, check=False)
# put(): one call with the bytes object alone. ctypes passes a bytes
# object as the address of its bytes (ob_sval), and CPython keeps the
# length (ob_size) at a fixed place before them: the port reads it there
# (shoal_queue_port_length_at()), so put passes no length and computes
# none. The layout is checked here, once; put passes only objects whose
# type is exactly bytes (a subclass or anything else takes the slow path).
# When it pushes nothing it raises OSError through the port's fail
# function, as take does.
_port_length_at = declare("shoal_queue_port_length_at", ctypes.c_int, ctypes.c_int,
                          ctypes.c_ssize_t)
_port_put = declare("shoal_queue_port_put", ctypes.c_int, hot=True, gil=True)
# put_many(): one call with the list itself (as a py_object): the port
# walks it with PyList_Size/PyList_GetItem and copies each bytes object
# from where it lies into the queue (shoal_queue_port_gather()); the type
# and data offsets are checked here, once, as put's. It returns a count or
# a code, never raises: a list with anything but exact bytes in it comes
# back -EINVAL before anything is pushed, and takes the path that converts.
_port_gather = declare("shoal_queue_port_gather", ctypes.c_int, ctypes.c_int, _vp, _vp, _vp,
                       ctypes.c_ssize_t, ctypes.c_ssize_t)
_port_put_many = declare("shoal_queue_port_put_many", ctypes.c_ssize_t, hot=True, gil=True)
# get_many(): one call pops into the port's buffer and returns a new list
# of bytes (PyList_New, then take's PyBytes_FromStringAndSize for each,
# PyList_SetItem), raising through the fail function as take does.
_port_collect = declare("shoal_queue_port_collect", ctypes.c_int, ctypes.c_int, _vp, _vp, _vp)
_port_take_many = declare("shoal_queue_port_take_many", ctypes.py_object, hot=True, gil=True)


def _bytes_length_at() -> Optional[int]:
    """From a bytes object's first byte to its ob_size, checked on probes;
    None where bytes objects are laid out otherwise (then put() passes the
    length, as shoal_queue_port_send())."""
    at = object.__basicsize__  # ob_size: right after PyObject's header
    data = bytes.__basicsize__ - 1  # ob_sval: the last member, its 1 byte counted
    for probe in (b"", b"ab\0c", bytes(1000)):
        addr = ctypes.cast(ctypes.c_char_p(probe), _vp).value
        if (addr != id(probe) + data
                or ctypes.c_ssize_t.from_address(id(probe) + at).value != len(probe)):
            return None
    return at - data


_BYTES_LENGTH_AT = _bytes_length_at()


def _bytes_type_at() -> Optional[int]:
    """From an object to its type pointer (ob_type: PyObject's last
    member), checked on probes; None where objects are laid out otherwise
    (then put_many() joins the messages itself)."""
    at = object.__basicsize__ - ctypes.sizeof(_vp)
    for probe in (b"", b"ab", 5, "s", []):
        if _vp.from_address(id(probe) + at).value != id(type(probe)):
            return None
    return at


_BYTES_TYPE_AT = _bytes_type_at() if _BYTES_LENGTH_AT is not None else None
_BYTES_DATA_AT = bytes.__basicsize__ - 1  # ob_sval: checked by _bytes_length_at()
_py_object = ctypes.py_object
_PYBYTES = ctypes.cast(ctypes.pythonapi.PyBytes_FromStringAndSize, _vp).value
_PYRAISE = ctypes.cast(ctypes.pythonapi.PyErr_SetFromErrno, _vp).value
_OSERROR = id(OSError)  # the exception type's address: a builtin, never freed
_api = ctypes.pythonapi
_PYLIST = tuple(ctypes.cast(f, _vp).value for f in (_api.PyList_New, _api.PyList_SetItem,
                                                     _api.Py_DecRef))
_PYSEQ = tuple(ctypes.cast(f, _vp).value for f in (_api.PyList_Size, _api.PyList_GetItem))
# Batches (length, count) whose unpacker is kept, and counts whose packer
# is, per process.
_UNPACKERS: Dict[Any, Any] = {}
_PACKERS: Dict[int, Any] = {}


class _Port:
    """A port and the memory it binds: a buffer of ``cap`` bytes (none for
    a port that only sends) and ``nlens`` length cells. Closed when the
    last reference goes; it holds the queue's mapping, so the C handle it
    names outlives it. A port that only sends has no buffer and serves
    every thread, as does get()'s (its buffer is used only inside one
    GIL-holding call); other receiving ports are one thread's."""

    __slots__ = ("id", "buf", "addr", "cap", "lens", "lens_addr", "mv", "_map")

    def __init__(self, mapping: Any, cap: int, nlens: int) -> None:
        self.id = 0
        self._map = mapping
        self.cap = cap
        self.buf = ctypes.create_string_buffer(cap) if cap else None
        self.addr = ctypes.addressof(self.buf) if cap else None
        self.mv = memoryview(self.buf).cast("B") if cap else memoryview(b"")
        self.lens = array.array(_SZ, bytes(ctypes.sizeof(ctypes.c_size_t) * nlens))
        self.lens_addr = self.lens.buffer_info()[0]
        self.id = _port_open(mapping.ptr, self.addr, cap, self.lens_addr, nlens, 0)

    def __del__(self):
        port, self.id = self.id, 0
        if port > 0:
            _port_close(port)


def _packer(count: int) -> Any:
    """struct.Struct of ``count`` C size_t values: put_many's lengths."""
    s = _PACKERS.get(count)
    if s is None:
        s = struct.Struct(f"{count}N")
        if len(_PACKERS) < 1024:
            _PACKERS[count] = s
    return s


def _unpacker(length: int, count: int) -> Any:
    """struct.Struct of ``count`` strings of ``length`` bytes: cuts a batch
    of equal messages into bytes objects in one call."""
    s = _UNPACKERS.get((length, count))
    if s is None:
        s = struct.Struct(f"{length}s" * count)
        if len(_UNPACKERS) < 1024:
            _UNPACKERS[(length, count)] = s
    return s


@layout("shoal_queue_ticket")
class _Ticket(ctypes.Structure):
    _fields_ = [("id", ctypes.c_uint64), ("redelivered", ctypes.c_uint32),
                ("reserved", ctypes.c_uint32)]


_claim = declare("shoal_queue_claim", ctypes.c_int, _vp, _vp, ctypes.c_size_t, _vp,
                 ctypes.c_int64, ctypes.POINTER(_Ticket), check=False)
_ack = declare("shoal_queue_ack", ctypes.c_int, _vp, ctypes.POINTER(_Ticket))
_nack = declare("shoal_queue_nack", ctypes.c_int, _vp, ctypes.POINTER(_Ticket))
_close = declare("shoal_queue_close", ctypes.c_int, _vp)
_is_closed = declare("shoal_queue_is_closed", ctypes.c_bool, _vp, check=False)
_stats = declare("shoal_queue_stats", ctypes.c_int, _vp, ctypes.POINTER(_Stats))

_EAGAIN, _ETIMEDOUT, _EINTR, _EMSGSIZE = (-errno.EAGAIN, -errno.ETIMEDOUT, -errno.EINTR,
                                          -errno.EMSGSIZE)
# Receive buffers start this big (or max_msg if smaller) and grow when a
# message says it needs more (it waits in the queue meanwhile).
_RECV_BYTES = 1 << 16
# get_many's buffer: room for this many bytes of messages per call.
_BATCH_BYTES = 1 << 20
_BYTES = frozenset((bytes,))
# put_obj/get_obj: an array pickled by its own reduce names this function;
# one the queue holds travels as a persistent id that starts with this
# string. A message without them has no array (one that has them by chance
# just takes the full path).
_ARRAY_MARK = b"_attach_handle"
_PERSID_MARK = b"shoal.Array"
# The array typecode of a C size_t.
_SZ = next(c for c in "LQ" if array.array(c).itemsize == ctypes.sizeof(ctypes.c_size_t))


def unlink(name: str) -> None:
    """Remove the queue ``name`` (FileNotFoundError if absent)."""
    _unlink(_name(name))


_CAPACITY_MAX, _MSG_MAX = C.SHOAL_QUEUE_CAPACITY_MAX, C.SHOAL_QUEUE_MSG_MAX


def _create_args(name: str, capacity: Any, max_msg: Any) -> List[int]:
    """capacity and max_msg as numpy takes sizes (operator.index), checked
    where the C call could not see them (beyond 32 bits); the C call checks
    the rest and names the rule."""
    out = []
    for what, v, rule in (("capacity", capacity, f"a power of two in 2..{_CAPACITY_MAX}"),
                          ("max_msg", max_msg, f"in 1..{_MSG_MAX} bytes")):
        try:
            v = operator.index(v)
        except TypeError:
            raise TypeError(f"queue {name!r}: {what} must be an integer, not "
                            f"{type(v).__name__}") from None
        if not 0 <= v < 2**32:
            raise OSError(errno.EINVAL, f"queue {name!r}: {what} {v} must be {rule}", name)
        out.append(v)
    return out


def _bytes_of(data: Any, call: str = "put") -> bytes:
    """A message's bytes: bytes-like objects only. (bytes() would turn 5
    into five zero bytes and [1, 2, 3] into b'\\x01\\x02\\x03'.)"""
    try:
        return memoryview(data).tobytes()
    except TypeError:
        raise TypeError(f"{call}() takes bytes-like objects (bytes, bytearray, memoryview, "
                        f"a numpy array), not {type(data).__name__}; put_obj() sends any "
                        "picklable object") from None


def _deadline(block, timeout):
    """None = forever, else a time.monotonic() deadline (now for non-blocking)."""
    if not block:
        return time.monotonic()
    if timeout is None:
        return None
    if timeout < 0:
        raise ValueError("'timeout' must be a non-negative number")
    return time.monotonic() + timeout


def _slice(deadline):
    """Nanoseconds for the next C call: 0 means try once."""
    if deadline is None:
        return _SLICE_NS
    left = deadline - time.monotonic()
    return 0 if left <= 0 else min(int(left * 1e9) + 1, _SLICE_NS)


class Queue:
    """A bounded FIFO of byte strings, shared by name between processes.

    ``Queue(name, capacity, max_msg)`` creates it (FileExistsError if the name
    is taken), ``Queue.open(name)`` opens it. ``put``/``get`` behave like
    ``multiprocessing.Queue``'s (``block``, ``timeout``, ``queue.Full``,
    ``queue.Empty``); ``put_many``/``get_many`` move batches in one call;
    ``put_obj``/``get_obj`` pickle (protocol 5). After ``close()`` puts raise
    BrokenPipeError, and so do gets once the queue is drained. Pickling a
    Queue carries its name, so it can be passed to processes started by fork,
    spawn or forkserver. Blocking calls release the GIL and can be
    interrupted with Ctrl-C. Any process using the queue may be killed at any
    moment without losing or tearing a message another process put. A
    message ``get`` returned (or was about to return) is the consumer's;
    ``claim()`` keeps it the queue's until acked, and delivers it again if
    its consumer dies first.
    """

    def __init__(self, name: str, capacity: int = 1024, max_msg: int = 4096, *,
                 create: bool = True, mode: Optional[int] = None,
                 prefault: bool = False) -> None:
        out = _vp()
        if create:
            capacity, max_msg = _create_args(name, capacity, max_msg)
            _create(_name(name), capacity, max_msg,
                    ctypes.byref(_Opts(_mode(mode), PREFAULT if prefault else 0)),
                    ctypes.byref(out))
        else:
            _open(_name(name), PREFAULT if prefault else 0, ctypes.byref(out))
        self._name = name
        self._map = _lib.Mapping(out.value, _detach)
        self._q = out.value
        st = _Stats()
        _stats(self._q, ctypes.byref(st))
        self._capacity = st.capacity
        self._max_msg = st.max_msg
        self._local = threading.local()
        # The sending port, every thread's (it binds no buffer). Like
        # get()'s, detach() unbinds it rather than closing it: its calls
        # then fail (-EBADF), and put()'s raises, never returns quietly.
        self._txport = _Port(self._map, 0, 1)
        self._tx = self._txport.id
        if _BYTES_LENGTH_AT is not None:
            _port_length_at(self._tx, _BYTES_LENGTH_AT)
            if _BYTES_TYPE_AT is not None:
                _port_gather(self._tx, *_PYSEQ, id(bytes), _BYTES_TYPE_AT, _BYTES_DATA_AT)
        _port_deliver(self._tx, None, _PYRAISE, _OSERROR)
        # get()'s port, every thread's (take() uses its buffer only while
        # it holds the GIL). Its number stays valid while this object
        # lives: detach() unbinds it rather than closing it, so a get()
        # racing a detach() never calls take() on a closed number (which
        # could not raise and would return NULL, which ctypes cannot take).
        self._rxport = _Port(self._map, max(min(self._max_msg, _RECV_BYTES), 1), 1)
        self._rx = self._rxport.id
        _port_deliver(self._rx, _PYBYTES, _PYRAISE, _OSERROR)

    @classmethod
    def create(cls, name: str, capacity: int = 1024, max_msg: int = 4096, *,
               mode: Optional[int] = None, prefault: bool = False) -> "Queue":
        """Create queue ``name``: ``capacity`` slots (a power of two) of
        messages up to ``max_msg`` bytes."""
        return cls(name, capacity, max_msg, mode=mode, prefault=prefault)

    @classmethod
    def open(cls, name: str, *, prefault: bool = False) -> "Queue":
        """Open the existing queue ``name``."""
        return cls(name, create=False, prefault=prefault)

    # ---- properties

    @property
    def name(self) -> str:
        return self._name

    @property
    def capacity(self) -> int:
        return self._capacity

    @property
    def max_msg(self) -> int:
        return self._max_msg

    @property
    def closed(self) -> bool:
        """True once close() was called, by any process."""
        return _is_closed(self._handle())

    def _handle(self):
        if self._map is None:
            raise ValueError("queue handle is detached")
        return self._q

    def _live(self):
        """Between the slices of a blocking call: stop if another thread
        detached the handle. The call itself keeps a reference to the
        mapping (its local ``m``), so the C handle it is using stays valid
        until it returns, whatever other threads do."""
        if self._map is None:
            raise ValueError("queue handle was detached while waiting")

    def _rx_local(self, need: int = 0) -> _Port:
        """This thread's receiving port (threads must not share a buffer),
        made on first use, or made again ``need`` bytes big."""
        m = self._map
        if m is None:
            raise ValueError("queue handle is detached")
        p = _Port(m, max(need, min(self._max_msg, _RECV_BYTES), 1), 1)
        self._local.rx = p
        return p

    # ---- single messages
    #
    # The fast paths are one try through a port, keeping the GIL (nothing
    # else runs in Python meanwhile, so no detach() can pull the handle
    # from under it; a closed port's number is refused); for get() that one
    # call also makes the bytes. All else (conversions, waiting, errors) is
    # in the _slow methods.

    def put(self, data: Any, block: bool = True, timeout: Optional[float] = None) -> None:
        """Append ``data`` (bytes-like, at most max_msg bytes).

        Raises queue.Full if there is no room in time, ValueError if too
        long, BrokenPipeError if the queue is closed, TypeError if ``data``
        is not bytes-like (put_obj() sends objects)."""
        if type(data) is bytes:
            try:
                _port_put(self._tx, data)
                return
            except OSError as e:  # pushed nothing (the slow path finds out why)
                rc = -e.errno
        else:
            rc = None
        self._put_slow(data, block, timeout, rc)

    def _put_with_len(self, data: Any, block: bool = True,
                      timeout: Optional[float] = None) -> None:
        # put() where bytes objects do not have CPython's layout: the
        # length passed beside the message.
        rc = None
        if type(data) is bytes:
            try:
                rc = _port_send(self._tx, data, len(data))
            except (ctypes.ArgumentError, OverflowError):  # longer than an int
                rc = None
            if rc == 0:
                return
        self._put_slow(data, block, timeout, rc)

    def _put_slow(self, data, block, timeout, rc):
        m = self._map  # held for the whole call: see _live()
        if m is None:
            raise ValueError("queue handle is detached")
        if type(data) is not bytes:
            data = _bytes_of(data)
        n = len(data)
        if n > self._max_msg:
            raise ValueError(f"message of {n} bytes is longer than max_msg={self._max_msg}")
        q = self._q
        if rc is None:
            rc = _push(q, data, n, 0)
            if rc == 0:
                return
        deadline = _deadline(block, timeout)
        while True:
            self._live()
            if rc in (_EAGAIN, _ETIMEDOUT, _EINTR):
                t = _slice(deadline)
                if t == 0 and rc != _EINTR:
                    raise _queue.Full
            else:
                raise _lib.error(rc, detail=True)
            rc = _push(q, data, n, t)
            if rc == 0:
                return

    def get(self, block: bool = True, timeout: Optional[float] = None) -> bytes:
        """Remove and return the oldest message, as bytes.

        Raises queue.Empty if none comes in time, BrokenPipeError if the
        queue is closed and drained."""
        try:
            return _port_take(self._rx)
        except OSError:  # nothing popped (the slow path finds out why)
            return self._get_slow(block, timeout)

    def _get_slow(self, block, timeout):
        m = self._map  # held for the whole call: see _live()
        if m is None:
            raise ValueError("queue handle is detached")
        # Waiting, and messages longer than the shared port's buffer, use
        # this thread's own buffer: the GIL is let go meanwhile.
        try:
            p = self._local.rx
        except AttributeError:
            p = self._rx_local()
        q = self._q
        rc = _pop(q, p.addr, p.cap, p.lens_addr, 0)
        if rc == 0:
            return p.mv[:p.lens[0]].tobytes()
        deadline = _deadline(block, timeout)
        t = 0
        while True:
            self._live()
            if rc in (_EAGAIN, _ETIMEDOUT, _EINTR):
                t = _slice(deadline)
                if t == 0 and rc != _EINTR:
                    raise _queue.Empty
            elif rc == _EMSGSIZE:
                p = self._rx_local(p.lens[0])  # the message waits for us
                t = 0
            else:
                raise _lib.error(rc, detail=True)
            rc = _pop(q, p.addr, p.cap, p.lens_addr, t)
            if rc == 0:
                return p.mv[:p.lens[0]].tobytes()

    def put_nowait(self, data: Any) -> None:
        """put(data, block=False)."""
        self.put(data, False)

    def get_nowait(self) -> bytes:
        """get(block=False)."""
        return self.get(False)

    # ---- batches

    def put_many(self, items: Iterable[Any], block: bool = True,
                 timeout: Optional[float] = None) -> int:
        """Append every message of ``items`` (a sequence of bytes), in order,
        claiming room for as many as fit at a time.

        Returns how many were put: all of them unless time ran out, in which
        case the rest were not. Raises queue.Full if none could be put,
        ValueError (and puts none) if any is longer than max_msg,
        BrokenPipeError if the queue is closed before any was put."""
        if type(items) is not list:
            items = list(items)
        # Exact bytes, CPython's layout: one call copies each from its
        # object (-EINVAL if any is not bytes: the conversions below).
        k = _port_put_many(self._tx, _py_object(items))
        n = len(items)
        if k == n:
            return n
        if k == _EMSGSIZE:  # C checked every length: none was put
            raise ValueError(f"a message is longer than max_msg={self._max_msg}")
        if n == 0:
            if self._map is None:
                raise ValueError("queue handle is detached")
            return 0
        before = 0
        if k > 0:  # the first k went in, then the queue filled: wait for room
            before, items, k = k, items[k:], _EAGAIN
        elif k != _EAGAIN:
            k = None  # not all exact bytes, or no fast path: convert
        if not _BYTES.issuperset(map(type, items)):
            items = [i if type(i) is bytes else _bytes_of(i, "put_many") for i in items]
        m = len(items)
        lens = _packer(m).pack(*map(len, items))  # the C size_t array, as bytes
        data = b"".join(items)
        if k is None:
            try:
                k = _port_send_many(self._tx, data, lens, m)
            except (ctypes.ArgumentError, OverflowError):
                k = _EAGAIN
            if k == m:
                return n
        return before + self._put_many_slow(data, array.array(_SZ, lens), m, k, block, timeout,
                                            before)

    def _put_many_slow(self, data, lens, n, rc, block, timeout, before=0, q=None):
        # ``before``: messages of this put_many already in the queue, so
        # running out of room or time returns what went instead of raising.
        # ``q``: the handle, from a caller that holds its mapping (a
        # detach() since then must not turn what went into an error).
        m, q = self._map, q or self._handle()  # m: held for the whole call
        lens_addr = lens.buffer_info()[0]
        size = lens.itemsize
        done, off, t = 0, 0, 0
        deadline = _UNSET = object()
        while True:
            if rc > 0:
                off += sum(lens[done:done + rc])
                done += rc
                if done == n:
                    return n
                rc = _push_many(q, data[off:], lens_addr + done * size, n - done, t)
                continue
            if rc not in (_EAGAIN, _ETIMEDOUT, _EINTR):
                if done or before:
                    return done
                if rc == _EMSGSIZE:  # C checked every length: none was put
                    raise ValueError(f"a message is longer than max_msg={self._max_msg}")
                raise _lib.error(rc, detail=True)
            if deadline is _UNSET:
                deadline = _deadline(block, timeout)
            self._live()
            t = _slice(deadline)
            if t == 0 and rc != _EINTR:
                if done or before:
                    return done
                raise _queue.Full
            rc = _push_many(q, data[off:] if off else data, lens_addr + done * size, n - done, t)

    def get_many(self, max_items: int = 64, block: bool = True,
                 timeout: Optional[float] = None) -> List[bytes]:
        """Remove and return up to ``max_items`` messages (a list of bytes,
        oldest first), waiting as ``get`` does for the first; the rest are
        those ready at once."""
        try:
            p = self._local.rxm
        except AttributeError:
            p = self._rxm(0, max_items)
        if len(p.lens) < max_items:
            if max_items < 1:
                raise ValueError("max_items must be at least 1")
            p = self._rxm(0, max_items)
        try:
            return _port_take_many(p.id, max_items)
        except OSError as e:  # nothing popped (the slow path finds out why)
            p, k = self._get_many_slow(p, -e.errno, max_items, block, timeout)
        return self._cut(p, k)

    def _cut(self, p, k):
        # The @k messages port @p popped, as a list of bytes.
        lens = p.lens
        n = lens[0]
        if k == 1:
            return [p.mv[:n].tobytes()]
        if lens[:k].count(n) == k:  # all alike: one call cuts them
            return list(_unpacker(n, k).unpack_from(p.mv))
        mv = p.mv
        offs = itertools.accumulate(lens[:k], initial=0)
        start = next(offs)
        out = []
        for end in offs:
            out.append(mv[start:end].tobytes())
            start = end
        return out

    def _rxm(self, need, max_items):
        """This thread's port for batches: room for ``max_items`` lengths
        (64 at least) and max_msg bytes each, up to _BATCH_BYTES, or
        ``need`` bytes."""
        m = self._map
        if m is None:
            raise ValueError("queue handle is detached")
        if max_items < 1:
            raise ValueError("max_items must be at least 1")
        nlens = max(max_items, 64)
        p = _Port(m, max(need, min(self._max_msg * nlens, _BATCH_BYTES), 1), nlens)
        _port_deliver(p.id, _PYBYTES, _PYRAISE, _OSERROR)
        _port_collect(p.id, *_PYLIST)
        self._local.rxm = p
        return p

    def _get_many_slow(self, p, rc, max_items, block, timeout):
        if max_items < 1:
            raise ValueError("max_items must be at least 1")
        if self._map is None:
            raise ValueError("queue handle is detached")
        q = self._q  # p holds the mapping for the whole call: see _live()
        deadline = _deadline(block, timeout)
        t = 0
        while rc <= 0:
            self._live()
            if rc in (_EAGAIN, _ETIMEDOUT, _EINTR):
                t = _slice(deadline)
                if t == 0 and rc != _EINTR:
                    raise _queue.Empty
            elif rc == _EMSGSIZE:
                p = self._rxm(p.lens[0], max_items)
                t = 0
            else:
                raise _lib.error(rc, detail=True)
            rc = _pop_many(q, p.addr, p.cap, p.lens_addr, max_items, t)
        return p, rc

    # ---- without the GIL
    #
    # A free-threaded CPython runs Python threads at once, so the port
    # calls above lose what they stand on: take() and take_many() fill the
    # port buffer every thread shares, put_many()'s call walks a list
    # another thread may change, and no call is whole against another
    # thread's detach(). There the methods are these (swapped in below,
    # at import): the plain calls, each thread with buffers of its own and
    # the mapping held for the whole call, as the slow paths always are.

    def _put_plain(self, data: Any, block: bool = True, timeout: Optional[float] = None) -> None:
        self._put_slow(data, block, timeout, None)

    def _get_plain(self, block: bool = True, timeout: Optional[float] = None) -> bytes:
        return self._get_slow(block, timeout)

    def _put_many_plain(self, items: Iterable[Any], block: bool = True,
                        timeout: Optional[float] = None) -> int:
        items = [i if type(i) is bytes else _bytes_of(i, "put_many") for i in items]
        n = len(items)
        m = self._map  # held for the whole call: see _live()
        if m is None:
            raise ValueError("queue handle is detached")
        if n == 0:
            return 0
        lens = array.array(_SZ, map(len, items))
        data = b"".join(items)
        q = self._q
        rc = _push_many(q, data, lens.buffer_info()[0], n, 0)
        if rc == n:
            return n
        return self._put_many_slow(data, lens, n, rc, block, timeout, q=q)

    def _get_many_plain(self, max_items: int = 64, block: bool = True,
                        timeout: Optional[float] = None) -> List[bytes]:
        m = self._map  # held for the whole call: see _live()
        if m is None:
            raise ValueError("queue handle is detached")
        if max_items < 1:
            raise ValueError("max_items must be at least 1")
        try:
            p = self._local.rxm
        except AttributeError:
            p = self._rxm(0, max_items)
        if len(p.lens) < max_items:
            p = self._rxm(0, max_items)
        rc = _pop_many(self._q, p.addr, p.cap, p.lens_addr, max_items, 0)
        if rc <= 0:
            p, rc = self._get_many_slow(p, rc, max_items, block, timeout)
        return self._cut(p, rc)

    # ---- acknowledged delivery

    def claim(self, block=True, timeout=None):
        """Take the oldest message but keep it recoverable: returns a Claim
        whose ``.data`` is the message (bytes). It stays the queue's until
        ``.ack()``; ``.nack()`` gives it back at once; if this process dies
        first (or the handle is detached), it is delivered again to another
        consumer, with ``.redelivered`` counting how often. ``with
        q.claim() as c:`` acks on a clean exit and nacks on an exception.

        A claimed message keeps its slot until acked: the producer one lap
        later (capacity puts on) waits for it. Raises queue.Empty if none
        comes in time, BrokenPipeError once the queue is closed, drained and
        no claim is open anywhere (ack or nack your own before waiting for
        the end)."""
        m = self._map  # held for the whole call: see _live()
        if m is None:
            raise ValueError("queue handle is detached")
        q = self._q
        try:
            p = self._local.rx
        except AttributeError:
            p = self._rx_local()
        t = _Ticket()
        tp = ctypes.byref(t)
        rc = _claim(q, p.addr, p.cap, p.lens_addr, 0, tp)
        if rc != 0:
            deadline = _deadline(block, timeout)
            while rc != 0:
                self._live()
                if rc in (_EAGAIN, _ETIMEDOUT, _EINTR):
                    s = _slice(deadline)
                    if s == 0 and rc != _EINTR:
                        raise _queue.Empty
                elif rc == _EMSGSIZE:
                    p = self._rx_local(p.lens[0])  # the message waits for us
                    s = 0
                else:
                    raise _lib.error(rc, detail=True)
                rc = _claim(q, p.addr, p.cap, p.lens_addr, s, tp)
        return Claim(self, m, t, p.mv[:p.lens[0]].tobytes())

    def claim_obj(self, block=True, timeout=None):
        """claim() and unpickle: ``.data`` is the object. shoal.Array
        objects inside come attached with a reference of their own; the
        queue keeps its reference until ack() drops it (so a nacked or
        redelivered message still finds its arrays)."""
        c = self.claim(block, timeout)
        u = _queue_arrays.ClaimUnpickler(io.BytesIO(c.data))
        try:
            c.data = u.load()
        except BaseException:
            c.nack()
            raise
        c._arrays = u.arrays
        return c

    # ---- objects

    def put_obj(self, obj: Any, block: bool = True, timeout: Optional[float] = None) -> None:
        """put() ``obj`` pickled (protocol 5).

        A shoal.Array anywhere inside travels as its handle, and the queue
        holds a reference to it until a get_obj() takes that over: the
        sender may release the array as soon as put_obj() returns. If the
        put fails, the queue holds nothing more than before.
        """
        # Most objects hold no array: pickle them in one C call, and only
        # if an array was pickled (its reduce names _attach_handle) pickle
        # again with the Pickler that gives the queue its references.
        try:
            data = pickle.dumps(obj, 5)
        except Exception:
            data = _ARRAY_MARK
        if _ARRAY_MARK not in data:
            self.put(data, block, timeout)
            return
        buf = io.BytesIO()
        p = _queue_arrays.Pickler(buf, self._handle())
        try:
            p.dump(obj)
            self.put(buf.getvalue(), block, timeout)
        except BaseException:
            p.give_back()
            raise

    def get_obj(self, block: bool = True, timeout: Optional[float] = None) -> Any:
        """get() and unpickle; shoal.Array objects inside come attached,
        holding the reference the queue held for them."""
        data = self.get(block, timeout)
        if _PERSID_MARK not in data:  # no array inside: one C call
            return pickle.loads(data)
        return _queue_arrays.Unpickler(io.BytesIO(data), self._handle()).load()

    # ---- state

    def stats(self) -> Dict[str, int]:
        """A dict: depth, capacity, max_msg, pushes, pops, sleeps, recoveries,
        dropped, redelivered, participants (see shoal_queue_stats())."""
        st = _Stats()
        _stats(self._handle(), ctypes.byref(st))
        return {f: getattr(st, f) for f, _ in _Stats._fields_}

    def qsize(self) -> int:
        """Messages in the queue now (approximate while others work)."""
        st = _Stats()
        _stats(self._handle(), ctypes.byref(st))
        return st.depth

    def empty(self) -> bool:
        return self.qsize() == 0

    def full(self) -> bool:
        return self.qsize() >= self._capacity

    def close(self) -> None:
        """Close the queue for writing, for every process: puts raise
        BrokenPipeError; gets drain what is left, then raise it too."""
        _close(self._handle())

    def detach(self) -> None:
        """Let go of this handle (the queue stays; see unlink())."""
        if self._map is not None:
            for port in (self._rxport, self._txport):
                _port_unbind(port.id)
                port._map = None  # the port no longer keeps the handle
        self._map = None
        self._local = threading.local()

    def unlink(self) -> None:
        """Remove the queue's name; open handles keep working."""
        unlink(self._name)

    def __enter__(self) -> "Queue":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.detach()

    def __reduce__(self):
        return (_reopen, (self._name,))

    def __repr__(self) -> str:
        if self._map is None:
            return f"<shoal.Queue {self._name!r} detached>"
        return f"<shoal.Queue {self._name!r} capacity={self._capacity} max_msg={self._max_msg}>"


def _swap(name: str, plain: str) -> None:
    # Queue.<name> becomes Queue.<plain>, with <name>'s documentation.
    f = getattr(Queue, plain)
    f.__doc__ = getattr(Queue, name).__doc__
    setattr(Queue, name, f)


if _BYTES_LENGTH_AT is None:  # not CPython's bytes layout: pass the length
    _swap("put", "_put_with_len")
# A free-threaded build (Py_GIL_DISABLED), whether or not it runs with the
# GIL now: it can turn the GIL on for a while (an extension module that
# needs it, as it is imported) and off again. sys._is_gil_enabled(): 3.13
# and later, False while running without it.
if (sysconfig.get_config_var("Py_GIL_DISABLED")
        or not getattr(sys, "_is_gil_enabled", lambda: True)()):
    for _pair in (("put", "_put_plain"), ("get", "_get_plain"),
                  ("put_many", "_put_many_plain"), ("get_many", "_get_many_plain")):
        _swap(*_pair)
    del _pair


def _reopen(name):
    return Queue.open(name)


class Claim:
    """A message taken with Queue.claim(): ``.data``, ``.redelivered``
    (times it was given back before: its claimer died, or it was nacked),
    ``.ack()`` (done: the message is consumed), ``.nack()`` (give it back
    now). Settling twice raises ValueError. Used in ``with``, it acks on a
    clean exit and nacks on an exception (which then propagates). A claim
    garbage-collected while open is nacked."""

    __slots__ = ("data", "_queue", "_map", "_ticket", "_settled", "_arrays")

    def __init__(self, queue, mapping, ticket, data):
        self.data = data
        self._queue = queue
        self._map = mapping  # the C handle stays valid while a claim is open
        self._ticket = ticket
        self._settled = None
        self._arrays = ()

    @property
    def redelivered(self):
        return self._ticket.redelivered

    @property
    def settled(self):
        """None while open, else "ack" or "nack"."""
        return self._settled

    def _settle(self, how):
        if self._settled is not None:
            raise ValueError(f"claim already settled ({self._settled})")
        (_ack if how == "ack" else _nack)(self._map.ptr, ctypes.byref(self._ticket))
        self._settled = how

    def ack(self):
        """The message is done with: consume it (FileNotFoundError if the
        claim is no longer open in C)."""
        self._settle("ack")
        # The queue's references to the arrays inside go with the message.
        # After the ack: dying in between leaks them until the queue is
        # unlinked, where dropping them first could free an array that a
        # redelivery still names.
        arrays, self._arrays = self._arrays, ()
        for a in arrays:
            # a's C handle outlives a.release(): its mapping is kept by a.
            _queue_arrays.unhold(self._map.ptr, a)

    def nack(self):
        """Give the message back now: the next get or claim, by anyone,
        takes it before the head of the queue."""
        self._settle("nack")

    def __del__(self):
        # A claim forgotten while open would hold its slot as long as this
        # process lives: give it back (a forked child's copy is refused).
        if getattr(self, "_settled", "gone") is None and self._map.ptr:
            try:
                _nack(self._map.ptr, ctypes.byref(self._ticket))
            except Exception:
                pass

    def __enter__(self):
        return self

    def __exit__(self, typ, exc, tb):
        if self._settled is None:
            if typ is None:
                self.ack()
            else:
                self.nack()
        return False

    def __repr__(self):
        state = self._settled or "open"
        return f"<shoal.Claim {state} redelivered={self.redelivered} data={self.data!r:.60}>"
