"""Memory timelines: MemoryMonitor's record written out (to_csv) and drawn
(plot), and the timeline a Pool records of its own workers
(record_memory=True), checked against the processes the tests make."""
import csv
import io
import os
import signal
import struct
import subprocess
import sys
import time

import numpy as np
import pytest

import shoal
from shoal.memstat import CSV_COLUMNS

MiB = 2**20
# Under ASan (run-pytest preloads it) every process starts a few hundred
# MiB bigger, and freed memory sits in its quarantine: bigger leaks.
SANITIZED = "libasan" in os.environ.get("LD_PRELOAD", "")
PNG = b"\x89PNG\r\n\x1a\n"

_leak = []


def leak_nap(mb):
    _leak.append(np.ones(mb * MiB // 8))  # touched: resident, private
    time.sleep(0.08)  # over the limit for a few samples before it is replaced
    return os.getpid()


def die_once(path):
    """Kill this worker the first time (its pid written to @path first)."""
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        return os.getpid()
    os.write(fd, str(os.getpid()).encode())
    os.close(fd)
    os.kill(os.getpid(), signal.SIGKILL)


def wait_for(cond, timeout=10.0):
    end = time.monotonic() + timeout
    while not cond() and time.monotonic() < end:
        time.sleep(0.01)
    return cond()


def test_csv_and_picture_of_a_child_that_holds_memory(tmp_path):
    n = 48
    child = subprocess.Popen([sys.executable, "-c",
                              f"import sys; b = b'1' * ({n} << 20); sys.stdout.write('x');"
                              "sys.stdout.flush(); sys.stdin.read()"],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert child.stdout.read(1) == b"x"  # its N MiB are written, so resident
        me = os.getpid()
        mon = shoal.MemoryMonitor(pids={me: "test", child.pid: "child"}, interval=0.02,
                                  smaps=True)
        with mon:
            assert wait_for(lambda: len(mon.timeline) >= 3)
            ev = mon.mark("recycle", child.pid, "memory")
            gone = mon.mark("recycle", None, "died", label="worker 3")  # never sampled
            time.sleep(0.05)
    finally:
        child.stdin.close()
        child.wait()
    assert ev.t > 0 and mon.events == [ev, gone]

    path = tmp_path / "mem.csv"
    mon.to_csv(path)
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        rows = list(reader)
    assert reader.fieldnames == list(CSV_COLUMNS)
    ts = [float(r["t"]) for r in rows]
    assert ts == sorted(ts)
    readings = [r for r in rows if r["pid"] == str(child.pid) and not r["event"]]
    assert len(readings) == len(mon.timeline)  # one row per process per sample
    assert max(int(r["private"]) for r in readings) >= n * MiB
    assert all(r["label"] == "child" and int(r["pss"]) >= int(r["private"]) // 2 and
               int(r["rss"]) >= int(r["private"]) for r in readings)
    assert {r["label"] for r in rows if r["pid"] == str(me)} == {"test"}
    events = [r for r in rows if r["event"]]
    assert [(r["pid"], r["label"], r["event"], r["reason"], r["private"]) for r in events] == \
        [(str(child.pid), "child", "recycle", "memory", ""), ("", "worker 3", "recycle", "died", "")]
    buf = io.StringIO()
    mon.to_csv(buf)  # a file object too
    assert buf.getvalue() == path.read_text()

    png = tmp_path / "mem.png"
    fig = mon.plot(png)
    data = png.read_bytes()
    assert data[:8] == PNG and data[12:16] == b"IHDR"
    assert struct.unpack(">II", data[16:24]) == (800, 600)  # 8 x 6 in at 100 dpi
    assert 10_000 < len(data) < 200_000
    top, bottom = fig.axes  # private memory, and PSS below it (measured)
    # One line per process, and the total.
    assert sorted(ln.get_label() for ln in top.get_lines()) == ["child", "test", "total"]
    assert len(bottom.get_lines()) == 3
    line = next(ln for ln in top.get_lines() if ln.get_label() == "child")
    assert max(line.get_ydata()) >= n
    assert list(line.get_xdata()) == [s.t for s in mon.timeline]
    # The events: a marker shape per reason; the child's where its line
    # was at its time.
    assert sorted(c.get_label() for c in top.collections) == ["recycle: died", "recycle: memory"]
    marks = next(c for c in top.collections if c.get_label() == "recycle: memory")
    x, y = marks.get_offsets()[0]
    last = [s.readings[child.pid].private for s in mon.timeline if s.t <= ev.t][-1]
    assert (x, y) == (ev.t, last / MiB)


def test_import_shoal_does_not_import_matplotlib():
    out = subprocess.run([sys.executable, "-c",
                          "import sys, shoal; shoal.MemoryMonitor().start().stop();"
                          "print('matplotlib' in sys.modules)"],
                         capture_output=True, text=True, timeout=60)
    assert out.stdout == "False\n", out.stderr


def _wait_marked(pool, pids, timeout):
    """Until each of @pids that no longer holds a position of @pool has
    its recycle marked in pool.memory (at most @timeout seconds)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        current = {s["pid"] for s in pool.stats()}
        if pids - current <= {e.pid for e in list(pool.memory.events)}:
            return
        time.sleep(0.02)


def test_pool_records_its_workers_and_why_each_was_replaced(tmp_path):
    # A worker forked now starts with about this process's private memory
    # (its pages counted in both until written); two leaks cross the limit.
    leak, margin = (100, 150) if SANITIZED else (25, 40)
    limit = shoal.memstat().private // MiB + margin
    with shoal.Pool(2, max_private_memory=limit * MiB, record_memory=True,
                    memory_interval=0.02) as p:
        mon = p.memory
        # The first sample has the parent and both workers.
        first = mon.timeline[0]
        assert len(first.readings) == 3 and os.getpid() in first.readings
        pids = set(p.map(leak_nap, [leak] * 10))
        # A replaced worker is counted, and so marked, once the pool has
        # joined it, which can come after map returned: under load a
        # replacement runs tasks before its predecessor has left. The
        # shutdown below ends the workers at the positions; every other
        # one that ran a task must have been marked first.
        _wait_marked(p, pids, 60)
        st = p.stats()
    assert mon._thread is None  # stopped with the pool
    n = sum(sum(s["recycles"].values()) for s in st)
    assert n >= 2 and all(s["recycles"]["memory"] == sum(s["recycles"].values()) for s in st)
    assert mon.labels[os.getpid()] == "parent"
    assert set(first.readings) - {os.getpid()} <= pids
    # Each by its position (one the samples never saw ready has none).
    labels = {mon.labels[pid] for pid in pids}
    assert {"worker 0", "worker 1"} <= labels <= {"worker 0", "worker 1", "worker, not ready"}
    rec = [e for e in mon.events if e.kind == "recycle"]
    assert len(rec) >= n and {e.reason for e in rec} == {"memory"}
    for e in rec:
        assert e.pid in pids
        # Read while it lived, never after it left; the samples around
        # the event bracket its time.
        seen = [s.t for s in mon.timeline if e.pid in s.readings]
        assert seen and max(seen) < e.t < mon.timeline[-1].t
    # Replaced for its memory: at least one was read over the limit.
    assert max(mon.peaks[e.pid] for e in rec) > limit * MiB
    # The right ones: a worker that left and was not marked is one the
    # pool's shutdown ended.
    assert len(pids - {e.pid for e in rec}) <= 2
    path = tmp_path / "pool.csv"
    mon.to_csv(path)
    with open(path, newline="") as f:
        marked = [(int(r["pid"]), r["reason"]) for r in csv.DictReader(f) if r["event"]]
    assert marked == [(e.pid, e.reason) for e in rec]


def test_pool_marks_a_worker_that_died(tmp_path):
    flag = tmp_path / "killed"
    with shoal.Pool(1, record_memory=True, memory_interval=0.02) as p:
        again = p.submit(die_once, str(flag)).result(timeout=60)
    killed = int(flag.read_text())
    assert again != killed
    assert [(e.kind, e.pid, e.reason) for e in p.memory.events] == [("recycle", killed, "died")]
    assert p.memory.labels[again] == "worker 0"


def test_pool_without_record_and_bad_interval():
    with shoal.Pool(1) as p:
        assert p.memory is None
    with pytest.raises(ValueError):
        shoal.Pool(1, record_memory=True, memory_interval=0)
