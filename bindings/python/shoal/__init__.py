"""shoal: share big buffers between processes instead of copying them.

Python bindings over libshoal (ctypes). Every object lives in /dev/shm as
"shoal.<name>" and can be opened by name from any process of the same user.
"""
from ._lib import VERSION as __version__, ShoalError, strerror
from .segment import Segment, unlink

__all__ = ["ShoalError", "Segment", "strerror", "unlink"]

# ---- queue

# ---- end queue

# ---- array

# ---- end array

# ---- memstat
from .memstat import MemoryMonitor, MemStat, memstat  # noqa: E402

__all__ += ["MemoryMonitor", "MemStat", "memstat"]

# ---- end memstat

# ---- pool
from .pool import Pool, WorkerLost  # noqa: E402

__all__ += ["Pool", "WorkerLost"]

# ---- end pool
