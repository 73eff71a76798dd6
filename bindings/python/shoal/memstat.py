"""Memory readings: shoal.memstat(pid) and shoal.MemoryMonitor.

``private`` (anonymous RSS + swap) is what a process alone holds and what
returns to the system when it ends: the figure to watch for leaks and the
one shoal's pool recycles workers by. RSS counts every shared page a process
touched (a worker reading a 2 GiB shared array has 2 GiB of RSS, none of it
its own); ``ru_maxrss`` is a peak, and inherited across fork.
"""
from __future__ import annotations

import ctypes
import os
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, Iterable, List, Optional, Union

from ._constants import SHOAL_MEMSTAT_SMAPS as SMAPS
from ._lib import declare, layout


@layout("shoal_memstat")
class _MemStat(ctypes.Structure):
    _fields_ = [(n, ctypes.c_uint64) for n in
                ("rss", "anon", "shmem", "file", "swap", "peak", "private", "pss", "uss",
                 "private_dirty", "swap_pss")] + [("flags", ctypes.c_uint)]


_memstat = declare("shoal_memstat", ctypes.c_int, ctypes.c_int, ctypes.c_uint,
                   ctypes.POINTER(_MemStat))


@dataclass(frozen=True)
class MemStat:
    """One reading, in bytes. ``pss``, ``uss``, ``private_dirty`` and
    ``swap_pss`` are None unless asked for (``smaps=True``)."""
    pid: int
    rss: int
    anon: int
    shmem: int
    file: int
    swap: int
    peak: int
    private: int
    pss: Optional[int] = None
    uss: Optional[int] = None
    private_dirty: Optional[int] = None
    swap_pss: Optional[int] = None


def memstat(pid: Optional[int] = None, smaps: bool = False) -> MemStat:
    """Read the memory use of process ``pid`` (default: this one).

    Cheap by default (/proc/PID/status: kernel counters, microseconds);
    ``smaps=True`` adds PSS, USS, private dirty and swap PSS from
    /proc/PID/smaps_rollup, which walks the page tables (costs grow with
    what the process maps). ProcessLookupError if no such process runs.
    """
    pid = os.getpid() if pid is None else int(pid)
    if pid < 0:
        raise ValueError("pid must be positive")
    m = _MemStat()
    _memstat(pid, SMAPS if smaps else 0, ctypes.byref(m))
    extra = {}
    if m.flags & SMAPS:
        extra = dict(pss=m.pss, uss=m.uss, private_dirty=m.private_dirty, swap_pss=m.swap_pss)
    return MemStat(pid, m.rss, m.anon, m.shmem, m.file, m.swap, m.peak, m.private, **extra)


@dataclass
class Sample:
    """One sample of the monitored processes: time since start (s), and the
    readings of those that were alive."""
    t: float
    readings: Dict[int, MemStat] = field(default_factory=dict)

    @property
    def private(self) -> int:
        return sum(r.private for r in self.readings.values())

    @property
    def rss(self) -> int:
        return sum(r.rss for r in self.readings.values())

    @property
    def pss(self) -> Optional[int]:
        vals = [r.pss for r in self.readings.values()]
        return None if any(v is None for v in vals) else sum(vals)


class MemoryMonitor:
    """Sample the memory of processes in a background thread.

    ``pids``: an iterable of pids, a callable returning one (read at every
    sample, so a pool's changing workers can be followed), or None for this
    process. ``interval`` in seconds. ``smaps=True`` also samples PSS/USS
    (much dearer per sample). Use as a context manager::

        with shoal.MemoryMonitor() as mon:
            work()
        print(mon.peak_private, len(mon.timeline))

    ``peak_private`` / ``peak_rss`` / ``peak_pss`` are the highest totals
    over the monitored processes at one sample; ``peaks`` the highest
    private memory seen per pid; ``timeline`` the samples.
    """

    def __init__(self, pids: Union[None, Iterable[int], Callable[[], Iterable[int]]] = None,
                 interval: float = 0.1, smaps: bool = False) -> None:
        if interval <= 0:
            raise ValueError("interval must be positive")
        self._pids = pids
        self.interval = interval
        self.smaps = smaps
        self.timeline: List[Sample] = []
        self.peaks: Dict[int, int] = {}
        self.peak_private = 0
        self.peak_rss = 0
        self.peak_pss = 0
        self._stop = threading.Event()
        self._thread = None
        self._t0 = None
        self._lock = threading.Lock()

    def _targets(self):
        p = self._pids
        if p is None:
            return [os.getpid()]
        if callable(p):
            p = p()
        return list(p)

    def sample(self) -> Sample:
        """Take one sample now (the thread calls this every interval)."""
        s = Sample(time.monotonic() - (self._t0 or time.monotonic()))
        for pid in self._targets():
            try:
                s.readings[pid] = memstat(pid, smaps=self.smaps)
            except (ProcessLookupError, PermissionError):
                continue
        with self._lock:
            self.timeline.append(s)
            self.peak_private = max(self.peak_private, s.private)
            self.peak_rss = max(self.peak_rss, s.rss)
            if s.pss is not None:
                self.peak_pss = max(self.peak_pss, s.pss)
            for pid, r in s.readings.items():
                self.peaks[pid] = max(self.peaks.get(pid, 0), r.private)
        return s

    def _run(self):
        while not self._stop.wait(self.interval):
            self.sample()

    def start(self) -> "MemoryMonitor":
        if self._thread is not None:
            raise RuntimeError("already started")
        self._t0 = time.monotonic()
        self.sample()
        self._thread = threading.Thread(target=self._run, name="shoal-memmon", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is None:
            return
        self._stop.set()
        self._thread.join()
        self._thread = None
        self.sample()

    def __enter__(self) -> "MemoryMonitor":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
