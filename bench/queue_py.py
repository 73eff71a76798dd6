"""Python side of bench/queue.sh: shoal.Queue against multiprocessing.Queue,
one producer process and one consumer process, 64-byte bytes messages.

    queue_py.py 1to1 ROUNDS   -> {"shoal": msgs/s, "mp_queue": msgs/s}
    queue_py.py batch ROUNDS  -> the same with put_many/get_many of 32

Each peer moves the same messages in the same run (median of ROUNDS,
interleaved); multiprocessing.Queue has no batch call, so in "batch" it
moves the same number of messages one by one, which is what a user of it
would do.
"""
import json
import multiprocessing as mp
import os
import statistics
import sys
import time

import shoal

MSG = b"m" * 64
BATCH = 32


def produce(kind, q, n, go, batch):
    go.wait()
    if kind == "shoal" and batch:
        items = [MSG] * BATCH
        for _ in range(n // BATCH):
            q.put_many(items)
    else:
        put = q.put
        for _ in range(n):
            put(MSG)


def run(kind, n, batch):
    ctx = mp.get_context("fork")
    go = ctx.Event()
    if kind == "shoal":
        name = f"bench.py.{os.getpid()}"
        q = shoal.Queue(name, capacity=1024, max_msg=64)
    else:
        q = ctx.Queue(1024)
    p = ctx.Process(target=produce, args=(kind, q, n, go, batch))
    p.start()
    time.sleep(0.05)
    t0 = time.perf_counter()
    go.set()
    got = 0
    if kind == "shoal" and batch:
        get_many = q.get_many
        while got < n:
            got += len(get_many(BATCH))
    else:
        get = q.get
        for _ in range(n):
            get()
        got = n
    dt = time.perf_counter() - t0
    p.join()
    if kind == "shoal":
        q.unlink()
        q.detach()
    return got / dt


def main():
    mode, rounds = sys.argv[1], int(sys.argv[2])
    batch = mode == "batch"
    counts = {"shoal": 1_000_000 if batch else 300_000, "mp_queue": 100_000}
    res = {k: [] for k in counts}
    for _ in range(rounds):
        for k, n in counts.items():
            res[k].append(run(k, n, batch))
    print(json.dumps({k: round(statistics.median(v), 1) for k, v in res.items()}))


if __name__ == "__main__":
    main()
