"""Arrays carried in queues: the references a queue holds for the handles
inside it (lib/queue_arrays.c), and the pickling that puts them there.

    put_obj:  Pickler -- each shoal.Array met --> hold(queue, array)
                 |          (shoal_queue_hold_array: +1 for the queue)
                 v
              message bytes: the pickle, arrays as ("shoal.Array", handle,
                 readonly[, dtype]); the queue carries only bytes
                 v
    get_obj:  Unpickler -- each handle --> attach(queue, handle)
                            (shoal_queue_attach_array: the queue's
                            reference becomes this process's)
    claim_obj: ClaimUnpickler -- each handle --> Array.attach (a reference
                 of its own); Claim.ack() then unhold()s the queue's

This module knows arrays and a queue's C handle; the Queue class imports it
for put_obj, get_obj and claim_obj, and neither array.py nor the queue's
byte transport depends on it (as in C: queue.c and array.c do not know
queue_arrays.c).
"""
from __future__ import annotations

import ctypes
import pickle
from typing import Any, List

from ._lib import declare
from .array import RDONLY, Array, _check_handle

_vp = ctypes.c_void_p
_attach = declare("shoal_queue_attach_array", ctypes.c_int, _vp, ctypes.c_char_p,
                  ctypes.c_uint, ctypes.POINTER(_vp), name_arg=1)
_hold = declare("shoal_queue_hold_array", ctypes.c_int, _vp, _vp, detail=True)
_unhold = declare("shoal_queue_unhold_array", ctypes.c_int, _vp, _vp, detail=True)


def hold(queue_ptr: int, a: Array) -> None:
    """Give the queue one reference to ``a`` (before its handle is put)."""
    a._check()
    _hold(queue_ptr, a._map.ptr)


def unhold(queue_ptr: int, a: Array) -> None:
    """Take back a reference given to the queue (a put that failed, or an
    acked claim)."""
    _unhold(queue_ptr, a._map.ptr)


def attach(queue_ptr: int, handle: str, readonly: bool, dtype: Any = None) -> Array:
    """Attach a handle popped from the queue, taking over the reference
    the queue held for it (see Queue.get_obj)."""
    _check_handle(handle)
    out = _vp()
    _attach(queue_ptr, handle.encode("utf-8", "surrogateescape"), RDONLY if readonly else 0,
            ctypes.byref(out))
    return Array._wrap(out.value, bool(readonly), handle, dtype)


class Pickler(pickle.Pickler):
    """Pickles shoal.Array objects as handles, each with a reference given
    to the queue (so the array lives while the message does)."""

    def __init__(self, f, queue_ptr):
        super().__init__(f, protocol=5)
        self._queue_ptr = queue_ptr
        self._held: List[Array] = []

    def persistent_id(self, obj):
        if type(obj) is not Array:
            return None
        hold(self._queue_ptr, obj)
        self._held.append(obj)
        dt = obj._pickled_dtype()  # a raw array's items' dtype travels too
        if dt is not None:
            return ("shoal.Array", obj.handle, obj.readonly, dt)
        return ("shoal.Array", obj.handle, obj.readonly)

    def give_back(self):
        for a in self._held:
            unhold(self._queue_ptr, a)
        self._held = []


class Unpickler(pickle.Unpickler):
    def __init__(self, f, queue_ptr):
        super().__init__(f)
        self._queue_ptr = queue_ptr

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) in (3, 4) and pid[0] == "shoal.Array"):
            raise pickle.UnpicklingError(f"unknown persistent id {pid!r}")
        return attach(self._queue_ptr, *pid[1:])


class ClaimUnpickler(pickle.Unpickler):
    """Attaches arrays with a reference of their own (the queue's stays
    with the message until ack) and remembers them for Claim.ack()."""

    def __init__(self, f):
        super().__init__(f)
        self.arrays: List[Array] = []

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) in (3, 4) and pid[0] == "shoal.Array"):
            raise pickle.UnpicklingError(f"unknown persistent id {pid!r}")
        a = Array.attach(pid[1], readonly=pid[2], dtype=pid[3] if len(pid) == 4 else None)
        self.arrays.append(a)
        return a
