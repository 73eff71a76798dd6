"""Loading libshoal and declaring its functions: the one place for both.

The library is found, in order: the ``SHOAL_LIBRARY`` environment variable
(exclusive when set), the in-tree build next to this source tree, the libdir
recorded at ``make install``, then ``ctypes.util.find_library``.
"""
import ctypes
import ctypes.util
import functools
import os

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

_loaded = lib.shoal_version().decode()
if _loaded.split(".")[:2] != VERSION.split(".")[:2]:
    raise ImportError(f"libshoal {_loaded} is loaded but this package is {VERSION}")


def strerror(code):
    """shoal_strerror(): the description of a shoal or errno code."""
    return lib.shoal_strerror(-abs(code)).decode()


def error(code):
    """The exception for a negative or positive shoal return code.

    errno codes come out as Python's own OSError subclasses
    (FileExistsError, FileNotFoundError, PermissionError, TimeoutError, ...);
    shoal's own codes as ShoalError. ``.errno`` is always set.
    """
    code = abs(code)
    if code >= SHOAL_ERRBASE:
        return ShoalError(code, strerror(code))
    return OSError(code, strerror(code))


def _errcheck(rc, func, args):
    if rc < 0:
        raise error(rc)
    return rc


def declare(name, restype, *argtypes, check=True):
    """Declare lib.<name>: argument and result types, and (for int or ssize_t
    results) an errcheck that turns a negative return into an exception."""
    f = getattr(lib, name)
    f.restype = restype
    f.argtypes = list(argtypes)
    if check:
        f.errcheck = _errcheck
    return f


class Mapping:
    """Owns one C handle that keeps memory mapped; frees it with ``closer``
    when the last Python reference goes (the owner and every view)."""

    __slots__ = ("ptr", "_closer", "__weakref__")

    def __init__(self, ptr, closer):
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


def view(mapping, addr, size, readonly):
    """A zero-copy memoryview of ``size`` bytes at ``addr`` that keeps
    ``mapping`` (and so the memory) alive for as long as it, or anything made
    from it (a numpy array, a slice), lives."""
    if size == 0:
        return memoryview(b"") if readonly else memoryview(bytearray())
    arr = _pinned_type(size).from_address(addr)
    arr.mapping = mapping
    mv = memoryview(arr).cast("B")
    return mv.toreadonly() if readonly else mv
