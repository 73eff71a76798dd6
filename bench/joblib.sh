#!/bin/sh
# bench/joblib.sh - ten joblib Parallel calls over the same 1 GiB array on
# 4 workers: backend "shoal" beside loky (joblib's default, with its
# memmapping), time and peak total PSS (bench/joblib_bench.py), one JSON
# object per line. Needs about 3 GiB of memory and 2 GiB free in /dev/shm
# (loky dumps the array there); a size in GiB may be given. Called by
# bench/run, which sets SHOAL_LIBRARY, PYTHONPATH and PYTHON; runnable
# alone after a build too.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
: "${SHOAL_BUILDDIR:=$here/../_build/release}"
: "${PYTHON:=/usr/bin/python3}"
: "${SHOAL_LIBRARY:=$SHOAL_BUILDDIR/lib/.libs/libshoal.so}"
PYTHONPATH="$here/../bindings/python${PYTHONPATH:+:$PYTHONPATH}"
export SHOAL_LIBRARY PYTHONPATH
exec "$PYTHON" "$here/joblib_bench.py" "$@"
