"""CPython's own multiprocessing Pool tests (_test_multiprocessing's
_TestPool, _TestPoolWorkerErrors, _TestPoolWorkerLifetime) run against
shoal.Pool as the Pool.

Each is combined with ShoalProcessesMixin, the standard ProcessesMixin
with shoal.Pool as its Pool, as the module's install_tests_in_module_dict
builds its WithProcesses* classes. The last two classes call
multiprocessing.Pool by name, so it is shoal.Pool while each test runs.
What is left out is listed in EXCLUDED with its reason; an excluded test
is removed from its class (never skipped)."""
import multiprocessing
import unittest

from test import _test_multiprocessing as M

import shoal
from stdlib_common import shoal_in_children, without_excluded

# suite class name -> {test name: why it is left out}
_LIST = "asserts Pool.map's list: shoal.Pool.map is Executor.map, an iterator (docs/python.md)"
EXCLUDED = {
    "_TestPool": {
        "test_map": _LIST,
        "test_empty_iterable": _LIST,
        "test_map_no_failfast": _LIST + ": its error comes when iterated",
        "test_make_pool": "reads multiprocessing.Pool's private _pool",
        "test_resource_warning": "sets the private _state; a dropped shoal.Pool finishes its tasks, "
                                 "as ProcessPoolExecutor (docs/python.md)",
    },
    "_TestPoolWorkerErrors": {
        "test_unpickleable_result": "asserts MaybeEncodingError: shoal gives the error pickling "
                                    "raised, as ProcessPoolExecutor (docs/python.md)",
    },
    "_TestPoolWorkerLifetime": {
        "test_pool_worker_lifetime": "reads multiprocessing.Pool's private _pool and "
                                     "_repopulate_pool",
    },
}

SUITES = ("_TestPool", "_TestPoolWorkerErrors", "_TestPoolWorkerLifetime")


class ShoalProcessesMixin(M.ProcessesMixin):
    Pool = staticmethod(shoal.Pool)

    def setUp(self):
        super().setUp()
        saved = multiprocessing.Pool
        multiprocessing.Pool = shoal.Pool
        self.addCleanup(setattr, multiprocessing, "Pool", saved)
        self.enterContext(shoal_in_children())


def _classes():
    out = {}
    for suite in SUITES:
        base = getattr(M, suite)
        body = without_excluded(suite, base, EXCLUDED)
        name = "Shoal" + suite.lstrip("_").replace("Test", "", 1) + "Test"
        cls = type(name, (base, ShoalProcessesMixin, unittest.TestCase), body)
        cls.__module__ = __name__
        out[name] = cls
    return out


globals().update(_classes())


def tearDownModule():
    multiprocessing.util._cleanup_tests()


if __name__ == "__main__":
    unittest.main()
