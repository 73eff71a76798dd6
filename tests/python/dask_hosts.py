"""One "host" of test_dask.py's two-host test, run inside its own network
and mount namespaces (unshare --net --mount) with its own /dev/shm.

Talks to the test over stdin/stdout, one line each way per step:
  A (scheduler + 2 workers): ready -> go -> addr <scheduler> -> run ->
    result <json> (B's workers retired by then) -> close -> left <json>
  B (2 workers):            ready -> go -> workers <scheduler> -> up ->
    stop -> left <json>
Its argv: role, its address, the link it owns, the name prefix its
objects carry.
"""
import asyncio
import json
import os
import subprocess
import sys

import numpy as np

N = 2**20  # 8 MiB blocks of float64


def say(*words):
    print(*words, flush=True)


def hear(word):
    line = sys.stdin.readline().split(maxsplit=1)
    if not line or line[0] != word:
        raise SystemExit(f"expected {word!r}, got {line!r}")
    return line[1].strip() if len(line) > 1 else ""


def make(i, n):
    return np.full(n, float(i))


def total(*blocks):
    return np.add.reduce(blocks)


def left(prefix):
    return sorted(f for f in os.listdir("/dev/shm") if f.startswith(f"shoal.{prefix}."))


def main():
    role, ip, link, prefix = sys.argv[1:5]
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256m", "tmpfs", "/dev/shm"], check=True)
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    say("ready")
    hear("go")
    subprocess.run(["ip", "addr", "add", f"{ip}/24", "dev", link], check=True)
    subprocess.run(["ip", "link", "set", link, "up"], check=True)
    import dask
    from distributed import Client, LocalCluster, Nanny
    dask.config.set({"shoal.dask.prefix": prefix})
    kw = dict(preload=["shoal.dask"], preload_nanny=["shoal.dask"])
    if role == "A":
        with LocalCluster(n_workers=2, threads_per_worker=1, host=ip, dashboard_address=":0",
                          **kw) as cluster, Client(cluster) as client:
            say("addr", cluster.scheduler_address)
            hear("run")
            client.wait_for_workers(4, timeout=60)
            workers = sorted(client.scheduler_info()["workers"])
            blocks = [client.submit(make, i, N, workers=[w], pure=False)
                      for i, w in enumerate(workers)]
            sums = [client.submit(total, *blocks, workers=[w], pure=False) for w in workers]
            want = float(sum(range(len(workers))))
            ok = all(np.array_equal(s, np.full(N, want)) for s in client.gather(sums))
            stats = client.run(lambda: __import__("shoal.dask").dask.stats())
            del blocks, sums
            # Retired while the link is up: comms to them close now rather
            # than time out once B's namespace (and its end of the link) is gone.
            client.retire_workers([w for w in workers if f"//{ip}:" not in w],
                                  close_workers=True)
            say("result", json.dumps({"ok": ok, "stats": stats}))
            hear("close")
        say("left", json.dumps(left(prefix)))
    else:
        address = hear("workers")

        async def run():
            nannies = [Nanny(address, host=ip, nthreads=1, dashboard_address=":0", **kw)
                       for _ in range(2)]
            await asyncio.gather(*nannies)
            say("up")
            await asyncio.get_running_loop().run_in_executor(None, hear, "stop")
            await asyncio.gather(*(n.close() for n in nannies))

        asyncio.run(run())
        say("left", json.dumps(left(prefix)))


if __name__ == "__main__":
    main()
