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
: "${SHOAL_BUILDDIR:=$here/../_build/release}"
: "${PYTHON:=/usr/bin/python3}"
: "${SHOAL_LIBRARY:=$SHOAL_BUILDDIR/lib/.libs/libshoal.so}"
PYTHONPATH="$here/../bindings/python${PYTHONPATH:+:$PYTHONPATH}"
export SHOAL_LIBRARY PYTHONPATH
exec "$PYTHON" "$here/bigarray_bench.py" "$@"
