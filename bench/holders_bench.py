"""Attaching an array that many processes hold, beside SharedMemory.

array.attach.holders_<K>   us per attach + close of one 1 MiB shoal array
                           from Python (shoal.Array.attach(handle), then
                           close(): map, ledger line taken and dropped,
                           unmap) while K other processes hold it (each one
                           an attached C process, bench/holders_bench.c).
                           Peer: mp_shared_memory, the same for
                           multiprocessing.shared_memory.SharedMemory(name)
                           and close() of a 1 MiB segment that the same K
                           processes have mapped. The two take turns; the
                           median of 400 of each, each timed alone. Up to
                           204 holders the ledger is the first page; past
                           that, overflow lines (docs/array.md).
array.attach.full_dead_lock_wait
                           ms: the longest shoal_array_retain() + release()
                           of a holder while another process attaches into
                           a full ledger (16384 lines) of dead holders
                           behind that live one, which stops release sweeps
                           (bench/holders_bench.c --full-dead): how long the
                           attach keeps the ledger lock from others. The
                           worst of 5 attaches, the ledger refilled before
                           each. No peer: a bound, kept from the version
                           that judged every line under the lock.
array.attach.full_dead     ms: that attach itself (median of the 5).

Arguments: holder counts and/or "full"; none means 1 64 1024 4096 full.

One JSON object per line: {"name", "value", "unit", "peers": {...}}.
"""
import json
import os
import statistics
import subprocess
import sys
import time
from multiprocessing import shared_memory

import shoal

MiB = 1 << 20


def now():
    return time.clock_gettime(time.CLOCK_MONOTONIC)


def emit(name, value, unit, peers):
    print(json.dumps({"name": name, "value": round(value, 3), "unit": unit,
                      "peers": {k: round(v, 3) for k, v in peers.items()}}), flush=True)


def once_shoal(handle):
    t0 = now()
    a = shoal.Array.attach(handle)
    a.close()
    return now() - t0


def once_shm(name):
    t0 = now()
    s = shared_memory.SharedMemory(name)
    s.close()
    # (Python 3.8-3.12 registers each attach with the resource tracker, as
    # users of SharedMemory pay too; a set, so the creator's unlink
    # unregisters the name once.)
    return now() - t0


def run(helper, k, reps):
    a = shoal.Array.zeros(MiB // 8, "float64")
    shm = shared_memory.SharedMemory(create=True, size=MiB)
    p = subprocess.Popen([helper, a.handle, shm.name, str(k)], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, text=True)
    try:
        line = p.stdout.readline().split()
        assert line == ["ready", str(k)], line
        assert a.refcount == k + 1
        res = {"shoal": [], "shm": []}
        for i in range(reps + 1):
            for kind in (("shoal", "shm") if i % 2 else ("shm", "shoal")):
                dt = once_shoal(a.handle) if kind == "shoal" else once_shm(shm.name)
                if i:
                    res[kind].append(dt)
    finally:
        p.stdin.close()
        rc = p.wait(120)
        shm.close()
        shm.unlink()
    assert rc == 0 and a.refcount == 1
    a.close()
    med = {k2: statistics.median(v) * 1e6 for k2, v in res.items()}
    emit(f"array.attach.holders_{k}", med["shoal"], "us",
         {"mp_shared_memory": med["shm"]})


def main():
    helper = os.path.join(os.environ.get("SHOAL_BUILDDIR", "_build/release"), "bench",
                          "holders_bench")
    args = sys.argv[1:] or ["1", "64", "1024", "4096", "full"]
    for arg in args:
        if arg == "full":
            sys.stdout.flush()
            subprocess.run([helper, "--full-dead", "5"], check=True)
        else:
            run(helper, int(arg), 400)


if __name__ == "__main__":
    main()
