"""shoal.Segment: a named block of shared memory."""
from __future__ import annotations

import ctypes
import operator
from typing import Any, Optional

from . import _lib
from ._constants import SHOAL_PREFAULT as PREFAULT, SHOAL_RDONLY as RDONLY
from ._lib import declare, layout

_vp = ctypes.c_void_p


@layout("shoal_opts")
class _Opts(ctypes.Structure):
    _fields_ = [("mode", ctypes.c_uint), ("flags", ctypes.c_uint)]


_create = declare("shoal_segment_create", ctypes.c_int, ctypes.c_char_p, ctypes.c_size_t,
                  ctypes.POINTER(_Opts), ctypes.POINTER(_vp), name_arg=0)
_open = declare("shoal_segment_open", ctypes.c_int, ctypes.c_char_p, ctypes.c_uint,
                ctypes.POINTER(_vp), name_arg=0)
_close = declare("shoal_segment_close", ctypes.c_int, _vp)
_data = declare("shoal_segment_data", _vp, _vp, check=False)
_size = declare("shoal_segment_size", ctypes.c_size_t, _vp, check=False)
_unlink = declare("shoal_unlink", ctypes.c_int, ctypes.c_char_p, name_arg=0)
_dir = declare("shoal_dir", ctypes.c_int, ctypes.POINTER(ctypes.c_char_p), detail=True)


def directory() -> str:
    """The directory shoal's objects live in: the library's answer
    (shoal_dir(): SHOAL_DIR as the library read it once, else /dev/shm),
    never the environment read again here. OSError (with the reason) when
    SHOAL_DIR is set and refused."""
    out = ctypes.c_char_p()
    _dir(ctypes.byref(out))
    return out.value.decode("utf-8", "surrogateescape")


def _name(name: str) -> bytes:
    if not isinstance(name, str):
        raise TypeError(f"name must be str, not {type(name).__name__}")
    # Non-ASCII characters reach the C check as bytes >= 0x80, which it
    # refuses naming the rule (printable ASCII only).
    return name.encode("utf-8", "surrogateescape")


def _index(value: Any, what: str) -> int:
    """``value`` as an int the way numpy takes sizes (operator.index):
    ints and numpy integers, never floats or strings."""
    try:
        return operator.index(value)
    except TypeError:
        raise TypeError(f"{what} must be an integer, not {type(value).__name__}") from None


def _mode(mode: Any) -> int:
    """The mode for struct shoal_opts: None is 0, which the C call takes
    as its default (0600)."""
    if mode is None:
        return 0
    mode = _index(mode, "mode")
    if not 0 <= mode < 2**32:
        raise ValueError(f"mode {mode:#o} is not a permission mode")
    return mode


def unlink(name: str) -> None:
    """Remove the object ``name`` from shoal's directory (FileNotFoundError if absent)."""
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

    _map: Optional[_lib.Mapping]

    def __init__(self, name: str, *, create: bool = False, size: int = 0,
                 readonly: bool = False, mode: Optional[int] = None,
                 prefault: bool = False) -> None:
        self._map = None
        self._name = name
        self._readonly = bool(readonly) and not create
        out = _vp()
        if create:
            opts = _Opts(_mode(mode), PREFAULT if prefault else 0)
            if readonly:
                raise ValueError("a segment is created writable; open it readonly elsewhere")
            size = _index(size, "size")
            if size < 0:  # 0 goes to C, which names the rule (EINVAL)
                raise ValueError(f"segment {name!r}: size {size} must be at least 1 byte")
            if size >= 2**64:
                raise OverflowError(f"segment {name!r}: size {size} is too large")
            _create(_name(name), size, ctypes.byref(opts), ctypes.byref(out))
        else:
            flags = (RDONLY if readonly else 0) | (PREFAULT if prefault else 0)
            _open(_name(name), flags, ctypes.byref(out))
        self._map = _lib.Mapping(out.value, _close)
        self._size = _size(out.value)
        self._buf = _lib.view(self._map, _data(out.value), self._size, self._readonly)

    @classmethod
    def create(cls, name: str, size: int, *, mode: Optional[int] = None,
               prefault: bool = False) -> "Segment":
        """Create segment ``name`` of ``size`` bytes, zeroed."""
        return cls(name, create=True, size=size, mode=mode, prefault=prefault)

    @classmethod
    def open(cls, name: str, *, readonly: bool = False, prefault: bool = False) -> "Segment":
        """Open the existing segment ``name``."""
        return cls(name, readonly=readonly, prefault=prefault)

    @property
    def name(self) -> str:
        return self._name

    @property
    def size(self) -> int:
        return self._size

    @property
    def readonly(self) -> bool:
        return self._readonly

    @property
    def closed(self) -> bool:
        return self._map is None

    @property
    def buf(self) -> memoryview:
        if self._map is None:
            raise ValueError("segment is closed")
        return self._buf

    def close(self) -> None:
        """Let go of the mapping (it stays while views of it live)."""
        self._buf = None
        self._map = None

    def unlink(self) -> None:
        """Remove the name; mappings that exist stay valid."""
        unlink(self._name)

    def __enter__(self) -> "Segment":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __reduce__(self):
        return (_reopen, (self._name, self._readonly))

    def __repr__(self) -> str:
        state = "closed" if self.closed else f"size={self._size}"
        return f"<shoal.Segment {self._name!r} {state}{' readonly' if self._readonly else ''}>"


def _reopen(name: str, readonly: bool) -> Segment:
    return Segment.open(name, readonly=readonly)
