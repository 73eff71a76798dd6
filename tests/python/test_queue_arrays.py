"""shoal.Array objects through shoal.Queue: the queue holds a reference for
every array inside it, so a producer may release (or exit) right after
put_obj(); the consumer's get_obj() takes that reference over; unlinking a
queue with arrays still inside gives their references back."""
import io
import multiprocessing as mp
import os
import pickle
import queue

import numpy as np
import pytest

import shoal


def _exists(a_name):
    return os.path.exists(f"/dev/shm/shoal.{a_name}")


def _produce(qname, n):
    q = shoal.Queue(qname, create=False)
    a = shoal.Array.from_numpy(np.arange(n, dtype=np.int64))
    q.put_obj({"array": a, "tag": "from the producer"})
    a.release()      # at once: the queue keeps it alive
    q.detach()


@pytest.mark.parametrize("method", ["fork", "spawn", "forkserver"])
def test_producer_releases_right_after_put(name, method):
    with shoal.Queue(name, capacity=4, max_msg=1024) as q:
        p = mp.get_context(method).Process(target=_produce, args=(name, 1000))
        p.start()
        p.join(60)
        assert p.exitcode == 0
        msg = q.get_obj(timeout=10)
        a = msg["array"]
        assert msg["tag"] == "from the producer"
        assert a.refcount == 1             # ours alone: taken over from the queue
        assert int(a.numpy().sum()) == sum(range(1000))
        a_name = a.name
        a.release()
        assert not _exists(a_name)
        q.unlink()


def test_unlink_with_arrays_inside_frees_them(name):
    q = shoal.Queue(name, capacity=4, max_msg=1024)
    a = shoal.Array.zeros((10, 10), "float32")
    b = shoal.Array.zeros(5, "uint8")
    q.put_obj([a, a, b])
    assert a.refcount == 3 and b.refcount == 2   # ours + the queue's
    names = a.name, b.name
    a.release()
    assert _exists(names[0])
    q.unlink()                                   # b is still ours
    assert not _exists(names[0]) and _exists(names[1])
    assert b.refcount == 1
    b.release()
    assert not _exists(names[1])
    q.detach()


def test_failed_put_gives_the_reference_back(name):
    with shoal.Queue(name, capacity=2, max_msg=1024) as q:
        a = shoal.Array.zeros(3, "int8")
        q.put_obj(a)
        q.put_obj(a)
        with pytest.raises(queue.Full):
            q.put_obj(a, block=False)
        assert a.refcount == 3
        with pytest.raises(ValueError):          # too big for max_msg
            q.put_obj([a, b"x" * 2000])
        assert a.refcount == 3
        for _ in range(2):
            q.get_obj().release()
        assert a.refcount == 1
        a.release()
        with pytest.raises(ValueError):          # a released array cannot travel
            q.put_obj(a)
        q.unlink()


def test_foreign_persistent_id_is_refused(name):
    class Other(pickle.Pickler):
        def persistent_id(self, obj):
            return ("something else", 1) if obj == "x" else None

    with shoal.Queue(name, capacity=2, max_msg=1024) as q:
        buf = io.BytesIO()
        Other(buf, protocol=5).dump(["x"])
        q.put(buf.getvalue())
        with pytest.raises(pickle.UnpicklingError):
            q.get_obj()
        q.unlink()
