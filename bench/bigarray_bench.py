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

bigarray.floor.<size>.<mode>
    the floors: how fast this machine puts <size> bytes of fresh memory
    into a process at all, then writes them once (memset, one thread, as
    numpy's fill), with no shoal and no Python: bench/bigarray_floor MODE
    (its comment says what each mode does): anon_populate (mmap
    MAP_POPULATE), anon_threads (MADV_POPULATE_WRITE in one thread per
    CPU), anon_threads_hp (the same with MADV_HUGEPAGE: 2 MiB pages),
    memfd_fallocate (memfd + fallocate, the fill faults), shm_threads (a
    file in /dev/shm populated as shoal's create does: file_threads, with
    no library: the floor for shared 4 KiB pages). Value: the first
    run; peers: shared_memory (this size's peer in this run), again_s (the
    same mode again AGAIN_GAP_S after the first was freed: whether pages
    freed a moment ago are cheaper than fresh ones) and steal_s. Context:
    first and again (every count the program prints).

With BIGARRAY_HUGETLB=1 (root; it changes vm.nr_hugepages for the run and
puts it back), per size, on a hugetlbfs mount with a pool of 2 MiB pages
reserved for the run:
bigarray.create_fill.<size>.hugetlb_pool
    shoal with SHOAL_DIR on that mount (a child process), created and
    filled twice AGAIN_GAP_S apart; the value is the second: a pool that
    was reserved and touched once (a one-time system setup) keeps its pages
    (freed huge pages go back to the pool, not to the guest's free lists, so
    the balloon never reports them to the host). Peers: shared_memory,
    first_s (the first create + fill: the pool's pages fresh),
    pool_setup_s (the sysctl writes).
bigarray.floor.<size>.hugetlb_pool
    bench/bigarray_floor file_threads on the same pool, after shoal's two.

Every timed step waits BIGARRAY_SETTLE seconds (default 3) first, so what
the previous step freed has been reported to the host and each step starts
from fresh memory. BIGARRAY_SIZES (default "1 4") or arguments give the
sizes; 12 GiB: BIGARRAY_SIZES="1 4 12".

BIGARRAY_WARM=1 appends ".warm" to the names and, before each timed step,
writes and frees as many bytes of anonymous memory: on a VM whose balloon
reports free pages to the host (virtio free page reporting), a page freed
for a few seconds is handed back and its next use faults on the host too;
warm, both sides get pages the host still backs, as on a machine of one's
own. The floors are not run warm.

Usage: bigarray_bench.py [SIZE_GiB...]   (ROUNDS env, default 2)
One JSON object per line: {"name", "value", "unit", "peers": {...}, ...}.
"""
import json
import mmap
import os
import resource
import subprocess
import sys
import tempfile
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


def shoal_once(n, hot, settle=None):
    time.sleep(SETTLE_S if settle is None else settle)
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
    time.sleep(SETTLE_S)
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


# (figure, bench/bigarray_floor mode, whether it needs a file in /dev/shm)
FLOOR_MODES = (("anon_populate", "anon_populate", False), ("anon_threads", "anon_threads", False),
               ("anon_threads_hp", "anon_threads_hp", False),
               ("memfd_fallocate", "memfd_fallocate", False), ("shm_threads", "file_threads", True))
AGAIN_GAP_S = 0.5
# Seconds every timed step waits first, so the pages the last step freed
# have been reported to the host (free page reporting waits 2 s) and each
# step starts from fresh memory, not from what its predecessor left backed.
SETTLE_S = float(os.environ.get("BIGARRAY_SETTLE", "3"))


def floor_bin():
    b = os.path.join(os.environ.get("SHOAL_BUILDDIR", ""), "bench", "bigarray_floor")
    return b if os.access(b, os.X_OK) else None


def floor(mode, n, path=""):
    """Both runs of bench/bigarray_floor MODE: fresh, then again
    AGAIN_GAP_S after the first was freed. [] when it failed."""
    time.sleep(SETTLE_S)
    r = subprocess.run([floor_bin(), mode, str(n), path, str(AGAIN_GAP_S)],
                       stdout=subprocess.PIPE, text=True, check=False)
    return [json.loads(l) for l in r.stdout.splitlines() if l.startswith("{")]


def floor_line(name, runs, peer):
    first, again = runs[0], runs[1] if len(runs) > 1 else None
    return {"name": name, "value": round(first["create_s"] + first["fill_s"], 4), "unit": "s",
            "peers": {"shared_memory": peer,
                      "again_s": again and round(again["create_s"] + again["fill_s"], 4),
                      "steal_s": first["steal_s"]},
            "first": first, "again": again}


def meminfo(key):
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


def set_hugepages(count):
    with open("/proc/sys/vm/nr_hugepages", "w") as f:
        f.write(str(count))


def shoal_child(n, gap):
    """--shoal-child: shoal_once twice, gap seconds apart, in this fresh
    process (SHOAL_DIR is read once per process)."""
    out = [shoal_once(n, False)]
    out.append(shoal_once(n, False, settle=gap))
    print(json.dumps({"dir": shoal.directory(), "runs": out}), flush=True)


def hugetlb(n, label, peer):
    """(d): a hugetlbfs mount with a pool of 2 MiB pages reserved for the
    run (vm.nr_hugepages, put back after). shoal in a child process with
    SHOAL_DIR there, created twice (the second AGAIN_GAP_S after the first
    was freed: pool pages stay in the pool, never go back to the guest's
    free lists, so the balloon cannot report them to the host); then the C
    floor (file_threads) on the same pool, twice."""
    pages = -(-n // (2 << 20)) + 4  # the data, shoal's header page, its ledger tail
    if os.geteuid() != 0:
        return [{"name": f"bigarray.create_fill.{label}.hugetlb_pool", "value": None,
                 "unit": "s", "peers": {}, "skipped": "BIGARRAY_HUGETLB needs root"}]
    old = int(open("/proc/sys/vm/nr_hugepages").read())
    mnt = tempfile.mkdtemp(prefix="shoal-hugetlb-")
    mounted = False
    lines = []
    try:
        t0 = now()
        # Each write allocates what it can (compacting as it goes): on a
        # machine whose memory others use, a few tries find the rest.
        for _ in range(5):
            set_hugepages(old + pages)
            if meminfo("HugePages_Free") >= pages:
                break
            time.sleep(1)
        setup = now() - t0
        got = meminfo("HugePages_Free")
        if got < pages:
            return [{"name": f"bigarray.create_fill.{label}.hugetlb_pool", "value": None,
                     "unit": "s", "peers": {},
                     "skipped": f"only {got} of {pages} huge pages could be reserved"}]
        subprocess.run(["mount", "-t", "hugetlbfs", "-o", "pagesize=2M,mode=1777", "none", mnt],
                       check=True)
        mounted = True
        env = dict(os.environ, SHOAL_DIR=mnt)
        r = subprocess.run([sys.executable, os.path.abspath(__file__), "--shoal-child", str(n),
                            str(AGAIN_GAP_S)], env=env, stdout=subprocess.PIPE, text=True,
                           check=True)
        child = json.loads(r.stdout.strip().splitlines()[-1])
        first, again = child["runs"]
        lines.append({
            "name": f"bigarray.create_fill.{label}.hugetlb_pool",
            "value": round(again[0] + again[1], 4), "unit": "s",
            "peers": {"shared_memory": peer, "first_s": round(first[0] + first[1], 4),
                      "pool_setup_s": round(setup, 4)},
            "create_s": round(again[0], 4), "fill_s": round(again[1], 4),
            "cpu_s": round(again[2], 4), "first_create_s": round(first[0], 4),
            "first_fill_s": round(first[1], 4), "dir": child["dir"], "mount": "hugetlbfs 2M"})
        runs = floor_bin() and floor("file_threads", n, os.path.join(mnt, "floor"))
        if runs:
            lines.append(floor_line(f"bigarray.floor.{label}.hugetlb_pool", runs, peer))
    finally:
        if mounted:
            subprocess.run(["umount", mnt], check=False)
        os.rmdir(mnt)
        set_hugepages(old)
    return lines


def main():
    sizes = [float(s) for s in (sys.argv[1:] or os.environ.get("BIGARRAY_SIZES", "1 4").split())]
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
        peer = round(best_peer[0] + best_peer[1], 4)
        if floor_bin() and not hot:
            for fig, mode, shm in FLOOR_MODES:
                runs = floor(mode, n, f"/dev/shm/bigarray_floor.{os.getpid()}" if shm else "")
                if runs:
                    print(json.dumps(floor_line(f"bigarray.floor.{label}.{fig}", runs, peer)),
                          flush=True)
        if os.environ.get("BIGARRAY_HUGETLB", "0") not in ("", "0") and not hot:
            for line in hugetlb(n, label, peer):
                print(json.dumps(line), flush=True)


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--shoal-child":
        shoal_child(int(sys.argv[2]), float(sys.argv[3]))
    else:
        main()
