"""make check's run of CPython's own pool suites against shoal.Pool.

Runs tests/stdlib/futures_suite.py (test_concurrent_futures'
ProcessPoolExecutor suites) and tests/stdlib/pool_suite.py
(_test_multiprocessing's Pool suites) from Debian's libpython3.11-testsuite
under unittest; any failure or error fails the run. Prints the counts
(run, and left out by each adapter's EXCLUDED list) and the slowest tests;
a test skipped fails the run as well.
Run from the build directory (make check), or with SHOAL_TEST_BUILDDIR set."""
import os
import sys
import time
import unittest

here = os.path.dirname(os.path.abspath(__file__))
top = os.path.dirname(here)
build = os.environ.get("SHOAL_TEST_BUILDDIR", os.getcwd())
os.environ.setdefault("SHOAL_LIBRARY", os.path.join(build, "lib", ".libs", "libshoal.so"))
os.environ["PYTHONPATH"] = os.pathsep.join(
    p for p in (os.path.join(top, "bindings", "python"), os.environ.get("PYTHONPATH")) if p)
os.environ["PYTHONDONTWRITEBYTECODE"] = "1"
sys.dont_write_bytecode = True
sys.path[:0] = [os.path.join(top, "bindings", "python"), os.path.join(here, "stdlib")]


class Timed(unittest.TextTestResult):
    def startTest(self, test):
        self._t0 = time.monotonic()
        super().startTest(test)

    def stopTest(self, test):
        super().stopTest(test)
        self.times.append((time.monotonic() - self._t0, test.id()))


def main():
    import futures_suite
    import pool_suite
    loader = unittest.TestLoader()
    suite = unittest.TestSuite([loader.loadTestsFromModule(futures_suite),
                                loader.loadTestsFromModule(pool_suite)])
    Timed.times = []
    t0 = time.monotonic()
    res = unittest.TextTestRunner(resultclass=Timed, verbosity=1).run(suite)
    took = time.monotonic() - t0
    excluded = sum(map(len, futures_suite.EXCLUDED.values())) + \
        sum(map(len, pool_suite.EXCLUDED.values()))
    bad = len(res.failures) + len(res.errors) + len(res.skipped)
    # The first line in pytest's words, which scripts/quickstart.sh adds up.
    print(f"{res.testsRun - bad} passed, {bad} failed in {took:.1f}s")
    print(f"stdlib suites: {res.testsRun} run: {len(res.failures)} failures, "
          f"{len(res.errors)} errors, {len(res.skipped)} skipped; {excluded} left out by "
          f"name (EXCLUDED in tests/stdlib/*_suite.py, each with its reason)")
    for dt, name in sorted(Timed.times, reverse=True)[:10]:
        print(f"  {dt:6.2f} s  {name}")
    # A test the suites skip is a promise not kept: it fails the run too
    # (leave it out by name, with its reason, instead).
    return 0 if res.wasSuccessful() and not res.skipped else 1


if __name__ == "__main__":
    sys.exit(main())
