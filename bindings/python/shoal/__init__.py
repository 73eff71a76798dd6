"""shoal: share big buffers between processes instead of copying them.

Python bindings over libshoal (ctypes). Every object lives in one directory
(``shoal.directory()``: /dev/shm unless the environment's SHOAL_DIR names
another) as "shoal.<name>" and can be opened by name from any process of the
same user that uses the same directory.
"""
from . import _lib  # noqa: F401 (first: the library, and the _constants.py made with it)
from ._constants import VERSION as __version__
from ._lib import ShoalError, strerror
from .array import Array, reap
from .leaks import Leak, leaks
from .memstat import MemoryMonitor, MemStat, memstat
from .pool import Pool, WorkerLost
from .queue import Claim, Queue
from .segment import Segment, directory, unlink
from .shared_memory import SharedMemory

__all__ = ["Array", "Claim", "Leak", "MemoryMonitor", "MemStat", "Pool", "Queue", "Segment",
           "SharedMemory", "ShoalError", "WorkerLost", "directory", "leaks", "memstat", "reap",
           "strerror", "unlink"]
