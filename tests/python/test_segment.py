"""shoal.Segment: the loader, errors as Python exceptions, zero-copy views,
and other processes (fork, spawn, forkserver) seeing the same memory."""
import gc
import multiprocessing as mp
import os
import pickle
import stat

import numpy as np
import pytest

import shoal
from shoal import _lib


def test_version_matches_library():
    assert _lib.lib.shoal_version().decode() == shoal.__version__


def test_create_open_roundtrip(name):
    with shoal.Segment.create(name, 4096) as a:
        assert a.size == 4096 and a.name == name and not a.readonly
        assert bytes(a.buf[:8]) == b"\0" * 8
        a.buf[:5] = b"hello"
        with shoal.Segment.open(name) as b:
            assert bytes(b.buf[:5]) == b"hello"
            b.buf[0:1] = b"j"
        assert bytes(a.buf[:5]) == b"jello"
        a.unlink()


def test_errors_are_python_exceptions(name):
    with pytest.raises(FileNotFoundError):
        shoal.Segment.open(name)
    with shoal.Segment.create(name, 10):
        with pytest.raises(FileExistsError) as e:
            shoal.Segment.create(name, 10)
        assert e.value.errno == 17
    shoal.unlink(name)
    with pytest.raises(FileNotFoundError):
        shoal.unlink(name)
    for bad in ["", "a/b", "..", ".x", "a b", "x" * 201]:
        with pytest.raises(OSError) as e:
            shoal.Segment.create(bad, 10)
        assert e.value.errno == 22, bad
    with pytest.raises(OSError) as e:
        shoal.Segment.create(name, 0)
    assert e.value.errno == 22
    with pytest.raises(OSError) as e:
        shoal.Segment.create(name, 2**63)
    assert e.value.errno == 75  # EOVERFLOW
    with pytest.raises(OSError) as e:
        shoal.Segment.create(name, 2**42)
    assert e.value.errno == 28  # ENOSPC
    with pytest.raises(TypeError):
        shoal.Segment.create(b"bytes", 10)


def test_corrupt_object_is_an_error_not_a_crash(name):
    path = f"/dev/shm/shoal.{name}"
    with open(path, "wb") as f:
        f.write(os.urandom(8192))
    os.chmod(path, 0o600)
    with pytest.raises(OSError) as e:
        shoal.Segment.open(name)
    assert e.value.errno == 74  # EBADMSG
    assert "corrupt" in str(e.value)
    os.chmod(path, 0o666)
    with pytest.raises(PermissionError):
        shoal.Segment.open(name)
    os.unlink(path)


def test_mode_is_exact_whatever_the_umask(name):
    old = os.umask(0)
    try:
        with shoal.Segment.create(name, 10):
            pass
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(f"/dev/shm/shoal.{name}").st_mode) == 0o600
    shoal.unlink(name)
    with pytest.raises(OSError):
        shoal.Segment.create(name, 10, mode=0o666)


def test_readonly_view(name):
    with shoal.Segment.create(name, 100) as a, shoal.Segment.open(name, readonly=True) as r:
        assert r.readonly and r.buf.readonly
        with pytest.raises(TypeError):
            r.buf[0] = 1
        a.buf[0] = 7
        assert r.buf[0] == 7
        arr = np.frombuffer(r.buf, dtype=np.uint8)
        assert not arr.flags.writeable
    shoal.unlink(name)


def test_numpy_view_is_zero_copy_and_outlives_close(name):
    seg = shoal.Segment.create(name, 8 * 1000)
    arr = np.frombuffer(seg.buf, dtype=np.float64)
    arr[:] = np.arange(1000)
    seg.close()
    assert seg.closed
    with pytest.raises(ValueError):
        seg.buf
    gc.collect()
    # The view keeps the mapping: still the same memory, still readable.
    assert arr.sum() == sum(range(1000))
    with shoal.Segment.open(name) as again:
        assert np.frombuffer(again.buf, dtype=np.float64)[999] == 999
    shoal.unlink(name)


def _child_sum(seg):
    return int(np.frombuffer(seg.buf, dtype=np.int64).sum())


def _child_write(seg):
    seg.buf[0:4] = b"kid!"


@pytest.mark.parametrize("method", ["fork", "spawn", "forkserver"])
def test_other_processes_share_it(name, method):
    ctx = mp.get_context(method)
    with shoal.Segment.create(name, 8 * 4096) as seg:
        np.frombuffer(seg.buf, dtype=np.int64)[:] = 3
        assert len(pickle.dumps(seg)) < 200
        with ctx.Pool(1) as pool:
            assert pool.apply(_child_sum, (seg,)) == 3 * 4096
            pool.apply(_child_write, (seg,))
        assert bytes(seg.buf[:4]) == b"kid!"
        seg.unlink()


def test_loader_honours_shoal_library(tmp_path):
    import subprocess
    import sys
    env = dict(os.environ, SHOAL_LIBRARY=str(tmp_path / "nope.so"))
    r = subprocess.run([sys.executable, "-c", "import shoal"], env=env, capture_output=True, text=True)
    assert r.returncode != 0
    assert "SHOAL_LIBRARY" in r.stderr and "nope.so" in r.stderr


def test_errors_name_the_segment_and_the_rule(name):
    with pytest.raises(FileNotFoundError) as e:
        shoal.Segment.open(name)
    assert e.value.filename == name
    assert f"no segment named '{name}'" in str(e.value)
    with shoal.Segment.create(name, 10):
        with pytest.raises(FileExistsError) as e:
            shoal.Segment.create(name, 10)
        assert e.value.filename == name and f"segment '{name}' exists" in str(e.value)
        with pytest.raises(OSError) as e:
            shoal.Queue.open(name)
        assert e.value.errno == 91 and "is a segment, not a queue" in str(e.value)
    shoal.unlink(name)
    with pytest.raises(FileNotFoundError) as e:
        shoal.unlink(name)
    assert e.value.filename == name and name in str(e.value)
    rules = {"": "empty", "a/b": "contains '/'", "..": "starts with '.'", ".x": "starts with '.'",
             "a..b": '".."', "a b": "printable ASCII", "h\u00e9": "printable ASCII",
             "x" * 201: "longer than 200 bytes"}
    for bad, rule in rules.items():
        with pytest.raises(OSError) as e:
            shoal.Segment.create(bad, 10)
        assert e.value.errno == 22 and rule in str(e.value), (bad, str(e.value))
        assert e.value.filename == bad
    with pytest.raises(OSError) as e:
        shoal.Segment.create(name, 0)
    assert "size must be at least 1 byte" in str(e.value)
    with pytest.raises(OSError) as e:
        shoal.Segment.create(name, 10, mode=0o666)
    assert e.value.errno == 22 and "mode 0666" in str(e.value)
    for bad in (2.5, "10", None):
        with pytest.raises(TypeError, match="size must be an integer"):
            shoal.Segment.create(name, bad)
    with shoal.Segment.create(name, np_int(10)) as s:
        assert s.size == 10
        s.unlink()


def np_int(n):
    import numpy as np
    return np.int64(n)


def test_refused_objects_say_why(name):
    path = f"/dev/shm/shoal.{name}"
    with open(path, "wb") as f:
        f.write(b"NOTSHOAL" + bytes(8192))
    os.chmod(path, 0o600)
    with pytest.raises(OSError) as e:
        shoal.Segment.open(name)
    assert e.value.errno == 74 and "bad magic" in str(e.value) and e.value.filename == name
    os.chmod(path, 0o666)
    with pytest.raises(PermissionError) as e:
        shoal.Segment.open(name)
    assert "mode 0666" in str(e.value) and e.value.filename == name
    os.unlink(path)


def test_detail_is_only_for_its_own_error(name):
    """A detail recorded for one failure never explains another."""
    with pytest.raises(OSError):
        shoal.Segment.create("a/b", 10)
    assert shoal._lib.errdetail(22) != ""
    assert shoal._lib.errdetail(2) == ""
    assert str(shoal._lib.error(2)) == "[Errno 2] No such file or directory"
