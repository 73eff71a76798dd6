"""A pytest plugin that runs joblib's own tests (Debian's python3-joblib:
joblib/test/test_parallel.py, and the tests of its other files that run
Parallel: SELECTED) on shoal's joblib backend. tests/joblib-suite.sh
loads it (-p).

It owns how joblib's tests are pointed at "shoal", without editing them:

- "shoal" is registered as joblib's default backend before the test
  modules are imported, so every test that runs ``Parallel(n_jobs=2)``
  without naming a backend (and joblib's ``DefaultBackend``) runs on it;
- a test parametrized over backends (``backend``, ``parent_backend``...)
  runs with shoal in loky's place: "loky" -> "shoal", a LokyBackend
  instance -> a ShoalBackend; values naming no process backend of ours
  (multiprocessing, threading, sequential, a multiprocessing context) are
  dropped, as they test joblib's own backends; OVERRIDES gives the pairs
  of the nesting tests;
- the scripts some tests run in a new interpreter get shoal too: their
  code starts with the import a user would write (_PRELUDE);
- joblib's xfail marks about loky (LOKY_XFAILS) are dropped: those tests
  must pass;
- excluded.txt names the tests left out, each with its reason; an entry
  that matches no collected test is an error (a stale list hides nothing);
- a test that reads its output through capfd (or capsys) gets pools made
  under its capture (_pools_under_capture);
- no test may be skipped or xfail (a skip in CI is a failed promise), and
  the run must leave no shoal object behind.
"""
import faulthandler
import os
import signal
import subprocess
import sys

import pytest

import joblib
from joblib._parallel_backends import LokyBackend

import shoal.joblib
from shoal.joblib import ShoalBackend

joblib.register_parallel_backend("shoal", ShoalBackend, make_default=True)

# tests/joblib-suite.sh's last resort (timeout -s USR1) shows where every
# thread is, in the log, before the run is killed. On a copy of fd 2 made
# now, as pytest's faulthandler_timeout does: -p plugins are imported
# before pytest's capture starts, which then points fd 2 (and so
# sys.__stderr__) at the running test's capture, lost with the run.
_STDERR = os.fdopen(os.dup(sys.__stderr__.fileno()), "w")
faulthandler.register(signal.SIGUSR1, file=_STDERR, all_threads=True)

HERE = os.path.dirname(os.path.abspath(__file__))
EXCLUDED = os.path.join(HERE, "excluded.txt")
BACKEND_ARGS = ("backend", "parent_backend", "child_backend", "outer_backend",
                "inner_backend")

# The backend pairs of the nesting tests: shoal outside and inside, and
# shoal under joblib's own threads. shoal in shoal warns and runs
# sequentially (as loky in multiprocessing); shoal in joblib's threads
# runs on its pool with no warning (loky there falls back to n_jobs=1
# with one: docs/joblib.md).
OVERRIDES = {
    "test_nested_loop": [(("parent_backend", "child_backend"), [
        ("shoal", "shoal"), ("shoal", "threading"), ("shoal", "sequential"),
        ("threading", "shoal"), ("sequential", "shoal")])],
    "test_nested_parallel_warnings": [(("parent_backend", "child_backend", "expected"), [
        ("shoal", "shoal", True), ("threading", "shoal", False)])],
    "test_backend_nesting_level": [(("outer_backend", "inner_backend"), [
        ("shoal", "shoal"), ("shoal", "threading"), ("threading", "shoal")])],
}

# test_parallel.py runs whole; of joblib's other test files, the tests that
# run Parallel (the others test joblib's memmapping pools, caches and
# pickles, not a backend). Selected here, not by node ids on the command
# line: pytest 7.2 finds "file::test" only in the first such file named
# when the files lie outside its rootdir.
SELECTED = {
    "test_memmapping.py": {
        "test_permission_error_windows_reference_cycle",
        "test_permission_error_windows_memmap_sent_to_parent",
        "test_parallel_isolated_temp_folders", "test_managed_backend_reuse_temp_folder",
        "test_many_parallel_calls_on_same_object", "test_memmap_returned_as_regular_array",
        "test_resource_tracker_silent_when_reference_cycles",
        "test_child_raises_parent_exits_cleanly", "test_numpy_arrays_use_different_memory"},
    # (its test_parallel_call_cached_function_defined_in_jupyter is
    # marked xfail by joblib, whatever the backend)
    "test_memory.py": {
        "test_cached_function_race_condition_when_persisting_output",
        "test_cached_function_race_condition_when_persisting_output_2"},
    "test_func_inspect.py": {"test_func_code_consistency"},
    "test_store_backends.py": {"test_concurrency_safe_write"},
    "test_backports.py": {"test_concurrency_safe_rename"},
}

# joblib's xfail marks that are about loky (loky/pull/255): shoal must pass.
LOKY_XFAILS = {"test_nested_exception_dispatch"}

# What a user's script on shoal starts with.
_PRELUDE = ("import joblib, shoal.joblib; joblib.register_parallel_backend("
            "'shoal', shoal.joblib.ShoalBackend, make_default=True)\n")

_DROP = object()


def _map(v):
    """@v, one backend value of joblib's lists, with shoal in loky's place
    (None, joblib's default backend, is shoal here); _DROP when it names
    none of ours (it tests one of joblib's)."""
    if v is None or v == "shoal" or isinstance(v, ShoalBackend):
        return v
    if v == "loky":
        return "shoal"
    if type(v) is LokyBackend:
        return ShoalBackend()
    return _DROP


def _id(v):
    """A test id naming the value: "default" (None: joblib's default
    backend, shoal here), "instance" (a ShoalBackend object)."""
    return "default" if v is None else "instance" if isinstance(v, ShoalBackend) else None


def _script_id(code):
    return "lambda" if "lambda" in code else "local" if "gen_square" in code else "main"


def _values(argnames, values):
    out = []
    for v in values:
        if isinstance(v, type(pytest.param(0))):
            continue  # joblib's own marks (xfail for multiprocessing)
        if len(argnames) == 1:
            m = _map(v)
            if m is _DROP or m in out:
                continue
            if isinstance(m, ShoalBackend) and any(isinstance(o, ShoalBackend) for o in out):
                continue  # one instance (joblib's list has one per backend)
            out.append(m)
    return out


@pytest.hookimpl(tryfirst=True)
def pytest_generate_tests(metafunc):
    """Before pytest's own parametrization reads the marks: shoal's values
    in place of joblib's backend lists."""
    defn = metafunc.definition
    name = defn.originalname if hasattr(defn, "originalname") else defn.name
    marks = defn.own_markers
    keep, touched = [], False
    for m in marks:
        if m.name == "parametrize":
            argnames = m.args[0]
            if isinstance(argnames, str):
                argnames = [a.strip() for a in argnames.split(",")]
            if any(a in BACKEND_ARGS for a in argnames):
                touched = True
                if name in OVERRIDES:
                    continue
                vals = _values(argnames, list(m.args[1]))
                kw = {k: v for k, v in m.kwargs.items() if k != "ids"}
                keep.append(pytest.mark.parametrize(argnames[0], vals, ids=_id, **kw).mark)
                continue
            if argnames == ["define_func"]:
                # Scripts as test ids are unreadable (and hold spaces):
                # named by what they define, for excluded.txt.
                keep.append(pytest.mark.parametrize("define_func", m.args[1],
                                                    ids=_script_id).mark)
                continue
        keep.append(m)
    if touched and name in OVERRIDES:
        for argnames, vals in OVERRIDES[name]:
            keep.append(pytest.mark.parametrize(",".join(argnames), vals).mark)
    marks[:] = keep


def _prelude_cmd(cmd):
    """A command line running Python code, with shoal's import first."""
    cmd = list(cmd)
    if len(cmd) >= 3 and cmd[1] == "-c":
        cmd[2] = _PRELUDE + cmd[2]
    elif len(cmd) == 2 and cmd[1].endswith(".py"):
        with open(cmd[1]) as f:
            code = f.read()
        with open(cmd[1], "w") as f:
            f.write(_PRELUDE + code)
    return cmd


def _env(env):
    """A subprocess's environment that still finds shoal (joblib's tests
    replace PYTHONPATH with their own folder)."""
    if env is None:
        return None
    env = dict(env)
    ours = os.environ.get("PYTHONPATH", "")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (env.get("PYTHONPATH"), ours) if p)
    return env


class _Subprocess:
    """test_memmapping's ``subprocess``: Popen with shoal's prelude."""

    def __getattr__(self, name):
        return getattr(subprocess, name)

    @staticmethod
    def Popen(cmd, *a, env=None, **kw):
        return subprocess.Popen(_prelude_cmd(cmd), *a, env=_env(env), **kw)


@pytest.hookimpl(hookwrapper=True)
def pytest_pycollect_makemodule(module_path, parent):
    outcome = yield
    mod = outcome.get_result()
    if mod is None:
        return
    name = os.path.basename(str(module_path))
    obj = mod.obj  # imports the module
    if name == "test_parallel.py":
        orig = obj.check_subprocess_call
        obj.check_subprocess_call = lambda cmd, *a, **kw: orig(_prelude_cmd(cmd), *a, **kw)
    elif name == "test_memmapping.py":
        obj.subprocess = _Subprocess()


def _read_excluded():
    out = {}
    with open(EXCLUDED) as f:
        for n, line in enumerate(f, 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            test, sep, reason = line.partition("  ")
            if not reason.strip():
                raise pytest.UsageError(f"{EXCLUDED}:{n}: {test} has no reason")
            out[test] = n
    return out


def _key(item):
    return f"{os.path.basename(str(item.path))}::{item.name}"


def pytest_collection_modifyitems(session, config, items):
    """Leave out what excluded.txt names: a test by its name (every
    parameter of it) or one parameter by its full id."""
    excluded = _read_excluded()
    used, kept, dropped, other = set(), [], [], []
    for item in items:
        key = _key(item)
        base = key.split("[", 1)[0]
        fname, _, tname = base.partition("::")
        if fname in SELECTED and tname not in SELECTED[fname]:
            other.append(item)
            continue
        hit = key if key in excluded else base if base in excluded else None
        if hit is not None:
            used.add(hit)
            dropped.append(item)
        else:
            kept.append(item)
            if base.split("::")[1] in LOKY_XFAILS:
                item.own_markers[:] = [m for m in item.own_markers if m.name != "xfail"]
    stale = sorted(set(excluded) - used, key=excluded.get)
    if stale:
        raise pytest.UsageError("excluded.txt names tests that were not collected: "
                                + ", ".join(stale))
    missing = sorted(f"{f}::{t}" for f, names in SELECTED.items() for t in names
                     if not any(_key(i).split("[", 1)[0] == f"{f}::{t}" for i in items))
    if missing:
        raise pytest.UsageError("SELECTED names tests that were not collected: "
                                + ", ".join(missing))
    items[:] = kept
    config.hook.pytest_deselected(items=dropped + other)
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if reporter:
        reporter.write_line(f"shoal: {len(kept)} of joblib's tests run, {len(dropped)} left "
                            f"out by excluded.txt, {len(other)} of other files run no "
                            "Parallel")


_CAPTURES = {"capfd", "capfdbinary", "capsys", "capsysbinary"}


@pytest.fixture(autouse=True)
def _pools_under_capture(request):
    """A test that reads what its tasks print (test_memory's race tests
    look for "Exception while loading results" on capfd) needs workers
    that write into its capture: a pool's workers write to the fds 1 and
    2 its fork server got when the pool was made, which for a pool made
    by an earlier test are the run's own, and the check could not fail.
    So the backend's pools are shut down first, and the test's Parallel
    makes them again under its capture."""
    if _CAPTURES & set(request.fixturenames):
        shoal.joblib.shutdown()
    yield


def _shm():
    """shoal's objects (tests/joblib-suite.sh gives the run a SHOAL_DIR of
    its own)."""
    try:
        return {f for f in os.listdir(shoal.directory()) if f.startswith("shoal.")}
    except OSError:
        return set()


_before = set()


def pytest_sessionstart(session):
    _before.update(_shm())


def pytest_sessionfinish(session, exitstatus):
    shoal.joblib.shutdown()
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    stats = reporter.stats if reporter else {}
    bad = {k: len(stats.get(k, [])) for k in ("skipped", "xfailed", "xpassed")}
    bad = {k: v for k, v in bad.items() if v}
    left = _shm() - _before
    if reporter and bad:
        reporter.write_line(f"FAIL: {bad}: every test that runs must pass "
                            "(leave a test out in excluded.txt, with its reason)")
    if reporter and left:
        reporter.write_line(f"FAIL: left in /dev/shm: {sorted(left)}")
    if bad or left:
        session.exitstatus = 1
