"""shoal: share big buffers between processes instead of copying them.

Python bindings over libshoal (ctypes). Every object lives in /dev/shm as
"shoal.<name>" and can be opened by name from any process of the same user.
"""
from . import _lib  # noqa: F401 (first: the library, and the _constants.py made with it)
from ._constants import VERSION as __version__
from ._lib import ShoalError, strerror
from .array import Array, reap
from .memstat import MemoryMonitor, MemStat, memstat
from .pool import Pool, WorkerLost
from .queue import Claim, Queue
from .segment import Segment, unlink
from .shared_memory import SharedMemory

__all__ = ["Array", "Claim", "MemoryMonitor", "MemStat", "Pool", "Queue", "Segment",
           "SharedMemory", "ShoalError", "WorkerLost", "memstat", "reap", "strerror", "unlink"]
