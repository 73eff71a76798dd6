"""shoal.Array: numpy round trips for every dtype, errors as exceptions,
views that outlive release, pickling as a handle through Pool.map and
multiprocessing queues under fork, spawn and forkserver, killed holders."""
import gc
import multiprocessing as mp
import os
import pickle
import signal
import time

import numpy as np
import pytest

import shoal

DTYPES = ["bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
          "float32", "float64", "complex64", "complex128", "V1", "V7", "V32"]


def _sample(dtype, shape, seed=0):
    rng = np.random.default_rng(seed)
    dt = np.dtype(dtype)
    raw = rng.integers(0, 256, size=int(np.prod(shape)) * dt.itemsize, dtype=np.uint8)
    x = raw.view(dt).reshape(shape) if dt.kind != "b" else (raw[: int(np.prod(shape))] & 1).astype(bool).reshape(shape)
    if dt.kind in "fc":
        x = rng.standard_normal(shape).astype(dt)
    return x


def _exists(name):
    return os.path.exists(f"/dev/shm/shoal.{name}")


@pytest.mark.parametrize("dtype", DTYPES)
def test_numpy_round_trip_every_dtype(dtype, name):
    x = _sample(dtype, (7, 3, 2))
    with shoal.Array.from_numpy(x, name=name) as a:
        assert a.dtype == np.dtype(dtype) and a.shape == (7, 3, 2) and a.nbytes == x.nbytes
        v = a.numpy()
        assert v.dtype == x.dtype and v.shape == x.shape
        assert v.tobytes() == x.tobytes()
        assert np.asarray(a).tobytes() == x.tobytes()
        b = pickle.loads(pickle.dumps(a))
        assert b.numpy().tobytes() == x.tobytes() and b.dtype == a.dtype
        b.release()
        c = shoal.Array.attach(a.handle, readonly=True)
        assert c.numpy().tobytes() == x.tobytes()
        c.release()
    assert not _exists(name)


def test_zeros_empty_and_shapes():
    with shoal.Array.zeros(10, "int32") as a:
        assert a.shape == (10,) and a.ndim == 1 and len(a) == 10 and a.size == 10
        assert not a.numpy().any()
    with shoal.Array.empty((2, 0, 3), np.float32) as e:
        assert e.nbytes == 0 and e.numpy().shape == (2, 0, 3)
    with shoal.Array.zeros((1,) * 32, "uint8") as m:
        assert m.ndim == 32
    a = shoal.Array.zeros((4, 5))
    assert a.dtype == np.float64 and a.numpy().flags.c_contiguous
    assert a.numpy().ctypes.data % 4096 == 0
    a.release()


def test_errors_are_python_exceptions(name):
    for bad in [object, "O", [("a", "i4"), ("b", "O")], "U0", "V0"]:
        with pytest.raises(TypeError):
            shoal.Array.zeros(3, bad)
    with pytest.raises(ValueError):
        shoal.Array.zeros((), "int8")
    with pytest.raises(ValueError):
        shoal.Array.zeros((1,) * 33, "int8")
    with pytest.raises(ValueError):
        shoal.Array.zeros((-1, 2), "int8")
    with pytest.raises(ValueError):
        shoal.Array.from_numpy(np.float64(3.0))
    with pytest.raises(OSError) as e:
        shoal.Array.zeros((2**40, 2**40), "float64")
    assert e.value.errno == 75  # EOVERFLOW
    with pytest.raises(OverflowError):
        shoal.Array.zeros((2**64,), "int8")
    with pytest.raises(OSError) as e:
        shoal.Array.zeros(2**42, "uint8", name=name)
    assert e.value.errno == 28  # ENOSPC
    assert not _exists(name)
    with pytest.raises(OSError) as e:
        shoal.Array.zeros(3, name="a/b")
    assert e.value.errno == 22
    for bad in ["", "shoal:array:x", "shoal:array:x@zz", "nonsense@0123456789abcdef"]:
        with pytest.raises(OSError) as e:
            shoal.Array.attach(bad)
        assert e.value.errno == 22, bad
    with pytest.raises(TypeError):
        shoal.Array.attach(b"shoal:array:x@0123456789abcdef")
    with pytest.raises(FileNotFoundError):
        shoal.Array.attach(f"shoal:array:{name}@0123456789abcdef")
    with shoal.Array.zeros(3, name=name):
        with pytest.raises(FileExistsError):
            shoal.Array.zeros(3, name=name)
    with shoal.Segment.create(name, 64) as s:
        with pytest.raises(OSError) as e:
            shoal.Array.open(name)
        assert e.value.errno == 91  # EPROTOTYPE
        s.unlink()


def test_gone_and_recycled_handles(name):
    a = shoal.Array.zeros(3, name=name)
    old = a.handle
    a.release()
    with pytest.raises(FileNotFoundError):
        shoal.Array.attach(old)
    with shoal.Array.zeros(3, name=name) as b:
        assert b.handle != old and b.handle.startswith(f"shoal:array:{name}@")
        with pytest.raises(FileNotFoundError):
            shoal.Array.attach(old)


def test_release_is_idempotent_and_views_outlive_it(name):
    a = shoal.Array.zeros((1000,), "int64", name=name)
    v = a.numpy()
    v[:] = np.arange(1000)
    x = np.asarray(a)
    a.release()
    a.release()
    assert a.released and not _exists(name)
    with pytest.raises(ValueError):
        a.numpy()
    with pytest.raises(ValueError):
        a.retain()
    # The array is freed and its name gone, yet both views still read the
    # same, mapped pages.
    del a
    gc.collect()
    assert v.sum() == 999 * 1000 // 2 and x[999] == 999
    a2 = shoal.Array.zeros(1)
    assert "released" not in repr(a2)
    a2.release()
    assert "released" in repr(a2)


def test_finalizer_releases(name):
    a = shoal.Array.zeros(10, name=name)
    b = shoal.Array.attach(a.handle)
    assert a.refcount == 2
    del b
    gc.collect()
    assert a.refcount == 1
    del a
    gc.collect()
    assert not _exists(name)


def test_retain_and_holders(name):
    with shoal.Array.zeros(10, name=name) as a:
        a.retain()
        assert a.refcount == 2
        assert a.holders() == [(os.getpid(), 2, True)]
        a.release()  # drops one; the retained one goes with the object
        assert a.refcount == 1


def test_readonly_attach(name):
    with shoal.Array.from_numpy(np.arange(6.0), name=name) as a:
        with shoal.Array.attach(a.handle, readonly=True) as r:
            assert r.readonly
            v = r.numpy()
            assert not v.flags.writeable
            with pytest.raises(ValueError):
                v[0] = 1
            assert not np.asarray(r).flags.writeable
            assert v[5] == 5.0


def test_pickle_is_a_small_handle(name):
    with shoal.Array.zeros((64, 1 << 20), "uint8", name=name) as a:
        s = pickle.dumps(a)
        assert len(s) < 200
        assert a.handle.encode() in s


# ---- other processes -------------------------------------------------------

def _task(args):
    a, i = args
    v = a.numpy()
    v[i] = i + 1          # each task writes its row, in place
    return float(v.sum(dtype=np.float64)) >= 0, a.refcount >= 2, os.getpid()


@pytest.mark.parametrize("method", ["fork", "spawn", "forkserver"])
def test_pool_map_pickles_handles(method, name):
    ctx = mp.get_context(method)
    with shoal.Array.zeros((8, 1000), "float64", name=name) as a:
        with ctx.Pool(2) as pool:
            out = pool.map(_task, [(a, i) for i in range(8)])
        assert all(ok and held for ok, held, _ in out)
        assert {pid for _, _, pid in out} - {os.getpid()}
        v = a.numpy()
        assert [v[i, 0] for i in range(8)] == [i + 1.0 for i in range(8)]
        # The workers' references went with their copies of the Array.
        deadline = time.monotonic() + 10
        while a.refcount != 1 and time.monotonic() < deadline:
            shoal.reap()
            time.sleep(0.05)
        assert a.refcount == 1
    assert not _exists(name)


def _producer(q, ev):
    a = shoal.Array.from_numpy(np.arange(100, dtype=np.int32))
    q.put(a)              # pickled: the handle
    ev.wait(30)           # the sender holds it until the receiver has it
    a.release()


@pytest.mark.parametrize("method", ["fork", "spawn", "forkserver"])
def test_array_through_mp_queue_from_a_process(method):
    ctx = mp.get_context(method)
    q, ev = ctx.Queue(), ctx.Event()
    p = ctx.Process(target=_producer, args=(q, ev))
    p.start()
    b = q.get(timeout=30)
    ev.set()
    p.join(30)
    assert p.exitcode == 0
    assert b.numpy().sum() == 4950
    assert b.refcount == 1           # the producer let go; we hold it now
    name = b.name
    b.release()
    assert not _exists(name)


def _child_reads(a, total):
    # Inherited by fork: readable, but holds no reference of its own.
    ok = a.numpy().sum() == total and a.inherited and not a.released
    a.release()      # does nothing in a child
    os._exit(0 if ok else 1)


def test_fork_inherits_no_reference(name):
    with shoal.Array.from_numpy(np.ones(50), name=name) as a:
        p = mp.get_context("fork").Process(target=_child_reads, args=(a, 50))
        p.start()
        p.join(30)
        assert p.exitcode == 0
        assert a.refcount == 1


def _hold_and_hang(handle, ready):
    a = shoal.Array.attach(handle)
    a.retain()
    ready.set()
    time.sleep(60)


def test_killed_holder_is_reaped(name):
    ctx = mp.get_context("fork")
    with shoal.Array.zeros(100, name=name) as a:
        ready = ctx.Event()
        p = ctx.Process(target=_hold_and_hang, args=(a.handle, ready))
        p.start()
        assert ready.wait(30)
        assert a.refcount == 3
        os.kill(p.pid, signal.SIGKILL)
        p.join(30)
        assert shoal.reap() >= 0
        assert a.refcount == 1
        assert a.holders() == [(os.getpid(), 1, True)]
    assert not _exists(name)


def test_hold_for_another_process(name):
    """A reference held for a process: its attach takes it over; a dead
    one's is reaped; a dead or reused pid is refused."""
    import subprocess
    sleeper = subprocess.Popen(["sleep", "60"])
    try:
        with open(f"/proc/{sleeper.pid}/stat") as f:
            start = int(f.read().rsplit(")", 1)[1].split()[19])
        with shoal.Array.zeros(100, name=name) as a:
            a.hold_for(sleeper.pid)
            with pytest.raises(ProcessLookupError, match="not alive"):
                a.hold_for(sleeper.pid, start + 1)  # the pid, another process
            assert a.refcount == 2 and len(a.holders()) == 2
            # For this process: the next attach takes it over.
            a.hold_for(os.getpid())
            assert a.refcount == 3
            b = shoal.Array.attach(a.handle)
            assert a.refcount == 3
            b.release()
        assert a.refcount == 1 and _exists(name)  # the sleeper's
        with pytest.raises(ValueError, match="released"):
            a.hold_for(os.getpid())
        sleeper.kill()
        sleeper.wait()
        with shoal.Array.zeros(1, name=name + "t") as t:
            with pytest.raises(ProcessLookupError):
                t.hold_for(sleeper.pid, start)
            with pytest.raises(ValueError, match="no process has pid"):
                t.hold_for(2**32 + 1)
        assert _exists(name)
        assert shoal.reap() >= 1
        assert not _exists(name)
    finally:
        sleeper.kill()
        sleeper.wait()


# ---- dtypes shoal holds as raw items: the dtype travels with the pickle

RAW_DTYPES = ["float16", "datetime64[ns]", "timedelta64[s]", "<U5", "S3", ">f8", ">i2",
              "longdouble", "clongdouble",
              [("a", "<i4"), ("b", "<f8", (2,)), ("c", "S2")],
              np.dtype([("x", "u1"), ("y", "<f4")], align=True),
              np.dtype({"names": ["p"], "formats": ["<u2"], "offsets": [2], "itemsize": 6})]


def _fill(x):
    """Non-zero bytes everywhere, valid for the dtype (no NaT needed)."""
    raw = np.frombuffer(np.random.default_rng(1).integers(1, 120, x.nbytes, dtype=np.uint8)
                        .tobytes(), dtype=np.uint8)
    x.view(np.uint8).reshape(-1)[:] = raw
    return x


def _child_unpickles(payload):
    """In another process: unpickle, report dtype, shape and bytes."""
    a = pickle.loads(payload)
    try:
        return a.dtype, a.shape, a.numpy().tobytes(), np.asarray(a).dtype
    finally:
        a.release()


@pytest.mark.parametrize("dtype", RAW_DTYPES, ids=str)
@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_raw_dtypes_round_trip_across_processes(dtype, method, name):
    dt = np.dtype(dtype)
    with shoal.Array.zeros((3, 2), dt, name=name) as a:
        assert a.dtype == dt and a.shape == (3, 2) and a.nbytes == 6 * dt.itemsize
        x = _fill(a.numpy())
        assert a.numpy().dtype == dt and np.asarray(a).dtype == dt
        ctx = mp.get_context(method)
        with ctx.Pool(1) as pool:
            got_dt, got_shape, got_bytes, got_np = pool.apply(_child_unpickles, (pickle.dumps(a),))
        assert got_dt == dt and got_np == dt and got_shape == (3, 2)
        assert got_bytes == x.tobytes()
        # A process with the handle string alone names the dtype itself.
        with shoal.Array.attach(a.handle) as b:
            assert b.dtype == np.dtype(f"V{dt.itemsize}")
        with shoal.Array.attach(a.handle, dtype=dt) as b:
            assert b.dtype == dt and b.numpy().tobytes() == x.tobytes()
        with pytest.raises(ValueError, match="does not fit"):
            shoal.Array.attach(a.handle, dtype=f"V{dt.itemsize + 1}")
    assert not _exists(name)


def test_raw_dtype_through_a_shoal_queue(name):
    dt = np.dtype([("t", "M8[us]"), ("v", "<f2")])
    with shoal.Queue(name, 4, 256) as q, shoal.Array.zeros(4, dt) as a:
        a.numpy()["v"] = [1, 2, 3, 4]
        q.put_obj({"a": a})
        b = q.get_obj()["a"]
        assert b.dtype == dt and list(b.numpy()["v"]) == [1, 2, 3, 4]
        b.release()
        q.unlink()


def test_raw_dtype_through_a_claim(name):
    # A claim attaches with a reference of its own: the raw items' dtype
    # must travel that way too, as it does through get_obj().
    dt = np.dtype([("t", "M8[us]"), ("v", "<f2")])
    with shoal.Queue(name, 4, 256) as q, shoal.Array.zeros(4, dt) as a:
        a.numpy()["v"] = [1, 2, 3, 4]
        q.put_obj({"a": a})
        with q.claim_obj(timeout=5) as c:
            b = c.data["a"]
            assert b.dtype == dt and list(b.numpy()["v"]) == [1, 2, 3, 4]
            b.release()
        q.unlink()


def test_plain_dtypes_keep_their_codes_and_subarrays_add_dims():
    with shoal.Array.zeros(2, ("<f8", (3,))) as a:
        assert a.dtype == np.float64 and a.shape == (2, 3)
    with shoal.Array.zeros(2, np.dtype("i8").newbyteorder("=")) as a:
        assert a.dtype == np.int64
    with shoal.Array.zeros(2, "float64") as a:
        with pytest.raises(ValueError, match="holds float64"):
            shoal.Array.attach(a.handle, dtype="M8[ns]")
        with shoal.Array.attach(a.handle, dtype="<f8") as b:
            assert b.dtype == np.float64


def test_object_dtypes_are_refused_with_a_reason():
    with pytest.raises(TypeError, match="holds Python objects"):
        shoal.Array.zeros(3, object)
    with pytest.raises(TypeError, match="holds Python objects"):
        shoal.Array.from_numpy(np.array([1, "a"], dtype=object))
    with pytest.raises(TypeError, match="0 bytes"):
        shoal.Array.zeros(3, "S0")


# ---- shapes follow numpy's rule (operator.index)

def test_shapes_are_integers_as_numpy_takes_them():
    for shape, want in [(7, (7,)), (np.int64(7), (7,)), ((np.uint8(2), 3), (2, 3)),
                        ([4], (4,)), (range(1, 3), (1, 2))]:
        with shoal.Array.zeros(shape, "uint8") as a:
            assert a.shape == want == np.zeros(shape, "uint8").shape
    for bad in [(2.5,), 2.5, "10", ("1", "0"), (np.float64(3),), 1j]:
        with pytest.raises(TypeError):
            np.zeros(bad)
        with pytest.raises(TypeError) as e:
            shoal.Array.zeros(bad, "uint8")
        assert "integer" in str(e.value)
    with pytest.raises(ValueError, match="negative"):
        shoal.Array.zeros((3, -1))


def test_calling_array_directly_is_a_clear_type_error():
    import subprocess
    import sys
    code = ("import shoal\n"
            "try:\n    shoal.Array((10, 10))\n"
            "except TypeError as e:\n    print('TypeError', e)\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       timeout=120, env=os.environ)
    assert r.returncode == 0, r.stderr
    assert "Array.zeros" in r.stdout and "attach" in r.stdout
    assert r.stderr == ""  # no "Exception ignored in __del__" noise
    with pytest.raises(TypeError, match="Array.zeros"):
        shoal.Array(12345)


# ---- errors name the object and the rule

def test_errors_name_the_array_and_the_rule(name):
    with pytest.raises(FileNotFoundError) as e:
        shoal.Array.open(name)
    assert e.value.filename == name and f"no array named '{name}'" in str(e.value)
    h = f"shoal:array:{name}@0123456789abcdef"
    with pytest.raises(FileNotFoundError) as e:
        shoal.Array.attach(h)
    assert e.value.filename == h and name in str(e.value)
    with shoal.Array.zeros(3, name=name) as a:
        with pytest.raises(FileExistsError) as e:
            shoal.Array.zeros(3, name=name)
        assert e.value.filename == name and "exists" in str(e.value)
        old = a.handle
    with pytest.raises(FileNotFoundError) as e:
        shoal.Array.attach(old)
    assert name in str(e.value)
    with pytest.raises(OSError) as e:
        shoal.Array.zeros(3, name="a..b")
    assert e.value.errno == 22 and '".."' in str(e.value) and e.value.filename == "a..b"
    with pytest.raises(OSError) as e:
        shoal.Array.attach("shoal:array:x@12")
    assert e.value.errno == 22 and "16 hex digits" in str(e.value)
    with pytest.raises(OSError) as e:
        shoal.Array.zeros((2**40, 2**40), "float64", name=name)
    assert e.value.errno == 75 and name in str(e.value) and "overflows" in str(e.value)
    with pytest.raises(OSError) as e:
        shoal.Array.zeros(2**42, "uint8", name=name)
    assert e.value.errno == 28 and name in str(e.value) and "no room" in str(e.value)
    with shoal.Segment.create(name, 64) as s:
        with pytest.raises(OSError) as e:
            shoal.Array.open(name)
        assert e.value.errno == 91 and "is a segment, not a array" in str(e.value)
        s.unlink()


def _attach_and_report(handle):
    try:
        shoal.Array.attach(handle)
    except OSError as e:
        return e.errno, str(e)
    return 0, ""


def test_ledger_full_names_the_array_and_its_limit(name):
    """Fill the holder ledger with queue holders (put_obj gives each queue a
    reference), then attach from another process."""
    from shoal.array import HOLDERS_MAX
    qs = []
    with shoal.Array.zeros(1, "uint8", name=name) as a:
        try:
            for i in range(HOLDERS_MAX + 1):
                q = shoal.Queue(f"{name}.q{i}", 2, 256)
                qs.append(q)
                try:
                    q.put_obj(a)
                except OSError as e:
                    assert e.errno == 87  # EUSERS
                    err = e
                    break
            else:
                pytest.fail("the ledger never filled")
            limit = len(qs)  # the creator's line and len(qs) - 1 queues
            assert limit == HOLDERS_MAX
            assert f"array '{name}': holder ledger full ({limit} live holders" in str(err)
            ctx = mp.get_context("fork")
            with ctx.Pool(1) as pool:
                err, msg = pool.apply(_attach_and_report, (a.handle,))
            assert err == 87 and "holder ledger full" in msg and name in msg
        finally:
            # Names first, one reap after: unlinking each queue reaps.
            for q in qs:
                os.unlink(f"/dev/shm/shoal.{q.name}")
                q.detach()
            shoal.reap()
            assert a.refcount == 1


def _hold_until_told(handle, up, down):
    """A holder process: attach, say so, wait until the pipe closes."""
    os.close(up[0])
    os.close(down[1])
    try:
        a = shoal.Array.attach(handle)
        os.write(up[1], b"k")
    except OSError:
        os.write(up[1], b"e")
        os._exit(1)
    os.read(down[0], 1)
    a.close()
    os._exit(0)


def test_hundreds_of_processes_hold_one_array(name):
    """More processes than SharedMemory-style limits allow (the first-page
    ledger's 204, a typical 300) hold one array at once; each is counted,
    and the books balance when they go."""
    n = 320
    with shoal.Array.zeros(1000, "float64", name=name) as a:
        up, down = os.pipe(), os.pipe()
        kids = []
        for _ in range(n):
            pid = os.fork()
            if pid == 0:
                _hold_until_told(a.handle, up, down)
            kids.append(pid)
        os.close(up[1])
        os.close(down[0])
        got = b""
        while len(got) < n:
            chunk = os.read(up[0], n - len(got))
            assert chunk
            got += chunk
        assert got == b"k" * n
        assert a.refcount == n + 1
        assert len(a.holders()) == n + 1
        assert all(alive for _, _, alive in a.holders())
        os.close(down[1])
        for pid in kids:
            assert os.waitpid(pid, 0)[1] == 0
        os.close(up[0])
        assert a.refcount == 1
    assert not _exists(name)
