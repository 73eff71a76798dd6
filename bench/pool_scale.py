"""pool.scale: tiny tasks at 2, 8, 32 and 128 workers, however many cores
the machine has, for the C pool (bench/pool_scale, forked C workers, an
8-byte task that returns itself), the Python pool (shoal.Pool.map of an
identity function, chunksize 1) and multiprocessing.Pool (the same map),
all in the same run.

    python3 pool_scale.py BUILDDIR [rounds]     (default 3 rounds)

Each round runs every count once for each pool, the counts in turn
ascending then descending (ABBA), each pool made afresh and warmed by a
map of a tenth of the tasks; the figure is the median of the rounds.
Prints one JSON line per pool and count: the rate, multiprocessing.Pool's
at that count as its peer, and the rate as a fraction of the same pool's
best count (`of_best`; for the C pool also the CPU time per task, caller
and workers together, which moves far less than a rate with what else
the machine runs); then one line per pool with the worst count's
fraction, multiprocessing.Pool's own as its peer.
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
C_TASKS, PY_TASKS, MP_TASKS = 200000, 100000, 40000


def ident(x):
    return x


def c_rate(builddir, workers):
    out = subprocess.run([os.path.join(builddir, "bench", "pool_scale"), str(workers),
                          str(C_TASKS)], check=True, capture_output=True, text=True).stdout
    f = out.split()
    return float(f[2]), float(f[3])


def timed_map(run, items):
    run(items[:len(items) // 10])
    t0 = time.perf_counter()
    out = run(items)
    rate = len(items) / (time.perf_counter() - t0)
    assert len(out) == len(items) and out[-1] == items[-1]
    return rate


def py_rate(workers):
    with shoal.Pool(workers) as p:
        return timed_map(lambda xs: list(p.map(ident, xs)), list(range(PY_TASKS)))


def mp_rate(workers):
    with multiprocessing.get_context("fork").Pool(workers) as p:
        return timed_map(lambda xs: p.map(ident, xs, chunksize=1), list(range(MP_TASKS)))


def main():
    builddir = sys.argv[1]
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    runs = {(k, w): [] for k in ("c", "py", "mp") for w in COUNTS}
    cpu = {w: [] for w in COUNTS}
    for r in range(rounds):
        for w in COUNTS if r % 2 == 0 else reversed(COUNTS):
            r_c, us = c_rate(builddir, w)
            runs["c", w].append(r_c)
            cpu[w].append(us)
            runs["py", w].append(py_rate(w))
            runs["mp", w].append(mp_rate(w))
    rate = {key: statistics.median(v) for key, v in runs.items()}
    best = {k: max(rate[k, w] for w in COUNTS) for k in ("c", "py", "mp")}
    cores = os.cpu_count()
    for k, label in (("c", "c"), ("py", "python")):
        for w in COUNTS:
            extra = {"cpu_us_per_task": round(statistics.median(cpu[w]), 3)} if k == "c" else {}
            print(json.dumps({
                "name": f"pool.scale_{label}_{w}w", "value": round(rate[k, w]), "unit": "tasks/s",
                "peers": {"mp_pool": round(rate["mp", w]),
                          "ratio_mp_pool": round(rate[k, w] / rate["mp", w], 2),
                          "of_best": round(rate[k, w] / best[k], 2),
                          "mp_of_best": round(rate["mp", w] / best["mp"], 2),
                          "workers": w, "cores": cores, **extra,
                          "rounds": {"ours": [round(x) for x in runs[k, w]],
                                     "mp_pool": [round(x) for x in runs["mp", w]]}}}))
    for k, label in (("c", "c"), ("py", "python")):
        worst = min(rate[k, w] / best[k] for w in COUNTS)
        mp_worst = min(rate["mp", w] / best["mp"] for w in COUNTS)
        print(json.dumps({
            "name": f"pool.scale_{label}_worst", "value": round(worst, 2),
            "unit": "fraction of best count",
            "peers": {"mp_pool": round(mp_worst, 2), "cores": cores,
                      "counts": list(COUNTS)}}))


if __name__ == "__main__":
    main()
