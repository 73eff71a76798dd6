"""What the adapted CPython suites share: a child interpreter that the
suites start (test.support.script_helper.assert_python_ok) runs shoal.Pool
where the script names the standard pool."""
import contextlib
import os

from test.support import script_helper

# A script's import of the standard pool -> shoal's. ("import
# multiprocessing" too: gh-83386's script calls it without importing it,
# harmless for the thread pool it runs upstream, not for a process pool.)
_IMPORTS = {
    "from concurrent.futures import Pool": "import multiprocessing; from shoal import Pool",
    "from multiprocessing import Pool": "from shoal import Pool",
}


@contextlib.contextmanager
def shoal_in_children():
    """While the block runs, assert_python_ok (and its modules' own
    references to it) starts scripts with shoal.Pool in place of the
    standard pool, and with this process's SHOAL_LIBRARY and PYTHONPATH
    (passing them turns off -I, which would ignore PYTHONPATH)."""
    real = script_helper.assert_python_ok

    def ok(*args, **env):
        args = list(args)
        if len(args) >= 2 and args[0] == "-c":
            for std, ours in _IMPORTS.items():
                args[1] = args[1].replace(std, ours)
        for k in ("SHOAL_LIBRARY", "PYTHONPATH"):
            if k in os.environ:
                env.setdefault(k, os.environ[k])
        return real(*args, **env)

    from test import test_concurrent_futures as T
    saved = (script_helper.assert_python_ok, T.assert_python_ok)
    script_helper.assert_python_ok = T.assert_python_ok = ok
    try:
        yield
    finally:
        script_helper.assert_python_ok, T.assert_python_ok = saved


def without_excluded(suite, base, excluded):
    """The class body that removes @excluded's tests of @suite (a class
    @base) by name: None hides an inherited test, so unittest never sees
    it (not a skip). A name @base does not have (renamed upstream) is an
    error, not a silent no-op."""
    names = excluded.get(suite, {})
    missing = [n for n in names if not callable(getattr(base, n, None))]
    if missing:
        raise LookupError(f"{suite} has no {', '.join(missing)}: update EXCLUDED")
    return {name: None for name in names}
