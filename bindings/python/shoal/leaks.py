"""shoal.leaks(): the objects in the directory that nobody will free.

One implementation: the judgment is libshoal's shoal_leaks() (lib/leaks.c),
the same one `shoal leaks` prints; this wraps it. Each leak says why
(``reason``), what reclaiming it frees (``bytes``), who created it and
when, and for a reference held too long, which live process holds it.
"""
from __future__ import annotations

import ctypes
from dataclasses import dataclass
from typing import List, Optional

from . import _constants as C
from ._lib import declare, layout
from .array import _Proc

REASONS = {
    C.SHOAL_LEAK_DEAD_HOLDERS: "dead-holders",
    C.SHOAL_LEAK_UNREAD_QUEUE: "unread-queue",
    C.SHOAL_LEAK_OLD_REFERENCE: "old-reference",
    C.SHOAL_LEAK_DEAD_POOL: "dead-pool",
    C.SHOAL_LEAK_DEAD_CREATE: "dead-create",
}


@layout("shoal_leak")
class _Leak(ctypes.Structure):
    _fields_ = [("name", ctypes.c_char * (C.SHOAL_NAME_MAX + 1)), ("reason", ctypes.c_int),
                ("creator", _Proc), ("creator_alive", ctypes.c_bool),
                ("age_ns", ctypes.c_uint64), ("bytes", ctypes.c_uint64), ("holder", _Proc),
                ("references", ctypes.c_uint32)]


_leaks = declare("shoal_leaks", ctypes.c_int, ctypes.c_uint64, ctypes.POINTER(_Leak),
                 ctypes.c_size_t)


def _command(pid: int) -> Optional[str]:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            raw = f.read()
    except OSError:
        return None
    return raw.rstrip(b"\0").replace(b"\0", b" ").decode(errors="replace") or None


@dataclass(frozen=True)
class Leak:
    """One object nobody will free (see ``shoal_leaks(3)``).

    ``reason``: "dead-holders" (shoal.reap() / ``shoal gc`` frees it),
    "unread-queue" (held only by queues no live process reads: unlink
    them), "old-reference" (``holder_pid`` has held it at least ``age``
    seconds), "dead-pool" (a pool board whose supervisor died),
    "dead-create" (a temporary file of a creator that died).
    ``bytes``: what reclaiming it frees. ``creator_command`` and
    ``holder_command`` are read from /proc while those processes run."""
    name: str
    reason: str
    bytes: int
    age: float
    creator_pid: int
    creator_alive: bool
    creator_command: Optional[str]
    references: int
    holder_pid: Optional[int]
    holder_command: Optional[str]


def leaks(age: float = 3600.0) -> List[Leak]:
    """The objects of the directory (shoal.directory()) nobody will free.

    ``age``: seconds a live process must have held an array for its
    reference to be reported ("old-reference"); 0 reports none. Looks,
    never changes anything, and maps nothing: an object truncated by its
    owner while it is read is skipped (as a corrupt one is), never a
    SIGBUS. OSError if the directory cannot be read."""
    if age < 0:
        raise ValueError("age must be >= 0 seconds")
    min_age = int(age * 1e9)
    cap = 0
    buf = None
    for _ in range(4):  # the directory may grow between the count and the fill
        n = _leaks(min_age, buf, cap)
        if n <= cap:
            break
        cap = n + 16
        buf = (_Leak * cap)()
    out = []
    for i in range(min(n, cap)):
        e = buf[i]
        holder = e.holder.pid or None
        out.append(Leak(
            name=e.name.decode(), reason=REASONS.get(e.reason, str(e.reason)), bytes=e.bytes,
            age=e.age_ns / 1e9, creator_pid=e.creator.pid, creator_alive=e.creator_alive,
            creator_command=_command(e.creator.pid) if e.creator_alive else None,
            references=e.references, holder_pid=holder,
            holder_command=_command(holder) if holder else None))
    return out


__all__ = ["Leak", "leaks"]
