"""shoal.Segment: a named block of shared memory."""
import ctypes

from . import _lib
from ._lib import declare

_vp = ctypes.c_void_p
RDONLY = 0x1
PREFAULT = 0x2


class _Opts(ctypes.Structure):
    _fields_ = [("mode", ctypes.c_uint), ("flags", ctypes.c_uint)]


_create = declare("shoal_segment_create", ctypes.c_int, ctypes.c_char_p, ctypes.c_size_t,
                  ctypes.POINTER(_Opts), ctypes.POINTER(_vp))
_open = declare("shoal_segment_open", ctypes.c_int, ctypes.c_char_p, ctypes.c_uint,
                ctypes.POINTER(_vp))
_close = declare("shoal_segment_close", ctypes.c_int, _vp)
_data = declare("shoal_segment_data", _vp, _vp, check=False)
_size = declare("shoal_segment_size", ctypes.c_size_t, _vp, check=False)
_unlink = declare("shoal_unlink", ctypes.c_int, ctypes.c_char_p)


def _name(name):
    if not isinstance(name, str):
        raise TypeError(f"name must be str, not {type(name).__name__}")
    return name.encode("ascii", "surrogateescape")


def unlink(name):
    """Remove the object ``name`` from /dev/shm (FileNotFoundError if absent)."""
    _unlink(_name(name))


class Segment:
    """A named POSIX shared memory segment.

    ``Segment.create(name, size)`` makes one (FileExistsError if the name is
    taken); ``Segment.open(name)`` maps an existing one, checked as untrusted
    input. ``buf`` is a zero-copy memoryview (read-only for ``readonly=True``).
    A view keeps the memory mapped even after ``close()``; the mapping goes
    with the last view. Pickling carries the name only, so a Segment passed to
    another process (fork, spawn or forkserver) opens the same memory there.
    """

    def __init__(self, name, *, create=False, size=0, readonly=False, mode=0o600, prefault=False):
        self._name = name
        self._readonly = bool(readonly) and not create
        out = _vp()
        if create:
            opts = _Opts(mode, PREFAULT if prefault else 0)
            if readonly:
                raise ValueError("a segment is created writable; open it readonly elsewhere")
            if size < 0:
                raise ValueError("size must be positive")
            _create(_name(name), size, ctypes.byref(opts), ctypes.byref(out))
        else:
            flags = (RDONLY if readonly else 0) | (PREFAULT if prefault else 0)
            _open(_name(name), flags, ctypes.byref(out))
        self._map = _lib.Mapping(out.value, _close)
        self._size = _size(out.value)
        self._buf = _lib.view(self._map, _data(out.value), self._size, self._readonly)

    @classmethod
    def create(cls, name, size, *, mode=0o600, prefault=False):
        """Create segment ``name`` of ``size`` bytes, zeroed."""
        return cls(name, create=True, size=size, mode=mode, prefault=prefault)

    @classmethod
    def open(cls, name, *, readonly=False, prefault=False):
        """Open the existing segment ``name``."""
        return cls(name, readonly=readonly, prefault=prefault)

    @property
    def name(self):
        return self._name

    @property
    def size(self):
        return self._size

    @property
    def readonly(self):
        return self._readonly

    @property
    def closed(self):
        return self._map is None

    @property
    def buf(self):
        if self._map is None:
            raise ValueError("segment is closed")
        return self._buf

    def close(self):
        """Let go of the mapping (it stays while views of it live)."""
        self._buf = None
        self._map = None

    def unlink(self):
        """Remove the name; mappings that exist stay valid."""
        unlink(self._name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __reduce__(self):
        return (_reopen, (self._name, self._readonly))

    def __repr__(self):
        state = "closed" if self.closed else f"size={self._size}"
        return f"<shoal.Segment {self._name!r} {state}{' readonly' if self._readonly else ''}>"


def _reopen(name, readonly):
    return Segment.open(name, readonly=readonly)
