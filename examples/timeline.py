#!/usr/bin/env python3
"""shoal timeline: draw a pool's memory timeline, the picture in
docs/memstat.md (docs/img/timeline.png).

Three workers sum slices of one shared array, and their tasks leak memory
on purpose, some much and some little. The pool records its own memory
(Pool(record_memory=True)) and replaces workers for three reasons, each
marked where it happened: private memory over the soft limit ("memory"),
a task count ("tasks"), and a worker killed in a task ("died"). The
shared array is in every process's PSS, split between them, and in no
worker's private memory.

    python3 examples/timeline.py                  # docs/img/timeline.png
    python3 examples/timeline.py /tmp/t.png --csv /tmp/t.csv
"""
import argparse
import os
import signal
import sys
import tempfile
import time

import numpy as np

import shoal

MiB = 2**20
_leaked = []  # in workers: what the tasks leak on purpose


def task(a, lo, hi, leak_mib, die_flag):
    """Sum a slice of the shared array and leak @leak_mib; with @die_flag,
    kill this worker the first time (its task then runs again)."""
    s = int(a.numpy()[lo:hi].sum())
    junk = np.empty(leak_mib * MiB // 8)
    junk.fill(1.0)  # touched: resident
    _leaked.append(junk)
    time.sleep(0.05)  # long enough for the samples to see each worker
    if die_flag:
        try:
            os.close(os.open(die_flag, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
            os.kill(os.getpid(), signal.SIGKILL)
        except FileExistsError:
            pass
    return s


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("png", nargs="?",
                    default=os.path.join(here, os.pardir, "docs", "img", "timeline.png"),
                    help="the picture to write (default docs/img/timeline.png)")
    ap.add_argument("--csv", metavar="PATH", help="also write the samples and events as CSV")
    ap.add_argument("--size", type=int, default=256, help="array size in MiB (default 256)")
    ap.add_argument("--tasks", type=int, default=60, help="tasks (default 60)")
    ap.add_argument("--leak", type=int, default=24,
                    help="MiB the leaky tasks leak (default 24)")
    ap.add_argument("--limit", type=int, default=120,
                    help="workers' private memory limit in MiB (default 120)")
    args = ap.parse_args()
    if min(args.size, args.tasks, args.leak, args.limit) < 1:
        ap.error("sizes, tasks and limits must be positive")

    n = args.size * MiB // 8
    a = shoal.Array.empty(n, "int64")
    try:
        a.numpy()[:] = 1
        bounds = np.linspace(0, n, args.tasks + 1, dtype=np.int64)
        with tempfile.TemporaryDirectory() as tmp:
            flag = os.path.join(tmp, "died")
            # One task at a time per worker (prefetch=1), so tasks reach
            # the workers in turn; the task count limit without jitter.
            with shoal.Pool(3, max_private_memory=args.limit * MiB, max_tasks=8,
                            max_tasks_jitter=0, prefetch=1, record_memory=True,
                            memory_interval=0.03, memory_smaps=True) as pool:
                futs = [pool.submit(task, a, int(lo), int(hi),
                                    args.leak if i % 3 else 1,
                                    flag if i == args.tasks // 2 else None)
                        for i, (lo, hi) in enumerate(zip(bounds[:-1], bounds[1:]))]
                total = sum(f.result() for f in futs)
        assert total == n, total
        mon = pool.memory
        if args.csv:
            mon.to_csv(args.csv)
        mon.plot(args.png, title=f"shoal.Pool(3, max_private_memory={args.limit} MiB,"
                                 f" max_tasks=8): {args.size} MiB shared array",
                 dpi=90)  # docs/img/timeline.png stays under 100 KiB
    finally:
        a.release()
    why = {}
    for e in mon.events:
        why[e.reason] = why.get(e.reason, 0) + 1
    print(f"{args.png}: {len(mon.timeline)} samples over {mon.timeline[-1].t:.1f} s,"
          f" recycles {why}, peak private {mon.peak_private / MiB:.0f} MiB,"
          f" peak PSS {mon.peak_pss / MiB:.0f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
