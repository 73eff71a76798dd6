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
. "$here/python-env.sh"
exec "$PYTHON" "$here/joblib_bench.py" "$@"
