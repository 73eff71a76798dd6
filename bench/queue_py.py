"""Python side of the queue's figures (bench/queue_py.sh): shoal.Queue
against pyzmq PUSH/PULL over ipc and multiprocessing.Queue, one producer
process and one consumer process, and the cost of one put or get against
the bare ctypes call it makes.

    queue_py.py floor ROUNDS  -> ns per call: get, put, and the floor: the
                                 bare call of the same C function (for
                                 get, also the pop alone, without the copy;
                                 for put, also the call put made before,
                                 shoal_queue_port_send with len())
    queue_py.py 1to1 ROUNDS   -> msgs/s of 64-byte bytes: shoal put/get,
                                 pyzmq send/recv, mp_queue put/get
    queue_py.py batch ROUNDS  -> the same, shoal with put_many/get_many of 32
    queue_py.py obj ROUNDS    -> objects/s of (int, short str): put_obj/
                                 get_obj, pyzmq send_pyobj/recv_pyobj,
                                 mp_queue put/get

Each peer moves the same messages in the same run, taking turns (median of
ROUNDS). pyzmq and multiprocessing.Queue have no batch call, so in "batch"
they move the same messages one by one, which is what their user would do.
"""
import json
import multiprocessing as mp
import os
import statistics
import sys
import time

import shoal
from shoal import queue as _q

MSG = b"m" * 64
OBJ = (12345, "hello, queue")
BATCH = 32


def produce(kind, addr, n, go, mode):
    if kind == "zmq":
        import zmq
        ctx = zmq.Context()
        s = ctx.socket(zmq.PUSH)
        s.connect(addr)
        go.wait()
        send = s.send_pyobj if mode == "obj" else s.send
        item = OBJ if mode == "obj" else MSG
        for _ in range(n):
            send(item)
        s.close(linger=-1)
        ctx.term()
        return
    q = addr
    go.wait()
    if kind == "shoal" and mode == "batch":
        items = [MSG] * BATCH
        for _ in range(n // BATCH):
            q.put_many(items)
    elif kind == "shoal" and mode == "obj":
        put = q.put_obj
        for _ in range(n):
            put(OBJ)
    else:
        put = q.put
        item = OBJ if mode == "obj" else MSG
        for _ in range(n):
            put(item)


def run(kind, n, mode):
    ctx = mp.get_context("fork")
    go = ctx.Event()
    zctx = sock = None
    if kind == "shoal":
        q = shoal.Queue(f"bench.py.{os.getpid()}", capacity=1024, max_msg=64)
        addr = q
    elif kind == "zmq":
        addr = f"ipc:///tmp/shoal-bench-{os.getpid()}.ipc"
    else:
        q = addr = ctx.Queue(1024)
    p = ctx.Process(target=produce, args=(kind, addr, n, go, mode))
    p.start()
    if kind == "zmq":
        # After the fork: a zmq context must not cross one (its I/O
        # thread does not); the producer's connect retries until the bind.
        import zmq
        zctx = zmq.Context()
        sock = zctx.socket(zmq.PULL)
        sock.setsockopt(zmq.RCVTIMEO, 20_000)  # a stalled round is retried, not waited for
        sock.bind(addr)
    time.sleep(0.05)
    t0 = time.perf_counter()
    go.set()
    got = 0
    if kind == "zmq":
        try:
            return _drain_zmq(sock, n, mode, t0)
        finally:
            p.kill()
            p.join()
            sock.close(linger=0)
            zctx.term()
            os.unlink(addr[len("ipc://"):])
    if kind == "shoal" and mode == "batch":
        get_many = q.get_many
        while got < n:
            got += len(get_many(BATCH))
    else:
        if kind == "shoal" and mode == "obj":
            get = q.get_obj
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


def _drain_zmq(sock, n, mode, t0):
    """Receive the n messages; None if they stop coming for 20 s (seen
    twice on a loaded machine with Debian's pyzmq 24 / libzmq 4.3.4: a
    round whose PULL side waited for minutes, cause not found): the round
    is then run again."""
    import zmq
    get = sock.recv_pyobj if mode == "obj" else sock.recv
    try:
        for _ in range(n):
            get()
    except zmq.Again:
        return None
    return n / (time.perf_counter() - t0)


def floor(rounds):
    """ns per call, single process: a queue of 4096 slots filled (for
    gets) or drained (for puts) before each timed loop of 4096 calls; the
    loops take turns, 8 x ROUNDS times each, and each figure is its
    fastest loop (short loops that others on the machine can only slow)."""
    n = 1 << 12
    q = shoal.Queue(f"bench.py.{os.getpid()}", capacity=n, max_msg=64)
    q.put(MSG)
    q.get()  # makes get()'s port
    take, pop, rx, tx = _q._port_take, _q._port_pop, q._rx, q._tx
    send, port_put = _q._port_send, _q._port_put

    def fill():
        while q.qsize() < n:
            q.put(MSG)

    def drain():
        while q.qsize():
            q.get()

    def floor_take():
        for _ in range(n):
            take(rx)

    def floor_pop():
        for _ in range(n):
            pop(rx)

    def get():
        g = q.get
        for _ in range(n):
            g()

    def floor_send():
        m = MSG
        for _ in range(n):
            send(tx, m, len(m))

    def floor_put():
        m = MSG
        for _ in range(n):
            port_put(tx, m)

    def put():
        p = q.put
        for _ in range(n):
            p(MSG)

    loops = {"get": (fill, get), "floor_call": (fill, floor_take),
             "pop_no_copy": (fill, floor_pop),
             "put": (drain, put), "floor_put": (drain, floor_put),
             "send_with_len": (drain, floor_send)}
    res = {k: [] for k in loops}
    for _ in range(8 * rounds):
        for k, (prep, body) in loops.items():
            prep()
            t = time.perf_counter()
            body()
            res[k].append((time.perf_counter() - t) / n * 1e9)
    drain()
    q.unlink()
    q.detach()
    # The fastest round: a loop this short is only ever slowed by others.
    return {k: round(min(v), 1) for k, v in res.items()}


def main():
    mode, rounds = sys.argv[1], int(sys.argv[2])
    if mode == "floor":
        print(json.dumps(floor(rounds)))
        return
    counts = {"shoal": {"batch": 1_000_000, "1to1": 300_000, "obj": 200_000}[mode],
              "pyzmq": 200_000 if mode != "obj" else 100_000, "mp_queue": 50_000}
    res = {k: [] for k in counts}
    for _ in range(rounds):
        for k, n in counts.items():
            for _attempt in range(3):
                r = run("zmq" if k == "pyzmq" else k, n, mode)
                if r is not None:
                    res[k].append(r)
                    break
            else:
                raise SystemExit(f"queue_py.py: {k} stalled three times")
    print(json.dumps({k: round(statistics.median(v), 1) for k, v in res.items()}))


if __name__ == "__main__":
    main()
