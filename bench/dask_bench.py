"""Dask with shoal.dask against plain Dask, in the same run (bench/dask.sh).

A LocalCluster of 4 worker processes (1 thread each, no memory limit, so
neither side spills) holds 16 blocks of 64 MiB of random float64 (1 GiB;
random, so Dask's compression cannot shrink them), block i made on worker
i % 4. Then an all-to-all shuffle: output j, on worker j % 4, sums the j-th
sixteenth of every block, so every worker fetches the 12 blocks it does not
hold: 48 transfers of 64 MiB. Measured from submitting the shuffle until
every output is done:

  dask.shuffle_s    wall time of the shuffle
  dask.transfer_s   the workers' incoming transfer time, summed
                    (distributed's transfer_incoming_log: request to
                    deserialized data)
  dask.peak_pss     the peak over the run of the 4 workers' total PSS
                    (shoal.MemoryMonitor, smaps), in MiB

Each mode runs in its own process (plain Dask never imports shoal.dask);
the modes take turns, ROUNDS times each (DASK_ROUNDS, default 2), and each
figure is the best (least) of its rounds. One JSON object per line:
{"name", "value", "unit", "peers": {"dask": ...}, "runs": {...}}.
"""
import json
import os
import subprocess
import sys
import time

BLOCK = 8 * 2**20  # float64 items: 64 MiB
NBLOCKS = 16
WORKERS = 4


def make(i):
    import numpy as np
    return np.random.default_rng(i).random(BLOCK)


def part(j, *blocks):
    import numpy as np
    n = BLOCK // NBLOCKS
    return np.add.reduce([b[j * n:(j + 1) * n] for b in blocks])


def transfer_time(dask_worker):
    return sum(t["duration"] for t in dask_worker.transfer_incoming_log)


def one(mode):
    import dask
    import shoal
    from distributed import Client, LocalCluster, wait
    kw = {}
    if mode == "shoal":
        kw = dict(preload=["shoal.dask"], preload_nanny=["shoal.dask"])
    with dask.config.set({"distributed.scheduler.active-memory-manager.start": False}), \
            LocalCluster(n_workers=WORKERS, threads_per_worker=1, processes=True,
                         memory_limit=0, dashboard_address=":0", **kw) as cluster, \
            Client(cluster) as client:
        workers = sorted(client.scheduler_info()["workers"])
        pids = list(client.run(os.getpid).values())
        blocks = [client.submit(make, i, workers=[workers[i % WORKERS]], pure=False)
                  for i in range(NBLOCKS)]
        wait(blocks)
        mon = shoal.MemoryMonitor(pids=pids, interval=0.05, smaps=True)
        with mon:
            t0 = time.perf_counter()
            parts = [client.submit(part, j, *blocks, workers=[workers[j % WORKERS]], pure=False)
                     for j in range(NBLOCKS)]
            wait(parts)
            wall = time.perf_counter() - t0
        check = client.submit(lambda *p: float(sum(x.sum() for x in p)), *parts,
                              workers=[workers[0]], pure=False).result()
        tt = sum(client.run(transfer_time).values())
        del blocks, parts
    return {"shuffle_s": wall, "transfer_s": tt, "peak_pss": mon.peak_pss / 2**20, "check": check}


def main():
    if len(sys.argv) > 2 and sys.argv[1] == "--one":
        print(json.dumps(one(sys.argv[2])), flush=True)
        return
    rounds = int(os.environ.get("DASK_ROUNDS", "2"))
    runs = {"shoal": [], "dask": []}
    for _ in range(rounds):
        for mode in ("dask", "shoal"):
            out = subprocess.run([sys.executable, __file__, "--one", mode], check=True,
                                 stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
            runs[mode].append(json.loads(out.stdout.strip().splitlines()[-1]))
    checks = {round(r["check"], 3) for rs in runs.values() for r in rs}
    if len(checks) != 1:
        raise SystemExit(f"dask_bench: the modes disagree: {checks}")
    for name, unit in (("shuffle_s", "s"), ("transfer_s", "s"), ("peak_pss", "MiB")):
        best = {m: min(r[name] for r in rs) for m, rs in runs.items()}
        print(json.dumps({"name": f"dask.{name}", "value": round(best["shoal"], 4), "unit": unit,
                          "peers": {"dask": round(best["dask"], 4)},
                          "runs": {m: [round(r[name], 4) for r in rs] for m, rs in runs.items()}}),
              flush=True)


if __name__ == "__main__":
    main()
