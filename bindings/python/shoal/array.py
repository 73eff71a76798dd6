"""shoal.Array: a refcounted n-d array in shared memory.

An Array owns one reference to a shared array (lib/array.c). ``numpy()``
gives a zero-copy view; ``np.asarray(a)`` works too. Pickling an Array gives
its handle (a few dozen bytes, whatever the size), and unpickling attaches:
one more reference, in the receiving process. So an Array passed to
``multiprocessing.Pool.map``, ``Process(args=...)`` or a ``multiprocessing``
queue crosses to the worker without copying a byte of data, under fork,
spawn and forkserver alike. The sender must hold its Array until the
receiver has unpickled it.

Lifetime: ``release()`` (or leaving a ``with`` block, or the Array being
garbage collected) drops the reference; when the last reference anywhere
is dropped the object is unlinked. The memory itself is only unmapped when
the Array object *and* every view of it are gone: a view made before
``release()`` stays valid (it keeps the mapping), so a numpy array can never
point at freed memory. After ``release()``, ``numpy()`` raises.

Fork: a child that inherits an Array may read it (the mapping is
inherited) but holds no reference of its own, and releasing it there does
nothing. Pass it as an argument instead (pickled: attached in the child).

Dtypes: every numpy dtype whose items hold no Python objects. The C library
knows the plain numeric ones by code; any other (float16, datetime64,
timedelta64, bytes 'S', str 'U', structured records, big-endian) is stored
as raw items of its size, and the full dtype travels with the pickle (and
with ``Queue.put_obj``). ``Array.attach(handle, dtype=...)`` gives it back to
a process that only has the handle string; without it such an array reads as
``V<itemsize>``.
"""
from __future__ import annotations

import ctypes
import operator
import os
import sys
import threading
from typing import TYPE_CHECKING, Any, Iterable, List, Optional, Tuple, Union

from . import _constants as C, _lib
from ._lib import declare, layout
from .segment import PREFAULT, RDONLY, _Opts, _mode, _name

if TYPE_CHECKING:
    import numpy

DTypeLike = Any  # whatever numpy.dtype() accepts
ShapeLike = Union[int, Iterable[int]]  # as numpy's: an integer or a sequence of them

_vp = ctypes.c_void_p
NOREF = C.SHOAL_ARRAY_NOREF
MAXDIM = C.SHOAL_ARRAY_MAXDIM
HANDLE_MAX = C.SHOAL_HANDLE_MAX
HOLDERS_MAX = C.SHOAL_ARRAY_HOLDERS_MAX  # holders one array can have at once
_PREFIX = C.SHOAL_HANDLE_PREFIX

# enum shoal_dtype, under the names numpy gives the types (BOOL, ..., RAW).
BOOL, INT8, INT16, INT32, INT64 = (C.SHOAL_DTYPE_BOOL, C.SHOAL_DTYPE_INT8, C.SHOAL_DTYPE_INT16,
                                   C.SHOAL_DTYPE_INT32, C.SHOAL_DTYPE_INT64)
UINT8, UINT16, UINT32, UINT64 = (C.SHOAL_DTYPE_UINT8, C.SHOAL_DTYPE_UINT16,
                                 C.SHOAL_DTYPE_UINT32, C.SHOAL_DTYPE_UINT64)
FLOAT32, FLOAT64, COMPLEX64, COMPLEX128, RAW = (C.SHOAL_DTYPE_FLOAT32, C.SHOAL_DTYPE_FLOAT64,
                                                C.SHOAL_DTYPE_COMPLEX64,
                                                C.SHOAL_DTYPE_COMPLEX128, C.SHOAL_DTYPE_RAW)

_dtype_name = declare("shoal_dtype_name", ctypes.c_char_p, ctypes.c_int, check=False)
_dtype_itemsize = declare("shoal_dtype_itemsize", ctypes.c_size_t, ctypes.c_int, check=False)


def _typestrs():
    """numpy's type string for each shoal dtype but RAW ("V<itemsize>"),
    from what the library says of it: its numpy name ("float64") gives the
    kind, shoal_dtype_itemsize() the size."""
    kinds = {"bool": "b", "int": "i", "uint": "u", "float": "f", "complex": "c"}
    order = "<" if sys.byteorder == "little" else ">"
    out = {}
    for _, code in C.ENUMS["shoal_dtype"]:
        if code == RAW:
            continue
        size = _dtype_itemsize(code)
        kind = kinds[_dtype_name(code).decode().rstrip("0123456789")]
        out[code] = f"{'|' if size == 1 else order}{kind}{size}"
    return out


_TYPESTR = _typestrs()
_KIND = {(ts[1], int(ts[2:])): code for code, ts in _TYPESTR.items()}


@layout("shoal_array_desc")
class _Desc(ctypes.Structure):
    _fields_ = [("data", _vp), ("nbytes", ctypes.c_size_t), ("itemsize", ctypes.c_size_t),
                ("dtype", ctypes.c_int), ("ndim", ctypes.c_int),
                ("shape", ctypes.c_size_t * MAXDIM), ("strides", ctypes.c_ssize_t * MAXDIM),
                ("readonly", ctypes.c_bool)]


@layout("shoal_array_holder")
class _Holder(ctypes.Structure):
    _fields_ = [("key", ctypes.c_uint64), ("pid", ctypes.c_int), ("count", ctypes.c_uint32),
                ("alive", ctypes.c_bool)]


@layout("shoal_proc")
class _Proc(ctypes.Structure):
    _fields_ = [("pid", ctypes.c_int), ("start_time", ctypes.c_uint64)]


_sizes = ctypes.POINTER(ctypes.c_size_t)
_create = declare("shoal_array_create", ctypes.c_int, ctypes.c_char_p, ctypes.c_int,
                  ctypes.c_size_t, ctypes.c_int, _sizes, ctypes.POINTER(_Opts),
                  ctypes.POINTER(_vp), name_arg=0)
_attach = declare("shoal_array_attach", ctypes.c_int, ctypes.c_char_p, ctypes.c_uint,
                  ctypes.POINTER(_vp), name_arg=0)
_open = declare("shoal_array_open", ctypes.c_int, ctypes.c_char_p, ctypes.c_uint,
                ctypes.POINTER(_vp), name_arg=0)
_retain = declare("shoal_array_retain", ctypes.c_int, _vp, detail=True)
_release = declare("shoal_array_release", ctypes.c_int, _vp, detail=True)
_pin = declare("shoal_array_pin", ctypes.c_int, _vp, detail=True)
_unpin = declare("shoal_array_unpin", ctypes.c_int, _vp, detail=True)
_hold_for = declare("shoal_array_hold_for", ctypes.c_int, _vp, ctypes.POINTER(_Proc),
                    detail=True)
_proc_get = declare("shoal_proc_get", ctypes.c_int, ctypes.c_int, ctypes.POINTER(_Proc))
# The closer runs from finalizers: it must not raise.
_close = declare("shoal_array_close", ctypes.c_int, _vp, check=False)
_handle = declare("shoal_array_handle", ctypes.c_int, _vp, ctypes.c_char_p, ctypes.c_size_t)
_desc = declare("shoal_array_desc", ctypes.POINTER(_Desc), _vp, check=False)
_data = declare("shoal_array_data", _vp, _vp, check=False)
_nbytes = declare("shoal_array_nbytes", ctypes.c_size_t, _vp, check=False)
_refcount = declare("shoal_array_refcount", ctypes.c_uint64, _vp, check=False)
_is_freed = declare("shoal_array_is_freed", ctypes.c_bool, _vp, check=False)
_holders = declare("shoal_array_holders", ctypes.c_int, _vp, ctypes.POINTER(_Holder),
                   ctypes.c_size_t)
_reap = declare("shoal_reap", ctypes.c_int)


# This process's pid, renewed in a forked child without a system call per
# Array: an Array remembers the pid that holds its reference.
_pid = [os.getpid()]
os.register_at_fork(after_in_child=lambda: _pid.__setitem__(0, os.getpid()))
# Guards release() against two threads releasing one Array at once.
_release_lock = threading.Lock()


def reap() -> int:
    """shoal_reap(): drop the references of processes that died, free the
    arrays nobody holds any more, remove dead creators' temporary files.
    Returns how many objects were removed."""
    return _reap()


def _np():
    import numpy
    return numpy


def _code(dtype: "DTypeLike") -> Tuple[int, int, "numpy.dtype", Tuple[int, ...]]:
    """(shoal dtype code, itemsize for RAW else 0, the numpy dtype of the
    items, the shape a subarray dtype adds) for a numpy dtype."""
    np = _np()
    try:
        dt = np.dtype(dtype)
    except TypeError as e:
        raise TypeError(f"{dtype!r} is not a numpy dtype: {e}") from None
    sub: Tuple[int, ...] = ()
    if dt.subdtype is not None:  # ("f8", (3,)): numpy adds the item's shape
        dt, sub = dt.subdtype
    if dt.hasobject:
        raise TypeError(f"dtype {dt} holds Python objects: their pointers mean nothing in "
                        "another process; shoal arrays hold plain data (numbers, bytes, "
                        "fixed-size strings and records of them)")
    if dt.itemsize == 0:
        raise TypeError(f"dtype {dt} has items of 0 bytes: give it a size (e.g. 'S8', 'U8')")
    if dt.fields is None and dt.isnative:
        code = _KIND.get((dt.kind, dt.itemsize))
        if code is not None and np.dtype(_TYPESTR[code]) == dt:
            return code, 0, dt, sub
    # Anything else is raw items to the C library; the dtype is Python's.
    return RAW, dt.itemsize, dt, sub


def _shape_of(shape: "ShapeLike") -> Tuple[int, ...]:
    """numpy's rule: an integer (operator.index) is a 1-d shape, else a
    sequence of integers; floats and strings are refused."""
    try:
        return _dims((operator.index(shape),))
    except TypeError:
        pass
    if isinstance(shape, (str, bytes)):
        raise TypeError(f"shape must be an integer or a sequence of integers, not "
                        f"{type(shape).__name__} {shape!r}")
    try:
        dims = tuple(shape)  # type: ignore[arg-type]
    except TypeError:
        raise TypeError(f"shape must be an integer or a sequence of integers, not "
                        f"{type(shape).__name__}") from None
    out = []
    for i, n in enumerate(dims):
        try:
            out.append(operator.index(n))
        except TypeError:
            raise TypeError(f"shape {shape!r}: dimension {i} is {type(n).__name__} {n!r}, "
                            "not an integer") from None
    return _dims(tuple(out))


def _dims(shape: Tuple[int, ...]) -> Tuple[int, ...]:
    if any(n < 0 for n in shape):
        raise ValueError(f"negative dimensions are not allowed (shape {shape})")
    if any(n >= 2**64 for n in shape):
        raise OverflowError(f"shape {shape}: a dimension is 2**64 or more")
    return shape


class Array:
    """A typed n-d array in shared memory, counted by reference across
    processes. Make one with ``zeros``, ``empty``, ``from_numpy``; reach an
    existing one with ``attach(handle)`` or by unpickling."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        raise TypeError("shoal.Array is not made by calling it: use Array.zeros(shape, "
                        "dtype), Array.empty(...), Array.from_numpy(x), "
                        "Array.attach(handle) or Array.open(name)")

    @classmethod
    def _wrap(cls, ptr: int, readonly: bool = False, handle: Optional[str] = None,
              dtype: Any = None) -> "Array":
        """Internal: an Array owning ``ptr`` (which carries one reference;
        closed here if this fails). ``dtype``: the numpy dtype of a RAW
        array's items, or None."""
        self = object.__new__(cls)
        self._map = _lib.Mapping(ptr, _close)
        self._readonly = readonly
        self._pid = _pid[0]
        self._held = True
        d = _desc(ptr).contents
        self._shape = tuple(d.shape[:d.ndim])
        self._nbytes = d.nbytes
        self._data = d.data
        self._mv = None   # the memoryview numpy views are made from
        self._raw = d.dtype == RAW
        self._dtype: Any = _TYPESTR.get(d.dtype) or f"|V{d.itemsize}"
        if handle is None:
            buf = ctypes.create_string_buffer(HANDLE_MAX)
            _handle(ptr, buf, HANDLE_MAX)
            handle = buf.value.decode("ascii", "surrogateescape")
        self._handle = handle
        if dtype is not None:
            self._dtype = self._given_dtype(dtype, d)
        return self

    def _given_dtype(self, dtype: Any, d: _Desc) -> Any:
        np = _np()
        dt = np.dtype(dtype)
        if dt == np.dtype(self._dtype):
            return self._dtype
        if not self._raw:
            raise ValueError(f"array {self.name!r} holds {np.dtype(self._dtype)}, not {dt}")
        if dt.itemsize != d.itemsize or dt.hasobject or dt.subdtype is not None:
            raise ValueError(f"array {self.name!r} holds raw items of {d.itemsize} bytes: "
                             f"dtype {dt} ({dt.itemsize} bytes) does not fit them")
        return dt

    # ---- making and reaching arrays

    @classmethod
    def _create(cls, shape: "ShapeLike", dtype: "DTypeLike", name: Optional[str],
                mode: Optional[int], prefault: bool) -> "Array":
        code, itemsize, dt, sub = _code(dtype)
        shape = _shape_of(shape) + tuple(sub)
        # C refuses it too (EINVAL), but numpy's callers expect ValueError
        # for a bad number of dimensions; the limit is C's.
        if not 1 <= len(shape) <= MAXDIM:
            raise ValueError(f"an Array has 1 to {MAXDIM} dimensions, not {len(shape)}")
        out = _vp()
        dims = (ctypes.c_size_t * len(shape))(*shape)
        opts = _Opts(_mode(mode), PREFAULT if prefault else 0)
        _create(None if name is None else _name(name), code, itemsize, len(shape), dims,
                ctypes.byref(opts), ctypes.byref(out))
        return cls._wrap(out.value, dtype=dt if code == RAW else None)

    @classmethod
    def zeros(cls, shape: "ShapeLike", dtype: "DTypeLike" = "float64", *,
              name: Optional[str] = None, mode: Optional[int] = None,
              prefault: bool = False) -> "Array":
        """A new array of ``shape`` and ``dtype``, filled with zeros.

        ``shape`` is an integer or a sequence of integers (as numpy's);
        ``dtype`` any numpy dtype that holds no Python objects.
        ``name=None`` gives a fresh anonymous name. Raises FileExistsError if
        ``name`` is taken, OSError(ENOSPC) if /dev/shm has no room,
        OverflowError for sizes that overflow, TypeError for a shape that is
        not integers or an object dtype.
        """
        return cls._create(shape, dtype, name, mode, prefault)

    @classmethod
    def empty(cls, shape: "ShapeLike", dtype: "DTypeLike" = "float64", *,
              name: Optional[str] = None, mode: Optional[int] = None,
              prefault: bool = False) -> "Array":
        """As ``zeros``: fresh shared pages are zero, at no extra cost."""
        return cls._create(shape, dtype, name, mode, prefault)

    @classmethod
    def from_numpy(cls, x: Any, *, name: Optional[str] = None,
                   mode: Optional[int] = None) -> "Array":
        """A new shared array holding a copy of numpy array ``x`` (one copy)."""
        np = _np()
        x = np.asarray(x)
        if x.ndim == 0:
            raise ValueError("0-d arrays are not supported; reshape to (1,)")
        if not x.dtype.isnative and x.dtype.fields is None and x.dtype.kind != "V":
            x = x.astype(x.dtype.newbyteorder("="))
        a = cls._create(x.shape, x.dtype, name, mode, False)
        np.copyto(a.numpy(), x, casting="no")
        return a

    @classmethod
    def attach(cls, handle: str, *, readonly: bool = False, prefault: bool = False,
               dtype: "DTypeLike" = None) -> "Array":
        """Attach the array ``handle`` names: one more reference.

        FileNotFoundError if it is gone (or its name now belongs to a newer
        array). ``readonly`` maps the data read-only: views are not writable.
        ``dtype``: the items' dtype for an array stored as raw items
        (float16, datetime64, records...: see the module's notes); by
        default it reads as ``V<itemsize>``. A pickled Array carries it.
        """
        if not isinstance(handle, str):
            raise TypeError(f"handle must be str, not {type(handle).__name__}")
        _check_handle(handle)
        out = _vp()
        flags = (RDONLY if readonly else 0) | (PREFAULT if prefault else 0)
        _attach(handle.encode("utf-8", "surrogateescape"), flags, ctypes.byref(out))
        return cls._wrap(out.value, bool(readonly), handle, dtype)

    def _pickled_dtype(self) -> Any:
        """The dtype a pickle must carry: the numpy dtype of a raw array's
        items when it is more than V<itemsize>, else None."""
        return self._dtype if self._raw and not isinstance(self._dtype, str) else None

    @classmethod
    def open(cls, name: str, *, readonly: bool = False, dtype: "DTypeLike" = None) -> "Array":
        """Attach the array named ``name``, whatever its generation
        (``dtype`` as for ``attach``)."""
        out = _vp()
        _open(_name(name), RDONLY if readonly else 0, ctypes.byref(out))
        return cls._wrap(out.value, bool(readonly), None, dtype)

    # ---- what it is

    @property
    def handle(self) -> str:
        """The handle: 'shoal:array:<name>@<gen>'."""
        return self._handle

    @property
    def name(self) -> str:
        return self._handle[len(_PREFIX):self._handle.rindex("@")]

    @property
    def shape(self) -> Tuple[int, ...]:
        return self._shape

    @property
    def ndim(self) -> int:
        return len(self._shape)

    @property
    def nbytes(self) -> int:
        return self._nbytes

    @property
    def readonly(self) -> bool:
        return self._readonly

    @property
    def dtype(self) -> "numpy.dtype":
        return _np().dtype(self._dtype)

    @property
    def size(self) -> int:
        n = 1
        for d in self._shape:
            n *= d
        return n

    @property
    def released(self) -> bool:
        """True once ``release()`` was called on this object."""
        return not self._held

    @property
    def inherited(self) -> bool:
        """True in a forked child: readable, but holding no reference."""
        return _pid[0] != self._pid

    @property
    def refcount(self) -> int:
        """References held on the array by every holder (a snapshot)."""
        return _refcount(self._map.ptr)

    def holders(self) -> List[Tuple[Optional[int], int, bool]]:
        """[(pid or None, count, alive)] for each holder in the ledger."""
        n = _holders(self._map.ptr, None, 0)
        hs = (_Holder * max(n, 1))()
        n = min(_holders(self._map.ptr, hs, n), n)
        return [(h.pid or None, h.count, h.alive) for h in hs[:n]]

    # ---- views

    def _check(self):
        if self.released:
            raise ValueError("array is released")

    def numpy(self) -> "numpy.ndarray":
        """A zero-copy numpy view (read-only for a read-only attach). It
        keeps the memory mapped for as long as it lives."""
        self._check()
        mv = self._mv
        if mv is None:
            mv = self._mv = _lib.view(self._map, self._data, self._nbytes, self._readonly)
        return _np().ndarray(self._shape, self._dtype, mv)

    def __array__(self, dtype: Any = None, copy: Any = None) -> "numpy.ndarray":
        v = self.numpy()
        if dtype is not None and _np().dtype(dtype) != v.dtype:
            return v.astype(dtype)
        return v.copy() if copy else v

    @property
    def __array_interface__(self):
        # numpy keeps this Array as the base of what it makes from this, and
        # the Array keeps the mapping: the memory outlives the view.
        self._check()
        dt = _np().dtype(self._dtype)
        if dt.fields is not None:
            # A descr list loses a record's offsets and alignment: numpy
            # then takes the exact view from __array__.
            raise AttributeError("__array_interface__")
        return {"version": 3, "shape": self._shape, "typestr": dt.str,
                "data": (self._data or 0, self._readonly), "strides": None}

    # ---- references

    def retain(self) -> None:
        """Take one more reference (for this process)."""
        self._check()
        _retain(self._map.ptr)

    def hold_for(self, pid: int, start_time: Optional[int] = None) -> None:
        """Take one reference that belongs to process @pid, not to this
        one (``shoal_array_hold_for``): the array stays alive for @pid
        after this process lets go. @pid's attach (or retain) of the array
        takes that reference over while one is left (so its release frees what it must, and no
        reference is left behind); if @pid dies first, ``shoal.reap()``
        (or ``shoal gc``) drops it. @start_time (clock ticks since boot,
        field 22 of /proc/PID/stat) names the process exactly; by default
        it is read now. ProcessLookupError if that process is not alive."""
        self._check()
        pid = int(pid)
        if not 0 < pid < 2**31:
            raise ValueError(f"array {self.name!r}: no process has pid {pid}")
        p = _Proc()
        if start_time is None:
            _proc_get(pid, ctypes.byref(p))
        else:
            p.pid, p.start_time = pid, int(start_time)
        _hold_for(self._map.ptr, ctypes.byref(p))

    def release(self) -> None:
        """Drop this object's reference (idempotent). The array is freed
        when nobody holds it; views made earlier stay valid."""
        with _release_lock:
            if self._held and _pid[0] == self._pid:
                self._held = False
                _release(self._map.ptr)
            self._held = False

    close = release

    def __enter__(self) -> "Array":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()

    def __reduce__(self) -> Tuple[Any, Tuple[Any, ...]]:
        dt = self._pickled_dtype()
        if dt is None:
            return (_attach_handle, (self._handle, self._readonly))
        return (_attach_handle, (self._handle, self._readonly, dt))

    def __len__(self) -> int:
        return self._shape[0]

    def __repr__(self) -> str:
        state = " released" if self.released else ""
        return (f"<shoal.Array {self._handle!r} shape={self._shape} "
                f"dtype={self.dtype}{' readonly' if self._readonly else ''}{state}>")


def _check_handle(handle: str) -> None:
    """C sees a handle up to its first NUL byte: one inside would attach
    what the part before it names, while Python kept (and pickled again)
    the whole string. Refuse it."""
    if "\0" in handle:
        raise ValueError(f"a shoal handle cannot contain a NUL byte: {handle!r}")


def _attach_handle(handle: str, readonly: bool, dtype: Any = None) -> Array:
    return Array.attach(handle, readonly=readonly, dtype=dtype)
