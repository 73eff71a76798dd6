"""CPython's own test_concurrent_futures, its ProcessPoolExecutor suites
with the "fork" context, run against shoal.Pool as the executor.

Each suite class of the standard module (a mixin of tests) is combined with
ShoalMixin, which makes shoal.Pool the executor_type, the way the module
builds its ProcessPoolFork* classes. What is left out is listed in EXCLUDED
with its reason: a test of ProcessPoolExecutor's private internals, or of an
option docs/python.md documents as different. An excluded test is removed
from its class (never skipped), so the run counts only what ran."""
import multiprocessing as mp
import unittest

from test import test_concurrent_futures as T

import shoal
from stdlib_common import shoal_in_children, without_excluded

# suite mixin name -> {test name: why it is left out}
_PRIVATE = "reads ProcessPoolExecutor's private "
EXCLUDED = {
    "FailingInitializerMixin": {
        "test_initializer": _PRIVATE + "_broken",
    },
    "ProcessPoolShutdownTest": {
        "test_processes_terminate": _PRIVATE + "_processes",
        "test_context_manager_shutdown": "runs ProcessPoolExecutor itself (named), and its _processes",
        "test_del_shutdown": "runs ProcessPoolExecutor itself (named), and its _call_queue",
        "test_shutdown_no_wait": "runs ProcessPoolExecutor itself (named), and its _call_queue",
        "test_cancel_futures": "asserts some tasks escape cancel_futures: ProcessPoolExecutor runs "
                               "what it moved to its call queue, shoal cancels all not started "
                               "(docs/python.md)",
    },
    "ProcessPoolExecutorTest": {
        "test_killed_child": _PRIVATE + "_processes (and shoal runs the task again, "
                             "docs/python.md)",
        "test_saturation": _PRIVATE + "_max_workers and _processes",
        "test_idle_process_reuse_one": _PRIVATE + "_max_workers (skipped upstream for fork)",
        "test_idle_process_reuse_multiple": _PRIVATE + "_max_workers (skipped upstream for fork)",
        "test_max_tasks_per_child": "asserts fork refuses max_tasks_per_child: shoal's fork "
                                    "server recycles workers (docs/python.md)",
        "test_max_tasks_per_child_defaults_to_spawn_context": _PRIVATE + "_mp_context",
        "test_traceback": "asserts the private concurrent.futures.process._RemoteTraceback: "
                          "shoal's is multiprocessing.pool.RemoteTraceback (pool_suite)",
        "test_max_workers_too_large": "Windows only (skipped upstream elsewhere)",
        "test_max_tasks_early_shutdown": "skipped upstream for fork; pool_suite's "
                                         "test_pool_worker_lifetime_early_close runs the case",
        "test_free_reference": "map()'s iterator holds the values of the task it is in until "
                               "the next is taken (docs/python.md)",
    },
    "ExecutorDeadlockTest": {
        "test_error_at_task_unpickle": "shoal fails the task with the error, the pool goes on; "
                                       "ProcessPoolExecutor breaks (docs/python.md)",
        "test_exit_at_task_unpickle": "shoal fails the task with the SystemExit, the pool goes "
                                      "on; ProcessPoolExecutor breaks (docs/python.md)",
        "test_error_during_result_unpickle_in_result_handler":
            "shoal fails the task with the error, the pool goes on; ProcessPoolExecutor "
            "breaks (docs/python.md)",
        "test_exit_during_result_unpickle_in_result_handler":
            "shoal fails the task with the SystemExit, the pool goes on; ProcessPoolExecutor "
            "breaks (docs/python.md)",
        "test_shutdown_deadlock_pickle": _PRIVATE + "_executor_manager_thread",
    },
}

SUITES = ("InitializerMixin", "FailingInitializerMixin", "ProcessPoolShutdownTest",
          "WaitTests", "AsCompletedTests", "ProcessPoolExecutorTest", "ExecutorDeadlockTest")


class ShoalMixin(T.ExecutorMixin):
    executor_type = shoal.Pool
    ctx = "fork"

    def setUp(self):
        self.enterContext(shoal_in_children())
        super().setUp()

    def get_context(self):
        return mp.get_context(self.ctx)


def _classes():
    out = {}
    for suite in SUITES:
        mixin = getattr(T, suite)
        body = without_excluded(suite, mixin, EXCLUDED)
        name = "Shoal" + suite.replace("Mixin", "").replace("Tests", "").replace("Test", "") + "Test"
        cls = type(name, (mixin, ShoalMixin, T.BaseTestCase), body)
        cls.__module__ = __name__
        out[name] = cls
    return out


globals().update(_classes())
setUpModule = T.setUpModule

if __name__ == "__main__":
    unittest.main()
