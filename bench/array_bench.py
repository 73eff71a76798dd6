"""Array benchmarks, each side by side with its peers in the same run.

array.handoff.<size>   ms from "the parent has a filled array" to "a worker
                       has a usable numpy view" (its first element read):
                       the handle sent through a pipe, the worker attaches.
                       Peers: mp_shared_memory (the name, shape and dtype
                       sent, the worker attaches multiprocessing.shared_memory),
                       mp_queue_pickle (the numpy array through a
                       multiprocessing.Queue), shoal_pickled (the Array
                       itself sent: pickled, it is its handle; unpickling
                       attaches), and mp_shared_memory_again (the same as
                       mp_shared_memory, on a second segment: how far apart
                       two identical kinds land in this harness).
                       The median of 100 hand-offs of each to one waiting
                       worker, each timed alone (a 1 ms pause before it).
array.pool_map         seconds for Pool(4).map of 8 tasks that each sum the
                       same 256 MiB float64 array. Peer: mp_pool_pickle (the
                       numpy array pickled as the task's argument).
array.pool_map_pss     total PSS in MiB (parent + 4 workers, smaps_rollup)
                       while every worker holds the 256 MiB array. Peers:
                       mp_pool_pickle, and idle_pool_plus_array (the budget's
                       base: an idle pool's PSS plus the array's size).

One JSON object per line: {"name", "value", "unit", "peers": {...}}.
"""
import itertools
import json
import multiprocessing as mp
import os
import statistics
import sys
import time
from multiprocessing import resource_tracker, shared_memory

import numpy as np

import shoal

MiB = 1 << 20
SETTLE_S = 0.001   # the pause before each hand-off


def now():
    return time.clock_gettime(time.CLOCK_MONOTONIC)


def emit(name, value, unit, peers):
    print(json.dumps({"name": name, "value": round(value, 4), "unit": unit,
                      "peers": {k: round(v, 4) for k, v in peers.items()}}), flush=True)


# ---- hand-off ------------------------------------------------------------------

def _handoff_worker(conn, q):
    while True:
        kind, _ = conn.recv()
        if kind == "stop":
            return
        if kind in ("shoal", "shoal_pickled"):
            got = conn.recv()     # the handle, or the Array itself (unpickled: attached)
            a = shoal.Array.attach(got) if kind == "shoal" else got
            v = a.numpy()
            v[0]
            t1 = now()
            del v, got
            a.release()
            del a             # unmapped here, outside the next timing
        elif kind == "queue":
            x = q.get()
            x[0]
            t1 = now()
            del x
        else:
            name, shape, dtype = conn.recv()
            shm = shared_memory.SharedMemory(name)
            v = np.ndarray(shape, dtype, buffer=shm.buf)
            v[0]
            t1 = now()
            del v
            shm.close()
        conn.send(t1)


# The light kinds of hand-off, timed in turns. "shm_again" is the same as
# "shm" on a second segment: the harness's own bias shows as their gap.
_LIGHT = ("shoal", "shoal_pickled", "shm", "shm_again")


def handoff(size, reps, pickle_reps):
    ctx = mp.get_context("fork")
    # One resource tracker for both processes; otherwise the worker starts
    # its own, which unlinks the peer's segment when the worker exits.
    resource_tracker.ensure_running()
    parent, child = ctx.Pipe()
    q = ctx.Queue()
    w = ctx.Process(target=_handoff_worker, args=(child, q))
    w.start()
    n = size // 8
    res = {k: [] for k in _LIGHT + ("queue",)}

    a = shoal.Array.zeros(n, "float64")
    a.numpy()[:] = 1.0
    x = np.ones(n)
    shms = {}
    for k in ("shm", "shm_again"):
        shms[k] = shared_memory.SharedMemory(create=True, size=size)
        np.ndarray((n,), "float64", buffer=shms[k].buf)[:] = 1.0
    try:
        # Each hand-off is timed alone: a pause before it lets the one before
        # settle (the peer's message to its resource tracker is handled by
        # that process after the hand-off, and would land in the next one's
        # time). The light kinds take turns in every order in succession,
        # so each comes as often in each place and after each other one, and
        # drifts in the machine's load touch all alike. The heavy pickle peer
        # runs last, so that freeing its copies does not land in another's
        # timing. The first of each is a warm-up.
        orders = list(itertools.permutations(_LIGHT))
        order = [k for i in range(reps + 1) for k in orders[i % len(orders)]]
        order += ["queue"] * (pickle_reps + 1)
        seen = set()
        for kind in order:
            time.sleep(SETTLE_S)
            parent.send((kind, None))
            t0 = now()
            if kind == "shoal":
                parent.send(a.handle)
            elif kind == "shoal_pickled":
                parent.send(a)
            elif kind == "queue":
                q.put(x)
            else:
                parent.send((shms[kind].name, (n,), "float64"))
            t1 = parent.recv()
            if kind in seen:
                res[kind].append(t1 - t0)
            seen.add(kind)
        parent.send(("stop", None))
        w.join(60)
    finally:
        for shm in shms.values():
            shm.close()
            shm.unlink()
        a.release()
    med = {k: statistics.median(v) * 1e3 for k, v in res.items()}
    label = f"{size // MiB}MiB" if size < 1024 * MiB else f"{size // (1024 * MiB)}GiB"
    emit(f"array.handoff.{label}", med["shoal"], "ms",
         {"mp_queue_pickle": med["queue"], "mp_shared_memory": med["shm"],
          "shoal_pickled": med["shoal_pickled"], "mp_shared_memory_again": med["shm_again"]})


# ---- Pool.map ------------------------------------------------------------------

def _sum_shoal(a):
    return float(a.numpy().sum())


def _sum_numpy(x):
    return float(x.sum())


_barriers = None


def _init(b1, b2):
    global _barriers
    _barriers = (b1, b2)


def _hold_shoal(a):
    s = float(a.numpy().sum())
    _barriers[0].wait()   # every worker holds it now: the parent measures
    _barriers[1].wait()
    return s, os.getpid()


def _hold_numpy(x):
    s = float(x.sum())
    _barriers[0].wait()
    _barriers[1].wait()
    return s, os.getpid()


def pss_mib(pid):
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            if line.startswith("Pss:"):
                return int(line.split()[1]) / 1024
    return 0.0


def pool_map(size, tasks, reps):
    ctx = mp.get_context("fork")
    n = size // 8
    a = shoal.Array.zeros(n, "float64")
    a.numpy()[:] = 1.0
    x = np.ones(n)
    times = {"shoal": [], "pickle": []}
    with ctx.Pool(4) as pool:
        pool.map(_sum_numpy, [np.ones(4)] * 8)      # workers up and warm
        for _ in range(reps):
            t0 = now()
            r = pool.map(_sum_shoal, [a] * tasks, chunksize=1)
            times["shoal"].append(now() - t0)
            assert r == [float(n)] * tasks
            t0 = now()
            r = pool.map(_sum_numpy, [x] * tasks, chunksize=1)
            times["pickle"].append(now() - t0)
            assert r == [float(n)] * tasks
    a.release()
    med = {k: statistics.median(v) for k, v in times.items()}
    emit("array.pool_map", med["shoal"], "s", {"mp_pool_pickle": med["pickle"]})


def _pool_pss(kind, size):
    """Total PSS of parent + 4 workers, idle and while each holds the array."""
    ctx = mp.get_context("fork")
    b1, b2 = ctx.Barrier(5), ctx.Barrier(5)
    n = size // 8
    with ctx.Pool(4, initializer=_init, initargs=(b1, b2)) as pool:
        pids = {p.pid for p in pool._pool}
        pool.map(_sum_numpy, [np.ones(4)] * 8)
        idle = pss_mib(os.getpid()) + sum(pss_mib(p) for p in pids)
        if kind == "shoal":
            arr = shoal.Array.zeros(n, "float64")
            arr.numpy()[:] = 1.0
            r = pool.map_async(_hold_shoal, [arr] * 4, chunksize=1)
        else:
            arr = np.ones(n)
            r = pool.map_async(_hold_numpy, [arr] * 4, chunksize=1)
        b1.wait(120)
        held = pss_mib(os.getpid()) + sum(pss_mib(p) for p in pids)
        b2.wait(120)
        out = r.get(120)
        assert len({pid for _, pid in out}) == 4 and all(s == float(n) for s, _ in out)
        if kind == "shoal":
            arr.release()
        del arr
    return idle, held


def pool_map_pss(size):
    idle, held = _pool_pss("shoal", size)
    _, held_pickle = _pool_pss("pickle", size)
    emit("array.pool_map_pss", held, "MiB",
         {"mp_pool_pickle": held_pickle, "idle_pool_plus_array": idle + size / MiB})


def main():
    quick = "--quick" in sys.argv
    reps = 100 if not quick else 5
    handoff(1 * MiB, reps, reps)
    handoff(256 * MiB, reps, 5 if not quick else 1)
    handoff(1024 * MiB, reps, 3 if not quick else 1)
    pool_map(256 * MiB, 8, 3 if not quick else 1)
    pool_map_pss(256 * MiB)


if __name__ == "__main__":
    main()
