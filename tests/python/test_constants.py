"""_constants.py: generated from shoal.h with the library, and checked
against what the loaded library does."""
import ctypes
import errno
import importlib
import os
import shutil
import subprocess
import sys

import pytest

import shoal
from shoal import _constants as C, _lib, array, queue, segment

memstat = importlib.import_module("shoal.memstat")  # shoal.memstat is the function


def test_it_is_the_one_built_with_the_library():
    assert C.VERSION == _lib.lib.shoal_version().decode() == shoal.__version__
    lib = _lib._mapped_path(_lib.lib.shoal_version)
    build = os.environ.get("SHOAL_TEST_BUILDDIR")
    if build and lib and lib.startswith(os.path.join(build, "lib", ".libs")):
        assert C.__file__ == os.path.join(build, "bindings", "python", "shoal", "_constants.py")
    assert sys.modules["shoal._constants"] is C


def test_error_codes_are_the_librarys():
    assert C.SHOAL_ERRBASE >= 4096 > max(errno.errorcode)
    codes = [code for _, code in C.ENUMS["shoal_error"]]
    assert C.SHOAL_EWORKERLOST in codes and C.SHOAL_EPOISONED in codes
    unknown = shoal.strerror(max(codes) + 1)  # one past the last: not a code
    assert unknown == "unknown shoal error"
    for code in codes:
        assert code > C.SHOAL_ERRBASE
        assert shoal.strerror(code) != unknown
        e = _lib.error(-code)
        assert isinstance(e, shoal.ShoalError) and e.errno == code


def test_dtype_codes_are_the_librarys():
    np = pytest.importorskip("numpy")
    members = dict(C.ENUMS["shoal_dtype"])
    assert members["SHOAL_DTYPE_RAW"] == array.RAW == C.SHOAL_DTYPE_RAW
    for name, code in members.items():
        if code == array.RAW:
            assert array._dtype_itemsize(code) == 0
            continue
        dt = np.dtype(array._TYPESTR[code])
        assert dt.name == array._dtype_name(code).decode() == name[len("SHOAL_DTYPE_"):].lower()
        assert dt.itemsize == array._dtype_itemsize(code)


def test_limits_and_flags_reach_the_library(name):
    # A limit read from _constants is the one C applies.
    with pytest.raises(OSError) as e:
        shoal.Queue(name, C.SHOAL_QUEUE_CAPACITY_MAX * 2, 64)
    assert e.value.errno == errno.EINVAL and str(C.SHOAL_QUEUE_CAPACITY_MAX) in str(e.value)
    with pytest.raises(OSError) as e:
        shoal.Queue(name, 2, C.SHOAL_QUEUE_MSG_MAX + 1)
    assert e.value.errno == errno.EINVAL
    with shoal.Segment.create(name, 10) as s:
        s.buf[0] = 7
        with shoal.Segment.open(name, readonly=True) as r:
            assert r.readonly and r.buf.readonly and r.buf[0] == 7
        s.unlink()
    assert segment.RDONLY == C.SHOAL_RDONLY and memstat.SMAPS == C.SHOAL_MEMSTAT_SMAPS
    assert shoal.memstat(smaps=True).pss is not None


def test_every_mirrored_struct_matches():
    checked = {"shoal_opts": segment._Opts, "shoal_queue_stats": queue._Stats,
               "shoal_queue_ticket": queue._Ticket, "shoal_array_desc": array._Desc,
               "shoal_array_holder": array._Holder, "shoal_memstat": memstat._MemStat}
    for tag, cls in checked.items():
        size, fields = C.STRUCTS[tag]
        assert ctypes.sizeof(cls) == size
        assert [getattr(cls, f[0]).offset for f in cls._fields_] == [f[1] for f in fields]


def test_a_layout_mismatch_fails_the_import(monkeypatch):
    size, fields = C.STRUCTS["shoal_queue_ticket"]
    moved = ((fields[0]), (fields[1][0], fields[1][1] + 4, fields[1][2])) + fields[2:]
    monkeypatch.setitem(C.STRUCTS, "shoal_queue_ticket", (size, moved))

    class _Ticket(ctypes.Structure):
        _fields_ = queue._Ticket._fields_

    with pytest.raises(ImportError, match=r"struct shoal_queue_ticket.*field redelivered"):
        _lib.layout("shoal_queue_ticket")(_Ticket)
    monkeypatch.setitem(C.STRUCTS, "shoal_queue_ticket", (size + 8, fields))
    with pytest.raises(ImportError, match=r"struct shoal_queue_ticket.*24 bytes in C, 16 here"):
        _lib.layout("shoal_queue_ticket")(_Ticket)
    monkeypatch.setitem(C.STRUCTS, "shoal_queue_ticket", (size, fields + (("extra", 16, 8),)))
    with pytest.raises(ImportError, match=r"field extra .* is missing"):
        _lib.layout("shoal_queue_ticket")(_Ticket)
    with pytest.raises(ImportError, match="no struct shoal_nothing"):
        _lib.layout("shoal_nothing")(_Ticket)


def _import_with(lib, tmp_path):
    env = dict(os.environ, SHOAL_LIBRARY=str(lib), PYTHONDONTWRITEBYTECODE="1")
    return subprocess.run([sys.executable, "-c", "import shoal"], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)


def test_a_build_tree_without_its_constants_is_refused(tmp_path):
    # A library in a build tree takes that tree's _constants.py, never
    # another copy (the package's own may be stale).
    libs = tmp_path / "lib" / ".libs"
    libs.mkdir(parents=True)
    shutil.copy(_lib._mapped_path(_lib.lib.shoal_version), libs / "libshoal.so")
    r = _import_with(libs / "libshoal.so", tmp_path)
    assert r.returncode != 0 and "run make in" in r.stderr, r.stderr
    # With one of another version beside it, the version check refuses it.
    gen = tmp_path / "bindings" / "python" / "shoal"
    gen.mkdir(parents=True)
    text = open(C.__file__).read().replace(f'VERSION = "{C.VERSION}"', 'VERSION = "99.0.0"', 1)
    (gen / "_constants.py").write_text(text)
    r = _import_with(libs / "libshoal.so", tmp_path)
    assert r.returncode != 0 and "generated from shoal.h 99.0.0" in r.stderr, r.stderr
    (gen / "_constants.py").write_text(open(C.__file__).read())
    r = _import_with(libs / "libshoal.so", tmp_path)
    assert r.returncode == 0, r.stderr


def test_a_hot_declaration_is_bare():
    f = _lib.declare("shoal_dtype_itemsize", ctypes.c_size_t, hot=True)
    assert f(ctypes.c_int(C.SHOAL_DTYPE_FLOAT64)) == 8 and f.errcheck is None
    assert f is not _lib.declare("shoal_dtype_itemsize", ctypes.c_size_t, hot=True)
    with pytest.raises(TypeError):
        _lib.declare("shoal_dtype_itemsize", ctypes.c_size_t, ctypes.c_int, hot=True)
