"""Loading libshoal and declaring its functions: the one place for both.

The library is found, in order: the ``SHOAL_LIBRARY`` environment variable
(exclusive when set), the in-tree build next to this source tree, the libdir
recorded at ``make install``, then ``ctypes.util.find_library``.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os
from typing import Any, Callable, Optional

VERSION = "0.1.0"
SHOAL_ERRBASE = 4096


class ShoalError(OSError):
    """An error code of shoal's own (``SHOAL_E*``, at or above 4096)."""


def _candidates():
    env = os.environ.get("SHOAL_LIBRARY")
    if env:
        yield env
        return
    here = os.path.dirname(os.path.abspath(__file__))
    intree = os.path.join(here, os.pardir, os.pardir, os.pardir, "lib", ".libs", "libshoal.so")
    if os.path.exists(intree):
        yield os.path.normpath(intree)
    try:
        from ._build import LIBDIR  # written by `make install`
    except ImportError:
        pass
    else:
        yield os.path.join(LIBDIR, "libshoal.so.0")
    found = ctypes.util.find_library("shoal")
    if found:
        yield found
    yield "libshoal.so.0"


def _load():
    tried = []
    for path in _candidates():
        try:
            return ctypes.CDLL(path, use_errno=True)
        except OSError as e:
            tried.append(f"{path}: {e}")
    raise ImportError("cannot load libshoal; set SHOAL_LIBRARY to its path. Tried:\n  "
                      + "\n  ".join(tried))


lib = _load()
lib.shoal_strerror.restype = ctypes.c_char_p
lib.shoal_strerror.argtypes = [ctypes.c_int]
lib.shoal_version.restype = ctypes.c_char_p
lib.shoal_version.argtypes = []
lib.shoal_errdetail.restype = ctypes.c_char_p
lib.shoal_errdetail.argtypes = [ctypes.c_int]

_loaded = lib.shoal_version().decode()
if _loaded.split(".")[:2] != VERSION.split(".")[:2]:
    raise ImportError(f"libshoal {_loaded} is loaded but this package is {VERSION}")


def strerror(code: int) -> str:
    """shoal_strerror(): the description of a shoal or errno code."""
    return lib.shoal_strerror(-abs(code)).decode()


def errdetail(code: int) -> str:
    """shoal_errdetail(): why the last failing call in this thread failed
    with ``code`` (the object, the argument, the rule), or ""."""
    return lib.shoal_errdetail(-abs(code)).decode("utf-8", "replace")


def error(code: int, name: Optional[str] = None, detail: bool = False) -> OSError:
    """The exception for a negative or positive shoal return code.

    errno codes come out as Python's own OSError subclasses
    (FileExistsError, FileNotFoundError, PermissionError, TimeoutError, ...);
    shoal's own codes as ShoalError. ``.errno`` is always set. The message is
    the code's description, or with ``detail`` the library's explanation of
    this failure when it gave one (shoal_errdetail(): only right after a
    call that clears it on entry, see shoal.h, before any other shoal call
    in this thread); ``name``, the object's name as the caller gave it,
    becomes ``.filename``, as for files.
    """
    code = abs(code)
    msg = (detail and errdetail(code)) or strerror(code)
    cls = ShoalError if code >= SHOAL_ERRBASE else OSError
    return cls(code, msg) if name is None else cls(code, msg, name)


def _errcheck(rc, func, args):
    if rc < 0:
        raise error(rc)
    return rc


def _detail_errcheck(rc, func, args):
    if rc < 0:
        raise error(rc, detail=True)
    return rc


def _name_errcheck(index: int) -> Callable[[Any, Any, tuple], Any]:
    def errcheck(rc, func, args):
        if rc < 0:
            name = args[index]
            if isinstance(name, bytes):
                name = name.decode("utf-8", "surrogateescape")
            raise error(rc, name, detail=True)
        return rc
    return errcheck


def declare(name: str, restype: Any, *argtypes: Any, check: bool = True,
            name_arg: Optional[int] = None, detail: bool = False) -> Any:
    """Declare lib.<name>: argument and result types, and (for int or ssize_t
    results) an errcheck that turns a negative return into an exception.
    ``name_arg``: the index of the argument that names the object (a name or
    a handle), which the exception carries as ``.filename``. ``detail``
    (implied by ``name_arg``): the C function clears shoal_errdetail() on
    entry, so the exception's message can be its explanation."""
    f = getattr(lib, name)
    f.restype = restype
    f.argtypes = list(argtypes)
    if check:
        if name_arg is not None:
            f.errcheck = _name_errcheck(name_arg)
        else:
            f.errcheck = _detail_errcheck if detail else _errcheck
    return f


class Mapping:
    """Owns one C handle that keeps memory mapped; frees it with ``closer``
    when the last Python reference goes (the owner and every view)."""

    __slots__ = ("ptr", "_closer", "__weakref__")

    def __init__(self, ptr: int, closer: Callable[[int], Any]) -> None:
        # Only a real address is ever handed to the closer: anything else
        # would make __del__ raise (and print) from a finalizer.
        if not isinstance(ptr, int) or not ptr:
            self.ptr = None
            raise TypeError(f"a C handle address is an int, not {type(ptr).__name__}")
        self.ptr = ptr
        self._closer = closer

    def __del__(self):
        ptr, self.ptr = self.ptr, None
        if ptr:
            self._closer(ptr)


@functools.lru_cache(maxsize=64)
def _pinned_type(size):
    # A subclass has a __dict__, so a view can hold on to its Mapping.
    return type("_Pinned", (ctypes.c_ubyte * size,), {})


def view(mapping: Mapping, addr: int, size: int, readonly: bool) -> memoryview:
    """A zero-copy memoryview of ``size`` bytes at ``addr`` that keeps
    ``mapping`` (and so the memory) alive for as long as it, or anything made
    from it (a numpy array, a slice), lives."""
    if size == 0:
        return memoryview(b"") if readonly else memoryview(bytearray())
    arr = _pinned_type(size).from_address(addr)
    arr.mapping = mapping
    mv = memoryview(arr).cast("B")
    return mv.toreadonly() if readonly else mv
