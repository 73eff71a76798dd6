#!/bin/sh
# tests/joblib-suite.sh - joblib's own tests on shoal's joblib backend.
# Runs Debian's python3-joblib test_parallel.py, whole, and the tests of
# its other files that run Parallel, with "shoal" as
# joblib's default backend and in loky's place in every backend list
# (tests/joblib-suite/joblib_suite_plugin.py). The tests left out, each
# with its reason, are in tests/joblib-suite/excluded.txt. Fails on any
# failure, error, skip or xfail, and on any shoal object left behind.
# The installed joblib's tests are read where they are, never changed.
# Run by `make check` from the build directory (not in sanitizer builds:
# it tests Python-level behaviour; see Makefile.am).
set -u
top=${srcdir:-$(dirname "$0")/..}
top=$(cd "$top" && pwd)
build=${SHOAL_TEST_BUILDDIR:-$PWD}
# The interpreter configure found (it has numpy, pytest and joblib).
PYTHON=${PYTHON:-$(sed -n 's/^PYTHON = //p' "$build/Makefile")}
SHOAL_LIBRARY="$build/lib/.libs/libshoal.so"
PYTHONPATH="$top/bindings/python:$top/tests/joblib-suite${PYTHONPATH:+:$PYTHONPATH}"
# pytest writes no bytecode beside joblib's tests.
PYTHONDONTWRITEBYTECODE=1
export SHOAL_LIBRARY PYTHONPATH PYTHONDONTWRITEBYTECODE

jt=$("$PYTHON" -c 'import os, joblib.test; print(os.path.dirname(joblib.test.__file__))') || {
	echo "FAIL: $PYTHON has no joblib.test (Debian: python3-joblib)"; exit 1; }
# test_parallel.py runs whole; of the other files, the plugin keeps the
# tests that run Parallel (its SELECTED).
args=""
for f in test_parallel test_memmapping test_memory test_func_inspect test_store_backends \
		test_backports; do
	args="$args $jt/$f.py"
done

# pytest's rootdir is a scratch directory: nothing is written beside the
# installed tests, and no ini file of theirs applies. shoal's objects live
# in a directory of their own (SHOAL_DIR, on /dev/shm's tmpfs): the tests
# that run beside this one in `make -j check` neither see them nor are
# counted as ours, and what is left in it at the end is a leak.
root=$(mktemp -d) || exit 1
shm=$(mktemp -d /dev/shm/joblib-suite.XXXXXX) || exit 1
trap 'rm -rf "$root" "$shm"' EXIT
SHOAL_DIR=$shm
export SHOAL_DIR
touch "$root/pytest.ini"
cd "$root" || exit 1
# A hang is stopped (joblib's own tests allow a test 20 s at most).
# shellcheck disable=SC2086
timeout -s USR1 -k 30 600 "$PYTHON" -X faulthandler -m pytest -c "$root/pytest.ini" \
	--rootdir="$root" -p no:cacheprovider -p joblib_suite_plugin -q -rfEsxX \
	-o faulthandler_timeout=60 --timeout=120 --durations=10 $args "$@"
rc=$?
left=$(ls -A "$shm")
if [ -n "$left" ]; then
	echo "FAIL: joblib's tests left shoal objects behind:"; echo "$left"; rc=1
fi
exit $rc
