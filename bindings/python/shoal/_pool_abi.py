"""shoal._pool_abi: the C pool as ctypes sees it.

Owns the mirrors of include/shoal.h's pool structs (positional: their
field order and sizes are C's), the declared shoal_pool_* calls, the
CFUNCTYPE types of the spawn and join hooks, and the pool's constants
under the names the other pool modules use, every value taken from the
generated _constants.py (SHOAL_EWORKERLOST, REASONS, the task states, the
worker step's return codes). Each struct is checked against the
compiler's layout at import (_lib.layout).

Data flows through it, not from it: the supervisor side (pool.py,
_pool_results.py) fills a _Config, submits task bytes and reads _Result
rows; the worker side (_pool_worker.py) steps through _Task cells. No
Python state lives here.
"""
import ctypes

from . import _constants as C
from ._lib import declare, layout

_vp = ctypes.c_void_p
_u64 = ctypes.c_uint64

SHOAL_EWORKERLOST = C.SHOAL_EWORKERLOST
# enum shoal_pool_reason, in order: "tasks", "memory", "hard", "age", "died".
REASONS = tuple(m[len("SHOAL_POOL_"):].lower()
                for m, v in C.ENUMS["shoal_pool_reason"] if v < C.SHOAL_POOL_NREASONS)
assert [v for _, v in C.ENUMS["shoal_pool_reason"]][:len(REASONS)] == list(range(len(REASONS)))
_TASK_RUNNING, _TASK_DONE = C.SHOAL_POOL_TASK_RUNNING, C.SHOAL_POOL_TASK_DONE
_TASK, _TRIM = C.SHOAL_POOL_TASK, C.SHOAL_POOL_TRIM  # what shoal_pool_worker_step() returns

_FN = ctypes.CFUNCTYPE(ctypes.c_int, _vp, _vp, ctypes.c_size_t, ctypes.POINTER(_vp),
                       ctypes.POINTER(ctypes.c_size_t))
_SPAWN = ctypes.CFUNCTYPE(ctypes.c_int, _vp, ctypes.c_char_p, ctypes.c_uint32, _u64)
_JOIN = ctypes.CFUNCTYPE(ctypes.c_int, _vp, ctypes.c_int)


@layout("shoal_pool_config")
class _Config(ctypes.Structure):
    _fields_ = [("name", ctypes.c_char_p), ("workers", ctypes.c_uint), ("max_tasks", _u64),
                ("max_tasks_jitter", ctypes.c_uint), ("max_private", _u64),
                ("hard_private", _u64), ("max_age_ns", _u64), ("max_attempts", ctypes.c_uint),
                ("grace_ns", _u64), ("check_ns", _u64), ("inline_bytes", ctypes.c_size_t),
                ("prefetch", ctypes.c_uint), ("fn", _FN), ("fn_arg", _vp), ("spawn", _SPAWN),
                ("join", _JOIN), ("hook_arg", _vp)]


@layout("shoal_pool_result")
class _Result(ctypes.Structure):
    _fields_ = [("id", _u64), ("err", ctypes.c_int), ("signal", ctypes.c_int),
                ("attempts", ctypes.c_uint32), ("exit_code", ctypes.c_uint8),
                ("hard_limit", ctypes.c_uint8), ("reserved", ctypes.c_uint8 * 2),
                ("last_private", _u64), ("data", _vp), ("len", ctypes.c_size_t)]


# A batch of struct shoal_pool_result rows read at once, as 64-bit words,
# _WORDS a row: the id, the word holding err and signal (zero when both
# are), and the length, a column each, at these words.
_WORDS = ctypes.sizeof(_Result) // 8
_W_ID, _W_FAILED, _W_LEN = 0, 1, 5
assert (_Result.id.offset, _Result.err.offset, _Result.signal.offset, _Result.len.offset,
        ctypes.sizeof(_Result) % 8) == (8 * _W_ID, 8 * _W_FAILED, 8 * _W_FAILED + 4,
                                        8 * _W_LEN, 0)


@layout("shoal_pool_stats")
class _Stats(ctypes.Structure):
    _fields_ = [("pid", ctypes.c_int), ("tasks", _u64), ("tasks_total", _u64),
                ("private_now", _u64), ("private_peak", _u64), ("recycles", _u64 * C.SHOAL_POOL_NREASONS),
                ("last_reason", ctypes.c_int), ("trims", _u64)]


@layout("shoal_pool_info")
class _Info(ctypes.Structure):
    _fields_ = [("pending", _u64), ("running", _u64), ("completed", _u64), ("lost", _u64),
                ("config_reason", ctypes.c_int), ("config_private", _u64),
                ("spawn_error", ctypes.c_int), ("recycle_ns_median", _u64)]


@layout("shoal_pool_task")
class _Task(ctypes.Structure):
    _fields_ = [("id", _u64), ("attempt", ctypes.c_uint32), ("data", _vp),
                ("len", ctypes.c_size_t)]


_create = declare("shoal_pool_create", ctypes.c_int, ctypes.POINTER(_Config), ctypes.POINTER(_vp))
_submit_many = declare("shoal_pool_submit_many", ctypes.c_int, _vp, ctypes.c_char_p,
                       ctypes.POINTER(ctypes.c_size_t), ctypes.c_size_t, ctypes.POINTER(_u64),
                       check=False)
_wait_into = declare("shoal_pool_wait_into", ctypes.c_int, _vp, ctypes.c_int64,
                     ctypes.POINTER(_Result), ctypes.c_size_t, _vp, ctypes.c_size_t, check=False)
_cancel_range = declare("shoal_pool_cancel_range", ctypes.c_int64, _vp, _u64, _u64, _vp,
                        check=False)
_task_state = declare("shoal_pool_task_state", ctypes.c_int, _vp, _u64, check=False)
_stats = declare("shoal_pool_stats", ctypes.c_int, _vp, ctypes.POINTER(_Stats), ctypes.c_size_t)
_info = declare("shoal_pool_info", ctypes.c_int, _vp, ctypes.POINTER(_Info))
_name = declare("shoal_pool_name", ctypes.c_char_p, _vp, check=False)
_destroy = declare("shoal_pool_destroy", ctypes.c_int, _vp, check=False)
# Without the GIL (a plain declaration): a hold waits for hooks that need it.
_hooks_hold = declare("shoal_pool_hooks_hold", ctypes.c_int, ctypes.c_int64, check=False)
_hooks_release = declare("shoal_pool_hooks_release", ctypes.c_int, check=False)
_wopen = declare("shoal_pool_worker_open", ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32, _u64,
                 ctypes.POINTER(_vp))
# Called once per task: without argtypes, its arguments already of their C
# types (c_void_p, int, bytes, an int or c_size_t for the length, c_int64,
# byref(_Task)), as ctypes' conversion of each argument costs more than
# the call.
_wstep = declare("shoal_pool_worker_step", ctypes.c_int, hot=True)
_wtrimmed = declare("shoal_pool_worker_trimmed", ctypes.c_int, _vp)
_wclose = declare("shoal_pool_worker_close", None, _vp, check=False)
