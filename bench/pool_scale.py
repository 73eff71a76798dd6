"""pool.scale: tiny tasks at 2, 8, 32 and 128 workers, however many cores
the machine has, for the C pool (bench/pool_scale, forked C workers, an
8-byte task that returns itself), the Python pool (shoal.Pool.map of an
identity function, chunksize 1) and multiprocessing.Pool (the same map).

    python3 pool_scale.py BUILDDIR [rounds]     (default 5 rounds)

The machine's speed can swing severalfold from one minute to the next, so
counts measured one after another compare minutes as much as counts. Here
the counts take turns instead: one pool of each count lives for the whole
part (each warmed once), and each round runs every count once, in
ascending order, then descending in the next round; every run is short
(a fraction of a second), so a swing falls on all counts of a round alike.
The C pool's rounds run in one process (bench/pool_scale); then the
Python pool's, where each count's run of shoal.Pool is followed by a run
of multiprocessing.Pool at that count (made afresh and warmed: it is the
peer, and its figure is its own). The idle pools sleep meanwhile.

Prints one JSON line per pool and count: the median over the rounds of the
rate, multiprocessing.Pool's median at that count as its peer, and
`of_best`, the median rate over the same pool's best count's median (the
issue 17 figure); `round_of_best`, the median over rounds of the rate over
the best count's rate in the same round (steadier still); the CPU time
per task (caller and workers together, and apart), which moves far less
than a rate with what else the machine runs, and per task the workers'
and the caller's threads' voluntary context switches (sleeps) and
involuntary ones (preempted), from /proc. Then one line per pool with the worst count's `of_best`,
multiprocessing.Pool's own as its peer.
"""
import json
import multiprocessing
import os
import statistics
import subprocess
import sys
import time

import shoal

COUNTS = (2, 8, 32, 128)
C_TASKS, PY_TASKS, MP_TASKS = 200000, 100000, 8000


def ident(x):
    return x


def c_runs(builddir, rounds):
    """The C pool's runs, as {count: [(rate, fields), ...]}."""
    out = subprocess.run([os.path.join(builddir, "bench", "pool_scale"), str(C_TASKS),
                          str(rounds)] + [str(w) for w in COUNTS],
                         check=True, capture_output=True, text=True).stdout
    runs = {w: [] for w in COUNTS}
    for line in out.splitlines():
        f = line.split()
        runs[int(f[1])].append((float(f[3]), [float(x) for x in f[4:]]))
    return runs


def timed(run, items):
    t0 = time.perf_counter()
    out = run(items)
    rate = len(items) / (time.perf_counter() - t0)
    assert len(out) == len(items) and out[-1] == items[-1]
    return rate


def proc_figures(pids):
    """CPU nanoseconds, voluntary and involuntary context switches: of
    @pids together, and of this process's threads together."""
    def add(acc, status, schedstat):
        try:
            with open(schedstat) as f:
                acc[0] += int(f.read().split()[0])
            with open(status) as f:
                for line in f:
                    if line.startswith("voluntary_ctxt_switches"):
                        acc[1] += int(line.split()[1])
                    elif line.startswith("nonvoluntary_ctxt_switches"):
                        acc[2] += int(line.split()[1])
        except (OSError, IndexError, ValueError):
            pass
    workers, caller = [0, 0, 0], [0, 0, 0]
    for pid in pids:
        add(workers, f"/proc/{pid}/status", f"/proc/{pid}/schedstat")
    for tid in os.listdir("/proc/self/task"):
        add(caller, f"/proc/self/task/{tid}/status", f"/proc/self/task/{tid}/schedstat")
    return workers + caller


def py_run(pool, items):
    """One timed map of @items on shoal.Pool @pool: the rate, then per task
    the CPU microseconds of the caller's threads and of the workers, and
    the workers' and the caller's voluntary and involuntary switches."""
    pids = pool.pids()
    f0 = proc_figures(pids)
    rate = timed(lambda xs: list(pool.map(ident, xs)), items)
    f1 = proc_figures(pids)
    d = [(b - a) / len(items) for a, b in zip(f0, f1)]
    return rate, [(d[0] + d[3]) / 1e3, d[3] / 1e3, d[0] / 1e3, d[1], d[2], d[4], d[5]]


def mp_rate(workers, items):
    with multiprocessing.get_context("fork").Pool(workers) as p:
        def run(xs):
            return p.map(ident, xs, chunksize=1)
        run(items[:len(items) // 10])
        return timed(run, items)


def py_runs(rounds):
    """The Python pool's runs, {count: [(rate, figures), ...]}, and
    multiprocessing.Pool's, {count: [rate, ...]}."""
    items, mp_items = list(range(PY_TASKS)), list(range(MP_TASKS))
    pools = {}
    ours = {w: [] for w in COUNTS}
    mp = {w: [] for w in COUNTS}
    try:
        for w in COUNTS:
            pools[w] = shoal.Pool(w)
            list(pools[w].map(ident, items[:len(items) // 10]))
        for r in range(rounds):
            for w in COUNTS if r % 2 == 0 else reversed(COUNTS):
                ours[w].append(py_run(pools[w], items))
                mp[w].append(mp_rate(w, mp_items))
    finally:
        for p in pools.values():
            p.shutdown()
    return ours, mp


def of_best(runs):
    """Per count: the median rate, and the median over rounds of the rate
    over the best count's in that round."""
    med = {w: statistics.median(v) for w, v in runs.items()}
    n = min(len(v) for v in runs.values())
    rel = {w: statistics.median(runs[w][r] / max(runs[x][r] for x in COUNTS) for r in range(n))
           for w in COUNTS}
    return med, rel


def main():
    builddir = sys.argv[1]
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    cores = os.cpu_count()
    c = c_runs(builddir, rounds)
    py, mp = py_runs(rounds)
    # The figures per task of each run, in one order for both pools: CPU
    # of all, of the caller, of the workers; the workers' voluntary and
    # involuntary switches, the caller's.
    figs = {"c": {w: [[x[1][i] for i in (0, 5, 6, 1, 2, 3, 4)] for x in c[w]] for w in COUNTS},
            "python": {w: [x[1] for x in py[w]] for w in COUNTS}}
    rates = {k: {w: [x[0] for x in runs[w]] for w in COUNTS}
             for k, runs in (("c", c), ("python", py))}
    mp_med, _ = of_best(mp)
    mp_best = max(mp_med.values())
    worst = {}
    for label in ("c", "python"):
        med, rel = of_best(rates[label])
        best = max(med.values())
        worst[label] = min(med[w] / best for w in COUNTS)
        for w in COUNTS:
            f = figs[label][w]
            names = ("cpu_us_per_task", "caller_cpu_us_per_task", "workers_cpu_us_per_task",
                     "worker_sleeps_per_task", "worker_preempted_per_task",
                     "caller_sleeps_per_task", "caller_preempted_per_task")
            extra = {n: round(statistics.median(x[i] for x in f), 4) for i, n in enumerate(names)}
            print(json.dumps({
                "name": f"pool.scale_{label}_{w}w", "value": round(med[w]), "unit": "tasks/s",
                "peers": {"mp_pool": round(mp_med[w]),
                          "ratio_mp_pool": round(med[w] / mp_med[w], 2),
                          "of_best": round(med[w] / best, 2),
                          "round_of_best": round(rel[w], 2),
                          "mp_of_best": round(mp_med[w] / mp_best, 2),
                          "workers": w, "cores": cores, **extra,
                          "rounds": {"ours": [round(x) for x in rates[label][w]],
                                     "mp_pool": [round(x) for x in mp[w]]}}}))
    for label in ("c", "python"):
        print(json.dumps({
            "name": f"pool.scale_{label}_worst", "value": round(worst[label], 2),
            "unit": "fraction of best count",
            "peers": {"mp_pool": round(min(mp_med[w] / mp_best for w in COUNTS), 2),
                      "cores": cores, "counts": list(COUNTS)}}))


if __name__ == "__main__":
    main()
