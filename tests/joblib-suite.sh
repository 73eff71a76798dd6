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
# The interpreter configure found (it has numpy, pytest and joblib), as
# run-pytest takes it; never one from the environment (a PYTHON exported
# for other tools may be a python3 without joblib).
PYTHON=$(sed -n 's/^PYTHON = //p' "$build/Makefile" 2>/dev/null)
if [ -z "$PYTHON" ]; then
	echo "FAIL: no PYTHON in $build/Makefile: run this from a configured build" \
		"directory (or give it in SHOAL_TEST_BUILDDIR)"
	exit 1
fi
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
# The traps come first: a second mktemp that fails leaves the first's
# directory to them. dash runs no EXIT trap for a signal that kills it, so
# INT, TERM and HUP (make's Ctrl-C, a CI job's end) exit through it.
root="" shm=""
trap 'rm -rf ${root:+"$root"} ${shm:+"$shm"}' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM HUP
root=$(mktemp -d) || exit 1
shm=$(mktemp -d /dev/shm/joblib-suite.XXXXXX) || exit 1
SHOAL_DIR=$shm
export SHOAL_DIR
touch "$root/pytest.ini"
cd "$root" || exit 1
# A hang is stopped (joblib's own tests allow a test 20 s at most): at
# 60 s a test's stacks are dumped, at 120 s it fails, and after 10 minutes
# the run is stopped, SIGUSR1 first (the plugin dumps every thread's stack
# then), SIGKILL 30 s later. timeout runs in a process group of its own,
# which a Ctrl-C or a CI job's TERM does not reach: it runs in the
# background, and the traps hand the signal on (timeout passes it to
# pytest) and wait for it before the directories go.
# shellcheck disable=SC2086
timeout -s USR1 -k 30 600 "$PYTHON" -X faulthandler -m pytest -c "$root/pytest.ini" \
	--rootdir="$root" -p no:cacheprovider -p joblib_suite_plugin -q -rfEsxX \
	-o faulthandler_timeout=60 --timeout=120 --durations=10 $args "$@" &
pid=$!
trap 'kill -INT $pid 2>/dev/null; wait $pid; exit 130' INT
trap 'kill -TERM $pid 2>/dev/null; wait $pid; exit 143' TERM HUP
wait $pid
rc=$?
left=$(ls -A "$shm")
if [ -n "$left" ]; then
	echo "FAIL: joblib's tests left shoal objects behind:"; echo "$left"; rc=1
fi
exit $rc
