"""Where a shoal.Pool's workers come from: the fork server ("fork" start
method). Workers hold no fd the caller did not give them, subprocesses run
beside a recycling pool do not block, a SIGKILLed parent takes its workers
with it, and a killed worker's half-made objects do not outlive the pool."""
import concurrent.futures
import errno
import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

import shoal
from shoal import _forkserver

BUILD = os.environ.get("SHOAL_TEST_BUILDDIR") or os.path.join(
    os.path.dirname(__file__), os.pardir, os.pardir, "_build", "release")
SHOAL = os.path.join(BUILD, "tools", "shoal")


def worker_fds(_):
    """The worker's fds above 2 (the listing's own left out), with what
    each is."""
    out = []
    for fd in os.listdir("/proc/self/fd"):
        fd = int(fd)
        if fd > 2:
            try:
                target = os.readlink(f"/proc/self/fd/{fd}")
            except OSError:
                continue  # the listing's own, closed by now
            if target != "/":  # a placeholder of a closed number (O_PATH)
                out.append((fd, target))
    return out


def nap(s):
    time.sleep(s)
    return os.getpid()


def gone_within(pid, seconds):
    """Whether @pid has exited (a zombie counts) within @seconds."""
    end = time.monotonic() + seconds
    while True:
        try:
            with open(f"/proc/{pid}/stat") as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
            if state in ("Z", "X"):
                return True
        except (FileNotFoundError, ProcessLookupError):
            return True
        if time.monotonic() > end:
            return False
        time.sleep(0.02)


def churn(stop, times):
    """Another thread of the caller's, running subprocesses through pipes."""
    while not stop.is_set():
        t = time.monotonic()
        subprocess.run(["true"], capture_output=True, timeout=60)
        times.append(time.monotonic() - t)


def test_workers_hold_no_foreign_fds():
    """A worker started at any moment, first or replacement, has fds 0-2
    only: not the caller's files (inheritable or not), not another
    thread's pipes, not the pool's own eventfd, pidfds or sockets."""
    r, w = os.pipe()
    os.set_inheritable(w, True)
    stop, times = threading.Event(), []
    t = threading.Thread(target=churn, args=(stop, times), daemon=True)
    t.start()
    try:
        with shoal.Pool(2, max_tasks=1, max_tasks_jitter=0) as p:
            held = [fds for fds in p.map(worker_fds, range(24)) if fds]
    finally:
        stop.set()
        t.join()
        os.close(r)
        os.close(w)
    assert held == []
    assert times


def test_subprocesses_do_not_block_while_workers_recycle():
    """subprocess.run() in a loop while a pool on another thread replaces a
    worker after every task: none waits for a worker to end."""
    plain = []
    for _ in range(5):
        t = time.monotonic()
        subprocess.run(["true"], capture_output=True, timeout=60)
        plain.append(time.monotonic() - t)
    stop = threading.Event()
    errors = []

    def recycle():
        try:
            with shoal.Pool(8, max_tasks=1, max_tasks_jitter=0) as p:
                while not stop.is_set():
                    list(p.map(nap, [1.0] * 8))
        except BaseException as e:  # noqa: B902
            errors.append(e)

    t = threading.Thread(target=recycle, daemon=True)
    t.start()
    times = []
    try:
        end = time.monotonic() + 4.0  # through a few rounds of recycles
        while len(times) < 40 or time.monotonic() < end:
            t0 = time.monotonic()
            # A worker that took this call's stdout pipe along would keep
            # it open for its 1 s task and more: communicate() waits.
            subprocess.run(["true"], capture_output=True, timeout=30)
            times.append(time.monotonic() - t0)
    finally:
        stop.set()
        t.join(60)
    assert not errors
    # A blocked call would take about a task's 1 s; a plain one takes
    # milliseconds (a generous bound: the machine is shared and slow).
    assert max(times) < max(0.8, 10 * max(plain)), (times, plain)


FORK_WINDOW = r"""
import errno, os, threading, time
calls, window, armed, held = [], [], [], []

def slow_fork_window():
    # Registered before shoal's own hook, so it runs after it (last
    # registered first): a fork() that takes 0.3 s to happen. Only the
    # test's own (not the pool's, nor its fork server's, which inherits
    # the hook).
    if not armed:
        return
    # Held by this thread (the hold did not time out): another hold here
    # is refused as this thread's own.
    held.append(shoal.pool._hooks_hold(0) == -errno.EDEADLK)
    window.append(time.monotonic())
    time.sleep(0.3)
    window.append(time.monotonic())

os.register_at_fork(before=slow_fork_window)
import shoal, shoal.pool
real = shoal.pool._spawn

def counted(*a):
    calls.append(time.monotonic())
    return real(*a)

shoal.pool._spawn = counted
stop = threading.Event()

def churn():
    with shoal.Pool(2, max_tasks=1, max_tasks_jitter=0) as p:
        while not stop.is_set():
            list(p.map(abs, range(8)))

t = threading.Thread(target=churn)
t.start()
while len(calls) < 10:
    time.sleep(0.01)
for _ in range(3):  # a hold that timed out (a slow hook under way) forks ungated
    window.clear()
    held.clear()
    armed.append(1)
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    armed.clear()
    os.waitpid(pid, 0)
    if held == [True]:
        break
n = len(calls)
while len(calls) < n + 5:  # the hooks go on after the fork
    time.sleep(0.01)
stop.set()
t.join()
print(sum(window[0] <= c <= window[1] for c in calls), len(calls), held, flush=True)
"""


def test_no_spawn_hook_runs_while_the_process_forks():
    """A pool thread entering a hook makes its Python thread state under
    the interpreter's lock; a child forked then would wait for it forever
    (CPython 3.11's PyOS_AfterFork_Child). So no hook call may start while
    another thread forks: with a worker replaced after every task (a spawn
    hook every few ms), none falls in a fork's 0.3 s window, and the calls
    go on after it."""
    out = subprocess.run([sys.executable, "-c", FORK_WINDOW], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr[-2000:]
    inside, total, held = out.stdout.split(maxsplit=2)
    assert held.strip() == "[True]", out.stdout
    assert int(inside) == 0 and int(total) >= 15, out.stdout


SCRIPT = r"""
import sys, time, shoal

def slow(x):
    time.sleep(0.2)
    return x

p = shoal.Pool(2, prefetch=64)
it = p.imap(slow, range(400))
next(it)
print(p.name, *p.pids(), flush=True)
for _ in it:
    pass
"""


def ppid_of(pid):
    with open(f"/proc/{pid}/stat") as f:
        return int(f.read().rsplit(")", 1)[1].split()[1])


def test_parent_killed_mid_map_takes_its_workers():
    """The pool's process SIGKILLed in the middle of a map with tasks
    prefetched: its workers and fork server are gone within 2 s, and
    `shoal gc` takes the board."""
    proc = subprocess.Popen([sys.executable, "-c", SCRIPT], stdout=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline().split()
        board, pids = line[0], [int(x) for x in line[1:]]
        assert pids
        server = ppid_of(pids[0])
        assert server != proc.pid and ppid_of(server) == proc.pid
        assert os.path.exists(f"/dev/shm/shoal.{board}")
    finally:
        proc.kill()
        proc.wait()
        proc.stdout.close()
    for pid in pids + [server]:
        assert gone_within(pid, 2.0), f"{pid} still runs"
    # Listed as stale (unless another program's reap on this shared
    # /dev/shm took it already).
    r = subprocess.run([SHOAL, "ls", "--json"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    mine = [o for o in map(json.loads, r.stdout.splitlines()) if o.get("name") == board]
    assert all(o["stale"] for o in mine), mine
    r = subprocess.run([SHOAL, "gc"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert not os.path.exists(f"/dev/shm/shoal.{board}")


def test_killed_workers_tmp_files_do_not_outlive_the_pool():
    """A worker SIGKILLed inside a create leaves "shoal..tmp.<pid>.*": the
    pool removes it (before it joins the worker); a live process's is
    kept."""
    mine = f"/dev/shm/shoal..tmp.{os.getpid()}.00000000cafef00d"
    with open(mine, "w"):
        pass
    try:
        with shoal.Pool(1) as p:
            pid = p.submit(nap, 0).result(timeout=30)
            tmp = f"/dev/shm/shoal..tmp.{pid}.00000000deadbeef"
            with open(tmp, "w"):
                pass
            os.kill(pid, signal.SIGKILL)
            # The replacement runs the next task.
            assert p.submit(nap, 0).result(timeout=30) != pid
        assert not os.path.exists(tmp)
        assert os.path.exists(mine)
    finally:
        os.unlink(mine)
        if os.path.exists(tmp):
            os.unlink(tmp)


def test_a_fork_server_that_cannot_fork_breaks_the_pool(monkeypatch):
    """The server cannot fork (no processes left): the pool says so."""
    monkeypatch.setattr(_forkserver.ForkServer, "spawn",
                        lambda self, board, seat, gen: -errno.EAGAIN)
    with shoal.Pool(2) as p:
        with pytest.raises(concurrent.futures.process.BrokenProcessPool) as ei:
            p.submit(nap, 0).result(timeout=30)
        assert isinstance(ei.value.__cause__, OSError)
        assert p.info()["spawn_error"] == os.strerror(errno.EAGAIN)


def test_a_dead_fork_server_breaks_the_pool_not_the_caller():
    """The server killed from outside: starting workers fails with EPIPE,
    the pool breaks, and its end does not hang."""
    with shoal.Pool(1, max_tasks=1, max_tasks_jitter=0) as p:
        assert p.submit(nap, 0).result(timeout=30) > 0
        os.kill(p._server.pid, signal.SIGKILL)
        with pytest.raises(concurrent.futures.process.BrokenProcessPool):
            for _ in range(5):
                p.submit(nap, 0).result(timeout=30)
        assert p.info()["spawn_error"] == os.strerror(errno.EPIPE)


def test_a_stuck_fork_server_breaks_the_pool_not_the_caller(monkeypatch):
    """A server that stops answering (SIGSTOP here; a deadlock in it once)
    is killed after the reply timeout: the pool breaks with ETIMEDOUT
    instead of its supervisor waiting for ever."""
    monkeypatch.setattr(_forkserver, "_REPLY_TIMEOUT", 1.0)
    with shoal.Pool(1, max_tasks=1, max_tasks_jitter=0) as p:
        assert p.submit(nap, 0).result(timeout=30) > 0
        server = p._server.pid
        os.kill(server, signal.SIGSTOP)
        with pytest.raises(concurrent.futures.process.BrokenProcessPool):
            for _ in range(5):
                p.submit(nap, 0).result(timeout=30)
        assert p.info()["spawn_error"] == os.strerror(errno.ETIMEDOUT)
        assert gone_within(server, 10)


def test_spawn_start_method_keeps_multiprocessing():
    """"spawn" starts fresh interpreters through multiprocessing, with no
    fork server: what they inherit is what exec() keeps."""
    with shoal.Pool(1, start_method="spawn") as p:
        assert p._server is None
        assert p.submit(worker_fds, 0).result(timeout=60) is not None


def test_a_multiprocessing_fork_pool_beside_does_not_hang_shutdown():
    # multiprocessing's "fork" workers, made while a shoal.Pool lives, hold
    # a copy of its fork server's socket: leaving the block still ends the
    # server at once (it is told to, not left to see EOF).
    import multiprocessing
    t0 = time.monotonic()
    with shoal.Pool(2) as p:
        with multiprocessing.get_context("fork").Pool(2) as mp:
            assert p.submit(pow, 3, 2).result(timeout=30) == 9
            assert mp.apply(pow, (2, 5)) == 32
            server = p._server.pid
            p.shutdown()
            assert time.monotonic() - t0 < 20
            # The server has ended and was waited for.
            with pytest.raises(ProcessLookupError):
                os.kill(server, 0)


_CALLER_FILE = None  # a file object the caller opened before Pool()


def write_through_callers_file(_):
    """In a worker: write through the caller's file object (inherited in
    memory); then open a file of the worker's own."""
    f = _CALLER_FILE
    try:
        f.write("from the worker\n")
        f.flush()
        err = None
    except OSError as e:
        err = e.errno
    with open(os.devnull, "w") as mine:
        reused = mine.fileno() == f.fileno()
    return err, reused


def test_a_file_the_caller_opened_fails_loudly_in_a_worker(tmp_path):
    """The caller's file objects come along in memory, their fds do not:
    using one fails with EBADF, never writes into another file that got
    the same number in the worker."""
    global _CALLER_FILE
    path = tmp_path / "log"
    with open(path, "w") as _CALLER_FILE:
        with shoal.Pool(1) as p:
            err, reused = p.submit(write_through_callers_file, 0).result(timeout=60)
    _CALLER_FILE = None
    assert err == errno.EBADF and reused is False
    assert path.read_text() == ""
