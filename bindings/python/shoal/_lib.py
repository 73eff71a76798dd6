"""Loading libshoal and declaring its functions: the one way into the library.

    libshoal.so  <- found: SHOAL_LIBRARY (exclusive when set), the in-tree
        |           build next to this source tree, the libdir recorded at
        |           `make install`, then ctypes.util.find_library
        v
    _constants.py  <- the one generated with that library (see
        |             gen_constants.py): beside it in a build tree
        |             (<build>/bindings/python/shoal/), else this package's
        |             own (installed); its VERSION must be the library's
        v
    declare()      <- every module's functions: argument and result types,
                      errcheck raising OSError subclasses; layout() checks
                      each ctypes Structure against the compiled struct

Nothing else in the package opens the library or reads a value of shoal.h
by hand: flags, limits, codes and layouts come from ``_constants``.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import functools
import importlib.util
import os
import sys
from typing import Any, Callable, Optional


class ShoalError(OSError):
    """An error code of shoal's own (``SHOAL_E*``, at or above SHOAL_ERRBASE)."""


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
# The same library again, for calls that keep the GIL (declare(gil=True)).
_pylib = ctypes.PyDLL(lib._name, handle=lib._handle)


def _mapped_path(func: Any) -> Optional[str]:
    """The file the loader mapped ``func`` from (the library really
    loaded, whatever name it was asked for), or None."""
    addr = ctypes.cast(func, ctypes.c_void_p).value
    try:
        with open("/proc/self/maps") as f:
            for line in f:
                parts = line.split(None, 5)
                lo, hi = (int(x, 16) for x in parts[0].split("-"))
                if lo <= addr < hi and len(parts) == 6:
                    return parts[5].strip()
    except (OSError, ValueError):
        pass
    return None


def _constants_path(libpath: Optional[str]) -> str:
    """The _constants.py made with the library at ``libpath``: in a build
    tree (<build>/lib/.libs/libshoal.so*), the one that build generated,
    and no other (a copy elsewhere may be stale); else the package's own."""
    if libpath:
        libs = os.path.dirname(libpath)
        if os.path.basename(libs) == ".libs" and \
                os.path.basename(os.path.dirname(libs)) == "lib":
            top = os.path.dirname(os.path.dirname(libs))
            path = os.path.join(top, "bindings", "python", "shoal", "_constants.py")
            if not os.path.exists(path):
                raise ImportError(f"libshoal {libpath} is from a build tree without "
                                  f"{path}: run make in {top}")
            return path
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_constants.py")
    if not os.path.exists(path):
        raise ImportError(f"no {path} for libshoal {libpath or lib._name}: this package "
                          "was neither built nor installed (make; make install)")
    return path


def _load_constants() -> Any:
    path = _constants_path(_mapped_path(lib.shoal_version) or lib._name)
    name = f"{__package__}._constants"
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    sys.modules[name] = mod  # `from . import _constants` finds this one
    setattr(sys.modules[__package__], "_constants", mod)
    return mod


def strerror(code: int) -> str:
    """shoal_strerror(): the description of a shoal or errno code."""
    return _strerror(-abs(code)).decode()


def errdetail(code: int) -> str:
    """shoal_errdetail(): why the last failing call in this thread failed
    with ``code`` (the object, the argument, the rule), or ""."""
    return _errdetail(-abs(code)).decode("utf-8", "replace")


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
            name_arg: Optional[int] = None, detail: bool = False, hot: bool = False,
            gil: bool = False) -> Any:
    """Declare lib.<name>: argument and result types, and (for int or ssize_t
    results) an errcheck that turns a negative return into an exception.
    ``name_arg``: the index of the argument that names the object (a name or
    a handle), which the exception carries as ``.filename``. ``detail``
    (implied by ``name_arg``): the C function clears shoal_errdetail() on
    entry, so the exception's message can be its explanation.

    ``hot=True``, for a call made once per message or task: a function of
    its own (not lib.<name>, which a plain declaration may have typed) with
    only ``restype``: no argument conversion, no errcheck, no errno saved.
    Its callers pass ready-made ctypes objects (c_void_p, c_size_t, c_int64,
    byref(...)), ints and bytes, and look at the return code themselves,
    because converting each argument costs more than the call.

    ``gil=True`` (with ``hot``): the call keeps the GIL (through a PyDLL
    handle of the same library), which saves releasing and taking it again,
    a third of the cost of a bare call. Only for calls that never wait
    (a try: timeout 0): no other Python thread runs until it returns."""
    if hot:
        if argtypes or name_arg is not None or detail:
            raise TypeError(f"{name}: a hot declaration has a result type only")
        if gil:
            return ctypes.PYFUNCTYPE(restype)((name, _pylib))
        return ctypes.CFUNCTYPE(restype)((name, lib))
    if gil:
        raise TypeError(f"{name}: only a hot declaration keeps the GIL")
    f = getattr(lib, name)
    f.restype = restype
    f.argtypes = list(argtypes)
    if check:
        if name_arg is not None:
            f.errcheck = _name_errcheck(name_arg)
        else:
            f.errcheck = _detail_errcheck if detail else _errcheck
    return f


_strerror = declare("shoal_strerror", ctypes.c_char_p, ctypes.c_int, check=False)
_errdetail = declare("shoal_errdetail", ctypes.c_char_p, ctypes.c_int, check=False)
_version = declare("shoal_version", ctypes.c_char_p, check=False)
C = _load_constants()
_loaded = _version().decode()
if _loaded != C.VERSION:
    raise ImportError(f"libshoal {_loaded} is loaded but {C.__file__} was generated from "
                      f"shoal.h {C.VERSION}")
VERSION = C.VERSION
SHOAL_ERRBASE = C.SHOAL_ERRBASE


def layout(tag: str) -> Callable[[Any], Any]:
    """Class decorator: ``cls`` (a ctypes Structure) must have the layout of
    ``struct <tag>`` as the compiler laid it out (_constants.STRUCTS): the
    same size, the same number of fields, and field by field, in order (as
    ctypes passes them: the Python names may differ), the same offset and
    size. Otherwise ImportError names the struct and the field."""
    def check(cls: Any) -> Any:
        try:
            size, fields = C.STRUCTS[tag]
        except KeyError:
            raise ImportError(f"{cls.__name__}: shoal.h has no struct {tag}") from None
        ours = [f[0] for f in cls._fields_]
        where = f"{cls.__name__} (struct {tag}, {C.__file__})"
        for i, (cname, off, sz) in enumerate(fields):
            if i >= len(ours):
                raise ImportError(f"{where}: field {cname} (offset {off}) is missing")
            f = getattr(cls, ours[i])
            if (f.offset, f.size) != (off, sz):
                raise ImportError(f"{where}: field {cname} is {sz} bytes at offset {off} in C, "
                                  f"{ours[i]} {f.size} bytes at offset {f.offset} here")
        if len(ours) > len(fields):
            raise ImportError(f"{where}: field {ours[len(fields)]} is not in C")
        if ctypes.sizeof(cls) != size:
            raise ImportError(f"{where}: {size} bytes in C, {ctypes.sizeof(cls)} here")
        return cls
    return check


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
