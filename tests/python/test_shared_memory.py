"""shoal.SharedMemory: used exactly like multiprocessing.shared_memory's,
across processes, with nothing printed at exit and nothing removed while a
process still uses it."""
import multiprocessing as mp
import os
import pickle
import subprocess
import sys
import textwrap

import pytest

import shoal


def _exists(name):
    return os.path.exists(f"/dev/shm/shoal.{name}")


def _python(code, timeout=60):
    """Run ``code`` in a fresh interpreter; return (returncode, stdout, stderr)."""
    r = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                       text=True, timeout=timeout, env=os.environ.copy())
    return r.returncode, r.stdout, r.stderr


def test_like_the_standard_one(name):
    shm = shoal.SharedMemory(name=name, create=True, size=1000)
    assert shm.name == name and shm.size == 1000 and len(shm.buf) == 1000
    shm.buf[:5] = b"hello"
    other = shoal.SharedMemory(name)
    assert bytes(other.buf[:5]) == b"hello" and other.size == 1000
    other.buf[0:1] = b"j"
    assert bytes(shm.buf[:5]) == b"jello"
    assert repr(other) == f"SharedMemory({name!r}, size=1000)"
    other.close()
    assert other.buf is None
    shm.close()
    assert _exists(name)           # the name pins it, as with the standard one
    shm.unlink()
    assert not _exists(name)
    with pytest.raises(FileNotFoundError):
        shm.unlink()
    with pytest.raises(FileNotFoundError):
        shoal.SharedMemory(name)


def test_errors_match_the_standard_one(name):
    with pytest.raises(ValueError):
        shoal.SharedMemory(name, create=True, size=0)
    with pytest.raises(ValueError):
        shoal.SharedMemory(name, create=True, size=-5)
    with pytest.raises(ValueError):
        shoal.SharedMemory()
    with pytest.raises(FileNotFoundError) as e:
        shoal.SharedMemory(name)
    assert e.value.filename == name and name in str(e.value)
    with pytest.raises(FileNotFoundError) as e:
        shoal.SharedMemory("/" + name)
    assert e.value.filename == "/" + name
    with pytest.raises(TypeError):
        shoal.SharedMemory(name, create=True, size=2.5)
    with shoal.SharedMemory("/" + name, create=True, size=10) as s:
        assert s.name == name
        with pytest.raises(FileExistsError) as e:
            shoal.SharedMemory(name, create=True, size=10)
        assert e.value.filename == name and "exists" in str(e.value)
        s.unlink()


def test_generated_names():
    a = shoal.SharedMemory(create=True, size=10)
    b = shoal.SharedMemory(create=True, size=10)
    try:
        assert a.name != b.name and a.name.startswith("psm_")
    finally:
        for s in (a, b):
            s.close()
            s.unlink()


def test_never_removed_while_another_process_uses_it(name):
    """The creator unlinks and closes while a reader still works on it: the
    reader keeps its data, and the object goes when the reader closes."""
    shm = shoal.SharedMemory(name, create=True, size=4096)
    shm.buf[:4] = b"data"
    r = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys, shoal
        s = shoal.SharedMemory({name!r})
        print("attached", flush=True)
        sys.stdin.readline()
        print(bytes(s.buf[:4]).decode(), flush=True)
        s.close()
        """)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert r.stdout.readline().strip() == "attached"
    shm.unlink()
    shm.close()
    assert _exists(name)             # the reader still holds it
    out, err = r.communicate("go\n", timeout=60)
    assert r.returncode == 0 and out.strip() == "data" and err == ""
    assert not _exists(name)


def test_no_warnings_from_other_processes(name):
    """The creator exits without unlinking, another process attaches, uses
    and exits: nothing is printed (no resource tracker), nothing is
    removed behind anyone's back."""
    rc, out, err = _python(f"""
        import shoal
        s = shoal.SharedMemory({name!r}, create=True, size=100)
        s.buf[:3] = b"abc"
        s.close()
        """)
    assert (rc, err) == (0, "")
    assert _exists(name)
    rc, out, err = _python(f"""
        import shoal
        s = shoal.SharedMemory({name!r})
        print(bytes(s.buf[:3]).decode())
        s.buf[:3] = b"xyz"
        """)  # never closed: the finalizer drops the reference
    assert (rc, out.strip(), err) == (0, "abc", "")
    assert _exists(name)
    with shoal.SharedMemory(name) as s:
        assert bytes(s.buf[:3]) == b"xyz"
        s.unlink()
    assert not _exists(name)


def test_the_standard_one_does_warn():
    """The check above can fail: the standard class, used the same way,
    prints the resource tracker's warning."""
    rc, out, err = _python("""
        from multiprocessing import shared_memory
        s = shared_memory.SharedMemory(create=True, size=100)
        s.close()
        """)
    assert rc == 0 and "leaked shared_memory" in err


def _worker(args):
    shm, i = args
    shm.buf[8 + i] = i + 1
    return bytes(shm.buf[1:4])


@pytest.mark.parametrize("method", ["fork", "spawn", "forkserver"])
def test_pool_pickles_by_name(method, name):
    with shoal.SharedMemory(name, create=True, size=64) as shm:
        shm.buf[1:4] = b"abc"
        assert len(pickle.dumps(shm)) < 200
        with mp.get_context(method).Pool(2) as pool:
            assert pool.map(_worker, [(shm, i) for i in range(4)]) == [b"abc"] * 4
        assert bytes(shm.buf[8:12]) == bytes([1, 2, 3, 4])
        shm.unlink()
    assert not _exists(name)
