"""Big array benchmarks: create + first full write, beside SharedMemory.

bigarray.create_fill.<size>[.huge]
    seconds from nothing to "every byte of a new <size> array written once
    from Python": shoal.Array.empty((n,), "float64") then .numpy().fill(1.0).
    Peer shared_memory: multiprocessing.shared_memory.SharedMemory(
    create=True, size=n) then np.ndarray(buffer=shm.buf).fill(1.0), on
    /dev/shm (where SharedMemory always lives). Context: create_s and fill_s
    (shoal's two steps), peer_create_s, peer_fill_s, cpu_s and peer_cpu_s
    (CPU seconds of all threads, user + system: on a VM whose CPUs are
    shared with others, what the work cost apart from waiting for a CPU),
    dir (shoal_dir()),
    mount (its filesystem and huge= option). ".huge" is appended to the
    name when shoal's directory is a tmpfs with huge= other than never.
    The best of ROUNDS rounds of each, taking turns (shoal, then the peer),
    one object alive at a time. A size is skipped (value null, "skipped"
    says why) when MemAvailable is below 1.15 x the size + 1 GiB, or when
    shoal's directory or /dev/shm has not that much room.

BIGARRAY_WARM=1 appends ".warm" to the names and, before each timed step,
writes and frees as many bytes of anonymous memory: on a VM whose balloon
reports free pages to the host (virtio free page reporting), a page freed
for a few seconds is handed back and its next use faults on the host too,
which then costs more than all the guest kernel's work; warm, both sides
get pages the host still backs, as on a machine of one's own.

Usage: bigarray_bench.py [SIZE_GiB...]   (default 1 4 12; ROUNDS env, default 2)
One JSON object per line: {"name", "value", "unit", "peers": {...}, ...}.
"""
import json
import mmap
import os
import resource
import sys
import time
from multiprocessing import shared_memory

import numpy as np

import shoal

GiB = 1 << 30


def now():
    return time.clock_gettime(time.CLOCK_MONOTONIC)


def cpu():
    """CPU seconds of this process so far, every thread's, user + system."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def mem_available():
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return 0


def mount_of(path):
    """(fstype, options) of the mount that holds path."""
    path = os.path.realpath(path)
    best = ("", "", "")
    with open("/proc/self/mounts") as f:
        for line in f:
            dev, mnt, fstype, opts = line.split()[:4]
            mnt = mnt.replace("\\040", " ")
            if (path == mnt or path.startswith(mnt.rstrip("/") + "/")) and len(mnt) >= len(best[0]):
                best = (mnt, fstype, opts)
    return best[1], best[2]


def room(path):
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def warm(n):
    """Touch and free n bytes of anonymous memory, so the next allocation
    finds guest pages the hypervisor still backs (see BIGARRAY_WARM)."""
    m = mmap.mmap(-1, n)
    v = np.frombuffer(m, dtype=np.uint8)
    v.fill(1)
    del v
    m.close()


def shoal_once(n, hot):
    if hot:
        warm(n)
    c0, t0 = cpu(), now()
    a = shoal.Array.empty((n // 8,), "float64")
    t1 = now()
    v = a.numpy()
    v.fill(1.0)
    t2, c2 = now(), cpu()
    del v
    a.release()
    return t1 - t0, t2 - t1, c2 - c0


def peer_once(n, hot):
    if hot:
        warm(n)
    c0, t0 = cpu(), now()
    shm = shared_memory.SharedMemory(create=True, size=n)
    t1 = now()
    v = np.ndarray((n // 8,), dtype=np.float64, buffer=shm.buf)
    v.fill(1.0)
    t2, c2 = now(), cpu()
    del v
    shm.close()
    shm.unlink()
    return t1 - t0, t2 - t1, c2 - c0


def main():
    sizes = [float(s) for s in sys.argv[1:]] or [1, 4, 12]
    rounds = int(os.environ.get("ROUNDS", "2"))
    # An older library (before shoal_dir()) measured by the same script
    # always used /dev/shm.
    d = shoal.directory() if hasattr(shoal, "directory") else "/dev/shm"
    fstype, opts = mount_of(d)
    huge = [o for o in opts.split(",") if o.startswith("huge=")]
    huge = huge[0] if huge else "huge=never"
    suffix = ".huge" if fstype == "tmpfs" and huge != "huge=never" else ""
    hot = os.environ.get("BIGARRAY_WARM", "0") not in ("", "0")
    if hot:
        suffix += ".warm"
    for gib in sizes:
        n = int(gib * GiB)
        label = f"{gib:g}GiB"
        name = f"bigarray.create_fill.{label}{suffix}"
        need = int(1.15 * n) + GiB
        why = None
        if mem_available() < need:
            why = f"MemAvailable {mem_available() / GiB:.1f} GiB < {need / GiB:.1f} GiB needed"
        elif room(d) < n + (1 << 20) or room("/dev/shm") < n:
            why = f"{d} or /dev/shm has less than {gib:g} GiB free"
        if why:
            print(json.dumps({"name": name, "value": None, "unit": "s", "peers": {},
                              "skipped": why}), flush=True)
            continue
        best, best_peer = None, None
        for _ in range(rounds):
            s = shoal_once(n, hot)
            p = peer_once(n, hot)
            if best is None or s[0] + s[1] < best[0] + best[1]:
                best = s
            if best_peer is None or p[0] + p[1] < best_peer[0] + best_peer[1]:
                best_peer = p
        print(json.dumps({
            "name": name, "value": round(best[0] + best[1], 4), "unit": "s",
            "peers": {"shared_memory": round(best_peer[0] + best_peer[1], 4)},
            "create_s": round(best[0], 4), "fill_s": round(best[1], 4),
            "peer_create_s": round(best_peer[0], 4), "peer_fill_s": round(best_peer[1], 4),
            "cpu_s": round(best[2], 4), "peer_cpu_s": round(best_peer[2], 4),
            "dir": d, "mount": f"{fstype} {huge}"}), flush=True)


if __name__ == "__main__":
    main()
