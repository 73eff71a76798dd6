"""shoal.memstat and shoal.MemoryMonitor."""
import importlib
import os
import subprocess
import sys

import numpy as np
import pytest

import shoal

MiB = 2**20


def test_self_reading():
    m = shoal.memstat()
    assert m.pid == os.getpid()
    assert m.rss > 0 and m.anon > 0 and m.peak >= m.rss
    assert m.private == m.anon + m.swap
    assert m.pss is None and m.uss is None
    assert shoal.memstat(os.getpid()).pid == os.getpid()


def test_smaps_fields():
    m = shoal.memstat(smaps=True)
    assert m.pss > 0 and m.uss > 0
    assert m.uss >= m.private_dirty
    assert m.swap_pss is not None


def test_touched_heap_is_anonymous():
    before = shoal.memstat()
    a = np.ones(64 * MiB // 8)
    after = shoal.memstat()
    assert after.anon >= before.anon + 60 * MiB
    assert after.private >= before.private + 60 * MiB
    assert after.shmem < before.shmem + 4 * MiB
    del a


def test_shared_segment_is_shmem_not_private(name):
    # From before the create: a segment this big is populated by create.
    before = shoal.memstat()
    with shoal.Segment.create(name, 256 * MiB) as seg:
        view = np.frombuffer(seg.buf, dtype=np.uint8)
        assert int(view[::4096].sum()) == 0  # touch every page
        after = shoal.memstat(smaps=True)
        assert after.shmem >= before.shmem + 250 * MiB
        assert after.private < before.private + 8 * MiB
        assert after.rss >= before.rss + 250 * MiB
        del view
        seg.unlink()


def test_other_process_and_errors():
    p = subprocess.Popen([sys.executable, "-c",
                          "import sys; b = bytearray(48 << 20); sys.stdout.write('x');"
                          "sys.stdout.flush(); sys.stdin.read()"],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert p.stdout.read(1) == b"x"
    m = shoal.memstat(p.pid, smaps=True)
    assert m.anon >= 48 * MiB and m.uss >= 48 * MiB
    p.stdin.close()
    p.wait()
    with pytest.raises(ProcessLookupError):
        shoal.memstat(p.pid)
    with pytest.raises(ProcessLookupError):
        shoal.memstat(1 << 23)
    with pytest.raises(ValueError):
        shoal.memstat(-1)


def test_monitor_sees_a_peak():
    with shoal.MemoryMonitor(interval=0.01) as mon:
        a = np.ones(80 * MiB // 8)
        import time
        time.sleep(0.1)
        del a
    assert len(mon.timeline) >= 3
    assert mon.peak_private >= 80 * MiB
    if "libasan" not in os.environ.get("LD_PRELOAD", ""):  # ASan keeps freed memory
        assert mon.timeline[-1].private < mon.peak_private - 60 * MiB
    assert mon.peaks[os.getpid()] == mon.peak_private
    assert mon.timeline[0].t <= mon.timeline[-1].t


def test_monitor_follows_callable_pids_and_smaps():
    p = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"],
                         stdin=subprocess.PIPE)
    try:
        mon = shoal.MemoryMonitor(pids=lambda: [os.getpid(), p.pid], interval=0.02, smaps=True)
        with mon:
            pass
        assert set(mon.timeline[-1].readings) == {os.getpid(), p.pid}
        assert mon.peak_pss > 0
    finally:
        p.stdin.close()
        p.wait()
    # A process that is gone is left out, not an error.
    mon = shoal.MemoryMonitor(pids=[p.pid])
    assert mon.sample().readings == {}
    with pytest.raises(ValueError):
        shoal.MemoryMonitor(interval=0)
    with pytest.raises(RuntimeError):
        m = shoal.MemoryMonitor().start()
        try:
            m.start()
        finally:
            m.stop()


def test_peak_pss_is_none_unless_measured():
    import time
    with shoal.MemoryMonitor(interval=0.01) as mon:
        time.sleep(0.03)
    assert mon.timeline[0].readings  # the first sample, taken by start()
    assert mon.peak_pss is None and all(s.pss is None for s in mon.timeline)
    assert mon.peak_private == max(s.private for s in mon.timeline) > 0
    assert shoal.MemoryMonitor(pids=[]).sample().pss is None  # nothing read: not measured
    # smaps=<seconds>: PSS at the first sample, then at most that often
    # (samples taken by hand: the thread's pace depends on the machine's load).
    mon = shoal.MemoryMonitor(smaps=0.3)
    first, soon = mon.sample(), mon.sample()
    time.sleep(0.31)
    later = mon.sample()
    assert first.pss is not None and soon.pss is None and later.pss is not None
    assert soon.private > 0
    assert mon.peak_pss == max(first.pss, later.pss)
    with pytest.raises(ValueError):
        shoal.MemoryMonitor(smaps=-1)


def test_pss_not_measured_where_smaps_rollup_cannot_be_read(monkeypatch):
    mod = importlib.import_module("shoal.memstat")  # shoal.memstat is the function
    real = mod.memstat

    def no_rollup(pid=None, smaps=False):
        if smaps:
            raise FileNotFoundError(2, "no smaps_rollup")  # as before Linux 4.14
        return real(pid)

    monkeypatch.setattr(mod, "memstat", no_rollup)
    mon = shoal.MemoryMonitor(smaps=True)
    s = mon.sample()
    assert s.readings[os.getpid()].private > 0 and s.pss is None
    assert mon.peak_pss is None and mon.peak_private > 0
