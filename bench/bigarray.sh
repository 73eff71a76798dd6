#!/bin/sh
# bench/bigarray.sh - create + first full write of big arrays
# (bench/bigarray_bench.py) beside SharedMemory + numpy and beside the
# floors (bench/bigarray_floor: fresh memory with no shoal and no Python),
# one JSON object per line. Sizes 1 and 4 GiB by default (about 3 min);
# more as arguments in GiB or BIGARRAY_SIZES ("1 4 12": 12 GiB needs about
# 14 GiB free and 5 more minutes). Objects go where SHOAL_DIR says (default
# /dev/shm); figures for a tmpfs with huge pages are named "<figure>.huge".
# BIGARRAY_HUGETLB=1 (root) adds shoal and a floor on a hugetlbfs pool
# reserved for the run. Called by bench/run, which sets SHOAL_BUILDDIR,
# SHOAL_LIBRARY, PYTHONPATH and PYTHON; runnable alone after a build too.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
. "$here/python-env.sh"
exec "$PYTHON" "$here/bigarray_bench.py" "$@"
