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
    for bad in [object, "U3", "O", ">f8", [("a", "i4"), ("b", "f8")], "datetime64[s]"]:
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
