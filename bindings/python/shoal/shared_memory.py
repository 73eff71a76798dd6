"""shoal.SharedMemory: a drop-in for multiprocessing.shared_memory.SharedMemory.

Same constructor (``name=None, create=False, size=0``) and the same
``buf``, ``name``, ``size``, ``close()``, ``unlink()``, but no resource
tracker: no "leaked shared_memory" warnings at exit, and no segment
unlinked behind the back of a process that still uses it.

It is a shoal array of bytes, so it is counted by reference:
  - every open SharedMemory object (create or attach) holds a reference,
    dropped by ``close()`` or when it is garbage collected;
  - the creator also pins the name: the memory outlives every process, as
    the standard one does, until someone calls ``unlink()``;
  - ``unlink()`` drops the pin: the object is removed when the last process
    using it closes (never under it). Until then, opening it by name still
    works; that is the one difference from the standard class.
What a killed process held is taken back by ``shoal.reap()`` or
``shoal gc``.
"""
from __future__ import annotations

import ctypes
import operator
import os
import secrets
from typing import Any, Optional

from . import _lib
from .array import UINT8, _close, _create, _data, _nbytes, _open, _pin, _release, _unpin
from .segment import _name

_vp = ctypes.c_void_p


class SharedMemory:
    """Shared memory by name, counted by reference."""

    def __init__(self, name: Optional[str] = None, create: bool = False, size: int = 0) -> None:
        if create:
            try:
                size = operator.index(size)
            except TypeError:
                raise TypeError(f"'size' must be an integer, not {type(size).__name__}") from None
            if size <= 0:
                raise ValueError("'size' must be a positive number different from zero")
            if name is None:
                name = "psm_" + secrets.token_hex(4)
        elif name is None:
            raise ValueError("'name' can only be None if create=True")
        given, name = name, name.lstrip("/")
        out = _vp()
        try:
            if create:
                dims = (ctypes.c_size_t * 1)(size)
                _create(_name(name), UINT8, 0, 1, dims, None, ctypes.byref(out))
                ptr = out.value
                try:
                    _pin(ptr)
                except BaseException:
                    _close(ptr)
                    raise
            else:
                _open(_name(name), 0, ctypes.byref(out))
                ptr = out.value
        except OSError as e:
            if e.filename is not None:
                e.filename = given  # as the caller wrote it, "/" and all
            raise
        self._map = _lib.Mapping(ptr, _close)
        self._name = name
        self._size = _nbytes(ptr)
        self._held = True
        self._pid = os.getpid()
        self._buf = _lib.view(self._map, _data(ptr), self._size, False)

    @property
    def buf(self) -> Optional[memoryview]:
        """A memoryview of the whole block (None after close())."""
        return self._buf

    @property
    def name(self) -> str:
        return self._name

    @property
    def size(self) -> int:
        return self._size

    def close(self) -> None:
        """Drop this process's reference. Views taken from ``buf`` stay
        valid until they are gone."""
        self._buf = None
        if self._held and os.getpid() == self._pid:
            _release(self._map.ptr)
        self._held = False

    def unlink(self) -> None:
        """Drop the name's pin: the memory is removed once no process uses
        it. FileNotFoundError if it was unlinked already."""
        try:
            _unpin(self._map.ptr)
        except FileNotFoundError:
            raise FileNotFoundError(2, "No such file or directory", self._name) from None

    def __reduce__(self):
        return (self.__class__, (self._name, False, self._size))

    def __enter__(self) -> "SharedMemory":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}({self._name!r}, size={self._size})"
