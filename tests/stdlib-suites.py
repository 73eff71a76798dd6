"""make check's run of CPython's own pool suites against shoal.Pool.

Runs tests/stdlib/futures_suite.py (test_concurrent_futures'
ProcessPoolExecutor suites) and tests/stdlib/pool_suite.py
(_test_multiprocessing's Pool suites) from Debian's libpython3.11-testsuite
under unittest; any failure, error or skip fails the run (a test the
suites would skip is left out by name instead, with its reason). Prints
the counts (run, and left out by the adapters' EXCLUDED lists) and the
slowest tests. Run from the build directory (make check), or with
SHOAL_TEST_BUILDDIR set.

Most of the suites' time is their own sleeps (waits, timeouts), so the
tests run in PARTS processes at once, each part a set of test classes;
the counts are added up here."""
import json
import os
import subprocess
import sys
import time
import unittest

here = os.path.dirname(os.path.abspath(__file__))
top = os.path.dirname(here)
build = os.environ.get("SHOAL_TEST_BUILDDIR", os.getcwd())
os.environ.setdefault("SHOAL_LIBRARY", os.path.join(build, "lib", ".libs", "libshoal.so"))
if not os.environ.get("SHOAL_STDLIB_PART"):
    os.environ["PYTHONPATH"] = os.pathsep.join(
        p for p in (os.path.join(top, "bindings", "python"), os.environ.get("PYTHONPATH")) if p)
os.environ["PYTHONDONTWRITEBYTECODE"] = "1"
sys.dont_write_bytecode = True
sys.path[:0] = [os.path.join(top, "bindings", "python"), os.path.join(here, "stdlib")]

# The test classes of each part, balanced by their sleeps (about 20 s each).
PARTS = (("futures_suite.ShoalWaitTest", "futures_suite.ShoalAsCompletedTest"),
         None)  # None: every other class


class Timed(unittest.TextTestResult):
    times = []

    def startTest(self, test):
        self._t0 = time.monotonic()
        super().startTest(test)

    def stopTest(self, test):
        super().stopTest(test)
        self.times.append((time.monotonic() - self._t0, test.id()))


def run_part(k):
    """Runs part @k in this process; its counts as one JSON line, last."""
    import futures_suite
    import pool_suite
    loader = unittest.TestLoader()
    named = {c for p in PARTS if p for c in p}
    tests = []
    for mod in (futures_suite, pool_suite):
        for name in dir(mod):
            cls = getattr(mod, name)
            if not (isinstance(cls, type) and issubclass(cls, unittest.TestCase)) or \
                    cls.__module__ != mod.__name__:
                continue
            full = f"{mod.__name__}.{name}"
            if (full in PARTS[k]) if PARTS[k] else (full not in named):
                tests.append(full)
    suite = loader.loadTestsFromNames(sorted(tests))
    res = unittest.TextTestRunner(resultclass=Timed, verbosity=1, stream=sys.stdout).run(suite)
    sys.stdout.flush()
    print(json.dumps(dict(run=res.testsRun, failures=len(res.failures), errors=len(res.errors),
                          skipped=len(res.skipped), times=Timed.times)))
    return 0


def main():
    if os.environ.get("SHOAL_STDLIB_PART"):
        return run_part(int(os.environ["SHOAL_STDLIB_PART"]))
    import futures_suite
    import pool_suite
    t0 = time.monotonic()
    procs = [subprocess.Popen([sys.executable, os.path.abspath(__file__)], text=True,
                              env=dict(os.environ, SHOAL_STDLIB_PART=str(k)),
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
             for k in range(len(PARTS))]
    total = dict(run=0, failures=0, errors=0, skipped=0, times=[])
    ok = True
    for k, p in enumerate(procs):
        out = p.communicate()[0]
        lines = out.rstrip("\n").split("\n")
        print(f"---- part {k} ----")
        try:
            counts = json.loads(lines[-1])
            print("\n".join(lines[:-1]))
        except ValueError:
            print(out)
            print(f"part {k} ended without its counts (exit status {p.returncode})")
            ok = False
            continue
        ok = ok and p.returncode == 0
        for key in ("run", "failures", "errors", "skipped"):
            total[key] += counts[key]
        total["times"] += counts["times"]
    took = time.monotonic() - t0
    excluded = sum(map(len, futures_suite.EXCLUDED.values())) + \
        sum(map(len, pool_suite.EXCLUDED.values()))
    bad = total["failures"] + total["errors"] + total["skipped"]
    # The first line in pytest's words, which scripts/quickstart.sh adds up.
    print(f"{total['run'] - bad} passed, {bad} failed in {took:.1f}s")
    print(f"stdlib suites: {total['run']} run: {total['failures']} failures, "
          f"{total['errors']} errors, {total['skipped']} skipped; {excluded} left out by "
          f"name (EXCLUDED in tests/stdlib/*_suite.py, each with its reason)")
    for dt, name in sorted(total["times"], reverse=True)[:10]:
        print(f"  {dt:6.2f} s  {name}")
    # A test the suites skip is a promise not kept: it fails the run too.
    return 0 if ok and not bad else 1


if __name__ == "__main__":
    sys.exit(main())
