"""joblib backends: ten Parallel calls over the same big array, 4 workers.

joblib.ten_calls.<size>
    seconds for ten ``Parallel(n_jobs=4)`` calls over the same array of
    <size> (float64, rows x 1024), each call 8 tasks ``f(X, i)`` that sum
    row block i of 8: the whole array read once per call. The pool is
    started (one tiny call) before the clock starts: both backends reuse
    their workers across calls. shoal's value is backend "shoal" with X
    made by ``shoal.joblib.share()`` (the caller's array lives in shared
    memory: sent as a handle, never copied). Peers: ``loky`` (joblib's
    default backend with its default memmapping: X a plain numpy array,
    dumped to a file under /dev/shm once per call and memory-mapped by the
    workers), ``shoal_copy`` (backend "shoal" with a plain numpy X: copied
    into shared memory once, then compared with the caller's bytes once per
    call). Context: ``sum_ok`` (every backend's sums equal the expected).

joblib.peak_pss.<size>
    peak total PSS (the sum over the caller and every process below it:
    workers, fork server, loky's resource tracker; /proc/PID/smaps_rollup
    sampled every 0.1 s) during those ten calls, in MiB, for the same three
    runs. Context: ``*_base`` (the same sum with X made and the pool idle,
    before the calls) and ``*_ratio`` (peak / base: what the calls added).
    PSS counts pages of /dev/shm only while mapped: ``*_shm_peak`` is the
    most /dev/shm held during the calls (statvfs), so a copy that nobody
    maps is not hidden.

Each backend runs in a fresh process (one X at a time), ROUNDS times
(default 2), taking turns: loky, shoal, shoal_copy, then shoal_copy,
shoal, loky; the best time and the lowest peak of each are reported.

Usage: joblib_bench.py [SIZE_GiB]   (default 1)
"""
import json
import os
import subprocess
import sys
import threading
import time

GiB = 1 << 30
COLS = 1024
TASKS = 8
CALLS = 10
WORKERS = 4


def now():
    return time.clock_gettime(time.CLOCK_MONOTONIC)


def tree(pid):
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            for t in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{t}/children") as f:
                    todo.extend(int(c) for c in f.read().split())
        except OSError:
            continue
    return out


def pss(pid):
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def shm_used():
    st = os.statvfs("/dev/shm")
    return (st.f_blocks - st.f_bfree) * st.f_frsize


class Sampler(threading.Thread):
    def __init__(self):
        super().__init__(daemon=True)
        self.stop = threading.Event()
        self.peak = self.shm_peak = 0

    def sample(self):
        total = sum(pss(p) for p in tree(os.getpid()))
        self.peak = max(self.peak, total)
        self.shm_peak = max(self.shm_peak, shm_used())
        return total

    def run(self):
        while not self.stop.wait(0.1):
            self.sample()


def block_sum(x, i):
    n = x.shape[0]
    return float(x[i * n // TASKS:(i + 1) * n // TASKS].sum())


def one(backend, size):
    """One backend's run, in this (fresh) process: a JSON line."""
    import numpy as np
    import joblib
    rows = int(size * GiB) // (COLS * 8)
    name = "loky" if backend == "loky" else "shoal"
    if backend == "shoal":
        import shoal
        import shoal.joblib  # noqa: F401
        # The caller's array in shared memory (what shoal.joblib.share()
        # gives, without a first copy).
        X = np.asarray(shoal.Array.empty((rows, COLS), "float64"))
    else:
        if backend == "shoal_copy":
            import shoal.joblib  # noqa: F401
        X = np.empty((rows, COLS))
    X[:] = np.arange(COLS, dtype=np.float64)
    per_row = float(np.arange(COLS).sum())
    expect = [per_row * ((i + 1) * rows // TASKS - i * rows // TASKS) for i in range(TASKS)]
    ok = True
    with joblib.parallel_backend(name, n_jobs=WORKERS):
        joblib.Parallel()(joblib.delayed(abs)(-i) for i in range(8))  # start the workers
        time.sleep(0.5)
        s = Sampler()
        base = s.sample()
        s.peak = 0
        s.start()
        t0 = now()
        for _ in range(CALLS):
            out = joblib.Parallel(batch_size=1)(
                joblib.delayed(block_sum)(X, i) for i in range(TASKS))
            ok = ok and out == expect
        t = now() - t0
        s.stop.set()
        s.join()
        s.sample()
    print(json.dumps({"backend": backend, "seconds": t, "peak": s.peak, "base": base,
                      "shm_peak": s.shm_peak, "ok": ok}), flush=True)


def main():
    if len(sys.argv) > 2 and sys.argv[1] == "--one":
        one(sys.argv[2], float(sys.argv[3]))
        return
    size = float(sys.argv[1]) if len(sys.argv) > 1 else 1.0
    rounds = int(os.environ.get("ROUNDS", "2"))
    order = ["loky", "shoal", "shoal_copy"]
    runs = {b: [] for b in order}
    for r in range(rounds):
        for b in (order if r % 2 == 0 else order[::-1]):
            out = subprocess.run([sys.executable, __file__, "--one", b, str(size)],
                                 capture_output=True, text=True, check=True).stdout
            runs[b].append(json.loads(out.strip().splitlines()[-1]))
    best = {b: min(rs, key=lambda d: d["seconds"]) for b, rs in runs.items()}
    low = {b: min(rs, key=lambda d: d["peak"]) for b, rs in runs.items()}
    label = f"{size:g}GiB"
    MiB = 1 << 20
    print(json.dumps({
        "name": f"joblib.ten_calls.{label}", "value": round(best["shoal"]["seconds"], 3),
        "unit": "s",
        "peers": {"loky": round(best["loky"]["seconds"], 3),
                  "shoal_copy": round(best["shoal_copy"]["seconds"], 3)},
        "sum_ok": all(d["ok"] for rs in runs.values() for d in rs),
        "rounds": rounds, "all_s": {b: [round(d["seconds"], 3) for d in rs]
                                    for b, rs in runs.items()}}))
    ctx = {}
    for b in order:
        ctx[f"{b}_base"] = round(low[b]["base"] / MiB)
        ctx[f"{b}_ratio"] = round(low[b]["peak"] / low[b]["base"], 3)
        ctx[f"{b}_shm_peak"] = round(low[b]["shm_peak"] / MiB)
    print(json.dumps({
        "name": f"joblib.peak_pss.{label}", "value": round(low["shoal"]["peak"] / MiB),
        "unit": "MiB",
        "peers": {"loky": round(low["loky"]["peak"] / MiB),
                  "shoal_copy": round(low["shoal_copy"]["peak"] / MiB),
                  # Context (bench/run shows these, never as ratios).
                  "idle_pool_plus_array": ctx["shoal_base"],
                  "pss_ratio": ctx["shoal_ratio"], "loky_pss_ratio": ctx["loky_ratio"],
                  "shoal_copy_pss_ratio": ctx["shoal_copy_ratio"]}, **ctx}))


if __name__ == "__main__":
    main()
