#!/usr/bin/env python3
"""shoal demo: a pool of workers computes over one big array in shared
memory, while each task leaks memory on purpose (as fragmented Python heaps
do); the pool recycles a worker when its *private* memory passes the limit.
The shared array never counts against that limit and is never copied.

The pool records its memory timeline (Pool(record_memory=True)): the
demo draws it, each process's private memory and PSS over time with every
recycle marked, to shoal-demo-timeline.png (and its samples to .csv) in
the current directory, or where --timeline says.

Then the same job on multiprocessing.Pool(maxtasksperchild=...), with each
task's part of the array pickled to the worker, for the time beside it.

    python3 examples/demo.py              # 1 GiB, 4 workers
    python3 examples/demo.py --size 256 --workers 2 --leak 20 --limit 100
"""
import argparse
import concurrent.futures
import multiprocessing
import os
import pickle
import sys
import time

import numpy as np

import shoal

MiB = 2**20
_leaked = []    # in workers: what the tasks leak on purpose


def _leak(mib):
    junk = np.empty(mib * MiB // 8)
    junk.fill(1.0)  # touched: really resident
    _leaked.append(junk)


def task_shared(a, lo, hi, leak_mib):
    """Sum a slice of the shared array, and leak. ``a`` arrived as its handle
    (a few dozen bytes): unpickling attached the same pages, no copy."""
    s = int(a.numpy()[lo:hi].sum())
    _leak(leak_mib)
    return s


def task_pickled(part, leak_mib):
    """The same on a pickled copy of the slice."""
    s = int(part.sum())
    _leak(leak_mib)
    return s


def fmt(b):
    if b is None:
        return "not measured"
    return f"{b / MiB:,.0f} MiB" if b < 10 * 2**30 else f"{b / 2**30:,.1f} GiB"


def progress(done, total, pool, t0, width=28):
    """A live line on a terminal; a line per quarter otherwise."""
    tty = sys.stdout.isatty()
    if not tty and done not in {total * k // 4 for k in (1, 2, 3, 4)}:
        return
    fill = int(width * done / total)
    st = pool.stats()
    rec = sum(sum(s["recycles"].values()) for s in st)
    priv = sum(s["private"] for s in st)
    sys.stdout.write(f"{chr(13) if tty else ''}  [{'#' * fill}{'.' * (width - fill)}]"
                     f" {done}/{total} tasks  recycles {rec:3d}  workers' private"
                     f" {fmt(priv):>9}  {time.monotonic() - t0:5.1f} s {'' if tty else chr(10)}")
    sys.stdout.flush()


def run_shoal(args, a, parts):
    t0 = time.monotonic()
    # The pool's own record of its processes: the parent and every
    # worker, replaced ones included, every 50 ms. PSS every 0.25 s only:
    # smaps_rollup looks up every page of each process's 1 GiB mapping,
    # over 100 ms for all of them here.
    pool = shoal.Pool(args.workers, max_private_memory=args.limit * MiB,
                      start_method=args.start_method, record_memory=True,
                      memory_interval=0.05, memory_smaps=0.25)
    total = 0
    futs = [pool.submit(task_shared, a, lo, hi, args.leak) for lo, hi in parts]
    done = 0
    for f in concurrent.futures.as_completed(futs):
        total += f.result()
        done += 1
        progress(done, len(parts), pool, t0)
    stats = pool.stats()
    info = pool.info()
    pool.shutdown()  # its monitor stops with it
    elapsed = time.monotonic() - t0
    if sys.stdout.isatty():
        print()
    return total, elapsed, stats, info, pool.memory


def write_timeline(mon, path):
    """The timeline as a PNG at @path and CSV beside it; what to print."""
    csv_path = os.path.splitext(path)[0] + ".csv"
    mon.to_csv(csv_path)
    try:
        mon.plot(path, title="shoal demo: memory per process (recycles marked)")
    except ImportError:
        return (f"not drawn (no matplotlib: apt-get install python3-matplotlib);"
                f" samples in {os.path.abspath(csv_path)}")
    return (f"{os.path.abspath(path)} (private memory and PSS per process over time,"
            f" each recycle marked; samples in {os.path.basename(csv_path)})")


def run_mp(args, arr, parts, per_worker):
    t0 = time.monotonic()
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(args.workers, maxtasksperchild=per_worker) as pool:
        total = sum(pool.starmap(task_pickled, [(arr[lo:hi], args.leak) for lo, hi in parts],
                                 chunksize=1))
    return total, time.monotonic() - t0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=1024, help="array size in MiB (default 1024)")
    ap.add_argument("--workers", type=int, default=4, help="pool workers (default 4)")
    ap.add_argument("--tasks", type=int, default=64, help="tasks (default 64)")
    ap.add_argument("--leak", type=int, default=40,
                    help="MiB each task leaks on purpose (default 40)")
    ap.add_argument("--limit", type=int, default=200,
                    help="workers' private memory limit in MiB (default 200)")
    ap.add_argument("--start-method", default="fork", choices=["fork", "spawn", "forkserver"])
    ap.add_argument("--no-compare", action="store_true",
                    help="skip the multiprocessing.Pool run")
    ap.add_argument("--timeline", default="shoal-demo-timeline.png", metavar="PNG",
                    help="where to draw the memory timeline (default"
                         " shoal-demo-timeline.png; its CSV beside it); '' for none")
    args = ap.parse_args()
    if args.size < 1 or args.workers < 1 or args.tasks < 1 or args.leak < 0 or args.limit < 1:
        ap.error("sizes, workers and tasks must be positive")

    n = args.size * MiB // 8
    print(f"shoal {shoal.__version__}: {args.workers} workers over a {fmt(n * 8)} shared array;"
          f" each task leaks {args.leak} MiB, recycle at {args.limit} MiB private")
    t0 = time.monotonic()
    a = shoal.Array.empty(n, "int64")
    try:
        arr = a.numpy()
        step = 8 * MiB
        for lo in range(0, n, step):  # in pieces: no 1 GiB temporary
            hi = min(n, lo + step)
            arr[lo:hi] = np.arange(lo, hi, dtype=np.int64)
        expected = n * (n - 1) // 2
        print(f"  filled in {time.monotonic() - t0:.1f} s (shoal.Array, one copy for"
              f" everyone: /dev/shm/shoal.{a.name}; tasks carry its handle,"
              f" {len(pickle.dumps(a))} bytes)")
        bounds = np.linspace(0, n, args.tasks + 1, dtype=np.int64)
        parts = [(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:])]

        total, elapsed, stats, info, mon = run_shoal(args, a, parts)
        ok = "right" if total == expected else f"WRONG (expected {expected})"

        print()
        print(f"  {'worker':>6} {'pid now':>8} {'tasks':>6} {'private now':>12}"
              f" {'peak':>9}  recycles (reason)")
        for i, s in enumerate(stats):
            why = ", ".join(f"{v} {k}" for k, v in s["recycles"].items() if v) or "-"
            print(f"  {i:>6} {s['pid']:>8} {s['tasks_total']:>6} {fmt(s['private']):>12}"
                  f" {fmt(s['private_peak']):>9}  {why}")
        recycles = sum(sum(s["recycles"].values()) for s in stats)
        copies = (args.workers + 1) * n * 8
        if args.timeline:
            print(f"  timeline: {write_timeline(mon, args.timeline)}")
        print()
        print(f"  result: {total} ({ok})")
        # peak_pss is None where smaps_rollup could not be read.
        print(f"  memory: peak total PSS of parent + workers {fmt(mon.peak_pss)} (the array"
              f" counted once, plus the leaks);\n          the parent's array plus a copy in each of"
              f" the {args.workers} workers would be {fmt(copies)} before any leak")
        print(f"  recycles: {recycles} (median decision to replacement ready"
              f" {info['recycle_ms_median']:.1f} ms); tasks lost: {info['lost']}")
        print(f"  time: shoal.Pool {elapsed:.2f} s", end="", flush=True)
        if not args.no_compare:
            per_worker = max(1, args.limit // max(1, args.leak))
            mp_total, mp_elapsed = run_mp(args, arr, parts, per_worker)
            assert mp_total == expected
            print(f"   multiprocessing.Pool(maxtasksperchild={per_worker}), slices pickled:"
                  f" {mp_elapsed:.2f} s")
        else:
            print()
        del arr
    finally:
        a.release()  # the last reference: the array's memory goes back
    return 0 if total == expected and info["lost"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
