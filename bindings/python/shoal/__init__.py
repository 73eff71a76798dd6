"""shoal: share big buffers between processes instead of copying them.

Python bindings over libshoal (ctypes). Every object lives in /dev/shm as
"shoal.<name>" and can be opened by name from any process of the same user.
"""
from . import _lib  # noqa: F401 (first: the library, and the _constants.py made with it)
from ._constants import VERSION as __version__
from ._lib import ShoalError, strerror
from .segment import Segment, unlink

__all__ = ["ShoalError", "Segment", "strerror", "unlink"]

# ---- queue
from .queue import Claim, Queue  # noqa: E402

__all__ += ["Claim", "Queue"]

# ---- end queue

# ---- array
from .array import Array, reap  # noqa: E402
from .shared_memory import SharedMemory  # noqa: E402

__all__ += ["Array", "SharedMemory", "reap"]

# ---- end array

# ---- memstat
from .memstat import MemoryMonitor, MemStat, memstat  # noqa: E402

__all__ += ["MemoryMonitor", "MemStat", "memstat"]

# ---- end memstat

# ---- pool
from .pool import Pool, WorkerLost  # noqa: E402

__all__ += ["Pool", "WorkerLost"]

# ---- end pool
