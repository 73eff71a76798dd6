"""Pool benchmarks, each beside its peer in the same run:
tiny_tasks, recycle_ms (the Python side), memory_after_recycle.

    python3 pool_bench.py tiny [tasks] [chunksize]   (median of 8 rounds each)
    python3 pool_bench.py recycle [tasks]
    python3 pool_bench.py memory
"""
import concurrent.futures
import json
import multiprocessing
import sys
import statistics
import time

import numpy as np

import shoal

MiB = 2**20
_leak = []


def ident(x):
    return x


def bloat(mb):
    _leak.append(np.ones(mb * MiB // 8))
    return len(_leak)


def rate(fn, n, runs=3):
    """Tasks/s of fn() running n tasks: the median of @runs runs."""
    rates = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        rates.append(n / (time.perf_counter() - t0))
    return sorted(rates)[len(rates) // 2]


def tiny(n=100000, chunksize=1, workers=2, rounds=8):
    """shoal and multiprocessing.Pool take turns (ABBA), each round with
    pools of its own: on this machine a pool's rate varies from one
    instance to the next by more than from one map to the next, so each
    round starts both afresh and no one instance decides the result. Each
    pool runs the map once untimed (a pool's first map of that size is
    slower: shoal's in every instance measured, the peer's in most), then
    once timed; the median of the rounds for each.
    ProcessPoolExecutor runs at most 20000 tasks: it is ten times slower,
    and a rate needs no more."""
    items = list(range(n))
    few = items[:20000]

    def ours():
        with shoal.Pool(workers) as p:
            run = lambda: list(p.map(ident, items, chunksize=chunksize))  # noqa: E731
            run()  # warm: a pool's first map of this size runs slower
            return rate(run, n, 1)

    def mp():
        with multiprocessing.get_context("fork").Pool(workers) as p:
            run = lambda: p.map(ident, items, chunksize=chunksize)  # noqa: E731
            run()
            return rate(run, n, 1)

    runs = {ours: [], mp: []}
    for i in range(rounds):
        for f in (ours, mp) if i % 2 == 0 else (mp, ours):
            runs[f].append(f())
    ours_rate, mp_rate = (statistics.median(runs[f]) for f in (ours, mp))
    with concurrent.futures.ProcessPoolExecutor(
            workers, mp_context=multiprocessing.get_context("fork")) as p:
        list(p.map(ident, range(100)))
        ppe = rate(lambda: list(p.map(ident, few, chunksize=chunksize)), len(few))
    print(json.dumps({"name": "pool.tiny_tasks", "value": round(ours_rate), "unit": "tasks/s",
                      "peers": {"mp_pool": round(mp_rate), "process_pool_executor": round(ppe),
                                "ratio_mp_pool": round(ours_rate / mp_rate, 2),
                                "ratio_process_pool_executor": round(ours_rate / ppe, 2),
                                "chunksize": chunksize, "workers": workers,
                                "rounds": {"ours": [round(r) for r in runs[ours]],
                                           "mp_pool": [round(r) for r in runs[mp]]}}}))


def recycle(n=300):
    with shoal.Pool(2, max_tasks=1, max_tasks_jitter=0) as p:
        t0 = time.perf_counter()
        list(p.map(ident, range(n)))
        ours_task = (time.perf_counter() - t0) * 1e3 / n
        med = p.info()["recycle_ms_median"]
    with multiprocessing.get_context("fork").Pool(2, maxtasksperchild=1) as p:
        t0 = time.perf_counter()
        p.map(ident, range(n), chunksize=1)
        mp_task = (time.perf_counter() - t0) * 1e3 / n
    return med, ours_task, mp_task


def memory():
    """Total private memory of the workers: at rest, then after each
    bloated one (300 MiB) was recycled at the 100 MiB soft limit."""
    with shoal.Pool(2, max_private_memory="100 MiB") as p:
        list(p.map(ident, range(20)))
        time.sleep(0.2)
        base = sum(shoal.memstat(pid).private for pid in p.pids())
        peak = 0
        fs = [p.submit(bloat, 300) for _ in range(2)]
        with shoal.MemoryMonitor(pids=p.pids, interval=0.01) as mon:
            for f in fs:
                f.result()
            end = time.monotonic() + 10
            while time.monotonic() < end:
                st = p.stats()
                if sum(s["recycles"]["memory"] for s in st) >= 2 and len(p.pids()) == 2:
                    break
                time.sleep(0.01)
            list(p.map(ident, range(20)))
            time.sleep(0.2)
        peak = mon.peak_private
        after = sum(shoal.memstat(pid).private for pid in p.pids())
    print(json.dumps({"name": "pool.memory_after_recycle", "value": round(after / base, 3),
                      "unit": "fraction of baseline",
                      "peers": {"baseline_mib": round(base / MiB, 1),
                                "peak_mib": round(peak / MiB, 1),
                                "after_mib": round(after / MiB, 1)}}))


if __name__ == "__main__":
    what = sys.argv[1] if len(sys.argv) > 1 else "tiny"
    args = [int(a) for a in sys.argv[2:]]
    if what == "tiny":
        tiny(*args)
    elif what == "recycle":
        print(" ".join(f"{v:.3f}" for v in recycle(*args)))
    elif what == "memory":
        memory()
