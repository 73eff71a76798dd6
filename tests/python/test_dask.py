"""shoal.dask: numpy arrays between workers on one host as shoal handles
(docs/dask.md). One LocalCluster of 4 worker processes is shared by the
tests that need one (start-up is seconds); the last of them closes it and
checks that nothing it made is left. The two-host test runs two network
namespaces, each with its own /dev/shm (tests/python/dask_hosts.py)."""
import asyncio
import errno
import json
import os
import random
import select
import signal
import subprocess
import sys
import time

import cloudpickle
import dask
import numpy as np
import pytest
from dask.sizeof import sizeof
from distributed import Client, LocalCluster
from distributed.protocol import deserialize_bytes, serialize_bytelist

import shoal
import shoal.dask as sd

# Workers cannot import this module: its functions travel by value.
cloudpickle.register_pickle_by_value(sys.modules[__name__])

N = 2**20          # 8 MiB blocks of float64
MiB = 2**20
PREFIX = f"pyd.{os.getpid()}"  # the cluster's objects: checked when it closes
SANITIZED = "libasan" in os.environ.get("LD_PRELOAD", "")


def _ours():
    return sorted(f for f in os.listdir(shoal.directory()) if f.startswith(f"shoal.{PREFIX}."))


@pytest.fixture(scope="module")
def client():
    cfg = {"shoal.dask.prefix": PREFIX,
           # replicas stay where the graph put them (the PSS test counts them)
           "distributed.scheduler.active-memory-manager.start": False}
    env = os.environ.get("ASAN_OPTIONS")
    if SANITIZED:
        # Freed memory would stay in the sanitizer's quarantine, private
        # to the worker that freed it: the PSS test counts what is held.
        os.environ["ASAN_OPTIONS"] = f"{env or ''}:quarantine_size_mb=0"
    with dask.config.set(cfg):
        cluster = LocalCluster(n_workers=4, threads_per_worker=1, processes=True,
                               dashboard_address=":0", preload=["shoal.dask"],
                               preload_nanny=["shoal.dask"])
        if env is None:
            os.environ.pop("ASAN_OPTIONS", None)
        else:
            os.environ["ASAN_OPTIONS"] = env
        c = Client(cluster)
        try:
            yield c
        finally:
            c.close()
            cluster.close()


def make(i, n=N):
    return np.full(n, float(i))


def touch(*blocks):
    return [float(b[::512].sum()) for b in blocks]


def total_is(want, *blocks):
    return bool(np.array_equal(np.add.reduce(blocks), np.full(N, want)))


def add_slow(a, b):
    time.sleep(0.2)
    return a + b


def mutate(a):
    a[0] = -1.0
    return a


def worker_memory(dask_worker):
    m = shoal.memstat(smaps=True)
    return {"pss": m.pss, "rss": m.rss, "private": m.private,
            "monitor": dask_worker.monitor.get_process_memory(),
            "stats": sd.stats(),
            "sizeof": [sizeof(v) for v in dask_worker.data.values()
                       if isinstance(v, np.ndarray) and sd.shared_base(v) is not None]}


# ---- in one process: the serializer's paths

def _ctx(recipient):
    return {"sender": {"shoal": sd.same_host_token()}, "recipient": {"shoal": recipient}}


@pytest.fixture
def local(name):
    with dask.config.set({"shoal.dask.prefix": name}):
        yield


def test_same_host_is_a_handle_read_only(local):
    x = np.arange(N, dtype="float64").reshape(1024, 1024)
    v = sd._to_shared(x)
    assert not v.flags.writeable and sd.shared_base(v) is not None
    for y in (v, v[::2, 3:], v.T):  # an offset, strides, an order
        header, frames = sd._serialize(y, context=_ctx(sd.same_host_token()))
        assert header["shoal"].startswith("shoal:array:") and frames == []
        got = sd._deserialize(header, frames)
        assert np.array_equal(got, y) and not got.flags.writeable
        assert sd.shared_base(got)[0].handle == header["shoal"]
        with pytest.raises(ValueError, match="read-only"):
            got[0, 0] = 1.0
        del got
    rec = np.zeros(MiB, dtype=[("a", "i4"), ("b", "f8")])
    rec["a"] = 7
    r = sd._to_shared(rec)
    header, frames = sd._serialize(r, context=_ctx(sd.same_host_token()))
    got = sd._deserialize(header, frames)
    assert got.dtype == rec.dtype and np.array_equal(got, rec)
    del got, v, r


def test_dask_path_elsewhere(local):
    v = sd._to_shared(np.random.default_rng(0).random(N))  # random: compression cannot shrink it
    small = sd._to_shared(np.ones(1000))  # under the threshold
    for y, ctx in ((v, None),                        # spilling: real bytes
                   (v, _ctx("another host")),         # another host's token
                   (v, _ctx(None)),                   # a peer without shoal.dask
                   (small, _ctx(sd.same_host_token())),
                   (np.ones(N), _ctx(sd.same_host_token()))):  # private memory
        header, frames = sd._serialize(y, context=ctx)
        assert "shoal" not in header and sum(memoryview(f).nbytes for f in frames) == y.nbytes
        assert np.array_equal(sd._deserialize(header, frames), y)
    # Spilling (serialize_bytelist, context=None) writes the bytes.
    spilled = b"".join(bytes(f) for f in serialize_bytelist(v))
    assert len(spilled) > v.nbytes
    back = deserialize_bytes(spilled)
    assert np.array_equal(back, v) and sd.shared_base(back) is None
    del v, small


def test_gone_array_is_an_oserror(local):
    v = sd._to_shared(np.ones(N))
    header, _ = sd._serialize(v, context=_ctx(sd.same_host_token()))
    sd.shared_base(v)[0].release()
    del v
    with pytest.raises(FileNotFoundError, match="gone"):
        sd._deserialize(header, [])


def test_no_room_keeps_the_value_private(local, monkeypatch):
    def full(shape, dtype, name):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    monkeypatch.setattr(sd.Array, "empty", full)

    class Worker:
        data = {"k": np.ones(N)}
    x = Worker.data["k"]
    sd._share_keys(Worker, ["k", "absent"])  # no error: the value goes as bytes
    assert Worker.data["k"] is x


class FakeWorker:
    """What ShoalWorkerPlugin.setup touches of a worker."""

    def __init__(self, data):
        self.data = data
        self.got = {}
        self.monitor = type("Monitor", (), {"get_process_memory": staticmethod(lambda: 0)})()
        self.periodic_callbacks = {}

        async def get_data(comm, keys=None, who=None, serializers=None, max_connections=None):
            self.got = {"keys": keys, "serializers": serializers}
            return {"status": "OK"}
        self.handlers = {"get_data": get_data}


@pytest.fixture
def fake_worker(local):
    made = []

    def make_worker(data):
        w = FakeWorker(data)
        with dask.config.set({"shoal.dask.reap-interval": 0}):
            sd.ShoalWorkerPlugin().setup(w)
        made.append(w)
        return w
    yield make_worker
    for w in made:
        sd._release_all(w)


def test_writable_shared_value_is_copied_before_a_handle(local):
    # A task returned a writable view of a shoal Array: sent as its handle,
    # a later write on the sender would change the receiver's input.
    a = shoal.Array.from_numpy(np.full(N, 2.0), name=f"{PREFIX}.w")
    mine = np.asarray(a)
    assert mine.flags.writeable and sd.shared_base(mine) is not None
    ctx = _ctx(sd.same_host_token())
    header, frames = sd._serialize(mine, context=ctx)
    assert "shoal" not in header and sum(memoryview(f).nbytes for f in frames) == N * 8

    class Worker:
        data = {"k": mine}
    sd._share_keys(Worker, ["k"])
    v = Worker.data["k"]
    assert not v.flags.writeable and sd.shared_base(v)[0] is not a  # an Array of its own
    header, frames = sd._serialize(v, context=ctx)
    assert header["shoal"] != a.handle and frames == []
    got = sd._deserialize(header, frames)
    mine[:] = -1.0  # the sender's task writes its old object in place
    assert np.array_equal(got, np.full(N, 2.0))
    sd._share_keys(Worker, ["k"])  # read-only now: shared as it is
    assert Worker.data["k"] is v
    del got, v, mine, Worker.data
    a.release()


def test_spill_buffer_keeps_shared_views(fake_worker, tmp_path):
    from distributed.spill import SpillBuffer
    data = SpillBuffer(str(tmp_path), target=12 * MiB)
    w = fake_worker(data)
    data["shared"] = sd._to_shared(np.ones(N))
    data["p1"] = np.ones(N)
    data["p2"] = np.ones(N)  # over the target: the LRU evicts, skipping the older view
    assert set(data.fast) == {"shared", "p2"} and set(data.slow) == {"p1"}
    # The memory manager over its spill threshold evicts until evict()
    # fails: the private value goes, the shared view stays.
    assert data.evict() >= N * 8 and data.evict() == -1
    assert set(data.fast) == {"shared"} and sd.shared_base(data["shared"]) is not None
    assert not os.path.exists(tmp_path / "shared")
    # Removed from a running worker: Dask's own evictions again.
    w.status = None
    sd.ShoalWorkerPlugin.teardown(w._shoal_dask[0], w)
    assert data.evict() > 0 and "shared" in data.slow


def test_get_data_wrapper_passes_serializers(fake_worker):
    from distributed.core import _expects_comm
    from distributed.utils import has_keyword
    w = fake_worker({})
    h = w.handlers["get_data"]
    # distributed.core.Server._handle_comm passes serializers only to a
    # handler that names it, and the comm as the first argument.
    assert has_keyword(h, "serializers") and _expects_comm(h)
    assert asyncio.run(h(None, keys=["k"], serializers=["msgpack"])) == {"status": "OK"}
    assert w.got == {"keys": ["k"], "serializers": ["msgpack"]}


def test_sizeof_counts_private_bytes_only(local):
    x = np.ones(N)
    v = sd._to_shared(x)
    assert sizeof(x) >= x.nbytes
    assert sizeof(v) < 1024 and sizeof(v[10:]) < 1024
    del v


def test_handshake_token():
    tok = sd.same_host_token()
    assert tok.startswith(f"{os.getuid()}:") and os.readlink("/proc/self/ns/ipc") in tok
    from distributed.comm.core import Comm

    class Fake:
        deserialize = False
    assert "shoal" not in Comm.handshake_info(Fake())  # a scheduler's comm
    Fake.deserialize = True
    assert Comm.handshake_info(Fake())["shoal"] == tok
    assert Comm.handshake_info()["shoal"] == tok


def test_import_shoal_does_not_import_dask():
    code = ("import sys, shoal; bad = [m for m in ('dask', 'distributed', 'shoal.dask') "
            "if m in sys.modules]; assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


# ---- a LocalCluster of 4 processes

def test_blocks_move_as_handles_one_copy(client):
    workers = sorted(client.scheduler_info()["workers"])
    base = client.run(worker_memory)
    blocks = [client.submit(make, i, workers=[workers[i % 4]], pure=False) for i in range(8)]
    # Every worker reads every block: each moves to the 3 others.
    touched = [client.submit(touch, *blocks, workers=[w], pure=False) for w in workers]
    sums = [client.submit(total_is, 28.0, *blocks, workers=[w], pure=False) for w in workers]
    want = [float(i * N / 512) for i in range(8)]
    assert all(t == want for t in client.gather(touched))
    assert client.gather(sums) == [True] * 4
    mem = client.run(worker_memory)
    data = 8 * N * 8
    pss = sum(m["pss"] for m in mem.values()) - sum(m["pss"] for m in base.values())
    # Plain Dask holds 4 copies here; shoal one, shared by the 4 workers.
    assert 0.7 * data < pss < 1.5 * data, (pss / data, mem)
    got = sum(m["stats"]["received_handles"] - base[w]["stats"]["received_handles"]
              for w, m in mem.items())
    assert got == 8 * 3
    for m in mem.values():
        # The memory manager reads private memory; the shared pages each
        # worker mapped are in its RSS but not there, nor in sizeof.
        assert m["rss"] - m["private"] > 0.9 * data
        assert abs(m["monitor"] - m["private"]) < 64 * MiB
        assert len(m["sizeof"]) == 8 and max(m["sizeof"]) < 1024
    del blocks, touched, sums


def test_nanny_reads_private_memory(client):
    names = client.run(lambda dask_worker: dask_worker.periodic_callbacks[
        "memory_monitor"].callback.func.__name__, nanny=True)
    assert set(names.values()) == {"_nanny_memory_monitor"}


def test_nanny_monitor_acts_on_private_memory(local):
    # This process maps a large shared array (in its RSS) and holds little
    # private memory: a limit between the two keeps it; one under its
    # private memory terminates it (Dask's own check, on RSS, would
    # terminate it at both).
    from distributed.core import Status
    a = shoal.Array.zeros((256 * MiB,), "u1", name=f"{PREFIX}.n")
    np.asarray(a)[::4096] = 1  # every page touched: in RSS, not private
    m = shoal.memstat()
    assert m.rss - m.private > 200 * MiB

    class Proc:
        pid = os.getpid()
        signals = []

        def terminate(self):
            self.signals.append("TERM")

        def kill(self):
            self.signals.append("KILL")

    class MM:
        memory_terminate_fraction = 1.0
        _last_terminated_pid = None
        logger = sd.logger

    class Nanny:
        status = Status.running
        process = type("WorkerProcess", (), {"process": Proc()})()
        worker_address = "tcp://test"
    MM.memory_limit = m.private + 128 * MiB
    assert m.rss > MM.memory_limit
    sd._nanny_memory_monitor(MM, Nanny)
    assert Proc.signals == []
    MM.memory_limit = m.private // 2
    sd._nanny_memory_monitor(MM, Nanny)
    sd._nanny_memory_monitor(MM, Nanny)  # still there: killed
    assert Proc.signals == ["TERM", "KILL"]
    a.release()


def test_worker_over_its_target_keeps_shared_views(client):
    w = sorted(client.scheduler_info()["workers"])
    b = client.submit(make, 7, workers=[w[0]], pure=False)
    assert client.submit(touch, b, workers=[w[1]], pure=False).result() == [7.0 * N / 512]
    p = client.submit(make, 8, workers=[w[0]], pure=False)  # never sent: private
    p.result()

    async def spill(dask_worker):
        # Dask's memory manager with the worker over its spill threshold
        # for as long as it spills.
        mm = dask_worker.memory_manager
        orig = dask_worker.monitor.get_process_memory
        dask_worker.monitor.get_process_memory = lambda: mm.memory_limit
        try:
            await mm._maybe_spill(dask_worker, mm.memory_limit)
        finally:
            dask_worker.monitor.get_process_memory = orig
        return list(dask_worker.data.fast), list(dask_worker.data.slow)
    fast, slow = client.run(spill, workers=[w[0]])[w[0]]
    assert b.key in fast and b.key not in slow and p.key in slow
    assert client.submit(total_is, 7.0, b, workers=[w[2]], pure=False).result() is True
    del b, p


def test_task_mutating_a_shared_input_fails(client):
    w = sorted(client.scheduler_info()["workers"])
    b = client.submit(make, 3, workers=[w[0]], pure=False)
    other = client.submit(mutate, b, workers=[w[1]], pure=False)
    with pytest.raises(ValueError, match="read-only"):
        other.result()
    # Once shared, the sender's own value is the read-only view too.
    same = client.submit(mutate, b, workers=[w[0]], pure=False)
    with pytest.raises(ValueError, match="read-only"):
        same.result()
    # Under the threshold, Dask's path: a writable copy, as without shoal.
    s = client.submit(make, 3, 100, workers=[w[0]], pure=False)
    assert client.submit(mutate, s, workers=[w[1]], pure=False).result()[0] == -1.0
    del b, other, same, s


def test_install_through_the_client(client):
    # register_worker_plugin replaces the preloaded plugins of the same
    # names: the old ones step back (running workers keep their values),
    # the new ones step in, and transfers still go as handles.
    sd.install(client)

    def installed(dask_worker):
        return (dask_worker.monitor.get_process_memory is sd._private_memory
                and dask_worker.handlers["get_data"].__qualname__.startswith("ShoalWorkerPlugin")
                and "shoal-reap" in dask_worker.periodic_callbacks)
    assert all(client.run(installed).values())
    test_nanny_reads_private_memory(client)
    w = sorted(client.scheduler_info()["workers"])
    before = sum(s["received_handles"] for s in client.run(sd.stats).values())
    b = client.submit(make, 4, workers=[w[0]], pure=False)
    assert client.submit(touch, b, workers=[w[2]], pure=False).result() == [4.0 * N / 512]
    assert sum(s["received_handles"] for s in client.run(sd.stats).values()) == before + 1
    del b


def test_removed_array_goes_as_bytes(client):
    # The object is removed from the directory under its live holders
    # (shoal rm): a holder can no longer send a handle that attaches, so
    # it sends bytes from its mapping (a receiver's failed attach, the
    # unit test above, makes Dask ask again, and this is what it gets).
    w = sorted(client.scheduler_info()["workers"])
    b = client.submit(make, 6, workers=[w[0]], allow_other_workers=True, pure=False)
    assert client.submit(touch, b, workers=[w[1]], pure=False).result() == [6.0 * N / 512]
    gone = _ours()
    assert gone
    for f in gone:
        os.unlink(os.path.join(shoal.directory(), f))
    before = sum(s["received_handles"] for s in client.run(sd.stats).values())
    again = client.submit(total_is, 6.0, b, workers=[w[2]], pure=False)
    assert again.result(timeout=60) is True
    assert sum(s["received_handles"] for s in client.run(sd.stats).values()) == before
    del b, again


def test_worker_killed_mid_graph(client):
    workers = sorted(client.scheduler_info()["workers"])
    pids = client.run(os.getpid)
    # Placed, not pinned: the dead worker's blocks are remade elsewhere.
    blocks = [client.submit(make, i, workers=[workers[i % 4]], allow_other_workers=True,
                            pure=False) for i in range(8)]
    level = blocks
    while len(level) > 1:  # a tree reduction; each sum waits 0.2 s
        level = [client.submit(add_slow, level[i], level[i + 1], pure=False)
                 for i in range(0, len(level), 2)]
    time.sleep(0.5)
    assert not level[0].done()
    os.kill(pids[workers[1]], signal.SIGKILL)  # what it held is reaped; what it made is remade
    assert np.array_equal(level[0].result(timeout=120), np.full(N, 28.0))
    del blocks, level
    client.wait_for_workers(4, timeout=60)


def test_nothing_left_after_close(client):
    w = sorted(client.scheduler_info()["workers"])
    # Held on two workers when the cluster closes: each lets go of its own.
    b = client.submit(make, 5, workers=[w[2]], pure=False)
    assert client.submit(touch, b, workers=[w[3]], pure=False).result() == [5.0 * N / 512]
    assert _ours(), "nothing was shared: this test would not test"
    client.close()
    client.cluster.close()
    assert _ours() == []
    del b


# ---- two hosts: two network namespaces, each with its own /dev/shm

def _line(p, word, deadline):
    while True:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([p.stdout], [], [], left)[0]:
            raise TimeoutError(f"no {word!r} from {p.args[3]}")
        line = p.stdout.readline()
        if not line:
            raise RuntimeError(f"{p.args[3]} ended before {word!r}: rc {p.wait()}")
        head, _, rest = line.strip().partition(" ")
        if head == word:
            return rest


def _tell(p, *words):
    p.stdin.write(" ".join(words) + "\n")
    p.stdin.flush()


def test_two_hosts():
    tag = f"{os.getpid() % 100000}"
    links = (f"shA{tag}", f"shB{tag}")
    net = f"10.{random.randrange(100, 250)}.{random.randrange(1, 250)}"
    ips = (f"{net}.1", f"{net}.2")
    prefix = f"pyh.{os.getpid()}"
    here = os.path.dirname(os.path.abspath(__file__))
    procs = []
    deadline = time.monotonic() + 120
    try:
        for role, ip, link in zip("AB", ips, links):
            procs.append(subprocess.Popen(
                ["unshare", "--net", "--mount", "--propagation", "private",
                 sys.executable, os.path.join(here, "dask_hosts.py"), role, ip, link, prefix],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                start_new_session=True))
        a, b = procs
        for p in procs:
            _line(p, "ready", deadline)
        subprocess.run(["ip", "link", "add", links[0], "type", "veth", "peer", "name", links[1]],
                       check=True)
        for p, link in zip(procs, links):
            subprocess.run(["ip", "link", "set", link, "netns", str(p.pid)], check=True)
            _tell(p, "go")
        address = _line(a, "addr", deadline)
        _tell(b, "workers", address)
        _line(b, "up", deadline)
        _tell(a, "run")
        result = json.loads(_line(a, "result", deadline))
        # A closes while B's end of the link is still up (B's workers are
        # retired by then): a comm to a vanished peer would wait out its timeout.
        _tell(a, "close")
        left_a = json.loads(_line(a, "left", deadline))
        _tell(b, "stop")
        left_b = json.loads(_line(b, "left", deadline))
        for p in procs:
            assert p.wait(timeout=max(1, deadline - time.monotonic())) == 0
    finally:
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)  # the session it leads: its workers too
                p.wait()
        # A link that never reached a namespace is still here; one that did
        # went with its namespace.
        subprocess.run(["ip", "link", "del", links[0]], stderr=subprocess.DEVNULL)
    assert result["ok"]
    stats = result["stats"]
    on_a = [s for w, s in stats.items() if ips[0] in w]
    on_b = [s for w, s in stats.items() if ips[1] in w]
    assert len(on_a) == len(on_b) == 2
    # Each host's pair swap their blocks as handles; every block crosses to
    # the other host's two workers as bytes.
    assert sum(s["received_handles"] for s in on_a) == 2
    assert sum(s["received_handles"] for s in on_b) == 2
    assert sum(s["sent_other_host"] for s in stats.values()) == 8
    assert left_a == [] and left_b == []
