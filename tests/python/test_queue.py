"""shoal.Queue: multiprocessing.Queue's behaviour (block, timeout, Empty,
Full), batches, pickled objects, close and drain, errors as exceptions, the
GIL released while blocked, Ctrl-C, and processes started by fork, spawn and
forkserver."""
import errno
import multiprocessing as mp
import os
import pickle
import queue
import signal
import subprocess
import sys
import threading
import time

import pytest

import shoal


@pytest.fixture
def q(name):
    with shoal.Queue(name, capacity=8, max_msg=64) as q:
        yield q
        q.unlink()


def test_fifo_and_bytes_like(q):
    q.put(b"one")
    q.put(bytearray(b"two"))
    q.put(memoryview(b"three"))
    q.put(b"")
    assert q.qsize() == 4 and not q.empty() and not q.full()
    assert [q.get() for _ in range(4)] == [b"one", b"two", b"three", b""]
    assert q.empty()
    assert q.capacity == 8 and q.max_msg == 64
    assert "capacity=8" in repr(q)


def test_empty_and_full_like_multiprocessing(q):
    with pytest.raises(queue.Empty):
        q.get_nowait()
    with pytest.raises(queue.Empty):
        q.get(False)
    with pytest.raises(queue.Empty):
        q.get(True, 0)
    t0 = time.monotonic()
    with pytest.raises(queue.Empty):
        q.get(timeout=0.15)
    assert 0.14 <= time.monotonic() - t0 < 1.0
    for i in range(8):
        q.put_nowait(bytes([i]))
    assert q.full() and q.qsize() == 8
    with pytest.raises(queue.Full):
        q.put_nowait(b"x")
    with pytest.raises(queue.Full):
        q.put(b"x", True, 0)
    t0 = time.monotonic()
    with pytest.raises(queue.Full):
        q.put(b"x", timeout=0.15)
    assert 0.14 <= time.monotonic() - t0 < 1.0
    with pytest.raises(ValueError):
        q.put(b"x", timeout=-1)
    assert q.get() == b"\x00"


def test_too_long(q):
    with pytest.raises(ValueError):
        q.put(b"x" * 65)
    with pytest.raises(ValueError):
        q.put_many([b"a", b"x" * 65])
    assert q.empty()  # all or nothing


def test_receive_buffer_grows(name):
    with shoal.Queue(name, capacity=4, max_msg=4 << 20) as q:
        big = os.urandom(3 << 20)
        q.put(b"small")
        q.put(big)
        assert q.get() == b"small"
        assert q.get() == big  # bigger than the first buffer: it grows
        q.put_many([big, b"s"])
        assert q.get_many(2) == [big]  # a batch buffer grows too
        assert q.get_many(2) == [b"s"]
        q.unlink()


def test_batches(q):
    items = [bytes([i]) * i for i in range(12)]
    assert q.put_many(items[:5]) == 5
    assert q.get_many(3) == items[:3]
    assert q.put_many(items[5:], timeout=0.05) == 6  # 8 slots: two did not fit
    assert q.get_many(100) == items[3:11]
    with pytest.raises(queue.Empty):
        q.get_many(4, block=False)
    with pytest.raises(queue.Empty):
        q.get_many(4, timeout=0.05)
    assert q.put_many([]) == 0
    for i in range(8):
        q.put(b"f")
    with pytest.raises(queue.Full):
        q.put_many([b"a"], block=False)
    with pytest.raises(ValueError):
        q.get_many(0)


def test_objects_pickle_protocol_5(q):
    objs = [{"a": [1, 2.5, None]}, ("t", b"b"), 10**30, "ü"]
    for o in objs:
        q.put_obj(o)
    assert [q.get_obj() for _ in objs] == objs
    q.put_obj(bytearray(b"x"))
    raw = q.get()
    assert raw[:2] == b"\x80\x05"


def test_close_and_drain(q):
    q.put(b"a")
    q.put(b"b")
    assert not q.closed
    q.close()
    assert q.closed
    with pytest.raises(BrokenPipeError):
        q.put(b"c")
    with pytest.raises(BrokenPipeError):
        q.put_many([b"c"])
    assert q.get() == b"a"
    assert q.get_many(5) == [b"b"]
    with pytest.raises(BrokenPipeError):
        q.get()
    with pytest.raises(BrokenPipeError):
        q.get_many(2)


def test_close_wakes_a_blocked_get(q):
    got = []

    def reader():
        try:
            q.get()
        except BrokenPipeError as e:
            got.append(e)

    t = threading.Thread(target=reader)
    t.start()
    time.sleep(0.1)
    q.close()
    t.join(5)
    assert not t.is_alive() and len(got) == 1


def test_errors_are_exceptions(name):
    with pytest.raises(FileNotFoundError):
        shoal.Queue.open(name)
    with shoal.Queue(name, 4, 8) as q:
        with pytest.raises(FileExistsError):
            shoal.Queue(name, 4, 8)
        q.unlink()
    for cap in (0, 3, 1 << 30):
        with pytest.raises(OSError) as e:
            shoal.Queue(name, cap, 8)
        assert e.value.errno == errno.EINVAL
    with pytest.raises(OSError) as e:
        shoal.Queue("a/b", 4, 8)
    assert e.value.errno == errno.EINVAL
    with shoal.Segment.create(name, 100):
        with pytest.raises(OSError) as e:
            shoal.Queue.open(name)
        assert e.value.errno == errno.EPROTOTYPE
        with pytest.raises(OSError):
            shoal.queue.unlink(name)
        shoal.unlink(name)
    with pytest.raises(FileNotFoundError):
        shoal.queue.unlink(name)


def test_corrupt_queue_is_refused(name):
    with shoal.Queue(name, 4, 8) as q:
        path = f"/dev/shm/shoal.{name}"
        with open(path, "r+b") as f:
            f.seek(128 + 4)  # capacity
            f.write((6).to_bytes(4, "little"))
        with pytest.raises(OSError) as e:
            shoal.Queue.open(name)
        assert e.value.errno == errno.EBADMSG
        assert "corrupt" in str(e.value)
        q.detach()
        assert "detached" in repr(q)
        with pytest.raises(ValueError):
            q.put(b"x")
    shoal.unlink(name)


def test_stats(q):
    q.put(b"a")
    q.get()
    st = q.stats()
    assert st["pushes"] == 1 and st["pops"] == 1 and st["depth"] == 0
    assert st["capacity"] == 8 and st["participants"] == 1
    assert set(st) >= {"sleeps", "recoveries", "dropped", "redelivered", "max_msg"}


def test_pickles_as_its_name(q):
    q.put(b"x")
    r = pickle.loads(pickle.dumps(q))
    assert r.name == q.name and r.get() == b"x"
    r.detach()


def test_threads_share_a_queue(name):
    with shoal.Queue(name, capacity=16, max_msg=16) as q:
        n, out, lock = 2000, [], threading.Lock()

        def put(k):
            for i in range(n):
                q.put(b"%d:%d" % (k, i))

        def get():
            mine = []
            while True:
                try:
                    mine.append(q.get())
                except BrokenPipeError:
                    break
            with lock:
                out.extend(mine)

        ps = [threading.Thread(target=put, args=(k,)) for k in range(3)]
        gs = [threading.Thread(target=get) for _ in range(3)]
        for t in ps + gs:
            t.start()
        for t in ps:
            t.join()
        q.close()
        for t in gs:
            t.join()
        assert sorted(out) == sorted(b"%d:%d" % (k, i) for k in range(3) for i in range(n))
        q.unlink()


def test_blocked_get_releases_the_gil(q):
    ticks = []
    t = threading.Thread(target=lambda: ticks.append(q.get(timeout=2)))
    t.start()
    spins = 0
    t0 = time.monotonic()
    while time.monotonic() - t0 < 0.2:
        spins += 1  # runs only if the blocked thread let go of the GIL
    q.put(b"done")
    t.join(5)
    assert ticks == [b"done"] and spins > 1000


def test_ctrl_c_interrupts_a_blocked_get(name):
    with shoal.Queue(name, 4, 8) as q:
        code = ("import shoal, sys\n"
                f"q = shoal.Queue.open({name!r})\n"
                "print('ready', flush=True)\n"
                "try:\n    q.get()\nexcept KeyboardInterrupt:\n    sys.exit(42)\n")
        p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)
        assert p.stdout.readline() == b"ready\n"
        time.sleep(0.2)
        t0 = time.monotonic()
        p.send_signal(signal.SIGINT)
        assert p.wait(10) == 42
        assert time.monotonic() - t0 < 1.0
        q.unlink()


def _worker(jobs, results):
    while True:
        try:
            n = jobs.get_obj()
        except BrokenPipeError:
            return
        results.put_obj((n, n * n, os.getpid()))


@pytest.mark.parametrize("method", ["fork", "spawn", "forkserver"])
def test_multiprocessing_workers(name, method):
    ctx = mp.get_context(method)
    jobs = shoal.Queue(name + ".jobs", capacity=64, max_msg=256)
    results = shoal.Queue(name + ".res", capacity=256, max_msg=256)
    try:
        procs = [ctx.Process(target=_worker, args=(jobs, results)) for _ in range(3)]
        for p in procs:
            p.start()
        for i in range(200):
            jobs.put_obj(i)
        jobs.close()
        got = [results.get_obj(timeout=30) for _ in range(200)]
        for p in procs:
            p.join(30)
            assert p.exitcode == 0
        assert sorted(n for n, _, _ in got) == list(range(200))
        assert all(sq == n * n for n, sq, _ in got)
        assert len({pid for _, _, pid in got}) >= 1
        assert os.getpid() not in {pid for _, _, pid in got}
    finally:
        jobs.unlink()
        results.unlink()


def _put_forever(q):
    i = 0
    while True:
        q.put(b"%08d" % i + bytes([i % 251]) * 40)
        i += 1


def _get_forever(q, seen):
    while True:
        m = q.get()
        seen.put(m)


def test_killed_workers_do_not_stop_the_queue(name):
    """Producers and a consumer SIGKILLed mid-stream: the survivors keep
    going, and every message that arrives is whole and arrives once."""
    ctx = mp.get_context("fork")
    with shoal.Queue(name, capacity=16, max_msg=64) as q, \
            shoal.Queue(name + ".seen", capacity=1 << 16, max_msg=64) as seen:
        try:
            for _ in range(3):
                ps = [ctx.Process(target=_put_forever, args=(q,)) for _ in range(2)]
                c = ctx.Process(target=_get_forever, args=(q, seen))
                for p in ps + [c]:
                    p.start()
                time.sleep(0.2)
                for p in ps + [c]:
                    os.kill(p.pid, signal.SIGKILL)
                    p.join()
            got = []
            while True:
                try:
                    got.append(q.get(timeout=1))  # dead claims are cleared
                except queue.Empty:
                    break
            q.put(b"last")
            assert q.get(timeout=1) == b"last"
            while True:
                try:
                    got.append(seen.get_nowait())
                except queue.Empty:
                    break
            assert len(got) > 100
            for m in got:
                assert len(m) == 48 and m[8:] == bytes([int(m[:8]) % 251]) * 40, m
        finally:
            q.unlink()
            seen.unlink()


def test_detach_while_another_thread_waits(name):
    q = shoal.Queue(name, capacity=4, max_msg=64)
    errors = []

    def getter():
        try:
            q.get(timeout=5)
        except ValueError as e:
            errors.append(e)

    t = threading.Thread(target=getter)
    t.start()
    time.sleep(0.3)
    q.detach()          # the waiter's C call still has its mapping
    t.join(10)
    assert not t.is_alive()
    assert errors and "detached" in str(errors[0])
    shoal.queue.unlink(name)


# ---- arguments: put takes bytes-like objects only; create's numbers

def test_put_takes_bytes_like_only(q):
    import array
    import numpy as np
    for bad in (5, [1, 2, 3], "abc", None, 2.5, {b"x": 1}):
        with pytest.raises(TypeError, match="put_obj") as e:
            q.put(bad)
        assert type(bad).__name__ in str(e.value)
        with pytest.raises(TypeError, match="put_obj"):
            q.put_nowait(bad)
        with pytest.raises(TypeError, match="put_obj"):
            q.put_many([b"ok", bad])
    assert q.qsize() == 0  # nothing of a refused batch went in
    good = [b"a", bytearray(b"bc"), memoryview(b"def"), np.arange(3, dtype=np.uint8),
            np.arange(4, dtype=np.uint16)[::2], array.array("B", [7, 8])]
    for g in good:
        q.put(g)
    assert [q.get() for _ in good] == [b"a", b"bc", b"def", b"\x00\x01\x02",
                                       b"\x00\x00\x02\x00", b"\x07\x08"]
    q.put_obj(5)
    assert q.get_obj() == 5


def test_create_arguments_name_the_queue_and_the_rule(name):
    for cap in (0, 3, 1000, 1 << 30, -1, 2**32):
        with pytest.raises(OSError) as e:
            shoal.Queue(name, cap, 8)
        assert e.value.errno == errno.EINVAL and e.value.filename == name
        assert f"queue '{name}': capacity {cap} must be a power of two in 2..16777216" \
            in str(e.value)
    for mm in (0, 1 << 27, -5):
        with pytest.raises(OSError) as e:
            shoal.Queue(name, 4, mm)
        assert f"max_msg {mm} must be in 1..67108864" in str(e.value)
    for bad in (4.0, "4", None):
        with pytest.raises(TypeError, match="capacity must be an integer"):
            shoal.Queue(name, bad, 8)
        with pytest.raises(TypeError, match="max_msg must be an integer"):
            shoal.Queue(name, 4, bad)
    with pytest.raises(FileNotFoundError) as e:
        shoal.Queue.open(name)
    assert e.value.filename == name and f"no queue named '{name}'" in str(e.value)
    import numpy as np
    with shoal.Queue(name, np.int32(4), np.uint16(8)) as q:
        assert q.capacity == 4 and q.max_msg == 8
        with pytest.raises(FileExistsError) as e:
            shoal.Queue(name, 4, 8)
        assert e.value.filename == name and f"queue '{name}' exists" in str(e.value)
        q.unlink()
    with pytest.raises(FileNotFoundError) as e:
        shoal.queue.unlink(name)
    assert e.value.filename == name


# ---- acknowledged delivery

def test_claim_ack_nack(q):
    q.put(b"one")
    q.put(b"two")
    c = q.claim()
    assert isinstance(c, shoal.Claim)
    assert c.data == b"one" and c.redelivered == 0 and c.settled is None
    c.nack()
    assert c.settled == "nack"
    with pytest.raises(ValueError):
        c.ack()  # settled once already
    c = q.claim(False)
    assert c.data == b"one" and c.redelivered == 1  # nacked: first again, counted
    c.ack()
    with pytest.raises(ValueError):
        c.nack()
    assert "ack" in repr(c)
    assert q.get() == b"two"
    with pytest.raises(queue.Empty):
        q.claim(False)
    t0 = time.monotonic()
    with pytest.raises(queue.Empty):
        q.claim(timeout=0.15)
    assert 0.14 <= time.monotonic() - t0 < 1.0
    assert q.stats()["redelivered"] == 1


def test_claim_context_manager(q):
    q.put(b"a")
    with q.claim() as c:
        assert c.data == b"a"
    assert c.settled == "ack"
    q.put(b"b")
    with pytest.raises(RuntimeError):
        with q.claim() as c:
            raise RuntimeError("work failed")
    assert c.settled == "nack"
    with q.claim(timeout=1) as c:
        assert c.data == b"b" and c.redelivered == 1
    with pytest.raises(queue.Empty):
        q.get_nowait()


def test_claim_grows_its_buffer_and_holds_capacity(name):
    with shoal.Queue(name, capacity=2, max_msg=1 << 17) as q:
        q.put(b"x" * 100_000)
        c = q.claim()
        assert len(c.data) == 100_000
        q.put(b"y")
        with pytest.raises(queue.Full):  # the claimed message keeps its slot
            q.put_nowait(b"z")
        c.ack()
        q.put_nowait(b"z")
        assert q.get() == b"y" and q.get() == b"z"
        q.unlink()


def test_end_of_stream_waits_for_claims(q):
    q.put(b"last")
    q.close()
    c = q.claim()
    with pytest.raises(queue.Empty):
        q.get_nowait()  # not the end: the claim could come back
    c.nack()
    assert q.get() == b"last"
    with pytest.raises(BrokenPipeError):
        q.claim(timeout=1)


def test_claim_obj(q):
    q.put_obj({"k": [1, 2]})
    with q.claim_obj() as c:
        assert c.data == {"k": [1, 2]}


def test_claim_obj_arrays_survive_nack_until_ack(name):
    with shoal.Queue(name, capacity=4, max_msg=4096) as q:
        a = shoal.Array.zeros((4,), "float64")
        a.numpy()[:] = 7
        q.put_obj(a)
        refs = a.refcount
        a.release()
        c = q.claim_obj()
        assert float(c.data.numpy()[0]) == 7
        c.data.release()
        c.nack()  # the queue's reference still holds the array
        c = q.claim_obj()
        assert c.redelivered == 1 and float(c.data.numpy()[3]) == 7
        held = c.data.refcount
        c.ack()  # drops the queue's reference
        assert c.data.refcount == held - 1
        assert refs >= 1
        c.data.release()
        q.unlink()


def _claim_and_die(name):
    q = shoal.Queue.open(name)
    c = q.claim()
    assert c.data == b"work"
    os._exit(0)  # dies without ack


def test_dead_claimer_work_is_redelivered(name):
    with shoal.Queue(name, capacity=4, max_msg=64) as q:
        q.put(b"work")
        p = mp.get_context("fork").Process(target=_claim_and_die, args=(name,))
        p.start()
        p.join(10)
        assert p.exitcode == 0
        with q.claim(timeout=5) as c:
            assert c.data == b"work" and c.redelivered == 1
        assert q.stats()["redelivered"] == 1
        q.unlink()


def test_nowait_is_prompt_with_hostile_lock_bytes(name):
    """The recovery lock lives in the segment: garbage that names a live
    holder (here this very process) must not make get_nowait() block."""
    import struct
    with shoal.Queue(name, capacity=4, max_msg=64) as q:
        q.put(b"m")
        path = f"/dev/shm/shoal.{name}"
        with open(f"/proc/self/stat") as f:
            start = int(f.read().rsplit(")", 1)[1].split()[19])
        key = os.getpid() | (start << 22)
        with open(path, "r+b") as f:
            f.seek(128 + 448)
            f.write(struct.pack("<QII", key, 0, 3))
            f.seek(128 + 68)
            f.write(struct.pack("<I", 1))  # a stale orphan count: get wants the lock
        t0 = time.monotonic()
        assert q.get_nowait() == b"m"
        with pytest.raises(queue.Empty):
            q.get_nowait()
        assert time.monotonic() - t0 < 0.5
        q.unlink()


def test_forgotten_claim_is_given_back(q):
    import gc
    q.put(b"w")
    c = q.claim()
    del c
    gc.collect()
    with q.claim(timeout=1) as c:
        assert c.data == b"w" and c.redelivered == 1


# ---- ports: the one-call fast paths (lib/queue_port.c)

def test_fast_paths_keep_the_semantics(q):
    # put() that returned is in the queue; get() returns only what it popped.
    q.put(b"a" * 64)
    assert q.qsize() == 1
    assert q.get() == b"a" * 64 and q.qsize() == 0
    # The same length again reads through the kept view: fresh bytes each.
    q.put(b"b" * 64)
    first = q.get()
    q.put(b"c" * 64)
    assert first == b"b" * 64 and q.get() == b"c" * 64
    # A full queue through the fast path: Full, nothing half done.
    for i in range(8):
        q.put(bytes([i]) * 3)
    with pytest.raises(queue.Full):
        q.put(b"x", block=False)
    assert [q.get() for _ in range(8)] == [bytes([i]) * 3 for i in range(8)]
    with pytest.raises(queue.Empty):
        q.get(block=False)
    # Closed: put raises at once, get drains then raises.
    q.put(b"last")
    q.close()
    with pytest.raises(BrokenPipeError):
        q.put(b"x")
    with pytest.raises(BrokenPipeError):
        q.put_many([b"x", b"y"])
    assert q.get() == b"last"
    with pytest.raises(BrokenPipeError):
        q.get()
    with pytest.raises(BrokenPipeError):
        q.get_many(4)


def test_get_many_equal_and_mixed_lengths(q):
    same = [bytes([i]) * 5 for i in range(6)]
    assert q.put_many(same) == 6
    got = q.get_many(6)
    assert got == same and type(got) is list and all(type(b) is bytes for b in got)
    mixed = [b"", b"a", b"bb", b"", b"ccc"]
    assert q.put_many(iter(mixed)) == 5  # any iterable
    assert q.get_many(10) == mixed
    assert q.put_many([b"", b""]) == 2
    assert q.get_many(2) == [b"", b""]
    # Non-bytes items are sent as their bytes, not their len().
    import array as _array
    items = [bytearray(b"xy"), memoryview(b"abc"), _array.array("i", [1, 2])]
    assert q.put_many(items) == 3
    assert q.get_many(3) == [b"xy", b"abc", _array.array("i", [1, 2]).tobytes()]
    with pytest.raises(TypeError):
        q.put_many([b"a", 5])
    assert q.empty()


def test_calls_after_detach_are_refused(name):
    q = shoal.Queue(name, capacity=4, max_msg=8)
    q.put(b"x")
    q.get()
    q.get_many(1, block=False) if q.qsize() else None
    q.detach()
    for call in (lambda: q.put(b"x"), q.get, lambda: q.get(False),
                 lambda: q.put_many([b"x"]), lambda: q.get_many(2), lambda: q.put_many([])):
        with pytest.raises(ValueError, match="detached"):
            call()
    shoal.queue.unlink(name)


def test_port_numbers_are_refused_after_close(q):
    from shoal import queue as _q
    pid, tx = q._rx, q._tx
    assert _q._port_send(tx, b"abc", 3) == 0
    assert _q._port_take(pid) == b"abc"
    with pytest.raises(BlockingIOError):  # empty: the fail function raised
        _q._port_take(pid)
    assert _q._port_error(pid) == -errno.EAGAIN
    # A closed number is refused by every call.
    port = _q._Port(q._rxport._map, 8, 1)
    num = port.id
    assert _q._port_pop(num) == -errno.EAGAIN
    del port
    assert _q._port_pop(num) == -errno.EBADF
    assert _q._port_send(num, b"x", 1) == -errno.EBADF
    assert _q._port_error(num) == -errno.EBADF


def test_detach_unbinds_gets_port(name):
    from shoal import queue as _q
    q = shoal.Queue(name, capacity=4, max_msg=8)
    q.put(b"x")
    pid = q._rx
    q.detach()
    with pytest.raises(OSError) as e:  # unbound: fails, pops nothing
        _q._port_take(pid)
    assert e.value.errno == errno.EBADF
    with pytest.raises(ValueError, match="detached"):
        q.get()
    assert q._rxport._map is None
    with shoal.Queue.open(name) as q2:
        assert q2.get() == b"x"  # still there: the detached get took nothing
    shoal.queue.unlink(name)


def test_take_failing_leaves_the_message(name):
    # A message longer than get()'s shared buffer (64 KiB) stays in the
    # queue when take() finds it, and the slow path gets it whole.
    with shoal.Queue(name, capacity=4, max_msg=1 << 20) as q:
        big = os.urandom(200_000)
        q.put(b"s")
        q.put(big)
        q.put(b"t")
        assert [q.get(), q.get(), q.get()] == [b"s", big, b"t"]
        q.unlink()


def test_fork_child_uses_inherited_ports(name):
    with shoal.Queue(name, capacity=8, max_msg=64) as q:
        q.put(b"warm")
        assert q.get() == b"warm"  # this thread's port exists before fork
        q.put(b"to child")
        pid = os.fork()
        if pid == 0:
            ok = q.get(timeout=5) == b"to child"
            q.put(b"from child")
            os._exit(0 if ok else 1)
        _, st = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(st) == 0
        assert q.get(timeout=5) == b"from child"
        q.unlink()


def test_threads_have_their_own_buffers(name):
    # Many threads getting and get_many-ing at once with messages of many
    # lengths: each message whole, exactly once.
    with shoal.Queue(name, capacity=64, max_msg=256) as q:
        n = 3000
        msgs = [(b"%d;" % i) * (1 + i % 40) for i in range(n)]
        out, lock = [], threading.Lock()

        def getter(many):
            mine = []
            while True:
                try:
                    mine.extend(q.get_many(7) if many else [q.get()])
                except BrokenPipeError:
                    break
            with lock:
                out.extend(mine)

        gs = [threading.Thread(target=getter, args=(k % 2,)) for k in range(4)]
        for t in gs:
            t.start()
        for i in range(0, n, 10):
            if i % 20:
                q.put_many(msgs[i:i + 10])
            else:
                for m in msgs[i:i + 10]:
                    q.put(m)
        q.close()
        for t in gs:
            t.join(30)
        assert sorted(out) == sorted(msgs)
        q.unlink()


def test_ctrl_c_interrupts_a_blocked_get_many_and_put(name):
    with shoal.Queue(name, 2, 8) as q:
        code = ("import shoal, sys\n"
                f"q = shoal.Queue.open({name!r})\n"
                "q.put(b'a'); q.put(b'b')\n"
                "print('ready', flush=True)\n"
                "try:\n    q.put(b'c')\nexcept KeyboardInterrupt:\n    pass\n"
                "else:\n    sys.exit(1)\n"
                "q.get_many(2)\n"
                "print('ready', flush=True)\n"
                "try:\n    q.get_many(2)\nexcept KeyboardInterrupt:\n    sys.exit(42)\n")
        p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)
        for _ in range(2):
            assert p.stdout.readline() == b"ready\n"
            time.sleep(0.2)
            p.send_signal(signal.SIGINT)
        assert p.wait(10) == 42
        q.unlink()


def test_huge_put_is_too_long_not_a_ctypes_error(q):
    with pytest.raises(ValueError, match="longer than max_msg"):
        q.put(b"x" * 100)
    with pytest.raises(ValueError, match="longer than max_msg"):
        q.put(bytearray(100))


def test_put_obj_fast_and_full_paths(q):
    # Plain objects take one pickle.dumps/loads; ones that merely contain
    # the strings the array path looks for still round-trip whole.
    objs = [(12345, "hello"), ["_attach_handle", b"shoal.Array"], {"shoal.Array": 1}]
    for o in objs:
        q.put_obj(o)
    assert [q.get_obj() for _ in objs] == objs
    with pytest.raises(TypeError):
        q.put_obj(threading.Lock())  # the error pickling raises, nothing put
    assert q.empty()


# ---- put(): bytes through shoal_queue_port_put (the length read beside
# the bytes), everything else through the slow path

def test_put_bytes_with_nuls_and_every_length(q):
    msgs = [b"", b"\0", b"a\0b\0", b"\0" * 64, bytes(range(64)), b"x" * 63]
    for m in msgs:
        q.put(m)
        assert q.get() == m
    # A subclass of bytes is not put as a bytes object is.
    class B(bytes):
        pass
    q.put(B(b"sub\0class"))
    assert q.get() == b"sub\0class"


def test_put_bytes_like_and_refusals(q):
    q.put(bytearray(b"ba\0"))
    q.put(memoryview(b"xmv")[1:])
    assert [q.get(), q.get()] == [b"ba\0", b"mv"]
    with pytest.raises(TypeError, match="put_obj") as e:
        q.put("text")
    assert "str" in str(e.value)
    with pytest.raises(ValueError, match="longer than max_msg"):
        q.put(b"y" * 65)
    assert q.empty()


def test_put_full_then_closed(q):
    from shoal import queue as _q
    for i in range(8):
        q.put(bytes([i]))
    with pytest.raises(queue.Full):
        q.put(b"9", block=False)
    with pytest.raises(queue.Full):
        q.put(b"9", timeout=0.05)
    with pytest.raises(BlockingIOError):  # the port's call raises by itself
        _q._port_put(q._tx, b"9")
    assert _q._port_error(q._tx) == -errno.EAGAIN
    assert [q.get() for _ in range(8)] == [bytes([i]) for i in range(8)]
    q.close()
    with pytest.raises(BrokenPipeError):
        q.put(b"after close")
    with pytest.raises(BrokenPipeError):
        _q._port_put(q._tx, b"z")


def test_put_after_detach_raises_not_returns(name):
    from shoal import queue as _q
    q = shoal.Queue(name, capacity=4, max_msg=8)
    tx = q._tx
    q.detach()
    with pytest.raises(OSError) as e:  # unbound: fails through the port
        _q._port_put(tx, b"x")
    assert e.value.errno == errno.EBADF
    with pytest.raises(ValueError, match="detached"):
        q.put(b"x")
    with shoal.Queue.open(name) as q2:
        assert q2.empty()
    shoal.queue.unlink(name)


def test_put_from_threads(name):
    n, per = 4, 2000
    with shoal.Queue(name, capacity=64, max_msg=16) as q:
        def producer(k):
            for i in range(per):
                q.put(b"%d\0%d" % (k, i))

        ts = [threading.Thread(target=producer, args=(k,)) for k in range(n)]
        for t in ts:
            t.start()
        got = [q.get(timeout=10) for _ in range(n * per)]
        for t in ts:
            t.join()
        assert q.empty()
        last = {}
        for m in got:
            k, i = (int(x) for x in m.split(b"\0"))
            assert last.get(k, -1) == i - 1  # each producer's order kept
            last[k] = i
        assert all(v == per - 1 for v in last.values())
        q.unlink()


def test_put_where_bytes_are_laid_out_otherwise(q):
    """Where bytes objects do not have CPython's layout, put() passes the
    length beside the message (Queue._put_with_len): the same contract."""
    put = q._put_with_len
    put(b"a\0b")
    put(bytearray(b"ba"))
    put(memoryview(b"xmv")[1:])
    assert [q.get(), q.get(), q.get()] == [b"a\0b", b"ba", b"mv"]
    with pytest.raises(TypeError, match="put_obj"):
        put("text")
    with pytest.raises(ValueError, match="longer than max_msg"):
        put(b"y" * 65)
    for i in range(8):
        put(bytes([i]))
    with pytest.raises(queue.Full):
        put(b"9", block=False)
    assert [q.get() for _ in range(8)] == [bytes([i]) for i in range(8)]
    q.close()
    with pytest.raises(BrokenPipeError):
        put(b"after close")


def test_bytes_layout_probe_finds_cpython_here():
    from shoal import queue as _q
    # This interpreter is CPython: the fast put is the one in use.
    assert _q._BYTES_LENGTH_AT is not None and _q._BYTES_LENGTH_AT < 0
    assert shoal.Queue.put.__name__ == "put"



def test_put_many_in_one_call_and_its_fallbacks(q):
    # Exact bytes in a list go in one C call; anything else converts
    # first, with the same results and errors.
    assert q.put_many((b"t1", b"t2")) == 2  # not a list
    assert q.put_many(bytes([i]) for i in range(2)) == 2  # a generator
    assert q.get_many(8) == [b"t1", b"t2", b"\x00", b"\x01"]

    class Sub(bytes):
        pass
    mixed = [b"a", bytearray(b"b"), b"c", memoryview(b"d"), Sub(b"e")]
    assert q.put_many(mixed) == 5
    got = q.get_many(8)
    assert got == [b"a", b"b", b"c", b"d", b"e"] and all(type(b) is bytes for b in got)
    # One too long in the middle: ValueError, and nothing goes in, whether
    # the rest are bytes (the C check) or not (the conversion).
    for items in ([b"a", b"x" * 65, b"c"], [bytearray(b"a"), b"x" * 65, b"c"]):
        with pytest.raises(ValueError, match="^a message is longer than max_msg=64$"):
            q.put_many(items)
        assert q.empty()
    with pytest.raises(TypeError) as e:
        q.put_many([b"a", "text", b"c"])
    assert str(e.value) == ("put_many() takes bytes-like objects (bytes, bytearray, memoryview, "
                            "a numpy array), not str; put_obj() sends any picklable object")
    assert q.empty()
    # The queue fills part way: what went is counted, the rest stays out.
    for _ in range(6):
        q.put(b"f")
    assert q.put_many([b"1", b"2", b"3", b"4"], block=False) == 2
    with pytest.raises(queue.Full):  # none fits in time
        q.put_many([b"3", b"4"], timeout=0.02)
    assert q.get_many(8) == [b"f"] * 6 + [b"1", b"2"]
    # Part way, then room comes: the rest waits for it, in order.
    for _ in range(6):
        q.put(b"f")
    t = threading.Timer(0.1, lambda: [q.get() for _ in range(4)])
    t.start()
    assert q.put_many([b"1", b"2", b"3", b"4"], timeout=5) == 4
    t.join()
    assert q.get_many(8) == [b"f"] * 2 + [b"1", b"2", b"3", b"4"]
    q.close()
    for items in ([b"x"], [bytearray(b"x")]):
        with pytest.raises(BrokenPipeError) as e:
            q.put_many(items)
        assert e.value.errno == errno.EPIPE


def test_get_many_in_one_call_and_its_errors(q):
    q.put_many([b"a", b"bb"])
    got = q.get_many(4)
    assert got == [b"a", b"bb"] and type(got) is list
    with pytest.raises(queue.Empty):
        q.get_many(4, block=False)
    with pytest.raises(ValueError, match="at least 1"):
        q.get_many(0)
    q.put(b"last")
    q.close()
    assert q.get_many(4) == [b"last"]
    with pytest.raises(BrokenPipeError) as e:
        q.get_many(4)
    assert e.value.errno == errno.EPIPE


def test_batch_ports_after_unbind_and_close(q):
    import ctypes
    from shoal import queue as _q
    q.put_many([b"x"])
    assert q.get_many(2) == [b"x"]
    p = q._local.rxm
    # A closed number: put_many refuses it. (take_many would have nobody to
    # fail through and return NULL, which ctypes cannot take: get_many
    # holds its port for the whole call, so it never meets a closed one.)
    port = _q._Port(q._txport._map, 0, 1)
    num = port.id
    _q._port_length_at(num, _q._BYTES_LENGTH_AT)
    _q._port_gather(num, *_q._PYSEQ, id(bytes), _q._BYTES_TYPE_AT, _q._BYTES_DATA_AT)
    assert _q._port_put_many(num, ctypes.py_object([b"x"])) == 1
    assert q.get() == b"x"
    del port
    assert _q._port_put_many(num, ctypes.py_object([b"x"])) == -errno.EBADF
    # Unbound: -EBADF, and take_many raises it through the fail function.
    q.put(b"kept")
    tx = q._tx
    q.detach()
    assert _q._port_put_many(tx, ctypes.py_object([b"x"])) == -errno.EBADF
    _q._port_unbind(p.id)
    with pytest.raises(OSError) as e:
        _q._port_take_many(p.id, 4)
    assert e.value.errno == errno.EBADF
    with pytest.raises(ValueError, match="detached"):
        q.get_many(2)
    with shoal.Queue.open(q.name) as q2:
        assert q2.get_many(4) == [b"kept"]  # the unbound ports took nothing


def test_threads_share_put_many_and_get_many(name):
    # Producers' batches meet a full queue (partial puts, then waits); one
    # consumer sees each producer's messages whole, once, in its order.
    with shoal.Queue(name, capacity=16, max_msg=64) as q:
        per, out = 600, []

        def producer(k):
            msgs = [b"%d:%d" % (k, i) for i in range(per)]
            for i in range(0, per, 25):
                assert q.put_many(msgs[i:i + 25]) == 25

        ps = [threading.Thread(target=producer, args=(k,)) for k in range(3)]
        for t in ps:
            t.start()
        while len(out) < 3 * per:
            out.extend(q.get_many(7, timeout=10))
        for t in ps:
            t.join()
        for k in range(3):
            assert [m for m in out if m.startswith(b"%d:" % k)] == [b"%d:%d" % (k, i)
                                                                    for i in range(per)]
        q.unlink()


# Without the GIL (a free-threaded CPython, which this machine's Python is
# not, so the test makes it look like one before shoal is imported): the
# Queue keeps to the plain calls, never a port call that reads Python
# objects, and behaves as with the GIL. The same script runs both ways; the
# outputs must match.
_GIL_SCRIPT = r'''
import queue, sys, threading
if sys.argv[1] == "nogil":
    sys._is_gil_enabled = lambda: False
import shoal, shoal.queue as Q
if sys.argv[1] == "nogil":
    del sys._is_gil_enabled  # shoal has looked
    def trap(*a):
        raise AssertionError("a port call that needs the GIL ran")
    for f in ("_port_take", "_port_put", "_port_put_many", "_port_take_many",
              "_port_send", "_port_send_many", "_port_pop"):
        setattr(Q, f, trap)
    assert Q.Queue.put is Q.Queue._put_plain and Q.Queue.get_many is Q.Queue._get_many_plain
out = []
q = shoal.Queue.create(sys.argv[2], capacity=64, max_msg=32)
try:
    q.put(b"a"); q.put(bytearray(b"bc")); q.put(memoryview(b"def"))
    out.append(q.put_many([b"g", bytearray(b"hi"), b""]))
    out.append([q.get(), q.get(), q.get()])
    out.append(q.get_many(8))
    for bad in (lambda: q.put(b"x" * 33), lambda: q.put_many([b"ok", b"x" * 33]),
                lambda: q.put(5), lambda: q.get(timeout=0.01), lambda: q.get_many(0),
                lambda: q.get_many(-1)):
        try:
            bad()
            out.append("no error")
        except Exception as e:
            out.append(type(e).__name__)
    out.append(q.put_many([b"f"] * 100, timeout=0.01))  # fills, then time runs out
    try:
        q.put(b"full", timeout=0.01)
    except queue.Full:
        out.append("Full")
    out.append(len(q.get_many(100)))
    # Threads at once: every message once.
    N, T = 2000, 4
    got, lock = [], threading.Lock()
    def produce(t):
        for i in range(0, N, 10):
            if i % 20:
                q.put_many([b"%d.%d" % (t, i + k) for k in range(10)])
            else:
                for k in range(10):
                    q.put(b"%d.%d" % (t, i + k))
    def consume():
        mine = []
        while True:
            try:
                xs = q.get_many(16, timeout=30)
            except queue.Empty:
                break
            if b"end" in xs:  # one each: hand back the others'
                q.put_many([b"end"] * (xs.count(b"end") - 1))
                mine += [x for x in xs if x != b"end"]
                break
            mine += xs
        with lock:
            got.extend(mine)
    ps = [threading.Thread(target=produce, args=(t,)) for t in range(T)]
    cs = [threading.Thread(target=consume) for _ in range(T)]
    for th in ps + cs:
        th.start()
    for th in ps:
        th.join()
    for _ in range(T):
        q.put(b"end")
    for th in cs:
        th.join()
    got += q.get_many(64, block=False) if q.qsize() else []
    got = [x for x in got if x != b"end"]
    out.append((len(got), len(set(got)), sorted(got) == sorted(b"%d.%d" % (t, i) for t in range(T) for i in range(N))))
    q.close()
    try:
        q.put(b"z")
    except BrokenPipeError:
        out.append("BrokenPipeError")
    q.detach()
    for f in (lambda: q.put(b"z"), q.get, lambda: q.put_many([b"z"]), q.get_many):
        try:
            f()
        except ValueError:
            out.append("ValueError")
finally:
    shoal.queue.unlink(sys.argv[2])
print(out)
'''


def test_queue_without_the_gil_keeps_to_plain_calls(name):
    outs = []
    for mode in ("gil", "nogil"):
        r = subprocess.run([sys.executable, "-c", _GIL_SCRIPT, mode, f"{name}.{mode}"],
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr
        outs.append(r.stdout)
    assert outs[0] == outs[1]
    assert "(8000, 8000, True)" in outs[0], outs[0]
    assert outs[0].count("ValueError") == 8, outs[0]
