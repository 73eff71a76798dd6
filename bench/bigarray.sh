#!/bin/sh
# bench/bigarray.sh - create + first full write of big arrays (1, 4 and
# 12 GiB; bench/bigarray_bench.py) beside SharedMemory + numpy, one JSON
# object per line. Objects go where SHOAL_DIR says (default /dev/shm);
# figures for a tmpfs with huge pages are named "<figure>.huge". The
# 12 GiB case runs only when enough memory is free, else its line says why.
# Sizes in GiB may be given as arguments. Called by bench/run, which sets
# SHOAL_LIBRARY, PYTHONPATH and PYTHON; runnable alone after a build too.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
. "$here/python-env.sh"
exec "$PYTHON" "$here/bigarray_bench.py" "$@"
