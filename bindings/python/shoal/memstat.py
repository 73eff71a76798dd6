"""Memory readings: shoal.memstat(pid), and shoal.MemoryMonitor with its
record (samples, events), written out as CSV or drawn as a PNG.

``private`` (anonymous RSS + swap) is what a process alone holds and what
returns to the system when it ends: the figure to watch for leaks and the
one shoal's pool recycles workers by. RSS counts every shared page a process
touched (a worker reading a 2 GiB shared array has 2 GiB of RSS, none of it
its own); ``ru_maxrss`` is a peak, and inherited across fork.

matplotlib is imported by MemoryMonitor.plot() alone, never by ``import
shoal``, and draws on its Agg canvas: no display, and no change to the
caller's pyplot backend or figures.
"""
from __future__ import annotations

import contextlib
import csv
import ctypes
import os
import threading
import time
from dataclasses import dataclass, field
from typing import IO, Any, Callable, Dict, Iterable, List, Mapping, Optional, Union

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
        """The total PSS, or None where it was not measured (no smaps, or
        no process read)."""
        vals = [r.pss for r in self.readings.values()]
        return None if not vals or any(v is None for v in vals) else sum(vals)


@dataclass(frozen=True)
class Event:
    """Something that happened to the monitored processes, at ``t`` seconds
    since the start: ``kind`` ("recycle" for a pool's worker replaced), the
    ``pid`` it happened to (None if unknown) and a ``reason`` (for a
    recycle, one of shoal.pool.REASONS: "tasks", "memory", "hard", "age",
    "died"), and a ``label`` of its own (a recycle's: the worker's
    position, known even when the worker was never sampled or its pid is
    not) that to_csv() writes instead of the pid's."""
    t: float
    kind: str
    pid: Optional[int] = None
    reason: Optional[str] = None
    label: Optional[str] = None


# to_csv()'s columns, in order.
CSV_COLUMNS = ("t", "pid", "label", "event", "reason", "private", "rss", "pss")
_MiB = 2**20


@contextlib.contextmanager
def _text_out(dest):
    """@dest as a text file to write: itself if it has write(), else the
    path opened (and closed after)."""
    if hasattr(dest, "write"):
        yield dest
    else:
        with open(os.fspath(dest), "w", newline="") as f:
            yield f


class MemoryMonitor:
    """Sample the memory of processes in a background thread.

    ``pids``: an iterable of pids, a mapping of pids to labels ("parent",
    "worker 2"), a callable returning either (called at every sample, so a
    pool's changing workers can be followed), or None for this process.
    A process that is gone (or exiting, its memory map already released)
    is left out of a sample.
    ``interval`` in seconds. ``smaps=True`` also samples PSS/USS at every
    sample, and ``smaps=<seconds>`` at most that often (the other samples
    read private memory and RSS only): PSS is much dearer, since the kernel
    walks the page tables, and for a mapping of shared memory looks up
    every page of it, touched or not (about a hundred milliseconds for a
    few processes that map one GiB). Use as a context manager::

        with shoal.MemoryMonitor() as mon:
            work()
        print(mon.peak_private, len(mon.timeline))
        mon.to_csv("mem.csv"); mon.plot("mem.png")

    ``peak_private`` / ``peak_rss`` / ``peak_pss`` are the highest totals
    over the monitored processes at one sample, counted from the first
    sample (start() takes it); ``peak_pss`` is None while no sample
    measured PSS for every process in it (``smaps=False``; no
    smaps_rollup, before Linux 4.14; a process of another user, whose
    smaps_rollup needs ptrace access), never 0.
    ``peaks`` the highest private memory seen per pid; ``timeline`` the
    samples; ``labels`` each pid's label; ``events`` what mark() recorded
    (a Pool's own monitor, ``Pool(record_memory=True).memory``, marks each
    worker it replaced, with the reason).
    """

    def __init__(self, pids: Union[None, Iterable[int], Mapping[int, str],
                                   Callable[[], Union[Iterable[int], Mapping[int, str]]]] = None,
                 interval: float = 0.1, smaps: Union[bool, float] = False) -> None:
        if interval <= 0:
            raise ValueError("interval must be positive")
        if smaps is not True and smaps is not False and not smaps > 0:
            raise ValueError("smaps must be True, False or a positive number of seconds")
        self._pids = pids
        self.interval = interval
        self.smaps = smaps
        self.timeline: List[Sample] = []
        self.events: List[Event] = []
        self.labels: Dict[int, str] = {}
        self.peaks: Dict[int, int] = {}
        self.peak_private = 0
        self.peak_rss = 0
        self.peak_pss: Optional[int] = None
        self._stop = threading.Event()
        self._thread = None
        self._t0 = None
        self._smaps_at = None  # when PSS was last read (smaps=<seconds>)
        self._lock = threading.Lock()

    def _targets(self):
        """The pids to read now, and their labels (or None)."""
        p = self._pids
        if p is None:
            me = os.getpid()
            return [me], {me: "this process"}
        if callable(p):
            p = p()
        if isinstance(p, Mapping):
            labels = {int(k): str(v) for k, v in p.items()}
            return list(labels), labels
        return [int(x) for x in p], None

    def _since(self, when: Optional[float] = None) -> float:
        """Seconds from the first sample (or start()) to @when (a
        time.monotonic() reading, default now)."""
        now = time.monotonic() if when is None else when
        if self._t0 is None:
            self._t0 = now
        return now - self._t0

    def sample(self) -> Sample:
        """Take one sample now (the thread calls this every interval)."""
        pids, labels = self._targets()
        s = Sample(self._since())
        smaps = self.smaps is True
        if not smaps and self.smaps is not False:
            smaps = self._smaps_at is None or s.t - self._smaps_at >= self.smaps - 1e-3
            if smaps:
                self._smaps_at = s.t
        for pid in pids:
            try:
                r = memstat(pid, smaps=smaps)
            except ProcessLookupError:
                continue
            except OSError:
                if not smaps:
                    continue  # not ours to read
                # No smaps_rollup (before Linux 4.14), or not ours to
                # read (it asks for ptrace access; status does not): the
                # cheap reading, its PSS not measured.
                try:
                    r = memstat(pid)
                except OSError:
                    continue
            # No memory map: a process on its way out (its memory already
            # gone back), or a kernel thread. Left out as a gone one is,
            # not drawn as a fall to zero.
            if r.rss:
                s.readings[pid] = r
        with self._lock:
            if labels:
                self.labels.update(labels)
            self.timeline.append(s)
            self.peak_private = max(self.peak_private, s.private)
            self.peak_rss = max(self.peak_rss, s.rss)
            pss = s.pss
            if pss is not None:
                self.peak_pss = pss if self.peak_pss is None else max(self.peak_pss, pss)
            for pid, r in s.readings.items():
                self.peaks[pid] = max(self.peaks.get(pid, 0), r.private)
        return s

    def mark(self, kind: str, pid: Optional[int] = None, reason: Optional[str] = None,
             when: Optional[float] = None, label: Optional[str] = None) -> Event:
        """Record an event in the timeline: ``kind`` (a word, such as
        "recycle"), the ``pid`` it concerns, a ``reason``; ``when`` is a
        time.monotonic() reading (default now); ``label`` names who it
        happened to when the pid's label would not (default: the pid's).
        to_csv() writes it as a row, plot() marks it on the pid's line."""
        with self._lock:
            ev = Event(self._since(when), str(kind), pid, reason, label)
            self.events.append(ev)
        return ev

    def label(self, pid: int) -> str:
        """The pid's label, or "pid N" when it was given none."""
        return self.labels.get(pid) or f"pid {pid}"

    def _run(self):
        while not self._stop.wait(self.interval):
            self.sample()

    def start(self) -> "MemoryMonitor":
        """Take the first sample, then one every interval in a thread."""
        if self._thread is not None:
            raise RuntimeError("already started")
        self._since()
        self.sample()
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="shoal-memmon", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop sampling after one last sample. Called from the monitor's
        own thread (its pids callable), it only tells the thread to end."""
        thread = self._thread
        if thread is None:
            return
        self._stop.set()
        if thread is threading.current_thread():
            return
        thread.join()
        self._thread = None
        self.sample()

    def __enter__(self) -> "MemoryMonitor":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _copy(self):
        with self._lock:
            return list(self.timeline), list(self.events), dict(self.labels)

    def to_csv(self, dest: Union[str, "os.PathLike[str]", IO[str]]) -> None:
        """Write the record as CSV to ``dest``, a path or a text file
        object (opened with newline="", as the csv module asks).

        Columns (CSV_COLUMNS): ``t`` seconds since the first sample,
        ``pid``, ``label``, ``event``, ``reason``, ``private``, ``rss``,
        ``pss`` (bytes). One row per process per sample, with ``event``
        and ``reason`` empty and ``pss`` empty unless measured (smaps);
        and one row per event (mark(), a pool's recycles) at its time, its
        ``event`` the kind ("recycle") and ``reason`` why ("memory",
        "tasks", ...), its byte columns empty. Rows are in time order.
        """
        timeline, events, labels = self._copy()
        rows = []
        for s in timeline:
            for pid, r in sorted(s.readings.items()):
                rows.append((s.t, 0, [f"{s.t:.4f}", pid, labels.get(pid, ""), "", "",
                                      r.private, r.rss, "" if r.pss is None else r.pss]))
        for e in events:
            rows.append((e.t, 1, [f"{e.t:.4f}", "" if e.pid is None else e.pid,
                                  e.label or (labels.get(e.pid, "") if e.pid is not None else ""),
                                  e.kind, e.reason or "", "", "", ""]))
        rows.sort(key=lambda row: (row[0], row[1]))  # stable: a sample's rows stay together
        with _text_out(dest) as f:
            w = csv.writer(f, lineterminator="\n")
            w.writerow(CSV_COLUMNS)
            w.writerows(row for _, _, row in rows)

    def plot(self, path: Union[None, str, "os.PathLike[str]", IO[bytes]] = None, *,
             title: Optional[str] = None, dpi: int = 100) -> Any:
        """Draw the record: each process's private memory over time, and
        below it its PSS when PSS was measured (smaps), in MiB; one line
        per pid, one colour per label (a pool position's successive
        workers share it), a dashed line for the total, and each event
        (a recycle) as a marker on its pid's private-memory line where
        that line ends, one marker shape per reason (one scatter
        collection each), and as a faint vertical line on the PSS axes. Saved as PNG to ``path`` when given;
        returns the matplotlib Figure (its axes: ``fig.axes``).

        Needs matplotlib (Debian: python3-matplotlib), imported here
        only. It draws on an Agg canvas of its own, with no display and
        without pyplot: the caller's backend and figures are untouched,
        and the figure is freed like any object.
        """
        from matplotlib import rcParams
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        timeline, events, labels = self._copy()
        fields = ["private"]
        if any(r.pss is not None for s in timeline for r in s.readings.values()):
            fields.append("pss")
        fig = Figure(figsize=(8, 1.2 + 2.4 * len(fields)), dpi=dpi, layout="constrained")
        FigureCanvasAgg(fig)
        axes = fig.subplots(len(fields), 1, sharex=True, squeeze=False)[:, 0]
        pids = list(dict.fromkeys(pid for s in timeline for pid in s.readings))
        palette = rcParams["axes.prop_cycle"].by_key()["color"]
        colour = {}
        for pid in pids:
            lab = labels.get(pid) or f"pid {pid}"
            colour.setdefault(lab, palette[len(colour) % len(palette)])
        groups = sorted({(e.kind, e.reason or "") for e in events})
        shapes = "vXosD^P*<>"
        for ax, fld in zip(axes, fields):
            shown = set()
            last = {}  # pid -> its readings (t, MiB), for the markers
            for pid in pids:
                pts = [(s.t, getattr(s.readings[pid], fld) / _MiB) for s in timeline
                       if pid in s.readings and getattr(s.readings[pid], fld) is not None]
                if not pts:
                    continue
                last[pid] = pts
                lab = labels.get(pid) or f"pid {pid}"
                ax.plot([p[0] for p in pts], [p[1] for p in pts], color=colour[lab], lw=1.3,
                        marker="." if len(pts) == 1 else None,
                        label=lab if lab not in shown else "_nolegend_")
                shown.add(lab)
            tot = [(s.t, getattr(s, fld) / _MiB) for s in timeline if getattr(s, fld) is not None]
            ax.plot([p[0] for p in tot], [p[1] for p in tot], color="black", lw=0.8, ls="--",
                    label="total")
            if fld != "private":
                # The events' times, faint, to match with the markers above.
                if events:
                    ax.vlines([e.t for e in events], 0, 1, transform=ax.get_xaxis_transform(),
                              colors="black", alpha=0.2, lw=0.8)
            else:
                for k, (kind, reason) in enumerate(groups):
                    xs, ys = [], []
                    for e in events:
                        if (e.kind, e.reason or "") != (kind, reason):
                            continue
                        # Where its pid's line ends; at the foot for a pid
                        # no sample read (it lived less than an interval).
                        before = [y for t, y in last.get(e.pid, ()) if t <= e.t]
                        xs.append(e.t)
                        ys.append(before[-1] if before else 0.0)
                    ax.scatter(xs, ys, marker=shapes[k % len(shapes)], s=40, zorder=3,
                               color="black", label=f"{kind}: {reason}" if reason else kind)
            ax.set_ylabel(("private memory" if fld == "private" else "PSS") + " (MiB)")
            ax.set_ylim(bottom=0)
            ax.grid(alpha=0.3)
        axes[0].legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small",
                       frameon=False)
        axes[-1].set_xlabel("time (s)")
        axes[0].set_title(title or "memory over time, per process")
        if path is not None:
            fig.savefig(path, format="png")
        return fig
