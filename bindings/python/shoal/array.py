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
"""
import ctypes
import os
import threading

from . import _lib
from ._lib import declare
from .segment import PREFAULT, RDONLY, _name, _Opts

_vp = ctypes.c_void_p
NOREF = 0x100
MAXDIM = 32
HANDLE_MAX = 256

BOOL, INT8, INT16, INT32, INT64 = 1, 2, 3, 4, 5
UINT8, UINT16, UINT32, UINT64 = 6, 7, 8, 9
FLOAT32, FLOAT64, COMPLEX64, COMPLEX128, RAW = 10, 11, 12, 13, 14

# numpy's type string for each shoal dtype (RAW: "V<itemsize>").
_TYPESTR = {BOOL: "|b1", INT8: "|i1", INT16: "<i2", INT32: "<i4", INT64: "<i8",
            UINT8: "|u1", UINT16: "<u2", UINT32: "<u4", UINT64: "<u8",
            FLOAT32: "<f4", FLOAT64: "<f8", COMPLEX64: "<c8", COMPLEX128: "<c16"}
_KIND = {("b", 1): BOOL, ("i", 1): INT8, ("i", 2): INT16, ("i", 4): INT32, ("i", 8): INT64,
         ("u", 1): UINT8, ("u", 2): UINT16, ("u", 4): UINT32, ("u", 8): UINT64,
         ("f", 4): FLOAT32, ("f", 8): FLOAT64, ("c", 8): COMPLEX64, ("c", 16): COMPLEX128}


class _Desc(ctypes.Structure):
    _fields_ = [("data", _vp), ("nbytes", ctypes.c_size_t), ("itemsize", ctypes.c_size_t),
                ("dtype", ctypes.c_int), ("ndim", ctypes.c_int),
                ("shape", ctypes.c_size_t * MAXDIM), ("strides", ctypes.c_ssize_t * MAXDIM),
                ("readonly", ctypes.c_bool)]


class _Holder(ctypes.Structure):
    _fields_ = [("key", ctypes.c_uint64), ("pid", ctypes.c_int), ("count", ctypes.c_uint32),
                ("alive", ctypes.c_bool)]


_sizes = ctypes.POINTER(ctypes.c_size_t)
_create = declare("shoal_array_create", ctypes.c_int, ctypes.c_char_p, ctypes.c_int,
                  ctypes.c_size_t, ctypes.c_int, _sizes, ctypes.POINTER(_Opts),
                  ctypes.POINTER(_vp))
_attach = declare("shoal_array_attach", ctypes.c_int, ctypes.c_char_p, ctypes.c_uint,
                  ctypes.POINTER(_vp))
_open = declare("shoal_array_open", ctypes.c_int, ctypes.c_char_p, ctypes.c_uint,
                ctypes.POINTER(_vp))
_retain = declare("shoal_array_retain", ctypes.c_int, _vp)
_release = declare("shoal_array_release", ctypes.c_int, _vp)
_pin = declare("shoal_array_pin", ctypes.c_int, _vp)
_unpin = declare("shoal_array_unpin", ctypes.c_int, _vp)
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
_queue_attach = declare("shoal_queue_attach_array", ctypes.c_int, _vp, ctypes.c_char_p,
                        ctypes.c_uint, ctypes.POINTER(_vp))
_queue_hold = declare("shoal_queue_hold_array", ctypes.c_int, _vp, _vp)
_queue_unhold = declare("shoal_queue_unhold_array", ctypes.c_int, _vp, _vp)


# This process's pid, renewed in a forked child without a system call per
# Array: an Array remembers the pid that holds its reference.
_pid = [os.getpid()]
os.register_at_fork(after_in_child=lambda: _pid.__setitem__(0, os.getpid()))
# Guards release() against two threads releasing one Array at once.
_release_lock = threading.Lock()


def reap():
    """shoal_reap(): drop the references of processes that died, free the
    arrays nobody holds any more, remove dead creators' temporary files.
    Returns how many objects were removed."""
    return _reap()


def _np():
    import numpy
    return numpy


def _code(dtype):
    """The shoal dtype code and itemsize of a numpy dtype (native order)."""
    np = _np()
    dt = np.dtype(dtype)
    if dt.kind == "V" and dt.fields is None and dt.subdtype is None:
        return RAW, dt.itemsize
    if dt.byteorder == ">" or (dt.byteorder == "=" and not dt.isnative):
        raise TypeError(f"dtype {dt} is not in native byte order")
    code = _KIND.get((dt.kind, dt.itemsize))
    if code is None:
        raise TypeError(f"shoal arrays do not hold dtype {dt}")
    return code, 0


def _shape_of(shape):
    if isinstance(shape, int):
        shape = (shape,)
    shape = tuple(int(n) for n in shape)
    if any(n < 0 for n in shape):
        raise ValueError("negative dimensions are not allowed")
    return shape


class Array:
    """A typed n-d array in shared memory, counted by reference across
    processes. Make one with ``zeros``, ``empty``, ``from_numpy``; reach an
    existing one with ``attach(handle)`` or by unpickling."""

    def __init__(self, _ptr, _readonly=False, _handle_str=None):
        # Internal: use the class methods. _ptr carries one reference.
        self._map = _lib.Mapping(_ptr, _close)
        self._readonly = _readonly
        self._pid = _pid[0]
        self._held = True
        d = _desc(_ptr).contents
        self._dtype = _TYPESTR.get(d.dtype) or f"|V{d.itemsize}"
        self._shape = tuple(d.shape[:d.ndim])
        self._nbytes = d.nbytes
        self._data = d.data
        self._mv = None   # the memoryview numpy views are made from
        if _handle_str is None:
            buf = ctypes.create_string_buffer(HANDLE_MAX)
            _handle(_ptr, buf, HANDLE_MAX)
            _handle_str = buf.value.decode("ascii")
        self._handle = _handle_str

    # ---- making and reaching arrays

    @classmethod
    def _create(cls, shape, dtype, name, mode, prefault):
        code, itemsize = _code(dtype)
        shape = _shape_of(shape)
        if not 1 <= len(shape) <= MAXDIM:
            raise ValueError(f"an Array has 1 to {MAXDIM} dimensions, not {len(shape)}")
        if any(n >= 2**64 for n in shape):
            raise OverflowError("dimension too large")
        out = _vp()
        dims = (ctypes.c_size_t * len(shape))(*shape)
        opts = _Opts(mode, PREFAULT if prefault else 0)
        _create(None if name is None else _name(name), code, itemsize, len(shape), dims,
                ctypes.byref(opts), ctypes.byref(out))
        return cls(out.value)

    @classmethod
    def zeros(cls, shape, dtype="float64", *, name=None, mode=0o600, prefault=False):
        """A new array of ``shape`` and ``dtype``, filled with zeros.

        ``name=None`` gives a fresh anonymous name. Raises FileExistsError if
        ``name`` is taken, OSError(ENOSPC) if /dev/shm has no room,
        OverflowError for sizes that overflow, TypeError for dtypes shoal
        does not hold.
        """
        return cls._create(shape, dtype, name, mode, prefault)

    @classmethod
    def empty(cls, shape, dtype="float64", *, name=None, mode=0o600, prefault=False):
        """As ``zeros``: fresh shared pages are zero, at no extra cost."""
        return cls._create(shape, dtype, name, mode, prefault)

    @classmethod
    def from_numpy(cls, x, *, name=None, mode=0o600):
        """A new shared array holding a copy of numpy array ``x`` (one copy)."""
        np = _np()
        x = np.asarray(x)
        if x.ndim == 0:
            raise ValueError("0-d arrays are not supported; reshape to (1,)")
        if not x.dtype.isnative and x.dtype.kind != "V":
            x = x.astype(x.dtype.newbyteorder("="))
        a = cls._create(x.shape, x.dtype, name, mode, False)
        np.copyto(a.numpy(), x, casting="no")
        return a

    @classmethod
    def attach(cls, handle, *, readonly=False, prefault=False):
        """Attach the array ``handle`` names: one more reference.

        FileNotFoundError if it is gone (or its name now belongs to a newer
        array). ``readonly`` maps the data read-only: views are not writable.
        """
        if not isinstance(handle, str):
            raise TypeError("handle must be str")
        _check_handle(handle)
        out = _vp()
        flags = (RDONLY if readonly else 0) | (PREFAULT if prefault else 0)
        _attach(handle.encode("ascii", "surrogateescape"), flags, ctypes.byref(out))
        return cls(out.value, bool(readonly), handle)

    @classmethod
    def _from_queue(cls, queue_ptr, handle, readonly):
        """Attach a handle popped from a queue, taking over the reference
        the queue held for it (see Queue.get_obj)."""
        _check_handle(handle)
        out = _vp()
        _queue_attach(queue_ptr, handle.encode("ascii", "surrogateescape"),
                      RDONLY if readonly else 0, ctypes.byref(out))
        return cls(out.value, bool(readonly), handle)

    def _hold_for(self, queue_ptr):
        """Give the queue one reference (see Queue.put_obj)."""
        self._check()
        _queue_hold(queue_ptr, self._map.ptr)

    def _unhold_for(self, queue_ptr):
        _queue_unhold(queue_ptr, self._map.ptr)

    @classmethod
    def open(cls, name, *, readonly=False):
        """Attach the array named ``name``, whatever its generation."""
        out = _vp()
        _open(_name(name), RDONLY if readonly else 0, ctypes.byref(out))
        return cls(out.value, bool(readonly))

    # ---- what it is

    handle = property(lambda self: self._handle, doc="The handle: 'shoal:array:<name>@<gen>'.")
    name = property(lambda self: self._handle[len("shoal:array:"):self._handle.rindex("@")])
    shape = property(lambda self: self._shape)
    ndim = property(lambda self: len(self._shape))
    nbytes = property(lambda self: self._nbytes)
    readonly = property(lambda self: self._readonly)

    @property
    def dtype(self):
        return _np().dtype(self._dtype)

    @property
    def size(self):
        n = 1
        for d in self._shape:
            n *= d
        return n

    @property
    def released(self):
        """True once ``release()`` was called on this object."""
        return not self._held

    @property
    def inherited(self):
        """True in a forked child: readable, but holding no reference."""
        return _pid[0] != self._pid

    @property
    def refcount(self):
        """References held on the array by every holder (a snapshot)."""
        return _refcount(self._map.ptr)

    def holders(self):
        """[(pid or None, count, alive)] for each holder in the ledger."""
        n = _holders(self._map.ptr, None, 0)
        hs = (_Holder * max(n, 1))()
        n = min(_holders(self._map.ptr, hs, n), n)
        return [(h.pid or None, h.count, h.alive) for h in hs[:n]]

    # ---- views

    def _check(self):
        if self.released:
            raise ValueError("array is released")

    def numpy(self):
        """A zero-copy numpy view (read-only for a read-only attach). It
        keeps the memory mapped for as long as it lives."""
        self._check()
        mv = self._mv
        if mv is None:
            mv = self._mv = _lib.view(self._map, self._data, self._nbytes, self._readonly)
        return _np().ndarray(self._shape, self._dtype, mv)

    def __array__(self, dtype=None):
        v = self.numpy()
        return v if dtype is None else v.astype(dtype)

    @property
    def __array_interface__(self):
        # numpy keeps this Array as the base of what it makes from this, and
        # the Array keeps the mapping: the memory outlives the view.
        self._check()
        return {"version": 3, "shape": self._shape, "typestr": self._dtype,
                "data": (self._data or 0, self._readonly), "strides": None}

    # ---- references

    def retain(self):
        """Take one more reference (for this process)."""
        self._check()
        _retain(self._map.ptr)

    def release(self):
        """Drop this object's reference (idempotent). The array is freed
        when nobody holds it; views made earlier stay valid."""
        with _release_lock:
            if self._held and _pid[0] == self._pid:
                self._held = False
                _release(self._map.ptr)
            self._held = False

    close = release

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.release()

    def __reduce__(self):
        return (_attach_handle, (self._handle, self._readonly))

    def __len__(self):
        return self._shape[0]

    def __repr__(self):
        state = " released" if self.released else ""
        return (f"<shoal.Array {self._handle!r} shape={self._shape} "
                f"dtype={self.dtype}{' readonly' if self._readonly else ''}{state}>")


def _check_handle(handle):
    """C sees a handle up to its first NUL byte: one inside would attach
    what the part before it names, while Python kept (and pickled again)
    the whole string. Refuse it."""
    if "\0" in handle:
        raise ValueError(f"a shoal handle cannot contain a NUL byte: {handle!r}")


def _attach_handle(handle, readonly):
    return Array.attach(handle, readonly=readonly)
